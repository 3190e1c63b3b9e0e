//! Webhook delivery: one task per webhook drains its outbox queue
//! (urgent pages first, each priority in order), retrying with
//! exponential backoff and jitter while the receiver is down.
//!
//! A record leaves the queue only when its receiver accepted it (2xx),
//! refused it for good (a 4xx other than 408 and 429), or it cannot be
//! rendered for the webhook. Anything else (connection refused, timeout,
//! 408, 429, 5xx) is retried, forever: an alert is worth more than a
//! queue slot, and the outbox bounds the backlog. Outcomes and latencies
//! are reported to a [`DeliveryMetrics`] (the exporter's metrics write
//! them to `phimon_alerts_sent_total{webhook, outcome}` and
//! `phimon_alert_delivery_latency_seconds{webhook}`).

use crate::outbox::{Outbox, Priority};
use crate::webhook::{Rendered, Webhook, redact_url, render};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `outcome` label values of `phimon_alerts_sent_total`.
pub mod outcome {
    /// The receiver accepted the event (2xx).
    pub const DELIVERED: &str = "delivered";
    /// An attempt failed (network error, timeout, 408, 429, 5xx); it
    /// will be retried.
    pub const FAILED: &str = "failed";
    /// The receiver refused it permanently (other 4xx) or it cannot be
    /// rendered for the webhook (missing routing key): dropped.
    pub const REJECTED: &str = "rejected";
    /// The format has no use for the event (`restarted` for PagerDuty
    /// and Alertmanager): not sent.
    pub const SKIPPED: &str = "skipped";
    /// Dropped from a full outbox queue before delivery.
    pub const DROPPED: &str = "dropped";
    /// Every outcome, to pre-create series.
    pub const ALL: [&str; 5] = [DELIVERED, FAILED, REJECTED, SKIPPED, DROPPED];
}

/// Where the delivery workers report what they did. The exporter's
/// `Metrics` implements it; tests implement it to count for themselves.
pub trait DeliveryMetrics: Send + Sync {
    /// A worker for `webhook` starts: its series can be created (so
    /// dashboards see zeros, not absent series, before the first page).
    fn add_webhook(&self, webhook: &str);
    /// A record of `webhook` had `outcome` (one of [`outcome`]'s values).
    fn count(&self, webhook: &str, outcome: &'static str);
    /// The receiver of `webhook` accepted a record `latency` after it
    /// entered the outbox, retries included.
    fn delivered(&self, webhook: &str, latency: Duration);
}

/// Retry schedule: exponential with "equal jitter".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure, before jitter (default 1 s).
    pub initial: Duration,
    /// Upper bound of any delay, also of a receiver's `Retry-After`
    /// (default 5 min).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (>= 1):
    /// `d = min(max, initial * 2^(failures-1))`, then uniformly in
    /// `[d/2, d]`. The jitter keeps a fleet of observers whose receiver
    /// came back from retrying in lockstep; the floor keeps the growth.
    pub fn delay<R: Rng>(&self, failures: u32, rng: &mut R) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        let d = self
            .initial
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max);
        let half = d / 2;
        let jitter = rng.random_range(0..=half.as_micros().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_micros(jitter)
    }
}

/// What one delivery attempt means for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Accepted: remove it.
    Delivered,
    /// Refused for good: remove it, count it.
    Rejected,
    /// Try again later (after the receiver's `Retry-After`, if any).
    Retry {
        /// The receiver's requested delay.
        after: Option<Duration>,
    },
}

/// Classifies an HTTP status (and `Retry-After` seconds, if sent).
pub fn classify(status: u16, retry_after_secs: Option<u64>) -> AttemptOutcome {
    match status {
        200..=299 => AttemptOutcome::Delivered,
        408 | 429 | 500..=599 => AttemptOutcome::Retry {
            after: retry_after_secs.map(Duration::from_secs),
        },
        // 1xx/3xx (redirects are not followed: a signed page must not be
        // forwarded to another host) and other 4xx: retrying won't help.
        _ => AttemptOutcome::Rejected,
    }
}

