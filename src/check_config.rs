//! `phimon check-config`: validate a configuration file.

use crate::UsageError;
use phimon_config::{Config, Scope};
use std::path::PathBuf;

/// Arguments of `phimon check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The configuration file (PHIMON_<SECTION>_<KEY> environment
    /// overrides apply, as for `phimon run`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Loads and fully validates the configuration, including that the
/// referenced certificate, key and secret files are readable.
pub fn load_valid(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = Config::load(path).map_err(|e| UsageError(e.to_string()))?;
    config
        .validate(Scope::Full, &path.display().to_string())
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(config)
}

/// Runs `phimon check-config`: prints every problem with its key path and
/// exits 2, or prints a one-line summary and exits 0.
pub fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let c = load_valid(&args.config)?;
    println!(
        "{}: ok (node {:?}, cluster {:?}, {} seed(s), {} webhook(s), threshold {})",
        args.config.display(),
        c.node.id,
        c.cluster.name,
        c.cluster.seeds.len(),
        c.alert.webhooks.len(),
        c.detector.threshold
    );
    Ok(())
}
