//! The deployment files validate: systemd unit, Kubernetes manifests,
//! Containerfile (see deploy/check.sh).

#[test]
fn deploy_files_validate() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/check.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy/check.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
