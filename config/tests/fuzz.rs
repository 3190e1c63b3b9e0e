//! Fuzz targets for configuration loading, on stable Rust (proptest).
//!
//! Named `fuzz_*` so `cargo test --workspace fuzz_` runs them with the
//! other decoders' targets; `PHIMON_FUZZ_CASES` sets the cases per target
//! (default 256). See docs/reliability.md for the nightly command.
//!
//! Fed to [`Config::from_toml`] (with environment overrides) and then to
//! [`Config::problems`]: arbitrary text, TOML-shaped text, and the
//! commented production example mutated line by line (values of the
//! wrong type or out of range, unknown and misspelt keys, deleted,
//! duplicated and moved lines, character noise).
//!
//! What must hold: no panic; a load error is one of the typed variants
//! and names where (a line for syntax, a key path for a key, the
//! variable for an override); every problem names a key path under a
//! known section and says something; a configuration that passes the
//! detector checks builds a detector that works.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

use phimon_config::{Config, ConfigError, Scope};
use phimon_detector::{PeerDetector, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::path::Path;
use std::sync::OnceLock;

/// Cases per target: `PHIMON_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("PHIMON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const SECTIONS: &[&str] = &[
    "node", "cluster", "tls", "gossip", "detector", "http", "alert",
];

/// The production example with its file paths pointed at files that
/// exist (so the file checks pass unless a mutation breaks them), and
/// nothing else changed. Built once; the directory lives for the run.
fn base() -> &'static str {
    static BASE: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    &BASE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/production.toml");
            let mut text = std::fs::read_to_string(path).unwrap();
            for name in ["ca.pem", "node-a.pem", "node-a.key", "hook.secret"] {
                let file = dir.path().join(name);
                std::fs::write(&file, "x").unwrap();
                for prefix in ["/etc/phimon/tls/", "/etc/phimon/"] {
                    text = text.replace(
                        &format!("\"{prefix}{name}\""),
                        &format!("{:?}", file.display().to_string()),
                    );
                }
            }
            text = text.replace(
                "\"/var/lib/phimon\"",
                &format!("{:?}", dir.path().join("data").display().to_string()),
            );
            (dir, text)
        })
        .1
}

/// Values of every TOML type, out of range, and of the wrong shape.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"\"".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e309".to_owned()),
        Just("nan".to_owned()),
        Just("-inf".to_owned()),
        Just("0.0".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("[1, \"a\"]".to_owned()),
        Just("{}".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("\"0s\"".to_owned()),
        Just("\"-1s\"".to_owned()),
        Just("\"1000000000000h\"".to_owned()),
        Just("\"banana\"".to_owned()),
        Just("\"http://127.0.0.1:1/\"".to_owned()),
        Just("\"https://\"".to_owned()),
        Just("\"0.0.0.0:0\"".to_owned()),
        Just("\"[::1]:99999\"".to_owned()),
        Just("\"/nonexistent/file.pem\"".to_owned()),
        Just("\"/\"".to_owned()),
        Just("\"a,b\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        "\"[ -~]{0,30}\"".prop_map(|s| s.replace('\\', "")),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replace the value of the n-th `key = value` line.
    Value(prop::sample::Index, String),
    /// Misspell or invent a key on the n-th `key = value` line.
    Key(prop::sample::Index, String),
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Move(prop::sample::Index, prop::sample::Index),
    /// Insert a line (a header, an unknown key, junk).
    Insert(prop::sample::Index, String),
    /// Replace one character.
    Char(prop::sample::Index, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    use prop::sample::Index;
    prop_oneof![
        4 => (any::<Index>(), hostile_value()).prop_map(|(i, v)| Edit::Value(i, v)),
        1 => (any::<Index>(), "[a-z_]{1,12}").prop_map(|(i, k)| Edit::Key(i, k)),
        1 => any::<Index>().prop_map(Edit::Delete),
        1 => any::<Index>().prop_map(Edit::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Move(a, b)),
        1 => (
            any::<Index>(),
            prop_oneof![
                prop::sample::select(SECTIONS.to_vec()).prop_map(|s| format!("[{s}]")),
                Just("[[alert.webhook]]".to_owned()),
                Just("[node.extra]".to_owned()),
                Just("[[node]]".to_owned()),
                "[a-z]{1,8} = [0-9]{1,3}".prop_map(String::from),
                ".{0,40}".prop_map(String::from),
            ]
        )
            .prop_map(|(i, l)| Edit::Insert(i, l)),
        1 => (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::Char(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let assignments = |lines: &Vec<String>| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains(" = "))
            .map(|(i, _)| i)
            .collect()
    };
    for e in edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match e {
            Edit::Value(i, v) => {
                let a = assignments(&lines);
                if !a.is_empty() {
                    let l = &mut lines[a[i.index(a.len())]];
                    if let Some((k, _)) = l.split_once(" = ") {
                        *l = format!("{k} = {v}");
                    }
                }
            }
            Edit::Key(i, k) => {
                let a = assignments(&lines);
                if !a.is_empty() {
                    let l = &mut lines[a[i.index(a.len())]];
                    if let Some((_, v)) = l.split_once(" = ") {
                        *l = format!("{k} = {v}");
                    }
                }
            }
            Edit::Delete(i) => {
                lines.remove(i.index(n));
            }
            Edit::Duplicate(i) => {
                let l = lines[i.index(n)].clone();
                lines.insert(i.index(n), l);
            }
            Edit::Move(a, b) => {
                let l = lines.remove(a.index(n));
                let to = b.index(lines.len() + 1);
                lines.insert(to, l);
            }
            Edit::Insert(i, l) => lines.insert(i.index(n + 1), l.clone()),
            Edit::Char(i, c) => {
                let mut chars: Vec<char> = lines.join("\n").chars().collect();
                if !chars.is_empty() {
                    let at = i.index(chars.len());
                    chars[at] = *c;
                }
                lines = chars
                    .into_iter()
                    .collect::<String>()
                    .lines()
                    .map(str::to_owned)
                    .collect();
            }
        }
    }
    lines.join("\n")
}

/// Environment overrides: real keys, typos, junk values.
fn env() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(vec![
                    "PHIMON_NODE_ID",
                    "PHIMON_NODE_LISTEN",
                    "PHIMON_GOSSIP_INTERVAL",
                    "PHIMON_GOSSIP_FANOUT",
                    "PHIMON_DETECTOR_THRESHOLD",
                    "PHIMON_DETECTOR_WINDOW",
                    "PHIMON_CLUSTER_SEEDS",
                    "PHIMON_ALERT_WEBHOOK",
                    "PHIMON_ALERT_FOR",
                    "PHIMON_HTTP_",
                    "PHIMON_TLS",
                    "PHIMON_LOG",
                ])
                .prop_map(str::to_owned),
                "PHIMON_[A-Z_]{0,20}".prop_map(String::from),
            ],
            prop_oneof![hostile_value(), ".{0,20}".prop_map(String::from)],
        ),
        0..4,
    )
}

