//! `phimon simulate`: a deterministic gossip simulation of N nodes in one
//! process: dissemination speed, cost per node and failure detection.

use crate::UsageError;
use phimon_gossip::sim::{Experiment, Report, default_warmup, run_experiment};
use std::time::Duration;

/// Arguments of `phimon simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Cluster size.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub nodes: usize,
    /// Probability that a message is lost (0 to below 1).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub loss: f64,
    /// Peers contacted per round.
    #[arg(long, value_name = "F", default_value_t = 3)]
    pub fanout: usize,
    /// Rounds (gossip intervals of 1 s) to simulate, warm-up included.
    #[arg(long, value_name = "R", default_value_t = 100)]
    pub rounds: u64,
    /// Seed: the same seed replays the same run.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Nodes crashed during the run, spread over its first half after the
    /// warm-up, to measure detection.
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub crash: usize,
    /// One-way latency in milliseconds: `X`, or `MIN-MAX` for a uniform
    /// spread.
    #[arg(long, value_name = "MS", default_value = "1-10")]
    pub latency_ms: String,
    /// Warm-up rounds excluded from the figures (default: 2 log2 N + 10,
    /// at most 60).
    #[arg(long, value_name = "R")]
    pub warmup: Option<u64>,
    /// Key/value bytes each node publishes (service discovery data).
    #[arg(long, value_name = "BYTES", default_value_t = 48)]
    pub kv_bytes: usize,
    /// Detector model of the local verdict (adaptive, normal,
    /// exponential); default: the detector's default.
    #[arg(long, value_name = "MODEL")]
    pub distribution: Option<phimon_detector::Distribution>,
    /// phi threshold of the local dead verdict.
    #[arg(long, value_name = "PHI", default_value_t = 8.0)]
    pub threshold: f64,
    /// Nodes that judge their peers (run a detector per peer), drawn at
    /// random (seeded) among the nodes that do not crash: `K`, or `all`.
    /// The detection figures and false suspicions are theirs; the other
    /// nodes gossip in full without detectors. Default: 100 (every node of
    /// a smaller cluster).
    #[arg(long, value_name = "K|all", value_parser = parse_observers)]
    pub observers: Option<Observers>,
    /// Threads that run the cores: 1 or 2. The same seed gives the same
    /// report either way.
    #[arg(long, value_name = "T", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=2))]
    pub threads: u8,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Default sample of observers: a detector per node pair is most of a
/// large run's time and memory, and this many observers already give the
/// detection figures of hundreds of thousands of node pairs per run.
pub const DEFAULT_OBSERVERS: usize = 100;

/// The value of `--observers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observers {
    /// Every node judges every peer.
    All,
    /// This many nodes judge.
    Sample(usize),
}

/// Parses `all` or a positive count.
fn parse_observers(s: &str) -> Result<Observers, String> {
    if s == "all" {
        return Ok(Observers::All);
    }
    match s.parse::<usize>() {
        Ok(k) if k >= 1 => Ok(Observers::Sample(k)),
        _ => Err(format!("expected a count >= 1 or `all`, got {s:?}")),
    }
}

/// Parses `X` or `MIN-MAX` (milliseconds).
fn parse_latency(s: &str) -> Result<(Duration, Duration), UsageError> {
    let bad = || UsageError(format!("--latency-ms: expected MS or MIN-MAX, got {s:?}"));
    let ms = |v: &str| -> Result<Duration, UsageError> {
        let x: f64 = v.trim().parse().map_err(|_| bad())?;
        if !(x.is_finite() && (0.0..=60_000.0).contains(&x)) {
            return Err(bad());
        }
        Ok(Duration::from_secs_f64(x / 1000.0))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (ms(a)?, ms(b)?);
            if lo > hi {
                return Err(bad());
            }
            Ok((lo, hi))
        }
        None => {
            let x = ms(s)?;
            Ok((x, x))
        }
    }
}

/// Checks the arguments and builds the experiment.
fn experiment(args: &SimulateArgs) -> Result<Experiment, UsageError> {
    if !(2..=100_000).contains(&args.nodes) {
        return Err(UsageError(format!(
            "--nodes must be 2..=100000, got {}",
            args.nodes
        )));
    }
    if !(args.loss.is_finite() && (0.0..1.0).contains(&args.loss)) {
        return Err(UsageError(format!(
            "--loss must be in [0, 1), got {}",
            args.loss
        )));
    }
    if !(1..=64).contains(&args.fanout) {
        return Err(UsageError(format!(
            "--fanout must be 1..=64, got {}",
            args.fanout
        )));
    }
    if !(1..=100_000).contains(&args.rounds) {
        return Err(UsageError(format!(
            "--rounds must be 1..=100000, got {}",
            args.rounds
        )));
    }
    if !(args.threshold.is_finite() && args.threshold > 0.5) {
        return Err(UsageError(format!(
            "--threshold must be a number > 0.5, got {}",
            args.threshold
        )));
    }
    let (lo, hi) = parse_latency(&args.latency_ms)?;
    let warmup = args.warmup.unwrap_or_else(|| default_warmup(args.nodes));
    if warmup >= args.rounds {
        return Err(UsageError(format!(
            "--rounds ({}) must exceed the warm-up ({warmup} rounds; see --warmup)",
            args.rounds
        )));
    }
    let mut e = Experiment::new(args.nodes, args.rounds);
    e.warmup = warmup;
    e.rounds = args.rounds;
    e.crashes = args.crash;
    e.kv_bytes = args.kv_bytes.min(1024);
    e.sim.seed = args.seed;
    e.sim.loss = args.loss;
    e.sim.latency_min = lo;
    e.sim.latency_max = hi;
    e.sim.gossip.fanout = args.fanout;
    e.sim.gossip.phi_threshold = args.threshold;
    e.sim.threads = usize::from(args.threads);
    e.observers = match args.observers {
        Some(Observers::All) => None,
        Some(Observers::Sample(k)) => Some(k),
        None => Some(DEFAULT_OBSERVERS),
    };
    if let Some(d) = args.distribution {
        e.sim.gossip.detector.distribution = d;
    }
    Ok(e)
}

