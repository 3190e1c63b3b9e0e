//! phimon's test kit (not published): what the end-to-end tests, `phimon
//! demo` and the development tools need to run real `phimon` processes
//! on loopback and watch what they do.
//!
//! - [`LocalCluster`](local_cluster::LocalCluster): N `phimon run`
//!   children with generated certificates, free ports and one config
//!   each; start, kill, stop, resume, read `/v1/peers` (as
//!   [`PeerInfo`](phimon_exporter::api::PeerInfo)) and `/metrics`.
//! - [`ChaosProxy`](chaos::ChaosProxy): a UDP proxy between the nodes
//!   that drops, delays, duplicates, reorders and partitions, per link.
//! - [`WebhookSink`](sink::WebhookSink): a webhook receiver that checks
//!   every page's Standard Webhooks signature on its own (not with the
//!   pager's code).
//! - [`DevCerts`](certs::DevCerts): development certificates made by
//!   `phimon certs`.
//! - [`promtool`]: Prometheus' own tools in tests.
//! - [`soak`]: a cluster behind the proxy for a while, its footprint over
//!   time; the `phimon-dev soak` command.
//! - [`bench`]: CPU and memory per node of an idle fleet, then the time
//!   from a kill -9 to suspicion at the victim's observers and elsewhere;
//!   the `phimon-dev bench` command.
//!
//! The kit never links the sidecar: it runs the `phimon` binary whose
//! path the caller gives (tests pass `env!("CARGO_BIN_EXE_phimon")`,
//! `phimon demo` its own executable, `phimon-dev` the `phimon` beside
//! it). Nothing on `phimon run`'s code path uses this crate.

pub mod bench;
pub mod certs;
pub mod chaos;
pub mod local_cluster;
pub mod promtool;
pub mod sink;
pub mod soak;
