//! # Agent (being built): sources -> model -> sync, metrics, health.
use std::path::Path;
#[derive(Debug, clap::Args)]
pub struct AgentArgs {}
pub fn run(_a: AgentArgs, _pin: &Path) -> anyhow::Result<()> {
    anyhow::bail!("agent: not built yet")
}
