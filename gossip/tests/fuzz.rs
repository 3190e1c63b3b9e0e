//! Fuzz targets for the gossip wire format and core, on stable Rust
//! (proptest, no cargo-fuzz).
//!
//! Every target is named `fuzz_*` so `cargo test --workspace fuzz_` runs
//! them all. `PHIMON_FUZZ_CASES` sets the cases per target (default 256:
//! the whole workspace's fuzz set stays well under a minute in a debug
//! build); the nightly command is in docs/reliability.md.
//!
//! What is fed:
//! - frames: random bytes, mutations of valid frames (bit flips, msgpack
//!   markers, huge declared lengths, truncation, splices) and random
//!   MessagePack trees shaped like messages;
//! - the core: those frames, and structurally valid but hostile messages
//!   from an authenticated member (forged states of real nodes and of
//!   the receiver itself, invented ids, counters and generations at the
//!   u64 extremes, oversized key/values, forged statuses) into a
//!   simulated cluster.
//!
//! What must hold: no panic; every rejection is a typed [`GossipError`]
//! with a bounded message; a decoded message re-encodes within its frame;
//! declared lengths never make the decoder allocate them; the caps
//! (`max_nodes`, `max_kv_bytes_per_node`, `max_message_bytes`) hold on
//! every honest core; honest nodes recover from everything once the
//! forger stops; and every node the core announced (joined, left) and
//! later drops is announced removed, so the runtime's per-node state
//! cannot leak.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

use phimon_gossip::sim::{Sim, SimConfig};
use phimon_gossip::wire::{
    self, Digest, DigestEntry, Kind, KvEntry, Message, NodeDelta, PROTOCOL_VERSION,
};
use phimon_gossip::{
    Event, Gossip, GossipConfig, GossipError, MemberStatus, NodeId, Status, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::ser::{SerializeMap, SerializeSeq};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The runtime's message cap (`phimon run` uses 60 KiB).
const CAP: usize = 60 * 1024;

/// Cases per target: `PHIMON_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("PHIMON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Like [`cases`] for the costlier targets that run a simulated cluster
/// per case: a tenth, at least 16.
fn sim_cases() -> u32 {
    (cases() / 10).max(16)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures print the minimal input; no regression files are
        // written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ----- generators ------------------------------------------------------

/// Unsigned values at every MessagePack width and at the extremes.
fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..16,
        1 => 16u64..100_000,
        1 => Just(u64::from(u32::MAX)),
        1 => Just(1u64 << 32),
        1 => Just((1u64 << 32) + 1),
        1 => Just(u64::MAX - 1),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// Ids a forger would use: the simulated honest nodes (`n0`..), invented
/// ones, long ones, the forger itself, and invalid ones (empty, too long).
fn hostile_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        6 => (0usize..4).prop_map(|i| NodeId::new(format!("n{i}"))),
        4 => (0u32..300).prop_map(|i| NodeId::new(format!("fake-{i:03}"))),
        1 => "[a-z0-9.-]{200,255}".prop_map(NodeId::from),
        1 => Just(NodeId::from("mallory")),
        1 => Just(NodeId::from("")),
        1 => "[a-z]{256,300}".prop_map(NodeId::from),
    ]
}

fn hostile_kv(from: u64, version: u64) -> impl Strategy<Value = Vec<KvEntry>> {
    prop::collection::vec(
        (
            prop_oneof![
                8 => "[a-z.]{1,20}",
                1 => Just(String::new()),
                1 => "[a-z]{256,260}",
            ],
            prop_oneof![
                6 => "[ -~]{0,64}",
                1 => "x{1000,5000}",
            ],
            prop_oneof![
                8 => Just(None),
                1 => extreme_u64().prop_map(Some),
            ],
        ),
        0..6,
    )
    .prop_map(move |kv| {
        kv.into_iter()
            .enumerate()
            .map(|(i, (key, value, v))| KvEntry {
                key,
                value,
                // Mostly inside (from, version], as the rules demand.
                version: v.unwrap_or_else(|| {
                    from.saturating_add(1 + i as u64)
                        .min(version.max(from.saturating_add(1)))
                }),
            })
            .collect()
    })
}

