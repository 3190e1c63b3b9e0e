//! `GET /v1/whatif`: each observed peer's detector window replayed at
//! other thresholds, through the same QoS evaluation `phimon eval` runs
//! on recorded traces.
//!
//! What is replayed: the intervals the peer's detector window holds now
//! (at most `detector.window`, e.g. 1000 intervals, about 17 minutes at
//! 1 s heartbeats), laid end to end as arrivals into a fresh detector
//! with the settings in force, with a crash right after the last one.
//! What that gives, per threshold:
//!
//! - the detection time had the peer died right after its last
//!   heartbeat: the same detector state the live one has now;
//! - the mistakes: silences within that history in which phi would have
//!   reached the threshold although the next heartbeat came.
//!
//! Limits: the window keeps intervals, not sequence numbers, so a lost
//! heartbeat replays as one long interval (the live adaptive model knows
//! it was a loss); the first intervals are judged from the prior, as
//! after a restart; and minutes of history say little about rare events
//! (a mistake rate of 0 over 17 minutes is not a guarantee for a week).
//! For hours of history, record arrivals (`phimon run --record-arrivals`)
//! and replay them with `phimon eval`.
//!
//! [`window_trace`] exports the same window as a trace (`phimon record`).

use phimon_detector::{DetectorConfig, PeerDetector};
use phimon_eval::qos;
use phimon_eval::trace::Trace;
use phimon_exporter::{PeerWhatIf, WhatIfOutcome, WhatIfReport};
use phimon_node::Node;
use std::time::Duration;

/// How long after the last heartbeat the replay watches for the
/// suspicion: far beyond any useful detection time.
fn horizon(interval: Duration) -> Duration {
    (interval * 120).max(Duration::from_secs(60))
}

/// The report for `thresholds` (the current one is put first).
pub fn report(node: &Node, detector: &DetectorConfig, current: f64, asked: &[f64]) -> WhatIfReport {
    let mut thresholds = vec![current];
    for &t in asked {
        if !thresholds.contains(&t) {
            thresholds.push(t);
        }
    }
    let interval = detector.first_heartbeat_estimate;
    let mut peers: Vec<PeerWhatIf> = node
        .gossip()
        .members()
        .filter(|m| !m.is_self())
        .filter_map(|m| {
            let intervals = window_ms(node, m.node_id())?;
            Some(replay(
                m.node_id().to_string(),
                &intervals,
                detector,
                interval,
                &thresholds,
            ))
        })
        .collect();
    peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let node_outcomes = thresholds
        .iter()
        .enumerate()
        .map(|(i, &threshold)| {
            let at = || peers.iter().filter_map(|p| p.outcomes.get(i));
            WhatIfOutcome {
                threshold,
                // The slowest peer bounds the node's detection; a peer
                // never detected within the horizon makes it unbounded.
                detection_ms: at()
                    .map(|o| o.detection_ms)
                    .try_fold(0.0_f64, |acc, d| d.map(|d| acc.max(d))),
                mistakes: at().map(|o| o.mistakes).sum(),
                mistakes_per_hour: at().map(|o| o.mistakes_per_hour).sum(),
            }
        })
        .collect();
    WhatIfReport {
        node_id: node.gossip().id().to_string(),
        current_threshold: current,
        thresholds,
        peers,
        node: node_outcomes,
    }
}

/// Arrivals from 0 whose intervals are `intervals_ms`.
fn arrivals(intervals_ms: &[f64]) -> Vec<f64> {
    let mut arrivals = Vec::with_capacity(intervals_ms.len() + 1);
    let mut t = 0.0;
    arrivals.push(t);
    for i in intervals_ms {
        // Intervals are whole microseconds: keep the sum exact, so a
        // trace prints 500.435, not 500.43499999999995.
        t = ((t + i) * 1000.0).round() / 1000.0;
        arrivals.push(t);
    }
    arrivals
}

/// The intervals `subject`'s detector window holds at this node, oldest
/// first, ms (`None`: this node does not observe it).
fn window_ms(node: &Node, subject: &phimon_gossip::NodeId) -> Option<Vec<f64>> {
    let m = node.gossip().member(subject)?;
    let d = m.observed()?.detector();
    Some(
        d.recent_intervals(d.window().len())
            .map(|i| i.as_secs_f64() * 1000.0)
            .collect(),
    )
}

