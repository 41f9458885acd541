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
use xlb_lab::{node_addr, probe};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::with_xlb("xsk"))
}

fn sa(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

#[test]
fn node_processes_reach_services_through_the_socket_hooks() {
    if !xlb_testkit::privileged() {
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
    if !xlb_testkit::privileged() {
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

/// A node process is inside the cluster: an eTP-Local NodePort (its own
/// node's address, 127.0.0.1) and the ClusterIP reach every endpoint, remote
/// ones included, as kube-proxy's cluster chain for `--src-type LOCAL`.
#[test]
fn etp_local_from_the_node_uses_the_cluster_wide_endpoints() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    // local: eTP Local, endpoints n1p1, n1p2 (node1) and n2p1 (node2).
    let all = ["n1p1", "n1p2", "n2p1"];
    for (n, to) in [
        (2, sa([10, 96, 100, 13], 80)),
        (2, SocketAddrV4::new(node_addr(2), 30083)),
        (1, sa([127, 0, 0, 1], 30083)),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        // 1/3 of the slots are on the other node: 40 tries miss it with p < 1e-7.
        for _ in 0..40 {
            let r = g
                .node(n, move || probe::tcp(None, to, T))
                .unwrap_or_else(|e| panic!("node{n} -> {to}: {e}"));
            assert!(all.contains(&r.name.as_str()), "node{n} -> {to}: {r:?}");
            seen.insert(r.name);
        }
        let other = if n == 1 { "n2p1" } else { "n1p1" };
        assert!(
            seen.iter().any(|s| s.starts_with(&other[..2])),
            "node{n} -> {to}: only {seen:?}, never the other node's endpoints"
        );
    }
}

#[test]
fn no_endpoints_is_refused_and_the_machine_is_left_alone() {
    if !xlb_testkit::privileged() {
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
