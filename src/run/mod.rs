//! `phimon run`: the sidecar. Loads the configuration, then drives the
//! sans-IO node ([`Node`]: protocol core and alert engine) from one task
//! of a single-threaded tokio runtime, beside the QUIC transport, the HTTP
//! server and webhook delivery.
//!
//! The loop does only IO. It arms one timer at [`Node::poll_timeout`] —
//! the next heartbeat to send, the earliest time a monitored peer's phi
//! can reach the threshold, a pending page — and otherwise sleeps until a
//! datagram, a message, a signal or an HTTP request arrives. Heartbeats
//! do not wake it: they wait in the transport's mailbox, stamped by the
//! kernel on arrival, and every wake-up reads them first. Nothing walks
//! the peers on a fixed tick: snapshots for `/metrics` and `/v1/peers` are
//! built when a scrape asks for one.
//!
//! The loop is the only place that reads the clock. On every wake-up it
//! first asks the [`health::StallDetector`] whether the process itself was
//! away (it woke long after its deadline: SIGSTOP, a blocked loop, a
//! paused VM), and if so tells the node before any frame is handled, so a
//! stall of this node is never recorded as a slow peer.

mod auth;
mod generation;
mod health;
mod paging;
mod record;
mod reload;
mod snapshot;
mod timer;
mod whatif;
mod wiring;

use crate::UsageError;
use anyhow::Context as _;
use phimon_alert::AlertRecord;
use phimon_config::Config;
use phimon_detector::Timestamp;
use phimon_exporter::{
    HttpLimits, HttpState, IntervalHistogram, Metrics, NodeInfo, PeerDetail, ReloadReport, Request,
    SharedSnapshot,
};
use phimon_gossip::wire::{Channel as FrameChannel, Frame};
use phimon_gossip::{Event, NodeId, Status};
use phimon_node::Node;
use phimon_pager::{Delivery, Outbox, OutboxLimits, Webhook};
use phimon_transport::{Channel, Peer, Received, Transport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

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

/// How often the certificate files are checked for changes (a reload by
/// file replacement, as cert-manager and step-ca renewals do).
const CERT_CHECK: Duration = Duration::from_secs(30);

/// Runs `phimon run` until SIGTERM or Ctrl-C.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = crate::check_config::load_valid(&args.config)?;
    init_tracing();
    if !config.tls.require_cluster_san {
        tracing::warn!(
            "tls.require_cluster_san = false: peers whose certificate names no cluster are \
             accepted, so only the CA keeps other clusters out"
        );
    }
    // One thread: the node's work is a few packets a second, and handing
    // them between worker threads cost more than the work itself.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let sidecar = Sidecar::start(config, &args.config, args.record_arrivals.as_deref()).await?;
        // A task rather than the future `block_on` polls: waking a task
        // queues it, where waking that future makes the scheduler poll
        // the reactor once more first (an extra epoll_wait per message).
        tokio::spawn(sidecar.drive())
            .await
            .context("the node's loop ended abnormally")?
    })
}

/// Logs to stderr at the levels `PHIMON_LOG` names (`info` when unset):
/// a level, and `target=level` per module (`info,phimon_gossip=debug`).
/// Targets rather than `EnvFilter`: span and field filters are not worth
/// a regex engine in every sidecar.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, bad) = match std::env::var("PHIMON_LOG") {
        Ok(v) => match v.parse::<tracing_subscriber::filter::Targets>() {
            Ok(f) => (f, None),
            Err(e) => (default_log_filter(), Some((v, e))),
        },
        Err(_) => (default_log_filter(), None),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
    if let Some((v, e)) = bad {
        tracing::warn!("PHIMON_LOG={v:?} is not a log filter ({e}); logging at info");
    }
}

fn default_log_filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
}

