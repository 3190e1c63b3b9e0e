//! The QUIC transport over real sockets on 127.0.0.1: mutual TLS, refusals
//! and their counters, size caps, isolation from dead peers, reconnection
//! after a restart.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use phimon_gossip::tls::{self, AuthFailure, DevCa, IssuedCert, generate_dev_certs};
use phimon_gossip::transport::{Received, SendError, Transport, TransportConfig};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::mpsc;

const CLUSTER: &str = "prod";
const DAY: Duration = Duration::from_secs(86_400);

/// A directory with a dev CA and certificates for `nodes`.
fn pki(nodes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
    generate_dev_certs(dir.path(), CLUSTER, &ids, 2).unwrap();
    dir
}

fn ca(dir: &Path) -> DevCa {
    DevCa::from_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
        &dir.join("ca.pem"),
    )
    .unwrap()
}

fn config(dir: &Path, id: &str) -> TransportConfig {
    TransportConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join(format!("{id}.pem")),
        key_pem_path: dir.join(format!("{id}.key")),
        cluster_name: CLUSTER.into(),
        node_id: Some(id.into()),
        connect_timeout: Duration::from_secs(2),
        exchange_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..TransportConfig::default()
    }
}

fn node(dir: &Path, id: &str) -> (Transport, mpsc::Receiver<Received>) {
    Transport::bind(config(dir, id)).unwrap()
}

async fn recv(rx: &mut mpsc::Receiver<Received>, within: Duration) -> Received {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no message in time")
        .expect("inbox closed")
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_nodes_exchange_messages_and_see_authenticated_ids() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, mut a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    assert_eq!(a.identity().node_id, "node-a");
    assert_eq!(a.identity().cluster.as_deref(), Some(CLUSTER));

    a.send(&b.local_addr().to_string(), Some("node-b"), b"syn".to_vec())
        .unwrap();
    let m = recv(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(
        (m.node_id.as_str(), m.payload.as_slice()),
        ("node-a", &b"syn"[..])
    );
    assert_eq!(m.remote, a.local_addr(), "sent from the listening socket");

    // The other direction, with no expectation of who answers.
    b.send(&a.local_addr().to_string(), None, b"ack".to_vec())
        .unwrap();
    let m = recv(&mut a_rx, Duration::from_secs(5)).await;
    assert_eq!(
        (m.node_id.as_str(), m.payload.as_slice()),
        ("node-b", &b"ack"[..])
    );

    // Many messages in order of sending share one connection.
    for i in 0..50u32 {
        a.send(
            &b.local_addr().to_string(),
            Some("node-b"),
            i.to_be_bytes().to_vec(),
        )
        .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(recv(&mut b_rx, Duration::from_secs(5)).await.payload);
    }
    got.sort();
    let want: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(got, want);

    assert!(a.flush(Duration::from_secs(5)).await, "all acknowledged");
    let (sa, sb) = (a.stats().snapshot(), b.stats().snapshot());
    assert_eq!(sa.messages_out, 51);
    assert_eq!(sb.messages_in, 51);
    assert_eq!(sb.bytes_in, 3 + 50 * 4);
    assert_eq!(sa.messages_in, 1);
    assert_eq!(sa.auth_failures + sb.auth_failures, 0);
    assert_eq!(sa.send_dropped + sa.delivery_timeouts, 0);
    // Each side holds its outgoing and the other's incoming connection.
    assert_eq!(sa.connections_open, 2);
    assert_eq!(sb.connections_open, 2);
}

#[tokio::test]
async fn a_node_that_called_us_is_answered_on_its_own_connection() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, mut a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    b.send(&a.local_addr().to_string(), None, b"syn".to_vec())
        .unwrap();
    let syn = recv(&mut a_rx, Duration::from_secs(5)).await;
    assert_eq!(syn.node_id, "node-b");

    // node-a does not know node-b's address: it answers by node id.
    a.send("", Some(&syn.node_id), b"ack".to_vec()).unwrap();
    let ack = recv(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(
        (ack.node_id.as_str(), &ack.payload[..]),
        ("node-a", &b"ack"[..])
    );
    assert!(a.flush(Duration::from_secs(5)).await);
    let sa = a.stats().snapshot();
    assert_eq!(
        sa.connections_open, 1,
        "no connection of its own was dialled"
    );
    assert_eq!(sa.handshake_failures, 0);

    // A node with no connection: dropped and counted, nothing dialled.
    a.send("", Some("node-z"), b"lost".to_vec()).unwrap();
    eventually(Duration::from_secs(5), "drop for node-z", || {
        a.stats().snapshot().send_dropped == 1
    })
    .await;
    assert_eq!(
        a.send("", None, b"nowhere".to_vec()),
        Err(SendError::BadAddress {
            addr: String::new()
        })
    );
    // node-a keeps answering while node-b's connection lives.
    a.send("", Some("node-b"), b"ack2".to_vec()).unwrap();
    assert_eq!(
        &recv(&mut b_rx, Duration::from_secs(5)).await.payload[..],
        b"ack2"
    );
}

/// Accepts any server certificate: the rogue clients below want to reach
/// the server's check of *their* certificate.
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

/// A plain quinn client presenting `cert` (or none) and trusting anyone.
fn rogue_client(cert: Option<&IssuedCert>) -> quinn::Endpoint {
    let provider = tls::crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut cfg = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).unwrap(),
    )));
    ep
}

