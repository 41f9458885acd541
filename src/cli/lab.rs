//! `xlb lab up|down|check|set-endpoints|spread|backend`: the netns lab (crate `xlb-lab`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use xlb_lab as lab;

/// Build, probe or remove the netns lab: a client, nodes with pods, xlb on every node.
///
/// Examples:
///   sudo xlb lab up                 # 2 nodes x 2 pods, agents reading deploy/examples
///   sudo xlb lab up --dual-stack    # the same with IPv6 beside IPv4
///   sudo xlb lab check              # NodePort/ClusterIP local and remote over real TCP
///   sudo xlb lab set-endpoints --service churn --pods n1p1,n2p2
///   sudo xlb lab down
///   xlb lab backend --name web --listen 127.0.0.1:8080
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab (idempotent: completes a partial lab, restarts dead processes).
    Up(UpArgs),
    /// Remove everything a lab made: processes, namespaces, pins, state (works after a crash).
    Down(PrefixArgs),
    /// Probe the running lab over real sockets; exits 1 if any probe fails.
    Check(CheckArgs),
    /// Replace a Service's endpoints in the lab's manifest directory (the agents pick it up).
    SetEndpoints(SetEndpointsArgs),
    /// Open N TCP connections from the client (or a pod) and show which backend took each.
    Spread(SpreadArgs),
    // Its Args' doc comment (with examples) is the help.
    Backend(lab::backend::BackendArgs),
}

