//! `xlb bench run` end to end: its own namespaces, JSON that parses, fields
//! that agree with each other. Short runs; no assertion on speed.
use std::process::Command;

use serde_json::Value;
use xlb_testkit::netns::veth_pair;
use xlb_testkit::{precondition, privileged, run_ok, several_cpus, unique_name};

fn bench(args: &[&str]) -> Value {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_xlb"))
            .args(["bench", "run", "--seconds", "0.2", "--json"])
            .args(args),
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

const KEYS: [&str; 12] = [
    "scenario",
    "cores",
    "mpps",
    "per_core_mpps",
    "baseline_drop_mpps",
    "baseline_tx_mpps",
    "ratio_drop",
    "ratio_tx",
    "ns_over_drop",
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
    // the marginal cost: per-core ns per packet over the XDP_DROP pipeline
    if mpps > 0.0 {
        let c = cores as f64;
        let want = 1000.0 * c / mpps - 1000.0 * c / f(v, "baseline_drop_mpps");
        let got = f(v, "ns_over_drop");
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "ns_over_drop {got} vs {want}"
        );
    } else {
        assert!(v["ns_over_drop"].is_null(), "{v}");
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
        KEYS.len() + 1,
        "exactly the keys and ct_live_entries: {v}"
    );
    // the node's conntrack holds at least the flows that went through
    assert!(u(&v, "ct_live_entries") >= 1, "{v}");
    // the kernel forwards these: some arrive at the sink
    assert!(u(&v, "received") > 0, "{v}");
}

