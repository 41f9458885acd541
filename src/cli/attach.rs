//! `xlb attach` (being built).
use std::path::Path;
#[derive(Debug, clap::Args)]
pub struct AttachArgs {}
#[derive(Debug, clap::Args)]
pub struct DetachArgs {}
pub fn run_attach(_a: AttachArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("attach: not built yet")
}
pub fn run_detach(_a: DetachArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("detach: not built yet")
}
