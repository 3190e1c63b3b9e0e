//! Properties every model must keep, phimon's and the baselines': any
//! interval sequence (zeros, duplicates, huge gaps, observer stalls) is
//! accepted without panic, and between two heartbeats phi is never NaN,
//! never negative, finite (only Akka's baseline may be +inf) and
//! non-decreasing in time.

#![allow(clippy::unwrap_used)] // Test code: a panic is a failed test.

use phimon_detector::baseline::{
    AkkaConfig, AkkaPhi, CassandraConfig, CassandraPhi, ChitchatConfig, ChitchatPhi,
};
use phimon_detector::{AccrualDetector, DetectorConfig, Distribution, PeerDetector, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

/// Intervals in microseconds: mostly around a second, with zeros, bursts,
/// duplicates and gaps up to months.
fn intervals() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            4 => 900_000u64..1_100_000,
            1 => Just(0u64),
            1 => 0u64..1_000,
            1 => 1_000_000u64..30_000_000,
            1 => 0u64..(200 * 86_400 * 1_000_000),
        ],
        0..300,
    )
}

/// Silences at which phi is read after the last heartbeat, ascending.
fn probes() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0u64..(10 * 86_400 * 1_000_000), 1..40).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

/// Records `ivs` (after `prepare` had its say at each step) and checks phi
/// between every two heartbeats.
fn check<D: AccrualDetector>(
    mut d: D,
    ivs: &[u64],
    probes: &[u64],
    infinite_ok: bool,
    mut prepare: impl FnMut(&mut D, usize, u64),
) -> Result<(), TestCaseError> {
    let mut t = 1_000u64;
    d.record(Timestamp::from_micros(t));
    for (i, &iv) in ivs.iter().enumerate() {
        let next = t.saturating_add(iv);
        prepare(&mut d, i, t.saturating_add(iv / 2));
        t = next;
        d.record(Timestamp::from_micros(t));
        let last = d.last_arrival().unwrap().as_micros();
        let mut prev = 0.0f64;
        for &p in probes {
            let phi = d.phi(Timestamp::from_micros(last.saturating_add(p)));
            prop_assert!(!phi.is_nan(), "NaN at +{p} us after interval {i}");
            prop_assert!(phi >= 0.0, "phi {phi} < 0 at +{p}");
            prop_assert!(
                phi.is_finite() || (infinite_ok && phi == f64::INFINITY),
                "phi {phi} not finite at +{p}"
            );
            prop_assert!(phi >= prev, "phi fell from {prev} to {phi} at +{p} us");
            prev = phi;
        }
    }
    Ok(())
}

