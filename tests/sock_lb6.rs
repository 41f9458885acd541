//! The IPv6 socket hooks (`sock.bpf.c`: connect6, sendmsg6, recvmsg6,
//! getpeername6) with real sockets, as tests/sock_lb.rs does for IPv4:
//! attached to the cgroup v2 root for one namespace made here, with IPv6
//! Services (raw `services6` / `backends6` / `local_addrs6` / `config6`
//! entries) whose backends listen inside it (addresses on `lo`); and an IPv6
//! socket dialling a v4-mapped address, balanced through the IPv4 maps.

#[path = "../loader/tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::path::PathBuf;
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags};
use support::{Netns, PinDir};
use xlb_bpf::consts::*;
use xlb_bpf::types::{
    xlb_addr6, xlb_backend, xlb_backend6, xlb_config6, xlb_svc6_key, xlb_svc_key, xlb_svc_val,
};
use xlb_bpf::wire::be16;
use xlb_bpf::{Proto, Reason};
use xlb_loader::cgroup::{self, SockLb};
use xlb_loader::sock_term::be128;
use xlb_loader::{DataPlane, LoadOptions};

const NODE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const BACKEND: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x250, 0, 0, 0, 0, 1, 1);
const CLUSTER_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0x77, 1);
const EMPTY_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0x77, 2);
const NODEPORT: u16 = 30080;

fn sa6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
}

fn put<K: plain::Plain, V: plain::Plain>(m: &libbpf_rs::Map, k: &K, v: &V) {
    // SAFETY: Plain structs.
    let (kb, vb) = unsafe { (plain::as_bytes(k), plain::as_bytes(v)) };
    m.update(kb, vb, MapFlags::ANY)
        .unwrap_or_else(|e| panic!("{}: {e}", m.name().to_string_lossy()));
}

fn svc6_key(addr: Option<Ipv6Addr>, port: u16, proto: Proto) -> xlb_svc6_key {
    xlb_svc6_key {
        addr: addr.map(be128).unwrap_or([0; 4]),
        port: be16(port),
        proto: proto.number(),
        kind: if addr.is_some() {
            XLB_KIND_ADDR
        } else {
            XLB_KIND_NODEPORT
        } as u8,
    }
}

/// A data plane whose socket hooks are attached to the cgroup root for the
/// calling thread's namespace; detached on drop.
struct Attached {
    dp: DataPlane,
    sock: SockLb,
    pin: PinDir,
    _cgroup: PathBuf,
}

impl Attached {
    fn new(flags: u32) -> Self {
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
        let cg = cgroup::cgroup2_root().expect("cgroup2 mount");
        cgroup::attach(&pin.path, &sock, &cg, flags).expect("attach");
        let a = Attached {
            dp,
            sock,
            pin,
            _cgroup: cg,
        };
        put(
            &a.sock.skel.maps.config6,
            &0u32,
            &xlb_config6 {
                node_addr: be128(NODE),
                ..Default::default()
            },
        );
        a
    }

    fn backend6(&self, id: u32, ip: Ipv6Addr, port: u16) {
        put(
            &self.sock.skel.maps.backends6,
            &id,
            &xlb_backend6 {
                addr: be128(ip),
                port: be16(port),
                flags: XLB_BE_F_ACTIVE as u8,
                generation: 1,
                ..Default::default()
            },
        );
    }

    fn val(&self, svc_id: u32, off: u32, table: &[u32]) -> xlb_svc_val {
        self.dp.maps.write_maglev(off, table).unwrap();
        xlb_svc_val {
            svc_id,
            table_off: off,
            table_size: table.len() as u32,
            n_local: table.len() as u32,
            ..Default::default()
        }
    }

    fn service6(&self, key: xlb_svc6_key, svc_id: u32, off: u32, table: &[u32]) {
        put(
            &self.sock.skel.maps.services6,
            &key,
            &self.val(svc_id, off, table),
        );
    }

