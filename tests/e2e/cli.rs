//! The CLI's own surface: version with build info, help texts, completions.

use std::process::Command;

fn phimon(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phimon"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn version_carries_build_info() {
    let (ok, out) = phimon(&["--version"]);
    assert!(ok);
    assert!(
        out.starts_with(&format!("phimon {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("commit ") && out.contains("build)"), "{out}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "run",
        "demo",
        "eval",
        "simulate",
        "certs",
        "check-config",
        "peers",
        "status",
        "whatif",
        "record",
        "completions",
    ] {
        let (ok, out) = phimon(&[cmd, "--help"]);
        assert!(ok, "{cmd} --help failed");
        assert!(out.contains("Usage: phimon"), "{cmd}: {out}");
    }
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (ok, out) = phimon(&["completions", shell]);
        assert!(ok && out.contains("check-config"), "{shell}: {out}");
    }
    assert!(!phimon(&["completions", "tcsh"]).0);
}