/// Everything the driving loop owns.
struct Sidecar {
    config: Config,
    /// The file `config` came from: what a reload re-reads.
    config_path: PathBuf,
    origin: Instant,
    node: Node,
    transport: Transport,
    inbox: mpsc::Receiver<Received>,
    paging: paging::Paging,
    /// The outbox delivery reads (`None`: unusable, nothing is sent).
    outbox: Option<Outbox>,
    delivery: Option<Delivery>,
    /// The webhooks delivery runs with, secrets as read (a reload
    /// restarts delivery when they differ from the file's).
    hooks: Vec<Webhook>,
    metrics: Arc<Metrics>,
    snapshot: SharedSnapshot,
    refresh: mpsc::Receiver<oneshot::Sender<()>>,
    /// Requests of HTTP handlers the snapshot cannot answer.
    control: mpsc::Receiver<Request>,
    stall: health::StallDetector,
    /// The deadline the timer was armed for at the last sleep.
    armed: Option<Timestamp>,
    /// Wakes the loop at `armed`.
    timer: timer::Deadline,
    /// Interval quantiles of the peers this node observes (`/v1/peers`).
    histograms: HashMap<NodeId, (Option<Timestamp>, IntervalHistogram)>,
    transport_seen: wiring::TransportCounters,
    gossip_seen: wiring::GossipCounters,
    recorder: Option<record::ArrivalRecorder>,
    /// Reused for every frame encoded: no allocation per heartbeat.
    buf: Vec<u8>,
    /// What one wake-up handles, reused.
    batch: Vec<Received>,
}

