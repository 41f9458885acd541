//! The socket hooks (`sock.bpf.c`) with real sockets: attached to the cgroup
//! v2 root for one namespace made here, with Services whose backends listen
//! inside it (addresses on `lo`). The kernel has no BPF_PROG_RUN for cgroup
//! sock_addr programs (`test_run_is_refused` pins that down), so every
//! behaviour is checked through connect/sendto/recvfrom/getpeername.

mod sock_support;
#[path = "../loader/tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use sock_support::SockHooks;
use support::Netns;
use xlb_bpf::consts::*;
use xlb_bpf::types::{xlb_svc_key, xlb_svc_val};
use xlb_bpf::{Proto, Reason};
use xlb_loader::cgroup::{self, SockHook, SockLb};
use xlb_loader::DataPlane;

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 1);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 77, 1);
const EMPTY_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 77, 2);
const NODEPORT: u16 = 30080;

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// The socket hooks attached (sock_support) for the namespace `ns`, with
/// this file's Service writer and counters.
struct Attached(SockHooks);

impl std::ops::Deref for Attached {
    type Target = SockHooks;
    fn deref(&self) -> &SockHooks {
        &self.0
    }
}

impl Attached {
    /// Call on a thread inside the namespace the hooks are for.
    fn new(flags: u32) -> Self {
        let hooks = SockHooks::attach(flags, NODE);
        assert_eq!(hooks.attached.len(), SockHook::ALL.len());
        Attached(hooks)
    }

    fn service(&self, key: xlb_svc_key, svc_id: u32, off: u32, table: &[u32], flags: u32) {
        self.dp.maps.write_maglev(off, table).unwrap();
        self.dp
            .maps
            .put_service(
                &key,
                &xlb_svc_val {
                    svc_id,
                    flags,
                    table_off: off,
                    table_size: table.len() as u32,
                    n_local: table.len() as u32,
                    ..Default::default()
                },
            )
            .unwrap();
    }

    fn reason(&self, r: u32) -> u64 {
        self.dp.maps.reason(Reason(r)).unwrap().packets
    }

    /// Program ids of this instance's hooks.
    fn prog_ids(&self) -> Vec<(SockHook, u32)> {
        SockHook::ALL
            .iter()
            .map(|h| {
                (
                    *h,
                    xlb_loader::sys::prog_id(self.sock.prog(*h).as_fd()).unwrap(),
                )
            })
            .collect()
    }
}

/// Runs `f` on a thread inside `ns` (failures propagate as panics).
fn inside<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    ns.run(f)
}

fn ns_with_lo(addrs: &[&str]) -> Netns {
    let ns = Netns::new();
    for a in addrs {
        ns.ip(&["addr", "add", a, "dev", "lo"]);
    }
    ns
}

/// Accepts one connection on `l` and echoes what it reads, prefixed by the
/// peer the server saw.
fn serve_once(l: TcpListener) -> std::thread::JoinHandle<SocketAddr> {
    std::thread::spawn(move || {
        let (mut s, peer) = l.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        s.write_all(&buf[..n]).unwrap();
        peer
    })
}

fn tcp_roundtrip(to: SocketAddrV4) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let mut c = TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf)?;
    assert_eq!(&buf, b"ping");
    Ok((c.peer_addr()?, c.local_addr()?))
}

fn udp_echo(sock: UdpSocket) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..2 {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            sock.send_to(&buf[..n], from).unwrap();
        }
    })
}

#[test]
fn test_run_is_refused() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = DataPlane::load_private().unwrap();
    let sock = SockLb::load(&dp).unwrap();
    let mut ctx = [0u8; 128];
    let r = sock
        .skel
        .progs
        .xlb_connect4
        .test_run(libbpf_rs::ProgramInput {
            context_in: Some(&mut ctx[..]),
            ..Default::default()
        });
    // If a kernel ever runs them, the socket tests below should become
    // BPF_PROG_RUN tables: this test then fails and says so.
    assert!(
        r.is_err(),
        "this kernel runs cgroup sock_addr programs under BPF_PROG_RUN: add packet-level tests"
    );
}

