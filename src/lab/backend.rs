//! Lab backend server (being built).
#[derive(Debug, clap::Args)]
pub struct BackendArgs {}
pub fn run(_a: BackendArgs) -> anyhow::Result<()> {
    anyhow::bail!("backend: not built yet")
}
