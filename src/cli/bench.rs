//! `xlb bench` (being built).
use std::path::Path;
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}
pub fn run(_a: BenchArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("bench: not built yet")
}
