//! # Model: Kubernetes objects -> desired map contents
//!
//! Pure Rust, no I/O. Services, EndpointSlices and Nodes (the k8s-openapi
//! Service and Node, and the compact [`Slice`] each EndpointSlice becomes,
//! as the sources hand them over, see [`Snapshot`]) become a [`Desired`]: per
//! Service, its ports, each with its frontends (what the `services` map
//! matches), the backends they balance over (Maglev identity `addr:port`) and
//! its source ranges; plus the tunnel entries (other nodes' pod CIDRs) and
//! this node's addresses.
//!
//! [`build`] does it in one go; [`Model`] does it incrementally (a change to
//! one EndpointSlice recomputes only its Service, and unchanged Services keep
//! the same `Arc`, so [`crate::sync::Syncer::apply`] skips them by pointer).
//!
//! Bad objects and bad fields are skipped with a reason (logged with
//! `tracing` when first seen, listed in [`Desired::skipped`], once however
//! often the object is seen); one bad object never stops the others.
//! Headless Services and ExternalName Services are DNS only: skipped
//! silently. Services labelled `service.kubernetes.io/service-proxy-name`
//! (any value) or `service.kubernetes.io/headless` (on the Service or one of
//! its EndpointSlices) are left alone, as kube-proxy leaves them (listed in
//! the skipped objects).
//!
//! Honoured: ClusterIP (+ clusterIPs), NodePort, LoadBalancer
//! (status.loadBalancer.ingress IPs), externalIPs, multi-port, named
//! targetPorts (resolved by the EndpointSlice port of the same name), several
//! EndpointSlices per Service (label `kubernetes.io/service-name`),
//! nodeName (local vs remote, the node's InternalIP of the endpoint's
//! family, VTEP MAC from a configurable annotation, podCIDRs), sessionAffinity ClientIP with
//! timeoutSeconds (default 10800), loadBalancerSourceRanges,
//! healthCheckNodePort (in [`ServiceDesired`], for the agent's health server).
//!
//! Endpoint selection is kube-proxy's (CategorizeEndpoints): the endpoints
//! whose `ready` condition is true as published (publishNotReadyAddresses
//! makes the EndpointSlice controller publish ready=true even while a pod
//! terminates; unset = ready), else the serving-and-terminating ones; per
//! traffic policy and locality:
//! - ClusterIP: internalTrafficPolicy Cluster: the cluster-wide set; Local:
//!   this node's set, and without one (while endpoints exist elsewhere)
//!   `XLB_SVC_F_LOCAL` with an empty table: the data plane drops (counted).
//! - NodePort, LoadBalancer, ExternalIP: externalTrafficPolicy Cluster: the
//!   cluster-wide set; Local: this node's set for clients outside the cluster
//!   (`XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL`; none: dropped, counted), and an
//!   entry of the same frontend for clients inside the cluster
//!   ([`FrontendKey::internal`]: pods, the node) over the cluster-wide set.
//! - No usable endpoint anywhere: table size 0 without `XLB_SVC_F_LOCAL`:
//!   the data plane rejects (TCP RST / ICMP unreachable).
//!
//! Graceful termination: every endpoint a port's EndpointSlices list is one
//! of its [`ServicePort::backends`]; those in no frontend's set (terminating
//! while others are ready, not ready, outside a Local set) are
//! [`Backend::draining`]: flows that use them keep them, new flows (and
//! session affinity) never choose them; they go when the EndpointSlices stop
//! listing them.
//!
//! Frontends (module `claims`): a frontend two Services claim goes to the one
//! with the older creationTimestamp, then the smaller namespace/name, in any
//! event order; the other is listed in [`Desired::conflicts`] and gets it as
//! soon as the owner goes. An externalIP or LoadBalancer ingress IP equal to
//! another Service's ClusterIP, and any frontend address that is loopback,
//! multicast, broadcast, unspecified or link-local, is refused; so are
//! NodePorts outside [`ModelConfig::nodeport_range`].
//!
//! Both address families (docs/ipv6.md): a Service is served in the
//! families of its clusterIPs (ipFamilies when it has none usable); each
//! family's frontends (clusterIP, NodePort on the node's addresses of that
//! family, LoadBalancer ingress, externalIPs) balance over the endpoints of
//! the EndpointSlices of that addressType, under the port's one svc_id;
//! IPv6 pod CIDRs go to the node's IPv6 underlay (flannel's `public-ipv6`,
//! else its IPv6 InternalIP) and IPv6 VTEP (`backend-v6-data`); source
//! ranges of one family leave the other family's LoadBalancer frontends
//! admitting no client. Link-local, multicast and v4-mapped addresses, an
//! address of the other family in an EndpointSlice and prefixes past the
//! family's length are skipped with a reason.
//!
//! Not used: topology zones and hints (accepted and ignored: every node
//! balances over all endpoints, which is what `trafficDistribution` unset
//! means), appProtocol.
//!
//! An endpoint without nodeName is placed by address: a Node's own address
//! makes it a host-network endpoint of that node ([`Backend::host_network`]:
//! a remote one is reached over the underlay, not the pod-CIDR tunnel);
//! else a node's pod CIDR; else it is treated as local (the kernel routes
//! it, e.g. an address outside the cluster in a hand-written EndpointSlice).
//!
//! Files: this one holds [`Model`] and its per-object updates; `types` what
//! the model reads and hands out, `compute` and `endpoints` one Service,
//! `claims` frontend ownership, `nodes` the Node-derived state, `slice` the
//! compact EndpointSlice, `snapshot` [`Model::apply_snapshot`], `diff` the
//! object comparison it uses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub use crate::maglev::MaglevConfig;
pub use slice::{EndpointAddr, Slice, SliceEndpoint};

