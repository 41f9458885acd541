//! Conformance rows 12-16, 18-21 and 31 over IPv6 (docs/conformance.md,
//! "IPv6"): Service type changes, publishNotReadyAddresses, affinity
//! timeout and affinity switched on a live Service, the proxy-name and headless labels, and UDP
//! to an endpoint that becomes ready, with dual-stack Services probed at
//! their IPv6 addresses in a dual-stack lab. One lab for the file; every
//! test has Services of its own (10.96.63.x / fd00:10:96:63::x, NodePorts
//! 318xx).

mod conformance_support;
mod e2e_support;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conformance_support::*;
use e2e_support::*;
use xlb_lab as lab;

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::up("x6t", &["--dual-stack"]))
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 63, last)
}

fn cip6(last: u8, port: u16) -> SocketAddr {
    six(SocketAddrV4::new(cip(last), port))
}

/// A slice in both families.
fn both(s: SliceDef) -> [SliceDef; 2] {
    [s.clone(), s.ipv6()]
}

#[test]
fn row12_v6_clusterip_to_nodeport_with_tcp_and_udp_on_one_port_number() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let c = Client::Pod(1, 2);
    let pods = [(1, 1), (2, 1)];
    let want = ["n1p1", "n2p1"];
    apply(
        &g,
        &ServiceDef::cluster_ip("r12", cip(12))
            .port("http", "TCP", 80, 8080, None)
            .dual_stack(),
        &dual_slices("r12", &pods),
    );
    serves(&g, c, cip6(12, 80), false, &want);
    fails(&g, c, node6(1, 31812), false);
    let np = ServiceDef::node_port("r12", cip(12))
        .port("http", "TCP", 80, 8080, Some(31812))
        .port("udp", "UDP", 80, 8080, Some(31813))
        .dual_stack();
    apply(&g, &np, &dual_slices("r12", &pods));
    // The pod and the external client through both nodes' IPv6 NodePorts.
    for (c, n) in [(c, 1), (c, 2), (Client::External, 1), (Client::External, 2)] {
        serves(&g, c, node6(n, 31812), false, &want);
        serves(&g, c, node6(n, 31813), true, &want);
        // Each protocol only on its own NodePort.
        fails(&g, c, node6(n, 31813), false);
        fails(&g, c, node6(n, 31812), true);
    }
    serves(&g, c, cip6(12, 80), true, &want);
    serves(&g, c, cip6(12, 80), false, &want);
}

#[test]
fn row13_v6_externalname_to_clusterip_and_to_nodeport() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let c = Client::Pod(2, 2);
    let pods = [(1, 2), (2, 1)];
    let want = ["n1p2", "n2p1"];
    for (name, last, node_port) in [("r13c", 13, None), ("r13n", 113, Some(31813 + 100))] {
        let base = ServiceDef::cluster_ip(name, cip(last))
            .port("http", "TCP", 80, 8080, node_port)
            .dual_stack();
        apply(
            &g,
            &base.clone().external_name("example.com"),
            &dual_slices(name, &pods),
        );
        // ExternalName is DNS only: nothing answers on the address it will get.
        fails(&g, c, cip6(last, 80), false);
        let svc = if node_port.is_some() {
            ServiceDef {
                type_: "NodePort".into(),
                ..base
            }
        } else {
            base
        };
        apply(&g, &svc, &dual_slices(name, &pods));
        serves(&g, c, cip6(last, 80), false, &want);
        if let Some(p) = node_port {
            for (c, n) in [(c, 1), (c, 2), (Client::External, 1), (Client::External, 2)] {
                serves(&g, c, node6(n, p), false, &want);
            }
        }
    }
}

/// One endpoint, pod `(n, k)`, with the given conditions.
fn one(
    service: &str,
    (n, k): (u8, u8),
    ready: bool,
    serving: bool,
    terminating: bool,
) -> [SliceDef; 2] {
    both(
        SliceDef::new(service, "1")
            .port("http", "TCP", lab::BACKEND_PORT)
            .endpoint(EndpointDef::pod(n, k).conditions(ready, serving, terminating)),
    )
}

