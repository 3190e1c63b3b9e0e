//! Property tests of the wire format: exact sizes, round trips, and a
//! decoder that never panics whatever it is fed.

#![allow(clippy::unwrap_used)] // Test code: a panic is a failed test.

use phimon_gossip::wire::{
    self, Digest, DigestEntry, Kind, KvEntry, Message, NodeDelta, PROTOCOL_VERSION,
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

fn message() -> impl Strategy<Value = Message> {
    (
        0u8..3,
        "[a-z]{1,40}",
        id(),
        digest_entries(),
        prop::collection::vec(delta(), 0..8),
    )
        .prop_map(|(kind, cluster, sender, entries, mut delta)| {
            let kind = Kind::try_from(kind).unwrap();
            delta.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            delta.dedup_by(|a, b| a.node_id == b.node_id);
            let (digest, delta) = match kind {
                Kind::Syn => {
                    let from = entries.first().map(|e| e.node_id.clone());
                    (
                        Digest {
                            from,
                            to: None,
                            entries: entries.into(),
                        },
                        Vec::new(),
                    )
                }
                Kind::Ack => (
                    Digest {
                        from: None,
                        to: None,
                        entries: entries.into(),
                    },
                    delta,
                ),
                Kind::Ack2 => (Digest::default(), delta),
            };
            Message {
                kind,
                cluster: Arc::from(cluster),
                sender,
                digest,
                delta,
            }
        })
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
            0x95, 0x02, 0xa1, b'x', 0xa1, b'y', 0x93, 0xc0, 0xc0, 0xdd, 0xff, 0xff, 0xff, 0xff,
        ],
    ] {
        let mut frame = vec![PROTOCOL_VERSION];
        frame.extend(body);
        assert!(wire::decode(&frame, CAP).is_err());
    }
}
