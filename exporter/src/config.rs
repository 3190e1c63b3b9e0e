//! Plain-data settings of the alert engine, the webhooks and the metrics
//! exporter. The config crate maps TOML onto these; nothing here parses
//! files or validates key paths.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Default number of designated observers per subject (rendezvous `k`).
pub const DEFAULT_OBSERVERS: usize = 3;

/// Settings of the [`AlertEngine`](crate::AlertEngine).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// Cluster name: part of every incident id and every payload.
    pub cluster: String,
    /// phi at or above which a peer is suspect (`[detector] threshold`).
    pub threshold: f64,
    /// phi below which a suspected peer counts as recovered
    /// (`[alert] resolve_threshold`, < `threshold`). The gap between the
    /// two is the hysteresis that keeps a peer hovering at the threshold
    /// from paging again and again.
    pub resolve_threshold: f64,
    /// How long phi must stay at or above `threshold` before the peer is
    /// suspected (`[alert] for`; default 0 s). Filters single late
    /// heartbeats at the cost of that much detection latency.
    pub for_: Duration,
    /// Designated observers per subject (rendezvous `k`, default 3). Only
    /// they page about the subject, and a majority of them must agree.
    /// Larger values survive more simultaneous observer failures but cost
    /// gossip bytes and metric series.
    pub observers: usize,
    /// How long a confirmed suspicion waits before it is paged (default
    /// 2 s), so that nodes failing together (a rack, a zone) are seen
    /// together and become one grouped page. Adds to page latency.
    pub group_wait: Duration,
    /// Simultaneously confirmed suspects from which the fleet is in a mass
    /// failure and pages once, as a group (default 3, at least 2).
    pub mass_failure_min: usize,
    /// Peers that go silent within this long of each other count as going
    /// silent "at once" for isolation detection (default 30 s). Peers
    /// silent for longer than that before an episode are not counted, so
    /// nodes dying one by one over hours never look like isolation.
    pub isolation_window: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            cluster: "default".into(),
            threshold: 8.0,
            resolve_threshold: 4.0,
            for_: Duration::ZERO,
            observers: DEFAULT_OBSERVERS,
            group_wait: Duration::from_secs(2),
            mass_failure_min: 3,
            isolation_window: Duration::from_secs(30),
        }
    }
}

/// Payload format of a webhook. It is also the `format` key of
/// `[[alert.webhook]]`: the config crate deserializes this type, from the
/// lowercase names of [`WebhookFormat::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// phimon's JSON (DESIGN.md schema), signed per Standard Webhooks.
    #[default]
    Generic,
    /// Alertmanager's `POST /api/v2/alerts` JSON array.
    Alertmanager,
    /// PagerDuty Events API v2 (the secret is the routing key).
    Pagerduty,
    /// Slack incoming webhook (`{"text": ...}`).
    Slack,
}

impl WebhookFormat {
    /// The name used in configuration files and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Alertmanager => "alertmanager",
            WebhookFormat::Pagerduty => "pagerduty",
            WebhookFormat::Slack => "slack",
        }
    }
}

impl std::fmt::Display for WebhookFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[alert.webhook]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Unique name: the `webhook` label of delivery metrics and the name
    /// of its queue directory in the outbox. ASCII letters, digits, `-`,
    /// `_` and `.` only (checked by [`crate::Outbox::open`]).
    pub name: String,
    /// Receiver URL. For `alertmanager`, Alertmanager's base URL or the
    /// full `/api/v2/alerts` URL.
    pub url: String,
    /// Payload format.
    pub format: WebhookFormat,
    /// File holding the secret: the HMAC key for `generic` (`whsec_<base64>`
    /// is base64-decoded), the routing key for `pagerduty`.
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the secret, instead of a file.
    pub secret_env: Option<String>,
    /// Per-attempt timeout (default 10 s).
    pub timeout: Duration,
}

impl WebhookConfig {
    /// A webhook with the default format and timeout and no secret.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            format: WebhookFormat::Generic,
            secret_file: None,
            secret_env: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Settings of the per-peer metric series.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    /// Export per-peer series for every peer (`[http] export_all_peers`).
    /// Off by default: each node then exports per-peer series only for
    /// the peers it is a designated observer of, so the fleet exports
    /// about `observers * N` per-peer series instead of `N * (N - 1)`.
    pub export_all_peers: bool,
    /// Designated observers per subject; keep equal to
    /// [`AlertConfig::observers`] so the exported series come from the
    /// same nodes that page.
    pub observers: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            export_all_peers: false,
            observers: DEFAULT_OBSERVERS,
        }
    }
}
