//! Webhook payloads, Standard Webhooks signing and secrets.
//!
//! [`render`] is pure: a [`Webhook`], an [`AlertRecord`] and the current
//! Unix time in, the exact HTTP request out. The delivery worker sends
//! it; tests inspect it.

use crate::config::WebhookConfig;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use phimon_alert::AlertRecord;
use phimon_alert::WebhookFormat;
use phimon_alert::{EventKind, Scope};
use serde_json::json;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A secret (HMAC key, routing key). Its `Debug` and `Display` never show
/// the value, so it can sit in structs that are logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be loaded. Never contains the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The environment variable is unset or not UTF-8.
    #[error("secret environment variable {var} is not set (or not UTF-8)")]
    Env {
        /// The variable's name.
        var: String,
    },
    /// The secret is empty after trimming whitespace.
    #[error("secret from {origin} is empty")]
    Empty {
        /// File path or variable name.
        origin: String,
    },
    /// A `whsec_` secret whose remainder is not valid base64.
    #[error("secret from {origin} starts with whsec_ but is not valid base64 after it")]
    InvalidWhsec {
        /// File path or variable name.
        origin: String,
    },
}

impl Secret {
    /// A secret from its text; surrounding whitespace (the trailing
    /// newline of a file) is removed.
    pub fn new(text: &str) -> Secret {
        Secret(text.trim().to_string())
    }

    fn checked(text: &str, origin: String) -> Result<Secret, SecretError> {
        let s = Secret::new(text);
        if s.0.is_empty() {
            return Err(SecretError::Empty { origin });
        }
        if let Some(b64) = s.0.strip_prefix("whsec_") {
            if B64.decode(b64).is_err() {
                return Err(SecretError::InvalidWhsec { origin });
            }
        }
        Ok(s)
    }

    /// Reads the secret from a file holding it as text.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Secret::checked(&text, path.display().to_string())
    }

    /// Reads the secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Secret, SecretError> {
        let text = std::env::var(var).map_err(|_| SecretError::Env {
            var: var.to_string(),
        })?;
        Secret::checked(&text, format!("${var}"))
    }

    /// The secret's text. Named so that every use is visible in review.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the base64-decoded remainder of a `whsec_` secret
    /// (Standard Webhooks convention), else the text's bytes.
    pub fn hmac_key(&self) -> Vec<u8> {
        match self.0.strip_prefix("whsec_") {
            Some(b64) => B64
                .decode(b64)
                .unwrap_or_else(|_| self.0.as_bytes().to_vec()),
            None => self.0.as_bytes().to_vec(),
        }
    }
}

/// The Standard Webhooks signature header value: `v1,` + base64 of
/// HMAC-SHA256 over `id.timestamp.body`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// A configured webhook with its secret loaded.
#[derive(Clone)]
pub struct Webhook {
    /// Name (metric label, outbox queue).
    pub name: String,
    /// Receiver URL. Treated as a secret in output: Slack and some
    /// PagerDuty URLs embed a token.
    pub url: String,
    /// Payload format.
    pub format: WebhookFormat,
    /// The secret, if configured.
    pub secret: Option<Secret>,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `scheme://host[:port]/…`: a URL safe to log (paths and queries can
/// carry tokens, user info can carry passwords).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if scheme.is_empty() {
        "<url>".into()
    } else {
        format!("{scheme}://{host}/…")
    }
}

impl Webhook {
    /// Loads the secret of `config` (file first, then environment).
    pub fn from_config(config: &WebhookConfig) -> Result<Webhook, SecretError> {
        let secret = match (&config.secret_file, &config.secret_env) {
            (Some(path), _) => Some(Secret::from_file(path)?),
            (None, Some(var)) => Some(Secret::from_env(var)?),
            (None, None) => None,
        };
        Ok(Webhook {
            name: config.name.clone(),
            url: config.url.clone(),
            format: config.format,
            secret,
            timeout: config.timeout,
        })
    }
}

