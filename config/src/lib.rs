//! Typed configuration of a phimon sidecar.
//!
//! [`Config`] is plain serde data mirroring the TOML file of DESIGN.md,
//! with every default in one place (`impl Default` of each section) and
//! unknown keys rejected. Loading is two steps:
//!
//! 1. [`Config::load`] / [`Config::from_toml`] parse TOML, apply
//!    `PHIMON_<SECTION>_<KEY>` environment overrides and deserialize,
//!    failing on the first syntax, type or unknown-key error with its key
//!    path (`detector.threshold`).
//! 2. [`Config::validate`] checks values and referenced files and returns
//!    every [`Problem`] at once, each with its key path and a fix.
//!
//! No error message carries a credential: webhook URLs are shown as
//! scheme and host only ([`redact_url`], [`redact_text`]).
//!
//! The crate reads files and the environment it is given; it starts no
//! threads and keeps no global state. It is plain data: it depends only
//! on phimon-detector (the detector's settings) and phimon-alert (the
//! webhook format), never on HTTP, metrics or async crates. Mapping a
//! [`Config`] onto each crate's own settings (`AlertConfig`,
//! `WebhookConfig`, `ExportConfig`, the gossip and transport settings) is
//! the binary's wiring.

mod load;
mod redact;
mod schema;
mod validate;

pub use load::{ConfigError, ENV_PREFIX};
pub use redact::{redact_text, redact_url};
pub use schema::*;
pub use validate::{Problem, Scope};
