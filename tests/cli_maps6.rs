//! `xlb maps ...` with IPv6 entries: canonical IPv6 addresses
//! (`[2001:db8::1]:80` with a port), both families in one table, and the
//! `--service` / `--backend` filters taking IPv6 addresses in any spelling.

mod cli_support;

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddrV6};

use cli_support::{pin_dir, stderr, stdout, xlb};
use serde_json::Value;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::Proto;
use xlb_loader::{DataPlane, LoadOptions};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    o
}

fn sa6(s: &str) -> SocketAddrV6 {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An IPv4 Service 7 (backend 1) and a dual-stack-ish IPv6 Service 8
/// (backends 2, 3 in backends6), with ct6, affinity6, src_ranges6, tunnel6
/// and local/remote IPv6 addresses.
fn fill(dp: &DataPlane, pin: &std::path::Path) {
    let m = &dp.maps;
    m.put_backend(
        1,
        &xlb_backend::new("10.244.1.5:8080".parse().unwrap(), None, 1),
    )
    .unwrap();
    m.put_backend6(2, &xlb_backend6::new(sa6("[fd00:244:1::5]:8080"), None, 1))
        .unwrap();
    let mut b3 = xlb_backend6::new(sa6("[fd00:244:2::7]:8080"), Some(ip6("2001:db8:18::12")), 4);
    b3.flags |= XLB_BE_F_DRAINING as u8;
    m.put_backend6(3, &b3).unwrap();
    m.write_maglev(0, &[1; 7]).unwrap();
    let t6: Vec<u32> = (0..11).map(|i| if i % 2 == 0 { 2 } else { 3 }).collect();
    m.write_maglev(7, &t6).unwrap();
    let v4 = xlb_svc_val {
        svc_id: 7,
        table_off: 0,
        table_size: 7,
        fe_type: xlb_bpf::Kind::ClusterIp.fe_type(),
        ..Default::default()
    };
    m.put_service(
        &xlb_svc_key::addr("10.96.0.10:80".parse().unwrap(), Proto::Tcp),
        &v4,
    )
    .unwrap();
    let v6 = xlb_svc_val {
        svc_id: 8,
        table_off: 7,
        table_size: 11,
        flags: XLB_SVC_F_SRC_RANGES,
        fe_type: xlb_bpf::Kind::LoadBalancer.fe_type(),
        ..Default::default()
    };
    m.put_service6(
        &xlb_svc6_key::addr(sa6("[2001:db8::80]:443"), Proto::Tcp),
        &v6,
    )
    .unwrap();
    let np6 = xlb_svc_val {
        fe_type: xlb_bpf::Kind::NodePort.fe_type(),
        ..v6
    };
    m.put_service6(&xlb_svc6_key::nodeport(30443, Proto::Tcp), &np6)
        .unwrap();
    m.put_ct6(
        &xlb_ct6_key::new(sa6("[2001:db8:c::1]:40000"), sa6("[2001:db8::80]:443"), 6),
        &xlb_ct6_val {
            backend_id: 3,
            generation: 4,
            svc_id: 8,
            ..Default::default()
        },
    )
    .unwrap();
    m.put_affinity6(
        &xlb_affinity6_key::new(8, ip6("2001:db8:c::1")),
        &xlb_affinity_val {
            backend_id: 2,
            generation: 1,
            last_seen: 0,
        },
    )
    .unwrap();
    m.put_src_range6(&xlb_src_range6_key::new(8, ip6("2001:db8:c::"), 48))
        .unwrap();
    m.put_tunnel6(
        &xlb_tunnel6_key::new(ip6("fd00:244:2::"), 64),
        &xlb_tunnel6_val::new(ip6("2001:db8:18::12"), [2, 0, 0, 0, 6, 2]),
    )
    .unwrap();
    m.put_local_addr6(ip6("2001:db8:18::11")).unwrap();
    m.put_remote_addr6(ip6("2001:db8:18::12")).unwrap();
    m.put_config6(&xlb_config6::default().with_node_addr(Some(ip6("2001:db8:18::11"))))
        .unwrap();
    let mut names = BTreeMap::new();
    names.insert(7, "default/web:80/TCP".to_string());
    names.insert(8, "default/web6:443/TCP".to_string());
    xlb::names::write(&xlb::names::path(pin), &names).unwrap();
}

fn col(v: &Value, key: &str) -> Vec<String> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r[key]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| r[key].to_string())
        })
        .collect()
}

