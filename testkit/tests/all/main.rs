//! phimon-testkit's integration tests, one binary: the `phimon-dev`
//! command line. (The kit's cluster, proxy and sink are exercised by the
//! root package's end-to-end tests, which have the `phimon` binary.)

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod dev_cli;
