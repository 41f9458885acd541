//! `xlb bench sync` (being built).
#[derive(Debug, clap::Args)]
pub struct SyncArgs {}
pub fn run(a: SyncArgs) -> anyhow::Result<()> {
    let _ = a;
    anyhow::bail!("bench sync: not built yet")
}
