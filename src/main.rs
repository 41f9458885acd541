use clap::Parser;

/// mimalloc, not glibc's malloc: freeing a big object (an EndpointSlice of
/// thousands of endpoints) leaves glibc sorting the freed chunks in the next
/// allocations, most of a one-endpoint change's time at 5,000 endpoints
/// (docs/perf.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
