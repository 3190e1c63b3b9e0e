//! The CI-sized soak: `phimon soak` on a small cluster for a short while
//! must end with flat memory and no false page. The long run (30 nodes,
//! 10+ minutes) is documented in docs/reliability.md.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

mod common;

use common::{phimon, succeed};

#[test]
fn short_soak_is_flat_and_quiet() {
    let stdout = succeed(phimon().args([
        "soak",
        "--nodes",
        "8",
        "--duration",
        "24s",
        "--samples",
        "3",
        "--interval",
        "500ms",
    ]));
    assert!(stdout.contains("result: ok"), "{stdout}");
    assert!(stdout.contains("false suspected pages 0"), "{stdout}");
    // Heartbeats flowed through the proxy.
    let hb: f64 = stdout
        .lines()
        .find(|l| l.starts_with("heartbeats processed"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hb > 100.0, "{stdout}");
}
