//! The metrics whose writer is this crate's, each through the call that
//! writes it in production: a test here fails when that writer stops
//! writing. (Metrics written by the runtime are checked on a running
//! cluster by the end-to-end tests.)

use phimon_alert::{AlertEvent, AlertRecord, EventKind, Scope};
use phimon_detector::Timestamp;
use phimon_exporter::{ExportConfig, Metrics, NodeSnapshot};
use phimon_pager::outbox::{EnqueueReport, OpenReport};
use phimon_pager::{DeliveryMetrics, Outbox, OutboxLimits};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

fn metrics() -> Metrics {
    let snapshot = Arc::new(RwLock::new(NodeSnapshot::default()));
    Metrics::new("0.1.0", ExportConfig::default(), snapshot).unwrap()
}

/// The value of the sample `series` (name and labels exactly as
/// rendered) in a scrape, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn delivery_writes_alerts_sent_and_latency() {
    let m = metrics();
    let d: &dyn DeliveryMetrics = &m;
    d.add_webhook("oncall");
    let before = m.render();
    for o in phimon_pager::outcome::ALL {
        let s = format!("phimon_alerts_sent_total{{outcome=\"{o}\",webhook=\"oncall\"}}");
        assert_eq!(sample(&before, &s), Some(0.0), "{s} not pre-created");
    }
    d.count("oncall", phimon_pager::outcome::DELIVERED);
    d.count("oncall", phimon_pager::outcome::FAILED);
    d.count("oncall", phimon_pager::outcome::FAILED);
    d.delivered("oncall", Duration::from_millis(300));
    let text = m.render();
    let sent = |o: &str| {
        sample(
            &text,
            &format!("phimon_alerts_sent_total{{outcome=\"{o}\",webhook=\"oncall\"}}"),
        )
    };
    assert_eq!(sent("delivered"), Some(1.0));
    assert_eq!(sent("failed"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "phimon_alert_delivery_latency_seconds_count{webhook=\"oncall\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "phimon_alert_delivery_latency_seconds_sum{webhook=\"oncall\"}"
        ),
        Some(0.3)
    );
}

#[test]
fn a_full_queue_counts_a_dropped_page() {
    let m = metrics();
    m.record_enqueue(&EnqueueReport {
        dropped: vec!["oncall".into()],
        ..EnqueueReport::default()
    });
    assert_eq!(
        sample(
            &m.render(),
            "phimon_alerts_sent_total{outcome=\"dropped\",webhook=\"oncall\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn engine_events_are_counted_by_kind_and_scope() {
    let m = metrics();
    let event = AlertEvent {
        incident_id: "inc".into(),
        event_id: "ev".into(),
        kind: EventKind::Suspected,
        scope: Scope::Node,
        subject: "node-2".into(),
        nodes: vec!["node-2".into()],
        generation: 1,
        phi: 9.0,
        threshold: 8.0,
        cluster: "c".into(),
        observer: "node-1".into(),
        at: Timestamp::from_micros(5),
        started_at: Timestamp::from_micros(1),
        evidence: None,
    };
    m.record_event(&event);
    assert_eq!(
        sample(
            &m.render(),
            "phimon_alert_events_total{event=\"suspected\",scope=\"node\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn outbox_gauges_and_corrupt_records_are_read_from_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _) =
        Outbox::open(dir.path(), &["oncall".to_string()], OutboxLimits::default()).unwrap();
    let m = metrics();
    m.record_outbox_open(&OpenReport {
        corrupt: 2,
        ..OpenReport::default()
    });
    m.watch_outbox(outbox.clone());
    let enqueued = SystemTime::now() - Duration::from_secs(60);
    let record = AlertRecord {
        incident_id: "inc".into(),
        event_id: "ev".into(),
        event: EventKind::Suspected,
        scope: Scope::Node,
        cluster: "c".into(),
        node_id: "node-2".into(),
        nodes: vec!["node-2".into()],
        observer: "node-1".into(),
        generation: 1,
        phi: 9.0,
        threshold: 8.0,
        at_unix_ms: 1_700_000_000_000,
        started_unix_ms: 1_700_000_000_000,
        evidence: None,
    };
    outbox.enqueue(&record, enqueued).unwrap();
    let text = m.render();
    assert_eq!(
        sample(&text, "phimon_alert_outbox_corrupt_records_total"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "phimon_alert_outbox_pending"), Some(1.0));
    let age = sample(&text, "phimon_alert_outbox_oldest_age_seconds").unwrap();
    assert!((59.0..120.0).contains(&age), "oldest age {age}");
}
