//! Mutual TLS for the QUIC transport: loading a node's certificate, key,
//! cluster CA and optional CRL, the rustls configurations both sides use,
//! the identity rules, development certificates ([`generate_dev_certs`],
//! `phimon certs`) and node signing requests ([`write_node_csr`],
//! `phimon certs csr`).
//!
//! # Identity model
//!
//! Every node holds one certificate signed by the cluster CA. Both sides of
//! every connection present theirs (mutual TLS, TLS 1.3 only, ALPN
//! [`ALPN`]) and both verify the other's chain against the CA bundle and,
//! when one is configured, the CA's certificate revocation list.
//!
//! - **Node id** = the certificate's DNS subject alternative name. When the
//!   certificate carries several DNS names, the one named by its
//!   `phimon://<cluster>/<node-id>` URI SAN is the node id; a certificate
//!   with several DNS names and no such URI is ambiguous and refused. The
//!   id must follow [`NodeId::check`] (ASCII letters, digits, `-`, `_`,
//!   `.`): any other name is refused, never sliced or panicked on.
//! - **Cluster** = the `<cluster>` of the URI SAN. A peer whose certificate
//!   names another cluster is refused during the handshake, so one CA can
//!   serve several clusters without them merging. Certificates without the
//!   URI SAN are refused unless [`IdentityPolicy::require_cluster_san`] is
//!   off (for a PKI that cannot issue URI SANs; then the CA alone separates
//!   clusters).
//! - **SPIFFE**: a SPIFFE ID `spiffe://<trust-domain>/phimon/<cluster>/<node-id>`
//!   counts as the same cluster URI, so an SVID issued by SPIRE needs no
//!   second URI (the SPIFFE standard allows exactly one). The trust domain
//!   is not compared: the CA bundle already decides which trust domain is
//!   trusted. A SPIFFE ID outside `/phimon/` names some other workload and
//!   is ignored like any other URI, so such an SVID has no cluster and is
//!   refused while the cluster SAN is required. A certificate with more
//!   than one cluster URI (of either form) is refused as malformed.
//! - Host names are **not** checked: nodes dial seeds by address, and the
//!   address a node is reached at says nothing about who it is. The
//!   transport instead compares the authenticated node id with the one the
//!   caller expects, when it expects one.
//!
//! Certificates must allow both `serverAuth` and `clientAuth` extended key
//! usage, because every node is both a QUIC server and a QUIC client.
//! [`NodeTls::load`] checks a node's own certificate by the same rules it
//! applies to peers, so a bad file fails at start (or at reload), not at the
//! first handshake.
//!
//! TLS session resumption and 0-RTT are disabled: every connection verifies
//! the full chain against the trust material loaded *now*; a reload
//! re-verifies established connections too (see the transport).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phimon_gossip::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{OtherError, SignatureScheme};

mod csr;
mod devcerts;

pub use csr::{CsrReport, NodeCsr, node_csr, write_node_csr};
pub use devcerts::{
    CertGenError, DevCa, DevCertsReport, IssuedCert, generate_dev_certs, validate_cluster_name,
    validate_node_id,
};

/// ALPN protocol id of phimon's wire over QUIC; the number is the wire
/// version. A peer that offers no matching protocol fails the handshake
/// with a `no_application_protocol` alert, counted on both sides as
/// [`AuthFailure::Version`]: nodes of different wire versions refuse each
/// other loudly instead of exchanging frames neither can read.
pub const ALPN: &[u8] = b"phimon/3";

/// Scheme of the URI subject alternative name that names a node's cluster:
/// `phimon://<cluster>/<node-id>`.
pub const URI_SAN_SCHEME: &str = "phimon";

/// Scheme of a SPIFFE ID. `spiffe://<trust-domain>/phimon/<cluster>/<node-id>`
/// names a node's cluster like the `phimon://` URI SAN does.
pub const SPIFFE_SCHEME: &str = "spiffe";

/// First path segment of a SPIFFE ID that names a phimon node
/// (`spiffe://<trust-domain>/phimon/<cluster>/<node-id>`).
pub const SPIFFE_PATH_PREFIX: &str = "phimon";

/// The rustls crypto provider phimon uses everywhere (ring), so the choice
/// does not depend on which provider some other crate installed as the
/// process default.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who a verified certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Node id: the certificate's DNS subject alternative name, checked by
    /// [`NodeId::check`].
    pub node_id: String,
    /// Cluster named by the `phimon://` URI SAN, if the certificate has one.
    pub cluster: Option<String>,
}

