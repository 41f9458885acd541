//! `xlb maps ...` prints what was written through `xlb_bpf::Maps`: rows of the
//! tables and the JSON, with filters, limits and Service names.

mod cli_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use cli_support::{pin_dir, stderr, stdout, xlb};
use serde_json::Value;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::Proto;
use xlb_loader::{DataPlane, LoadOptions};

/// Whitespace-split rows of a table (header first, count line last).
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    o
}

fn fill(dp: &DataPlane, pin: &std::path::Path) {
    let m = &dp.maps;
    m.put_backend(
        1,
        &xlb_backend::new("10.244.1.5:8080".parse().unwrap(), None, 3),
    )
    .unwrap();
    let mut b2 = xlb_backend::new(
        "10.244.2.7:8080".parse().unwrap(),
        Some(Ipv4Addr::new(198, 18, 0, 12)),
        1,
    );
    b2.flags |= XLB_BE_F_TERMINATING as u8;
    m.put_backend(2, &b2).unwrap();
    // Maglev: 251 slots at 0 (126 x backend 1, 125 x backend 2), 7 at 251 (backend 1).
    let table: Vec<u32> = (0..251).map(|i| if i % 2 == 0 { 1 } else { 2 }).collect();
    m.write_maglev(0, &table).unwrap();
    m.write_maglev(251, &[1; 7]).unwrap();
    let web = xlb_svc_val {
        svc_id: 7,
        flags: XLB_SVC_F_AFFINITY,
        table_off: 0,
        table_size: 251,
        affinity_timeout: 10800,
        n_local: 1,
        fe_type: xlb_bpf::Kind::ClusterIp.fe_type(),
        ..Default::default()
    };
    m.put_service(
        &xlb_svc_key::addr("10.96.0.10:80".parse().unwrap(), Proto::Tcp),
        &web,
    )
    .unwrap();
    let dns = xlb_svc_val {
        svc_id: 9,
        flags: XLB_SVC_F_LOCAL | XLB_SVC_F_SRC_RANGES,
        table_off: 251,
        table_size: 7,
        n_local: 1,
        fe_type: xlb_bpf::Kind::NodePort.fe_type(),
        ..Default::default()
    };
    m.put_service(&xlb_svc_key::nodeport(30053, Proto::Udp), &dns)
        .unwrap();
    let ct = xlb_ct_val {
        backend_id: 1,
        generation: 3,
        svc_id: 7,
        ..Default::default()
    };
    m.put_ct(
        &xlb_ct_key::new(
            "198.18.0.1:40000".parse().unwrap(),
            "10.96.0.10:80".parse().unwrap(),
            6,
        ),
        &ct,
    )
    .unwrap();
    let rev = xlb_ct_val {
        backend_id: 2,
        svc_id: 9,
        flags: XLB_CT_F_REVERSE,
        nat_addr: xlb_bpf::wire::be32(Ipv4Addr::new(198, 18, 0, 11)),
        nat_port: xlb_bpf::wire::be16(30053),
        ..Default::default()
    };
    m.put_ct(
        &xlb_ct_key::new(
            "10.244.2.7:8080".parse().unwrap(),
            "198.18.0.2:5353".parse().unwrap(),
            17,
        ),
        &rev,
    )
    .unwrap();
    m.put_affinity(
        &xlb_affinity_key::new(7, Ipv4Addr::new(198, 18, 0, 1)),
        &xlb_affinity_val {
            backend_id: 1,
            generation: 3,
            last_seen: 0,
        },
    )
    .unwrap();
    m.put_src_range(&xlb_src_range_key::new(9, Ipv4Addr::new(192, 0, 2, 0), 24))
        .unwrap();
    m.put_tunnel(
        &xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 2, 0), 24),
        &xlb_tunnel_val::new(Ipv4Addr::new(198, 18, 0, 12), [2, 0, 0xc6, 0x12, 0, 0x0c]),
    )
    .unwrap();
    // Counters: 2 packets / 100 bytes on every CPU for reason 1 and Service 7.
    let ncpu = libbpf_rs::num_possible_cpus().unwrap();
    let c = xlb_counter {
        packets: 2,
        bytes: 100,
    };
    // SAFETY: xlb_counter is Plain.
    let cb = unsafe { plain::as_bytes(&c) }.to_vec();
    use libbpf_rs::MapCore;
    for idx in [1u32, XLB_STATS_SVC_BASE + 7] {
        m.stats
            .update_percpu(
                &idx.to_ne_bytes(),
                &vec![cb.clone(); ncpu],
                libbpf_rs::MapFlags::ANY,
            )
            .unwrap();
    }
    // Backend 1 forwarded 3 packets / 300 bytes on every CPU.
    // SAFETY: xlb_counter is Plain.
    let bc = unsafe {
        plain::as_bytes(&xlb_counter {
            packets: 3,
            bytes: 300,
        })
    }
    .to_vec();
    m.backend_stats_handle()
        .update_percpu(
            &1u32.to_ne_bytes(),
            &vec![bc; ncpu],
            libbpf_rs::MapFlags::ANY,
        )
        .unwrap();
    let mut names = BTreeMap::new();
    names.insert(7, "default/web:80/TCP".to_string());
    names.insert(9, "kube-system/dns:53/UDP".to_string());
    xlb::names::write(&xlb::names::path(pin), &names).unwrap();
}

