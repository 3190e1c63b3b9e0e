//! Support library of the `phimon` binary: running a local cluster of real
//! `phimon` processes on loopback and receiving its pages. Used by
//! `phimon demo` and by the end-to-end tests in `tests/`; the sidecar
//! itself lives in the workspace crates and `src/main.rs`.

pub mod chaos;
pub mod local_cluster;
pub mod sink;
