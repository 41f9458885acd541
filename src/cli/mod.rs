//! # Command line
//!
//! One `enum Command`; each subcommand's arguments and body live in its own
//! module. Exit codes: 0 ok, 1 runtime failure, 2 usage (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod attach;
pub mod bench;
pub mod doctor;
pub mod lab;
pub mod maps;

/// xlb: XDP Service load balancer for Kubernetes (a kube-proxy replacement).
#[derive(Debug, Parser)]
#[command(name = "xlb", version, about, long_about = None)]
pub struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Directory where xlb pins its maps.
    #[arg(long, global = true, default_value = xlb_loader::DEFAULT_PIN_DIR, env = "XLB_PIN_DIR")]
    pub pin_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: sync Services, EndpointSlices and Nodes into the maps.
    Agent(crate::agent::AgentArgs),
    /// Load the data plane and attach it to an interface.
    Attach(attach::AttachArgs),
    /// Detach the data plane from an interface (and remove pins with --all).
    Detach(attach::DetachArgs),
    /// Print the contents of the pinned maps.
    Maps(maps::MapsArgs),
    /// Check the kernel and an interface for what xlb needs.
    Doctor(doctor::DoctorArgs),
    /// Build, probe or remove the netns lab.
    Lab(lab::LabArgs),
    /// Measure: data-plane paths, live traffic, sync.
    Bench(bench::BenchArgs),
    /// Tiny TCP/UDP echo server answering with its name and the peer it saw (lab pods).
    Backend(crate::lab::backend::BackendArgs),
}

/// Sets up `tracing` with `RUST_LOG` or the `-v` count; libbpf's messages go through it too.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    libbpf_rs::set_print(Some((
        libbpf_rs::PrintLevel::Debug,
        |level, msg: String| match level {
            libbpf_rs::PrintLevel::Warn => tracing::warn!(target: "libbpf", "{}", msg.trim_end()),
            libbpf_rs::PrintLevel::Info => tracing::info!(target: "libbpf", "{}", msg.trim_end()),
            libbpf_rs::PrintLevel::Debug => tracing::debug!(target: "libbpf", "{}", msg.trim_end()),
        },
    )));
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let pin_dir = cli.pin_dir;
    match cli.command {
        Command::Agent(a) => crate::agent::run(a, &pin_dir),
        Command::Attach(a) => attach::run_attach(a, &pin_dir),
        Command::Detach(a) => attach::run_detach(a, &pin_dir),
        Command::Maps(a) => {
            die_on_closed_stdout();
            maps::run(a, &pin_dir)
        }
        Command::Doctor(a) => {
            die_on_closed_stdout();
            doctor::run(a, &pin_dir)
        }
        Command::Lab(a) => lab::run(a, &pin_dir),
        Command::Bench(a) => bench::run(a, &pin_dir),
        Command::Backend(a) => crate::lab::backend::run(a),
    }
}

/// Commands that only print (`maps`, `doctor`) end quietly when their reader
/// goes away (`xlb maps ct | head`), as `ls` or `ipvsadm` do, instead of
/// panicking in `println!`. Rust ignores SIGPIPE by default; the long-running
/// commands keep that, so a closed metrics socket never kills the agent.
fn die_on_closed_stdout() {
    // SAFETY: restoring the default disposition of one signal, before any
    // thread of ours exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