/// Why a certificate's names do not identify an acceptable peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate is not parseable X.509.
    #[error("certificate cannot be parsed: {reason}")]
    Unparseable {
        /// Parser message.
        reason: String,
    },
    /// The certificate has no DNS subject alternative name to take the
    /// node id from.
    #[error("certificate has no DNS subject alternative name (the node id)")]
    NoNodeId,
    /// Several DNS names and no `phimon://` URI SAN to pick one.
    #[error(
        "certificate has several DNS names ({names:?}) and no phimon:// URI SAN naming the node id"
    )]
    AmbiguousNodeId {
        /// The DNS names found.
        names: Vec<String>,
    },
    /// The node id breaks the character rule of [`NodeId::check`].
    #[error("certificate names node {name:?}, which is not a valid node id: {reason}")]
    InvalidNodeId {
        /// The offending name (escaped when printed).
        name: String,
        /// The rule it breaks.
        reason: phimon_gossip::InvalidNodeId,
    },
    /// A `phimon://` URI SAN that is not `phimon://<cluster>/<node-id>`, a
    /// SPIFFE ID under `/phimon/` that is not
    /// `spiffe://<trust-domain>/phimon/<cluster>/<node-id>`, or more than
    /// one such URI.
    #[error(
        "certificate has a malformed cluster URI SAN {uri:?} (want phimon://<cluster>/<node-id> or spiffe://<trust-domain>/phimon/<cluster>/<node-id>, once)"
    )]
    MalformedUri {
        /// The offending URI.
        uri: String,
    },
    /// The cluster URI SAN names a node id that is not among the DNS names.
    #[error("cluster URI SAN names node {uri_node:?}, which is not among the DNS names {names:?}")]
    UriNodeNotInDns {
        /// Node id of the URI SAN.
        uri_node: String,
        /// The DNS names found.
        names: Vec<String>,
    },
    /// The certificate belongs to another cluster.
    #[error("certificate is for cluster {found:?}, this is cluster {expected:?}")]
    WrongCluster {
        /// Our cluster name.
        expected: String,
        /// The cluster the certificate names.
        found: String,
    },
    /// The policy requires a cluster URI SAN (`phimon://` or a SPIFFE ID
    /// under `/phimon/`) and there is none.
    #[error(
        "certificate names no cluster (no phimon://{expected}/<node-id> or spiffe://<trust-domain>/phimon/{expected}/<node-id> URI SAN) and the cluster SAN is required"
    )]
    MissingCluster {
        /// Our cluster name.
        expected: String,
    },
}

impl IdentityError {
    /// The rustls error to fail a handshake with. Cluster problems map to
    /// `access_denied` and name problems to `bad_certificate`, so the peer
    /// and the counters (see [`AuthFailure::from_alert`]) can tell them
    /// apart.
    pub(crate) fn to_rustls(&self) -> rustls::Error {
        let e = match self {
            IdentityError::WrongCluster { .. } | IdentityError::MissingCluster { .. } => {
                CertificateError::ApplicationVerificationFailure
            }
            IdentityError::Unparseable { .. } => CertificateError::BadEncoding,
            _ => CertificateError::NotValidForName,
        };
        rustls::Error::InvalidCertificate(e)
    }
}

/// Reads the identity out of a DER certificate by the rules of the module
/// docs, without checking the cluster (see [`IdentityPolicy::check`]).
/// Total: any input gets an answer, never a panic.
pub fn identity_from_cert(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| IdentityError::Unparseable {
            reason: e.to_string(),
        })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparseable {
            reason: e.to_string(),
        })?;
    let mut dns = Vec::new();
    let mut uri = None;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(n) => dns.push((*n).to_owned()),
            GeneralName::URI(u) => match parse_cluster_uri(u) {
                None => {}
                Some(parsed) => {
                    // Two cluster URIs could name two clusters or nodes:
                    // refuse rather than pick one.
                    if uri.is_some() {
                        return Err(IdentityError::MalformedUri {
                            uri: (*u).to_owned(),
                        });
                    }
                    uri = Some(parsed?);
                }
            },
            _ => {}
        }
    }
    let node_id = match (&uri, dns.as_slice()) {
        (_, []) => return Err(IdentityError::NoNodeId),
        (Some((_, node)), names) => {
            if !names.iter().any(|n| n == node) {
                return Err(IdentityError::UriNodeNotInDns {
                    uri_node: node.clone(),
                    names: dns,
                });
            }
            node.clone()
        }
        (None, [one]) => one.clone(),
        (None, _) => return Err(IdentityError::AmbiguousNodeId { names: dns }),
    };
    if let Err(reason) = NodeId::check(&node_id) {
        return Err(IdentityError::InvalidNodeId {
            name: node_id,
            reason,
        });
    }
    Ok(PeerIdentity {
        node_id,
        cluster: uri.map(|(cluster, _)| cluster),
    })
}

