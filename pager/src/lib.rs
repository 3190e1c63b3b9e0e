//! phimon's pager: alert records become signed webhook requests, kept on
//! disk until their receivers accept them.
//!
//! - [`webhook`]: payloads (`generic` signed per Standard Webhooks,
//!   `alertmanager`, `pagerduty`, `slack`) rendered from an
//!   [`AlertRecord`](phimon_alert::AlertRecord) by the pure [`render`];
//!   [`Secret`] never prints.
//! - [`Outbox`]: the durable, per-webhook queue in `data_dir/outbox`
//!   (write, fsync, rename, all-or-nothing across webhooks; urgent pages
//!   delivered first and dropped last; records the disk refused are held
//!   in memory until it accepts them; torn or unreadable records are set
//!   aside at start-up, never fatal).
//! - [`Delivery`]: the tokio workers that drain it, one per webhook, with
//!   [`Backoff`] and jitter; they report outcomes to a
//!   [`DeliveryMetrics`].
//! - [`WebhookConfig`]: plain data the config crate maps
//!   `[[alert.webhook]]` onto.
//!
//! Not here: deciding what to page (phimon-alert's engine), the metrics
//! themselves (phimon-exporter implements [`DeliveryMetrics`]), config
//! parsing, and the wiring, which `phimon run` does: open the outbox with
//! every webhook name, build each [`Webhook`] (secrets loaded once),
//! [`Delivery::spawn`], `outbox.enqueue` each event's record (and
//! `outbox.persist_unsaved()` now and then while `outbox.unsaved() > 0`),
//! and `delivery.shutdown().await` on exit (undelivered records stay on
//! disk for the next start).

mod config;
pub mod delivery;
pub mod outbox;
pub mod webhook;

pub use config::WebhookConfig;
pub use delivery::{Backoff, Delivery, DeliveryError, DeliveryMetrics, outcome};
pub use outbox::{Outbox, OutboxEntry, OutboxError, OutboxLimits, Priority};
pub use webhook::{RenderError, Rendered, Secret, SecretError, Webhook, WebhookRequest, render};
