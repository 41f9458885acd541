//! `xlb bench prog` (being built).
#[derive(Debug, clap::Args)]
pub struct ProgArgs {}
pub fn run(a: ProgArgs) -> anyhow::Result<()> {
    let _ = a;
    anyhow::bail!("bench prog: not built yet")
}
