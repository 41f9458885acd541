//! Socket termination of IPv6 UDP sockets (`sock_term.bpf.c`: sock_rnat6,
//! sock_term6), as tests/sock_term.rs does for IPv4: connect6 balanced
//! connected UDP sockets to backends listening inside a namespace made here
//! (addresses on `lo`); the iterator, given the pairs a sync took away,
//! destroys exactly those. An IPv6 socket that dialled a v4-mapped
//! frontend is matched by the IPv4 pair.

mod sock_support;
#[path = "../loader/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags};
use sock_support::{cookie, so_error, Server};
use support::{Netns, PinDir};
use xlb_bpf::consts::*;
use xlb_bpf::types::{
    xlb_addr6, xlb_backend, xlb_backend6, xlb_config6, xlb_svc6_key, xlb_svc_key, xlb_svc_val,
};
use xlb_bpf::wire::be16;
use xlb_bpf::Proto;
use xlb_loader::cgroup::{self, SockLb};
use xlb_loader::sock_term::{be128, SockTerm, TermPair, TermPair6, Terminated, Terminated6};
use xlb_loader::{DataPlane, LoadOptions};

const NODE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x250, 0, 0, 0, 0, 2, 1);
const B2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x250, 0, 0, 0, 0, 2, 2);
const SVC_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0x78, 1);
const SVC_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0x78, 2);
const NODEPORT: u16 = 30053;

fn sa6(ip: Ipv6Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(ip, port, 0, 0)
}

fn put<K: plain::Plain, V: plain::Plain>(m: &libbpf_rs::Map, k: &K, v: &V) {
    // SAFETY: Plain structs.
    let (kb, vb) = unsafe { (plain::as_bytes(k), plain::as_bytes(v)) };
    m.update(kb, vb, MapFlags::ANY).unwrap();
}

fn key6(addr: Option<Ipv6Addr>, port: u16) -> xlb_svc6_key {
    xlb_svc6_key {
        addr: addr.map(be128).unwrap_or([0; 4]),
        port: be16(port),
        proto: Proto::Udp.number(),
        kind: if addr.is_some() {
            XLB_KIND_ADDR
        } else {
            XLB_KIND_NODEPORT
        } as u8,
    }
}

struct Attached {
    dp: DataPlane,
    sock: SockLb,
    term: SockTerm,
    pin: PinDir,
}

impl Attached {
    fn new() -> Self {
        let pin = PinDir::new();
        let dp = DataPlane::load(&LoadOptions {
            pin_dir: Some(pin.path.clone()),
            maglev_slots: Some(4096),
            ct_entries: Some(4096),
            backends: Some(1024),
            ..Default::default()
        })
        .expect("loading the data plane");
        let sock = SockLb::load(&dp).expect("loading the socket hooks");
        let term = SockTerm::load(&dp).expect("loading the socket iterator");
        let cg = cgroup::cgroup2_root().expect("cgroup2 mount");
        cgroup::attach(&pin.path, &sock, &cg, XLB_SOCK_F_LOOPBACK).expect("attach");
        put(
            &sock.skel.maps.config6,
            &0u32,
            &xlb_config6 {
                node_addr: be128(NODE),
                ..Default::default()
            },
        );
        put(
            &sock.skel.maps.local_addrs6,
            &xlb_addr6 { addr: be128(NODE) },
            &1u32,
        );
        Attached {
            dp,
            sock,
            term,
            pin,
        }
    }

    fn backend6(&self, id: u32, ip: Ipv6Addr) {
        put(
            &self.sock.skel.maps.backends6,
            &id,
            &xlb_backend6 {
                addr: be128(ip),
                port: be16(5353),
                flags: XLB_BE_F_ACTIVE as u8,
                generation: 1,
                ..Default::default()
            },
        );
    }

    fn val(&self, svc_id: u32, backend: u32) -> xlb_svc_val {
        let off = svc_id * 7;
        self.dp.maps.write_maglev(off, &[backend; 7]).unwrap();
        xlb_svc_val {
            svc_id,
            table_off: off,
            table_size: 7,
            n_local: 7,
            ..Default::default()
        }
    }

    /// A UDP IPv6 Service whose Maglev table is all `backend`.
    fn service6(&self, key: xlb_svc6_key, svc_id: u32, backend: u32) {
        put(
            &self.sock.skel.maps.services6,
            &key,
            &self.val(svc_id, backend),
        );
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = cgroup::detach(&self.pin.path);
    }
}