#[test]
fn connect_and_udp_reach_the_backend_and_show_the_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = ns_with_lo(&["10.250.1.1/32", "198.18.0.1/32"]);
    inside(&ns, || {
        let a = Attached::new(XLB_SOCK_F_LOOPBACK);
        a.backend(1, sa(BACKEND, 8080));
        a.backend(2, sa(BACKEND, 5353));
        a.service(
            xlb_svc_key::addr(sa(CLUSTER_IP, 80), Proto::Tcp),
            1,
            0,
            &[1; 7],
            0,
        );
        a.service(
            xlb_svc_key::addr(sa(CLUSTER_IP, 53), Proto::Udp),
            2,
            7,
            &[2; 7],
            0,
        );
        a.service(
            xlb_svc_key::nodeport(NODEPORT, Proto::Tcp),
            3,
            14,
            &[1; 7],
            0,
        );
        a.dp.maps.put_local_addr(NODE).unwrap();

        // TCP to the ClusterIP: the backend answers, the socket shows the
        // ClusterIP as its peer.
        let l = TcpListener::bind(sa(BACKEND, 8080)).unwrap();
        for to in [
            sa(CLUSTER_IP, 80),
            sa(NODE, NODEPORT),
            sa(Ipv4Addr::LOCALHOST, NODEPORT),
        ] {
            let srv = serve_once(l.try_clone().unwrap());
            let before = a.reason(XLB_R_SOCK_XLATE);
            let (peer, local) = tcp_roundtrip(to).unwrap_or_else(|e| panic!("{to}: {e}"));
            assert_eq!(
                peer,
                SocketAddr::V4(to),
                "getpeername shows what was dialled"
            );
            let seen = srv.join().unwrap();
            assert_eq!(seen, local, "the backend served this very connection");
            assert_eq!(a.reason(XLB_R_SOCK_XLATE), before + 1);
        }

        // Unconnected UDP: sendto the ClusterIP, the reply shows it as source.
        let be = UdpSocket::bind(sa(BACKEND, 5353)).unwrap();
        let echo = udp_echo(be);
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"q1", sa(CLUSTER_IP, 53)).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"q1");
        assert_eq!(
            from,
            SocketAddr::V4(sa(CLUSTER_IP, 53)),
            "recvmsg shows the Service"
        );

        // Connected UDP: getpeername and recv_from show the Service too.
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.connect(sa(CLUSTER_IP, 53)).unwrap();
        assert_eq!(c.peer_addr().unwrap(), SocketAddr::V4(sa(CLUSTER_IP, 53)));
        c.send(b"q2").unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"q2");
        assert_eq!(from, SocketAddr::V4(sa(CLUSTER_IP, 53)));
        echo.join().unwrap();

        // A Service removed: the peer shows as what it is, the backend.
        let c = TcpStream::connect(sa(CLUSTER_IP, 80)).unwrap();
        let srv = l.accept().unwrap();
        a.dp.maps
            .delete_service(&xlb_svc_key::addr(sa(CLUSTER_IP, 80), Proto::Tcp))
            .unwrap();
        assert_eq!(c.peer_addr().unwrap(), SocketAddr::V4(sa(BACKEND, 8080)));
        drop(srv);
    });
}

#[test]
fn a_service_without_endpoints_refuses() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = ns_with_lo(&["10.96.77.2/32"]);
    inside(&ns, || {
        let a = Attached::new(0);
        // A listener on the very address: without the hook the connect
        // would succeed, so ECONNREFUSED can only come from the hook.
        let _l = TcpListener::bind(sa(EMPTY_IP, 80)).unwrap();
        let _u = UdpSocket::bind(sa(EMPTY_IP, 53)).unwrap();
        a.service(
            xlb_svc_key::addr(sa(EMPTY_IP, 80), Proto::Tcp),
            1,
            0,
            &[],
            0,
        );
        a.service(
            xlb_svc_key::addr(sa(EMPTY_IP, 53), Proto::Udp),
            2,
            0,
            &[],
            0,
        );
        let e = TcpStream::connect(sa(EMPTY_IP, 80)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        let e = c.send_to(b"x", sa(EMPTY_IP, 53)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        assert_eq!(a.reason(XLB_R_SOCK_REFUSED), 2);

        // The same address as no Service: untouched.
        a.dp.maps
            .delete_service(&xlb_svc_key::addr(sa(EMPTY_IP, 80), Proto::Tcp))
            .unwrap();
        TcpStream::connect(sa(EMPTY_IP, 80)).expect("no Service: the local listener");
        // Without XLB_SOCK_F_LOOPBACK, 127.0.0.1:NodePort is no frontend.
        a.backend(1, sa(EMPTY_IP, 80));
        a.service(
            xlb_svc_key::nodeport(NODEPORT, Proto::Tcp),
            3,
            0,
            &[1; 7],
            0,
        );
        let e = TcpStream::connect(sa(Ipv4Addr::LOCALHOST, NODEPORT)).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ECONNREFUSED),
            "no listener there: {e}"
        );
        assert_eq!(
            a.reason(XLB_R_SOCK_REFUSED),
            2,
            "refused by the kernel, not the hook"
        );
    });
}

