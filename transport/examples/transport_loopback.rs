//! Measures the QUIC transport on 127.0.0.1: time to first delivery on a
//! new connection (resolution + QUIC/TLS 1.3 mutual handshake + one
//! message), latency on an established connection, and sustained
//! throughput.
//!
//! Target (issue 5): gossip at 1 s intervals to 20 peers is a few dozen
//! small messages per second per node; the transport should sustain orders
//! of magnitude more and connect in well under the 1 s gossip interval.
//!
//! Run: `cargo run -p phimon-transport --release --example transport_loopback`

#![allow(clippy::unwrap_used)] // A measurement tool: failing loudly is fine.

use std::path::Path;
use std::time::{Duration, Instant};

use phimon_transport::tls::generate_dev_certs;
use phimon_transport::{Peer, Received, Transport, TransportConfig};
use tokio::sync::mpsc;

fn config(dir: &Path, id: &str) -> TransportConfig {
    TransportConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join(format!("{id}.pem")),
        key_pem_path: dir.join(format!("{id}.key")),
        cluster_name: "bench".into(),
        node_id: Some(id.into()),
        // Throughput runs queue far more than gossip ever would.
        dial_queue_len: 1 << 10,
        receive_queue_len: 1 << 20,
        ..TransportConfig::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn recv(rx: &mut mpsc::Receiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::main]
async fn main() {
    const SERVERS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let mut ids: Vec<String> = (0..SERVERS).map(|i| format!("srv-{i}")).collect();
    ids.push("client".into());
    let t = Instant::now();
    generate_dev_certs(dir.path(), "bench", &ids, 1).unwrap();
    println!(
        "certs for {} nodes generated in {:.1} ms",
        ids.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let (client, _client_rx) = Transport::bind(config(dir.path(), "client")).unwrap();
    let mut servers = Vec::new();
    for id in &ids[..SERVERS] {
        servers.push(Transport::bind(config(dir.path(), id)).unwrap());
    }

    // First message to each server: a new connection every time.
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for (server, rx) in &mut servers {
        let addr = Peer {
            node_id: None,
            addr: server.local_addr().to_string(),
        };
        let t = Instant::now();
        client.send_message(&addr, vec![1; 64]).unwrap();
        recv(rx).await;
        first.push(t.elapsed());
        for _ in 0..10 {
            let t = Instant::now();
            client.send_message(&addr, vec![2; 64]).unwrap();
            recv(rx).await;
            warm.push(t.elapsed());
        }
    }
    first.sort();
    warm.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "new connection + first message: p50 {:.2} ms, p99 {:.2} ms (n={})",
        ms(percentile(&first, 0.5)),
        ms(percentile(&first, 0.99)),
        first.len()
    );
    println!(
        "established connection, one message: p50 {:.3} ms, p99 {:.3} ms (n={})",
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.99)),
        warm.len()
    );

    let (server, rx) = &mut servers[0];
    let addr = Peer {
        node_id: None,
        addr: server.local_addr().to_string(),
    };
    for size in [256usize, 16 * 1024] {
        let n = if size <= 256 { 20_000 } else { 5_000 };
        let before = client.stats().snapshot();
        let t = Instant::now();
        for _ in 0..n {
            client.send_message(&addr, vec![3; size]).unwrap();
        }
        for _ in 0..n {
            recv(rx).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let after = client.stats().snapshot();
        println!(
            "{n} messages of {size} B: {:.0} msg/s, {:.1} MB/s (dropped {})",
            n as f64 / secs,
            (n * size) as f64 / secs / 1e6,
            after.send_dropped - before.send_dropped
        );
    }
    let flushed = client.flush(Duration::from_secs(10)).await;
    println!(
        "flushed: {flushed}; client stats: {:?}",
        client.stats().snapshot()
    );
}
