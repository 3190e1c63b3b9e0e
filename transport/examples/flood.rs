//! A handshake flood against a node while two members exchange
//! heartbeats and messages with it: what the flood costs and whether the
//! members notice.
//!
//! Target (issue 17): at least 2,000 unauthenticated handshakes per second
//! for 60 s from loopback, with heartbeats between members continuing at
//! bounded latency and no member connection lost.
//!
//! Run: `cargo run -p phimon-transport --release --example flood -- [SECONDS] [RATE]`

#![allow(clippy::unwrap_used, missing_docs)] // A measurement tool: failing loudly is fine.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use phimon_gossip::NodeId;
use phimon_transport::flood::{FloodConfig, flood};
use phimon_transport::tls::generate_dev_certs;
use phimon_transport::{Channel, HandshakeRefusal, Peer, Transport, TransportConfig};

fn config(dir: &Path, id: &str) -> TransportConfig {
    TransportConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join(format!("{id}.pem")),
        key_pem_path: dir.join(format!("{id}.key")),
        cluster_name: "flood".into(),
        node_id: Some(id.into()),
        ..TransportConfig::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let rate: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    generate_dev_certs(dir.path(), "flood", &["victim".into(), "member".into()], 1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (victim, mut v_rx) = Transport::bind(config(dir.path(), "victim")).unwrap();
        let (member, mut m_rx) = Transport::bind(config(dir.path(), "member")).unwrap();
        let to_victim = Peer {
            node_id: Some(NodeId::from("victim")),
            addr: victim.local_addr().to_string(),
        };
        member.send_datagram(&to_victim, b"hello").unwrap();
        v_rx.recv().await.unwrap();
        let target = victim.local_addr();
        // The flooder gets its own thread and runtime, like a separate
        // attacker process.
        let flooder = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut cfg = FloodConfig::new(target, Duration::from_secs(secs));
            cfg.rate = rate;
            cfg.sources = (2..6).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect();
            cfg.ports_per_source = 4;
            rt.block_on(flood(cfg)).unwrap()
        });
        let base = Instant::now();
        let mut latencies = Vec::new();
        let mut msg_latencies = Vec::new();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let by_id = Peer {
            node_id: Some(NodeId::from("member")),
            addr: String::new(),
        };
        let cpu0 = cpu_time();
        while base.elapsed() < Duration::from_secs(secs) {
            tokio::select! {
                _ = tick.tick() => {
                    let stamp = base.elapsed().as_nanos() as u64;
                    member.send_datagram(&to_victim, &stamp.to_be_bytes()).unwrap();
                    victim.send_datagram(&by_id, &stamp.to_be_bytes()).unwrap();
                    sent += 2;
                    if sent % 20 == 0 {
                        member.send_message(&to_victim, stamp.to_be_bytes().to_vec()).unwrap();
                    }
                }
                Some(r) = v_rx.recv() => record(&r, base, &mut latencies, &mut msg_latencies),
                Some(r) = m_rx.recv() => record(&r, base, &mut latencies, &mut msg_latencies),
            }
        }
        let cpu = cpu_time() - cpu0;
        let report = flooder.join().unwrap();
        latencies.sort();
        msg_latencies.sort();
        let s = victim.snapshot();
        println!(
            "flood: {} handshakes in {:.1} s = {:.0}/s; refused {}, timed out {}, other {}",
            report.started,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.refused,
            report.timed_out,
            report.other
        );
        println!(
            "victim: auth failures {:?}; refusals {:?}; connections open {}; handshake failures {}",
            s.auth_failures_by_reason
                .iter()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>(),
            HandshakeRefusal::ALL
                .iter()
                .map(|r| (r.as_str(), s.refusals(*r)))
                .collect::<Vec<_>>(),
            s.connections_open,
            s.handshake_failures
        );
        println!(
            "member heartbeats: {} sent, {} received; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            sent,
            latencies.len(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        println!(
            "member messages: {} received; latency p50 {:.2} ms, max {:.2} ms",
            msg_latencies.len(),
            percentile(&msg_latencies, 0.5).as_secs_f64() * 1e3,
            msg_latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        println!(
            "victim + member process CPU (both endpoints, one thread): {:.1} % of a core",
            cpu.as_secs_f64() / secs as f64 * 100.0
        );
    });
}

fn record(
    r: &phimon_transport::Received,
    base: Instant,
    datagrams: &mut Vec<Duration>,
    messages: &mut Vec<Duration>,
) {
    let Ok(b) = <[u8; 8]>::try_from(&r.payload[..]) else {
        return;
    };
    let sent = Duration::from_nanos(u64::from_be_bytes(b));
    let lat = (r.received_at - base).saturating_sub(sent);
    match r.channel {
        Channel::Datagram => datagrams.push(lat),
        Channel::Message => messages.push(lat),
    }
}

/// CPU time of the calling thread.
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // utime and stime are fields 14 and 15, after the parenthesised name.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks: u64 = f.iter().sum();
    Duration::from_millis(ticks * 10)
}
