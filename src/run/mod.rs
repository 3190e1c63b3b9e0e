//! `phimon run`: the sidecar. Loads the configuration, then drives the
//! sans-IO cores (gossip with its detectors, alert engine) from one tokio
//! task, with the QUIC transport, the HTTP server and webhook delivery
//! running beside it.
//!
//! The driving loop is the only place that reads the clock. On every
//! wake-up it first asks the [`health::StallDetector`] whether the process
//! itself was away (SIGSTOP, blocked loop, paused VM), and if so tells the
//! detectors before any message is processed, so that a stall of the
//! observer is never recorded as a slow peer.

mod generation;
mod health;
mod record;
mod wiring;

use crate::UsageError;
use anyhow::Context as _;
use phimon_alert::{
    AlertEngine, AlertRecord, ClusterView, MemberView, SUSPICIONS_KEY, decode_suspicions,
};
use phimon_config::Config;
use phimon_detector::Timestamp;
use phimon_exporter::{
    HttpState, IntervalHistogram, Metrics, NodeSnapshot, PeerInfo, SharedSnapshot,
};
use phimon_gossip::transport::{Received, Transport};
use phimon_gossip::{Event, Gossip, NodeId};
use phimon_pager::{Delivery, Outbox, OutboxLimits, Webhook};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Arguments of `phimon run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file. PHIMON_<SECTION>_<KEY> environment
    /// variables override its values.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Also write every peer's heartbeat arrivals, as this node's detector
    /// sees them, to DIR/<peer>.<generation>.trace (the format `phimon
    /// eval` replays): to choose a threshold on your own traffic.
    #[arg(long, value_name = "DIR")]
    pub record_arrivals: Option<PathBuf>,
}

/// How often the loop wakes even when nothing happens: the resolution of
/// stall detection, alert evaluation and the published snapshot.
const TICK: Duration = Duration::from_millis(100);

/// Runs `phimon run` until SIGTERM or Ctrl-C.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = crate::check_config::load_valid(&args.config)?;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("phimon")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        Sidecar::start(config, args.record_arrivals.as_deref())
            .await?
            .drive()
            .await
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PHIMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Per-peer bookkeeping the runtime keeps beside the core: interval
/// quantiles for `/v1/peers`.
#[derive(Default)]
struct PeerExtra {
    last: Option<Timestamp>,
    skip_next: bool,
    histogram: IntervalHistogram,
}

/// Everything the driving loop owns.
struct Sidecar {
    config: Config,
    origin: Instant,
    core: Gossip,
    engine: AlertEngine,
    transport: Transport,
    inbox: mpsc::Receiver<Received>,
    outbox: Option<Outbox>,
    delivery: Option<Delivery>,
    metrics: Arc<Metrics>,
    snapshot: SharedSnapshot,
    stall: health::StallDetector,
    extras: HashMap<String, PeerExtra>,
    last_report: String,
    transport_seen: wiring::TransportCounters,
    gossip_seen: wiring::GossipCounters,
    last_cert_check: Instant,
    joined: bool,
    recorder: Option<record::ArrivalRecorder>,
}

