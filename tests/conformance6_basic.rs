//! Conformance rows 1-7, 10, 11, 22, 26 and 29 over IPv6 (docs/conformance.md,
//! "IPv6"): the IPv4 rows' tests with dual-stack Services
//! (`RequireDualStack`, ClusterIPs fd00:10:96:61::x beside 10.96.61.x) and
//! IPv6 EndpointSlices, probed at their IPv6 addresses, in a dual-stack lab.
//! From pods and from node processes as the IPv4 rows. One lab for the file;
//! every test has Services of its own (NodePorts 316xx), so they run at the
//! same time.

mod conformance_support;
mod e2e_support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};

use conformance_support::*;
use e2e_support::*;
use xlb_lab as lab;

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

/// Second container port of the pods that rows 2, 3 and 29 name.
const ALT: u16 = 9090;

/// The shared lab; every lab made (a new one when the last test let the
/// previous one go) gets the extra listeners.
fn lab() -> Arc<LabGuard> {
    shared(&LAB, || {
        let g = LabGuard::up("x6b", &["--dual-stack"]);
        for (n, k) in [(1, 1), (2, 1)] {
            extra_backend(&g, n, k, ALT);
        }
        g
    })
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 61, last)
}

/// The IPv6 ClusterIP of `cip(last)` with `port`.
fn cip6(last: u8, port: u16) -> SocketAddr {
    six(SocketAddrV4::new(cip(last), port))
}

/// Row 1: endpoints 0 -> 1 -> 2 -> 1 -> 0; refused with none.
fn row01(c: Client, name: &str, last: u8) {
    let g = lab();
    let svc = ServiceDef::cluster_ip(name, cip(last))
        .port("http", "TCP", 80, 8080, None)
        .dual_stack();
    let to = cip6(last, 80);
    apply(&g, &svc, &dual_slices(name, &[]));
    refused(&g, c, to, false);
    for pods in [&[(1, 1)][..], &[(1, 1), (2, 1)], &[(2, 1)]] {
        apply(&g, &svc, &dual_slices(name, pods));
        serves(
            &g,
            c,
            to,
            false,
            &names(pods).iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    apply(&g, &svc, &dual_slices(name, &[]));
    refused(&g, c, to, false);
}

#[test]
fn row01_v6_clusterip_reaches_endpoints_0_1_2_1_0_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row01(Client::Pod(1, 2), "r01p", 1);
}

#[test]
fn row01_v6_clusterip_reaches_endpoints_0_1_2_1_0_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row01(Client::Host(1), "r01h", 101);
}

#[test]
fn row02_v6_multiport_named_target_ports_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let svc = ServiceDef::cluster_ip("r02", cip(2))
        .port("http", "TCP", 80, "http", None)
        .port("alt", "TCP", 81, "alt", None)
        .dual_stack();
    let sl = SliceDef::new("r02", "1")
        .port("http", "TCP", lab::BACKEND_PORT)
        .port("alt", "TCP", ALT)
        .pods(&[(1, 1), (2, 1)]);
    apply(&g, &svc, &[sl.clone(), sl.ipv6()]);
    let c = Client::Pod(1, 2);
    serves(&g, c, cip6(2, 80), false, &["n1p1", "n2p1"]);
    serves(&g, c, cip6(2, 81), false, &["n1p1-9090", "n2p1-9090"]);
}

#[test]
fn row03_v6_ports_added_and_removed_on_a_live_service_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let c = Client::Pod(2, 2);
    let (p80, p81) = (cip6(3, 80), cip6(3, 81));
    let one = ServiceDef::cluster_ip("r03", cip(3))
        .port("http", "TCP", 80, "http", None)
        .dual_stack();
    let sl = |ports: &[(&str, u16)]| {
        let mut s = SliceDef::new("r03", "1").pods(&[(1, 1), (2, 1)]);
        for (n, p) in ports {
            s = s.port(n, "TCP", *p);
        }
        [s.clone(), s.ipv6()]
    };
    apply(&g, &one, &sl(&[("http", lab::BACKEND_PORT)]));
    serves(&g, c, p80, false, &["n1p1", "n2p1"]);
    fails(&g, c, p81, false);
    // Add port 81.
    let two = one.clone().port("alt", "TCP", 81, "alt", None);
    apply(&g, &two, &sl(&[("http", lab::BACKEND_PORT), ("alt", ALT)]));
    serves(&g, c, p81, false, &["n1p1-9090", "n2p1-9090"]);
    serves(&g, c, p80, false, &["n1p1", "n2p1"]);
    // Remove port 80: it stops, 81 stays.
    let only81 = ServiceDef::cluster_ip("r03", cip(3))
        .port("alt", "TCP", 81, "alt", None)
        .dual_stack();
    apply(&g, &only81, &sl(&[("alt", ALT)]));
    fails(&g, c, p80, false);
    serves(&g, c, p81, false, &["n1p1-9090", "n2p1-9090"]);
}

