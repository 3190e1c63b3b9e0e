//! A member with a valid certificate that gossips junk: invented ids,
//! counters at u64::MAX, far-future generations, oversized key/values,
//! forged statuses. It must not blow memory or wedge the protocol; what
//! it can do is documented in docs/gossip.md.

#![allow(clippy::unwrap_used)] // Test code: a panic is a failed test.

use phimon_gossip::sim::{Sim, SimConfig};
use phimon_gossip::wire::{self, Digest, DigestEntry, Kind, KvEntry, Message, NodeDelta};
use phimon_gossip::{
    Event, Gossip, GossipConfig, GossipError, MAX_GENERATION_JUMP, MemberStatus, NodeId, Status,
    Timestamp,
};
use std::sync::Arc;
use std::time::Duration;

fn liar() -> NodeId {
    NodeId::from("mallory")
}

fn forged(kind: Kind, delta: Vec<NodeDelta>) -> Message {
    Message {
        kind,
        cluster: Arc::from("phimon"),
        sender: liar(),
        digest: Digest::default(),
        delta,
    }
}

fn state(id: &str, generation: u64, heartbeat: u64) -> NodeDelta {
    NodeDelta {
        node_id: NodeId::from(id),
        generation,
        heartbeat,
        status: Status::Alive,
        from_version: 0,
        version: 0,
        address: Some(format!("{id}:7800")),
        kv: Default::default(),
    }
}

fn formed(n: usize, tune: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut c = SimConfig::default();
    tune(&mut c);
    let mut sim = Sim::new(c, n);
    sim.run_rounds(20);
    sim.take_events();
    sim
}

fn all_alive(sim: &Sim) -> bool {
    (0..sim.len()).all(|t| {
        (0..sim.len()).all(|i| {
            sim.core(i)
                .unwrap()
                .member(sim.id(t).as_str())
                .map(|m| m.status())
                == Some(MemberStatus::Alive)
        })
    })
}

#[test]
fn a_hundred_thousand_invented_ids_stay_within_the_cap_and_never_page() {
    let max_nodes = 500;
    let mut sim = formed(12, |c| {
        c.gossip.max_nodes = max_nodes;
        c.gossip.dead_grace = Duration::from_secs(300);
    });
    // The forger sends every id it can fit in a message, round after
    // round, to every node.
    let mut next = 0u32;
    let mut bytes = 0usize;
    let mut sent = 0usize;
    while next < 100_000 {
        let mut msg = forged(Kind::Ack2, Vec::new());
        let mut size = msg.wire_size() + 4;
        while next < 100_000 {
            let d = state(&format!("fake-{next:06}"), 1, 7);
            if size + d.wire_size() > 60 * 1024 {
                break;
            }
            size += d.wire_size();
            msg.delta.push(d);
            next += 1;
        }
        bytes = bytes.max(msg.wire_size());
        sim.inject(sent % 12, &liar(), msg).unwrap();
        sent += 1;
        sim.run_for(Duration::from_millis(50));
    }
    assert!(bytes <= 60 * 1024);
    sim.run_rounds(20);
    for i in 0..12 {
        let core = sim.core(i).unwrap();
        assert!(core.len() <= max_nodes, "node {i} holds {}", core.len());
        let s = core.stats();
        assert!(
            s.nodes_rejected_cap + s.nodes_evicted > 0,
            "node {i}: {s:?}"
        );
    }
    // Honest members are never displaced and stay alive.
    assert!(all_alive(&sim));
    // Invented ids were never observed: no join, no dead verdict, no page.
    let events = sim.take_events();
    assert!(events.iter().all(|e| match &e.event {
        Event::NodeJoined { node, .. } | Event::NodeDead { node, .. } =>
            !node.as_str().starts_with("fake-"),
        _ => true,
    }));
    // A real newcomer still gets in: the invented ids are displaced.
    let newcomer = sim.add_node();
    sim.run_rounds(15);
    for i in 0..12 {
        let m = sim
            .core(i)
            .unwrap()
            .member(sim.id(newcomer).as_str())
            .map(|m| m.status());
        assert_eq!(m, Some(MemberStatus::Alive), "node {i}");
    }
    // After the grace the junk is gone.
    sim.run_rounds(320);
    for i in 0..13 {
        let core = sim.core(i).unwrap();
        assert_eq!(core.len(), 13, "node {i}");
    }
}

