//! Service semantics end to end: the lab with xlb on both nodes and the
//! agents reading deploy/examples; real TCP/UDP from the client and from pods.
//! One lab is shared by the tests of this file (none of them changes it).

mod e2e_support;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use e2e_support::*;
use xlb_lab::{self as lab, probe, CLIENT_ADDR, CLIENT_ALT_ADDR};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::with_xlb("xes"))
}

const ALL: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];

#[test]
fn nodeport_to_a_local_and_a_remote_backend() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    // pin-n1 (30081) has one backend on node1, pin-n2 (30082) one on node2.
    // Through either node: local DNAT, or VXLAN to the other node and tunnel
    // return; the TCP handshake itself proves the reply came from the dialled
    // address (Conn::open also checks the peer), and the backend sees the client.
    for (via, port, want) in [
        (1, 30081, "n1p1"),
        (1, 30082, "n2p1"),
        (2, 30082, "n2p1"),
        (2, 30081, "n1p1"),
    ] {
        let to = node(via, port);
        let r = g.client(move || probe::tcp(None, to, T));
        let r = r.unwrap_or_else(|e| panic!("{to}: {e}\n{}", g.logs()));
        assert_eq!(r.name, want, "{to}");
        assert_eq!(
            r.peer.ip(),
            CLIENT_ADDR,
            "{to}: backend must see the client"
        );
    }
}

#[test]
fn nodeport_udp_replies_come_from_the_dialled_address() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for via in [1, 2] {
        let to = node(via, 30080);
        let seen: BTreeSet<String> = g.client(move || {
            (0..20)
                .map(|_| {
                    let (r, src) = probe::udp(None, to, T).unwrap_or_else(|e| panic!("{to}: {e}"));
                    assert_eq!(src, SocketAddr::V4(to));
                    assert_eq!(r.peer.ip(), CLIENT_ADDR);
                    r.name
                })
                .collect()
        });
        assert!(seen.iter().all(|n| names(&ALL).contains(n)), "{seen:?}");
    }
}

#[test]
fn loadbalancer_ingress_ip_and_external_ip() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for to in [sa([10, 96, 100, 17], 80), sa([10, 96, 200, 18], 80)] {
        let m = g.client(move || spread(None, to, 40));
        assert!(m.keys().all(|n| names(&ALL).contains(n)), "{to}: {m:?}");
        // Both nodes' backends take part (Cluster policy).
        assert!(
            m.keys().any(|n| n.starts_with("n1")) && m.keys().any(|n| n.starts_with("n2")),
            "{to}: {m:?}"
        );
    }
}

#[test]
fn clusterip_from_a_pod_to_its_own_node_and_the_other_node() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for (src, vip, want) in [
        ((1, 2), [10, 96, 0, 11], "n1p1"),
        ((1, 2), [10, 96, 0, 12], "n2p1"),
        ((2, 2), [10, 96, 0, 12], "n2p1"),
        ((2, 2), [10, 96, 0, 11], "n1p1"),
    ] {
        let to = sa(vip, 80);
        let r = g.pod(src.0, src.1, move || {
            let mut c = probe::Conn::open(None, to, T)?;
            c.exchange("hello")?;
            Ok::<_, std::io::Error>(c.greeting)
        });
        let r = r.unwrap_or_else(|e| panic!("{src:?} -> {to}: {e}"));
        assert_eq!(r.name, want, "{src:?} -> {to}");
        assert_eq!(
            r.peer.ip(),
            lab::pod_addr(src.0, src.1),
            "no SNAT for pod traffic"
        );
    }
}