/// Runs `phimon simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let e = experiment(&args)?;
    let report = run_experiment(&e);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn rounds(v: f64) -> String {
    if v.is_nan() {
        "n/a".to_owned()
    } else if v.is_infinite() {
        "never".to_owned()
    } else {
        format!("{v:.2}")
    }
}

/// The report as a readable table.
fn table(r: &Report) -> String {
    let kib = |b: f64| format!("{:.1} KiB", b / 1024.0);
    let rows: Vec<(&str, String)> = vec![
        ("nodes", r.nodes.to_string()),
        (
            "rounds (warm-up)",
            format!("{} ({})", r.rounds, r.warmup_rounds),
        ),
        ("loss", format!("{:.1} %", r.loss * 100.0)),
        ("fanout", r.fanout.to_string()),
        ("seed", r.seed.to_string()),
        (
            "propagation p50 / p99 / max",
            format!(
                "{} / {} / {} rounds (target p99 <= {:.1}; {} samples)",
                rounds(r.propagation_rounds_p50),
                rounds(r.propagation_rounds_p99),
                rounds(r.propagation_rounds_max),
                r.propagation_target_rounds,
                r.propagation_samples
            ),
        ),
        (
            "bytes per node per round",
            format!(
                "{} in {:.1} messages (largest {} B)",
                kib(r.bytes_per_node_per_round),
                r.messages_per_node_per_round,
                r.max_message_bytes
            ),
        ),
        (
            "full-state push would send",
            format!(
                "{} ({:.1}x)",
                kib(r.full_state_push_bytes_per_node_per_round),
                r.full_state_push_bytes_per_node_per_round / r.bytes_per_node_per_round.max(1.0)
            ),
        ),
        (
            "observers (judge their peers)",
            if r.observers == r.nodes {
                format!("all {}", r.observers)
            } else {
                format!("{} of {} (--observers)", r.observers, r.nodes)
            },
        ),
        (
            "detection (all live observers) p99",
            format!(
                "{} rounds over {} crashes ({} undetected)",
                rounds(r.detection_rounds_p99),
                r.crashes,
                r.undetected_crashes
            ),
        ),
        (
            "detection per observer p50",
            format!("{} rounds", rounds(r.detection_rounds_p50_per_observer)),
        ),
        ("false suspicions", r.false_suspicions.to_string()),
        ("messages lost", r.messages_lost.to_string()),
        ("wall time", format!("{} ms", r.wall_ms)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn args(extra: &[&str]) -> SimulateArgs {
        let mut v = vec!["simulate"];
        v.extend_from_slice(extra);
        Cli::parse_from(v).args
    }

    #[test]
    fn observers_default_to_a_sample_and_accept_all() {
        assert_eq!(
            experiment(&args(&["--nodes", "1000"])).unwrap().observers,
            Some(DEFAULT_OBSERVERS)
        );
        let all = experiment(&args(&["--nodes", "1000", "--observers", "all"])).unwrap();
        assert_eq!(all.observers, None);
        let some = experiment(&args(&["--observers", "7"])).unwrap();
        assert_eq!(some.observers, Some(7));
        assert!(Cli::try_parse_from(["simulate", "--observers", "0"]).is_err());
        assert!(Cli::try_parse_from(["simulate", "--observers", "most"]).is_err());
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert!(experiment(&args(&["--nodes", "1"])).is_err());
        assert!(experiment(&args(&["--loss", "1"])).is_err());
        assert!(experiment(&args(&["--latency-ms", "9-3"])).is_err());
        assert!(experiment(&args(&["--rounds", "5"])).is_err());
        let e = experiment(&args(&["--latency-ms", "2-4", "--fanout", "4"])).unwrap();
        assert_eq!(e.sim.latency_min, Duration::from_millis(2));
        assert_eq!(e.sim.gossip.fanout, 4);
    }

    #[test]
    fn a_small_run_reports_every_field() {
        let e = experiment(&args(&["--nodes", "20", "--rounds", "60", "--loss", "0.1"])).unwrap();
        let r = run_experiment(&e);
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "nodes",
            "rounds",
            "loss",
            "propagation_rounds_p50",
            "propagation_rounds_p99",
            "bytes_per_node_per_round",
            "detection_rounds_p99",
            "false_suspicions",
            "wall_ms",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(r.nodes, 20);
        assert!(r.propagation_rounds_p99 <= r.propagation_target_rounds);
        assert_eq!(r.false_suspicions, 0);
        assert_eq!(r.undetected_crashes, 0);
        assert!(table(&r).contains("false suspicions"));
    }
}