/// Why the delivery workers could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The HTTP client could not be built (TLS backend).
    #[error("building the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A webhook has no queue in the outbox.
    #[error("webhook {name:?} has no outbox queue; open the outbox with every webhook name")]
    NoQueue {
        /// The webhook's name.
        name: String,
    },
}

/// The running delivery workers.
#[derive(Debug)]
pub struct Delivery {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Delivery {
    /// Starts one worker per webhook on the current tokio runtime.
    /// `seed` seeds the jitter (per webhook, mixed with its name).
    pub fn spawn(
        outbox: Outbox,
        webhooks: Vec<Webhook>,
        metrics: Option<Arc<dyn DeliveryMetrics>>,
        backoff: Backoff,
        seed: u64,
    ) -> Result<Delivery, DeliveryError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("phimon/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (i, webhook) in webhooks.into_iter().enumerate() {
            if outbox.notifier(&webhook.name).is_none() {
                return Err(DeliveryError::NoQueue { name: webhook.name });
            }
            if let Some(m) = &metrics {
                m.add_webhook(&webhook.name);
            }
            let worker = Worker {
                outbox: outbox.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                backoff,
                rng: StdRng::seed_from_u64(seed ^ name_hash(&webhook.name) ^ i as u64),
                webhook,
                stopped: stopped.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        Ok(Delivery { stop, tasks })
    }

    /// Stops the workers (an attempt in flight is abandoned; its record
    /// stays in the outbox) and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct Worker {
    outbox: Outbox,
    client: reqwest::Client,
    metrics: Option<Arc<dyn DeliveryMetrics>>,
    backoff: Backoff,
    rng: StdRng,
    webhook: Webhook,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    fn count(&self, what: &'static str) {
        if let Some(m) = &self.metrics {
            m.count(&self.webhook.name, what);
        }
    }

    fn ack(&self, seq: u64) {
        if let Err(e) = self.outbox.ack(&self.webhook.name, seq) {
            tracing::error!(webhook = %self.webhook.name, error = %e, "removing a delivered record");
        }
    }

    async fn run(mut self) {
        let Some(notify) = self.outbox.notifier(&self.webhook.name) else {
            return;
        };
        let mut failures: u32 = 0;
        loop {
            if *self.stopped.borrow() {
                return;
            }
            let Some((seq, entry)) = self.outbox.peek(&self.webhook.name) else {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = self.stopped.changed() => return,
                }
                continue;
            };
            let now = SystemTime::now();
            let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let request = match render(&self.webhook, &entry.record, unix) {
                Ok(Rendered::Send(r)) => r,
                Ok(Rendered::Skip) => {
                    self.count(outcome::SKIPPED);
                    self.ack(seq);
                    continue;
                }
                Err(e) => {
                    tracing::error!(webhook = %self.webhook.name, error = %e, event_id = %entry.record.event_id, "alert cannot be rendered; dropped");
                    self.count(outcome::REJECTED);
                    self.ack(seq);
                    continue;
                }
            };
            let mut post = self
                .client
                .post(&request.url)
                .timeout(self.webhook.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(request.body);
            for (k, v) in &request.headers {
                post = post.header(*k, v);
            }
            let attempt = tokio::select! {
                r = post.send() => r,
                _ = self.stopped.changed() => return,
            };
            let result = match attempt {
                Ok(resp) => {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let status = resp.status().as_u16();
                    (classify(status, retry_after), format!("HTTP {status}"))
                }
                Err(e) => (
                    AttemptOutcome::Retry { after: None },
                    // reqwest errors may embed the URL: log the kind only.
                    format!(
                        "{}{}",
                        if e.is_timeout() {
                            "timeout"
                        } else if e.is_connect() {
                            "connect error"
                        } else {
                            "request error"
                        },
                        e.status().map(|s| format!(" {s}")).unwrap_or_default()
                    ),
                ),
            };
            match result.0 {
                AttemptOutcome::Delivered => {
                    self.count(outcome::DELIVERED);
                    if let Some(m) = &self.metrics {
                        // Until the receiver's answer, not the attempt's
                        // start: a slow receiver is part of the latency.
                        let latency = SystemTime::now()
                            .duration_since(entry.enqueued())
                            .unwrap_or_default();
                        m.delivered(&self.webhook.name, latency);
                    }
                    tracing::info!(webhook = %self.webhook.name, event_id = %entry.record.event_id, event = entry.record.event.as_str(), node = %entry.record.node_id, "alert delivered");
                    failures = 0;
                    self.ack(seq);
                }
                AttemptOutcome::Rejected => {
                    tracing::error!(webhook = %self.webhook.name, url = %redact_url(&self.webhook.url), outcome = %result.1, event_id = %entry.record.event_id, "receiver refused the alert; dropped");
                    self.count(outcome::REJECTED);
                    failures = 0;
                    self.ack(seq);
                }
                AttemptOutcome::Retry { after } => {
                    self.count(outcome::FAILED);
                    failures = failures.saturating_add(1);
                    let delay = after
                        .unwrap_or_else(|| self.backoff.delay(failures, &mut self.rng))
                        .min(self.backoff.max);
                    tracing::warn!(webhook = %self.webhook.name, url = %redact_url(&self.webhook.url), outcome = %result.1, failures, retry_in_ms = delay.as_millis() as u64, "alert delivery failed; will retry");
                    // A routine page waiting for its retry must not hold
                    // back an urgent one enqueued meanwhile: that one is
                    // tried at once (the outbox hands out urgent pages
                    // first).
                    let routine = Priority::of(&entry.record) == Priority::Routine;
                    let until = tokio::time::Instant::now() + delay;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = notify.notified(), if routine => {
                                if self.outbox.peek(&self.webhook.name).is_some_and(|(s, _)| s != seq) {
                                    break;
                                }
                            }
                            _ = self.stopped.changed() => return,
                        }
                    }
                }
            }
        }
    }
}

