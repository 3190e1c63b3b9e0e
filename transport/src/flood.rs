//! A handshake flood, for tests and measurements: QUIC handshakes at a
//! fixed rate from one or more local addresses and ports, with no client
//! certificate (an outsider), against one node. Each attempt runs to the
//! node's refusal (or a short timeout) and is then dropped.
//!
//! Only point it at your own nodes on loopback or a test network. It
//! stops by itself after `duration`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// What to flood, how hard and from where.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// The node to flood.
    pub target: SocketAddr,
    /// Handshakes started per second, across all sources.
    pub rate: u32,
    /// How long to keep going.
    pub duration: Duration,
    /// Local IPs to send from (on Linux every 127.0.0.0/8 address is
    /// local, so `127.0.0.2`, `127.0.0.3`… spread the flood over sources).
    pub sources: Vec<IpAddr>,
    /// UDP sockets (source ports) per source IP.
    pub ports_per_source: usize,
    /// How long one attempt may take before it is abandoned.
    pub attempt_timeout: Duration,
    /// ALPN the flooder offers (the node's, unless testing version
    /// refusals).
    pub alpn: Vec<u8>,
}

impl FloodConfig {
    /// 2,000 handshakes per second for `duration` from 127.0.0.1 on 8
    /// ports.
    pub fn new(target: SocketAddr, duration: Duration) -> FloodConfig {
        FloodConfig {
            target,
            rate: 2000,
            duration,
            sources: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ports_per_source: 8,
            attempt_timeout: Duration::from_secs(1),
            alpn: crate::tls::ALPN.to_vec(),
        }
    }
}

/// Outcomes of a flood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// Handshakes started.
    pub started: u64,
    /// Attempts the node refused with a TLS alert or a close.
    pub refused: u64,
    /// Attempts that got no answer within `attempt_timeout` (ignored by
    /// the node, or still queued).
    pub timed_out: u64,
    /// Attempts that ended otherwise (e.g. the local endpoint was busy).
    pub other: u64,
    /// Wall time from the first to the last start.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Handshakes started per second.
    pub fn rate(&self) -> f64 {
        self.started as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Counts {
    refused: AtomicU64,
    timed_out: AtomicU64,
    other: AtomicU64,
}

/// Runs the flood on the current tokio runtime and reports what happened.
/// Errors only if no local socket can be bound.
pub async fn flood(cfg: FloodConfig) -> std::io::Result<FloodReport> {
    let client = client_config(&cfg.alpn)?;
    let mut endpoints = Vec::new();
    for ip in &cfg.sources {
        for _ in 0..cfg.ports_per_source.max(1) {
            let mut ep = quinn::Endpoint::client(SocketAddr::new(*ip, 0))?;
            ep.set_default_client_config(client.clone());
            endpoints.push(ep);
        }
    }
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    // Starts are spread over 1 ms ticks to keep the rate smooth.
    let per_tick = f64::from(cfg.rate) / 1000.0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut started = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < cfg.duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * 1000.0 * per_tick) as u64;
        while started < due {
            let ep = &endpoints[(started as usize) % endpoints.len()];
            started += 1;
            match ep.connect(cfg.target, "phimon.invalid") {
                Ok(connecting) => {
                    let counts = counts.clone();
                    let timeout = cfg.attempt_timeout;
                    tasks.spawn(async move {
                        let c = match tokio::time::timeout(timeout, connecting).await {
                            Err(_) => &counts.timed_out,
                            // The node judges our (missing) certificate
                            // after our side completed: wait for its close.
                            Ok(Ok(conn)) => {
                                match tokio::time::timeout(timeout, conn.closed()).await {
                                    Ok(_) => &counts.refused,
                                    Err(_) => &counts.timed_out,
                                }
                            }
                            Ok(Err(
                                quinn::ConnectionError::ConnectionClosed(_)
                                | quinn::ConnectionError::TransportError(_)
                                | quinn::ConnectionError::ApplicationClosed(_),
                            )) => &counts.refused,
                            Ok(Err(quinn::ConnectionError::TimedOut)) => &counts.timed_out,
                            Ok(Err(_)) => &counts.other,
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                    });
                }
                Err(_) => {
                    counts.other.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Reap finished attempts so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let elapsed = start.elapsed();
    while tasks.join_next().await.is_some() {}
    for ep in &endpoints {
        ep.close(0u32.into(), b"");
    }
    Ok(FloodReport {
        started,
        refused: counts.refused.load(Ordering::Relaxed),
        timed_out: counts.timed_out.load(Ordering::Relaxed),
        other: counts.other.load(Ordering::Relaxed),
        elapsed,
    })
}

fn client_config(alpn: &[u8]) -> std::io::Result<quinn::ClientConfig> {
    let provider = crate::tls::crypto_provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicClientConfig::try_from(cfg).map_err(std::io::Error::other)?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        2_000,
    ))));
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// Accepts any server and skips the signature check: the flooder wants to
/// cost the node as much as possible and itself as little.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crate::tls::crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
