//! The bench topology: three namespaces joined by two veth pairs,
//! client `xc0` <-> `xn0` node `xn1` <-> `xs0` sink ("remote node"), removed on drop.
//!
//! ```text
//!  client ns              node ns (xlb on xn0)              sink ns
//!  xc0 198.18.0.1/28 ---- xn0 198.18.0.2/28
//!                         xn1 198.18.0.17/28 -------------- xs0 198.18.0.18/28
//! ```
//! Flow sources live in 198.18.0.64/26 (routed via xc0; `--new-flows`: in
//! 100.64.0.0/10, also via xc0), pods of the client's
//! node in 10.244.2.0/24 (via xc0). The remote node 198.18.0.18 and its pods
//! 10.244.1.0/24 are reached, by [`Egress`]:
//! - `same`: out of the ingress veth xn0 (one uplink, as on a real node: the
//!   remote node shares the client's underlay; xlb answers with XDP_TX and the
//!   frames arrive at the client-side sink on xc0);
//! - `other`: out of xn1 to the sink namespace (xlb redirects to xn1).
//!
//! Neighbours are static so nothing waits for ARP, and every link has as many
//! queues as the machine has CPUs so each generator CPU keeps its own queue.
//!
//! With real NICs ([`Nics`]: `--iface IF --peer-iface P`, two ports cabled to
//! each other) no xc0/xn0 pair is created: P is moved into the client
//! namespace and IF into the node namespace and configured like xc0/xn0 (same
//! addresses, MTU, static neighbours with the ports' real MACs, the queues
//! they have). On drop — also after an error or Ctrl-C — they are moved back to
//! the namespace the bench runs in, under their own names (never renamed), with
//! their MTU, GRO (veth) and up/down state restored. Ports with an IPv4 or
//! global IPv6 address are refused: moving them would drop those addresses.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::nic::{nic_info, NicInfo, Nics};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NODE_SINK_SIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 17);
pub const REMOTE_NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 18);
pub const CLIENTS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 64);
/// Sources of `--new-flows` (100.64.0.0/10, routed via xc0).
pub const NEW_FLOW_SOURCES: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
pub const REMOTE_PODS: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
pub const CLIENT_PODS: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 0);
/// Link MTU: room for VXLAN around a 1500-byte frame.
pub const MTU: u16 = 1600;

pub const MAC_C0: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x01];
pub const MAC_N0: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x02];
pub const MAC_N1: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x11];
pub const MAC_S0: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x12];

pub const C0: &str = "xc0";
pub const N0: &str = "xn0";
pub const N1: &str = "xn1";
pub const S0: &str = "xs0";

/// Where the node sends traffic for the remote node and its pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Egress {
    /// Back out of the ingress interface (XDP_TX), to the client-side sink.
    Same,
    /// Out of the other interface (XDP_REDIRECT), to the sink namespace.
    Other,
}

/// Runs a command, failing with its stderr.
pub fn sh(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running {prog} (is it installed? `make deps`)"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn mac(m: &[u8; 6]) -> String {
    xlb_bpf::wire::mac_string(m)
}

/// A port moved into one of the bench's namespaces, to restore on drop.
struct Moved {
    info: NicInfo,
    ns: String,
    /// GRO setting before the run (veth ports only; None = untouched).
    gro: Option<bool>,
}

/// The three namespaces; deleted (with their links) on drop, after real ports
/// are moved back.
pub struct Topo {
    pub client: String,
    pub node: String,
    pub sink: String,
    pub queues: usize,
    /// Receive queues of the node's real port (0 with veths).
    pub nic_queues: usize,
    pub egress: Egress,
    /// Real ports (`--iface`) instead of the xc0/xn0 veth pair.
    pub real: bool,
    /// Name of the client's port (xc0 or the peer NIC) in the client namespace.
    pub dev_c0: String,
    /// Name of the node's ingress port (xn0 or the NIC) in the node namespace.
    pub dev_n0: String,
    pub mac_c0: [u8; 6],
    pub mac_n0: [u8; 6],
    pub ifindex_c0: u32,
    pub ifindex_n0: u32,
    pub ifindex_n1: u32,
    pub ifindex_s0: u32,
    created: Vec<String>,
    moved: Vec<Moved>,
}

