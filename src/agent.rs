//! # `xlb agent`: sources -> model -> sync, with metrics and health
//!
//! One agent per node. At start it
//! 1. binds the metrics/health listener (a port clash fails at once);
//! 2. loads the data plane with its maps pinned under `--pin-dir`, *reusing*
//!    the maps already pinned there (a restart or upgrade keeps every entry,
//!    connection tracking included), and pins the programs;
//! 3. adopts what the maps hold ([`Syncer::adopt`]: nothing is written yet);
//! 4. starts the source: `--manifests DIR`, or the Kubernetes API
//!    (`--kubeconfig`, else KUBECONFIG / ~/.kube/config / in-cluster);
//! 5. on the source's first *complete* snapshot: works out this node's
//!    address and uplink, writes the data-plane config, attaches XDP to the
//!    uplink (replacing an older xlb program in place, atomically) and tc to
//!    the pod veths (and keeps following new ones), then syncs. Only this
//!    first full sync removes stale entries; `/readyz` turns 200 after it.
//! 6. before every sync the maps that follow the cluster are grown when the
//!    desired state outgrows them ([`sizing`], [`capacity`]); what cannot be
//!    programmed fails `/readyz` ([`crate::unprogrammed`]);
//! 7. every later snapshot (debounced) is synced the same way, incrementally:
//!    only the objects that differ from the previous snapshot reach the model
//!    ([`Model::apply_snapshot`]) and only their Services reach the maps.
//!
//! SIGTERM / SIGINT stop the agent and leave the data plane as it is: maps
//! and links stay pinned and keep forwarding until the next agent adopts
//! them. `xlb agent --cleanup` is the uninstall: it detaches every hook and
//! removes every pin.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use xlb_bpf::types::xlb_config;
use xlb_bpf::wire::be32;
use xlb_bpf::Maps;
use xlb_loader::attach::{self, AttachMode};
use xlb_loader::netlink::IfacePatterns;
use xlb_loader::DataPlane;

use crate::metrics::{Metrics, ServiceLabel};
use crate::model::{Model, ModelConfig, Snapshot};
use crate::sources::SourceOptions;
use crate::sync::{SyncOptions, Syncer};
use crate::unprogrammed;
use args::parse_opt_addr;
pub use args::{parse_port_range, OptAddr, PortRange};

pub mod args;
mod capacity;
pub mod ct_timeouts;
pub mod health;
pub mod healthz;
pub mod http;
pub mod net;
pub mod sizing;
pub mod sock_term;

/// A sync taking longer than this replaced much of the model: memory is
/// trimmed after it.
const BIG_SYNC: Duration = Duration::from_millis(100);

/// Delay before a failed or partial sync is retried with the last snapshot.
const RETRY: Duration = Duration::from_secs(5);

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

    /// Uplink to attach XDP to; `auto` = the interface holding the node
    /// address. Without it the agent only syncs the maps (attach with
    /// `xlb attach`).
    #[arg(long, short = 'i', env = "XLB_IFACE", value_name = "IF")]
    pub iface: Option<String>,

    /// This node's underlay address (VXLAN outer source, NodePort address).
    /// Default: the Node's InternalIP, else the uplink's first IPv4 address.
    #[arg(long, env = "XLB_NODE_ADDR", value_name = "IPV4")]
    pub node_addr: Option<Ipv4Addr>,

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
    fn node_name(&self) -> String {
        self.node_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(net::hostname)
            .unwrap_or_default()
    }

    fn config_json(&self, pin_dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "source": if self.manifests.is_some() { "manifests" } else { "kubernetes" },
            "manifests": self.manifests,
            "kubeconfig": self.kubeconfig,
            "node_name": self.node_name(),
            "iface": self.iface,
            "node_addr": self.node_addr,
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
            "cgroup_root": self.cgroup_root,
            "ct_entries": self.ct_entries,
            "max_frontends": self.map_sizes.max_frontends,
            "max_backends": self.map_sizes.max_backends,
            "maglev_slots": self.map_sizes.maglev_slots,
            "affinity_entries": self.map_sizes.affinity_entries,
            "max_src_ranges": self.map_sizes.max_src_ranges,
            "pin_dir": pin_dir,
        })
    }
}

