//! Mapping the configuration onto each crate's settings, and metrics that
//! mirror counters kept elsewhere (the transport, the protocol core).

use phimon_config::{Config, WebhookSection};
use phimon_exporter::{ExportConfig, Metrics};
use phimon_gossip::{GossipConfig, GossipStats};
use phimon_node::{AlertConfig, NodeConfig};
use phimon_pager::WebhookConfig;
use phimon_transport::{StatsSnapshot, TransportConfig};
use prometheus::IntGauge;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest reliable message. The transport accepts a little more, so a
/// full message always fits.
const MAX_MESSAGE_BYTES: usize = 60 * 1024;

/// The transport's settings.
pub fn transport_config(c: &Config) -> TransportConfig {
    TransportConfig {
        listen: c.node.listen,
        ca_pem_path: c.tls.ca.clone(),
        cert_pem_path: c.tls.cert.clone(),
        key_pem_path: c.tls.key.clone(),
        crl_pem_path: c.tls.crl.clone(),
        require_cluster_san: c.tls.require_cluster_san,
        cluster_name: c.cluster.name.clone(),
        node_id: Some(c.node.id.clone()),
        max_message_bytes: MAX_MESSAGE_BYTES + 4 * 1024,
        mailbox: c.node.mailbox && TransportConfig::default().mailbox,
        mailbox_port: c.node.mailbox_port,
        ..TransportConfig::default()
    }
}

/// The sans-IO node's settings: the protocol core's and the alert
/// engine's.
pub fn node_config(c: &Config) -> NodeConfig {
    NodeConfig {
        gossip: GossipConfig {
            cluster: c.cluster.name.clone(),
            interval: c.gossip.interval,
            fanout: c.gossip.fanout,
            observers: c.gossip.observers,
            dead_grace: c.gossip.dead_grace,
            seeds: c.cluster.seeds.clone(),
            max_message_bytes: MAX_MESSAGE_BYTES,
            detector: c.detector.detector_config(c.gossip.interval),
            threshold: c.detector.threshold,
            resolve_threshold: c.alert.resolve_threshold,
            for_: c.alert.for_,
            ..GossipConfig::default()
        },
        alert: AlertConfig {
            cluster: c.cluster.name.clone(),
            threshold: c.detector.threshold,
            // A pager ranked later waits one heartbeat per observer before
            // it for them to agree.
            rank_delay: c.gossip.interval,
            ..AlertConfig::default()
        },
    }
}

/// The per-peer series settings.
pub fn export_config(c: &Config) -> ExportConfig {
    ExportConfig {
        export_all_peers: c.http.export_all_peers,
    }
}

/// One webhook's settings.
pub fn webhook_config(w: &WebhookSection) -> WebhookConfig {
    WebhookConfig {
        name: w.name.clone(),
        url: w.url.clone(),
        format: w.format,
        secret_file: w.secret_file.clone(),
        secret_env: w.secret_env.clone(),
        timeout: w.timeout,
    }
}

/// The address peers should dial: `advertise`, else the listen address,
/// with a wildcard IP replaced by the address of the interface that routes
/// to the first seed (a connected UDP socket sends nothing).
pub fn self_address(c: &Config, bound: SocketAddr) -> String {
    if let Some(a) = &c.node.advertise {
        return a.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let routed = c.cluster.seeds.iter().find_map(|seed| {
        let target = std::net::ToSocketAddrs::to_socket_addrs(seed.as_str())
            .ok()?
            .next()?;
        let bind: SocketAddr = if target.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(target).ok()?;
        Some(s.local_addr().ok()?.ip())
    });
    let ip = routed.unwrap_or_else(|| {
        tracing::warn!(
            "node.listen is a wildcard and no seed is reachable to learn the local address: \
             advertising 127.0.0.1; set node.advertise"
        );
        IpAddr::from([127, 0, 0, 1])
    });
    SocketAddr::new(ip, bound.port()).to_string()
}

/// `phimon_data_dir_writable`: 0 when the generation file or the outbox
/// cannot be written (disk full, read-only, wrong owner).
pub fn register_data_dir_gauge(metrics: &Metrics, ok: bool) -> anyhow::Result<IntGauge> {
    let g = IntGauge::new(
        "phimon_data_dir_writable",
        "1 when node.data_dir accepts the generation counter and the alert outbox, 0 when it does not.",
    )?;
    metrics.registry().register(Box::new(g.clone()))?;
    g.set(i64::from(ok));
    Ok(g)
}

/// The count of `reason` in a snapshot's per-reason list (0 if absent).
fn count_of<R: PartialEq>(counts: &[(R, u64)], reason: &R) -> u64 {
    counts
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0, |(_, n)| *n)
}

/// Mirrors the transport's counters into the Prometheus metrics: counters
/// only grow, so each update adds what grew since the last.
#[derive(Default)]
pub struct TransportCounters {
    last: Option<StatsSnapshot>,
}

