//! The dual-stack lab (`xlb lab up --dual-stack`) without xlb: IPv6 beside
//! IPv4 on the underlay, in every pod and over flannel's IPv6 VXLAN
//! (`flannel-v6.1`), with the kernel alone, before any data plane is
//! involved; and the dual-stack manifests the agents will read.

mod e2e_support;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use e2e_support::*;
use xlb_lab::{self as lab, probe, v6};

fn ip_json(ns: &str, args: &[&str]) -> serde_json::Value {
    let out = xlb_testkit::run_ok(Command::new("ip").args(["-n", ns, "-j"]).args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tcp(ns: &str, to: SocketAddr) -> std::io::Result<probe::Reply> {
    xlb_lab::netns::run(ns, move || probe::tcp_ip(None, to, T)).unwrap()
}

#[test]
fn dual_stack_topology_carries_ipv6_pod_to_pod_over_flannel_v6() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::up("x6t", &["--topology-only", "--dual-stack"]);
    let l = g.lab.clone();
    assert!(l.dual_stack);

    for n in 1..=2 {
        // flannel-v6.1 as the Node object announces it: VNI, port, MAC, IPv6 underlay
        let v = ip_json(
            &l.ns_node(n),
            &["-d", "link", "show", "dev", v6::VXLAN6_DEV],
        );
        assert_eq!(v[0]["address"], v6::vtep_mac6(n));
        let info = &v[0]["linkinfo"]["info_data"];
        assert_eq!(info["id"], lab::VXLAN_VNI);
        assert_eq!(info["port"], lab::VXLAN_PORT);
        assert_eq!(info["local6"], v6::node_addr6(n).to_string());
        // addresses are usable at once: none tentative (DAD off)
        for ns in [l.ns_node(n), l.ns_pod(n, 1), l.ns_client()] {
            let addrs = ip_json(&ns, &["-6", "addr", "show"]);
            let text = addrs.to_string();
            assert!(!text.contains("\"tentative\":true"), "{ns}: {text}");
        }
    }

    // Pod to pod over IPv6: same node, and across flannel-v6.1; no NAT.
    for (src, dst, via) in [
        ((1, 1), (1, 2), "same node"),
        ((1, 1), (2, 2), "overlay"),
        ((2, 1), (1, 2), "overlay, back"),
    ] {
        let to = SocketAddr::new(v6::pod_addr6(dst.0, dst.1).into(), lab::BACKEND_PORT);
        let r = tcp(&l.ns_pod(src.0, src.1), to).unwrap_or_else(|e| panic!("{via}: {e}"));
        assert_eq!(r.name, lab::pod_name(dst.0, dst.1), "{via}");
        assert_eq!(
            r.peer.ip(),
            IpAddr::from(v6::pod_addr6(src.0, src.1)),
            "{via}"
        );
        // UDP too, the reply from the address dialled
        let ns = l.ns_pod(src.0, src.1);
        let (r, from) =
            xlb_lab::netns::run(&ns, move || probe::udp_ip(None, to, T).unwrap()).unwrap();
        assert_eq!(
            (r.name.as_str(), from),
            (lab::pod_name(dst.0, dst.1).as_str(), to)
        );
    }
    // A node reaches the other node's pods over the IPv6 overlay.
    let to = SocketAddr::new(v6::pod_addr6(2, 1).into(), lab::BACKEND_PORT);
    let r = tcp(&l.ns_node(1), to).unwrap();
    assert_eq!(r.name, lab::pod_name(2, 1));
    assert_eq!(r.peer.ip(), IpAddr::from(v6::vtep_addr6(1)));
    // Frames of that flow crossed the underlay as VXLAN over IPv6.
    let stats = ip_json(
        &l.ns_node(2),
        &["-s", "link", "show", "dev", v6::VXLAN6_DEV],
    );
    assert!(stats[0]["stats64"]["rx"]["packets"].as_u64().unwrap() > 0);
    // The client reaches both nodes on the IPv6 underlay.
    for n in 1..=2 {
        let to = SocketAddr::new(v6::node_addr6(n).into(), 9);
        let e = tcp(&l.ns_client(), to).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "node {n}");
    }
    // IPv4 is as in a single-stack lab.
    let to = SocketAddr::new(lab::pod_addr(2, 2).into(), lab::BACKEND_PORT);
    let r = tcp(&l.ns_pod(1, 1), to).unwrap();
    assert_eq!(r.peer.ip(), IpAddr::from(lab::pod_addr(1, 1)));

    // `xlb lab check` probes the overlay in both families.
    let out = Command::new(XLB)
        .args(["lab", "check", "--json", "--prefix", g.prefix()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["probe"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pod-to-pod-overlay", "pod-to-pod-overlay-v6"]);

    // A single-stack `up` on a dual-stack lab is refused, not half-applied.
    let out = Command::new(XLB)
        .args(["lab", "up", "--topology-only", "--prefix", g.prefix()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Idempotent: the same up again succeeds.
    let out = Command::new(XLB)
        .args([
            "lab",
            "up",
            "--topology-only",
            "--dual-stack",
            "--prefix",
            g.prefix(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The manifests the agents read are dual-stack.
    let nodes = std::fs::read_to_string(l.manifests_dir().join("nodes.yaml")).unwrap();
    assert!(nodes.contains("flannel.alpha.coreos.com/public-ipv6: fd00:198:18::11"));
    assert!(nodes.contains(&v6::vtep_mac6(2)));
    let web = std::fs::read_to_string(l.manifests_dir().join("web.yaml")).unwrap();
    assert!(web.contains("addressType: IPv6") && web.contains("fd00:10:96::10"));
    // set-endpoints keeps both families
    g.set_endpoints("web", &[(2, 1)]);
    let web = std::fs::read_to_string(l.manifests_dir().join("web.yaml")).unwrap();
    assert!(web.contains("fd00:10:244:2::2") && web.contains("10.244.2.2"));
    assert!(!web.contains("fd00:10:244:1::2"));
}
