//! Every Prometheus metric of a phimon node, registered once.

use crate::config::ExportConfig;
use crate::snapshot::{SharedSnapshot, read};
use phimon_alert::AlertEvent;
use phimon_gossip::Status;
use phimon_pager::outbox::{EnqueueReport, OpenReport, Outbox};
use phimon_pager::{DeliveryMetrics, outcome};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Metric registration failure (a duplicate name: a programming error).
#[derive(Debug, thiserror::Error)]
#[error("registering metric {name}: {source}")]
pub struct MetricsError {
    /// The metric.
    pub name: String,
    /// The registry's error.
    pub source: prometheus::Error,
}

/// The node's metrics. Counters and histograms are updated by the
/// runtime as things happen; per-peer series, peer aggregates and the
/// outbox gauges are computed at scrape time from the published
/// [`NodeSnapshot`](crate::NodeSnapshot) and the [`Outbox`].
///
/// Per-peer series (`phimon_peer_phi`, `phimon_peer_suspected`) are
/// exported only for the peers this node observes (it receives their
/// heartbeats: a few per node whatever the fleet's size), unless
/// [`ExportConfig::export_all_peers`]. See docs/metrics.md for series
/// counts.
pub struct Metrics {
    registry: Registry,
    /// `phimon_heartbeats_received_total`: heartbeats recorded in the
    /// detector.
    pub heartbeats_received: IntCounter,
    /// `phimon_gossip_messages_total{direction="sent"|"received"}`.
    pub gossip_messages: IntCounterVec,
    /// `phimon_gossip_bytes_total{direction}`.
    pub gossip_bytes: IntCounterVec,
    /// `phimon_decode_errors_total`: frames refused by the decoder
    /// (unknown version, over the cap, malformed).
    pub decode_errors: IntCounter,
    /// `phimon_auth_failures_total{reason}`: peers refused at the TLS
    /// layer or for a node id that is not their certificate's, by the
    /// transport's reason label.
    pub auth_failures: IntCounterVec,
    /// `phimon_records_total{outcome="accepted"|"known"}`: signed
    /// membership records received that were news, or already known (a
    /// replay or a relay's duplicate).
    pub records: IntCounterVec,
    /// `phimon_records_rejected_total{reason}`: records refused by the
    /// protocol core ([`RECORD_REJECT_REASONS`]): forgeries are `forged`
    /// (signed by another node than the one named) and `signature`.
    pub records_rejected: IntCounterVec,
    /// `phimon_heartbeats_refused_total{reason}`: direct heartbeats not
    /// recorded ([`HEARTBEAT_REFUSE_REASONS`]).
    pub heartbeats_refused: IntCounterVec,
    /// `phimon_transport_handshakes_refused_total{reason}`: incoming
    /// handshakes turned away or challenged before they could
    /// authenticate (flood protection).
    pub transport_handshakes_refused: IntCounterVec,
    /// `phimon_transport_handshake_failures_total`: connection attempts
    /// that failed otherwise (unreachable, timed out, refused by the
    /// peer).
    pub transport_handshake_failures: IntCounter,
    /// `phimon_transport_handshakes_in_progress`: incoming handshakes now.
    pub transport_handshakes_in_progress: IntGauge,
    /// `phimon_transport_send_dropped_total`: datagrams and messages not
    /// sent (queue full, peer unreachable or backing off).
    pub transport_send_dropped: IntCounter,
    /// `phimon_transport_datagrams_dropped_total{reason}`: packets on the
    /// datagram fast path refused before reaching the node
    /// ([`DATAGRAM_DROP_REASONS`]): junk, forgeries and replays.
    pub transport_datagrams_dropped: IntCounterVec,
    /// `phimon_transport_fast_path_fallbacks_total`: connections whose
    /// datagrams went back to QUIC because fast-path packets did not
    /// arrive.
    pub transport_fast_path_fallbacks: IntCounter,
    /// `phimon_transport_mailbox_fallbacks_total`: connections whose
    /// heartbeats went from the peer's mailbox to its main socket because
    /// they did not reach the mailbox.
    pub transport_mailbox_fallbacks: IntCounter,
    /// `phimon_transport_receive_dropped_total`: received frames dropped
    /// because the node fell behind.
    pub transport_receive_dropped: IntCounter,
    /// `phimon_transport_message_timeouts_total`: incoming messages not
    /// completed in time.
    pub transport_message_timeouts: IntCounter,
    /// `phimon_transport_connections_closed_on_reload_total`: connections
    /// closed by a CA or CRL reload because the peer's certificate no
    /// longer verifies.
    pub transport_connections_closed_on_reload: IntCounter,
    /// `phimon_tls_cert_expiry_timestamp_seconds`: when this node's own
    /// certificate expires (Unix seconds), as loaded now.
    pub tls_cert_expiry: Gauge,
    /// `phimon_alert_enqueue_failures_total`: pages the outbox could not
    /// write to disk (held in memory until it can) or not queue at all.
    pub alert_enqueue_failures: IntCounter,
    pub(crate) http_connections_dropped: IntCounterVec,
    pub(crate) http_connections_open: IntGauge,
    /// `phimon_gossip_round_duration_seconds`: one anti-entropy exchange,
    /// first SYN to last ACK.
    pub gossip_round_duration: Histogram,
    /// `phimon_connections_open`: QUIC connections currently open.
    pub connections_open: IntGauge,
    /// `phimon_tick_lateness_seconds`: how late the runtime's tick woke
    /// up (large values are this node's own stalls).
    pub tick_lateness: Histogram,
    /// `phimon_local_health_degraded`: 1 while this node considers itself
    /// stalled and pages no one.
    pub local_health_degraded: IntGauge,
    /// `phimon_local_stalls_total`: stalls of this node detected.
    pub local_stalls: IntCounter,
    /// `phimon_config_reload_failures_total`: reloads (SIGHUP, `POST
    /// /v1/reload`) refused: the file did not load or validate, or it
    /// changed a key that needs a restart. The old configuration stays.
    pub config_reload_failures: IntCounter,
    /// `phimon_config_last_reload_success_timestamp_seconds`: when the
    /// configuration in force was loaded (start or reload), Unix seconds.
    pub config_last_reload_success: Gauge,
    /// `phimon_alert_events_total{event, scope}`: events the alert engine
    /// emitted on this node (before delivery).
    pub alert_events: IntCounterVec,
    /// `phimon_alerts_sent_total{webhook, outcome}`: delivery outcomes.
    pub alerts_sent: IntCounterVec,
    /// `phimon_alert_delivery_latency_seconds{webhook}`: enqueue to
    /// accepted by the receiver.
    pub alert_delivery_latency: HistogramVec,
    /// `phimon_alert_outbox_corrupt_records_total`: records found torn or
    /// garbled at start-up and skipped.
    pub alert_outbox_corrupt_records: IntCounter,
    /// `phimon_alert_isolated`: 1 while this node considers itself cut off
    /// from most of the fleet.
    pub alert_isolated: IntGauge,
    outbox_pending: IntGauge,
    outbox_oldest_age: Gauge,
    outbox_unsaved: IntGauge,
    outbox: Mutex<Option<Outbox>>,
    /// Why there is no outbox (it could not be opened), for `/readyz`.
    outbox_unusable: Mutex<Option<String>>,
}

