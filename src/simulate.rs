//! `phimon simulate`: a deterministic simulation of N nodes running the
//! real protocol in one process (phimon-sim): cost per node, detection
//! and dissemination, false suspicions.

use crate::UsageError;
use phimon_sim::{Report, SimConfig};
use std::time::Duration;

/// Arguments of `phimon simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Fleet size.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub nodes: usize,
    /// Probability that a datagram (heartbeat, probe) is lost, 0 to below
    /// 1; a reliable message is delayed by a retransmission instead.
    #[arg(long, value_name = "P", default_value_t = 0.01)]
    pub loss: f64,
    /// Peers a new record is pushed to (at least ln N + 1 are used).
    #[arg(long, value_name = "F", default_value_t = 3)]
    pub fanout: usize,
    /// Observers per node.
    #[arg(long, value_name = "K", default_value_t = phimon_gossip::DEFAULT_OBSERVERS)]
    pub observers: usize,
    /// Rounds (heartbeat intervals of 1 s) to simulate.
    #[arg(long, value_name = "R", default_value_t = 300)]
    pub rounds: u64,
    /// Seed: the same seed replays the same run.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Nodes crashed (kill -9) during the run, spread from
    /// `--first-crash` to 30 rounds before the end.
    #[arg(long, value_name = "C", default_value_t = 5)]
    pub crashes: usize,
    /// Round of the first crash: detectors have this much history.
    #[arg(long, value_name = "R", default_value_t = 60)]
    pub first_crash: u64,
    /// One-way latency in milliseconds: `X`, or `MIN-MAX` for a uniform
    /// spread.
    #[arg(long, value_name = "MS", default_value = "0.2-1")]
    pub latency_ms: String,
    /// Detector model (adaptive, normal, exponential); default: the
    /// detector's default.
    #[arg(long, value_name = "MODEL")]
    pub distribution: Option<phimon_detector::Distribution>,
    /// phi threshold of a suspicion.
    #[arg(long, value_name = "PHI", default_value_t = 8.0)]
    pub threshold: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Checks the arguments and builds the run's settings.
fn sim_config(args: &SimulateArgs) -> Result<SimConfig, UsageError> {
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
    if !(1..=32).contains(&args.fanout) {
        return Err(UsageError(format!(
            "--fanout must be 1..=32, got {}",
            args.fanout
        )));
    }
    if !(1..=64).contains(&args.observers) {
        return Err(UsageError(format!(
            "--observers must be 1..=64, got {}",
            args.observers
        )));
    }
    if !(1..=100_000).contains(&args.rounds) {
        return Err(UsageError(format!(
            "--rounds must be 1..=100000, got {}",
            args.rounds
        )));
    }
    if args.crashes > 0 && args.rounds < args.first_crash + 31 {
        return Err(UsageError(format!(
            "--rounds {} leaves no time for crashes: they start at --first-crash {} and need 30 \
             rounds to be detected, so use --rounds {} or more (or --crashes 0)",
            args.rounds,
            args.first_crash,
            args.first_crash + 31
        )));
    }
    if !(args.threshold.is_finite() && args.threshold > 0.0) {
        return Err(UsageError(format!(
            "--threshold must be a number > 0, got {}",
            args.threshold
        )));
    }
    let mut cfg = SimConfig {
        nodes: args.nodes,
        rounds: args.rounds,
        loss: args.loss,
        fanout: args.fanout,
        observers: args.observers,
        seed: args.seed,
        crashes: args.crashes,
        first_crash: args.first_crash,
        latency: parse_latency(&args.latency_ms)?,
        threshold: args.threshold,
        resolve_threshold: (args.threshold / 2.0).min(4.0),
        ..SimConfig::default()
    };
    if let Some(d) = args.distribution {
        cfg.detector.distribution = d;
    }
    Ok(cfg)
}

/// Runs `phimon simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let cfg = sim_config(&args)?;
    let r = phimon_sim::run(&cfg);
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", table(&r));
    }
    Ok(())
}

fn table(r: &Report) -> String {
    let kib = |b: f64| b / 1024.0;
    format!(
        "phimon simulate: {} nodes, {} rounds of 1 s, {:.1} % datagram loss, {} observers per node\n\
         \n\
         cost per node per round      {:.0} bytes ({:.0} heartbeats, {:.0} gossip), {:.2} KiB with packet headers\n\
         \x20                            {:.2} datagrams, {:.2} messages\n\
         signatures and credentials   {:.1} % of the bytes\n\
         detection (crash -> every    p50 {:.2} s, p99 {:.2} s ({} crashes, {} undetected)\n\
         live node suspects it)       at the observers p50 {:.2} s\n\
         dissemination (quorum ->     99 % of nodes within {:.2} rounds (target {:.1}), all within p50 {:.2} / p99 {:.2}\n\
         every live node)\n\
         false suspicions             {} fleet-wide, {} by a single observer\n\
         pages (suspected)            {}\n\
         peak memory                  {:.2} GiB\n\
         wall time                    {:.1} s\n",
        r.nodes,
        r.rounds,
        r.loss * 100.0,
        r.observers,
        r.bytes_per_node_per_round,
        r.heartbeat_bytes_per_node_per_round,
        r.gossip_bytes_per_node_per_round,
        kib(r.wire_bytes_per_node_per_round),
        r.datagrams_per_node_per_round,
        r.messages_per_node_per_round,
        r.signature_bytes_share * 100.0,
        r.detection_rounds_p50,
        r.detection_rounds_p99,
        r.crashes,
        r.undetected,
        r.observer_detection_rounds_p50,
        r.reach99_rounds_max,
        r.reach99_rounds_target,
        r.propagation_rounds_p50,
        r.propagation_rounds_p99,
        r.false_suspicions,
        r.false_local_suspicions,
        r.pages,
        r.peak_rss_bytes as f64 / (1u64 << 30) as f64,
        r.wall_ms as f64 / 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_parse_and_bad_ones_are_usage_errors() {
        assert_eq!(
            parse_latency("2").unwrap(),
            (Duration::from_millis(2), Duration::from_millis(2))
        );
        assert_eq!(
            parse_latency("0.2-1").unwrap(),
            (Duration::from_micros(200), Duration::from_millis(1))
        );
        for bad in ["", "x", "5-1", "-1", "1e9"] {
            assert!(parse_latency(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_too_short_for_its_crashes_is_a_usage_error() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let args = |a: &[&str]| Cli::parse_from(std::iter::once("x").chain(a.iter().copied())).args;
        let e = sim_config(&args(&["--rounds", "60"])).unwrap_err();
        assert!(e.0.contains("--rounds 91 or more"), "{}", e.0);
        assert!(sim_config(&args(&["--rounds", "60", "--crashes", "0"])).is_ok());
        assert!(sim_config(&args(&["--rounds", "91"])).is_ok());
    }
}
