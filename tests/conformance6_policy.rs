//! Conformance rows 17, 23, 25, 27 and 30 over IPv6 (docs/conformance.md,
//! "IPv6"): ClientIP affinity (on the /128), internalTrafficPolicy Local
//! (pod, host, hostNetwork backend), the terminating-endpoint fallback per
//! traffic policy, eTP Local keeping a host client's address, and a
//! fixed-port UDP flow following a replaced server pod,
//! with dual-stack Services probed at their IPv6 addresses in a dual-stack
//! lab (3 pods per node, as the IPv4 row 30). One lab for the file; every
//! test has Services of its own (10.96.62.x / fd00:10:96:62::x, NodePorts
//! 317xx).

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
    shared(&LAB, || {
        LabGuard::up("x6p", &["--dual-stack", "--pods-per-node", "3"])
    })
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 62, last)
}

fn cip6(last: u8, port: u16) -> SocketAddr {
    six(SocketAddrV4::new(cip(last), port))
}

const ALL: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];

/// Backends that answered `count` quick connections.
fn distinct(g: &LabGuard, c: Client, to: SocketAddr, count: usize) -> BTreeSet<String> {
    answers(g, c, to, false, count)
        .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()))
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn row17_v6_client_ip_affinity_through_clusterip_and_nodeport() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let np = 31717;
    apply(
        &g,
        &ServiceDef::node_port("r17", cip(17))
            .port("http", "TCP", 80, 8080, Some(np))
            .affinity(10800)
            .dual_stack(),
        &dual_slices("r17", &ALL),
    );
    for (c, to) in [
        (Client::Pod(2, 2), cip6(17, 80)),
        (Client::Pod(1, 1), node6(1, np)),
        (Client::External, node6(1, np)),
        (Client::External, node6(2, np)),
    ] {
        // Served at all (waits for the agents), then every connection sticks.
        eventually(&format!("{c:?} -> {to} served"), SETTLE, || {
            answers(&g, c, to, false, 1).ok()
        });
        let seen = distinct(&g, c, to, 40);
        assert_eq!(seen.len(), 1, "{c:?} -> {to}: {seen:?}");
    }
    // Without affinity the same frontends spread (the check above can fail).
    apply(
        &g,
        &ServiceDef::node_port("r17", cip(17))
            .port("http", "TCP", 80, 8080, Some(np))
            .dual_stack(),
        &dual_slices("r17", &ALL),
    );
    eventually("r17 without affinity spreads", SETTLE, || {
        (distinct(&g, Client::Pod(2, 2), cip6(17, 80), 40).len() > 1).then_some(())
    });
}

/// Row 23: internalTrafficPolicy Local: `clients[0]` (on the endpoint's
/// node) reaches it over IPv6, `clients[1]` (the other node) fails.
fn row23(clients: [Client; 2], name: &str, last: u8, ep: EndpointDef, port: u16, want: &str) {
    let g = lab();
    let sl = SliceDef::new(name, "1")
        .port("http", "TCP", port)
        .endpoint(ep);
    apply(
        &g,
        &ServiceDef::cluster_ip(name, cip(last))
            .port("http", "TCP", 80, port, None)
            .itp("Local")
            .dual_stack(),
        &[sl.clone(), sl.ipv6()],
    );
    let to = cip6(last, 80);
    let [same, other] = clients;
    serves(&g, same, to, false, &[want]);
    fails(&g, other, to, false);
}

#[test]
fn row23_v6_internal_traffic_policy_local_pod_to_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row23(
        [Client::Pod(1, 2), Client::Pod(2, 2)],
        "r23p",
        23,
        EndpointDef::pod(1, 1),
        lab::BACKEND_PORT,
        "n1p1",
    );
}

#[test]
fn row23_v6_internal_traffic_policy_local_host_to_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row23(
        [Client::Host(1), Client::Host(2)],
        "r23h",
        123,
        EndpointDef::pod(1, 1),
        lab::BACKEND_PORT,
        "n1p1",
    );
}