/// The `(cluster, node)` a URI SAN names: `Some(Ok)` for
/// `phimon://<cluster>/<node>` and `spiffe://<trust-domain>/phimon/<cluster>/<node>`,
/// `Some(Err)` for a malformed URI of either kind, `None` for any other URI
/// (another scheme, or a SPIFFE ID outside `/phimon/`), which says nothing
/// about the cluster. Schemes compare case-insensitively, the rest exactly.
///
/// Works on bytes and splits only at ASCII `/`, which is never inside a
/// multi-byte UTF-8 character, so any input is answered without a panic.
fn parse_cluster_uri(uri: &str) -> Option<Result<(String, String), IdentityError>> {
    let malformed = || IdentityError::MalformedUri {
        uri: uri.to_owned(),
    };
    if let Some(rest) = strip_scheme(uri, URI_SAN_SCHEME) {
        return Some(cluster_and_node(rest).ok_or_else(malformed));
    }
    let rest = strip_scheme(uri, SPIFFE_SCHEME)?;
    let (trust_domain, path) = rest.split_once('/')?;
    let (first, tail) = match path.split_once('/') {
        Some((first, tail)) => (first, Some(tail)),
        None => (path, None),
    };
    if first != SPIFFE_PATH_PREFIX {
        // Some other workload's SPIFFE ID: not ours to judge.
        return None;
    }
    // A SPIFFE ID has no query or fragment, and a trust domain.
    let parsed = tail
        .filter(|_| !trust_domain.is_empty() && !uri.contains(['?', '#']))
        .and_then(cluster_and_node);
    Some(parsed.ok_or_else(malformed))
}

/// `rest` of `<scheme>://rest` when `uri` has that scheme (ASCII case
/// insensitive), comparing bytes.
fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let (b, s) = (uri.as_bytes(), scheme.as_bytes());
    if b.len() > s.len() + 3
        && b[..s.len()].eq_ignore_ascii_case(s)
        && b[s.len()..].starts_with(b"://")
    {
        // The prefix matched ASCII bytes, so this index is a char boundary.
        uri.get(s.len() + 3..)
    } else {
        None
    }
}

/// `<cluster>/<node>`, both non-empty, no further segment.
fn cluster_and_node(rest: &str) -> Option<(String, String)> {
    let (cluster, node) = rest.split_once('/')?;
    if cluster.is_empty() || node.is_empty() || node.contains('/') {
        return None;
    }
    Some((cluster.to_owned(), node.to_owned()))
}

/// The `phimon://<cluster>/<node-id>` URI SAN for a node.
pub fn cluster_uri(cluster: &str, node_id: &str) -> String {
    format!("{URI_SAN_SCHEME}://{cluster}/{node_id}")
}

/// Which peers' identities are acceptable: those of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPolicy {
    /// Our cluster name; a certificate naming another cluster is refused.
    pub cluster: String,
    /// Refuse certificates without a cluster URI SAN (`phimon://` or a
    /// SPIFFE ID under `/phimon/`). On by default;
    /// turn off only for a PKI that cannot issue URI SANs and whose CA
    /// serves this one cluster alone.
    pub require_cluster_san: bool,
}

impl IdentityPolicy {
    /// A policy for `cluster` that requires the cluster URI SAN.
    pub fn new(cluster: impl Into<String>) -> Self {
        IdentityPolicy {
            cluster: cluster.into(),
            require_cluster_san: true,
        }
    }

    /// Reads the identity of `der` and checks that it belongs to our
    /// cluster. The chain must have been verified already.
    pub fn check(&self, der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let id = identity_from_cert(der)?;
        match &id.cluster {
            Some(c) if *c != self.cluster => Err(IdentityError::WrongCluster {
                expected: self.cluster.clone(),
                found: c.clone(),
            }),
            None if self.require_cluster_san => Err(IdentityError::MissingCluster {
                expected: self.cluster.clone(),
            }),
            _ => Ok(id),
        }
    }
}

/// Why the transport refused a peer. Each reason is counted separately (see
/// `TransportStats`); [`AuthFailure::as_str`] gives a stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The client presented no certificate.
    NoCertificate,
    /// The certificate does not chain to the cluster CA.
    UnknownCa,
    /// The certificate (or one in its chain) is expired or not yet valid.
    Expired,
    /// The certificate names another cluster, or none when one is required.
    WrongCluster,
    /// The certificate is unparseable or carries no usable node id.
    BadCertificate,
    /// The authenticated node id is not the one the caller expected at
    /// that address.
    IdentityMismatch,
    /// The peer speaks another wire version (no common ALPN).
    Version,
    /// The certificate is on the CA's revocation list.
    Revoked,
    /// Any other TLS handshake refusal (key usage, signature).
    Other,
}

