//! `phimon-dev`: development tools that drive the `phimon` binary and are
//! not part of the sidecar. `cargo build --release` first (it builds
//! `phimon`), then e.g.
//! `cargo run --release -p phimon-testkit --bin phimon-dev -- soak --nodes 30`.

use clap::{Parser, Subcommand};
use phimon_testkit::soak::{self, SoakSpec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod corpus;

/// A failure that is the user's to fix (bad flags, a missing binary):
/// printed without a backtrace, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// phimon-dev: development and capacity tools around the phimon binary.
#[derive(Debug, Parser)]
#[command(name = "phimon-dev", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Soak test: a loopback cluster behind a chaos proxy, footprint over
    /// time (development and capacity tool).
    Soak(SoakArgs),
    /// Regenerate the seeded trace corpus of `phimon eval --compare`.
    Corpus(corpus::CorpusArgs),
    /// CPU and memory per node of an idle loopback fleet with default
    /// settings, then kill -9 of one node and the time until the others
    /// suspect it.
    Bench(BenchArgs),
}

/// Arguments of `phimon-dev bench`.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The `phimon` binary to run (default: the one beside this program).
    #[arg(long, value_name = "PATH")]
    phimon: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Idle time before the kill (CPU is measured over it, after 10 s).
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Nodes killed one after the other, each once the previous one is
    /// suspected everywhere: detection medians over several kills, where
    /// one kill's figure depends on its phase.
    #[arg(long, default_value_t = 1)]
    kills: usize,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

/// Arguments of `phimon-dev soak`.
#[derive(Debug, clap::Args)]
struct SoakArgs {
    /// The `phimon` binary to run (default: the one beside this program,
    /// as `cargo build` places them).
    #[arg(long, value_name = "PATH")]
    phimon: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 30)]
    nodes: usize,
    /// How long to run (e.g. "10m").
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Heartbeat (gossip) interval.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Random loss on every link (0..1).
    #[arg(long, default_value_t = 0.05)]
    loss: f64,
    /// One-way delay on every link, ms (jitter is half of it).
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// Number of samples in the report.
    #[arg(long, default_value_t = 10)]
    samples: u32,
}

/// The `phimon` binary: `--phimon`, else `phimon` in this program's
/// directory.
fn phimon_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("phimon"),
    };
    if !path.is_file() {
        return Err(UsageError(format!(
            "no phimon binary at {}: build it (`cargo build`, with the same profile) or pass --phimon PATH",
            path.display()
        ))
        .into());
    }
    Ok(path)
}

fn run_soak(args: SoakArgs) -> anyhow::Result<()> {
    let spec = SoakSpec {
        nodes: args.nodes,
        duration: args.duration,
        interval: args.interval,
        loss: args.loss,
        delay_ms: args.delay_ms,
        samples: args.samples,
    };
    spec.validate().map_err(UsageError)?;
    let phimon = phimon_binary(args.phimon)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(soak::run(&phimon, &spec, &mut std::io::stdout()))
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if !(2..=200).contains(&args.nodes) {
        return Err(UsageError(format!("--nodes must be 2..=200, got {}", args.nodes)).into());
    }
    if args.idle < Duration::from_secs(15) {
        return Err(UsageError("--idle must be at least 15s".into()).into());
    }
    if args.kills == 0 || args.kills > args.nodes / 2 {
        return Err(UsageError(format!(
            "--kills must be 1..={} (half the nodes), got {}",
            args.nodes / 2,
            args.kills
        ))
        .into());
    }
    let phimon = phimon_binary(args.phimon)?;
    let dir = tempfile::tempdir()?;
    let spec = phimon_testkit::bench::BenchSpec {
        nodes: args.nodes,
        idle: args.idle,
        kills: args.kills,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(phimon_testkit::bench::run(&phimon, dir.path(), &spec))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Soak(args) => run_soak(args),
        Command::Corpus(args) => corpus::run(args),
        Command::Bench(args) => run_bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
