//! # List, then watch, with every wait bounded
//!
//! One loop per resource keeps a [`Store`] equal to the API server's view:
//!
//! 1. **List** in pages ([`KubeOptions::page_size`]), each page bounded by
//!    [`KubeOptions::list_timeout`]. A complete list replaces the store in one
//!    step (objects deleted meanwhile disappear; an object whose
//!    resourceVersion did not change keeps its `Arc`, so the model skips it).
//!    A failed list (5xx, garbage or truncated JSON, a body that stalls)
//!    leaves the store as it was and is retried after a backoff.
//! 2. **Watch** from the list's resourceVersion with bookmarks and a
//!    server-side timeout. Events update the store; a bookmark or a watch
//!    that ends normally moves the version on. A watch that is cut (even in
//!    the middle of an object) is re-opened from the last version; one that
//!    stays silent for [`KubeOptions::watch_idle`] is dropped and re-opened;
//!    410 Gone or an event that does not decode goes back to 1 (a relist:
//!    an event may have been lost).
//!
//! **Progress** is a completed list, an event, a bookmark, or a watch that
//! ended normally. [`SourceStatus`] keeps each resource's last progress; a
//! resource without progress for [`KubeOptions::progress`] is *behind*: the
//! agent's `/readyz` fails while it is, and the loop relists it. The store
//! (and so the data plane) keeps the last good state meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::kube_client::KubeOptions;
use super::SourceStatus;
use crate::model::Slice;

/// What a store keeps of an object: its metadata. A store keeps the objects
/// themselves (Services, Nodes) or a compact form made as each arrives
/// ([`Slice`] for an EndpointSlice: the object is dropped once converted).
pub trait Kept: Send + Sync + 'static {
    fn kept_meta(&self) -> &ObjectMeta;
}

