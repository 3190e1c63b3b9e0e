//! The `phimon` binary: the command-line interface and the wiring of the
//! workspace's crates into a sidecar (`run`), plus the operator's tools
//! around it (`demo`, `eval`, `simulate`, `certs`, `check-config`,
//! `peers`, `whatif`, `record`, `completions`). Development tools (`soak`, `corpus`) are
//! `phimon-dev`'s, in phimon-testkit.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod certs;
mod check_config;
mod demo;
mod eval;
mod peers;
mod record_cli;
mod run;
mod simulate;
mod whatif;

/// A failure that is the user's to fix (bad flags, bad config, bad input
/// file): printed without a backtrace, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `phimon --version`: version, commit, target and profile of the build.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PHIMON_GIT_COMMIT"),
    ", ",
    env!("PHIMON_TARGET"),
    ", ",
    env!("PHIMON_PROFILE"),
    " build)"
);

/// phimon: phi-accrual failure detection sidecar.
#[derive(Debug, Parser)]
#[command(
    name = "phimon",
    version,
    long_version = LONG_VERSION,
    about,
    long_about = "phimon: phi-accrual failure detection sidecar.\n\n\
        Runs beside each host, sends heartbeats straight to its observers over mutual-TLS QUIC, \
        gossips signed membership, computes the suspicion level phi of the peers it observes, \
        exports it to Prometheus and pages through signed, durable webhooks.\n\n\
        Start with `phimon demo`; run a node with `phimon run --config FILE`.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: heartbeat, gossip membership, detect failures,
    /// export metrics and page.
    Run(run::RunArgs),
    /// Run a local cluster that shows a failure being detected and paged.
    Demo(demo::DemoArgs),
    /// Replay a heartbeat arrival trace through the detector and print the
    /// detection quality (QoS) for a range of thresholds.
    Eval(eval::EvalArgs),
    /// Deterministic gossip simulation: dissemination, cost and detection.
    Simulate(simulate::SimulateArgs),
    /// Create a development CA and one certificate/key per node.
    Certs(certs::CertsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Validate a configuration file and print every problem with its key.
    CheckConfig(check_config::CheckConfigArgs),
    /// The local sidecar's view of the fleet: node, address, status, phi,
    /// last heartbeat, generation, observers, suspected by.
    #[command(alias = "status")]
    Peers(peers::PeersArgs),
    /// What other thresholds would have done: each observed peer's
    /// recent heartbeats replayed (detection time, mistakes per hour).
    Whatif(whatif::WhatIfArgs),
    /// Export an observed peer's recent heartbeats (its detector window)
    /// as a trace for `phimon eval`.
    Record(record_cli::RecordArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Certs(args) => certs::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Peers(args) => peers::run(args),
        Command::Whatif(args) => whatif::run(args),
        Command::Record(args) => record_cli::run(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Render into memory first: the generator panics on write
            // errors, and `phimon completions bash | head` closes the pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "phimon", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
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