fn hostile_delta() -> impl Strategy<Value = NodeDelta> {
    (
        hostile_id(),
        extreme_u64(),
        extreme_u64(),
        0u8..3,
        prop_oneof![3 => Just(0u64), 1 => extreme_u64()],
        0u64..8,
        prop_oneof![
            6 => "[a-z0-9.:]{1,30}".prop_map(Some),
            2 => Just(None),
            1 => "[a-z]{256,300}".prop_map(Some),
        ],
    )
        .prop_flat_map(
            |(node_id, generation, heartbeat, status, from, more, address)| {
                let version = from.saturating_add(more);
                hostile_kv(from, version).prop_map(move |kv| NodeDelta {
                    node_id: node_id.clone(),
                    generation,
                    heartbeat,
                    status: Status::try_from(status).unwrap(),
                    from_version: from,
                    version,
                    address: address.clone(),
                    kv: kv.into(),
                })
            },
        )
}

fn hostile_entry() -> impl Strategy<Value = DigestEntry> {
    (hostile_id(), extreme_u64(), extreme_u64(), extreme_u64()).prop_map(
        |(node_id, generation, heartbeat, version)| DigestEntry {
            node_id,
            generation,
            heartbeat,
            version,
        },
    )
}

/// A message from `sender`: mostly following the structural rules
/// (sorted, unique, kind-appropriate parts) so it reaches the core's
/// logic, sometimes not.
fn hostile_message(sender: NodeId) -> impl Strategy<Value = Message> {
    (
        0u8..3,
        prop::collection::vec(hostile_entry(), 0..12),
        prop::collection::vec(hostile_delta(), 0..12),
        prop::bool::weighted(0.9),
        prop_oneof![8 => Just("phimon".to_owned()), 1 => "[a-z]{1,8}"],
    )
        .prop_map(move |(kind, mut entries, mut delta, tidy, cluster)| {
            let kind = Kind::try_from(kind).unwrap();
            if tidy {
                entries.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                entries.dedup_by(|a, b| a.node_id == b.node_id);
                delta.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                delta.dedup_by(|a, b| a.node_id == b.node_id);
                for d in &mut delta {
                    d.kv.sort_by(|a, b| a.key.cmp(&b.key));
                    d.kv.dedup_by(|a, b| a.key == b.key);
                }
            }
            let (digest, delta) = match kind {
                Kind::Syn if tidy => (
                    Digest {
                        from: None,
                        to: None,
                        entries: entries.into(),
                        ..Digest::default()
                    },
                    Vec::new(),
                ),
                Kind::Ack2 if tidy => (Digest::default(), delta),
                _ => (
                    Digest {
                        from: None,
                        to: None,
                        entries: entries.into(),
                        ..Digest::default()
                    },
                    delta,
                ),
            };
            Message {
                kind,
                cluster: Arc::from(cluster),
                sender: sender.clone(),
                digest,
                delta,
            }
        })
}

/// A well-formed message (valid by construction), to be mutated.
fn valid_message() -> impl Strategy<Value = Message> {
    let id = || (0u32..40).prop_map(|i| NodeId::new(format!("n{i}")));
    let delta = (
        id(),
        extreme_u64(),
        extreme_u64(),
        0u8..3,
        0u64..5,
        prop::collection::btree_map("[a-z.]{1,12}", "[ -~]{0,40}", 0..4),
    )
        .prop_map(|(node_id, generation, heartbeat, status, from, kv)| {
            let n = kv.len() as u64;
            NodeDelta {
                address: (from == 0).then(|| format!("{node_id}:7800")),
                node_id,
                generation,
                heartbeat,
                status: Status::try_from(status).unwrap(),
                from_version: from,
                version: from + n,
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
        });
    let entry = (id(), extreme_u64(), extreme_u64(), extreme_u64()).prop_map(
        |(node_id, generation, heartbeat, version)| DigestEntry {
            node_id,
            generation,
            heartbeat,
            version,
        },
    );
    (
        0u8..3,
        prop::collection::vec(entry, 0..10),
        prop::collection::vec(delta, 0..10),
    )
        .prop_map(|(kind, mut entries, mut delta)| {
            entries.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            entries.dedup_by(|a, b| a.node_id == b.node_id);
            delta.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            delta.dedup_by(|a, b| a.node_id == b.node_id);
            let kind = Kind::try_from(kind).unwrap();
            let (entries, delta) = match kind {
                Kind::Syn => (entries, Vec::new()),
                Kind::Ack => (entries, delta),
                Kind::Ack2 => (Vec::new(), delta),
            };
            Message {
                kind,
                cluster: Arc::from("phimon"),
                sender: NodeId::from("mallory"),
                digest: Digest {
                    from: None,
                    to: None,
                    entries: entries.into(),
                    ..Digest::default()
                },
                delta,
            }
        })
}

/// A MessagePack value tree, serialized with rmp-serde.
#[derive(Debug, Clone)]
enum Tree {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Tree>),
    Map(Vec<(Tree, Tree)>),
}

