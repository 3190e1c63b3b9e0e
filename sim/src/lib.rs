//! A deterministic simulator of a phimon fleet: N real sans-IO nodes
//! ([`phimon_node::Node`]: protocol core and alert engine) on one virtual
//! clock, with datagram loss, latency, partitions, crashes, restarts and
//! stalls.
//!
//! - [`Cluster`]: the harness. Scenario tests script it (crash, cut,
//!   advance, assert) and never sleep.
//! - [`run`]: the measured run behind `phimon simulate`: a settled fleet,
//!   crashes spread over the run, and a [`Report`] of bytes per node per
//!   round (heartbeats and gossip), detection (crash until every live node
//!   suspects), dissemination (the observers' quorum until 99 % and 100 %
//!   of live nodes know), false suspicions, peak memory and wall time.
//!
//! Records are signed with [`phimon_gossip::SharedSecretAuthority`] (a
//! hash, sized like a certificate chain and signature on the wire); the
//! cost of real signatures is measured by the transport's benchmarks.
//! Single-threaded and seeded: the same configuration gives the same
//! report, `wall_ms` and `peak_rss_bytes` aside. No IO but reading
//! `/proc/self/status` for the peak memory.

mod cluster;

pub use cluster::{Cluster, ClusterConfig, Logged, PACKET_OVERHEAD, Traffic, address, node_id};

use phimon_detector::DetectorConfig;
use phimon_gossip::{Event, GossipConfig, Status};
use phimon_node::{AlertConfig, NodeConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Settings of one measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Nodes (at least 2).
    pub nodes: usize,
    /// Simulated time, in intervals ("rounds").
    pub rounds: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Push fanout.
    pub fanout: usize,
    /// Observers per node.
    pub observers: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Nodes crashed (kill -9) during the run, spread between
    /// `first_crash` and 30 rounds before the end.
    pub crashes: usize,
    /// Round of the first crash: detectors have that much history.
    pub first_crash: u64,
    /// Heartbeat interval.
    pub interval: Duration,
    /// One-way latency, uniform between these.
    pub latency: (Duration, Duration),
    /// Detector settings.
    pub detector: DetectorConfig,
    /// Suspicion threshold.
    pub threshold: f64,
    /// Resolve threshold.
    pub resolve_threshold: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        let g = GossipConfig::default();
        SimConfig {
            nodes: 1000,
            rounds: 300,
            loss: 0.01,
            fanout: g.fanout,
            observers: g.observers,
            seed: 1,
            crashes: 5,
            first_crash: 60,
            interval: g.interval,
            latency: (Duration::from_micros(200), Duration::from_millis(1)),
            detector: g.detector,
            threshold: g.threshold,
            resolve_threshold: g.resolve_threshold,
        }
    }
}

/// What a run measured. Times are in rounds (intervals).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Nodes simulated.
    pub nodes: usize,
    /// Rounds simulated.
    pub rounds: u64,
    /// Datagram loss.
    pub loss: f64,
    /// Push fanout.
    pub fanout: usize,
    /// Observers per node.
    pub observers: usize,
    /// Rounds from a dead node's observers' quorum until every live node
    /// knows it is suspected: median over crashes.
    pub propagation_rounds_p50: f64,
    /// Same, 99th percentile over crashes.
    pub propagation_rounds_p99: f64,
    /// Rounds from the quorum until 99 % of live nodes know: worst crash.
    pub reach99_rounds_max: f64,
    /// log2(N) + 4: the target for `reach99_rounds_max`.
    pub reach99_rounds_target: f64,
    /// Frame bytes (heartbeats and gossip) sent per node per round.
    pub bytes_per_node_per_round: f64,
    /// Of which heartbeats.
    pub heartbeat_bytes_per_node_per_round: f64,
    /// Of which probes, summaries, digests and records.
    pub gossip_bytes_per_node_per_round: f64,
    /// Frame bytes plus [`PACKET_OVERHEAD`] per frame.
    pub wire_bytes_per_node_per_round: f64,
    /// Datagrams sent per node per round.
    pub datagrams_per_node_per_round: f64,
    /// Messages sent per node per round.
    pub messages_per_node_per_round: f64,
    /// Share of all frame bytes that are record signatures and credentials.
    pub signature_bytes_share: f64,
    /// Rounds from a crash until every live node suspects it: median.
    pub detection_rounds_p50: f64,
    /// Same, 99th percentile.
    pub detection_rounds_p99: f64,
    /// Rounds from a crash until each of its observers suspects it:
    /// median over observers and crashes.
    pub observer_detection_rounds_p50: f64,
    /// Nodes crashed.
    pub crashes: usize,
    /// Crashes some live node did not suspect by the end.
    pub undetected: usize,
    /// Fleet statuses `suspected` given to live nodes, at any node.
    pub false_suspicions: u64,
    /// Single observers' suspicions of live nodes (no quorum).
    pub false_local_suspicions: u64,
    /// `suspected` pages sent (every crash should page once).
    pub pages: u64,
    /// Frames a node refused (never expected).
    pub frames_rejected: u64,
    /// Frames and bytes sent, by frame kind.
    pub frames_by_kind: std::collections::BTreeMap<&'static str, (u64, u64)>,
    /// Peak resident memory of the process, bytes (0 where unknown).
    pub peak_rss_bytes: u64,
    /// Wall-clock time of the run, milliseconds.
    pub wall_ms: u64,
}

