//! Properties of the baselines and of QoS: any interval sequence is
//! accepted without panic and, between two heartbeats, phi is never NaN,
//! never negative, finite (only Akka's baseline may be +inf) and
//! non-decreasing in time; marking outages excuses only the suspicions
//! inside them.

use phimon_detector::{AccrualDetector, Timestamp};
use phimon_eval::baseline::{
    AkkaConfig, AkkaPhi, CassandraConfig, CassandraPhi, ChitchatConfig, ChitchatPhi,
};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

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

/// A trace of `gaps` (ms) with a crash after the last arrival and the given
/// outages (start offset into the trace and length, ms), kept in order and
/// disjoint.
fn trace_with(
    gaps: &[u32],
    outages: &[(u32, u32)],
    cut_before_crash: bool,
) -> phimon_eval::trace::Trace {
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
    phimon_eval::trace::Trace {
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
        use phimon_eval::qos::evaluate;
        let marked = trace_with(&gaps, &outages, cut_before_crash);
        let plain = phimon_eval::trace::Trace { outages_ms: vec![], ..marked.clone() };
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
        let back = phimon_eval::trace::Trace::parse(&marked.to_text()).unwrap();
        prop_assert_eq!(back.outages_ms, marked.outages_ms);
    }
}
