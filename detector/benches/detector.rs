//! Detector hot paths. Targets on the 2-core reference machine:
//! `record` + `phi` on one peer <= 25 ns; phi over 10,000 peers <= 200 us;
//! memory <= 8 KiB per peer at window 1000 (asserted in the crate's tests).

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{Criterion, criterion_group, criterion_main};
use phimon_detector::{DetectorConfig, Distribution, PeerDetector, Registry, Timestamp};
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

fn sweep(c: &mut Criterion) {
    let mut r: Registry<u32> = Registry::new(DetectorConfig::default());
    for p in 0..10_000u32 {
        for i in 0..50u64 {
            r.observe(
                p,
                1,
                Timestamp::from_micros(i * 1_000_000 + u64::from(p % 977) * 13),
            );
        }
    }
    let now = Timestamp::from_micros(50_500_000);
    c.bench_function("phi sweep over 10,000 peers", |b| {
        b.iter(|| {
            let mut max = 0.0f64;
            for (_, s) in r.iter() {
                max = max.max(s.detector().phi(black_box(now)));
            }
            black_box(max)
        })
    });
}

criterion_group!(benches, record_and_phi, sweep);
criterion_main!(benches);
