//! # The lab's processes: a backend in every pod, an agent in every node
//!
//! Both are the xlb binary (`xlb lab backend`, `xlb agent`) started by
//! [`crate::procs::Daemon`]; readiness is a TCP answer from the backend and a
//! 200 from the agent's /readyz.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cmd::checked;
use crate::procs::Daemon;
use crate::*;

/// The daemon record of pod `(n, k)`'s backend.
pub fn backend_daemon(lab: &Lab, n: u8, k: u8) -> Daemon {
    Daemon::new(
        &lab.state_dir(),
        &format!("backend-{}", pod_name(n, k)),
        &lab.ns_pod(n, k),
    )
}

/// The daemon record of node `n`'s agent.
pub fn agent_daemon(lab: &Lab, n: u8) -> Daemon {
    Daemon::new(
        &lab.state_dir(),
        &format!("agent-{}", node_name(n)),
        &lab.ns_node(n),
    )
}

pub(crate) fn start_backend(lab: &Lab, xlb: &Path, n: u8, k: u8) -> Result<()> {
    let mut listen = format!("0.0.0.0:{BACKEND_PORT}");
    if lab.dual_stack {
        listen.push_str(&format!(",[::]:{BACKEND_PORT}"));
    }
    let args = [
        "lab".to_owned(),
        "backend".to_owned(),
        "--name".to_owned(),
        pod_name(n, k),
        "--listen".to_owned(),
        listen,
        "--udp".to_owned(),
    ];
    backend_daemon(lab, n, k).start_tagged(&lab.prefix, xlb, &args, None)?;
    Ok(())
}

/// Addresses pod `(n, k)`'s backend answers on (IPv4, and IPv6 when dual-stack).
pub fn backend_addrs(lab: &Lab, n: u8, k: u8) -> Vec<SocketAddr> {
    let mut v = vec![SocketAddr::new(pod_addr(n, k).into(), BACKEND_PORT)];
    if lab.dual_stack {
        v.push(SocketAddr::new(v6::pod_addr6(n, k).into(), BACKEND_PORT));
    }
    v
}

pub(crate) fn wait_backend(lab: &Lab, n: u8, k: u8, limit: Duration) -> Result<()> {
    for to in backend_addrs(lab, n, k) {
        wait_backend_at(lab, n, k, to, limit)?;
    }
    Ok(())
}

