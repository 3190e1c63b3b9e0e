//! The `phimon` binary: command-line interface and the wiring of the
//! detector, gossip, exporter and config crates into a sidecar.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod certs;
mod check_config;
mod corpus;
mod demo;
mod eval;
mod run;
mod simulate;
mod soak;

/// A failure that is the user's to fix (bad flags, bad config, bad input
/// file): printed without a backtrace, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// phimon: phi-accrual failure detection sidecar.
#[derive(Debug, Parser)]
#[command(name = "phimon", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: gossip heartbeats, detect failures, export
    /// metrics and page.
    Run(run::RunArgs),
    /// Soak test: a loopback cluster behind a chaos proxy, footprint over
    /// time (development and capacity tool).
    Soak(soak::SoakArgs),
    /// Run a local cluster that shows a failure being detected and paged.
    Demo(demo::DemoArgs),
    /// Replay a heartbeat arrival trace through the detector and print the
    /// detection quality (QoS) for a range of thresholds.
    Eval(eval::EvalArgs),
    /// Deterministic gossip simulation: dissemination, cost and detection.
    Simulate(simulate::SimulateArgs),
    /// Create a development CA and one certificate/key per node.
    Certs(certs::CertsArgs),
    /// Validate a configuration file and print every problem with its key.
    CheckConfig(check_config::CheckConfigArgs),
    /// Regenerate the seeded trace corpus of `eval --compare`.
    Corpus(corpus::CorpusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Certs(args) => certs::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Corpus(args) => corpus::run(args),
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
