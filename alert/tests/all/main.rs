//! phimon-alert's integration tests, one binary: fuzzing of the gossiped
//! suspicion reports. (The engine's scenarios and properties are unit
//! tests in `src/engine/tests.rs`: they use its private state.)

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod fuzz_suspicions;