/// Connects with `cert`, tries to send a message, and returns how the
/// connection ended (it must end).
async fn rogue_attempt(server: SocketAddr, cert: Option<&IssuedCert>) -> quinn::ConnectionError {
    let ep = rogue_client(cert);
    let attempt = async {
        // In TLS 1.3 the client finishes its handshake before the server
        // has judged the client certificate, so the refusal may arrive
        // after "connected".
        let conn = ep.connect(server, "anything")?.await?;
        if let Ok(mut s) = conn.open_uni().await {
            let _ = s.write_all(b"let me in").await;
            let _ = s.finish();
        }
        Ok::<_, Box<dyn std::error::Error>>(conn.closed().await)
    };
    let err = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(closed)) => closed,
        Ok(Err(e)) => match e.downcast::<quinn::ConnectionError>() {
            Ok(e) => *e,
            Err(e) => panic!("unexpected error {e}"),
        },
        Err(_) => panic!("rogue connection was not refused in time"),
    };
    ep.close(0u32.into(), b"");
    err
}

#[tokio::test]
async fn clients_with_bad_certificates_are_refused_counted_and_never_delivered() {
    let dir = pki(&["node-a", "node-b"]);
    let (server, mut inbox) = node(dir.path(), "node-a");
    let (friend, _friend_rx) = node(dir.path(), "node-b");
    let stats = server.stats();
    let real_ca = ca(dir.path());
    let foreign_ca = DevCa::generate("elsewhere", DAY).unwrap();
    let now = SystemTime::now();
    let cases: Vec<(&str, Option<IssuedCert>, AuthFailure)> = vec![
        ("no certificate", None, AuthFailure::NoCertificate),
        (
            "foreign CA",
            Some(foreign_ca.issue("node-x", CLUSTER, DAY).unwrap()),
            AuthFailure::UnknownCa,
        ),
        (
            "expired",
            Some(
                real_ca
                    .issue_with_validity("node-x", Some(CLUSTER), now - 10 * DAY, now - DAY)
                    .unwrap(),
            ),
            AuthFailure::Expired,
        ),
        (
            "other cluster",
            Some(real_ca.issue("node-x", "staging", DAY).unwrap()),
            AuthFailure::WrongCluster,
        ),
        (
            "no cluster SAN",
            Some(
                real_ca
                    .issue_with_validity("node-x", None, now - DAY, now + DAY)
                    .unwrap(),
            ),
            AuthFailure::WrongCluster,
        ),
    ];
    for (i, (what, cert, reason)) in cases.iter().enumerate() {
        let err = rogue_attempt(server.local_addr(), cert.as_ref()).await;
        assert!(
            matches!(err, quinn::ConnectionError::ConnectionClosed(_)),
            "{what}: closed by the server's TLS alert, got {err:?}"
        );
        eventually(Duration::from_secs(5), what, || {
            stats.auth_failures(*reason) >= 1
        })
        .await;
        assert_eq!(
            stats.auth_failures_total(),
            i as u64 + 1,
            "{what}: counted once"
        );
    }
    // A legitimate message is the first and only thing ever delivered.
    friend
        .send(
            &server.local_addr().to_string(),
            Some("node-a"),
            b"legit".to_vec(),
        )
        .unwrap();
    let m = recv(&mut inbox, Duration::from_secs(5)).await;
    assert_eq!(
        (m.node_id.as_str(), &m.payload[..]),
        ("node-b", &b"legit"[..])
    );
    assert!(
        inbox.try_recv().is_err(),
        "nothing from the refused clients"
    );
    let snap = stats.snapshot();
    assert_eq!(snap.messages_in, 1);
    assert_eq!(snap.auth_failures, 5);
    assert_eq!(snap.connections_open, 1, "only the friend's connection");
}

