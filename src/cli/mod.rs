//! # Command line
//!
//! One `enum Command`; each subcommand's arguments and body live in its own
//! module. Exit codes: 0 ok, 1 runtime failure, 2 usage (clap, and a
//! `--pin-dir` xlb must not use: see [`exit_code`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod attach;
pub mod bench;
pub mod doctor;
pub mod explain;
pub mod lab;
pub mod maps;
pub mod monitor;

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
    // No doc comments here: each Args struct's own doc comment (a summary
    // line, a description and examples) is the subcommand's help.
    Agent(Box<crate::agent::AgentArgs>),
    Attach(attach::AttachArgs),
    Detach(attach::DetachArgs),
    Maps(maps::MapsArgs),
    Explain(explain::ExplainArgs),
    Monitor(monitor::MonitorArgs),
    Doctor(doctor::DoctorArgs),
    Lab(lab::LabArgs),
    Bench(bench::BenchArgs),
}

/// The exit code of a failed command: 2 for a usage error (a `--pin-dir`
/// that is a file, or an ordinary directory xlb must not mount over or
/// remove from), 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<xlb_loader::Error>(),
            Some(xlb_loader::Error::PinDir { .. })
        )
    });
    if usage {
        2
    } else {
        1
    }
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
        // Colour only on a terminal: `kubectl logs` and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Agent(a) => crate::agent::run(*a, &pin_dir),
        Command::Attach(a) => attach::run_attach(a, &pin_dir),
        Command::Detach(a) => attach::run_detach(a, &pin_dir),
        Command::Maps(a) => {
            die_on_closed_stdout();
            maps::run(a, &pin_dir)
        }
        Command::Explain(a) => {
            die_on_closed_stdout();
            explain::run(a, &pin_dir)
        }
        Command::Monitor(a) => monitor::run(a, &pin_dir),
        Command::Doctor(a) => {
            die_on_closed_stdout();
            doctor::run(a, &pin_dir)
        }
        Command::Lab(a) => lab::run(a, &pin_dir),
        Command::Bench(a) => bench::run(a, &pin_dir),
    }
}

/// Commands that only print (`maps`, `explain`, `doctor`, `lab check`, `lab spread`) end quietly when their reader
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command an operator types has a help text with examples
    /// (`xlb attach --help`, `xlb bench run --help`, ...).
    #[test]
    fn every_command_has_examples_in_its_help() {
        let mut root = super::Cli::command();
        root.build();
        let mut missing = Vec::new();
        for sub in root.get_subcommands().filter(|c| c.get_name() != "help") {
            let mut targets = vec![(sub.get_name().to_string(), sub.clone())];
            if sub.get_name() == "bench" {
                targets.extend(
                    sub.get_subcommands()
                        .filter(|c| c.get_name() != "help")
                        .map(|c| (format!("bench {}", c.get_name()), c.clone())),
                );
            }
            for (name, mut c) in targets {
                let help = c.render_long_help().to_string();
                if !help.contains("Examples:\n  xlb ") && !help.contains("Examples:\n  sudo xlb ") {
                    missing.push(name);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "no examples in the help of: {missing:?}"
        );
    }
}
