//! phimon's end-to-end tests, one binary: the real `phimon` binary (built
//! once by cargo, `CARGO_BIN_EXE_phimon`) run as users and operators run
//! it, clusters of real processes on 127.0.0.1 included. One module per
//! subject; `common` holds the shared helpers.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod common;

mod certs_cli;
mod cli;
mod cluster;
mod config_examples;
mod demo;
mod deploy_files;
mod docs;
mod eval_cli;
mod faults;
mod hostile;
mod insight;
mod metrics;
mod real_components;
mod record;
mod soak;
