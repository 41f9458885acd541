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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

pub use crate::model::Snapshot;

pub mod kube;
pub mod manifests;

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
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            poll: Duration::from_millis(500),
        }
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