#[derive(Debug, clap::Args)]
pub struct SpreadArgs {
    #[command(flatten)]
    pub prefix: PrefixArgs,
    /// Where to connect, e.g. 198.18.0.11:30080 (NodePort on node1), 10.96.0.10:80,
    /// or [fd00:10:96::10]:80 in a dual-stack lab.
    #[arg(long)]
    pub to: std::net::SocketAddr,
    /// Number of connections.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Connect from `client` or from a pod (e.g. `n1p2`).
    #[arg(long, default_value = "client")]
    pub from: String,
    /// Print the counts as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PrefixArgs {
    /// Name prefix of every namespace, pin directory and state directory of the lab.
    #[arg(long, default_value = "xlb", value_parser = parse_prefix)]
    pub prefix: String,
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub prefix: PrefixArgs,
    /// Number of nodes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=lab::MAX_NODES as i64))]
    pub nodes: u8,
    /// Pods (backends) per node.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=lab::MAX_PODS_PER_NODE as i64))]
    pub pods_per_node: u8,
    /// Manifests the agents read (copied into the lab); default: the built-in deploy/examples.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// Only the network and the backends: no data plane, no agents.
    #[arg(long)]
    pub topology_only: bool,
    /// IPv6 beside IPv4: an IPv6 underlay (fd00:198:18::/64), IPv6 pod CIDRs
    /// (fd00:10:244:N::/64), flannel-v6.1 VXLAN devices, dual-stack Nodes,
    /// Services and EndpointSlices in the manifests (docs/lab.md).
    #[arg(long)]
    pub dual_stack: bool,
    /// The xlb binary run in the lab (default: this one).
    #[arg(long)]
    pub xlb_bin: Option<PathBuf>,
    /// Seconds to wait for backends and agents to be ready.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub prefix: PrefixArgs,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Leave out the host-network probes (from node namespaces, to the
    /// `kubernetes` and `hostnet` Services' servers in node namespaces).
    #[arg(long)]
    pub pods_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetEndpointsArgs {
    #[command(flatten)]
    pub prefix: PrefixArgs,
    /// Service (its file `<service>.yaml` in the lab's manifest directory).
    #[arg(long)]
    pub service: String,
    /// Lab pods serving it, e.g. `n1p1,n2p2` (empty: no endpoints).
    #[arg(long, default_value = "")]
    pub pods: String,
}

fn parse_prefix(s: &str) -> Result<String, String> {
    lab::validate_prefix(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

pub fn run(a: LabArgs, _pin: &Path) -> anyhow::Result<()> {
    match a.command {
        LabCommand::Up(u) => up(u),
        LabCommand::Down(d) => {
            let r = lab::down(&d.prefix).with_context(|| format!("removing lab {}", d.prefix))?;
            println!(
                "lab {}: stopped {} processes, removed {} namespaces and {} pin directories",
                d.prefix,
                r.processes,
                r.namespaces.len(),
                r.pin_dirs.len()
            );
            Ok(())
        }
        // They only probe and print (`xlb lab spread ... | grep -q n1p2`).
        LabCommand::Check(c) => {
            super::die_on_closed_stdout();
            check(c)
        }
        LabCommand::Spread(s) => {
            super::die_on_closed_stdout();
            spread(s)
        }
        LabCommand::Backend(b) => lab::backend::run(b),
        LabCommand::SetEndpoints(s) => {
            let pods = lab::manifests::parse_pods(&s.pods)?;
            let dir = lab::state_dir(&s.prefix.prefix).join("manifests");
            lab::manifests::set_endpoints(&dir, &s.service, &pods)
                .with_context(|| format!("setting the endpoints of {}", s.service))?;
            println!("{}: endpoints {}", s.service, s.pods);
            Ok(())
        }
    }
}

fn up(u: UpArgs) -> anyhow::Result<()> {
    let l =
        lab::Lab::new(&u.prefix.prefix, u.nodes, u.pods_per_node)?.with_dual_stack(u.dual_stack);
    let xlb = match u.xlb_bin {
        Some(p) => p,
        None => std::env::current_exe().context("finding the xlb binary")?,
    };
    let opts = lab::UpOptions {
        lab: l.clone(),
        xlb,
        topology_only: u.topology_only,
        manifests: u.manifests,
        ready_timeout: Duration::from_secs(u.timeout),
    };
    lab::up(&opts).with_context(|| {
        format!(
            "building lab {} (`xlb lab down --prefix {}` removes what was made)",
            l.prefix, l.prefix
        )
    })?;
    println!(
        "lab {} up: {} nodes x {} pods{}{}; manifests in {}",
        l.prefix,
        l.nodes,
        l.pods_per_node,
        if l.dual_stack { ", dual-stack" } else { "" },
        if u.topology_only {
            " (topology only)"
        } else {
            ", xlb attached, agents running"
        },
        l.manifests_dir().display()
    );
    Ok(())
}

fn check(c: CheckArgs) -> anyhow::Result<()> {
    let rows = lab::check(&c.prefix.prefix, c.pods_only)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let w = |f: fn(&lab::CheckRow) -> &str, h: &str| {
            rows.iter()
                .map(|r| f(r).len())
                .max()
                .unwrap_or(0)
                .max(h.len())
        };
        let (wp, wf, wt, we) = (
            w(|r| &r.probe, "PROBE"),
            w(|r| &r.from, "FROM"),
            w(|r| &r.to, "TO"),
            w(|r| &r.expect, "EXPECT"),
        );
        println!(
            "{:wp$}  {:wf$}  {:wt$}  {:we$}  RESULT  GOT",
            "PROBE", "FROM", "TO", "EXPECT"
        );
        for r in &rows {
            println!(
                "{:wp$}  {:wf$}  {:wt$}  {:we$}  {:6}  {}",
                r.probe,
                r.from,
                r.to,
                r.expect,
                if r.ok { "ok" } else { "FAIL" },
                r.got
            );
        }
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} probes failed", rows.len());
    }
    Ok(())
}

fn spread(s: SpreadArgs) -> anyhow::Result<()> {
    let prefix = &s.prefix.prefix;
    let ns = if s.from == "client" {
        lab::client_ns(prefix)
    } else {
        let (n, k) = *lab::manifests::parse_pods(&s.from)?
            .first()
            .context("--from: client or a pod like n1p2")?;
        format!("{prefix}-{}", lab::pod_name(n, k))
    };
    anyhow::ensure!(
        lab::netns::exists(&ns),
        "no namespace {ns}: is the lab up (`xlb lab up --prefix {prefix}`)?"
    );
    let (to, count) = (s.to, s.count);
    let counts = lab::netns::run(&ns, move || {
        let mut m = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..count {
            let key = match lab::probe::tcp(None, to, Duration::from_secs(2)) {
                Ok(r) => r.name,
                Err(e) => format!("error: {}", e.kind()),
            };
            *m.entry(key).or_default() += 1;
        }
        m
    })?;
    if s.json {
        println!("{}", serde_json::to_string_pretty(&counts)?);
        return Ok(());
    }
    println!("{count} connections from {} to {to}:", s.from);
    let w = counts.keys().map(String::len).max().unwrap_or(0);
    let max = counts.values().copied().max().unwrap_or(1).max(1);
    for (name, &c) in &counts {
        let bar = "#".repeat((c as usize * 50).div_ceil(max as usize));
        println!("  {name:w$}  {c:6}  {bar}");
    }
    Ok(())
}
