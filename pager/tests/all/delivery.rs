//! Delivery against a real HTTP receiver on loopback: outages, restarts
//! of the sender, retries, refusals, ordering and signatures.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use phimon_alert::{AlertRecord, EventKind, Scope, WebhookFormat};
use phimon_pager::outbox::{OpenReport, OutboxLimits};
use phimon_pager::webhook::sign;
use phimon_pager::{Backoff, Delivery, DeliveryMetrics, Outbox, Secret, Webhook};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
struct Received {
    path: String,
    webhook_id: String,
    signature_ok: bool,
    body: serde_json::Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Sink {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    /// How long the receiver takes before it answers.
    delay: Arc<Mutex<Duration>>,
}

async fn receive(State(s): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let signature_ok = ts
        .parse::<u64>()
        .is_ok_and(|t| sign(&Secret::new(SECRET).hmac_key(), &id, t, &body) == sig);
    let delay = *s.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let status = s.script.lock().unwrap().pop_front().unwrap_or(204);
    if (200..300).contains(&status) {
        s.got.lock().unwrap().push(Received {
            path: uri.path().to_string(),
            webhook_id: id,
            signature_ok,
            body: serde_json::from_slice(&body).unwrap(),
            at: Instant::now(),
        });
    }
    StatusCode::from_u16(status).unwrap()
}

async fn serve(addr: SocketAddr, sink: Sink) -> tokio::sync::oneshot::Sender<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state(sink);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tx
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn record(i: u64, incident: &str, event: EventKind) -> AlertRecord {
    AlertRecord {
        incident_id: incident.into(),
        event_id: format!("msg_{i}"),
        event,
        scope: Scope::Node,
        cluster: "test".into(),
        node_id: format!("node-{incident}"),
        nodes: vec![format!("node-{incident}")],
        observer: "node-0".into(),
        generation: 1,
        phi: 9.0,
        threshold: 8.0,
        at_unix_ms: 1_700_000_000_000 + i,
        started_unix_ms: 1_700_000_000_000,
        evidence: None,
    }
}

/// The outbox in `dir`, with the one queue every test delivers from.
fn open_outbox(dir: &Path) -> (Outbox, OpenReport) {
    Outbox::open(dir, &["sink".to_string()], OutboxLimits::default()).unwrap()
}

/// Delivery from `outbox` to a `generic` webhook at `addr`, with fast
/// backoff; `seed` seeds its jitter.
fn deliver(outbox: &Outbox, addr: SocketAddr, metrics: Option<Arc<Counts>>, seed: u64) -> Delivery {
    Delivery::spawn(
        outbox.clone(),
        vec![webhook(addr, WebhookFormat::Generic)],
        metrics.map(|m| m as Arc<dyn DeliveryMetrics>),
        FAST,
        seed,
    )
    .unwrap()
}

fn webhook(addr: SocketAddr, format: WebhookFormat) -> Webhook {
    Webhook {
        name: "sink".into(),
        url: format!("http://{addr}/hook"),
        format,
        secret: Some(Secret::new(SECRET)),
        timeout: Duration::from_secs(2),
    }
}

/// What the workers reported: outcomes and deliveries per webhook.
#[derive(Debug, Default)]
struct Counts {
    outcomes: Mutex<BTreeMap<(String, &'static str), u64>>,
    delivered: Mutex<Vec<(String, Duration)>>,
}

impl DeliveryMetrics for Counts {
    fn add_webhook(&self, webhook: &str) {
        let mut o = self.outcomes.lock().unwrap();
        for outcome in phimon_pager::outcome::ALL {
            o.entry((webhook.to_owned(), outcome)).or_default();
        }
    }

    fn count(&self, webhook: &str, outcome: &'static str) {
        *self
            .outcomes
            .lock()
            .unwrap()
            .entry((webhook.to_owned(), outcome))
            .or_default() += 1;
    }

