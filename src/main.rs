use clap::Parser;

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
