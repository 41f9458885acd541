//! # Model: Kubernetes objects -> desired map contents
//!
//! Pure Rust, no I/O. Services, EndpointSlices and Nodes (the k8s-openapi
//! types the sources hand over, see [`Snapshot`]) become a [`Desired`]: per
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
//! `tracing` when first seen, listed in [`Desired::skipped`]); one bad object
//! never stops the others. Headless Services and ExternalName Services are DNS
//! only: skipped silently.
//!
//! Honoured: ClusterIP (+ clusterIPs), NodePort, LoadBalancer
//! (status.loadBalancer.ingress IPs), externalIPs, multi-port, named
//! targetPorts (resolved by the EndpointSlice port of the same name), several
//! EndpointSlices per Service (label `kubernetes.io/service-name`), endpoint
//! conditions (ready; serving + terminating only when no ready one exists, per
//! frontend backend set), nodeName (local vs remote, the node's InternalIP,
//! VTEP MAC from a configurable annotation, podCIDR(s)),
//! externalTrafficPolicy and internalTrafficPolicy `Local`, sessionAffinity
//! ClientIP with timeoutSeconds (default 10800), loadBalancerSourceRanges.
//! Not used: topology zones and hints (accepted and ignored: every node
//! balances over all endpoints, which is what `trafficDistribution` unset
//! means), appProtocol, healthCheckNodePort, IPv6 (IPv6 addresses, slices and
//! clusterIPs of dual-stack Services are ignored silently).
//!
//! An endpoint without nodeName is placed by pod CIDR: on another node's CIDR
//! it is that node's, else it is treated as local (the kernel routes it, e.g.
//! an address outside the cluster in a hand-written EndpointSlice).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use xlb_bpf::{Kind, Proto};

pub use crate::maglev::MaglevConfig;

mod compute;
#[cfg(test)]
mod tests;

/// Everything the sources know, as the Kubernetes objects themselves. Both
/// sources (API watchers, manifest directory) produce this; the model turns it
/// into desired map contents. Objects are shared (`Arc`): the kube-rs stores,
/// every snapshot and the [`Model`] hold one copy of each object between
/// them, and a snapshot costs one reference count per object.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub nodes: Vec<Arc<Node>>,
}

/// Flannel's annotation: JSON `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`.
pub const FLANNEL_VTEP_ANNOTATION: &str = "flannel.alpha.coreos.com/backend-data";
/// xlb's own annotation: a plain `aa:bb:cc:dd:ee:ff`. Always accepted.
pub const XLB_VTEP_ANNOTATION: &str = "xlb.io/vtep-mac";
/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// sessionAffinityConfig.clientIP.timeoutSeconds when unset (Kubernetes' default).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// What the model needs to know about this node and the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// This node's name (Node metadata.name; endpoints with this nodeName are local).
    pub node_name: String,
    /// This node's addresses (NodePort matches any of them); the own Node's
    /// InternalIP/ExternalIP addresses are added.
    pub node_addrs: Vec<Ipv4Addr>,
    /// Node annotation holding the VTEP MAC: either flannel's JSON
    /// (`{"VtepMAC": ".."}`) or a plain MAC. [`XLB_VTEP_ANNOTATION`] is always
    /// accepted as a fallback.
    pub vtep_mac_annotation: String,
    /// Maglev table sizes.
    pub maglev: MaglevConfig,
    /// When not empty, only the node addresses inside these CIDRs take
    /// NodePorts (kube-proxy's `--nodeport-addresses`).
    pub nodeport_cidrs: Vec<(Ipv4Addr, u8)>,
}

/// Whether `a` is inside one of `cidrs` (prefix lengths 0..=32).
pub fn in_cidrs(a: Ipv4Addr, cidrs: &[(Ipv4Addr, u8)]) -> bool {
    cidrs.iter().any(|(net, len)| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from((*len).min(32)))
            .unwrap_or(0);
        u32::from(a) & mask == u32::from(*net) & mask
    })
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            nodeport_cidrs: Vec::new(),
            node_addrs: Vec::new(),
            vtep_mac_annotation: FLANNEL_VTEP_ANNOTATION.into(),
            maglev: MaglevConfig::default(),
        }
    }
}

