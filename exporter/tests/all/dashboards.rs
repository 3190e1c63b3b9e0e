//! The dashboard's PromQL, extracted into a rules file that promtool
//! validates, and dashboards/check.sh (rules, rule unit tests, that file).
//!
//! Regenerate the committed file after editing the dashboard with
//! `PHIMON_UPDATE_DASHBOARD_RULES=1 cargo test -p phimon-exporter --test all dashboards`.

use phimon_exporter::{ExportConfig, Metrics, NodeSnapshot};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn promtool_present() -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool is required in CI (Debian package prometheus)"
    );
    eprintln!("promtool not installed: skipped");
    false
}

/// Grafana template variables replaced by values PromQL accepts: range
/// variables by a duration, the rest (used in `=~"$var"` matchers) by `.*`.
fn substitute(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').unwrap();
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        out.push_str(match name {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => ".*",
        });
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            for (_, child) in m {
                collect_exprs(child, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|c| collect_exprs(c, out)),
        _ => {}
    }
}

fn generated_rules() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(dashboards().join("phimon.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dash["panels"], &mut exprs);
    assert!(exprs.len() >= 15, "found only {} expressions", exprs.len());
    let mut yaml = String::from(
        "# Generated from dashboards/phimon.json by exporter/tests/all/dashboards.rs: do not edit.\n\
         # Every PromQL expression of the dashboard, as a recording rule, so that\n\
         # `promtool check rules` validates them (Grafana variables substituted).\n\
         groups:\n  - name: dashboard-expressions\n    rules:\n",
    );
    let mut subst = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        let s = substitute(e);
        yaml.push_str(&format!(
            "      - record: dashboard:expr_{:02}\n        expr: {}\n",
            i + 1,
            serde_json::to_string(&s).unwrap()
        ));
        subst.push(s);
    }
    (yaml, subst)
}

#[test]
fn template_variables_are_substituted() {
    assert_eq!(
        substitute(r#"rate(x{job=~"$job",i=~"${instance}"}[$__rate_interval])"#),
        r#"rate(x{job=~".*",i=~".*"}[5m])"#
    );
}

#[test]
fn dashboard_expressions_are_valid_promql_and_name_real_metrics() {
    let (yaml, exprs) = generated_rules();
    let path = dashboards().join("generated/dashboard-exprs.rules.yml");
    if std::env::var_os("PHIMON_UPDATE_DASHBOARD_RULES").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed,
        yaml,
        "{} is stale: rerun with PHIMON_UPDATE_DASHBOARD_RULES=1",
        path.display()
    );

    // Every phimon_* name in the dashboard and the rules is a metric the
    // exporter registers (or a histogram's _bucket), or a recording rule.
    let snapshot = Arc::new(RwLock::new(NodeSnapshot::default()));
    let metrics = Metrics::new("test", ExportConfig::default(), snapshot).unwrap();
    // Labelled families appear once they have a child.
    metrics.add_webhook("w");
    metrics
        .alert_events
        .with_label_values(&["suspected", "node"])
        .inc();
    metrics
        .alert_delivery_latency
        .with_label_values(&["w"])
        .observe(1.0);
    let rendered = metrics.render();
    let mut known: BTreeSet<String> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    // Families without samples in an empty node (per-peer gauges, and the
    // transport's reasons, which the runtime creates).
    for extra in [
        "phimon_peer_phi",
        "phimon_peer_suspected",
        "phimon_auth_failures_total",
        "phimon_transport_handshakes_refused_total",
    ] {
        known.insert(extra.to_string());
    }
    let recording =
        std::fs::read_to_string(dashboards().join("rules/phimon-recording.yml")).unwrap();
    let alerts = std::fs::read_to_string(dashboards().join("rules/phimon-alerts.yml")).unwrap();
    for l in recording.lines() {
        if let Some(name) = l.trim().strip_prefix("- record: ") {
            known.insert(name.trim().to_string());
        }
    }
    let all_text = format!("{}\n{recording}\n{alerts}", exprs.join("\n"));
    let mut unknown = BTreeSet::new();
    let bytes = all_text.as_bytes();
    let mut i = 0;
    while let Some(pos) = all_text[i..].find("phimon") {
        let start = i + pos;
        let prev_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = all_text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(all_text.len(), |e| start + e);
        let name = &all_text[start..end];
        i = end.max(start + 1);
        // "phimon:" alone is prose (an annotation), not a name.
        if !prev_ok
            || name.ends_with(':')
            || !(name.starts_with("phimon_") || name.starts_with("phimon:"))
        {
            continue;
        }
        let base = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        if !known.contains(name) && !known.contains(base) {
            unknown.insert(name.to_string());
        }
    }
    assert!(unknown.is_empty(), "unknown metric names: {unknown:?}");

    if promtool_present() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("exprs.yml");
        std::fs::write(&f, &yaml).unwrap();
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_sh_passes() {
    if !promtool_present() {
        return;
    }
    let out = Command::new("bash")
        .arg(dashboards().join("check.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboards/check.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
