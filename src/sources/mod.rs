//! # Sources: where the agent learns about Services, EndpointSlices and Nodes
//!
//! Two sources produce the same thing, a complete [`Snapshot`] of the
//! Kubernetes objects the model needs:
//!
//! - [`kube`]: the Kubernetes API through kube-rs watchers and reflector
//!   stores (list, then watch; relist on 410 Gone; reconnect on a dropped
//!   connection);
//! - [`manifests`]: a directory of ordinary (multi-document) Kubernetes YAML,
//!   re-read when a file changes. This is the source when there is no
//!   cluster (the netns lab, a single box, tests).
//!
//! Both publish on a [`tokio::sync::watch`] channel ([`SnapshotRx`]): `None`
//! until the first *complete* view (every list done), then a fresh
//! `Arc<Snapshot>` after each burst of changes. Bursts are debounced: the
//! first change arms a timer of [`SourceOptions::debounce`], everything that
//! arrives meanwhile goes into the same snapshot, so a change reaches the maps
//! at most one debounce interval late and a rolling update of 100 pods costs
//! a handful of syncs, not 100. A slow consumer only ever sees the newest
//! snapshot (a watch channel keeps one value).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

pub use crate::model::Snapshot;

pub mod kube;
pub mod kube_client;
pub mod manifests;
pub mod reflect;

pub use kube_client::KubeOptions;

/// Errors of the sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADir(std::path::PathBuf),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] ::kube::Error),
    #[error("Kubernetes config: {0}")]
    KubeConfig(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The receiving end of a source: `None` until the first complete view.
pub type SnapshotRx = watch::Receiver<Option<Arc<Snapshot>>>;

/// Settings shared by both sources.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Time between the first change of a burst and the snapshot that
    /// contains it.
    pub debounce: Duration,
    /// Manifest directory only: how often file metadata is checked.
    pub poll: Duration,
    /// Only Services whose labels match (to run beside kube-proxy on a
    /// subset first). EndpointSlices and Nodes are not filtered: the model
    /// uses slices only for the Services it has.
    pub service_selector: Option<LabelSelector>,
    /// Kubernetes API only: timeouts, keepalive and the progress watchdog.
    pub kube: KubeOptions,
    /// Where the source reports whether it is behind.
    pub status: SourceStatus,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            poll: Duration::from_millis(500),
            service_selector: None,
            kube: KubeOptions::default(),
            status: SourceStatus::default(),
        }
    }
}

/// Whether a source keeps up: per resource (`services`, `manifests`...), the
/// last *progress* (a complete list or read, an event, a bookmark) and the
/// last error. A resource without progress for its bound is *behind*; the
/// agent is not ready while any is. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct SourceStatus(Arc<Mutex<BTreeMap<&'static str, Progress>>>);

#[derive(Debug)]
struct Progress {
    bound: Duration,
    /// The last progress, or when the resource was registered.
    last: Instant,
    error: Option<String>,
}

impl SourceStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Progress>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking `what`: behind when it makes no progress for `bound`.
    pub fn register(&self, what: &'static str, bound: Duration) {
        self.lock().insert(
            what,
            Progress {
                bound,
                last: Instant::now(),
                error: None,
            },
        );
    }

    /// `what` made progress now.
    pub fn progress(&self, what: &'static str) {
        if let Some(p) = self.lock().get_mut(what) {
            p.last = Instant::now();
            p.error = None;
        }
    }

    /// The last error of `what` (shown while it is behind).
    pub fn error(&self, what: &'static str, e: String) {
        if let Some(p) = self.lock().get_mut(what) {
            p.error = Some(e);
        }
    }

    /// Whether `what` made no progress within its bound.
    pub fn stalled(&self, what: &str) -> bool {
        self.lock()
            .get(what)
            .is_some_and(|p| p.last.elapsed() > p.bound)
    }

    /// Why the source is behind, or `None` when it keeps up.
    pub fn behind(&self) -> Option<String> {
        let g = self.lock();
        let why: Vec<String> = g
            .iter()
            .filter(|(_, p)| p.last.elapsed() > p.bound)
            .map(|(w, p)| {
                let mut s = format!("{w}: no progress for {}s", p.last.elapsed().as_secs());
                if let Some(e) = &p.error {
                    s.push_str(&format!(" (last error: {e})"));
                }
                s
            })
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Since when the source is behind (the earliest end of a bound passed).
    pub fn behind_since(&self) -> Option<Instant> {
        self.lock()
            .values()
            .filter(|p| p.last.elapsed() > p.bound)
            .map(|p| p.last + p.bound)
            .min()
    }
}

