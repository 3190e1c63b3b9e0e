//! Membership records: what a node states about itself, signed by it.

use crate::NodeId;
use crate::auth::{AuthError, Authority, Signer};
use crate::key::{RingKey, term};
use crate::wire::{MAX_BODY_BYTES, SignedRecord, decode_exact};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Domain tag prefixed to a body before signing, so a record signature
/// can never be replayed as a signature of anything else made with the
/// same key (a TLS handshake, another protocol version).
pub const SIGN_DOMAIN: &[u8] = b"phimon record v3\0";

/// Most verdicts one record carries. A node observes about `observers`
/// subjects (every node in a small fleet) and keeps suspected ones until
/// they are forgotten; the cap bounds a record whatever happens.
pub const MAX_VERDICTS: usize = 512;

/// Longest advertised address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 255;

/// Longest key/value key, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// What a node declares about itself. Within one generation it only moves
/// forward (alive → leaving → left); only a restart (a new generation)
/// brings a node back to alive. Only the node itself can say it, since
/// only it can sign its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Declared {
    /// Running.
    Alive,
    /// Shutting down gracefully: stops heartbeats, is never paged about.
    Leaving,
    /// Gone gracefully; final for this generation.
    Left,
}

impl From<Declared> for u8 {
    fn from(s: Declared) -> u8 {
        match s {
            Declared::Alive => 0,
            Declared::Leaving => 1,
            Declared::Left => 2,
        }
    }
}

impl TryFrom<u8> for Declared {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Declared::Alive),
            1 => Ok(Declared::Leaving),
            2 => Ok(Declared::Left),
            _ => Err(format!("unknown declared status {v}")),
        }
    }
}

/// An observer's verdict on one of its subjects, as of the subject's
/// `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The subject.
    pub subject: NodeId,
    /// The subject's generation the verdict is about: a verdict on an
    /// older generation says nothing about a restarted node.
    pub generation: u64,
    /// `true`: phi crossed the threshold (suspected); `false`: heartbeats
    /// of this generation arrive (alive).
    pub suspected: bool,
    /// The observer's phi when the verdict was reached, times 100
    /// (evidence for pages and operators; it does not change while the
    /// verdict stands, so the record does not either).
    pub phi_centi: u32,
}

/// One published key/value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue(
    /// Key.
    pub String,
    /// Value.
    pub String,
);

/// Everything a node states about itself: the part that is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    /// The cluster: a record is never valid in another cluster.
    pub cluster: String,
    /// The node; its credential must prove this id.
    pub node: NodeId,
    /// Incarnation: bumped on every restart (persisted by the runtime).
    pub generation: u64,
    /// Bumped on every change within a generation; starts at 1.
    pub version: u64,
    /// Where to reach the node (`host:port`).
    pub address: String,
    /// What it declares.
    pub status: Declared,
    /// Published key/values, keys strictly ascending.
    pub kv: Vec<KeyValue>,
    /// Its verdicts on its subjects, strictly ascending by subject.
    pub verdicts: Vec<Verdict>,
}

/// Why a record was refused. Every variant is counted by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The body does not decode.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// The body breaks a rule (bounds, order).
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The record is another cluster's.
    #[error("record of cluster {got:?}, this node is in {expected:?}")]
    WrongCluster {
        /// This node's cluster.
        expected: String,
        /// The record's.
        got: String,
    },
    /// The credential or signature is not valid.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The credential proves another node than the record names: someone
    /// tried to speak for another node.
    #[error("record of {claimed} signed by {proven}")]
    Forged {
        /// The node the record names.
        claimed: NodeId,
        /// The node the credential proves.
        proven: NodeId,
    },
}

impl RecordError {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "malformed",
            RecordError::Invalid(_) => "invalid",
            RecordError::WrongCluster { .. } => "cluster",
            RecordError::Auth(e) => e.label(),
            RecordError::Forged { .. } => "forged",
        }
    }
}

