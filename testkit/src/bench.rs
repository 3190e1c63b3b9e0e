//! `phimon-dev bench`: what a user sees first, measured on real
//! processes. N `phimon run` children on loopback with default settings
//! idle for a while; their CPU and memory are read from `/proc`; then one
//! is killed with SIGKILL and the time until each other node shows it
//! suspected is measured, apart for its observers (the nodes that receive
//! its heartbeats) and for the rest of the fleet.

use crate::local_cluster::{ClusterSpec, LocalCluster};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    /// Nodes.
    pub nodes: usize,
    /// How long the fleet idles before the kill; CPU is measured over it,
    /// after the first `warmup`.
    pub idle: Duration,
    /// Left out of the CPU figures: start-up and joining.
    pub warmup: Duration,
    /// Heartbeat interval.
    pub interval: Duration,
    /// Longest wait for the victim to be suspected everywhere.
    pub detect_limit: Duration,
    /// Nodes killed, one after the other (each once the previous one is
    /// suspected everywhere, at a random phase of its heartbeats), so the
    /// detection figures are medians over kills rather than one kill's
    /// luck of phase.
    pub kills: usize,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            nodes: 20,
            idle: Duration::from_secs(40),
            warmup: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            detect_limit: Duration::from_secs(30),
            kills: 1,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Nodes.
    pub nodes: usize,
    /// CPU per node while idle, percent of one core: mean, min, max.
    pub cpu_percent: (f64, f64, f64),
    /// CPU per node while idle, milliseconds of CPU per second.
    pub cpu_ms_per_s: f64,
    /// Resident memory per node, MiB: mean and max.
    pub rss_mib: (f64, f64),
    /// Seconds from a kill until each of the victim's observers showed
    /// it suspected, sorted, over all kills.
    pub detection_at_observers: Vec<f64>,
    /// Seconds from a kill until each other node showed it suspected,
    /// sorted, over all kills.
    pub detection_elsewhere: Vec<f64>,
    /// Per kill, the median at the victim's observers and elsewhere.
    pub per_kill: Vec<(f64, f64)>,
    /// Live nodes that did not show it suspected within the limit.
    pub undetected: usize,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl BenchReport {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        let stat = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "p50 {:.2} s, max {:.2} s ({} nodes)",
                    median(v),
                    v.iter().copied().fold(f64::MIN, f64::max),
                    v.len()
                )
            }
        };
        format!(
            "phimon, {} nodes, default settings\n\
             CPU per node          mean {:.3} % of a core (min {:.3}, max {:.3}), {:.2} ms/s\n\
             RSS per node          mean {:.1} MiB (max {:.1})\n\
             kill -9 -> suspected  at its observers: {}\n\
             \x20                     elsewhere:        {}\n\
             \x20                     undetected:       {}\n\
             \x20                     per kill (observers / elsewhere p50): {}\n",
            self.nodes,
            self.cpu_percent.0,
            self.cpu_percent.1,
            self.cpu_percent.2,
            self.cpu_ms_per_s,
            self.rss_mib.0,
            self.rss_mib.1,
            stat(&self.detection_at_observers),
            stat(&self.detection_elsewhere),
            self.undetected,
            self.per_kill
                .iter()
                .map(|(o, e)| format!("{o:.2}/{e:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// CPU seconds of process `pid` so far: the scheduler's nanosecond
/// run time of its threads (`/proc/PID/task/*/schedstat`), where
/// `/proc/PID/stat` counts in 10 ms ticks, a third of what an idle node
/// uses in a 30 s window. Falls back to `stat` without schedstats.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    match schedstat_seconds(pid) {
        Some(s) => Ok(s),
        None => stat_seconds(pid),
    }
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// User + system CPU seconds of process `pid` so far, in ticks.
fn stat_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command may hold spaces or parentheses: fields start after the
    // last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let (utime, stime) = (tick(11), tick(12));
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    let hz = 100.0;
    match (utime, stime) {
        (Some(u), Some(s)) => Ok((u + s) / hz),
        _ => anyhow::bail!("unexpected /proc/{pid}/stat"),
    }
}

/// Resident memory of process `pid`, MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// Runs the benchmark with the `phimon` binary `bin` in `dir`.
pub async fn run(bin: &Path, dir: &Path, spec: &BenchSpec) -> anyhow::Result<BenchReport> {
    let cluster_spec = ClusterSpec {
        nodes: spec.nodes,
        cluster: "bench".into(),
        interval: spec.interval,
        ..ClusterSpec::default()
    };
    let mut c = LocalCluster::create(bin, dir, &cluster_spec)?;
    c.start_all()?;
    let started = Instant::now();
    c.wait_converged(Duration::from_secs(60)).await?;
    let pids: Vec<u32> = c.nodes.iter().filter_map(|n| n.pid()).collect();
    anyhow::ensure!(pids.len() == spec.nodes, "not every node is running");
    tokio::time::sleep(spec.warmup.saturating_sub(started.elapsed())).await;
    let t0 = Instant::now();
    let c0 = pids
        .iter()
        .map(|&p| cpu_seconds(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(spec.idle.saturating_sub(started.elapsed())).await;
    let c1 = pids
        .iter()
        .map(|&p| cpu_seconds(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = c0
        .iter()
        .zip(&c1)
        .map(|(a, b)| (b - a) / wall * 100.0)
        .collect();
    let rss = pids
        .iter()
        .map(|&p| rss_mib(p))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut at_observers = Vec::new();
    let mut elsewhere = Vec::new();
    let mut per_kill = Vec::new();
    let mut undetected = 0;
    let mut dead: Vec<usize> = Vec::new();
    for k in 0..spec.kills.max(1) {
        // Victims spread over the fleet, never node 0 (whose view names
        // the observers).
        let victim = 1 + (spec.nodes / 2 + k * spec.nodes / spec.kills.max(1)) % (spec.nodes - 1);
        if dead.contains(&victim) {
            continue;
        }
        if k > 0 {
            // A random phase of the victim's heartbeats, after the fleet
            // settled from the previous kill.
            let phase = Duration::from_millis(rand::random::<u64>() % 1000);
            tokio::time::sleep(Duration::from_secs(3) + phase).await;
        }
        let victim_id = c.nodes[victim].id.clone();
        let observers: Vec<String> = c
            .peers(0)
            .await?
            .into_iter()
            .find(|p| p.node_id == victim_id)
            .map(|p| p.observers)
            .unwrap_or_default();
        c.kill(victim)?;
        dead.push(victim);
        let killed = Instant::now();
        let mut seen: BTreeMap<usize, f64> = BTreeMap::new();
        let others: Vec<usize> = (0..spec.nodes).filter(|i| !dead.contains(i)).collect();
        while seen.len() < others.len() && killed.elapsed() < spec.detect_limit {
            let pending: Vec<usize> = others
                .iter()
                .copied()
                .filter(|i| !seen.contains_key(i))
                .collect();
            let views = c.peers_of(&pending).await;
            let at = killed.elapsed().as_secs_f64();
            for (i, peers) in pending.into_iter().zip(views) {
                if peers.iter().any(|p| p.node_id == victim_id && p.suspected) {
                    seen.insert(i, at);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        undetected += others.len() - seen.len();
        let (mut obs, mut rest) = (Vec::new(), Vec::new());
        for (&i, &t) in &seen {
            if observers.contains(&c.nodes[i].id) {
                obs.push(t);
            } else {
                rest.push(t);
            }
        }
        per_kill.push((median(&obs), median(&rest)));
        at_observers.extend(obs);
        elsewhere.extend(rest);
    }
    at_observers.sort_by(f64::total_cmp);
    elsewhere.sort_by(f64::total_cmp);
    let n = cpu.len() as f64;
    let mean = cpu.iter().sum::<f64>() / n;
    Ok(BenchReport {
        nodes: spec.nodes,
        cpu_percent: (
            mean,
            cpu.iter().copied().fold(f64::MAX, f64::min),
            cpu.iter().copied().fold(f64::MIN, f64::max),
        ),
        cpu_ms_per_s: mean * 10.0,
        rss_mib: (
            rss.iter().sum::<f64>() / rss.len() as f64,
            rss.iter().copied().fold(f64::MIN, f64::max),
        ),
        detection_at_observers: at_observers,
        detection_elsewhere: elsewhere,
        per_kill,
        undetected,
    })
}
