//! phimon-exporter's integration tests, one binary: HTTP fuzzing, a real
//! scrape checked by `promtool`, the series counts of docs/metrics.md and
//! the dashboard's PromQL.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod dashboards;
mod fuzz_http;
mod promtool;
mod serve;
mod writers;
