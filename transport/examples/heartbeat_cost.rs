//! What one heartbeat costs: N endpoints on loopback in one current-thread
//! runtime, each sending a heartbeat-sized datagram to its `k` observers
//! (the next k on a ring) every interval, as the direct-monitoring
//! protocol does. Reports CPU time per heartbeat datagram (the whole
//! process: sending, receiving, quinn's timers and ACKs, the runtime),
//! UDP packets per heartbeat datagram (the transports' socket counters,
//! both directions, QUIC and fast path), CPU per node per second, and the
//! process's RSS.
//!
//! Target (issue 16): CPU per node ≤ chitchat's, ≈ 0.42 ms per second on
//! the reference machine, with each node sending ~3 heartbeats/s and
//! receiving ~3; one UDP packet per heartbeat.
//!
//! Run: `cargo run -p phimon-transport --release --example heartbeat_cost --
//!       [--nodes N] [--observers K] [--interval-ms MS] [--seconds S]
//!       [--no-fast-path] [--no-ack-frequency] [--idle] [--thread-per-node]`
//!
//! `--no-fast-path` sends every datagram as a QUIC datagram (the
//! comparison). By default all nodes share one thread, so one wake-up
//! serves a node's sends and their receptions (loopback delivers them
//! during `sendmsg`); `--thread-per-node` gives each node its own thread
//! and current-thread runtime, so that every reception wakes its node as
//! it would wake a separate process. `--idle` binds the endpoints, connects them, then does
//! nothing for the duration: the RSS and CPU of idle endpoints with
//! connections. CPU comes from /proc/self/task/*/schedstat (nanoseconds on
//! CPU, all threads) and from getrusage (user and system apart).

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
    fast_path: bool,
    idle: bool,
    threads: bool,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 4,
        observers: 3,
        interval: Duration::from_secs(1),
        seconds: 20,
        ack_frequency: true,
        fast_path: true,
        idle: false,
        threads: false,
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
            "--no-fast-path" => a.fast_path = false,
            "--idle" => a.idle = true,
            "--thread-per-node" => a.threads = true,
            other => panic!("unknown flag {other}"),
        }
    }
    a.observers = a.observers.min(a.nodes - 1);
    a
}

