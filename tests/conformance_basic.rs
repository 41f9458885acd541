//! Conformance rows 1-7, 10, 11 and 32 (docs/conformance.md): ClusterIP,
//! NodePort and ExternalIP basics, Services coming and going, from pods and
//! from node processes. One lab for the file; every test has Services of its
//! own (10.96.1.x, NodePorts 310xx), so they run at the same time.

mod conformance_support;
mod e2e_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};

use conformance_support::*;
use e2e_support::*;
use xlb_lab::{self as lab, probe};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

/// Second container port of the pods that rows 2 and 3 name.
const ALT: u16 = 9090;

/// The shared lab; every lab made (a new one when the last test let the
/// previous one go) gets the extra listeners.
fn lab() -> Arc<LabGuard> {
    shared(&LAB, || {
        let g = LabGuard::with_xlb("xcb");
        for (n, k) in [(1, 1), (2, 1)] {
            extra_backend(&g, n, k, ALT);
        }
        g
    })
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 1, last)
}

/// Row 1: endpoints 0 -> 1 -> 2 -> 1 -> 0; refused with none.
fn row01(c: Client, name: &str, ip: Ipv4Addr) {
    let g = lab();
    let svc = ServiceDef::cluster_ip(name, ip).port("http", "TCP", 80, 8080, None);
    let to = SocketAddrV4::new(ip, 80);
    apply(&g, &svc, &[slice(name, &[])]);
    refused(&g, c, to, false);
    for pods in [&[(1, 1)][..], &[(1, 1), (2, 1)], &[(2, 1)]] {
        apply(&g, &svc, &[slice(name, pods)]);
        serves(
            &g,
            c,
            to,
            false,
            &names(pods).iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    apply(&g, &svc, &[slice(name, &[])]);
    refused(&g, c, to, false);
}

#[test]
fn row01_clusterip_reaches_endpoints_0_1_2_1_0_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row01(Client::Pod(1, 2), "r01p", cip(1));
}

#[test]
fn row01_clusterip_reaches_endpoints_0_1_2_1_0_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row01(Client::Host(1), "r01h", cip(101));
}

#[test]
fn row02_multiport_named_target_ports_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let svc = ServiceDef::cluster_ip("r02", cip(2))
        .port("http", "TCP", 80, "http", None)
        .port("alt", "TCP", 81, "alt", None);
    let sl = SliceDef::new("r02", "1")
        .port("http", "TCP", lab::BACKEND_PORT)
        .port("alt", "TCP", ALT)
        .pods(&[(1, 1), (2, 1)]);
    apply(&g, &svc, &[sl]);
    let c = Client::Pod(1, 2);
    serves(
        &g,
        c,
        SocketAddrV4::new(cip(2), 80),
        false,
        &["n1p1", "n2p1"],
    );
    serves(
        &g,
        c,
        SocketAddrV4::new(cip(2), 81),
        false,
        &["n1p1-9090", "n2p1-9090"],
    );
}

#[test]
fn row03_ports_added_and_removed_on_a_live_service_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let c = Client::Pod(2, 2);
    let (p80, p81) = (SocketAddrV4::new(cip(3), 80), SocketAddrV4::new(cip(3), 81));
    let one = ServiceDef::cluster_ip("r03", cip(3)).port("http", "TCP", 80, "http", None);
    let sl = |ports: &[(&str, u16)]| {
        let mut s = SliceDef::new("r03", "1").pods(&[(1, 1), (2, 1)]);
        for (n, p) in ports {
            s = s.port(n, "TCP", *p);
        }
        s
    };
    apply(&g, &one, &[sl(&[("http", lab::BACKEND_PORT)])]);
    serves(&g, c, p80, false, &["n1p1", "n2p1"]);
    fails(&g, c, p81, false);
    // Add port 81.
    let two = one.clone().port("alt", "TCP", 81, "alt", None);
    apply(
        &g,
        &two,
        &[sl(&[("http", lab::BACKEND_PORT), ("alt", ALT)])],
    );
    serves(&g, c, p81, false, &["n1p1-9090", "n2p1-9090"]);
    serves(&g, c, p80, false, &["n1p1", "n2p1"]);
    // Remove port 80: it stops, 81 stays.
    let only81 = ServiceDef::cluster_ip("r03", cip(3)).port("alt", "TCP", 81, "alt", None);
    apply(&g, &only81, &[sl(&[("alt", ALT)])]);
    fails(&g, c, p80, false);
    serves(&g, c, p81, false, &["n1p1-9090", "n2p1-9090"]);
}

