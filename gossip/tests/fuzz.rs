//! Fuzz targets of the v3 wire: every frame a peer can send, and every
//! record body a frame can carry. `PHIMON_FUZZ_CASES` sets the cases per
//! target (default 256; docs/reliability.md has the longer run).
//!
//! Each target checks more than "no panic": whatever decodes must be
//! valid, encode back to bytes that decode to the same value, and (for
//! frames) come out no longer than the limit it was decoded under.

use phimon_gossip::wire::{
    Channel, Digest, DigestEntry, Frame, Heartbeat, Probe, Records, SignedRecord, Summary,
};
use phimon_gossip::{BUCKETS, Declared, KeyValue, NodeId, RecordBody, Verdict};
use proptest::prelude::*;
use std::sync::Arc;

/// Cases per target: `PHIMON_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("PHIMON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const MAX: usize = 64 * 1024;

fn body(n: u64) -> RecordBody {
    RecordBody {
        cluster: "fuzz".into(),
        node: NodeId::from(format!("node-{n}").as_str()),
        generation: 1_700_000_000 + n,
        version: n + 1,
        address: format!("10.0.0.{}:7800", n % 250),
        status: Declared::Alive,
        kv: vec![KeyValue("role".into(), "db".into())],
        verdicts: vec![Verdict {
            subject: NodeId::from("node-x"),
            generation: 3,
            suspected: n % 2 == 0,
            phi_centi: 812,
        }],
    }
}

/// One valid frame of each kind, for mutation.
fn seeds() -> Vec<Frame> {
    let signed = |n: u64| SignedRecord {
        body: Arc::from(body(n).encode()),
        signature: Arc::from(vec![0x5a; 66]),
        credential: Arc::from(vec![0xc3; 600]),
    };
    vec![
        Frame::Heartbeat(Heartbeat {
            generation: 1_700_000_000,
            seq: 42,
            fingerprint: 0xfeed,
        }),
        Frame::Probe(Probe {
            fingerprint: 7,
            members: 20,
            reply: true,
        }),
        Frame::Summary(Summary {
            fingerprint: 9,
            members: 3,
            buckets: (0..BUCKETS as u64).collect(),
        }),
        Frame::Digest(Digest {
            buckets: vec![1, 9, 200],
            entries: vec![DigestEntry(1 << 56, 1, 2), DigestEntry(9 << 56, 4, 1)],
        }),
        Frame::Records(Records {
            records: vec![signed(1), signed(2)],
            want: vec![5, 6],
            relay: true,
        }),
    ]
}

/// Whatever decodes is valid and round-trips.
fn check_frame(bytes: &[u8], channel: Channel) {
    if let Ok(f) = Frame::decode(bytes, channel, MAX) {
        assert_eq!(f.validate(), Ok(()));
        assert_eq!(f.channel(), channel);
        let again = f.encode();
        assert_eq!(again.len(), f.encoded_len());
        assert_eq!(Frame::decode(&again, channel, MAX), Ok(f));
    }
}

fn channel(b: bool) -> Channel {
    if b {
        Channel::Datagram
    } else {
        Channel::Message
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_wire_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        datagram: bool,
    ) {
        // With a valid version and kind byte most of the time, so the
        // body decoders are reached.
        let mut b = bytes;
        if b.len() >= 2 && b[0] % 4 != 0 {
            b[0] = 3;
            b[1] = 1 + b[1] % 5;
        }
        check_frame(&b, channel(datagram));
    }

    #[test]
    fn fuzz_wire_mutated_frames(
        which in 0usize..5,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        truncate: bool,
    ) {
        let seed = &seeds()[which];
        let mut b = seed.encode();
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x;
        }
        if truncate {
            b.truncate(cut % (b.len() + 1));
        }
        check_frame(&b, seed.channel());
        // A frame is refused on the other channel, however it looks.
        let other = match seed.channel() {
            Channel::Datagram => Channel::Message,
            _ => Channel::Datagram,
        };
        if let Ok(f) = Frame::decode(&b, other, MAX) {
            prop_assert_eq!(f.channel(), other);
        }
    }

    #[test]
    fn fuzz_record_bodies(
        n in any::<u64>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        tail in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut b = body(n % 1000).encode();
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x;
        }
        b.extend(tail);
        if let Ok(d) = RecordBody::decode(&b, "fuzz", 4096) {
            // A decoded body follows its rules and encodes to what decodes
            // to it again.
            prop_assert_eq!(d.check(4096), Ok(()));
            prop_assert_eq!(RecordBody::decode(&d.encode(), "fuzz", 4096), Ok(d.clone()));
            prop_assert_eq!(d.cluster.as_str(), "fuzz");
        }
    }
}

#[test]
fn seeds_are_valid_frames() {
    for f in seeds() {
        assert_eq!(Frame::decode(&f.encode(), f.channel(), MAX), Ok(f));
    }
}
