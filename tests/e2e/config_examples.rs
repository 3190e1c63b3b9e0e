//! The shipped example configs pass `phimon check-config`, and broken
//! configs are refused with the key and the fix, exit code 2.

use std::path::Path;
use std::process::{Command, Output};

fn check(config: &Path, env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phimon"));
    c.args(["check-config", "--config"]).arg(config);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Stand-in files for the paths the examples reference.
fn files(dir: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut v = vec![];
    for (var, name) in [
        ("PHIMON_TLS_CA", "ca.pem"),
        ("PHIMON_TLS_CERT", "n.pem"),
        ("PHIMON_TLS_KEY", "n.key"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, "pem").unwrap();
        v.push((var, p));
    }
    v
}

#[test]
fn examples_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "whsec_c2VjcmV0").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    for name in ["minimal.toml", "production.toml"] {
        // The production example's secret path is rewritten into the temp dir.
        let text = std::fs::read_to_string(root.join(name))
            .unwrap()
            .replace("/etc/phimon/hook.secret", &secret.display().to_string());
        let cfg = dir.path().join(name);
        std::fs::write(&cfg, text).unwrap();
        let env: Vec<(&str, &Path)> = f.iter().map(|(k, p)| (*k, p.as_path())).collect();
        let out = check(&cfg, &env);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

#[test]
fn broken_configs_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let env: Vec<(&str, &Path)> = f.iter().map(|(k, p)| (*k, p.as_path())).collect();
    let base = "[node]\nid = \"a\"\n";
    let cases: &[(&str, &str)] = &[
        ("[detector]\nthreshold = \"high\"\n", "detector.threshold"),
        ("[detector]\nthreshold = 0\n", "detector.threshold"),
        ("[detector]\nthreshold = -3\n", "detector.threshold"),
        ("[detector]\nwindow = 0\n", "detector.window"),
        ("[detector]\nmin_std_dev = \"0s\"\n", "detector.min_std_dev"),
        (
            "[detector]\ndistribution = \"gamma\"\n",
            "detector.distribution",
        ),
        ("[detector]\nbogus = 1\n", "detector.bogus"),
        ("[nodes]\nid = \"x\"\n", "nodes"),
        ("[gossip]\ninterval = \"fast\"\n", "gossip.interval"),
        ("[gossip]\nfanout = 0\n", "gossip.fanout"),
        ("[gossip]\ninterval = \"1ms\"\n", "gossip.interval"),
        ("[cluster]\nseeds = [\"nope\"]\n", "cluster.seeds[0]"),
        ("[node]\nlisten = \"localhost\"\n", "node.listen"),
        ("[http]\nlisten = 9464\n", "http.listen"),
        (
            "[alert]\nresolve_threshold = 9.0\n",
            "alert.resolve_threshold",
        ),
        (
            "[[alert.webhook]]\nname = \"a\"\nurl = \"http://x/\"\nformat = \"slack\"\n",
            "alert.webhook[0].url",
        ),
        (
            "[[alert.webhook]]\nname = \"a\"\nurl = \"https://x/\"\nformat = \"slack\"\n[[alert.webhook]]\nname = \"a\"\nurl = \"https://y/\"\nformat = \"slack\"\n",
            "alert.webhook[1].name",
        ),
        (
            "[[alert.webhook]]\nname = \"a\"\nurl = \"https://x/\"\n",
            "alert.webhook[0].secret_file",
        ),
        (
            "[[alert.webhook]]\nname = \"a\"\nurl = \"https://x/\"\nformat = \"teams\"\n",
            "alert.webhook",
        ),
        (
            "[[alert.webhook]]\nname = \"a\"\nurl = \"https://x/\"\nsecret_file = \"/nonexistent/secret\"\n",
            "alert.webhook[0].secret_file",
        ),
        ("[node\n", "line 1"),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let toml = if toml.starts_with("[node]") || toml.starts_with("[node\n") {
            toml.to_string()
        } else {
            format!("{base}{toml}")
        };
        let cfg = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&cfg, &toml).unwrap();
        let out = check(&cfg, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i} ({toml:?}): {err}");
        assert!(err.contains(key), "case {i}: {err:?} lacks {key:?}");
    }
    // Missing certificates, and an unreadable key.
    let cfg = dir.path().join("nocerts.toml");
    std::fs::write(&cfg, format!("{base}[tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/n.pem\"\nkey = \"{}\"\n", dir.path().display())).unwrap();
    let out = check(&cfg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for key in ["tls.ca", "tls.cert", "tls.key"] {
        assert!(err.contains(key), "{err}");
    }
    assert!(err.contains("not a regular file"), "{err}");
}

/// Webhook URLs are credentials (Slack's path token, user info, query
/// tokens): neither `phimon check-config` nor `phimon run` prints them,
/// whatever the error, while the key path and the host still say where
/// the problem is.
#[test]
fn config_errors_never_print_webhook_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let env: Vec<(&str, &Path)> = f.iter().map(|(k, p)| (*k, p.as_path())).collect();
    const SECRETS: [&str; 4] = ["T0SECRET", "B0SECRET", "XXTOKENXX", "hunter2"];
    let cases = [
        // Validation: plain http, wrong scheme, schemeless.
        "[[alert.webhook]]\nname = \"a\"\nurl = \"http://bob:hunter2@hooks.slack.com/services/T0SECRET/B0SECRET/XXTOKENXX\"\nformat = \"slack\"\n",
        "[[alert.webhook]]\nname = \"a\"\nurl = \"ftp://hooks.slack.com/services/T0SECRET/B0SECRET/XXTOKENXX?k=hunter2\"\nformat = \"slack\"\n",
        "[[alert.webhook]]\nname = \"a\"\nurl = \"hooks.slack.com/services/T0SECRET/B0SECRET/XXTOKENXX\"\nformat = \"slack\"\n",
        // Syntax errors, whose message quotes the line.
        "[[alert.webhook]]\nname = \"a\"\nurl = https://hooks.slack.com/services/T0SECRET/B0SECRET/XXTOKENXX\n",
        "[[alert.webhook]]\nname = \"a\"\nurl = \"https://bob:hunter2@hooks.slack.com/services/T0SECRET/B0SECRET/XXTOKENXX\" junk\n",
        // A type error next to it.
        "[[alert.webhook]]\nname = \"a\"\nurl = [\"https://hooks.slack.com/services/T0SECRET/B0SECRET/XXTOKENXX\"]\n",
    ];
    for (i, body) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("secret{i}.toml"));
        std::fs::write(&cfg, format!("[node]\nid = \"a\"\n{body}")).unwrap();
        for command in ["check-config", "run"] {
            let mut c = Command::new(env!("CARGO_BIN_EXE_phimon"));
            c.args([command, "--config"]).arg(&cfg);
            for (k, v) in &env {
                c.env(k, v);
            }
            let out = c.output().unwrap();
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(2), "{command} case {i}: {printed}");
            for s in SECRETS {
                assert!(
                    !printed.contains(s),
                    "{command} case {i} prints {s}: {printed}"
                );
            }
            assert!(
                printed.contains("alert.webhook") || printed.contains("line 5"),
                "{command} case {i} does not say where: {printed}"
            );
        }
    }
}