mod claims;
mod compute;
mod diff;
mod endpoints;
mod nodes;
mod slice;
mod snapshot;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_churn;
#[cfg(test)]
mod tests_dual_stack;
#[cfg(test)]
mod tests_incremental;
#[cfg(test)]
mod tests_inputs;
#[cfg(test)]
mod tests_nodes;
#[cfg(test)]
mod tests_semantics;
mod types;

use diff::key_of;
pub(crate) use nodes::NodeInfo;
pub use snapshot::SnapshotDelta;
pub use types::*;

/// Builds the desired state from a snapshot in one go.
pub fn build(snap: &Snapshot, cfg: &ModelConfig) -> Desired {
    Model::from_snapshot(snap, cfg.clone()).desired().clone()
}

/// The incremental model: keeps the objects and indexes, and the desired
/// state, updating only what an event touches.
#[derive(Debug)]
pub struct Model {
    cfg: ModelConfig,
    services: HashMap<String, Arc<Service>>,
    slices: HashMap<String, Arc<Slice>>,
    /// slice key -> owning Service key (from its label).
    slice_owner: HashMap<String, String>,
    /// Service key -> its slices' keys.
    slices_by_svc: HashMap<String, BTreeSet<String>>,
    nodes: BTreeMap<String, NodeInfo>,
    /// The Node objects themselves, to tell a changed one cheaply in
    /// [`Model::apply_snapshot`].
    node_objs: HashMap<String, Arc<Node>>,
    /// owner object -> its skip reasons.
    skipped: BTreeMap<String, Vec<(String, String)>>,
    /// Frontend ownership across Services.
    claims: claims::Claims,
    /// Service key -> the frontends it claims and does not get.
    conflicts: BTreeMap<String, Vec<FrontendConflict>>,
    desired: Desired,
}

impl Model {
    pub fn new(cfg: ModelConfig) -> Self {
        let mut m = Self {
            cfg,
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_owner: HashMap::new(),
            slices_by_svc: HashMap::new(),
            nodes: BTreeMap::new(),
            node_objs: HashMap::new(),
            skipped: BTreeMap::new(),
            claims: claims::Claims::default(),
            conflicts: BTreeMap::new(),
            desired: Desired::default(),
        };
        m.refresh_nodes();
        m
    }