    fn delete_service6(&self, key: &xlb_svc6_key) {
        // SAFETY: Plain.
        let kb = unsafe { plain::as_bytes(key) };
        self.sock.skel.maps.services6.delete(kb).unwrap();
    }

    fn local_addr6(&self, ip: Ipv6Addr) {
        put(
            &self.sock.skel.maps.local_addrs6,
            &xlb_addr6 { addr: be128(ip) },
            &1u32,
        );
    }

    fn reason(&self, r: u32) -> u64 {
        self.dp.maps.reason(Reason(r)).unwrap().packets
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = cgroup::detach(&self.pin.path);
    }
}

fn ns_with_lo(addrs: &[&str]) -> Netns {
    let ns = Netns::new();
    for a in addrs {
        ns.ip(&["addr", "add", a, "dev", "lo", "nodad"]);
    }
    ns
}

fn serve_once(l: TcpListener) -> std::thread::JoinHandle<SocketAddr> {
    std::thread::spawn(move || {
        let (mut s, peer) = l.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        s.write_all(&buf[..n]).unwrap();
        peer
    })
}

/// (peer, local) of a TCP connection to `to` that echoed a ping.
fn tcp_roundtrip(to: SocketAddr) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf)?;
    assert_eq!(&buf, b"ping");
    Ok((c.peer_addr()?, c.local_addr()?))
}

fn udp_echo(sock: UdpSocket, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..n {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            sock.send_to(&buf[..len], from).unwrap();
        }
    })
}

fn udp6() -> UdpSocket {
    let c = UdpSocket::bind("[::]:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

#[test]
fn connect6_and_udp6_reach_the_backend_and_show_the_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = ns_with_lo(&["fd00:250::1:1/128", "2001:db8::1/128"]);
    ns.run(|| {
        let a = Attached::new(XLB_SOCK_F_LOOPBACK);
        a.backend6(1, BACKEND, 8080);
        a.backend6(2, BACKEND, 5353);
        a.service6(svc6_key(Some(CLUSTER_IP), 80, Proto::Tcp), 1, 0, &[1; 7]);
        a.service6(svc6_key(Some(CLUSTER_IP), 53, Proto::Udp), 2, 7, &[2; 7]);
        a.service6(svc6_key(None, NODEPORT, Proto::Tcp), 3, 14, &[1; 7]);

        let l = TcpListener::bind(sa6(BACKEND, 8080)).unwrap();
        // A NodePort on an address of the node other than config6's needs
        // local_addrs6: first without, then with.
        let other_node_addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
        for to in [
            sa6(CLUSTER_IP, 80),
            sa6(NODE, NODEPORT),
            sa6(Ipv6Addr::LOCALHOST, NODEPORT),
        ] {
            let srv = serve_once(l.try_clone().unwrap());
            let before = a.reason(XLB_R_SOCK_XLATE);
            let (peer, local) = tcp_roundtrip(to).unwrap_or_else(|e| panic!("{to}: {e}"));
            assert_eq!(peer, to, "getpeername6 shows what was dialled");
            assert_eq!(srv.join().unwrap(), local, "the backend served it");
            assert_eq!(a.reason(XLB_R_SOCK_XLATE), before + 1, "{to}");
        }
        let before = a.reason(XLB_R_SOCK_XLATE);
        let e =
            TcpStream::connect_timeout(&sa6(other_node_addr, NODEPORT), Duration::from_millis(300))
                .unwrap_err();
        assert_eq!(
            a.reason(XLB_R_SOCK_XLATE),
            before,
            "not a node address: {e}"
        );
        ns.ip(&["addr", "add", "2001:db8::2/128", "dev", "lo", "nodad"]);
        a.local_addr6(other_node_addr);
        let srv = serve_once(l.try_clone().unwrap());
        let (peer, local) = tcp_roundtrip(sa6(other_node_addr, NODEPORT)).unwrap();
        assert_eq!(peer, sa6(other_node_addr, NODEPORT));
        assert_eq!(srv.join().unwrap(), local);

        // Unconnected UDP: sendto the ClusterIP, the reply shows it.
        let echo = udp_echo(UdpSocket::bind(sa6(BACKEND, 5353)).unwrap(), 2);
        let c = udp6();
        c.send_to(b"q1", sa6(CLUSTER_IP, 53)).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"q1");
        assert_eq!(from, sa6(CLUSTER_IP, 53), "recvmsg6 shows the Service");
        // Connected UDP: getpeername6 and recv_from show the Service too.
        let c = udp6();
        c.connect(sa6(CLUSTER_IP, 53)).unwrap();
        assert_eq!(c.peer_addr().unwrap(), sa6(CLUSTER_IP, 53));
        c.send(b"q2").unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"q2");
        assert_eq!(from, sa6(CLUSTER_IP, 53));
        echo.join().unwrap();

        // A Service removed: the peer shows as what it is, the backend.
        let c = TcpStream::connect(sa6(CLUSTER_IP, 80)).unwrap();
        let srv = l.accept().unwrap();
        a.delete_service6(&svc6_key(Some(CLUSTER_IP), 80, Proto::Tcp));
        assert_eq!(c.peer_addr().unwrap(), sa6(BACKEND, 8080));
        drop(srv);
    });
}