impl TransportCounters {
    /// Publishes the growth since the last call.
    pub fn update(&mut self, m: &Metrics, now: &StatsSnapshot) {
        let prev = self.last.clone().unwrap_or_default();
        let grew = |a: u64, b: u64| a.saturating_sub(b);
        m.gossip_messages.with_label_values(&["sent"]).inc_by(grew(
            now.messages_out + now.datagrams_out,
            prev.messages_out + prev.datagrams_out,
        ));
        m.gossip_messages
            .with_label_values(&["received"])
            .inc_by(grew(
                now.messages_in + now.datagrams_in,
                prev.messages_in + prev.datagrams_in,
            ));
        m.gossip_bytes.with_label_values(&["sent"]).inc_by(grew(
            now.bytes_out + now.datagram_bytes_out,
            prev.bytes_out + prev.datagram_bytes_out,
        ));
        m.gossip_bytes.with_label_values(&["received"]).inc_by(grew(
            now.bytes_in + now.datagram_bytes_in,
            prev.bytes_in + prev.datagram_bytes_in,
        ));
        for (reason, n) in &now.auth_failures_by_reason {
            m.auth_failures
                .with_label_values(&[reason.as_str()])
                .inc_by(grew(*n, count_of(&prev.auth_failures_by_reason, reason)));
        }
        for (reason, n) in &now.refusals_by_reason {
            m.transport_handshakes_refused
                .with_label_values(&[reason.as_str()])
                .inc_by(grew(*n, prev.refusals(*reason)));
        }
        for (reason, n) in &now.datagram_drops_by_reason {
            m.transport_datagrams_dropped
                .with_label_values(&[reason.as_str()])
                .inc_by(grew(*n, count_of(&prev.datagram_drops_by_reason, reason)));
        }
        m.transport_fast_path_fallbacks
            .inc_by(grew(now.fast_path_fallbacks, prev.fast_path_fallbacks));
        m.transport_mailbox_fallbacks
            .inc_by(grew(now.mailbox_fallbacks, prev.mailbox_fallbacks));
        m.decode_errors
            .inc_by(grew(now.frame_too_large, prev.frame_too_large));
        m.transport_handshake_failures
            .inc_by(grew(now.handshake_failures, prev.handshake_failures));
        m.transport_send_dropped
            .inc_by(grew(now.send_dropped, prev.send_dropped));
        m.transport_receive_dropped
            .inc_by(grew(now.receive_dropped, prev.receive_dropped));
        m.transport_message_timeouts
            .inc_by(grew(now.stream_timeouts, prev.stream_timeouts));
        m.transport_connections_closed_on_reload
            .inc_by(grew(now.closed_on_reload, prev.closed_on_reload));
        m.connections_open
            .set(i64::try_from(now.connections_open).unwrap_or(i64::MAX));
        m.transport_handshakes_in_progress
            .set(i64::try_from(now.handshakes_in_progress).unwrap_or(i64::MAX));
        self.last = Some(now.clone());
    }
}

/// Mirrors the protocol core's counters (records refused by reason,
/// heartbeats not recorded) into the Prometheus metrics, like
/// [`TransportCounters`].
#[derive(Default)]
pub struct GossipCounters {
    last: GossipStats,
}

impl GossipCounters {
    /// Publishes the growth since the last call.
    pub fn update(&mut self, m: &Metrics, now: &GossipStats) {
        let prev = &self.last;
        let grew = |a: u64, b: u64| a.saturating_sub(b);
        m.records
            .with_label_values(&["accepted"])
            .inc_by(grew(now.records_accepted, prev.records_accepted));
        m.records
            .with_label_values(&["known"])
            .inc_by(grew(now.records_known, prev.records_known));
        for (reason, n) in &now.records_rejected {
            let before = prev.records_rejected.get(reason).copied().unwrap_or(0);
            m.records_rejected
                .with_label_values(&[reason])
                .inc_by(grew(*n, before));
        }
        for (reason, n, before) in [
            (
                "unexpected",
                now.heartbeats_unexpected,
                prev.heartbeats_unexpected,
            ),
            ("stale", now.heartbeats_stale, prev.heartbeats_stale),
            (
                "reordered",
                now.heartbeats_reordered,
                prev.heartbeats_reordered,
            ),
        ] {
            m.heartbeats_refused
                .with_label_values(&[reason])
                .inc_by(grew(n, before));
        }
        self.last = now.clone();
    }
}

/// `phimon_tls_cert_expiry_timestamp_seconds` from the certificate the
/// transport uses now (reloads included).
pub fn set_cert_expiry(m: &Metrics, not_after: SystemTime) {
    let secs = match not_after.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    m.tls_cert_expiry.set(secs);
}

#[cfg(test)]
mod tests {
    use phimon_exporter::metrics::DATAGRAM_DROP_REASONS;
    use phimon_transport::DatagramDrop;

    #[test]
    fn the_cluster_san_setting_reaches_the_transport() {
        let mut c = phimon_config::Config::default();
        assert!(super::transport_config(&c).require_cluster_san);
        c.tls.require_cluster_san = false;
        assert!(!super::transport_config(&c).require_cluster_san);
    }

    #[test]
    fn every_fast_path_drop_reason_has_a_precreated_series() {
        let labels: Vec<&str> = DatagramDrop::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels, DATAGRAM_DROP_REASONS);
    }
}
