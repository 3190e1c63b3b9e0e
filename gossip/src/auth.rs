//! Who may speak for a node: signing this node's record and verifying the
//! records of others.
//!
//! The core does not know certificates. It hands a record's signed bytes,
//! signature and attached credential to an [`Authority`], which says which
//! node id the credential proves and whether the signature is that
//! credential's. The sidecar's implementation checks an X.509 chain
//! against the cluster CA (and CRL) and the signature with the
//! certificate's key (phimon-transport); [`SharedSecretAuthority`] is the
//! cheap stand-in of tests and the simulator.

use crate::NodeId;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why a credential or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The credential is not one of this cluster's (malformed, unknown
    /// issuer, expired, revoked, another cluster).
    #[error("credential refused: {0}")]
    Credential(String),
    /// The signature does not verify with the credential's key.
    #[error("bad signature")]
    Signature,
    /// Signing failed (the key is unusable).
    #[error("cannot sign: {0}")]
    Sign(String),
}

impl AuthError {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Credential(_) => "credential",
            AuthError::Signature => "signature",
            AuthError::Sign(_) => "sign",
        }
    }
}

/// Verifies that a node signed a record.
pub trait Authority: Send {
    /// Checks that `credential` is a credential of this cluster and that
    /// `signature` over `message` was made with its key; returns the node
    /// id the credential proves. Implementations may cache verified
    /// credentials (the same credential comes with every record version).
    fn verify(
        &mut self,
        credential: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<NodeId, AuthError>;
}

/// Signs this node's record.
pub trait Signer: Send {
    /// The signature of `message` with this node's key.
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, AuthError>;
    /// The credential attached to every record this node signs (its
    /// certificate chain): what lets others verify the signature.
    fn credential(&self) -> Arc<[u8]>;
}

impl<A: Authority + ?Sized> Authority for Box<A> {
    fn verify(
        &mut self,
        credential: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<NodeId, AuthError> {
        (**self).verify(credential, message, signature)
    }
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        (**self).sign(message)
    }
    fn credential(&self) -> Arc<[u8]> {
        (**self).credential()
    }
}

/// Bytes that prefix a [`SharedSecretAuthority`] credential.
const SHARED_TAG: &[u8] = b"phimon-shared-secret-credential\0";

/// An authority for tests and the simulator: every node of a cluster
/// shares one secret, a credential is the node id (padded to a realistic
/// certificate size, so byte counts stay comparable), and a signature is
/// SHA-256 of the secret, the id and the message. Anyone holding the
/// secret can sign as anyone: never use it outside tests.
#[derive(Debug, Clone)]
pub struct SharedSecretAuthority {
    secret: Arc<[u8]>,
    credential_len: usize,
}

impl SharedSecretAuthority {
    /// Typical DER size of a node's certificate chain.
    pub const TYPICAL_CREDENTIAL_LEN: usize = 480;

    /// An authority of the cluster that shares `secret`; credentials are
    /// padded to [`TYPICAL_CREDENTIAL_LEN`](Self::TYPICAL_CREDENTIAL_LEN).
    pub fn new(secret: &[u8]) -> Self {
        SharedSecretAuthority {
            secret: Arc::from(secret),
            credential_len: Self::TYPICAL_CREDENTIAL_LEN,
        }
    }

    /// The signer of node `id`.
    pub fn signer(&self, id: &NodeId) -> SharedSecretSigner {
        let mut cred = Vec::with_capacity(self.credential_len.max(SHARED_TAG.len() + 2 + id.len()));
        cred.extend_from_slice(SHARED_TAG);
        cred.extend_from_slice(&(id.len() as u16).to_be_bytes());
        cred.extend_from_slice(id.as_bytes());
        cred.resize(cred.len().max(self.credential_len), 0);
        SharedSecretSigner {
            authority: self.clone(),
            id: id.clone(),
            credential: Arc::from(cred),
        }
    }

    fn mac(&self, id: &[u8], message: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((self.secret.len() as u64).to_be_bytes());
        h.update(&self.secret);
        h.update((id.len() as u64).to_be_bytes());
        h.update(id);
        h.update(message);
        h.finalize().into()
    }
}

impl Authority for SharedSecretAuthority {
    fn verify(
        &mut self,
        credential: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<NodeId, AuthError> {
        let rest = credential
            .strip_prefix(SHARED_TAG)
            .ok_or_else(|| AuthError::Credential("not a shared-secret credential".into()))?;
        let (len, rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| AuthError::Credential("truncated".into()))?;
        let len = usize::from(u16::from_be_bytes(*len));
        let id = rest
            .get(..len)
            .ok_or_else(|| AuthError::Credential("truncated".into()))?;
        let id =
            std::str::from_utf8(id).map_err(|_| AuthError::Credential("id is not UTF-8".into()))?;
        if signature != self.mac(id.as_bytes(), message) {
            return Err(AuthError::Signature);
        }
        Ok(NodeId::from(id))
    }
}

/// One node's signer under a [`SharedSecretAuthority`].
#[derive(Debug, Clone)]
pub struct SharedSecretSigner {
    authority: SharedSecretAuthority,
    id: NodeId,
    credential: Arc<[u8]>,
}

impl Signer for SharedSecretSigner {
    fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        Ok(self.authority.mac(self.id.as_bytes(), message).to_vec())
    }
    fn credential(&self) -> Arc<[u8]> {
        self.credential.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secret_signatures_prove_the_id_and_nothing_else() {
        let mut auth = SharedSecretAuthority::new(b"k");
        let a = NodeId::from("a");
        let mut s = auth.signer(&a);
        let sig = s.sign(b"msg").unwrap();
        let cred = s.credential();
        assert_eq!(cred.len(), SharedSecretAuthority::TYPICAL_CREDENTIAL_LEN);
        assert_eq!(auth.verify(&cred, b"msg", &sig), Ok(a.clone()));
        assert_eq!(auth.verify(&cred, b"msh", &sig), Err(AuthError::Signature));
        // Another node's credential with a's signature: refused.
        let b_cred = auth.signer(&NodeId::from("b")).credential();
        assert_eq!(
            auth.verify(&b_cred, b"msg", &sig),
            Err(AuthError::Signature)
        );
        // Another cluster's secret: refused.
        let mut other = SharedSecretAuthority::new(b"other");
        assert_eq!(other.verify(&cred, b"msg", &sig), Err(AuthError::Signature));
        assert!(matches!(
            auth.verify(b"junk", b"msg", &sig),
            Err(AuthError::Credential(_))
        ));
        assert!(matches!(
            auth.verify(&cred[..SHARED_TAG.len() + 1], b"msg", &sig),
            Err(AuthError::Credential(_))
        ));
    }
}