/// Reasons the protocol core refuses a record
/// (`GossipStats::records_rejected`), pre-created as
/// `phimon_records_rejected_total` series: `forged` (signed by another
/// node than it names), `signature` (does not verify), `credential` (not
/// a certificate of this cluster's CA, expired, revoked),
/// `credential_missing` (a relayed record without its certificate and
/// none held), `cluster` (another cluster's), `invalid` and `malformed`
/// (breaks the record rules, does not decode), `forgotten` (an old
/// record of a node removed after `dead_grace`), `full` (`max_nodes`
/// reached), `collision` (another id on the same ring position), `sign`
/// (this node could not sign its own record).
pub const RECORD_REJECT_REASONS: [&str; 11] = [
    "forged",
    "signature",
    "credential",
    "credential_missing",
    "cluster",
    "invalid",
    "malformed",
    "forgotten",
    "full",
    "collision",
    "sign",
];

/// Why a direct heartbeat is not recorded
/// (`phimon_heartbeats_refused_total{reason}`): `unexpected` (this node
/// does not observe the sender: the sender is the connection's
/// certificate, so a heartbeat can only ever count for its sender),
/// `stale` (an older generation of the sender), `reordered` (a repeated
/// or out-of-order sequence number).
pub const HEARTBEAT_REFUSE_REASONS: [&str; 3] = ["unexpected", "stale", "reordered"];