impl AuthFailure {
    /// Every reason, in a fixed order (for counters and metric labels).
    pub const ALL: [AuthFailure; 9] = [
        AuthFailure::NoCertificate,
        AuthFailure::UnknownCa,
        AuthFailure::Expired,
        AuthFailure::WrongCluster,
        AuthFailure::BadCertificate,
        AuthFailure::IdentityMismatch,
        AuthFailure::Version,
        AuthFailure::Revoked,
        AuthFailure::Other,
    ];

    /// Stable snake_case label, e.g. for `phimon_auth_failures_total{reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::NoCertificate => "no_certificate",
            AuthFailure::UnknownCa => "unknown_ca",
            AuthFailure::Expired => "expired",
            AuthFailure::WrongCluster => "wrong_cluster",
            AuthFailure::BadCertificate => "bad_certificate",
            AuthFailure::IdentityMismatch => "identity_mismatch",
            AuthFailure::Version => "version",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Other => "other",
        }
    }

    /// Index into [`AuthFailure::ALL`].
    pub fn index(self) -> usize {
        match self {
            AuthFailure::NoCertificate => 0,
            AuthFailure::UnknownCa => 1,
            AuthFailure::Expired => 2,
            AuthFailure::WrongCluster => 3,
            AuthFailure::BadCertificate => 4,
            AuthFailure::IdentityMismatch => 5,
            AuthFailure::Version => 6,
            AuthFailure::Revoked => 7,
            AuthFailure::Other => 8,
        }
    }

    /// Classifies a TLS alert of a refused handshake. QUIC carries it as
    /// transport error code `0x100 + alert` (RFC 9001 §4.8), which is all
    /// quinn reports of a handshake failure.
    pub fn from_alert(alert: u8) -> AuthFailure {
        match alert {
            116 => AuthFailure::NoCertificate, // certificate_required
            48 => AuthFailure::UnknownCa,      // unknown_ca
            45 => AuthFailure::Expired,        // certificate_expired
            49 => AuthFailure::WrongCluster,   // access_denied (IdentityError::to_rustls)
            42 => AuthFailure::BadCertificate, // bad_certificate
            120 => AuthFailure::Version,       // no_application_protocol
            44 => AuthFailure::Revoked,        // certificate_revoked
            _ => AuthFailure::Other,
        }
    }

    /// The reason for a verification error of a peer's chain.
    pub(crate) fn from_rustls(e: &rustls::Error) -> AuthFailure {
        match e {
            rustls::Error::InvalidCertificate(c) => {
                AuthFailure::from_alert(u8::from(rustls::AlertDescription::from(c.clone())))
            }
            rustls::Error::NoCertificatesPresented => AuthFailure::NoCertificate,
            _ => AuthFailure::Other,
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Paths of a node's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of trusted CA certificates (one or more: during a CA
    /// rotation it holds the old and the new CA).
    pub ca: PathBuf,
    /// PEM certificate chain of this node: its certificate first, then any
    /// intermediates.
    pub cert: PathBuf,
    /// PEM private key of this node (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// Optional certificate revocation lists (PEM, one or more `X509 CRL`
    /// blocks, or a single DER CRL) of the CA(s).
    pub crl: Option<PathBuf>,
}

/// Errors loading or using a node's TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// Which file ("CA", "certificate", "key", "CRL").
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{what} file {path} is not valid PEM: {reason}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA bundle has no usable certificate.
    #[error("CA file {path} holds no usable CA certificate{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    NoCa {
        /// Its path.
        path: PathBuf,
        /// Why the certificates in it were rejected, if any were there.
        reason: String,
    },
    /// The CRL file holds no parseable revocation list.
    #[error("CRL file {path} is not usable: {reason}")]
    BadCrl {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node's own certificate does not pass the checks peers apply.
    #[error("certificate {path} is not acceptable to peers: {reason}")]
    OwnCertificate {
        /// Its path.
        path: PathBuf,
        /// What a peer would refuse it for.
        reason: String,
    },
    /// The node's own certificate names a cluster or node other than
    /// configured.
    #[error("certificate {path}: {source}")]
    OwnIdentity {
        /// Its path.
        path: PathBuf,
        /// The identity problem.
        source: IdentityError,
    },
    /// The node id in the certificate differs from the configured one.
    #[error(
        "certificate {path} is for node {cert:?}, but the configured node id is {configured:?}"
    )]
    NodeIdMismatch {
        /// Its path.
        path: PathBuf,
        /// Configured node id.
        configured: String,
        /// Node id in the certificate.
        cert: String,
    },
    /// rustls refused the configuration (e.g. key does not match the
    /// certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC TLS configuration rejected: {0}")]
    Quic(String),
}

