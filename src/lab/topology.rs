//! # Building, probing and removing the lab
//!
//! Plain iproute2 commands (`ip -n NS ...`), each step idempotent: a link is
//! created only when missing, addresses/routes/neighbours use `replace`,
//! processes start only when their pid file does not name a live one.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::procs::Daemon;
use super::xdp_pass;
use super::*;

/// Runs a command; its stdout, or an error carrying its stderr.
pub(crate) fn checked(mut cmd: Command, desc: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::Command {
        cmd: desc.to_owned(),
        msg: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{e} (install it: `make deps` installs iproute2 and ethtool)")
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: desc.to_owned(),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    let mut c = Command::new("ip");
    c.args(args);
    checked(c, &format!("ip {}", args.join(" ")))
}

fn bridge(args: &[&str]) -> Result<String> {
    let mut c = Command::new("bridge");
    c.args(args);
    checked(c, &format!("bridge {}", args.join(" ")))
}

fn link_exists(ns: &str, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_ns(name: &str) -> Result<()> {
    if !netns::exists(name) {
        ip(&["netns", "add", name])?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Writes sysctls of the namespace (from a thread inside it: /proc/sys/net is per netns).
fn sysctls(ns: &str, kv: &[(&str, &str)]) -> Result<()> {
    let kv: Vec<(String, String)> = kv
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    netns::run(ns, move || -> Result<()> {
        for (k, v) in kv {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::write(&path, &v).map_err(io_ctx(format!("writing {path}")))?;
        }
        Ok(())
    })?
}

/// GRO on, so that the veth receives XDP_TX / redirected frames (DESIGN.md "Lab").
fn gro_on(ns: &str, dev: &str) -> Result<()> {
    netns::output(ns, "ethtool", &["-K", dev, "gro", "on"]).map(drop)
}

/// Settings of `xlb lab up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub lab: Lab,
    /// The xlb binary run as backend, attach and agent.
    pub xlb: PathBuf,
    /// Only the network and the backends: no data plane, no agents.
    pub topology_only: bool,
    /// Manifests to copy into the lab's directory (default: the embedded deploy/examples).
    pub manifests: Option<PathBuf>,
    /// How long to wait for backends and agents to be ready.
    pub ready_timeout: Duration,
}

/// What `up` wrote to `<state>/lab.json` (for `check` and the curious).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabInfo {
    pub prefix: String,
    pub nodes: u8,
    pub pods_per_node: u8,
    pub xlb: bool,
}

impl LabInfo {
    pub fn load(prefix: &str) -> Result<Self> {
        let path = state_dir(prefix).join("lab.json");
        let text = std::fs::read_to_string(&path).map_err(io_ctx(format!(
            "reading {} (is the lab up? `xlb lab up --prefix {prefix}`)",
            path.display()
        )))?;
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
    pub fn lab(&self) -> Result<Lab> {
        Lab::new(&self.prefix, self.nodes, self.pods_per_node)
    }
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Invalid(
            "the lab needs root (network namespaces, BPF); run it with sudo".into(),
        ));
    }
    Ok(())
}

/// Builds (or completes) the lab. Safe to run again on a running lab: it only
/// adds what is missing and restarts processes that died.
pub fn up(o: &UpOptions) -> Result<()> {
    require_root()?;
    let lab = &o.lab;
    let state = lab.state_dir();
    std::fs::create_dir_all(&state).map_err(io_ctx(format!("creating {}", state.display())))?;
    if let Ok(prev) = LabInfo::load(&lab.prefix) {
        if prev.nodes != lab.nodes || prev.pods_per_node != lab.pods_per_node {
            return Err(Error::Invalid(format!(
                "lab {} is up with {} nodes x {} pods; `xlb lab down --prefix {}` first",
                lab.prefix, prev.nodes, prev.pods_per_node, lab.prefix
            )));
        }
    }
    let info = LabInfo {
        prefix: lab.prefix.clone(),
        nodes: lab.nodes,
        pods_per_node: lab.pods_per_node,
        xlb: !o.topology_only,
    };
    std::fs::write(
        state.join("lab.json"),
        serde_json::to_string_pretty(&info).expect("plain struct"),
    )
    .map_err(io_ctx("writing lab.json"))?;

    underlay(lab)?;
    client(lab)?;
    for n in lab.node_numbers() {
        node(lab, n)?;
    }
    for (n, k) in lab.pods() {
        pod(lab, n, k)?;
    }
    install_manifests(lab, o.manifests.as_deref())?;
    for (n, k) in lab.pods() {
        start_backend(lab, &o.xlb, n, k)?;
    }
    for (n, k) in lab.pods() {
        wait_backend(lab, n, k, o.ready_timeout)?;
    }
    if !o.topology_only {
        ensure_bpffs()?;
        for n in lab.node_numbers() {
            start_agent(lab, &o.xlb, n)?;
        }
        for n in lab.node_numbers() {
            wait_agent(lab, n, o.ready_timeout)?;
        }
    }
    Ok(())
}

fn underlay(lab: &Lab) -> Result<()> {
    let ul = lab.ns_underlay();
    ensure_ns(&ul)?;
    if !link_exists(&ul, "br0") {
        ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"])?;
    }
    ip(&["-n", &ul, "link", "set", "br0", "up"])?;
    Ok(())
}

/// A veth from the underlay bridge (port `port`) to `eth0` of `ns`.
/// `receives_xdp_tx`: `ns` runs XDP on its eth0 (a node), so the bridge port
/// gets an XDP program to receive the frames it sends back (XDP_TX).
fn uplink(lab: &Lab, ns: &str, port: &str, mac: &str, receives_xdp_tx: bool) -> Result<()> {
    let ul = lab.ns_underlay();
    if !link_exists(ns, "eth0") {
        if link_exists(&ul, port) {
            ip(&["-n", &ul, "link", "del", port])?;
        }
        ip(&[
            "-n", &ul, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
    }
    ip(&["-n", &ul, "link", "set", port, "master", "br0", "up"])?;
    ip(&["-n", ns, "link", "set", "eth0", "address", mac, "up"])?;
    gro_on(&ul, port)?;
    gro_on(ns, "eth0")?;
    if receives_xdp_tx {
        xdp_pass::attach(&ul, port)?;
    }
    Ok(())
}

fn client(lab: &Lab) -> Result<()> {
    let c = lab.ns_client();
    ensure_ns(&c)?;
    uplink(lab, &c, "c0", "02:18:00:00:00:01", false)?;
    for a in [CLIENT_ADDR, CLIENT_ALT_ADDR] {
        ip(&[
            "-n",
            &c,
            "addr",
            "replace",
            &format!("{a}/24"),
            "dev",
            "eth0",
        ])?;
    }
    // Service addresses (ClusterIP, LoadBalancer, ExternalIP ranges) through node 1.
    ip(&[
        "-n",
        &c,
        "route",
        "replace",
        SERVICE_CIDR,
        "via",
        &node_addr(1).to_string(),
        "src",
        &CLIENT_ADDR.to_string(),
    ])?;
    Ok(())
}

fn node(lab: &Lab, n: u8) -> Result<()> {
    let ns = lab.ns_node(n);
    ensure_ns(&ns)?;
    sysctls(
        &ns,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            // Replies that xlb's tc program reverse-NATs to a NodePort source
            // carry the node's own address when they enter from a pod veth.
            ("net.ipv4.conf.all.accept_local", "1"),
            ("net.ipv4.conf.default.accept_local", "1"),
        ],
    )?;
    uplink(lab, &ns, &format!("n{n}"), &node_mac(n), true)?;
    let addr = node_addr(n).to_string();
    ip(&[
        "-n",
        &ns,
        "addr",
        "replace",
        &format!("{addr}/24"),
        "dev",
        UPLINK,
    ])?;
    // The pods' gateway: a local address answered by ARP on every pod veth.
    ip(&[
        "-n",
        &ns,
        "addr",
        "replace",
        &format!("{}/32", pod_gateway(n)),
        "dev",
        "lo",
    ])?;
    // flannel-style VXLAN: fixed MAC (the Node's VTEP MAC), no learning, static fdb/neigh.
    if !link_exists(&ns, VXLAN_DEV) {
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            VXLAN_DEV,
            "address",
            &vtep_mac(n),
            "mtu",
            &POD_MTU.to_string(),
            "type",
            "vxlan",
            "id",
            &VXLAN_VNI.to_string(),
            "local",
            &addr,
            "dev",
            UPLINK,
            "dstport",
            &VXLAN_PORT.to_string(),
            "nolearning",
        ])?;
    }
    ip(&["-n", &ns, "link", "set", VXLAN_DEV, "up"])?;
    ip(&[
        "-n",
        &ns,
        "addr",
        "replace",
        &format!("{}/32", vtep_addr(n)),
        "dev",
        VXLAN_DEV,
    ])?;
    for m in lab.node_numbers().filter(|&m| m != n) {
        // The underlay is static: permanent neighbours for the other nodes, so
        // xlb's fib lookup for the VXLAN next hop always finds one.
        ip(&[
            "-n",
            &ns,
            "neigh",
            "replace",
            &node_addr(m).to_string(),
            "lladdr",
            &node_mac(m),
            "dev",
            UPLINK,
            "nud",
            "permanent",
        ])?;
        let via = vtep_addr(m).to_string();
        ip(&[
            "-n",
            &ns,
            "route",
            "replace",
            &pod_cidr(m),
            "via",
            &via,
            "dev",
            VXLAN_DEV,
            "onlink",
        ])?;
        ip(&[
            "-n",
            &ns,
            "neigh",
            "replace",
            &via,
            "lladdr",
            &vtep_mac(m),
            "dev",
            VXLAN_DEV,
            "nud",
            "permanent",
        ])?;
        bridge(&[
            "-n",
            &ns,
            "fdb",
            "replace",
            &vtep_mac(m),
            "dev",
            VXLAN_DEV,
            "dst",
            &node_addr(m).to_string(),
            "self",
            "permanent",
        ])?;
    }
    Ok(())
}