    fn delivered(&self, webhook: &str, latency: Duration) {
        self.delivered
            .lock()
            .unwrap()
            .push((webhook.to_owned(), latency));
    }
}

fn metrics() -> Arc<Counts> {
    Arc::new(Counts::default())
}

fn sent(m: &Counts, outcome: &'static str) -> u64 {
    let o = m.outcomes.lock().unwrap();
    assert!(
        o.contains_key(&("sink".to_owned(), outcome)),
        "the sink's series were not created: {o:?}"
    );
    o[&("sink".to_owned(), outcome)]
}

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(200),
};

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn receiver_outage_across_a_sender_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr(); // nothing listens: the receiver is down
    let (outbox, _) = open_outbox(dir.path());
    let events = [
        record(0, "a", EventKind::Suspected),
        record(1, "b", EventKind::Suspected),
        record(2, "a", EventKind::Restarted),
        record(3, "a", EventKind::Recovered),
        record(4, "b", EventKind::Recovered),
    ];
    for r in &events {
        outbox.enqueue(r, SystemTime::now()).unwrap();
    }
    let m = metrics();
    let d = deliver(&outbox, addr, Some(m.clone()), 1);
    wait_for("retries", || sent(&m, "failed") >= 3).await;
    assert_eq!(sent(&m, "delivered"), 0);
    assert_eq!(outbox.pending(), 5);

    // The sender goes away mid-outage and comes back from disk.
    d.shutdown().await;
    drop(outbox);
    let (outbox, report) = open_outbox(dir.path());
    assert_eq!(report.loaded, 5);
    let late = record(5, "c", EventKind::Suspected);
    outbox.enqueue(&late, SystemTime::now()).unwrap();
    let m = metrics();
    let d = deliver(&outbox, addr, Some(m.clone()), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The receiver comes back.
    let sink = Sink::default();
    let stop = serve(addr, sink.clone()).await;
    wait_for("all six", || sink.got.lock().unwrap().len() >= 6).await;
    let got = sink.got.lock().unwrap().clone();
    let ids: Vec<&str> = got.iter().map(|r| r.webhook_id.as_str()).collect();
    // Urgent pages first, in order (each incident's events keep theirs),
    // then the routine `restarted` page.
    assert_eq!(ids, ["msg_0", "msg_1", "msg_3", "msg_4", "msg_5", "msg_2"]);
    assert!(got.iter().all(|r| r.signature_ok), "{got:?}");
    assert!(got.iter().all(|r| r.path == "/hook"));
    assert_eq!(got[2].body["event"], "recovered");
    assert_eq!(got[2].body["incident_id"], "a");
    wait_for("outbox drained", || outbox.pending() == 0).await;
    assert_eq!(sent(&m, "delivered"), 6);
    let delivered = m.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 6, "{delivered:?}");
    assert!(delivered.iter().all(|(w, _)| w == "sink"));
    d.shutdown().await;
    let _ = stop.send(());
    let (_, report) = open_outbox(dir.path());
    assert_eq!(report.loaded, 0, "delivered records are gone from disk");
}

/// `phimon_alert_delivery_latency_seconds` runs until the receiver
/// accepted the record: a slow receiver's answer time is part of it.
#[tokio::test]
async fn delivery_latency_includes_the_receivers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sink = Sink::default();
    *sink.delay.lock().unwrap() = Duration::from_millis(400);
    let stop = serve(addr, sink.clone()).await;
    let (outbox, _) = open_outbox(dir.path());
    let m = metrics();
    let d = deliver(&outbox, addr, Some(m.clone()), 5);
    outbox
        .enqueue(&record(0, "a", EventKind::Suspected), SystemTime::now())
        .unwrap();
    wait_for("delivered", || outbox.pending() == 0).await;
    let delivered = m.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0].1 >= Duration::from_millis(400),
        "latency {:?} leaves out the receiver's 400 ms",
        delivered[0].1
    );
    d.shutdown().await;
    let _ = stop.send(());
}

