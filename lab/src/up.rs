//! # `xlb lab up`: build (or complete) the lab, then start its processes
//!
//! Safe to run again on a running lab: the network steps ([`crate::build`])
//! only add what is missing and processes start only when their pid file does
//! not name a live one ([`crate::daemons`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cmd::require_root;
use crate::{build, daemons, io_ctx, state_dir, Error, Lab, Result};

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
    /// `--dual-stack`: IPv6 beside IPv4.
    #[serde(default)]
    pub dual_stack: bool,
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
        Ok(
            Lab::new(&self.prefix, self.nodes, self.pods_per_node)?
                .with_dual_stack(self.dual_stack),
        )
    }
}

/// Builds (or completes) the lab. Safe to run again on a running lab: it only
/// adds what is missing and restarts processes that died.
pub fn up(o: &UpOptions) -> Result<()> {
    require_root()?;
    let lab = &o.lab;
    let state = lab.state_dir();
    std::fs::create_dir_all(&state).map_err(io_ctx(format!("creating {}", state.display())))?;
    if let Ok(prev) = LabInfo::load(&lab.prefix) {
        if prev.nodes != lab.nodes
            || prev.pods_per_node != lab.pods_per_node
            || prev.dual_stack != lab.dual_stack
        {
            return Err(Error::Invalid(format!(
                "lab {} is up with {} nodes x {} pods{}; `xlb lab down --prefix {}` first",
                lab.prefix,
                prev.nodes,
                prev.pods_per_node,
                if prev.dual_stack { ", dual-stack" } else { "" },
                lab.prefix
            )));
        }
    }
    let info = LabInfo {
        prefix: lab.prefix.clone(),
        nodes: lab.nodes,
        pods_per_node: lab.pods_per_node,
        xlb: !o.topology_only,
        dual_stack: lab.dual_stack,
    };
    std::fs::write(
        state.join("lab.json"),
        serde_json::to_string_pretty(&info).expect("plain struct"),
    )
    .map_err(io_ctx("writing lab.json"))?;

    build::network(lab)?;
    build::install_manifests(lab, o.manifests.as_deref())?;
    for (n, k) in lab.pods() {
        daemons::start_backend(lab, &o.xlb, n, k)?;
    }
    for (n, port) in daemons::host_backends(lab) {
        daemons::start_host_backend(lab, &o.xlb, n, port)?;
    }
    for (n, k) in lab.pods() {
        daemons::wait_backend(lab, n, k, o.ready_timeout)?;
    }
    for (n, port) in daemons::host_backends(lab) {
        for to in daemons::host_backend_addrs(lab, n, port) {
            daemons::wait_answer(
                &lab.ns_node(n),
                to,
                &daemons::host_backend_name(n),
                o.ready_timeout,
            )?;
        }
    }
    if !o.topology_only {
        daemons::ensure_bpffs()?;
        for n in lab.node_numbers() {
            daemons::start_agent(lab, &o.xlb, n)?;
        }
        for n in lab.node_numbers() {
            daemons::wait_agent(lab, n, o.ready_timeout)?;
        }
    }
    Ok(())
}
