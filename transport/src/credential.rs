//! Signing membership records with the node's certificate key, and
//! verifying other nodes' records: pure functions over the trust material,
//! no IO.
//!
//! A record travels with the signer's certificate chain. Whoever relays it
//! cannot change it: the receiver verifies the chain against the cluster
//! CA and CRL ([`CredentialVerifier::verify_chain`]), takes the node id
//! from the certificate by the same rules as the TLS identity, and checks
//! the signature with the certificate's public key
//! ([`VerifiedCredential::verify`]).
//!
//! Every signature covers [`SIGNATURE_CONTEXT`] followed by the record
//! bytes, so a record signature can never be replayed as a TLS
//! `CertificateVerify` or any other use of the same key, nor the reverse.
//!
//! Key types: whatever rustls can load and sign with — ECDSA P-256 and
//! P-384, Ed25519, RSA (signed with RSA-PSS-SHA256; PKCS#1 v1.5 is also
//! accepted on verification).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use phimon_gossip::NodeId;
use ring::signature as ring_sig;
use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::SigningKey;

use crate::tls::{NodeTls, TrustMaterial, Usage};

/// Prefix of every signed message (domain separation).
pub const SIGNATURE_CONTEXT: &[u8] = b"phimon membership record v1\0";

/// Schemes a record signer picks from, in order of preference.
const OFFERED: [SignatureScheme; 4] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// Errors signing or verifying a record credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The private key cannot be loaded, or supports none of the schemes.
    #[error("the node key cannot sign records: {reason}")]
    UnusableKey {
        /// Why.
        reason: String,
    },
    /// Signing failed.
    #[error("signing failed: {reason}")]
    Sign {
        /// Why.
        reason: String,
    },
    /// The chain is empty.
    #[error("empty certificate chain")]
    EmptyChain,
    /// The chain does not verify against the CA and CRL, or its identity
    /// is not acceptable (other cluster, invalid node id).
    #[error("certificate chain refused: {reason}")]
    Chain {
        /// Why (the TLS verifier's message).
        reason: String,
    },
    /// The certificate's public key is of a kind records cannot be signed
    /// with.
    #[error("unsupported public key: {reason}")]
    UnsupportedKey {
        /// Which.
        reason: String,
    },
    /// The signature scheme does not match the certificate's key.
    #[error("signature scheme {scheme:#06x} does not match the certificate's key")]
    SchemeMismatch {
        /// The scheme given.
        scheme: u16,
    },
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// A signature over [`SIGNATURE_CONTEXT`] + bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// TLS `SignatureScheme` code point (e.g. `0x0403` for ECDSA P-256
    /// SHA-256).
    pub scheme: u16,
    /// The signature bytes.
    pub bytes: Vec<u8>,
}

/// Signs records with the node's certificate key. Made from the loaded
/// TLS material; [`Transport::record_signer`](crate::Transport::record_signer)
/// gives the one in force.
pub struct RecordSigner {
    signer: Box<dyn rustls::sign::Signer>,
    chain: Vec<CertificateDer<'static>>,
    node_id: NodeId,
}

impl std::fmt::Debug for RecordSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSigner")
            .field("node_id", &self.node_id)
            .field("scheme", &self.signer.scheme())
            .finish_non_exhaustive()
    }
}

impl RecordSigner {
    /// A signer for `key`, whose certificate chain (leaf first) is `chain`
    /// and identity `node_id`. Does not check that they match: use
    /// [`RecordSigner::from_tls`] for material checked at load.
    pub fn new(
        key: &PrivateKeyDer<'_>,
        chain: Vec<CertificateDer<'static>>,
        node_id: NodeId,
    ) -> Result<RecordSigner, CredentialError> {
        let key: Arc<dyn SigningKey> = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| CredentialError::UnusableKey {
                reason: e.to_string(),
            })?;
        let signer = key
            .choose_scheme(&OFFERED)
            .ok_or_else(|| CredentialError::UnusableKey {
                reason: format!(
                    "key type {:?} supports none of {OFFERED:?}",
                    key.algorithm()
                ),
            })?;
        Ok(RecordSigner {
            signer,
            chain,
            node_id,
        })
    }

    /// The signer for a node's loaded (and checked) TLS material.
    pub fn from_tls(tls: &NodeTls) -> Result<RecordSigner, CredentialError> {
        Self::new(
            tls.key(),
            tls.chain().to_vec(),
            NodeId::from(tls.identity().node_id.as_str()),
        )
    }

    /// Signs [`SIGNATURE_CONTEXT`] + `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> Result<Signature, CredentialError> {
        let mut msg = Vec::with_capacity(SIGNATURE_CONTEXT.len() + bytes.len());
        msg.extend_from_slice(SIGNATURE_CONTEXT);
        msg.extend_from_slice(bytes);
        let sig = self.signer.sign(&msg).map_err(|e| CredentialError::Sign {
            reason: e.to_string(),
        })?;
        Ok(Signature {
            scheme: u16::from(self.signer.scheme()),
            bytes: sig,
        })
    }

    /// The scheme every signature uses.
    pub fn scheme(&self) -> u16 {
        u16::from(self.signer.scheme())
    }

    /// The certificate chain to attach to records (DER, leaf first).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The node id of the certificate.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }
}

/// Public key kinds records may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa,
}

/// A chain that verified: who it belongs to, until when, and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCredential {
    /// The node id, from the certificate by the TLS identity rules.
    pub node_id: NodeId,
    /// When the leaf certificate expires; a cache of credentials must
    /// re-verify (or drop) them after this.
    pub not_after: SystemTime,
    kind: KeyKind,
    /// The raw public key (EC point, Ed25519 key or RSAPublicKey DER).
    key: Vec<u8>,
}

