//! Hostile input against real `phimon run` processes on 127.0.0.1:
//!
//! - junk at a node's QUIC port (random datagrams, QUIC long-header
//!   packets, truncated and corrupted copies of a real client Initial)
//!   and 10,000 connection attempts without a client certificate: the
//!   cluster stays converged, the node counts the refusals, its memory
//!   stays flat;
//! - a member with a valid certificate from the cluster CA that gossips
//!   forged state: what it can and cannot achieve (docs/reliability.md,
//!   "Hostile input", states the same figures).
//!
//! Every flood is bounded in count and time and goes to loopback only.

use crate::common::{bin, converged, paging, sink};
use phimon_exporter::PeerInfo;
use phimon_gossip::wire::{Channel, Frame, Heartbeat, Records, SignedRecord};
use phimon_gossip::{
    AuthError, Declared, KeyValue, NodeId, Record, RecordBody, RingKey, Signer, Status, Verdict,
};
use phimon_testkit::local_cluster::metric;
use phimon_testkit::local_cluster::{ClusterSpec, LocalCluster};
use phimon_transport::{Peer, Received, RecordSigner, Transport, TransportConfig, tls};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Resident memory of a process (`VmRSS`), KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn metric_of(c: &LocalCluster, i: usize, name: &str) -> f64 {
    metric(&c.get(i, "/metrics").await.unwrap_or_default(), name)
}

/// What a watcher saw wrong with the real members during a phase.
#[derive(Debug, Default)]
struct Watch {
    polls: u64,
    problems: Vec<String>,
}

impl Watch {
    /// One poll of every running node's `/v1/peers`: each must answer and
    /// list each of `members` alive and unsuspected.
    async fn poll(&mut self, c: &LocalCluster, observers: &[usize], members: &[&str]) {
        self.polls += 1;
        for &i in observers {
            match c.peers(i).await {
                Err(e) => self
                    .problems
                    .push(format!("{}: /v1/peers: {e}", c.nodes[i].id)),
                Ok(peers) => {
                    for m in members.iter().filter(|m| **m != c.nodes[i].id) {
                        match peers.iter().find(|p| p.node_id == *m) {
                            Some(p) if p.status == Status::Alive && !p.suspected => {}
                            other => self.problems.push(format!(
                                "{} sees {m} as {:?}",
                                c.nodes[i].id,
                                other.map(|p| (&p.status, p.suspected, p.phi))
                            )),
                        }
                    }
                }
            }
        }
    }
}

// ----- junk at the QUIC port -----------------------------------------

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

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
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A quinn client that speaks phimon's ALPN, trusts any server and
/// presents no certificate.
fn certless_client() -> quinn::Endpoint {
    let provider = tls::crypto_provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap(),
    )));
    ep
}

/// The first datagram a real phimon-ALPN client sends (its Initial),
/// captured by pointing the client at a plain UDP socket.
async fn capture_initial() -> Vec<u8> {
    let trap = UdpSocket::bind("127.0.0.1:0").unwrap();
    trap.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ep = certless_client();
    let connecting = ep.connect(trap.local_addr().unwrap(), "capture").unwrap();
    let pending = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), connecting).await;
    });
    let n = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = trap.recv_from(&mut buf).unwrap();
        buf.truncate(n);
        buf
    })
    .await
    .unwrap();
    pending.abort();
    ep.close(0u32.into(), b"");
    assert!(n.len() >= 1200, "an Initial is padded to 1200 bytes");
    assert_eq!(n[0] & 0xc0, 0xc0, "not a long-header packet");
    n
}

