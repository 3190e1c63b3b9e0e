//! `phimon certs` as a user runs it: the files it writes load as node TLS
//! material, a second run reuses the CA, bad arguments exit 2.

use crate::common::{phimon, succeed};
use phimon_transport::tls::{IdentityPolicy, NodeTls, TlsFiles};
use std::path::Path;
use std::process::Command;

/// `phimon certs --out <out> <args>`, to run.
fn certs(out: &str, args: &[&str]) -> Command {
    let mut cmd = phimon();
    cmd.args(["certs", "--out", out]).args(args);
    cmd
}

fn files(dir: &Path, id: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{id}.pem")),
        key: dir.join(format!("{id}.key")),
        crl: None,
    }
}

#[test]
fn certs_load_and_a_second_run_reuses_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    let out_s = out.to_str().unwrap();
    let stdout = succeed(&mut certs(
        out_s,
        &["--cluster", "prod", "--node", "node-a", "--node", "node-b"],
    ));
    assert!(stdout.contains("created CA"), "{stdout}");
    let policy = IdentityPolicy::new("prod");
    for id in ["node-a", "node-b"] {
        let tls = NodeTls::load(&files(&out, id), &policy, Some(id)).unwrap();
        assert_eq!(tls.identity().node_id, id);
        assert_eq!(tls.identity().cluster.as_deref(), Some("prod"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["ca.key", "node-a.key", "node-b.key"] {
            let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    let ca_before = std::fs::read(out.join("ca.pem")).unwrap();
    let stdout = succeed(&mut certs(
        out_s,
        &["--cluster", "prod", "--node", "node-c", "--days", "7"],
    ));
    assert!(stdout.contains("reused CA"), "{stdout}");
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca_before);
    // Old and new node certificates chain to the same CA.
    NodeTls::load(&files(&out, "node-a"), &policy, Some("node-a")).unwrap();
    NodeTls::load(&files(&out, "node-c"), &policy, Some("node-c")).unwrap();
    // And belong to their cluster only.
    assert!(
        NodeTls::load(
            &files(&out, "node-c"),
            &IdentityPolicy::new("staging"),
            None
        )
        .is_err()
    );
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["--node", "ca"], "reserved"),
        (vec!["--node", "10.0.0.1"], "IP address"),
        (vec!["--node", "a/b"], "invalid node id"),
        (vec!["--node", "a", "--days", "0"], "days"),
        (vec!["--node", "a", "--cluster", "a/b"], "cluster"),
        (vec![], "--node"),
    ] {
        let run = certs(out, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // Half a CA is refused rather than silently replaced.
    std::fs::write(tmp.path().join("ca.pem"), "x").unwrap();
    let run = certs(out, &["--node", "a"]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("ca.key"));
}

#[test]
fn csr_writes_a_private_key_and_a_request_for_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tls");
    let stdout = succeed(phimon().args([
        "certs",
        "csr",
        "--out",
        out.to_str().unwrap(),
        "--cluster",
        "prod",
        "--node",
        "node-a",
    ]));
    assert!(stdout.contains("node-a.csr"), "{stdout}");
    let csr = std::fs::read_to_string(out.join("node-a.csr")).unwrap();
    let req = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
    assert_eq!(
        req.params.subject_alt_names,
        vec![
            rcgen::SanType::DnsName("node-a".try_into().unwrap()),
            rcgen::SanType::URI("phimon://prod/node-a".try_into().unwrap()),
        ]
    );
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(out.join("node-a.key")).unwrap())
        .unwrap();
    assert_eq!(
        rcgen::PublicKeyData::der_bytes(&req.public_key),
        rcgen::PublicKeyData::der_bytes(&key)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("node-a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Without a subcommand, `phimon certs` still wants --out and --node.
    let run = phimon().args(["certs"]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn csr_refuses_bad_names_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--node", "a/b", "--cluster", "prod"],
            "invalid node id",
        ),
        (
            vec!["--node", "10.0.0.1", "--cluster", "prod"],
            "IP address",
        ),
        (vec!["--node", "a", "--cluster", "a b"], "cluster"),
        (vec!["--cluster", "prod"], "--node"),
    ] {
        let run = phimon()
            .args(["certs", "csr", "--out", out])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