#[test]
fn two_core_run_reports_two_per_core_figures() {
    if !privileged() || !precondition(several_cpus(), "two CPUs") {
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
    // entries per flow on the balancing node: None = at least one
    for (s, proto, per_flow) in [
        // UDP and TCP of a Service with a stateless path to a remote
        // backend: none (bpf/include/stateless.h; the backend's node
        // reverse-NATs: tunnel NAT)
        ("nodeport-remote", "udp", Some(0)),
        ("nodeport-remote", "tcp-ack", Some(0)),
        ("clusterip-decap", "udp", None),
        ("reply-revnat", "udp", None),
    ] {
        let v = bench(&[
            "--scenario",
            s,
            "--proto",
            proto,
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
        // ct sized for the flows, never below the default
        assert_eq!(u(&v, "ct_entries"), 1 << 20, "{v}");
        ct_state_consistent(&v, 10, per_flow);
    }
}

/// The IPv6 scenarios: IPv6 frames through the real data plane's IPv6 path
/// (NodePort DNAT to an IPv6 backend on the remote node, or VXLAN over IPv6
/// decapsulated, DNATed and re-encapsulated), ct figures from ct6. Frames
/// below an IPv6 frame's minimum are refused.
#[test]
fn ipv6_scenarios_run_and_report() {
    if !privileged() {
        return;
    }
    for (s, proto, size) in [
        ("nodeport-remote-v6", "udp", "128"),
        ("nodeport-remote-v6", "tcp-ack", "128"),
        ("clusterip-decap-v6", "udp", "152"),
    ] {
        let v = bench(&[
            "--scenario",
            s,
            "--proto",
            proto,
            "--size",
            size,
            "--flows",
            "10",
            "--services",
            "3",
        ]);
        consistent(&v, s, 1);
        assert!(u(&v, "received") > 0, "{s} {proto}: {v}");
        ct_state_consistent(&v, 10, None);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args([
            "bench",
            "run",
            "--scenario",
            "nodeport-remote-v6",
            "--seconds",
            "0.2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--size 80"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// xlb's ct figures: the flows' entries are counted (`per_flow` each, or at
/// least one), an element costs at least the kernel's 48-byte header plus
/// key and value, bytes per flow are live entries x element / flows, and the
/// whole preallocated map is at least its elements.
fn ct_state_consistent(v: &Value, flows: u64, per_flow: Option<u64>) {
    let live = u(v, "ct_live_entries");
    match per_flow {
        Some(n) => assert_eq!(live, n * flows, "{n} entries per flow: {v}"),
        None => assert!(live >= flows, "one entry per flow at least: {v}"),
    }
    let elem = u(v, "ct_elem_bytes");
    assert!(elem >= 48 + 16 + 40, "{v}");
    let per_flow = f(v, "ct_bytes_per_flow");
    let want = (live * elem) as f64 / flows as f64;
    assert!(
        (per_flow - want).abs() <= 1e-9 * want,
        "{per_flow} vs {want}"
    );
    assert!(u(v, "ct_map_bytes") >= u(v, "ct_entries") * elem, "{v}");
}

/// `--new-flows`: every packet that came out set up a flow of its own, so
/// the state left holds at least one entry per received packet (paced, so
/// the run stays far below the ct map's size and nothing is evicted; xlb's
/// TCP SYNs are half-open, in `ct_syn` and not in ct); with one repeated
/// flow, the same run leaves only that flow's entries.
#[test]
fn new_flows_leave_an_entry_per_packet() {
    if !privileged() {
        return;
    }
    let one = bench(&["--scenario", "nodeport-remote", "--rate", "100000"]);
    assert!(u(&one, "ct_live_entries") <= 2, "one flow: {one}");
    assert!(one.get("new_flows_per_sec_per_core").is_none(), "{one}");
    for (s, proto, size) in [
        ("nodeport-remote", "udp", "64"),
        ("nodeport-remote", "tcp-syn", "72"),
        ("iptables", "tcp-syn", "72"),
        ("nftables", "udp", "64"),
    ] {
        let v = bench(&[
            "--scenario",
            s,
            "--new-flows",
            "--proto",
            proto,
            "--size",
            size,
            "--rate",
            "100000",
        ]);
        consistent(&v, s, 1);
        let got = u(&v, "received");
        assert!(got > 100, "{s} {proto}: {v}");
        // xlb's count includes the established flows' two entries each
        let established = v
            .get("established_flows")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if s == "nodeport-remote" {
            // UDP and TCP SYNs of a Service with a stateless path to a
            // remote backend (bpf/include/stateless.h): no ct entry and no
            // half-open slot per new flow (also from the sources be_filter
            // takes for a backend's address, about 1 in 1,000 here, which
            // look ct up first); the flood leaves the established flows of
            // another Service alone
            let state = u(&v, "ct_live_entries") - 2 * established + u(&v, "half_open_live");
            assert_eq!(state, 0, "{s} {proto}: flows with state: {v}");
            assert_eq!(u(&v, "established_kept"), established, "{v}");
        } else {
            assert!(
                u(&v, "ct_live_entries") - 2 * established >= got,
                "{s} {proto}: one entry per new flow at least: {v}"
            );
        }
        let rate = f(&v, "new_flows_per_sec_per_core");
        assert!((rate - f(&v, "mpps") * 1e6).abs() <= 1e-6 * rate, "{v}");
        assert!(
            v.get("ct_bytes_per_flow").is_none(),
            "no fixed flow count: {v}"
        );
        if s == "nodeport-remote" {
            // far below the map's size nothing is evicted: the idle
            // established flows of the other Service all keep their backend
            assert_eq!(u(&v, "established_flows"), 10_000, "{v}");
            assert_eq!(u(&v, "established_kept"), 10_000, "{v}");
        } else {
            assert!(v.get("established_kept").is_none(), "{v}");
        }
    }
}

#[test]
fn sweep_prints_one_row_per_point() {
    if !privileged() {
        return;
    }
    let svg = std::env::temp_dir().join(format!("{}.svg", unique_name("xlbsvg")));
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
        &["--scenario", "iptables", "--new-flows", "--flows", "5"],
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
    // --new-flows with pre-filled replies: a clear error before any namespace
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(["bench", "run", "--scenario", "reply-revnat", "--new-flows"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--new-flows"));
}

/// `ip [-n ns] ARGS`, panicking with its stderr.
fn ip(ns: Option<&str>, args: &[&str]) -> String {
    let mut v = Vec::new();
    if let Some(ns) = ns {
        v.extend(["-n", ns]);
    }
    v.extend_from_slice(args);
    let out = Command::new("ip").args(&v).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {v:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port as `ip -j link` sees it in `ns` (None = this namespace): ifindex,
/// MTU, up; None if it is not there.
fn port(ns: Option<&str>, name: &str) -> Option<(u64, u64, bool)> {
    let mut c = Command::new("ip");
    if let Some(ns) = ns {
        c.args(["-n", ns]);
    }
    let out = c.args(["-j", "link", "show", "dev", name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let l = &v[0];
    Some((
        l["ifindex"].as_u64()?,
        l["mtu"].as_u64()?,
        l["flags"].as_array()?.iter().any(|f| f == "UP"),
    ))
}

/// The port's GRO line of `ethtool -k` (this namespace).
fn gro(name: &str) -> String {
    let out = Command::new("ethtool").args(["-k", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("generic-receive-offload"))
        .unwrap_or_default()
        .to_string()
}

/// A veth pair standing in for two cabled NIC ports, created down (nothing is
/// ever sent from where it lives), in `home` (a namespace of the test's own,
/// deleted too) or in this one. Deleted on drop, pass or fail; if the bench
/// failed to hand the ports back, deleting its namespaces removed them.
struct Cable {
    a: String,
    b: String,
    home: Option<String>,
}

impl Cable {
    fn new(home: bool) -> Self {
        let home = home.then(|| unique_name("xlbt-home"));
        if let Some(h) = &home {
            ip(None, &["netns", "add", h]);
        }
        let c = Cable {
            a: unique_name("xlbta"),
            b: unique_name("xlbtb"),
            home,
        };
        veth_pair(c.home.as_deref(), &c.a, &c.b, 2);
        c
    }

    /// `xlb bench run ARGS`, inside the cable's home namespace if it has one.
    fn xlb(&self, args: &[&str]) -> std::process::Output {
        let bin = env!("CARGO_BIN_EXE_xlb");
        let mut c = match &self.home {
            Some(h) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", h, bin]);
                c
            }
            None => Command::new(bin),
        };
        c.args(["bench", "run"])
            .args(args)
            .output()
            .expect("running xlb")
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        let mut c = Command::new("ip");
        if let Some(h) = &self.home {
            c.args(["-n", h]);
        }
        let _ = c.args(["link", "del", &self.a]).output();
        if let Some(h) = &self.home {
            let _ = Command::new("ip").args(["netns", "del", h]).output();
        }
    }
}

#[test]
fn iface_mode_runs_on_moved_ports_and_gives_them_back() {
    if !privileged() {
        return;
    }
    let cable = Cable::new(false);
    let (a, b) = (cable.a.as_str(), cable.b.as_str());
    // a non-default MTU, to see it restored
    ip(None, &["link", "set", "dev", a, "mtu", "1400"]);
    let before = (port(None, a).unwrap(), port(None, b).unwrap());
    let gro_before = (gro(a), gro(b));
    let out = cable.xlb(&[
        "--scenario",
        "nodeport-remote",
        "--iface",
        a,
        "--peer-iface",
        b,
        "--seconds",
        "0.2",
        "--json",
    ]);
    let after = (port(None, a), port(None, b));
    let gro_after = (gro(a), gro(b));
    assert!(
        out.status.success(),
        "xlb bench run --iface: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    consistent(&v, "nodeport-remote", 1);
    // DNAT + encap + XDP_TX out of the node's port, counted at the peer's sink
    assert!(u(&v, "received") > 0, "{v}");
    // back here, same names and ifindexes, MTU and down state restored
    assert_eq!(after, (Some(before.0), Some(before.1)));
    assert_eq!(gro_after, gro_before);
    assert_eq!(before.0 .1, 1400);
}

#[test]
fn iface_ports_with_addresses_or_without_xdp_are_refused_and_kept() {
    if !privileged() {
        return;
    }
    // in a namespace of the test's own: the bench treats it as home and must
    // hand ports back there (not to PID 1's namespace)
    let cable = Cable::new(true);
    let home = cable.home.as_deref();
    let (a, b) = (cable.a.as_str(), cable.b.as_str());
    let args = |i: &str, p: &str| {
        vec![
            "--scenario".to_string(),
            "nodeport-remote".into(),
            "--seconds".into(),
            "0.2".into(),
            "--iface".into(),
            i.into(),
            "--peer-iface".into(),
            p.into(),
        ]
    };
    let run = |i: &str, p: &str| {
        let v = args(i, p);
        cable.xlb(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // an address (the port is down: nothing is sent)
    ip(home, &["addr", "add", "198.18.0.99/32", "dev", b]);
    let out = run(a, b);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("address") && err.contains(b), "{err}");
    assert!(port(home, a).is_some() && port(home, b).is_some());
    ip(home, &["addr", "flush", "dev", b]);

    // a port whose driver has no native XDP (vxlan): refused after the move,
    // and both ports come back home
    let vx = unique_name("xlbtv");
    let made = Command::new("ip")
        .args([
            "-n",
            home.unwrap(),
            "link",
            "add",
            &vx,
            "type",
            "vxlan",
            "id",
            "7",
        ])
        .args(["dstport", "4789"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !precondition(made, "the vxlan module, for the no-XDP case") {
        return;
    }
    // up with its own MTU (in the test's namespace), to see both restored
    ip(home, &["link", "set", "dev", a, "mtu", "1400", "up"]);
    let vx_before = port(home, &vx).unwrap();
    let a_before = port(home, a).unwrap();
    assert_eq!((a_before.1, a_before.2), (1400, true));
    let out = run(&vx, a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no native XDP") && err.contains(&vx), "{err}");
    assert_eq!(port(home, &vx), Some(vx_before));
    assert_eq!(port(home, a), Some(a_before));
}

#[test]
fn iface_arguments_fail_cleanly() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xlb"))
            .args(["bench", "run", "--scenario", "nodeport-remote"])
            .args(args)
            .output()
            .unwrap()
    };
    // one without the other: a usage error
    assert_eq!(run(&["--peer-iface", "lo"]).status.code(), Some(2));
    assert_eq!(run(&["--iface", "lo"]).status.code(), Some(2));
    // the same port twice, a port that does not exist: clear errors, before
    // any namespace or program
    let out = run(&["--iface", "xlbnope0", "--peer-iface", "xlbnope0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both xlbnope0"));
    let missing = unique_name("xlbnope");
    let out = run(&["--iface", &missing, "--peer-iface", "lo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&missing) && err.contains("no such interface"),
        "{err}"
    );
}
