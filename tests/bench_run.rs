//! `xlb bench run` end to end: its own namespaces, JSON that parses, fields
//! that agree with each other. Short runs; no assertion on speed.
use std::process::Command;

use serde_json::Value;
use xlb_loader::testutil::privileged;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(["bench", "run", "--seconds", "0.2", "--json"])
        .args(args)
        .output()
        .expect("running xlb");
    assert!(
        out.status.success(),
        "xlb bench run {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is a number in {v}"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is an integer in {v}"))
}

const KEYS: [&str; 11] = [
    "scenario",
    "cores",
    "mpps",
    "per_core_mpps",
    "baseline_drop_mpps",
    "baseline_tx_mpps",
    "ratio_drop",
    "ratio_tx",
    "latency_us",
    "sent",
    "received",
];

/// Every documented key, and the relations between them.
fn consistent(v: &Value, scenario: &str, cores: u64) {
    let obj = v.as_object().expect("an object");
    for k in KEYS {
        assert!(obj.contains_key(k), "{k} missing in {v}");
    }
    assert_eq!(v["scenario"], scenario);
    assert_eq!(u(v, "cores"), cores);
    let per: Vec<f64> = v["per_core_mpps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(per.len() as u64, cores);
    let mpps = f(v, "mpps");
    assert!((per.iter().sum::<f64>() - mpps).abs() <= 1e-9 * mpps.max(1.0));
    assert!(u(v, "received") <= u(v, "sent"));
    assert!(u(v, "sent") > 0);
    for (r, b) in [
        ("ratio_drop", "baseline_drop_mpps"),
        ("ratio_tx", "baseline_tx_mpps"),
    ] {
        let base = f(v, b);
        assert!(base > 0.0, "{b} measured");
        assert!(
            (f(v, r) - mpps / base).abs() <= 1e-9 * (mpps / base).max(1.0),
            "{r}"
        );
    }
    let l = &v["latency_us"];
    let (p50, p99, p999) = (f(l, "p50"), f(l, "p99"), f(l, "p999"));
    assert!(p50 <= p99 && p99 <= p999, "{l}");
    if u(v, "received") > 0 {
        assert!(p50 > 0.0);
    }
}

#[test]
fn iptables_run_reports_consistent_json() {
    if !privileged() {
        return;
    }
    let v = bench(&[
        "--scenario",
        "iptables",
        "--services",
        "20",
        "--flows",
        "50",
    ]);
    consistent(&v, "iptables", 1);
    assert_eq!(
        v.as_object().unwrap().len(),
        KEYS.len(),
        "exactly the keys: {v}"
    );
    // the kernel forwards these: some arrive at the sink
    assert!(u(&v, "received") > 0, "{v}");
}

#[test]
fn two_core_run_reports_two_per_core_figures() {
    if !privileged() {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipping: one CPU");
        return;
    }
    let v = bench(&["--scenario", "nftables", "--cores", "2"]);
    consistent(&v, "nftables", 2);
}

#[test]
fn xlb_scenarios_run_and_report() {
    if !privileged() {
        return;
    }
    for s in ["nodeport-remote", "clusterip-decap", "reply-revnat"] {
        let v = bench(&[
            "--scenario",
            s,
            "--size",
            "128",
            "--flows",
            "10",
            "--services",
            "3",
        ]);
        consistent(&v, s, 1);
        // the real data plane forwards them (DNAT + encap, or reverse NAT)
        assert!(u(&v, "received") > 0, "{s}: {v}");
    }
}

#[test]
fn sweep_prints_one_row_per_point() {
    if !privileged() {
        return;
    }
    let svg = std::env::temp_dir().join(format!(
        "{}.svg",
        xlb_loader::testutil::unique_name("xlbsvg")
    ));
    let v = bench(&[
        "--scenario",
        "nodeport-remote",
        "--sweep",
        "services=1,10",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let plot = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    let rows = v.as_array().expect("an array of points");
    assert_eq!(rows.len(), 2);
    assert_eq!(u(&rows[0], "services"), 1);
    assert_eq!(u(&rows[1], "services"), 10);
    for r in rows {
        consistent(r, "nodeport-remote", 1);
    }
    assert!(plot.starts_with("<svg") && plot.contains("<polyline"));
}

#[test]
fn bad_arguments_fail_cleanly() {
    for args in [
        &["--scenario", "nope"][..],
        &["--scenario", "iptables", "--size", "63"],
        &["--scenario", "iptables", "--flows", "0"],
        &["--scenario", "iptables", "--sweep", "cores=1"],
        &["--scenario", "iptables", "--svg", "x.svg"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
            .args(["bench", "run"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // a size too small for VXLAN + stamp: a clear error before any namespace
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args([
            "bench",
            "run",
            "--scenario",
            "clusterip-decap",
            "--size",
            "64",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("size"));
}
