//! `xlb doctor` (being built).
use std::path::Path;
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {}
pub fn run(_a: DoctorArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("doctor: not built yet")
}
