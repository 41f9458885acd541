//! `xlb bench run` (being built).
#[derive(Debug, clap::Args)]
pub struct RunArgs {}
pub fn run(a: RunArgs, _pin: &std::path::Path) -> anyhow::Result<()> {
    let _ = a;
    anyhow::bail!("bench run: not built yet")
}
