//! `xlb explain`: what the data plane would do with one frame, step by step,
//! read from the pinned maps (the walk is `crate::explain`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;
use xlb_bpf::{Maps, Proto};

use crate::explain::{explain, explain6, Flow, Flow6, Iface, MapsView};

/// Explain what the data plane would do with a frame: filters, connection
/// tracking, Service match (NodePort on a local address too), source ranges,
/// endpoints, traffic policy, session affinity, the Maglev slot of the flow
/// hash, the backend, and the tunnel of a remote backend.
///
/// Reads the pinned maps and changes nothing. The source port matters for the
/// Maglev slot (unless the Service has session affinity); without one, port 0
/// is used. Frames that arrive VXLAN-encapsulated are not modelled; the next
/// hop of a remote backend is the kernel's routing (the outcome says so).
///
/// IPv6 frames are modelled from the uplink (the XDP program's IPv6 path,
/// on the IPv6 maps).
///
/// Examples:
///   xlb explain --from 198.18.0.100:40000 --to 10.96.0.10:80
///   xlb explain --from [2001:db8::64]:40000 --to [fd00:96::10]:80
///   xlb explain --from 192.0.2.7 --to 198.18.0.2:30080 --proto udp --json
///   xlb explain --from 10.244.1.5:33000 --to 10.96.0.10:80 --iface pod
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// Client address, with or without a source port (IPv4 or IPv6: `[ADDR]:PORT`).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_from)]
    pub from: SocketAddr,
    /// Destination address and port, of the client's family: a ClusterIP, LoadBalancer or external IP, or a node address for a NodePort.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_to)]
    pub to: SocketAddr,
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: ProtoArg,
    /// Where the frame enters: the uplink (XDP) or a pod's veth (tc).
    #[arg(long, value_enum, default_value = "uplink")]
    pub iface: Iface,
    /// Machine-readable output: {"flow": ..., "steps": [...], "outcome": {...}}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
}

fn parse_from(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(a, 0));
    }
    parse_to(s)
}

fn parse_to(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Ok(a),
        Err(_) if s.parse::<IpAddr>().is_ok() => Err(format!(
            "{s} has no port: give ADDR:PORT ([ADDR]:PORT for IPv6)"
        )),
        Err(_) => Err(format!(
            "{s} is not ADDR:PORT (e.g. 10.96.0.10:80 or [fd00:96::10]:80)"
        )),
    }
}

pub fn run(a: ExplainArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let maps = Maps::from_pin_dir(pin_dir)
        .with_context(|| format!("opening the maps under {}", pin_dir.display()))?;
    let names = crate::names::read_or_warn(pin_dir);
    let proto = match a.proto {
        ProtoArg::Tcp => Proto::Tcp,
        ProtoArg::Udp => Proto::Udp,
    };
    let view = MapsView(&maps);
    let e = match (a.from, a.to) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => explain(
            &view,
            &Flow {
                src,
                dst,
                proto,
                iface: a.iface,
                rst: false,
            },
        ),
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
            if a.iface != Iface::Uplink {
                bail!("IPv6 frames are modelled from the uplink (XDP) only, not from a pod (tc)");
            }
            if maps.v6().is_none() {
                bail!(
                    "the maps under {} have no IPv6 maps (an xlb without IPv6)",
                    pin_dir.display()
                );
            }
            explain6(
                &view,
                &Flow6 {
                    src,
                    dst,
                    proto,
                    rst: false,
                },
            )
        }
        _ => bail!(
            "--from {} and --to {} are of different families",
            a.from,
            a.to
        ),
    }
    .context("reading the maps")?;
    let service = e.outcome.svc_id.and_then(|id| names.get(&id).cloned());
    if a.json {
        let j = json!({
            "flow": {"src": a.from.to_string(), "dst": a.to.to_string(),
                     "proto": proto.name(), "iface": a.iface},
            "steps": e.steps,
            "outcome": e.outcome,
            "service": service,
        });
        println!("{j}");
        return Ok(());
    }
    println!(
        "{} {} -> {} from {}",
        proto.name(),
        a.from,
        a.to,
        match a.iface {
            Iface::Uplink => "the uplink (XDP)",
            Iface::Pod => "a pod (tc)",
        }
    );
    if a.from.port() == 0 {
        println!("  (no source port given: the flow hash uses 0)");
    }
    for (i, s) in e.steps.iter().enumerate() {
        println!("  {}. {:<14} {}", i + 1, s.step, s.found);
    }
    let o = &e.outcome;
    let mut what = format!("{:?} ({})", o.verdict, o.reason).to_lowercase();
    if let (Some(id), Some(b)) = (o.backend_id, o.backend) {
        what += &format!(
            ": to backend {id} {b} on {}",
            o.node
                .map_or("this node".to_string(), |n| format!("node {n}"))
        );
    }
    if let Some(s) = o.new_src {
        what += &format!(", source becomes {s}");
    }
    if let Some(n) = o.tunnel_to {
        what += &format!(", through the tunnel to {n}");
    }
    if let Some(id) = o.svc_id {
        what += &format!(
            "; Service port {}",
            service.unwrap_or_else(|| format!("svc_id {id}"))
        );
    }
    println!("=> {what}");
    if let Some(n) = &o.note {
        println!("   {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_both_families_parse() {
        assert_eq!(
            parse_from("2001:db8::64").unwrap(),
            "[2001:db8::64]:0".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_from("[2001:db8::64]:40000").unwrap(),
            "[2001:db8::64]:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_to("[fd00:96::10]:80").unwrap(),
            "[fd00:96::10]:80".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_to("10.96.0.10:80").unwrap(),
            "10.96.0.10:80".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_to("fd00:96::10").unwrap_err().contains("no port"));
        assert!(parse_to("10.96.0.10").unwrap_err().contains("no port"));
        assert!(parse_to("x:80").unwrap_err().contains("not ADDR:PORT"));
    }
}