/// What peers' certificates are checked against: the CA roots, the CRLs,
/// the identity policy and the signature algorithms. Immutable; a reload
/// builds a new one. Used by both TLS directions, by the re-verification
/// of established connections after a reload, and by
/// [`CredentialVerifier`](crate::CredentialVerifier).
pub struct TrustMaterial {
    roots: RootCertStore,
    crls: Vec<webpki::CertRevocationList<'static>>,
    policy: IdentityPolicy,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for TrustMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustMaterial")
            .field("roots", &self.roots.len())
            .field("crls", &self.crls.len())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Which extended key usage a chain is verified for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// The peer acts as a QUIC server (we dialled it).
    Server,
    /// The peer acts as a QUIC client, or signs a record: the node's
    /// identity.
    Client,
}

impl TrustMaterial {
    /// Trust material from PEM contents: a CA bundle and optional CRLs
    /// (PEM blocks or one DER list). `ca_path`/`crl_path` only name the
    /// files in errors.
    pub fn from_pem(
        ca_pem: &[u8],
        crl: Option<&[u8]>,
        policy: IdentityPolicy,
        ca_path: &Path,
        crl_path: Option<&Path>,
    ) -> Result<TrustMaterial, TlsError> {
        let cas = parse_certs("CA", ca_path, ca_pem)?;
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(cas);
        if added == 0 {
            return Err(TlsError::NoCa {
                path: ca_path.to_owned(),
                reason: format!("{ignored} certificate(s) could not be used as trust anchors"),
            });
        }
        let crls = match crl {
            None => Vec::new(),
            Some(bytes) => parse_crls(bytes, crl_path.unwrap_or(Path::new("CRL")))?,
        };
        Ok(TrustMaterial {
            roots,
            crls,
            policy,
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    /// The identity policy peers are checked against.
    pub fn policy(&self) -> &IdentityPolicy {
        &self.policy
    }

    /// Number of revocation lists in force.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Verifies `end_entity` (with `intermediates`) against the roots and
    /// the CRLs at `now` for `usage`, then the identity policy. Returns the
    /// identity; errors are rustls errors so the handshake sends the
    /// matching alert.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<PeerIdentity, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = match webpki::RevocationOptionsBuilder::new(&crls) {
            // Only the end entity is checked (our PKIs issue node
            // certificates straight from the CA), and a certificate the
            // lists say nothing about — one of another CA during a rotation
            // — is not refused for that.
            Ok(b) => Some(
                b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .build(),
            ),
            Err(_) => None,
        };
        let eku = match usage {
            Usage::Server => webpki::KeyUsage::server_auth(),
            Usage::Client => webpki::KeyUsage::client_auth(),
        };
        cert.verify_for_usage(
            self.algs.all,
            &self.roots.roots,
            intermediates,
            now,
            eku,
            revocation,
            None,
        )
        .map_err(pki_error)?;
        self.policy.check(end_entity).map_err(|e| {
            tracing::debug!(error = %e, "certificate refused by identity policy");
            e.to_rustls()
        })
    }

    pub(crate) fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algs
    }
}

/// webpki's verdict as the rustls error whose alert names it.
fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let c = match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertExpired { .. } | E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(c)
}

