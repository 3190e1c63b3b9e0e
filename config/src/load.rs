//! Parsing TOML, applying environment overrides, deserializing.

use crate::redact::redact_text;
use crate::schema::Config;
use std::path::{Path, PathBuf};

/// Prefix of environment overrides: `PHIMON_<SECTION>_<KEY>`.
pub const ENV_PREFIX: &str = "PHIMON_";

/// Sections that environment variables may override. Other `PHIMON_*`
/// variables (e.g. `PHIMON_LOG`) are not configuration and are left alone.
const SECTIONS: &[&str] = &[
    "node", "cluster", "tls", "gossip", "detector", "http", "alert",
];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: invalid TOML: {message}")]
    Syntax {
        /// File name or `<string>`.
        origin: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key has the wrong type or value, or is unknown.
    #[error("{origin}: {key}: {message}")]
    Key {
        /// File name or `<string>`.
        origin: String,
        /// Dotted key path, e.g. `detector.threshold`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment override names an unknown key or cannot be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// Values parsed but are not valid; every problem is listed.
    #[error("{} problem(s) in {origin}:\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// File name or `<string>`.
        origin: String,
        /// Every problem found.
        problems: Vec<crate::Problem>,
    },
}

impl Config {
    /// Reads `path`, applies `PHIMON_*` overrides from the process
    /// environment and deserializes. Does not validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses `text` (named `origin` in errors), applies overrides from
    /// `env` (name, value pairs; pass `std::iter::empty()` for none).
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_string(),
                    // The parser quotes the offending line, which may be
                    // a webhook URL with its token.
                    message: redact_text(e.to_string().trim_end()),
                })?;
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (var, value) in env {
            apply_env(&mut table, &var, &value)?;
        }
        let value = toml::Value::Table(table);
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                origin: origin.to_string(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                // The toml deserializer appends "in `key`"; the key is already shown.
                message: redact_text(
                    e.into_inner()
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim_end(),
                ),
            }
        })
    }
}

/// Applies one `PHIMON_<SECTION>_<KEY>=value` to the table. The value is
/// read as a TOML value when it parses as one (numbers, booleans, arrays)
/// and as a string otherwise, so `PHIMON_GOSSIP_INTERVAL=2s` works.
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    let rest = rest.to_ascii_lowercase();
    let Some((section, key)) = rest.split_once('_') else {
        return Ok(());
    };
    if !SECTIONS.contains(&section) {
        return Ok(());
    }
    let err = |message: String| ConfigError::Env {
        var: var.to_string(),
        message: redact_text(&message),
    };
    if key.is_empty() {
        return Err(err(format!("no key after the section `{section}`")));
    }
    if section == "alert" && key.starts_with("webhook") {
        return Err(err(
            "webhooks cannot be set from the environment; use [[alert.webhook]] with secret_env for the secret".into(),
        ));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(section_table) = entry.as_table_mut() else {
        return Err(err(format!("`{section}` in the file is not a table")));
    };
    section_table.insert(key.to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t", env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn the_cluster_san_is_required_unless_turned_off() {
        let c = Config::from_toml("[tls]\nca = \"ca.pem\"\n", "t", env(&[])).unwrap();
        assert!(c.tls.require_cluster_san, "on when [tls] leaves it out");
        assert!(Config::default().tls.require_cluster_san);
        let c = Config::from_toml("[tls]\nrequire_cluster_san = false\n", "t", env(&[])).unwrap();
        assert!(!c.tls.require_cluster_san);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e =
            Config::from_toml("[detector]\nthreshhold = 3.0\n", "t.toml", env(&[])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("detector.threshhold"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let e = Config::from_toml("[gossip]\nfanout = \"many\"\n", "t.toml", env(&[])).unwrap_err();
        assert!(e.to_string().contains("gossip.fanout"), "{e}");
        let e =
            Config::from_toml("[gossip]\ninterval = \"soon\"\n", "t.toml", env(&[])).unwrap_err();
        assert!(e.to_string().contains("gossip.interval"), "{e}");
        let e = Config::from_toml("[detector]\ndistribution = \"weibull\"\n", "t", env(&[]))
            .unwrap_err();
        assert!(e.to_string().contains("detector.distribution"), "{e}");
        assert!(e.to_string().contains("normal"), "{e}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = Config::from_toml("[node\nid = 1", "t.toml", env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("line"), "{e}");
    }

    #[test]
    fn env_overrides_apply_and_typos_fail() {
        let c = Config::from_toml(
            "[node]\nid = \"a\"\n",
            "t",
            env(&[
                ("PHIMON_NODE_ID", "node-b"),
                ("PHIMON_DETECTOR_THRESHOLD", "9"),
                ("PHIMON_GOSSIP_INTERVAL", "250ms"),
                ("PHIMON_CLUSTER_SEEDS", "[\"a:1\", \"b:2\"]"),
                ("PHIMON_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node.id, "node-b");
        assert_eq!(c.detector.threshold, 9.0);
        assert_eq!(c.gossip.interval, std::time::Duration::from_millis(250));
        assert_eq!(c.cluster.seeds, vec!["a:1", "b:2"]);
        let e = Config::from_toml("", "t", env(&[("PHIMON_DETECTOR_TRESHOLD", "9")])).unwrap_err();
        assert!(e.to_string().contains("detector.treshold"), "{e}");
    }

    #[test]
    fn alert_for_and_webhooks_parse() {
        let c = Config::from_toml(
            "[alert]\nfor = \"30s\"\n[[alert.webhook]]\nname = \"x\"\nurl = \"https://h/\"\nformat = \"slack\"\n",
            "t",
            env(&[]),
        )
        .unwrap();
        assert_eq!(c.alert.for_, std::time::Duration::from_secs(30));
        assert_eq!(c.alert.webhooks[0].format, crate::WebhookFormat::Slack);
    }
}