#[test]
fn row04_backend_sees_the_client_pod_address_through_clusterip() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r04", cip(4))
            .port("http", "TCP", 80, 8080, None)
            .port("udp", "UDP", 80, 8080, None),
        &[slice("r04", &[(1, 1), (2, 1)])],
    );
    let c = Client::Pod(1, 2);
    for udp in [false, true] {
        let replies = serves(&g, c, SocketAddrV4::new(cip(4), 80), udp, &["n1p1", "n2p1"]);
        for r in replies {
            assert_eq!(r.peer.ip(), c.addr(), "udp {udp}: {r:?}");
        }
    }
}

#[test]
fn row05_pod_hairpins_back_to_itself_through_its_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r05", cip(5)).port("http", "TCP", 80, 8080, None),
        &[slice("r05", &[(2, 2)])],
    );
    // The only endpoint is the client itself.
    serves(
        &g,
        Client::Pod(2, 2),
        SocketAddrV4::new(cip(5), 80),
        false,
        &["n2p2"],
    );
}

fn row06(c: Client, prefix: &str, base: u8) {
    let g = lab();
    let mk = |i: u8| {
        let name = format!("{prefix}{i}");
        let svc = ServiceDef::cluster_ip(&name, cip(base + i)).port("http", "TCP", 80, 8080, None);
        (svc, slice(&name, &[(1, 1), (2, 2)]))
    };
    let to = |i: u8| SocketAddrV4::new(cip(base + i), 80);
    let want = ["n1p1", "n2p2"];
    for i in [0, 1] {
        let (s, sl) = mk(i);
        apply(&g, &s, &[sl]);
        serves(&g, c, to(i), false, &want);
    }
    delete(&g, &format!("{prefix}0"));
    fails(&g, c, to(0), false);
    serves(&g, c, to(1), false, &want);
    let (s, sl) = mk(2);
    apply(&g, &s, &[sl]);
    serves(&g, c, to(2), false, &want);
    serves(&g, c, to(1), false, &want);
    fails(&g, c, to(0), false);
}

#[test]
fn row06_services_go_down_and_up_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row06(Client::Pod(1, 2), "r06p", 60);
}

#[test]
fn row06_services_go_down_and_up_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row06(Client::Host(2), "r06h", 160);
}

fn row07(c: Client, name: &str, first: u8, second: u8) {
    let g = lab();
    let pods = [(1, 2), (2, 1)];
    let want = ["n1p2", "n2p1"];
    let svc = |ip| ServiceDef::cluster_ip(name, ip).port("http", "TCP", 80, 8080, None);
    apply(&g, &svc(cip(first)), &[slice(name, &pods)]);
    serves(&g, c, SocketAddrV4::new(cip(first), 80), false, &want);
    delete(&g, name);
    fails(&g, c, SocketAddrV4::new(cip(first), 80), false);
    apply(&g, &svc(cip(second)), &[slice(name, &pods)]);
    serves(&g, c, SocketAddrV4::new(cip(second), 80), false, &want);
    fails(&g, c, SocketAddrV4::new(cip(first), 80), false);
}

#[test]
fn row07_service_recreated_with_new_clusterip_works_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row07(Client::Pod(2, 2), "r07p", 7, 70);
}

#[test]
fn row07_service_recreated_with_new_clusterip_works_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row07(Client::Host(1), "r07h", 107, 170);
}

/// Row 10: the ClusterIP and both nodes' NodePorts, TCP and UDP (one
/// NodePort each), with a backend on each node: every (frontend, backend
/// node) pair is reached, and each reply comes from the address dialled
/// (a connected UDP socket takes no other; a TCP handshake needs it).
fn row10(c: Client, name: &str, ip: Ipv4Addr, node_port: u16) {
    let g = lab();
    apply(
        &g,
        &ServiceDef::node_port(name, ip)
            .port("http", "TCP", 80, 8080, Some(node_port))
            .port("udp", "UDP", 80, 8080, Some(node_port + 1)),
        &[slice(name, &[(1, 1), (2, 1)])],
    );
    let want = ["n1p1", "n2p1"];
    for udp in [false, true] {
        serves(&g, c, SocketAddrV4::new(ip, 80), udp, &want);
        for n in [1, 2] {
            serves(&g, c, node(n, node_port + u16::from(udp)), udp, &want);
        }
    }
}

