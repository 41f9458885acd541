//! Stateless flows through the lab's real agents (docs/dp.md, "Stateless
//! flows" and "Who reverse-NATs"): the UDP port of `web` (NodePort
//! 30080, Cluster policy, no affinity) has a stateless path, so node1 keeps
//! no ct entry of the flows it sends to node2's pods, whose replies node2
//! reverse-NATs. A backend removed, then added back within the window:
//! only the removed backend's flows move, and nobody moves again when it
//! returns (the window keeps the flows that followed the old table). The
//! same for TCP connections held open on web's TCP port: no ct entry on
//! node1 for those on node2's pods (their handshake's SYN-ACK was
//! reverse-NATed by node2), and every connection whose backend stays keeps
//! talking to it through both changes.

mod e2e_support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use e2e_support::*;
use xlb_bpf::types::{xlb_ct_key, xlb_svc_key};
use xlb_bpf::Proto;
use xlb_lab::probe;
use xlb_lab::probe::Conn;

const T: Duration = Duration::from_secs(2);
const PORTS: std::ops::Range<u16> = 51000..51060;

/// One datagram from each client port to web's UDP NodePort on node1: the
/// backend that answered and the client's address as it saw it.
fn backends(g: &LabGuard) -> BTreeMap<u16, (String, SocketAddr)> {
    let to = node(1, 30080);
    g.client(move || {
        PORTS
            .map(|p| {
                let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
                let (r, src) =
                    probe::udp_bound(from, to, T).unwrap_or_else(|e| panic!("port {p}: {e}"));
                assert_eq!(src, SocketAddr::from(to), "port {p}: the reply's source");
                (p, (r.name, r.peer))
            })
            .collect()
    })
}

fn names(m: &BTreeMap<u16, (String, SocketAddr)>) -> BTreeMap<u16, String> {
    m.iter().map(|(p, (n, _))| (*p, n.clone())).collect()
}

#[test]
fn udp_flows_and_tcp_connections_to_remote_backends_leave_no_ct_entry_and_keep_their_backend() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::with_xlb("xsl");
    let maps = xlb_bpf::Maps::from_pin_dir(&g.lab.pin_dir(1)).expect("node1's maps");
    let np = xlb_svc_key::nodeport(30080, Proto::Udp);
    let svc = maps.service(&np).unwrap().expect("web's UDP NodePort");
    assert_ne!(
        maps.svc_stable(svc.svc_id).unwrap().table_size,
        0,
        "a stateless path"
    );

    // TCP: connections held open from the start (window closed).
    let tcp_np = xlb_svc_key::nodeport(30080, Proto::Tcp);
    let tsvc = maps.service(&tcp_np).unwrap().expect("web's TCP NodePort");
    assert_ne!(maps.svc_stable(tsvc.svc_id).unwrap().table_size, 0);
    let to = node(1, 30080);
    let mut conns: Vec<Conn> = g.client(move || {
        (0..40)
            .map(|i| Conn::open(None, to, T).unwrap_or_else(|e| panic!("connection {i}: {e}")))
            .collect()
    });
    let mut remote_tcp = 0;
    for c in &conns {
        let SocketAddr::V4(local) = c.local_addr().unwrap() else {
            panic!("v4")
        };
        // the backend saw the client's address: the same tuple as node1's key
        assert_eq!(c.greeting.peer, SocketAddr::from(local));
        let e = maps.ct_entry(&xlb_ct_key::new(local, to, 6)).unwrap();
        if c.greeting.name.starts_with("n2") {
            remote_tcp += 1;
            assert!(
                e.is_none(),
                "{}: no ct entry on node1: {e:?}",
                c.greeting.name
            );
        } else {
            assert!(
                e.is_some(),
                "{}: a local backend's connection",
                c.greeting.name
            );
        }
    }
    assert!(remote_tcp > 5, "{remote_tcp} of 40 on node2");
    let talk = |conns: &mut Vec<Conn>, what: &str| {
        for c in conns.iter_mut().filter(|c| c.greeting.name != "n1p2") {
            c.exchange(what)
                .unwrap_or_else(|e| panic!("{} {what}: {e}\n{}", c.greeting.name, g.logs()));
        }
    };
    talk(&mut conns, "before");

    let first = backends(&g);
    let fwd = |peer: SocketAddr| {
        let SocketAddr::V4(c) = peer else {
            panic!("{peer}")
        };
        maps.ct_entry(&xlb_ct_key::new(c, node(1, 30080), 17))
            .unwrap()
    };
    let mut remote = 0;
    for (p, (name, peer)) in &first {
        if name.starts_with("n2") {
            remote += 1;
            assert!(
                fwd(*peer).is_none(),
                "port {p} ({name}): no ct entry on node1"
            );
        } else {
            assert!(
                fwd(*peer).is_some(),
                "port {p} ({name}): a local backend's flow"
            );
        }
    }
    assert!(remote > 10, "{first:?}");

    // n1p2 leaves: only its flows move.
    g.set_endpoints("web", &[(1, 1), (2, 1), (2, 2)]);
    let removed = eventually("n1p2 out of use", Duration::from_secs(20), || {
        let m = names(&backends(&g));
        (!m.values().any(|n| n == "n1p2")).then_some(m)
    });
    for (p, (name, _)) in &first {
        if name != "n1p2" {
            assert_eq!(&removed[p], name, "port {p} kept its backend");
        }
    }
    let small = maps.service(&np).unwrap().unwrap().table_size;
    let st = maps.svc_stable(svc.svc_id).unwrap();
    assert!(
        st.window_end > xlb_bpf::maps::monotonic_ns(),
        "a window is open: {st:?}"
    );

    talk(&mut conns, "n1p2 out");

    // n1p2 comes back within the window: nobody moves.
    g.set_endpoints("web", &[(1, 1), (1, 2), (2, 1), (2, 2)]);
    eventually("the table with n1p2", Duration::from_secs(20), || {
        (maps.service(&np).unwrap().unwrap().table_size != small).then_some(())
    });
    assert_eq!(names(&backends(&g)), removed, "\n{}", g.logs());
    talk(&mut conns, "n1p2 back");
}
