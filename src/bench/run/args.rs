//! The arguments of `xlb bench run`, checked by the parser: ranges by
//! `value_parser`, the sweep and `--seconds` by their own parsers.

use std::path::PathBuf;

use clap::ValueEnum;

use super::nic::Nics;
use super::topo::Egress;

/// What the node does with the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// NodePort to a remote backend: DNAT + VXLAN encap + transmit (xlb).
    NodeportRemote,
    /// nodeport-remote over IPv6: IPv6 NodePort, IPv6 backend, VXLAN over IPv6 (xlb).
    /// IPv6 frames need --size 80 (UDP) / 96 (TCP) at least.
    #[value(name = "nodeport-remote-v6")]
    NodeportRemoteV6,
    /// VXLAN-encapsulated ClusterIP traffic from another node: decap + DNAT + re-encap (xlb).
    ClusteripDecap,
    /// clusterip-decap over IPv6: VXLAN over IPv6 in and out (xlb). --size 152 or more.
    #[value(name = "clusterip-decap-v6")]
    ClusteripDecapV6,
    /// Replies from a remote backend: decap + reverse NAT (xlb, ct reverse entries pre-filled).
    ReplyRevnat,
    /// kube-proxy iptables mode: the same Services as DNAT rules, kernel forwarding.
    Iptables,
    /// kube-proxy nftables mode: verdict maps + DNAT, kernel forwarding.
    Nftables,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NodeportRemote => "nodeport-remote",
            Scenario::NodeportRemoteV6 => "nodeport-remote-v6",
            Scenario::ClusteripDecap => "clusterip-decap",
            Scenario::ClusteripDecapV6 => "clusterip-decap-v6",
            Scenario::ReplyRevnat => "reply-revnat",
            Scenario::Iptables => "iptables",
            Scenario::Nftables => "nftables",
        }
    }

    pub(super) fn is_xlb(self) -> bool {
        !matches!(self, Scenario::Iptables | Scenario::Nftables)
    }

    /// Whether its frames are IPv6.
    pub fn is_v6(self) -> bool {
        matches!(
            self,
            Scenario::NodeportRemoteV6 | Scenario::ClusteripDecapV6
        )
    }
}

/// The packet's L4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Udp,
    /// TCP SYNs.
    TcpSyn,
    /// TCP ACKs of established connections.
    TcpAck,
}

/// One sweep axis and its points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep {
    pub axis: Axis,
    pub points: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    Flows,
    Services,
}

