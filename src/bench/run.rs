//! # `xlb bench run`: live traffic through the real data plane
//!
//! Builds a veth topology in namespaces of its own (client -> xlb node ->
//! sink, see [`topo`]), generates frames with xlb-pktgen (BPF_PROG_RUN live
//! frames, one pinned thread per core) and measures, in the same topology and
//! run: the XDP_DROP baseline (drop on the node's ingress veth), the XDP_TX
//! bounce baseline (swap MACs, back to the client's sink), and the scenario —
//! the real xlb XDP program with K Services in its maps, or kube-proxy's
//! mechanism (iptables / nftables DNAT rules and kernel forwarding).
//!
//! Mpps is counted where the frames come out: at the sink (stamped frames) or,
//! for the drop baseline, from the node veth's per-queue `xdp_drops`. Every
//! stage runs on the generator's CPU, so the figures are whole-pipeline
//! figures: compare them as ratios.
//!
//! With `--iface IF --peer-iface P` (two cabled ports) the client/node veth
//! pair is replaced by the real ports, moved into the namespaces for the run.
//! A NIC spreads received frames over its queues by RSS, not by generator
//! core, and that work is off the generator's clock: there the total at the
//! sink (or the drop program's run count where the driver has no per-queue
//! `xdp_drops`) is shared out by what each core sent, over wall time.
//!
//! xlb's connection tracking is sized for the flows ([`ct_entries`]) and
//! every flow is sent once per core before a measured window, so a flows
//! sweep measures ct hits at that table size, not LRU misses.

mod topo;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use serde::Serialize;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::{be16, be32};
use xlb_bpf::{Maps, Proto};
use xlb_pktgen::{Latency, Limit, PacketSpec, Pktgen, RunOptions, Template, Vary, Vxlan, L4};

use topo::*;

/// What the node does with the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// NodePort to a remote backend: DNAT + VXLAN encap + transmit (xlb).
    NodeportRemote,
    /// VXLAN-encapsulated ClusterIP traffic from another node: decap + DNAT + re-encap (xlb).
    ClusteripDecap,
    /// Replies from a remote backend: decap + reverse NAT (xlb, ct reverse entries pre-filled).
    ReplyRevnat,
    /// kube-proxy iptables mode: the same Services as DNAT rules, kernel forwarding.
    Iptables,
    /// kube-proxy nftables mode: verdict maps + DNAT, kernel forwarding.
    Nftables,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NodeportRemote => "nodeport-remote",
            Scenario::ClusteripDecap => "clusterip-decap",
            Scenario::ReplyRevnat => "reply-revnat",
            Scenario::Iptables => "iptables",
            Scenario::Nftables => "nftables",
        }
    }

    fn is_xlb(self) -> bool {
        !matches!(self, Scenario::Iptables | Scenario::Nftables)
    }
}

/// The packet's L4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Udp,
    /// TCP SYNs.
    TcpSyn,
    /// TCP ACKs of established connections.
    TcpAck,
}

/// One sweep axis and its points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep {
    pub axis: Axis,
    pub points: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    Flows,
    Services,
}

impl std::str::FromStr for Sweep {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or("expected flows=1,1000,... or services=1,100,...")?;
        let axis = match k {
            "flows" => Axis::Flows,
            "services" => Axis::Services,
            _ => return Err(format!("unknown sweep axis {k:?}: flows or services")),
        };
        let points = v
            .split(',')
            .map(|p| {
                let p = p.trim().replace('_', "");
                let n: u32 = p.parse().map_err(|_| format!("bad sweep point {p:?}"))?;
                if n == 0 {
                    return Err("sweep points start at 1".to_string());
                }
                Ok(n)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if points.is_empty() {
            return Err("empty sweep".into());
        }
        Ok(Sweep { axis, points })
    }
}

/// Live traffic through a veth topology (or two cabled NIC ports): per-core Mpps, latency, baselines.
///
/// Examples:
///   xlb bench run --scenario nodeport-remote --cores 1 --seconds 3
///   xlb bench run --scenario iptables --json
///   xlb bench run --scenario nodeport-remote --sweep services=1,1000,100000 --svg services.svg
///   xlb bench run --scenario nodeport-remote --iface enp1s0f0 --peer-iface enp1s0f1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// What the node does with the traffic.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Generator cores (threads pinned to CPUs 0..N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cores: u32,
    /// Distinct flows (source address/port pairs), 1..=1000000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub flows: u32,
    /// Services in the maps (or rules), 1..=100000; traffic goes to the middle one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub services: u32,
    /// Frame size in bytes (without FCS), 64..=1500; VXLAN/TCP templates need more.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(64..=1500))]
    pub size: u32,
    /// Seconds per measured phase (each baseline and the scenario).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// L4 of the generated packets.
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    pub proto: ProtoArg,
    /// Total packets per second (paced); default as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Frames per live-frames batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch: u32,
    /// Where the node sends traffic for the remote node: `same` = back out of
    /// its ingress veth (one uplink; XDP_TX), `other` = out of a second veth to
    /// the sink namespace (XDP_REDIRECT).
    #[arg(long, value_enum, default_value_t = Egress::Same)]
    pub egress: Egress,
    /// Real NICs instead of the client/node veth pair: IF is the node's port
    /// (xlb, the baselines and iptables attach there), --peer-iface P the port
    /// cabled to it (the generator sends from it, the sink counts on it). Both
    /// are moved into the bench's namespaces for the run and moved back after,
    /// also on error or Ctrl-C; ports with an IPv4 or global IPv6 address are
    /// refused (the move would drop it). Needs drivers with native XDP.
    ///
    /// Example: --iface enp1s0f0 --peer-iface enp1s0f1
    #[arg(long, value_name = "IF", requires = "peer_iface")]
    pub iface: Option<String>,
    /// With --iface: the port cabled to the node's port (see --iface).
    #[arg(long, value_name = "P", requires = "iface")]
    pub peer_iface: Option<String>,
    /// Sweep one axis: flows=1,1000,1000000 or services=1,1000,100000 (one row per point).
    #[arg(long)]
    pub sweep: Option<Sweep>,
    /// With --sweep: write an SVG plot of Mpps per point here.
    #[arg(long, requires = "sweep")]
    pub svg: Option<PathBuf>,
    /// Measure every phase this many times (interleaved) and report the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub repeat: u32,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The JSON of one run (keys as documented).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub cores: u32,
    pub mpps: f64,
    pub per_core_mpps: Vec<f64>,
    pub baseline_drop_mpps: f64,
    pub baseline_tx_mpps: f64,
    pub ratio_drop: f64,
    pub ratio_tx: f64,
    pub latency_us: LatencyUs,
    pub sent: u64,
    pub received: u64,
    /// Size of the data plane's connection-tracking map (xlb scenarios only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_entries: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatencyUs {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl From<Option<Latency>> for LatencyUs {
    fn from(l: Option<Latency>) -> Self {
        l.map(|l| LatencyUs {
            p50: l.p50,
            p99: l.p99,
            p999: l.p999,
        })
        .unwrap_or_default()
    }
}

