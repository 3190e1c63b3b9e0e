//! phimon-eval's integration tests, one binary: trace-parser fuzzing,
//! baseline and QoS properties, detection-quality guards and the committed
//! corpus.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod corpus;
mod fuzz_trace;
mod properties;
mod quality;
