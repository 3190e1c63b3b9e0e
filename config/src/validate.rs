//! Value checks, reporting every problem at once.

use crate::load::ConfigError;
use crate::redact::{redact_text, redact_url};
use crate::schema::{Config, WebhookFormat};
use phimon_detector::DetectorConfig;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// One invalid value: where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `detector.threshold` or `alert.webhook[1].url`.
    pub path: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Which part of the configuration a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only `[detector]` (for `phimon eval`).
    Detector,
    /// Everything, including that referenced files are readable (for
    /// `phimon run` and `phimon check-config`).
    Full,
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            // Whatever a message quotes, it shows no URL's credentials.
            message: redact_text(&message.into()),
        });
    }
}

fn readable_file(p: &mut Problems, key: &str, path: &Path) {
    if path.as_os_str().is_empty() {
        p.add(key, "is required: set it to a PEM file path");
        return;
    }
    match std::fs::File::open(path) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() => {}
            Ok(_) => p.add(key, format!("{} is not a regular file", path.display())),
            Err(e) => p.add(key, format!("cannot stat {}: {e}", path.display())),
        },
        Err(e) => p.add(key, format!("cannot read {}: {e}", path.display())),
    }
}

fn host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

impl Config {
    /// Every problem in the parts of the configuration `scope` needs.
    pub fn problems(&self, scope: Scope) -> Vec<Problem> {
        let mut p = Problems(Vec::new());
        let d = &self.detector;
        if !(d.threshold.is_finite() && d.threshold > 0.0) {
            p.add(
                "detector.threshold",
                format!(
                    "is {}; it must be a number > 0 (8 is a common choice)",
                    d.threshold
                ),
            );
        }
        if d.window == 0 || d.window > DetectorConfig::MAX_WINDOW {
            p.add(
                "detector.window",
                format!(
                    "is {}; it must be between 1 and {}",
                    d.window,
                    DetectorConfig::MAX_WINDOW
                ),
            );
        }
        if d.min_std_dev.is_zero() {
            p.add(
                "detector.min_std_dev",
                "must be > 0 (e.g. \"100ms\"), or phi jumps on the first late heartbeat",
            );
        }
        if scope == Scope::Detector {
            return p.0;
        }

        if self.node.id.is_empty() {
            p.add(
                "node.id",
                "is required: set it to this node's name, the DNS SAN of its certificate",
            );
        } else if let Err(e) = phimon_gossip::NodeId::check(&self.node.id) {
            // Ids become certificate DNS names, metric labels, file names
            // and chat text: one character rule everywhere.
            p.add(
                "node.id",
                format!(
                    "{:?}: {e} (letters, digits, '-', '.', '_'; it is a certificate DNS name)",
                    self.node.id.escape_debug().to_string()
                ),
            );
        }
        if let Some(a) = &self.node.advertise {
            if !host_port(a) {
                p.add("node.advertise", format!("{a:?} is not \"host:port\""));
            }
        }
        if self.node.mailbox
            && self.node.mailbox_port != 0
            && self.node.mailbox_port == self.node.listen.port()
        {
            p.add(
                "node.mailbox_port",
                format!(
                    "{} is node.listen's port: the mailbox needs a port of its own (0: any free one)",
                    self.node.mailbox_port
                ),
            );
        }
        if self.node.data_dir.as_os_str().is_empty() {
            p.add(
                "node.data_dir",
                "is required: a writable directory for the generation counter and the alert outbox",
            );
        }
        if self.cluster.name.is_empty() {
            p.add("cluster.name", "must not be empty");
        }
        for (i, s) in self.cluster.seeds.iter().enumerate() {
            if !host_port(s) {
                p.add(
                    format!("cluster.seeds[{i}]"),
                    format!("{s:?} is not \"host:port\""),
                );
            }
        }
        readable_file(&mut p, "tls.ca", &self.tls.ca);
        readable_file(&mut p, "tls.cert", &self.tls.cert);
        readable_file(&mut p, "tls.key", &self.tls.key);
        if let Some(crl) = &self.tls.crl {
            readable_file(&mut p, "tls.crl", crl);
        }

        let g = &self.gossip;
        if g.interval < Duration::from_millis(10) || g.interval > Duration::from_secs(3600) {
            p.add(
                "gossip.interval",
                format!(
                    "is {}; it must be between 10ms and 1h",
                    humantime::format_duration(g.interval)
                ),
            );
        }
        if g.fanout == 0 || g.fanout > 32 {
            p.add(
                "gossip.fanout",
                format!("is {}; it must be between 1 and 32", g.fanout),
            );
        }
        if g.observers == 0 || g.observers > 64 {
            p.add(
                "gossip.observers",
                format!("is {}; it must be between 1 and 64", g.observers),
            );
        }
        if g.dead_grace < g.interval {
            p.add("gossip.dead_grace", "must be at least gossip.interval");
        }

        let a = &self.alert;
        if !(a.resolve_threshold.is_finite() && a.resolve_threshold >= 0.0) {
            p.add("alert.resolve_threshold", "must be a number >= 0");
        } else if d.threshold > 0.0 && a.resolve_threshold >= d.threshold {
            p.add(
                "alert.resolve_threshold",
                format!(
                    "is {} but must be below detector.threshold ({}) so alerts do not flap",
                    a.resolve_threshold, d.threshold
                ),
            );
        }
        let mut names = HashSet::new();
        for (i, w) in a.webhooks.iter().enumerate() {
            let key = |k: &str| format!("alert.webhook[{i}].{k}");
            if w.name.is_empty() {
                p.add(key("name"), "is required");
            } else if !names.insert(w.name.as_str()) {
                p.add(
                    key("name"),
                    format!(
                        "{:?} is used by another webhook; names must be unique",
                        w.name
                    ),
                );
            }
            let url = w.url.as_str();
            // Shown as scheme and host only: webhook URLs carry tokens.
            let shown = redact_url(url);
            if url.starts_with("http://") {
                if !w.allow_insecure_http {
                    p.add(
                        key("url"),
                        format!("{shown:?} is plain http: use https://, or set allow_insecure_http = true for a trusted local receiver"),
                    );
                }
            } else if !url.starts_with("https://") || url.len() <= "https://".len() {
                p.add(
                    key("url"),
                    format!("{shown:?} is not an http(s) URL (it must start with https://)"),
                );
            }
            if w.secret_file.is_some() && w.secret_env.is_some() {
                p.add(
                    key("secret_file"),
                    "set either secret_file or secret_env, not both",
                );
            }
            if let Some(f) = &w.secret_file {
                readable_file(&mut p, &key("secret_file"), f);
            }
            if let Some(v) = &w.secret_env {
                if std::env::var_os(v).is_none() {
                    p.add(
                        key("secret_env"),
                        format!("environment variable {v} is not set"),
                    );
                }
            }
            let needs_secret =
                matches!(w.format, WebhookFormat::Generic | WebhookFormat::Pagerduty);
            if needs_secret && w.secret_file.is_none() && w.secret_env.is_none() {
                let what = if w.format == WebhookFormat::Generic {
                    "the HMAC signing key"
                } else {
                    "the PagerDuty routing key"
                };
                p.add(
                    key("secret_file"),
                    format!(
                        "is required for format \"{}\": a file holding {what}",
                        w.format.as_str()
                    ),
                );
            }
            if w.timeout.is_zero() {
                p.add(key("timeout"), "must be > 0");
            }
        }
        p.0
    }

