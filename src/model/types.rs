//! The model's public types: the snapshot it reads, its configuration, and
//! the desired state it computes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use xlb_bpf::{Kind, Proto};

use super::{MaglevConfig, Slice};

/// Everything the sources know: the Kubernetes objects themselves, and the
/// EndpointSlices as [`Slice`]s (what the model reads of them, converted as
/// they arrive). Both sources (API watchers, manifest directory) produce
/// this; the model turns it into desired map contents. Objects are shared
/// (`Arc`): the sources' stores, every snapshot and the [`super::Model`] hold one
/// copy of each object between them, and a snapshot costs one reference
/// count per object.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<Slice>>,
    pub nodes: Vec<Arc<Node>>,
}

/// Flannel's annotation: JSON `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`.
pub const FLANNEL_VTEP_ANNOTATION: &str = "flannel.alpha.coreos.com/backend-data";
/// Flannel's IPv6 VTEP (dual-stack VXLAN): JSON `{"VNI":1,"VtepMAC":".."}`.
pub const FLANNEL_VTEP6_ANNOTATION: &str = "flannel.alpha.coreos.com/backend-v6-data";
/// Flannel's IPv6 underlay address of a node (dual-stack VXLAN).
pub const FLANNEL_PUBLIC_IPV6_ANNOTATION: &str = "flannel.alpha.coreos.com/public-ipv6";
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
    /// This node's addresses of both families (NodePort matches any of
    /// them); the own Node's InternalIP/ExternalIP addresses are added.
    pub node_addrs: Vec<IpAddr>,
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
    /// NodePorts (kube-proxy's `--nodeport-addresses`); CIDRs of both
    /// families: a family without one takes NodePorts on none of its
    /// addresses, as kube-proxy.
    pub nodeport_cidrs: Vec<(IpAddr, u8)>,
}