impl serde::Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Nil => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Uint(v) => s.serialize_u64(*v),
            Tree::Int(v) => s.serialize_i64(*v),
            Tree::Float(v) => s.serialize_f64(*v),
            Tree::Str(v) => s.serialize_str(v),
            Tree::Bin(v) => s.serialize_bytes(v),
            Tree::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Tree::Map(items) => {
                let mut map = s.serialize_map(Some(items.len()))?;
                for (k, v) in items {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Nil),
        any::<bool>().prop_map(Tree::Bool),
        extreme_u64().prop_map(Tree::Uint),
        any::<i64>().prop_map(Tree::Int),
        any::<f64>().prop_map(Tree::Float),
        prop_oneof![
            Just("phimon".to_owned()),
            Just("mallory".to_owned()),
            Just("n1".to_owned()),
            ".{0,40}"
        ]
        .prop_map(Tree::Str),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Tree::Bin),
    ];
    leaf.prop_recursive(5, 64, 10, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..10).prop_map(Tree::Array),
            prop::collection::vec((inner.clone(), inner), 0..5).prop_map(Tree::Map),
        ]
    })
}

/// A tree shaped like a message: a 5-array whose first element is a
/// small integer (the kind), so decoding gets past the outer layer.
fn message_shaped_tree() -> impl Strategy<Value = Tree> {
    (0u64..4, prop::collection::vec(tree(), 4..=5)).prop_map(|(kind, rest)| {
        let mut items = vec![Tree::Uint(kind)];
        items.extend(rest);
        Tree::Array(items)
    })
}

/// MessagePack marker bytes worth planting: every type family, the
/// never-used 0xc1, and the 32-bit length forms.
const MARKERS: &[u8] = &[
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
    0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
    0xbf, 0xe0, 0xff, 0x00, 0x7f,
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Marker(prop::sample::Index, prop::sample::Index),
    HugeLength(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Splice(
        prop::sample::Index,
        prop::sample::Index,
        prop::sample::Index,
    ),
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, m)| Mutation::Marker(i, m)),
        (
            any::<Index>(),
            prop::sample::select(vec![0xc6u8, 0xdb, 0xdd, 0xdf, 0xc9])
        )
            .prop_map(|(i, m)| Mutation::HugeLength(i, m)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

fn mutate(frame: &mut Vec<u8>, m: &Mutation) {
    if frame.is_empty() {
        return;
    }
    let n = frame.len();
    match m {
        Mutation::Flip(i, bit) => frame[i.index(n)] ^= 1 << bit,
        Mutation::Marker(i, m) => frame[i.index(n)] = MARKERS[m.index(MARKERS.len())],
        Mutation::HugeLength(i, marker) => {
            let at = i.index(n);
            frame.truncate(at);
            frame.push(*marker);
            frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        }
        Mutation::Truncate(i) => frame.truncate(i.index(n)),
        Mutation::Splice(a, b, c) => {
            let (x, y) = (a.index(n), b.index(n));
            let piece = frame[x.min(y)..x.max(y)].to_vec();
            let at = c.index(n);
            frame.splice(at..at, piece);
        }
        Mutation::Insert(i, bytes) => {
            let at = i.index(n);
            frame.splice(at..at, bytes.iter().copied());
        }
    }
}

// ----- checks ----------------------------------------------------------

/// What every decode outcome must satisfy.
fn check_decode(frame: &[u8], max: usize) -> Result<Option<Message>, TestCaseError> {
    match wire::decode(frame, max) {
        Ok(msg) => {
            prop_assert!(msg.validate().is_ok(), "decode returned an invalid message");
            let again = wire::encode(&msg).unwrap();
            prop_assert_eq!(again.len(), msg.wire_size(), "size function disagrees");
            // Canonical re-encoding is never longer than what was read: a
            // relayed message stays within the cap it arrived under.
            prop_assert!(
                again.len() <= frame.len(),
                "{} bytes re-encode to {}",
                frame.len(),
                again.len()
            );
            prop_assert_eq!(&wire::decode(&again, max).unwrap(), &msg);
            Ok(Some(msg))
        }
        Err(e) => {
            check_error(&e)?;
            Ok(None)
        }
    }
}

fn check_error(e: &GossipError) -> Result<(), TestCaseError> {
    const LABELS: &[&str] = &[
        "too_large",
        "empty",
        "unsupported_version",
        "malformed",
        "invalid",
        "wrong_cluster",
        "sender_mismatch",
        "kv_refused",
    ];
    prop_assert!(LABELS.contains(&e.label()), "unknown label {}", e.label());
    let text = e.to_string();
    // Logged at debug per message: never an echo of a whole frame.
    prop_assert!(
        !text.is_empty() && text.len() <= 2048,
        "error text of {} bytes",
        text.len()
    );
    Ok(())
}

fn frame_of(bytes: &[u8]) -> Vec<u8> {
    let mut f = vec![PROTOCOL_VERSION];
    f.extend_from_slice(bytes);
    f
}

/// Invariants of any core, whatever it was fed.
fn check_core(core: &Gossip) -> Result<(), TestCaseError> {
    let cfg = core.config();
    prop_assert!(core.len() <= cfg.max_nodes, "{} > max_nodes", core.len());
    prop_assert!(core.member(core.self_id().as_str()).is_some(), "self lost");
    let ids: Vec<&NodeId> = core.members().map(|m| m.node_id()).collect();
    prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "table not sorted");
    for m in core.members() {
        prop_assert!(
            m.node_id().is_valid(),
            "invalid id {:?} admitted",
            m.node_id()
        );
        let kv: usize = m.kv().map(|(k, v)| k.len() + v.len()).sum();
        prop_assert!(
            kv <= cfg.max_kv_bytes_per_node,
            "{} holds {kv} kv bytes",
            m.node_id()
        );
        prop_assert!(m.address().len() <= wire::MAX_ADDRESS_LEN);
    }
    Ok(())
}

