//! Fuzz targets for what the exporter reads from outside, on stable Rust
//! (proptest): HTTP requests to [`router`]. (Gossiped suspicion reports
//! are fuzzed in phimon-alert.)
//!
//! Named `fuzz_*` so `cargo test --workspace fuzz_` runs them with the
//! other decoders' targets; `PHIMON_FUZZ_CASES` sets the cases per target
//! (default 256). See docs/reliability.md for the nightly command.
//!
//! HTTP: arbitrary methods, paths (percent-encoded, dot segments, very
//! long, unicode), query strings, headers and bodies, against a snapshot
//! holding peers with hostile ids (a member can invent ids: quotes,
//! newlines, backslashes, braces, 255 bytes) and extreme numbers. What
//! must hold: no panic; the status is one of the documented outcomes for
//! the method and path; bodies are bounded; `/v1/peers` is a JSON array
//! that gives every id back intact; every sample line of `/metrics`
//! stays one well-formed line whatever the ids contain.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use phimon_exporter::snapshot::publish;
use phimon_exporter::{
    ExportConfig, HttpState, Metrics, NodeSnapshot, PeerInfo, SharedSnapshot, router,
};
use phimon_gossip::Status;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use tower::ServiceExt;

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

/// Largest body any endpoint may answer with for the snapshots below.
const BODY_LIMIT: usize = 4 << 20;

const ROUTES: &[&str] = &["/metrics", "/healthz", "/readyz", "/v1/peers"];

fn hostile_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "node-[0-9]{1,3}".prop_map(String::from),
        Just("a\"b".to_owned()),
        Just("line\nbreak".to_owned()),
        Just("back\\slash".to_owned()),
        Just("} 1\nphimon_fake_total 99".to_owned()),
        Just("é😀\u{0}\u{202e}".to_owned()),
        Just("x".repeat(255)),
        ".{1,40}".prop_map(String::from),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0f64..1e4,
        1 => Just(f64::INFINITY),
        1 => Just(f64::MAX),
        1 => Just(-0.0),
        1 => Just(1e-300),
    ]
}

fn peer() -> impl Strategy<Value = PeerInfo> {
    (
        hostile_id(),
        ".{0,40}",
        any::<u64>(),
        0u8..5,
        number(),
        any::<bool>(),
        prop::array::uniform6(number()),
    )
        .prop_map(
            |(node_id, address, generation, s, phi, suspected, n)| PeerInfo {
                node_id,
                address,
                generation,
                status: Status::ALL[usize::from(s)],
                phi,
                suspected,
                last_heartbeat_age_ms: n[0],
                interval_mean_ms: n[1],
                interval_stddev_ms: n[2],
                interval_p50_ms: n[3],
                interval_p99_ms: n[4],
                interval_max_ms: n[5],
                window_fill: n[0].min(1.0),
                observed: s % 2 == 0,
                ..PeerInfo::default()
            },
        )
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => Just(Method::GET),
        1 => Just(Method::HEAD),
        1 => Just(Method::POST),
        1 => Just(Method::PUT),
        1 => Just(Method::DELETE),
        1 => Just(Method::OPTIONS),
        1 => Just(Method::PATCH),
        1 => Just(Method::TRACE),
        1 => Just(Method::CONNECT),
        1 => "[A-Z]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(ROUTES.to_vec()).prop_map(str::to_owned),
        1 => prop::sample::select(ROUTES.to_vec()).prop_map(|r| format!("{r}/")),
        1 => prop::sample::select(ROUTES.to_vec()).prop_map(|r| r.to_uppercase()),
        1 => Just("/v1/../metrics".to_owned()),
        1 => Just("//metrics".to_owned()),
        1 => Just("/%6detrics".to_owned()),
        1 => Just("/v1/peers%00".to_owned()),
        1 => Just("*".to_owned()),
        1 => Just("http://evil.example/metrics".to_owned()),
        1 => "/[a-zA-Z0-9%./_~-]{0,60}".prop_map(String::from),
        1 => "/a{2000,9000}".prop_map(String::from),
        1 => ".{0,30}".prop_map(String::from),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("name[]=phimon_peer_phi".to_owned()),
        Just("format=json&format=text".to_owned()),
        "[a-z0-9=&%+]{0,80}".prop_map(String::from),
        "q=[a-z]{4000,6000}".prop_map(String::from),
    ])
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(vec![
                    "accept",
                    "accept-encoding",
                    "content-type",
                    "content-length",
                    "transfer-encoding",
                    "host",
                    "connection",
                    "range",
                    "if-none-match",
                    "x-forwarded-for",
                ])
                .prop_map(str::to_owned),
                "[a-z-]{1,20}".prop_map(String::from),
            ],
            prop_oneof![
                Just(b"application/openmetrics-text; version=1.0.0".to_vec()),
                Just(b"gzip, br, zstd".to_vec()),
                Just(b"chunked".to_vec()),
                Just(b"18446744073709551616".to_vec()),
                Just(b"bytes=0-1,5-".to_vec()),
                prop::collection::vec(any::<u8>(), 0..64),
                prop::collection::vec(any::<u8>(), 8000..9000),
            ],
        ),
        0..8,
    )
}

