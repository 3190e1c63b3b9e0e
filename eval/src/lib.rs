//! Offline evaluation of phi-accrual failure detectors: what `phimon eval`
//! runs on recorded or generated heartbeat traces.
//!
//! - [`trace`]: the arrival-trace format ([`Trace`](trace::Trace)), parsed
//!   and rendered; `phimon run --record-arrivals` writes it.
//! - [`qos`]: the Chen–Toueg–Aguilera quality-of-service figures of one
//!   detector on one trace at given thresholds ([`Qos`](qos::Qos)).
//! - [`baseline`]: reference models of Akka's, Cassandra's and chitchat's
//!   detectors, used only for comparison.
//! - [`compare`]: phimon's models against the baselines over a corpus, at
//!   equal mistake budgets (`phimon eval --compare`).
//! - `corpus` (cargo feature `corpus`, which brings in `rand`): the seeded
//!   generator of the trace corpus in the repository's `traces/`.
//!
//! The phi math itself is phimon-detector's; this crate only replays
//! traces through anything that implements
//! [`AccrualDetector`](phimon_detector::AccrualDetector). It reads no
//! files and no clock: callers parse text they read themselves, and time
//! is the trace's.

pub mod baseline;
pub mod compare;
#[cfg(feature = "corpus")]
pub mod corpus;
pub mod qos;
pub mod trace;
