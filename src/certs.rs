//! `phimon certs` (being built).

/// Arguments of `phimon certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {}

/// Runs `phimon certs`.
pub fn run(_args: CertsArgs) -> anyhow::Result<()> {
    anyhow::bail!("phimon certs is not built yet")
}
