//! [`AlertRecord`]: an [`AlertEvent`] as stored in the outbox and
//! rendered into webhook payloads, with wall-clock times.

use crate::engine::{AlertEvent, EventKind, Scope};
use phimon_detector::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One alert event, self-contained and format-agnostic: what the outbox
/// persists. Payloads are rendered from it at every delivery attempt, so
/// a record written before a restart is delivered with the current
/// secrets, and the body of every attempt is byte-identical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Stable incident id (all events of an incident share it).
    pub incident_id: String,
    /// Stable event id: the `webhook-id` header and the dedup key of
    /// receivers.
    pub event_id: String,
    /// What happened.
    pub event: EventKind,
    /// What the incident is about.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// The node the event is about (empty for groups).
    pub node_id: String,
    /// Every node concerned.
    pub nodes: Vec<String>,
    /// The node that emitted the event.
    pub observer: String,
    /// Generation of `node_id` (0 for groups).
    pub generation: u64,
    /// phi at the event (finite).
    pub phi: f64,
    /// The suspicion threshold.
    pub threshold: f64,
    /// When the event was emitted, Unix milliseconds.
    pub at_unix_ms: u64,
    /// When the incident started, Unix milliseconds.
    pub started_unix_ms: u64,
    /// Why (`suspected` pages about a node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<crate::Evidence>>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl AlertRecord {
    /// The record of `event`, with its monotonic times mapped onto the
    /// wall clock through the pair (`now`, `wall_now`) read together by
    /// the caller.
    pub fn from_event(event: &AlertEvent, now: Timestamp, wall_now: SystemTime) -> AlertRecord {
        let wall = |t: Timestamp| {
            let back = Duration::from_micros(now.as_micros().saturating_sub(t.as_micros()));
            unix_ms(wall_now.checked_sub(back).unwrap_or(UNIX_EPOCH))
        };
        let finite = |x: f64| {
            if x.is_finite() {
                x
            } else if x.is_nan() {
                0.0
            } else {
                f64::MAX.copysign(x)
            }
        };
        AlertRecord {
            incident_id: event.incident_id.clone(),
            event_id: event.event_id.clone(),
            event: event.kind,
            scope: event.scope,
            cluster: event.cluster.clone(),
            node_id: event.subject.clone(),
            nodes: event.nodes.clone(),
            observer: event.observer.clone(),
            generation: event.generation,
            phi: finite(event.phi),
            threshold: finite(event.threshold),
            at_unix_ms: wall(event.at),
            started_unix_ms: wall(event.started_at),
            evidence: event.evidence.clone(),
        }
    }

    /// `at` as a wall-clock time.
    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_unix_ms)
    }

    /// `started` as a wall-clock time.
    pub fn started(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_unix_ms)
    }

    /// A one-line human summary (Slack text, PagerDuty summary,
    /// Alertmanager annotation).
    pub fn summary(&self) -> String {
        let what = match (self.scope, self.event) {
            (Scope::Node, EventKind::Suspected) => format!(
                "{} is suspected down (phi {:.1} >= {:.1}, seen by {})",
                self.node_id, self.phi, self.threshold, self.observer
            ),
            (Scope::Node, EventKind::Recovered) => {
                format!("{} recovered (phi {:.1})", self.node_id, self.phi)
            }
            (Scope::Node | Scope::Group | Scope::Partition, EventKind::Restarted) => format!(
                "{} restarted (generation {})",
                self.node_id, self.generation
            ),
            (Scope::Partition, EventKind::Suspected) => format!(
                "{} is partitioned: lost contact with {} peers at once",
                self.node_id,
                self.nodes.len()
            ),
            (Scope::Partition, EventKind::Recovered) => {
                format!("{} is back in contact with the fleet", self.node_id)
            }
            (Scope::Group, EventKind::Suspected) => format!(
                "mass failure: {} nodes suspected down together ({})",
                self.nodes.len(),
                list(&self.nodes)
            ),
            (Scope::Group, EventKind::Recovered) => format!(
                "mass failure over: {} nodes recovered ({})",
                self.nodes.len(),
                list(&self.nodes)
            ),
        };
        format!("[{}] {what}", self.cluster)
    }
}

/// The first few node ids, then a count.
fn list(nodes: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = nodes
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if nodes.len() > SHOWN {
        s.push_str(&format!(" and {} more", nodes.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_times_map_onto_the_wall_clock() {
        let ev = AlertEvent {
            incident_id: "inc_x".into(),
            event_id: "msg_x".into(),
            kind: EventKind::Suspected,
            scope: Scope::Node,
            subject: "n".into(),
            nodes: vec!["n".into()],
            generation: 2,
            phi: f64::INFINITY,
            threshold: 8.0,
            cluster: "c".into(),
            observer: "o".into(),
            at: Timestamp::from_micros(10_000_000),
            started_at: Timestamp::from_micros(4_000_000),
            evidence: None,
        };
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = AlertRecord::from_event(&ev, Timestamp::from_micros(11_000_000), wall);
        assert_eq!(r.at_unix_ms, 1_700_000_000_000 - 1_000);
        assert_eq!(r.started_unix_ms, 1_700_000_000_000 - 7_000);
        assert!(r.phi.is_finite());
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""event":"suspected""#), "{json}");
        assert!(json.contains(r#""scope":"node""#), "{json}");
        let back: AlertRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(
            r.summary().contains("n is suspected down"),
            "{}",
            r.summary()
        );
    }
}