fn config() -> impl Strategy<Value = DetectorConfig> {
    (
        prop::sample::select(Distribution::ALL.to_vec()),
        prop_oneof![Just(1usize), 2usize..20, Just(1000usize)],
        0u64..500_000,
        prop_oneof![Just(0u64), 0u64..5_000_000],
        prop_oneof![Just(1u64), 1u64..5_000_000],
    )
        .prop_map(
            |(distribution, window, min_std, pause, prior)| DetectorConfig {
                window,
                min_std_dev: Duration::from_micros(min_std),
                acceptable_pause: Duration::from_micros(pause),
                distribution,
                first_heartbeat_estimate: Duration::from_micros(prior),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn phimon_models(cfg in config(), ivs in intervals(), probes in probes(), stall in 0usize..7) {
        // Observer stalls in the middle must not break anything either.
        check(PeerDetector::new(&cfg), &ivs, &probes, false, |d, i, mid| {
            if stall > 0 && i % stall == 0 {
                d.observer_resumed(Timestamp::from_micros(mid));
            }
        })?;
    }

    #[test]
    fn akka_baseline(pause in prop::bool::ANY,
                     threshold in prop_oneof![Just(f64::INFINITY), 0.1f64..50.0],
                     ivs in intervals(), probes in probes()) {
        let d = AkkaPhi::new(AkkaConfig {
            threshold,
            acceptable_heartbeat_pause: if pause { Duration::from_secs(3) } else { Duration::ZERO },
            ..AkkaConfig::default()
        });
        check(d, &ivs, &probes, true, |_, _, _| {})?;
    }

    #[test]
    fn cassandra_baseline(interval in 1u64..5_000_000, ivs in intervals(), probes in probes()) {
        let d = CassandraPhi::new(CassandraConfig::for_interval(Duration::from_micros(interval)));
        check(d, &ivs, &probes, false, |_, _, _| {})?;
    }

    #[test]
    fn chitchat_baseline(threshold in prop_oneof![Just(f64::INFINITY), 0.1f64..50.0],
                         ivs in intervals(), probes in probes()) {
        let d = ChitchatPhi::new(ChitchatConfig { threshold, ..ChitchatConfig::default() });
        check(d, &ivs, &probes, false, |_, _, _| {})?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The runtime's one timer per peer: `when_phi_reaches` is the
    /// earliest microsecond at or after the last heartbeat at which phi
    /// reaches the threshold, for every model, history and threshold.
    #[test]
    fn when_phi_reaches_is_the_first_microsecond_phi_does(
        cfg in config(),
        ivs in intervals(),
        thresholds in prop::collection::vec(prop_oneof![0.0f64..2.0, 0.0f64..60.0, 1e3f64..1e6], 1..8),
        started in prop::option::of(0u64..10_000_000),
    ) {
        let mut d = PeerDetector::new(&cfg);
        prop_assert_eq!(d.when_phi_reaches(1.0), None, "no heartbeat yet");
        if let Some(at) = started {
            d.start_at(Timestamp::from_micros(at));
        }
        let mut t = 20_000_000u64;
        for (i, &iv) in ivs.iter().enumerate().take(60) {
            t = t.saturating_add(iv);
            d.record(Timestamp::from_micros(t));
            if i % 7 != 0 {
                continue;
            }
            let last = d.last_arrival().unwrap().as_micros();
            for &th in &thresholds {
                let Some(at) = d.when_phi_reaches(th) else {
                    // Only a threshold beyond phi at the end of the clock
                    // (the adaptive model grows logarithmically far out).
                    let end = d.phi(Timestamp::from_micros(u64::MAX));
                    prop_assert!(end < th, "None for {th} after interval {i}, but phi reaches {end}");
                    continue;
                };
                let at = at.as_micros();
                let phi = d.phi(Timestamp::from_micros(at));
                prop_assert!(at >= last, "{at} before the last heartbeat {last}");
                prop_assert!(phi >= th, "phi {phi} < {th} at the time returned, +{} us", at - last);
                if at > last {
                    let before = d.phi(Timestamp::from_micros(at - 1));
                    prop_assert!(before < th, "phi {before} >= {th} already 1 us before +{} us", at - last);
                }
            }
        }
        prop_assert_eq!(d.when_phi_reaches(f64::NAN), None);
        prop_assert_eq!(d.when_phi_reaches(f64::INFINITY), None);
    }

    /// Duplicates and reordered heartbeats never become intervals, and the
    /// counts add up whatever the order of arrival.
    #[test]
    fn sequence_numbers_count_and_filter(
        seqs in prop::collection::vec(0u64..200, 1..300),
    ) {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        let mut highest: Option<u64> = None;
        let mut recorded = 0u64;
        for (i, &seq) in seqs.iter().enumerate() {
            let at = Timestamp::from_micros(1_000_000 * (i as u64 + 1));
            let fresh = highest.is_none_or(|h| seq > h);
            prop_assert_eq!(d.record_seq(at, seq), fresh);
            if fresh {
                highest = Some(seq);
                recorded += 1;
            }
        }
        let c = d.counts();
        prop_assert_eq!(c.received, recorded);
        prop_assert_eq!(d.window().len() as u64, recorded - 1);
        prop_assert_eq!(c.received + c.reordered + c.duplicate, seqs.len() as u64);
        // Every number up to the highest is received, lost or filled in
        // later; only numbers below the first can be reordered too.
        let first = seqs[0];
        let span = highest.unwrap() - first + 1;
        prop_assert!(c.received + c.lost <= span + c.reordered, "{c:?}, span {span}");
    }
}

fn feed(d: &mut PeerDetector, t: &mut u64, step: u64, n: usize) {
    for _ in 0..n {
        *t += step;
        d.record(Timestamp::from_micros(*t));
    }
}

#[test]
fn adaptive_follows_an_interval_change_within_a_few_heartbeats() {
    let mut adaptive = PeerDetector::new(&DetectorConfig::default());
    let mut exponential = PeerDetector::new(&DetectorConfig {
        distribution: Distribution::Exponential,
        ..DetectorConfig::default()
    });
    for d in [&mut adaptive, &mut exponential] {
        let mut t = 0;
        feed(d, &mut t, 2_000_000, 500);
        feed(d, &mut t, 500_000, 8);
    }
    let at = |d: &PeerDetector| {
        let last = d.last_arrival().unwrap();
        d.phi(last + Duration::from_secs(3))
    };
    // 3 s of silence is 6 intervals of the new rhythm: suspicious already,
    // where a 1000-interval mean (still ~2 s) barely reacts.
    let (a, e) = (at(&adaptive), at(&exponential));
    assert!(a > 3.0 * e && a > 3.0, "adaptive {a}, exponential {e}");
}

#[test]
fn adaptive_folds_the_burst_after_a_pause() {
    let mut d = PeerDetector::new(&DetectorConfig::default());
    let mut t = 0;
    feed(&mut d, &mut t, 1_000_000, 100);
    let before = d.phi(Timestamp::from_micros(t + 3_000_000));
    // A 4 s pause, then four queued heartbeats 50 us apart.
    feed(&mut d, &mut t, 4_000_000, 1);
    feed(&mut d, &mut t, 50, 3);
    let after = d.phi(Timestamp::from_micros(t + 3_000_000));
    // The burst did not make the detector believe heartbeats now come
    // every few microseconds (which would make 3 s of silence enormously
    // suspicious); one late heartbeat made it only a little more tolerant.
    assert!(
        after <= before && after > 0.5 * before,
        "before {before}, after {after}"
    );
}

#[test]
fn adaptive_is_the_default_and_named() {
    assert_eq!(
        DetectorConfig::default().distribution,
        Distribution::Adaptive
    );
    assert_eq!(
        "adaptive".parse::<Distribution>(),
        Ok(Distribution::Adaptive)
    );
    assert_eq!(Distribution::Adaptive.as_str(), "adaptive");
}

/// A trace of `gaps` (ms) with a crash after the last arrival and the given
/// outages (start offset into the trace and length, ms), kept in order and
/// disjoint.
fn trace_with(
    gaps: &[u32],
    outages: &[(u32, u32)],
    cut_before_crash: bool,
) -> phimon_detector::trace::Trace {
    let mut t = 0.0;
    let mut arrivals = vec![0.0];
    for &g in gaps {
        t += f64::from(g);
        arrivals.push(t);
    }
    let crash = t + 500.0;
    let mut spans = Vec::new();
    let mut from = 0.0f64;
    for &(at, len) in outages {
        let start = from + f64::from(at);
        let end = start + f64::from(len.max(1));
        if end > crash {
            break;
        }
        spans.push((start, end));
        from = end;
    }
    // Optionally a cut from the last arrival until the crash: the sender
    // dies while unreachable.
    if cut_before_crash && from < t {
        spans.push((t, crash));
    }
    phimon_detector::trace::Trace {
        interval_ms: 1000.0,
        end_ms: crash + 60_000.0,
        crash_ms: Some(crash),
        outages_ms: spans,
        metadata: vec![],
        arrivals_ms: arrivals,
        seqs: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Marking outages turns suspicions that start inside them into
    /// outage detections and changes nothing else: never more mistakes,
    /// the same crash detection, and each outage detected at most once.
    #[test]
    fn outages_only_excuse_suspicions_inside_them(
        gaps in prop::collection::vec(prop_oneof![8 => 900u32..1100, 1 => 1100u32..15_000], 1..200),
        outages in prop::collection::vec((0u32..60_000, 1u32..20_000), 0..4),
        threshold in 0.5f64..6.0,
        cut_before_crash in prop::bool::ANY,
    ) {
        use phimon_detector::qos::evaluate;
        let marked = trace_with(&gaps, &outages, cut_before_crash);
        let plain = phimon_detector::trace::Trace { outages_ms: vec![], ..marked.clone() };
        let cassandra = || CassandraPhi::new(CassandraConfig::for_interval(Duration::from_secs(1)));
        let m = evaluate(cassandra(), &marked, &[threshold]).remove(0);
        let p = evaluate(cassandra(), &plain, &[threshold]).remove(0);
        prop_assert!(m.mistakes <= p.mistakes, "{m:?} vs {p:?}");
        prop_assert!(m.mistakes + m.outage_detections <= p.mistakes, "{m:?} vs {p:?}");
        prop_assert!(m.outage_detections <= m.outages);
        prop_assert_eq!(m.outages as usize, marked.outages_ms.len());
        prop_assert_eq!(m.detection_ms, p.detection_ms);
        prop_assert_eq!(m.detected, p.detected);
        prop_assert!(m.alive_ms <= p.alive_ms + 1e-9);
        // The text form round-trips with the outages.
        let back = phimon_detector::trace::Trace::parse(&marked.to_text()).unwrap();
        prop_assert_eq!(back.outages_ms, marked.outages_ms);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With sequence numbers, whatever the losses, runs, partitions,
    /// reordering and duplicates: phi stays finite and non-decreasing in
    /// silence, and `when_phi_reaches` is the first microsecond it reaches
    /// a threshold.
    #[test]
    fn lossy_sequences_keep_phi_monotone_and_the_timer_exact(
        beats in prop::collection::vec(
            (
                prop_oneof![
                    8 => Just(0u64),
                    3 => 1u64..3,
                    1 => 3u64..12,
                    1 => 12u64..400,
                ],
                prop_oneof![6 => 900_000u64..1_100_000, 1 => 0u64..5_000, 1 => 1_000_000u64..9_000_000],
                prop_oneof![12 => Just(0u8), 1 => 1u8..4],
            ),
            1..250,
        ),
        interval in prop_oneof![Just(1_000_000u64), 50_000u64..5_000_000],
        probes in probes(),
        thresholds in prop::collection::vec(prop_oneof![0.5f64..4.0, 4.0f64..12.0, 12.0f64..40.0], 1..4),
    ) {
        let mut d = PeerDetector::new(&DetectorConfig {
            first_heartbeat_estimate: Duration::from_micros(interval),
            ..DetectorConfig::default()
        });
        let (mut t, mut seq) = (1_000u64, 0u64);
        d.record_seq(Timestamp::from_micros(t), seq);
        for (i, &(gap, iv, late)) in beats.iter().enumerate() {
            // `gap` lost, the next one after `iv` scaled to the interval,
            // then `late` of the skipped ones turn up (reordered) and one
            // duplicate.
            t += iv * interval / 1_000_000 * (gap + 1).min(3);
            seq += gap + 1;
            d.record_seq(Timestamp::from_micros(t), seq);
            for back in 1..=u64::from(late).min(gap) {
                d.record_seq(Timestamp::from_micros(t + back), seq - back);
            }
            if late > 0 {
                d.record_seq(Timestamp::from_micros(t + 9), seq);
            }
            let last = d.last_arrival().unwrap().as_micros();
            let mut prev = 0.0f64;
            for &p in &probes {
                let phi = d.phi(Timestamp::from_micros(last.saturating_add(p)));
                prop_assert!(phi.is_finite() && phi >= 0.0, "phi {phi} at +{p} after beat {i}");
                prop_assert!(phi >= prev, "phi fell from {prev} to {phi} at +{p} us after beat {i}");
                prev = phi;
            }
            // Dense probes around the due times of the next heartbeats,
            // where the terms of the sum change.
            let mut prev = 0.0f64;
            for k in 0..1000u64 {
                let at = last + k * interval / 100;
                let phi = d.phi(Timestamp::from_micros(at));
                prop_assert!(phi >= prev, "phi fell from {prev} to {phi} at +{} us after beat {i}", at - last);
                prev = phi;
            }
            if i % 5 == 0 {
                for &th in &thresholds {
                    let Some(at) = d.when_phi_reaches(th) else {
                        let end = d.phi(Timestamp::from_micros(u64::MAX));
                        prop_assert!(end < th, "None for {th}, but phi reaches {end}");
                        continue;
                    };
                    let at = at.as_micros();
                    prop_assert!(d.phi(Timestamp::from_micros(at)) >= th);
                    if at > last {
                        prop_assert!(d.phi(Timestamp::from_micros(at - 1)) < th);
                    }
                }
            }
        }
    }
}