    /// A model holding every object of `snap`.
    pub fn from_snapshot(snap: &Snapshot, cfg: ModelConfig) -> Self {
        let mut m = Self::new(cfg);
        for n in &snap.nodes {
            if let Some(name) = n.metadata.name.clone().filter(|n| !n.is_empty()) {
                let mut reasons = Vec::new();
                let info = endpoints::node_info(n, &m.cfg, &mut reasons);
                m.set_reasons(&format!("Node {name}"), reasons);
                m.node_objs.insert(name.clone(), n.clone());
                m.nodes.insert(name, info);
            } else {
                m.skip_one("Node ?", "Node", "metadata.name missing");
            }
        }
        for s in &snap.slices {
            if m.index_slice(s.clone()).is_none() && key_of(&s.metadata).is_none() {
                m.skip_one("EndpointSlice ?", "EndpointSlice", "metadata.name missing");
            }
        }
        for s in &snap.services {
            match key_of(&s.metadata) {
                Some(k) => {
                    m.services.insert(k, s.clone());
                }
                None => m.skip_one("Service ?", "Service", "metadata.name missing"),
            }
        }
        m.refresh_nodes();
        let keys: Vec<String> = m.services.keys().cloned().collect();
        for k in keys {
            m.recompute(&k);
        }
        m.rebuild_skipped();
        m
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The current desired state.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// Adds or replaces a Service; returns whether the desired state changed.
    pub fn upsert_service(&mut self, svc: &Service) -> bool {
        self.upsert_service_shared(Arc::new(svc.clone()))
    }

    /// [`Model::upsert_service`] of an object handed over as a source holds
    /// it (shared, not copied).
    pub fn upsert_service_shared(&mut self, svc: Arc<Service>) -> bool {
        let Some(k) = key_of(&svc.metadata) else {
            self.skip_one("Service ?", "Service", "metadata.name missing");
            self.rebuild_skipped();
            return false;
        };
        self.services.insert(k.clone(), svc);
        let changed = self.recompute(&k);
        self.rebuild_skipped();
        changed
    }

    /// Removes a Service by `namespace`, `name`.
    pub fn remove_service(&mut self, namespace: &str, name: &str) -> bool {
        let k = format!("{namespace}/{name}");
        self.services.remove(&k);
        let changed = self.recompute(&k);
        self.rebuild_skipped();
        changed
    }

    /// Adds or replaces an EndpointSlice.
    pub fn upsert_slice(&mut self, slice: &EndpointSlice) -> bool {
        self.upsert_slice_shared(Arc::new(Slice::from(slice)))
    }

    /// [`Model::upsert_slice`] of a slice handed over as a source holds it
    /// (shared, not copied).
    pub fn upsert_slice_shared(&mut self, slice: Arc<Slice>) -> bool {
        let Some(k) = key_of(&slice.metadata) else {
            self.skip_one("EndpointSlice ?", "EndpointSlice", "metadata.name missing");
            self.rebuild_skipped();
            return false;
        };
        let old_owner = self.slice_owner.get(&k).cloned();
        let new_owner = self.index_slice(slice);
        let mut changed = false;
        if let Some(o) = old_owner.filter(|o| Some(o) != new_owner.as_ref()) {
            changed |= self.recompute(&o);
        }
        if let Some(o) = new_owner {
            changed |= self.recompute(&o);
        }
        self.rebuild_skipped();
        changed
    }

    /// Removes an EndpointSlice by `namespace`, `name`.
    pub fn remove_slice(&mut self, namespace: &str, name: &str) -> bool {
        let k = format!("{namespace}/{name}");
        self.slices.remove(&k);
        self.skipped.remove(&format!("EndpointSlice {k}"));
        let mut changed = false;
        if let Some(o) = self.slice_owner.remove(&k) {
            if let Some(set) = self.slices_by_svc.get_mut(&o) {
                set.remove(&k);
                if set.is_empty() {
                    self.slices_by_svc.remove(&o);
                }
            }
            changed = self.recompute(&o);
        }
        self.rebuild_skipped();
        changed
    }

    /// Adds or replaces a Node. Only a change of what the model uses
    /// (addresses, pod CIDRs, VTEP MAC) recomputes anything.
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let Some(name) = node.metadata.name.clone().filter(|n| !n.is_empty()) else {
            self.skip_one("Node ?", "Node", "metadata.name missing");
            self.rebuild_skipped();
            return false;
        };
        let mut reasons = Vec::new();
        let info = endpoints::node_info(node, &self.cfg, &mut reasons);
        let owner = format!("Node {name}");
        self.set_reasons(&owner, reasons);
        self.node_objs.insert(name.clone(), Arc::new(node.clone()));
        let changed = if self.nodes.get(&name) != Some(&info) {
            self.nodes.insert(name, info);
            self.node_changed()
        } else {
            false
        };
        self.rebuild_skipped();
        changed
    }

