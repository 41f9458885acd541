//! The bench topology: three namespaces joined by two veth pairs,
//! client `xc0` <-> `xn0` node `xn1` <-> `xs0` sink ("remote node"), removed on drop.
//!
//! ```text
//!  client ns              node ns (xlb on xn0)              sink ns
//!  xc0 198.18.0.1/28 ---- xn0 198.18.0.2/28
//!                         xn1 198.18.0.17/28 -------------- xs0 198.18.0.18/28
//! ```
//! Flow sources live in 198.18.0.64/26 (routed via xc0), pods of the client's
//! node in 10.244.2.0/24 (via xc0). The remote node 198.18.0.18 and its pods
//! 10.244.1.0/24 are reached, by [`Egress`]:
//! - `same`: out of the ingress veth xn0 (one uplink, as on a real node: the
//!   remote node shares the client's underlay; xlb answers with XDP_TX and the
//!   frames arrive at the client-side sink on xc0);
//! - `other`: out of xn1 to the sink namespace (xlb redirects to xn1).
//!
//! Neighbours are static so nothing waits for ARP, and every link has as many
//! queues as the machine has CPUs so each generator CPU keeps its own queue.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NODE_SINK_SIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 17);
pub const REMOTE_NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 18);
pub const CLIENTS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 64);
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

impl Egress {
    /// The node's uplink towards the remote node.
    pub fn dev(self) -> &'static str {
        match self {
            Egress::Same => N0,
            Egress::Other => N1,
        }
    }

    /// MAC of the remote node's next hop (the sink that receives its frames).
    pub fn remote_mac(self) -> [u8; 6] {
        match self {
            Egress::Same => MAC_C0,
            Egress::Other => MAC_S0,
        }
    }
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

fn mac(m: &[u8; 6]) -> String {
    xlb_bpf::wire::mac_string(m)
}

/// The three namespaces; deleted (with their links) on drop.
pub struct Topo {
    pub client: String,
    pub node: String,
    pub sink: String,
    pub queues: usize,
    pub egress: Egress,
    pub ifindex_c0: u32,
    pub ifindex_n0: u32,
    pub ifindex_n1: u32,
    pub ifindex_s0: u32,
    created: Vec<String>,
}

impl Topo {
    /// Builds the topology with `queues` queues per link.
    pub fn new(queues: usize, egress: Egress) -> Result<Self> {
        let tag = xlb_loader::testutil::unique_name("");
        let mut t = Topo {
            client: format!("xlbb-c-{tag}"),
            node: format!("xlbb-n-{tag}"),
            sink: format!("xlbb-s-{tag}"),
            queues: queues.max(1),
            egress,
            ifindex_c0: 0,
            ifindex_n0: 0,
            ifindex_n1: 0,
            ifindex_s0: 0,
            created: Vec::new(),
        };
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
        t.build().context("building the bench topology")?;
        Ok(t)
    }

    fn ip(&self, ns: &str, args: &str) -> Result<String> {
        let mut v = vec!["-n", ns];
        v.extend(args.split_whitespace());
        sh("ip", &v)
    }

    fn build(&mut self) -> Result<()> {
        let q = self.queues.to_string();
        let (c, n, s) = (self.client.clone(), self.node.clone(), self.sink.clone());
        for (ns_a, a, ns_b, b) in [(&c, C0, &n, N0), (&n, N1, &s, S0)] {
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
            (&c, C0, MAC_C0, "198.18.0.1/28"),
            (&n, N0, MAC_N0, "198.18.0.2/28"),
            (&n, N1, MAC_N1, "198.18.0.17/28"),
            (&s, S0, MAC_S0, "198.18.0.18/28"),
        ] {
            self.ip(ns, &format!("link set {dev} address {} mtu {MTU}", mac(&m)))?;
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
        for dev in [N0, N1] {
            for k in ["rp_filter=0", "accept_local=1", "send_redirects=0"] {
                let kv = format!("net.ipv4.conf.{dev}.{k}");
                sh("ip", &["netns", "exec", &n, "sysctl", "-qw", &kv])?;
            }
        }
        self.ip(
            &n,
            &format!(
                "neigh replace {CLIENT} lladdr {} dev {N0} nud permanent",
                mac(&MAC_C0)
            ),
        )?;
        let up = self.egress.dev();
        if self.egress == Egress::Same {
            self.ip(&n, &format!("route add {REMOTE_NODE}/32 dev {N0}"))?;
        }
        self.ip(
            &n,
            &format!(
                "neigh replace {REMOTE_NODE} lladdr {} dev {up} nud permanent",
                mac(&self.egress.remote_mac())
            ),
        )?;
        self.ip(&n, &format!("route add {CLIENTS}/26 via {CLIENT} dev {N0}"))?;
        self.ip(
            &n,
            &format!("route add {CLIENT_PODS}/24 via {CLIENT} dev {N0}"),
        )?;
        self.ip(
            &n,
            &format!("route add {REMOTE_PODS}/24 via {REMOTE_NODE} dev {up}"),
        )?;
        // veth peers receive XDP_TX/redirected frames only with NAPI: GRO on
        // everywhere (the sink and data plane also attach XDP programs)
        for (ns, dev) in [(&c, C0), (&n, N0), (&n, N1), (&s, S0)] {
            sh(
                "ip",
                &["netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"],
            )?;
        }
        self.ifindex_c0 = self.ifindex(&c, C0)?;
        self.ifindex_n0 = self.ifindex(&n, N0)?;
        self.ifindex_n1 = self.ifindex(&n, N1)?;
        self.ifindex_s0 = self.ifindex(&s, S0)?;
        Ok(())
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
        for ns in self.created.drain(..).rev() {
            if let Err(e) = sh("ip", &["netns", "del", &ns]) {
                tracing::warn!("removing netns {ns}: {e:#}");
            }
        }
    }
}