#[test]
fn an_ipv6_service_without_endpoints_refuses_and_loopback_needs_the_flag() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = ns_with_lo(&["fd00:96::77:2/128"]);
    ns.run(|| {
        let a = Attached::new(0);
        // Listeners on the very address: without the hook the connect
        // would succeed, so ECONNREFUSED can only come from the hook.
        let _l = TcpListener::bind(sa6(EMPTY_IP, 80)).unwrap();
        let _u = UdpSocket::bind(sa6(EMPTY_IP, 53)).unwrap();
        a.service6(svc6_key(Some(EMPTY_IP), 80, Proto::Tcp), 1, 0, &[]);
        a.service6(svc6_key(Some(EMPTY_IP), 53, Proto::Udp), 2, 0, &[]);
        let e = TcpStream::connect(sa6(EMPTY_IP, 80)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        let e = udp6().send_to(b"x", sa6(EMPTY_IP, 53)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        assert_eq!(a.reason(XLB_R_SOCK_REFUSED), 2);

        // The same address as no Service: untouched.
        a.delete_service6(&svc6_key(Some(EMPTY_IP), 80, Proto::Tcp));
        TcpStream::connect(sa6(EMPTY_IP, 80)).expect("no Service: the local listener");
        // Without XLB_SOCK_F_LOOPBACK, [::1]:NodePort is no frontend.
        a.backend6(1, EMPTY_IP, 80);
        a.service6(svc6_key(None, NODEPORT, Proto::Tcp), 3, 0, &[1; 7]);
        let e = TcpStream::connect(sa6(Ipv6Addr::LOCALHOST, NODEPORT)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        assert_eq!(a.reason(XLB_R_SOCK_REFUSED), 2, "the kernel's refusal");
        assert_eq!(a.reason(XLB_R_SOCK_XLATE), 0);
    });
}

#[test]
fn a_v4_mapped_destination_is_balanced_through_the_ipv4_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = ns_with_lo(&[]);
    ns.ip(&["addr", "add", "10.250.1.1/32", "dev", "lo"]);
    ns.run(|| {
        let a = Attached::new(0);
        let be = SocketAddrV4::new(Ipv4Addr::new(10, 250, 1, 1), 8080);
        let vip = Ipv4Addr::new(10, 96, 77, 1);
        a.dp.maps
            .put_backend(1, &xlb_backend::new(be, None, 1))
            .unwrap();
        a.dp.maps
            .put_backend(
                2,
                &xlb_backend::new(SocketAddrV4::new(*be.ip(), 5353), None, 1),
            )
            .unwrap();
        let v = a.val(1, 0, &[1; 7]);
        a.dp.maps
            .put_service(
                &xlb_svc_key::addr(SocketAddrV4::new(vip, 80), Proto::Tcp),
                &v,
            )
            .unwrap();
        let v = a.val(2, 7, &[2; 7]);
        a.dp.maps
            .put_service(
                &xlb_svc_key::addr(SocketAddrV4::new(vip, 53), Proto::Udp),
                &v,
            )
            .unwrap();
        let mapped = vip.to_ipv6_mapped();

        // TCP on an IPv6 socket (connect6 with ::ffff:10.96.77.1).
        let l = TcpListener::bind(be).unwrap();
        let srv = serve_once(l);
        let (peer, local) = tcp_roundtrip(sa6(mapped, 80)).unwrap();
        assert_eq!(
            peer,
            sa6(mapped, 80),
            "getpeername6 shows the mapped frontend"
        );
        let seen = srv.join().unwrap();
        assert_eq!(seen.port(), local.port(), "the IPv4 backend served it");
        assert_eq!(a.reason(XLB_R_SOCK_XLATE), 1);

        // UDP, connected (connect6) and unconnected (the kernel sends a
        // mapped datagram through sendmsg4); replies show the frontend.
        let echo = udp_echo(
            UdpSocket::bind(SocketAddrV4::new(*be.ip(), 5353)).unwrap(),
            2,
        );
        let mut buf = [0u8; 16];
        let c = udp6();
        c.send_to(b"u1", sa6(mapped, 53)).unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"u1"[..], sa6(mapped, 53)));
        let c = udp6();
        c.connect(sa6(mapped, 53)).unwrap();
        assert_eq!(c.peer_addr().unwrap(), sa6(mapped, 53));
        c.send(b"u2").unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"u2"[..], sa6(mapped, 53)));
        echo.join().unwrap();
        assert_eq!(a.reason(XLB_R_SOCK_XLATE), 3);
        // Nothing went into the IPv6 table.
        assert_eq!(a.sock.skel.maps.sock_rnat6.keys().count(), 0);
    });
}

