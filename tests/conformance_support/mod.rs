//! Shared by the `conformance_*` tests (docs/conformance.md, one test per row
//! of the conformance list): clients of each kind, Services written into the
//! lab's manifest directory, and waits that end in a strict check.
//!
//! A wait ([`serves`], [`fails`]) retries until the agents have applied a
//! change, then checks once more without retrying, so a behaviour that holds
//! only now and then does not pass.
//!
//! Destinations are of either family (`impl Into<SocketAddr>`): the IPv6
//! rows (`conformance6_*`) use the same waits with IPv6 addresses, the
//! helpers at the end of this file, and a dual-stack lab.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeSet;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use crate::e2e_support::*;
use xlb_lab::{self as lab, daemons, objects, probe};

pub use xlb_lab::objects::{EndpointDef, ServiceDef, SliceDef};

/// How long an agent may take to apply a manifest change.
pub const SETTLE: Duration = Duration::from_secs(20);
/// Short timeout for attempts expected to fail.
pub const SHORT: Duration = Duration::from_millis(700);

/// Why a host-client test is ignored in main (the lead un-ignores on merge).
pub const NEEDS_SOCK: &str =
    "needs host-originated Service traffic (cgroup socket hooks, issue 13): g-sock";

/// Who sends: a pod's process, a node's own process, or the external client.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    Pod(u8, u8),
    Host(u8),
    External,
}

impl Client {
    /// The address a backend sees when the client's address is preserved.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Client::Pod(n, k) => lab::pod_addr(n, k),
            Client::Host(n) => lab::node_addr(n),
            Client::External => lab::CLIENT_ADDR,
        }
    }

    /// [`Client::addr`] in IPv6 (a dual-stack lab).
    pub fn addr6(self) -> Ipv6Addr {
        lab::v6::v6(self.addr())
    }

    /// The client's own address in the family of `to`.
    pub fn addr_for(self, to: SocketAddr) -> IpAddr {
        match to {
            SocketAddr::V4(_) => self.addr().into(),
            SocketAddr::V6(_) => self.addr6().into(),
        }
    }
}

/// Runs `f` in the client's namespace.
pub fn run<R: Send + 'static>(
    g: &LabGuard,
    c: Client,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    match c {
        Client::Pod(n, k) => g.pod(n, k, f),
        Client::Host(n) => g.node(n, f),
        Client::External => g.client(f),
    }
}

/// Writes the Service (and slices) into the lab's manifests.
pub fn apply(g: &LabGuard, svc: &ServiceDef, slices: &[SliceDef]) {
    objects::apply(&g.lab.manifests_dir(), svc, slices).unwrap();
}

/// Deletes a Service written by [`apply`].
pub fn delete(g: &LabGuard, name: &str) {
    objects::delete(&g.lab.manifests_dir(), name).unwrap();
}

/// A one-slice helper: `service` on TCP+UDP 8080 (`http`/`udp`) with `pods` ready.
pub fn slice(service: &str, pods: &[(u8, u8)]) -> SliceDef {
    SliceDef::new(service, "1")
        .port("http", "TCP", lab::BACKEND_PORT)
        .port("udp", "UDP", lab::BACKEND_PORT)
        .pods(pods)
}

/// `count` attempts from `c` to `to` over TCP (or UDP, where the reply must
/// come from `to`): the names that answered, or the first error.
pub fn answers(
    g: &LabGuard,
    c: Client,
    to: impl Into<SocketAddr>,
    udp: bool,
    count: usize,
) -> Result<Vec<probe::Reply>, String> {
    let to: SocketAddr = to.into();
    run(g, c, move || {
        let mut v = Vec::new();
        for _ in 0..count {
            let r = if udp {
                probe::udp_ip(None, to, T).and_then(|(r, src)| {
                    if src == to {
                        Ok(r)
                    } else {
                        Err(io::Error::other(format!("reply from {src}")))
                    }
                })
            } else {
                probe::tcp_ip(None, to, T)
            };
            v.push(r.map_err(|e| format!("{c:?} -> {to}{}: {e}", if udp { "/udp" } else { "" }))?);
        }
        Ok(v)
    })
}

fn names_of(v: &[probe::Reply]) -> BTreeSet<String> {
    v.iter().map(|r| r.name.clone()).collect()
}

