//! Soak: a loopback cluster behind the chaos proxy for a while, and its
//! footprint over time (`phimon-dev soak`, and the CI-sized run of the
//! end-to-end tests).
//!
//! Every node is a real `phimon run` process. The report samples, per
//! period, each process's CPU (from `/proc/<pid>/stat`) and resident
//! memory (`/proc/<pid>/status`), and at the end the heartbeats
//! processed, gossip bytes and pages from each node's `/metrics`. It fails
//! when resident memory keeps growing or a live node was paged.

use crate::chaos::{ChaosProxy, LinkFaults};
use crate::local_cluster::metric;
use crate::local_cluster::{ClusterSpec, LocalCluster};
use crate::sink::WebhookSink;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to soak.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakSpec {
    /// Number of nodes (2..=200; default 30).
    pub nodes: usize,
    /// How long to run after the cluster converged (at least 5 s;
    /// default 10 min).
    pub duration: Duration,
    /// Heartbeat (gossip) interval (default 1 s).
    pub interval: Duration,
    /// Random loss on every link, in [0, 1) (default 0.05).
    pub loss: f64,
    /// One-way delay on every link, ms; jitter is half of it (default 20).
    pub delay_ms: u64,
    /// Number of samples in the report (at least 1; default 10).
    pub samples: u32,
}

impl Default for SoakSpec {
    fn default() -> Self {
        SoakSpec {
            nodes: 30,
            duration: Duration::from_secs(600),
            interval: Duration::from_secs(1),
            loss: 0.05,
            delay_ms: 20,
            samples: 10,
        }
    }
}

impl SoakSpec {
    /// The first value out of range, said as a user would fix it.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=200).contains(&self.nodes) {
            return Err(format!("--nodes must be 2..=200, got {}", self.nodes));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(format!("--loss must be in [0, 1), got {}", self.loss));
        }
        if self.samples == 0 || self.duration < Duration::from_secs(5) {
            return Err("--samples must be > 0 and --duration at least 5s".into());
        }
        Ok(())
    }
}

/// Linux reports CPU time in /proc in USER_HZ ticks, fixed at 100.
const USER_HZ: f64 = 100.0;

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 overall, 12 and 13 after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Soaks a cluster of `phimon` binaries `phimon` as `spec` says,
/// writing the report to `out` as it goes; fails when memory grew or a
/// live node was paged. Needs a tokio runtime with timers and IO.
pub async fn run(phimon: &Path, spec: &SoakSpec, out: &mut dyn Write) -> anyhow::Result<()> {
    spec.validate().map_err(anyhow::Error::msg)?;
    let args = spec;
    let dir = tempfile::Builder::new().prefix("phimon-soak-").tempdir()?;
    let spec0 = ClusterSpec::default();
    let sink = WebhookSink::start(SocketAddr::from(([127, 0, 0, 1], 0)), &spec0.secret).await?;
    let proxy = ChaosProxy::bind(args.nodes, 7).await?;
    let spec = ClusterSpec {
        nodes: args.nodes,
        interval: args.interval,
        webhook_url: Some(sink.url()),
        fronts: Some(proxy.fronts().to_vec()),
        ..spec0
    };
    let mut c = LocalCluster::create(phimon, dir.path(), &spec)?;
    proxy.set_backends(&c.listen_addrs());
    proxy.set_all(LinkFaults {
        loss: args.loss,
        delay: Duration::from_millis(args.delay_ms),
        jitter: Duration::from_millis(args.delay_ms / 2),
        ..LinkFaults::default()
    });
    c.start_all()?;
    let converged = c.wait_converged(Duration::from_secs(120)).await?;
    writeln!(
        out,
        "{} nodes converged in {:.1} s; soaking {} at {:.0}% loss, {} ms ± {} ms",
        args.nodes,
        converged.as_secs_f64(),
        humantime::format_duration(args.duration),
        args.loss * 100.0,
        args.delay_ms,
        args.delay_ms / 2
    )?;
    let pids: Vec<u32> = c.nodes.iter().filter_map(|n| n.pid()).collect();
    let period = args.duration / args.samples;
    writeln!(
        out,
        "{:>8}  {:>9}  {:>9}  {:>10}  {:>10}",
        "t", "cpu_mean%", "cpu_max%", "rss_mean_MB", "rss_max_MB"
    )?;
    let start = Instant::now();
    let mut last: Vec<Option<u64>> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let mut rss_series = Vec::new();
    for _ in 0..args.samples {
        tokio::time::sleep(period).await;
        let mut cpu = Vec::new();
        let mut rss = Vec::new();
        for (i, &pid) in pids.iter().enumerate() {
            let now = cpu_ticks(pid);
            if let (Some(a), Some(b)) = (last[i], now) {
                cpu.push((b.saturating_sub(a)) as f64 / USER_HZ / period.as_secs_f64() * 100.0);
            }
            last[i] = now;
            if let Some(r) = rss_kib(pid) {
                rss.push(r as f64 / 1024.0);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        writeln!(
            out,
            "{:>7.0}s  {:>9.2}  {:>9.2}  {:>10.1}  {:>10.1}",
            start.elapsed().as_secs_f64(),
            mean(&cpu),
            max(&cpu),
            mean(&rss),
            max(&rss)
        )?;
        rss_series.push(mean(&rss));
    }
    let (mut heartbeats, mut bytes_out, mut sent) = (0.0, 0.0, 0.0);
    for i in 0..c.nodes.len() {
        let m = c.get(i, "/metrics").await.unwrap_or_default();
        heartbeats += metric(&m, "phimon_heartbeats_received_total");
        bytes_out += m
            .lines()
            .filter(|l| l.starts_with("phimon_gossip_bytes_total") && l.contains("sent"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        sent += metric(&m, "phimon_alerts_sent_total");
    }
    let secs = start.elapsed().as_secs_f64() + converged.as_secs_f64();
    let (dgrams, dropped, _) = proxy.totals();
    let pages = sink.pages();
    writeln!(out)?;
    writeln!(
        out,
        "heartbeats processed  {heartbeats:.0} ({:.0}/s across the cluster)",
        heartbeats / secs
    )?;
    writeln!(
        out,
        "gossip bytes sent     {:.1} MB ({:.0} B/s per node)",
        bytes_out / 1e6,
        bytes_out / secs / args.nodes as f64
    )?;
    writeln!(out, "datagrams via proxy   {dgrams} ({dropped} dropped)")?;
    writeln!(
        out,
        "pages delivered       {} (alerts_sent_total {sent:.0})",
        pages.len()
    )?;
    // Flat memory: the last third of the run may not grow more than 5 MB
    // (or 10 %) above the level reached at one third.
    let third = rss_series.len() / 3;
    let baseline = rss_series.get(third).copied().unwrap_or(0.0);
    let end = rss_series.last().copied().unwrap_or(0.0);
    let growth = end - baseline;
    let flat = growth <= (baseline * 0.10).max(5.0);
    writeln!(
        out,
        "rss growth after warm-up {growth:+.1} MB: {}",
        if flat { "flat" } else { "GROWING" }
    )?;
    let suspected: Vec<_> = pages.iter().filter(|p| p.event == "suspected").collect();
    writeln!(out, "false suspected pages {}", suspected.len())?;
    if flat && suspected.is_empty() {
        writeln!(out, "result: ok")?;
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "soak failed: rss growth {growth:+.1} MB, {} false pages",
            suspected.len()
        ))
    }
}
