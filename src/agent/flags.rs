//! # The flags of `xlb agent`
//!
//! The clap arguments (their `///` docs are the help), and the effective
//! configuration `--print-config` prints.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use xlb_loader::attach::AttachMode;
use xlb_loader::netlink::IfacePatterns;

use super::args::{self, parse_opt_addr, parse_port_range, OptAddr, PortRange};
use super::{ct_timeouts, net};

/// Run the node agent: keep the maps in sync with Services, EndpointSlices
/// and Nodes, from the Kubernetes API or a directory of manifests.
///
/// Without --manifests it talks to the API server: --kubeconfig, else
/// KUBECONFIG / ~/.kube/config, else the in-cluster service account. It
/// serves Prometheus metrics on http://METRICS_ADDR/metrics, liveness on
/// /healthz and readiness (first complete sync done) on /readyz. Stopping it
/// leaves the data plane forwarding; --cleanup removes it.
///
/// Examples:
///   xlb agent --manifests deploy/examples --iface eth0 --node-name node-a
///   xlb agent --kubeconfig ~/.kube/config --iface auto --metrics-addr 0.0.0.0:9402
///   NODE_NAME=node-a xlb agent            # in a DaemonSet (in-cluster config)
///   xlb agent --cleanup                   # uninstall: detach all, remove pins
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct AgentArgs {
    /// Directory of Kubernetes YAML (Services, EndpointSlices, Nodes) to use
    /// instead of the API; re-read when a file changes.
    #[arg(
        long,
        env = "XLB_MANIFESTS",
        value_name = "DIR",
        conflicts_with = "kubeconfig"
    )]
    pub manifests: Option<PathBuf>,

    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// This node's name (its Node object; endpoints with this nodeName are
    /// local). Default: the host name.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Uplink to attach XDP to; `auto` = the interface holding the node's
    /// IPv4 address, else its IPv6 address (an IPv6-only node). Without it the agent only syncs the maps (attach with
    /// `xlb attach`).
    #[arg(long, short = 'i', env = "XLB_IFACE", value_name = "IF")]
    pub iface: Option<String>,

    /// This node's underlay address (VXLAN outer source, NodePort address).
    /// Default: the Node's InternalIP, else the uplink's first IPv4 address.
    #[arg(long, env = "XLB_NODE_ADDR", value_name = "IPV4")]
    pub node_addr: Option<Ipv4Addr>,

    /// This node's IPv6 underlay address (outer source of IPv6 VXLAN,
    /// `config6`; docs/ipv6.md). Default: the Node's
    /// `flannel.alpha.coreos.com/public-ipv6` annotation, else its first
    /// IPv6 InternalIP, else the uplink's first global IPv6 address.
    #[arg(long, env = "XLB_NODE_ADDR6", value_name = "IPV6")]
    pub node_addr6: Option<std::net::Ipv6Addr>,

    /// VXLAN UDP port of the overlay (flannel: 8472).
    #[arg(long, env = "XLB_VXLAN_PORT", default_value_t = 8472)]
    pub vxlan_port: u16,

    /// VXLAN network identifier (flannel: 1).
    #[arg(long, env = "XLB_VNI", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=0xff_ffff))]
    pub vni: u32,

    /// Connection-tracking entries: two per connection, so about 4 x the
    /// connections you expect (default 1048576, or the size of the pinned
    /// map). Changing the size of a pinned map takes `--cleanup` first.
    #[arg(long, env = "XLB_CT_ENTRIES", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1024..=134_217_728))]
    pub ct_entries: Option<u32>,

    /// IPv6 connection-tracking entries (`ct6`), as `--ct-entries` for the
    /// IPv6 flows (default 262144, or the size of the pinned map). Changing
    /// the size of a pinned map takes `--cleanup` first.
    #[arg(long, env = "XLB_CT6_ENTRIES", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1024..=134_217_728))]
    pub ct6_entries: Option<u32>,

    /// Sizes of the maps that grow with the cluster.
    #[command(flatten)]
    pub map_sizes: args::MapSizeArgs,

    /// XDP mode on the uplink: native, generic or offload.
    #[arg(long, env = "XLB_XDP_MODE", default_value = "native", value_parser = parse_mode)]
    pub xdp_mode: AttachMode,

    /// Attach in generic mode (with a warning) when the driver has no native XDP.
    #[arg(long, env = "XLB_FALLBACK_GENERIC")]
    pub fallback_generic: bool,

    /// Pod interface name patterns for the tc program (comma-separated, * and
    /// ?); '' attaches none.
    #[arg(long, env = "XLB_POD_IFACES", default_value = xlb_loader::netlink::DEFAULT_POD_PATTERNS,
          value_parser = parse_patterns)]
    pub pod_ifaces: IfacePatterns,

    /// Only handle Services with these labels (equality-based selector, e.g.
    /// `xlb.io/enabled=true`): run beside kube-proxy on a subset first.
    #[arg(long, env = "XLB_SERVICE_SELECTOR", value_name = "SELECTOR")]
    pub service_selector: Option<crate::sources::LabelSelector>,

    /// Node annotation with the VTEP MAC (flannel's JSON or a plain MAC).
    #[arg(long, env = "XLB_VTEP_ANNOTATION", default_value = crate::model::FLANNEL_VTEP_ANNOTATION)]
    pub vtep_annotation: String,

    /// Where /metrics, /healthz and /readyz are served. In a DaemonSet
    /// (hostNetwork) use 0.0.0.0:9402 or the node address so probes and
    /// Prometheus reach it.
    #[arg(long, env = "XLB_METRICS_ADDR", default_value = "127.0.0.1:9402")]
    pub metrics_addr: SocketAddr,

    /// kube-proxy's node health endpoint (`/healthz`, `/livez`) for cloud
    /// load balancers; '' turns it off (e.g. while kube-proxy still serves
    /// it). A taken port is logged and retried, not fatal.
    #[arg(long, env = "XLB_HEALTHZ_ADDR", default_value = "0.0.0.0:10256",
          value_parser = parse_opt_addr, value_name = "ADDR")]
    pub healthz_addr: OptAddr,

    /// The API server's --service-node-port-range: NodePorts outside it are
    /// refused.
    #[arg(long, env = "XLB_NODEPORT_RANGE", default_value = "30000-32767",
          value_parser = parse_port_range, value_name = "LO-HI")]
    pub nodeport_range: PortRange,

    /// Changes arriving within this many milliseconds are synced together.
    #[arg(long, env = "XLB_DEBOUNCE_MS", default_value_t = 200)]
    pub debounce_ms: u64,

    /// Only node addresses inside these CIDRs take NodePorts (comma-separated,
    /// as kube-proxy's flag); default: every IPv4 address of the node,
    /// followed as addresses come and go. 127.0.0.1 (for node processes) is
    /// included unless the CIDRs leave it out.
    #[arg(
        long,
        env = "XLB_NODEPORT_ADDRESSES",
        value_name = "CIDR,...",
        default_value = ""
    )]
    pub nodeport_addresses: net::NodePortCidrs,

    /// No cgroup socket hooks: node processes' connections to Services are
    /// left alone (see docs/socket-lb.md).
    #[arg(long, env = "XLB_NO_SOCKET_LB")]
    pub no_socket_lb: bool,

    /// No tunnel NAT: flows sent to another node's backend keep both ct
    /// entries here and go without the frontend trailer, the tunnel format of
    /// xlb builds before it (and no stateless flows). For a rolling
    /// upgrade from such a build, or from one without stateless TCP
    /// connections: roll out with this set, then without it (docs/dp.md,
    /// "Who reverse-NATs").
    #[arg(long, env = "XLB_NO_TUNNEL_NAT")]
    pub no_tunnel_nat: bool,

    /// Root of the host's cgroup v2 hierarchy for the socket hooks (in a
    /// container: a hostPath mount of the host's /sys/fs/cgroup). Default:
    /// the cgroup2 mount in /proc/self/mountinfo.
    #[arg(long, env = "XLB_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,

    /// Connection-tracking timeouts (`config` map).
    #[command(flatten)]
    pub ct_timeouts: ct_timeouts::CtTimeouts,

    /// Uninstall: detach every xlb hook and remove xlb's pins under
    /// --pin-dir (maps included; connection tracking is lost), then exit.
    /// Only a directory on bpffs, and there only what xlb pins: other files
    /// and other tools' pins stay.
    #[arg(long)]
    pub cleanup: bool,

    /// Print the effective configuration as JSON and exit (checks flags and
    /// environment without touching the system).
    #[arg(long)]
    pub print_config: bool,
}