/// What the `services` map matches: an address (ClusterIP, LoadBalancer
/// ingress, ExternalIP) or, with `addr: None`, a NodePort on any local address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendKey {
    pub addr: Option<Ipv4Addr>,
    pub port: u16,
    pub proto: Proto,
}

impl FrontendKey {
    /// The map key.
    pub fn svc_key(&self) -> xlb_bpf::types::xlb_svc_key {
        use xlb_bpf::types::xlb_svc_key;
        match self.addr {
            Some(a) => xlb_svc_key::addr(SocketAddrV4::new(a, self.port), self.proto),
            None => xlb_svc_key::nodeport(self.port, self.proto),
        }
    }
}

impl std::fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            None => write!(f, "*:{}/{} (NodePort)", self.port, self.proto),
        }
    }
}

/// One entry of the `services` map, before ids and regions are assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    pub key: FrontendKey,
    pub kind: Kind,
    /// `XLB_SVC_F_*`.
    pub flags: u32,
    /// Seconds, meaningful with `XLB_SVC_F_AFFINITY`.
    pub affinity_timeout: u32,
    /// Maglev `M` for `backends.len()`; 0 when there is no usable backend
    /// (the data plane rejects).
    pub table_size: u32,
    /// The backends to balance over (identities, sorted, unique); each is in
    /// the port's [`ServicePort::backends`].
    pub backends: Vec<SocketAddrV4>,
    /// How many of `backends` are on this node.
    pub n_local: u32,
}

/// An endpoint to balance to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity (and DNAT target).
    pub addr: SocketAddrV4,
    /// Underlay address of its node; `None` = this node.
    pub node: Option<Ipv4Addr>,
    /// Serving but terminating (used only because no ready endpoint exists).
    pub terminating: bool,
}

/// One port of a Service: the unit of svc_id, stats and names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `"ns/name:port/PROTO"`, e.g. `"default/web:80/TCP"`.
    pub name: String,
    pub frontends: Vec<Frontend>,
    /// Every backend any frontend uses, sorted by address, unique.
    pub backends: Vec<Backend>,
    /// loadBalancerSourceRanges `(network, prefix)`, only when a LoadBalancer
    /// frontend carries `XLB_SVC_F_SRC_RANGES`.
    pub src_ranges: Vec<(Ipv4Addr, u8)>,
}

/// What one Service object asks of the data plane.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceDesired {
    pub ports: Vec<ServicePort>,
}

/// A tunnel entry: another node's pod CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEntry {
    pub node: Ipv4Addr,
    pub vtep_mac: [u8; 6],
}

/// Desired contents of the maps the agent owns.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Desired {
    /// Per Service object, keyed `"ns/name"`.
    pub services: BTreeMap<String, Arc<ServiceDesired>>,
    /// `(network, prefix)` -> node, for every other node with an address,
    /// a VTEP MAC and pod CIDR(s).
    pub tunnels: BTreeMap<(Ipv4Addr, u8), TunnelEntry>,
    /// This node's addresses (NodePort).
    pub local_addrs: BTreeSet<Ipv4Addr>,
    /// `(object, reason)` for everything skipped, e.g.
    /// `("Service default/web port 0/TCP", "port 0 out of range")`.
    pub skipped: Vec<(String, String)>,
}

impl Desired {
    /// Every Service port.
    pub fn ports(&self) -> impl Iterator<Item = &ServicePort> {
        self.services.values().flat_map(|s| s.ports.iter())
    }

    /// Every frontend with its port.
    pub fn frontends(&self) -> impl Iterator<Item = (&ServicePort, &Frontend)> {
        self.ports()
            .flat_map(|p| p.frontends.iter().map(move |f| (p, f)))
    }

    /// Every backend, by identity.
    pub fn backends(&self) -> BTreeMap<SocketAddrV4, &Backend> {
        self.ports()
            .flat_map(|p| p.backends.iter().map(|b| (b.addr, b)))
            .collect()
    }

    /// A Service port by name.
    pub fn port(&self, name: &str) -> Option<&ServicePort> {
        self.ports().find(|p| p.name == name)
    }
}

/// Builds the desired state from a snapshot in one go.
pub fn build(snap: &Snapshot, cfg: &ModelConfig) -> Desired {
    Model::from_snapshot(snap, cfg.clone()).desired().clone()
}