/// One HTTP POST to make.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Where to POST.
    pub url: String,
    /// Headers besides `content-type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("url", &redact_url(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The outcome of rendering a record for one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Send this request.
    Send(WebhookRequest),
    /// The format has no use for this event: counted as skipped, never
    /// sent.
    Skip,
}

/// Why a record cannot be rendered for a webhook (a permanent failure:
/// retrying does not help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// PagerDuty needs its routing key as the webhook's secret.
    #[error(
        "webhook {webhook}: pagerduty format needs the routing key as secret_file or secret_env"
    )]
    MissingRoutingKey {
        /// The webhook's name.
        webhook: String,
    },
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Alertmanager keeps an alert without `endsAt` firing only for its
/// `resolve_timeout` (5 min by default) unless it is re-sent. phimon sends
/// each event once, so a firing alert carries an explicit horizon instead;
/// the `recovered` event ends it.
pub const ALERTMANAGER_FIRING_HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);

/// The alert name used for Alertmanager and in summaries.
pub fn alert_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Node => "PhimonNodeSuspected",
        Scope::Partition => "PhimonObserverPartitioned",
        Scope::Group => "PhimonMassFailure",
    }
}

/// Renders `record` for `webhook` at Unix time `now_unix_secs` (the
/// `webhook-timestamp`; the body does not depend on it).
pub fn render(
    webhook: &Webhook,
    record: &AlertRecord,
    now_unix_secs: u64,
) -> Result<Rendered, RenderError> {
    match webhook.format {
        WebhookFormat::Generic => Ok(Rendered::Send(generic(webhook, record, now_unix_secs))),
        WebhookFormat::Alertmanager => Ok(alertmanager(webhook, record)),
        WebhookFormat::Pagerduty => pagerduty(webhook, record),
        WebhookFormat::Slack => Ok(Rendered::Send(WebhookRequest {
            url: webhook.url.clone(),
            headers: Vec::new(),
            body: json!({ "text": slack_text(record) })
                .to_string()
                .into_bytes(),
        })),
    }
}

/// The `generic` body: DESIGN.md's schema plus the incident fields and,
/// on a `suspected` page about a node, its `evidence` in full.
pub fn generic_body(record: &AlertRecord) -> Vec<u8> {
    let mut body = json!({
        "version": 1,
        "event": record.event,
        "cluster": record.cluster,
        "node_id": record.node_id,
        "observer": record.observer,
        "phi": record.phi,
        "threshold": record.threshold,
        "at": rfc3339(record.at()),
        "incident_id": record.incident_id,
        "scope": record.scope,
        "nodes": record.nodes,
        "generation": record.generation,
        "started_at": rfc3339(record.started()),
    });
    if let Some(evidence) = &record.evidence {
        body["evidence"] = json!(evidence);
    }
    body.to_string().into_bytes()
}

fn generic(webhook: &Webhook, record: &AlertRecord, now: u64) -> WebhookRequest {
    let body = generic_body(record);
    let mut headers = vec![
        ("webhook-id", record.event_id.clone()),
        ("webhook-timestamp", now.to_string()),
    ];
    if let Some(secret) = &webhook.secret {
        headers.push((
            "webhook-signature",
            sign(&secret.hmac_key(), &record.event_id, now, &body),
        ));
    }
    WebhookRequest {
        url: webhook.url.clone(),
        headers,
        body,
    }
}

/// `/api/v2/alerts` under the configured URL unless it already ends so.
fn alertmanager_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/api/v2/alerts") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/api/v2/alerts")
    }
}

