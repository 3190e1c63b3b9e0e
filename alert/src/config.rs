//! Plain-data settings of the alert engine, and the webhook payload
//! format the config crate deserializes. Nothing here parses files or
//! validates key paths.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Settings of the [`AlertEngine`](crate::AlertEngine). The config crate
/// fills them from `[alert]` and `[detector] threshold`; local suspicion
/// (`resolve_threshold`, `for`) and observers are the protocol core's.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// Cluster name: part of every incident id and every payload.
    pub cluster: String,
    /// The suspicion threshold in force, reported in every event.
    pub threshold: f64,
    /// How long a confirmed suspicion waits before it is paged (default
    /// 1 s), so that nodes failing together (a rack, a zone) are seen
    /// together and become one grouped page. Adds to page latency.
    pub group_wait: Duration,
    /// Simultaneously confirmed suspects from which the fleet is in a mass
    /// failure and pages once, as a group (default 3, at least 2).
    pub mass_failure_min: usize,
    /// Suspects confirmed within this long of the latest of them failed
    /// together (default 10 s: the spread of detection times of nodes
    /// that died at the same moment). A node confirmed later than that
    /// after the others is paged on its own, even while they stay down.
    pub mass_failure_window: Duration,
    /// Least time between two `restarted` pages about one node (default
    /// 10 min): a node in a crash loop pages once, not once per restart.
    pub restart_page_interval: Duration,
    /// Extra wait of a pager per observer ranked before it on the ring
    /// (default 1 s; the runtime sets the heartbeat interval): the page
    /// comes from the first-ranked agreeing observer, and one ranked later
    /// gives the ones before it that long to agree, so views that differ
    /// for a moment do not page twice.
    pub rank_delay: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            cluster: "default".into(),
            threshold: 8.0,
            group_wait: Duration::from_secs(1),
            mass_failure_min: 3,
            mass_failure_window: Duration::from_secs(10),
            restart_page_interval: Duration::from_secs(600),
            rank_delay: Duration::from_secs(1),
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