fn check(text: &str, env: Vec<(String, String)>) -> Result<(), TestCaseError> {
    let vars: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    match Config::from_toml(text, "fuzz.toml", env) {
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(!shown.is_empty());
            match &e {
                ConfigError::Syntax { origin, message } => {
                    prop_assert_eq!(origin.as_str(), "fuzz.toml");
                    prop_assert!(!message.is_empty(), "syntax error without a message");
                }
                ConfigError::Key { key, message, .. } => {
                    prop_assert!(!key.is_empty(), "key error without a key: {}", shown);
                    prop_assert!(!message.is_empty(), "key error without a message");
                    prop_assert!(shown.contains(key.as_str()));
                }
                ConfigError::Env { var, message } => {
                    prop_assert!(vars.contains(var), "{var} was not given");
                    prop_assert!(!message.is_empty());
                }
                other => prop_assert!(false, "unexpected load error {:?}", other),
            }
        }
        Ok(c) => {
            for scope in [Scope::Detector, Scope::Full] {
                for p in c.problems(scope) {
                    let section = p.path.split(['.', '[']).next().unwrap_or_default();
                    prop_assert!(
                        SECTIONS.contains(&section),
                        "problem path {:?} is not under a section",
                        p.path
                    );
                    prop_assert!(!p.message.is_empty(), "{} says nothing", p.path);
                }
            }
            if let Err(e) = c.validate(Scope::Full, "fuzz.toml") {
                prop_assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
            }
            if c.problems(Scope::Detector).is_empty() {
                // What `phimon run` and `phimon eval` build from it.
                let d = c.detector.detector_config(c.gossip.interval);
                let mut det = PeerDetector::new(&d);
                for t in 0..5u64 {
                    det.record(Timestamp::from_micros(t * 1_000_000));
                }
                let phi = det.phi(Timestamp::from_micros(60_000_000));
                prop_assert!(!phi.is_nan(), "phi is NaN for {:?}", c.detector);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_config_arbitrary_text(text in ".{0,600}", env in env()) {
        check(&text, env)?;
    }

    #[test]
    fn fuzz_config_toml_shaped_text(
        lines in prop::collection::vec(
            prop_oneof![
                prop::sample::select(SECTIONS.to_vec()).prop_map(|s| format!("[{s}]")),
                Just("[[alert.webhook]]".to_owned()),
                ("[a-z_]{1,20}", hostile_value()).prop_map(|(k, v)| format!("{k} = {v}")),
                (
                    prop::sample::select(vec![
                        "id", "listen", "advertise", "data_dir", "name", "seeds", "ca",
                        "cert", "key", "interval", "fanout", "dead_grace", "threshold",
                        "window", "min_std_dev", "acceptable_pause", "distribution",
                        "export_all_peers", "for", "resolve_threshold", "url", "format",
                        "secret_file", "secret_env", "allow_insecure_http", "timeout",
                    ]),
                    hostile_value(),
                )
                    .prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..30,
        ),
        env in env(),
    ) {
        check(&lines.join("\n"), env)?;
    }

    #[test]
    fn fuzz_config_mutated_production_example(
        edits in prop::collection::vec(edit(), 1..6),
        env in env(),
    ) {
        check(&apply(base(), &edits), env)?;
    }
}

/// The unmutated base is valid: the mutations start from a good file.
#[test]
fn fuzz_config_base_is_valid() {
    let c = Config::from_toml(base(), "base", std::iter::empty()).unwrap();
    assert_eq!(c.problems(Scope::Full), Vec::new());
}
