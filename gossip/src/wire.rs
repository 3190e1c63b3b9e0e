//! The wire format of protocol version 3: frames, their caps, encoding and
//! the size-capped, total decoder.
//!
//! A frame is a version byte ([`PROTOCOL_VERSION`]), a kind byte and a
//! MessagePack body (rmp-serde, structs as arrays). The frame is checked
//! against the caller's size cap before anything is decoded; every
//! decoded frame is validated ([`Frame::validate`]) and every bad input is
//! a typed [`WireError`], never a panic.
//!
//! Two channels carry frames (the transport gives both over one QUIC
//! connection):
//! - **datagrams**, unreliable and small: [`Heartbeat`] (a node to each of
//!   its observers, every interval) and [`Probe`] (to a random peer);
//! - **messages**, reliable and capped at `max_message_bytes`: the
//!   reconciliation steps [`Summary`] → [`Digest`] → [`Records`], and
//!   [`Records`] alone for a rumor push or a join.
//!
//! Frames name no sender and no cluster: the connection's certificate
//! says who sent them (and the TLS identity policy which cluster), and
//! every record carries its own signed cluster and node id.

use crate::key::BUCKETS;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The protocol version this build speaks: the first byte of every frame.
/// Version 3 (direct heartbeats, signed records) shares nothing with
/// versions 1 and 2, whose frames are refused as
/// [`WireError::UnsupportedVersion`]. The transport's ALPN is
/// [`ALPN`], so nodes of other versions do not even connect.
pub const PROTOCOL_VERSION: u8 = 3;

/// The QUIC ALPN of this protocol version.
pub const ALPN: &[u8] = b"phimon/3";

/// Largest datagram frame this crate sends or accepts: below the smallest
/// QUIC datagram payload every path supports (1200-byte packets).
pub const MAX_DATAGRAM_BYTES: usize = 1000;

/// Largest signed record body (its key/values and verdicts included).
pub const MAX_BODY_BYTES: usize = 24 * 1024;
/// Largest record signature (RSA-4096 is 512 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// Largest credential (certificate chain, DER) attached to a record.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
/// Most entries of one [`Digest`], and most keys a [`Records`] asks for.
pub const MAX_ENTRIES: usize = 1 << 16;
/// Most records in one [`Records`] frame.
pub const MAX_RECORDS: usize = 4096;

/// Which channel a frame travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A QUIC datagram: unreliable, at most [`MAX_DATAGRAM_BYTES`].
    Datagram,
    /// A reliable message (one QUIC stream), at most `max_message_bytes`.
    Message,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Longer than the cap of its channel; not decoded.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Shorter than its two header bytes.
    #[error("truncated frame ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The first byte names a protocol version this node does not speak.
    #[error("unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// The second byte names no frame kind.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The kind byte received.
        kind: u8,
    },
    /// The body does not decode as the frame its kind names.
    #[error("malformed {kind} frame: {reason}")]
    Malformed {
        /// The frame kind.
        kind: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// The frame decodes but breaks a rule (order, bounds, channel).
    #[error("invalid {kind} frame: {reason}")]
    Invalid {
        /// The frame kind.
        kind: &'static str,
        /// Which rule.
        reason: String,
    },
}

impl WireError {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::Truncated { .. } => "truncated",
            WireError::UnsupportedVersion { .. } => "version",
            WireError::UnknownKind { .. } => "kind",
            WireError::Malformed { .. } => "malformed",
            WireError::Invalid { .. } => "invalid",
        }
    }
}

/// A node's heartbeat, sent straight to each of its observers every
/// interval. Its arrival time, stamped by the receiver's clock, is what
/// phi is computed from; nothing in it is a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's generation: a new one means it restarted.
    pub generation: u64,
    /// Counts the sender's heartbeats within the generation, from 1: a
    /// gap is a loss, a repeat or step back a duplicate or reordering.
    pub seq: u64,
    /// The sender's table fingerprint: a receiver whose own differs
    /// reconciles with the sender.
    pub fingerprint: u64,
}

/// A peer's table check: the receiver reconciles when its fingerprint
/// differs. With `reply`, the receiver answers with a probe of its own:
/// how a node that starts suspecting peers checks it can still reach the
/// fleet (it is isolated if most do not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The sender's table fingerprint.
    pub fingerprint: u64,
    /// Records in the sender's table.
    pub members: u32,
    /// Answer with a probe (without `reply`).
    pub reply: bool,
}