fn wait_backend_at(lab: &Lab, n: u8, k: u8, to: SocketAddr, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let r = netns::run(&lab.ns_node(n), move || {
            probe::tcp(None, to, Duration::from_millis(500))
        })?;
        match r {
            Ok(reply) if reply.name == pod_name(n, k) => return Ok(()),
            Ok(reply) => {
                return Err(Error::NotReady(format!(
                    "{to} answered as {} instead of {}",
                    reply.name,
                    pod_name(n, k)
                )))
            }
            Err(e) if start.elapsed() > limit => {
                return Err(Error::NotReady(format!(
                    "backend {} at {to} not answering after {limit:?}: {e} (log: {})",
                    pod_name(n, k),
                    backend_daemon(lab, n, k).log_file.display()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Mounts bpffs on /sys/fs/bpf when it is not.
pub(crate) fn ensure_bpffs() -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if xlb_loader::is_bpffs(root) {
        return Ok(());
    }
    let mut c = Command::new("mount");
    c.args(["-t", "bpf", "bpf", BPFFS_ROOT]);
    checked(c, "mount -t bpf bpf /sys/fs/bpf").map(drop)
}

/// Scratch mount point used to carry the host's bpffs into a node's mount namespace.
fn bpffs_scratch(lab: &Lab) -> Result<PathBuf> {
    let p = lab.state_dir().join(".bpffs");
    std::fs::create_dir_all(&p).map_err(io_ctx(format!("creating {}", p.display())))?;
    Ok(p)
}

/// Pattern of the pod veths in a node namespace (the agent's `--pod-ifaces`).
pub const POD_VETH_PATTERN: &str = "vethp*";

/// Where each agent serves /metrics, /healthz and /readyz (inside its node namespace).
pub const AGENT_METRICS: &str = "127.0.0.1:9402";

/// The agent's command line for node `n` (what `up` and a restart run).
pub fn agent_args(lab: &Lab, n: u8) -> Vec<String> {
    vec![
        "--pin-dir".into(),
        lab.pin_dir(n).display().to_string(),
        "agent".into(),
        "--manifests".into(),
        lab.manifests_dir().display().to_string(),
        "--node-name".into(),
        node_name(n),
        "--iface".into(),
        UPLINK.into(),
        "--pod-ifaces".into(),
        POD_VETH_PATTERN.into(),
        "--metrics-addr".into(),
        AGENT_METRICS.into(),
    ]
}

pub(crate) fn start_agent(lab: &Lab, xlb: &Path, n: u8) -> Result<()> {
    let scratch = bpffs_scratch(lab)?;
    agent_daemon(lab, n).start_tagged(&lab.prefix, xlb, &agent_args(lab, n), Some(&scratch))?;
    Ok(())
}

/// GET `path` on the agent's metrics listener from inside node `n`: the status code.
pub fn agent_http(lab: &Lab, n: u8, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    netns::run(&lab.ns_node(n), move || -> std::io::Result<u16> {
        let addr: std::net::SocketAddr = AGENT_METRICS.parse().expect("valid address");
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(req.as_bytes())?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let k = s.read(&mut head[got..])?;
            if k == 0 {
                break;
            }
            got += k;
        }
        let line = String::from_utf8_lossy(&head[..got]).into_owned();
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer {line:?}")))
    })?
    .map_err(io_ctx(format!(
        "GET http://{AGENT_METRICS}{path} in {}",
        lab.ns_node(n)
    )))
}

/// Ready = the agent runs and its /readyz says 200 (first complete sync done).
pub(crate) fn wait_agent(lab: &Lab, n: u8, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let d = agent_daemon(lab, n);
    loop {
        if d.running().is_none() {
            return Err(Error::NotReady(format!(
                "agent of {} exited (log: {})",
                node_name(n),
                d.log_file.display()
            )));
        }
        let last = match agent_http(lab, n, "/readyz") {
            Ok(200) => return Ok(()),
            Ok(code) => format!("/readyz answered {code}"),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > limit {
            return Err(Error::NotReady(format!(
                "agent of {} not ready after {limit:?}: {last} (log: {})",
                node_name(n),
                d.log_file.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Port of the lab's API server stand-in on node 2 (the `kubernetes` Service's endpoint).
pub const APISERVER_PORT: u16 = 6443;
/// Port of the host-network backend on node 1 (the `hostnet` Service's endpoint).
pub const HOSTNET_PORT: u16 = 10080;

/// Name the host-network backend of node `n` answers with.
pub fn host_backend_name(n: u8) -> String {
    format!("host-{}", node_name(n))
}

/// The daemon record of a backend in node `n`'s own namespace listening on `port`.
pub fn host_backend_daemon(lab: &Lab, n: u8, port: u16) -> Daemon {
    Daemon::new(
        &lab.state_dir(),
        &format!("backend-{}-{port}", node_name(n)),
        &lab.ns_node(n),
    )
}

/// The host-network servers of the examples: the API server stand-in on the
/// last node (`kubernetes`, no nodeName) and a hostNetwork pod on node 1
/// (`hostnet`, nodeName set). Both answer as [`host_backend_name`].
pub fn host_backends(lab: &Lab) -> Vec<(u8, u16)> {
    let mut v = vec![(1, HOSTNET_PORT)];
    if lab.nodes >= 2 {
        v.push((2, APISERVER_PORT));
    }
    v
}

/// Where node `n`'s host-network backend on `port` listens: its underlay
/// address (and its IPv6 one when dual-stack).
pub fn host_backend_addrs(lab: &Lab, n: u8, port: u16) -> Vec<SocketAddr> {
    let mut v = vec![SocketAddr::new(node_addr(n).into(), port)];
    if lab.dual_stack {
        v.push(SocketAddr::new(v6::node_addr6(n).into(), port));
    }
    v
}

pub(crate) fn start_host_backend(lab: &Lab, xlb: &Path, n: u8, port: u16) -> Result<()> {
    start_extra_backend(
        lab,
        xlb,
        &host_backend_daemon(lab, n, port),
        &host_backend_name(n),
        &host_backend_addrs(lab, n, port),
    )
}

/// Starts `xlb lab backend --name NAME --listen ... --udp` as `d` (in its
/// namespace): a second container port of a pod, a server in a node's own
/// namespace. `down` stops it with the rest of the lab.
pub fn start_extra_backend(
    lab: &Lab,
    xlb: &Path,
    d: &Daemon,
    name: &str,
    listen: &[impl Into<SocketAddr> + Copy],
) -> Result<()> {
    let list: Vec<String> = listen.iter().map(|&a| a.into().to_string()).collect();
    let args = [
        "lab".to_owned(),
        "backend".to_owned(),
        "--name".to_owned(),
        name.to_owned(),
        "--listen".to_owned(),
        list.join(","),
        "--udp".to_owned(),
    ];
    d.start_tagged(&lab.prefix, xlb, &args, None)?;
    Ok(())
}

/// Waits until `to` answers as `name` from inside `ns`.
pub fn wait_answer(ns: &str, to: impl Into<SocketAddr>, name: &str, limit: Duration) -> Result<()> {
    let to: SocketAddr = to.into();
    let start = Instant::now();
    loop {
        let r = netns::run(ns, move || probe::tcp(None, to, Duration::from_millis(500)))?;
        let last = match r {
            Ok(reply) if reply.name == name => return Ok(()),
            Ok(reply) => format!("answered as {}", reply.name),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > limit {
            return Err(Error::NotReady(format!(
                "{to} in {ns}: no answer as {name} after {limit:?}: {last}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
