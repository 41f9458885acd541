//! Socket termination (`sock_term.bpf.c`) with real sockets: the socket
//! hooks attached for one namespace made here, Services whose backends
//! listen inside it (addresses on `lo`), connected UDP sockets balanced to
//! them, and the UDP socket iterator run for the pairs a sync took away.

mod sock_support;
#[path = "../loader/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags};
use sock_support::{cookie, so_error, Server, SockHooks};
use support::Netns;
use xlb_bpf::consts::*;
use xlb_bpf::types::{xlb_sock_rnat_key, xlb_sock_rnat_val, xlb_svc_key, xlb_svc_val};
use xlb_bpf::wire::{be16, be32};
use xlb_bpf::Proto;
use xlb_loader::sock_term::{SockTerm, TermPair};

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B1: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 1);
const B2: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 2);
const SVC_A: Ipv4Addr = Ipv4Addr::new(10, 96, 78, 1);
const SVC_B: Ipv4Addr = Ipv4Addr::new(10, 96, 78, 2);
const NODEPORT: u16 = 30053;

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// The socket hooks attached (sock_support) for the calling thread's
/// namespace, and the socket iterator.
struct Attached {
    hooks: SockHooks,
    term: SockTerm,
}

impl std::ops::Deref for Attached {
    type Target = SockHooks;
    fn deref(&self) -> &SockHooks {
        &self.hooks
    }
}

impl Attached {
    fn new() -> Self {
        let hooks = SockHooks::attach(XLB_SOCK_F_LOOPBACK, NODE);
        let term = SockTerm::load(&hooks.dp).expect("loading the socket iterator");
        hooks.dp.maps.put_local_addr(NODE).unwrap();
        Attached { hooks, term }
    }

    /// A UDP Service `key` whose Maglev table is all `backend`.
    fn service(&self, key: xlb_svc_key, svc_id: u32, backend: u32) {
        let off = svc_id * 7;
        self.dp.maps.write_maglev(off, &[backend; 7]).unwrap();
        self.dp
            .maps
            .put_service(
                &key,
                &xlb_svc_val {
                    svc_id,
                    table_off: off,
                    table_size: 7,
                    n_local: 7,
                    ..Default::default()
                },
            )
            .unwrap();
    }
}

fn connected(to: SocketAddrV4) -> UdpSocket {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.connect(to)
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s
}

