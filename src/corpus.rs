//! `phimon corpus`: regenerate the seeded trace corpus used by
//! `phimon eval --compare`.

use crate::UsageError;
use anyhow::Context as _;
use phimon_detector::corpus::CorpusSet;
use std::path::PathBuf;

/// Which generated set to write.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SetArg {
    /// The corpus committed under `traces/`.
    Corpus,
    /// The held-out set (other seeds and magnitudes), never committed.
    HeldOut,
    /// New scenario variants (other intervals, pauses, loss), never
    /// committed.
    Variants,
}

/// Arguments of `phimon corpus`.
#[derive(Debug, clap::Args)]
pub struct CorpusArgs {
    /// Directory to write `NAME.trace` files into (created if missing;
    /// files of the same name are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Which set to generate.
    #[arg(long, value_enum, default_value = "corpus")]
    pub set: SetArg,
}

/// Runs `phimon corpus`.
pub fn run(args: CorpusArgs) -> anyhow::Result<()> {
    let set = match args.set {
        SetArg::Corpus => CorpusSet::Corpus,
        SetArg::HeldOut => CorpusSet::HeldOut,
        SetArg::Variants => CorpusSet::Variants,
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", args.out.display())))?;
    for (name, text) in set.render() {
        let path = args.out.join(&name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
