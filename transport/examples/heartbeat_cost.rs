//! What one heartbeat costs: N endpoints on loopback in one current-thread
//! runtime, each sending a heartbeat-sized datagram to its `k` observers
//! (the next k on a ring) every interval, as the direct-monitoring
//! protocol does. Reports CPU time per heartbeat datagram (the whole
//! process: sending, receiving, quinn's timers and ACKs, the runtime),
//! UDP packets per heartbeat datagram (quinn's connection statistics, both
//! directions), CPU per node per second, and the process's RSS.
//!
//! Target (issue 16): CPU per node ≤ chitchat's ≈ 0.5 ms per second with
//! each node sending ~3 heartbeats/s and receiving ~3.
//!
//! Run: `cargo run -p phimon-transport --release --example heartbeat_cost --
//!       [--nodes N] [--observers K] [--interval-ms MS] [--seconds S]
//!       [--no-ack-frequency] [--idle]`
//!
//! `--idle` binds the endpoints, connects them, then does nothing for the
//! duration: the RSS and CPU of idle endpoints with connections.
//! CPU comes from /proc/self/task/*/schedstat (nanoseconds on CPU, all
//! threads), which getrusage reports at tick resolution only.

#![allow(clippy::unwrap_used, missing_docs)] // A measurement tool: failing loudly is fine.

use std::path::Path;
use std::time::{Duration, Instant};

use phimon_gossip::NodeId;
use phimon_transport::tls::generate_dev_certs;
use phimon_transport::{Peer, Received, Transport, TransportConfig};
use tokio::sync::mpsc;

struct Args {
    nodes: usize,
    observers: usize,
    interval: Duration,
    seconds: u64,
    ack_frequency: bool,
    idle: bool,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 4,
        observers: 3,
        interval: Duration::from_secs(1),
        seconds: 20,
        ack_frequency: true,
        idle: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok()).unwrap();
        match flag.as_str() {
            "--nodes" => a.nodes = num() as usize,
            "--observers" => a.observers = num() as usize,
            "--interval-ms" => a.interval = Duration::from_millis(num()),
            "--seconds" => a.seconds = num(),
            "--no-ack-frequency" => a.ack_frequency = false,
            "--idle" => a.idle = true,
            other => panic!("unknown flag {other}"),
        }
    }
    a.observers = a.observers.min(a.nodes - 1);
    a
}

fn config(dir: &Path, id: &str, ack_frequency: bool) -> TransportConfig {
    TransportConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join(format!("{id}.pem")),
        key_pem_path: dir.join(format!("{id}.key")),
        cluster_name: "bench".into(),
        node_id: Some(id.into()),
        ack_frequency,
        ..TransportConfig::default()
    }
}

/// Nanoseconds on CPU of every thread of this process.
fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// This process's resident memory, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let a = args();
    let rss_start = rss_kib();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..a.nodes).map(|i| format!("node-{i:02}")).collect();
    generate_dev_certs(dir.path(), "bench", &ids, 1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rss_runtime = rss_kib();
        let mut nodes: Vec<(Transport, mpsc::Receiver<Received>)> = Vec::new();
        let mut rss_after_first = 0;
        for id in &ids {
            nodes.push(Transport::bind(config(dir.path(), id, a.ack_frequency)).unwrap());
            if rss_after_first == 0 {
                rss_after_first = rss_kib();
            }
        }
        let peers: Vec<Peer> = nodes
            .iter()
            .zip(&ids)
            .map(|((t, _), id)| Peer {
                node_id: Some(NodeId::from(id.as_str())),
                addr: t.local_addr().to_string(),
            })
            .collect();
        let observers = |i: usize| (1..=a.observers).map(move |d| (i + d) % a.nodes);
        // Connect every pair that will talk, and let the handshakes settle.
        for (i, (t, _)) in nodes.iter().enumerate() {
            for j in observers(i) {
                t.send_datagram(&peers[j], b"hello").unwrap();
            }
        }
        let mut inboxes: Vec<mpsc::Receiver<Received>> = Vec::new();
        let mut transports = Vec::new();
        for (t, rx) in nodes {
            transports.push(t);
            inboxes.push(rx);
        }
        let received = std::rc::Rc::new(std::cell::Cell::new(0u64));
        // One consumer per inbox, as the runtime would have: it reads the
        // heartbeat and its arrival time, nothing more.
        let local = tokio::task::LocalSet::new();
        for mut rx in inboxes {
            let received = received.clone();
            local.spawn_local(async move {
                while let Some(r) = rx.recv().await {
                    std::hint::black_box(r.received_at);
                    received.set(received.get() + 1);
                }
            });
        }
        local
            .run_until(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let packets = |ts: &[Transport]| -> (u64, u64) {
                    let mut tx = 0;
                    let mut rx = 0;
                    for t in ts {
                        for n in t.connected_nodes() {
                            if let Some(s) = t.connection_stats(&n) {
                                tx += s.udp_tx.datagrams;
                                rx += s.udp_rx.datagrams;
                            }
                        }
                    }
                    (tx, rx)
                };
                let (tx0, _) = packets(&transports);
                let got0 = received.get();
                let cpu0 = cpu_ns();
                let start = Instant::now();
                let mut sent = 0u64;
                if a.idle {
                    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
                } else {
                    // Each node's heartbeats at its own phase within the
                    // interval, as independent processes would be.
                    let slot = a.interval / a.nodes as u32;
                    let mut tick = tokio::time::interval(slot);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut seq = 0u64;
                    let mut beat = [0u8; 40];
                    while start.elapsed() < Duration::from_secs(a.seconds) {
                        tick.tick().await;
                        let i = (seq % a.nodes as u64) as usize;
                        beat[..8].copy_from_slice(&seq.to_be_bytes());
                        for j in observers(i) {
                            transports[i].send_datagram(&peers[j], &beat).unwrap();
                            sent += 1;
                        }
                        seq += 1;
                    }
                    // Let the last ones arrive and be acknowledged.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let cpu = cpu_ns() - cpu0;
                let wall = start.elapsed();
                let (tx1, _) = packets(&transports);
                let got = received.get() - got0;
                let packets = tx1 - tx0;
                println!(
                    "nodes {} observers {} interval {:?} seconds {} ack_frequency {} idle {}",
                    a.nodes, a.observers, a.interval, a.seconds, a.ack_frequency, a.idle
                );
                println!(
                    "heartbeats: {sent} sent, {got} received; UDP packets {packets} ({:.2} per heartbeat)",
                    packets as f64 / sent.max(1) as f64
                );
                println!(
                    "CPU: {:.3} ms total, {:.1} us per heartbeat (send + receive + ACKs), {:.3} ms per node per second ({:.4} % of a core)",
                    cpu as f64 / 1e6,
                    cpu as f64 / 1e3 / sent.max(1) as f64,
                    cpu as f64 / 1e6 / a.nodes as f64 / wall.as_secs_f64(),
                    cpu as f64 / 1e7 / a.nodes as f64 / wall.as_secs_f64()
                );
                println!(
                    "RSS KiB: start {rss_start}, runtime {rss_runtime}, first endpoint {rss_after_first}, all {} endpoints connected {}",
                    a.nodes,
                    rss_kib()
                );
            })
            .await;
    });
}