#[test]
fn a_heartbeat_forged_to_u64_max_is_refuted_by_its_owner() {
    let mut sim = formed(10, |_| {});
    let victim = "n4";
    let generation = sim.core(4).unwrap().generation();
    for target in [0, 1, 2] {
        let msg = forged(
            Kind::Ack2,
            vec![NodeDelta {
                from_version: 0,
                ..state(victim, generation, u64::MAX)
            }],
        );
        sim.inject(target, &liar(), msg).unwrap();
    }
    sim.run_rounds(15);
    let events = sim.take_events();
    assert!(events.iter().any(|e| e.observer == 4
        && matches!(e.event, Event::SelfRefuted { old_generation, new_generation }
            if old_generation == generation && new_generation == generation + 1)));
    for i in 0..10 {
        let m = sim.core(i).unwrap().member(victim).unwrap();
        assert_eq!(m.generation(), generation + 1, "node {i}");
        assert!(m.heartbeat() < 100, "node {i}");
    }
    assert!(all_alive(&sim));
    let dead = events
        .iter()
        .filter(|e| matches!(&e.event, Event::NodeDead { node, .. } if node.as_str() == victim))
        .count();
    assert_eq!(dead, 0);
}

#[test]
fn far_future_generations_are_dropped_or_refuted() {
    let mut sim = formed(8, |_| {});
    let g = sim.core(3).unwrap().generation();
    // u64::MAX is beyond any plausible jump: dropped and counted.
    sim.inject(
        0,
        &liar(),
        forged(Kind::Ack2, vec![state("n3", u64::MAX, 1)]),
    )
    .unwrap();
    assert_eq!(sim.core(0).unwrap().member("n3").unwrap().generation(), g);
    assert_eq!(sim.core(0).unwrap().stats().entries_implausible, 1);
    // An invented node far in the future is dropped too.
    sim.inject(
        0,
        &liar(),
        forged(Kind::Ack2, vec![state("ghost", u64::MAX - 1, 1)]),
    )
    .unwrap();
    assert!(sim.core(0).unwrap().member("ghost").is_none());
    // A plausible jump is taken, and the owner moves past it.
    let claimed = g + MAX_GENERATION_JUMP / 2;
    sim.inject(
        1,
        &liar(),
        forged(Kind::Ack2, vec![state("n3", claimed, 1)]),
    )
    .unwrap();
    sim.run_rounds(15);
    for i in 0..8 {
        let m = sim.core(i).unwrap().member("n3").unwrap();
        assert_eq!(m.generation(), claimed + 1, "node {i}");
        assert_eq!(m.status(), MemberStatus::Alive, "node {i}");
    }
    assert!(all_alive(&sim));
}

#[test]
fn a_forged_leave_is_refuted() {
    let mut sim = formed(8, |_| {});
    let g = sim.core(6).unwrap().generation();
    let (hb, version) = {
        let m = sim.core(2).unwrap().member("n6").unwrap();
        (m.heartbeat(), m.version())
    };
    let msg = forged(
        Kind::Ack2,
        vec![NodeDelta {
            status: Status::Left,
            from_version: version,
            version: version + 1,
            address: None,
            ..state("n6", g, hb + 1)
        }],
    );
    sim.inject(2, &liar(), msg).unwrap();
    assert_eq!(
        sim.core(2).unwrap().member("n6").unwrap().status(),
        MemberStatus::Left
    );
    sim.run_rounds(15);
    for i in 0..8 {
        let m = sim.core(i).unwrap().member("n6").unwrap();
        assert_eq!(m.generation(), g + 1, "node {i}");
    }
    assert!(all_alive(&sim));
}

#[test]
fn oversized_key_values_are_dropped() {
    let mut sim = formed(4, |_| {});
    let mut d = state("bloated", 1, 1);
    d.version = 1;
    d.kv = vec![KvEntry {
        key: "blob".into(),
        value: "x".repeat(5000),
        version: 1,
    }]
    .into();
    sim.inject(0, &liar(), forged(Kind::Ack2, vec![d])).unwrap();
    assert!(sim.core(0).unwrap().member("bloated").is_none());
    assert_eq!(sim.core(0).unwrap().stats().kv_rejected, 1);
}

fn lone_core() -> Gossip {
    Gossip::new(
        GossipConfig::default(),
        NodeId::from("a"),
        "a:1".into(),
        1,
        7,
        Timestamp::ZERO,
    )
}