impl Topo {
    /// Builds the topology with `queues` queues per veth link, on real ports
    /// when `nics` is given.
    pub fn new(queues: usize, egress: Egress, nics: Option<&Nics>) -> Result<Self> {
        // check the ports before touching anything
        let real = match nics {
            Some(n) => {
                let i = nic_info("--iface", &n.iface)?;
                let p = nic_info("--peer-iface", &n.peer)?;
                if i.ifindex == p.ifindex {
                    bail!(
                        "--iface {} and --peer-iface {} are the same interface: give the node's \
                         port and the port cabled to it",
                        n.iface,
                        n.peer
                    );
                }
                if i.name == N1 {
                    bail!("--iface {N1}: the bench creates a veth of that name beside it; rename the port");
                }
                Some((i, p))
            }
            None => None,
        };
        // Unique to this process and topology: two benches may run at once.
        let tag = {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            format!("{:x}{n:x}", std::process::id() % 100_000)
        };
        let mut t = Topo {
            client: format!("xlbb-c-{tag}"),
            node: format!("xlbb-n-{tag}"),
            sink: format!("xlbb-s-{tag}"),
            queues: queues.max(1),
            nic_queues: 0,
            egress,
            real: real.is_some(),
            dev_c0: C0.into(),
            dev_n0: N0.into(),
            mac_c0: MAC_C0,
            mac_n0: MAC_N0,
            ifindex_c0: 0,
            ifindex_n0: 0,
            ifindex_n1: 0,
            ifindex_s0: 0,
            created: Vec::new(),
            moved: Vec::new(),
        };
        if let Some((i, p)) = &real {
            t.dev_c0 = p.name.clone();
            t.dev_n0 = i.name.clone();
            t.mac_c0 = p.mac;
            t.mac_n0 = i.mac;
            t.nic_queues = i.rx_queues;
        }
        for ns in [t.client.clone(), t.node.clone(), t.sink.clone()] {
            sh("ip", &["netns", "add", &ns])?;
            t.created.push(ns.clone());
            // No IPv6 on the bench links: router solicitations and MLD reports
            // would otherwise be counted by the baselines beside the generator's
            // frames (received > sent).
            for kv in [
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ] {
                sh("ip", &["netns", "exec", &ns, "sysctl", "-qw", kv])?;
            }
        }
        if let Some((i, p)) = real {
            t.take(p, t.client.clone())?;
            t.take(i, t.node.clone())?;
        }
        t.build().context("building the bench topology")?;
        Ok(t)
    }

    /// Moves a real port into `ns` (recorded first thing after the move, so
    /// drop returns it whatever fails next).
    fn take(&mut self, info: NicInfo, ns: String) -> Result<()> {
        let name = info.name.clone();
        sh("ip", &["link", "set", "dev", &name, "netns", &ns])
            .with_context(|| format!("moving {name} into the bench namespace {ns}"))?;
        self.moved.push(Moved {
            info,
            ns: ns.clone(),
            gro: None,
        });
        Ok(())
    }

    /// Current GRO setting of `dev` in `ns` (`ethtool -k`).
    fn gro(ns: &str, dev: &str) -> Option<bool> {
        let out = Self::exec(ns, "ethtool", &["-k", dev]).ok()?;
        out.lines().find_map(|l| {
            l.trim()
                .strip_prefix("generic-receive-offload:")
                .map(|v| v.trim().starts_with("on"))
        })
    }

    /// Moves the real ports back where they came from (this process's
    /// namespace) and restores what the run changed.
    fn give_back(&mut self) {
        let home = std::process::id().to_string();
        for m in self.moved.drain(..).rev() {
            let name = &m.info.name;
            if let Err(e) = sh("ip", &["-n", &m.ns, "link", "set", "dev", name, "down"]) {
                tracing::warn!("setting {name} down in {}: {e:#}", m.ns);
            }
            if let Some(g) = m.gro {
                let _ = Self::exec(
                    &m.ns,
                    "ethtool",
                    &["-K", name, "gro", if g { "on" } else { "off" }],
                );
            }
            if let Err(e) = sh(
                "ip",
                &["-n", &m.ns, "link", "set", "dev", name, "netns", &home],
            ) {
                eprintln!(
                    "warning: could not move {name} back from namespace {}: {e:#} (deleting the \
                     namespace returns a physical NIC to the initial namespace; a veth is deleted)",
                    m.ns
                );
                continue;
            }
            let mtu = m.info.mtu.to_string();
            let mut args = vec!["link", "set", "dev", name.as_str(), "mtu", &mtu];
            if m.info.up {
                args.push("up");
            }
            if let Err(e) = sh("ip", &args) {
                eprintln!(
                    "warning: restoring {name} (mtu {mtu}, up {}): {e:#}",
                    m.info.up
                );
            }
        }
    }

