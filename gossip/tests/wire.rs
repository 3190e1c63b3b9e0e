//! Property tests of the wire format: exact sizes, round trips, and a
//! decoder that never panics whatever it is fed.

#![allow(clippy::unwrap_used)] // Test code: a panic is a failed test.

use phimon_gossip::wire::{
    self, Beat, Digest, DigestEntry, Kind, KvEntry, Message, NodeDelta, PROTOCOL_VERSION,
    PositionEntry, Positions, Versions,
};
use phimon_gossip::{Gossip, GossipConfig, NodeId, Status, Timestamp};
use proptest::prelude::*;
use std::sync::Arc;

const CAP: usize = 60 * 1024;

fn id() -> impl Strategy<Value = NodeId> {
    // Lengths around the 31/32 fixstr boundary.
    "[a-z0-9.-]{1,40}".prop_map(NodeId::from)
}

/// Unsigned values in every MessagePack width.
fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..128,
        128u64..=255,
        256u64..=65_535,
        65_536u64..=u32::MAX as u64,
        any::<u64>(),
    ]
}

fn digest_entries() -> impl Strategy<Value = Vec<DigestEntry>> {
    prop::collection::vec((id(), uint(), uint(), uint()), 0..40).prop_map(|v| {
        let mut v: Vec<DigestEntry> = v
            .into_iter()
            .map(|(node_id, generation, heartbeat, version)| DigestEntry {
                node_id,
                generation,
                heartbeat,
                version,
            })
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v.dedup_by(|a, b| a.node_id == b.node_id);
        v
    })
}

fn delta() -> impl Strategy<Value = NodeDelta> {
    (
        id(),
        uint(),
        uint(),
        0u8..3,
        0u64..1000,
        prop::option::of("[ -~]{0,255}"),
        prop::collection::btree_map("[a-z]{1,40}", ".{0,300}", 0..5),
    )
        .prop_map(
            |(node_id, generation, heartbeat, status, from, address, kv)| {
                let n = kv.len() as u64;
                NodeDelta {
                    node_id,
                    generation,
                    heartbeat,
                    status: Status::try_from(status).unwrap(),
                    from_version: from,
                    version: from + n,
                    address,
                    kv: kv
                        .into_iter()
                        .enumerate()
                        .map(|(i, (key, value))| KvEntry {
                            key,
                            value,
                            version: from + 1 + i as u64,
                        })
                        .collect(),
                }
            },
        )
}

fn versions() -> impl Strategy<Value = Versions> {
    (uint(), uint(), uint()).prop_map(|(generation, heartbeat, version)| Versions {
        generation,
        heartbeat,
        version,
    })
}