impl SourceOptions {
    /// Drops the Services the selector does not match.
    pub fn filter(&self, snap: &mut Snapshot) {
        if let Some(sel) = &self.service_selector {
            snap.services
                .retain(|s| sel.matches(s.metadata.labels.as_ref()));
        }
    }
}

/// An equality-based Kubernetes label selector: comma-separated `k=v`,
/// `k==v`, `k!=v`, `k` (exists) and `!k` (does not exist), all of which must
/// hold. Set-based forms (`in`, `notin`) are refused when parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    reqs: Vec<Req>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

impl std::str::FromStr for LabelSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key_ok = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        };
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Req::Absent(k.trim().into())
            } else {
                Req::Exists(part.into())
            };
            let (Req::Eq(k, _) | Req::Ne(k, _) | Req::Exists(k) | Req::Absent(k)) = &req;
            if !key_ok(k) {
                return Err(format!(
                    "{part:?}: not an equality-based label requirement (k=v, k!=v, k, !k)"
                ));
            }
            reqs.push(req);
        }
        if reqs.is_empty() {
            return Err("empty label selector".into());
        }
        Ok(Self {
            text: s.trim().into(),
            reqs,
        })
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl LabelSelector {
    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v),
            Req::Ne(k, v) => get(k) != Some(v),
            Req::Exists(k) => get(k).is_some(),
            Req::Absent(k) => get(k).is_none(),
        })
    }
}

/// Publishes snapshots built by `build` whenever `changed` is notified, at
/// most one per `debounce` interval. Ends when every receiver is gone.
pub(crate) async fn publish_debounced<F>(
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    changed: Arc<Notify>,
    debounce: Duration,
    mut build: F,
) where
    F: FnMut() -> Option<Snapshot>,
{
    loop {
        changed.notified().await;
        if !debounce.is_zero() {
            tokio::time::sleep(debounce).await;
        }
        if let Some(snap) = build() {
            tracing::debug!(
                services = snap.services.len(),
                slices = snap.slices.len(),
                nodes = snap.nodes.len(),
                "publishing snapshot"
            );
            if tx.send(Some(Arc::new(snap))).is_err() {
                return;
            }
        }
    }
}

/// `namespace/name` of an object, for logs and sorting.
pub fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        (_, None) => "<unnamed>".into(),
    }
}

/// Sorts a snapshot's objects by namespace/name so that equal contents compare
/// equal whatever order the source delivered them in.
pub fn sort_snapshot(s: &mut Snapshot) {
    s.services.sort_by_cached_key(|o| object_key(&o.metadata));
    s.slices.sort_by_cached_key(|o| object_key(&o.metadata));
    s.nodes.sort_by_cached_key(|o| object_key(&o.metadata));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let l = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s: LabelSelector = "xlb.io/enabled=true, tier!=db,app,!legacy".parse().unwrap();
        assert!(s.matches(Some(&l(&[("xlb.io/enabled", "true"), ("app", "x")]))));
        assert!(s.matches(Some(&l(&[
            ("xlb.io/enabled", "true"),
            ("app", "x"),
            ("tier", "web")
        ]))));
        assert!(!s.matches(Some(&l(&[
            ("xlb.io/enabled", "true"),
            ("app", "x"),
            ("tier", "db")
        ]))));
        assert!(!s.matches(Some(&l(&[("xlb.io/enabled", "true")]))));
        assert!(!s.matches(Some(&l(&[
            ("xlb.io/enabled", "true"),
            ("app", "x"),
            ("legacy", "")
        ]))));
        assert!(!s.matches(None));
        assert!("a==b"
            .parse::<LabelSelector>()
            .unwrap()
            .matches(Some(&l(&[("a", "b")]))));
        assert!("env in (a,b)".parse::<LabelSelector>().is_err());
        assert!("".parse::<LabelSelector>().is_err());
        assert_eq!(s.to_string(), "xlb.io/enabled=true, tier!=db,app,!legacy");
    }
}
