//! What `/v1/peers` and the per-peer metrics show, built from the node
//! when a scrape or request asks for it.

use phimon_detector::Timestamp;
use phimon_exporter::{IntervalHistogram, NodeSnapshot, PeerInfo};
use phimon_gossip::{NodeId, Status};
use phimon_node::Node;
use std::collections::HashMap;

/// The peers of `node` as the API shows them. `histograms` holds the
/// interval quantiles of the peers this node observes.
pub fn build(
    node: &Node,
    histograms: &HashMap<NodeId, IntervalHistogram>,
    now: Timestamp,
    joined: bool,
) -> NodeSnapshot {
    let g = node.gossip();
    let mut peers = Vec::with_capacity(g.len().saturating_sub(1));
    for m in g.members().filter(|m| !m.is_self()) {
        let observers = m.observers();
        let observed = m.observed();
        let mut info = PeerInfo {
            node_id: m.node_id().to_string(),
            address: m.address().to_owned(),
            generation: m.generation(),
            status: m.status(),
            phi: 0.0,
            suspected: m.status() == Status::Suspected,
            observed: observed.is_some(),
            locally_suspected: false,
            observers: observers.iter().map(|o| o.observer.to_string()).collect(),
            suspected_by: observers
                .iter()
                .filter(|o| o.suspected == Some(true))
                .map(|o| o.observer.to_string())
                .collect(),
            last_heartbeat_age_ms: 0.0,
            interval_mean_ms: 0.0,
            interval_stddev_ms: 0.0,
            interval_p50_ms: 0.0,
            interval_p99_ms: 0.0,
            interval_max_ms: 0.0,
            heartbeats_lost: 0,
            window_fill: 0.0,
        };
        if let Some(o) = observed {
            let d = o.detector();
            let w = d.window();
            let (mean, var) = w.mean_var().unwrap_or((0.0, 0.0));
            info.phi = o.phi(now);
            info.locally_suspected = o.suspected();
            info.last_heartbeat_age_ms = o
                .last_arrival()
                .map_or(0.0, |l| (now - l).as_secs_f64() * 1000.0);
            info.interval_mean_ms = mean / 1000.0;
            info.interval_stddev_ms = var.sqrt() / 1000.0;
            info.window_fill = w.len() as f64 / w.capacity().max(1) as f64;
            info.heartbeats_lost = o.counts().lost;
            if let Some(q) = histograms.get(m.node_id()).and_then(|h| h.quantiles()) {
                info.interval_p50_ms = q.p50_ms;
                info.interval_p99_ms = q.p99_ms;
                info.interval_max_ms = q.max_ms;
            }
        }
        peers.push(info);
    }
    peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    NodeSnapshot {
        node_id: g.id().to_string(),
        joined,
        peers,
    }
}
