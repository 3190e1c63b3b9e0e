//! Prometheus' own binaries in tests: finding one on PATH, and linting an
//! exposition with `promtool check metrics`. Test helpers: they fail the
//! calling test (panic) when something is wrong.

#![allow(clippy::unwrap_used)] // A panic is the calling test's failure.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The path of `name` on PATH, or `None` after saying the test is
/// skipped. Under CI (`CI` set) a missing tool fails the test instead:
/// `.ci/run` installs Debian's `package` for it.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; .ci/run must install {package}"
        );
        eprintln!("skipping: {name} not installed (apt-get install {package})");
    }
    found
}

/// Fails the test unless `promtool check metrics` accepts `exposition`
/// (Prometheus text format) with exit 0 and not a word of complaint.
/// Returns `false` when promtool is not installed (see [`tool`]), `true`
/// when it checked.
pub fn assert_promtool_clean(exposition: &str) -> bool {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return false;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n{exposition}"
    );
    assert!(
        report.trim().is_empty(),
        "promtool check metrics complains:\n{report}"
    );
    true
}
