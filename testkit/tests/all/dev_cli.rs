//! `phimon-dev` as a developer runs it.

use std::process::{Command, Output, Stdio};

fn dev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phimon-dev"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn every_command_has_help() {
    for cmd in ["soak", "corpus"] {
        let out = dev(&[cmd, "--help"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(text.contains("Usage: phimon-dev"), "{cmd}: {text}");
    }
}

#[test]
fn the_check_sets_generate_and_mark_their_partitions() {
    for (set, n, outages) in [("held-out", 11, 2), ("variants", 12, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_phimon-dev"))
            .args(["corpus", "--set", set, "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let texts: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(texts.len(), n, "{set}");
        let marked = texts.iter().filter(|t| t.contains("# outage_ms=")).count();
        assert_eq!(marked, outages, "{set}");
    }
}

#[test]
fn soak_without_a_phimon_binary_is_a_usage_error() {
    let out = dev(&[
        "soak",
        "--phimon",
        "/nonexistent/phimon",
        "--duration",
        "5s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no phimon binary at /nonexistent/phimon"),
        "{err}"
    );
    let out = dev(&["soak", "--nodes", "1"]);
    assert_eq!(out.status.code(), Some(2));
}
