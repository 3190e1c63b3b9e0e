//! phimon's alert engine: from fleet statuses to pages, one per incident
//! fleet-wide, and the data the pages are made of.
//!
//! - [`AlertEngine`] (sans-IO): told when a node's fleet status changes
//!   (the protocol core decides suspicion, in one place: a majority of a
//!   node's observers), who pages about it, restarts, isolation and this
//!   node's own stalls, it emits [`AlertEvent`]s: one page per incident,
//!   from the first agreeing observer, `recovered` owed by the pager,
//!   rate-limited `restarted` pages, partition pages that share the
//!   fleet's incident id, mass-failure grouping. Stable incident and event
//!   ids ([`node_incident_id`], [`event_id`]).
//! - [`Evidence`]: why a node was suspected (intervals, phi over the last
//!   minute, the model's fit, the observers' verdicts, the pager's own
//!   health), attached to `suspected` pages by the sans-IO node.
//! - [`AlertRecord`]: an event with wall-clock times, self-contained:
//!   what the pager's outbox persists and renders payloads from.
//! - [`AlertConfig`] and [`WebhookFormat`]: plain data the config crate
//!   deserializes into.
//!
//! Not here: clocks (the caller passes `now` and, for records, the
//! wall-clock time), IO of any kind, who is suspected (phimon-gossip),
//! payload rendering, signing, the outbox and delivery (phimon-pager),
//! metrics and HTTP (phimon-exporter). The crate depends on nothing
//! heavier than serde, sha2 and the protocol core's types, so the config
//! crate can use its types.

mod config;
mod engine;
mod evidence;
mod record;

pub use config::{AlertConfig, WebhookFormat};
pub use engine::{
    AlertEngine, AlertEvent, EventKind, Scope, SubjectUpdate, event_id, node_incident_id,
};
pub use evidence::{
    EVIDENCE_VERSION, Evidence, LocalHealth, MAX_INTERVALS, MAX_PHI_SAMPLES, ObserverEvidence,
    PhiSample,
};
pub use record::AlertRecord;