#[test]
fn external_traffic_policy_local_and_cluster() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    // local (30083, LB 10.96.100.13): endpoints n1p1, n1p2 on node1 and n2p1 on node2.
    for (to, allowed) in [
        (node(1, 30083), vec!["n1p1", "n1p2"]),
        (node(2, 30083), vec!["n2p1"]),
        (sa([10, 96, 100, 13], 80), vec!["n1p1", "n1p2"]),
    ] {
        let replies = g.client(move || {
            (0..30)
                .map(|_| probe::tcp(None, to, T).unwrap_or_else(|e| panic!("{to}: {e}")))
                .collect::<Vec<_>>()
        });
        for r in &replies {
            assert!(
                allowed.contains(&r.name.as_str()),
                "{to}: {} is not local",
                r.name
            );
            assert_eq!(
                r.peer.ip(),
                CLIENT_ADDR,
                "{to}: Local keeps the client address"
            );
        }
    }
    // Cluster (web, 30080): remote backends answer too and still see the client.
    let to = node(1, 30080);
    let replies = g.client(move || {
        (0..40)
            .map(|_| probe::tcp(None, to, T).unwrap())
            .collect::<Vec<_>>()
    });
    assert!(
        replies.iter().any(|r| r.name.starts_with("n2")),
        "no remote backend used"
    );
    assert!(
        replies.iter().all(|r| r.peer.ip() == CLIENT_ADDR),
        "{replies:?}"
    );
}

#[test]
fn session_affinity_client_ip_sticks_to_one_backend() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for (from, to) in [
        (CLIENT_ADDR, node(1, 30084)),
        (CLIENT_ALT_ADDR, node(1, 30084)),
        (CLIENT_ADDR, node(2, 30084)),
    ] {
        let m = g.client(move || spread(Some(from), to, 30));
        assert_eq!(m.len(), 1, "{from} -> {to}: {m:?}");
    }
    // From a pod, through the ClusterIP.
    let m = g.pod(2, 2, || spread(None, sa([10, 96, 0, 14], 80), 30));
    assert_eq!(m.len(), 1, "{m:?}");
}

/// Hairpin: a pod reaches itself through a Service it backs (the tc program
/// sends it back from 169.254.42.1), as it does every other backend.
#[test]
fn a_pod_reaches_itself_through_its_own_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let m = g.pod(2, 2, || spread(None, sa([10, 96, 0, 10], 80), 80));
    assert!(m.contains_key("n2p2"), "{m:?}");
    assert_eq!(m.values().sum::<usize>(), 80, "{m:?}");
    let seen = g.pod(2, 2, || {
        (0..40)
            .map(|_| probe::tcp(None, sa([10, 96, 0, 10], 80), T).unwrap())
            .find(|r| r.name == "n2p2")
    });
    let r = seen.expect("n2p2 among 40 connections");
    assert_eq!(
        r.peer.ip(),
        std::net::Ipv4Addr::new(169, 254, 42, 1),
        "{r:?}"
    );
}

#[test]
fn load_balancer_source_ranges_admit_only_listed_clients() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let to = sa([10, 96, 100, 15], 80);
    let inside = g.client(move || probe::tcp(Some(CLIENT_ADDR), to, T));
    assert!(inside.is_ok(), "{inside:?}");
    // Outside the range: dropped, so the connect gets no answer at all.
    let outside =
        g.client(move || probe::tcp_connect(Some(CLIENT_ALT_ADDR), to, Duration::from_secs(1)));
    let e = outside.expect_err("a client outside loadBalancerSourceRanges was answered");
    assert!(
        matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
        "{e}"
    );
    let again = g.client(move || probe::tcp(Some(CLIENT_ADDR), to, T));
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn service_without_endpoints_refuses_at_once() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for to in [node(1, 30086), node(2, 30086)] {
        let r = g.client(move || probe::tcp_connect(None, to, Duration::from_secs(5)));
        let e = r.expect_err("a Service without endpoints accepted a connection");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{to}: {e}");
    }
}

/// Pods get the same answer through the ClusterIP (the tc path).
#[test]
fn service_without_endpoints_refuses_pods_too() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let r = g.pod(1, 1, || {
        probe::tcp_connect(None, sa([10, 96, 0, 16], 80), Duration::from_secs(5))
    });
    assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionRefused);
}

