//! Quality of service of a detector on a trace (Chen, Toueg & Aguilera,
//! "On the Quality of Service of Failure Detectors", 2002).
//!
//! For a threshold, the detector "suspects" while phi >= threshold. Between
//! two heartbeats phi only grows, so each silence contains at most one
//! switch to suspicion, found exactly by bisection on the detector's phi.
//! From the suspicion periods follow:
//!
//! - detection time T_D: from the crash to the start of the suspicion that
//!   lasts to the end of the trace (only for traces with `crash_ms`);
//! - mistakes: suspicion periods that start while the sender is alive and
//!   reachable, their count, rate per hour of alive time and mean
//!   duration T_M;
//! - query accuracy P_A: the fraction of alive time not wrongly suspected;
//! - outage detections: a suspicion that starts inside one of the trace's
//!   `outage_ms` spans (the sender alive but unreachable, see
//!   [`crate::trace`]) is the right call, not a mistake; the time from the
//!   outage's start to the suspicion is its outage detection time.

use crate::trace::Trace;
use phimon_detector::AccrualDetector;
use phimon_detector::Timestamp;

/// QoS figures for one threshold on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Qos {
    /// The phi threshold.
    pub threshold: f64,
    /// Crash to permanent suspicion, ms. `None` without a crash, or when
    /// the crash was not detected before the end of the trace.
    pub detection_ms: Option<f64>,
    /// True when the trace has a crash and it was detected.
    pub detected: bool,
    /// Suspicions that started while the sender was alive.
    pub mistakes: u64,
    /// Total wrongly-suspected time, ms.
    pub mistake_ms_total: f64,
    /// Time the sender was alive, reachable and observed (first arrival
    /// to crash or end, minus the outage spans), ms.
    pub alive_ms: f64,
    /// Outages (`outage_ms` headers) in the trace.
    pub outages: u64,
    /// Outages during which a suspicion started.
    pub outage_detections: u64,
    /// Sum over the detected outages of the time from the outage's start
    /// to the suspicion, ms.
    pub outage_detection_ms_total: f64,
}

impl Qos {
    /// Mean mistake duration T_M, ms (0 without mistakes).
    pub fn mistake_mean_ms(&self) -> f64 {
        if self.mistakes == 0 {
            0.0
        } else {
            self.mistake_ms_total / self.mistakes as f64
        }
    }

    /// Query accuracy P_A: probability that a query at a random alive
    /// instant finds the sender trusted.
    pub fn query_accuracy(&self) -> f64 {
        if self.alive_ms <= 0.0 {
            1.0
        } else {
            (1.0 - self.mistake_ms_total / self.alive_ms).clamp(0.0, 1.0)
        }
    }

    /// Mean time from an outage's start to its suspicion, ms (`None`
    /// when no outage was detected).
    pub fn outage_detection_mean_ms(&self) -> Option<f64> {
        (self.outage_detections > 0)
            .then(|| self.outage_detection_ms_total / self.outage_detections as f64)
    }

    /// Mistakes per hour of alive time.
    pub fn mistakes_per_hour(&self) -> f64 {
        if self.alive_ms <= 0.0 {
            0.0
        } else {
            self.mistakes as f64 / (self.alive_ms / 3_600_000.0)
        }
    }
}

/// Feeds arrival `i` of `trace` to `detector`: with its sequence number
/// ([`AccrualDetector::record_seq`]) if the trace has them, as a bare
/// arrival ([`AccrualDetector::record`]) otherwise. Every replay of a
/// trace goes through here.
pub fn record_arrival<D: AccrualDetector>(detector: &mut D, trace: &Trace, i: usize) {
    let Some(&a) = trace.arrivals_ms.get(i) else {
        return;
    };
    let at = Timestamp::from_millis_f64(a);
    match trace.seq(i) {
        Some(seq) => {
            detector.record_seq(at, seq);
        }
        None => detector.record(at),
    }
}

/// Thresholds `phimon eval` reports by default.
pub const DEFAULT_THRESHOLDS: &[f64] = &[0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0];