/// One measured phase.
#[derive(Clone, Debug)]
struct Measure {
    mpps: f64,
    per_core: Vec<f64>,
    sent: u64,
    received: u64,
    /// Of `received`, frames that arrived VXLAN-encapsulated.
    vxlan: u64,
    latency: Option<Latency>,
}

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::SeqCst);
    }
}

fn stop_flag() -> Arc<AtomicBool> {
    STOP.get_or_init(|| {
        let h = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(libc::SIGINT, h);
            libc::signal(libc::SIGTERM, h);
        }
        Arc::new(AtomicBool::new(false))
    })
    .clone()
}

fn check_stop(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Attaches the XDP program `prog_fd` to `ifindex` in namespace `ns` through a
/// BPF link; closing the returned fd detaches it. On real ports only in
/// driver (native) mode, with a clear error where the driver has none.
fn attach_xdp(t: &Topo, ns: &str, dev: &str, prog_fd: i32, ifindex: u32) -> Result<OwnedFd> {
    let native = t.real && (dev == t.dev_c0 || dev == t.dev_n0);
    let r = Topo::within(ns, move || {
        Ok(xlb_pktgen::attach_xdp_link_mode(prog_fd, ifindex, native)?)
    });
    match r {
        Err(e)
            if native
                && e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.raw_os_error() == Some(libc::EOPNOTSUPP))
                }) =>
        {
            Err(e.context(format!(
                "{dev} (driver {}) has no native XDP support: --iface/--peer-iface need ports \
                 whose driver runs XDP programs (ethtool -i {dev})",
                t.driver(dev)
            )))
        }
        r => r.with_context(|| format!("attaching XDP to {dev}")),
    }
}

fn prog_fd(p: &libbpf_rs::ProgramMut<'_>) -> i32 {
    use std::os::fd::{AsFd, AsRawFd};
    p.as_fd().as_raw_fd()
}

const NODEPORT: u16 = 30080;
const SVC_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const BACKENDS: u32 = 4;
const CLIENT_PORT: u16 = 1024;
/// Maglev table size per Service (the smallest prime xlb uses).
const TABLE: u32 = 251;

fn svc_addr(i: u32) -> SocketAddrV4 {
    let base = u32::from(Ipv4Addr::new(10, 96, 0, 1));
    SocketAddrV4::new(
        Ipv4Addr::from(base + i % 65534),
        SVC_PORT + (i / 65534) as u16,
    )
}

fn backend_addr(j: u32) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from(REMOTE_PODS) + 10 + j),
        BACKEND_PORT,
    )
}

fn target(services: u32) -> u32 {
    services / 2
}

/// Connection-tracking entries for `flows` flows: every flow holds two (its
/// forward entry and the reverse one its replies use), and an LRU map evicts
/// before it is full, so 4 per flow rounded up to a power of two, never below
/// the data plane's default. An operator sizes ct for their connection count
/// the same way (`LoadOptions::ct_entries`).
pub fn ct_entries(flows: u32) -> u32 {
    (u64::from(flows) * 4)
        .next_power_of_two()
        .min(1 << 31)
        .max(u64::from(XLB_CT_ENTRIES)) as u32
}

fn l4(p: ProtoArg) -> L4 {
    match p {
        ProtoArg::Udp => L4::Udp,
        ProtoArg::TcpSyn => L4::TcpSyn,
        ProtoArg::TcpAck => L4::TcpAck,
    }
}

fn proto(p: ProtoArg) -> Proto {
    match p {
        ProtoArg::Udp => Proto::Udp,
        _ => Proto::Tcp,
    }
}

fn ipt_proto(p: ProtoArg) -> &'static str {
    match p {
        ProtoArg::Udp => "udp",
        _ => "tcp",
    }
}

