//! Everything that leaves a phimon node toward operators.
//!
//! - [`AlertEngine`]: the sans-IO alert state machine. Fed a
//!   [`ClusterView`] every tick, it emits [`AlertEvent`]s: one page per
//!   incident fleet-wide (designated observers by [`rendezvous`] hashing,
//!   quorum from gossiped [`suspicion`] reports, isolation and
//!   mass-failure grouping, hysteresis and `for`).
//!
//! The crate reads no clock in its cores and takes every setting as plain
//! data ([`AlertConfig`], [`WebhookConfig`], [`ExportConfig`]); the config
//! crate maps TOML onto them and the `phimon run` runtime wires the
//! pieces together.

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