/// Drains a core, checking every transmit is within the cap and decodes.
fn drain(core: &mut Gossip) -> Result<Vec<Event>, TestCaseError> {
    let max = core.config().max_message_bytes;
    while let Some(t) = core.poll_transmit() {
        prop_assert!(t.payload.len() <= max, "{} byte transmit", t.payload.len());
        if let Err(e) = wire::decode(&t.payload, max) {
            prop_assert!(false, "own frame rejected: {e}: {:?}", t);
        }
    }
    Ok(std::iter::from_fn(|| core.poll_event()).collect())
}

fn lone_core(max_nodes: usize) -> Gossip {
    let cfg = GossipConfig {
        max_nodes,
        dead_grace: Duration::from_secs(30),
        ..GossipConfig::default()
    };
    Gossip::new(
        cfg,
        NodeId::from("n0"),
        "n0:7800".into(),
        1,
        11,
        Timestamp::ZERO,
    )
}

/// Tracks, per observer, the nodes the core announced (and so the runtime
/// may keep state for) and checks they are announced removed when they
/// leave the table.
#[derive(Default)]
struct Announced(HashSet<NodeId>);

impl Announced {
    fn see(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::NodeJoined { node, .. }
                | Event::NodeLeft { node, .. }
                | Event::NodeRestarted { node, .. }
                | Event::HeartbeatObserved { node, .. } => {
                    self.0.insert(node.clone());
                }
                Event::NodeRemoved { node } => {
                    self.0.remove(node);
                }
                _ => {}
            }
        }
    }

    fn check(&self, core: &Gossip) -> Result<(), TestCaseError> {
        for id in &self.0 {
            prop_assert!(
                core.member(id.as_str()).is_some(),
                "{id} left the table of {} without NodeRemoved",
                core.self_id()
            );
        }
        Ok(())
    }
}