/// What [`Model::apply_snapshot`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDelta {
    /// Objects added or changed (each fed to the model).
    pub upserted: usize,
    /// Objects gone.
    pub removed: usize,
    /// Whether what the maps get changed (services, tunnels, local
    /// addresses; not the skip reasons).
    pub changed: bool,
}

/// Whether a source's object is the one the model holds: the same `Arc`,
/// or else by resourceVersion / content. Objects from the
/// API server both carry a resourceVersion, which changes on every write of
/// the object: equal means unchanged, without comparing content (a deep
/// comparison of 20k objects costs tens of ms). Without one on either side
/// (manifest files) the content decides.
fn same_object<
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + PartialEq,
>(
    old: &Arc<K>,
    new: &Arc<K>,
) -> bool {
    if Arc::ptr_eq(old, new) {
        return true; // the very object (kube-rs stores keep unchanged ones)
    }
    match (
        &old.metadata().resource_version,
        &new.metadata().resource_version,
    ) {
        (Some(a), Some(b)) => a == b,
        _ => old == new,
    }
}

/// What the model keeps of a Node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct NodeInfo {
    /// First IPv4 InternalIP.
    pub addr: Option<Ipv4Addr>,
    /// Every IPv4 InternalIP/ExternalIP.
    pub addrs: Vec<Ipv4Addr>,
    pub cidrs: Vec<(Ipv4Addr, u8)>,
    pub vtep_mac: Option<[u8; 6]>,
}

/// The incremental model: keeps the objects and indexes, and the desired
/// state, updating only what an event touches.
#[derive(Debug)]
pub struct Model {
    cfg: ModelConfig,
    services: HashMap<String, Arc<Service>>,
    slices: HashMap<String, Arc<EndpointSlice>>,
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
    desired: Desired,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    let ns = meta.namespace.as_deref().unwrap_or("default");
    Some(format!("{ns}/{name}"))
}

/// Writes [`key_of`] into `buf`; false when the object has no name.
fn key_into(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    buf: &mut String,
) -> bool {
    let Some(name) = meta.name.as_deref().filter(|n| !n.is_empty()) else {
        return false;
    };
    buf.clear();
    buf.push_str(meta.namespace.as_deref().unwrap_or("default"));
    buf.push('/');
    buf.push_str(name);
    true
}

/// One kind of a snapshot against the objects the model holds.
struct KindDiff<'a, T> {
    /// `(key, object)` added or changed, in snapshot order (last wins).
    changed: Vec<(String, &'a Arc<T>)>,
    /// Keys held but no longer in the snapshot.
    gone: Vec<String>,
    /// Objects without a name.
    nameless: usize,
}