pub fn run(a: AgentArgs, pin_dir: &Path) -> anyhow::Result<()> {
    if a.print_config {
        println!("{}", serde_json::to_string_pretty(&a.config_json(pin_dir))?);
        return Ok(());
    }
    if a.cleanup {
        return cleanup(pin_dir);
    }
    // Two malloc arenas instead of glibc's 8 per core: the agent's big
    // allocations (a relist of 20,000 objects, a full model rebuild) happen
    // on whichever runtime or blocking thread runs them, and per-thread
    // arenas keep the freed memory of each such burst.
    // SAFETY: mallopt before any thread is started.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(Agent::run(a, pin_dir.to_owned()))
}

/// `--cleanup`: every hook of xlb's off, its pins (maps, programs, links)
/// and names file removed; nothing else (see `xlb detach --all`).
fn cleanup(pin_dir: &Path) -> anyhow::Result<()> {
    crate::cli::attach::remove_everything(pin_dir)
}

/// This node as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeNet {
    addr: Option<Ipv4Addr>,
    iface: Option<net::Iface>,
    /// The addresses NodePorts answer on (`--nodeport-addresses` applied).
    nodeport_addrs: Vec<Ipv4Addr>,
}

struct Agent {
    args: AgentArgs,
    pin_dir: PathBuf,
    node_name: String,
    dp: DataPlane,
    syncer: Syncer<Maps>,
    metrics: Arc<Metrics>,
    node: Option<NodeNet>,
    config: Option<xlb_config>,
    attached: bool,
    pods: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    names: BTreeMap<u32, String>,
    /// Frontends shadowing a node listener, as last reported.
    shadows: Vec<net::Shadow>,
    /// The incremental model, fed each snapshot's changes
    /// ([`Model::apply_snapshot`]); rebuilt when its config changes.
    model: Option<Model>,
    /// Service proxy health: the node health endpoint and health checks.
    proxy_health: Arc<healthz::ProxyHealth>,
    /// healthCheckNodePort listeners, and what the last snapshot wants.
    health_checks: health::ServiceHealth,
    health_wanted: Vec<health::HealthCheck>,
    /// What the last sync could not program.
    unprogrammed: Vec<unprogrammed::Unprogrammed>,
    /// Terminates node processes' UDP sockets of removed backends.
    sock_term: sock_term::Terminator,
}

