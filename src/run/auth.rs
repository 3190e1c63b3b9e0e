//! The protocol core's [`Signer`] and [`Authority`] on the node's X.509
//! material: records are signed with the key of the node's certificate
//! and carry its chain; others' records are verified against the cluster
//! CA (and CRL) by the transport's [`CredentialVerifier`].
//!
//! A credential on the wire is the chain, leaf first: a 2-byte count, then
//! each certificate as a 4-byte length and its DER. A signature is the
//! 2-byte TLS signature scheme, then the signature bytes.

use phimon_gossip::{AuthError, Authority, NodeId, Signer};
use phimon_transport::{CredentialVerifier, RecordSigner, Signature, VerifiedCredential};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Most certificates in a credential.
const MAX_CHAIN: usize = 8;

/// Most verified credentials remembered: a node's credential comes with
/// each version of its record, and is verified once.
const CACHE: usize = 100_000;

/// How long a verified credential is trusted before its chain is checked
/// again: a CA or CRL reload applies to records within this long.
const REVERIFY: Duration = Duration::from_secs(300);

/// Encodes a chain (DER, leaf first) as a credential.
pub fn encode_chain<C: AsRef<[u8]>>(chain: &[C]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(chain.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for c in chain {
        let c = c.as_ref();
        out.extend_from_slice(&(c.len().min(u32::MAX as usize) as u32).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The chain of a credential, every length checked.
fn decode_chain(bytes: &[u8]) -> Result<Vec<&[u8]>, AuthError> {
    let bad = |why: &str| AuthError::Credential(format!("malformed chain: {why}"));
    let (count, mut rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("truncated"))?;
    let count = usize::from(u16::from_be_bytes(*count));
    if count == 0 || count > MAX_CHAIN {
        return Err(bad("certificate count"));
    }
    let mut chain = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let der = tail.get(..len).ok_or_else(|| bad("truncated"))?;
        chain.push(der);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(chain)
}

/// Signs this node's records with its certificate key. The key and
/// chain are fetched for every signature, so records signed after a
/// certificate reload carry the new ones.
pub struct CertSigner {
    current: Box<dyn Fn() -> Arc<RecordSigner> + Send>,
    signer: Arc<RecordSigner>,
    credential: Arc<[u8]>,
}

impl CertSigner {
    /// A signer that asks `current` for the TLS material in force
    /// (`Transport::record_signer`).
    pub fn new(current: impl Fn() -> Arc<RecordSigner> + Send + 'static) -> Self {
        let signer = current();
        let credential = Arc::from(encode_chain(signer.chain()));
        CertSigner {
            current: Box::new(current),
            signer,
            credential,
        }
    }

    /// Follows a reload: the credential is encoded again only when the
    /// signer changed.
    fn refresh(&mut self) {
        let now = (self.current)();
        if !Arc::ptr_eq(&now, &self.signer) {
            self.credential = Arc::from(encode_chain(now.chain()));
            self.signer = now;
        }
    }
}

impl Signer for CertSigner {
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        // The credential is read right after signing (Record::sign), so
        // both come from the same material.
        self.refresh();
        let sig = self
            .signer
            .sign(message)
            .map_err(|e| AuthError::Sign(e.to_string()))?;
        let mut out = Vec::with_capacity(2 + sig.bytes.len());
        out.extend_from_slice(&sig.scheme.to_be_bytes());
        out.extend_from_slice(&sig.bytes);
        Ok(out)
    }

    fn credential(&self) -> Arc<[u8]> {
        self.credential.clone()
    }
}

/// Verifies others' records: the chain against the cluster CA and CRL
/// (once per credential, until it expires), then the signature with the
/// chain's key.
pub struct CertAuthority {
    verifier: CredentialVerifier,
    cache: HashMap<[u8; 32], (Instant, VerifiedCredential)>,
}

impl CertAuthority {
    /// An authority following `verifier` (which follows reloads).
    pub fn new(verifier: CredentialVerifier) -> Self {
        CertAuthority {
            verifier,
            cache: HashMap::new(),
        }
    }

    fn credential(&mut self, bytes: &[u8]) -> Result<&VerifiedCredential, AuthError> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        let (now, wall) = (Instant::now(), SystemTime::now());
        let fresh = self
            .cache
            .get(&key)
            .is_some_and(|(at, c)| c.not_after > wall && now.duration_since(*at) < REVERIFY);
        if !fresh {
            let chain = decode_chain(bytes)?;
            let verified = self
                .verifier
                .verify_chain(&chain, wall)
                .map_err(|e| AuthError::Credential(e.to_string()))?;
            if self.cache.len() >= CACHE {
                self.cache
                    .retain(|_, (at, c)| c.not_after > wall && now.duration_since(*at) < REVERIFY);
                if self.cache.len() >= CACHE {
                    self.cache.clear();
                }
            }
            self.cache.insert(key, (now, verified));
        }
        self.cache
            .get(&key)
            .map(|(_, c)| c)
            .ok_or_else(|| AuthError::Credential("cache".into()))
    }
}

impl Authority for CertAuthority {
    fn verify(
        &mut self,
        credential: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<NodeId, AuthError> {
        let (scheme, bytes) = signature
            .split_first_chunk::<2>()
            .ok_or(AuthError::Signature)?;
        let sig = Signature {
            scheme: u16::from_be_bytes(*scheme),
            bytes: bytes.to_vec(),
        };
        let cred = self.credential(credential)?;
        cred.verify(message, &sig)
            .map_err(|_| AuthError::Signature)?;
        Ok(cred.node_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phimon_transport::tls::{DevCa, IssuedCert};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Mutex;

    fn record_signer(c: &IssuedCert) -> Arc<RecordSigner> {
        let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
        let cert = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap();
        Arc::new(RecordSigner::new(&key, vec![cert], NodeId::from("node-1")).unwrap())
    }

    #[test]
    fn records_signed_after_a_reload_carry_the_new_certificate() {
        let ca = DevCa::generate("test", Duration::from_secs(3600)).unwrap();
        let hour = Duration::from_secs(3600);
        let old = record_signer(&ca.issue("node-1", "c", hour).unwrap());
        let new = record_signer(&ca.issue("node-1", "c", hour).unwrap());
        let slot = Arc::new(Mutex::new(old.clone()));
        let mut signer = CertSigner::new({
            let slot = slot.clone();
            move || slot.lock().unwrap().clone()
        });
        signer.sign(b"body").unwrap();
        assert_eq!(&*signer.credential(), &encode_chain(old.chain())[..]);
        // The transport reloads its certificate.
        *slot.lock().unwrap() = new.clone();
        signer.sign(b"body").unwrap();
        assert_eq!(&*signer.credential(), &encode_chain(new.chain())[..]);
    }

    #[test]
    fn chains_round_trip_and_bad_ones_are_refused() {
        let chain = vec![vec![1u8, 2, 3], vec![9u8; 300]];
        let bytes = encode_chain(&chain);
        let back = decode_chain(&bytes).unwrap();
        assert_eq!(back, vec![&chain[0][..], &chain[1][..]]);
        for bad in [
            &bytes[..1],
            &bytes[..bytes.len() - 1],
            &[0u8, 0][..],
            &[0u8, 9][..],
        ] {
            assert!(decode_chain(bad).is_err(), "{bad:?}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_chain(&trailing).is_err());
    }
}
