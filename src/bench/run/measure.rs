//! Measuring one phase: attach a program on the node's port, warm up, send
//! for `--seconds`, count where the frames come out (see the module docs of
//! `bench::run`).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xlb_bpf::consts::*;
use xlb_pktgen::{Latency, Limit, Pktgen, RunOptions, Template};

use super::args::{RunArgs, Scenario};
use super::ctmem::{self, CtMem};
use super::frames::{spec, TABLE};
use super::maps::{ct_entries, established_kept, fill_maps, half_open_live, put_established};
use super::rules::{iptables_rules, nft_rules};
use super::topo::*;

/// One measured phase.
#[derive(Clone, Debug)]
pub(super) struct Measure {
    pub(super) mpps: f64,
    pub(super) per_core: Vec<f64>,
    pub(super) sent: u64,
    pub(super) received: u64,
    /// Of `received`, frames that arrived VXLAN-encapsulated.
    pub(super) vxlan: u64,
    pub(super) latency: Option<Latency>,
    /// xlb: the ct map after the phase.
    pub(super) ct: Option<CtMem>,
    /// Connection-tracking entries left: xlb's ct map, or what the phase
    /// added to the node namespace's conntrack table.
    pub(super) ct_live: Option<u64>,
    /// xlb with --new-flows: established flows of another Service written
    /// before the phase, and how many kept their ct entry and backend.
    pub(super) established: Option<(u64, u64)>,
    /// xlb: `ct_syn` slots in use after the phase.
    pub(super) half_open: Option<u64>,
}

/// Entries in the conntrack table of namespace `ns`.
fn conntrack_count(ns: &str) -> Result<u64> {
    Topo::within(ns, || {
        let p = "/proc/sys/net/netfilter/nf_conntrack_count";
        let s = std::fs::read_to_string(p).with_context(|| format!("reading {p}"))?;
        s.trim()
            .parse()
            .with_context(|| format!("parsing {p}: {s:?}"))
    })
}

pub(super) static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::SeqCst);
    }
}

pub(super) fn stop_flag() -> Arc<AtomicBool> {
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

pub(super) fn check_stop(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Attaches the XDP program `prog_fd` to `ifindex` in namespace `ns` through a
/// BPF link; closing the returned fd detaches it. On real ports only in
/// driver (native) mode, with a clear error where the driver has none.
pub(super) fn attach_xdp(
    t: &Topo,
    ns: &str,
    dev: &str,
    prog_fd: i32,
    ifindex: u32,
) -> Result<OwnedFd> {
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

pub(super) fn prog_fd(p: &libbpf_rs::ProgramMut<'_>) -> i32 {
    use std::os::fd::{AsFd, AsRawFd};
    p.as_fd().as_raw_fd()
}

/// The whole context of one invocation.
pub(super) struct Bench<'a> {
    pub(super) a: &'a RunArgs,
    // fields drop in order: the sinks' links detach before the topology
    // moves real ports back and deletes the namespaces
    pub(super) _sinks: Vec<OwnedFd>,
    pub(super) topo: Topo,
    pub(super) gen: Pktgen,
    pub(super) cpus: Vec<usize>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) base: xlb_bpf::baseline::BaselineSkel<'static>,
}

/// The run with the median Mpps.
pub(super) fn median(mut v: Vec<Measure>) -> Measure {
    v.sort_by(|a, b| a.mpps.total_cmp(&b.mpps));
    let mid = v.len() / 2;
    v.swap_remove(mid)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Point {
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
            ct: None,
            ct_live: None,
            established: None,
            half_open: None,
        })
    }

    fn with_node_prog(&self, fd: i32, label: &str, point: Point, flows: u32) -> Result<Measure> {
        let t = &self.topo;
        let _link = attach_xdp(t, &t.node, &t.dev_n0, fd, t.ifindex_n0)
            .with_context(|| format!("attaching {label} to {}", t.dev_n0))?;
        self.measure(label, point, flows)
    }

    pub(super) fn baselines(&self) -> Result<(Measure, Measure)> {
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
    pub(super) fn scenario(&self, flows: u32, services: u32) -> Result<(Measure, Option<String>)> {
        let s = self.a.scenario;
        let macs = (self.topo.mac_c0, self.topo.mac_n0);
        let tmpl = Template::build(&spec(s, self.a, flows, services, macs))
            .context("building the frame template")?;
        self.gen.set_template(&tmpl, 0)?;
        let ns = &self.topo.node;
        if s.is_xlb() {
            // one more region for --new-flows' established flows
            let slots = ((services + 1) * TABLE).max(XLB_MAGLEV_SLOTS);
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
            let established = if self.a.new_flows {
                put_established(&dp.maps, services, self.a)
                    .context("writing the established flows")?
            } else {
                Vec::new()
            };
            tracing::info!("maps filled in {:?}", t0.elapsed());
            check_stop(&self.stop)?;
            let mut m =
                self.with_node_prog(prog_fd(dp.xdp_prog()), s.name(), Point::Sink, flows)?;
            // the scenario's family: ct6 holds the IPv6 flows
            let ct_map = match dp.maps.v6() {
                Some(m6) if s.is_v6() => &m6.ct6,
                _ => &dp.maps.ct,
            };
            let ct = ctmem::measure(ct_map).context("counting the ct entries")?;
            m.ct = Some(ct);
            m.ct_live = Some(ct.live);
            m.half_open = Some(half_open_live(&dp).context("counting the half-open slots")?);
            if self.a.new_flows {
                m.established = Some((
                    established.len() as u64,
                    established_kept(&dp.maps, &established)?,
                ));
            }
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
            let before = conntrack_count(ns);
            let m = self
                .measure(s.name(), Point::Sink, flows)
                .and_then(|mut m| {
                    m.ct_live = Some(conntrack_count(ns)?.saturating_sub(before?));
                    Ok(m)
                });
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
