//! `xlb bench prog|run|sweep|sync`: each subcommand's body lives in `crate::bench::*`.
use std::path::Path;

use clap::{Args, Subcommand};

/// Measure: data-plane paths, live traffic, sync.
///
/// Examples:
///   xlb bench prog
///   xlb bench run --scenario nodeport-remote --seconds 3 --repeat 3
///   xlb bench run --scenario iptables --json
///   xlb bench sync --services 10000 --endpoints 10 --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    // Prog and Run: their Args' doc comments (with examples) are the help.
    Prog(crate::bench::prog::ProgArgs),
    Run(crate::bench::run::RunArgs),
    /// Time a full sync of N Services x M endpoints and single-slice changes.
    ///
    /// Fills private maps (nothing is attached, no traffic) with N Services of
    /// M ready endpoints each, times the full sync, then single-EndpointSlice
    /// changes (p50/p99), and reports the peak RSS.
    ///
    /// Examples:
    ///   xlb bench sync
    ///   xlb bench sync --services 10000 --endpoints 10 --json
    #[command(verbatim_doc_comment)]
    Sync(crate::bench::sync::SyncArgs),
}

pub fn run(a: BenchArgs, pin_dir: &Path) -> anyhow::Result<()> {
    match a.what {
        BenchCommand::Prog(p) => crate::bench::prog::run(p),
        BenchCommand::Run(r) => crate::bench::run::run(r, pin_dir),
        BenchCommand::Sync(s) => crate::bench::sync::run(s),
    }
}