/// First step of a reconciliation: the initiator's fingerprint per
/// bucket. The receiver answers with a [`Digest`] of the buckets that
/// differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The whole table's fingerprint (the wrapping sum of the buckets).
    pub fingerprint: u64,
    /// Records in the table.
    pub members: u32,
    /// Exactly [`BUCKETS`] bucket fingerprints, in bucket order.
    pub buckets: Vec<u64>,
}

/// One record's version, named by its node's ring position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry(
    /// The node's ring position ([`RingKey`](crate::RingKey)).
    pub u64,
    /// Its record's generation.
    pub u64,
    /// Its record's version.
    pub u64,
);

/// The versions the sender holds in some buckets: everything it has
/// there, so a record of those buckets that the digest omits is one the
/// sender lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The buckets covered, strictly ascending.
    pub buckets: Vec<u8>,
    /// Every record the sender holds in those buckets, by ring position,
    /// strictly ascending.
    pub entries: Vec<DigestEntry>,
}

/// Records, and the records the sender wants back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// Signed records, each verified by the receiver on its own.
    pub records: Vec<SignedRecord>,
    /// Ring positions whose records the sender asks for, strictly
    /// ascending (empty for a push).
    pub want: Vec<u64>,
    /// The records are news the sender pushes: a receiver to whom they
    /// are new pushes them on. Answers to a reconciliation are not.
    pub relay: bool,
}

/// A membership record as its node signed it: the encoded body, the
/// signature over it and the credential that proves the signer. Relayed
/// as received, never re-encoded, so the signature keeps verifying.
/// Cheap to clone: the bytes are shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The encoded [`RecordBody`](crate::RecordBody).
    #[serde(with = "shared_bytes")]
    pub body: Arc<[u8]>,
    /// The signer's signature over the domain tag and `body`.
    #[serde(with = "shared_bytes")]
    pub signature: Arc<[u8]>,
    /// The signer's credential (certificate chain).
    #[serde(with = "shared_bytes")]
    pub credential: Arc<[u8]>,
}

impl SignedRecord {
    /// An upper bound of its encoded size inside a frame.
    pub fn wire_size(&self) -> usize {
        1 + [&self.body, &self.signature, &self.credential]
            .iter()
            .map(|b| b.len() + 5)
            .sum::<usize>()
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A direct heartbeat (datagram).
    Heartbeat(Heartbeat),
    /// A table check (datagram).
    Probe(Probe),
    /// Bucket fingerprints (message).
    Summary(Summary),
    /// Versions of some buckets (message).
    Digest(Digest),
    /// Records and wanted records (message).
    Records(Records),
}

impl Frame {
    fn kind_byte(&self) -> u8 {
        match self {
            Frame::Heartbeat(_) => 1,
            Frame::Probe(_) => 2,
            Frame::Summary(_) => 3,
            Frame::Digest(_) => 4,
            Frame::Records(_) => 5,
        }
    }