/// One junk datagram: random bytes, a forged long-header packet, or a
/// truncated or corrupted copy of the real Initial.
fn junk(rng: &mut StdRng, initial: &[u8]) -> Vec<u8> {
    match rng.random_range(0..10) {
        0..4 => {
            let mut b = vec![0u8; rng.random_range(1..1500)];
            rng.fill_bytes(&mut b);
            b
        }
        4..7 => {
            // Long header, QUIC v1 (or an unknown version), random
            // connection ids, a length that may lie, padded to 1200.
            let mut b = vec![0xc0 | rng.random_range(0u8..0x40)];
            let version: u32 = if rng.random_bool(0.8) {
                1
            } else {
                rng.random()
            };
            b.extend_from_slice(&version.to_be_bytes());
            for _ in 0..2 {
                let len = rng.random_range(0u8..=21);
                b.push(len);
                b.extend((0..len).map(|_| rng.random::<u8>()));
            }
            b.push(0); // token length
            b.extend_from_slice(&[0x44, rng.random(), rng.random(), rng.random()]);
            let pad = rng.random_range(0..1300);
            b.extend((0..pad).map(|_| rng.random::<u8>()));
            b
        }
        7..9 => initial[..rng.random_range(1..initial.len())].to_vec(),
        _ => {
            let mut b = initial.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            b
        }
    }
}

/// 50,000 junk datagrams and 10,000 certificate-less QUIC connection
/// attempts at node-1, while all three nodes are watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_certless_handshakes_are_refused_counted_and_memory_stays_flat() {
    const DATAGRAMS: usize = 50_000;
    const ATTEMPTS: usize = 10_000;
    const IN_FLIGHT: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 3,
        ..ClusterSpec::default()
    };
    let mut c = converged(dir.path(), &spec).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let target = c.nodes[0].gossip;
    let pid = c.nodes[0].pid().unwrap();
    let members = ["node-1", "node-2", "node-3"];
    let rss_before = rss_kib(pid);
    let refused_before = metric_of(&c, 0, "phimon_auth_failures_total").await;
    let dropped_before = handshakes_dropped(&c).await;
    let mut watch = Watch::default();
    let started = Instant::now();

    // Datagrams, in paced batches so the node's socket buffer is the
    // limit, not a burst of one millisecond.
    let initial = capture_initial().await;
    let mut rng = StdRng::seed_from_u64(8);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0usize;
    let mut bytes = 0usize;
    while sent < DATAGRAMS {
        for _ in 0..1000 {
            let d = junk(&mut rng, &initial);
            if sock.send_to(&d, target).is_ok() {
                bytes += d.len();
            }
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        if sent % 10_000 == 0 {
            watch.poll(&c, &[0, 1, 2], &members).await;
        }
    }
    let junk_time = started.elapsed();
    let rss_junk = rss_kib(pid);

    // Connection attempts without a certificate, IN_FLIGHT at a time.
    let ep = certless_client();
    let (done_tx, mut done_rx) = mpsc::channel::<Result<(), String>>(ATTEMPTS);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let hs_start = Instant::now();
    let spawner = {
        let ep = ep.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            for _ in 0..ATTEMPTS {
                let permit = slots.clone().acquire_owned().await.unwrap();
                let ep = ep.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let attempt = async {
                        // TLS 1.3: the client may finish before the
                        // server judges its (absent) certificate, so the
                        // refusal can arrive after "connected".
                        let conn = ep.connect(target, "node-1").map_err(|e| e.to_string())?;
                        let err = match conn.await {
                            Ok(conn) => conn.closed().await,
                            Err(e) => e,
                        };
                        Ok::<_, String>(err)
                    };
                    let r = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                        Err(_) => Err("not refused within 10 s".to_owned()),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(quinn::ConnectionError::ConnectionClosed(_)))
                        | Ok(Ok(quinn::ConnectionError::TransportError(_))) => Ok(()),
                        Ok(Ok(other)) => Err(format!("ended with {other}")),
                    };
                    let _ = done.send(r).await;
                    drop(permit);
                });
            }
        })
    };
    let mut refused = 0usize;
    let mut odd: HashMap<String, usize> = HashMap::new();
    let mut last_poll = Instant::now();
    for _ in 0..ATTEMPTS {
        match tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await {
            Ok(Some(Ok(()))) => refused += 1,
            Ok(Some(Err(e))) => *odd.entry(e).or_default() += 1,
            Ok(None) | Err(_) => panic!("connection attempts stalled after {refused}"),
        }
        if last_poll.elapsed() > Duration::from_millis(500) {
            watch.poll(&c, &[0, 1, 2], &members).await;
            last_poll = Instant::now();
        }
    }
    spawner.await.unwrap();
    let hs_time = hs_start.elapsed();
    ep.close(0u32.into(), b"");

    // Let closed connections drain, then measure.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        watch.poll(&c, &[0, 1, 2], &members).await;
    }
    let rss_after = rss_kib(pid);
    let counted = metric_of(&c, 0, "phimon_auth_failures_total").await - refused_before;
    let dropped = handshakes_dropped(&c).await - dropped_before;
    let unanswered = odd.remove("not refused within 10 s").unwrap_or(0);
    eprintln!(
        "junk: {sent} datagrams ({} KiB) in {junk_time:.1?} (RSS then {rss_junk} KiB); {ATTEMPTS} certless attempts in \
         {hs_time:.1?} ({:.0}/s), {refused} refused, other outcomes {odd:?}; node-1 counted \
         {counted} auth failures and dropped {dropped} handshakes (limits); node-1 RSS {} KiB before, {} KiB after (+{} KiB); \
         {} polls of 3 nodes",
        bytes / 1024,
        ATTEMPTS as f64 / hs_time.as_secs_f64(),
        rss_before,
        rss_after,
        rss_after.saturating_sub(rss_before),
        watch.polls
    );
    assert!(
        watch.problems.is_empty(),
        "the cluster suffered: {:?}\nnode-1 log:\n{}",
        &watch.problems[..watch.problems.len().min(10)],
        c.log_tail(0, 20)
    );
    // Refused at the TLS layer, or dropped by a handshake limit (then
    // the client hears nothing): either way counted, never let in.
    assert_eq!(
        refused + unanswered,
        ATTEMPTS,
        "not every attempt was refused: {odd:?}"
    );
    assert!(
        unanswered as f64 <= dropped,
        "{unanswered} attempts unanswered, {dropped} handshakes counted as dropped"
    );
    assert!(
        counted + dropped >= ATTEMPTS as f64,
        "node-1 counted {counted} refusals and {dropped} drops for {ATTEMPTS} attempts"
    );
    let grown_mib = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    assert!(grown_mib < 30.0, "node-1 RSS grew {grown_mib:.1} MiB");
    assert!(c.is_running(0), "node-1 died");
    c.wait_converged(Duration::from_secs(10)).await.unwrap();
}