/// A connected UDP socket learns of the ICMP port unreachable (ECONNREFUSED):
/// from the client through either node's NodePort (XDP) and from a pod
/// through the ClusterIP (tc).
#[test]
fn udp_to_a_service_without_endpoints_is_refused() {
    if !xlb_testkit::privileged() {
        return;
    }
    fn refused(to: SocketAddrV4) -> std::io::Result<usize> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.connect(to)?;
        s.send(b"probe")?;
        s.recv(&mut [0u8; 64])
    }
    let g = lab();
    for to in [node(1, 30086), node(2, 30086)] {
        let e = g.client(move || refused(to)).expect_err("answered");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{to}: {e}");
    }
    let e = g
        .pod(1, 1, || refused(sa([10, 96, 0, 16], 53)))
        .expect_err("answered");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "pod: {e}");
}

#[test]
fn a_thousand_connections_balance_over_four_backends() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let m = g.client(|| spread(None, node(1, 30080), 1000));
    assert_eq!(m.keys().cloned().collect::<Vec<_>>(), names(&ALL), "{m:?}");
    for (name, &c) in &m {
        assert!(
            (188..=312).contains(&c),
            "{name}: {c} of 1000 (want 250 +-25%): {m:?}"
        );
    }
    println!("balance over 1000 connections: {m:?}");
}

#[test]
fn lab_check_passes() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let out = std::process::Command::new(XLB)
        // The host-network probes: conformance_host.rs.
        .args(["lab", "check", "--pods-only", "--prefix", g.prefix()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in [
        "nodeport-local",
        "nodeport-remote",
        "clusterip-local",
        "clusterip-remote",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(p) && l.contains(" ok ")),
            "{p}: {text}"
        );
    }
}

/// Messages larger than one segment both ways (the backend's answer leaves the
/// pod as a multi-segment skb with its payload in page frags): local, remote
/// with tunnel return, and from a pod through a remote ClusterIP.
#[test]
fn multi_segment_messages_cross_every_path() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let msg = "x".repeat(lab::backend::MAX_LINE - 100);
    for to in [node(1, 30081), node(1, 30082), node(2, 30081)] {
        let m = msg.clone();
        let r = g.client(move || -> std::io::Result<()> {
            let mut c = probe::Conn::open(None, to, T)?;
            for _ in 0..5 {
                c.exchange(&m)?;
            }
            Ok(())
        });
        r.unwrap_or_else(|e| panic!("{to}: {e}"));
    }
    let m = msg.clone();
    let r = g.pod(1, 2, move || -> std::io::Result<()> {
        let mut c = probe::Conn::open(None, sa([10, 96, 0, 12], 80), T)?;
        for _ in 0..5 {
            c.exchange(&m)?;
        }
        Ok(())
    });
    r.unwrap();
}

/// A client reusing its source port towards the other node's NodePort (as a
/// retry or ECMP would) is answered by that frontend, not by state left from
/// the first flow: local on one node, remote (tunnel return) on the other.
#[test]
fn source_port_reuse_across_nodes_is_answered_by_the_right_frontend() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let wrong = g.client(|| {
        let mut wrong = Vec::new();
        for port in 42000..42030 {
            for via in [1, 2, 1] {
                let to = node(via, 30080);
                let from = SocketAddrV4::new(CLIENT_ADDR, port);
                match probe::udp_bound(from, to, T) {
                    Ok((_, src)) if src == SocketAddr::V4(to) => {}
                    Ok((r, src)) => wrong.push(format!("{from} -> {to}: {} from {src}", r.name)),
                    Err(e) => wrong.push(format!("{from} -> {to}: {e}")),
                }
            }
        }
        wrong
    });
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `xlb lab spread` whose reader goes away (`... | grep -q n1p2`, as the demo
/// does) ends quietly by SIGPIPE, as `xlb maps` does; no panic on stderr.
#[test]
fn lab_spread_ends_quietly_when_its_reader_goes_away() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(XLB)
        .args(["lab", "spread", "--prefix", g.prefix(), "--count", "4"])
        .arg("--to")
        .arg(node(1, 30080).to_string())
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