    /// The frame's name in errors and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Heartbeat(_) => "heartbeat",
            Frame::Probe(_) => "probe",
            Frame::Summary(_) => "summary",
            Frame::Digest(_) => "digest",
            Frame::Records(_) => "records",
        }
    }

    /// The channel this frame travels on.
    pub fn channel(&self) -> Channel {
        match self {
            Frame::Heartbeat(_) | Frame::Probe(_) => Channel::Datagram,
            _ => Channel::Message,
        }
    }

    /// Encodes the frame. Encoding plain integers, vectors and byte
    /// strings cannot fail; the fallback only keeps this total.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded frame to `out` (a buffer reused frame after
    /// frame allocates nothing once it is large enough).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL_VERSION);
        out.push(self.kind_byte());
        let body = match self {
            Frame::Heartbeat(b) => rmp_serde::encode::write(out, b),
            Frame::Probe(b) => rmp_serde::encode::write(out, b),
            Frame::Summary(b) => rmp_serde::encode::write(out, b),
            Frame::Digest(b) => rmp_serde::encode::write(out, b),
            Frame::Records(b) => rmp_serde::encode::write(out, b),
        };
        debug_assert!(body.is_ok());
    }

    /// Its exact encoded length, without building the frame (the
    /// simulator counts bytes this way).
    pub fn encoded_len(&self) -> usize {
        let mut count = Counter(2);
        let _ = match self {
            Frame::Heartbeat(b) => rmp_serde::encode::write(&mut count, b),
            Frame::Probe(b) => rmp_serde::encode::write(&mut count, b),
            Frame::Summary(b) => rmp_serde::encode::write(&mut count, b),
            Frame::Digest(b) => rmp_serde::encode::write(&mut count, b),
            Frame::Records(b) => rmp_serde::encode::write(&mut count, b),
        };
        count.0
    }

    /// Decodes and validates a frame received on `channel`, refusing
    /// frames longer than `max` before decoding anything.
    pub fn decode(bytes: &[u8], channel: Channel, max: usize) -> Result<Frame, WireError> {
        let max = match channel {
            Channel::Datagram => max.min(MAX_DATAGRAM_BYTES),
            Channel::Message => max,
        };
        if bytes.len() > max {
            return Err(WireError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let [version, kind, body @ ..] = bytes else {
            return Err(WireError::Truncated { len: bytes.len() });
        };
        if *version != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion { version: *version });
        }
        fn body_of<T: serde::de::DeserializeOwned>(
            kind: &'static str,
            body: &[u8],
        ) -> Result<T, WireError> {
            decode_exact(body).map_err(|reason| WireError::Malformed { kind, reason })
        }
        let frame = match kind {
            1 => Frame::Heartbeat(body_of("heartbeat", body)?),
            2 => Frame::Probe(body_of("probe", body)?),
            3 => Frame::Summary(body_of("summary", body)?),
            4 => Frame::Digest(body_of("digest", body)?),
            5 => Frame::Records(body_of("records", body)?),
            k => return Err(WireError::UnknownKind { kind: *k }),
        };
        if frame.channel() != channel {
            return Err(WireError::Invalid {
                kind: frame.kind(),
                reason: format!("not allowed on the {channel:?} channel"),
            });
        }
        frame.validate()?;
        Ok(frame)
    }

    /// Checks the rules a decoded frame must follow: bucket counts,
    /// strict orders, per-record and per-frame bounds.
    pub fn validate(&self) -> Result<(), WireError> {
        let invalid = |reason: String| WireError::Invalid {
            kind: self.kind(),
            reason,
        };
        match self {
            Frame::Heartbeat(h) if h.seq == 0 || h.generation == 0 => {
                Err(invalid("generation and seq start at 1".into()))
            }
            Frame::Heartbeat(_) | Frame::Probe(_) => Ok(()),
            Frame::Summary(s) if s.buckets.len() != BUCKETS => Err(invalid(format!(
                "{} buckets instead of {BUCKETS}",
                s.buckets.len()
            ))),
            Frame::Summary(_) => Ok(()),
            Frame::Digest(d) => {
                if !d.buckets.windows(2).all(|w| w[0] < w[1]) {
                    return Err(invalid("buckets not strictly ascending".into()));
                }
                if d.entries.len() > MAX_ENTRIES {
                    return Err(invalid(format!("{} entries", d.entries.len())));
                }
                if !d.entries.windows(2).all(|w| w[0].0 < w[1].0) {
                    return Err(invalid("entries not strictly ascending".into()));
                }
                let covered = |key: u64| d.buckets.binary_search(&((key >> 56) as u8)).is_ok();
                if let Some(e) = d.entries.iter().find(|e| !covered(e.0)) {
                    return Err(invalid(format!("entry {:#x} outside its buckets", e.0)));
                }
                Ok(())
            }
            Frame::Records(r) => {
                if r.records.len() > MAX_RECORDS {
                    return Err(invalid(format!("{} records", r.records.len())));
                }
                if r.want.len() > MAX_ENTRIES {
                    return Err(invalid(format!("{} wanted", r.want.len())));
                }
                if !r.want.windows(2).all(|w| w[0] < w[1]) {
                    return Err(invalid("wanted keys not strictly ascending".into()));
                }
                for s in &r.records {
                    if s.body.len() > MAX_BODY_BYTES
                        || s.signature.len() > MAX_SIGNATURE_BYTES
                        || s.credential.len() > MAX_CREDENTIAL_BYTES
                    {
                        return Err(invalid(format!(
                            "record of {}+{}+{} bytes exceeds the caps",
                            s.body.len(),
                            s.signature.len(),
                            s.credential.len()
                        )));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Decodes a MessagePack value that must span all of `bytes`.
pub(crate) fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let v = T::deserialize(&mut de).map_err(|e| e.to_string())?;
    let used = de.position();
    if used != bytes.len() as u64 {
        return Err(format!("{} trailing bytes", bytes.len() as u64 - used));
    }
    Ok(v)
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serde for `Arc<[u8]>` as a MessagePack byte string.
mod shared_bytes {
    use std::sync::Arc;

    pub(crate) fn serialize<S: serde::Serializer>(v: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<[u8]>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Arc<[u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Arc<[u8]>, E> {
                Ok(Arc::from(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> SignedRecord {
        SignedRecord {
            body: Arc::from(vec![7u8; n]),
            signature: Arc::from(vec![1u8; 64]),
            credential: Arc::from(vec![2u8; 480]),
        }
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Heartbeat(Heartbeat {
                generation: 1_700_000_000,
                seq: 17,
                fingerprint: u64::MAX,
            }),
            Frame::Probe(Probe {
                fingerprint: 3,
                members: 20,
                reply: true,
            }),
            Frame::Summary(Summary {
                fingerprint: 9,
                members: 2,
                buckets: (0..BUCKETS as u64).collect(),
            }),
            Frame::Digest(Digest {
                buckets: vec![0, 5],
                entries: vec![DigestEntry(1, 2, 3), DigestEntry(5 << 56, 1, 1)],
            }),
            Frame::Records(Records {
                records: vec![record(100), record(0)],
                want: vec![1, 2, u64::MAX],
                relay: true,
            }),
        ]
    }

    #[test]
    fn frames_round_trip_with_exact_lengths() {
        for f in frames() {
            let bytes = f.encode();
            assert_eq!(bytes.len(), f.encoded_len(), "{f:?}");
            assert_eq!(Frame::decode(&bytes, f.channel(), 1 << 20), Ok(f.clone()));
            if f.channel() == Channel::Datagram {
                assert!(bytes.len() < 64, "{} bytes", bytes.len());
            }
        }
        // A record's size bound holds.
        let r = Frame::Records(Records {
            records: vec![record(300)],
            want: vec![],
            relay: false,
        });
        assert!(r.encoded_len() <= 8 + record(300).wire_size());
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let hb = frames()[0].encode();
        let dg = Channel::Datagram;
        assert!(matches!(
            Frame::decode(&hb, dg, 10),
            Err(WireError::TooLarge { .. })
        ));
        assert_eq!(
            Frame::decode(&hb[..1], dg, 100),
            Err(WireError::Truncated { len: 1 })
        );
        let mut old = hb.clone();
        old[0] = 2;
        assert_eq!(
            Frame::decode(&old, dg, 100),
            Err(WireError::UnsupportedVersion { version: 2 })
        );
        let mut kind = hb.clone();
        kind[1] = 99;
        assert_eq!(
            Frame::decode(&kind, dg, 100),
            Err(WireError::UnknownKind { kind: 99 })
        );
        let mut trailing = hb.clone();
        trailing.push(0);
        assert!(matches!(
            Frame::decode(&trailing, dg, 100),
            Err(WireError::Malformed { .. })
        ));
        // A heartbeat on the message channel, a summary as a datagram.
        assert!(matches!(
            Frame::decode(&hb, Channel::Message, 100),
            Err(WireError::Invalid { .. })
        ));
        let summary = frames()[2].encode();
        assert!(Frame::decode(&summary, dg, 1 << 20).is_err());
        // Rules.
        let bad = [
            Frame::Heartbeat(Heartbeat {
                generation: 1,
                seq: 0,
                fingerprint: 0,
            }),
            Frame::Summary(Summary {
                fingerprint: 0,
                members: 0,
                buckets: vec![0; 3],
            }),
            Frame::Digest(Digest {
                buckets: vec![1, 1],
                entries: vec![],
            }),
            Frame::Digest(Digest {
                buckets: vec![0],
                entries: vec![DigestEntry(2, 1, 1), DigestEntry(1, 1, 1)],
            }),
            Frame::Digest(Digest {
                buckets: vec![0],
                entries: vec![DigestEntry(1 << 56, 1, 1)],
            }),
            Frame::Records(Records {
                records: vec![],
                want: vec![2, 2],
                relay: false,
            }),
            Frame::Records(Records {
                records: vec![record(MAX_BODY_BYTES + 1)],
                want: vec![],
                relay: false,
            }),
        ];
        for f in bad {
            let e = Frame::decode(&f.encode(), f.channel(), 1 << 20);
            assert!(matches!(e, Err(WireError::Invalid { .. })), "{f:?}: {e:?}");
        }
    }
}
