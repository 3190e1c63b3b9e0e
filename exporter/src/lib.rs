//! Everything that leaves a phimon node toward operators: metrics, the
//! HTTP API, the alert engine, and durable, signed webhook delivery.
//!
//! - [`AlertEngine`] (sans-IO): fed a [`ClusterView`] every tick, it
//!   emits [`AlertEvent`]s, one page per incident fleet-wide: hysteresis
//!   and `for`, restarts, designated observers by [`rendezvous`] hashing,
//!   quorum from gossiped [`suspicion`] reports, isolation and
//!   mass-failure grouping. Stable incident and event ids.
//! - [`webhook`]: payloads (`generic` signed per Standard Webhooks,
//!   `alertmanager`, `pagerduty`, `slack`) rendered from an
//!   [`AlertRecord`]; [`Secret`] never prints.
//! - [`Outbox`]: the durable, per-webhook, ordered queue in
//!   `data_dir/outbox`; [`Delivery`]: the tokio workers that drain it with
//!   backoff and jitter.
//! - [`Metrics`]: every Prometheus metric, registered once; per-peer
//!   series bounded to designated peers. [`IntervalHistogram`]: per-peer
//!   interval quantiles.
//! - [`router`]: `/metrics`, `/healthz`, `/readyz`, `/v1/peers` over a
//!   [`SharedSnapshot`] the runtime publishes.
//!
//! Not here: clocks, sockets for gossip, config parsing (the config crate
//! maps TOML onto [`AlertConfig`], [`WebhookConfig`], [`ExportConfig`]),
//! and the wiring, which `phimon run` does:
//!
//! 1. Start-up: `Outbox::open(data_dir/outbox, webhook names)`,
//!    `metrics.record_outbox_open(&report)`, `metrics.watch_outbox(outbox)`,
//!    `Webhook::from_config` for each webhook (secrets loaded once),
//!    `Delivery::spawn(outbox, webhooks, Some(metrics), Backoff::default(), seed)`,
//!    serve `router(HttpState { snapshot, metrics })`.
//! 2. Every tick: build the [`ClusterView`] (phi per peer from the
//!    detector registry, generation/heartbeat/status from gossip, other
//!    nodes' [`SUSPICIONS_KEY`] values through [`decode_suspicions`],
//!    `degraded` from the stall detector), `engine.handle_tick(now, &view)`,
//!    then for each `engine.poll_event()`:
//!    `metrics.record_event(&ev)`, `outbox.enqueue(&AlertRecord::from_event(&ev, now, SystemTime::now()), SystemTime::now())`,
//!    `metrics.record_enqueue(&report)`; put `engine.suspicion_report_value()`
//!    into the gossip key/value map; publish a [`NodeSnapshot`]
//!    (`suspected` = `engine.is_suspected(peer)`), set
//!    `metrics.alert_isolated` from `engine.is_isolated()`; wake again no
//!    later than `engine.poll_timeout()`.
//! 3. Shutdown: `delivery.shutdown().await` (undelivered records stay on
//!    disk for the next start).

mod config;
pub mod delivery;
mod engine;
mod histogram;
mod http;
pub mod metrics;
pub mod outbox;
mod record;
pub mod rendezvous;
pub mod snapshot;
pub mod suspicion;
pub mod webhook;

pub use config::{AlertConfig, DEFAULT_OBSERVERS, ExportConfig, WebhookConfig, WebhookFormat};
pub use delivery::{Backoff, Delivery, DeliveryError};
pub use engine::{
    AlertEngine, AlertEvent, ClusterView, EventKind, MemberStatus, MemberView, Scope, event_id,
    node_incident_id,
};
pub use histogram::{IntervalHistogram, IntervalQuantiles};
pub use http::{HttpState, router};
pub use metrics::{Metrics, MetricsError};
pub use outbox::{Outbox, OutboxEntry, OutboxError, OutboxLimits};
pub use record::AlertRecord;
pub use snapshot::{NodeSnapshot, PeerSnapshot, SharedSnapshot};
pub use suspicion::{
    MAX_SUSPICIONS_VALUE_BYTES, SUSPICIONS_KEY, SuspicionDecodeError, SuspicionReport,
    decode_suspicions, encode_suspicions,
};
pub use webhook::{RenderError, Rendered, Secret, SecretError, Webhook, WebhookRequest, render};