/// Who answers a datagram on the connected socket `s`.
fn who(s: &UdpSocket) -> std::io::Result<String> {
    s.send(b"probe")?;
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn a_backend_that_left_its_service_loses_its_udp_sockets_and_nothing_else() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    for a in ["10.250.2.1/32", "10.250.2.2/32", "198.18.0.1/32"] {
        ns.ip(&["addr", "add", a, "dev", "lo"]);
    }
    // Another namespace with the same addresses: a socket there dialled
    // straight to B1 and given a sock_rnat entry by hand looks exactly like
    // one connect4 balanced, but for its namespace.
    let other = Netns::new();
    other.ip(&["addr", "add", "10.250.2.1/32", "dev", "lo"]);
    let outsider = other.run(|| {
        let srv = Server::new(sa(B1, 5353).into(), "outside");
        let s = connected(sa(B1, 5353));
        assert_eq!(who(&s).unwrap(), "outside");
        (s, srv)
    });

    ns.run(|| {
        let a = Attached::new();
        let _servers = [
            Server::new(sa(B1, 5353).into(), "b1"),
            Server::new(sa(B2, 5353).into(), "b2"),
        ];
        a.backend(1, sa(B1, 5353));
        a.backend(2, sa(B2, 5353));
        a.service(xlb_svc_key::addr(sa(SVC_A, 53), Proto::Udp), 1, 1);
        a.service(xlb_svc_key::addr(sa(SVC_B, 53), Proto::Udp), 2, 1);
        a.service(xlb_svc_key::nodeport(NODEPORT, Proto::Udp), 3, 1);
        let socks = [
            connected(sa(SVC_A, 53)),                     // 0: A -> B1
            connected(sa(SVC_B, 53)),                     // 1: B -> B1
            connected(sa(B1, 5353)),                      // 2: straight to B1
            connected(sa(NODE, NODEPORT)),                // 3: NodePort -> B1
            connected(sa(Ipv4Addr::LOCALHOST, NODEPORT)), // 4: NodePort on loopback -> B1
        ];
        for s in &socks {
            assert_eq!(who(s).unwrap(), "b1");
        }
        // What sock_rnat remembers of them (an agent's first sync checks it).
        let mut dialled = a.term.dialled().unwrap();
        dialled.sort();
        assert_eq!(
            dialled,
            vec![
                (sa(SVC_A, 53), sa(B1, 5353)),
                (sa(SVC_B, 53), sa(B1, 5353)),
                (sa(Ipv4Addr::LOCALHOST, NODEPORT), sa(B1, 5353)),
                (sa(NODE, NODEPORT), sa(B1, 5353)),
            ]
        );

        // The outsider's sock_rnat entry: {its cookie, B1} -> Service A.
        let k = xlb_sock_rnat_key {
            cookie: cookie(&outsider.0),
            addr: be32(B1),
            port: be16(5353),
            proto: libc::IPPROTO_UDP as u8,
            pad: 0,
        };
        let v = xlb_sock_rnat_val {
            addr: be32(SVC_A),
            port: be16(53),
            pad: 0,
        };
        // SAFETY: Plain structs.
        let (kb, vb) = unsafe { (plain::as_bytes(&k), plain::as_bytes(&v)) };
        a.sock
            .skel
            .maps
            .sock_rnat
            .update(kb, vb, MapFlags::ANY)
            .unwrap();

        // B1 leaves Service A (its table is B2 now) and the NodePort; it
        // still backs Service B.
        a.service(xlb_svc_key::addr(sa(SVC_A, 53), Proto::Udp), 1, 2);
        a.service(xlb_svc_key::nodeport(NODEPORT, Proto::Udp), 3, 2);
        let pairs = [
            TermPair {
                frontend: Some(SVC_A),
                port: 53,
                backend: sa(B1, 5353),
            },
            TermPair {
                frontend: None,
                port: NODEPORT,
                backend: sa(B1, 5353),
            },
        ];

        // Run from the other namespace first: its sockets are walked, and
        // none is of the namespace the hooks act in.
        xlb_testkit::enter(&other.path());
        let report = a.term.run(&pairs);
        xlb_testkit::enter(&ns.path());
        let report = report.unwrap();
        assert!(report.terminated.is_empty(), "{report:?}");
        assert_eq!(so_error(&outsider.0), 0);

        let report = a.term.run(&pairs).unwrap();
        assert_eq!(a.term.pending(), 0, "sock_term is emptied after a run");
        assert!(report.failed.is_empty(), "{report:?}");
        let mut got: Vec<_> = report
            .terminated
            .iter()
            .map(|t| (t.cookie, t.frontend, t.backend))
            .collect();
        got.sort();
        let mut want = vec![
            (cookie(&socks[0]), sa(SVC_A, 53), sa(B1, 5353)),
            (cookie(&socks[3]), sa(NODE, NODEPORT), sa(B1, 5353)),
            (
                cookie(&socks[4]),
                sa(Ipv4Addr::LOCALHOST, NODEPORT),
                sa(B1, 5353),
            ),
        ];
        want.sort();
        assert_eq!(got, want);

        // The terminated ones: ECONNABORTED, no longer connected; connected
        // again through the hook, they reach the live backend.
        for (i, to) in [
            (0, sa(SVC_A, 53)),
            (3, sa(NODE, NODEPORT)),
            (4, sa(Ipv4Addr::LOCALHOST, NODEPORT)),
        ] {
            let s = &socks[i];
            assert_eq!(so_error(s), libc::ECONNABORTED, "socket {i}");
            let e = s.send(b"x").unwrap_err();
            assert_eq!(
                e.raw_os_error(),
                Some(libc::EDESTADDRREQ),
                "socket {i}: {e}"
            );
            s.connect(to).unwrap();
            assert_eq!(who(s).unwrap(), "b2", "socket {i}");
        }
        // The others are untouched: B1 still serves Service B; a socket
        // dialled straight to B1 was never balanced.
        for i in [1, 2] {
            assert_eq!(so_error(&socks[i]), 0, "socket {i}");
            assert_eq!(who(&socks[i]).unwrap(), "b1", "socket {i}");
        }
        assert_eq!(socks[1].peer_addr().unwrap(), SocketAddr::V4(sa(SVC_B, 53)));
        // A second run finds nothing left to do.
        assert_eq!(a.term.run(&pairs).unwrap(), Default::default());
    });
    // The other namespace's socket.
    assert_eq!(so_error(&outsider.0), 0);
    assert_eq!(
        outsider.0.peer_addr().unwrap(),
        SocketAddr::V4(sa(B1, 5353))
    );
    assert_eq!(who(&outsider.0).unwrap(), "outside");
    drop(outsider);
}

#[test]
fn a_deleted_service_loses_its_udp_sockets_after_they_saw_the_backend() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["addr", "add", "10.250.2.1/32", "dev", "lo"]);
    ns.run(|| {
        let a = Attached::new();
        let _server = Server::new(sa(B1, 5353).into(), "b1");
        a.backend(1, sa(B1, 5353));
        let key = xlb_svc_key::addr(sa(SVC_A, 53), Proto::Udp);
        a.service(key, 1, 1);
        let s = connected(sa(SVC_A, 53));
        assert_eq!(who(&s).unwrap(), "b1");
        // The Service is deleted; a recvfrom on the socket (recvmsg4 finds
        // no Service) shows the backend as the source...
        a.dp.maps.delete_service(&key).unwrap();
        s.send(b"probe").unwrap();
        let mut buf = [0u8; 64];
        let (_, from) = s.recv_from(&mut buf).unwrap();
        assert_eq!(from, SocketAddr::V4(sa(B1, 5353)));
        // ...and the socket is still known for what it dialled.
        let report = a
            .term
            .run(&[TermPair {
                frontend: Some(SVC_A),
                port: 53,
                backend: sa(B1, 5353),
            }])
            .unwrap();
        assert_eq!(report.terminated.len(), 1, "{report:?}");
        assert_eq!(report.terminated[0].cookie, cookie(&s));
        assert_eq!(so_error(&s), libc::ECONNABORTED);
    });
}