/// `GET /v1/peers/{id}/trace` (`phimon record`): `subject`'s window as
/// an arrival trace `phimon eval` replays, observed until `now` (no
/// crash: the peer may well be alive).
pub fn window_trace(
    node: &Node,
    subject: &phimon_gossip::NodeId,
    interval: Duration,
    now: phimon_detector::Timestamp,
) -> Option<String> {
    let intervals = window_ms(node, subject)?;
    let silence_ms = node
        .gossip()
        .member(subject)?
        .observed()?
        .last_arrival()
        .map_or(0.0, |l| (now - l).as_secs_f64() * 1000.0);
    let arrivals = arrivals(&intervals);
    let last = arrivals.last().copied().unwrap_or(0.0);
    let trace = Trace {
        interval_ms: interval.as_secs_f64() * 1000.0,
        end_ms: last + silence_ms,
        crash_ms: None,
        outages_ms: Vec::new(),
        metadata: vec![
            ("peer".into(), subject.to_string()),
            ("observer".into(), node.gossip().id().to_string()),
            ("source".into(), "detector-window".into()),
        ],
        arrivals_ms: arrivals,
        seqs: None,
    };
    Some(trace.to_text())
}

/// One peer's window, replayed.
fn replay(
    node_id: String,
    intervals_ms: &[f64],
    detector: &DetectorConfig,
    interval: Duration,
    thresholds: &[f64],
) -> PeerWhatIf {
    let arrivals = arrivals(intervals_ms);
    let t = arrivals.last().copied().unwrap_or(0.0);
    let trace = Trace {
        interval_ms: interval.as_secs_f64() * 1000.0,
        end_ms: t + horizon(interval).as_secs_f64() * 1000.0,
        crash_ms: Some(t),
        outages_ms: Vec::new(),
        metadata: Vec::new(),
        arrivals_ms: arrivals,
        seqs: None,
    };
    let outcomes = qos::evaluate(PeerDetector::new(detector), &trace, thresholds)
        .into_iter()
        .map(|q| WhatIfOutcome {
            threshold: q.threshold,
            detection_ms: q.detection_ms,
            mistakes: q.mistakes,
            mistakes_per_hour: q.mistakes_per_hour(),
        })
        .collect();
    PeerWhatIf {
        node_id,
        intervals: intervals_ms.len(),
        history_s: t / 1000.0,
        outcomes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DetectorConfig {
        DetectorConfig {
            first_heartbeat_estimate: Duration::from_secs(1),
            ..DetectorConfig::default()
        }
    }

    #[test]
    fn a_higher_threshold_detects_later_and_mistakes_no_more() {
        // Steady 1 s heartbeats with a few 2.5 s hiccups.
        let mut intervals = vec![1000.0; 300];
        for i in (50..300).step_by(60) {
            intervals[i] = 2500.0;
        }
        let r = replay(
            "p".into(),
            &intervals,
            &config(),
            Duration::from_secs(1),
            &[8.0, 2.0, 16.0],
        );
        assert_eq!(r.intervals, 300);
        assert!((r.history_s - (300.0 + 5.0 * 1.5)).abs() < 1e-6, "{r:?}");
        let [at8, at2, at16] = &r.outcomes[..] else {
            panic!("{r:?}")
        };
        let (d2, d8, d16) = (
            at2.detection_ms.unwrap(),
            at8.detection_ms.unwrap(),
            at16.detection_ms.unwrap(),
        );
        assert!(d2 < d8 && d8 < d16, "{d2} {d8} {d16}");
        assert!(d8 > 1000.0 && d16 < 60_000.0, "{d8} {d16}");
        assert!(
            at2.mistakes >= at8.mistakes && at8.mistakes >= at16.mistakes,
            "{r:?}"
        );
        assert!(at2.mistakes > 0, "the 2.5 s hiccups cross phi 2: {r:?}");
        let rate = at2.mistakes as f64 / (r.history_s / 3600.0);
        assert!((at2.mistakes_per_hour - rate).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn an_empty_window_replays_the_prior() {
        let r = replay("p".into(), &[], &config(), Duration::from_secs(1), &[8.0]);
        assert_eq!((r.intervals, r.history_s), (0, 0.0));
        assert!(r.outcomes[0].detection_ms.is_some(), "{r:?}");
        assert_eq!(r.outcomes[0].mistakes, 0);
    }
}
