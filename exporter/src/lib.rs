//! What a phimon node shows operators over HTTP: Prometheus metrics and
//! the JSON API.
//!
//! - [`Metrics`]: every Prometheus metric of the node, registered once.
//!   Counters and histograms are written as things happen (by the
//!   runtime, and by the pager's delivery workers through
//!   [`DeliveryMetrics`](phimon_pager::DeliveryMetrics)); per-peer series,
//!   peer aggregates and the outbox gauges are computed at scrape time.
//!   Per-peer series are bounded to the peers this node is a designated
//!   observer of.
//! - [`NodeSnapshot`] / [`SharedSnapshot`]: the state the runtime
//!   publishes once per tick ([`snapshot::publish`]) and every scrape and
//!   request reads: one [`PeerInfo`] per peer.
//! - [`api`]: the types of the JSON API, [`PeerInfo`] (`/v1/peers`),
//!   declared once for the handler and its clients.
//! - [`router`]: `/metrics`, `/healthz`, `/readyz`, `/v1/peers`,
//!   `/v1/node`, `/v1/peers/{id}`, `/v1/whatif` and `POST /v1/reload` over an [`HttpState`],
//!   testable without a socket; [`control`]: the requests handlers hand
//!   to the runtime (evidence, what-if, reload); [`serve`] runs it on a
//!   listener with [`HttpLimits`] (header and request timeouts,
//!   connection limits, body limit) against slow or greedy clients.
//! - [`IntervalHistogram`]: per-peer interval quantiles for `/v1/peers`.
//! - [`ExportConfig`]: plain data the config crate maps `[http]` onto.
//!
//! Not here: the phi math (phimon-detector), membership and what the
//! peers' phi and status are (the runtime reads them from the gossip core
//! and publishes them), alert decisions (phimon-alert), delivery
//! (phimon-pager), clocks, and binding: the runtime binds the listener
//! and hands it to [`serve`].

pub mod api;
mod config;
pub mod control;
mod histogram;
mod http;
pub mod metrics;
pub mod serve;
pub mod snapshot;

pub use api::{
    ApiError, NodeInfo, PeerDetail, PeerInfo, PeerWhatIf, ReloadReport, WhatIfOutcome, WhatIfReport,
};
pub use config::ExportConfig;
pub use control::{Control, Request};
pub use histogram::{IntervalHistogram, IntervalQuantiles};
pub use http::{HttpState, router};
pub use metrics::{Metrics, MetricsError};
pub use serve::{HttpLimits, serve};
pub use snapshot::{NodeSnapshot, SharedSnapshot};