/// The frames each scenario sends.
/// `macs`: the client port's and the node port's MAC.
fn spec(
    s: Scenario,
    a: &RunArgs,
    flows: u32,
    services: u32,
    (mac_c0, mac_n0): ([u8; 6], [u8; 6]),
) -> PacketSpec {
    let client = SocketAddrV4::new(CLIENTS, CLIENT_PORT);
    let mut p = match s {
        Scenario::NodeportRemote | Scenario::Iptables | Scenario::Nftables => {
            PacketSpec::new(client, SocketAddrV4::new(NODE, NODEPORT), l4(a.proto))
        }
        Scenario::ClusteripDecap => PacketSpec::new(
            SocketAddrV4::new(Ipv4Addr::from(u32::from(CLIENT_PODS) + 1), CLIENT_PORT),
            svc_addr(target(services)),
            l4(a.proto),
        ),
        Scenario::ReplyRevnat => {
            let mut p = PacketSpec::new(backend_addr(0), client, l4(a.proto));
            p.vary = Vary::Destination;
            p
        }
    };
    p.src_mac = mac_c0;
    p.dst_mac = mac_n0;
    p.size = a.size as usize;
    p.flows = flows;
    match s {
        Scenario::ClusteripDecap => {
            p.vxlan = Some(Vxlan {
                src_mac: mac_c0,
                dst_mac: mac_n0,
                src: CLIENT,
                dst: NODE,
                port: XLB_VXLAN_PORT_DEFAULT as u16,
                vni: XLB_VNI_DEFAULT,
            });
        }
        Scenario::ReplyRevnat => {
            p.src_mac = MAC_S0;
            p.vxlan = Some(Vxlan {
                src_mac: mac_c0,
                dst_mac: mac_n0,
                src: REMOTE_NODE,
                dst: NODE,
                port: XLB_VXLAN_PORT_DEFAULT as u16,
                vni: XLB_VNI_DEFAULT,
            });
        }
        _ => {}
    }
    p
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fills the data plane's maps: config, local addresses, tunnel, backends on
/// the remote node, K ClusterIP Services (each with its own Maglev region; the
/// target one also as NodePort) and, for reply-revnat, a reverse ct entry per flow.
fn fill_maps(
    m: &Maps,
    t: &Topo,
    s: Scenario,
    a: &RunArgs,
    services: u32,
    tmpl: &Template,
) -> Result<()> {
    m.put_config(&xlb_config {
        node_addr: be32(NODE),
        vxlan_port: be16(XLB_VXLAN_PORT_DEFAULT as u16),
        mtu: MTU,
        vni: XLB_VNI_DEFAULT,
        ifindex: match t.egress {
            Egress::Same => t.ifindex_n0,
            Egress::Other => t.ifindex_n1,
        },
        // decapsulated frames are passed up on the node's port: its MAC
        mac: t.mac_n0,
        flags: XLB_CFG_F_VXLAN,
        ..Default::default()
    })?;
    m.put_local_addr(NODE)?;
    m.put_local_addr(NODE_SINK_SIDE)?;
    m.put_tunnel(
        &xlb_tunnel_key::new(REMOTE_PODS, 24),
        &xlb_tunnel_val::new(REMOTE_NODE, t.remote_mac()),
    )?;
    m.put_tunnel(
        &xlb_tunnel_key::new(CLIENT_PODS, 24),
        &xlb_tunnel_val::new(CLIENT, t.mac_c0),
    )?;
    for j in 0..BACKENDS {
        m.put_backend(
            j + 1,
            &xlb_backend::new(backend_addr(j), Some(REMOTE_NODE), 0),
        )?;
    }
    let p = proto(a.proto);
    let tgt = target(services);
    let mut table = vec![0u32; TABLE as usize];
    for i in 0..services {
        // a bench fill: backends round-robin over the slots (the data plane
        // only reads slots; Maglev's permutation is the agent's business)
        for (k, slot) in table.iter_mut().enumerate() {
            *slot = 1 + (i + k as u32) % BACKENDS;
        }
        m.write_maglev(i * TABLE, &table)?;
        let val = |fe: xlb_bpf::Kind| xlb_svc_val {
            svc_id: i + 1,
            table_off: i * TABLE,
            table_size: TABLE,
            fe_type: fe.fe_type(),
            ..Default::default()
        };
        m.put_service(
            &xlb_svc_key::addr(svc_addr(i), p),
            &val(xlb_bpf::Kind::ClusterIp),
        )?;
        if i == tgt {
            m.put_service(
                &xlb_svc_key::nodeport(NODEPORT, p),
                &val(xlb_bpf::Kind::NodePort),
            )?;
        }
    }
    if s == Scenario::ReplyRevnat {
        let now = monotonic_ns();
        for f in 0..tmpl.flows() {
            let client = tmpl.flow(f);
            let key = xlb_ct_key::new(backend_addr(0), client, p.number());
            m.put_ct(
                &key,
                &xlb_ct_val {
                    backend_id: 1,
                    svc_id: tgt + 1,
                    flags: XLB_CT_F_REVERSE,
                    nat_addr: be32(NODE),
                    nat_port: be16(NODEPORT),
                    last_seen: now,
                    ..Default::default()
                },
            )
            .with_context(|| format!("ct reverse entry {f}"))?;
        }
    }
    Ok(())
}

/// kube-proxy iptables mode for the same Services: every ClusterIP is a rule in
/// KUBE-SERVICES (matched in order), NodePorts come last, the Service's chain
/// picks a backend with `statistic`, the backend's chain DNATs.
fn iptables_rules(a: &RunArgs, services: u32) -> String {
    let pr = ipt_proto(a.proto);
    let mut r = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n\
         :KUBE-SVC-OTHER - [0:0]\n:KUBE-SVC-BENCH - [0:0]\n",
    );
    for j in 0..BACKENDS {
        let _ = writeln!(r, ":KUBE-SEP-{j} - [0:0]");
    }
    r.push_str("-A PREROUTING -j KUBE-SERVICES\n");
    let tgt = target(services);
    for i in 0..services {
        let s = svc_addr(i);
        let chain = if i == tgt {
            "KUBE-SVC-BENCH"
        } else {
            "KUBE-SVC-OTHER"
        };
        let _ = writeln!(
            r,
            "-A KUBE-SERVICES -d {}/32 -p {pr} -m {pr} --dport {} -j {chain}",
            s.ip(),
            s.port()
        );
    }
    r.push_str("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    let _ = writeln!(
        r,
        "-A KUBE-NODEPORTS -p {pr} -m {pr} --dport {NODEPORT} -j KUBE-SVC-BENCH"
    );
    for j in 0..BACKENDS {
        let left = BACKENDS - j;
        if left > 1 {
            let _ = writeln!(
                r,
                "-A KUBE-SVC-BENCH -m statistic --mode random --probability {:.11} -j KUBE-SEP-{j}",
                1.0 / left as f64
            );
        } else {
            let _ = writeln!(r, "-A KUBE-SVC-BENCH -j KUBE-SEP-{j}");
        }
        let _ = writeln!(
            r,
            "-A KUBE-SEP-{j} -p {pr} -m {pr} -j DNAT --to-destination {}",
            backend_addr(j)
        );
    }
    r.push_str("COMMIT\n");
    r
}