impl Agent {
    async fn run(args: AgentArgs, pin_dir: PathBuf) -> anyhow::Result<()> {
        let metrics = Metrics::new();
        let listener = crate::metrics::bind(args.metrics_addr)
            .await
            .with_context(|| format!("listening on {} for metrics", args.metrics_addr))?;
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
        let proxy_health = healthz::ProxyHealth::new(healthz::DEFAULT_TIMEOUT);
        if let Some(addr) = args.healthz_addr.0 {
            tokio::spawn(healthz::serve(addr, proxy_health.clone(), metrics.clone()));
        }
        // kube-proxy without --nodeport-addresses: every address.
        let health_checks = health::ServiceHealth::new(
            vec![std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            proxy_health.clone(),
            metrics.clone(),
        );

        let dp = DataPlane::load(&capacity::load_options(&args, &pin_dir)).map_err(|e| {
            let eperm = e.to_string().contains("Operation not permitted");
            anyhow::Error::new(e).context(format!(
                "loading the data plane with maps pinned under {}{}",
                pin_dir.display(),
                if eperm {
                    " (not permitted: the agent needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, \
                     or root; kernels older than 5.8 need CAP_SYS_ADMIN)"
                } else {
                    ""
                }
            ))
        })?;
        if let Some(m) = &dp.mounted {
            tracing::warn!("{}", m.note());
        }
        attach::pin_programs(&pin_dir, &dp).context("pinning the programs")?;
        metrics.set_maps(Maps::from_pin_dir(&pin_dir)?);
        metrics.spawn_sampler(crate::metrics::SAMPLE_EVERY);
        let syncer = Syncer::adopt(
            Maps::from_pin_dir(&pin_dir)?,
            SyncOptions {
                names_file: Some(crate::names::path(&pin_dir)),
            },
        )
        .context("adopting the pinned maps")?;
        let occ = syncer.occupancy();
        tracing::info!(
            pin_dir = %pin_dir.display(),
            frontends = occ.frontends,
            backends = occ.backends,
            "data plane loaded; adopted what the maps hold (stale entries go after the first full sync)"
        );

        let opts = SourceOptions {
            debounce: Duration::from_millis(args.debounce_ms),
            service_selector: args.service_selector.clone(),
            ..Default::default()
        };
        metrics.set_source_status(opts.status.clone());
        proxy_health.watch_source(opts.status.clone());
        if let Some(sel) = &opts.service_selector {
            tracing::info!(selector = %sel, "handling only the Services this selector matches");
        }
        let mut rx = match &args.manifests {
            Some(dir) => crate::sources::manifests::watch_dir(dir.clone(), opts)
                .with_context(|| format!("reading manifests from {}", dir.display()))?,
            None => {
                let client = crate::sources::kube::client(args.kubeconfig.as_deref()).await?;
                crate::sources::kube::watch(client, opts)
            }
        };

        let left_unprogrammed =
            unprogrammed::read(&unprogrammed::path(&pin_dir)).unwrap_or_default();
        let sock_term = if args.no_socket_lb {
            sock_term::Terminator::off()
        } else {
            sock_term::Terminator::load(&dp, &metrics)
        };
        let mut agent = Agent {
            node_name: args.node_name(),
            args,
            pin_dir,
            dp,
            syncer,
            metrics,
            node: None,
            config: None,
            attached: false,
            pods: None,
            names: BTreeMap::new(),
            shadows: Vec::new(),
            model: None,
            proxy_health,
            health_checks,
            health_wanted: Vec::new(),
            // What an earlier agent left: replaced by the first sync's.
            unprogrammed: left_unprogrammed,
            sock_term,
        };
        // A pinned map smaller than its flag: grown to it now.
        agent.grow_maps(&sizing::Need::default(), &[]);
        tracing::info!(node = %agent.node_name, "agent started");

        // A source may hold a complete snapshot already (a manifest directory
        // is read before it returns): handle it as a change.
        rx.mark_changed();
        let (addrs_tx, mut addrs_rx) = tokio::sync::watch::channel(0u64);
        let addrs_stop = Arc::new(AtomicBool::new(false));
        let addrs_thread = net::watch_addrs(addrs_tx, addrs_stop.clone())?;
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        // A sync that failed (maps unusable) or left ports unapplied (a full
        // map) is retried with the last snapshot, not only on the next change.
        let mut last: Option<Arc<Snapshot>> = None;
        let mut retry: Option<tokio::time::Instant> = None;
        let mut health_retry = tokio::time::interval(health::RETRY);
        health_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let retry_at = retry;
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = health_retry.tick(), if agent.health_checks.has_failed() => {
                    agent.health_checks.sync(&agent.health_wanted).await;
                }
                _ = async { tokio::time::sleep_until(retry_at.unwrap()).await }, if retry_at.is_some() => {
                    retry = None;
                    if let Some(snap) = last.clone() {
                        tracing::info!("retrying the last sync");
                        match tokio::task::block_in_place(|| agent.on_snapshot(&snap)) {
                            Ok(true) => retry = Some(tokio::time::Instant::now() + RETRY),
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                }
                _ = addrs_rx.changed() => {
                    // A node address came or went: node facts again.
                    if let Some(snap) = last.clone() {
                        match tokio::task::block_in_place(|| agent.on_snapshot(&snap)) {
                            Ok(true) => retry = Some(tokio::time::Instant::now() + RETRY),
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                }
                r = rx.changed() => {
                    if r.is_err() {
                        break Err(anyhow::anyhow!("the source stopped"));
                    }
                    let snap = rx.borrow_and_update().clone();
                    if let Some(snap) = snap {
                        agent.proxy_health.queued_update();
                        let started = Instant::now();
                        let synced = tokio::task::block_in_place(|| agent.on_snapshot(&snap));
                        if started.elapsed() > BIG_SYNC {
                            // A big sync (a relist, a rebuild) freed the
                            // previous generation of its structures: give
                            // the pages back.
                            // SAFETY: malloc_trim has no preconditions.
                            unsafe { libc::malloc_trim(0) };
                        }
                        agent.sync_health_checks(&snap).await;
                        match synced {
                            Ok(true) => retry = Some(tokio::time::Instant::now() + RETRY),
                            Ok(false) => retry = None,
                            // Fatal: the data plane cannot be set up (attach, config).
                            Err(e) => break Err(e),
                        }
                        last = Some(snap);
                    }
                }
            }
        };
        agent.health_checks.close_all().await;
        agent.stop();
        addrs_stop.store(true, Ordering::Relaxed);
        let _ = addrs_thread.join();
        result
    }

    /// One complete snapshot: node facts, attach (first time), config, sync.
    /// `Ok(true)`: something was not applied and is worth retrying.
    fn on_snapshot(&mut self, snap: &Snapshot) -> anyhow::Result<bool> {
        let started = Instant::now();
        let node = self.resolve_node(snap)?;
        if !self.attached {
            if let Some(iface) = &node.iface {
                self.attach(iface)?;
            }
            self.attached = true;
        }
        self.write_config(&node)?;
        net::log_nodeport_addrs(
            self.node.as_ref().map(|n| n.nodeport_addrs.as_slice()),
            &node.nodeport_addrs,
        );
        self.node = Some(node.clone());

        let cfg = ModelConfig {
            node_name: self.node_name.clone(),
            node_addrs: node
                .addr
                .into_iter()
                .chain(node.nodeport_addrs.iter().copied())
                .collect(),
            nodeport_cidrs: self.args.nodeport_addresses.0.clone(),
            nodeport_range: self.args.nodeport_range.lo..=self.args.nodeport_range.hi,
            vtep_mac_annotation: self.args.vtep_annotation.clone(),
            ..Default::default()
        };
        // Only the objects that differ from the last snapshot are fed to the
        // model, which recomputes only their Services; unchanged Services
        // keep their Arc and the syncer skips them by pointer.
        let model = match &mut self.model {
            Some(m) if *m.config() == cfg => {
                let delta = m.apply_snapshot(snap);
                tracing::debug!(?delta, "snapshot applied to the model");
                m
            }
            slot => {
                if slot.is_some() {
                    tracing::info!("node facts changed: rebuilding the model");
                }
                slot.insert(Model::from_snapshot(snap, cfg))
            }
        };
        let desired = model.desired();
        for (obj, why) in &desired.skipped {
            tracing::debug!("model skipped {obj}: {why}");
        }
        self.metrics.set_frontend_conflicts(desired.conflicts.len());
        let shadows = net::shadows(
            desired,
            &desired.local_addrs,
            !self.args.no_socket_lb && net::loopback_nodeports(&self.args.nodeport_addresses.0),
            &net::listeners(),
        );
        for s in &shadows {
            if !self.shadows.contains(s) {
                tracing::warn!(
                    frontend = %s.frontend,
                    listener = %format!("{}:{}/{}", s.listener.addr, s.listener.port, s.listener.proto),
                    "a Service frontend on a node address takes the traffic of a process listening on the node (the Service wins, as with kube-proxy)"
                );
            }
        }
        self.metrics.set_shadows(shadows.len());
        self.shadows = shadows;
        // Room for the desired state first; once more when a sync still
        // finds a map full (a fragmented slot array), and the sync again.
        let need = sizing::need(desired);
        self.grow_maps(&need, &[]);
        let model = self.model.as_ref().expect("set above");
        let mut res = self.syncer.apply(model.desired());
        if let Ok(rep) = &res {
            let full = sizing::full_maps(&unprogrammed::from_failed(&rep.failed));
            if !full.is_empty() && self.grow_maps(&need, &full) {
                let model = self.model.as_ref().expect("set above");
                res = self.syncer.apply(model.desired());
            }
        }
        let desired = self.model.as_ref().expect("set above").desired();
        let retry = match res {
            Ok(rep) => {
                let took = started.elapsed();
                self.metrics.observe_sync(took, true);
                self.proxy_health.updated();
                tracing::debug!(?rep, ?took, "synced");
                self.sock_term.synced(&desired.services, &self.metrics);
                if !self.metrics.is_ready() {
                    self.metrics.set_ready();
                    tracing::info!(
                        services = snap.services.len(),
                        ports = desired.ports().count(),
                        ?took,
                        "first complete sync applied"
                    );
                }
                self.report_unprogrammed(unprogrammed::from_failed(&rep.failed));
                !rep.failed.is_empty()
            }
            Err(e) => {
                self.metrics.observe_sync(started.elapsed(), false);
                tracing::error!("sync failed: {e}; retrying in {RETRY:?} or with the next change");
                true
            }
        };
        self.metrics
            .set_objects(snap.services.len(), snap.slices.len(), snap.nodes.len());
        let names = self.syncer.service_names();
        if *names != self.names {
            self.names = names.clone();
            self.metrics.set_services(
                self.names
                    .iter()
                    .map(|(id, n)| ServiceLabel::parse(*id, n))
                    .collect(),
            );
        }
        Ok(retry)
    }

    /// What the last sync could not program: metric, readiness, the file
    /// `xlb doctor` and `xlb maps` read, and a log line when it changes.
    fn report_unprogrammed(&mut self, list: Vec<unprogrammed::Unprogrammed>) {
        if list != self.unprogrammed {
            match unprogrammed::summary(&list) {
                Some(s) => tracing::warn!("not ready: {s}"),
                None => tracing::info!("everything desired is programmed: ready"),
            }
            for u in &list {
                tracing::warn!("not programmed: {}: {}", u.what, u.why);
            }
            let path = unprogrammed::path(&self.pin_dir);
            if let Err(e) = unprogrammed::write(&path, &list) {
                tracing::warn!("writing {}: {e}", path.display());
            }
        }
        self.metrics.set_unprogrammed(list.clone());
        self.unprogrammed = list;
    }

    /// The healthCheckNodePort listeners and this node's eligibility, for
    /// the snapshot just synced.
    async fn sync_health_checks(&mut self, snap: &Snapshot) {
        let own = snap
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.node_name.as_str()));
        self.proxy_health.sync_node(own.map(|n| &**n));
        self.health_wanted = health::wanted(snap, &self.node_name);
        self.health_checks.sync(&self.health_wanted).await;
    }

    /// This node's address and uplink: flags first, then the Node object.
    fn resolve_node(&self, snap: &Snapshot) -> anyhow::Result<NodeNet> {
        let from_node = own_node_addr(snap, &self.node_name);
        let iface = match self.args.iface.as_deref() {
            None | Some("") => None,
            Some("auto") => {
                let Some(addr) = self.args.node_addr.or(from_node) else {
                    bail!(
                        "--iface auto: no node address (pass --node-addr, or make sure Node {} has an InternalIP)",
                        self.node_name
                    );
                };
                match net::iface_with_addr(addr)? {
                    Some(name) => Some(name),
                    None => bail!("--iface auto: no interface holds {addr}"),
                }
            }
            Some(name) => Some(name.to_owned()),
        };
        let iface = match iface {
            Some(name) => Some(net::iface(&name).with_context(|| format!("looking up {name}"))?),
            None => None,
        };
        let addr = self
            .args
            .node_addr
            .or(from_node)
            .or_else(|| iface.as_ref().and_then(|i| i.addrs.first().copied()));
        let had_addr = self.node.as_ref().map(|n| n.addr.is_some());
        if addr.is_none() && had_addr != Some(false) {
            tracing::warn!(
                node = %self.node_name,
                "no node address yet (no --node-addr, no InternalIP on the Node, no --iface): \
                 NodePort and VXLAN wait for it"
            );
        }
        let nodeport_addrs = net::nodeport_addrs(&self.args.nodeport_addresses.0)
            .context("listing this node's addresses")?;
        Ok(NodeNet {
            addr,
            iface,
            nodeport_addrs,
        })
    }

    fn attach(&mut self, iface: &net::Iface) -> anyhow::Result<()> {
        let a = attach::attach_uplink(
            &self.pin_dir,
            self.dp.xdp_prog().as_fd(),
            &iface.name,
            self.args.xdp_mode,
            self.args.fallback_generic,
        )
        .with_context(|| format!("attaching XDP to {}", iface.name))?;
        if let Some(w) = &a.warning {
            tracing::warn!("{w}");
        }
        tracing::info!(iface = %a.iface, hook = %a.hook.describe(), replaced = a.replaced, "uplink attached");
        for (_, name) in xlb_loader::sys::interfaces() {
            if name != iface.name && self.args.pod_ifaces.matches(&name) {
                match attach::attach_pod(&self.pin_dir, self.dp.tc_prog().as_fd(), &name) {
                    Ok(p) => {
                        tracing::debug!(iface = %p.iface, hook = %p.hook.describe(), "pod interface attached")
                    }
                    Err(e) => tracing::warn!("pod interface {name}: {e}"),
                }
                if let Err(e) = attach::attach_pod_egress(
                    &self.pin_dir,
                    self.dp.tc_egress_prog().as_fd(),
                    &name,
                ) {
                    tracing::warn!("pod interface {name} (egress): {e}");
                }
            }
        }
        attach::pin_programs(&self.pin_dir, &self.dp).context("pinning the programs")?;
        if self.args.no_socket_lb {
            let gone = xlb_loader::cgroup::detach(&self.pin_dir)
                .context("detaching the socket hooks (--no-socket-lb)")?;
            if !gone.is_empty() {
                tracing::info!("--no-socket-lb: socket hooks of an earlier run removed");
            }
        } else {
            let flags = if net::loopback_nodeports(&self.args.nodeport_addresses.0) {
                xlb_bpf::consts::XLB_SOCK_F_LOOPBACK
            } else {
                0
            };
            let done = crate::cli::attach::attach_sockets(
                &self.pin_dir,
                &self.dp,
                flags,
                self.args.cgroup_root.as_deref(),
            )?;
            if let Some(s) = done.first() {
                tracing::info!(
                    cgroup = %s.cgroup.display(),
                    replaced = s.replaced,
                    loopback_nodeports = flags != 0,
                    "socket hooks attached (connect4, sendmsg4, recvmsg4, getpeername4)"
                );
            }
        }
        if !self.args.pod_ifaces.is_empty() {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, pin, pats) = (
                stop.clone(),
                self.pin_dir.clone(),
                self.args.pod_ifaces.clone(),
            );
            let h = std::thread::Builder::new()
                .name("xlb-pod-ifaces".into())
                .spawn(move || {
                    if let Err(e) =
                        xlb_loader::netlink::follow_pods(&pin, pats, &s, Duration::from_millis(200))
                    {
                        tracing::error!("following pod interfaces stopped: {e}");
                    }
                })
                .context("starting the pod interface thread")?;
            self.pods = Some((stop, h));
        }
        Ok(())
    }