impl Kept for Service {
    fn kept_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl Kept for Node {
    fn kept_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl Kept for Slice {
    fn kept_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

/// One resource's objects (as `V`) by `namespace/name`, and whether a list
/// completed.
pub struct Store<V> {
    inner: RwLock<(HashMap<String, Arc<V>>, bool)>,
    ready: Notify,
}

impl<V> Default for Store<V> {
    fn default() -> Self {
        Self {
            inner: RwLock::new((HashMap::new(), false)),
            ready: Notify::new(),
        }
    }
}

impl<V: Kept> Store<V> {
    /// Every object (shared, unordered).
    pub fn state(&self) -> Vec<Arc<V>> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.0.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a list has completed.
    pub fn is_ready(&self) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Waits until a list has completed.
    pub async fn wait_ready(&self) {
        loop {
            let n = self.ready.notified();
            if self.is_ready() {
                return;
            }
            n.await;
        }
    }

    /// Replaces everything with a complete list.
    fn replace(&self, items: Vec<V>) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::with_capacity(items.len());
        for o in items {
            let k = key(&o);
            let rv = &o.kept_meta().resource_version;
            let keep =
                g.0.get(&k)
                    .filter(|old| rv.is_some() && old.kept_meta().resource_version == *rv)
                    .cloned();
            next.insert(k, keep.unwrap_or_else(|| Arc::new(o)));
        }
        *g = (next, true);
        drop(g);
        self.ready.notify_waiters();
    }

    fn apply(&self, o: V) {
        let k = key(&o);
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.0.insert(k, Arc::new(o));
    }

    fn delete(&self, meta: &ObjectMeta) {
        let k = super::object_key(meta);
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.0.remove(&k);
    }
}

fn key<V: Kept>(o: &V) -> String {
    super::object_key(o.kept_meta())
}

/// Why a watch ended, and what comes next.
enum Next {
    /// Re-open the watch from the last version; `clean`: it ended normally
    /// (no backoff).
    Rewatch { clean: bool },
    /// List again.
    Relist,
}

/// Retry delays: doubling from `min` to `max`, reset by a success.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(o: &KubeOptions) -> Self {
        Self {
            next: o.backoff_min,
            min: o.backoff_min,
            max: o.backoff_max,
        }
    }
    fn reset(&mut self) {
        self.next = self.min;
    }
    fn take(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Keeps `store` in sync with the API server's `api` objects until the task
/// is dropped (each object kept as `V`). `changed` is notified after every
/// change of the store.
pub async fn run<K, V>(
    api: Api<K>,
    what: &'static str,
    labels: Option<String>,
    store: Arc<Store<V>>,
    changed: Arc<Notify>,
    status: SourceStatus,
    opts: KubeOptions,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + Into<V> + 'static,
    V: Kept,
{
    let mut backoff = Backoff::new(&opts);
    status.register(what, opts.progress);
    loop {
        // 1. List.
        let (items, mut version) = match list::<K, V>(&api, labels.as_deref(), &opts).await {
            Ok(r) => r,
            Err(e) => {
                status.error(what, format!("list failed: {e}"));
                let d = backoff.take();
                tracing::warn!("{what}: list failed: {e}; retrying in {d:?}");
                tokio::time::sleep(d).await;
                continue;
            }
        };
        tracing::debug!(
            "{what}: listed {} objects at version {version}",
            items.len()
        );
        store.replace(items);
        // A relist frees a whole generation of objects, allocated on
        // whichever threads parsed them: hand the free pages back to the
        // kernel instead of keeping them in glibc's per-thread arenas.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        status.progress(what);
        backoff.reset();
        changed.notify_one();

        // 2. Watch until a relist is needed.
        loop {
            if status.stalled(what) {
                tracing::warn!("{what}: no progress for {:?}: relisting", opts.progress);
                break;
            }
            match watch(
                &api,
                what,
                labels.as_deref(),
                &mut version,
                &store,
                &changed,
                &status,
                &opts,
            )
            .await
            {
                Ok(Next::Rewatch { clean: true }) => backoff.reset(),
                Ok(Next::Rewatch { clean: false }) => tokio::time::sleep(backoff.take()).await,
                Ok(Next::Relist) => break,
                Err(e) => {
                    status.error(what, format!("watch failed: {e}"));
                    let d = backoff.take();
                    tracing::warn!("{what}: watch failed: {e}; retrying in {d:?}");
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
}

/// A complete paged list: the items (each kept as `V`, converted as its
/// page arrives: a relist of EndpointSlices holds one page of API objects
/// at a time) and the list's resourceVersion.
async fn list<K, V>(
    api: &Api<K>,
    labels: Option<&str>,
    opts: &KubeOptions,
) -> Result<(Vec<V>, String), String>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Into<V>,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(opts.page_size);
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = match tokio::time::timeout(opts.list_timeout, api.list(&lp)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no complete page within {:?}", opts.list_timeout)),
        };
        items.extend(page.items.into_iter().map(Into::into));
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            let version = page
                .metadata
                .resource_version
                .filter(|v| !v.is_empty())
                .ok_or("the list carries no resourceVersion")?;
            return Ok((items, version));
        }
    }
}

/// One watch request, until it ends. `Err`: it could not be opened.
#[allow(clippy::too_many_arguments)]
async fn watch<K, V>(
    api: &Api<K>,
    what: &'static str,
    labels: Option<&str>,
    version: &mut String,
    store: &Store<V>,
    changed: &Notify,
    status: &SourceStatus,
    opts: &KubeOptions,
) -> Result<Next, String>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Into<V> + 'static,
    V: Kept,
{
    let mut wp = WatchParams::default().timeout(opts.watch_timeout.as_secs().clamp(1, 290) as u32);
    if let Some(l) = labels {
        wp = wp.labels(l);
    }
    let stream = match tokio::time::timeout(opts.watch_idle, api.watch(&wp, version)).await {
        Ok(Ok(s)) => s,
        Ok(Err(kube::Error::Api(s))) if s.code == 410 => {
            tracing::info!("{what}: watch expired (410 Gone), relisting");
            return Ok(Next::Relist);
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {:?}", opts.watch_idle)),
    };
    let mut stream = std::pin::pin!(stream);
    let opened = std::time::Instant::now();
    loop {
        let ev = match tokio::time::timeout(opts.watch_idle, stream.next()).await {
            Err(_) => {
                tracing::info!("{what}: watch silent for {:?}; re-opening", opts.watch_idle);
                return Ok(Next::Rewatch { clean: false });
            }
            // Ended by the server at its timeout: the server is alive. A
            // stream that ends much earlier was cut (the client sees a
            // cut chunk as an end too): resume, but it is no progress.
            Ok(None) => {
                let clean = opened.elapsed() >= opts.watch_timeout / 2;
                if clean {
                    status.progress(what);
                } else {
                    tracing::info!("{what}: watch ended early; resuming from {version}");
                }
                return Ok(Next::Rewatch { clean });
            }
            Ok(Some(Ok(ev))) => ev,
            Ok(Some(Err(e))) => {
                let msg = e.to_string();
                // A cut connection: resume. Anything that did not decode:
                // an event may be lost, relist.
                if matches!(e, kube::Error::SerdeError(_)) {
                    status.error(what, format!("undecodable watch event: {msg}"));
                    tracing::warn!("{what}: undecodable watch event ({msg}); relisting");
                    return Ok(Next::Relist);
                }
                tracing::info!("{what}: watch interrupted ({msg}); resuming from {version}");
                return Ok(Next::Rewatch { clean: false });
            }
        };
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                if let Some(v) = o.meta().resource_version.clone() {
                    *version = v;
                }
                store.apply(o.into());
                changed.notify_one();
            }
            WatchEvent::Deleted(o) => {
                if let Some(v) = o.meta().resource_version.clone() {
                    *version = v;
                }
                store.delete(o.meta());
                changed.notify_one();
            }
            WatchEvent::Bookmark(b) => {
                *version = b.metadata.resource_version;
            }
            WatchEvent::Error(s) if s.code == 410 => {
                tracing::info!("{what}: watch expired (410 Gone), relisting");
                return Ok(Next::Relist);
            }
            WatchEvent::Error(s) => {
                status.error(what, format!("watch error {}: {}", s.code, s.message));
                tracing::warn!("{what}: watch error {}: {}; re-opening", s.code, s.message);
                return Ok(Next::Rewatch { clean: false });
            }
        }
        status.progress(what);
    }
}