/// kube-proxy nftables mode: a verdict map on (address, protocol, port), one
/// on NodePorts, `numgen` over the backends.
fn nft_rules(a: &RunArgs, services: u32) -> String {
    let pr = ipt_proto(a.proto);
    let tgt = target(services);
    let mut r = String::from("table ip xlb-bench {\n chain svc-other {\n }\n");
    for j in 0..BACKENDS {
        let _ = writeln!(
            r,
            " chain sep-{j} {{\n  meta l4proto {pr} dnat to {}\n }}",
            backend_addr(j)
        );
    }
    let _ = write!(
        r,
        " chain svc-bench {{\n  numgen random mod {BACKENDS} vmap {{ "
    );
    for j in 0..BACKENDS {
        let _ = write!(r, "{}{j} : goto sep-{j}", if j > 0 { ", " } else { "" });
    }
    r.push_str(" }\n }\n");
    r.push_str(
        " map service-ips {\n  type ipv4_addr . inet_proto . inet_service : verdict\n  elements = { ",
    );
    for i in 0..services {
        let s = svc_addr(i);
        let chain = if i == tgt { "svc-bench" } else { "svc-other" };
        let _ = write!(
            r,
            "{}{} . {pr} . {} : goto {chain}",
            if i > 0 { ",\n   " } else { "" },
            s.ip(),
            s.port()
        );
    }
    r.push_str(" }\n }\n");
    let _ = writeln!(
        r,
        " map service-nodeports {{\n  type inet_proto . inet_service : verdict\n  elements = {{ {pr} . {NODEPORT} : goto svc-bench }}\n }}"
    );
    r.push_str(
        " chain services {\n  ip daddr . meta l4proto . th dport vmap @service-ips\n  \
         fib daddr type local meta l4proto . th dport vmap @service-nodeports\n }\n \
         chain prerouting {\n  type nat hook prerouting priority dstnat; policy accept;\n  jump services\n }\n}\n",
    );
    r
}

/// The whole context of one invocation.
struct Bench<'a> {
    a: &'a RunArgs,
    // fields drop in order: the sinks' links detach before the topology
    // moves real ports back and deletes the namespaces
    _sinks: Vec<OwnedFd>,
    topo: Topo,
    gen: Pktgen,
    cpus: Vec<usize>,
    stop: Arc<AtomicBool>,
    base: xlb_bpf::baseline::BaselineSkel<'static>,
}

/// The run with the median Mpps.
fn median(mut v: Vec<Measure>) -> Measure {
    v.sort_by(|a, b| a.mpps.total_cmp(&b.mpps));
    let mid = v.len() / 2;
    v.swap_remove(mid)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Per-queue `xdp_drops` of the node's ingress veth.
    DropAtNode,
    /// Stamped frames at the sinks.
    Sink,
}