#[test]
fn other_namespaces_are_left_alone_for_ipv6() {
    if !xlb_testkit::privileged() {
        return;
    }
    let a_ns = ns_with_lo(&["fd00:250::1:1/128"]);
    let b_ns = ns_with_lo(&["fd00:96::77:1/128"]);
    let b_path = b_ns.path();
    a_ns.run(move || {
        let a = Attached::new(XLB_SOCK_F_LOOPBACK);
        a.backend6(1, BACKEND, 8080);
        a.service6(svc6_key(Some(CLUSTER_IP), 80, Proto::Tcp), 1, 0, &[1; 7]);
        a.service6(svc6_key(Some(EMPTY_IP), 80, Proto::Tcp), 2, 0, &[]);
        let l = TcpListener::bind(sa6(BACKEND, 8080)).unwrap();
        let before = a.reason(XLB_R_SOCK_XLATE) + a.reason(XLB_R_SOCK_REFUSED);
        std::thread::spawn(move || {
            xlb_testkit::enter(&b_path);
            let l = TcpListener::bind(sa6(CLUSTER_IP, 80)).unwrap();
            let srv = serve_once(l);
            let (peer, local) = tcp_roundtrip(sa6(CLUSTER_IP, 80)).unwrap();
            assert_eq!(peer, sa6(CLUSTER_IP, 80));
            assert_eq!(srv.join().unwrap(), local, "B's own listener served it");
            let e = TcpStream::connect_timeout(&sa6(EMPTY_IP, 80), Duration::from_millis(300))
                .unwrap_err();
            assert_ne!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        })
        .join()
        .expect("namespace B");
        assert_eq!(
            a.reason(XLB_R_SOCK_XLATE) + a.reason(XLB_R_SOCK_REFUSED),
            before,
            "the hooks did nothing for namespace B"
        );
        let srv = serve_once(l);
        let (peer, local) = tcp_roundtrip(sa6(CLUSTER_IP, 80)).unwrap();
        assert_eq!(peer, sa6(CLUSTER_IP, 80));
        assert_eq!(srv.join().unwrap(), local);
    });
}
