//! What a run prints: the JSON report, the table, the SVG plot of a sweep.

use std::fmt::Write as _;

use serde::Serialize;
use xlb_pktgen::Latency;

use super::args::RunArgs;
use super::maps::scenario_ct_entries;
use super::measure::Measure;

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
    /// Nanoseconds per packet the scenario adds on top of the XDP_DROP
    /// pipeline on one core ([`ns_over_drop`]); `null` if nothing arrived.
    pub ns_over_drop: Option<f64>,
    pub latency_us: LatencyUs,
    pub sent: u64,
    pub received: u64,
    /// Size of the data plane's connection-tracking map (xlb scenarios only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_entries: Option<u32>,
    /// Connection-tracking entries left after the scenario's phase: xlb's
    /// `ct` map, or the node namespace's conntrack table (iptables/nftables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_live_entries: Option<u64>,
    /// xlb: bytes one ct element costs in the kernel (see `ctmem`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_elem_bytes: Option<u64>,
    /// xlb: live entries x element bytes / flows (not with --new-flows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_bytes_per_flow: Option<f64>,
    /// xlb: the whole preallocated ct map as the kernel accounts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_map_bytes: Option<u64>,
    /// With --new-flows: flows set up per second per core (every packet
    /// that came out was a new flow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_flows_per_sec_per_core: Option<f64>,
    /// xlb with --new-flows: idle established flows of another Service in
    /// ct before the phase ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub established_flows: Option<u64>,
    /// ... and how many still had their ct entry and backend after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub established_kept: Option<u64>,
    /// xlb: half-open TCP connections left in `ct_syn` (slots in use; a
    /// SYN's state until the client's ACK, bpf/include/ctsyn.h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_live: Option<u64>,
}

/// Nanoseconds per packet per core on top of the XDP_DROP baseline:
/// `1000 / per-core Mpps - 1000 / per-core drop Mpps` (generator and veth
/// hops cancel out); `None` when either rate is zero.
pub fn ns_over_drop(mpps: f64, drop_mpps: f64, cores: u32) -> Option<f64> {
    let c = f64::from(cores.max(1));
    (mpps > 0.0 && drop_mpps > 0.0).then(|| 1000.0 * c / mpps - 1000.0 * c / drop_mpps)
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

pub(super) fn report(a: &RunArgs, flows: u32, m: &Measure, drop: &Measure, tx: &Measure) -> Report {
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
        ns_over_drop: ns_over_drop(m.mpps, drop.mpps, a.cores),
        latency_us: m.latency.into(),
        sent: m.sent,
        received: m.received,
        ct_entries: a
            .scenario
            .is_xlb()
            .then(|| scenario_ct_entries(a.scenario, flows)),
        ct_live_entries: m.ct_live,
        ct_elem_bytes: m.ct.map(|c| c.elem_bytes),
        ct_bytes_per_flow: m
            .ct
            .filter(|_| !a.new_flows)
            .and_then(|c| c.bytes_per_flow(u64::from(flows))),
        ct_map_bytes: m.ct.and_then(|c| c.map_bytes),
        new_flows_per_sec_per_core: a
            .new_flows
            .then(|| m.mpps * 1e6 / f64::from(a.cores.max(1))),
        established_flows: m.established.map(|e| e.0),
        established_kept: m.established.map(|e| e.1),
        half_open_live: m.half_open,
    }
}

/// The connection-tracking and new-flow figures of a report, for the table.
pub(super) fn state_line(r: &Report) -> Option<String> {
    let mut v = Vec::new();
    if let Some(n) = r.new_flows_per_sec_per_core {
        v.push(format!("new flows/s per core {n:.0}"));
    }
    if let Some(n) = r.ct_live_entries {
        v.push(format!("ct entries left {n}"));
    }
    if let Some(n) = r.half_open_live {
        v.push(format!("half-open left {n}"));
    }
    if let (Some(n), Some(k)) = (r.established_flows, r.established_kept) {
        v.push(format!("established flows of another Service kept {k}/{n}"));
    }
    if let Some(b) = r.ct_bytes_per_flow {
        v.push(format!("ct bytes/flow {b:.0}"));
    }
    if let Some(b) = r.ct_elem_bytes {
        v.push(format!("ct element {b} B"));
    }
    if let Some(b) = r.ct_map_bytes {
        v.push(format!("ct map {:.1} MiB", b as f64 / f64::from(1 << 20)));
    }
    (!v.is_empty()).then(|| v.join(", "))
}

pub(super) fn fmt_cores(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn table_row(name: &str, m: &Measure, drop: &Measure, tx: &Measure) -> String {
    let r = |b: &Measure| {
        if b.mpps > 0.0 {
            format!("{:.2}", m.mpps / b.mpps)
        } else {
            "-".into()
        }
    };
    let over = match ns_over_drop(m.mpps, drop.mpps, m.per_core.len() as u32) {
        Some(ns) => format!("{ns:.0}"),
        None => "-".into(),
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
        "{name:<18} {:>7.3} {:>14} {:>6} {:>6} {over:>7} {p50:>8} {p99:>8} {p999:>8} {:>11} {:>11}",
        m.mpps,
        fmt_cores(&m.per_core),
        r(drop),
        r(tx),
        m.sent,
        m.received
    )
}

pub(super) fn table_header(first: &str) -> String {
    format!(
        "{first:<18} {:>7} {:>14} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8} {:>11} {:>11}",
        "Mpps",
        "per core",
        "xdrop",
        "xtx",
        "ns+drop",
        "p50 us",
        "p99 us",
        "p999 us",
        "sent",
        "received"
    )
}

/// A line chart of Mpps per sweep point, with the baselines as dashed lines.
pub(super) fn svg(axis: &str, rows: &[(u32, f64)], drop: f64, tx: f64) -> String {
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

#[cfg(test)]
mod tests {
    #[test]
    fn ns_over_drop_is_the_per_core_time_added_to_the_drop_pipeline() {
        use super::ns_over_drop;
        // 2 Mpps vs 4 Mpps: 500 ns - 250 ns
        assert_eq!(ns_over_drop(2.0, 4.0, 1), Some(250.0));
        // two cores: per-core rates 1 and 2 Mpps
        assert_eq!(ns_over_drop(2.0, 4.0, 2), Some(500.0));
        assert_eq!(ns_over_drop(4.0, 4.0, 1), Some(0.0));
        assert_eq!(ns_over_drop(0.0, 4.0, 1), None);
        assert_eq!(ns_over_drop(1.0, 0.0, 1), None);
    }

    #[test]
    fn a_sweep_plots_a_line() {
        let s = super::svg("flows", &[(1, 1.0), (10, 0.9)], 2.0, 1.5);
        assert!(s.contains("<polyline"));
        assert_eq!(s.matches("<circle").count(), 2);
    }
}
