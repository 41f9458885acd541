//! The model's public types: the snapshot it reads, its configuration, and
//! the desired state it computes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use xlb_bpf::{Kind, Proto};

use super::MaglevConfig;

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
/// A Service with this label (any value) is served by the proxy of that
/// name, never by xlb (as kube-proxy leaves it alone).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// A Service with this label, or whose EndpointSlice has it, is not proxied.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The API server's default `--service-node-port-range`.
pub const DEFAULT_NODEPORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;
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
    /// NodePorts outside this range are refused (`--nodeport-range`, the
    /// API server's `--service-node-port-range`).
    pub nodeport_range: std::ops::RangeInclusive<u16>,
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
            node_addrs: Vec::new(),
            vtep_mac_annotation: FLANNEL_VTEP_ANNOTATION.into(),
            maglev: MaglevConfig::default(),
            nodeport_range: DEFAULT_NODEPORT_RANGE,
            nodeport_cidrs: Vec::new(),
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
    /// The entry clients inside the cluster use for an
    /// externalTrafficPolicy Local frontend (`XLB_SVC_F_EXT_LOCAL`).
    pub internal: bool,
}

impl FrontendKey {
    /// The map key.
    pub fn svc_key(&self) -> xlb_bpf::types::xlb_svc_key {
        use xlb_bpf::types::xlb_svc_key;
        let k = match self.addr {
            Some(a) => xlb_svc_key::addr(SocketAddrV4::new(a, self.port), self.proto),
            None => xlb_svc_key::nodeport(self.port, self.proto),
        };
        if self.internal {
            k.internal()
        } else {
            k
        }
    }

    /// The frontend an internal entry belongs to (itself otherwise).
    pub fn external(self) -> Self {
        Self {
            internal: false,
            ..self
        }
    }
}

impl std::fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{a}:{}/{}", self.port, self.proto)?,
            None => write!(f, "*:{}/{} (NodePort)", self.port, self.proto)?,
        }
        if self.internal {
            f.write_str(" (internal clients)")?;
        }
        Ok(())
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
    /// Maglev `M` for `backends.len()`; 0 when there is no backend to
    /// choose: the data plane rejects, or drops (counted) when `flags` has
    /// `XLB_SVC_F_LOCAL` (a Local policy while endpoints exist elsewhere).
    pub table_size: u32,
    /// The backends to balance over (identities, sorted, unique); each is in
    /// the port's [`ServicePort::backends`].
    pub backends: Vec<SocketAddrV4>,
    /// How many of `backends` are on this node.
    pub n_local: u32,
}

/// An endpoint of a Service port (`XLB_BE_F_*` in the `backends` map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity (and DNAT target).
    pub addr: SocketAddrV4,
    /// Underlay address of its node; `None` = this node.
    pub node: Option<Ipv4Addr>,
    /// The endpoint is terminating (serving or not).
    pub terminating: bool,
    /// In no frontend's backend set (terminating while others are ready, not
    /// ready, or outside a Local policy's set): flows that use it keep it
    /// while the EndpointSlices list it; new flows never choose it.
    pub draining: bool,
    /// Its address is its node's own (a hostNetwork endpoint): a remote one
    /// is reached over the underlay, not the pod-CIDR tunnel
    /// (`XLB_BE_F_HOST_NETWORK`).
    pub host_network: bool,
}

/// One port of a Service: the unit of svc_id, stats and names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `"ns/name:port/PROTO"`, e.g. `"default/web:80/TCP"`.
    pub name: String,
    pub frontends: Vec<Frontend>,
    /// Every endpoint the port's EndpointSlices list, sorted by address,
    /// unique: every backend a frontend uses, and the draining ones.
    pub backends: Vec<Backend>,
    /// loadBalancerSourceRanges `(network, prefix)`, only when a LoadBalancer
    /// frontend carries `XLB_SVC_F_SRC_RANGES`.
    pub src_ranges: Vec<(Ipv4Addr, u8)>,
}

/// What one Service object asks of the data plane.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceDesired {
    pub ports: Vec<ServicePort>,
    /// spec.healthCheckNodePort of a LoadBalancer Service with
    /// externalTrafficPolicy Local (kube-proxy's service health server
    /// answers on it).
    pub health_check_node_port: Option<u16>,
    /// Ready endpoints (`addr:port`, over every port) on this node.
    pub local_ready_endpoints: u32,
}

/// A frontend two Services claim: `owner` has it (older creationTimestamp,
/// then namespace/name; or, for an externalIP / LoadBalancer ingress IP on
/// another Service's ClusterIP, that Service), `service` does not.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrontendConflict {
    pub frontend: FrontendKey,
    /// The Service port that does not get it (`"ns/name:port/PROTO"`).
    pub service: String,
    /// The Service (`"ns/name"`) that has it.
    pub owner: String,
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
    /// The other nodes' addresses (their InternalIP/ExternalIP, inside
    /// `nodeport_cidrs` when set; none of `local_addrs`): a pod's NodePort
    /// traffic to one of them is balanced at the pod's veth.
    pub remote_addrs: BTreeSet<Ipv4Addr>,
    /// `(object, reason)` for everything skipped, e.g.
    /// `("Service default/web port 0/TCP", "port 0 out of range")`.
    pub skipped: Vec<(String, String)>,
    /// Frontends claimed by a Service that another one owns, sorted.
    pub conflicts: Vec<FrontendConflict>,
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

    /// What kube-proxy's service health server answers for: every
    /// LoadBalancer Service with externalTrafficPolicy Local and a
    /// healthCheckNodePort, as `("ns/name", port, ready local endpoints)`
    /// (200 with a count above 0, 503 otherwise).
    pub fn health_checks(&self) -> impl Iterator<Item = (&str, u16, u32)> {
        self.services.iter().filter_map(|(k, s)| {
            s.health_check_node_port
                .map(|p| (k.as_str(), p, s.local_ready_endpoints))
        })
    }
}
