//! `record` + `phi` on one peer with a full window (window 1000, so the
//! eviction of the oldest interval is on the measured path), once per
//! model. Target (issue 3, the 2-core reference machine): <= 25 ns per
//! record + phi. Memory per peer (<= 8 KiB at window 1000) is asserted
//! by the crate's unit tests instead.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{Criterion, criterion_group, criterion_main};
use phimon_detector::{DetectorConfig, Distribution, PeerDetector, Timestamp};
use std::hint::black_box;

fn record_and_phi(c: &mut Criterion) {
    for distribution in Distribution::ALL {
        record_and_phi_with(c, *distribution);
    }
}

fn record_and_phi_with(c: &mut Criterion, distribution: Distribution) {
    let cfg = DetectorConfig {
        distribution,
        ..DetectorConfig::default()
    };
    let mut d = PeerDetector::new(&cfg);
    let mut t = 0u64;
    // Fill the window so eviction is on the measured path.
    for i in 0..2000u64 {
        t += 1_000_000 + (i * 7919 % 50_000);
        d.record(Timestamp::from_micros(t));
    }
    let mut i = 0u64;
    let name = format!("record+phi (one peer, window 1000, {distribution})");
    c.bench_function(&name, |b| {
        b.iter(|| {
            i += 1;
            t += 1_000_000 + (i * 7919 % 50_000);
            d.record(Timestamp::from_micros(black_box(t)));
            black_box(d.phi(Timestamp::from_micros(t + 1_500_000)))
        })
    });
}

criterion_group!(benches, record_and_phi);
criterion_main!(benches);