fn alertmanager(webhook: &Webhook, record: &AlertRecord) -> Rendered {
    let ends_at = match record.event {
        EventKind::Suspected => record.at() + ALERTMANAGER_FIRING_HORIZON,
        // A restart closes the incident of a node that was down (its
        // pager sends `restarted` instead of `recovered`): the alert ends.
        EventKind::Recovered | EventKind::Restarted => record.at(),
    };
    // Labels identify the alert: identical on firing and resolution.
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), alert_name(record.scope).into());
    labels.insert("cluster".into(), record.cluster.clone().into());
    labels.insert("incident_id".into(), record.incident_id.clone().into());
    labels.insert("severity".into(), "critical".into());
    if !record.node_id.is_empty() {
        labels.insert("node".into(), record.node_id.clone().into());
    }
    let body = json!([{
        "labels": labels,
        "annotations": {
            "summary": record.summary(),
            "observer": record.observer,
            "phi": format!("{:.2}", record.phi),
            "nodes": record.nodes.join(","),
        },
        "startsAt": rfc3339(record.started()),
        "endsAt": rfc3339(ends_at),
    }]);
    Rendered::Send(WebhookRequest {
        url: alertmanager_url(&webhook.url),
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    })
}

fn pagerduty(webhook: &Webhook, record: &AlertRecord) -> Result<Rendered, RenderError> {
    let Some(key) = &webhook.secret else {
        return Err(RenderError::MissingRoutingKey {
            webhook: webhook.name.clone(),
        });
    };
    let body = match record.event {
        // A restart closes its incident like a recovery.
        EventKind::Recovered | EventKind::Restarted => json!({
            "routing_key": key.expose(),
            "event_action": "resolve",
            "dedup_key": record.incident_id,
        }),
        EventKind::Suspected => json!({
            "routing_key": key.expose(),
            "event_action": "trigger",
            "dedup_key": record.incident_id,
            "payload": {
                // PagerDuty caps the summary at 1024 characters.
                "summary": record.summary().chars().take(1024).collect::<String>(),
                "source": if record.node_id.is_empty() { &record.cluster } else { &record.node_id },
                "severity": "critical",
                "timestamp": rfc3339(record.at()),
                "component": "phimon",
                "group": record.cluster,
                "class": alert_name(record.scope),
                "custom_details": {
                    "observer": record.observer,
                    "phi": record.phi,
                    "threshold": record.threshold,
                    "nodes": record.nodes,
                    "generation": record.generation,
                    "started_at": rfc3339(record.started()),
                },
            },
        }),
    };
    Ok(Rendered::Send(WebhookRequest {
        url: webhook.url.clone(),
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    }))
}

fn slack_text(record: &AlertRecord) -> String {
    let icon = match record.event {
        EventKind::Suspected => ":rotating_light:",
        EventKind::Recovered => ":white_check_mark:",
        EventKind::Restarted => ":arrows_counterclockwise:",
    };
    format!(
        "{icon} {} (incident `{}`)",
        slack_escape(&record.summary()),
        slack_escape(&record.incident_id)
    )
}

