//! `phimon demo` end to end, without a terminal (as in CI): it must tell
//! the whole story (detection, a verified page, restart, recovery) within
//! a short time budget and say so in its summary.

use crate::common::{phimon, succeed};

#[test]
fn demo_runs_unattended_and_summarises() {
    let start = std::time::Instant::now();
    let stdout = succeed(phimon().args([
        "demo",
        "--nodes",
        "3",
        "--duration",
        "90s",
        "--interval",
        "500ms",
    ]));
    for line in [
        "summary",
        "detection",
        "page ",
        "restart ",
        "closing page",
        "signatures all verified",
        "result: ok",
    ] {
        assert!(stdout.contains(line), "summary lacks {line:?}:\n{stdout}");
    }
    // Exactly one suspected incident, and the victim came back with a newer generation.
    assert!(stdout.contains("(suspected 1,"), "{stdout}");
    let gens = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("restart "))
        .unwrap();
    let nums: Vec<u64> = gens
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    assert!(nums.len() >= 2 && nums[1] > nums[0], "{gens}");
    // Nothing is left running or on disk: every temp dir is gone.
    assert!(start.elapsed() < std::time::Duration::from_secs(90));
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("phimon-demo-"))
        .filter(|e| stdout.contains(&*e.path().to_string_lossy()))
        .collect();
    assert!(leftovers.is_empty(), "temp dir left behind: {leftovers:?}");
}
