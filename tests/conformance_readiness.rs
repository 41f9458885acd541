//! Conformance rows 14-16, 25 and 31 (docs/conformance.md): which endpoints
//! are used as their conditions change (publishNotReadyAddresses, terminating
//! fallback per traffic policy, unready becoming ready). The lab's manifests
//! play the EndpointSlice controller: with publishNotReadyAddresses it
//! publishes `ready: true` whatever the pod's state. One lab for the file;
//! every test has Services of its own (10.96.3.x, NodePorts 313xx).

mod conformance_support;
mod e2e_support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conformance_support::*;
use e2e_support::*;
use xlb_lab as lab;

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::with_xlb("xcr"))
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 3, last)
}

/// One endpoint, pod `(n, k)`, with the given conditions.
fn one(service: &str, (n, k): (u8, u8), ready: bool, serving: bool, terminating: bool) -> SliceDef {
    SliceDef::new(service, "1")
        .port("http", "TCP", lab::BACKEND_PORT)
        .endpoint(EndpointDef::pod(n, k).conditions(ready, serving, terminating))
}

#[test]
fn row14_publish_not_ready_addresses_on_off_on() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(14);
    let to = SocketAddrV4::new(ip, 80);
    let c = Client::Pod(1, 2);
    let svc = |pnra| {
        ServiceDef::cluster_ip("r14", ip)
            .port("http", "TCP", 80, 8080, None)
            .publish_not_ready(pnra)
    };
    // A pod that never became ready, published with ready=true.
    apply(&g, &svc(true), &[one("r14", (2, 1), true, false, false)]);
    serves(&g, c, to, false, &["n2p1"]);
    // publishNotReadyAddresses off: the controller publishes its real state.
    apply(&g, &svc(false), &[one("r14", (2, 1), false, false, false)]);
    refused(&g, c, to, false);
    // On again, the pod now terminating and unready: still published ready.
    apply(&g, &svc(true), &[one("r14", (2, 1), true, false, true)]);
    serves(&g, c, to, false, &["n2p1"]);
}

#[test]
fn row15_publish_not_ready_true_terminating_unready_endpoint_is_reached() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(15);
    let svc = ServiceDef::node_port("r15", ip)
        .port("http", "TCP", 80, 8080, Some(31315))
        .publish_not_ready(true);
    apply(&g, &svc, &[one("r15", (1, 1), true, false, true)]);
    let c = Client::Pod(2, 2);
    serves(&g, c, SocketAddrV4::new(ip, 80), false, &["n1p1"]);
    for n in [1, 2] {
        serves(&g, c, node(n, 31315), false, &["n1p1"]);
    }
}

#[test]
fn row16_publish_not_ready_false_terminating_unready_endpoint_is_not_reached() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(16);
    let to = SocketAddrV4::new(ip, 80);
    let svc = ServiceDef::node_port("r16", ip).port("http", "TCP", 80, 8080, Some(31316));
    let c = Client::Pod(2, 2);
    apply(&g, &svc, &[one("r16", (1, 1), true, true, false)]);
    serves(&g, c, to, false, &["n1p1"]);
    apply(&g, &svc, &[one("r16", (1, 1), false, false, true)]);
    refused(&g, c, to, false);
    for n in [1, 2] {
        refused(&g, c, node(n, 31316), false);
    }
}

/// Row 25: no ready endpoint; n1p1 serving and terminating, n2p1 terminating
/// and not serving. The serving-terminating one is used.
fn fallback_slice(name: &str) -> SliceDef {
    SliceDef::new(name, "1")
        .port("http", "TCP", lab::BACKEND_PORT)
        .endpoint(EndpointDef::pod(1, 1).conditions(false, true, true))
        .endpoint(EndpointDef::pod(2, 1).conditions(false, false, true))
}

#[test]
fn row25_terminating_fallback_with_internal_traffic_policy_cluster() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(25);
    apply(
        &g,
        &ServiceDef::cluster_ip("r25ic", ip)
            .port("http", "TCP", 80, 8080, None)
            .itp("Cluster"),
        &[fallback_slice("r25ic")],
    );
    for c in [Client::Pod(1, 2), Client::Pod(2, 2)] {
        serves(&g, c, SocketAddrV4::new(ip, 80), false, &["n1p1"]);
    }
}

#[test]
fn row25_terminating_fallback_with_internal_traffic_policy_local() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(125);
    apply(
        &g,
        &ServiceDef::cluster_ip("r25il", ip)
            .port("http", "TCP", 80, 8080, None)
            .itp("Local"),
        &[fallback_slice("r25il")],
    );
    let to = SocketAddrV4::new(ip, 80);
    serves(&g, Client::Pod(1, 2), to, false, &["n1p1"]);
    // node2's only endpoint is not serving: nothing to fall back to there.
    fails(&g, Client::Pod(2, 2), to, false);
}

#[test]
fn row25_terminating_fallback_with_external_traffic_policy_cluster() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::node_port("r25ec", cip(225))
            .port("http", "TCP", 80, 8080, Some(31325))
            .etp("Cluster"),
        &[fallback_slice("r25ec")],
    );
    for n in [1, 2] {
        serves(&g, Client::Pod(2, 2), node(n, 31325), false, &["n1p1"]);
        serves(&g, Client::External, node(n, 31325), false, &["n1p1"]);
    }
}

/// eTP Local: the external client through node1 (whose endpoint is serving
/// and terminating) is served; through node2 (none serving) it is dropped.
#[test]
fn row25_terminating_fallback_with_external_traffic_policy_local() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::new("r25el", "LoadBalancer", Some(cip(226)))
            .port("http", "TCP", 80, 8080, Some(31326))
            .etp("Local")
            .health_check_node_port(32326),
        &[fallback_slice("r25el")],
    );
    let replies = serves(&g, Client::External, node(1, 31326), false, &["n1p1"]);
    assert!(replies.iter().all(|r| r.peer.ip() == lab::CLIENT_ADDR));
    let kinds = fails(&g, Client::External, node(2, 31326), false);
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ErrorKind::TimedOut | ErrorKind::WouldBlock)),
        "eTP Local without a local endpoint must drop, not refuse: {kinds:?}"
    );
}

/// Row 31: a client keeps sending from one UDP socket while the only
/// endpoint is unready (refused: ICMP port unreachable), then reaches it
/// once it is ready.
#[test]
fn row31_udp_to_unready_endpoint_reaches_it_once_ready() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(31);
    let to = SocketAddrV4::new(ip, 80);
    let svc = ServiceDef::cluster_ip("r31", ip).port("udp", "UDP", 80, 8080, None);
    let sl = |ready: bool| {
        SliceDef::new("r31", "1")
            .port("udp", "UDP", lab::BACKEND_PORT)
            .endpoint(EndpointDef::pod(2, 1).conditions(ready, ready, false))
    };
    apply(&g, &svc, &[sl(false)]);
    let sock = g.pod(1, 2, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
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
    // Refused while unready (after the agents have the Service).
    eventually("refused while unready", SETTLE, || {
        matches!(exchange(&sock), Err(e) if e.kind() == ErrorKind::ConnectionRefused).then_some(())
    });
    apply(&g, &svc, &[sl(true)]);
    let got = eventually("the same socket reaches the ready endpoint", SETTLE, || {
        exchange(&sock).ok()
    });
    assert!(got.starts_with("n2p1 "), "{got}");
    for _ in 0..5 {
        let r = exchange(&sock).unwrap();
        assert!(r.starts_with("n2p1 "), "{r}");
    }
}
