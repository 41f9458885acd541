//! Conformance rows 23, 24, 27, 28 and 30 (docs/conformance.md): traffic
//! policies, healthCheckNodePort, and UDP flows that outlive their server
//! pod. The lab has 3 pods per node (row 30 needs a client and two servers
//! on one node). Every test has Services of its own (10.96.5.x, NodePorts
//! 315xx, healthCheckNodePorts 320xx).

mod conformance_support;
mod e2e_support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conformance_support::*;
use e2e_support::*;
use xlb_lab::{self as lab, daemons};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::up("xcp", &["--pods-per-node", "3"]))
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 5, last)
}

/// Row 23: iTP Local with one endpoint on node1.
fn row23(clients: [Client; 2], name: &str, ip: Ipv4Addr, ep: EndpointDef, port: u16, want: &str) {
    let g = lab();
    let sl = SliceDef::new(name, "1")
        .port("http", "TCP", port)
        .endpoint(ep);
    apply(
        &g,
        &ServiceDef::cluster_ip(name, ip)
            .port("http", "TCP", 80, port, None)
            .itp("Local"),
        &[sl],
    );
    let to = SocketAddrV4::new(ip, 80);
    let [same, other] = clients;
    serves(&g, same, to, false, &[want]);
    fails(&g, other, to, false);
}

#[test]
fn row23_internal_traffic_policy_local_pod_to_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row23(
        [Client::Pod(1, 2), Client::Pod(2, 2)],
        "r23p",
        cip(23),
        EndpointDef::pod(1, 1),
        lab::BACKEND_PORT,
        "n1p1",
    );
}

#[test]
fn row23_internal_traffic_policy_local_host_to_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row23(
        [Client::Host(1), Client::Host(2)],
        "r23h",
        cip(123),
        EndpointDef::pod(1, 1),
        lab::BACKEND_PORT,
        "n1p1",
    );
}

#[test]
fn row23_internal_traffic_policy_local_pod_and_host_to_hostnetwork_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ep = || EndpointDef::host(lab::node_addr(1), Some(1));
    let name = daemons::host_backend_name(1);
    for (i, clients) in [
        [Client::Pod(1, 2), Client::Pod(2, 2)],
        [Client::Host(1), Client::Host(2)],
    ]
    .into_iter()
    .enumerate()
    {
        let svc = format!("r23n{i}");
        row23(
            clients,
            &svc,
            cip(223 + i as u8),
            ep(),
            daemons::HOSTNET_PORT,
            &name,
        );
    }
}

fn lb_local(name: &str, ip: Ipv4Addr, np: u16, hc: u16) -> ServiceDef {
    ServiceDef::new(name, "LoadBalancer", Some(ip))
        .port("http", "TCP", 80, 8080, Some(np))
        .etp("Local")
        .health_check_node_port(hc)
}

#[test]
fn row24_health_check_node_port_503_with_only_terminating_local_endpoints() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let (np, hc) = (31524, 32024);
    let svc = lb_local("r24", cip(24), np, hc);
    let sl = |ready: bool| {
        SliceDef::new("r24", "1")
            .port("http", "TCP", lab::BACKEND_PORT)
            .endpoint(EndpointDef::pod(1, 1).conditions(ready, true, !ready))
    };
    apply(&g, &svc, &[sl(true)]);
    let body = http_status(&g, Client::External, node(1, hc), "/", 200);
    assert!(
        body.contains("\"localEndpoints\": 1") || body.contains("\"localEndpoints\":1"),
        "{body}"
    );
    assert!(body.contains("r24"), "{body}");
    http_status(&g, Client::External, node(2, hc), "/", 503);
    // The only local endpoint starts terminating (still serving).
    apply(&g, &svc, &[sl(false)]);
    http_status(&g, Client::External, node(1, hc), "/", 503);
    serves(&g, Client::External, node(1, np), false, &["n1p1"]);
}

/// A host client on another node reaches the NodePort over the underlay, as
/// outside traffic does.
#[test]
fn row27_external_traffic_policy_local_nodeport_keeps_host_client_address() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let np = 31527;
    apply(
        &g,
        &ServiceDef::node_port("r27", cip(27))
            .port("http", "TCP", 80, 8080, Some(np))
            .etp("Local"),
        &[slice("r27", &[(1, 1)])],
    );
    let c = Client::Host(2);
    for r in serves(&g, c, node(1, np), false, &["n1p1"]) {
        assert_eq!(r.peer.ip(), c.addr(), "{r:?}");
    }
}

