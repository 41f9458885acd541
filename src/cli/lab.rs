//! `xlb lab` (being built).
use std::path::Path;
#[derive(Debug, clap::Args)]
pub struct LabArgs {}
pub fn run(_a: LabArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("lab: not built yet")
}
