//! [`serve`] on a real socket: slow clients are cut off within the
//! header timeout, connection limits hold per IP and overall while other
//! clients are served, large bodies are refused, and each is counted.

use phimon_exporter::snapshot::publish;
use phimon_exporter::{ExportConfig, HttpLimits, HttpState, Metrics, NodeSnapshot, serve};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

async fn start(limits: HttpLimits) -> (SocketAddr, Arc<Metrics>) {
    let snapshot = Arc::new(RwLock::new(NodeSnapshot::default()));
    publish(
        &snapshot,
        NodeSnapshot {
            node_id: "node-0".into(),
            joined: true,
            peers: vec![],
        },
    );
    let metrics =
        Arc::new(Metrics::new("0.1.0", ExportConfig::default(), snapshot.clone()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState {
        snapshot,
        metrics: metrics.clone(),
        refresh: None,
        control: None,
        reload_over_http: false,
    };
    tokio::spawn(serve(listener, state, limits));
    (addr, metrics)
}

/// A blocking connection to `addr` from local address `from` (any
/// 127/8 address is local on Linux), with a read timeout.
async fn connect(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    let s = sock.connect(addr).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A GET that must be answered 200.
async fn get_ok(addr: SocketAddr, path: &str) -> String {
    let mut s = connect([127, 0, 0, 1], addr).await;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    })
    .await
    .unwrap()
}

/// [`until_closed`] off the async workers.
async fn closed(mut s: TcpStream) -> (Duration, Vec<u8>) {
    tokio::task::spawn_blocking(move || until_closed(&mut s, Instant::now()))
        .await
        .unwrap()
}

/// Reads until the server closes; how long that took.
fn until_closed(s: &mut TcpStream, start: Instant) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (start.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_within_the_header_timeout() {
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(800),
        ..HttpLimits::default()
    };
    let (addr, metrics) = start(limits).await;
    let mut s = connect([127, 0, 0, 1], addr).await;
    let (took, answer) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // One header byte every 100 ms: never a complete request.
        let dripper = {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || {
                for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    .iter()
                    .cycle()
                {
                    if w.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let r = until_closed(&mut s, start);
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = dripper.join();
        r
    })
    .await
    .unwrap();
    println!(
        "slowloris cut off after {took:?}; answer {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    // An idle connection (nothing sent at all) goes the same way.
    let took = closed(connect([127, 0, 0, 1], addr).await).await.0;
    assert!(took < Duration::from_millis(2000), "idle: {took:?}");
    let text = get_ok(addr, "/metrics").await;
    assert!(
        sample(
            &text,
            "phimon_http_connections_dropped_total{reason=\"timeout\"}"
        ) >= 2.0,
        "{text}"
    );
    drop(metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_keep_a_greedy_client_from_starving_others() {
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(5),
        max_connections: 6,
        max_connections_per_ip: 3,
        ..HttpLimits::default()
    };
    let (addr, _metrics) = start(limits).await;
    // 127.0.0.2 holds its 3 connections open; a 4th is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect([127, 0, 0, 2], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (took, got) = closed(connect([127, 0, 0, 2], addr).await).await;
    assert!(
        got.is_empty() && took < Duration::from_secs(1),
        "{took:?} {got:?}"
    );
    // Another client is served meanwhile.
    get_ok(addr, "/healthz").await;
    // Fill the global limit from a third address; then even a new client
    // is turned away until a slot frees.
    for _ in 0..3 {
        held.push(connect([127, 0, 0, 3], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (took, got) = closed(connect([127, 0, 0, 4], addr).await).await;
    assert!(got.is_empty() && took < Duration::from_secs(1), "{took:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = get_ok(addr, "/metrics").await;
    assert_eq!(
        sample(
            &text,
            "phimon_http_connections_dropped_total{reason=\"per_ip_limit\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "phimon_http_connections_dropped_total{reason=\"limit\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "phimon_http_connections_open"), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_and_headers_are_refused() {
    let (addr, _metrics) = start(HttpLimits::default()).await;
    let mut s = connect([127, 0, 0, 1], addr).await;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (_, got) = closed(s).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    let mut s = connect([127, 0, 0, 1], addr).await;
    let big = "a".repeat(64 * 1024);
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    );
    let (_, got) = closed(s).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got}");
    get_ok(addr, "/readyz").await;
}