/// A node's loaded and checked TLS material: trust material, own chain and
/// key, and the identity its certificate carries. Cheap to turn into rustls
/// configurations; load a new one to rotate certificates.
pub struct NodeTls {
    trust: Arc<TrustMaterial>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: PeerIdentity,
    not_after: SystemTime,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("NodeTls")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn parse_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// PEM `X509 CRL` blocks, or one DER list when the file is not PEM.
fn parse_crls(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<webpki::CertRevocationList<'static>>, TlsError> {
    let bad = |reason: String| TlsError::BadCrl {
        path: path.to_owned(),
        reason,
    };
    let ders: Vec<CertificateRevocationListDer<'static>> =
        match CertificateRevocationListDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>() {
            Ok(v) if !v.is_empty() => v,
            Ok(_) if bytes.first() == Some(&0x30) => {
                vec![CertificateRevocationListDer::from(bytes.to_vec())]
            }
            Ok(_) => return Err(bad("no X509 CRL block".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
    ders.iter()
        .map(|der| {
            webpki::OwnedCertRevocationList::from_der(der.as_ref())
                .map(webpki::CertRevocationList::from)
                .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// The raw contents of a node's TLS files, compared to tell whether a
/// reload has anything new.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPems {
    /// CA bundle (PEM).
    pub ca: Vec<u8>,
    /// Certificate chain (PEM).
    pub cert: Vec<u8>,
    /// Private key (PEM).
    pub key: Vec<u8>,
    /// Revocation lists, when configured.
    pub crl: Option<Vec<u8>>,
}

impl fmt::Debug for TlsPems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPems").finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads the files.
    pub fn read(&self) -> Result<TlsPems, TlsError> {
        Ok(TlsPems {
            ca: read_file("CA", &self.ca)?,
            cert: read_file("certificate", &self.cert)?,
            key: read_file("key", &self.key)?,
            crl: self
                .crl
                .as_deref()
                .map(|p| read_file("CRL", p))
                .transpose()?,
        })
    }
}

impl NodeTls {
    /// Reads and checks the CA bundle, CRL, certificate chain and key of
    /// `files`: the chain must verify against the bundle and the CRL now
    /// (as both server and client certificate), the key must match, and
    /// the identity must satisfy `policy` (and equal `node_id` when given).
    pub fn load(
        files: &TlsFiles,
        policy: &IdentityPolicy,
        node_id: Option<&str>,
    ) -> Result<NodeTls, TlsError> {
        Self::from_pems(files, &files.read()?, policy, node_id)
    }

    /// [`NodeTls::load`] on contents already read; `files` only names them
    /// in errors.
    pub fn from_pems(
        files: &TlsFiles,
        pems: &TlsPems,
        policy: &IdentityPolicy,
        node_id: Option<&str>,
    ) -> Result<NodeTls, TlsError> {
        let trust = Arc::new(TrustMaterial::from_pem(
            &pems.ca,
            pems.crl.as_deref(),
            policy.clone(),
            &files.ca,
            files.crl.as_deref(),
        )?);
        let chain = parse_certs("certificate", &files.cert, &pems.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| TlsError::Pem {
            what: "key",
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let provider = crypto_provider();
        let leaf = &chain[0];

        // Check our own certificate exactly as peers will, so a wrong file
        // fails here with a clear message instead of as a refused handshake
        // on some other node.
        let own_err = |reason: String| TlsError::OwnCertificate {
            path: files.cert.clone(),
            reason,
        };
        let now = UnixTime::now();
        for (usage, what) in [
            (Usage::Server, "as a server certificate"),
            (Usage::Client, "as a client certificate"),
        ] {
            if let Err(e) = trust.verify(leaf, &chain[1..], now, usage) {
                // Identity problems get their own, more precise error below.
                if matches!(
                    e,
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                            | CertificateError::ApplicationVerificationFailure
                    )
                ) {
                    break;
                }
                return Err(own_err(format!("{what}: {e}")));
            }
        }
        let identity = policy.check(leaf).map_err(|source| TlsError::OwnIdentity {
            path: files.cert.clone(),
            source,
        })?;
        if let Some(configured) = node_id {
            if configured != identity.node_id {
                return Err(TlsError::NodeIdMismatch {
                    path: files.cert.clone(),
                    configured: configured.to_owned(),
                    cert: identity.node_id,
                });
            }
        }
        let not_after = not_after(leaf).map_err(own_err)?;
        let tls = NodeTls {
            trust,
            chain,
            key,
            identity,
            not_after,
            provider,
        };
        // Building the server config makes rustls check that the key
        // matches the certificate.
        tls.server_config()?;
        Ok(tls)
    }

    /// The identity our own certificate carries.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// When our own certificate expires (renew before then).
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The identity policy peers are checked against.
    pub fn policy(&self) -> &IdentityPolicy {
        &self.trust.policy
    }

    /// The trust material peers are checked against.
    pub fn trust(&self) -> &Arc<TrustMaterial> {
        &self.trust
    }

    /// Our certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key (for [`RecordSigner`](crate::RecordSigner)).
    pub(crate) fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The private key's DER bytes, from which the transport derives its
    /// stable stateless-reset key.
    pub(crate) fn key_der(&self) -> &[u8] {
        self.key.secret_der()
    }

    /// rustls server configuration: TLS 1.3, ALPN [`ALPN`], client
    /// certificate required and checked against the trust material, no
    /// resumption.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier = Arc::new(ClusterClientVerifier {
            trust: self.trust.clone(),
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        // Resumption would skip verifying the client's chain on later
        // connections; a full handshake is cheap at the rate nodes connect.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(cfg)
    }

    /// rustls client configuration: TLS 1.3, ALPN [`ALPN`], our
    /// certificate offered, the server verified against the trust material
    /// but **not** against a host name (see the module docs).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let verifier = Arc::new(ClusterServerVerifier {
            trust: self.trust.clone(),
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.resumption = rustls::client::Resumption::disabled();
        cfg.enable_early_data = false;
        Ok(cfg)
    }
}

/// The certificate's notAfter.
pub(crate) fn not_after(der: &[u8]) -> Result<SystemTime, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let ts = cert.validity().not_after.timestamp();
    Ok(if ts >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    })
}

/// Server side: the client's chain against the trust material
/// (`clientAuth`, validity, revocation), then the identity policy.
#[derive(Debug)]
struct ClusterClientVerifier {
    trust: Arc<TrustMaterial>,
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Every node holds exactly one certificate: hints would only make
        // the first flight larger.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust
            .verify(end_entity, intermediates, now, Usage::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.trust.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.trust.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.algorithms().supported_schemes()
    }
}

/// Client side: the server's chain against the trust material
/// (`serverAuth`, validity, revocation), then the identity policy. The
/// server name is deliberately ignored: seeds are addresses, and the node
/// id is compared by the transport.
#[derive(Debug)]
struct ClusterServerVerifier {
    trust: Arc<TrustMaterial>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.trust
            .verify(end_entity, intermediates, now, Usage::Server)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.trust.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.trust.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.algorithms().supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = sans;
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn dns(s: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(s.try_into().unwrap())
    }

    fn uri(s: &str) -> rcgen::SanType {
        rcgen::SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn single_dns_name_is_the_node_id() {
        let id = identity_from_cert(&cert_with(vec![dns("node-a")])).unwrap();
        assert_eq!(id.node_id, "node-a");
        assert_eq!(id.cluster, None);
    }

    #[test]
    fn uri_picks_the_node_id_among_several_dns_names() {
        let der = cert_with(vec![
            dns("host-17.internal"),
            dns("node-a"),
            uri("phimon://prod/node-a"),
        ]);
        let id = identity_from_cert(&der).unwrap();
        assert_eq!(id.node_id, "node-a");
        assert_eq!(id.cluster.as_deref(), Some("prod"));
    }

    #[test]
    fn ambiguous_or_missing_names_are_refused() {
        assert_eq!(
            identity_from_cert(&cert_with(vec![dns("a"), dns("b")])),
            Err(IdentityError::AmbiguousNodeId {
                names: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            identity_from_cert(&cert_with(vec![uri("phimon://prod/a")])),
            Err(IdentityError::NoNodeId)
        );
        assert!(matches!(
            identity_from_cert(&cert_with(vec![dns("b"), uri("phimon://prod/a")])),
            Err(IdentityError::UriNodeNotInDns { .. })
        ));
        assert!(matches!(
            identity_from_cert(&cert_with(vec![dns("a"), uri("phimon://prod")])),
            Err(IdentityError::MalformedUri { .. })
        ));
        assert!(matches!(
            identity_from_cert(b"not a certificate"),
            Err(IdentityError::Unparseable { .. })
        ));
    }

    #[test]
    fn policy_refuses_other_clusters_and_missing_cluster() {
        let policy = IdentityPolicy::new("prod");
        let ours = cert_with(vec![dns("a"), uri("phimon://prod/a")]);
        let theirs = cert_with(vec![dns("a"), uri("phimon://staging/a")]);
        let bare = cert_with(vec![dns("a")]);
        assert_eq!(policy.check(&ours).unwrap().node_id, "a");
        assert_eq!(
            policy.check(&theirs),
            Err(IdentityError::WrongCluster {
                expected: "prod".into(),
                found: "staging".into()
            })
        );
        assert!(matches!(
            policy.check(&bare),
            Err(IdentityError::MissingCluster { .. })
        ));
        let lax = IdentityPolicy {
            require_cluster_san: false,
            ..policy
        };
        assert_eq!(lax.check(&bare).unwrap().node_id, "a");
        assert!(lax.check(&theirs).is_err(), "a named cluster still counts");
    }

    #[test]
    fn a_spiffe_id_under_phimon_names_the_cluster() {
        let der = cert_with(vec![
            dns("node-a"),
            uri("spiffe://example.org/phimon/prod/node-a"),
        ]);
        assert_eq!(
            identity_from_cert(&der),
            Ok(PeerIdentity {
                node_id: "node-a".into(),
                cluster: Some("prod".into()),
            })
        );
        let policy = IdentityPolicy::new("prod");
        assert_eq!(policy.check(&der).unwrap().node_id, "node-a");
        // The scheme is case-insensitive like phimon://, the rest exact.
        let upper = cert_with(vec![dns("a"), uri("SPIFFE://td/phimon/prod/a")]);
        assert_eq!(policy.check(&upper).unwrap().node_id, "a");
        // It picks the node id among several DNS names, as phimon:// does.
        let several = cert_with(vec![
            dns("host-17.internal"),
            dns("node-a"),
            uri("spiffe://td/phimon/prod/node-a"),
        ]);
        assert_eq!(policy.check(&several).unwrap().node_id, "node-a");
    }

    #[test]
    fn a_spiffe_id_of_another_cluster_or_node_is_refused() {
        let policy = IdentityPolicy::new("prod");
        let staging = cert_with(vec![dns("a"), uri("spiffe://td/phimon/staging/a")]);
        assert_eq!(
            policy.check(&staging),
            Err(IdentityError::WrongCluster {
                expected: "prod".into(),
                found: "staging".into()
            })
        );
        let other_node = cert_with(vec![dns("b"), uri("spiffe://td/phimon/prod/a")]);
        assert_eq!(
            policy.check(&other_node),
            Err(IdentityError::UriNodeNotInDns {
                uri_node: "a".into(),
                names: vec!["b".into()]
            })
        );
        // Case matters in the path: the node id is compared exactly.
        let case = cert_with(vec![dns("node-a"), uri("spiffe://td/phimon/prod/Node-A")]);
        assert!(matches!(
            policy.check(&case),
            Err(IdentityError::UriNodeNotInDns { .. })
        ));
    }

    #[test]
    fn malformed_spiffe_ids_under_phimon_are_refused() {
        for bad in [
            "spiffe://td/phimon",
            "spiffe://td/phimon/",
            "spiffe://td/phimon/prod",
            "spiffe://td/phimon/prod/",
            "spiffe://td/phimon//a",
            "spiffe://td/phimon/prod/a/extra",
            "spiffe:///phimon/prod/a",
            "spiffe://td/phimon/prod/a?x=1",
            "spiffe://td/phimon/prod/a#frag",
        ] {
            let der = cert_with(vec![dns("a"), uri(bad)]);
            assert_eq!(
                identity_from_cert(&der),
                Err(IdentityError::MalformedUri { uri: bad.into() }),
                "{bad}"
            );
        }
        // Two cluster URIs, even agreeing ones, are one too many.
        let two = cert_with(vec![
            dns("a"),
            uri("phimon://prod/a"),
            uri("spiffe://td/phimon/prod/a"),
        ]);
        assert!(matches!(
            identity_from_cert(&two),
            Err(IdentityError::MalformedUri { .. })
        ));
    }

    #[test]
    fn spiffe_ids_outside_phimon_are_ignored() {
        let policy = IdentityPolicy::new("prod");
        // Another workload's SVID that happens to carry a node's DNS name
        // names no cluster, so it is refused while the cluster SAN is
        // required...
        for other in [
            "spiffe://td/ns/default/sa/web",
            "spiffe://td/phimonx/prod/a",
            "spiffe://td/x/phimon/prod/a",
            "spiffe://td",
            "spiffe://td/",
        ] {
            let der = cert_with(vec![dns("a"), uri(other)]);
            assert_eq!(
                identity_from_cert(&der),
                Ok(PeerIdentity {
                    node_id: "a".into(),
                    cluster: None
                }),
                "{other}"
            );
            assert!(
                matches!(
                    policy.check(&der),
                    Err(IdentityError::MissingCluster { .. })
                ),
                "{other}"
            );
        }
        // ...and does not disturb a phimon:// URI beside it.
        let both = cert_with(vec![
            dns("a"),
            uri("spiffe://td/ns/default/sa/web"),
            uri("phimon://prod/a"),
        ]);
        assert_eq!(policy.check(&both).unwrap().node_id, "a");
    }

    #[test]
    fn cluster_uri_parsing_is_total_on_multibyte_input() {
        // rcgen refuses non-ASCII IA5 strings, so these go to the parser
        // directly; every one must get an answer, none a panic.
        let cases: &[(&str, Option<bool>)] = &[
            ("spiffé://td/phimon/prod/a", None),
            ("spiffe://td/phimoné/prod/a", None),
            ("spiffe://té/phimon/prod/a", Some(true)),
            ("spiffe://td/phimon/prodé/a", Some(true)),
            ("spiffe://td/phimon/é", Some(false)),
            ("spiffe://é", None),
            ("sp€", None),
            ("phimon://é", Some(false)),
            ("phimon://€/é", Some(true)),
            ("€€€€€€€€€€", None),
            ("phimoné", None),
            ("spiffe:/", None),
        ];
        for (u, want) in cases {
            let got = parse_cluster_uri(u).map(|r| r.is_ok());
            assert_eq!(got, *want, "{u}");
        }
        // Every prefix of a multi-byte URI, cut at every char boundary.
        let long = "spiffe://tdé/phimon/prodé/nodé-€";
        for (i, _) in long.char_indices() {
            let _ = parse_cluster_uri(&long[..i]);
        }
    }

    #[test]
    fn identity_errors_map_to_distinct_alerts() {
        use rustls::AlertDescription;
        let alert = |e: IdentityError| match e.to_rustls() {
            rustls::Error::InvalidCertificate(c) => u8::from(AlertDescription::from(c)),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            AuthFailure::from_alert(alert(IdentityError::WrongCluster {
                expected: "a".into(),
                found: "b".into()
            })),
            AuthFailure::WrongCluster
        );
        assert_eq!(
            AuthFailure::from_alert(alert(IdentityError::NoNodeId)),
            AuthFailure::BadCertificate
        );
        for (i, r) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