#[test]
fn row14_v6_publish_not_ready_addresses_on_off_on() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let to = cip6(14, 80);
    let c = Client::Pod(1, 2);
    let svc = |pnra| {
        ServiceDef::cluster_ip("r14", cip(14))
            .port("http", "TCP", 80, 8080, None)
            .publish_not_ready(pnra)
            .dual_stack()
    };
    apply(&g, &svc(true), &one("r14", (2, 1), true, false, false));
    serves(&g, c, to, false, &["n2p1"]);
    apply(&g, &svc(false), &one("r14", (2, 1), false, false, false));
    refused(&g, c, to, false);
    apply(&g, &svc(true), &one("r14", (2, 1), true, false, true));
    serves(&g, c, to, false, &["n2p1"]);
}

#[test]
fn row15_v6_publish_not_ready_true_terminating_unready_endpoint_is_reached() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let svc = ServiceDef::node_port("r15", cip(15))
        .port("http", "TCP", 80, 8080, Some(31815))
        .publish_not_ready(true)
        .dual_stack();
    apply(&g, &svc, &one("r15", (1, 1), true, false, true));
    let c = Client::Pod(2, 2);
    serves(&g, c, cip6(15, 80), false, &["n1p1"]);
    for n in [1, 2] {
        serves(&g, c, node6(n, 31815), false, &["n1p1"]);
    }
}

#[test]
fn row16_v6_publish_not_ready_false_terminating_unready_endpoint_is_not_reached() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let to = cip6(16, 80);
    let svc = ServiceDef::node_port("r16", cip(16))
        .port("http", "TCP", 80, 8080, Some(31816))
        .dual_stack();
    let c = Client::Pod(2, 2);
    apply(&g, &svc, &one("r16", (1, 1), true, true, false));
    serves(&g, c, to, false, &["n1p1"]);
    apply(&g, &svc, &one("r16", (1, 1), false, false, true));
    refused(&g, c, to, false);
    for n in [1, 2] {
        refused(&g, c, node6(n, 31816), false);
    }
}

const ALL: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];
const ALL_NAMES: [&str; 4] = ["n1p1", "n1p2", "n2p1", "n2p2"];

/// Row 18: timeoutSeconds 1; one connection after each quiet period of 2 s
/// chooses afresh, so over 12 of them (4 backends) more than one answers.
#[test]
fn row18_v6_client_ip_affinity_ends_after_timeout_seconds() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let np = 31818;
    apply(
        &g,
        &ServiceDef::node_port("r18", cip(18))
            .port("http", "TCP", 80, 8080, Some(np))
            .affinity(1)
            .dual_stack(),
        &dual_slices("r18", &ALL),
    );
    for (c, to) in [
        (Client::Pod(2, 2), cip6(18, 80)),
        (Client::External, node6(1, np)),
    ] {
        eventually(&format!("{c:?} -> {to} served"), SETTLE, || {
            answers(&g, c, to, false, 1).ok()
        });
        let within: BTreeSet<String> = answers(&g, c, to, false, 20)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(within.len(), 1, "{c:?} -> {to}: {within:?}");
        let mut after = BTreeSet::new();
        for _ in 0..12 {
            std::thread::sleep(Duration::from_secs(2));
            let r = answers(&g, c, to, false, 1).unwrap_or_else(|e| panic!("{e}"));
            after.insert(r[0].name.clone());
            if after.len() > 1 {
                break;
            }
        }
        assert!(
            after.len() > 1,
            "{c:?} -> {to}: affinity never expired: {after:?}"
        );
    }
}

#[test]
fn row19_v6_affinity_switched_none_client_ip_none_on_a_live_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let np = 31819;
    let svc = |affinity: bool| {
        let s = ServiceDef::node_port("r19", cip(19))
            .port("http", "TCP", 80, 8080, Some(np))
            .dual_stack();
        if affinity {
            s.affinity(10800)
        } else {
            s
        }
    };
    let pairs = [
        (Client::Pod(2, 2), cip6(19, 80)),
        (Client::Pod(1, 1), node6(1, np)),
        (Client::External, node6(1, np)),
        (Client::External, node6(2, np)),
    ];
    let distinct = |c, to, count| -> BTreeSet<String> {
        answers(&g, c, to, false, count)
            .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()))
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    apply(&g, &svc(false), &dual_slices("r19", &ALL));
    for &(c, to) in &pairs {
        serves(&g, c, to, false, &ALL_NAMES);
    }
    apply(&g, &svc(true), &dual_slices("r19", &ALL));
    for &(c, to) in &pairs {
        eventually(&format!("{c:?} -> {to} sticks"), SETTLE, || {
            (distinct(c, to, 30).len() == 1).then_some(())
        });
        let seen = distinct(c, to, 30);
        assert_eq!(seen.len(), 1, "{c:?} -> {to}: {seen:?}");
    }
    apply(&g, &svc(false), &dual_slices("r19", &ALL));
    for &(c, to) in &pairs {
        serves(&g, c, to, false, &ALL_NAMES);
    }
}

const PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
const HEADLESS: &str = "service.kubernetes.io/headless";

/// Row 20: a Service labelled for another proxy is left alone; removing the
/// label serves it, adding it back stops it.
fn row20(c: Client, name: &str, last: u8) {
    let g = lab();
    let base = ServiceDef::cluster_ip(name, cip(last))
        .port("http", "TCP", 80, 8080, None)
        .dual_stack();
    let to = cip6(last, 80);
    let pods = [(1, 1), (2, 2)];
    let other = base.clone().label(PROXY_NAME, "other-proxy");
    apply(&g, &other, &dual_slices(name, &pods));
    fails(&g, c, to, false);
    apply(&g, &base, &dual_slices(name, &pods));
    serves(&g, c, to, false, &["n1p1", "n2p2"]);
    apply(&g, &other, &dual_slices(name, &pods));
    fails(&g, c, to, false);
}

#[test]
fn row20_v6_service_proxy_name_label_is_not_served_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row20(Client::Pod(1, 2), "r20p", 20);
}

#[test]
fn row20_v6_service_proxy_name_label_is_not_served_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row20(Client::Host(1), "r20h", 120);
}

/// Row 21: `headless` on the Service, then on its IPv6 EndpointSlice.
fn row21(c: Client, name: &str, last: u8) {
    let g = lab();
    let base = ServiceDef::cluster_ip(name, cip(last))
        .port("http", "TCP", 80, 8080, None)
        .dual_stack();
    let to = cip6(last, 80);
    let pods = [(1, 1), (2, 2)];
    let want = ["n1p1", "n2p2"];
    apply(
        &g,
        &base.clone().label(HEADLESS, ""),
        &dual_slices(name, &pods),
    );
    fails(&g, c, to, false);
    apply(&g, &base, &dual_slices(name, &pods));
    serves(&g, c, to, false, &want);
    let [v4, v6] = dual_slices(name, &pods);
    apply(&g, &base, &[v4, v6.label(HEADLESS, "")]);
    fails(&g, c, to, false);
    apply(&g, &base, &dual_slices(name, &pods));
    serves(&g, c, to, false, &want);
}

#[test]
fn row21_v6_headless_label_on_service_or_slice_is_not_served_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row21(Client::Pod(2, 2), "r21p", 21);
}

#[test]
fn row21_v6_headless_label_on_service_or_slice_is_not_served_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row21(Client::Host(2), "r21h", 121);
}

/// Row 31: a client keeps sending from one UDP socket while the only
/// endpoint is unready (refused: ICMPv6 port unreachable), then reaches it
/// once it is ready.
#[test]
fn row31_v6_udp_to_unready_endpoint_reaches_it_once_ready() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let to = cip6(31, 80);
    let svc = ServiceDef::cluster_ip("r31", cip(31))
        .port("udp", "UDP", 80, 8080, None)
        .dual_stack();
    let sl = |ready: bool| {
        both(
            SliceDef::new("r31", "1")
                .port("udp", "UDP", lab::BACKEND_PORT)
                .endpoint(EndpointDef::pod(2, 1).conditions(ready, ready, false)),
        )
    };
    apply(&g, &svc, &sl(false));
    let sock = g.pod(1, 2, move || {
        let s = UdpSocket::bind("[::]:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.connect(to).unwrap();
        s
    });
    let exchange = |s: &UdpSocket| -> std::io::Result<String> {
        s.send(b"probe")?;
        let mut buf = [0u8; 256];
        let n = s.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    eventually("refused while unready", SETTLE, || {
        matches!(exchange(&sock), Err(e) if e.kind() == ErrorKind::ConnectionRefused).then_some(())
    });
    apply(&g, &svc, &sl(true));
    let got = eventually("the same socket reaches the ready endpoint", SETTLE, || {
        exchange(&sock).ok()
    });
    assert!(got.starts_with("n2p1 "), "{got}");
    for _ in 0..5 {
        let r = exchange(&sock).unwrap();
        assert!(r.starts_with("n2p1 "), "{r}");
    }
}