/// Row 28: Cluster -> Local -> Cluster; `client` reaches node1's NodePort throughout.
fn row28(client: Client, name: &str, ip: Ipv4Addr, np: u16, hc: u16) {
    let g = lab();
    let cluster = ServiceDef::new(name, "LoadBalancer", Some(ip))
        .port("http", "TCP", 80, 8080, Some(np))
        .etp("Cluster");
    let sl = slice(name, &[(1, 1)]);
    apply(&g, &cluster, std::slice::from_ref(&sl));
    serves(&g, client, node(1, np), false, &["n1p1"]);
    apply(&g, &lb_local(name, ip, np, hc), std::slice::from_ref(&sl));
    http_status(&g, Client::External, node(1, hc), "/", 200);
    http_status(&g, Client::External, node(2, hc), "/", 503);
    serves(&g, client, node(1, np), false, &["n1p1"]);
    apply(&g, &cluster, &[sl]);
    for n in [1, 2] {
        eventually(
            &format!("healthCheckNodePort closed on node{n}"),
            SETTLE,
            || {
                g.client(move || http_get(node(n, hc), "/"))
                    .is_err()
                    .then_some(())
            },
        );
    }
    serves(&g, client, node(1, np), false, &["n1p1"]);
}

#[test]
fn row28_external_traffic_policy_switches_health_check_node_port_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row28(Client::Pod(1, 2), "r28p", cip(28), 31528, 32028);
}

#[test]
fn row28_external_traffic_policy_switches_health_check_node_port_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row28(Client::Host(1), "r28h", cip(128), 31628, 32128);
}

/// Row 30: one UDP socket with a fixed source port keeps sending to `to`
/// while the Service's only server pod `old` is replaced by `new`: the
/// datagrams reach `new` soon after the change.
fn row30(c: Client, svc: ServiceDef, old: (u8, u8), new: (u8, u8), to: SocketAddrV4, sport: u16) {
    let g = lab();
    let name = svc.name.clone();
    let sl = |p: (u8, u8)| {
        SliceDef::new(&name, "1")
            .port("udp", "UDP", lab::BACKEND_PORT)
            .pods(&[p])
    };
    apply(&g, &svc, &[sl(old)]);
    let sock = run(&g, c, move || {
        let s = UdpSocket::bind(("0.0.0.0", sport)).unwrap();
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
    // As the upstream client (`nc -u -p PORT` in a loop, restarted on
    // error): a socket error (ECONNABORTED when the socket is terminated,
    // EDESTADDRREQ once it is no longer connected, ECONNREFUSED from an
    // ICMP error) connects the same fixed-port socket again.
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
    apply(&g, &svc, &[sl(new)]);
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
fn row30_udp_flow_follows_a_replaced_server_pod_via_nodeport() {
    if !xlb_testkit::privileged() {
        return;
    }
    let np = 31530;
    let svc = ServiceDef::node_port("r30n", cip(30)).port("udp", "UDP", 80, 8080, Some(np));
    row30(Client::Pod(1, 3), svc, (2, 1), (2, 2), node(1, np), 40301);
}

#[test]
fn row30_udp_flow_follows_a_replaced_server_pod_via_clusterip() {
    if !xlb_testkit::privileged() {
        return;
    }
    let svc = ServiceDef::cluster_ip("r30c", cip(130)).port("udp", "UDP", 80, 8080, None);
    row30(
        Client::Pod(1, 3),
        svc,
        (2, 1),
        (2, 2),
        SocketAddrV4::new(cip(130), 80),
        40302,
    );
}

#[test]
fn row30_udp_flow_follows_a_replaced_server_pod_via_clusterip_itp_local() {
    if !xlb_testkit::privileged() {
        return;
    }
    let svc = ServiceDef::cluster_ip("r30l", cip(230))
        .port("udp", "UDP", 80, 8080, None)
        .itp("Local");
    row30(
        Client::Pod(1, 3),
        svc,
        (1, 1),
        (1, 2),
        SocketAddrV4::new(cip(230), 80),
        40303,
    );
}

#[test]
fn row30_udp_flow_follows_a_replaced_server_pod_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    let svc = ServiceDef::cluster_ip("r30h", cip(231)).port("udp", "UDP", 80, 8080, None);
    row30(
        Client::Host(1),
        svc,
        (2, 1),
        (2, 2),
        SocketAddrV4::new(cip(231), 80),
        40304,
    );
}