impl Sidecar {
    async fn start(config: Config, record_dir: Option<&Path>) -> anyhow::Result<Sidecar> {
        let origin = Instant::now();
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let recorder = match record_dir {
            Some(dir) => {
                let r = record::ArrivalRecorder::create(
                    dir,
                    &config.node.id,
                    config.gossip.interval,
                    since_epoch.as_millis(),
                )
                .map_err(|e| {
                    UsageError(format!(
                        "--record-arrivals {}: cannot write there: {e}",
                        dir.display()
                    ))
                })?;
                tracing::info!("recording heartbeat arrivals into {}", dir.display());
                Some(r)
            }
            None => None,
        };
        let data_dir = config.node.data_dir.clone();
        let (generation, problems) = generation::next(&data_dir, since_epoch.as_secs());
        for p in &problems {
            tracing::error!(
                "data_dir problem: {p}; running with generation {generation} (from the wall clock), \
                 but restarts and alert durability need a writable node.data_dir"
            );
        }

        let snapshot = SharedSnapshot::default();
        let metrics = Arc::new(
            Metrics::new(
                env!("CARGO_PKG_VERSION"),
                wiring::export_config(&config),
                snapshot.clone(),
            )
            .context("registering metrics")?,
        );
        let data_dir_ok = wiring::register_data_dir_gauge(&metrics, problems.is_empty())?;

        let (transport, inbox) =
            Transport::bind(wiring::transport_config(&config)).map_err(|e| {
                // Certificate problems are the operator's to fix: exit 2.
                anyhow::Error::new(UsageError(format!("cannot start the QUIC transport: {e}")))
            })?;
        let local = transport.local_addr();
        let self_address = wiring::self_address(&config, local);
        tracing::info!(
            node = %config.node.id,
            generation,
            listen = %local,
            advertise = %self_address,
            cluster = %config.cluster.name,
            "phimon {} starting",
            env!("CARGO_PKG_VERSION")
        );

        let now = Timestamp::from_duration(origin.elapsed());
        let core = Gossip::new(
            wiring::gossip_config(&config),
            NodeId::new(config.node.id.clone()),
            self_address,
            generation,
            rand::random(),
            now,
        );
        let engine = AlertEngine::new(wiring::alert_config(&config), config.node.id.clone());

        // Alerting: durable outbox, then delivery. A broken data_dir must
        // not stop failure detection: run without paging and say so.
        let names: Vec<String> = config
            .alert
            .webhooks
            .iter()
            .map(|w| w.name.clone())
            .collect();
        let (outbox, delivery) =
            match Outbox::open(&data_dir.join("outbox"), &names, OutboxLimits::default()) {
                Ok((outbox, report)) => {
                    metrics.record_outbox_open(&report);
                    metrics.watch_outbox(outbox.clone());
                    let mut webhooks = Vec::new();
                    for w in &config.alert.webhooks {
                        metrics.add_webhook(&w.name);
                        let hook = Webhook::from_config(&wiring::webhook_config(w))
                            .map_err(|e| UsageError(format!("alert.webhook {:?}: {e}", w.name)))?;
                        webhooks.push(hook);
                    }
                    let delivery = if webhooks.is_empty() {
                        None
                    } else {
                        Some(
                            Delivery::spawn(
                                outbox.clone(),
                                webhooks,
                                Some(metrics.clone()),
                                // A page is urgent: once the receiver is back
                                // it must not wait minutes for the next try.
                                phimon_pager::Backoff {
                                    initial: Duration::from_secs(1),
                                    max: Duration::from_secs(30),
                                },
                                rand::random(),
                            )
                            .context("starting webhook delivery")?,
                        )
                    };
                    (Some(outbox), delivery)
                }
                Err(e) => {
                    data_dir_ok.set(0);
                    tracing::error!("alert outbox unusable, pages will NOT be sent: {e}");
                    (None, None)
                }
            };

        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
        let app = phimon_exporter::router(HttpState {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("HTTP server stopped: {e}");
            }
        });

