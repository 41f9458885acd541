//! `xlb agent` with the socket hooks, in a network namespace this test
//! creates: node processes reach a ClusterIP and a NodePort (on the node
//! address and on 127.0.0.1) through the hooks, NodePort addresses follow
//! the interfaces within `--nodeport-addresses`, a NodePort over a node
//! listener is reported, `--cleanup` leaves none of the agent's programs
//! on the cgroup, and a node process's connected UDP socket is terminated
//! when its Service's endpoint is replaced.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use xlb_bpf::Maps;
use xlb_loader::cgroup::{self, SockHook};
mod cli_support;
use cli_support::{KillOnDrop as Agent, Netns};
use xlb_testkit::{privileged, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");
const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

struct Pins(PathBuf, PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = cgroup::detach(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(xlb::names::path(&self.0));
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some((buf.split_whitespace().nth(1)?.parse().ok()?, buf))
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    xlb_testkit::agent::wait_for(what, || f().then_some(()));
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.244.1.0/24}
status:
  addresses: [{type: InternalIP, address: 198.18.0.2}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{port: 80, targetPort: 8080, nodePort: 30022}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints:
- addresses: ["198.18.0.2"]
  nodeName: node-a
"#;

/// Connects to `to` and returns (the peer the socket shows, whether the
/// backend listener `be` accepted it).
fn dial(to: SocketAddrV4, be: &TcpListener) -> (SocketAddr, bool) {
    let c = TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let local = c.local_addr().unwrap();
    be.set_nonblocking(false).unwrap();
    let (_s, peer) = be.accept().unwrap();
    (c.peer_addr().unwrap(), peer == local)
}

/// Starts the agent in `ns` (uplink `up0`) over `pins`, metrics on
/// 127.0.0.1:`port` there, and waits until it is ready.
fn spawn_agent(ns: &Netns, pins: &Pins, port: u16, extra: &[&str]) -> Agent {
    let agent = Agent(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(BIN)
            .arg("--pin-dir")
            .arg(&pins.0)
            .arg("agent")
            .arg("--manifests")
            .arg(&pins.1)
            .args([
                "--node-name",
                "node-a",
                "--iface",
                "up0",
                "--fallback-generic",
            ])
            .args(extra)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait("/readyz in the namespace", || {
        ns.run(move || get(port, "/readyz")).map(|r| r.0) == Some(200)
    });
    agent
}

/// A namespace with the uplink `up0` holding the node address.
fn node_ns() -> Netns {
    let ns = Netns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "up0"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["link", "set", "up1", "up"]);
    ns
}

fn pins() -> Pins {
    let name = unique_name("xlb-t-");
    let pins = Pins(
        Path::new("/sys/fs/bpf").join(&name),
        std::env::temp_dir().join(format!("{name}-m")),
    );
    std::fs::create_dir_all(&pins.1).unwrap();
    pins
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metric(ns: &Netns, port: u16, name: &str) -> Option<String> {
    let (_, m) = ns.run(move || get(port, "/metrics"))?;
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
}

/// A UDP DNS-like Service whose one endpoint is `ep` (an address on the
/// namespace's `lo`).
fn udp_manifests(ep: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: node-a}}
status:
  addresses: [{{type: InternalIP, address: 198.18.0.2}}]
---
apiVersion: v1
kind: Service
metadata: {{name: dns, namespace: default}}
spec:
  clusterIP: 10.96.0.53
  ports: [{{port: 53, targetPort: 5353, protocol: UDP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: default
  labels: {{kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{{port: 5353, protocol: UDP}}]
endpoints:
- addresses: ["{ep}"]
  nodeName: node-a
"#
    )
}

#[test]
fn agent_terminates_a_node_process_udp_socket_when_its_backend_is_replaced() {
    if !privileged() {
        return;
    }
    let ns = node_ns();
    ns.ip(&["addr", "add", "10.9.8.1/32", "dev", "lo"]);
    ns.ip(&["addr", "add", "10.9.8.2/32", "dev", "lo"]);
    let pins = pins();
    std::fs::write(pins.1.join("all.yaml"), udp_manifests("10.9.8.1")).unwrap();
    let port = free_port();
    let (old, new) = ns.run(|| {
        (
            UdpSocket::bind("10.9.8.1:5353").unwrap(),
            UdpSocket::bind("10.9.8.2:5353").unwrap(),
        )
    });
    let agent = spawn_agent(&ns, &pins, port, &[]);
    assert_eq!(
        metric(&ns, port, "xlb_socket_termination").as_deref(),
        Some("1")
    );
    let svc = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 53), 53);
    let c = ns.run(move || {
        let c = UdpSocket::bind("0.0.0.0:40053").unwrap();
        c.connect(svc).unwrap();
        c
    });
    c.send(b"q").unwrap();
    let mut buf = [0u8; 8];
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, from) = old.recv_from(&mut buf).expect("the first endpoint gets it");
    assert_eq!(from.port(), 40053);

    // The endpoint is replaced: the agent terminates the socket.
    std::fs::write(pins.1.join("all.yaml"), udp_manifests("10.9.8.2")).unwrap();
    let so_error = |c: &UdpSocket| c.take_error().unwrap().and_then(|e| e.raw_os_error());
    wait("the socket terminated", || {
        metric(&ns, port, "xlb_sockets_terminated_total").as_deref() == Some("1")
    });
    assert_eq!(so_error(&c), Some(libc::ECONNABORTED));
    // Connected again (same port), it reaches the new endpoint.
    c.connect(svc).unwrap();
    c.send(b"q").unwrap();
    new.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, from) = new.recv_from(&mut buf).expect("the new endpoint gets it");
    assert_eq!(from.port(), 40053);

    // The endpoint changes back while no agent runs: the next agent
    // terminates the socket at its first sync (from sock_rnat).
    let mut agent = agent;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    assert!(agent.0.wait().unwrap().success());
    std::fs::write(pins.1.join("all.yaml"), udp_manifests("10.9.8.1")).unwrap();
    let _agent = spawn_agent(&ns, &pins, port, &[]);
    wait("the socket terminated by the next agent", || {
        metric(&ns, port, "xlb_sockets_terminated_total").as_deref() == Some("1")
    });
    assert_eq!(so_error(&c), Some(libc::ECONNABORTED));
    c.connect(svc).unwrap();
    c.send(b"q").unwrap();
    let (_, from) = old.recv_from(&mut buf).expect("the first endpoint again");
    assert_eq!(from.port(), 40053);
}

#[test]
fn agent_balances_node_processes_and_follows_nodeport_addresses() {
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "up0"]);
    ns.ip(&["addr", "add", "10.9.9.9/32", "dev", "lo"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["link", "set", "up1", "up"]);

    let name = unique_name("xlb-t-");
    let pins = Pins(
        Path::new("/sys/fs/bpf").join(&name),
        std::env::temp_dir().join(format!("{name}-m")),
    );
    std::fs::create_dir_all(&pins.1).unwrap();
    std::fs::write(pins.1.join("all.yaml"), MANIFESTS).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // The backend (a hostNetwork endpoint: the node address) and sshd-like
    // listener on every address of the NodePort's port.
    let (be, _other) = ns.run(|| {
        (
            TcpListener::bind(SocketAddrV4::new(NODE, 8080)).unwrap(),
            TcpListener::bind("0.0.0.0:30022").unwrap(),
        )
    });

    let agent = spawn_agent(
        &ns,
        &pins,
        port,
        &["--nodeport-addresses", "198.18.0.0/24,127.0.0.0/8"],
    );
    assert_eq!(cgroup::list(&pins.0).len(), 8, "eight socket hooks pinned");

    // Node processes: the ClusterIP, the NodePort on the node address and on
    // 127.0.0.1 all reach the backend, and the socket shows what was dialled
    // (the NodePort wins over the process listening on 0.0.0.0:30022).
    let be2 = be.try_clone().unwrap();
    ns.run(move || {
        for to in [
            SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80),
            SocketAddrV4::new(NODE, 30022),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 30022),
        ] {
            let (peer, served) = dial(to, &be2);
            assert_eq!(peer, SocketAddr::V4(to));
            assert!(
                served,
                "{to}: the backend accepted it, not the node listener"
            );
        }
    });
    let (_, metrics) = ns.run(move || get(port, "/metrics")).unwrap();
    let shadows = metrics
        .lines()
        .find(|l| l.starts_with("xlb_frontend_shadows_listener "))
        .unwrap_or_else(|| panic!("no shadow metric:\n{metrics}"));
    assert_eq!(shadows, "xlb_frontend_shadows_listener 1", "{metrics}");

    // NodePort addresses: within the CIDRs, and following new addresses.
    let maps = Maps::from_pin_dir(&pins.0).unwrap();
    assert_eq!(
        maps.local_addrs().unwrap(),
        vec![NODE],
        "10.9.9.9 is outside"
    );
    ns.ip(&["addr", "add", "198.18.0.7/24", "dev", "up0"]);
    wait("198.18.0.7 in local_addrs", || {
        maps.local_addrs()
            .unwrap()
            .contains(&Ipv4Addr::new(198, 18, 0, 7))
    });
    ns.ip(&["addr", "del", "198.18.0.7/24", "dev", "up0"]);
    wait("198.18.0.7 gone from local_addrs", || {
        maps.local_addrs().unwrap() == vec![NODE]
    });

    // The agent's programs, from its pinned links.
    let ids: Vec<(SockHook, u32)> = cgroup::list(&pins.0)
        .into_iter()
        .map(|(h, p)| {
            let fd = xlb_loader::sys::obj_get(&p).unwrap();
            let info = libbpf_rs::query::LinkInfo::from_fd(fd.as_fd()).unwrap();
            (h, info.prog_id)
        })
        .collect();
    let root = cgroup::cgroup2_root().unwrap();
    for (h, id) in &ids {
        assert!(cgroup::query(&root, *h).unwrap().contains(id), "{h:?}");
    }

    let mut agent = agent;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    assert!(agent.0.wait().unwrap().success());
    drop(maps);
    xlb_testkit::run_ok(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(BIN)
            .arg("--pin-dir")
            .arg(&pins.0)
            .args(["agent", "--cleanup"]),
    );
    for (h, id) in &ids {
        assert!(
            !cgroup::query(&root, *h).unwrap().contains(id),
            "{h:?}: program {id} left on {}",
            root.display()
        );
    }
}
