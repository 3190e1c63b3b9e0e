//! Direct heartbeats at the default threshold: how fast a crash is
//! detected after a short and a long history, on a clean link and at 1 %
//! loss by 3 observers, and how often a live link is suspected at 1 % and
//! 20 % loss.
//! `cargo run -p phimon-eval --release --features corpus --example direct`
//! (`THRESHOLD=8` sets the threshold, `HOURS=` the length of the loss
//! runs, `RUNS=` the kills per history at 1 % loss, `SEQ=0` replays
//! without sequence numbers, as a trace without them is).
//!
//! - Detection: a sender on a clean LAN (0.5 ms timer jitter, 0.3 ms +
//!   exponential 0.1 ms delay) is killed at 100 phases of its interval
//!   after 40 s (and after an hour); detection is the time from the kill
//!   to the instant `when_phi_reaches(threshold)` returns, which is when
//!   phi first reaches the threshold.
//! - At 1 % independent loss: the sender's heartbeats go to 3 observers
//!   over 3 independent links (one seed each); it is killed at a random
//!   phase after 40 s to an hour. Per observer and for the fleet, which
//!   suspects it when 2 of its 3 observers do: the second-fastest of the
//!   three.
//! - False suspicions: long generated traces (the corpus generator, one
//!   seed per run) replayed through a fresh detector each; a mistake is a
//!   suspicion of the live sender. Fresh detectors are what a new cluster,
//!   the simulator and the end-to-end tests start with.

use phimon_detector::{DetectorConfig, PeerDetector, Timestamp};
use phimon_eval::corpus::{Jitter, Loss, Scenario};
use phimon_eval::qos;
use phimon_eval::trace::Trace;
use std::time::Duration;

/// `SEQ=0`: replay without sequence numbers.
fn with_seq() -> bool {
    std::env::var("SEQ").map_or(true, |v| v != "0")
}

/// The scenario's trace, without its sequence numbers under `SEQ=0`.
fn generate(s: &Scenario) -> Trace {
    let mut t = s.generate();
    if !with_seq() {
        t.seqs = None;
    }
    t
}

/// Feeds the arrivals of `trace` up to `until_ms` to `d`.
fn feed(d: &mut PeerDetector, trace: &Trace, until_ms: f64) {
    for (i, &a) in trace.arrivals_ms.iter().enumerate() {
        if a > until_ms {
            break;
        }
        qos::record_arrival(d, trace, i);
    }
}

fn detector(interval_ms: f64) -> PeerDetector {
    PeerDetector::new(&DetectorConfig {
        first_heartbeat_estimate: Duration::from_secs_f64(interval_ms / 1000.0),
        ..DetectorConfig::default()
    })
}

