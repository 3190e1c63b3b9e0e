//! Standalone timing of the detector's hot paths, for machines where
//! criterion's numbers are noisy (and for `valgrind --tool=callgrind`):
//! `cargo run -p phimon-detector --release --example hotpath [N]`.
//! Same workloads as `benches/record_phi.rs` and `benches/sweep.rs`:
//! record + phi 1.5 s after the last heartbeat on one peer with a full
//! window of 1000, then phi over 10,000 peers. Prints the best of several
//! rounds, ns per operation.

use phimon_detector::{DetectorConfig, Distribution, PeerDetector, Timestamp};
use std::hint::black_box;
use std::time::Instant;

fn record_and_phi(distribution: Distribution, n: u64) -> f64 {
    let cfg = DetectorConfig {
        distribution,
        ..DetectorConfig::default()
    };
    let mut d = PeerDetector::new(&cfg);
    let mut t = 0u64;
    for i in 0..2000u64 {
        t += 1_000_000 + (i * 7919 % 50_000);
        d.record(Timestamp::from_micros(t));
    }
    let mut best = f64::INFINITY;
    let mut i = 0u64;
    for _ in 0..7 {
        let start = Instant::now();
        let mut acc = 0.0;
        for _ in 0..n {
            i += 1;
            t += 1_000_000 + (i * 7919 % 50_000);
            d.record(Timestamp::from_micros(black_box(t)));
            acc += d.phi(Timestamp::from_micros(t + 1_500_000));
        }
        black_box(acc);
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

/// The first 64 heartbeats of fresh peers (a young peer refreshes its
/// parameters on every heartbeat): ns per record, creation included.
fn young(n: u64) -> f64 {
    let cfg = DetectorConfig::default();
    let peers = (n / 64).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let start = Instant::now();
        let mut acc = 0.0;
        for p in 0..peers {
            let mut d = PeerDetector::new(&cfg);
            let mut t = p;
            for i in 0..64u64 {
                t += 1_000_000 + (i * 7919 % 50_000);
                d.record(Timestamp::from_micros(black_box(t)));
            }
            acc += d.phi(Timestamp::from_micros(t + 1_500_000));
        }
        black_box(acc);
        best = best.min(start.elapsed().as_nanos() as f64 / (peers * 64) as f64);
    }
    best
}

/// What a runtime does per direct heartbeat: record it with its sequence
/// number, then re-arm the peer's timer at `when_phi_reaches(8)`. With
/// `lossy`, one heartbeat in 100 is lost (the loss explanation is on).
fn record_seq_and_timer(n: u64, lossy: bool) -> f64 {
    let mut d = PeerDetector::new(&DetectorConfig::default());
    let mut t = 0u64;
    let mut seq = 0u64;
    let step = |i: u64, seq: &mut u64| {
        *seq += if lossy && i % 100 == 37 { 2 } else { 1 };
    };
    for i in 0..2000u64 {
        t += 1_000_000 + (i * 7919 % 50_000);
        step(i, &mut seq);
        d.record_seq(Timestamp::from_micros(t), seq);
    }
    let mut best = f64::INFINITY;
    let mut i = 0u64;
    for _ in 0..7 {
        let start = Instant::now();
        let mut acc = 0u64;
        for _ in 0..n / 8 {
            i += 1;
            t += 1_000_000 + (i * 7919 % 50_000);
            step(i, &mut seq);
            d.record_seq(Timestamp::from_micros(black_box(t)), seq);
            acc ^= d
                .when_phi_reaches(black_box(8.0))
                .map_or(0, Timestamp::as_micros);
        }
        black_box(acc);
        best = best.min(start.elapsed().as_nanos() as f64 / (n / 8) as f64);
    }
    best
}

/// [`record_and_phi`] on a link that loses one heartbeat in 100, with
/// sequence numbers: phi 1.5 s after the last heartbeat sums the loss
/// explanation's terms.
fn lossy_record_and_phi(n: u64) -> f64 {
    let mut d = PeerDetector::new(&DetectorConfig::default());
    let (mut t, mut seq) = (0u64, 0u64);
    let mut best = f64::INFINITY;
    let mut i = 0u64;
    for round in 0..8 {
        let start = Instant::now();
        let mut acc = 0.0;
        let count = if round == 0 { 2000 } else { n };
        for _ in 0..count {
            i += 1;
            t += 1_000_000 + (i * 7919 % 50_000);
            seq += if i % 100 == 37 { 2 } else { 1 };
            d.record_seq(Timestamp::from_micros(black_box(t)), seq);
            acc += d.phi(Timestamp::from_micros(t + 1_500_000));
        }
        black_box(acc);
        if round > 0 {
            best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    best
}

fn sweep(rounds: u32) -> f64 {
    let cfg = DetectorConfig::default();
    let peers: Vec<PeerDetector> = (0..10_000u64)
        .map(|p| {
            let mut d = PeerDetector::new(&cfg);
            for i in 0..50u64 {
                d.record(Timestamp::from_micros(i * 1_000_000 + (p % 977) * 13));
            }
            d
        })
        .collect();
    let now = Timestamp::from_micros(50_500_000);
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut max = 0.0f64;
        for d in &peers {
            max = max.max(d.phi(black_box(now)));
        }
        black_box(max);
        best = best.min(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    best
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    // `HOTPATH_ONLY=adaptive|normal|exponential|timer|lossy|young|memory|sweep` runs one workload
    // (to count instructions: run it under callgrind with two values of N
    // and divide the difference by 7 x the difference of N).
    let only = std::env::var("HOTPATH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    for &d in Distribution::ALL.iter().filter(|d| wanted(d.as_str())) {
        println!(
            "record+phi {:<12} {:>7.1} ns",
            d.as_str(),
            record_and_phi(d, n)
        );
    }
    if wanted("timer") {
        println!(
            "record_seq+when_phi_reaches(8) {:>7.1} ns",
            record_seq_and_timer(n, false)
        );
    }
    if wanted("lossy") {
        println!(
            "record_seq+when_phi_reaches(8), 1 % loss {:>7.1} ns",
            record_seq_and_timer(n, true)
        );
        println!(
            "record_seq+phi, 1 % loss    {:>7.1} ns",
            lossy_record_and_phi(n)
        );
    }
    if wanted("young") {
        println!("record, first 64 of a peer   {:>7.1} ns", young(n));
    }
    if wanted("memory") {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..5000u64 {
            d.record(Timestamp::from_micros(i * 1_000_000));
        }
        println!(
            "bytes per peer at window 1000: {} ({} inline + {} window)",
            std::mem::size_of::<PeerDetector>() + d.window().heap_bytes(),
            std::mem::size_of::<PeerDetector>(),
            d.window().heap_bytes()
        );
    }
    if wanted("sweep") {
        println!(
            "phi sweep over 10,000 peers (default) {:>7.1} us",
            sweep(if n >= 1_000_000 { 50 } else { 3 })
        );
    }
}
