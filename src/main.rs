use clap::Parser;

/// jemalloc, not glibc's malloc: the control plane frees and reallocates
/// large batches of small objects (a Service's endpoints, a relist), which
/// glibc's malloc pays for in consolidation and sorting of freed chunks
/// (docs/perf.md, "Sync").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = xlb::cli::Cli::parse();
    xlb::cli::init_tracing(cli.verbose);
    match xlb::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(xlb::cli::exit_code(&e))
        }
    }
}