#[test]
fn row23_v6_internal_traffic_policy_local_pod_and_host_to_hostnetwork_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let name = lab::daemons::host_backend_name(1);
    for (i, clients) in [
        [Client::Pod(1, 2), Client::Pod(2, 2)],
        [Client::Host(1), Client::Host(2)],
    ]
    .into_iter()
    .enumerate()
    {
        row23(
            clients,
            &format!("r23n{i}"),
            223 + i as u8,
            EndpointDef::host(lab::node_addr(1), Some(1)),
            lab::daemons::HOSTNET_PORT,
            &name,
        );
    }
}

/// Row 27: eTP Local NodePort keeps a host client's IPv6 address (node2's
/// process to node1's NodePort crosses the IPv6 underlay).
#[test]
fn row27_v6_external_traffic_policy_local_nodeport_keeps_host_client_address() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let np = 31727;
    apply(
        &g,
        &ServiceDef::node_port("r27", cip(27))
            .port("http", "TCP", 80, 8080, Some(np))
            .etp("Local")
            .dual_stack(),
        &dual_slices("r27", &[(1, 1)]),
    );
    let c = Client::Host(2);
    for r in serves(&g, c, node6(1, np), false, &["n1p1"]) {
        assert_eq!(r.peer.ip(), c.addr6(), "{r:?}");
    }
}

/// Serving and terminating (not ready) n1p1; terminating and not serving n2p1.
fn fallback_slices(name: &str) -> [SliceDef; 2] {
    let s = SliceDef::new(name, "1")
        .port("http", "TCP", lab::BACKEND_PORT)
        .endpoint(EndpointDef::pod(1, 1).conditions(false, true, true))
        .endpoint(EndpointDef::pod(2, 1).conditions(false, false, true));
    [s.clone(), s.ipv6()]
}

#[test]
fn row25_v6_terminating_fallback_with_internal_traffic_policy_cluster() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r25ic", cip(25))
            .port("http", "TCP", 80, 8080, None)
            .itp("Cluster")
            .dual_stack(),
        &fallback_slices("r25ic"),
    );
    for c in [Client::Pod(1, 2), Client::Pod(2, 2)] {
        serves(&g, c, cip6(25, 80), false, &["n1p1"]);
    }
}

#[test]
fn row25_v6_terminating_fallback_with_internal_traffic_policy_local() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r25il", cip(125))
            .port("http", "TCP", 80, 8080, None)
            .itp("Local")
            .dual_stack(),
        &fallback_slices("r25il"),
    );
    let to = cip6(125, 80);
    serves(&g, Client::Pod(1, 2), to, false, &["n1p1"]);
    // node2's only endpoint is not serving: nothing to fall back to there.
    fails(&g, Client::Pod(2, 2), to, false);
}

#[test]
fn row25_v6_terminating_fallback_with_external_traffic_policy_cluster() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::node_port("r25ec", cip(225))
            .port("http", "TCP", 80, 8080, Some(31725))
            .etp("Cluster")
            .dual_stack(),
        &fallback_slices("r25ec"),
    );
    for n in [1, 2] {
        serves(&g, Client::Pod(2, 2), node6(n, 31725), false, &["n1p1"]);
        serves(&g, Client::External, node6(n, 31725), false, &["n1p1"]);
    }
}

/// eTP Local: the external client through node1 (whose endpoint is serving
/// and terminating) is served with its own address kept; through node2 (none
/// serving) it is dropped.
#[test]
fn row25_v6_terminating_fallback_with_external_traffic_policy_local() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::new("r25el", "LoadBalancer", Some(cip(226)))
            .port("http", "TCP", 80, 8080, Some(31726))
            .etp("Local")
            .health_check_node_port(32726)
            .dual_stack(),
        &fallback_slices("r25el"),
    );
    let replies = serves(&g, Client::External, node6(1, 31726), false, &["n1p1"]);
    let me = Client::External.addr6();
    assert!(replies.iter().all(|r| r.peer.ip() == me), "{replies:?}");
    let kinds = fails(&g, Client::External, node6(2, 31726), false);
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ErrorKind::TimedOut | ErrorKind::WouldBlock)),
        "eTP Local without a local endpoint must drop, not refuse: {kinds:?}"
    );
}