#[test]
fn maps_tables_and_json_match_what_was_written() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .unwrap();
    fill(&dp, &pin.path);
    let p = &pin.path;

    // services
    let out = stdout(&ok(xlb(None, p, &["maps", "services"])));
    let r = rows(&out);
    assert_eq!(
        r[0],
        [
            "ID",
            "NAME",
            "FRONTEND",
            "PROTO",
            "TYPE",
            "TABLE",
            "LOCAL",
            "FLAGS",
            "AFFINITY",
            "STATELESS"
        ]
    );
    assert_eq!(
        r[1],
        [
            "7",
            "default/web:80/TCP",
            "10.96.0.10:80",
            "TCP",
            "ClusterIP",
            "0+251",
            "1",
            "affinity",
            "10800s",
            "-"
        ]
    );
    assert_eq!(
        r[2],
        [
            "9",
            "kube-system/dns:53/UDP",
            "*:30053",
            "UDP",
            "NodePort",
            "251+7",
            "1",
            "local,src-ranges",
            "-",
            "-"
        ]
    );
    assert_eq!(r[3], ["2", "frontends"]);
    let j = json(&ok(xlb(None, p, &["maps", "services", "--json"])));
    assert_eq!(j["count"], 2);
    assert_eq!(j["rows"][0]["svc_id"], 7);
    assert_eq!(j["rows"][0]["addr"], "10.96.0.10");
    assert_eq!(j["rows"][0]["port"], 80);
    assert_eq!(j["rows"][0]["proto"], "TCP");
    assert_eq!(j["rows"][0]["name"], "default/web:80/TCP");
    assert_eq!(j["rows"][1]["nodeport"], true);
    assert_eq!(j["rows"][1]["addr"], Value::Null);
    assert_eq!(j["rows"][1]["stateless"], Value::Null);
    // Stateless flows (svc_stable): on the live table, then a window.
    dp.maps
        .put_svc_stable(
            9,
            &xlb_svc_stable {
                table_off: 251,
                table_size: 7,
                ..Default::default()
            },
        )
        .unwrap();
    let r = rows(&stdout(&ok(xlb(None, p, &["maps", "services"]))));
    assert_eq!(r[1][9], "-");
    assert_eq!(r[2][9], "yes");
    let now = xlb_bpf::maps::monotonic_ns();
    dp.maps
        .put_svc_stable(
            9,
            &xlb_svc_stable {
                table_off: 0,
                table_size: 251,
                window_end: now + 3600 * 1_000_000_000,
                ..Default::default()
            },
        )
        .unwrap();
    let r = rows(&stdout(&ok(xlb(None, p, &["maps", "services"]))));
    let w: u64 = r[2][9]
        .strip_prefix("window:")
        .and_then(|w| w.strip_suffix('s'))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", r[2]));
    assert!(w > 0 && w <= 3600, "{w}");
    let j = json(&ok(xlb(None, p, &["maps", "services", "--json"])));
    let st = &j["rows"][1]["stateless"];
    assert_eq!(
        (st["table_off"].as_u64(), st["table_size"].as_u64()),
        (Some(0), Some(251))
    );
    assert!(
        st["window_s"].as_u64().is_some_and(|w| w > 0 && w <= 3600),
        "{st}"
    );
    dp.maps
        .put_svc_stable(9, &xlb_svc_stable::default())
        .unwrap();
    // filters and limit
    let out = stdout(&ok(xlb(
        None,
        p,
        &["maps", "services", "--service", "kube-system/dns"],
    )));
    assert_eq!(rows(&out).len(), 3, "{out}");
    assert!(out.contains("*:30053"));
    let out = stdout(&ok(xlb(
        None,
        p,
        &["maps", "services", "--backend", "10.244.2.7"],
    )));
    assert!(
        out.contains("10.96.0.10:80") && !out.contains("*:30053"),
        "{out}"
    );
    let out = stdout(&ok(xlb(None, p, &["maps", "services", "--limit", "1"])));
    assert!(out.ends_with("1 of 2 frontends\n"), "{out}");
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "services", "--json", "--limit", "1"],
    )));
    assert_eq!(
        (j["count"].as_u64(), j["total"].as_u64()),
        (Some(1), Some(2))
    );

    // backends
    let out = stdout(&ok(xlb(None, p, &["maps", "backends"])));
    let r = rows(&out);
    let ncpu = libbpf_rs::num_possible_cpus().unwrap() as u64;
    let (p1, b1) = ((3 * ncpu).to_string(), (300 * ncpu).to_string());
    assert_eq!(
        r[0],
        ["ID", "ADDRESS", "NODE", "STATE", "GEN", "PACKETS", "BYTES"]
    );
    assert_eq!(
        r[1],
        ["1", "10.244.1.5:8080", "local", "active", "3", &p1, &b1]
    );
    assert_eq!(
        r[2],
        [
            "2",
            "10.244.2.7:8080",
            "198.18.0.12",
            "terminating",
            "1",
            "0",
            "0"
        ]
    );
    assert_eq!(r[3], ["2", "backends"]);
    let out = stdout(&ok(xlb(None, p, &["maps", "backends", "--service", "9"])));
    assert_eq!(
        rows(&out).len(),
        3,
        "only backend 1 is in svc 9's table: {out}"
    );
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "backends", "--json", "--backend", "10.244.2.7:8080"],
    )));
    assert_eq!(j["count"], 1);
    assert_eq!(j["rows"][0]["node"], "198.18.0.12");
    assert_eq!(j["rows"][0]["state"], "terminating");
    assert_eq!(j["rows"][0]["packets"], 0);
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "backends", "--json", "--backend", "1"],
    )));
    assert_eq!(j["rows"][0]["packets"].as_u64(), Some(3 * ncpu));
    assert_eq!(j["rows"][0]["bytes"].as_u64(), Some(300 * ncpu));

    // maglev
    let out = stdout(&ok(xlb(None, p, &["maps", "maglev", "default/web"])));
    let r = rows(&out);
    assert_eq!(
        r[0],
        ["SVC", "FRONTEND", "BACKEND", "ADDRESS", "NODE", "SLOTS", "SHARE", "PACKETS", "BYTES"]
    );
    assert_eq!(
        r[1],
        [
            "7",
            "(default/web:80/TCP)",
            "10.96.0.10:80",
            "1",
            "10.244.1.5:8080",
            "local",
            "126",
            "50.2%",
            &p1,
            &b1
        ]
    );
    assert_eq!(
        r[2],
        [
            "7",
            "(default/web:80/TCP)",
            "10.96.0.10:80",
            "2",
            "10.244.2.7:8080",
            "198.18.0.12",
            "125",
            "49.8%",
            "0",
            "0"
        ]
    );
    assert!(out.contains("table 251 slots at 0, 2 backends"), "{out}");
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "maglev", "10.96.0.10:80", "--json"],
    )));
    let slots: Vec<u64> = j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slots"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, [126, 125]);
    assert_eq!(j["rows"][0]["packets"].as_u64(), Some(3 * ncpu));
    assert_eq!(j["rows"][1]["bytes"].as_u64(), Some(0));
    let bad = xlb(None, p, &["maps", "maglev", "nosuch/svc"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("no Service matches \"nosuch/svc\""),
        "{}",
        stderr(&bad)
    );

    // ct
    let out = stdout(&ok(xlb(None, p, &["maps", "ct"])));
    let r = rows(&out);
    assert_eq!(
        r[0],
        ["SRC", "DST", "PROTO", "DIR", "SVC", "BACKEND", "NAT", "TUNNEL", "AGE"]
    );
    assert_eq!(
        r[1],
        [
            "198.18.0.1:40000",
            "10.96.0.10:80",
            "TCP",
            "orig",
            "7",
            "(default/web:80/TCP)",
            "1",
            "(10.244.1.5:8080)",
            "-",
            "-",
            "-"
        ]
    );
    assert_eq!(
        r[2],
        [
            "10.244.2.7:8080",
            "198.18.0.2:5353",
            "UDP",
            "reply",
            "9",
            "(kube-system/dns:53/UDP)",
            "2",
            "(10.244.2.7:8080)",
            "198.18.0.11:30053",
            "-",
            "-"
        ]
    );
    assert_eq!(r[3], ["2", "connections"]);
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "ct", "--json", "--backend", "2"],
    )));
    assert_eq!(j["count"], 1);
    assert_eq!(j["rows"][0]["nat"], "198.18.0.11:30053");
    assert_eq!(j["rows"][0]["dir"], "reply");

    // affinity, src-ranges, tunnel
    let r = rows(&stdout(&ok(xlb(None, p, &["maps", "affinity"]))));
    assert_eq!(
        r[1],
        [
            "7",
            "(default/web:80/TCP)",
            "198.18.0.1",
            "1",
            "(10.244.1.5:8080)",
            "3",
            "-"
        ]
    );
    let r = rows(&stdout(&ok(xlb(None, p, &["maps", "src-ranges"]))));
    assert_eq!(r[1], ["9", "(kube-system/dns:53/UDP)", "192.0.2.0/24"]);
    let j = json(&ok(xlb(None, p, &["maps", "tunnel", "--json"])));
    assert_eq!(j["rows"][0]["cidr"], "10.244.2.0/24");
    assert_eq!(j["rows"][0]["node"], "198.18.0.12");
    assert_eq!(j["rows"][0]["vtep_mac"], "02:00:c6:12:00:0c");

    // stats: counters summed over CPUs
    let ncpu = libbpf_rs::num_possible_cpus().unwrap() as u64;
    let j = json(&ok(xlb(None, p, &["maps", "stats", "--json"])));
    let rows_j = j["rows"].as_array().unwrap();
    let reason1 = xlb_bpf::Reason(1).name();
    let r1 = rows_j
        .iter()
        .find(|r| r["name"] == reason1.as_str())
        .expect("reason 1 row");
    assert_eq!(r1["packets"].as_u64(), Some(2 * ncpu));
    assert_eq!(r1["bytes"].as_u64(), Some(100 * ncpu));
    assert_eq!(
        rows_j.iter().filter(|r| r["kind"] == "reason").count(),
        1,
        "zero reasons hidden"
    );
    let s7 = rows_j.iter().find(|r| r["svc_id"] == 7).unwrap();
    assert_eq!(s7["packets"].as_u64(), Some(2 * ncpu));
    let out = stdout(&ok(xlb(None, p, &["maps", "stats"])));
    let want = [
        "svc",
        "7",
        "(default/web:80/TCP)",
        &(2 * ncpu).to_string(),
        &(100 * ncpu).to_string(),
    ];
    assert!(rows(&out).iter().any(|r| r == &want), "{out}");
    let all = json(&ok(xlb(None, p, &["maps", "stats", "--all", "--json"])));
    assert!(all["total"].as_u64().unwrap() > 3);

    // A reader that goes away (`xlb maps ct | head`) ends the command
    // quietly by SIGPIPE, as with `ls`; no panic on stderr.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_xlb"))
        .arg("--pin-dir")
        .arg(p)
        .args(["maps", "ct"])
        .stdout(writer)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));

    // Names are optional: without the file, ids only.
    xlb::names::remove(&xlb::names::path(p)).unwrap();
    let r = rows(&stdout(&ok(xlb(None, p, &["maps", "services"]))));
    assert_eq!(r[1][1], "-");
}

#[test]
fn maps_without_pins_says_what_to_do() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dir = std::path::Path::new("/sys/fs/bpf").join(xlb_testkit::unique_name("xlb-t-"));
    let o = xlb(None, &dir, &["maps", "services"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("xlb attach --iface IF"), "{e}");
    // Usage errors are exit code 2.
    let o = xlb(None, &dir, &["maps", "nosuchmap"]);
    assert_eq!(o.status.code(), Some(2));
    let o = xlb(None, &dir, &["maps", "services", "--limit", "x"]);
    assert_eq!(o.status.code(), Some(2));
}