// ----- targets ---------------------------------------------------------

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn fuzz_frame_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_decode(&bytes, CAP)?;
        check_decode(&frame_of(&bytes), CAP)?;
        // A cap below the frame rejects it before decoding.
        let f = frame_of(&bytes);
        let short = f.len().saturating_sub(1);
        prop_assert!(
            matches!(wire::decode(&f, short), Err(GossipError::TooLarge { .. })),
            "frame over the cap was decoded"
        );
    }

    #[test]
    fn fuzz_frame_mutations(
        msg in valid_message(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut frame = wire::encode(&msg).unwrap();
        for m in &mutations {
            mutate(&mut frame, m);
        }
        check_decode(&frame, CAP)?;
    }

    #[test]
    fn fuzz_frame_msgpack_trees(t in prop_oneof![message_shaped_tree(), tree()]) {
        let body = rmp_serde::to_vec(&t).unwrap();
        check_decode(&frame_of(&body), CAP)?;
    }

    #[test]
    fn fuzz_core_frames(
        seedling in prop::collection::vec(hostile_delta(), 0..8),
        frames in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..512).prop_map(|b| frame_of(&b)),
                (valid_message(), prop::collection::vec(mutation(), 1..4)).prop_map(|(m, ms)| {
                    let mut f = wire::encode(&m).unwrap();
                    for x in &ms {
                        mutate(&mut f, x);
                    }
                    f
                }),
                valid_message().prop_map(|m| wire::encode(&m).unwrap()),
            ],
            1..12,
        ),
    ) {
        let mut core = lone_core(64);
        let from = NodeId::from("mallory");
        let mut seed: Vec<NodeDelta> = seedling;
        seed.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        seed.dedup_by(|a, b| a.node_id == b.node_id);
        let m = Message {
            kind: Kind::Ack2,
            cluster: Arc::from("phimon"),
            sender: from.clone(),
            digest: Digest::default(),
            delta: seed,
        };
        let _ = core.handle_message(Timestamp::ZERO, &from, &wire::encode(&m).unwrap());
        let mut announced = Announced::default();
        let mut now = 0u64;
        for f in &frames {
            now += 300_000;
            if let Err(e) = core.handle_message(Timestamp::from_micros(now), &from, f) {
                check_error(&e)?;
            }
            core.handle_timeout(Timestamp::from_micros(now));
            announced.see(&drain(&mut core)?);
            check_core(&core)?;
        }
        // Long enough for everything invented to be judged and forgotten.
        for _ in 0..60 {
            now += 1_000_000;
            core.handle_timeout(Timestamp::from_micros(now));
            announced.see(&drain(&mut core)?);
        }
        check_core(&core)?;
        announced.check(&core)?;
        prop_assert_eq!(core.len(), 1, "junk outlived dead_grace");
    }
}

proptest! {
    #![proptest_config(config(sim_cases()))]

    /// An authenticated member sends a sequence of hostile messages to
    /// the nodes of a small simulated cluster (every honest message goes
    /// through encode/decode). Caps hold throughout; once the forger
    /// stops, every honest node is alive in every honest view again.
    #[test]
    fn fuzz_core_hostile_member(
        script in prop::collection::vec(
            (0usize..4, hostile_message(NodeId::from("mallory")), 0u64..1500),
            1..24,
        ),
    ) {
        let mut c = SimConfig {
            encode: true,
            seed: 5,
            ..SimConfig::default()
        };
        c.gossip.max_nodes = 48;
        c.gossip.dead_grace = Duration::from_secs(20);
        let mut sim = Sim::new(c, 4);
        sim.run_rounds(12);
        let mut announced: Vec<Announced> = (0..4).map(|_| Announced::default()).collect();
        let see = |sim: &mut Sim, announced: &mut Vec<Announced>| {
            for e in sim.take_events() {
                announced[e.observer].see(std::slice::from_ref(&e.event));
            }
        };
        see(&mut sim, &mut announced);
        let mallory = NodeId::from("mallory");
        for (to, msg, pause_ms) in script {
            if msg.wire_size() > CAP {
                // The transport and `decode` refuse it before the core.
                continue;
            }
            if let Err(e) = sim.inject(to, &mallory, msg) {
                check_error(&e)?;
            }
            sim.run_for(Duration::from_millis(pause_ms));
            see(&mut sim, &mut announced);
            for i in 0..4 {
                check_core(sim.core(i).unwrap())?;
            }
        }
        // The forger stops. Refutations spread, junk is judged and
        // forgotten after dead_grace.
        sim.run_for(Duration::from_secs(45));
        see(&mut sim, &mut announced);
        prop_assert_eq!(sim.net().rejected, 0, "an honest frame was rejected");
        for (i, seen) in announced.iter().enumerate() {
            let core = sim.core(i).unwrap();
            check_core(core)?;
            seen.check(core)?;
            for j in 0..4 {
                let m = core.member(sim.id(j).as_str());
                prop_assert!(m.is_some(), "n{} forgot n{}", i, j);
                prop_assert_eq!(
                    m.unwrap().status(),
                    MemberStatus::Alive,
                    "n{} sees n{} as {:?} after the forger stopped",
                    i,
                    j,
                    m.unwrap().status()
                );
            }
            let junk: BTreeSet<&str> = core
                .members()
                .map(|m| m.node_id().as_str())
                .filter(|id| !(id.len() == 2 && id.starts_with('n')))
                .collect();
            prop_assert!(junk.is_empty(), "n{} still holds {:?}", i, junk);
        }
    }
}