impl std::str::FromStr for Sweep {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or("expected flows=1,1000,... or services=1,100,...")?;
        let axis = match k {
            "flows" => Axis::Flows,
            "services" => Axis::Services,
            _ => return Err(format!("unknown sweep axis {k:?}: flows or services")),
        };
        // the same bounds as --flows and --services
        let max = match axis {
            Axis::Flows => 1_000_000,
            Axis::Services => 100_000,
        };
        let points = v
            .split(',')
            .map(|p| {
                let p = p.trim().replace('_', "");
                let n: u32 = p.parse().map_err(|_| format!("bad sweep point {p:?}"))?;
                if n == 0 {
                    return Err("sweep points start at 1".to_string());
                }
                if n > max {
                    return Err(format!("sweep point {n} above {max}"));
                }
                Ok(n)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if points.is_empty() {
            return Err("empty sweep".into());
        }
        Ok(Sweep { axis, points })
    }
}

/// Live traffic through a veth topology (or two cabled NIC ports): per-core Mpps, latency, baselines.
///
/// Examples:
///   xlb bench run --scenario nodeport-remote --cores 1 --seconds 3
///   xlb bench run --scenario nodeport-remote-v6 --size 80
///   xlb bench run --scenario clusterip-decap-v6 --size 152
///   xlb bench run --scenario iptables --json
///   xlb bench run --scenario nodeport-remote --sweep services=1,1000,100000 --svg services.svg
///   xlb bench run --scenario nodeport-remote --iface enp1s0f0 --peer-iface enp1s0f1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// What the node does with the traffic.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Generator cores (threads pinned to CPUs 0..N), at most the machine's CPUs.
    #[arg(long, default_value_t = 1, value_parser = parse_cores)]
    pub cores: u32,
    /// Distinct flows (source address/port pairs), 1..=1000000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub flows: u32,
    /// Services in the maps (or rules), 1..=100000; traffic goes to the middle one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub services: u32,
    /// Frame size in bytes (without FCS), 64..=1500; VXLAN/TCP templates need more.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(64..=1500))]
    pub size: u32,
    /// Seconds per measured phase (each baseline and the scenario), in (0, 3600].
    #[arg(long, default_value_t = 3.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// L4 of the generated packets.
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    pub proto: ProtoArg,
    /// Total packets per second (paced); default as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Frames per live-frames batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch: u32,
    /// Where the node sends traffic for the remote node: `same` = back out of
    /// its ingress veth (one uplink; XDP_TX), `other` = out of a second veth to
    /// the sink namespace (XDP_REDIRECT).
    #[arg(long, value_enum, default_value_t = Egress::Same)]
    pub egress: Egress,
    /// Real NICs instead of the client/node veth pair: IF is the node's port
    /// (xlb, the baselines and iptables attach there), --peer-iface P the port
    /// cabled to it (the generator sends from it, the sink counts on it). Both
    /// are moved into the bench's namespaces for the run and moved back after,
    /// also on error or Ctrl-C; ports with an IPv4 or global IPv6 address are
    /// refused (the move would drop it). Needs drivers with native XDP.
    ///
    /// Example: --iface enp1s0f0 --peer-iface enp1s0f1
    #[arg(long, value_name = "IF", requires = "peer_iface")]
    pub iface: Option<String>,
    /// With --iface: the port cabled to the node's port (see --iface).
    #[arg(long, value_name = "P", requires = "iface")]
    pub peer_iface: Option<String>,
    /// Every generated packet starts a flow never seen before (TCP SYN with
    /// --proto tcp-syn, or UDP): sources from a per-CPU counter over
    /// 100.64.0.0/10 and 1024 ports, never repeating within a run. Reports new
    /// flows per second per core and the connection-tracking entries left
    /// (xlb's ct map, or the kernel's conntrack for iptables/nftables).
    /// Replaces --flows; not with reply-revnat or a flows sweep.
    #[arg(long, conflicts_with = "flows")]
    pub new_flows: bool,
    /// Sweep one axis: flows=1,1000,1000000 or services=1,1000,100000 (one row per point).
    #[arg(long)]
    pub sweep: Option<Sweep>,
    /// With --sweep: write an SVG plot of Mpps per point here.
    #[arg(long, requires = "sweep")]
    pub svg: Option<PathBuf>,
    /// Measure every phase this many times (interleaved) and report the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub repeat: u32,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The two cabled ports of `--iface`/`--peer-iface` (clap makes each
    /// require the other; it cannot compare their values).
    pub fn nics(&self) -> Result<Option<Nics>, String> {
        match (&self.iface, &self.peer_iface) {
            (Some(i), Some(p)) if i == p => Err(format!(
                "--iface and --peer-iface are both {i}: give two ports cabled to each other"
            )),
            (Some(i), Some(p)) => Ok(Some(Nics {
                iface: i.clone(),
                peer: p.clone(),
            })),
            _ => Ok(None),
        }
    }

    /// Combinations the parser cannot refuse by itself.
    pub fn check(&self) -> Result<(), String> {
        if self.new_flows && self.scenario == Scenario::ReplyRevnat {
            return Err(
                "--new-flows: reply-revnat replays pre-filled reverse entries; use nodeport-remote, \
                 clusterip-decap, iptables or nftables"
                    .into(),
            );
        }
        if self.new_flows && self.scenario.is_v6() {
            return Err(
                "--new-flows: the IPv6 scenarios measure established flows only (no IPv6 \
                 flows are pre-filled)"
                    .into(),
            );
        }
        let most = match &self.sweep {
            Some(s) if s.axis == Axis::Flows => s.points.iter().copied().max().unwrap_or(0),
            _ => self.flows,
        };
        let ct6_flows = xlb_bpf::consts::XLB_CT6_ENTRIES / 4;
        if self.scenario.is_v6() && most > ct6_flows {
            return Err(format!(
                "{most} flows: the IPv6 scenarios keep their flows in ct6, which holds \
                 {} entries (not sized by the flows): at most {ct6_flows} flows",
                xlb_bpf::consts::XLB_CT6_ENTRIES
            ));
        }
        let min = match (self.scenario, self.proto) {
            (Scenario::ClusteripDecapV6, ProtoArg::Udp) => 152,
            (Scenario::ClusteripDecapV6, _) => 160,
            (s, ProtoArg::Udp) if s.is_v6() => 80,
            (s, _) if s.is_v6() => 96,
            _ => 0,
        };
        if self.size < min {
            return Err(format!(
                "--size {}: {} frames carry an IPv6 header and the stamp: --size {min} or more",
                self.size,
                self.scenario.name()
            ));
        }
        if self.new_flows && matches!(&self.sweep, Some(s) if s.axis == Axis::Flows) {
            return Err("--new-flows makes every packet a new flow: no flows sweep".into());
        }
        Ok(())
    }
}