#[derive(Default)]
struct Tally {
    /// Per crashed node: when each node first saw it suspected.
    seen: HashMap<u32, HashMap<u32, u64>>,
    /// Per crashed node: when its observers suspected it.
    verdicts: HashMap<u32, Vec<u64>>,
    false_suspicions: u64,
    false_local: u64,
    pages: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A quantile (nearest rank) of `v`; 0 for none.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Peak resident memory of this process (Linux), bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs one measured simulation.
pub fn run(cfg: &SimConfig) -> Report {
    let started = Instant::now();
    let n = cfg.nodes.max(2);
    let node = NodeConfig {
        gossip: GossipConfig {
            cluster: "sim".into(),
            interval: cfg.interval,
            fanout: cfg.fanout,
            observers: cfg.observers,
            detector: cfg.detector.clone(),
            threshold: cfg.threshold,
            resolve_threshold: cfg.resolve_threshold,
            heartbeat_events: false,
            ..GossipConfig::default()
        },
        alert: AlertConfig {
            cluster: "sim".into(),
            threshold: cfg.threshold,
            ..AlertConfig::default()
        },
    };
    let mut cluster = Cluster::settled(
        n,
        ClusterConfig {
            node,
            latency: cfg.latency,
            loss: cfg.loss,
            seed: cfg.seed,
            record: false,
        },
    );
    let tally = Rc::new(RefCell::new(Tally::default()));
    let t = tally.clone();
    cluster.on_log(move |c, now, _at, logged| {
        let mut t = t.borrow_mut();
        match logged {
            Logged::Event(Event::Status {
                node,
                to: Status::Suspected,
                ..
            }) => {
                let Some(v) = c.index_of(node).map(|v| v as u32) else {
                    return;
                };
                if c.crashed_at(v).is_some() {
                    t.seen.entry(v).or_default().entry(_at).or_insert(now);
                } else {
                    t.false_suspicions += 1;
                }
            }
            Logged::Event(Event::Verdict {
                subject,
                suspected: true,
                ..
            }) => {
                let Some(v) = c.index_of(subject).map(|v| v as u32) else {
                    return;
                };
                if c.crashed_at(v).is_some() {
                    t.verdicts.entry(v).or_default().push(now);
                } else {
                    t.false_local += 1;
                }
            }
            Logged::Alert(a) if a.kind == phimon_node::EventKind::Suspected => {
                t.pages += 1;
                if std::env::var_os("PHIMON_SIM_PAGES").is_some() {
                    eprintln!(
                        "page at {now} us by {}: {:?} {} {:?} gen {} incident {}",
                        a.observer, a.scope, a.subject, a.nodes, a.generation, a.incident_id
                    );
                }
            }
            _ => {}
        }
    });
    // Crashes spread between `first_crash` and 30 rounds before the end,
    // so each has time to be detected everywhere.
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
    let interval = micros(cfg.interval);
    let end = cfg.rounds * interval;
    let from = cfg.first_crash.min(cfg.rounds) * interval;
    let to = end.saturating_sub(30 * interval).max(from);
    let mut victims: Vec<(u64, u32)> = Vec::new();
    let count = cfg.crashes.min(n / 2);
    while victims.len() < count {
        let v = rng.random_range(0..n as u32);
        if victims.iter().any(|(_, x)| *x == v) {
            continue;
        }
        let k = victims.len() as u64;
        let at = if count > 1 {
            from + (to - from) * k / (count as u64 - 1)
        } else {
            from
        } + rng.random_range(0..interval);
        victims.push((at, v));
    }
    let mut crashes: Vec<(u32, u64)> = Vec::new();
    for (at, v) in victims {
        let now = cluster.now().as_micros();
        cluster.run_for(Duration::from_micros(at.saturating_sub(now)));
        let when = cluster.now().as_micros();
        cluster.crash(v as usize);
        crashes.push((v, when));
    }
    let now = cluster.now().as_micros();
    cluster.run_for(Duration::from_micros(end.saturating_sub(now)));
    let t = tally.borrow();
    report(cfg, &cluster, &t, &crashes, n, started)
}

fn report(
    cfg: &SimConfig,
    c: &Cluster,
    t: &Tally,
    crashes: &[(u32, u64)],
    n: usize,
    started: Instant,
) -> Report {
    let interval = micros(cfg.interval) as f64;
    let rounds = cfg.rounds.max(1) as f64;
    let per = |x: u64| x as f64 / (n as f64 * rounds);
    let traffic = c.traffic();
    let total = traffic.bytes();
    let frames = traffic.datagrams + traffic.messages;
    let live: Vec<u32> = c.up().into_iter().map(|i| i as u32).collect();
    let (mut detection, mut propagation, mut obs) = (Vec::new(), Vec::new(), Vec::new());
    let mut reach99: f64 = 0.0;
    let mut undetected = 0;
    let empty = HashMap::new();
    for &(v, at) in crashes {
        let by = t.seen.get(&v).unwrap_or(&empty);
        let mut seen: Vec<u64> = live.iter().filter_map(|i| by.get(i).copied()).collect();
        if seen.len() < live.len() || seen.is_empty() {
            undetected += 1;
            continue;
        }
        seen.sort_unstable();
        let quorum = by.values().copied().min().unwrap_or(at);
        let last = seen.last().copied().unwrap_or(quorum);
        detection.push((last - at) as f64 / interval);
        propagation.push((last - quorum) as f64 / interval);
        let k99 = ((seen.len() as f64 * 0.99).ceil() as usize).clamp(1, seen.len());
        reach99 = reach99.max((seen[k99 - 1] - quorum) as f64 / interval);
        if let Some(vs) = t.verdicts.get(&v) {
            obs.extend(vs.iter().map(|x| (x - at) as f64 / interval));
        }
    }
    Report {
        nodes: n,
        rounds: cfg.rounds,
        loss: cfg.loss,
        fanout: cfg.fanout,
        observers: cfg.observers,
        propagation_rounds_p50: quantile(&propagation, 0.5),
        propagation_rounds_p99: quantile(&propagation, 0.99),
        reach99_rounds_max: reach99,
        reach99_rounds_target: (n as f64).log2() + 4.0,
        bytes_per_node_per_round: per(total),
        heartbeat_bytes_per_node_per_round: per(traffic.of("heartbeat").1),
        gossip_bytes_per_node_per_round: per(total - traffic.of("heartbeat").1),
        wire_bytes_per_node_per_round: per(total + frames * PACKET_OVERHEAD),
        datagrams_per_node_per_round: per(traffic.datagrams),
        messages_per_node_per_round: per(traffic.messages),
        signature_bytes_share: if total == 0 {
            0.0
        } else {
            traffic.signature_bytes as f64 / total as f64
        },
        detection_rounds_p50: quantile(&detection, 0.5),
        detection_rounds_p99: quantile(&detection, 0.99),
        observer_detection_rounds_p50: quantile(&obs, 0.5),
        crashes: crashes.len(),
        undetected,
        false_suspicions: t.false_suspicions,
        false_local_suspicions: t.false_local,
        pages: t.pages,
        frames_rejected: c.rejected(),
        frames_by_kind: traffic.by_kind.clone(),
        peak_rss_bytes: peak_rss(),
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_fleet_detects_and_pages_its_crashes_without_false_suspicions() {
        let cfg = SimConfig {
            nodes: 50,
            rounds: 150,
            crashes: 3,
            first_crash: 40,
            ..SimConfig::default()
        };
        let r = run(&cfg);
        assert_eq!(r.crashes, 3, "{r:?}");
        assert_eq!(r.undetected, 0, "{r:?}");
        assert_eq!(r.pages, 3, "one page per crash: {r:?}");
        assert_eq!(r.false_suspicions, 0, "{r:?}");
        assert_eq!(r.frames_rejected, 0, "{r:?}");
        assert!(
            r.detection_rounds_p99 > 1.0 && r.detection_rounds_p99 < 30.0,
            "{r:?}"
        );
        assert!(r.reach99_rounds_max <= r.reach99_rounds_target, "{r:?}");
        // Settled, a node sends about k heartbeats and one probe a round.
        assert!(r.datagrams_per_node_per_round < 5.0, "{r:?}");
        // Same seed, same report.
        let again = run(&cfg);
        let strip = |r: Report| Report {
            wall_ms: 0,
            peak_rss_bytes: 0,
            ..r
        };
        assert_eq!(strip(again), strip(r));
    }
}