/// Frames whose fields declare 4 GiB strings, binaries, arrays and maps,
/// at every position of a real frame. Each is rejected, and the peak
/// memory of the process does not move: the decoder reads lengths but
/// allocates only as it consumes bytes actually present (a `Vec` of
/// 4 billion digest entries would be ~160 GB).
#[test]
fn fuzz_huge_length_claims_allocate_nothing() {
    let msg = Message {
        kind: Kind::Ack,
        cluster: Arc::from("phimon"),
        sender: NodeId::from("mallory"),
        digest: Digest {
            from: None,
            to: None,
            entries: vec![DigestEntry {
                node_id: NodeId::from("n1"),
                generation: 1,
                heartbeat: 2,
                version: 3,
            }]
            .into(),
            ..Digest::default()
        },
        delta: vec![NodeDelta {
            node_id: NodeId::from("n2"),
            generation: 1,
            heartbeat: 9,
            status: Status::Alive,
            from_version: 0,
            version: 1,
            address: Some("n2:7800".into()),
            kv: vec![KvEntry {
                key: "k".into(),
                value: "v".into(),
                version: 1,
            }]
            .into(),
        }],
    };
    let frame = wire::encode(&msg).unwrap();
    let before = peak_rss_kib();
    let mut rejected = 0;
    for _ in 0..20 {
        for at in 1..frame.len() {
            for marker in [0xc6u8, 0xdb, 0xdd, 0xdf, 0xc9] {
                // The claim alone, and the claim with the rest of the real
                // frame behind it.
                let mut cut = frame[..at].to_vec();
                cut.push(marker);
                cut.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
                let mut full = cut.clone();
                full.extend_from_slice(&frame[at..]);
                for f in [&cut, &full] {
                    match wire::decode(f, CAP) {
                        Ok(m) => panic!("accepted a 4 GiB claim at {at}: {m:?}"),
                        Err(e) => {
                            assert!(!e.to_string().is_empty());
                            rejected += 1;
                        }
                    }
                }
            }
        }
    }
    let grown = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "{rejected} frames claiming 4 GiB rejected; peak RSS grew {grown} KiB (frame {} bytes)",
        frame.len()
    );
    assert!(grown < 64 * 1024, "peak RSS grew {grown} KiB");
}

/// Peak resident memory of this process (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Regression: nodes a forger made watched (two advancing heartbeats per
/// invented id), then let die, and then displaced from a full table by
/// new invented ids, were dropped without `NodeRemoved`, so `phimon run`
/// kept their interval histograms (~8 KiB each) forever: memory grew by
/// `max_nodes` histograms per cycle of the attack.
#[test]
fn displaced_members_are_announced_removed() {
    let mut core = lone_core(10);
    let from = NodeId::from("mallory");
    let batch = |prefix: &str, heartbeat: u64| Message {
        kind: Kind::Ack2,
        cluster: Arc::from("phimon"),
        sender: from.clone(),
        digest: Digest::default(),
        delta: (0..9)
            .map(|i| NodeDelta {
                node_id: NodeId::new(format!("{prefix}{i}")),
                generation: 1,
                heartbeat,
                status: Status::Alive,
                from_version: 0,
                version: 0,
                address: Some(format!("{prefix}{i}:1")),
                kv: Default::default(),
            })
            .collect(),
    };
    let mut now = 0;
    let mut events = Vec::new();
    for h in 1..=3 {
        now += 1_000_000;
        core.handle_message_typed(Timestamp::from_micros(now), &from, batch("f", h))
            .unwrap();
    }
    for _ in 0..20 {
        now += 1_000_000;
        core.handle_timeout(Timestamp::from_micros(now));
    }
    events.extend(std::iter::from_fn(|| core.poll_event()));
    let dead = events
        .iter()
        .filter(|e| matches!(e, Event::NodeDead { .. }))
        .count();
    assert_eq!(dead, 9, "{events:?}");
    now += 1_000_000;
    core.handle_message_typed(Timestamp::from_micros(now), &from, batch("g", 1))
        .unwrap();
    let removed: BTreeSet<String> = std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            Event::NodeRemoved { node } => Some(node.to_string()),
            _ => None,
        })
        .collect();
    let expected: BTreeSet<String> = (0..9).map(|i| format!("f{i}")).collect();
    assert_eq!(removed, expected);
    assert_eq!(core.len(), 10);
}