#[tokio::test]
async fn servers_of_another_cluster_or_identity_are_refused_by_the_sender() {
    let dir = pki(&["node-a", "node-c"]);
    // node-s: same CA, cluster "staging".
    let issued = ca(dir.path()).issue("node-s", "staging", DAY).unwrap();
    std::fs::write(dir.path().join("node-s.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-s.key"), &issued.key_pem).unwrap();
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (s, mut s_rx) = Transport::bind(TransportConfig {
        cluster_name: "staging".into(),
        ..config(dir.path(), "node-s")
    })
    .unwrap();
    let (c, mut c_rx) = node(dir.path(), "node-c");
    let stats = a.stats();

    a.send(&s.local_addr().to_string(), None, b"hello staging".to_vec())
        .unwrap();
    eventually(Duration::from_secs(5), "wrong-cluster refusal", || {
        stats.auth_failures(AuthFailure::WrongCluster) == 1
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s_rx.recv())
            .await
            .is_err(),
        "nothing reaches the other cluster"
    );

    // node-c's address, but we expect node-x there: dropped and counted.
    let c_addr = c.local_addr().to_string();
    a.send(&c_addr, Some("node-x"), b"for x".to_vec()).unwrap();
    a.send(&c_addr, Some("node-c"), b"for c".to_vec()).unwrap();
    let m = recv(&mut c_rx, Duration::from_secs(5)).await;
    assert_eq!(&m.payload[..], b"for c");
    assert_eq!(stats.auth_failures(AuthFailure::IdentityMismatch), 1);
    assert!(c_rx.try_recv().is_err());
}

#[tokio::test]
async fn oversized_frames_are_refused_and_counted_and_the_connection_survives() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = Transport::bind(TransportConfig {
        max_message_bytes: 1 << 20,
        ..config(dir.path(), "node-a")
    })
    .unwrap();
    let (b, mut b_rx) = Transport::bind(TransportConfig {
        max_message_bytes: 4096,
        ..config(dir.path(), "node-b")
    })
    .unwrap();
    let to_b = b.local_addr().to_string();

    // Our own cap is enforced before queueing.
    assert_eq!(
        b.send(&a.local_addr().to_string(), None, vec![0; 4097]),
        Err(SendError::TooLarge {
            len: 4097,
            max: 4096
        })
    );

    a.send(&to_b, Some("node-b"), vec![7; 100_000]).unwrap();
    eventually(Duration::from_secs(5), "frame_too_large", || {
        b.stats().snapshot().frame_too_large == 1
    })
    .await;
    // Exactly at the cap is fine, on the same connection.
    a.send(&to_b, Some("node-b"), vec![1; 4096]).unwrap();
    let m = recv(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(m.payload.len(), 4096);
    assert!(
        b_rx.try_recv().is_err(),
        "the oversized frame was not delivered"
    );
    assert_eq!(b.stats().snapshot().messages_in, 1);
    assert_eq!(a.stats().snapshot().delivery_timeouts, 0);
}

