//! Plain-data settings of the alert engine, and the webhook payload
//! format the config crate deserializes. Nothing here parses files or
//! validates key paths.

use serde::{Deserialize, Serialize};
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