/// Whether `a` is inside `net` (prefix lengths up to 32 for IPv4, 128 for
/// IPv6; never across families).
pub fn in_cidr(a: IpAddr, net: (IpAddr, u8)) -> bool {
    match (a, net.0) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.1.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.1.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether `a` is inside one of `cidrs`.
pub fn in_cidrs(a: IpAddr, cidrs: &[(IpAddr, u8)]) -> bool {
    cidrs.iter().any(|net| in_cidr(a, *net))
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Family {
    #[default]
    V4,
    V6,
}

impl Family {
    pub fn of(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Kubernetes' name (`ipFamilies`, EndpointSlice `addressType`).
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `services` or `services6` key.
#[derive(Clone, Copy, Debug)]
pub enum SvcKey {
    V4(xlb_bpf::types::xlb_svc_key),
    V6(xlb_bpf::types::xlb_svc6_key),
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

/// What the `services` (IPv4) or `services6` (IPv6) map matches: an
/// address (ClusterIP, LoadBalancer ingress, ExternalIP) or, with `addr:
/// None`, a NodePort on any local address of `family`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendKey {
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub proto: Proto,
    /// The entry clients inside the cluster use for an
    /// externalTrafficPolicy Local frontend (`XLB_SVC_F_EXT_LOCAL`).
    pub internal: bool,
    /// The family of `addr`, or of the local addresses a NodePort matches.
    pub family: Family,
}

impl FrontendKey {
    /// A frontend on an address.
    pub fn on(addr: IpAddr, port: u16, proto: Proto) -> Self {
        Self {
            addr: Some(addr),
            port,
            proto,
            internal: false,
            family: Family::of(addr),
        }
    }

    /// A NodePort of `family`.
    pub fn nodeport(port: u16, proto: Proto, family: Family) -> Self {
        Self {
            addr: None,
            port,
            proto,
            internal: false,
            family,
        }
    }

    /// The map key (of `services` or `services6`, by family).
    pub fn svc_key(&self) -> SvcKey {
        use xlb_bpf::types::{xlb_svc6_key, xlb_svc_key};
        match (self.addr, self.family) {
            (Some(IpAddr::V4(a)), _) => {
                let k = xlb_svc_key::addr(SocketAddrV4::new(a, self.port), self.proto);
                SvcKey::V4(if self.internal { k.internal() } else { k })
            }
            (None, Family::V4) => {
                let k = xlb_svc_key::nodeport(self.port, self.proto);
                SvcKey::V4(if self.internal { k.internal() } else { k })
            }
            (Some(IpAddr::V6(a)), _) => {
                let k = xlb_svc6_key::addr(SocketAddrV6::new(a, self.port, 0, 0), self.proto);
                SvcKey::V6(if self.internal { k.internal() } else { k })
            }
            (None, Family::V6) => {
                let k = xlb_svc6_key::nodeport(self.port, self.proto);
                SvcKey::V6(if self.internal { k.internal() } else { k })
            }
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
        match (self.addr, self.family) {
            (Some(a), _) => write!(f, "{}/{}", SocketAddr::new(a, self.port), self.proto)?,
            (None, Family::V4) => write!(f, "*:{}/{} (NodePort)", self.port, self.proto)?,
            (None, Family::V6) => write!(f, "[*]:{}/{} (NodePort)", self.port, self.proto)?,
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
    /// The backends to balance over (identities, sorted, unique, all of
    /// the frontend's family); each is in the port's [`ServicePort::backends`].
    pub backends: Vec<SocketAddr>,
    /// How many of `backends` are on this node.
    pub n_local: u32,
}

/// An endpoint of a Service port (`XLB_BE_F_*` in the `backends` map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity (and DNAT target).
    pub addr: SocketAddr,
    /// Underlay address of its node, of the endpoint's family; `None` =
    /// this node.
    pub node: Option<IpAddr>,
    /// The endpoint is terminating (serving or not).
    pub terminating: bool,
    /// In no frontend's backend set (terminating while others are ready, not
    /// ready, or outside a Local policy's set): flows that use it keep it
    /// while the EndpointSlices list it; new flows never choose it.
    pub draining: bool,
    /// Its address is its node's own (a hostNetwork endpoint): a remote one
    /// is reached through the tunnel entry of that node address (`/32`,
    /// nodes.rs), and that node's uplink tc egress returns the replies
    /// (`XLB_BE_F_HOST_NETWORK`).
    pub host_network: bool,
}

/// One port of a Service: the unit of svc_id, stats and names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `"ns/name:port/PROTO"`, e.g. `"default/web:80/TCP"`.
    pub name: String,
    pub frontends: Vec<Frontend>,
    /// Every endpoint the port's EndpointSlices list (both families),
    /// sorted by address, unique: every backend a frontend uses, and the
    /// draining ones.
    pub backends: Vec<Backend>,
    /// loadBalancerSourceRanges `(network, prefix)` of both families, only
    /// when a LoadBalancer frontend carries `XLB_SVC_F_SRC_RANGES` (a
    /// frontend of a family without a range of it admits no client).
    pub src_ranges: Vec<(IpAddr, u8)>,
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

/// A tunnel entry: another node's pod CIDR, or one of its IPv4 addresses (a
/// host-network endpoint there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEntry {
    /// The node's underlay address, of the pod CIDR's family.
    pub node: IpAddr,
    pub vtep_mac: [u8; 6],
}

/// Desired contents of the maps the agent owns.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Desired {
    /// Per Service object, keyed `"ns/name"`.
    pub services: BTreeMap<String, Arc<ServiceDesired>>,
    /// `(network, prefix)` -> node, for every other node with an address,
    /// a VTEP MAC and pod CIDR(s), per family (an IPv6 pod CIDR goes to the
    /// node's IPv6 underlay address and IPv6 VTEP).
    pub tunnels: BTreeMap<(IpAddr, u8), TunnelEntry>,
    /// This node's addresses (NodePort), both families.
    pub local_addrs: BTreeSet<IpAddr>,
    /// The other nodes' addresses (their InternalIP/ExternalIP, inside
    /// `nodeport_cidrs` when set; none of `local_addrs`): a pod's NodePort
    /// traffic to one of them is balanced at the pod's veth.
    pub remote_addrs: BTreeSet<IpAddr>,
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
    pub fn backends(&self) -> BTreeMap<SocketAddr, &Backend> {
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