        let stall_threshold =
            (config.gossip.interval / 2).clamp(Duration::from_millis(250), Duration::from_secs(2));
        let hold = config.gossip.interval * 3 + Duration::from_secs(1);
        Ok(Sidecar {
            joined: config.cluster.seeds.is_empty(),
            config,
            origin,
            core,
            engine,
            transport,
            inbox,
            outbox,
            delivery,
            metrics,
            snapshot,
            stall: health::StallDetector::new(stall_threshold, hold),
            extras: HashMap::new(),
            last_report: String::new(),
            transport_seen: Default::default(),
            gossip_seen: Default::default(),
            last_cert_check: Instant::now(),
            recorder,
        })
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.origin.elapsed())
    }

    fn timestamp_of(&self, at: Instant) -> Timestamp {
        Timestamp::from_duration(at.saturating_duration_since(self.origin))
    }

    /// First thing on every wake-up: notice our own stalls.
    fn wake(&mut self) -> Timestamp {
        let now = self.now();
        if let Some(stall) = self.stall.wake(now) {
            self.metrics.local_stalls.inc();
            tracing::warn!(
                "this process was stalled for {:.1} s (paused, blocked or suspended); \
                 peers' silence during the stall is not held against them",
                stall.duration().as_secs_f64()
            );
            self.core.observer_resumed(now);
            if let Some(r) = &mut self.recorder {
                r.observer_stalled(stall.from, stall.to);
            }
            for extra in self.extras.values_mut() {
                extra.skip_next = true;
            }
        }
        now
    }

    async fn drive(mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let deadline = self.core.poll_timeout().map(|t| {
                let d = Duration::from_micros(t.as_micros());
                tokio::time::Instant::from_std(self.origin + d)
            });
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    self.wake();
                    match self.transport.reload_certs() {
                        Ok(()) => tracing::info!("SIGHUP: certificates reloaded"),
                        Err(e) => tracing::error!("SIGHUP: certificate reload failed, keeping the old ones: {e}"),
                    }
                }
                _ = tick.tick() => {
                    let now = self.wake();
                    self.core.handle_timeout(now);
                    self.on_tick(now);
                }
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else { break };
                    let now = self.wake();
                    let at = self.timestamp_of(msg.received_at).min(now);
                    self.on_message(at, msg);
                }
                _ = sleep_until(deadline) => {
                    let now = self.wake();
                    self.core.handle_timeout(now);
                }
            }
            self.flush();
        }
        self.shutdown().await
    }

    fn on_message(&mut self, at: Timestamp, msg: Received) {
        let from = NodeId::new(msg.node_id);
        if let Err(e) = self.core.handle_message(at, &from, &msg.payload) {
            if matches!(e, phimon_gossip::GossipError::SenderMismatch { .. }) {
                self.metrics.auth_failures.inc();
            } else {
                self.metrics.decode_errors.inc();
            }
            tracing::debug!(peer = %from, "rejected message: {e}");
        }
    }

    /// Sends what the core wants sent and handles what it reported.
    fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            // An empty address means "on that node's existing connection":
            // the transport handles it.
            if let Err(e) = self.transport.send(
                &t.to_addr,
                t.to_node.as_ref().map(|n| n.as_str()),
                t.payload,
            ) {
                tracing::debug!("send to {:?} refused: {e}", t.to_addr);
            }
        }
        while let Some(event) = self.core.poll_event() {
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::HeartbeatObserved {
                node,
                generation,
                at,
            } => {
                self.metrics.heartbeats_received.inc();
                if let Some(r) = &mut self.recorder {
                    r.heartbeat(node.as_str(), generation, at);
                }
                self.joined = true;
                let extra = self.extras.entry(node.as_str().to_owned()).or_default();
                if let Some(last) = extra.last {
                    if extra.skip_next {
                        extra.skip_next = false;
                    } else {
                        extra.histogram.record(at - last);
                    }
                }
                extra.last = Some(at);
            }
            Event::NodeJoined {
                node,
                generation,
                address,
            } => {
                tracing::info!(%node, generation, %address, "node joined");
            }
            Event::NodeRestarted {
                node,
                old_generation,
                new_generation,
            } => {
                tracing::info!(%node, old_generation, new_generation, "node restarted");
                self.extras.remove(node.as_str());
            }
            Event::NodeLeft { node, generation } => {
                tracing::info!(%node, generation, "node left gracefully");
                let now = self.now();
                if let Some(r) = &mut self.recorder {
                    r.close(node.as_str(), now);
                }
            }
            Event::NodeDead { node, generation } => {
                tracing::warn!(%node, generation, "node suspected (phi reached the threshold)");
            }
            Event::NodeAlive { node, generation } => {
                tracing::info!(%node, generation, "node heard from again");
            }
            Event::NodeRemoved { node } => {
                tracing::info!(%node, "node forgotten after dead_grace");
                let now = self.now();
                if let Some(r) = &mut self.recorder {
                    r.close(node.as_str(), now);
                }
                self.extras.remove(node.as_str());
            }
            Event::SelfRefuted {
                old_generation,
                new_generation,
            } => {
                tracing::warn!(
                    old_generation,
                    new_generation,
                    "gossip claimed this node is further along than it is; moved to a new generation"
                );
                if let Err(e) = generation::write(&self.config.node.data_dir, new_generation) {
                    tracing::error!("cannot persist generation {new_generation}: {e}");
                }
            }
            other => tracing::debug!("gossip event {other:?}"),
        }
    }

    /// Alerting, the published snapshot and metrics, every [`TICK`].
    fn on_tick(&mut self, now: Timestamp) {
        let degraded = self.stall.degraded(now);
        let view = self.cluster_view(now, degraded);
        self.engine.handle_tick(now, &view);
        while let Some(ev) = self.engine.poll_event() {
            self.metrics.record_event(&ev);
            let record = AlertRecord::from_event(&ev, now, SystemTime::now());
            tracing::warn!("alert: {}", record.summary());
            match &self.outbox {
                Some(outbox) => match outbox.enqueue(&record, SystemTime::now()) {
                    Ok(report) => self.metrics.record_enqueue(&report),
                    Err(e) => tracing::error!("alert could not be made durable, it is lost: {e}"),
                },
                None => tracing::error!("no usable outbox: alert not delivered"),
            }
        }
        let report = self.engine.suspicion_report_value();
        if report != self.last_report {
            if let Err(e) = self.core.set_kv(SUSPICIONS_KEY, &report) {
                tracing::warn!("cannot gossip the suspicion report: {e}");
            }
            self.last_report = report;
        }
        self.publish(now);
        if let Some(r) = &mut self.recorder {
            r.tick(now);
        }
        self.metrics.local_health_degraded.set(i64::from(degraded));
        self.metrics
            .alert_isolated
            .set(i64::from(self.engine.is_isolated()));
        let gap = self.stall.take_max_gap();
        self.metrics
            .tick_lateness
            .observe(gap.saturating_sub(TICK).as_secs_f64());
        self.transport_seen
            .update(&self.metrics, &self.transport.stats().snapshot());
        self.gossip_seen.update(self.core.stats());
        if self.last_cert_check.elapsed() > Duration::from_secs(30) {
            self.last_cert_check = Instant::now();
            match self.transport.reload_certs_if_changed() {
                Ok(true) => tracing::info!("certificate files changed: reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!("certificate files changed but cannot be loaded: {e}"),
            }
        }
    }

    /// Peers whose heartbeat this node has seen advance. Ids only heard
    /// of through gossip (`joining`) are not peers yet: anyone with a valid
    /// certificate can invent them by the thousand, and counting them
    /// would dilute quorum and isolation decisions and flood `/v1/peers`.
    fn confirmed_peers(&self) -> impl Iterator<Item = phimon_gossip::Member<'_>> + '_ {
        self.core
            .members()
            .filter(|m| !m.is_self() && m.status() != phimon_gossip::MemberStatus::Joining)
    }

    fn cluster_view(&self, now: Timestamp, degraded: bool) -> ClusterView {
        let mut members = Vec::new();
        let mut suspicions = BTreeMap::new();
        for m in self.confirmed_peers() {
            let id = m.node_id().as_str().to_owned();
            if let Some(v) = m.kv_get(SUSPICIONS_KEY) {
                if let Ok(r) = decode_suspicions(v) {
                    suspicions.insert(id.clone(), r.suspects.into_iter().collect::<BTreeSet<_>>());
                }
            }
            members.push(MemberView {
                node_id: id,
                generation: m.generation(),
                heartbeat: m.heartbeat(),
                status: wiring::member_status(m.status()),
                phi: m.phi(now).unwrap_or(0.0),
            });
        }
        ClusterView {
            generation: self.core.generation(),
            members,
            suspicions,
            degraded,
        }
    }

    fn publish(&mut self, now: Timestamp) {
        let mut peers = Vec::new();
        for m in self.confirmed_peers() {
            let id = m.node_id().as_str();
            let (mean, std, fill, age) = match m.detector() {
                Some(d) => {
                    let w = d.window();
                    let (mean, var) = w.mean_var().unwrap_or((0.0, 0.0));
                    let age = d
                        .last_arrival()
                        .map_or(0.0, |l| (now - l).as_secs_f64() * 1000.0);
                    (
                        mean / 1000.0,
                        var.sqrt() / 1000.0,
                        w.len() as f64 / w.capacity() as f64,
                        age,
                    )
                }
                None => (0.0, 0.0, 0.0, 0.0),
            };
            let q = self.extras.get(id).and_then(|e| e.histogram.quantiles());
            peers.push(PeerInfo {
                node_id: id.to_owned(),
                address: m.address().to_owned(),
                generation: m.generation(),
                status: wiring::member_status(m.status()),
                phi: m.phi(now).unwrap_or(0.0),
                suspected: self.engine.is_suspected(id),
                last_heartbeat_age_ms: age,
                interval_mean_ms: mean,
                interval_stddev_ms: std,
                interval_p50_ms: q.map_or(0.0, |q| q.p50_ms),
                interval_p99_ms: q.map_or(0.0, |q| q.p99_ms),
                interval_max_ms: q.map_or(0.0, |q| q.max_ms),
                window_fill: fill,
            });
        }
        peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        phimon_exporter::snapshot::publish(
            &self.snapshot,
            NodeSnapshot {
                node_id: self.config.node.id.clone(),
                joined: self.joined,
                peers,
            },
        );
    }

    /// Leaves gracefully: announce `left`, let it spread for a moment,
    /// flush the transport, stop delivery (undelivered pages stay on disk).
    async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("leaving the cluster");
        let now = self.now();
        // The traces end where this node stopped listening.
        if let Some(mut r) = self.recorder.take() {
            r.finish(now);
        }
        self.core.leave(now);
        let deadline =
            Instant::now() + (self.config.gossip.interval * 3).min(Duration::from_secs(3));
        while !self.core.leave_complete() && Instant::now() < deadline {
            let now = self.now();
            self.core.handle_timeout(now);
            self.flush();
            let wait = self
                .core
                .poll_timeout()
                .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())))
                .unwrap_or(TICK)
                .min(TICK);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                msg = self.inbox.recv() => if let Some(msg) = msg {
                    let at = self.now();
                    self.on_message(at, msg);
                }
            }
        }
        self.flush();
        self.transport.flush(Duration::from_secs(1)).await;
        self.transport.shutdown().await;
        if let Some(d) = self.delivery.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), d.shutdown()).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