/// Why a fast-path packet was dropped
/// (`phimon_transport_datagrams_dropped_total{reason}`, the transport's
/// `DatagramDrop` labels): `malformed`, `unknown_key` (no such key: noise,
/// or a connection that ended), `wrong_source`, `bad_mac` (altered or
/// forged), `replay`.
pub const DATAGRAM_DROP_REASONS: [&str; 5] = [
    "malformed",
    "unknown_key",
    "wrong_source",
    "bad_mac",
    "replay",
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn reg<C: Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    c: C,
) -> Result<C, MetricsError> {
    registry
        .register(Box::new(c.clone()))
        .map_err(|source| MetricsError {
            name: name.to_string(),
            source,
        })?;
    Ok(c)
}

fn err(name: &str) -> impl FnOnce(prometheus::Error) -> MetricsError + '_ {
    move |source| MetricsError {
        name: name.to_string(),
        source,
    }
}

macro_rules! metric {
    ($registry:expr, $ty:ident, $name:literal, $help:literal) => {
        reg(
            $registry,
            $name,
            $ty::new($name, $help).map_err(err($name))?,
        )?
    };
    ($registry:expr, $ty:ident, $name:literal, $help:literal, $labels:expr) => {
        reg(
            $registry,
            $name,
            $ty::new(Opts::new($name, $help), $labels).map_err(err($name))?,
        )?
    };
}

fn histogram(
    registry: &Registry,
    name: &'static str,
    help: &str,
    buckets: Vec<f64>,
) -> Result<Histogram, MetricsError> {
    let h =
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).map_err(err(name))?;
    reg(registry, name, h)
}