/// Row 30: one UDP socket with a fixed source port keeps sending to `to`
/// while the Service's only server pod `old` is replaced by `new`: the
/// datagrams reach `new` soon after the change.
fn row30(c: Client, svc: ServiceDef, old: (u8, u8), new: (u8, u8), to: SocketAddr, sport: u16) {
    let g = lab();
    let name = svc.name.clone();
    let sl = |p: (u8, u8)| {
        let s = SliceDef::new(&name, "1")
            .port("udp", "UDP", lab::BACKEND_PORT)
            .pods(&[p]);
        [s.clone(), s.ipv6()]
    };
    apply(&g, &svc, &sl(old));
    let sock = run(&g, c, move || {
        let s = UdpSocket::bind(("::", sport)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // A host client has no route to a ClusterIP that the socket hooks
        // do not know yet: connect once the agent has applied the Service.
        let mut tries = 0;
        while let Err(e) = s.connect(to) {
            tries += 1;
            assert!(tries < 150, "connect {to}: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    });
    // As the upstream client (`nc -u -p PORT` restarted on error): a socket
    // error connects the same fixed-port socket again.
    let who = |s: &UdpSocket| -> Option<String> {
        let mut buf = [0u8; 256];
        match s.send(b"probe").and_then(|_| s.recv(&mut buf)) {
            Ok(n) => Some(
                String::from_utf8_lossy(&buf[..n])
                    .split(' ')
                    .next()?
                    .to_owned(),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(_) => {
                let _ = s.connect(to);
                None
            }
        }
    };
    let old_name = lab::pod_name(old.0, old.1);
    let new_name = lab::pod_name(new.0, new.1);
    eventually(&format!("{c:?} -> {to} reaches {old_name}"), SETTLE, || {
        (who(&sock)? == old_name).then_some(())
    });
    apply(&g, &svc, &sl(new));
    eventually(
        &format!("{c:?}:{sport} -> {to} reaches {new_name}"),
        Duration::from_secs(15),
        || (who(&sock)? == new_name).then_some(()),
    );
    for _ in 0..5 {
        assert_eq!(who(&sock).as_deref(), Some(new_name.as_str()));
    }
}

#[test]
fn row30_v6_udp_flow_follows_a_replaced_server_pod_via_nodeport() {
    if !xlb_testkit::privileged() {
        return;
    }
    let np = 31730;
    let svc = ServiceDef::node_port("r30n", cip(30))
        .port("udp", "UDP", 80, 8080, Some(np))
        .dual_stack();
    row30(Client::Pod(1, 3), svc, (2, 1), (2, 2), node6(1, np), 40601);
}

#[test]
fn row30_v6_udp_flow_follows_a_replaced_server_pod_via_clusterip() {
    if !xlb_testkit::privileged() {
        return;
    }
    let svc = ServiceDef::cluster_ip("r30c", cip(130))
        .port("udp", "UDP", 80, 8080, None)
        .dual_stack();
    row30(Client::Pod(1, 3), svc, (2, 1), (2, 2), cip6(130, 80), 40602);
}

#[test]
fn row30_v6_udp_flow_follows_a_replaced_server_pod_via_clusterip_itp_local() {
    if !xlb_testkit::privileged() {
        return;
    }
    let svc = ServiceDef::cluster_ip("r30l", cip(230))
        .port("udp", "UDP", 80, 8080, None)
        .itp("Local")
        .dual_stack();
    row30(Client::Pod(1, 3), svc, (1, 1), (1, 2), cip6(230, 80), 40603);
}

#[test]
fn row30_v6_udp_flow_follows_a_replaced_server_pod_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    let svc = ServiceDef::cluster_ip("r30h", cip(231))
        .port("udp", "UDP", 80, 8080, None)
        .dual_stack();
    row30(Client::Host(1), svc, (2, 1), (2, 2), cip6(231, 80), 40604);
}