fn config(dir: &Path, id: &str, a: &Args) -> TransportConfig {
    TransportConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join(format!("{id}.pem")),
        key_pem_path: dir.join(format!("{id}.key")),
        cluster_name: "bench".into(),
        node_id: Some(id.into()),
        ack_frequency: a.ack_frequency,
        fast_path: a.fast_path,
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

/// User and system CPU of this process, microseconds (getrusage).
fn rusage_us() -> (u64, u64) {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    (us(u.user_time()), us(u.system_time()))
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
    if a.threads {
        return threaded(&a, dir.path(), &ids);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rss_runtime = rss_kib();
        let mut nodes: Vec<(Transport, mpsc::Receiver<Received>)> = Vec::new();
        let mut rss_after_first = 0;
        for id in &ids {
            nodes.push(Transport::bind(config(dir.path(), id, &a)).unwrap());
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
                // Every UDP packet any endpoint wrote: QUIC's (datagrams,
                // ACKs, checks) and the fast path's.
                let packets =
                    |ts: &[Transport]| -> u64 { ts.iter().map(|t| t.snapshot().udp_packets_out).sum() };
                let fast =
                    |ts: &[Transport]| -> u64 { ts.iter().map(|t| t.snapshot().fast_path_out).sum() };
                let tx0 = packets(&transports);
                let fast0 = fast(&transports);
                let got0 = received.get();
                let cpu0 = cpu_ns();
                let (user0, sys0) = rusage_us();
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
                let (user1, sys1) = rusage_us();
                let wall = start.elapsed();
                let got = received.get() - got0;
                let packets = packets(&transports) - tx0;
                let sealed = fast(&transports) - fast0;
                println!(
                    "nodes {} observers {} interval {:?} seconds {} fast_path {} ack_frequency {} idle {}",
                    a.nodes, a.observers, a.interval, a.seconds, a.fast_path, a.ack_frequency, a.idle
                );
                println!(
                    "heartbeats: {sent} sent ({sealed} sealed), {got} received; UDP packets {packets} ({:.3} per heartbeat)",
                    packets as f64 / sent.max(1) as f64
                );
                let (user, sys) = (user1 - user0, sys1 - sys0);
                println!(
                    "getrusage: user {:.3} ms, system {:.3} ms, {:.1} us per heartbeat, {:.3} ms per node per second",
                    user as f64 / 1e3,
                    sys as f64 / 1e3,
                    (user + sys) as f64 / sent.max(1) as f64,
                    (user + sys) as f64 / 1e3 / a.nodes as f64 / wall.as_secs_f64()
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

/// `--thread-per-node`: each node on its own thread and current-thread
/// runtime, sending at its own phase; the main thread only measures.
fn threaded(a: &Args, dir: &Path, ids: &[String]) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut go = Vec::new();
    let mut threads = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let cfg = config(dir, id, a);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<(Vec<Peer>, Instant, Instant)>();
        go.push(go_tx);
        let (bound_tx, sent, received) = (bound_tx.clone(), sent.clone(), received.clone());
        let (n, k, interval, idle) = (a.nodes, a.observers, a.interval, a.idle);
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (t, mut rx) = Transport::bind(cfg).unwrap();
                bound_tx.send((i, t.local_addr(), t.stats())).unwrap();
                // Nothing flows before every node is bound: blocking here
                // only delays this node's first handshake.
                let (peers, start, end) = go_rx.recv().unwrap();
                let counter = received.clone();
                tokio::spawn(async move {
                    while let Some(r) = rx.recv().await {
                        std::hint::black_box(r.received_at);
                        counter.fetch_add(1, Relaxed);
                    }
                });
                let observers: Vec<usize> = (1..=k).map(|d| (i + d) % n).collect();
                for &j in &observers {
                    t.send_datagram(&peers[j], b"hello").unwrap();
                }
                let first = start + interval * i as u32 / n as u32;
                let mut tick = tokio::time::interval_at(first.into(), interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq = 0u64;
                let mut beat = [0u8; 40];
                loop {
                    let at = tick.tick().await.into_std();
                    if idle || at >= end {
                        break;
                    }
                    beat[..8].copy_from_slice(&seq.to_be_bytes());
                    for &j in &observers {
                        t.send_datagram(&peers[j], &beat).unwrap();
                        sent.fetch_add(1, Relaxed);
                    }
                    seq += 1;
                }
                // Keep receiving until the measurement is over.
                tokio::time::sleep_until((end + Duration::from_millis(600)).into()).await;
            });
        }));
    }
    drop(bound_tx);
    let mut bound: Vec<_> = bound_rx.iter().take(a.nodes).collect();
    bound.sort_by_key(|b| b.0);
    let peers: Vec<Peer> = bound
        .iter()
        .zip(ids)
        .map(|((_, addr, _), id)| Peer {
            node_id: Some(NodeId::from(id.as_str())),
            addr: addr.to_string(),
        })
        .collect();
    // Handshakes settle within the first second and a half.
    let start = Instant::now() + Duration::from_millis(1500);
    let end = start + Duration::from_secs(a.seconds);
    for g in &go {
        g.send((peers.clone(), start, end)).unwrap();
    }
    let packets = || -> u64 { bound.iter().map(|b| b.2.snapshot().udp_packets_out).sum() };
    let fast = || -> u64 { bound.iter().map(|b| b.2.snapshot().fast_path_out).sum() };
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let (tx0, fast0, sent0, got0, cpu0, ru0) = (
        packets(),
        fast(),
        sent.load(Relaxed),
        received.load(Relaxed),
        cpu_ns(),
        rusage_us(),
    );
    // Past the end plus the latest arrivals and their ACKs.
    std::thread::sleep(
        (end + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    );
    let (cpu, ru1) = (cpu_ns() - cpu0, rusage_us());
    let wall = Instant::now() - start;
    let (packets, sealed) = (packets() - tx0, fast() - fast0);
    let (sent_n, got) = (sent.load(Relaxed) - sent0, received.load(Relaxed) - got0);
    let rss = rss_kib();
    println!(
        "nodes {} observers {} interval {:?} seconds {} fast_path {} ack_frequency {} idle {} thread_per_node true",
        a.nodes, a.observers, a.interval, a.seconds, a.fast_path, a.ack_frequency, a.idle
    );
    println!(
        "heartbeats: {sent_n} sent ({sealed} sealed), {got} received; UDP packets {packets} ({:.3} per heartbeat)",
        packets as f64 / sent_n.max(1) as f64
    );
    let (user, sys) = (ru1.0 - ru0.0, ru1.1 - ru0.1);
    println!(
        "getrusage: user {:.3} ms, system {:.3} ms, {:.1} us per heartbeat, {:.3} ms per node per second",
        user as f64 / 1e3,
        sys as f64 / 1e3,
        (user + sys) as f64 / sent_n.max(1) as f64,
        (user + sys) as f64 / 1e3 / a.nodes as f64 / wall.as_secs_f64()
    );
    println!(
        "CPU: {:.3} ms total, {:.1} us per heartbeat (send + receive + ACKs), {:.3} ms per node per second ({:.4} % of a core)",
        cpu as f64 / 1e6,
        cpu as f64 / 1e3 / sent_n.max(1) as f64,
        cpu as f64 / 1e6 / a.nodes as f64 / wall.as_secs_f64(),
        cpu as f64 / 1e7 / a.nodes as f64 / wall.as_secs_f64()
    );
    println!("RSS KiB: all {} endpoints connected {rss}", a.nodes);
    for t in threads {
        t.join().unwrap();
    }
}