fn state(peers: Vec<PeerInfo>, joined: bool, export_all: bool) -> HttpState {
    let snapshot: SharedSnapshot = Arc::new(RwLock::new(NodeSnapshot::default()));
    publish(
        &snapshot,
        NodeSnapshot {
            node_id: "node-0".into(),
            joined,
            peers,
        },
    );
    let export = ExportConfig {
        export_all_peers: export_all,
    };
    let metrics = Arc::new(Metrics::new("0.1.0", export, snapshot.clone()).unwrap());
    HttpState {
        snapshot,
        metrics,
        refresh: None,
        control: None,
        reload_over_http: false,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every non-comment line of a Prometheus text exposition is
/// `name[{labels}] value`: a label value never breaks the line.
fn check_exposition(text: &str, ids: &BTreeSet<String>) -> Result<(), TestCaseError> {
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        prop_assert!(line.starts_with("phimon_"), "stray line {line:?}");
        let (head, value) = line.rsplit_once(' ').unwrap();
        prop_assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        let name_end = head.find('{').unwrap_or(head.len());
        let name = &head[..name_end];
        prop_assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad name in {line:?}"
        );
        if name_end < head.len() {
            prop_assert!(head.ends_with('}'), "unterminated labels in {line:?}");
        }
    }
    // An invented metric smuggled in through an id never appears.
    if ids.iter().any(|i| i.contains("phimon_fake_total")) {
        prop_assert!(!text.lines().any(|l| l.starts_with("phimon_fake_total")));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_http_requests(
        method in method(),
        path in path(),
        query in query(),
        headers in headers(),
        body in prop_oneof![
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(any::<u8>(), 60_000..70_000),
        ],
        peers in prop::collection::vec(peer(), 0..12),
        joined in any::<bool>(),
        export_all in any::<bool>(),
    ) {
        let uri = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_slice());
        }
        // A request the HTTP layer could not even represent never reaches
        // the router: nothing to test.
        let Ok(req) = req.body(Body::from(body)) else {
            return Ok(());
        };
        let routed = req.uri().path().to_owned();
        let ids: BTreeSet<String> = peers.iter().map(|p| p.node_id.clone()).collect();
        let s = state(peers, joined, export_all);
        let rt = runtime();
        let (status, bytes) = rt.block_on(async {
            let res = router(s).oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), BODY_LIMIT).await;
            (status, bytes)
        });
        let bytes = bytes.expect("body over the bound");
        let route = ROUTES.iter().find(|r| **r == routed);
        match route {
            Some(r) if method == Method::GET || method == Method::HEAD => {
                let want = if *r == "/readyz" && !joined {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                prop_assert_eq!(status, want, "{} {}", method, uri);
                if method == Method::GET && *r == "/v1/peers" {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    let got: BTreeSet<String> = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["node_id"].as_str().unwrap().to_owned())
                        .collect();
                    prop_assert_eq!(&got, &ids);
                }
                if method == Method::GET && *r == "/metrics" {
                    check_exposition(std::str::from_utf8(&bytes).unwrap(), &ids)?;
                }
            }
            Some(_) => prop_assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{} {}", method, uri),
            None => prop_assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
                "{} {} -> {}",
                method,
                uri,
                status
            ),
        }
    }
}