#[tokio::test]
async fn a_suspected_page_overtakes_a_restarted_page_waiting_for_its_retry() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sink = Sink::default();
    // The receiver refuses the first attempt (a rate limit), then accepts.
    sink.script.lock().unwrap().extend([429]);
    let stop = serve(addr, sink.clone()).await;
    let (outbox, _) = open_outbox(dir.path());
    let m = metrics();
    // Slow retries: the restarted page waits 5-10 s for its next try.
    let d = Delivery::spawn(
        outbox.clone(),
        vec![webhook(addr, WebhookFormat::Generic)],
        Some(m.clone() as Arc<dyn DeliveryMetrics>),
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(10),
        },
        4,
    )
    .unwrap();
    outbox
        .enqueue(&record(0, "r", EventKind::Restarted), SystemTime::now())
        .unwrap();
    wait_for("the first refusal", || sent(&m, "failed") >= 1).await;
    let t = Instant::now();
    outbox
        .enqueue(&record(1, "s", EventKind::Suspected), SystemTime::now())
        .unwrap();
    wait_for("the suspected page", || {
        !sink.got.lock().unwrap().is_empty()
    })
    .await;
    let waited = t.elapsed();
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got[0].webhook_id, "msg_1", "{got:?}");
    assert!(waited < Duration::from_secs(2), "held back {waited:?}");
    println!(
        "suspected page delivered {waited:?} after enqueue, ahead of a restarted page in backoff"
    );
    d.shutdown().await;
    let _ = stop.send(());
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sink = Sink::default();
    // First event: 500, 503, then accepted. Second: 400 (dropped).
    sink.script.lock().unwrap().extend([500, 503, 204, 400]);
    let stop = serve(addr, sink.clone()).await;
    let (outbox, _) = open_outbox(dir.path());
    let m = metrics();
    let d = deliver(&outbox, addr, Some(m.clone()), 3);
    for i in 0..3 {
        outbox
            .enqueue(&record(i, "a", EventKind::Suspected), SystemTime::now())
            .unwrap();
    }
    wait_for("drained", || outbox.pending() == 0).await;
    assert_eq!(sent(&m, "failed"), 2);
    assert_eq!(sent(&m, "delivered"), 2);
    assert_eq!(sent(&m, "rejected"), 1);
    let ids: Vec<String> = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(ids, ["msg_0", "msg_2"]);
    d.shutdown().await;
    let _ = stop.send(());
}

#[tokio::test]
async fn alertmanager_and_pagerduty_formats_reach_their_endpoints() {
    for format in [WebhookFormat::Alertmanager, WebhookFormat::Pagerduty] {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let sink = Sink::default();
        let stop = serve(addr, sink.clone()).await;
        let (outbox, _) = open_outbox(dir.path());
        let m = metrics();
        let mut hook = webhook(addr, format);
        hook.url = format!("http://{addr}/");
        let d = Delivery::spawn(
            outbox.clone(),
            vec![hook],
            Some(m.clone() as Arc<dyn DeliveryMetrics>),
            FAST,
            4,
        )
        .unwrap();
        for (i, e) in [
            EventKind::Suspected,
            EventKind::Restarted,
            EventKind::Recovered,
        ]
        .into_iter()
        .enumerate()
        {
            outbox
                .enqueue(&record(i as u64, "a", e), SystemTime::now())
                .unwrap();
        }
        wait_for("drained", || outbox.pending() == 0).await;
        let got = sink.got.lock().unwrap().clone();
        // A restart that closes the incident resolves it, like a recovery.
        assert_eq!(got.len(), 3, "{format}: {got:?}");
        assert_eq!(sent(&m, "skipped"), 0);
        match format {
            WebhookFormat::Alertmanager => {
                assert!(got.iter().all(|r| r.path == "/api/v2/alerts"));
                for r in &got[1..] {
                    assert_eq!(got[0].body[0]["labels"], r.body[0]["labels"]);
                    assert!(r.body[0]["endsAt"].is_string());
                }
            }
            _ => {
                assert_eq!(got[0].body["event_action"], "trigger");
                for r in &got[1..] {
                    assert_eq!(r.body["event_action"], "resolve");
                    assert_eq!(r.body["dedup_key"], "a");
                }
            }
        }
        d.shutdown().await;
        let _ = stop.send(());
    }
}

#[tokio::test]
async fn delivery_latency_to_a_healthy_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let sink = Sink::default();
    let stop = serve(addr, sink.clone()).await;
    let (outbox, _) = open_outbox(dir.path());
    let d = deliver(&outbox, addr, None, 5);
    let mut latencies = Vec::new();
    for i in 0..20u64 {
        let t = Instant::now();
        // Enqueue (fsync of file and directory) to receipt, as a page
        // experiences it.
        outbox
            .enqueue(&record(i, "a", EventKind::Suspected), SystemTime::now())
            .unwrap();
        let want = i as usize + 1;
        wait_for("receipt", || sink.got.lock().unwrap().len() >= want).await;
        latencies.push(sink.got.lock().unwrap()[i as usize].at - t);
    }
    latencies.sort();
    println!(
        "enqueue-to-receipt latency over 20 pages: p50 {:?}, max {:?}",
        latencies[10], latencies[19]
    );
    assert!(latencies[19] < Duration::from_secs(1), "{latencies:?}");
    assert!(sink.got.lock().unwrap().iter().all(|r| r.signature_ok));
    d.shutdown().await;
    let _ = stop.send(());
}
