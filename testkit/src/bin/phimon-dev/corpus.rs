//! `phimon-dev corpus`: regenerate the seeded trace corpus used by
//! `phimon eval --compare`.

use crate::UsageError;
use anyhow::Context as _;
use phimon_eval::corpus::{CorpusSet, random_scenarios};
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
    /// Direct heartbeats (wire version 3): a clean LAN with 40 s of
    /// history, 1 % and 20 % loss, sender pauses of 2-3 s, never
    /// committed.
    Direct,
    /// `--count` scenarios drawn at random (from `--seed`) over broad
    /// ranges of every hostile condition: networks nobody wrote down.
    Random,
}

/// Arguments of `phimon-dev corpus`.
#[derive(Debug, clap::Args)]
pub struct CorpusArgs {
    /// Directory to write `NAME.trace` files into (created if missing;
    /// files of the same name are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Which set to generate.
    #[arg(long, value_enum, default_value = "corpus")]
    pub set: SetArg,
    /// Seed of `--set random`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of scenarios of `--set random`.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub count: u64,
}

/// Runs `phimon-dev corpus`.
pub fn run(args: CorpusArgs) -> anyhow::Result<()> {
    let files = match args.set {
        SetArg::Corpus => CorpusSet::Corpus.render(),
        SetArg::HeldOut => CorpusSet::HeldOut.render(),
        SetArg::Variants => CorpusSet::Variants.render(),
        SetArg::Direct => CorpusSet::Direct.render(),
        SetArg::Random => random_scenarios(args.seed, args.count as usize)
            .into_iter()
            .map(|(name, s)| (format!("{name}.trace"), s.generate().to_text()))
            .collect(),
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", args.out.display())))?;
    for (name, text) in files {
        let path = args.out.join(&name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
