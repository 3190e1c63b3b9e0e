//! Operator insight on real clusters: live reload (SIGHUP, `POST
//! /v1/reload`), `GET /v1/peers/{id}`, `phimon peers`, and the evidence a
//! page carries.

use crate::common::{converged, paging, phimon, rewrite, sink, succeed};
use nix::sys::signal::Signal;
use phimon_exporter::api::{PeerDetail, PeerInfo, ReloadReport};
use phimon_testkit::local_cluster::{LocalCluster, free_tcp_port, metric};
use phimon_testkit::sink::{Page, WebhookSink};
use std::time::{Duration, Instant};

/// `GET /v1/peers/{peer}` of node `i`.
async fn detail(c: &LocalCluster, i: usize, peer: &str) -> PeerDetail {
    let body = c.get(i, &format!("/v1/peers/{peer}")).await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls node `i`'s view of `peer` until `cond` holds, or fails.
async fn wait_detail(
    c: &LocalCluster,
    i: usize,
    peer: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&PeerDetail) -> bool,
) -> PeerDetail {
    let start = Instant::now();
    loop {
        let d = detail(c, i, peer).await;
        if cond(&d) {
            return d;
        }
        assert!(
            start.elapsed() < timeout,
            "node-{}'s view of {peer} never became {what} within {timeout:?}: {d:?}\nlog:\n{}",
            i + 1,
            c.log_tail(i, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node `i`'s metric `name` (sum of its samples).
async fn scrape(c: &LocalCluster, i: usize, name: &str) -> f64 {
    metric(&c.get(i, "/metrics").await.unwrap(), name)
}

/// `POST /v1/reload` on node `i`: status code and report.
async fn post_reload(c: &LocalCluster, i: usize) -> (u16, ReloadReport) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/reload", c.nodes[i].http))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let report = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, report)
}

/// The first `suspected` page about `node`, waiting up to `timeout`.
async fn suspected_page(sink: &WebhookSink, node: &str, timeout: Duration) -> Page {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = sink
            .pages()
            .into_iter()
            .find(|p| p.event == "suspected" && p.node_id == node)
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{node} was never paged: {:#?}",
            sink.pages()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Threshold 8 -> 12 and window 1000 -> 500, by SIGHUP on node-1 and
/// `POST /v1/reload` on node-2 and node-3: the windows keep their samples,
/// the next page is at the new threshold; then a broken file and a
/// listener change are refused, counted, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_threshold_live_and_keeps_the_windows() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let c = converged(dir.path(), &paging(4, &sink)).await;
    // Fill node-1's window of node-4 a little.
    let before = wait_detail(
        &c,
        0,
        "node-4",
        Duration::from_secs(20),
        "10 samples",
        |d| d.window_samples >= 10,
    )
    .await;
    assert_eq!(before.threshold, 8.0);
    assert_eq!(before.window_capacity, 1000);
    assert!(before.peer.observed, "{before:?}");
    let loaded_at = scrape(&c, 0, "phimon_config_last_reload_success_timestamp_seconds").await;
    assert!(loaded_at > 1.0e9, "set at start: {loaded_at}");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for i in 0..3 {
        rewrite(
            &c.nodes[i].config,
            &[(
                "[detector]\nthreshold = 8.0",
                "[detector]\nthreshold = 12.0\nwindow = 500",
            )],
        );
    }
    c.signal(0, Signal::SIGHUP).unwrap();
    for i in 1..3 {
        let (status, report) = post_reload(&c, i).await;
        assert_eq!(status, 200, "{report:?}");
        assert!(report.ok, "{report:?}");
        assert_eq!(
            report.changed,
            [
                "detector.threshold: 8.0 -> 12.0",
                "detector.window: 1000 -> 500"
            ],
        );
    }
    let after = wait_detail(&c, 0, "node-4", Duration::from_secs(5), "reloaded", |d| {
        d.threshold == 12.0
    })
    .await;
    // The detector was rebuilt for the new window size with its samples.
    assert_eq!(after.window_capacity, 500, "{after:?}");
    assert!(
        after.window_samples >= before.window_samples,
        "window reset by the reload: {} samples before, {} after",
        before.window_samples,
        after.window_samples
    );
    assert_eq!(
        scrape(&c, 0, "phimon_config_reload_failures_total").await,
        0.0
    );
    let reloaded_at = scrape(&c, 0, "phimon_config_last_reload_success_timestamp_seconds").await;
    assert!(reloaded_at > loaded_at, "{reloaded_at} <= {loaded_at}");
    assert!(
        c.log_tail(0, 50)
            .contains("SIGHUP: configuration reloaded: detector.threshold: 8.0 -> 12.0"),
        "{}",
        c.log_tail(0, 50)
    );

    // The next page is judged at the new threshold, from windows that kept
    // their history.
    let mut c = c;
    c.kill(3).unwrap();
    let page = suspected_page(&sink, "node-4", Duration::from_secs(40)).await;
    assert_eq!(page.body["threshold"], 12.0, "{}", page.body);
    assert!(
        page.phi >= 12.0,
        "paged at phi {} < 12: {}",
        page.phi,
        page.body
    );
    let intervals = page.body["evidence"]["intervals_ms"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        intervals >= before.window_samples.min(32),
        "the page's window lost its history: {intervals} intervals; {}",
        page.body
    );

    // A broken file: refused, counted, logged, the running config stays.
    std::fs::write(&c.nodes[0].config, "[detector\nthreshold = 3.0\n").unwrap();
    c.signal(0, Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(&c, 0, "phimon_config_reload_failures_total").await < 1.0 {
        assert!(Instant::now() < deadline, "{}", c.log_tail(0, 20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.log_tail(0, 20)
            .contains("SIGHUP: configuration reload failed, keeping the running one"),
        "{}",
        c.log_tail(0, 20)
    );
    assert_eq!(detail(&c, 0, "node-2").await.threshold, 12.0);
    assert_eq!(
        scrape(&c, 0, "phimon_config_last_reload_success_timestamp_seconds").await,
        reloaded_at
    );

    // A listener change: refused by name, and nothing else applied.
    let port = free_tcp_port().unwrap();
    rewrite(
        &c.nodes[1].config,
        &[
            (&c.nodes[1].http.to_string(), &format!("127.0.0.1:{port}")),
            ("threshold = 12.0", "threshold = 9.0"),
        ],
    );
    let (status, report) = post_reload(&c, 1).await;
    assert_eq!(status, 422, "{report:?}");
    let error = report.error.unwrap();
    assert!(
        error.contains("http.listen cannot change without a restart"),
        "{error}"
    );
    assert_eq!(detail(&c, 1, "node-3").await.threshold, 12.0);
    assert_eq!(
        scrape(&c, 1, "phimon_config_reload_failures_total").await,
        1.0
    );
}

/// A page for a killed node carries its evidence: its last intervals are
/// the heartbeats' real spacing (500 ms) and its observers are listed
/// with their verdicts. `GET /v1/peers/{id}` serves the same evidence,
/// and an unknown id is a JSON 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_for_a_killed_node_carries_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let mut c = converged(dir.path(), &paging(3, &sink)).await;
    // Either observer may be the one that pages, so both must hold 20
    // samples before the kill; they start their windows a heartbeat apart.
    let mut views = Vec::new();
    for observer in [0, 1] {
        views.push(
            wait_detail(
                &c,
                observer,
                "node-3",
                Duration::from_secs(30),
                "20 samples",
                |d| d.window_samples >= 20,
            )
            .await,
        );
    }
    let e = views[0]
        .evidence
        .as_ref()
        .expect("an observed peer has evidence");
    assert_eq!(e.version, phimon_alert::EVIDENCE_VERSION);
    assert!(e.intervals_ms.len() >= 20, "{e:?}");

    let missing = reqwest::get(format!("http://{}/v1/peers/node-9", c.nodes[0].http))
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no peer \"node-9\""),
        "{body}"
    );

    c.kill(2).unwrap();
    let page = suspected_page(&sink, "node-3", Duration::from_secs(30)).await;
    let ev = &page.body["evidence"];
    assert_eq!(ev["version"], 1, "{}", page.body);
    let intervals: Vec<f64> = ev["intervals_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(intervals.len() >= 20, "{intervals:?}");
    let mut sorted = intervals.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        (450.0..=550.0).contains(&median),
        "median interval {median} ms, heartbeats are every 500 ms: {intervals:?}"
    );
    let near = intervals
        .iter()
        .filter(|i| (300.0..=700.0).contains(*i))
        .count();
    assert!(
        near * 10 >= intervals.len() * 9,
        "intervals far from 500 ms: {intervals:?}"
    );
    // The silence that paged is longer than any interval it had seen.
    let silence = ev["silence_ms"].as_f64().unwrap();
    assert!(
        silence > sorted[sorted.len() - 1],
        "{silence} ms: {}",
        page.body
    );
    let mut observers: Vec<&str> = ev["observers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["node_id"].as_str().unwrap())
        .collect();
    observers.sort_unstable();
    assert_eq!(observers, ["node-1", "node-2"], "{}", page.body);
    let pager = ev["observers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["node_id"] == page.observer.as_str())
        .unwrap_or_else(|| panic!("the pager is not among the observers: {}", page.body));
    assert_eq!(pager["suspected"], true, "{}", page.body);
    assert!(!ev["model"].as_str().unwrap().is_empty());
    assert_eq!(ev["local_health"]["degraded"], false, "{}", page.body);
    assert!(ev["heartbeats_received"].as_u64().unwrap() >= 20);
}

/// `phimon peers` (and `status`) on a running cluster: a table with a row
/// per peer and the documented columns, `--json` that parses into the
/// API type, `--config` finding the address; a clear error and a non-zero
/// exit when nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phimon_peers_shows_the_fleet_and_says_when_no_sidecar_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = converged(dir.path(), &paging(3, &crate::common::sink().await)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let addr = c.nodes[0].http.to_string();

    let table = succeed(phimon().args(["peers", "--addr", &addr]));
    let lines: Vec<&str> = table.lines().collect();
    // The header, this node, its two peers: every node of the cluster.
    assert_eq!(lines.len(), 4, "{table}");
    for col in [
        "NODE",
        "ADDRESS",
        "STATUS",
        "PHI",
        "LAST HEARTBEAT",
        "GENERATION",
        "OBSERVERS",
        "SUSPECTED BY",
    ] {
        assert!(lines[0].contains(col), "{table}");
    }
    let own: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        own[..6],
        [
            "node-1",
            &c.nodes[0].gossip.to_string(),
            "alive",
            "(this",
            "node)",
            "-"
        ],
        "{table}"
    );
    assert!(
        own[8].contains("node-2") && own[8].contains("node-3"),
        "{table}"
    );
    for (line, n) in lines[2..].iter().zip(&c.nodes[1..]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], n.id, "{table}");
        assert_eq!(cols[1], n.gossip.to_string(), "{table}");
        assert_eq!(cols[2], "alive", "{table}");
        let phi: f64 = cols[3].parse().unwrap();
        assert!(phi < 8.0, "{table}");
        assert!(
            cols.iter().any(|c| c.contains("node-1")),
            "observers: {table}"
        );
    }
    eprintln!("{table}");

    let json = succeed(
        phimon()
            .args(["status", "--json", "--config"])
            .arg(&c.nodes[0].config),
    );
    let peers: Vec<PeerInfo> = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = peers.iter().map(|p| p.node_id.as_str()).collect();
    assert_eq!(ids, ["node-2", "node-3"], "{json}");
    assert!(
        peers.iter().all(|p| p.observed && p.generation > 0),
        "{json}"
    );

    let closed = format!("127.0.0.1:{}", free_tcp_port().unwrap());
    let out = phimon()
        .args(["peers", "--addr", &closed])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no phimon sidecar answering at {closed}: connection refused — is `phimon run` running?"
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// `phimon whatif --threshold 4,12,16` on a node of a running cluster:
/// every observed peer replayed at the current threshold (8, first) and
/// the three asked, a higher threshold detecting later; the table says
/// the same as `--json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phimon_whatif_prints_the_trade_off_for_three_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = converged(dir.path(), &paging(3, &crate::common::sink().await)).await;
    for peer in ["node-2", "node-3"] {
        wait_detail(&c, 0, peer, Duration::from_secs(30), "20 samples", |d| {
            d.window_samples >= 20
        })
        .await;
    }
    let addr = c.nodes[0].http.to_string();
    let json = succeed(phimon().args([
        "whatif",
        "--threshold",
        "4,12,16",
        "--json",
        "--addr",
        &addr,
    ]));
    let r: phimon_exporter::WhatIfReport = serde_json::from_str(&json).unwrap();
    assert_eq!(r.node_id, "node-1");
    assert_eq!(r.thresholds, [8.0, 4.0, 12.0, 16.0], "{json}");
    let ids: Vec<&str> = r.peers.iter().map(|p| p.node_id.as_str()).collect();
    assert_eq!(ids, ["node-2", "node-3"], "{json}");
    for p in &r.peers {
        assert!(p.intervals >= 20, "{p:?}");
        // 500 ms heartbeats: the history is the intervals' sum.
        assert!(
            (p.history_s / p.intervals as f64 - 0.5).abs() < 0.1,
            "{p:?}"
        );
        let d: Vec<f64> = p.outcomes.iter().map(|o| o.detection_ms.unwrap()).collect();
        // Threshold order 8, 4, 12, 16.
        assert!(d[1] < d[0] && d[0] < d[2] && d[2] < d[3], "{p:?}");
        // Beyond the heartbeat interval, and within the replay's horizon
        // (a young window is still wide: seconds, not minutes).
        assert!(d[1] > 500.0 && d[3] < 60_000.0, "{p:?}");
    }
    assert_eq!(r.node.len(), 4);
    assert_eq!(
        r.node[0].detection_ms,
        r.peers
            .iter()
            .map(|p| p.outcomes[0].detection_ms.unwrap())
            .reduce(f64::max)
    );

    let table = succeed(phimon().args(["whatif", "--threshold", "4,12,16", "--addr", &addr]));
    eprintln!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("node-1: current threshold 8"),
        "{table}"
    );
    assert!(lines[1].starts_with("PEER"), "{table}");
    // 2 peers and the node's summary, 4 thresholds each.
    assert_eq!(lines.len(), 2 + 3 * 4, "{table}");
    assert!(
        lines[2].starts_with("node-2") && lines[2].contains("8 (now)"),
        "{table}"
    );
    assert!(lines[10].starts_with("(node)"), "{table}");

    let bad = phimon()
        .args(["whatif", "--threshold", "-3", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");

    // `phimon record` exports a window as a trace `phimon eval` replays
    // to the same mistakes as the what-if at each threshold.
    let trace = dir.path().join("node-2.trace");
    let said = phimon()
        .args(["record", "--peer", "node-2", "--addr", &addr, "--out"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(said.status.success(), "{said:?}");
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(
        stderr.contains("replay it with `phimon eval --trace"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(
        text.contains("# peer=node-2") && text.contains("# interval_ms=500"),
        "{text}"
    );
    let arrivals = text.lines().skip_while(|l| *l != "arrival_ms").count() - 1;
    assert!(
        arrivals > r.peers[0].intervals,
        "{arrivals} arrivals: {text}"
    );
    let report = succeed(
        phimon()
            .args(["eval", "--thresholds", "4,8,12,16", "--trace"])
            .arg(&trace),
    );
    for o in &r.peers[0].outcomes {
        let th = o.threshold.to_string();
        assert_eq!(
            crate::common::row(&report, &th)[2],
            o.mistakes.to_string(),
            "mistakes at {th}: {report}"
        );
    }
    let unobserved = phimon()
        .args(["record", "--peer", "node-9", "--addr", &addr, "--out", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unobserved.stderr);
    assert!(!unobserved.status.success(), "{stderr}");
    assert!(
        stderr.contains("node-1 does not observe \"node-9\""),
        "{stderr}"
    );

    // The replay is the live detector: its detection time at the current
    // threshold is when the real one suspects a killed node, counted from
    // its last heartbeat.
    let now: phimon_exporter::WhatIfReport =
        serde_json::from_str(&c.get(0, "/v1/whatif").await.unwrap()).unwrap();
    let predicted = now.peers[1].outcomes[0].detection_ms.unwrap();
    c.kill(2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let peers = c.peers(0).await.unwrap();
        let p = peers.iter().find(|p| p.node_id == "node-3").unwrap();
        if p.phi >= 8.0 {
            break p.last_heartbeat_age_ms;
        }
        assert!(
            Instant::now() < deadline,
            "node-3 never reached phi 8: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "what-if predicted detection {predicted:.0} ms after the last heartbeat; seen at {seen:.0} ms"
    );
    assert!(
        seen >= predicted - 50.0 && seen <= predicted * 1.1 + 250.0,
        "predicted {predicted} ms, the live detector crossed 8 at {seen} ms"
    );
}

/// A webhook's secret (rewritten in place) and URL change by reload:
/// delivery restarts, and the next page goes to the new receiver only,
/// signed with the new secret. Adding a webhook is refused (it would need
/// an outbox queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_pages_to_a_new_webhook_url() {
    let dir = tempfile::tempdir().unwrap();
    let old = sink().await;
    let rotated = "whsec_cGhpbW9uLXJvdGF0ZWQtd2ViaG9vay1zZWNyZXQ=";
    let new = WebhookSink::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), rotated)
        .await
        .unwrap();
    let mut c = converged(dir.path(), &paging(3, &old)).await;
    // The secret file is the same path for every node: only its content
    // changes, the config files do not.
    std::fs::write(c.dir().join("hook.secret"), rotated).unwrap();
    for i in 0..2 {
        let (status, report) = post_reload(&c, i).await;
        assert_eq!(status, 200, "{report:?}");
        assert_eq!(
            report.changed,
            ["alert.webhook: secret changed, delivery restarted"]
        );
    }
    for i in 0..2 {
        rewrite(&c.nodes[i].config, &[(&old.url(), &new.url())]);
        let (status, report) = post_reload(&c, i).await;
        assert_eq!(status, 200, "{report:?}");
        assert_eq!(
            report.changed,
            ["alert.webhook: sink changed, delivery restarted"]
        );
    }
    c.kill(2).unwrap();
    let page = suspected_page(&new, "node-3", Duration::from_secs(30)).await;
    assert!(
        page.signature_valid,
        "not signed with the new secret: {page:?}"
    );
    // Let any straggler through, then: nothing went to the old URL.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(old.pages().is_empty(), "{:#?}", old.pages());

    let text = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    let extra = text
        .lines()
        .skip_while(|l| *l != "[[alert.webhook]]")
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .replace("name = \"sink\"", "name = \"second\"");
    std::fs::write(&c.nodes[0].config, format!("{text}\n{extra}\n")).unwrap();
    let (status, report) = post_reload(&c, 0).await;
    assert_eq!(status, 422, "{report:?}");
    let error = report.error.unwrap();
    assert!(error.contains("alert.webhook cannot change"), "{error}");
    assert!(!error.contains(&new.url()), "values are not shown: {error}");
}