/// The value of one labelled series (`name{label="value"}`) in a scrape.
fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// Incoming handshakes node-1 turned away before they could authenticate
/// (limits and timeouts; Retry challenges excluded).
async fn handshakes_dropped(c: &LocalCluster) -> f64 {
    let body = c.get(0, "/metrics").await.unwrap_or_default();
    [
        "handshake_limit",
        "per_ip_limit",
        "timeout",
        "connection_limit",
    ]
    .iter()
    .map(|r| {
        series(
            &body,
            &format!("phimon_transport_handshakes_refused_total{{reason=\"{r}\"}}"),
        )
    })
    .sum()
}

// ----- a member that forges -------------------------------------------

/// Signs with a member certificate's key, the way `phimon run` does
/// (src/run/auth.rs): the credential is the chain as a 2-byte count and
/// 4-byte-length-prefixed DER certificates, the signature the 2-byte TLS
/// scheme and its bytes. Written out again here so that a change of the
/// format on one side only fails this test.
struct CertKey {
    signer: Arc<RecordSigner>,
    credential: Arc<[u8]>,
}

impl CertKey {
    fn new(signer: Arc<RecordSigner>) -> CertKey {
        let mut cred = (signer.chain().len() as u16).to_be_bytes().to_vec();
        for c in signer.chain() {
            cred.extend_from_slice(&(c.len() as u32).to_be_bytes());
            cred.extend_from_slice(c);
        }
        CertKey {
            signer,
            credential: Arc::from(cred),
        }
    }
}