/// Positional parts of every shape, positions anywhere in `u32` (large
/// gaps too), for the kind that may carry them.
fn positions() -> impl Strategy<Value = (u64, Vec<Versions>, Vec<PositionEntry>, Vec<Beat>)> {
    (
        uint(),
        prop::collection::vec(versions(), 0..40),
        prop::collection::btree_map(any::<u32>(), versions(), 0..20),
        prop::collection::btree_map(any::<u32>(), (uint(), uint()), 0..20),
    )
        .prop_map(|(table, states, request, beats)| {
            let request = request
                .into_iter()
                .map(|(position, known)| PositionEntry { position, known })
                .collect();
            let beats = beats
                .into_iter()
                .map(|(position, (generation, heartbeat))| Beat {
                    position,
                    generation,
                    heartbeat,
                })
                .collect();
            (table, states, request, beats)
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        0u8..3,
        "[a-z]{1,40}",
        id(),
        digest_entries(),
        prop::collection::vec(delta(), 0..8),
        (any::<bool>(), positions()),
    )
        .prop_map(
            |(kind, cluster, sender, entries, mut delta, (by_pos, pos))| {
                let kind = Kind::try_from(kind).unwrap();
                let (table, states, request, beats) = pos;
                // A fingerprint alone, or (when non-zero) with what the kind
                // may carry by position.
                let table = if by_pos { table | 1 } else { table };
                let positional = by_pos.then_some(());
                delta.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                delta.dedup_by(|a, b| a.node_id == b.node_id);
                let (mut digest, delta) = match kind {
                    Kind::Syn if positional.is_some() => (
                        Digest {
                            positions: Positions {
                                states: states.into(),
                                ..Positions::default()
                            },
                            ..Digest::default()
                        },
                        Vec::new(),
                    ),
                    Kind::Syn => {
                        let from = entries.first().map(|e| e.node_id.clone());
                        (
                            Digest {
                                from,
                                to: None,
                                entries: entries.into(),
                                ..Digest::default()
                            },
                            Vec::new(),
                        )
                    }
                    Kind::Ack => (
                        Digest {
                            from: None,
                            to: None,
                            entries: entries.into(),
                            positions: Positions {
                                request: if positional.is_some() {
                                    request
                                } else {
                                    Vec::new()
                                },
                                beats: if positional.is_some() {
                                    beats.clone()
                                } else {
                                    Vec::new()
                                },
                                ..Positions::default()
                            },
                        },
                        delta,
                    ),
                    Kind::Ack2 => (
                        Digest {
                            positions: Positions {
                                beats: if positional.is_some() {
                                    beats
                                } else {
                                    Vec::new()
                                },
                                ..Positions::default()
                            },
                            ..Digest::default()
                        },
                        delta,
                    ),
                };
                digest.positions.table = table;
                Message {
                    kind,
                    cluster: Arc::from(cluster),
                    sender,
                    digest,
                    delta,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn size_is_exact_and_frames_round_trip(msg in message()) {
        let frame = wire::encode(&msg).unwrap();
        prop_assert_eq!(frame.len(), msg.wire_size(), "size function disagrees");
        prop_assert_eq!(frame[0], PROTOCOL_VERSION);
        let back = wire::decode(&frame, usize::MAX).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = wire::decode(&bytes, CAP);
        let mut with_version = vec![PROTOCOL_VERSION];
        with_version.extend_from_slice(&bytes);
        let _ = wire::decode(&with_version, CAP);
    }

    #[test]
    fn corrupted_frames_never_panic_the_core(
        msg in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = wire::encode(&msg).unwrap();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let mut core = Gossip::new(
            GossipConfig::default(),
            NodeId::from("observer"),
            "observer:1".into(),
            1,
            3,
            Timestamp::ZERO,
        );
        let _ = core.handle_message(Timestamp::ZERO, &msg.sender, &frame);
        let short = &frame[..cut.index(frame.len())];
        let _ = core.handle_message(Timestamp::ZERO, &msg.sender, short);
        core.handle_timeout(Timestamp::from_micros(5_000_000));
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
    }
}

#[test]
fn declared_lengths_cannot_make_the_decoder_allocate() {
    // A str32 header claiming 4 GiB, an array32 claiming 4 billion items.
    for body in [
        vec![0x95, 0x02, 0xdb, 0xff, 0xff, 0xff, 0xff],
        vec![
            0x95, 0x02, 0xa1, b'x', 0xa1, b'y', 0x94, 0xc0, 0xc0, 0xdd, 0xff, 0xff, 0xff, 0xff,
        ],
    ] {
        let mut frame = vec![PROTOCOL_VERSION];
        frame.extend(body);
        assert!(wire::decode(&frame, CAP).is_err());
    }
}

proptest! {
    /// Positional lists that break the rules are refused with a typed
    /// error, never applied: positions out of order, a wrong list length,
    /// a position beyond `u32`, states in an ACK, positions without a
    /// fingerprint.
    #[test]
    fn malformed_positions_are_refused(
        a in 0u32..1000, b in 0u32..1000, table in 1u64.., extra in 1usize..3,
    ) {
        let base = || Message {
            kind: Kind::Ack,
            cluster: Arc::from("c"),
            sender: NodeId::from("s"),
            digest: Digest::default(),
            delta: Vec::new(),
        };
        let beat = |position| Beat { position, generation: 1, heartbeat: 2 };
        // Not strictly ascending.
        let mut m = base();
        m.digest.positions = Positions { table, beats: vec![beat(a.max(b)), beat(a.min(b))], ..Positions::default() };
        prop_assert!(is_invalid(m.validate()));
        // Encoded, a step back is a gap past u32 (malformed), a repeat a
        // zero gap (invalid).
        let frame = wire::encode(&m).unwrap();
        let r = wire::decode(&frame, CAP);
        let refused = if a == b { is_invalid(r) } else { is_malformed(r) };
        prop_assert!(refused);
        // Without a fingerprint.
        let mut m = base();
        m.digest.positions = Positions { table: 0, beats: vec![beat(a)], ..Positions::default() };
        prop_assert!(m.validate().is_err());
        // States outside a SYN.
        let mut m = base();
        m.digest.positions = Positions { table, states: vec![Versions::default()].into(), ..Positions::default() };
        prop_assert!(m.validate().is_err());
        // The frame ends with the beats (`[gap, generation, heartbeat]`,
        // a fixarray of 3) and the empty delta: rewrite the beats.
        let mut m = base();
        m.digest.positions = Positions { table, beats: vec![beat(a)], ..Positions::default() };
        let frame = wire::encode(&m).unwrap();
        let header = frame.len() - 4 - size_of_uint(u64::from(a));
        prop_assert_eq!(frame[header], 0x93);
        // A flattened list of a wrong length.
        let mut f = frame[..header].to_vec();
        f.push(0x90 + 3 - extra as u8);
        f.extend(std::iter::repeat_n(0x01, 3 - extra));
        f.push(0x90);
        prop_assert!(is_malformed(wire::decode(&f, CAP)));
        // Gaps that add up past u32::MAX.
        let mut f = frame[..header].to_vec();
        f.push(0x96);
        for v in [u64::from(u32::MAX), 1, 1, 1, 1, 1] {
            f.push(0xcf);
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.push(0x90);
        prop_assert!(is_malformed(wire::decode(&f, CAP)));
    }
}

/// Encoded size of an unsigned integer.
fn size_of_uint(v: u64) -> usize {
    match v {
        0..=127 => 1,
        128..=255 => 2,
        256..=65_535 => 3,
        65_536..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn is_invalid<T>(r: Result<T, phimon_gossip::GossipError>) -> bool {
    matches!(r, Err(phimon_gossip::GossipError::Invalid { .. }))
}

fn is_malformed<T>(r: Result<T, phimon_gossip::GossipError>) -> bool {
    matches!(r, Err(phimon_gossip::GossipError::Malformed { .. }))
}
