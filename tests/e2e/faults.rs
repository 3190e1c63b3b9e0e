//! Fault scenarios against real `phimon run` processes on loopback, with
//! the chaos UDP proxy between every pair of nodes (see `testkit/src/chaos.rs`).
//! Each test states its expected outcome and asserts it.
//!
//! Durations: the CI run uses the figures below; `PHIMON_FAULT_SCALE`
//! (default 1) multiplies the long phases for a longer local run.

use crate::common::{launch, paging, rewrite, sink};
use nix::sys::signal::Signal;
use phimon_exporter::api::PeerInfo;
use phimon_testkit::chaos::{ChaosProxy, LinkFaults};
use phimon_testkit::local_cluster::metric;
use phimon_testkit::local_cluster::{ClusterSpec, LocalCluster};
use phimon_testkit::sink::{Page, WebhookSink};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

fn scaled(d: Duration) -> Duration {
    let scale: f64 = std::env::var("PHIMON_FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    d.mul_f64(scale.max(0.1))
}

/// A cluster of `n` nodes behind a chaos proxy, with a webhook sink.
struct Rig {
    cluster: LocalCluster,
    proxy: Option<ChaosProxy>,
    sink: WebhookSink,
    _dir: tempfile::TempDir,
}

async fn rig(n: usize, proxied: bool, interval: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let proxy = if proxied {
        Some(ChaosProxy::bind(n, 42).await.unwrap())
    } else {
        None
    };
    let spec = ClusterSpec {
        interval,
        fronts: proxy.as_ref().map(|p| p.fronts().to_vec()),
        ..paging(n, &sink)
    };
    let cluster = launch(dir.path(), &spec, Duration::from_secs(40), |c| {
        if let Some(p) = &proxy {
            p.set_backends(&c.listen_addrs());
        }
    })
    .await;
    Rig {
        cluster,
        proxy,
        sink,
        _dir: dir,
    }
}

/// Distinct event ids per (event, incident) among the received pages:
/// "paged twice" means two different events of one kind for one incident.
fn distinct(pages: &[Page]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for p in pages {
        m.entry((p.event.clone(), incident(p)))
            .or_default()
            .insert(p.webhook_id.clone());
    }
    m
}

fn incident(p: &Page) -> String {
    p.body["incident_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_until<F: Fn(&[Page]) -> bool>(
    sink: &WebhookSink,
    timeout: Duration,
    what: &str,
    f: F,
) {
    let start = Instant::now();
    while !f(&sink.pages()) {
        assert!(
            start.elapsed() < timeout,
            "{what} within {timeout:?}; pages: {:#?}",
            sink.pages()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A proxied cluster of `n` (500 ms heartbeats) split into `groups` for
/// 30 s (scaled), then healed and converged again.
async fn partitioned_and_healed(n: usize, groups: &[&[usize]]) -> Rig {
    let mut r = rig(n, true, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.proxy.as_ref().unwrap().partition(groups);
    tokio::time::sleep(scaled(Duration::from_secs(30))).await;
    r.proxy.as_ref().unwrap().heal();
    r.cluster
        .wait_converged(Duration::from_secs(40))
        .await
        .unwrap();
    r
}

async fn peers(c: &LocalCluster, i: usize) -> Vec<PeerInfo> {
    c.peers(i).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_and_jitter_on_every_link_raise_no_false_page() {
    let r = rig(5, true, Duration::from_millis(500)).await;
    let proxy = r.proxy.as_ref().unwrap();
    proxy.set_all(LinkFaults {
        loss: 0.2,
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(30),
        ..LinkFaults::default()
    });
    let run = scaled(Duration::from_secs(150));
    let start = Instant::now();
    let mut max_phi = 0.0f64;
    while start.elapsed() < run {
        for i in 0..5 {
            for p in peers(&r.cluster, i).await {
                max_phi = max_phi.max(p.phi);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (received, dropped, _) = proxy.totals();
    eprintln!(
        "{run:?} at 20% loss, 50±30 ms: {received} datagrams, {dropped} dropped ({:.1}%), max phi seen {max_phi:.2}",
        100.0 * dropped as f64 / received.max(1) as f64
    );
    assert!(
        dropped as f64 > 0.15 * received as f64,
        "the proxy did not apply the loss"
    );
    let suspected: Vec<_> = r
        .sink
        .pages()
        .into_iter()
        .filter(|p| p.event == "suspected")
        .collect();
    assert!(
        suspected.is_empty(),
        "false pages under loss and jitter: {suspected:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_2_partition_pages_once_from_the_majority_and_heals() {
    let r = partitioned_and_healed(5, &[&[0, 1, 2], &[3, 4]]).await;
    // Membership reconverged; recoveries follow.
    wait_until(
        &r.sink,
        Duration::from_secs(40),
        "recovered pages for node-4 and node-5",
        |pages| {
            ["node-4", "node-5"].iter().all(|n| {
                pages
                    .iter()
                    .any(|p| p.event == "recovered" && p.body["nodes"].to_string().contains(n))
            })
        },
    )
    .await;
    let pages = r.sink.pages();
    // The minority never pages about majority nodes.
    for p in &pages {
        if p.observer == "node-4" || p.observer == "node-5" {
            assert_ne!(
                p.body["scope"], "node",
                "minority node paged about a peer: {p:#?}"
            );
        }
        assert!(
            !(p.event == "suspected"
                && ["node-1", "node-2", "node-3"].contains(&p.node_id.as_str())
                && p.body["scope"] == "node"),
            "a majority node was paged: {p:#?}"
        );
    }
    // Nothing was paged twice: one event id per (event, subject).
    for ((event, node), ids) in distinct(&pages) {
        assert_eq!(
            ids.len(),
            1,
            "{event} of incident {node:?} paged as {} distinct events: {ids:?}",
            ids.len()
        );
    }
    let incidents: BTreeSet<String> = pages
        .iter()
        .filter(|p| p.event == "suspected")
        .map(incident)
        .collect();
    for p in &pages {
        eprintln!(
            "page: {} scope={} node={} observer={} incident={}",
            p.event,
            p.body["scope"],
            p.node_id,
            p.observer,
            incident(p)
        );
    }
    assert!(
        !incidents.is_empty(),
        "the majority never paged about the minority"
    );
}

/// A 30 s partition of one node in a 4-node cluster is one incident: the
/// fleet's page about the node and the node's own `partition` page carry
/// the same incident id, and one closing event ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_one_node_is_one_incident() {
    let r = partitioned_and_healed(4, &[&[0, 1, 2], &[3]]).await;
    wait_until(
        &r.sink,
        Duration::from_secs(40),
        "the incident about node-4 closed",
        |pages| {
            pages
                .iter()
                .any(|p| p.event != "suspected" && p.node_id == "node-4")
        },
    )
    .await;
    // Let any late duplicate arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pages = r.sink.pages();
    for p in &pages {
        eprintln!(
            "page: {} scope={} node={} observer={} incident={}",
            p.event,
            p.body["scope"],
            p.node_id,
            p.observer,
            incident(p)
        );
    }
    let incidents: BTreeSet<String> = pages.iter().map(incident).collect();
    assert_eq!(
        incidents.len(),
        1,
        "one partition, several incidents: {incidents:?}"
    );
    let suspected: Vec<&Page> = pages.iter().filter(|p| p.event == "suspected").collect();
    assert!(
        !suspected.is_empty() && suspected.iter().all(|p| p.node_id == "node-4"),
        "a page about another node than the cut-off one"
    );
    for ((event, inc), ids) in distinct(&pages) {
        assert_eq!(ids.len(), 1, "{event} of {inc} paged as {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_is_paged_once_and_recovers() {
    let r = rig(4, false, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.cluster.signal(3, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(scaled(Duration::from_secs(15))).await;
    wait_until(
        &r.sink,
        Duration::from_secs(10),
        "a suspected page about node-4",
        |p| {
            p.iter()
                .any(|p| p.event == "suspected" && p.node_id == "node-4")
        },
    )
    .await;
    r.cluster.signal(3, Signal::SIGCONT).unwrap();
    wait_until(
        &r.sink,
        Duration::from_secs(30),
        "a recovered page about node-4",
        |p| {
            p.iter()
                .any(|p| p.event == "recovered" && p.node_id == "node-4")
        },
    )
    .await;
    let pages = r.sink.pages();
    let suspected: BTreeSet<&str> = pages
        .iter()
        .filter(|p| p.event == "suspected" && p.node_id == "node-4")
        .map(|p| p.webhook_id.as_str())
        .collect();
    assert_eq!(suspected.len(), 1, "{pages:#?}");
    let others: Vec<_> = pages.iter().filter(|p| p.node_id != "node-4").collect();
    assert!(others.is_empty(), "pages about other nodes: {others:#?}");
    // One incident: suspected and recovered share the id.
    let ids: BTreeSet<String> = pages.iter().map(incident).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_pages_no_one() {
    let mut r = rig(4, false, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..4 {
        let status = r.cluster.terminate(i, Duration::from_secs(8)).unwrap();
        assert!(status.success(), "node-{} exited with {status:?}", i + 1);
        r.cluster.start(i).unwrap();
        r.cluster
            .wait_converged(Duration::from_secs(30))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let bad: Vec<_> = r
        .sink
        .pages()
        .into_iter()
        .filter(|p| p.event != "restarted")
        .collect();
    assert!(bad.is_empty(), "a rolling restart paged: {bad:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_survives_a_receiver_outage_and_a_kill_9_of_the_observer() {
    let mut r = rig(4, false, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.sink.shutdown();
    let outage = Instant::now();
    r.cluster.kill(3).unwrap();
    // Find the observer holding the undelivered page in its outbox.
    let start = Instant::now();
    let holder = loop {
        let mut found = None;
        for i in 0..3 {
            let m = r.cluster.get(i, "/metrics").await.unwrap_or_default();
            if metric(&m, "phimon_alert_outbox_pending") > 0.0 {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no observer queued a page about node-4"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("node-{} holds the page; kill -9 it", holder + 1);
    r.cluster.kill(holder).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.cluster.start(holder).unwrap();
    // The receiver stays down for two minutes in all.
    let down = scaled(Duration::from_secs(120));
    tokio::time::sleep(down.saturating_sub(outage.elapsed())).await;
    r.sink.restart().await.unwrap();
    wait_until(
        &r.sink,
        Duration::from_secs(60),
        "the page about node-4 after the outage",
        |p| {
            p.iter()
                .any(|p| p.event == "suspected" && p.node_id == "node-4")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pages: Vec<Page> = r
        .sink
        .pages()
        .into_iter()
        .filter(|p| p.node_id == "node-4")
        .collect();
    let incidents: BTreeSet<String> = pages.iter().map(incident).collect();
    assert_eq!(incidents.len(), 1, "one incident expected: {pages:#?}");
    assert!(pages.iter().all(|p| p.signature_valid));
    let suspected: BTreeSet<&str> = pages
        .iter()
        .filter(|p| p.event == "suspected")
        .map(|p| p.webhook_id.as_str())
        .collect();
    assert_eq!(suspected.len(), 1, "{pages:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_data_dir_is_reported_not_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 2,
        ..ClusterSpec::default()
    };
    // node-2's data_dir is under a regular file: nothing can be written.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "not a directory").unwrap();
    let old = dir.path().join("node-2").display().to_string();
    let mut c = launch(dir.path(), &spec, Duration::from_secs(30), |c| {
        rewrite(
            &c.nodes[1].config,
            &[(
                &format!("data_dir = {old:?}"),
                &format!(
                    "data_dir = {:?}",
                    blocker.join("data").display().to_string()
                ),
            )],
        );
    })
    .await;
    assert!(c.is_running(1), "node-2 exited: {}", c.log_tail(1, 20));
    let m = c.get(1, "/metrics").await.unwrap();
    assert_eq!(metric(&m, "phimon_data_dir_writable"), 0.0, "{m}");
    let log = c.log_tail(1, 50);
    assert!(
        log.contains("data_dir") && log.contains("blocker"),
        "the log does not explain: {log}"
    );
}

/// libfaketime's multi-threaded preload, from Debian's `faketime` package.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_jump_does_not_move_phi() {
    if !Path::new(FAKETIME).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{FAKETIME} missing: .ci/run must install faketime"
        );
        eprintln!("skipping: apt-get install faketime");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let spec = paging(3, &sink);
    // node-1's realtime clock is stepped from a file while it runs, as NTP
    // or an operator would; its monotonic clock is left alone.
    let stamp = dir.path().join("faketime.stamp");
    std::fs::write(&stamp, "+0\n").unwrap();
    let c = launch(dir.path(), &spec, Duration::from_secs(30), |c| {
        c.nodes[0].env = vec![
            ("LD_PRELOAD".into(), FAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                stamp.display().to_string(),
            ),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ];
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    for jump in ["+2h", "-3h"] {
        std::fs::write(&stamp, format!("{jump}\n")).unwrap();
        let start = Instant::now();
        let mut max_phi = 0.0f64;
        while start.elapsed() < Duration::from_secs(8) {
            for i in 0..3 {
                for p in peers(&c, i).await {
                    assert!(
                        !p.suspected,
                        "after a {jump} jump node-{} suspects {}",
                        i + 1,
                        p.node_id
                    );
                    max_phi = max_phi.max(p.phi);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            max_phi < 4.0,
            "phi reached {max_phi} after a {jump} wall-clock jump"
        );
        // The jump did happen: node-1 logs with its (faked) wall clock.
        c.signal(0, Signal::SIGHUP).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let line = c
            .log_tail(0, 200)
            .lines()
            .rev()
            .find(|l| l.contains("SIGHUP"))
            .map(str::to_owned)
            .unwrap_or_default();
        let logged = line
            .split_whitespace()
            .next()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let skew = logged.map(|t| {
            let now = std::time::SystemTime::now();
            now.duration_since(t)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .unwrap()
        });
        assert!(
            skew.is_some_and(|s| s > Duration::from_secs(3600)),
            "node-1's wall clock did not jump ({jump}): {line:?}"
        );
    }
    assert!(sink.pages().is_empty(), "{:#?}", sink.pages());
}