/// Text made inert for Slack's `mrkdwn`: `&`, `<` and `>` become
/// entities (Slack's own escaping rule), so no `<!channel>` mention,
/// `<@U…>` ping or `<url|label>` link can come out of a node id, a
/// cluster name or anything else a record carries; control characters
/// (newlines included) become spaces, so a name cannot start a line of
/// its own. Node ids are restricted to a safe character set already
/// (`NodeId::check`); this holds for any text whatever its origin (an
/// outbox record written by an older version, the cluster name).
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: EventKind) -> AlertRecord {
        AlertRecord {
            incident_id: "inc_0123".into(),
            event_id: "msg_abcd".into(),
            event,
            scope: Scope::Node,
            cluster: "prod".into(),
            node_id: "node-7".into(),
            nodes: vec!["node-7".into()],
            observer: "node-2".into(),
            generation: 3,
            phi: 9.5,
            threshold: 8.0,
            at_unix_ms: 1_700_000_010_000,
            started_unix_ms: 1_700_000_000_000,
            evidence: None,
        }
    }

    fn hook(format: WebhookFormat, secret: Option<&str>) -> Webhook {
        Webhook {
            name: "oncall".into(),
            url: "https://user:pw@hooks.example.invalid/T000/B000/XXXX?token=abc".into(),
            format,
            secret: secret.map(Secret::new),
            timeout: Duration::from_secs(5),
        }
    }

    fn body(r: &Rendered) -> serde_json::Value {
        match r {
            Rendered::Send(req) => serde_json::from_slice(&req.body).unwrap(),
            Rendered::Skip => panic!("skipped"),
        }
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The Standard Webhooks specification's reference test vector.
        let key = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").hmac_key();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // A plain-text secret is used as its bytes.
        assert_eq!(Secret::new("abc\n").hmac_key(), b"abc");
    }

    #[test]
    fn generic_has_the_design_schema_and_a_valid_signature() {
        let h = hook(
            WebhookFormat::Generic,
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        );
        let r = render(&h, &record(EventKind::Suspected), 1_700_000_011).unwrap();
        let Rendered::Send(req) = &r else {
            panic!("skipped")
        };
        let v = body(&r);
        for key in [
            "version",
            "event",
            "cluster",
            "node_id",
            "observer",
            "phi",
            "threshold",
            "at",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["version"], 1);
        assert_eq!(v["event"], "suspected");
        assert_eq!(v["node_id"], "node-7");
        assert_eq!(v["incident_id"], "inc_0123");
        assert_eq!(v["at"], "2023-11-14T22:13:30.000Z");
        let header = |k: &str| {
            req.headers
                .iter()
                .find(|(h, _)| *h == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("webhook-id"), "msg_abcd");
        assert_eq!(header("webhook-timestamp"), "1700000011");
        let key = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").hmac_key();
        assert_eq!(
            header("webhook-signature"),
            sign(&key, "msg_abcd", 1_700_000_011, &req.body)
        );
        // Retries re-sign with a new timestamp over the same body.
        let again = render(&h, &record(EventKind::Suspected), 1_700_000_099).unwrap();
        let Rendered::Send(again) = again else {
            panic!()
        };
        assert_eq!(again.body, req.body);
    }

    #[test]
    fn alertmanager_fires_and_resolves_the_same_alert() {
        let h = hook(WebhookFormat::Alertmanager, None);
        let fire = render(&h, &record(EventKind::Suspected), 0).unwrap();
        let resolve = render(&h, &record(EventKind::Recovered), 0).unwrap();
        let Rendered::Send(req) = &fire else { panic!() };
        assert!(req.url.ends_with("/api/v2/alerts"), "{}", req.url);
        let (f, r) = (body(&fire), body(&resolve));
        assert!(f.is_array() && f.as_array().unwrap().len() == 1);
        assert_eq!(f[0]["labels"], r[0]["labels"]);
        assert_eq!(f[0]["labels"]["alertname"], "PhimonNodeSuspected");
        assert_eq!(f[0]["labels"]["node"], "node-7");
        assert_eq!(f[0]["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(r[0]["endsAt"], "2023-11-14T22:13:30.000Z");
        assert!(f[0]["endsAt"].as_str().unwrap() > "2023-12");
        // A restart that closes the incident resolves the same alert.
        let restarted = body(&render(&h, &record(EventKind::Restarted), 0).unwrap());
        assert_eq!(restarted[0]["labels"], f[0]["labels"]);
        assert_eq!(restarted[0]["endsAt"], "2023-11-14T22:13:30.000Z");
        assert_eq!(
            alertmanager_url("http://am:9093/api/v2/alerts/"),
            "http://am:9093/api/v2/alerts"
        );
    }

    #[test]
    fn pagerduty_triggers_and_resolves_by_incident() {
        let h = hook(WebhookFormat::Pagerduty, Some("R0UTING"));
        let t = body(&render(&h, &record(EventKind::Suspected), 0).unwrap());
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "inc_0123");
        assert_eq!(t["routing_key"], "R0UTING");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "node-7");
        for closing in [EventKind::Recovered, EventKind::Restarted] {
            let r = body(&render(&h, &record(closing), 0).unwrap());
            assert_eq!(r["event_action"], "resolve", "{closing:?}");
            assert_eq!(r["dedup_key"], "inc_0123");
        }
        assert!(matches!(
            render(
                &hook(WebhookFormat::Pagerduty, None),
                &record(EventKind::Suspected),
                0
            ),
            Err(RenderError::MissingRoutingKey { .. })
        ));
    }

    #[test]
    fn slack_is_text() {
        let v = body(
            &render(
                &hook(WebhookFormat::Slack, None),
                &record(EventKind::Suspected),
                0,
            )
            .unwrap(),
        );
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("node-7 is suspected down"), "{text}");
        assert!(text.contains("inc_0123"));
    }

    #[test]
    fn slack_text_cannot_mention_link_or_break_lines() {
        let mut r = record(EventKind::Suspected);
        r.cluster = "prod <!channel> & <https://evil.example|click>".into();
        r.node_id = "<!here>\n<@U123>".into();
        r.observer = "x>y".into();
        let v = body(&render(&hook(WebhookFormat::Slack, None), &r, 0).unwrap());
        let text = v["text"].as_str().unwrap();
        for bad in ["<!", "<@", "<http", "|click>", "\n"] {
            assert!(!text.contains(bad), "{bad:?} in {text:?}");
        }
        assert!(
            text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"),
            "{text}"
        );
        assert!(text.contains("&lt;!here&gt; &lt;@U123&gt;"), "{text}");
        assert!(text.contains("x&gt;y"), "{text}");
        assert_eq!(slack_escape("node-7.eu_west"), "node-7.eu_west");
    }

    #[test]
    fn secrets_and_urls_never_print() {
        let h = hook(WebhookFormat::Pagerduty, Some("R0UTING-KEY-123"));
        let printed = format!("{h:?} {} {:?}", h.secret.as_ref().unwrap(), h.secret);
        assert!(!printed.contains("R0UTING"), "{printed}");
        assert!(
            !printed.contains("token=abc") && !printed.contains("pw@"),
            "{printed}"
        );
        assert!(
            printed.contains("https://hooks.example.invalid/"),
            "{printed}"
        );
        let Rendered::Send(req) = render(&h, &record(EventKind::Suspected), 0).unwrap() else {
            panic!()
        };
        let printed = format!("{req:?}");
        assert!(
            !printed.contains("R0UTING") && !printed.contains("XXXX"),
            "{printed}"
        );
    }

    #[test]
    fn secrets_load_from_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let s = Secret::from_file(&p).unwrap();
        assert_eq!(s.hmac_key().len(), 24);
        std::fs::write(&p, "  \n").unwrap();
        assert!(matches!(
            Secret::from_file(&p),
            Err(SecretError::Empty { .. })
        ));
        std::fs::write(&p, "whsec_!!!notbase64").unwrap();
        let err = Secret::from_file(&p).unwrap_err();
        assert!(matches!(err, SecretError::InvalidWhsec { .. }));
        assert!(!err.to_string().contains("notbase64"));
        assert!(matches!(
            Secret::from_file(&dir.path().join("missing")),
            Err(SecretError::Read { .. })
        ));
        assert!(matches!(
            Secret::from_env("PHIMON_TEST_SURELY_UNSET_VARIABLE"),
            Err(SecretError::Env { .. })
        ));
        let mut cfg = WebhookConfig::new("x", "https://example.invalid/");
        cfg.secret_file = Some(p.clone());
        std::fs::write(&p, "plain").unwrap();
        let w = Webhook::from_config(&cfg).unwrap();
        assert_eq!(w.secret.unwrap().expose(), "plain");
    }
}
