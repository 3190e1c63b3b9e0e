//! End-to-end: real `phimon run` processes on 127.0.0.1 with mutual TLS.
//! The binary is built once by cargo; every test spawns it.

use crate::common::{bin, converged, paging, rewrite, sink};
use nix::sys::signal::Signal;
use phimon_exporter::api::{PeerInfo, Status};
use phimon_testkit::local_cluster::metric;
use phimon_testkit::local_cluster::{ClusterSpec, LocalCluster};
use std::time::{Duration, Instant};

/// Polls until `cond` holds for node `i`'s view of `peer`, or fails.
async fn wait_for(
    c: &LocalCluster,
    i: usize,
    peer: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&PeerInfo) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(peers) = c.peers(i).await {
            if peers.iter().any(|p| p.node_id == peer && cond(p)) {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{}: {peer} never became {what} within {timeout:?}; log:\n{}",
            c.nodes[i].id,
            c.log_tail(i, 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Also checks, at the end, that every metric of docs/metrics.md was
/// written ([`crate::metrics`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_detect_a_kill_and_welcome_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let mut c = converged(dir.path(), &paging(5, &sink)).await;
    // Settle so every window has samples.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = c.peers(0).await.unwrap();
    let gen_before = before
        .iter()
        .find(|p| p.node_id == "node-5")
        .unwrap()
        .generation;

    c.kill(4).unwrap();
    let killed = Instant::now();
    for i in 0..4 {
        // Only node-5's observers (3 of the 4) have its phi.
        wait_for(&c, i, "node-5", Duration::from_secs(20), "suspected", |p| {
            p.suspected && (p.phi >= 8.0 || !p.observed)
        })
        .await;
    }
    let detection = killed.elapsed();
    // 500 ms heartbeats, threshold 8: the detector alone needs ~1-2 s;
    // gossip relays add rounds. Anything near 20 s would be broken.
    assert!(
        detection < Duration::from_secs(10),
        "detection took {detection:?}"
    );
    eprintln!("kill -9 -> suspected by all 4 observers: {detection:?}");
    // ... and paged (after the engine's group wait).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sink
        .pages()
        .iter()
        .any(|p| p.event == "suspected" && p.node_id == "node-5")
    {
        assert!(Instant::now() < deadline, "node-5 was never paged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.start(4).unwrap();
    for i in 0..4 {
        wait_for(
            &c,
            i,
            "node-5",
            Duration::from_secs(20),
            "alive again with a new generation",
            |p| p.generation > gen_before && !p.suspected && p.status == Status::Alive,
        )
        .await;
    }
    // Nobody else was ever suspected.
    for i in 0..5 {
        for p in c.peers(i).await.unwrap() {
            assert!(
                !p.suspected,
                "{} suspects {} ({})",
                c.nodes[i].id, p.node_id, p.phi
            );
        }
    }
    // A kill, a page and a restart later, every documented metric has
    // been written.
    crate::metrics::assert_documented_metrics_written(&c, &sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_from_a_foreign_ca_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 2,
        ..ClusterSpec::default()
    };
    let c = converged(dir.path(), &spec).await;

    // An intruder with its own CA, configured to join through node-1.
    let other = tempfile::tempdir().unwrap();
    let ospec = ClusterSpec {
        nodes: 1,
        ..ClusterSpec::default()
    };
    let mut intruder = LocalCluster::create(bin(), other.path(), &ospec).unwrap();
    // It trusts the cluster's (public) CA as well as its own, so it gets
    // far enough to present its foreign certificate to node-1.
    let bundle = other.path().join("bundle.pem");
    let mut pem = std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap();
    pem.push_str(&std::fs::read_to_string(other.path().join("certs/ca.pem")).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    rewrite(
        &intruder.nodes[0].config,
        &[
            (
                &format!("seeds = [\"{}\"]", intruder.nodes[0].gossip),
                &format!(
                    "seeds = [\"{}\", \"{}\"]",
                    c.nodes[0].gossip, c.nodes[1].gossip
                ),
            ),
            (
                &format!(
                    "ca = {:?}",
                    other.path().join("certs/ca.pem").display().to_string()
                ),
                &format!("ca = {:?}", bundle.display().to_string()),
            ),
        ],
    );
    intruder.start(0).unwrap();

    let start = Instant::now();
    let mut refused = 0.0;
    while start.elapsed() < Duration::from_secs(15) {
        let metrics = c.get(0, "/metrics").await.unwrap_or_default();
        refused = metric(&metrics, "phimon_auth_failures_total");
        if refused > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refused > 0.0,
        "no auth failure counted; node-1 log:\n{}",
        c.log_tail(0, 30)
    );
    // The intruder claims the id node-1 of another CA; neither member lists
    // an extra peer, and node-1 is still node-1's own.
    for i in 0..2 {
        let peers = c.peers(i).await.unwrap();
        assert_eq!(peers.len(), 1, "{:?}", peers);
    }
    let ipeers = intruder.peers(0).await.unwrap_or_default();
    assert!(ipeers.is_empty(), "the intruder learnt {ipeers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_observer_does_not_suspect_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let c = converged(dir.path(), &paging(3, &sink)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    c.signal(0, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    c.signal(0, Signal::SIGCONT).unwrap();
    // For the next seconds node-1 must never suspect a peer, and must say
    // it was degraded.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        if let Ok(peers) = c.peers(0).await {
            for p in peers {
                assert!(
                    !p.suspected,
                    "stalled observer suspects {} (phi {})",
                    p.node_id, p.phi
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = c.get(0, "/metrics").await.unwrap();
    assert!(
        metric(&metrics, "phimon_local_stalls_total") >= 1.0,
        "stall not counted"
    );
    // node-1 itself was unresponsive for 10 s: its peers may rightly page
    // about it. Nobody may page about node-2 or node-3.
    let wrong: Vec<_> = sink
        .pages()
        .into_iter()
        .filter(|p| p.event == "suspected" && p.node_id != "node-1")
        .collect();
    assert!(
        wrong.is_empty(),
        "false pages about healthy peers: {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_gracefully_and_is_never_paged() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let mut c = converged(dir.path(), &paging(3, &sink)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let status = c.terminate(2, Duration::from_secs(5)).unwrap();
    assert!(status.success(), "exit status {status:?}");
    for i in 0..2 {
        wait_for(&c, i, "node-3", Duration::from_secs(10), "left", |p| {
            p.status == Status::Left
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..2 {
        let p = c.peers(i).await.unwrap();
        if let Some(p) = p.iter().find(|p| p.node_id == "node-3") {
            assert!(!p.suspected, "a node that left is suspected: {p:?}");
        }
    }
    assert!(
        sink.pages().iter().all(|p| p.event != "suspected"),
        "{:?}",
        sink.pages()
    );
}
