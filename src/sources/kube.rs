//! # Kubernetes API source
//!
//! Three list/watch loops ([`super::reflect`]: Services, EndpointSlices,
//! Nodes, all namespaces) keep three stores. Each loop lists in pages, then
//! watches from the list's version with bookmarks; a dropped connection is
//! re-watched from the last version seen; a 410 Gone or an undecodable event
//! relists, and the complete list replaces the store at once (objects
//! deleted while we were away disappear). Every request is bounded (list
//! page timeout, watch idle timeout, socket read timeout, TCP keepalive:
//! [`KubeOptions`]) and errors are retried with an exponential backoff
//! (0.8 s doubling to 30 s). A resource without progress for
//! [`KubeOptions::progress`] is reported behind ([`super::SourceStatus`])
//! and relisted; the stores keep the last good state meanwhile.
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

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};
use tokio::sync::{watch, Notify};

pub use super::kube_client::{client_from_config, KubeOptions};
use super::reflect::{self, Store};
use super::{sort_snapshot, Error, Result, Snapshot, SnapshotRx, SourceOptions};
use crate::model::Slice;

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
/// account (`KUBERNETES_SERVICE_HOST` and the mounted token); with the
/// keepalive and timeouts of [`KubeOptions::default`].
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
    client_from_config(config, &KubeOptions::default())
}

/// Starts one list/watch loop into a new store (objects kept as `V`).
fn drive<K, V>(
    api: Api<K>,
    what: &'static str,
    labels: Option<String>,
    changed: Arc<Notify>,
    opts: &SourceOptions,
) -> Arc<Store<V>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + Into<V>
        + 'static,
    V: reflect::Kept,
{
    let store = Arc::new(Store::default());
    tokio::spawn(reflect::run(
        api,
        what,
        labels,
        store.clone(),
        changed,
        opts.status.clone(),
        opts.kube.clone(),
    ));
    store
}

/// The three stores behind a [`watch`] source, for callers that want to look
/// at objects directly.
#[derive(Clone)]
pub struct Stores {
    pub services: Arc<Store<Service>>,
    /// EndpointSlices, kept compact ([`Slice`]).
    pub slices: Arc<Store<Slice>>,
    pub nodes: Arc<Store<Node>>,
    opts: SourceOptions,
}

impl Stores {
    /// The stores' current contents as a sorted snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            services: self.services.state(),
            slices: self.slices.state(),
            nodes: self.nodes.state(),
        };
        self.opts.filter(&mut s);
        sort_snapshot(&mut s);
        s
    }

    /// Waits until all three stores finished their first list.
    pub async fn ready(&self) {
        self.services.wait_ready().await;
        self.slices.wait_ready().await;
        self.nodes.wait_ready().await;
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
    let svc_labels = opts.service_selector.as_ref().map(|s| s.to_string());
    let stores = Stores {
        services: drive(
            Api::<Service>::all(client.clone()),
            "services",
            svc_labels,
            changed.clone(),
            &opts,
        ),
        slices: drive(
            Api::<EndpointSlice>::all(client.clone()),
            "endpointslices",
            None,
            changed.clone(),
            &opts,
        ),
        nodes: drive(
            Api::<Node>::all(client),
            "nodes",
            None,
            changed.clone(),
            &opts,
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