/// A stable 64-bit hash of a webhook's name: each webhook's retry jitter
/// gets its own random stream from one seed.
fn name_hash(name: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    let mut w = [0u8; 8];
    w.copy_from_slice(&d[..8]);
    u64::from_be_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let mut rng = StdRng::seed_from_u64(7);
        for failures in 1..40u32 {
            let d = b.delay(failures, &mut rng);
            let full = Duration::from_millis(100)
                .saturating_mul(1 << (failures - 1).min(31))
                .min(b.max);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?} vs {full:?}");
        }
        // Jitter: not all the same at the cap.
        let ds: Vec<Duration> = (0..20).map(|_| b.delay(30, &mut rng)).collect();
        assert!(ds.iter().any(|d| *d != ds[0]));
        // Deterministic for a seed.
        let a: Vec<_> = (1..10)
            .map(|f| b.delay(f, &mut StdRng::seed_from_u64(1)))
            .collect();
        let c: Vec<_> = (1..10)
            .map(|f| b.delay(f, &mut StdRng::seed_from_u64(1)))
            .collect();
        assert_eq!(a, c);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(204, None), AttemptOutcome::Delivered);
        assert_eq!(classify(400, None), AttemptOutcome::Rejected);
        assert_eq!(classify(401, None), AttemptOutcome::Rejected);
        assert_eq!(classify(302, None), AttemptOutcome::Rejected);
        assert_eq!(
            classify(429, Some(3)),
            AttemptOutcome::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(classify(503, None), AttemptOutcome::Retry { after: None });
        assert_eq!(classify(408, None), AttemptOutcome::Retry { after: None });
    }
}