impl Sidecar {
    async fn start(
        config: Config,
        config_path: &Path,
        record_dir: Option<&Path>,
    ) -> anyhow::Result<Sidecar> {
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
        metrics
            .config_last_reload_success
            .set(since_epoch.as_secs_f64());

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
        let node = Node::new(
            wiring::node_config(&config),
            NodeId::new(config.node.id.clone()),
            self_address,
            generation,
            Box::new(auth::CertSigner::new(transport.record_signer_source())),
            Box::new(auth::CertAuthority::new(transport.credential_verifier())),
            rand::random(),
            now,
        )
        .map_err(|e| UsageError(format!("cannot start the node: {e}")))?;

        // Alerting: durable outbox, then delivery. A broken data_dir must
        // not stop failure detection: run without paging and say so.
        let names: Vec<String> = config
            .alert
            .webhooks
            .iter()
            .map(|w| w.name.clone())
            .collect();
        let mut running_hooks = Vec::new();
        let (outbox, delivery) =
            match Outbox::open(&data_dir.join("outbox"), &names, OutboxLimits::default()) {
                Ok((outbox, report)) => {
                    metrics.record_outbox_open(&report);
                    metrics.watch_outbox(outbox.clone());
                    for w in &config.alert.webhooks {
                        metrics.add_webhook(&w.name);
                    }
                    let webhooks =
                        webhooks(&config).map_err(|e| anyhow::Error::new(UsageError(e)))?;
                    running_hooks.clone_from(&webhooks);
                    let delivery = spawn_delivery(&outbox, webhooks, &metrics)
                        .context("starting webhook delivery")?;
                    (Some(outbox), delivery)
                }
                Err(e) => {
                    data_dir_ok.set(0);
                    metrics.set_outbox_unusable(e.to_string());
                    tracing::error!("alert outbox unusable, pages will NOT be sent: {e}");
                    (None, None)
                }
            };
        let paging = paging::Paging::new(
            outbox.clone(),
            metrics.clone(),
            data_dir_ok,
            problems.is_empty(),
        );

        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
        let (refresh_tx, refresh) = mpsc::channel(64);
        let (control_tx, control) = mpsc::channel(16);
        let http = HttpState {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            refresh: Some(refresh_tx),
            control: Some(control_tx),
            // Only who can reach a loopback listener (this host) may make
            // the node re-read its files.
            reload_over_http: config.http.listen.ip().is_loopback(),
        };
        tokio::spawn(phimon_exporter::serve(
            listener,
            http,
            HttpLimits::default(),
        ));

        // Late by more than half an interval (at least 250 ms, at most
        // 2 s): a heartbeat deadline is never further away than that.
        let stall_threshold =
            (config.gossip.interval / 2).clamp(Duration::from_millis(250), Duration::from_secs(2));
        Ok(Sidecar {
            config,
            config_path: config_path.to_owned(),
            origin,
            node,
            transport,
            inbox,
            paging,
            outbox,
            delivery,
            hooks: running_hooks,
            metrics,
            snapshot,
            refresh,
            control,
            stall: health::StallDetector::new(stall_threshold),
            armed: None,
            timer: timer::Deadline::new(),
            histograms: HashMap::new(),
            transport_seen: Default::default(),
            gossip_seen: Default::default(),
            recorder,
            buf: Vec::with_capacity(2048),
            batch: Vec::new(),
        })
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.origin.elapsed())
    }

    fn timestamp_of(&self, at: Instant) -> Timestamp {
        Timestamp::from_duration(at.saturating_duration_since(self.origin))
    }

    /// First thing on every wake-up: notice this process's own stalls.
    fn wake(&mut self) -> Timestamp {
        let now = self.now();
        let (late, stall) = self.stall.wake(now, self.armed);
        if !late.is_zero() {
            self.metrics.tick_lateness.observe(late.as_secs_f64());
        }
        if let Some(stall) = stall {
            self.metrics.local_stalls.inc();
            tracing::warn!(
                "this process was stalled for {:.1} s (paused, blocked or suspended); \
                 peers' silence during the stall is not held against them",
                stall.duration().as_secs_f64()
            );
            self.node.observer_stalled(now);
            if let Some(r) = &mut self.recorder {
                r.observer_stalled(stall.from, stall.to);
            }
            for (last, _) in self.histograms.values_mut() {
                *last = None;
            }
        }
        now
    }

    async fn drive(mut self) -> anyhow::Result<()> {
        let mut outside = outside_events()?;
        loop {
            let deadline = self.node.poll_timeout();
            self.armed = deadline;
            let sleep = deadline.map(|t| {
                tokio::time::Instant::from_std(self.origin + Duration::from_micros(t.as_micros()))
            });
            self.timer.set(sleep);
            // Biased: no random draw per wake-up, and the order says what
            // must not wait behind a busy inbox: stopping, the timer, and
            // the HTTP handlers' rare requests (a scrape must not starve
            // under a flood of messages).
            tokio::select! {
                biased;
                outside_event = outside.recv() => match outside_event {
                    None | Some(Outside::Stop) => break,
                    Some(Outside::Hangup) => self.on_hangup().await,
                    Some(Outside::CertCheck) => self.check_cert_files(),
                },
                _ = self.timer.fired() => {
                    let now = self.wake();
                    // Heartbeats waiting in the mailbox first: a deadline
                    // must not judge a peer whose heartbeat is here.
                    self.take_inbox(now, None);
                    self.node.handle_timeout(now);
                }
                // The HTTP server holds the sender for the process's life;
                // were it gone, a closed channel must not spin the loop.
                request = self.control.recv(), if !self.control.is_closed() => {
                    let now = self.wake();
                    self.take_inbox(now, None);
                    match request {
                        Some(Request::Reload(reply)) => {
                            let _ = reply.send(self.reload(now, "POST /v1/reload").await);
                        }
                        Some(Request::Trace(id, reply)) => {
                            let _ = reply.send(whatif::window_trace(
                                &self.node,
                                &NodeId::new(id),
                                self.config.gossip.interval,
                                now,
                            ));
                        }
                        Some(Request::Local(reply)) => {
                            let _ = reply.send(self.local_info(now));
                        }
                        Some(Request::Peer(id, reply)) => {
                            let _ = reply.send(self.peer_detail(&id, now));
                        }
                        Some(Request::WhatIf(thresholds, reply)) => {
                            let detector = self.config.detector.detector_config(self.config.gossip.interval);
                            let _ = reply.send(whatif::report(
                                &self.node,
                                &detector,
                                self.config.detector.threshold,
                                &thresholds,
                            ));
                        }
                        Some(_) | None => {} // not served by this runtime
                    }
                }
                reply = self.refresh.recv(), if !self.refresh.is_closed() => {
                    let now = self.wake();
                    self.take_inbox(now, None);
                    self.publish(now);
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                }
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else { break };
                    let now = self.wake();
                    // What else is already there, before sending.
                    self.take_inbox(now, Some(msg));
                }
            }
            self.flush();
        }
        self.shutdown().await
    }

    /// SIGHUP: certificates and configuration again.
    async fn on_hangup(&mut self) {
        let now = self.wake();
        match self.transport.reload_certs() {
            Ok(()) => {
                tracing::info!("SIGHUP: certificates reloaded");
                // Our record again, with the new credential.
                self.node.resign(now);
            }
            Err(e) => {
                tracing::error!("SIGHUP: certificate reload failed, keeping the old ones: {e}")
            }
        }
        let _ = self.reload(now, "SIGHUP").await;
    }

    /// Certificates rotated without a signal (a Kubernetes secret, an
    /// agent) are picked up here.
    fn check_cert_files(&mut self) {
        let now = self.wake();
        match self.transport.reload_certs_if_changed() {
            Ok(true) => {
                tracing::info!("certificate files changed: reloaded");
                self.node.resign(now);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("certificate files changed but cannot be loaded: {e}"),
        }
    }

    /// Reads the transport's mailbox, then handles `first` and everything
    /// queued, in order of arrival: mailbox heartbeats, stamped by the
    /// kernel, were queued behind what came since, and a detector must see
    /// a peer's heartbeats in the order they arrived.
    fn take_inbox(&mut self, now: Timestamp, first: Option<Received>) {
        self.transport.drain_mailbox();
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(first);
        while let Ok(msg) = self.inbox.try_recv() {
            batch.push(msg);
        }
        batch.sort_by_key(|m| m.received_at);
        for msg in batch.drain(..) {
            self.on_received(now, msg);
        }
        self.batch = batch;
    }

    fn on_received(&mut self, now: Timestamp, msg: Received) {
        let at = self.timestamp_of(msg.received_at).min(now);
        let r = match msg.channel {
            Channel::Datagram => self.node.handle_datagram(at, &msg.node_id, &msg.payload),
            Channel::Message => self.node.handle_message(at, &msg.node_id, &msg.payload),
        };
        if let Err(e) = r {
            self.metrics.decode_errors.inc();
            tracing::debug!(peer = %msg.node_id, "refused frame: {e}");
        }
    }

    /// Sends what the node wants sent, makes its pages durable and handles
    /// what it reported.
    fn flush(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            self.buf.clear();
            t.frame.encode_into(&mut self.buf);
            let peer = Peer {
                node_id: t.to.node,
                addr: t.to.addr.to_string(),
            };
            let sent = match t.frame.channel() {
                // A heartbeat may wait in the peer's mailbox: its arrival
                // time is what counts, not when it is read.
                FrameChannel::Datagram if matches!(t.frame, Frame::Heartbeat(_)) => {
                    self.transport.send_deferred_datagram(&peer, &self.buf)
                }
                FrameChannel::Datagram => self.transport.send_datagram(&peer, &self.buf),
                FrameChannel::Message => self.transport.send_message(&peer, self.buf.clone()),
            };
            if let Err(e) = sent {
                tracing::debug!("send to {:?} refused: {e}", peer.addr);
            }
        }
        let now = self.now();
        while let Some(ev) = self.node.poll_alert() {
            self.metrics.record_event(&ev);
            let record = AlertRecord::from_event(&ev, now, SystemTime::now());
            tracing::warn!("alert: {}", record.summary());
            self.paging.enqueue(&record);
        }
        self.paging.retry();
        while let Some(event) = self.node.poll_event() {
            self.on_event(now, event);
        }
        if let Some(r) = &mut self.recorder {
            r.tick(now);
        }
        self.metrics
            .local_health_degraded
            .set(i64::from(self.node.gossip().is_degraded(now)));
        self.metrics
            .alert_isolated
            .set(i64::from(self.node.gossip().is_isolated()));
    }

    fn on_event(&mut self, now: Timestamp, event: Event) {
        match event {
            Event::Heartbeat {
                node,
                generation,
                at,
                ..
            } => {
                self.metrics.heartbeats_received.inc();
                if let Some(r) = &mut self.recorder {
                    r.heartbeat(node.as_str(), generation, at);
                }
                let (last, histogram) = self.histograms.entry(node).or_default();
                if let Some(last) = *last {
                    histogram.record(at - last);
                }
                *last = Some(at);
            }
            Event::Joined {
                node,
                generation,
                address,
            } => tracing::info!(%node, generation, %address, "node joined"),
            Event::Restarted {
                node,
                old_generation,
                new_generation,
            } => {
                tracing::info!(%node, old_generation, new_generation, "node restarted");
                self.histograms.remove(&node);
            }
            Event::Status { node, from, to, .. } => match to {
                Status::Suspected => {
                    tracing::warn!(%node, %from, "node suspected by its observers")
                }
                Status::Left => tracing::info!(%node, "node left gracefully"),
                _ => tracing::info!(%node, %from, %to, "node status"),
            },
            Event::Verdict {
                subject,
                suspected,
                phi,
                ..
            } => {
                if suspected {
                    tracing::warn!(node = %subject, phi = format!("{phi:.2}"), "this node suspects it");
                } else {
                    tracing::debug!(node = %subject, "this node hears it");
                }
            }
            Event::Observing { subject, started } => {
                tracing::debug!(node = %subject, started, "observing");
                if !started {
                    self.histograms.remove(&subject);
                    if let Some(r) = &mut self.recorder {
                        r.close(subject.as_str(), now);
                    }
                }
            }
            Event::Removed { node } => {
                tracing::info!(%node, "node forgotten after dead_grace");
                if let Some(r) = &mut self.recorder {
                    r.close(node.as_str(), now);
                }
                self.histograms.remove(&node);
            }
            Event::GenerationBumped { old, new } => {
                tracing::warn!(
                    old,
                    new,
                    "a record of this node from a previous life was newer; moved to a new generation"
                );
                if let Err(e) = generation::write(&self.config.node.data_dir, new) {
                    tracing::error!("cannot persist generation {new}: {e}");
                }
            }
            Event::Isolation { isolated, .. } => {
                if isolated {
                    tracing::warn!(
                        "this node lost contact with most of the nodes it observes: isolated"
                    );
                } else {
                    tracing::info!("this node is back in contact");
                }
            }
            other => tracing::debug!("event {other:?}"),
        }
    }

    /// Re-reads the configuration file and applies what may change live
    /// (see [`reload`]); anything else keeps the running configuration,
    /// is logged and counted.
    async fn reload(&mut self, now: Timestamp, cause: &str) -> ReloadReport {
        let outcome = crate::check_config::load_valid(&self.config_path)
            .map_err(|e| format!("{e:#}"))
            .and_then(|new| reload::plan(&self.config, &new).map(|changed| (new, changed)))
            .and_then(|(new, mut changed)| {
                // Secrets are read now, before anything is applied: a
                // webhook that cannot be built refuses the whole file. A
                // secret file rewritten in place is a change too.
                let hooks = webhooks(&new)?;
                let same = hooks.len() == self.hooks.len()
                    && hooks.iter().zip(&self.hooks).all(|(a, b)| {
                        (&a.name, &a.url, a.format, &a.secret, a.timeout)
                            == (&b.name, &b.url, b.format, &b.secret, b.timeout)
                    });
                if !same && !changed.iter().any(|l| l.starts_with("alert.webhook")) {
                    changed.push("alert.webhook: secret changed, delivery restarted".to_owned());
                }
                Ok((new, changed, (!same).then_some(hooks)))
            });
        match outcome {
            Ok((new, changed, hooks)) => {
                if let Some(hooks) = &hooks {
                    self.hooks.clone_from(hooks);
                }
                if let (Some(hooks), Some(outbox)) = (hooks, &self.outbox) {
                    // Workers abandon an attempt in flight at once (its
                    // record stays queued), so the new ones never race
                    // them; a receiver may get that page twice, with the
                    // same webhook-id.
                    if let Some(old) = self.delivery.take() {
                        let _ = tokio::time::timeout(Duration::from_secs(2), old.shutdown()).await;
                    }
                    match spawn_delivery(outbox, hooks, &self.metrics) {
                        Ok(d) => self.delivery = d,
                        Err(e) => tracing::error!(
                            "{cause}: webhook delivery could not restart, pages stay queued \
                             in the outbox until it does: {e}"
                        ),
                    }
                }
                if changed.is_empty() {
                    tracing::info!("{cause}: configuration reloaded, nothing changed");
                } else {
                    self.node.reconfigure(&wiring::node_config(&new), now);
                    tracing::info!("{cause}: configuration reloaded: {}", changed.join(", "));
                }
                self.config = new;
                let since_epoch = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                self.metrics
                    .config_last_reload_success
                    .set(since_epoch.as_secs_f64());
                ReloadReport {
                    ok: true,
                    changed,
                    error: None,
                }
            }
            Err(e) => {
                self.metrics.config_reload_failures.inc();
                let error = format!("{}: {e}", self.config_path.display());
                tracing::error!(
                    "{cause}: configuration reload failed, keeping the running one: {error}"
                );
                ReloadReport {
                    ok: false,
                    changed: Vec::new(),
                    error: Some(error),
                }
            }
        }
    }

    /// `GET /v1/node`: this node as the fleet sees it.
    fn local_info(&self, now: Timestamp) -> NodeInfo {
        let g = self.node.gossip();
        let me = g.member(g.id());
        let observers = me.as_ref().map(|m| m.observers()).unwrap_or_default();
        NodeInfo {
            node_id: g.id().to_string(),
            cluster: self.config.cluster.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            address: me
                .as_ref()
                .map(|m| m.address().to_owned())
                .unwrap_or_default(),
            generation: g.generation(),
            status: me.as_ref().map_or(Status::Alive, |m| m.status()),
            joined: self.config.cluster.seeds.is_empty() || g.joined(),
            threshold: self.config.detector.threshold,
            observers: observers.iter().map(|o| o.observer.to_string()).collect(),
            suspected_by: observers
                .iter()
                .filter(|o| o.suspected == Some(true))
                .map(|o| o.observer.to_string())
                .collect(),
            degraded: g.is_degraded(now),
            isolated: g.is_isolated(),
        }
    }

    /// `GET /v1/peers/{id}`: the peer as `/v1/peers` lists it, with what
    /// it is judged by and its evidence.
    fn peer_detail(&self, id: &str, now: Timestamp) -> Option<PeerDetail> {
        let node_id = NodeId::new(id.to_owned());
        let member = self.node.gossip().member(&node_id)?;
        if member.is_self() {
            return None;
        }
        let histograms: HashMap<NodeId, IntervalHistogram> = self
            .histograms
            .get(&node_id)
            .map(|(_, h)| (node_id.clone(), h.clone()))
            .into_iter()
            .collect();
        let peer = snapshot::build(&self.node, &histograms, now, true)
            .peers
            .into_iter()
            .find(|p| p.node_id == id)?;
        let (window_samples, window_capacity) = member.observed().map_or((0, 0), |o| {
            let w = o.detector().window();
            (w.len(), w.capacity())
        });
        Some(PeerDetail {
            peer,
            threshold: self.config.detector.threshold,
            window_samples,
            window_capacity,
            evidence: self.node.evidence(&node_id, now),
        })
    }

    /// Publishes a fresh snapshot for the HTTP handlers and scrapes.
    fn publish(&mut self, now: Timestamp) {
        let joined = self.config.cluster.seeds.is_empty() || self.node.gossip().joined();
        let histograms: HashMap<NodeId, IntervalHistogram> = self
            .histograms
            .iter()
            .map(|(k, (_, h))| (k.clone(), h.clone()))
            .collect();
        let snap = snapshot::build(&self.node, &histograms, now, joined);
        phimon_exporter::snapshot::publish(&self.snapshot, snap);
        self.transport_seen
            .update(&self.metrics, &self.transport.snapshot());
        self.gossip_seen
            .update(&self.metrics, self.node.gossip().stats());
        wiring::set_cert_expiry(&self.metrics, self.transport.cert_not_after());
    }

    /// Leaves gracefully: announce `leaving` then `left`, let it spread
    /// for a moment, flush the transport, stop delivery (undelivered pages
    /// stay on disk).
    async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("leaving the cluster");
        let now = self.now();
        if let Some(mut r) = self.recorder.take() {
            r.finish(now);
        }
        self.node.leave(now);
        self.flush();
        let deadline =
            Instant::now() + (self.config.gossip.interval * 3).min(Duration::from_secs(3));
        while !self.node.leave_complete() && Instant::now() < deadline {
            let wait = self
                .node
                .poll_timeout()
                .map(|t| {
                    Duration::from_micros(t.as_micros().saturating_sub(self.now().as_micros()))
                })
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    let now = self.now();
                    self.take_inbox(now, None);
                    self.node.handle_timeout(now);
                }
                msg = self.inbox.recv() => if let Some(msg) = msg {
                    let now = self.now();
                    self.take_inbox(now, Some(msg));
                }
            }
            self.flush();
        }
        self.transport.flush(Duration::from_secs(1)).await;
        self.transport.shutdown().await;
        if let Some(d) = self.delivery.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), d.shutdown()).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The configured webhooks, their secrets read (an error names the
/// webhook).
fn webhooks(config: &Config) -> Result<Vec<Webhook>, String> {
    config
        .alert
        .webhooks
        .iter()
        .map(|w| {
            Webhook::from_config(&wiring::webhook_config(w))
                .map_err(|e| format!("alert.webhook {:?}: {e}", w.name))
        })
        .collect()
}

/// One delivery worker per webhook over `outbox` (`None`: no webhook).
fn spawn_delivery(
    outbox: &Outbox,
    webhooks: Vec<Webhook>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Delivery>> {
    if webhooks.is_empty() {
        return Ok(None);
    }
    let sink: Arc<dyn phimon_pager::DeliveryMetrics> = metrics.clone();
    Ok(Some(Delivery::spawn(
        outbox.clone(),
        webhooks,
        Some(sink),
        // A page is urgent: once the receiver is back it must not wait
        // minutes for the next try.
        phimon_pager::Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        },
        rand::random(),
    )?))
}

/// What reaches the loop from outside the node: signals, and the
/// periodic look at the certificate files.
enum Outside {
    Stop,
    Hangup,
    CertCheck,
}

/// One task waits for SIGTERM, SIGINT, SIGHUP and the certificate check,
/// so the loop polls one channel per wake-up instead of four futures.
fn outside_events() -> anyhow::Result<mpsc::Receiver<Outside>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut certs =
            tokio::time::interval_at(tokio::time::Instant::now() + CERT_CHECK, CERT_CHECK);
        certs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let event = tokio::select! {
                _ = term.recv() => Outside::Stop,
                _ = int.recv() => Outside::Stop,
                _ = hup.recv() => Outside::Hangup,
                _ = certs.tick() => Outside::CertCheck,
            };
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