    pub(super) fn ip(&self, ns: &str, args: &str) -> Result<String> {
        let mut v = vec!["-n", ns];
        v.extend(args.split_whitespace());
        sh("ip", &v)
    }

    fn build(&mut self) -> Result<()> {
        let q = self.queues.to_string();
        let (c, n, s) = (self.client.clone(), self.node.clone(), self.sink.clone());
        let (dc0, dn0) = (self.dev_c0.clone(), self.dev_n0.clone());
        let (dc0, dn0) = (dc0.as_str(), dn0.as_str());
        let mut pairs = vec![(&n, N1, &s, S0)];
        if !self.real {
            pairs.insert(0, (&c, C0, &n, N0));
        }
        for (ns_a, a, ns_b, b) in pairs {
            sh(
                "ip",
                &[
                    "-n",
                    ns_a,
                    "link",
                    "add",
                    a,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    b,
                    "netns",
                    ns_b,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                ],
            )?;
        }
        for (ns, dev, m, addr) in [
            (&c, dc0, self.mac_c0, "198.18.0.1/28"),
            (&n, dn0, self.mac_n0, "198.18.0.2/28"),
            (&n, N1, MAC_N1, "198.18.0.17/28"),
            (&s, S0, MAC_S0, "198.18.0.18/28"),
        ] {
            // real ports keep their own MAC
            if self.real && (dev == dc0 || dev == dn0) {
                self.ip(ns, &format!("link set dev {dev} mtu {MTU}"))
                    .with_context(|| {
                        format!(
                            "setting MTU {MTU} on {dev} (room for VXLAN around 1500-byte frames)"
                        )
                    })?;
            } else {
                self.ip(ns, &format!("link set {dev} address {} mtu {MTU}", mac(&m)))?;
            }
            self.ip(ns, &format!("addr add {addr} dev {dev}"))?;
            self.ip(ns, &format!("link set {dev} up"))?;
            self.ip(ns, "link set lo up")?;
        }
        // node: forward, accept what xlb hands the stack, static neighbours
        for kv in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.accept_local=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
        ] {
            sh("ip", &["netns", "exec", &n, "sysctl", "-qw", kv])?;
        }
        for dev in [dn0, N1] {
            for k in ["rp_filter=0", "accept_local=1", "send_redirects=0"] {
                // sysctl keys spell a dot in an interface name as '/'
                let kv = format!("net.ipv4.conf.{}.{k}", dev.replace('.', "/"));
                sh("ip", &["netns", "exec", &n, "sysctl", "-qw", &kv])?;
            }
        }
        self.ip(
            &n,
            &format!(
                "neigh replace {CLIENT} lladdr {} dev {dn0} nud permanent",
                mac(&self.mac_c0)
            ),
        )?;
        let up = match self.egress {
            Egress::Same => dn0,
            Egress::Other => N1,
        };
        if self.egress == Egress::Same {
            self.ip(&n, &format!("route add {REMOTE_NODE}/32 dev {dn0}"))?;
        }
        self.ip(
            &n,
            &format!(
                "neigh replace {REMOTE_NODE} lladdr {} dev {up} nud permanent",
                mac(&self.remote_mac())
            ),
        )?;
        self.ip(
            &n,
            &format!("route add {CLIENTS}/26 via {CLIENT} dev {dn0}"),
        )?;
        self.ip(
            &n,
            &format!("route add {NEW_FLOW_SOURCES}/10 via {CLIENT} dev {dn0}"),
        )?;
        self.ip(
            &n,
            &format!("route add {CLIENT_PODS}/24 via {CLIENT} dev {dn0}"),
        )?;
        self.ip(
            &n,
            &format!("route add {REMOTE_PODS}/24 via {REMOTE_NODE} dev {up}"),
        )?;
        // veth peers receive XDP_TX/redirected frames only with NAPI: GRO on
        // everywhere (the sink and data plane also attach XDP programs); real
        // ports: only if they are veths (a stand-in cable), restored on drop
        let mut gro = vec![
            (c.clone(), C0),
            (n.clone(), N0),
            (n.clone(), N1),
            (s.clone(), S0),
        ];
        if self.real {
            gro.drain(..2);
            for m in &mut self.moved {
                if m.info.veth {
                    m.gro = Self::gro(&m.ns, &m.info.name);
                    sh(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            &m.ns,
                            "ethtool",
                            "-K",
                            &m.info.name,
                            "gro",
                            "on",
                        ],
                    )?;
                }
            }
        }
        for (ns, dev) in gro {
            sh(
                "ip",
                &["netns", "exec", &ns, "ethtool", "-K", dev, "gro", "on"],
            )?;
        }
        self.ifindex_c0 = self.ifindex(&c, dc0)?;
        self.ifindex_n0 = self.ifindex(&n, dn0)?;
        self.ifindex_n1 = self.ifindex(&n, N1)?;
        self.ifindex_s0 = self.ifindex(&s, S0)?;
        Ok(())
    }

    /// MAC of the remote node's next hop (the sink that receives its frames).
    pub fn remote_mac(&self) -> [u8; 6] {
        match self.egress {
            Egress::Same => self.mac_c0,
            Egress::Other => MAC_S0,
        }
    }

    /// Driver of the node's port (for messages).
    pub fn driver(&self, dev: &str) -> String {
        self.moved
            .iter()
            .find(|m| m.info.name == dev)
            .map_or_else(|| "veth".into(), |m| m.info.driver.clone())
    }

    fn ifindex(&self, ns: &str, dev: &str) -> Result<u32> {
        let out = self.ip(ns, &format!("-o link show {dev}"))?;
        out.split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("ifindex of {dev} in {ns}"))
    }

    pub fn path(ns: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(ns)
    }

    /// Runs `f` on a thread that entered namespace `ns` (netlink attaches,
    /// ifindex-relative calls).
    pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let path = Self::path(ns);
        std::thread::scope(|s| {
            s.spawn(move || {
                xlb_pktgen::enter_netns(&path)?;
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {ns} panicked"))?
        })
    }

    /// Runs a command inside `ns`.
    pub fn exec(ns: &str, prog: &str, args: &[&str]) -> Result<String> {
        let mut v = vec!["netns", "exec", ns, prog];
        v.extend_from_slice(args);
        sh("ip", &v)
    }

    /// Feeds `input` to a command's stdin inside `ns` (iptables-restore, nft -f -).
    pub fn exec_stdin(ns: &str, prog: &str, args: &[&str], input: &str) -> Result<()> {
        use std::io::Write;
        let mut v = vec!["netns", "exec", ns, prog];
        v.extend_from_slice(args);
        let mut child = Command::new("ip")
            .args(&v)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running {prog}"))?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())
            .with_context(|| format!("feeding {prog}"))?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{prog}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        Ok(())
    }

    /// Per-queue XDP counters of a veth (`ethtool -S`): `rx_queue_N_<name>`.
    pub fn xdp_queue_stats(ns: &str, dev: &str, name: &str) -> Result<Vec<u64>> {
        let out = Self::exec(ns, "ethtool", &["-S", dev])?;
        let mut v = Vec::new();
        for line in out.lines() {
            let Some((k, val)) = line.trim().split_once(':') else {
                continue;
            };
            let Some(rest) = k.strip_prefix("rx_queue_") else {
                continue;
            };
            let Some((q, stat)) = rest.split_once('_') else {
                continue;
            };
            if stat != name {
                continue;
            }
            let (Ok(q), Ok(val)) = (q.parse::<usize>(), val.trim().parse::<u64>()) else {
                continue;
            };
            if v.len() <= q {
                v.resize(q + 1, 0);
            }
            v[q] = val;
        }
        if v.is_empty() {
            bail!("ethtool -S {dev}: no rx_queue_*_{name} counters");
        }
        Ok(v)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.give_back();
        for ns in self.created.drain(..).rev() {
            if let Err(e) = sh("ip", &["netns", "del", &ns]) {
                tracing::warn!("removing netns {ns}: {e:#}");
            }
        }
    }
}