#[test]
fn row10_clusterip_and_every_node_nodeport_reach_backends_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row10(Client::Pod(1, 2), "r10p", cip(10), 31010);
}

#[test]
fn row10_clusterip_and_every_node_nodeport_reach_backends_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row10(Client::Host(2), "r10h", cip(110), 31110);
}

#[test]
fn row11_external_ip_on_no_node_is_balanced_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let eip = Ipv4Addr::new(10, 96, 201, 11);
    apply(
        &g,
        &ServiceDef::cluster_ip("r11", cip(11))
            .port("http", "TCP", 80, 8080, None)
            .external_ip(eip),
        &[slice("r11", &[(1, 1), (2, 1), (2, 2)])],
    );
    let want = ["n1p1", "n2p1", "n2p2"];
    serves(
        &g,
        Client::Pod(1, 2),
        SocketAddrV4::new(eip, 80),
        false,
        &want,
    );
    serves(
        &g,
        Client::External,
        SocketAddrV4::new(eip, 80),
        false,
        &want,
    );
}

/// Row 32: a backend sends a segment far outside the connection's window.
/// The client must see it (if at all) from the Service address, never from
/// the backend's own address, and the connection keeps working.
#[test]
fn row32_out_of_window_segment_from_backend_never_reaches_client_untranslated() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    apply(
        &g,
        &ServiceDef::cluster_ip("r32", cip(32)).port("http", "TCP", 80, 8080, None),
        &[slice("r32", &[(2, 1)])],
    );
    let to = SocketAddrV4::new(cip(32), 80);
    let c = Client::Pod(1, 2);
    serves(&g, c, to, false, &["n2p1"]);
    // A raw listener in the client pod sees every TCP segment it receives.
    let backend = SocketAddrV4::new(lab::pod_addr(2, 1), lab::BACKEND_PORT);
    let (conn, local, sniffer) = g.pod(1, 2, move || {
        let sniff = raw_tcp_socket().unwrap();
        let conn = probe::Conn::open(None, to, T).unwrap();
        let local = match conn.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            a => panic!("{a}"),
        };
        (conn, local, sniff)
    });
    // From the backend's pod: segments of that connection with sequence numbers
    // far outside the window (as a retransmission after a reset would carry).
    g.pod(2, 1, move || {
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        for i in 0..5u32 {
            let mut f = xlb_testkit::frame::Frame::tcp(backend, local);
            f.tcp_flags = 0x18; // PSH ACK
            f.seq = 0x8000_0000u32.wrapping_add(i * 1000);
            f.ack = 1;
            f.payload = b"out-of-window".to_vec();
            let pkt = f.build()[14..].to_vec();
            raw.send_to(&pkt, &socket2::SockAddr::from(local)).unwrap();
        }
    });
    let seen = g.pod(1, 2, move || {
        sniff_from(&sniffer, local, std::time::Duration::from_secs(2))
    });
    assert!(
        !seen.contains(&backend),
        "segments from the backend's own address {backend} reached the client: {seen:?}"
    );
    let mut conn = conn;
    let r = g.pod(1, 2, move || conn.exchange("still there").map(|r| r.name));
    assert_eq!(r.unwrap(), "n2p1");
}

fn raw_tcp_socket() -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    Ok(s)
}

/// Sources of the TCP segments to `local` the raw socket receives within `window`.
fn sniff_from(
    s: &socket2::Socket,
    local: SocketAddrV4,
    window: std::time::Duration,
) -> Vec<SocketAddrV4> {
    use std::io::Read;
    let mut s = s.try_clone().unwrap();
    let end = std::time::Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < end {
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n < 40 {
            continue;
        }
        let hl = usize::from(buf[0] & 0xf) * 4;
        let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
        let sport = u16::from_be_bytes([buf[hl], buf[hl + 1]]);
        let dport = u16::from_be_bytes([buf[hl + 2], buf[hl + 3]]);
        if dst == *local.ip() && dport == local.port() {
            out.push(SocketAddrV4::new(src, sport));
        }
    }
    out
}
