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

mod args;
mod ctmem;
mod frames;
mod maps;
mod measure;
mod nic;
mod output;
mod rules;
mod topo;
mod topo6;

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use xlb_pktgen::{Pktgen, Template};

use args::cpus;
pub use args::{Axis, ProtoArg, RunArgs, Scenario, Sweep};
use frames::spec;
pub use maps::ct_entries;
use measure::*;
use output::*;
pub use output::{LatencyUs, Report};
use topo::*;

pub fn run(a: RunArgs, _pin_dir: &Path) -> Result<()> {
    let nics = a.nics().map_err(anyhow::Error::msg)?;
    a.check().map_err(anyhow::Error::msg)?;
    let ncpu = cpus();
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
    if a.scenario.is_v6() {
        topo.add_ipv6()
            .context("IPv6 in the bench's node namespace")?;
    }
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
            format!(
                " | {} ct entries",
                maps::scenario_ct_entries(a.scenario, a.flows)
            )
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
            "xlb bench run: {}{ports} | egress {:?} | {} core(s) | {} | {} service(s) | {} bytes {:?} | {} s per phase{ct}",
            a.scenario.name(),
            a.egress,
            a.cores,
            if a.new_flows {
                "every packet a new flow".to_string()
            } else {
                format!("{} flow(s)", a.flows)
            },
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
            if let Some(line) = state_line(&rep) {
                println!("{line}");
            }
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
