//! Every metric docs/metrics.md lists has a writer on a running cluster,
//! and every metric a node serves is documented there.

use phimon_testkit::local_cluster::LocalCluster;
use phimon_testkit::sink::WebhookSink;
use std::collections::{BTreeMap, BTreeSet};

/// Documented metrics whose writer belongs to the runtime and does not
/// exist yet: served (registered) but never observed. When one gets its
/// writer, this test fails until it is removed from here.
const AWAITING_A_WRITER: &[&str] = &["phimon_gossip_round_duration_seconds"];

/// `name -> type` of the series table of docs/metrics.md.
fn documented() -> BTreeMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cols.get(1)?.strip_prefix("`phimon_")?.strip_suffix('`')?;
            Some((format!("phimon_{name}"), cols.get(2)?.to_string()))
        })
        .collect()
}

/// Sum of the samples of `series` (the name itself, or `name_count`)
/// over a scrape, and whether the family is served at all.
fn family(text: &str, name: &str) -> (bool, f64) {
    let served = text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|r| r.split(' ').next())
            .is_some_and(|n| n == name)
    });
    let sum = phimon_testkit::local_cluster::metric(text, &format!("{name}_count"));
    (served, sum)
}

/// Once the cluster paged: each documented metric is served by some
/// node, each documented histogram has observations somewhere (except
/// [`AWAITING_A_WRITER`]), and nothing undocumented is served.
pub async fn assert_documented_metrics_written(c: &LocalCluster, sink: &WebhookSink) {
    assert!(!sink.pages().is_empty(), "the cluster has not paged yet");
    let docs = documented();
    assert!(docs.len() >= 20, "metrics.md lists only {docs:?}");
    let mut scrapes = Vec::new();
    for i in 0..c.nodes.len() {
        if let Ok(text) = c.get(i, "/metrics").await {
            scrapes.push(text);
        }
    }
    assert!(scrapes.len() >= 2, "too few nodes answered");
    let mut served: BTreeSet<String> = BTreeSet::new();
    for text in &scrapes {
        for l in text.lines() {
            if let Some(name) = l.strip_prefix("# TYPE ").and_then(|r| r.split(' ').next()) {
                served.insert(name.to_owned());
            }
        }
    }
    for (name, kind) in &docs {
        let (present, observations) = scrapes
            .iter()
            .map(|t| family(t, name))
            .fold((false, 0.0), |a, b| (a.0 || b.0, a.1 + b.1));
        assert!(present, "{name} is documented but no node serves it");
        if kind == "histogram" {
            if AWAITING_A_WRITER.contains(&name.as_str()) {
                assert_eq!(
                    observations, 0.0,
                    "{name} is written now: remove it from AWAITING_A_WRITER"
                );
            } else {
                assert!(observations > 0.0, "histogram {name} has no observation");
            }
        }
    }
    let undocumented: Vec<&String> = served.iter().filter(|n| !docs.contains_key(*n)).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in docs/metrics.md: {undocumented:?}"
    );
}