/// Host-side name of pod `k`'s veth in its node namespace.
pub fn pod_veth(k: u8) -> String {
    format!("vethp{k}")
}

fn pod(lab: &Lab, n: u8, k: u8) -> Result<()> {
    let node = lab.ns_node(n);
    let pns = lab.ns_pod(n, k);
    ensure_ns(&pns)?;
    let veth = pod_veth(k);
    let mtu = POD_MTU.to_string();
    if !link_exists(&pns, "eth0") {
        if link_exists(&node, &veth) {
            ip(&["-n", &node, "link", "del", &veth])?;
        }
        ip(&[
            "-n", &node, "link", "add", &veth, "mtu", &mtu, "type", "veth", "peer", "name", "eth0",
            "mtu", &mtu, "netns", &pns,
        ])?;
    }
    let addr = pod_addr(n, k).to_string();
    let gw = pod_gateway(n).to_string();
    ip(&["-n", &node, "link", "set", &veth, "up"])?;
    ip(&[
        "-n",
        &node,
        "route",
        "replace",
        &format!("{addr}/32"),
        "dev",
        &veth,
        "src",
        &gw,
    ])?;
    ip(&["-n", &pns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        &pns,
        "addr",
        "replace",
        &format!("{addr}/32"),
        "dev",
        "eth0",
    ])?;
    ip(&[
        "-n", &pns, "route", "replace", &gw, "dev", "eth0", "scope", "link",
    ])?;
    ip(&[
        "-n", &pns, "route", "replace", "default", "via", &gw, "dev", "eth0",
    ])?;
    gro_on(&node, &veth)?;
    gro_on(&pns, "eth0")?;
    // The node's XDP may redirect frames into the pod's veth.
    xdp_pass::attach(&pns, "eth0")?;
    Ok(())
}

