//! # Kubernetes API source
//!
//! Three kube-rs [`watcher`]s (Services, EndpointSlices, Nodes, all
//! namespaces) feed three [`reflector`] stores. The watcher does the
//! protocol work: an initial paged list (with its resourceVersion), then a
//! watch from that version with bookmarks; a dropped connection is re-watched
//! from the last version seen; a 410 Gone ("too old resource version") starts
//! over with a fresh list, whose result replaces the store atomically (the
//! store swaps in the new list at `InitDone`, so objects deleted while we were
//! away disappear). Errors are retried with kube-rs' default exponential
//! backoff (0.8 s doubling to 30 s, reset after a quiet period).
//!
//! Nothing is published until all three stores finished their first list:
//! a partial view (Services without their EndpointSlices) would make sync
//! delete live state. After that every change arms the debounced publisher
//! ([`super::SourceOptions::debounce`]).
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let client = xlb::sources::kube::client(None).await?;
//! let mut rx = xlb::sources::kube::watch(client, Default::default());
//! rx.changed().await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::{watch, Notify};

use super::{sort_snapshot, Error, Result, Snapshot, SnapshotRx, SourceOptions};

/// (API group, resource plural) of everything this source watches, taken
/// from the same k8s-openapi types the watchers use. The RBAC rules in
/// `deploy/rbac.yaml` must grant get/list/watch on exactly these
/// (`tests/deploy_manifests.rs` checks it).
pub fn watched_resources() -> [(&'static str, &'static str); 3] {
    fn gr<K: k8s_openapi::Resource>() -> (&'static str, &'static str) {
        (K::GROUP, K::URL_PATH_SEGMENT)
    }
    [gr::<Service>(), gr::<EndpointSlice>(), gr::<Node>()]
}

/// A client from `kubeconfig` when given, else inferred the way kubectl
/// does: `KUBECONFIG` / `~/.kube/config`, then the in-cluster service
/// account (`KUBERNETES_SERVICE_HOST` and the mounted token).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| Error::KubeConfig(format!("reading {}: {e}", p.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::KubeConfig(format!("{}: {e}", p.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::KubeConfig(format!(
                "no kubeconfig and not in a cluster ({e}); pass --kubeconfig or --manifests DIR"
            ))
        })?,
    };
    Ok(Client::try_from(config)?)
}

/// Runs one watcher into a store, notifying `changed` on every event.
fn drive<K>(
    api: Api<K>,
    what: &'static str,
    config: watcher::Config,
    changed: Arc<Notify>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => tracing::debug!("{what}: listing"),
                Ok(watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::InitDone) => {
                    tracing::debug!("{what}: list complete");
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => changed.notify_one(),
                Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                    tracing::info!("{what}: watch expired (410 Gone), relisting")
                }
                Err(e) => tracing::warn!("{what} watch: {e}; retrying"),
            }
        }
    });
    reader
}

/// The store's objects, shared (no copy: the reflector replaces an object's
/// `Arc` when it changes, so the model tells unchanged ones by pointer).
fn collect<K: Clone + kube::Resource<DynamicType = ()> + 'static>(s: &Store<K>) -> Vec<Arc<K>> {
    s.state()
}

/// The three stores behind a [`watch`] source, for callers that want to look
/// at objects directly.
#[derive(Clone)]
pub struct Stores {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub nodes: Store<Node>,
    opts: SourceOptions,
}

impl Stores {
    /// The stores' current contents as a sorted snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            services: collect(&self.services),
            slices: collect(&self.slices),
            nodes: collect(&self.nodes),
        };
        self.opts.filter(&mut s);
        sort_snapshot(&mut s);
        s
    }

    /// Waits until all three stores finished their first list.
    pub async fn ready(&self) {
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
    }
}

/// Starts the watchers and the publisher. Must be called inside a Tokio
/// runtime. The first snapshot is published once all three lists are done.
pub fn watch(client: Client, opts: SourceOptions) -> SnapshotRx {
    watch_stores(client, opts).0
}

/// Like [`watch`], also returning the stores.
pub fn watch_stores(client: Client, opts: SourceOptions) -> (SnapshotRx, Stores) {
    let changed = Arc::new(Notify::new());
    // The selector filters on the server (less to list and watch) and again
    // in Stores::snapshot (the same semantics for both sources).
    let svc_config = match &opts.service_selector {
        Some(sel) => watcher::Config::default().labels(&sel.to_string()),
        None => watcher::Config::default(),
    };
    let stores = Stores {
        services: drive(
            Api::<Service>::all(client.clone()),
            "services",
            svc_config,
            changed.clone(),
        ),
        slices: drive(
            Api::<EndpointSlice>::all(client.clone()),
            "endpointslices",
            watcher::Config::default(),
            changed.clone(),
        ),
        nodes: drive(
            Api::<Node>::all(client),
            "nodes",
            watcher::Config::default(),
            changed.clone(),
        ),
        opts: opts.clone(),
    };
    let (tx, rx) = watch::channel(None);
    let st = stores.clone();
    tokio::spawn(async move {
        st.ready().await;
        let first = st.snapshot();
        tracing::info!(
            services = first.services.len(),
            slices = first.slices.len(),
            nodes = first.nodes.len(),
            "Kubernetes API: initial lists complete"
        );
        if tx.send(Some(Arc::new(first))).is_err() {
            return;
        }
        super::publish_debounced(tx, changed, opts.debounce, move || Some(st.snapshot())).await;
    });
    (rx, stores)
}
