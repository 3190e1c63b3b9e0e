//! Plain-data settings of one webhook. The config crate maps
//! `[[alert.webhook]]` onto [`WebhookConfig`]; nothing here parses files.

use phimon_alert::WebhookFormat;
use std::path::PathBuf;
use std::time::Duration;

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