#[tokio::test]
async fn dead_peers_do_not_delay_delivery_to_live_ones() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    // A socket that swallows every packet (a hung host) and a port with
    // nobody behind it (a dead process).
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let connect_timeout = a.config().connect_timeout;
    for round in 0..20u8 {
        a.send(
            &black_hole.local_addr().unwrap().to_string(),
            None,
            vec![round; 512],
        )
        .unwrap();
        a.send(&dead_port.to_string(), None, vec![round; 512])
            .unwrap();
        a.send("no-such-host.invalid:7800", None, vec![round; 512])
            .unwrap();
    }
    let started = Instant::now();
    a.send(
        &b.local_addr().to_string(),
        Some("node-b"),
        b"alive".to_vec(),
    )
    .unwrap();
    let m = recv(&mut b_rx, connect_timeout).await;
    let latency = started.elapsed();
    assert_eq!(&m.payload[..], b"alive");
    assert!(
        latency < connect_timeout / 4,
        "live peer waited {latency:?} behind dead ones"
    );
    // The dead peers' messages are dropped and counted once their
    // connection attempts time out; nothing hoards them.
    eventually(connect_timeout * 3, "dead peers' messages dropped", || {
        a.stats().snapshot().send_dropped >= 60
    })
    .await;
    assert!(a.flush(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_peer_restarted_on_the_same_port_is_reached_again_at_once() {
    let dir = pki(&["node-a", "node-b"]);
    // Long exchange and idle timeouts: only the stateless reset (derived
    // from node-b's key, so the restarted process sends a valid one) can
    // make node-a notice the restart quickly.
    let slow = |id| TransportConfig {
        exchange_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ..config(dir.path(), id)
    };
    let (a, _a_rx) = Transport::bind(slow("node-a")).unwrap();

    // node-b lives on its own runtime so that it can die without sending
    // anything, as a killed process would.
    let b_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (b, mut b_rx) = {
        let _enter = b_runtime.enter();
        Transport::bind(slow("node-b")).unwrap()
    };
    let b_addr = b.local_addr();
    a.send(&b_addr.to_string(), Some("node-b"), b"before".to_vec())
        .unwrap();
    assert_eq!(
        &recv(&mut b_rx, Duration::from_secs(5)).await.payload[..],
        b"before"
    );
    assert!(a.flush(Duration::from_secs(5)).await);

    // Kill: stop its tasks first so the endpoint cannot send a close.
    b_runtime.shutdown_background();
    drop(b);
    drop(b_rx);

    // Restart on the same port (the old socket is released once the
    // dropped tasks let go of it).
    let mut restarted = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while restarted.is_none() {
        match Transport::bind(TransportConfig {
            listen: b_addr,
            ..slow("node-b")
        }) {
            Ok(t) => restarted = Some(t),
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot rebind {b_addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let (_b2, mut b2_rx) = restarted.unwrap();
    let started = Instant::now();
    let mut sent = 0u32;
    let got = loop {
        a.send(
            &b_addr.to_string(),
            Some("node-b"),
            sent.to_be_bytes().to_vec(),
        )
        .unwrap();
        sent += 1;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), b2_rx.recv()).await {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "restarted peer not reached within 3 s ({sent} messages sent)"
        );
    };
    assert_eq!(got.node_id, "node-a");
    assert_eq!(a.stats().snapshot().delivery_timeouts, 0);
}

#[tokio::test]
async fn reload_swaps_certificates_for_new_connections() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    assert!(!b.reload_certs_if_changed().unwrap(), "nothing changed yet");
    let before = b.cert_not_after();

    // Re-issue node-b for longer; the running process picks it up.
    let issued = ca(dir.path()).issue("node-b", CLUSTER, 5 * DAY).unwrap();
    std::fs::write(dir.path().join("node-b.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-b.key"), &issued.key_pem).unwrap();
    assert!(b.reload_certs_if_changed().unwrap());
    assert!(b.cert_not_after() > before);

    a.send(
        &b.local_addr().to_string(),
        Some("node-b"),
        b"after reload".to_vec(),
    )
    .unwrap();
    assert_eq!(
        &recv(&mut b_rx, Duration::from_secs(5)).await.payload[..],
        b"after reload"
    );

    // A certificate for another node is refused and the old one stays.
    let other = ca(dir.path()).issue("node-z", CLUSTER, DAY).unwrap();
    std::fs::write(dir.path().join("node-b.pem"), &other.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-b.key"), &other.key_pem).unwrap();
    let err = b.reload_certs().unwrap_err();
    assert!(err.to_string().contains("node-z"), "{err}");
    assert_eq!(b.identity().node_id, "node-b");
}

#[tokio::test]
async fn a_sender_refused_by_its_peer_counts_it_and_a_ca_rotation_lets_it_in() {
    let dir = pki(&["node-a", "node-b"]);
    // node-n holds a certificate from a new CA and trusts both CAs, as in
    // the middle of a CA rotation; node-b still trusts only the old one.
    let new_ca = DevCa::generate("new", DAY).unwrap();
    let issued = new_ca.issue("node-n", CLUSTER, DAY).unwrap();
    std::fs::write(dir.path().join("node-n.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-n.key"), &issued.key_pem).unwrap();
    let old_ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let both = format!("{old_ca_pem}{}", new_ca.cert_pem());
    std::fs::write(dir.path().join("both-cas.pem"), &both).unwrap();
    let (n, _n_rx) = Transport::bind(TransportConfig {
        ca_pem_path: dir.path().join("both-cas.pem"),
        ..config(dir.path(), "node-n")
    })
    .unwrap();
    let b_ca = dir.path().join("b-ca.pem");
    std::fs::write(&b_ca, &old_ca_pem).unwrap();
    let (b, mut b_rx) = Transport::bind(TransportConfig {
        ca_pem_path: b_ca.clone(),
        ..config(dir.path(), "node-b")
    })
    .unwrap();
    let to_b = b.local_addr().to_string();

    n.send(&to_b, Some("node-b"), b"refused".to_vec()).unwrap();
    eventually(Duration::from_secs(5), "node-b refusing node-n", || {
        b.stats().auth_failures(AuthFailure::UnknownCa) == 1
    })
    .await;
    // node-n learns of it from the close that follows its handshake.
    eventually(
        Duration::from_secs(5),
        "node-n counting the refusal",
        || n.stats().snapshot().handshake_failures >= 1,
    )
    .await;
    assert!(b_rx.try_recv().is_err());

    // Step 1 of a CA rotation on node-b: trust both CAs, reload.
    std::fs::write(&b_ca, &both).unwrap();
    assert!(b.reload_certs_if_changed().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        n.send(&to_b, Some("node-b"), b"rotated".to_vec()).unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), b_rx.recv()).await {
            break m;
        }
        assert!(Instant::now() < deadline, "node-n never got in");
    };
    assert_eq!(m.node_id, "node-n");
    assert_eq!(
        b.stats().auth_failures_total(),
        b.stats().auth_failures(AuthFailure::UnknownCa)
    );
}

#[tokio::test]
async fn bad_tls_files_fail_at_bind_with_the_path() {
    let dir = pki(&["node-a"]);
    let missing = TransportConfig {
        cert_pem_path: PathBuf::from("/nonexistent/node.pem"),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(missing).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/node.pem"), "{err}");
    let wrong_id = TransportConfig {
        node_id: Some("node-q".into()),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(wrong_id).unwrap_err().to_string();
    assert!(err.contains("node-q") && err.contains("node-a"), "{err}");
    let foreign = tempfile::tempdir().unwrap();
    generate_dev_certs(foreign.path(), CLUSTER, &["node-a".into()], 1).unwrap();
    let wrong_ca = TransportConfig {
        ca_pem_path: foreign.path().join("ca.pem"),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(wrong_ca).unwrap_err().to_string();
    assert!(err.contains("not acceptable to peers"), "{err}");
}
