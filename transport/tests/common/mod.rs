//! Helpers shared by the transport's tests: a dev PKI in a temporary
//! directory, node configs on 127.0.0.1, raw quinn clients and servers
//! that break the rules.

#![allow(clippy::unwrap_used, dead_code)] // Test helpers: a panic is a failed test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use phimon_gossip::NodeId;
use phimon_transport::tls::{self, DevCa, IssuedCert, generate_dev_certs};
use phimon_transport::{Peer, Received, Transport, TransportConfig};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::mpsc;

pub const CLUSTER: &str = "prod";
pub const DAY: Duration = Duration::from_secs(86_400);

/// A directory with a dev CA and certificates for `nodes`.
pub fn pki(nodes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
    generate_dev_certs(dir.path(), CLUSTER, &ids, 2).unwrap();
    dir
}

pub fn ca(dir: &Path) -> DevCa {
    DevCa::from_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
        &dir.join("ca.pem"),
    )
    .unwrap()
}

/// The rcgen issuer of the dev CA in `dir`, for certificates the dev PKI
/// would refuse to issue.
pub fn issuer(dir: &Path) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.pem")).unwrap(), key)
        .unwrap()
}

/// A node certificate with arbitrary SANs and key, signed by the dev CA.
pub fn issue_raw(dir: &Path, sans: Vec<rcgen::SanType>, key: &rcgen::KeyPair) -> String {
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = sans;
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + DAY).into();
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&rand_serial()));
    p.signed_by(key, &issuer(dir)).unwrap().pem()
}

fn rand_serial() -> [u8; 16] {
    let mut b: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_be_bytes();
    b.copy_from_slice(&t);
    b[0] = (b[0] & 0x7f) | 1;
    b
}

pub fn config(dir: &Path, id: &str) -> TransportConfig {
    TransportConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join(format!("{id}.pem")),
        key_pem_path: dir.join(format!("{id}.key")),
        cluster_name: CLUSTER.into(),
        node_id: Some(id.into()),
        connect_timeout: Duration::from_secs(2),
        message_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..TransportConfig::default()
    }
}

pub fn node(dir: &Path, id: &str) -> (Transport, mpsc::Receiver<Received>) {
    Transport::bind(config(dir, id)).unwrap()
}

/// `Peer` for node `id` at `t`'s address.
pub fn peer(id: &str, t: &Transport) -> Peer {
    Peer {
        node_id: Some(NodeId::from(id)),
        addr: t.local_addr().to_string(),
    }
}

/// `Peer` for node `id` on its existing connection.
pub fn by_id(id: &str) -> Peer {
    Peer {
        node_id: Some(NodeId::from(id)),
        addr: String::new(),
    }
}

/// `Peer` for whoever answers at `addr`.
pub fn at(addr: SocketAddr) -> Peer {
    Peer {
        node_id: None,
        addr: addr.to_string(),
    }
}

pub async fn recv(rx: &mut mpsc::Receiver<Received>, within: Duration) -> Received {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("nothing received in time")
        .expect("inbox closed")
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts any server certificate: the rogue clients below want to reach
/// the server's check of *their* certificate.
#[derive(Debug)]
pub struct AnyServer(pub Arc<rustls::crypto::CryptoProvider>);

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

/// A plain quinn client presenting `cert` (or none), offering `alpn`, and
/// trusting anyone.
pub fn rogue_client(cert: Option<&IssuedCert>, alpn: &[u8]) -> quinn::Endpoint {
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
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).unwrap(),
    )));
    ep
}

/// A plain quinn server presenting `cert`, selecting `alpn`, requiring no
/// client certificate.
pub fn rogue_server(cert: &IssuedCert, alpn: &[u8]) -> quinn::Endpoint {
    let provider = tls::crypto_provider();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(cfg).unwrap()));
    quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Connects with `cert`, tries to send a message, and returns how the
/// connection ended (it must end).
pub async fn rogue_attempt(
    server: SocketAddr,
    cert: Option<&IssuedCert>,
    alpn: &[u8],
) -> quinn::ConnectionError {
    let ep = rogue_client(cert, alpn);
    let attempt = async {
        // In TLS 1.3 the client finishes its handshake before the server
        // has judged the client certificate, so the refusal may arrive
        // after "connected".
        let conn = ep.connect(server, "anything")?.await?;
        if let Ok(mut s) = conn.open_uni().await {
            let _ = s.write_all(b"let me in").await;
            let _ = s.finish();
        }
        let _ = conn.send_datagram(bytes::Bytes::from_static(b"beat"));
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

/// A UDP relay between one client and `target` that sees every packet:
/// the client dials [`Relay::addr`], the target sees the relay's other
/// socket as the client's address. It records the fast-path packets
/// (first byte with both high bits clear) going to the target, can drop
/// them, and can inject packets to the target from the client's address
/// as the target knows it.
pub struct Relay {
    pub addr: SocketAddr,
    target: SocketAddr,
    back: Arc<tokio::net::UdpSocket>,
    captured: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    drop_fast: Arc<std::sync::atomic::AtomicBool>,
}

fn is_fast(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0xc0 == 0)
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        use std::sync::atomic::Ordering::Relaxed;
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let captured = Arc::new(std::sync::Mutex::new(Vec::new()));
        let drop_fast = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        {
            let (front, back, captured, drop_fast, client) = (
                front.clone(),
                back.clone(),
                captured.clone(),
                drop_fast.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    let p = &buf[..n];
                    if is_fast(p) {
                        captured.lock().unwrap().push(p.to_vec());
                        if drop_fast.load(Relaxed) {
                            continue;
                        }
                    }
                    let _ = back.send_to(p, target).await;
                }
            });
        }
        {
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, _)) = back.recv_from(&mut buf).await {
                    let to = *client.lock().unwrap();
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            });
        }
        Relay {
            addr,
            target,
            back,
            captured,
            drop_fast,
        }
    }

    /// The fast-path packets relayed (or dropped) so far, oldest first.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.captured.lock().unwrap().clone()
    }

    /// Drops fast-path packets towards the target from now on, as a
    /// firewall that only lets QUIC through would.
    pub fn drop_fast_path(&self, on: bool) {
        self.drop_fast
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends `p` to the target from the relay's address (the client's,
    /// as the target sees it).
    pub async fn inject(&self, p: &[u8]) {
        self.back.send_to(p, self.target).await.unwrap();
    }
}

/// Node `id` at the relay's address.
pub fn via(id: &str, relay: &Relay) -> Peer {
    Peer {
        node_id: Some(NodeId::from(id)),
        addr: relay.addr.to_string(),
    }
}