/// The first instant in `[from, to]` at which `phi >= threshold`, if any.
/// Relies on phi being non-decreasing in time between heartbeats.
fn first_crossing<D: AccrualDetector>(d: &D, threshold: f64, from: u64, to: u64) -> Option<u64> {
    if d.phi(Timestamp::from_micros(to)) < threshold {
        return None;
    }
    if d.phi(Timestamp::from_micros(from)) >= threshold {
        return Some(from);
    }
    let (mut lo, mut hi) = (from, to); // phi(lo) < threshold <= phi(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if d.phi(Timestamp::from_micros(mid)) >= threshold {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Replays `trace` through `detector` and returns the QoS for each of
/// `thresholds`, in the same order.
pub fn evaluate<D: AccrualDetector>(
    mut detector: D,
    trace: &Trace,
    thresholds: &[f64],
) -> Vec<Qos> {
    let us = |ms: f64| Timestamp::from_millis_f64(ms).as_micros();
    let end = us(trace.end_ms);
    let crash = trace.crash_ms.map(us);
    let alive_until = crash.unwrap_or(end);
    let spans = trace.outage_spans_micros();
    let alive_ms = alive_ms(trace);
    let mut out: Vec<Qos> = thresholds
        .iter()
        .map(|&threshold| Qos {
            threshold,
            detection_ms: None,
            detected: false,
            mistakes: 0,
            mistake_ms_total: 0.0,
            alive_ms,
            outages: spans.len() as u64,
            outage_detections: 0,
            outage_detection_ms_total: 0.0,
        })
        .collect();
    // Per threshold: the last outage already counted as detected.
    let mut counted: Vec<Option<usize>> = vec![None; thresholds.len()];
    let arrivals = &trace.arrivals_ms;
    let mut silences = Silences::new(&spans);
    for (i, &a) in arrivals.iter().enumerate() {
        record_arrival(&mut detector, trace, i);
        let last = detector.last_arrival().map_or(us(a), |t| t.as_micros());
        let (next, is_final) = match arrivals.get(i + 1) {
            Some(&n) => (us(n), false),
            None => (end, true),
        };
        if next <= last {
            continue;
        }
        let exempt = silences.exempt(last, next);
        for (q, counted) in out.iter_mut().zip(counted.iter_mut()) {
            let Some(start) = first_crossing(&detector, q.threshold, last, next) else {
                continue;
            };
            // A suspicion that starts after the crash is the crash's
            // detection, whatever span it falls in.
            let alive = crash.is_none_or(|c| start < c);
            match exempt {
                Some((from, outage)) if alive && start >= from => {
                    // One detection per outage, however many silences
                    // (stray arrivals) it spans.
                    let first = counted.replace(outage) != Some(outage);
                    if first {
                        q.outage_detections += 1;
                        q.outage_detection_ms_total +=
                            start.saturating_sub(spans[outage].0) as f64 / 1000.0;
                    }
                }
                _ if alive => {
                    let stop = exempt.map_or(next, |(from, _)| from.min(next));
                    q.mistakes += 1;
                    q.mistake_ms_total +=
                        stop.min(alive_until).saturating_sub(start) as f64 / 1000.0;
                }
                _ => {}
            }
            if is_final {
                if let Some(c) = crash {
                    q.detected = true;
                    q.detection_ms = Some(start.saturating_sub(c) as f64 / 1000.0);
                }
            }
        }
    }
    out
}

/// Time the sender of `trace` was alive, reachable and observed, ms: from
/// the first arrival to the crash (or the end), minus the outage spans.
pub fn alive_ms(trace: &Trace) -> f64 {
    let us = |ms: f64| Timestamp::from_millis_f64(ms).as_micros();
    let end = us(trace.end_ms);
    let first = trace.arrivals_ms.first().map(|&a| us(a)).unwrap_or(end);
    let alive_until = trace.crash_ms.map_or(end, us);
    let unreachable: u64 = trace
        .outage_spans_micros()
        .iter()
        .map(|&(s, r)| r.min(alive_until).saturating_sub(s.max(first)))
        .sum();
    alive_until
        .saturating_sub(first)
        .saturating_sub(unreachable) as f64
        / 1000.0
}

/// Walks a trace's outage spans along its silences, in order.
pub(crate) struct Silences<'a> {
    spans: &'a [(u64, u64)],
    next: usize,
}