impl Bench<'_> {
    fn run_opts(&self, limit: Limit) -> RunOptions {
        let mut o = RunOptions::new(self.topo.ifindex_c0, self.cpus.clone(), limit);
        o.netns = Some(Topo::path(&self.topo.client));
        o.rate_pps = self.a.rate;
        o.batch = self.a.batch;
        o.stop = Some(self.stop.clone());
        o
    }

    fn drops(&self) -> Result<Vec<u64>> {
        Topo::xdp_queue_stats(&self.topo.node, &self.topo.dev_n0, "xdp_drops")
    }

    /// Frames the drop baseline dropped so far: the port's per-queue
    /// `xdp_drops` (veth), else the program's run count (real NICs name their
    /// XDP counters differently; run statistics are on during the phase).
    fn drop_count(&self) -> Result<Vec<u64>> {
        match self.drops() {
            Ok(v) => Ok(v),
            Err(_) if self.topo.real => Ok(vec![xlb_pktgen::prog_run_count(prog_fd(
                &self.base.progs.xlb_base_drop,
            ))?]),
            Err(e) => Err(e),
        }
    }

    /// Warms up (every one of the template's `flows` at least once per core,
    /// then briefly by time), then sends for `--seconds` and counts at `point`.
    fn measure(&self, label: &str, point: Point, flows: u32) -> Result<Measure> {
        let secs = self.a.seconds;
        if flows > 1 {
            // Each core's generator derives the flow from its own counter
            // (flow = seq % flows), so `flows` consecutive frames per core
            // visit every flow: ct entries exist before the measured window,
            // which then sees the steady state, not first packets.
            let count = u64::from(flows) * self.cpus.len() as u64;
            self.gen.run(&self.run_opts(Limit::Count(count)), |_| {})?;
            check_stop(&self.stop)?;
        }
        let warm = Duration::from_secs_f64((secs / 5.0).clamp(0.05, 0.5));
        self.gen
            .run(&self.run_opts(Limit::Duration(warm)), |_| {})?;
        check_stop(&self.stop)?;
        std::thread::sleep(Duration::from_millis(20));
        // real NICs without per-queue XDP counters: count the drop program's runs
        let _stats = if point == Point::DropAtNode && self.topo.real && self.drops().is_err() {
            Some(xlb_pktgen::enable_run_stats()?)
        } else {
            None
        };
        let sink0 = self.gen.sink_stats()?;
        let drops0 = if point == Point::DropAtNode {
            self.drop_count()?
        } else {
            Vec::new()
        };
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let quiet = self.a.json || !tty;
        if !self.a.json && !tty {
            eprintln!("  measuring {label} for {secs} s");
        }
        let gen = &self.gen;
        let rep = self.gen.run(
            &self.run_opts(Limit::Duration(Duration::from_secs_f64(secs))),
            |p| {
                if quiet {
                    return;
                }
                let got = gen
                    .sink_stats()
                    .map(|s| s.since(&sink0).total().stamped)
                    .unwrap_or(0);
                eprint!(
                    "\r  {label:<18} {:>5.1}/{secs:.1} s  sent {:>11}  at sink {:>11}  ",
                    p.elapsed.as_secs_f64(),
                    p.sent,
                    got
                );
            },
        )?;
        if !quiet {
            eprint!("\r{:90}\r", "");
        }
        check_stop(&self.stop)?;
        // let the last batches leave the NAPI queues
        std::thread::sleep(Duration::from_millis(50));
        let sink = self.gen.sink_stats()?.since(&sink0);
        let mut per_core = Vec::new();
        let mut received = 0;
        let mut vxlan = 0;
        let drops1 = if point == Point::DropAtNode {
            self.drop_count()?
        } else {
            Vec::new()
        };
        if self.topo.real {
            // A NIC spreads what it receives over its queues (and CPUs) by
            // RSS, not by generator core, and that work is not on the
            // generator's clock: count the total, share it out by what each
            // core sent, over wall time.
            let total = match point {
                Point::Sink => {
                    vxlan = sink.total().vxlan;
                    sink.total().stamped
                }
                Point::DropAtNode => drops1
                    .iter()
                    .zip(drops0.iter().chain(std::iter::repeat(&0)))
                    .map(|(b, a)| b.saturating_sub(*a))
                    .sum(),
            };
            let sent = rep.sent().max(1);
            for c in &rep.cores {
                let got = total as f64 * c.sent as f64 / sent as f64;
                per_core.push(got / c.elapsed.as_secs_f64().max(1e-9) / 1e6);
            }
            received = total;
        }
        for c in rep.cores.iter().filter(|_| !self.topo.real) {
            let got = match point {
                Point::Sink => {
                    vxlan += sink.cpu(c.cpu).vxlan;
                    sink.cpu(c.cpu).stamped
                }
                Point::DropAtNode => {
                    let q = c.cpu % drops1.len().max(1);
                    drops1.get(q).copied().unwrap_or(0) - drops0.get(q).copied().unwrap_or(0)
                }
            };
            received += got;
            // BPF_PROG_RUN's own clock: the CPU time of generating and of
            // everything the frames trigger on this CPU, without the per-call
            // page-pool set-up (wall time is the fallback)
            let secs = if c.busy > Duration::ZERO {
                c.busy
            } else {
                c.elapsed
            };
            per_core.push(got as f64 / secs.as_secs_f64().max(1e-9) / 1e6);
        }
        Ok(Measure {
            mpps: per_core.iter().sum(),
            per_core,
            sent: rep.sent(),
            received,
            vxlan,
            latency: if point == Point::Sink {
                sink.latency()
            } else {
                None
            },
        })
    }

    fn with_node_prog(&self, fd: i32, label: &str, point: Point, flows: u32) -> Result<Measure> {
        let t = &self.topo;
        let _link = attach_xdp(t, &t.node, &t.dev_n0, fd, t.ifindex_n0)
            .with_context(|| format!("attaching {label} to {}", t.dev_n0))?;
        self.measure(label, point, flows)
    }

    fn baselines(&self) -> Result<(Measure, Measure)> {
        let base = &self.base;
        let drop = self.with_node_prog(
            prog_fd(&base.progs.xlb_base_drop),
            "xdp-drop baseline",
            Point::DropAtNode,
            self.a.flows,
        )?;
        let tx = self.with_node_prog(
            prog_fd(&base.progs.xlb_base_tx),
            "xdp-tx baseline",
            Point::Sink,
            self.a.flows,
        )?;
        Ok((drop, tx))
    }

    /// Sets the template for `flows`, prepares the node for the scenario and measures it.
    fn scenario(&self, flows: u32, services: u32) -> Result<(Measure, Option<String>)> {
        let s = self.a.scenario;
        let macs = (self.topo.mac_c0, self.topo.mac_n0);
        let tmpl = Template::build(&spec(s, self.a, flows, services, macs))
            .context("building the frame template")?;
        self.gen.set_template(&tmpl, 0)?;
        let ns = &self.topo.node;
        if s.is_xlb() {
            let slots = (services * TABLE).max(XLB_MAGLEV_SLOTS);
            let ct = ct_entries(flows);
            let dp = xlb_loader::DataPlane::load(&xlb_loader::LoadOptions {
                maglev_slots: Some(slots),
                ct_entries: Some(ct),
                ..Default::default()
            })
            .with_context(|| {
                format!("loading the xlb data plane (private maps, {ct} ct entries)")
            })?;
            let t0 = Instant::now();
            fill_maps(&dp.maps, &self.topo, s, self.a, services, &tmpl)
                .context("filling the data plane's maps")?;
            tracing::info!("maps filled in {:?}", t0.elapsed());
            check_stop(&self.stop)?;
            let m = self.with_node_prog(prog_fd(dp.xdp_prog()), s.name(), Point::Sink, flows)?;
            let reasons = dp
                .maps
                .reasons()
                .map(|v| {
                    v.into_iter()
                        .filter(|(_, c)| c.packets > 0)
                        .map(|(r, c)| format!("{r}={}", c.packets))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let reasons = if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons
            };
            tracing::info!("data plane reason counters: {reasons}");
            // nodeport-remote and clusterip-decap leave encapsulated, replies plain
            let encap = s != Scenario::ReplyRevnat;
            let note = if m.received == 0 {
                Some(format!(
                    "no frame reached the sink through the data plane (its reason counters: {reasons})"
                ))
            } else if encap != (m.vxlan == m.received) {
                Some(format!(
                    "{} of {} frames at the sink were VXLAN-encapsulated, expected {} (reason counters: {reasons})",
                    m.vxlan,
                    m.received,
                    if encap { "all" } else { "none" }
                ))
            } else {
                None
            };
            Ok((m, note))
        } else {
            match s {
                Scenario::Iptables => Topo::exec_stdin(
                    ns,
                    "iptables-restore",
                    &[],
                    &iptables_rules(self.a, services),
                )
                .context("installing iptables rules (apt-get install iptables)")?,
                _ => Topo::exec_stdin(ns, "nft", &["-f", "-"], &nft_rules(self.a, services))
                    .context("installing nftables rules (apt-get install nftables)")?,
            }
            let m = self.measure(s.name(), Point::Sink, flows);
            let _ = match s {
                Scenario::Iptables => Topo::exec(ns, "iptables", &["-t", "nat", "-F"]),
                _ => Topo::exec(ns, "nft", &["flush", "ruleset"]),
            };
            let m = m?;
            let note = (m.received == 0)
                .then(|| "no frame reached the sink through kernel forwarding".to_string());
            Ok((m, note))
        }
    }
}

