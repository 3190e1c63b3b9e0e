//! Live reload (SIGHUP, `POST /v1/reload`): which configuration keys may
//! change while the node runs, and the difference between two
//! configurations, key by key.
//!
//! What changes live is what [`phimon_node::Node::reconfigure`] applies
//! without losing state: the detector's settings (its windows are kept
//! and replayed into the new detector) and the alerting thresholds.
//! Everything else is fixed at start: listeners and identity (sockets and
//! certificates are bound to them), `data_dir` (the generation counter
//! and the outbox live there), the gossip timing the ring and the stall
//! detector were sized for, and the set of webhooks (each has its outbox
//! queue; a webhook's URL, format, secret and timeout do change live:
//! delivery restarts with them). A file that changes any of those is refused whole, so
//! what runs is always one file's content.

use phimon_config::Config;
use serde_json::Value;
use std::collections::BTreeMap;

/// Keys (or `section.` prefixes) that a reload applies live.
const LIVE: &[&str] = &["detector.", "alert.for", "alert.resolve_threshold"];

/// Why a key cannot change live, by prefix (first match wins).
const FIXED: &[(&str, &str)] = &[
    ("node.id", "it is this node's identity"),
    ("node.listen", "it is a listener"),
    ("node.advertise", "peers know the node by it"),
    ("node.mailbox", "it is a listener"),
    (
        "node.data_dir",
        "the generation counter and the outbox live there",
    ),
    ("cluster.", "it is the node's identity"),
    (
        "tls.",
        "certificates are re-read from the same paths on SIGHUP, but the paths are the node's identity",
    ),
    ("gossip.", "the ring and timers are sized for it"),
    ("http.listen", "it is a listener"),
    ("http.", "the metrics are registered for it"),
    (
        "alert.webhook",
        "each webhook has its outbox queue: adding, removing or renaming one needs a restart",
    ),
];

/// Flattens a JSON tree into `section.key -> value` (arrays are leaves).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

fn flat(c: &Config) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    // A config always serializes (plain data); an error leaves it empty,
    // and every key then counts as changed, which refuses the reload.
    if let Ok(v) = serde_json::to_value(c) {
        flatten("", &v, &mut out);
    }
    out
}

/// The keys whose values differ between `old` and `new`, sorted.
fn changed_keys(old: &Config, new: &Config) -> Vec<(String, Option<Value>, Option<Value>)> {
    let (a, b) = (flat(old), flat(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

fn is_live(key: &str) -> bool {
    LIVE.iter()
        .any(|p| key == *p || (p.ends_with('.') && key.starts_with(p)))
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// What changes from `old` to `new`: `Ok` with one line per changed key
/// (`detector.threshold: 8.0 -> 12.0`) when every change may apply live,
/// else `Err` naming each key that cannot change and why.
pub fn plan(old: &Config, new: &Config) -> Result<Vec<String>, String> {
    let mut live = Vec::new();
    let mut fixed = Vec::new();
    let names =
        |c: &Config| -> Vec<String> { c.alert.webhooks.iter().map(|w| w.name.clone()).collect() };
    for (key, a, b) in changed_keys(old, new) {
        if key == "alert.webhook" && names(old) == names(new) {
            // Same queues: delivery restarts with the new URLs, formats,
            // secrets and timeouts. Values are not shown (secrets).
            let which: Vec<&str> = old
                .alert
                .webhooks
                .iter()
                .zip(&new.alert.webhooks)
                .filter(|(a, b)| a != b)
                .map(|(a, _)| a.name.as_str())
                .collect();
            live.push(format!(
                "alert.webhook: {} changed, delivery restarted",
                which.join(", ")
            ));
        } else if is_live(&key) {
            live.push(format!(
                "{key}: {} -> {}",
                show(a.as_ref()),
                show(b.as_ref())
            ));
        } else {
            let why = FIXED
                .iter()
                .find(|(p, _)| key.starts_with(p))
                .map_or("it is fixed at start", |(_, why)| why);
            // Values are not shown: a webhook URL or path may be secret.
            let line = format!("{key} cannot change without a restart ({why})");
            if !fixed.contains(&line) {
                fixed.push(line);
            }
        }
    }
    if fixed.is_empty() {
        Ok(live)
    } else {
        Err(format!(
            "refused, the running configuration stays: {}",
            fixed.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[node]\nid = \"node-1\"\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n{extra}"
        );
        Config::from_toml(&text, "test", std::iter::empty()).unwrap()
    }

    #[test]
    fn detector_and_alert_thresholds_change_live() {
        let old = config("");
        let new = config(
            "[detector]\nthreshold = 12.0\nwindow = 500\n[alert]\nfor = \"2s\"\nresolve_threshold = 3.0\n",
        );
        let lines = plan(&old, &new).unwrap();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines.contains(&"detector.threshold: 8.0 -> 12.0".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"detector.window: 1000 -> 500".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("alert.for: ")),
            "{lines:?}"
        );
        assert_eq!(plan(&old, &old), Ok(vec![]));
    }

    #[test]
    fn listeners_identity_and_data_dir_are_refused_by_name() {
        let old = config("");
        for (extra, key) in [
            ("[http]\nlisten = \"127.0.0.1:9999\"\n", "http.listen"),
            ("[cluster]\nname = \"other\"\n", "cluster.name"),
            ("[gossip]\ninterval = \"2s\"\n", "gossip.interval"),
            (
                "[[alert.webhook]]\nname = \"x\"\nurl = \"https://x.invalid/?token=SECRET\"\n",
                "alert.webhook",
            ),
        ] {
            let err = plan(&old, &config(extra)).unwrap_err();
            assert!(err.contains(&format!("{key} cannot change")), "{err}");
            assert!(!err.contains("SECRET"), "values are not shown: {err}");
        }
        let mut moved = old.clone();
        moved.node.data_dir = "/elsewhere".into();
        moved.node.listen = "127.0.0.1:1".parse().unwrap();
        moved.detector.threshold = 3.0;
        let err = plan(&old, &moved).unwrap_err();
        assert!(
            err.contains("node.data_dir cannot change")
                && err.contains("node.listen cannot change"),
            "{err}"
        );
        let mut renamed = old.clone();
        renamed.node.id = "node-2".into();
        assert!(
            plan(&old, &renamed)
                .unwrap_err()
                .contains("node.id cannot change")
        );
    }

    #[test]
    fn a_webhook_changes_live_but_the_set_of_webhooks_does_not() {
        let hook = |name: &str, url: &str| {
            format!("[[alert.webhook]]\nname = \"{name}\"\nurl = \"{url}\"\n")
        };
        let old = config(&hook("oncall", "https://a.invalid/?token=OLD"));
        let moved = config(&hook("oncall", "https://b.invalid/?token=NEW"));
        let lines = plan(&old, &moved).unwrap();
        assert_eq!(lines, ["alert.webhook: oncall changed, delivery restarted"]);
        let renamed = config(&hook("pager", "https://a.invalid/?token=OLD"));
        let err = plan(&old, &renamed).unwrap_err();
        assert!(err.contains("alert.webhook cannot change"), "{err}");
        assert!(!err.contains("OLD"), "{err}");
        let added = config(&format!(
            "{}{}",
            hook("oncall", "https://a.invalid/?token=OLD"),
            hook("slack", "https://s.invalid/")
        ));
        assert!(plan(&old, &added).is_err());
    }
}