#[test]
fn row29_v6_named_target_port_resolving_to_different_ports_per_endpoint() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let svc = ServiceDef::cluster_ip("r29", cip(29))
        .port("web", "TCP", 80, "web", None)
        .dual_stack();
    // The EndpointSlice controller makes one slice per resolved port number
    // (and family).
    let a = SliceDef::new("r29", "a")
        .port("web", "TCP", lab::BACKEND_PORT)
        .pods(&[(1, 1)]);
    let b = SliceDef::new("r29", "b")
        .port("web", "TCP", ALT)
        .pods(&[(2, 1)]);
    apply(&g, &svc, &[a.clone(), a.ipv6(), b.clone(), b.ipv6()]);
    for c in [Client::Pod(1, 2), Client::Pod(2, 2)] {
        serves(&g, c, cip6(29, 80), false, &["n1p1", "n2p1-9090"]);
    }
}

#[test]
fn row04_v6_backend_sees_the_client_pod_address_through_clusterip() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r04", cip(4))
            .port("http", "TCP", 80, 8080, None)
            .port("udp", "UDP", 80, 8080, None)
            .dual_stack(),
        &dual_slices("r04", &[(1, 1), (2, 1)]),
    );
    let c = Client::Pod(1, 2);
    for udp in [false, true] {
        let replies = serves(&g, c, cip6(4, 80), udp, &["n1p1", "n2p1"]);
        for r in replies {
            assert_eq!(r.peer.ip(), c.addr6(), "udp {udp}: {r:?}");
        }
    }
}

#[test]
fn row05_v6_pod_hairpins_back_to_itself_through_its_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r05", cip(5))
            .port("http", "TCP", 80, 8080, None)
            .dual_stack(),
        &dual_slices("r05", &[(2, 2)]),
    );
    // The only endpoint is the client itself.
    serves(&g, Client::Pod(2, 2), cip6(5, 80), false, &["n2p2"]);
}

fn row06(c: Client, prefix: &str, base: u8) {
    let g = lab();
    let mk = |i: u8| {
        let name = format!("{prefix}{i}");
        let svc = ServiceDef::cluster_ip(&name, cip(base + i))
            .port("http", "TCP", 80, 8080, None)
            .dual_stack();
        (svc, dual_slices(&name, &[(1, 1), (2, 2)]))
    };
    let to = |i: u8| cip6(base + i, 80);
    let want = ["n1p1", "n2p2"];
    for i in [0, 1] {
        let (s, sl) = mk(i);
        apply(&g, &s, &sl);
        serves(&g, c, to(i), false, &want);
    }
    delete(&g, &format!("{prefix}0"));
    fails(&g, c, to(0), false);
    serves(&g, c, to(1), false, &want);
    let (s, sl) = mk(2);
    apply(&g, &s, &sl);
    serves(&g, c, to(2), false, &want);
    serves(&g, c, to(1), false, &want);
    fails(&g, c, to(0), false);
}

#[test]
fn row06_v6_services_go_down_and_up_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row06(Client::Pod(1, 2), "r06p", 60);
}

#[test]
fn row06_v6_services_go_down_and_up_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row06(Client::Host(2), "r06h", 160);
}

fn row07(c: Client, name: &str, first: u8, second: u8) {
    let g = lab();
    let pods = [(1, 2), (2, 1)];
    let want = ["n1p2", "n2p1"];
    let svc = |last| {
        ServiceDef::cluster_ip(name, cip(last))
            .port("http", "TCP", 80, 8080, None)
            .dual_stack()
    };
    apply(&g, &svc(first), &dual_slices(name, &pods));
    serves(&g, c, cip6(first, 80), false, &want);
    delete(&g, name);
    fails(&g, c, cip6(first, 80), false);
    apply(&g, &svc(second), &dual_slices(name, &pods));
    serves(&g, c, cip6(second, 80), false, &want);
    fails(&g, c, cip6(first, 80), false);
}

#[test]
fn row07_v6_service_recreated_with_new_clusterip_works_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row07(Client::Pod(2, 2), "r07p", 7, 70);
}

#[test]
fn row07_v6_service_recreated_with_new_clusterip_works_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row07(Client::Host(1), "r07h", 107, 170);
}

#[test]
fn row11_v6_external_ip_on_no_node_is_balanced_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let eip = Ipv4Addr::new(10, 96, 201, 11);
    apply(
        &g,
        &ServiceDef::cluster_ip("r11", cip(11))
            .port("http", "TCP", 80, 8080, None)
            .external_ip(eip)
            .dual_stack(),
        &dual_slices("r11", &[(1, 1), (2, 1), (2, 2)]),
    );
    let want = ["n1p1", "n2p1", "n2p2"];
    let to = six(SocketAddrV4::new(eip, 80));
    serves(&g, Client::Pod(1, 2), to, false, &want);
    serves(&g, Client::External, to, false, &want);
}

