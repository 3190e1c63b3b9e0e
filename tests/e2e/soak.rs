//! The CI-sized soak: a small cluster behind the chaos proxy for a short
//! while must end with flat memory and no false page. The long run (30
//! nodes, 10+ minutes, `phimon-dev soak`) is documented in
//! docs/performance.md.

use crate::common::bin;
use phimon_testkit::soak::{self, SoakSpec};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_is_flat_and_quiet() {
    let spec = SoakSpec {
        nodes: 8,
        duration: Duration::from_secs(24),
        samples: 3,
        interval: Duration::from_millis(500),
        ..SoakSpec::default()
    };
    let mut out = Vec::new();
    let result = soak::run(bin(), &spec, &mut out).await;
    let stdout = String::from_utf8_lossy(&out);
    assert!(result.is_ok(), "{result:?}\n{stdout}");
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
