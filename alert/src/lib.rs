//! phimon's alert engine: from per-peer phi to pages, one per incident
//! fleet-wide, and the data the pages are made of.
//!
//! - [`AlertEngine`] (sans-IO): fed a [`ClusterView`] and the caller's
//!   `now` by `handle_tick`, it emits [`AlertEvent`]s through
//!   `poll_event`: hysteresis and `for`, restarts, designated observers
//!   by [`rendezvous`] hashing, quorum from gossiped [`suspicion`]
//!   reports, isolation and mass-failure grouping. Stable incident and
//!   event ids ([`node_incident_id`], [`event_id`]).
//! - [`AlertRecord`]: an event with wall-clock times, self-contained:
//!   what the pager's outbox persists and renders payloads from.
//! - [`AlertConfig`] and [`WebhookFormat`]: plain data the config crate
//!   deserializes into.
//!
//! Not here: clocks (the caller passes `now` and, for records, the
//! wall-clock time), IO of any kind, payload rendering, signing, the
//! outbox and delivery (phimon-pager), metrics and HTTP
//! (phimon-exporter), and how the view is built from membership (the
//! runtime). The crate depends on nothing heavier than serde and sha2,
//! so the config crate can use its types.

mod config;
mod engine;
mod record;
pub mod rendezvous;
pub mod suspicion;

pub use config::{AlertConfig, DEFAULT_OBSERVERS, WebhookFormat};
pub use engine::{
    AlertEngine, AlertEvent, ClusterView, EventKind, MemberStatus, MemberView, Scope, event_id,
    node_incident_id,
};
pub use record::AlertRecord;
pub use suspicion::{
    MAX_SUSPICIONS_VALUE_BYTES, SUSPICIONS_KEY, SuspicionDecodeError, SuspicionReport,
    decode_suspicions, encode_suspicions,
};
