//! phimon-pager's integration tests, one binary: delivery against a real
//! HTTP receiver on loopback.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod delivery;
