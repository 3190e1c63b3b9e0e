//! phi of every peer at one instant: what a node does once per tick for
//! the peers it observes, and a scrape with `export_all_peers`. 10,000
//! peers of the default model, 50 heartbeats each. Target (issue 3, the
//! 2-core reference machine): <= 200 us per sweep of 10,000 peers.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{Criterion, criterion_group, criterion_main};
use phimon_detector::{DetectorConfig, PeerDetector, Timestamp};
use std::hint::black_box;

/// 10,000 detectors, each fed 50 heartbeats a second apart (offset per
/// peer so the windows differ).
fn peers() -> Vec<PeerDetector> {
    let cfg = DetectorConfig::default();
    (0..10_000u64)
        .map(|p| {
            let mut d = PeerDetector::new(&cfg);
            for i in 0..50u64 {
                d.record(Timestamp::from_micros(i * 1_000_000 + (p % 977) * 13));
            }
            d
        })
        .collect()
}

fn sweep(c: &mut Criterion) {
    let peers = peers();
    let now = Timestamp::from_micros(50_500_000);
    c.bench_function("phi sweep over 10,000 peers", |b| {
        b.iter(|| {
            let mut max = 0.0f64;
            for d in &peers {
                max = max.max(d.phi(black_box(now)));
            }
            black_box(max)
        })
    });
}

criterion_group!(benches, sweep);
criterion_main!(benches);