impl RecordBody {
    /// Decodes a body and checks its rules (not its signature).
    pub fn decode(
        bytes: &[u8],
        cluster: &str,
        max_kv_bytes: usize,
    ) -> Result<RecordBody, RecordError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(RecordError::Invalid(format!("{} bytes", bytes.len())));
        }
        let body: RecordBody = decode_exact(bytes).map_err(RecordError::Malformed)?;
        if body.cluster != cluster {
            return Err(RecordError::WrongCluster {
                expected: cluster.to_owned(),
                got: body.cluster,
            });
        }
        body.check(max_kv_bytes)?;
        Ok(body)
    }

    /// The rules every body follows, whoever made it.
    pub fn check(&self, max_kv_bytes: usize) -> Result<(), RecordError> {
        let bad = |r: String| Err(RecordError::Invalid(r));
        if let Err(e) = NodeId::check(self.node.as_str()) {
            return bad(format!("node id: {e}"));
        }
        if self.generation == 0 || self.version == 0 {
            return bad("generation and version start at 1".into());
        }
        if self.address.is_empty() || self.address.len() > MAX_ADDRESS_LEN {
            return bad(format!("address of {} bytes", self.address.len()));
        }
        let mut kv_bytes = 0usize;
        for (i, KeyValue(k, v)) in self.kv.iter().enumerate() {
            if k.is_empty() || k.len() > MAX_KEY_LEN {
                return bad(format!("key of {} bytes", k.len()));
            }
            if i > 0 && self.kv[i - 1].0 >= *k {
                return bad("keys not strictly ascending".into());
            }
            kv_bytes += k.len() + v.len();
        }
        if kv_bytes > max_kv_bytes {
            return bad(format!(
                "{kv_bytes} key/value bytes exceed the {max_kv_bytes}-byte cap"
            ));
        }
        if self.verdicts.len() > MAX_VERDICTS {
            return bad(format!("{} verdicts", self.verdicts.len()));
        }
        for (i, v) in self.verdicts.iter().enumerate() {
            if NodeId::check(v.subject.as_str()).is_err() || v.subject == self.node {
                return bad(format!("verdict on {:?}", v.subject));
            }
            if v.generation == 0 {
                return bad("verdict on generation 0".into());
            }
            if i > 0 && self.verdicts[i - 1].subject >= v.subject {
                return bad("verdicts not strictly ascending".into());
            }
        }
        Ok(())
    }

    /// The encoded body (what is signed).
    pub fn encode(&self) -> Vec<u8> {
        // Strings, integers and vectors always encode.
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    /// This body's verdict on `subject`, if it has one.
    pub fn verdict_on(&self, subject: &NodeId) -> Option<&Verdict> {
        self.verdicts
            .binary_search_by(|v| v.subject.cmp(subject))
            .ok()
            .map(|i| &self.verdicts[i])
    }

    /// A published value.
    pub fn kv_get(&self, key: &str) -> Option<&str> {
        self.kv
            .binary_search_by(|kv| kv.0.as_str().cmp(key))
            .ok()
            .map(|i| self.kv[i].1.as_str())
    }
}

/// A record whose signature was verified (or that this node signed): the
/// decoded body, the signed bytes to relay, and the node's ring position.
#[derive(Debug, Clone)]
pub struct Record {
    body: RecordBody,
    signed: SignedRecord,
    key: RingKey,
    term: u64,
}

/// The message a node signs for `body`: the domain tag, then the body.
fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGN_DOMAIN.len() + body.len());
    m.extend_from_slice(SIGN_DOMAIN);
    m.extend_from_slice(body);
    m
}

impl Record {
    /// Signs `body` as this node's record.
    pub fn sign(body: RecordBody, signer: &mut dyn Signer) -> Result<Record, RecordError> {
        let bytes = body.encode();
        let signature = signer.sign(&signed_message(&bytes))?;
        let signed = SignedRecord {
            body: Arc::from(bytes),
            signature: Arc::from(signature),
            credential: signer.credential(),
        };
        Ok(Record::assemble(body, signed))
    }

    /// Verifies a received record whose body has already been decoded and
    /// checked ([`RecordBody::decode`]): the credential must prove the
    /// node the body names, and the signature must be that credential's.
    pub fn verify(
        body: RecordBody,
        signed: SignedRecord,
        authority: &mut dyn Authority,
    ) -> Result<Record, RecordError> {
        let proven = authority.verify(
            &signed.credential,
            &signed_message(&signed.body),
            &signed.signature,
        )?;
        if proven != body.node {
            return Err(RecordError::Forged {
                claimed: body.node,
                proven,
            });
        }
        Ok(Record::assemble(body, signed))
    }