    /// `Ok` when [`problems`](Self::problems) finds none, else all of them.
    pub fn validate(&self, scope: Scope, origin: &str) -> Result<(), ConfigError> {
        let problems = self.problems(scope);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        Config::from_toml(s, "t", std::iter::empty()).unwrap()
    }

    fn paths(c: &Config, scope: Scope) -> Vec<String> {
        c.problems(scope).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn defaults_are_valid_for_the_detector() {
        assert!(Config::default().problems(Scope::Detector).is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = parse(
            r#"
            [node]
            id = ""
            [detector]
            threshold = 0.0
            window = 0
            min_std_dev = "0s"
            [alert]
            resolve_threshold = 5.0
            [[alert.webhook]]
            name = "a"
            url = "http://x/"
            [[alert.webhook]]
            name = "a"
            url = "https://x/"
            format = "slack"
            "#,
        );
        let got = paths(&c, Scope::Full);
        for want in [
            "detector.threshold",
            "detector.window",
            "detector.min_std_dev",
            "node.id",
            "tls.ca",
            "tls.cert",
            "tls.key",
            "alert.webhook[0].url",
            "alert.webhook[0].secret_file",
            "alert.webhook[1].name",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
        }
        // With threshold itself invalid, the comparison is not reported.
        assert!(
            !got.iter().any(|g| g == "alert.resolve_threshold"),
            "{got:?}"
        );
    }

    #[test]
    fn detector_scope_ignores_the_rest() {
        let c = parse("[detector]\nthreshold = 3\n");
        assert!(paths(&c, Scope::Detector).is_empty());
        assert!(!paths(&c, Scope::Full).is_empty());
    }

    #[test]
    fn a_complete_config_with_files_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "n.pem", "n.key", "hook.secret"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let d = dir.path().display();
        let c = parse(&format!(
            r#"
            [node]
            id = "node-a"
            data_dir = "{d}"
            advertise = "10.0.0.5:7800"
            [cluster]
            seeds = ["10.0.0.6:7800", "node-c.internal:7800"]
            [tls]
            ca = "{d}/ca.pem"
            cert = "{d}/n.pem"
            key = "{d}/n.key"
            [[alert.webhook]]
            name = "oncall"
            url = "https://example.invalid/hook"
            secret_file = "{d}/hook.secret"
            "#
        ));
        assert_eq!(c.problems(Scope::Full), vec![]);
    }
}