    /// Removes a Node by name.
    pub fn remove_node(&mut self, name: &str) -> bool {
        self.skipped.remove(&format!("Node {name}"));
        self.node_objs.remove(name);
        let changed = self.nodes.remove(name).is_some() && self.node_changed();
        self.rebuild_skipped();
        changed
    }

    /// Indexes a slice under its Service; returns the owner key.
    fn index_slice(&mut self, slice: Arc<Slice>) -> Option<String> {
        let k = key_of(&slice.metadata)?;
        if let Some(old) = self.slice_owner.remove(&k) {
            if let Some(set) = self.slices_by_svc.get_mut(&old) {
                set.remove(&k);
                if set.is_empty() {
                    self.slices_by_svc.remove(&old);
                }
            }
        }
        let owner_obj = format!("EndpointSlice {k}");
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty())
            .map(|svc| {
                let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
                format!("{ns}/{svc}")
            });
        self.slices.insert(k.clone(), slice);
        match owner {
            Some(owner) => {
                self.skipped.remove(&owner_obj);
                self.slice_owner.insert(k.clone(), owner.clone());
                self.slices_by_svc
                    .entry(owner.clone())
                    .or_default()
                    .insert(k);
                Some(owner)
            }
            None => {
                self.set_reasons(
                    &owner_obj.clone(),
                    vec![(owner_obj, format!("label {SERVICE_NAME_LABEL} missing"))],
                );
                None
            }
        }
    }

    /// Recomputes one Service, then the final state of every Service whose
    /// frontend ownership that can change; returns whether a desired entry
    /// changed.
    fn recompute(&mut self, key: &str) -> bool {
        let owner = format!("Service {key}");
        let mut reasons = Vec::new();
        let new = self.services.get(key).and_then(|svc| {
            let slices = self
                .slices_by_svc
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|k| self.slices.get(k).map(|s| &**s));
            compute::service(svc, key, slices, &self.nodes, &self.cfg, &mut reasons)
                .map(|d| (claims::rank_of(svc, key), Arc::new(d)))
        });
        self.set_reasons(&owner, reasons);
        let mut changed = false;
        for k in self.claims.set(key, new) {
            changed |= self.finalize(&k);
        }
        changed
    }

    /// Derives one Service's desired entry from its computed state and the
    /// frontends it owns; returns whether it changed.
    fn finalize(&mut self, key: &str) -> bool {
        let mut reasons = Vec::new();
        let mut conflicts = Vec::new();
        let new = self.claims.resolve(key, &mut reasons, &mut conflicts);
        self.set_reasons(&format!("Service {key} (frontends)"), reasons);
        if conflicts.is_empty() {
            self.conflicts.remove(key);
        } else {
            self.conflicts.insert(key.to_string(), conflicts);
        }
        match (new, self.desired.services.get(key)) {
            (None, None) => false,
            (None, Some(_)) => {
                self.desired.services.remove(key);
                true
            }
            (Some(n), Some(old)) if Arc::ptr_eq(old, &n) || **old == *n => false,
            (Some(n), _) => {
                self.desired.services.insert(key.to_string(), n);
                true
            }
        }
    }

    fn skip_one(&mut self, object: &str, owner_kind: &str, reason: &str) {
        tracing::warn!(object, reason, "skipped {owner_kind}");
        self.skipped
            .entry(format!("{owner_kind} ?"))
            .or_default()
            .push((object.to_string(), reason.to_string()));
    }

    /// Replaces an owner's reasons, logging the new ones once.
    fn set_reasons(&mut self, owner: &str, reasons: Vec<(String, String)>) {
        let old = self.skipped.get(owner);
        for (object, reason) in &reasons {
            if !old.is_some_and(|o| o.iter().any(|(ob, r)| ob == object && r == reason)) {
                tracing::warn!(object = %object, reason = %reason, "skipped");
            }
        }
        if reasons.is_empty() {
            self.skipped.remove(owner);
        } else {
            self.skipped.insert(owner.to_string(), reasons);
        }
    }

    fn rebuild_skipped(&mut self) {
        self.desired.skipped = self.skipped.values().flatten().cloned().collect();
        let mut conflicts: Vec<FrontendConflict> =
            self.conflicts.values().flatten().cloned().collect();
        conflicts.sort();
        self.desired.conflicts = conflicts;
    }
}