#[test]
fn other_namespaces_are_left_alone_and_detach_leaves_nothing() {
    if !xlb_testkit::privileged() {
        return;
    }
    // A: where xlb is attached; B: another namespace whose lo holds the
    // ClusterIP with a listener of its own.
    let a_ns = ns_with_lo(&["10.250.1.1/32"]);
    let b_ns = ns_with_lo(&["10.96.77.1/32"]);
    let b_path = b_ns.path();
    let (ids, cg) = inside(&a_ns, move || {
        let a = Attached::new(XLB_SOCK_F_LOOPBACK);
        a.backend(1, sa(BACKEND, 8080));
        a.service(
            xlb_svc_key::addr(sa(CLUSTER_IP, 80), Proto::Tcp),
            1,
            0,
            &[1; 7],
            0,
        );
        a.service(
            xlb_svc_key::nodeport(NODEPORT, Proto::Tcp),
            2,
            7,
            &[1; 7],
            0,
        );
        a.service(
            xlb_svc_key::addr(sa(EMPTY_IP, 80), Proto::Tcp),
            3,
            0,
            &[],
            0,
        );
        let l = TcpListener::bind(sa(BACKEND, 8080)).unwrap();
        let ids = a.prog_ids();
        for (h, id) in &ids {
            assert!(
                cgroup::query(&a.cgroup, *h).unwrap().contains(id),
                "{h:?} attached"
            );
        }
        // In B: the ClusterIP is B's own listener, 127.0.0.1:NodePort has
        // no listener and the empty Service's address is nothing at all.
        let before = a.reason(XLB_R_SOCK_XLATE) + a.reason(XLB_R_SOCK_REFUSED);
        let b = std::thread::spawn(move || {
            xlb_testkit::enter(&b_path);
            let l = TcpListener::bind(sa(CLUSTER_IP, 80)).unwrap();
            let srv = serve_once(l);
            let (peer, local) = tcp_roundtrip(sa(CLUSTER_IP, 80)).unwrap();
            assert_eq!(peer, SocketAddr::V4(sa(CLUSTER_IP, 80)));
            assert_eq!(srv.join().unwrap(), local, "B's own listener served it");
            let e = TcpStream::connect(sa(Ipv4Addr::LOCALHOST, NODEPORT)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
            let e =
                TcpStream::connect_timeout(&sa(EMPTY_IP, 80).into(), Duration::from_millis(300))
                    .unwrap_err();
            assert_ne!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED),
                "not the hook's refusal: {e}"
            );
            let u = UdpSocket::bind("0.0.0.0:0").unwrap();
            let _ = u.send_to(b"x", sa(CLUSTER_IP, 53));
        });
        b.join().expect("namespace B");
        assert_eq!(
            a.reason(XLB_R_SOCK_XLATE) + a.reason(XLB_R_SOCK_REFUSED),
            before,
            "the hooks did nothing for namespace B"
        );
        // ... while in A the same connect is balanced.
        let srv = serve_once(l);
        let (peer, local) = tcp_roundtrip(sa(CLUSTER_IP, 80)).unwrap_or_else(|e| panic!("A: {e}"));
        assert_eq!(peer, SocketAddr::V4(sa(CLUSTER_IP, 80)));
        assert_eq!(srv.join().unwrap(), local);

        // Detach: none of these programs is left on the cgroup, no link pin.
        let removed = cgroup::detach(&a.pin.path).unwrap();
        assert_eq!(removed, SockHook::ALL.to_vec());
        assert!(cgroup::list(&a.pin.path).is_empty());
        (ids, a.cgroup.clone())
    });
    for (h, id) in ids {
        let now = cgroup::query(&cg, h).unwrap();
        assert!(
            !now.contains(&id),
            "{h:?}: program {id} still on {}",
            cg.display()
        );
    }
}

#[test]
fn a_second_attach_replaces_in_place_and_two_instances_coexist() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns1 = ns_with_lo(&[]);
    let ns2 = ns_with_lo(&[]);
    let ns2_path = ns2.path();
    inside(&ns1, move || {
        let a = Attached::new(0);
        let ids = a.prog_ids();
        // Upgrade: a second object attached with the same pins swaps the
        // programs inside the links.
        let sock2 = SockLb::load(&a.dp).unwrap();
        let r = cgroup::attach(&a.pin.path, &sock2, &a.cgroup, 0).unwrap();
        assert!(r.iter().all(|x| x.replaced), "{r:?}");
        for (h, old) in &ids {
            let on = cgroup::query(&a.cgroup, *h).unwrap();
            let new = xlb_loader::sys::prog_id(sock2.prog(*h).as_fd()).unwrap();
            assert!(on.contains(&new) && !on.contains(old), "{h:?}: {on:?}");
        }
        // The object's own maps are pinned, and the new object reuses them.
        assert!(a.pin.path.join("sock_config").exists());
        assert!(a.pin.path.join("sock_rnat").exists());
        let cookie1 = cgroup::netns_cookie().unwrap();
        assert_eq!(a.sock.config().unwrap().netns_cookie, cookie1);
        let mine = xlb_loader::sys::prog_id(sock2.prog(SockHook::Connect4).as_fd()).unwrap();
        let pin1 = a.pin.path.clone();

        // A second instance for another namespace: both on the cgroup.
        std::thread::spawn(move || {
            xlb_testkit::enter(&ns2_path);
            assert_ne!(cgroup::netns_cookie().unwrap(), cookie1);
            let b = Attached::new(0);
            let theirs = xlb_loader::sys::prog_id(b.sock.prog(SockHook::Connect4).as_fd()).unwrap();
            let on = cgroup::query(&b.cgroup, SockHook::Connect4).unwrap();
            assert!(on.contains(&mine) && on.contains(&theirs), "both: {on:?}");
            cgroup::detach(&pin1).unwrap();
            let on = cgroup::query(&b.cgroup, SockHook::Connect4).unwrap();
            assert!(!on.contains(&mine) && on.contains(&theirs), "{on:?}");
        })
        .join()
        .expect("second instance");
    });
}