#[test]
fn ipv6_entries_print_canonically_and_filter() {
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

    // services: both families in one table
    let out = stdout(&ok(xlb(None, p, &["maps", "services"])));
    assert!(out.contains("10.96.0.10:80"), "{out}");
    assert!(out.contains("[2001:db8::80]:443"), "{out}");
    assert!(out.contains("[*]:30443"), "{out}");
    let j = json(&ok(xlb(None, p, &["maps", "services", "--json"])));
    assert_eq!(
        col(&j, "frontend"),
        ["10.96.0.10:80", "[*]:30443", "[2001:db8::80]:443"]
    );
    assert_eq!(col(&j, "family"), ["IPv4", "IPv6", "IPv6"]);
    // --service by an IPv6 address, in another spelling, or [addr]:port
    for sel in ["2001:db8::80", "2001:0db8:0::80", "[2001:db8::80]:443"] {
        let j = json(&ok(xlb(
            None,
            p,
            &["maps", "services", "--json", "--service", sel],
        )));
        assert_eq!(col(&j, "frontend"), ["[2001:db8::80]:443"], "{sel}");
    }
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "services", "--json", "--service", "[*]:30443"],
    )));
    assert_eq!(col(&j, "frontend"), ["[*]:30443"]);
    // --backend by an IPv6 address: the frontends whose table names it
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "services", "--json", "--backend", "fd00:244:2::7"],
    )));
    assert_eq!(col(&j, "svc_id"), ["8", "8"]);

    // backends of both arrays
    let j = json(&ok(xlb(None, p, &["maps", "backends", "--json"])));
    assert_eq!(
        col(&j, "addr"),
        ["10.244.1.5", "fd00:244:1::5", "fd00:244:2::7"]
    );
    assert_eq!(col(&j, "state")[2], "draining");
    assert_eq!(col(&j, "node")[2], "2001:db8:18::12");
    let out = stdout(&ok(xlb(
        None,
        p,
        &["maps", "backends", "--backend", "[fd00:244:1::5]:8080"],
    )));
    assert!(
        out.contains("[fd00:244:1::5]:8080") && !out.contains("fd00:244:2::7"),
        "{out}"
    );
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "backends", "--json", "--service", "default/web6"],
    )));
    assert_eq!(col(&j, "id"), ["2", "3"]);

    // maglev of the IPv6 Service
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "maglev", "2001:db8::80", "--json"],
    )));
    assert!(col(&j, "addr").contains(&"fd00:244:1::5".to_string()));

    // ct6, affinity6
    let j = json(&ok(xlb(None, p, &["maps", "ct", "--json"])));
    assert_eq!(col(&j, "src"), ["[2001:db8:c::1]:40000"]);
    assert_eq!(col(&j, "dst"), ["[2001:db8::80]:443"]);
    assert_eq!(col(&j, "backend"), ["[fd00:244:2::7]:8080"]);
    let j = json(&ok(xlb(
        None,
        p,
        &["maps", "ct", "--json", "--backend", "fd00:244:1::5"],
    )));
    assert_eq!(j["rows"].as_array().unwrap().len(), 0);
    let j = json(&ok(xlb(None, p, &["maps", "affinity", "--json"])));
    assert_eq!(col(&j, "client"), ["2001:db8:c::1"]);
    assert_eq!(col(&j, "backend"), ["[fd00:244:1::5]:8080"]);

    // src-ranges, tunnel, config
    let j = json(&ok(xlb(None, p, &["maps", "src-ranges", "--json"])));
    assert_eq!(col(&j, "cidr"), ["2001:db8:c::/48"]);
    let j = json(&ok(xlb(None, p, &["maps", "tunnel", "--json"])));
    assert_eq!(col(&j, "cidr"), ["fd00:244:2::/64"]);
    assert_eq!(col(&j, "node"), ["2001:db8:18::12"]);
    let out = stdout(&ok(xlb(None, p, &["maps", "config"])));
    for want in [
        "node_addr6",
        "2001:db8:18::11",
        "remote_addrs6",
        "2001:db8:18::12",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // The filters' fill (IPv4 only: one backend address, 10.244.1.5, and
    // one services key, here).
    let j = json(&ok(xlb(None, p, &["maps", "config", "--json"])));
    let setting = |k: &str| {
        j["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["setting"] == k)
            .unwrap_or_else(|| panic!("no {k} in {j}"))["value"]
            .clone()
    };
    assert_eq!(
        setting("be_filter"),
        serde_json::json!({"used": 1, "slots": 65536})
    );
    assert_eq!(
        setting("fe_filter"),
        serde_json::json!({"used": 1, "slots": 65536})
    );

    // Metrics: the IPv6 backends under their Service (labels carry the
    // canonical address), the IPv6 maps' occupancy under their own names.
    let labels = vec![
        xlb::metrics::ServiceLabel::parse(7, "default/web:80/TCP"),
        xlb::metrics::ServiceLabel::parse(8, "default/web6:443/TCP"),
    ];
    let ports = xlb::metrics::backend_ports(&dp.maps, &labels).unwrap();
    let got: Vec<(u32, u32, String)> = ports
        .iter()
        .map(|(l, id, a)| (l.svc_id, *id, a.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (7, 1, "10.244.1.5:8080".to_string()),
            (8, 2, "[fd00:244:1::5]:8080".to_string()),
            (8, 3, "[fd00:244:2::7]:8080".to_string()),
        ]
    );
    let usage: BTreeMap<&str, u64> = xlb::metrics::map_usage(&dp.maps)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(usage["services"], 1);
    assert_eq!(usage["services6"], 2);
    assert_eq!(usage["backends6"], 2);
    assert_eq!(usage["maglev"], 7 + 11);
    assert_eq!(usage["ct6"], 1);
    assert_eq!(usage["tunnel6"], 1);
}