impl Signer for CertKey {
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        let sig = self
            .signer
            .sign(message)
            .map_err(|e| AuthError::Sign(e.to_string()))?;
        let mut out = sig.scheme.to_be_bytes().to_vec();
        out.extend_from_slice(&sig.bytes);
        Ok(out)
    }

    fn credential(&self) -> Arc<[u8]> {
        self.credential.clone()
    }
}

/// A compromised member: a valid certificate from the cluster CA (node id
/// `mallory`), its own key, and hand-built frames sent over the real QUIC
/// transport. It joins as a member (it signs and pushes its own record
/// and heartbeats its observers), so its verdicts count as much as any
/// member's, and it tries every forgery the protocol has to refuse.
struct Mallory {
    transport: Transport,
    inbox: mpsc::Receiver<Received>,
    key: CertKey,
    cluster: String,
    generation: u64,
    version: u64,
    seq: u64,
}

impl Mallory {
    fn join(c: &LocalCluster, cluster: &str) -> Mallory {
        let certs = c.dir().join("certs");
        let out = std::process::Command::new(bin())
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--cluster", cluster, "--node", "mallory"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let (transport, inbox) = Transport::bind(TransportConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca_pem_path: certs.join("ca.pem"),
            cert_pem_path: certs.join("mallory.pem"),
            key_pem_path: certs.join("mallory.key"),
            cluster_name: cluster.to_owned(),
            node_id: Some("mallory".into()),
            // The invented-id phase queues many messages at once.
            dial_queue_len: 4096,
            ..TransportConfig::default()
        })
        .unwrap();
        let key = CertKey::new(transport.record_signer());
        Mallory {
            transport,
            inbox,
            key,
            cluster: cluster.to_owned(),
            generation: 1,
            version: 0,
            seq: 0,
        }
    }

    fn peer(c: &LocalCluster, i: usize) -> Peer {
        Peer {
            node_id: Some(NodeId::from(c.nodes[i].id.as_str())),
            addr: c.nodes[i].gossip.to_string(),
        }
    }

    /// `body` signed with Mallory's key, whoever it names.
    fn sign(&mut self, body: RecordBody) -> SignedRecord {
        Record::sign(body, &mut self.key).unwrap().signed().clone()
    }

    /// A body in this cluster: `node` at `generation`, alive at `address`.
    fn body(&self, node: &str, generation: u64, address: String) -> RecordBody {
        RecordBody {
            cluster: self.cluster.clone(),
            node: NodeId::from(node),
            generation,
            version: 1,
            address,
            status: Declared::Alive,
            kv: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    /// Mallory's own record, next version, with `verdicts`.
    fn own(&mut self, verdicts: Vec<Verdict>) -> SignedRecord {
        self.version += 1;
        let mut body = self.body(
            "mallory",
            self.generation,
            self.transport.local_addr().to_string(),
        );
        body.version = self.version;
        body.verdicts = verdicts;
        self.sign(body)
    }

    /// Pushes `records` to node `i` as news (to be relayed).
    fn push(&self, c: &LocalCluster, i: usize, records: Vec<SignedRecord>) {
        let frame = Frame::Records(Records {
            records,
            want: Vec::new(),
            relay: true,
        });
        self.transport
            .send_message(&Self::peer(c, i), frame.encode())
            .unwrap();
    }

    /// One heartbeat to each running node: Mallory stays a live member.
    fn beat(&mut self, c: &LocalCluster) {
        self.seq += 1;
        let frame = Frame::Heartbeat(Heartbeat {
            generation: self.generation,
            seq: self.seq,
            fingerprint: 0,
        })
        .encode();
        for i in 0..c.nodes.len() {
            if c.nodes[i].pid().is_some() {
                let _ = self.transport.send_datagram(&Self::peer(c, i), &frame);
            }
        }
    }

    /// Node `id`'s record as node `i` holds it, asked for the way any
    /// member does (a `want`), heartbeating meanwhile.
    async fn record_of(&mut self, c: &LocalCluster, i: usize, id: &str) -> RecordBody {
        let want = Frame::Records(Records {
            records: Vec::new(),
            want: vec![RingKey::of(&NodeId::from(id)).0],
            relay: false,
        });
        self.transport
            .send_message(&Self::peer(c, i), want.encode())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::time::timeout(left, self.inbox.recv())
                .await
                .unwrap_or_else(|_| panic!("{} did not send {id}'s record", c.nodes[i].id))
                .unwrap();
            let Ok(Frame::Records(r)) = Frame::decode(&got.payload, Channel::Message, 1 << 20)
            else {
                continue;
            };
            for s in r.records {
                let body = RecordBody::decode(&s.body, &self.cluster, 1 << 16).unwrap();
                if body.node.as_str() == id {
                    return body;
                }
            }
        }
    }

    /// Keeps Mallory alive (heartbeats every 250 ms, its inbox drained)
    /// for `d`, polling `watch` every second.
    async fn live_for(
        &mut self,
        c: &LocalCluster,
        d: Duration,
        watch: &mut Watch,
        observers: &[usize],
        members: &[&str],
    ) {
        let t = Instant::now();
        let mut polled = Instant::now();
        while t.elapsed() < d {
            self.beat(c);
            while self.inbox.try_recv().is_ok() {}
            if polled.elapsed() >= Duration::from_secs(1) {
                watch.poll(c, observers, members).await;
                polled = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn peer_of(c: &LocalCluster, i: usize, id: &str) -> Option<PeerInfo> {
    c.peers(i).await.ok()?.into_iter().find(|p| p.node_id == id)
}

/// `phimon_records_rejected_total{reason}` summed over the running nodes.
async fn rejected(c: &LocalCluster, reason: &str) -> f64 {
    let mut sum = 0.0;
    for i in 0..c.nodes.len() {
        if c.nodes[i].pid().is_some() {
            let body = c.get(i, "/metrics").await.unwrap_or_default();
            sum += series(
                &body,
                &format!("phimon_records_rejected_total{{reason=\"{reason}\"}}"),
            );
        }
    }
    sum
}

/// Every forgery a member with a valid certificate can attempt against
/// a real 4-node cluster, and what comes of it:
/// 1. records naming other nodes (a live node ejected to a bogus address
///    at a far generation, declared left; invented ids), signed with its
///    own key: refused as `forged`, never stored, never relayed;
/// 2. a real node's record with an altered body under that node's
///    credential and signature: refused as `signature`;
/// 3. as a live member and an observer of most nodes, verdicts that every
///    live node is suspected: no suspicion, no page (one observer is no
///    quorum);
/// 4. a verdict that a killed node is alive: it is suspected and paged
///    all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_valid_certificate_cannot_forge_state() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink().await;
    let spec = paging(4, &sink);
    let mut c = converged(dir.path(), &spec).await;
    let mut m = Mallory::join(&c, &spec.cluster);
    let honest = ["node-1", "node-2", "node-3", "node-4"];
    let all = [0, 1, 2, 3];
    let mut watch = Watch::default();

    // Mallory joins as a member.
    let own = m.own(Vec::new());
    for i in all {
        m.push(&c, i, vec![own.clone()]);
    }
    let t = Instant::now();
    loop {
        m.live_for(&c, Duration::from_millis(500), &mut watch, &[], &[])
            .await;
        let mut everywhere = true;
        for i in all {
            everywhere &= peer_of(&c, i, "mallory")
                .await
                .is_some_and(|p| p.status == Status::Alive && !p.suspected);
        }
        if everywhere {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "mallory never joined: {:?}",
            c.peers(0).await
        );
    }
    // Settle: every node's observers now include Mallory where the ring
    // says so, and its heartbeats feed their windows.
    m.live_for(&c, Duration::from_secs(5), &mut watch, &all, &honest)
        .await;
    assert!(watch.problems.is_empty(), "{:?}", watch.problems);

    // 1. Records naming others, signed with Mallory's own key.
    let forged_before = rejected(&c, "forged").await;
    let n2 = m.record_of(&c, 0, "node-2").await;
    let mut eject = m.body("node-2", n2.generation + (1 << 31), "192.0.2.1:9".into());
    eject.version = n2.version + 1000;
    let eject = m.sign(eject);
    let mut left = n2.clone();
    left.version += 1;
    left.status = Declared::Left;
    let left = m.sign(left);
    let mut kv = n2.clone();
    kv.version += 1;
    kv.kv = vec![KeyValue("role".into(), "forged".into())];
    let kv = m.sign(kv);
    let forgeries = 3.0;
    for i in all {
        m.push(&c, i, vec![eject.clone(), left.clone(), kv.clone()]);
    }
    // 5,000 invented ids, 40 records per message.
    const INVENTED: usize = 5000;
    let pid1 = c.nodes[0].pid().unwrap();
    let rss_before = rss_kib(pid1);
    let invented: Vec<SignedRecord> = (0..INVENTED)
        .map(|n| {
            let b = m.body(
                &format!("fake-{n:05}"),
                1,
                format!("127.0.0.1:{}", 1024 + n),
            );
            m.sign(b)
        })
        .collect();
    for chunk in invented.chunks(40) {
        m.push(&c, 0, chunk.to_vec());
        m.beat(&c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.live_for(&c, Duration::from_secs(5), &mut watch, &all, &honest)
        .await;
    let forged = rejected(&c, "forged").await - forged_before;
    let rss_after = rss_kib(pid1);
    let mut listed_fake = 0;
    for i in all {
        let peers = c.peers(i).await.unwrap();
        listed_fake += peers
            .iter()
            .filter(|p| p.node_id.starts_with("fake-"))
            .count();
        let p2 = peers.iter().find(|p| p.node_id == "node-2");
        if i != 1 {
            let p2 = p2.unwrap();
            assert_eq!(
                (p2.generation, p2.address.as_str(), p2.status),
                (n2.generation, n2.address.as_str(), Status::Alive),
                "{} took a forged node-2 record",
                c.nodes[i].id
            );
        }
    }
    let n2_after = m.record_of(&c, 1, "node-2").await;
    eprintln!(
        "records naming others signed by mallory: {forged} counted as forged \
         ({} sent: 3 about node-2 to each of 4 nodes, {INVENTED} invented ids to node-1); \
         {listed_fake} invented ids listed; node-1 RSS {rss_before} -> {rss_after} KiB; \
         node-2 generation {} -> {}, version {} -> {}",
        4.0 * forgeries + INVENTED as f64,
        n2.generation,
        n2_after.generation,
        n2.version,
        n2_after.version
    );
    assert_eq!(forged, 4.0 * forgeries + INVENTED as f64);
    assert_eq!(listed_fake, 0, "an invented id entered a table");
    // node-2 never saw a record of its own it had to refute.
    assert_eq!(n2_after.generation, n2.generation, "node-2 restarted");
    assert!(
        rss_after.saturating_sub(rss_before) < 16 * 1024,
        "node-1 RSS grew from {rss_before} to {rss_after} KiB"
    );

    // 2. node-2's real record, altered, under its credential and signature.
    let sig_before = rejected(&c, "signature").await;
    let real = {
        // Fetch the signed bytes themselves this time.
        let want = Frame::Records(Records {
            records: Vec::new(),
            want: vec![RingKey::of(&NodeId::from("node-2")).0],
            relay: false,
        });
        m.transport
            .send_message(&Mallory::peer(&c, 0), want.encode())
            .unwrap();
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), m.inbox.recv())
                .await
                .expect("no record from node-1")
                .unwrap();
            if let Ok(Frame::Records(r)) = Frame::decode(&got.payload, Channel::Message, 1 << 20)
                && let Some(s) = r.records.into_iter().find(|s| {
                    RecordBody::decode(&s.body, &m.cluster, 1 << 16)
                        .is_ok_and(|b| b.node.as_str() == "node-2")
                })
            {
                break s;
            }
        }
    };
    let mut altered = RecordBody::decode(&real.body, &m.cluster, 1 << 16).unwrap();
    altered.version += 1;
    altered.status = Declared::Left;
    let altered = SignedRecord {
        body: Arc::from(altered.encode()),
        signature: real.signature.clone(),
        credential: real.credential.clone(),
    };
    for i in all {
        m.push(&c, i, vec![altered.clone()]);
    }
    m.live_for(&c, Duration::from_secs(3), &mut watch, &all, &honest)
        .await;
    let sig = rejected(&c, "signature").await - sig_before;
    eprintln!("node-2's record altered under its own signature: {sig} refused as signature");
    assert_eq!(sig, 4.0);

    // 3. Verdicts that every live node is suspected, from a live member
    // that observes most of them.
    // Each node as another node sees it.
    let viewer = |id: &str| usize::from(id == "node-1");
    let mut verdicts = Vec::new();
    for id in honest {
        let p = peer_of(&c, viewer(id), id).await.unwrap();
        verdicts.push(Verdict {
            subject: NodeId::from(id),
            generation: p.generation,
            suspected: true,
            phi_centi: 100_000,
        });
    }
    let lie = m.own(verdicts.clone());
    for i in all {
        m.push(&c, i, vec![lie.clone()]);
    }
    let mut observed_by_mallory = 0;
    for id in honest {
        let p = peer_of(&c, viewer(id), id).await.unwrap();
        if p.observers.iter().any(|o| o == "mallory") {
            observed_by_mallory += 1;
        }
    }
    m.live_for(&c, Duration::from_secs(15), &mut watch, &all, &honest)
        .await;
    let pages = sink.pages();
    eprintln!(
        "mallory, observer of {observed_by_mallory} of 4 nodes, reported all 4 suspected for \
         15 s: {} problems seen in {} polls, pages {:?}",
        watch.problems.len(),
        watch.polls,
        pages
            .iter()
            .map(|p| (&p.event, &p.node_id))
            .collect::<Vec<_>>()
    );
    assert!(
        observed_by_mallory >= 2,
        "mallory observes too few nodes for the test to mean anything"
    );
    assert!(
        watch.problems.is_empty(),
        "a lone observer's verdicts hurt live members: {:?}",
        &watch.problems[..watch.problems.len().min(10)]
    );
    assert!(
        pages.iter().all(|p| p.event != "suspected"),
        "paged on a lone observer's word: {pages:?}"
    );

    // 4. Kill node-4; Mallory vouches that it is alive.
    let g4 = peer_of(&c, 0, "node-4").await.unwrap().generation;
    let vouch: Vec<Verdict> = verdicts
        .into_iter()
        .map(|mut v| {
            v.suspected = false;
            v.phi_centi = 0;
            if v.subject.as_str() == "node-4" {
                v.generation = g4;
            }
            v
        })
        .collect();
    let vouch = m.own(vouch);
    for i in all {
        m.push(&c, i, vec![vouch.clone()]);
    }
    c.kill(3).unwrap();
    let killed = Instant::now();
    let mut suspected = [None, None, None];
    let mut paged = None;
    while killed.elapsed() < Duration::from_secs(30)
        && (paged.is_none() || suspected.iter().any(Option::is_none))
    {
        m.beat(&c);
        while m.inbox.try_recv().is_ok() {}
        for (i, at) in suspected.iter_mut().enumerate() {
            if at.is_none()
                && peer_of(&c, i, "node-4")
                    .await
                    .is_some_and(|p| p.status == Status::Suspected)
            {
                *at = Some(killed.elapsed());
            }
        }
        if paged.is_none()
            && sink
                .pages()
                .iter()
                .any(|p| p.event == "suspected" && p.node_id == "node-4")
        {
            paged = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "node-4 killed while mallory vouched for it: suspected at node-1..3 after {suspected:?}, \
         paged after {paged:?}"
    );
    for (i, at) in suspected.iter().enumerate() {
        assert!(
            at.is_some(),
            "node-{} never suspected node-4\n{}",
            i + 1,
            c.log_tail(i, 20)
        );
    }
    assert!(paged.is_some(), "no page for node-4: {:?}", sink.pages());
    let pages = sink.pages();
    assert!(
        pages
            .iter()
            .filter(|p| p.event == "suspected")
            .all(|p| p.node_id == "node-4"),
        "{pages:?}"
    );
}
