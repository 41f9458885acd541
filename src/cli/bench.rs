//! `xlb bench prog|run|sweep|sync`: each subcommand's body lives in `crate::bench::*`.
use std::path::Path;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// BPF_PROG_RUN ns/packet of each data-plane path next to an XDP_DROP program.
    Prog(crate::bench::prog::ProgArgs),
    /// Live traffic through a veth topology (or a real NIC): per-core Mpps and latency.
    Run(crate::bench::run::RunArgs),
    /// Time a full sync of N Services x M endpoints and single-slice changes.
    Sync(crate::bench::sync::SyncArgs),
}

pub fn run(a: BenchArgs, pin_dir: &Path) -> anyhow::Result<()> {
    match a.what {
        BenchCommand::Prog(p) => crate::bench::prog::run(p),
        BenchCommand::Run(r) => crate::bench::run::run(r, pin_dir),
        BenchCommand::Sync(s) => crate::bench::sync::run(s),
    }
}
