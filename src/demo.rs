//! `phimon demo`: a local cluster of real `phimon run` processes that shows
//! a failure being detected and paged.
//!
//! Certificates, configs and data go to a temporary directory; a local
//! webhook receiver verifies each page's signature. The demo kills one
//! node with SIGKILL, shows phi climbing past the threshold and the page
//! arriving, restarts the node, shows its new generation and the page
//! that closes the incident, then prints a summary. Ctrl-C kills every child and
//! removes the directory.

use crate::UsageError;
use phimon_exporter::api::{PeerInfo, Status};
use phimon_testkit::local_cluster::{ClusterSpec, LocalCluster};
use phimon_testkit::sink::{Page, WebhookSink};
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Arguments of `phimon demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of nodes (2..=20).
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Time budget: the demo ends when its story is told or after this
    /// long, whichever comes first (e.g. "90s", "2m").
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Heartbeat (gossip) interval of the demo nodes.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Keep the temporary directory (certs, configs, logs) and print its path.
    #[arg(long)]
    pub keep: bool,
}

const THRESHOLD: f64 = 8.0;

/// Runs `phimon demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(2..=20).contains(&args.nodes) {
        return Err(UsageError(format!(
            "--nodes must be between 2 and 20, got {}",
            args.nodes
        ))
        .into());
    }
    if args.duration < Duration::from_secs(5) {
        return Err(UsageError("--duration must be at least 5s".into()).into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tmp = tempfile::Builder::new().prefix("phimon-demo-").tempdir()?;
        let dir = tmp.path().to_owned();
        let outcome = tokio::select! {
            r = story(&args, &dir) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ninterrupted: stopping every node and removing {}", dir.display());
                Err(anyhow::anyhow!("interrupted"))
            }
        };
        // `story` owns the cluster: by now every child has been killed.
        if args.keep {
            let kept = tmp.keep();
            println!("kept {}", kept.display());
        }
        outcome
    })
}

/// What happened, for the summary.
#[derive(Default)]
struct Findings {
    converged: Option<Duration>,
    first_suspect: Option<Duration>,
    all_suspect: Option<Duration>,
    page: Option<(Duration, Page)>,
    new_generation: Option<(u64, u64)>,
    rejoined: Option<Duration>,
    closing_page: Option<Duration>,
}

struct View {
    tty: bool,
    drawn: usize,
    start: Instant,
}