/// An IPv6 UDP socket connected to `to`.
fn connected(to: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("[::]:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.connect(to)
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s
}

fn who(s: &UdpSocket) -> std::io::Result<String> {
    s.send(b"probe")?;
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn an_ipv6_backend_that_left_its_service_loses_its_udp_sockets_and_nothing_else() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    for a in ["fd00:250::2:1/128", "fd00:250::2:2/128", "2001:db8::1/128"] {
        ns.ip(&["addr", "add", a, "dev", "lo", "nodad"]);
    }
    ns.ip(&["addr", "add", "10.250.2.1/32", "dev", "lo"]);
    ns.run(|| {
        let a = Attached::new();
        let _servers = [
            Server::new(sa6(B1, 5353).into(), "b1"),
            Server::new(sa6(B2, 5353).into(), "b2"),
            Server::new("10.250.2.1:5353".parse().unwrap(), "b1v4"),
        ];
        a.backend6(1, B1);
        a.backend6(2, B2);
        a.service6(key6(Some(SVC_A), 53), 1, 1);
        a.service6(key6(Some(SVC_B), 53), 2, 1);
        a.service6(key6(None, NODEPORT), 3, 1);
        // An IPv4 Service dialled by an IPv6 socket as ::ffff:10.96.78.1.
        let b4 = SocketAddrV4::new(Ipv4Addr::new(10, 250, 2, 1), 5353);
        let vip4 = SocketAddrV4::new(Ipv4Addr::new(10, 96, 78, 1), 53);
        a.dp.maps
            .put_backend(3, &xlb_backend::new(b4, None, 1))
            .unwrap();
        let v = a.val(4, 3);
        a.dp.maps
            .put_service(&xlb_svc_key::addr(vip4, Proto::Udp), &v)
            .unwrap();
        let mapped = sa6(vip4.ip().to_ipv6_mapped(), 53);

        let socks = [
            connected(sa6(SVC_A, 53).into()),                     // 0: A -> B1
            connected(sa6(SVC_B, 53).into()),                     // 1: B -> B1
            connected(sa6(B1, 5353).into()),                      // 2: straight to B1
            connected(sa6(NODE, NODEPORT).into()),                // 3: NodePort -> B1
            connected(sa6(Ipv6Addr::LOCALHOST, NODEPORT).into()), // 4: [::1]:NodePort -> B1
            connected(mapped.into()),                             // 5: mapped IPv4 Service
        ];
        for s in &socks[..5] {
            assert_eq!(who(s).unwrap(), "b1");
        }
        assert_eq!(who(&socks[5]).unwrap(), "b1v4");
        let mut dialled = a.term.dialled6().unwrap();
        dialled.sort();
        let mut want = vec![
            (sa6(SVC_A, 53), sa6(B1, 5353)),
            (sa6(SVC_B, 53), sa6(B1, 5353)),
            (sa6(Ipv6Addr::LOCALHOST, NODEPORT), sa6(B1, 5353)),
            (sa6(NODE, NODEPORT), sa6(B1, 5353)),
        ];
        want.sort();
        assert_eq!(dialled, want);
        assert_eq!(a.term.dialled().unwrap(), vec![(vip4, b4)]);

        // B1 leaves Service A and the NodePort (still backs B); the IPv4
        // backend leaves its Service.
        a.service6(key6(Some(SVC_A), 53), 1, 2);
        a.service6(key6(None, NODEPORT), 3, 2);
        let pairs6 = [
            TermPair6 {
                frontend: Some(SVC_A),
                port: 53,
                backend: sa6(B1, 5353),
            },
            TermPair6 {
                frontend: None,
                port: NODEPORT,
                backend: sa6(B1, 5353),
            },
        ];
        let pairs4 = [TermPair {
            frontend: Some(*vip4.ip()),
            port: 53,
            backend: b4,
        }];
        let rep = a.term.run_both(&pairs4, &pairs6).unwrap();
        assert_eq!(a.term.pending(), 0, "sock_term6 is emptied after a run");
        assert!(rep.failed.is_empty() && rep.failed6.is_empty(), "{rep:?}");
        let mut got: Vec<_> = rep.terminated6.clone();
        got.sort_by_key(|t| t.cookie);
        let mut want6 = vec![
            Terminated6 {
                cookie: cookie(&socks[0]),
                frontend: sa6(SVC_A, 53),
                backend: sa6(B1, 5353),
            },
            Terminated6 {
                cookie: cookie(&socks[3]),
                frontend: sa6(NODE, NODEPORT),
                backend: sa6(B1, 5353),
            },
            Terminated6 {
                cookie: cookie(&socks[4]),
                frontend: sa6(Ipv6Addr::LOCALHOST, NODEPORT),
                backend: sa6(B1, 5353),
            },
        ];
        want6.sort_by_key(|t| t.cookie);
        assert_eq!(got, want6);
        assert_eq!(
            rep.terminated,
            vec![Terminated {
                cookie: cookie(&socks[5]),
                frontend: vip4,
                backend: b4,
            }],
            "the mapped socket, as an IPv4 one"
        );

        for i in [0, 3, 4, 5] {
            assert_eq!(so_error(&socks[i]), libc::ECONNABORTED, "socket {i}");
        }
        for (i, to) in [
            (0, sa6(SVC_A, 53)),
            (3, sa6(NODE, NODEPORT)),
            (4, sa6(Ipv6Addr::LOCALHOST, NODEPORT)),
        ] {
            socks[i].connect(to).unwrap();
            assert_eq!(who(&socks[i]).unwrap(), "b2", "socket {i}");
        }
        for i in [1, 2] {
            assert_eq!(so_error(&socks[i]), 0, "socket {i}");
            assert_eq!(who(&socks[i]).unwrap(), "b1", "socket {i}");
        }
        assert_eq!(
            socks[1].peer_addr().unwrap(),
            SocketAddr::V6(sa6(SVC_B, 53))
        );
        assert_eq!(
            a.term.run_both(&pairs4, &pairs6).unwrap(),
            Default::default()
        );
    });
}