fn install_manifests(lab: &Lab, from: Option<&Path>) -> Result<()> {
    let dir = lab.manifests_dir();
    match from {
        None => manifests::install(&dir, lab.nodes),
        Some(src) => {
            std::fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
            let rd =
                std::fs::read_dir(src).map_err(io_ctx(format!("reading {}", src.display())))?;
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                let yaml = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
                let target = dir.join(e.file_name());
                if yaml && !target.exists() {
                    std::fs::copy(&p, &target)
                        .map_err(io_ctx(format!("copying {}", p.display())))?;
                }
            }
            Ok(())
        }
    }
}

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

fn start_backend(lab: &Lab, xlb: &Path, n: u8, k: u8) -> Result<()> {
    let args = [
        "backend".to_owned(),
        "--name".to_owned(),
        pod_name(n, k),
        "--listen".to_owned(),
        format!("0.0.0.0:{BACKEND_PORT}"),
        "--udp".to_owned(),
    ];
    backend_daemon(lab, n, k).start_tagged(&lab.prefix, xlb, &args, None)?;
    Ok(())
}

fn wait_backend(lab: &Lab, n: u8, k: u8, limit: Duration) -> Result<()> {
    let to = SocketAddrV4::new(pod_addr(n, k), BACKEND_PORT);
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
fn ensure_bpffs() -> Result<()> {
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

fn start_agent(lab: &Lab, xlb: &Path, n: u8) -> Result<()> {
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
fn wait_agent(lab: &Lab, n: u8, limit: Duration) -> Result<()> {
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

/// What `down` removed.
#[derive(Debug, Default, Serialize)]
pub struct DownReport {
    pub processes: usize,
    pub namespaces: Vec<String>,
    pub pin_dirs: Vec<PathBuf>,
}

/// Removes everything a lab with `prefix` may have made, whatever state it is
/// in: processes (by namespace and by the lab tag in their environment), pin
/// directories, namespaces, the state directory.
pub fn down(prefix: &str) -> Result<DownReport> {
    validate_prefix(prefix)?;
    require_root()?;
    let mut report = DownReport::default();
    let nss: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| is_lab_ns(prefix, n))
        .collect();
    let inodes: Vec<u64> = nss.iter().filter_map(|n| netns::inode(n)).collect();
    report.processes = procs::stop_all(&inodes, prefix, Duration::from_secs(3));
    if let Ok(rd) = std::fs::read_dir(BPFFS_ROOT) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            if name.to_str().is_some_and(|s| is_lab_pin_dir(prefix, s)) {
                let p = e.path();
                std::fs::remove_dir_all(&p).map_err(io_ctx(format!("removing {}", p.display())))?;
                report.pin_dirs.push(p);
            }
        }
    }
    // The agents' Service-names files (/run/xlb/<flattened pin dir>.names.json)
    // outlive their pin directories unless removed here.
    if let Ok(rd) = std::fs::read_dir(crate::names::STATE_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let lab_file = name
                .to_str()
                .and_then(|s| s.strip_prefix("sys_fs_bpf_"))
                .and_then(|s| s.strip_suffix(".names.json"))
                .is_some_and(|s| is_lab_pin_dir(prefix, s));
            if lab_file {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut failed = Vec::new();
    for ns in nss {
        match ip(&["netns", "del", &ns]) {
            Ok(_) => report.namespaces.push(ns),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let state = state_dir(prefix);
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(io_ctx(format!("removing {}", state.display())))?;
    }
    if !failed.is_empty() {
        return Err(Error::Command {
            cmd: "ip netns del".into(),
            msg: failed.join("; "),
        });
    }
    Ok(report)
}

/// One probe of `xlb lab check`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    pub probe: String,
    pub from: String,
    pub to: String,
    pub expect: String,
    pub got: String,
    pub ok: bool,
}

enum Src {
    Client,
    Pod(u8, u8),
}

struct Probe {
    name: &'static str,
    src: Src,
    to: SocketAddrV4,
    udp: bool,
    /// Backends allowed to answer.
    expect: Vec<String>,
    /// Whether the backend must see the source's own address.
    client_visible: bool,
}

fn run_probe(lab: &Lab, p: &Probe) -> CheckRow {
    let (ns, from_name, from_addr) = match p.src {
        Src::Client => (lab.ns_client(), "client".to_owned(), CLIENT_ADDR),
        Src::Pod(n, k) => (lab.ns_pod(n, k), pod_name(n, k), pod_addr(n, k)),
    };
    let (to, udp) = (p.to, p.udp);
    let t = Duration::from_secs(2);
    let res = netns::run(&ns, move || {
        if udp {
            probe::udp(None, to, t).and_then(|(r, src)| {
                if src == std::net::SocketAddr::V4(to) {
                    Ok(r)
                } else {
                    Err(std::io::Error::other(format!("reply from {src}")))
                }
            })
        } else {
            probe::tcp(None, to, t)
        }
    });
    let (got, ok) = match res {
        Err(e) => (e.to_string(), false),
        Ok(Err(e)) => (format!("error: {e}"), false),
        Ok(Ok(r)) => {
            let who = p.expect.contains(&r.name);
            let seen = !p.client_visible || *r.peer.ip() == from_addr;
            (format!("{} saw {}", r.name, r.peer.ip()), who && seen)
        }
    };
    CheckRow {
        probe: p.name.to_owned(),
        from: from_name,
        to: format!("{}{}", p.to, if p.udp { "/udp" } else { "" }),
        expect: p.expect.join("|"),
        got,
        ok,
    }
}

/// Probes a running lab over real sockets; every row must be `ok`.
///
/// Always: pod to pod across the overlay. With xlb: NodePort local and remote
/// (the backend must see the client's address), ClusterIP local and remote
/// from a pod, LoadBalancer ingress, ExternalIP, UDP NodePort (the reply must
/// come from the address dialled), per deploy/examples.
pub fn check(prefix: &str) -> Result<Vec<CheckRow>> {
    require_root()?;
    let info = LabInfo::load(prefix)?;
    let lab = info.lab()?;
    let n1 = node_addr(1);
    let mut probes = Vec::new();
    let last = lab.nodes;
    if last > 1 {
        probes.push(Probe {
            name: "pod-to-pod-overlay",
            src: Src::Pod(1, 1),
            to: SocketAddrV4::new(pod_addr(last, 1), BACKEND_PORT),
            udp: false,
            expect: vec![pod_name(last, 1)],
            client_visible: true,
        });
    }
    if info.xlb && lab.nodes >= 2 {
        let web: Vec<String> = [(1, 1), (1, 2), (2, 1), (2, 2)]
            .into_iter()
            .filter(|&(_, k)| k <= lab.pods_per_node)
            .map(|(n, k)| pod_name(n, k))
            .collect();
        let vip = |a: [u8; 4], port| SocketAddrV4::new(Ipv4Addr::from(a), port);
        probes.push(Probe {
            name: "nodeport-local",
            src: Src::Client,
            to: SocketAddrV4::new(n1, 30081),
            udp: false,
            expect: vec![pod_name(1, 1)],
            client_visible: true,
        });
        probes.push(Probe {
            name: "nodeport-remote",
            src: Src::Client,
            to: SocketAddrV4::new(n1, 30082),
            udp: false,
            expect: vec![pod_name(2, 1)],
            client_visible: true,
        });
        if lab.pods_per_node >= 2 {
            probes.push(Probe {
                name: "clusterip-local",
                src: Src::Pod(1, 2),
                to: vip([10, 96, 0, 11], 80),
                udp: false,
                expect: vec![pod_name(1, 1)],
                client_visible: true,
            });
            probes.push(Probe {
                name: "clusterip-remote",
                src: Src::Pod(1, 2),
                to: vip([10, 96, 0, 12], 80),
                udp: false,
                expect: vec![pod_name(2, 1)],
                client_visible: true,
            });
        }
        probes.push(Probe {
            name: "loadbalancer-ip",
            src: Src::Client,
            to: vip([10, 96, 100, 17], 80),
            udp: false,
            expect: web.clone(),
            client_visible: true,
        });
        probes.push(Probe {
            name: "external-ip",
            src: Src::Client,
            to: vip([10, 96, 200, 18], 80),
            udp: false,
            expect: web.clone(),
            client_visible: true,
        });
        probes.push(Probe {
            name: "nodeport-udp",
            src: Src::Client,
            to: SocketAddrV4::new(n1, 30080),
            udp: true,
            expect: web,
            client_visible: true,
        });
    }
    Ok(probes.iter().map(|p| run_probe(&lab, p)).collect())
}