#[test]
fn frame_level_junk_is_rejected_with_distinct_errors() {
    let mut core = lone_core();
    let now = Timestamp::ZERO;
    let good = wire::encode(&forged(Kind::Ack2, vec![state("b", 1, 1)])).unwrap();
    let from = liar();
    // Wrong version byte: the version before positions, and a future one.
    for version in [1, wire::PROTOCOL_VERSION + 1] {
        let mut other = good.clone();
        other[0] = version;
        assert!(matches!(
            core.handle_message(now, &from, &other),
            Err(GossipError::UnsupportedVersion { version: v, .. }) if v == version
        ));
    }
    // Oversized frame: rejected before decoding.
    let big = vec![1u8; 70 * 1024];
    assert!(matches!(
        core.handle_message(now, &from, &big),
        Err(GossipError::TooLarge { .. })
    ));
    assert!(matches!(
        core.handle_message(now, &from, &[]),
        Err(GossipError::Empty)
    ));
    // Truncated: malformed.
    assert!(matches!(
        core.handle_message(now, &from, &good[..good.len() - 3]),
        Err(GossipError::Malformed { .. })
    ));
    // A claimed sender that is not the authenticated peer.
    assert!(matches!(
        core.handle_message(now, &NodeId::from("eve"), &good),
        Err(GossipError::SenderMismatch { .. })
    ));
    // Another cluster.
    let mut other = forged(Kind::Ack2, vec![state("b", 1, 1)]);
    other.cluster = Arc::from("staging");
    let other = wire::encode(&other).unwrap();
    assert!(matches!(
        core.handle_message(now, &from, &other),
        Err(GossipError::WrongCluster { .. })
    ));
    // Unsorted entries break a protocol rule.
    let mut unsorted = forged(Kind::Ack2, vec![state("c", 1, 1), state("b", 1, 1)]);
    let frame = wire::encode(&unsorted).unwrap();
    assert!(matches!(
        core.handle_message(now, &from, &frame),
        Err(GossipError::Invalid { .. })
    ));
    unsorted.delta.reverse();
    let frame = wire::encode(&unsorted).unwrap();
    core.handle_message(now, &from, &frame).unwrap();
    assert_eq!(core.len(), 3);
    // A digest entry outside its digest's range.
    let syn = Message {
        kind: Kind::Syn,
        cluster: Arc::from("phimon"),
        sender: from.clone(),
        digest: Digest {
            from: Some(NodeId::from("m")),
            to: None,
            entries: vec![DigestEntry {
                node_id: NodeId::from("b"),
                generation: 1,
                heartbeat: 1,
                version: 0,
            }]
            .into(),
            ..Digest::default()
        },
        delta: Vec::new(),
    };
    let frame = wire::encode(&syn).unwrap();
    assert!(matches!(
        core.handle_message(now, &from, &frame),
        Err(GossipError::Invalid { .. })
    ));
    let labels = [
        GossipError::Empty.label(),
        GossipError::TooLarge { len: 1, max: 0 }.label(),
    ];
    assert_ne!(labels[0], labels[1]);
}

#[test]
fn the_direct_word_of_a_node_starts_watching_it_hearsay_does_not() {
    let mut core = lone_core();
    let now = Timestamp::from_micros(1_000_000);
    // Hearsay about "c" from "b": joining, not watched.
    let msg = Message {
        sender: NodeId::from("b"),
        ..forged(Kind::Ack2, vec![state("b", 1, 3), state("c", 1, 3)])
    };
    core.handle_message_typed(now, &NodeId::from("b"), msg)
        .unwrap();
    assert_eq!(core.member("b").unwrap().status(), MemberStatus::Alive);
    assert_eq!(core.member("c").unwrap().status(), MemberStatus::Joining);
    assert_eq!(core.phi("c", now), None);
    let joined: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(
        joined
            .iter()
            .any(|e| matches!(e, Event::NodeJoined { node, .. } if node.as_str() == "b"))
    );
    assert!(
        !joined
            .iter()
            .any(|e| matches!(e, Event::NodeJoined { node, .. } if node.as_str() == "c"))
    );
    // Its heartbeat advancing makes it a watched member.
    let msg = Message {
        sender: NodeId::from("b"),
        ..forged(Kind::Ack2, vec![state("c", 1, 4)])
    };
    let later = Timestamp::from_micros(2_000_000);
    core.handle_message_typed(later, &NodeId::from("b"), msg)
        .unwrap();
    assert_eq!(core.member("c").unwrap().status(), MemberStatus::Alive);
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(events.contains(&Event::HeartbeatObserved {
        node: NodeId::from("c"),
        generation: 1,
        at: later,
    }));
}

#[test]
fn absurd_settings_are_clamped_not_panicked_on() {
    let config = GossipConfig {
        cluster_name: "c".repeat(100_000),
        fanout: 0,
        max_message_bytes: 0,
        max_nodes: 0,
        ..GossipConfig::default()
    };
    assert!(!config.validate().is_empty());
    let mut core = Gossip::new(
        config,
        NodeId::from("a"),
        "a:1".into(),
        1,
        1,
        Timestamp::ZERO,
    );
    core.handle_timeout(Timestamp::from_micros(2_000_000));
    while core.poll_transmit().is_some() {}
    let frame = wire::encode(&forged(Kind::Ack2, vec![state("b", 1, 1)])).unwrap();
    let _ = core.handle_message(Timestamp::from_micros(2_000_000), &liar(), &frame);
}
