//! `promtool check metrics` on a real scrape, and the series counts that
//! docs/metrics.md quotes.

use phimon_exporter::snapshot::publish;
use phimon_exporter::{ExportConfig, Metrics, NodeSnapshot, PeerInfo, SharedSnapshot};
use phimon_gossip::Status;
use phimon_testkit::promtool::assert_promtool_clean;
use std::sync::{Arc, RwLock};

fn peer(i: usize, phi: f64) -> PeerInfo {
    PeerInfo {
        node_id: format!("node-{i}"),
        address: format!("10.0.0.{}:7800", i % 250),
        generation: 1,
        status: Status::Alive,
        phi,
        suspected: phi >= 8.0,
        last_heartbeat_age_ms: 100.0,
        interval_mean_ms: 1000.0,
        interval_stddev_ms: 10.0,
        interval_p50_ms: 1000.0,
        interval_p99_ms: 1030.0,
        interval_max_ms: 1050.0,
        window_fill: 1.0,
        observed: true,
        ..PeerInfo::default()
    }
}

/// A fully populated node of an `n`-node fleet: every metric has a value.
fn node(n: usize, me: usize, export_all: bool) -> Metrics {
    let snapshot: SharedSnapshot = Arc::new(RwLock::new(NodeSnapshot::default()));
    let export = ExportConfig {
        export_all_peers: export_all,
    };
    let m = Metrics::new("0.1.0", export, snapshot.clone()).unwrap();
    m.add_webhook("oncall");
    m.heartbeats_received.inc();
    m.gossip_messages.with_label_values(&["sent"]).inc();
    m.gossip_round_duration.observe(0.002);
    m.tick_lateness.observe(0.001);
    m.alert_events
        .with_label_values(&["suspected", "node"])
        .inc();
    m.alert_delivery_latency
        .with_label_values(&["oncall"])
        .observe(0.2);
    publish(
        &snapshot,
        NodeSnapshot {
            node_id: format!("node-{me}"),
            joined: true,
            peers: (0..n)
                .filter(|i| *i != me)
                .map(|i| {
                    // This node observes about k = 3 peers (its ring
                    // predecessors): only they have per-peer series.
                    let mut p = peer(i, if i == 1 { 9.0 } else { 0.5 });
                    p.observed = (me + n - i) % n <= 3;
                    p
                })
                .collect(),
        },
    );
    m
}

/// Series in a scrape: non-comment lines.
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

#[test]
fn promtool_check_metrics_is_clean() {
    assert_promtool_clean(&node(10, 0, true).render());
}

#[test]
fn per_peer_series_stay_bounded() {
    // Per node: a constant plus 2 series per observed peer. Fleet-wide the
    // designated default stays linear in N; export_all_peers is quadratic.
    for n in [3usize, 10, 100, 1000] {
        let base = series(&node(1, 0, false).render());
        let mut fleet = 0;
        let sample: Vec<usize> = if n <= 100 {
            (0..n).collect()
        } else {
            (0..n).step_by(50).collect()
        };
        for me in &sample {
            fleet += series(&node(n, *me, false).render());
        }
        let per_node = fleet as f64 / sample.len() as f64;
        let all = series(&node(n, 0, true).render());
        println!(
            "N={n}: base {base}, designated mean {per_node:.1} per node (~{:.0} fleet-wide), export_all {all} per node (~{} fleet-wide)",
            per_node * n as f64,
            all * n
        );
        // 2 series per observed peer; each node observes k = 3.
        assert!(per_node <= base as f64 + 2.0 * 3.0, "N={n}: {per_node}");
        assert_eq!(all, base + 2 * (n - 1), "N={n}");
    }
}

#[test]
fn series_breakdown() {
    let text = node(1, 0, false).render();
    let mut fams: std::collections::BTreeMap<String, usize> = Default::default();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        let base = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        *fams.entry(base.to_string()).or_default() += 1;
    }
    for (k, v) in &fams {
        println!("{v:4} {k}");
    }
    assert_eq!(fams.values().sum::<usize>(), series(&text));
}