/// Diffs `objs` against `have`. The sources hand over snapshots sorted by
/// `namespace/name` ([`crate::sources::sort_snapshot`]): then one pass with
/// one lookup per object (no per-object allocation) finds the changes, and
/// a count tells whether anything is gone. Unsorted input or duplicate names
/// take the general path (last object of a name wins).
fn diff_kind<'a, T, S>(have: &HashMap<String, Arc<T>, S>, objs: &'a [Arc<T>]) -> KindDiff<'a, T>
where
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + PartialEq,
    S: std::hash::BuildHasher,
{
    let mut d = KindDiff {
        changed: Vec::new(),
        gone: Vec::new(),
        nameless: 0,
    };
    let (mut buf, mut prev) = (String::new(), String::new());
    let mut sorted = true;
    let mut matched = 0;
    for o in objs {
        if !key_into(o.metadata(), &mut buf) {
            d.nameless += 1;
            continue;
        }
        if sorted && !prev.is_empty() && buf <= prev {
            sorted = false;
            break;
        }
        std::mem::swap(&mut prev, &mut buf);
        match have.get(prev.as_str()) {
            Some(old) => {
                matched += 1;
                if !same_object(old, o) {
                    d.changed.push((prev.clone(), o));
                }
            }
            None => d.changed.push((prev.clone(), o)),
        }
    }
    if sorted {
        if matched != have.len() {
            let mut present: HashSet<String> = HashSet::with_capacity(objs.len());
            for o in objs {
                if key_into(o.metadata(), &mut buf) {
                    present.insert(buf.clone());
                }
            }
            d.gone = have
                .keys()
                .filter(|k| !present.contains(k.as_str()))
                .cloned()
                .collect();
        }
        return d;
    }
    // General path: last object of each name.
    d = KindDiff {
        changed: Vec::new(),
        gone: Vec::new(),
        nameless: 0,
    };
    let mut last: HashMap<String, &'a Arc<T>> = HashMap::with_capacity(objs.len());
    let mut order: Vec<String> = Vec::new();
    for o in objs {
        match key_of(o.metadata()) {
            Some(k) => {
                if last.insert(k.clone(), o).is_none() {
                    order.push(k);
                }
            }
            None => d.nameless += 1,
        }
    }
    d.gone = have
        .keys()
        .filter(|k| !last.contains_key(k.as_str()))
        .cloned()
        .collect();
    for k in order {
        let o = last[&k];
        if !have.get(&k).is_some_and(|old| same_object(old, o)) {
            d.changed.push((k, o));
        }
    }
    d
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
                let info = compute::node_info(n, &m.cfg, &mut reasons);
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
        let Some(k) = key_of(&svc.metadata) else {
            self.skip_one("Service ?", "Service", "metadata.name missing");
            self.rebuild_skipped();
            return false;
        };
        self.services.insert(k.clone(), Arc::new(svc.clone()));
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
        let Some(k) = key_of(&slice.metadata) else {
            self.skip_one("EndpointSlice ?", "EndpointSlice", "metadata.name missing");
            self.rebuild_skipped();
            return false;
        };
        let old_owner = self.slice_owner.get(&k).cloned();
        let new_owner = self.index_slice(Arc::new(slice.clone()));
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
        let info = compute::node_info(node, &self.cfg, &mut reasons);
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

    /// Brings the model to exactly the objects of `snap` (what a source
    /// publishes: the complete current view), touching only what differs
    /// from the objects it holds: objects are matched by kind and
    /// `namespace/name`; one counts as changed when its resourceVersion
    /// differs, or, when it has none (manifest files), when its content
    /// differs. Only the Services a changed object belongs to are
    /// recomputed (every Service when a Node's addresses, pod CIDRs or VTEP
    /// MAC changed), so unchanged Services keep their `Arc` and
    /// [`crate::sync::Syncer::apply`] skips them. The result equals
    /// [`build`]`(snap)`. Duplicate names: the last object wins, as in
    /// [`build`].
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> SnapshotDelta {
        let mut delta = SnapshotDelta::default();
        // Nameless objects are re-reported from this snapshot alone.
        for owner in ["Service ?", "EndpointSlice ?", "Node ?"] {
            self.skipped.remove(owner);
        }

        // Nodes.
        let mut nodes: HashMap<&str, &Arc<Node>> = HashMap::with_capacity(snap.nodes.len());
        for n in &snap.nodes {
            match n.metadata.name.as_deref().filter(|n| !n.is_empty()) {
                Some(name) => {
                    nodes.insert(name, n);
                }
                None => self.skip_one("Node ?", "Node", "metadata.name missing"),
            }
        }
        let mut nodes_changed = false;
        let gone: Vec<String> = self
            .node_objs
            .keys()
            .filter(|k| !nodes.contains_key(k.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.skipped.remove(&format!("Node {name}"));
            self.node_objs.remove(&name);
            nodes_changed |= self.nodes.remove(&name).is_some();
            delta.removed += 1;
        }
        for (name, n) in nodes {
            if self
                .node_objs
                .get(name)
                .is_some_and(|old| same_object(old, n))
            {
                continue;
            }
            delta.upserted += 1;
            let mut reasons = Vec::new();
            let info = compute::node_info(n, &self.cfg, &mut reasons);
            self.set_reasons(&format!("Node {name}"), reasons);
            self.node_objs.insert(name.to_string(), n.clone());
            if self.nodes.get(name) != Some(&info) {
                self.nodes.insert(name.to_string(), info);
                nodes_changed = true;
            }
        }

        // EndpointSlices: every Service a changed slice left or joined is dirty.
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let sd = diff_kind(&self.slices, &snap.slices);
        for _ in 0..sd.nameless {
            self.skip_one("EndpointSlice ?", "EndpointSlice", "metadata.name missing");
        }
        for k in sd.gone {
            self.slices.remove(&k);
            self.skipped.remove(&format!("EndpointSlice {k}"));
            if let Some(o) = self.slice_owner.remove(&k) {
                if let Some(set) = self.slices_by_svc.get_mut(&o) {
                    set.remove(&k);
                    if set.is_empty() {
                        self.slices_by_svc.remove(&o);
                    }
                }
                dirty.insert(o);
            }
            delta.removed += 1;
        }
        for (k, sl) in sd.changed {
            delta.upserted += 1;
            if let Some(o) = self.slice_owner.get(&k) {
                dirty.insert(o.clone());
            }
            if let Some(o) = self.index_slice(sl.clone()) {
                dirty.insert(o);
            }
        }

        // Services.
        let vd = diff_kind(&self.services, &snap.services);
        for _ in 0..vd.nameless {
            self.skip_one("Service ?", "Service", "metadata.name missing");
        }
        for k in vd.gone {
            self.services.remove(&k);
            dirty.insert(k);
            delta.removed += 1;
        }
        for (k, sv) in vd.changed {
            delta.upserted += 1;
            self.services.insert(k.clone(), sv.clone());
            dirty.insert(k);
        }

        // Recompute what the changes touch.
        if nodes_changed {
            // Every Service there is; dirty ones gone are dropped below.
            delta.changed |= self.node_changed();
        }
        for k in &dirty {
            if !nodes_changed || !self.services.contains_key(k) {
                delta.changed |= self.recompute(k);
            }
        }
        self.rebuild_skipped();
        delta
    }

    fn node_changed(&mut self) -> bool {
        let mut changed = self.refresh_nodes();
        let keys: Vec<String> = self.services.keys().cloned().collect();
        for k in keys {
            changed |= self.recompute(&k);
        }
        changed
    }

    /// Indexes a slice under its Service; returns the owner key.
    fn index_slice(&mut self, slice: Arc<EndpointSlice>) -> Option<String> {
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

    /// Recomputes one Service; returns whether its desired entry changed.
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
        });
        self.set_reasons(&owner, reasons);
        match (new, self.desired.services.get(key)) {
            (None, None) => false,
            (None, Some(_)) => {
                self.desired.services.remove(key);
                true
            }
            (Some(n), Some(old)) if **old == n => false,
            (Some(n), _) => {
                self.desired.services.insert(key.to_string(), Arc::new(n));
                true
            }
        }
    }

    /// Tunnel entries and local addresses from the nodes.
    fn refresh_nodes(&mut self) -> bool {
        let mut tunnels = BTreeMap::new();
        let mut reasons = Vec::new();
        for (name, n) in &self.nodes {
            if *name == self.cfg.node_name {
                continue;
            }
            let (Some(addr), Some(mac)) = (n.addr, n.vtep_mac) else {
                if !n.cidrs.is_empty() {
                    reasons.push((
                        format!("Node {name}"),
                        if n.addr.is_none() {
                            "no IPv4 InternalIP: no tunnel entry for its pod CIDRs".to_string()
                        } else {
                            format!(
                                "no VTEP MAC (annotation {} or {XLB_VTEP_ANNOTATION}): no tunnel entry for its pod CIDRs",
                                self.cfg.vtep_mac_annotation
                            )
                        },
                    ));
                }
                continue;
            };
            for c in &n.cidrs {
                tunnels.insert(
                    *c,
                    TunnelEntry {
                        node: addr,
                        vtep_mac: mac,
                    },
                );
            }
        }
        self.set_reasons("Nodes (tunnels)", reasons);
        let mut local: BTreeSet<Ipv4Addr> = self.cfg.node_addrs.iter().copied().collect();
        if let Some(me) = self.nodes.get(&self.cfg.node_name) {
            local.extend(me.addrs.iter().copied());
        }
        if !self.cfg.nodeport_cidrs.is_empty() {
            local.retain(|a| in_cidrs(*a, &self.cfg.nodeport_cidrs));
        }
        let changed = tunnels != self.desired.tunnels || local != self.desired.local_addrs;
        self.desired.tunnels = tunnels;
        self.desired.local_addrs = local;
        changed
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
    }
}