fn report(a: &RunArgs, flows: u32, m: &Measure, drop: &Measure, tx: &Measure) -> Report {
    let ratio = |x: f64, b: f64| if b > 0.0 { x / b } else { 0.0 };
    Report {
        scenario: a.scenario.name().to_string(),
        cores: a.cores,
        mpps: m.mpps,
        per_core_mpps: m.per_core.clone(),
        baseline_drop_mpps: drop.mpps,
        baseline_tx_mpps: tx.mpps,
        ratio_drop: ratio(m.mpps, drop.mpps),
        ratio_tx: ratio(m.mpps, tx.mpps),
        latency_us: m.latency.into(),
        sent: m.sent,
        received: m.received,
        ct_entries: a.scenario.is_xlb().then(|| ct_entries(flows)),
    }
}

fn fmt_cores(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn table_row(name: &str, m: &Measure, drop: &Measure, tx: &Measure) -> String {
    let r = |b: &Measure| {
        if b.mpps > 0.0 {
            format!("{:.2}", m.mpps / b.mpps)
        } else {
            "-".into()
        }
    };
    let (p50, p99, p999) = match &m.latency {
        Some(l) => (
            format!("{:.1}", l.p50),
            format!("{:.1}", l.p99),
            format!("{:.1}", l.p999),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    format!(
        "{name:<18} {:>7.3} {:>14} {:>6} {:>6} {p50:>8} {p99:>8} {p999:>8} {:>11} {:>11}",
        m.mpps,
        fmt_cores(&m.per_core),
        r(drop),
        r(tx),
        m.sent,
        m.received
    )
}

fn table_header(first: &str) -> String {
    format!(
        "{first:<18} {:>7} {:>14} {:>6} {:>6} {:>8} {:>8} {:>8} {:>11} {:>11}",
        "Mpps", "per core", "xdrop", "xtx", "p50 us", "p99 us", "p999 us", "sent", "received"
    )
}

/// A line chart of Mpps per sweep point, with the baselines as dashed lines.
fn svg(axis: &str, rows: &[(u32, f64)], drop: f64, tx: f64) -> String {
    let (w, h, l, r, t, b) = (640.0, 360.0, 60.0, 20.0, 30.0, 50.0);
    let ymax = rows
        .iter()
        .map(|x| x.1)
        .fold(drop.max(tx), f64::max)
        .max(0.001)
        * 1.1;
    let n = rows.len().max(2) as f64 - 1.0;
    let x = |i: usize| l + (w - l - r) * i as f64 / n;
    let y = |v: f64| t + (h - t - b) * (1.0 - v / ymax);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{l}\" y=\"18\">xlb bench: Mpps over {axis}</text>\n\
         <line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - b,
        w - r,
        h - b,
        h - b
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.2}</text>",
            l - 6.0,
            y(v) + 4.0
        );
    }
    for (name, v, color) in [("xdp-drop", drop, "#999"), ("xdp-tx", tx, "#c60")] {
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"{color}\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{2}\" y=\"{3}\" fill=\"{color}\" text-anchor=\"end\">{name}</text>",
            y(v),
            w - r,
            w - r,
            y(v) - 4.0
        );
    }
    let pts: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (_, v))| format!("{:.1},{:.1}", x(i), y(*v)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline fill=\"none\" stroke=\"#06c\" stroke-width=\"2\" points=\"{}\"/>",
        pts.join(" ")
    );
    for (i, (p, v)) in rows.iter().enumerate() {
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#06c\"/>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{p}</text>",
            x(i),
            y(*v),
            x(i),
            h - b + 16.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{axis}</text>\n</svg>",
        (l + w - r) / 2.0,
        h - 10.0
    );
    s
}

