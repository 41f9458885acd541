//! `xlb maps` (being built).
use std::path::Path;
#[derive(Debug, clap::Args)]
pub struct MapsArgs {}
pub fn run(_a: MapsArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("maps: not built yet")
}
