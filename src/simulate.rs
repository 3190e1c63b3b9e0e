//! `phimon simulate` (being built).

/// Arguments of `phimon simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

/// Runs `phimon simulate`.
pub fn run(_args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("phimon simulate is not built yet")
}