/// Waits until `to` answers from `c` and exactly the backends `want` answer
/// (all of them seen), then checks once more: every answer among `want`.
/// Returns the replies of the last round.
pub fn serves(
    g: &LabGuard,
    c: Client,
    to: impl Into<SocketAddr>,
    udp: bool,
    want: &[&str],
) -> Vec<probe::Reply> {
    let to: SocketAddr = to.into();
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let count = (8 * want.len()).max(8);
    let limit = std::time::Instant::now() + SETTLE;
    loop {
        let last = match answers(g, c, to, udp, count) {
            Ok(v) if names_of(&v) == want => break,
            Ok(v) => format!("answered by {:?}", names_of(&v)),
            Err(e) => e,
        };
        assert!(
            std::time::Instant::now() < limit,
            "{c:?} -> {to} (udp {udp}): want {want:?}, last: {last}\n{}",
            g.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = answers(g, c, to, udp, count).unwrap_or_else(|e| panic!("after settling: {e}"));
    let got = names_of(&v);
    assert!(
        got.is_subset(&want),
        "{c:?} -> {to}: {got:?} not within {want:?}"
    );
    v
}

/// One attempt that must fail: TCP connect (or UDP exchange) with a short timeout.
pub fn attempt(to: impl Into<SocketAddr>, udp: bool) -> io::Result<probe::Reply> {
    let to: SocketAddr = to.into();
    if udp {
        let s = UdpSocket::bind(SocketAddr::new(probe::any_of_family(to), 0))?;
        s.set_read_timeout(Some(SHORT))?;
        s.connect(to)?;
        s.send(b"probe")?;
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf)?;
        probe::Reply::parse(&String::from_utf8_lossy(&buf[..n]))
            .ok_or_else(|| io::Error::other("bad reply"))
    } else {
        probe::tcp_ip(None, to, SHORT)
    }
}

/// Waits until `to` stops answering from `c` (any error), then checks that
/// five more attempts fail too. Returns the error kinds of those.
pub fn fails(g: &LabGuard, c: Client, to: impl Into<SocketAddr>, udp: bool) -> Vec<ErrorKind> {
    let to: SocketAddr = to.into();
    eventually(
        &format!("{c:?} -> {to} (udp {udp}) stops answering"),
        SETTLE,
        || run(g, c, move || attempt(to, udp)).err().map(|_| ()),
    );
    // A failure may come before the agents have read a change just written
    // (a Service not yet programmed fails too): let a change in flight land
    // (a few of the agents' manifest poll periods) before the strict round.
    std::thread::sleep(Duration::from_millis(1500));
    run(g, c, move || {
        (0..5)
            .map(|i| match attempt(to, udp) {
                Ok(r) => panic!("{c:?} -> {to} attempt {i}: answered by {}", r.name),
                Err(e) => e.kind(),
            })
            .collect()
    })
}

/// Waits until `to` refuses from `c` at once (TCP RST / ICMP port
/// unreachable, not a timeout), then checks that five more attempts are
/// refused too.
pub fn refused(g: &LabGuard, c: Client, to: impl Into<SocketAddr>, udp: bool) {
    let to: SocketAddr = to.into();
    eventually(
        &format!("{c:?} -> {to} (udp {udp}) refused"),
        SETTLE,
        || match run(g, c, move || attempt(to, udp)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
    let kinds: Vec<String> = run(g, c, move || {
        (0..5)
            .map(|_| match attempt(to, udp) {
                Ok(r) => format!("answered by {}", r.name),
                Err(e) => format!("{:?}", e.kind()),
            })
            .collect()
    });
    assert!(
        kinds.iter().all(|k| k == "ConnectionRefused"),
        "{c:?} -> {to} (udp {udp}): want refusals, got {kinds:?}"
    );
}

/// Starts an extra backend in pod `(n, k)` on `port` (TCP and UDP) answering
/// as `<pod>-<port>` (on the pod's IPv6 address too in a dual-stack lab),
/// and waits for it.
pub fn extra_backend(g: &LabGuard, n: u8, k: u8, port: u16) -> String {
    let name = format!("{}-{port}", lab::pod_name(n, k));
    let d = xlb_lab::procs::Daemon::new(
        &g.lab.state_dir(),
        &format!("backend-{name}"),
        &g.lab.ns_pod(n, k),
    );
    let mut listen = vec![SocketAddr::new(lab::pod_addr(n, k).into(), port)];
    if g.lab.dual_stack {
        listen.push(SocketAddr::new(lab::v6::pod_addr6(n, k).into(), port));
    }
    daemons::start_extra_backend(&g.lab, std::path::Path::new(XLB), &d, &name, &listen).unwrap();
    for &a in &listen {
        daemons::wait_answer(&g.lab.ns_node(n), a, &name, Duration::from_secs(10)).unwrap();
    }
    name
}

/// `GET path` over HTTP/1.0 from the calling namespace: (status, body).
pub fn http_get(to: SocketAddrV4, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), T)?;
    s.set_read_timeout(Some(T))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad HTTP answer {buf:?}")))?;
    Ok((
        status,
        buf.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned(),
    ))
}

/// Waits until `GET path` on `to` from `c` answers `status`; returns the body.
pub fn http_status(
    g: &LabGuard,
    c: Client,
    to: SocketAddrV4,
    path: &'static str,
    status: u16,
) -> String {
    eventually(
        &format!("{c:?}: GET http://{to}{path} -> {status}"),
        SETTLE,
        || match run(g, c, move || http_get(to, path)) {
            Ok((s, body)) if s == status => Some(body),
            _ => None,
        },
    )
}

pub fn vip(a: [u8; 4], port: u16) -> SocketAddrV4 {
    sa(a, port)
}

/// The IPv6 counterpart of a lab IPv4 destination (dual-stack lab).
pub fn six(to: SocketAddrV4) -> SocketAddr {
    SocketAddr::new(lab::v6::v6(*to.ip()).into(), to.port())
}

/// Node `n`'s IPv6 address with `port` (a NodePort).
pub fn node6(n: u8, port: u16) -> SocketAddr {
    SocketAddr::new(lab::v6::node_addr6(n).into(), port)
}

/// [`slice`] in both families: the IPv4 slice and its IPv6 sibling.
pub fn dual_slices(service: &str, pods: &[(u8, u8)]) -> [SliceDef; 2] {
    let s = slice(service, pods);
    [s.clone(), s.ipv6()]
}