impl<'a> Silences<'a> {
    /// `spans` as [`Trace::outage_spans_micros`] returns them.
    pub(crate) fn new(spans: &'a [(u64, u64)]) -> Self {
        Silences { spans, next: 0 }
    }

    /// For the silence from `last` to `next` (called with increasing
    /// silences): from which instant on a suspicion in it belongs to an
    /// outage, and that outage's index.
    pub(crate) fn exempt(&mut self, last: u64, next: u64) -> Option<(u64, usize)> {
        // Outages whose silence ended before this one began are done.
        while self.spans.get(self.next).is_some_and(|&(_, r)| r <= last) {
            self.next += 1;
        }
        let &(start, _) = self.spans.get(self.next)?;
        (start < next).then_some((start.max(last), self.next))
    }
}

/// Samples phi every `step_ms` from the first arrival to `end_ms`
/// inclusive, each sample taken after every arrival at or before it.
/// Calls `sink(t_ms, phi)` per sample.
pub fn sample_phi<D: AccrualDetector>(
    mut detector: D,
    trace: &Trace,
    step_ms: f64,
    mut sink: impl FnMut(f64, f64),
) {
    let Some(&first) = trace.arrivals_ms.first() else {
        return;
    };
    let step_ms = if step_ms > 0.0 { step_ms } else { 10.0 };
    let mut next_arrival = 0;
    let mut k: u64 = 0;
    loop {
        // Multiply instead of accumulating so long traces do not drift.
        let t = first + k as f64 * step_ms;
        if t > trace.end_ms {
            break;
        }
        while let Some(&a) = trace.arrivals_ms.get(next_arrival) {
            if a > t {
                break;
            }
            record_arrival(&mut detector, trace, next_arrival);
            next_arrival += 1;
        }
        sink(t, detector.phi(Timestamp::from_millis_f64(t)));
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phimon_detector::{DetectorConfig, Distribution, PeerDetector};

    fn normal() -> DetectorConfig {
        DetectorConfig {
            distribution: Distribution::Normal,
            ..DetectorConfig::default()
        }
    }

    fn steady(n: usize, crash: Option<f64>, end: f64) -> Trace {
        Trace {
            interval_ms: 1000.0,
            end_ms: end,
            crash_ms: crash,
            outages_ms: vec![],
            metadata: vec![],
            arrivals_ms: (0..n).map(|i| i as f64 * 1000.0).collect(),
            seqs: None,
        }
    }

    #[test]
    fn steady_crash_is_detected_at_the_analytic_time() {
        // Mean 1 s, std floored at 100 ms: phi = 8 at y ~ 5.612 sigma.
        let t = steady(100, Some(99_000.0), 200_000.0);
        let q = evaluate(PeerDetector::new(&normal()), &t, &[8.0]);
        let d = q[0].detection_ms.unwrap();
        assert!((d - (1000.0 + 561.2)).abs() < 1.0, "{d}");
        assert_eq!(q[0].mistakes, 0);
        assert_eq!(q[0].query_accuracy(), 1.0);
    }

    #[test]
    fn a_long_gap_is_a_mistake_of_the_right_length() {
        let mut t = steady(50, None, 49_500.0);
        // Remove heartbeats 20..25: a 6 s silence.
        t.arrivals_ms
            .retain(|&a| !(20_000.0..=25_000.0).contains(&a));
        let q = evaluate(PeerDetector::new(&normal()), &t, &[1.0, 8.0]);
        for q in &q {
            assert_eq!(q.mistakes, 1, "{q:?}");
            assert!(q.detection_ms.is_none());
            assert!(q.query_accuracy() < 1.0);
        }
        assert!(q[0].mistake_ms_total > q[1].mistake_ms_total);
        // At phi 8 the suspicion starts ~1.56 s after 19 s and ends at 26 s.
        assert!(
            (q[1].mistake_ms_total - (7000.0 - 1561.2)).abs() < 2.0,
            "{:?}",
            q[1]
        );
    }

    #[test]
    fn a_suspicion_inside_an_outage_is_an_outage_detection_not_a_mistake() {
        // A 6 s silence after 19 s, as above, now marked as an outage from
        // 19.5 s (when the first lost heartbeat was due) to 25 s.
        let mut t = steady(50, None, 49_500.0);
        t.arrivals_ms
            .retain(|&a| !(20_000.0..=25_000.0).contains(&a));
        t.outages_ms = vec![(19_500.0, 25_000.0)];
        let q = evaluate(PeerDetector::new(&normal()), &t, &[8.0]);
        // At phi 8 the suspicion starts at ~20.56 s, inside the outage.
        assert_eq!(q[0].mistakes, 0, "{:?}", q[0]);
        assert_eq!(q[0].query_accuracy(), 1.0);
        assert_eq!((q[0].outages, q[0].outage_detections), (1, 1));
        let d = q[0].outage_detection_mean_ms().unwrap();
        assert!((d - (1561.2 - 500.0)).abs() < 2.0, "{d}");
        // The outage span (19.5 s to the arrival at 26 s) is not alive time.
        assert!(
            (q[0].alive_ms - (49_500.0 - 6_500.0)).abs() < 1e-6,
            "{:?}",
            q[0]
        );
        // Marked from 21 s on, the same suspicion started while the sender
        // was reachable: a mistake, lasting until the outage began.
        let mut late = t.clone();
        late.outages_ms = vec![(21_000.0, 25_000.0)];
        let q = evaluate(PeerDetector::new(&normal()), &late, &[8.0]);
        assert_eq!(
            (q[0].mistakes, q[0].outage_detections),
            (1, 0),
            "{:?}",
            q[0]
        );
        assert!(
            (q[0].mistake_ms_total - (21_000.0 - 20_561.2)).abs() < 2.0,
            "{:?}",
            q[0]
        );
        // The zero-mistake peaks stop at the outage's start.
        let peaks = crate::compare::alive_peaks(PeerDetector::new(&normal()), &t);
        let at_start = PeerDetector::new(&normal());
        let mut d = at_start;
        for &a in t.arrivals_ms.iter().take_while(|&&a| a < 19_500.0) {
            d.record(Timestamp::from_millis_f64(a));
        }
        let want = d.phi(Timestamp::from_micros(19_500_000 - 1));
        assert!(peaks.contains(&want), "{want} not among the peaks");
        assert!(peaks.iter().all(|&p| p < 1.0), "{peaks:?}");
    }

    #[test]
    fn a_crash_at_the_end_of_an_outage_is_a_crash_detection() {
        // The sender is cut off at 19.5 s and crashes at 24.5 s, before the
        // cut heals: the suspicion at ~20.56 s is the outage's, and the
        // crash is detected "at once" (the peer was already suspected).
        let mut t = steady(20, Some(24_500.0), 60_000.0);
        t.outages_ms = vec![(19_500.0, 24_500.0)];
        let q = evaluate(PeerDetector::new(&normal()), &t, &[8.0]).remove(0);
        assert_eq!((q.mistakes, q.outage_detections), (0, 1), "{q:?}");
        assert_eq!(q.detection_ms, Some(0.0), "{q:?}");
        // At a threshold reached only after the crash, the suspicion is the
        // crash's detection, not an outage detection.
        let q = evaluate(PeerDetector::new(&normal()), &t, &[1e4]).remove(0);
        assert_eq!((q.mistakes, q.outage_detections), (0, 0), "{q:?}");
        assert!(q.detection_ms.is_some_and(|d| d > 0.0), "{q:?}");
    }

    #[test]
    fn sampling_covers_first_arrival_to_end_inclusive() {
        let t = steady(3, None, 2500.0);
        let mut rows = vec![];
        sample_phi(
            PeerDetector::new(&DetectorConfig::default()),
            &t,
            500.0,
            |t, p| rows.push((t, p)),
        );
        let times: Vec<f64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(times, vec![0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]);
        assert!(rows.windows(2).all(|w| w[1].1.is_finite()));
    }
}