/// CPUs of this machine.
pub(super) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_cores(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    let ncpu = cpus();
    if n == 0 || n as usize > ncpu {
        return Err(format!("1..={ncpu} (the machine's CPUs)"));
    }
    Ok(n)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if x > 0.0 && x <= 3600.0 {
        Ok(x)
    } else {
        Err("must be in (0, 3600]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse() {
        let s: Sweep = "flows=1,1_000,1000000".parse().unwrap();
        assert_eq!(s.axis, Axis::Flows);
        assert_eq!(s.points, vec![1, 1000, 1_000_000]);
        assert!("services=".parse::<Sweep>().is_err());
        assert!("flows=0".parse::<Sweep>().is_err());
        assert!("cores=1".parse::<Sweep>().is_err());
        assert!("flows".parse::<Sweep>().is_err());
        assert!("services=100001".parse::<Sweep>().is_err());
        assert!("flows=1000001".parse::<Sweep>().is_err());
    }

    #[test]
    fn ipv6_scenarios_check_their_frame_size() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let run = |extra: &[&str]| {
            let mut v = vec!["run", "--scenario", "nodeport-remote-v6"];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).unwrap().run
        };
        assert_eq!(run(&[]).scenario.name(), "nodeport-remote-v6");
        assert!(run(&[]).scenario.is_v6());
        let e = run(&[]).check().unwrap_err();
        assert!(e.contains("--size 80"), "{e}");
        assert!(run(&["--size", "80"]).check().is_ok());
        assert!(run(&["--size", "80", "--proto", "tcp-syn"])
            .check()
            .is_err());
        assert!(run(&["--size", "96", "--proto", "tcp-ack"]).check().is_ok());
        assert!(run(&["--size", "80", "--new-flows"]).check().is_err());
        let decap = |extra: &[&str]| {
            let mut v = vec!["run", "--scenario", "clusterip-decap-v6"];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).unwrap().run
        };
        assert!(decap(&["--size", "128"]).check().is_err());
        assert!(decap(&["--size", "152"]).check().is_ok());
        assert!(decap(&["--size", "152", "--proto", "tcp-ack"])
            .check()
            .is_err());
        assert!(decap(&["--size", "160", "--proto", "tcp-ack"])
            .check()
            .is_ok());
        assert!(run(&["--size", "80", "--flows", "65536"]).check().is_ok());
        assert!(run(&["--size", "80", "--flows", "65537"]).check().is_err());
        assert!(run(&["--size", "80", "--sweep", "flows=1,100000"])
            .check()
            .is_err());
    }

    #[test]
    fn out_of_range_arguments_are_usage_errors() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let parse = |extra: &[&str]| {
            let mut v = vec!["run", "--scenario", "iptables"];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).map(|c| c.run)
        };
        assert!(parse(&[]).is_ok());
        for bad in [
            &["--seconds", "0"][..],
            &["--seconds", "3601"],
            &["--seconds", "nan"],
            &["--cores", "0"],
            &["--cores", "100000"],
            &["--sweep", "services=1,200000"],
            &["--iface", "a"],
        ] {
            let e = parse(bad).expect_err(&format!("{bad:?}"));
            assert_ne!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{bad:?}");
        }
        let same = parse(&["--iface", "a", "--peer-iface", "a"]).unwrap();
        assert!(same.nics().is_err());
        let two = parse(&["--iface", "a", "--peer-iface", "b"]).unwrap();
        assert_eq!(two.nics().unwrap().unwrap().peer, "b");
        assert!(parse(&["--new-flows", "--flows", "10"]).is_err());
        assert!(parse(&["--new-flows"]).unwrap().check().is_ok());
        let mut revnat = parse(&["--new-flows"]).unwrap();
        revnat.scenario = Scenario::ReplyRevnat;
        assert!(revnat.check().is_err());
        let sweep = parse(&["--new-flows", "--sweep", "flows=1,10"]).unwrap();
        assert!(sweep.check().is_err());
        let sweep = parse(&["--new-flows", "--sweep", "services=1,10"]).unwrap();
        assert!(sweep.check().is_ok());
    }
}
