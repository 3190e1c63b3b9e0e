//! End-to-end against real components: a real Prometheus scrapes a phimon
//! cluster, and a real Alertmanager receives phimon's `alertmanager`
//! output and routes it to a receiver. The binaries come from Debian's
//! `prometheus` and `prometheus-alertmanager` packages, which `.ci/run`
//! installs; without them these tests fail under CI and are skipped (with
//! a message) elsewhere.

use crate::common::converged;
use axum::Router;
use axum::routing::post;
use phimon_testkit::local_cluster::{ClusterSpec, free_tcp_port};
use phimon_testkit::promtool::{assert_promtool_clean, tool};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_json(url: &str) -> Option<serde_json::Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// The first value of an instant PromQL query, if any.
async fn query(prom: &str, q: &str) -> Option<f64> {
    let url = format!("http://{prom}/api/v1/query?query={}", urlencode(q));
    let v = get_json(&url).await?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_cluster_and_sees_phi_rise() {
    let Some(prometheus) = tool("prometheus", "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 3,
        interval: Duration::from_millis(500),
        ..ClusterSpec::default()
    };
    let mut c = converged(dir.path(), &spec).await;

    // promtool lints a live scrape of a running node.
    assert_promtool_clean(&c.get(0, "/metrics").await.unwrap());

    let port = free_tcp_port().unwrap();
    let prom = format!("127.0.0.1:{port}");
    let targets: Vec<String> = c.nodes.iter().map(|n| format!("\"{}\"", n.http)).collect();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: phimon\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Guard(
        Command::new(prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    let start = Instant::now();
    loop {
        if query(&prom, "sum(up{job=\"phimon\"})").await == Some(3.0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped all 3 nodes: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let healthy = query(&prom, "max(phimon_peer_phi{peer=\"node-3\"})")
        .await
        .unwrap_or(f64::NAN);
    assert!(healthy < 8.0, "node-3 phi before the kill: {healthy}");

    c.kill(2).unwrap();
    let killed = Instant::now();
    loop {
        let phi = query(&prom, "max(phimon_peer_phi{peer=\"node-3\"})")
            .await
            .unwrap_or(0.0);
        if phi >= 8.0
            && query(&prom, "max(phimon_peer_suspected{peer=\"node-3\"})").await == Some(1.0)
        {
            eprintln!(
                "Prometheus saw phi {phi} for node-3 {:?} after the kill",
                killed.elapsed()
            );
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "Prometheus never saw node-3's phi reach 8 (last {phi})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The live nodes stay healthy in Prometheus' eyes.
    let others = query(&prom, "max(phimon_peer_phi{peer!=\"node-3\"})")
        .await
        .unwrap_or(f64::NAN);
    assert!(others < 8.0, "a live node's phi in Prometheus: {others}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_routes_phimons_alerts_to_its_receiver() {
    let Some(alertmanager) = tool("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // The receiver Alertmanager notifies.
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let store = received.clone();
    let app = Router::new().route(
        "/am",
        post(move |body: axum::Json<serde_json::Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let am = format!("127.0.0.1:{}", free_tcp_port().unwrap());
    let cfg = dir.path().join("alertmanager.yml");
    std::fs::write(
        &cfg,
        format!(
            "route:\n  receiver: test\n  group_by: ['alertname', 'node']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: http://{receiver}/am\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let _am = Guard(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while get_json(&format!("http://{am}/api/v2/status"))
        .await
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Alertmanager did not start: {}",
            std::fs::read_to_string(dir.path().join("alertmanager.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let spec = ClusterSpec {
        nodes: 3,
        interval: Duration::from_millis(500),
        extra_toml: format!(
            "[[alert.webhook]]\nname = \"am\"\nurl = \"http://{am}/api/v2/alerts\"\nformat = \"alertmanager\"\nallow_insecure_http = true\n"
        ),
        ..ClusterSpec::default()
    };
    let mut c = converged(dir.path(), &spec).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kill(2).unwrap();

    let firing = |v: &serde_json::Value, status: &str| {
        v["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["status"] == status && a["labels"].to_string().contains("node-3"))
        })
    };
    let start = Instant::now();
    while !received.lock().unwrap().iter().any(|v| firing(v, "firing")) {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "Alertmanager never notified a firing alert for node-3; got {:?}; node log:\n{}",
            received.lock().unwrap(),
            c.log_tail(0, 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.start(2).unwrap();
    let start = Instant::now();
    while !received
        .lock()
        .unwrap()
        .iter()
        .any(|v| firing(v, "resolved"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "Alertmanager never notified the resolution; got {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No alert about a live node ever fired.
    for v in received.lock().unwrap().iter() {
        for a in v["alerts"].as_array().into_iter().flatten() {
            assert!(
                a["labels"].to_string().contains("node-3"),
                "unexpected alert {a}"
            );
        }
    }
}