impl VerifiedCredential {
    /// Verifies `sig` over [`SIGNATURE_CONTEXT`] + `bytes` with this
    /// credential's key.
    pub fn verify(&self, bytes: &[u8], sig: &Signature) -> Result<(), CredentialError> {
        let scheme = SignatureScheme::from(sig.scheme);
        let alg: &dyn ring_sig::VerificationAlgorithm = match (self.kind, scheme) {
            (KeyKind::P256, SignatureScheme::ECDSA_NISTP256_SHA256) => {
                &ring_sig::ECDSA_P256_SHA256_ASN1
            }
            (KeyKind::P384, SignatureScheme::ECDSA_NISTP384_SHA384) => {
                &ring_sig::ECDSA_P384_SHA384_ASN1
            }
            (KeyKind::Ed25519, SignatureScheme::ED25519) => &ring_sig::ED25519,
            (KeyKind::Rsa, SignatureScheme::RSA_PSS_SHA256) => &ring_sig::RSA_PSS_2048_8192_SHA256,
            (KeyKind::Rsa, SignatureScheme::RSA_PSS_SHA384) => &ring_sig::RSA_PSS_2048_8192_SHA384,
            (KeyKind::Rsa, SignatureScheme::RSA_PSS_SHA512) => &ring_sig::RSA_PSS_2048_8192_SHA512,
            (KeyKind::Rsa, SignatureScheme::RSA_PKCS1_SHA256) => {
                &ring_sig::RSA_PKCS1_2048_8192_SHA256
            }
            (KeyKind::Rsa, SignatureScheme::RSA_PKCS1_SHA384) => {
                &ring_sig::RSA_PKCS1_2048_8192_SHA384
            }
            (KeyKind::Rsa, SignatureScheme::RSA_PKCS1_SHA512) => {
                &ring_sig::RSA_PKCS1_2048_8192_SHA512
            }
            _ => return Err(CredentialError::SchemeMismatch { scheme: sig.scheme }),
        };
        let mut msg = Vec::with_capacity(SIGNATURE_CONTEXT.len() + bytes.len());
        msg.extend_from_slice(SIGNATURE_CONTEXT);
        msg.extend_from_slice(bytes);
        ring_sig::UnparsedPublicKey::new(alg, &self.key)
            .verify(&msg, &sig.bytes)
            .map_err(|_| CredentialError::BadSignature)
    }

    /// The verified public key (EC point, Ed25519 key or RSAPublicKey DER).
    pub fn public_key(&self) -> &[u8] {
        &self.key
    }
}

/// Verifies record credentials against the cluster's CA, CRL and identity
/// policy. The one from [`Transport::credential_verifier`](crate::Transport::credential_verifier)
/// follows reloads; cloning shares it.
#[derive(Clone, Debug)]
pub struct CredentialVerifier {
    trust: Arc<RwLock<Arc<TrustMaterial>>>,
}

impl CredentialVerifier {
    /// A verifier for fixed trust material (tests, the simulator, tools).
    pub fn new(trust: Arc<TrustMaterial>) -> CredentialVerifier {
        Self::shared(Arc::new(RwLock::new(trust)))
    }

    pub(crate) fn shared(trust: Arc<RwLock<Arc<TrustMaterial>>>) -> CredentialVerifier {
        CredentialVerifier { trust }
    }

    /// Replaces the trust material (for verifiers made with
    /// [`CredentialVerifier::new`]; the transport's follows reloads).
    pub fn set_trust(&self, trust: Arc<TrustMaterial>) {
        *self.trust.write().unwrap_or_else(PoisonError::into_inner) = trust;
    }

    /// Verifies `chain` (DER, leaf first) against the CA and CRL at `now`
    /// (wall clock: certificate validity), and the identity policy (the
    /// cluster, the node id rules). Returns who it belongs to and its key.
    pub fn verify_chain<C: AsRef<[u8]>>(
        &self,
        chain: &[C],
        now: SystemTime,
    ) -> Result<VerifiedCredential, CredentialError> {
        let trust = self
            .trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (leaf, rest) = chain.split_first().ok_or(CredentialError::EmptyChain)?;
        let leaf = CertificateDer::from(leaf.as_ref());
        let rest: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let secs =
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map_err(|_| CredentialError::Chain {
                    reason: "clock before 1970".into(),
                })?;
        let identity = trust
            .verify(
                &leaf,
                &rest,
                UnixTime::since_unix_epoch(secs),
                Usage::Client,
            )
            .map_err(|e| CredentialError::Chain {
                reason: e.to_string(),
            })?;
        let (kind, key, not_after) = public_key(&leaf)?;
        Ok(VerifiedCredential {
            node_id: NodeId::from(identity.node_id),
            not_after,
            kind,
            key,
        })
    }
}

/// The leaf's key kind, raw public key and notAfter.
fn public_key(der: &[u8]) -> Result<(KeyKind, Vec<u8>, SystemTime), CredentialError> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
        OID_SIG_ED25519,
    };
    let unsupported = |reason: String| CredentialError::UnsupportedKey { reason };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| unsupported(e.to_string()))?;
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    let kind = if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => KeyKind::P256,
            Some(c) if c == OID_NIST_EC_P384 => KeyKind::P384,
            other => return Err(unsupported(format!("EC curve {other:?}"))),
        }
    } else if *alg == OID_SIG_ED25519 {
        KeyKind::Ed25519
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        KeyKind::Rsa
    } else {
        return Err(unsupported(format!("algorithm {alg}")));
    };
    let not_after = crate::tls::not_after(der).map_err(unsupported)?;
    Ok((kind, spki.subject_public_key.data.to_vec(), not_after))
}