fn formed_sim() -> Sim {
    let mut sim = Sim::new(
        SimConfig {
            encode: true,
            ..SimConfig::default()
        },
        4,
    );
    sim.run_rounds(15);
    sim.take_events();
    sim
}

fn all_alive(sim: &Sim) -> bool {
    (0..sim.len()).all(|i| {
        (0..sim.len()).all(|j| {
            sim.core(i)
                .unwrap()
                .member(sim.id(j).as_str())
                .is_some_and(|m| m.status() == MemberStatus::Alive)
        })
    })
}

/// Regression: one SYN whose digest claimed the victim at generation
/// `u64::MAX - 1` made it refute to `u64::MAX`, which every peer drops as
/// implausible: the victim was judged dead and forgotten cluster-wide,
/// and stayed so across restarts. Such a claim is now counted and left
/// unrefuted: no one holds it.
#[test]
fn a_forged_digest_cannot_push_a_node_out_of_the_cluster() {
    let mut sim = formed_sim();
    let g = sim.core(1).unwrap().generation();
    for claimed in [u64::MAX - 1, g + phimon_gossip::MAX_GENERATION_JUMP] {
        let syn = Message {
            kind: Kind::Syn,
            cluster: Arc::from("phimon"),
            sender: NodeId::from("mallory"),
            digest: Digest {
                from: None,
                to: None,
                entries: vec![DigestEntry {
                    node_id: NodeId::from("n1"),
                    generation: claimed,
                    heartbeat: 0,
                    version: 0,
                }]
                .into(),
                ..Digest::default()
            },
            delta: Vec::new(),
        };
        sim.inject(1, &NodeId::from("mallory"), syn).unwrap();
    }
    assert_eq!(sim.core(1).unwrap().generation(), g);
    assert_eq!(sim.core(1).unwrap().stats().entries_implausible, 2);
    sim.run_rounds(60);
    assert!(all_alive(&sim));
    assert_eq!(sim.net().rejected, 0);
}

/// Regression: a forged delta at exactly the edge of the generation limit
/// is adopted by its receiver; the victim's refutation lands one past the
/// limit, which peers that never saw the forgery dropped as implausible,
/// so they judged the victim dead and forgot it for good. The victim's
/// own word is now taken whatever its generation. Also checks that the
/// refutation itself is a valid message (its own entry used to be
/// appended out of id order, and the whole ACK was rejected).
#[test]
fn a_forged_generation_at_the_edge_of_the_limit_is_refuted_everywhere() {
    // Whether the old code failed depended on who received the forgery
    // and when: try every receiver at several phases of the round.
    for target in 1..4 {
        for wait_ms in [0, 50, 300, 700] {
            let mut sim = formed_sim();
            sim.run_for(Duration::from_millis(wait_ms));
            let g = sim.core(0).unwrap().generation();
            let edge = g + phimon_gossip::MAX_GENERATION_JUMP;
            let forged = Message {
                kind: Kind::Ack2,
                cluster: Arc::from("phimon"),
                sender: NodeId::from("mallory"),
                digest: Digest::default(),
                delta: vec![NodeDelta {
                    node_id: NodeId::from("n0"),
                    generation: edge,
                    heartbeat: 0,
                    status: Status::Alive,
                    from_version: 0,
                    version: 0,
                    address: Some("n0:7800".into()),
                    kv: Default::default(),
                }],
            };
            sim.inject(target, &NodeId::from("mallory"), forged)
                .unwrap();
            sim.run_rounds(60);
            let case = format!("forgery to n{target} after {wait_ms} ms");
            assert_eq!(sim.core(0).unwrap().generation(), edge + 1, "{case}");
            for i in 0..4 {
                let m = sim.core(i).unwrap().member("n0");
                assert_eq!(m.map(|m| m.generation()), Some(edge + 1), "n{i}, {case}");
            }
            assert!(all_alive(&sim), "{case}");
            assert_eq!(sim.net().rejected, 0, "{case}");
        }
    }
}