fn parse_mode(s: &str) -> Result<AttachMode, String> {
    s.parse()
}

fn parse_patterns(s: &str) -> Result<IfacePatterns, String> {
    s.parse()
}

impl AgentArgs {
    pub(super) fn node_name(&self) -> String {
        self.node_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(net::hostname)
            .unwrap_or_default()
    }

    pub(super) fn config_json(&self, pin_dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "source": if self.manifests.is_some() { "manifests" } else { "kubernetes" },
            "manifests": self.manifests,
            "kubeconfig": self.kubeconfig,
            "node_name": self.node_name(),
            "iface": self.iface,
            "node_addr": self.node_addr,
            "node_addr6": self.node_addr6,
            "vxlan_port": self.vxlan_port,
            "vni": self.vni,
            "xdp_mode": self.xdp_mode.name(),
            "fallback_generic": self.fallback_generic,
            "pod_ifaces": self.pod_ifaces.to_string(),
            "vtep_annotation": self.vtep_annotation,
            "service_selector": self.service_selector.as_ref().map(|s| s.to_string()),
            "metrics_addr": self.metrics_addr.to_string(),
            "healthz_addr": self.healthz_addr.0.map(|a| a.to_string()),
            "nodeport_range": self.nodeport_range.to_string(),
            "debounce_ms": self.debounce_ms,
            "nodeport_addresses": self.nodeport_addresses.to_string(),
            "socket_lb": !self.no_socket_lb,
            "tunnel_nat": !self.no_tunnel_nat,
            "cgroup_root": self.cgroup_root,
            "ct_entries": self.ct_entries,
            "ct6_entries": self.ct6_entries,
            "max_frontends": self.map_sizes.max_frontends,
            "max_backends": self.map_sizes.max_backends,
            "maglev_slots": self.map_sizes.maglev_slots,
            "affinity_entries": self.map_sizes.affinity_entries,
            "max_src_ranges": self.map_sizes.max_src_ranges,
            "pin_dir": pin_dir,
        })
    }
}