/// Row 10: the IPv6 ClusterIP and both nodes' IPv6 addresses on the
/// NodePort (TCP and UDP, each its own NodePort), backends on both nodes.
fn row10(c: Client, name: &str, last: u8, node_port: u16) {
    let g = lab();
    apply(
        &g,
        &ServiceDef::node_port(name, cip(last))
            .port("http", "TCP", 80, 8080, Some(node_port))
            .port("udp", "UDP", 80, 8080, Some(node_port + 1))
            .dual_stack(),
        &dual_slices(name, &[(1, 1), (2, 1)]),
    );
    let want = ["n1p1", "n2p1"];
    for udp in [false, true] {
        serves(&g, c, cip6(last, 80), udp, &want);
        for n in [1, 2] {
            serves(&g, c, node6(n, node_port + u16::from(udp)), udp, &want);
        }
    }
}

#[test]
fn row10_v6_clusterip_and_every_node_nodeport_reach_backends_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row10(Client::Pod(1, 2), "r10p", 10, 31610);
}

#[test]
fn row10_v6_clusterip_and_every_node_nodeport_reach_backends_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row10(Client::Host(2), "r10h", 110, 31612);
}

#[test]
fn row22_v6_service_without_endpoints_is_rejected_also_after_eviction() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let svc = ServiceDef::node_port("r22", cip(22))
        .port("http", "TCP", 80, 8080, Some(31622))
        .port("udp", "UDP", 80, 8080, Some(31623))
        .dual_stack();
    let c = Client::Pod(1, 1);
    apply(&g, &svc, &dual_slices("r22", &[]));
    for udp in [false, true] {
        refused(&g, c, cip6(22, 80), udp);
    }
    apply(&g, &svc, &dual_slices("r22", &[(2, 1)]));
    serves(&g, c, cip6(22, 80), false, &["n2p1"]);
    // The pod is evicted: its endpoint goes away.
    apply(&g, &svc, &dual_slices("r22", &[]));
    for udp in [false, true] {
        refused(&g, c, cip6(22, 80), udp);
    }
    refused(&g, c, node6(2, 31622), false);
    refused(&g, c, node6(1, 31623), true);
}

/// Row 26: TCP and UDP on one port; removing one protocol stops only it.
fn row26(name: &str, last: u8, lb: Option<Ipv4Addr>) {
    let g = lab();
    let c = Client::Pod(2, 2);
    let mk = |udp: bool| {
        let mut s = ServiceDef::new(
            name,
            if lb.is_some() {
                "LoadBalancer"
            } else {
                "ClusterIP"
            },
            Some(cip(last)),
        )
        .port("http", "TCP", 53, 8080, lb.map(|_| 31626))
        .dual_stack();
        if udp {
            s = s.port("udp", "UDP", 53, 8080, lb.map(|_| 31627));
        }
        if let Some(a) = lb {
            s = s.lb_ingress(a);
        }
        s
    };
    let pods = [(1, 1), (2, 1)];
    let want = ["n1p1", "n2p1"];
    let targets: Vec<SocketAddr> = [Some(cip(last)), lb]
        .into_iter()
        .flatten()
        .map(|a| six(SocketAddrV4::new(a, 53)))
        .collect();
    apply(&g, &mk(true), &dual_slices(name, &pods));
    for &to in &targets {
        serves(&g, c, to, false, &want);
        serves(&g, c, to, true, &want);
    }
    apply(&g, &mk(false), &dual_slices(name, &pods));
    for &to in &targets {
        fails(&g, c, to, true);
        serves(&g, c, to, false, &want);
    }
}

#[test]
fn row26_v6_tcp_and_udp_on_one_clusterip_port_removing_one_keeps_the_other() {
    if !xlb_testkit::privileged() {
        return;
    }
    row26("r26c", 26, None);
}

#[test]
fn row26_v6_tcp_and_udp_on_one_loadbalancer_port_removing_one_keeps_the_other() {
    if !xlb_testkit::privileged() {
        return;
    }
    row26("r26l", 126, Some(Ipv4Addr::new(10, 96, 202, 26)));
}

/// `xlb lab check` on the dual-stack lab: every probe, in both families.
#[test]
fn lab_check_v6_probes_pass_on_the_dual_stack_lab() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let limit = std::time::Instant::now() + SETTLE;
    let rows: serde_json::Value = loop {
        let out = std::process::Command::new(XLB)
            .args(["lab", "check", "--json", "--prefix", g.prefix()])
            .output()
            .unwrap();
        if out.status.success() {
            break serde_json::from_slice(&out.stdout).unwrap();
        }
        let last = String::from_utf8_lossy(&out.stdout);
        assert!(
            std::time::Instant::now() < limit,
            "xlb lab check fails: {last}\n{}",
            g.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let v6: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["probe"].as_str().unwrap().ends_with("-v6"))
        .collect();
    assert_eq!(v6.len() * 2, rows.as_array().unwrap().len(), "{rows:#}");
    assert!(v6.iter().all(|r| r["ok"] == true), "{rows:#}");
}