    fn assemble(body: RecordBody, signed: SignedRecord) -> Record {
        let key = RingKey::of(&body.node);
        let term = term(key, body.generation, body.version);
        Record {
            body,
            signed,
            key,
            term,
        }
    }

    /// The decoded body.
    pub fn body(&self) -> &RecordBody {
        &self.body
    }

    /// The signed form, as relayed.
    pub fn signed(&self) -> &SignedRecord {
        &self.signed
    }

    /// The node.
    pub fn node(&self) -> &NodeId {
        &self.body.node
    }

    /// Its ring position.
    pub fn key(&self) -> RingKey {
        self.key
    }

    /// Its fingerprint term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// (generation, version): records of one node order by it.
    pub fn version(&self) -> (u64, u64) {
        (self.body.generation, self.body.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SharedSecretAuthority;

    pub(crate) fn body(node: &str) -> RecordBody {
        RecordBody {
            cluster: "c".into(),
            node: NodeId::from(node),
            generation: 1,
            version: 1,
            address: "127.0.0.1:1".into(),
            status: Declared::Alive,
            kv: vec![KeyValue("a".into(), "1".into())],
            verdicts: vec![Verdict {
                subject: NodeId::from("b"),
                generation: 3,
                suspected: true,
                phi_centi: 812,
            }],
        }
    }

    #[test]
    fn a_record_verifies_only_as_its_signer() {
        let mut auth = SharedSecretAuthority::new(b"s");
        let mut signer = auth.signer(&NodeId::from("a"));
        let r = Record::sign(body("a"), &mut signer).unwrap();
        let decoded = RecordBody::decode(&r.signed().body, "c", 4096).unwrap();
        assert_eq!(&decoded, r.body());
        assert_eq!(decoded.kv_get("a"), Some("1"));
        assert!(
            decoded
                .verdict_on(&NodeId::from("b"))
                .is_some_and(|v| v.suspected)
        );
        let back = Record::verify(decoded, r.signed().clone(), &mut auth).unwrap();
        assert_eq!(back.term(), r.term());

        // a signs a record naming c: refused as forged.
        let forged = Record::sign(body("c"), &mut signer).unwrap();
        let e = Record::verify(forged.body().clone(), forged.signed().clone(), &mut auth);
        assert!(matches!(e, Err(RecordError::Forged { .. })), "{e:?}");

        // A changed body no longer matches its signature.
        let mut tampered = r.signed().clone();
        let mut b = body("a");
        b.address = "10.0.0.1:1".into();
        tampered.body = Arc::from(b.encode());
        let e = Record::verify(b, tampered, &mut auth);
        assert_eq!(e.map(|_| ()), Err(RecordError::Auth(AuthError::Signature)));

        // Another cluster's record.
        assert!(matches!(
            RecordBody::decode(&r.signed().body, "other", 4096),
            Err(RecordError::WrongCluster { .. })
        ));
    }

    #[test]
    fn bodies_follow_their_rules() {
        let ok = body("a");
        assert_eq!(ok.check(4096), Ok(()));
        type Mutation = Box<dyn Fn(&mut RecordBody)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|b| b.generation = 0),
            Box::new(|b| b.version = 0),
            Box::new(|b| b.address.clear()),
            Box::new(|b| b.node = NodeId::from("bad id\n")),
            Box::new(|b| b.kv.push(KeyValue("a".into(), "dup".into()))),
            Box::new(|b| b.kv.push(KeyValue("z".into(), "x".repeat(5000)))),
            Box::new(|b| b.verdicts[0].subject = NodeId::from("a")),
            Box::new(|b| b.verdicts.push(b.verdicts[0].clone())),
            Box::new(|b| b.verdicts[0].generation = 0),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut b = ok.clone();
            f(&mut b);
            assert!(
                matches!(b.check(4096), Err(RecordError::Invalid(_))),
                "case {i}"
            );
        }
        assert!(matches!(
            RecordBody::decode(b"\x01\x02", "c", 4096),
            Err(RecordError::Malformed(_))
        ));
    }
}