impl View {
    fn event(&mut self, msg: &str) {
        if self.tty && self.drawn > 0 {
            // Drop the table; it is redrawn below the event.
            print!("\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
        println!("[{:>6.1}s] {msg}", self.start.elapsed().as_secs_f64());
    }

    fn table(&mut self, viewpoint: &str, nodes: &[String], peers: &[PeerInfo], down: &[bool]) {
        if !self.tty {
            return;
        }
        let mut out = String::new();
        out.push_str(&format!(
            "  {:<9} {:<8} {:>4} {:>9}  {:<32} {:>9}   (as seen by {viewpoint})\n",
            "node", "status", "gen", "phi", "phi vs threshold 8", "last hb"
        ));
        for (i, id) in nodes.iter().enumerate() {
            if id == viewpoint {
                out.push_str(&format!("  {id:<9} {:<8}\n", "self"));
                continue;
            }
            match peers.iter().find(|p| &p.node_id == id) {
                Some(p) => {
                    let width = 32.0;
                    let fill = ((p.phi / (2.0 * THRESHOLD)).clamp(0.0, 1.0) * width) as usize;
                    let mut bar: Vec<char> = std::iter::repeat_n('#', fill)
                        .chain(std::iter::repeat_n('.', 32 - fill))
                        .collect();
                    bar[16] = if fill > 16 { '#' } else { '|' };
                    let bar: String = bar.into_iter().collect();
                    let colour = if p.suspected { "\x1b[31m" } else { "\x1b[32m" };
                    let status = if down[i] { "killed" } else { p.status.as_str() };
                    out.push_str(&format!(
                        "  {id:<9} {status:<8} {:>4} {colour}{:>9.2}\x1b[0m  {bar} {:>8.1}s\n",
                        p.generation,
                        p.phi.min(1e6),
                        p.last_heartbeat_age_ms / 1000.0
                    ));
                }
                None => out.push_str(&format!(
                    "  {id:<9} {:<8}\n",
                    if down[i] { "killed" } else { "unknown" }
                )),
            }
        }
        if self.drawn > 0 {
            print!("\x1b[{}A\x1b[J", self.drawn);
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        self.drawn = out.lines().count();
    }
}

async fn story(args: &DemoArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut view = View {
        tty: std::io::stdout().is_terminal(),
        drawn: 0,
        start,
    };
    let secret = format!("whsec_{}", base64_of_random());
    let sink = WebhookSink::start(SocketAddr::from(([127, 0, 0, 1], 0)), &secret).await?;
    let spec = ClusterSpec {
        nodes: args.nodes,
        cluster: "demo".into(),
        interval: args.interval,
        threshold: THRESHOLD,
        webhook_url: Some(sink.url()),
        secret,
        ..ClusterSpec::default()
    };
    let bin = std::env::current_exe()?;
    let mut cluster = LocalCluster::create(&bin, dir, &spec)?;
    view.event(&format!(
        "starting {} nodes on 127.0.0.1 (mutual TLS, certs in {}), pages go to {}",
        args.nodes,
        dir.display(),
        sink.url()
    ));
    cluster.start_all()?;
    let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let victim = ids.len() - 1;
    // Shown from the victim's first observer: only its observers receive
    // its heartbeats and so have its phi (chosen once the cluster knows
    // each other).
    let mut viewpoint = 0;
    let mut down = vec![false; ids.len()];
    let mut f = Findings::default();

    let remaining = deadline.saturating_duration_since(Instant::now());
    match cluster
        .wait_converged(remaining.min(Duration::from_secs(45)))
        .await
    {
        Ok(t) => {
            f.converged = Some(t);
            view.event(&format!(
                "all {} nodes see each other as alive after {:.1} s",
                ids.len(),
                t.as_secs_f64()
            ));
        }
        Err(e) => {
            view.event(&format!("{e}"));
            view.event(&format!("log of {}:\n{}", ids[0], cluster.log_tail(0, 20)));
            return finish(&f, &ids, victim, &sink, &view);
        }
    }

    if let Some(first) = cluster
        .peers(0)
        .await
        .ok()
        .and_then(|p| p.into_iter().find(|p| p.node_id == ids[victim]))
        .and_then(|p| p.observers.first().cloned())
    {
        viewpoint = ids.iter().position(|i| *i == first).unwrap_or(0);
    }
    // Let phi settle on a steady rhythm, and let the operator look at it.
    let steady_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < steady_until {
        let peers = cluster.peers(viewpoint).await.unwrap_or_default();
        view.table(&ids[viewpoint], &ids, &peers, &down);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    view.event(&format!(
        "kill -9 {} (pid {})",
        ids[victim],
        cluster.nodes[victim].pid().unwrap_or(0)
    ));
    cluster.kill(victim)?;
    down[victim] = true;
    let killed = Instant::now();
    let generation_before = cluster
        .peers(viewpoint)
        .await
        .ok()
        .and_then(|p| p.into_iter().find(|p| p.node_id == ids[victim]))
        .map(|p| p.generation);

    let mut last_plain = Instant::now();
    // Phase: detection and page.
    while Instant::now() < deadline && f.page.is_none() {
        let mut suspects = 0;
        let mut observers = 0;
        let mut viewpoint_peers = Vec::new();
        for i in (0..ids.len()).filter(|&i| !down[i]) {
            let peers = cluster.peers(i).await.unwrap_or_default();
            observers += 1;
            if peers
                .iter()
                .any(|p| p.node_id == ids[victim] && p.suspected)
            {
                suspects += 1;
            }
            if i == viewpoint {
                viewpoint_peers = peers;
            }
        }
        let since = killed.elapsed();
        if suspects > 0 && f.first_suspect.is_none() {
            f.first_suspect = Some(since);
            view.event(&format!(
                "{} suspected by a majority of its observers (phi >= {THRESHOLD}) {:.2} s after the kill",
                ids[victim],
                since.as_secs_f64()
            ));
        }
        if suspects == observers && f.all_suspect.is_none() {
            f.all_suspect = Some(since);
            view.event(&format!(
                "{} shown suspected by all {observers} live nodes {:.2} s after the kill",
                ids[victim],
                since.as_secs_f64()
            ));
        }
        if let Some(page) = sink
            .pages()
            .into_iter()
            .find(|p| p.event == "suspected" && p.node_id == ids[victim])
        {
            let at = page.received_at.saturating_duration_since(killed);
            view.event(&format!(
                "PAGE received: {} suspected (phi {:.1}, from {}, id {}), signature {}",
                page.node_id,
                page.phi,
                page.observer,
                page.webhook_id,
                if page.signature_valid {
                    "verified"
                } else {
                    "INVALID"
                }
            ));
            f.page = Some((at, page));
        }
        if !view.tty && last_plain.elapsed() >= Duration::from_secs(1) {
            if let Some(p) = viewpoint_peers.iter().find(|p| p.node_id == ids[victim]) {
                view.event(&format!(
                    "{} phi {:.2} (last heartbeat {:.1} s ago, seen by {})",
                    ids[victim],
                    p.phi,
                    p.last_heartbeat_age_ms / 1000.0,
                    ids[viewpoint]
                ));
            }
            last_plain = Instant::now();
        }
        view.table(&ids[viewpoint], &ids, &viewpoint_peers, &down);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if f.page.is_none() {
        view.event("no page arrived within the time budget");
        return finish(&f, &ids, victim, &sink, &view);
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    view.event(&format!("restarting {}", ids[victim]));
    cluster.start(victim)?;
    down[victim] = false;
    let restarted = Instant::now();
    while Instant::now() < deadline && (f.rejoined.is_none() || f.closing_page.is_none()) {
        let peers = cluster.peers(viewpoint).await.unwrap_or_default();
        if f.rejoined.is_none() {
            if let Some(p) = peers.iter().find(|p| p.node_id == ids[victim]) {
                let newer = generation_before.is_none_or(|g| p.generation > g);
                if newer && p.status == Status::Alive && !p.suspected {
                    f.rejoined = Some(restarted.elapsed());
                    f.new_generation = Some((generation_before.unwrap_or(0), p.generation));
                    view.event(&format!(
                        "{} is back as generation {} (was {}), trusted again after {:.2} s",
                        ids[victim],
                        p.generation,
                        generation_before.map_or("?".into(), |g| g.to_string()),
                        restarted.elapsed().as_secs_f64()
                    ));
                }
            }
        }
        if f.closing_page.is_none() {
            // The page about a node that comes back in a new generation is
            // closed by a `restarted` event (a `recovered` one when it comes
            // back in the same generation, after a stall or a partition).
            if let Some(page) = sink.pages().into_iter().find(|p| {
                (p.event == "recovered" || p.event == "restarted") && p.node_id == ids[victim]
            }) {
                f.closing_page = Some(page.received_at.saturating_duration_since(restarted));
                view.event(&format!(
                    "PAGE received: {} {} (id {}), closes the incident, signature {}",
                    page.node_id,
                    page.event,
                    page.webhook_id,
                    if page.signature_valid {
                        "verified"
                    } else {
                        "INVALID"
                    }
                ));
            }
        }
        view.table(&ids[viewpoint], &ids, &peers, &down);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(&f, &ids, victim, &sink, &view)
}

fn base64_of_random() -> String {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn finish(
    f: &Findings,
    ids: &[String],
    victim: usize,
    sink: &WebhookSink,
    view: &View,
) -> anyhow::Result<()> {
    let pages = sink.pages();
    let mut incidents: Vec<&str> = pages.iter().map(|p| p.webhook_id.as_str()).collect();
    incidents.sort();
    incidents.dedup();
    let count = |e: &str| {
        let mut ids: Vec<&str> = pages
            .iter()
            .filter(|p| p.event == e)
            .map(|p| p.webhook_id.as_str())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let all_valid = pages.iter().all(|p| p.signature_valid);
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!();
    println!("summary ({:.1} s)", view.start.elapsed().as_secs_f64());
    println!(
        "  nodes            {} (victim {}, killed with SIGKILL)",
        ids.len(),
        ids[victim]
    );
    println!("  converged        {}", secs(f.converged));
    println!(
        "  detection        {} after the kill (phi >= {THRESHOLD} at a majority of its observers)",
        secs(f.first_suspect)
    );
    println!(
        "  fleet-wide       {} after the kill (every live node shows it suspected)",
        secs(f.all_suspect)
    );
    println!(
        "  page             {} after the kill",
        secs(f.page.as_ref().map(|p| p.0))
    );
    match f.new_generation {
        Some((old, new)) => println!(
            "  restart          generation {old} -> {new}, trusted again {}",
            secs(f.rejoined)
        ),
        None => println!("  restart          -"),
    }
    println!(
        "  closing page     {} after the restart",
        secs(f.closing_page)
    );
    println!(
        "  pages            {} deliveries, {} distinct events (suspected {}, recovered {}, restarted {}), signatures {}",
        pages.len(),
        incidents.len(),
        count("suspected"),
        count("recovered"),
        count("restarted"),
        if all_valid {
            "all verified"
        } else {
            "SOME INVALID"
        }
    );
    let ok = f.page.is_some()
        && f.rejoined.is_some()
        && f.closing_page.is_some()
        && all_valid
        && count("suspected") == 1;
    println!("result: {}", if ok { "ok" } else { "incomplete" });
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the demo did not complete; rerun with --keep to inspect the node logs"
        ))
    }
}