    /// The `config` map: node address, VXLAN, uplink; written when it changes.
    fn write_config(&mut self, node: &NodeNet) -> anyhow::Result<()> {
        let maps = &self.dp.maps;
        let mut c = maps.config().context("reading the config map")?;
        if let Some(a) = node.addr {
            c.node_addr = be32(a);
        }
        c.vxlan_port = self.args.vxlan_port.to_be();
        c.vni = self.args.vni;
        if let Some(i) = &node.iface {
            c.ifindex = i.ifindex;
            c.mac = i.mac;
            c.mtu = i.mtu;
        }
        c.flags |= xlb_bpf::consts::XLB_CFG_F_REJECT;
        self.args.ct_timeouts.apply(&mut c);
        if node.addr.is_some() {
            c.flags |= xlb_bpf::consts::XLB_CFG_F_VXLAN;
        }
        if self.config.as_ref().map(plain_bytes) != Some(plain_bytes(&c)) {
            maps.put_config(&c).context("writing the config map")?;
            tracing::info!(
                node_addr = %c.node_addr(),
                vxlan_port = self.args.vxlan_port,
                vni = c.vni,
                ifindex = c.ifindex,
                "data-plane config written"
            );
            self.config = Some(c);
        }
        Ok(())
    }

    /// Stops the agent's threads; the data plane stays.
    fn stop(&mut self) {
        if let Some((stop, h)) = self.pods.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        tracing::info!(
            pin_dir = %self.pin_dir.display(),
            "agent stopped; the data plane keeps forwarding (maps and links stay pinned; \
             `xlb agent --cleanup` removes them)"
        );
    }
}

fn plain_bytes(c: &xlb_config) -> Vec<u8> {
    // SAFETY: xlb_config is Plain (integers only, explicit padding).
    unsafe { plain::as_bytes(c) }.to_vec()
}

/// The first IPv4 InternalIP of the Node named `name`.
fn own_node_addr(snap: &Snapshot, name: &str) -> Option<Ipv4Addr> {
    let node = snap
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))?;
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}