/// Detection times (ms) of kills at `phases` phases after `alive_s` of
/// clean heartbeats, over a few seeds of the LAN's jitter.
fn detection(interval_ms: f64, alive_s: f64, threshold: f64, phases: u32) -> Vec<f64> {
    let mut out = Vec::new();
    for seed in 0..5u64 {
        let trace = generate(&Scenario::quiet(
            "lan",
            1000 + seed,
            interval_ms,
            alive_s + 1.0,
        ));
        for k in 0..phases {
            let crash_ms = alive_s * 1000.0 + f64::from(k) / f64::from(phases) * interval_ms;
            let mut d = detector(interval_ms);
            feed(&mut d, &trace, crash_ms);
            let Some(at) = d.when_phi_reaches(threshold) else {
                out.push(f64::INFINITY);
                continue;
            };
            out.push(at.as_millis_f64() - crash_ms);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Kills after `alive_s` of `link` (its seed varied per run and
/// observer): detection times (ms) at each observer and of the 2-of-3
/// quorum, sorted.
fn quorum_detection(link: Scenario, alive_s: f64, threshold: f64, runs: u32) -> [Vec<f64>; 2] {
    let (mut each, mut quorum) = (Vec::new(), Vec::new());
    for r in 0..runs {
        // A phase per run, spread over the interval (golden-ratio steps).
        let phase = (f64::from(r) * 0.618_033_988_75).fract();
        let crash_ms = alive_s * 1000.0 + phase * link.interval_ms;
        let mut three: Vec<f64> = (0..3u64)
            .map(|o| {
                let t = generate(&Scenario {
                    seed: link.seed + 3 * u64::from(r) + o,
                    alive_s: alive_s + 2.0,
                    ..link
                });
                let mut d = detector(link.interval_ms);
                feed(&mut d, &t, crash_ms);
                d.when_phi_reaches(threshold)
                    .map_or(f64::INFINITY, |at| at.as_millis_f64() - crash_ms)
            })
            .collect();
        three.sort_by(f64::total_cmp);
        each.extend_from_slice(&three);
        quorum.push(three[1]);
    }
    each.sort_by(f64::total_cmp);
    quorum.sort_by(f64::total_cmp);
    [each, quorum]
}

fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The silence (s) after which phi reaches `threshold` at the end of a
/// trace of `scenario` (its detector has learned that link), median and
/// lowest over `runs` seeds.
fn learned_silence(scenario: Scenario, runs: u64, threshold: f64) -> (f64, f64) {
    let mut v: Vec<f64> = (0..runs)
        .map(|r| {
            let t = generate(&Scenario {
                seed: scenario.seed + r,
                ..scenario
            });
            let mut d = detector(scenario.interval_ms);
            feed(&mut d, &t, f64::INFINITY);
            let last = d.last_arrival().map_or(0.0, Timestamp::as_millis_f64);
            d.when_phi_reaches(threshold)
                .map_or(f64::INFINITY, |at| (at.as_millis_f64() - last) / 1000.0)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (quantile(&v, 0.5), v[0])
}

/// Mistakes and alive hours over `runs` traces of `scenario` with seeds
/// from `seed`.
fn mistakes(scenario: Scenario, runs: u64, threshold: f64) -> (u64, u64, f64) {
    let (mut m, mut runs_with, mut hours) = (0, 0, 0.0);
    for r in 0..runs {
        let t = generate(&Scenario {
            seed: scenario.seed + r,
            ..scenario
        });
        let q = qos::evaluate(detector(scenario.interval_ms), &t, &[threshold]).remove(0);
        m += q.mistakes;
        runs_with += u64::from(q.mistakes > 0);
        hours += q.alive_ms / 3.6e6;
    }
    (m, runs_with, hours)
}

fn main() {
    let threshold: f64 = std::env::var("THRESHOLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8.0);
    let hours: f64 = std::env::var("HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200.0);
    let runs: u32 = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!(
        "threshold {threshold}, {} sequence numbers",
        if with_seq() { "with" } else { "without" }
    );
    println!("kill -9 -> phi >= threshold, clean LAN, ms (100 phases x 5 seeds):");
    for (interval, alive) in [
        (1000.0, 40.0),
        (1000.0, 3600.0),
        (500.0, 40.0),
        (1000.0, 10.0),
    ] {
        let d = detection(interval, alive, threshold, 100);
        println!(
            "  {interval:>5} ms heartbeats, {alive:>5} s of history: p50 {:>5.0}  p99 {:>5.0}  max {:>5.0}  min {:>5.0}",
            quantile(&d, 0.5),
            quantile(&d, 0.99),
            quantile(&d, 1.0),
            quantile(&d, 0.0),
        );
    }
    let lossy_1s = Scenario {
        loss: Loss::Bernoulli(0.01),
        ..Scenario::quiet("loss-1pct", 7000, 1000.0, 3600.0)
    };
    println!(
        "kill -9 -> phi >= threshold, 1 % loss, 3 observers on independent links, ms ({runs} kills):"
    );
    for alive in [40.0, 300.0, 600.0, 3600.0] {
        let runs = if alive > 1000.0 { runs / 5 } else { runs };
        let [each, quorum] = quorum_detection(
            Scenario {
                seed: 20_000,
                ..lossy_1s
            },
            alive,
            threshold,
            runs,
        );
        println!(
            "  {alive:>5} s of history: each p50 {:>5.0} p99 {:>5.0} max {:>5.0} | 2 of 3: p50 {:>5.0} p99 {:>5.0} max {:>5.0}",
            quantile(&each, 0.5),
            quantile(&each, 0.99),
            quantile(&each, 1.0),
            quantile(&quorum, 0.5),
            quantile(&quorum, 0.99),
            quantile(&quorum, 1.0),
        );
    }
    println!("silence that reaches the threshold once the link's loss is learned (1 h):");
    let lossy_500 = Scenario {
        base_delay_ms: 50.0,
        jitter: Jitter::Normal(30.0),
        loss: Loss::Bernoulli(0.2),
        ..Scenario::quiet("loss-20pct", 9000, 500.0, 3600.0)
    };
    for (label, s) in [
        ("1 % loss, 1 s", lossy_1s),
        ("20 % loss, 500 ms", lossy_500),
    ] {
        let (median, lowest) = learned_silence(s, 50, threshold);
        println!("  {label:<20} median {median:.2} s, lowest {lowest:.2} s (50 links)");
    }
    println!("false suspicions of a live link (fresh detector per run):");
    for (label, s, runs) in [
        ("1 % loss, 1 s, 1 h runs", lossy_1s, hours.ceil() as u64),
        (
            "20 % loss, 50+-30 ms, 500 ms, 1 h runs",
            lossy_500,
            hours.ceil() as u64,
        ),
        (
            "1 % loss, 1 s, 300 s runs",
            Scenario {
                alive_s: 300.0,
                ..lossy_1s
            },
            (hours * 12.0).ceil() as u64,
        ),
        (
            "20 % loss, 500 ms, 150 s runs after 10 s clean",
            Scenario {
                alive_s: 160.0,
                loss_from_s: 10.0,
                ..lossy_500
            },
            (hours * 24.0).ceil() as u64,
        ),
    ] {
        let (m, with, h) = mistakes(s, runs, threshold);
        println!(
            "  {label:<48} {runs:>6} runs, {h:>7.1} alive h: {m} mistakes ({:.2e} per link-hour), {with} runs with one",
            m as f64 / h
        );
    }
}
