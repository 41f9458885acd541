//! The socket hooks in the lab: processes of a node namespace (hostNetwork
//! pods, the kubelet) reach Services through them — ClusterIP to a local and
//! a remote backend, NodePort on the node's own address and on 127.0.0.1,
//! UDP with replies from the Service address, externalTrafficPolicy Local
//! served by the node's own endpoints, a Service without endpoints refused at
//! once — while the test's own namespace (the machine) is left alone.

mod e2e_support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};

use e2e_support::{shared, LabGuard, T};
use xlb::lab::{node_addr, probe};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::with_xlb("xsk"))
}

fn sa(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

#[test]
fn node_processes_reach_services_through_the_socket_hooks() {
    if !xlb_loader::testutil::privileged() {
        return;
    }
    let g = lab();
    for (n, to, want) in [
        (1, sa([10, 96, 0, 11], 80), "n1p1"), // ClusterIP, local backend
        (1, sa([10, 96, 0, 12], 80), "n2p1"), // ClusterIP, backend on node2
        (2, sa([10, 96, 0, 11], 80), "n1p1"),
        (1, SocketAddrV4::new(node_addr(1), 30082), "n2p1"), // own NodePort
        (1, sa([127, 0, 0, 1], 30082), "n2p1"),              // NodePort on loopback
        (2, sa([127, 0, 0, 1], 30081), "n1p1"),
    ] {
        // probe::tcp checks getpeername() == what was dialled.
        let r = g
            .node(n, move || probe::tcp(None, to, T))
            .unwrap_or_else(|e| panic!("node{n} -> {to}: {e}\n{}", g.logs()));
        assert_eq!(r.name, want, "node{n} -> {to}");
    }
}

#[test]
fn udp_from_a_node_comes_back_from_the_service() {
    if !xlb_loader::testutil::privileged() {
        return;
    }
    let g = lab();
    for (n, to) in [(1, sa([10, 96, 0, 10], 80)), (2, sa([127, 0, 0, 1], 30080))] {
        let (r, from) = g
            .node(n, move || probe::udp(None, to, T))
            .unwrap_or_else(|e| panic!("node{n} -> {to}/udp: {e}\n{}", g.logs()));
        assert!(r.name.starts_with('n'), "{r:?}");
        assert_eq!(from, SocketAddr::V4(to), "recvfrom shows the Service");
    }
}

#[test]
fn etp_local_from_the_node_is_served_by_its_own_endpoints() {
    if !xlb_loader::testutil::privileged() {
        return;
    }
    let g = lab();
    // local: eTP Local, endpoints n1p1, n1p2 (node1) and n2p1 (node2).
    for _ in 0..8 {
        for (n, to, allowed) in [
            (2, sa([10, 96, 100, 13], 80), &["n2p1"][..]),
            (2, SocketAddrV4::new(node_addr(2), 30083), &["n2p1"][..]),
            (1, sa([127, 0, 0, 1], 30083), &["n1p1", "n1p2"][..]),
        ] {
            let r = g
                .node(n, move || probe::tcp(None, to, T))
                .unwrap_or_else(|e| panic!("node{n} -> {to}: {e}"));
            assert!(allowed.contains(&r.name.as_str()), "node{n} -> {to}: {r:?}");
        }
    }
}

#[test]
fn no_endpoints_is_refused_and_the_machine_is_left_alone() {
    if !xlb_loader::testutil::privileged() {
        return;
    }
    let g = lab();
    let e = g
        .node(1, || probe::tcp(None, sa([10, 96, 0, 16], 80), T))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
    // The test process's namespace: 127.0.0.1:30082 is a NodePort for the
    // lab's nodes only; here nothing listens there.
    let e = probe::tcp(None, sa([127, 0, 0, 1], 30082), T).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
}