pub fn run(a: RunArgs, _pin_dir: &Path) -> Result<()> {
    let nics = match (&a.iface, &a.peer_iface) {
        (Some(i), Some(p)) => Some(Nics {
            iface: i.clone(),
            peer: p.clone(),
        }),
        (None, None) => None,
        _ => {
            bail!("--iface and --peer-iface go together: the node's port and the port cabled to it")
        }
    };
    if matches!(&nics, Some(n) if n.iface == n.peer) {
        bail!(
            "--iface and --peer-iface are both {}: give two ports cabled to each other",
            a.peer_iface.as_deref().unwrap_or_default()
        );
    }
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600]");
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.cores as usize > ncpu {
        bail!("--cores {} but this machine has {ncpu} CPUs", a.cores);
    }
    if let Some(sw) = &a.sweep {
        let max = match sw.axis {
            Axis::Flows => 1_000_000,
            Axis::Services => 100_000,
        };
        if let Some(p) = sw.points.iter().find(|&&p| p > max) {
            bail!("sweep point {p} above {max}");
        }
    }
    // fail early on a bad template (size too small for VXLAN/TCP...)
    Template::build(&spec(a.scenario, &a, a.flows, a.services, (MAC_C0, MAC_N0)))
        .context("--size / --flows do not fit this scenario's frames")?;
    if let Some(r) = a.rate.filter(|&r| r > 0) {
        let flows = match &a.sweep {
            Some(s) if s.axis == Axis::Flows => s.points.iter().copied().max().unwrap_or(a.flows),
            _ => a.flows,
        };
        let warm = f64::from(flows) * f64::from(a.cores) / r as f64;
        if warm > 5.0 {
            eprintln!(
                "note: every phase first sends each of {flows} flows once per core: ~{warm:.0} s at --rate {r}"
            );
        }
    }
    let stop = stop_flag();

    let topo = Topo::new(ncpu, a.egress, nics.as_ref())?;
    check_stop(&stop)?;
    let gen = Pktgen::load().context("loading the generator")?;
    let sink_fd = prog_fd(gen.sink_prog());
    let sinks = vec![
        attach_xdp(&topo, &topo.client, &topo.dev_c0, sink_fd, topo.ifindex_c0)
            .context("attaching the sink on the client side")?,
        attach_xdp(&topo, &topo.sink, S0, sink_fd, topo.ifindex_s0)
            .context("attaching the sink on the remote side")?,
    ];
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let base = xlb_bpf::baseline::BaselineSkelBuilder::default()
        .open(storage)
        .context("opening the baseline object")?
        .load()
        .context("loading the baseline object")?;
    let bench = Bench {
        a: &a,
        base,
        topo,
        gen,
        cpus: (0..a.cores as usize).collect(),
        stop,
        _sinks: sinks,
    };
    if bench.topo.real {
        // a clear error before any measurement when the node port lacks XDP
        let t = &bench.topo;
        drop(attach_xdp(
            t,
            &t.node,
            &t.dev_n0,
            prog_fd(&bench.base.progs.xlb_base_drop),
            t.ifindex_n0,
        )?);
    }
    if !a.json {
        let ct = if !a.scenario.is_xlb() {
            String::new()
        } else if matches!(&a.sweep, Some(s) if s.axis == Axis::Flows) {
            " | ct entries: 4 x flows (pow2, >= default)".to_string()
        } else {
            format!(" | {} ct entries", ct_entries(a.flows))
        };
        let t = &bench.topo;
        let ports = if t.real {
            format!(
                " | ports {} (node, {}, {} queues) <- {}",
                t.dev_n0,
                t.driver(&t.dev_n0),
                t.nic_queues,
                t.dev_c0
            )
        } else {
            String::new()
        };
        eprintln!(
            "xlb bench run: {}{ports} | egress {:?} | {} core(s) | {} flow(s) | {} service(s) | {} bytes {:?} | {} s per phase{ct}",
            a.scenario.name(),
            a.egress,
            a.cores,
            a.flows,
            a.services,
            a.size,
            a.proto,
            a.seconds
        );
    }
    // baselines on the scenario's own frames, interleaved with the scenario
    let macs = (bench.topo.mac_c0, bench.topo.mac_n0);
    let base_tmpl = Template::build(&spec(a.scenario, &a, a.flows, a.services, macs))?;
    let (mut drops, mut txs, mut ms, mut note) = (Vec::new(), Vec::new(), Vec::new(), None);
    for _ in 0..a.repeat {
        bench.gen.set_template(&base_tmpl, 0)?;
        let (d, t) = bench.baselines()?;
        drops.push(d);
        txs.push(t);
        if a.sweep.is_none() {
            let (m, n) = bench.scenario(a.flows, a.services)?;
            ms.push(m);
            note = note.or(n);
        }
    }
    let (drop, tx) = (median(drops), median(txs));

    let Some(sw) = &a.sweep else {
        let m = median(ms);
        let rep = report(&a, a.flows, &m, &drop, &tx);
        if a.json {
            println!("{}", serde_json::to_string(&rep)?);
        } else {
            println!("{}", table_header(""));
            println!("{}", table_row("xdp-drop baseline", &drop, &drop, &tx));
            println!("{}", table_row("xdp-tx baseline", &tx, &drop, &tx));
            println!("{}", table_row(a.scenario.name(), &m, &drop, &tx));
        }
        if let Some(n) = note {
            eprintln!("warning: {n}");
        }
        return Ok(());
    };

    let axis = match sw.axis {
        Axis::Flows => "flows",
        Axis::Services => "services",
    };
    if !a.json {
        println!("{}", table_header(&format!("{} {axis}", a.scenario.name())));
        println!("{}", table_row("xdp-drop baseline", &drop, &drop, &tx));
        println!("{}", table_row("xdp-tx baseline", &tx, &drop, &tx));
    }
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for &p in &sw.points {
        let (flows, services) = match sw.axis {
            Axis::Flows => (p, a.services),
            Axis::Services => (a.flows, p),
        };
        let mut ms = Vec::new();
        for _ in 0..a.repeat {
            let (m, note) = bench.scenario(flows, services)?;
            if let Some(n) = note {
                eprintln!("warning ({axis}={p}): {n}");
            }
            ms.push(m);
        }
        let m = median(ms);
        rows.push((p, m.mpps));
        if a.json {
            let mut v = serde_json::to_value(report(&a, flows, &m, &drop, &tx))?;
            v["flows"] = flows.into();
            v["services"] = services.into();
            json.push(v);
        } else {
            println!("{}", table_row(&format!("{axis}={p}"), &m, &drop, &tx));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string(&json)?);
    } else if rows.len() > 1 {
        let (lo, hi) = rows
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(r.1), hi.max(r.1)));
        if hi > 0.0 {
            println!(
                "spread over the sweep: min/max = {:.3} ({:.1}% below the best point)",
                lo / hi,
                100.0 * (1.0 - lo / hi)
            );
        }
    }
    if let Some(path) = &a.svg {
        std::fs::write(path, svg(axis, &rows, drop.mpps, tx.mpps))
            .with_context(|| format!("writing {}", path.display()))?;
        if !a.json {
            eprintln!("plot written to {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse() {
        let s: Sweep = "flows=1,1_000,1000000".parse().unwrap();
        assert_eq!(s.axis, Axis::Flows);
        assert_eq!(s.points, vec![1, 1000, 1_000_000]);
        assert!("services=".parse::<Sweep>().is_err());
        assert!("flows=0".parse::<Sweep>().is_err());
        assert!("cores=1".parse::<Sweep>().is_err());
        assert!("flows".parse::<Sweep>().is_err());
    }

    #[test]
    fn ct_holds_two_entries_per_flow_with_headroom() {
        assert_eq!(ct_entries(1), XLB_CT_ENTRIES);
        assert_eq!(ct_entries(100_000), XLB_CT_ENTRIES);
        assert_eq!(ct_entries(300_000), 1 << 21);
        assert_eq!(ct_entries(1_000_000), 1 << 22);
        for f in [1, 1000, 262_145, 1_000_000] {
            assert!(ct_entries(f) >= 4 * f && ct_entries(f).is_power_of_two());
        }
    }

    #[test]
    fn service_addresses_stay_in_the_service_range() {
        for i in [0, 1, 65533, 65534, 99_999] {
            let a = svc_addr(i);
            assert_eq!(a.ip().octets()[..2], [10, 96]);
            assert_ne!(a.ip().octets()[2..], [255, 255]);
        }
        assert_ne!(svc_addr(0), svc_addr(65534));
    }

    #[test]
    fn rules_name_every_service_once() {
        let a = RunArgs {
            scenario: Scenario::Iptables,
            cores: 1,
            flows: 1,
            services: 10,
            size: 64,
            seconds: 1.0,
            proto: ProtoArg::Udp,
            rate: None,
            batch: 64,
            egress: Egress::Same,
            iface: None,
            peer_iface: None,
            sweep: None,
            svg: None,
            repeat: 1,
            json: false,
        };
        let r = iptables_rules(&a, 10);
        assert_eq!(r.matches("-A KUBE-SERVICES -d ").count(), 10);
        assert_eq!(
            r.matches("DNAT --to-destination").count(),
            BACKENDS as usize
        );
        let n = nft_rules(&a, 10);
        assert_eq!(n.matches(" : goto svc-").count(), 11);
        assert!(svg("flows", &[(1, 1.0), (10, 0.9)], 2.0, 1.5).contains("<polyline"));
    }
}