impl Metrics {
    /// Registers every metric in a fresh registry. `version` is the
    /// `phimon_build_info` label; `snapshot` is read at every scrape.
    pub fn new(
        version: &str,
        export: ExportConfig,
        snapshot: SharedSnapshot,
    ) -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let build_info: IntGaugeVec = metric!(
            &r,
            IntGaugeVec,
            "phimon_build_info",
            "Always 1; the version label is the running phimon version.",
            &["version"]
        );
        build_info.with_label_values(&[version]).set(1);
        let gossip_messages: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_gossip_messages_total",
            "Gossip messages sent and received.",
            &["direction"]
        );
        let gossip_bytes: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_gossip_bytes_total",
            "Gossip payload bytes sent and received.",
            &["direction"]
        );
        for d in ["sent", "received"] {
            gossip_messages.with_label_values(&[d]);
            gossip_bytes.with_label_values(&[d]);
        }
        let alert_events: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_alert_events_total",
            "Alert events emitted by this node's alert engine.",
            &["event", "scope"]
        );
        let alerts_sent: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_alerts_sent_total",
            "Webhook delivery outcomes per webhook.",
            &["webhook", "outcome"]
        );
        let alert_delivery_latency = reg(
            &r,
            "phimon_alert_delivery_latency_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "phimon_alert_delivery_latency_seconds",
                    "Time from an alert event entering the outbox to its receiver accepting it.",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
                ]),
                &["webhook"],
            )
            .map_err(err("phimon_alert_delivery_latency_seconds"))?,
        )?;
        let records: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_records_total",
            "Signed membership records received: news (accepted) or already known (replays, duplicates).",
            &["outcome"]
        );
        for o in ["accepted", "known"] {
            records.with_label_values(&[o]);
        }
        let records_rejected: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_records_rejected_total",
            "Membership records refused, by reason (forged and signature are forgeries).",
            &["reason"]
        );
        for reason in RECORD_REJECT_REASONS {
            records_rejected.with_label_values(&[reason]);
        }
        let heartbeats_refused: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_heartbeats_refused_total",
            "Direct heartbeats not recorded: from a node this node does not observe, of an older generation, or repeated/out of order.",
            &["reason"]
        );
        for reason in HEARTBEAT_REFUSE_REASONS {
            heartbeats_refused.with_label_values(&[reason]);
        }
        let transport_datagrams_dropped: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_transport_datagrams_dropped_total",
            "Fast-path datagram packets dropped before reaching the node, by reason (junk, forged, replayed).",
            &["reason"]
        );
        for reason in DATAGRAM_DROP_REASONS {
            transport_datagrams_dropped.with_label_values(&[reason]);
        }
        let http_connections_dropped: IntCounterVec = metric!(
            &r,
            IntCounterVec,
            "phimon_http_connections_dropped_total",
            "HTTP connections refused at accept (limit, per_ip_limit) or cut off for being too slow (timeout).",
            &["reason"]
        );
        for reason in crate::serve::dropped::ALL {
            http_connections_dropped.with_label_values(&[reason]);
        }
        let m = Metrics {
            heartbeats_received: metric!(
                &r,
                IntCounter,
                "phimon_heartbeats_received_total",
                "Peer heartbeats recorded by the failure detector."
            ),
            gossip_messages,
            gossip_bytes,
            decode_errors: metric!(
                &r,
                IntCounter,
                "phimon_decode_errors_total",
                "Gossip frames refused by the decoder (unknown version, over the size cap, malformed)."
            ),
            auth_failures: metric!(
                &r,
                IntCounterVec,
                "phimon_auth_failures_total",
                "Peers refused by mutual TLS or for a node id that differs from their certificate, by reason.",
                &["reason"]
            ),
            records,
            records_rejected,
            heartbeats_refused,
            transport_handshakes_refused: metric!(
                &r,
                IntCounterVec,
                "phimon_transport_handshakes_refused_total",
                "Incoming QUIC handshakes turned away or challenged (retry) before they could authenticate.",
                &["reason"]
            ),
            transport_handshake_failures: metric!(
                &r,
                IntCounter,
                "phimon_transport_handshake_failures_total",
                "QUIC connection attempts that failed for another reason than a refused certificate (unreachable, timed out, refused by the peer)."
            ),
            transport_handshakes_in_progress: metric!(
                &r,
                IntGauge,
                "phimon_transport_handshakes_in_progress",
                "Incoming QUIC handshakes in progress."
            ),
            transport_send_dropped: metric!(
                &r,
                IntCounter,
                "phimon_transport_send_dropped_total",
                "Outgoing datagrams and messages dropped (dial queue full, peer unreachable or backing off, write failed)."
            ),
            transport_datagrams_dropped,
            transport_fast_path_fallbacks: metric!(
                &r,
                IntCounter,
                "phimon_transport_fast_path_fallbacks_total",
                "Connections whose datagrams went back to QUIC because fast-path packets did not arrive."
            ),
            transport_mailbox_fallbacks: metric!(
                &r,
                IntCounter,
                "phimon_transport_mailbox_fallbacks_total",
                "Connections whose heartbeats went to the peer's main port because they did not reach its mailbox port."
            ),
            transport_receive_dropped: metric!(
                &r,
                IntCounter,
                "phimon_transport_receive_dropped_total",
                "Received datagrams and messages dropped because this node fell behind, or its heartbeat mailbox overflowed."
            ),
            transport_message_timeouts: metric!(
                &r,
                IntCounter,
                "phimon_transport_message_timeouts_total",
                "Incoming messages not completed within the message timeout."
            ),
            transport_connections_closed_on_reload: metric!(
                &r,
                IntCounter,
                "phimon_transport_connections_closed_on_reload_total",
                "Connections closed by a CA or CRL reload because the peer's certificate no longer verifies."
            ),
            tls_cert_expiry: metric!(
                &r,
                Gauge,
                "phimon_tls_cert_expiry_timestamp_seconds",
                "When this node's own TLS certificate expires, Unix seconds (updated on every reload)."
            ),
            alert_enqueue_failures: metric!(
                &r,
                IntCounter,
                "phimon_alert_enqueue_failures_total",
                "Alert events the outbox could not write to disk (held in memory until it can) or could not queue."
            ),
            http_connections_dropped,
            http_connections_open: metric!(
                &r,
                IntGauge,
                "phimon_http_connections_open",
                "HTTP connections open."
            ),
            gossip_round_duration: histogram(
                &r,
                "phimon_gossip_round_duration_seconds",
                "Duration of one gossip exchange with a peer, first message to last.",
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )?,
            connections_open: metric!(
                &r,
                IntGauge,
                "phimon_connections_open",
                "QUIC connections currently open to peers."
            ),
            tick_lateness: histogram(
                &r,
                "phimon_tick_lateness_seconds",
                "How late the runtime's periodic tick woke up; large values are stalls of this node.",
                vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )?,
            local_health_degraded: metric!(
                &r,
                IntGauge,
                "phimon_local_health_degraded",
                "1 while this node recently stalled itself and pages no one."
            ),
            local_stalls: metric!(
                &r,
                IntCounter,
                "phimon_local_stalls_total",
                "Stalls of this node's own process or event loop detected."
            ),
            config_reload_failures: metric!(
                &r,
                IntCounter,
                "phimon_config_reload_failures_total",
                "Configuration reloads refused (bad file, or a change that needs a restart); the old configuration stays."
            ),
            config_last_reload_success: metric!(
                &r,
                Gauge,
                "phimon_config_last_reload_success_timestamp_seconds",
                "When the configuration in force was loaded (start or reload), Unix seconds."
            ),
            alert_events,
            alerts_sent,
            alert_delivery_latency,
            alert_outbox_corrupt_records: metric!(
                &r,
                IntCounter,
                "phimon_alert_outbox_corrupt_records_total",
                "Outbox records found torn or garbled at start-up and skipped."
            ),
            alert_isolated: metric!(
                &r,
                IntGauge,
                "phimon_alert_isolated",
                "1 while this node considers itself cut off from most of the fleet."
            ),
            outbox_pending: metric!(
                &r,
                IntGauge,
                "phimon_alert_outbox_pending",
                "Alert deliveries waiting in the durable outbox, all webhooks."
            ),
            outbox_oldest_age: metric!(
                &r,
                Gauge,
                "phimon_alert_outbox_oldest_age_seconds",
                "Age of the oldest undelivered alert in the outbox (0 when empty)."
            ),
            outbox_unsaved: metric!(
                &r,
                IntGauge,
                "phimon_alert_outbox_unsaved",
                "Alert deliveries held in memory only because the disk refused them (lost if the process dies)."
            ),
            outbox: Mutex::new(None),
            outbox_unusable: Mutex::new(None),
            registry: r,
        };
        let peers = PeerCollector::new(export, snapshot)?;
        m.registry
            .register(Box::new(peers))
            .map_err(err("phimon_peer_*"))?;
        Ok(m)
    }

    /// Pre-creates the delivery series of `webhook` (so dashboards and
    /// `rate()` see zeros, not absent series, before the first page).
    pub fn add_webhook(&self, webhook: &str) {
        for o in outcome::ALL {
            self.alerts_sent.with_label_values(&[webhook, o]);
        }
    }

    /// Counts an event the alert engine emitted
    /// (`phimon_alert_events_total`).
    pub fn record_event(&self, event: &AlertEvent) {
        self.alert_events
            .with_label_values(&[event.kind.as_str(), event.scope.as_str()])
            .inc();
    }

    /// Counts what [`Outbox::open`] found: corrupt and unreadable records
    /// set aside.
    pub fn record_outbox_open(&self, report: &OpenReport) {
        self.alert_outbox_corrupt_records
            .inc_by(u64::try_from(report.corrupt + report.unreadable).unwrap_or(u64::MAX));
    }

    /// Counts what an enqueue did: pages dropped from full queues
    /// (`phimon_alerts_sent_total{outcome="dropped"}`) and a record the
    /// disk refused (`phimon_alert_enqueue_failures_total`).
    pub fn record_enqueue(&self, report: &EnqueueReport) {
        for webhook in &report.dropped {
            self.alerts_sent
                .with_label_values(&[webhook, outcome::DROPPED])
                .inc();
        }
        if report.not_durable.is_some() {
            self.alert_enqueue_failures.inc();
        }
    }

    /// Counts an event that could not be queued at all
    /// (`phimon_alert_enqueue_failures_total`).
    pub fn record_enqueue_failure(&self) {
        self.alert_enqueue_failures.inc();
    }

    /// The outbox could not be opened: no page is sent. `/readyz` says so.
    pub fn set_outbox_unusable(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.outbox_unusable.lock() {
            *slot = Some(reason.into());
        }
    }

    /// What keeps paging from working right now, for `/readyz`: no
    /// outbox, or pages held in memory only because the disk refuses
    /// them. Empty when paging is healthy.
    pub fn paging_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(why) = self.outbox_unusable.lock().ok().and_then(|s| s.clone()) {
            out.push(format!("alert outbox unusable, pages are not sent: {why}"));
        }
        let outbox = self.outbox.lock().ok().and_then(|o| o.clone());
        if let Some(outbox) = outbox {
            let n = outbox.unsaved();
            if n > 0 {
                out.push(format!(
                    "alert outbox cannot write to disk, {n} page(s) held in memory only: {}",
                    outbox.last_error().unwrap_or_default()
                ));
            }
        }
        out
    }

    /// Reads the outbox's backlog at every scrape.
    pub fn watch_outbox(&self, outbox: Outbox) {
        if let Ok(mut slot) = self.outbox.lock() {
            *slot = Some(outbox);
        }
    }

    /// The registry, to add collectors of other crates.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Collects everything (outbox gauges refreshed first).
    pub fn gather(&self) -> Vec<MetricFamily> {
        let outbox = self.outbox.lock().ok().and_then(|o| o.clone());
        if let Some(outbox) = outbox {
            self.outbox_pending
                .set(i64::try_from(outbox.pending()).unwrap_or(i64::MAX));
            let age = outbox
                .oldest_enqueued()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            self.outbox_oldest_age.set(age);
            self.outbox_unsaved
                .set(i64::try_from(outbox.unsaved()).unwrap_or(i64::MAX));
        }
        self.registry.gather()
    }

    /// The Prometheus text exposition of [`gather`](Self::gather).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only for malformed families, which
        // the registry never produces.
        if let Err(e) = TextEncoder::new().encode(&self.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The delivery workers' outcomes (`phimon_alerts_sent_total`) and
/// latencies (`phimon_alert_delivery_latency_seconds`).
impl DeliveryMetrics for Metrics {
    fn add_webhook(&self, webhook: &str) {
        Metrics::add_webhook(self, webhook);
    }

    fn count(&self, webhook: &str, outcome: &'static str) {
        self.alerts_sent
            .with_label_values(&[webhook, outcome])
            .inc();
    }

    fn delivered(&self, webhook: &str, latency: Duration) {
        self.alert_delivery_latency
            .with_label_values(&[webhook])
            .observe(latency.as_secs_f64());
    }
}

/// Per-peer and peer-aggregate series, computed from the snapshot at
/// scrape time (so peers that left the view leave the scrape too).
struct PeerCollector {
    export: ExportConfig,
    snapshot: SharedSnapshot,
    phi: GaugeVec,
    suspected: IntGaugeVec,
    peers: IntGaugeVec,
    suspected_count: IntGauge,
    phi_max: Gauge,
    window_fill: GaugeVec,
    exported: IntGauge,
    descs: Vec<Desc>,
    /// Serialises scrapes: collect resets and refills the vectors.
    lock: Mutex<()>,
}

impl PeerCollector {
    fn new(export: ExportConfig, snapshot: SharedSnapshot) -> Result<Self, MetricsError> {
        let phi = GaugeVec::new(
            Opts::new(
                "phimon_peer_phi",
                "Suspicion level phi of a peer this node observes.",
            ),
            &["peer"],
        )
        .map_err(err("phimon_peer_phi"))?;
        let suspected = IntGaugeVec::new(
            Opts::new(
                "phimon_peer_suspected",
                "1 while the fleet suspects the peer (a majority of its observers do).",
            ),
            &["peer"],
        )
        .map_err(err("phimon_peer_suspected"))?;
        let peers = IntGaugeVec::new(
            Opts::new("phimon_peers", "Known peers by membership status."),
            &["status"],
        )
        .map_err(err("phimon_peers"))?;
        let suspected_count = IntGauge::new(
            "phimon_peers_suspected",
            "Peers the fleet currently suspects, as this node sees it, all peers.",
        )
        .map_err(err("phimon_peers_suspected"))?;
        let phi_max = Gauge::new(
            "phimon_peer_phi_max",
            "Highest phi over the peers this node observes.",
        )
        .map_err(err("phimon_peer_phi_max"))?;
        let window_fill = GaugeVec::new(
            Opts::new(
                "phimon_detector_window_fill_ratio",
                "Detector window fill (samples / window size) over the peers this node observes: min and mean.",
            ),
            &["stat"],
        )
        .map_err(err("phimon_detector_window_fill_ratio"))?;
        let exported = IntGauge::new(
            "phimon_peer_series_exported",
            "Peers with per-peer series in this scrape.",
        )
        .map_err(err("phimon_peer_series_exported"))?;
        let mut descs = Vec::new();
        for c in [
            &phi as &dyn Collector,
            &suspected,
            &peers,
            &suspected_count,
            &phi_max,
            &window_fill,
            &exported,
        ] {
            descs.extend(c.desc().into_iter().cloned());
        }
        Ok(PeerCollector {
            export,
            snapshot,
            phi,
            suspected,
            peers,
            suspected_count,
            phi_max,
            window_fill,
            exported,
            descs,
            lock: Mutex::new(()),
        })
    }
}

impl Collector for PeerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.phi.reset();
        self.suspected.reset();
        read(&self.snapshot, |snap| {
            let mut by_status = [0i64; Status::ALL.len()];
            let (mut suspected, mut phi_max, mut exported) = (0, 0.0_f64, 0);
            let (mut fill_min, mut fill_sum, mut observed) = (f64::INFINITY, 0.0, 0usize);
            for p in &snap.peers {
                if let Some(i) = Status::ALL.iter().position(|s| *s == p.status) {
                    by_status[i] += 1;
                }
                suspected += i64::from(p.suspected);
                if p.phi.is_finite() {
                    phi_max = phi_max.max(p.phi);
                }
                if p.observed {
                    observed += 1;
                    fill_min = fill_min.min(p.window_fill);
                    fill_sum += p.window_fill;
                }
                if self.export.export_all_peers || p.observed {
                    exported += 1;
                    self.phi.with_label_values(&[&p.node_id]).set(p.phi);
                    self.suspected
                        .with_label_values(&[&p.node_id])
                        .set(i64::from(p.suspected));
                }
            }
            for (s, n) in Status::ALL.iter().zip(by_status) {
                self.peers.with_label_values(&[s.as_str()]).set(n);
            }
            self.suspected_count.set(suspected);
            self.phi_max.set(phi_max);
            self.exported.set(exported);
            let (min, mean) = if observed == 0 {
                (0.0, 0.0)
            } else {
                (fill_min, fill_sum / observed as f64)
            };
            self.window_fill.with_label_values(&["min"]).set(min);
            self.window_fill.with_label_values(&["mean"]).set(mean);
        });
        let mut out = Vec::new();
        for c in [
            &self.phi as &dyn Collector,
            &self.suspected,
            &self.peers,
            &self.suspected_count,
            &self.phi_max,
            &self.window_fill,
            &self.exported,
        ] {
            out.extend(c.collect());
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use phimon_alert::{AlertRecord, EventKind, Scope};

    /// A suspected page.
    pub(crate) fn record() -> AlertRecord {
        AlertRecord {
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
        }
    }
}
