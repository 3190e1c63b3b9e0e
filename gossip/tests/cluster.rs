//! Cluster scenarios on the simulated network: N cores in one process,
//! messages in flight, per-link cuts, a virtual clock that jumps to the
//! next delivery or timeout. Every run is deterministic; nothing sleeps.

#![allow(clippy::unwrap_used)] // Test code: a panic is a failed test.

use phimon_gossip::sim::{Sim, SimConfig, SimEvent};
use phimon_gossip::wire::{Digest, Kind, KvEntry, Message, NodeDelta};
use phimon_gossip::{Event, GossipError, MemberStatus, NodeId, Status};
use std::sync::Arc;
use std::time::Duration;

fn cluster(n: usize, tune: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut c = SimConfig::default();
    tune(&mut c);
    Sim::new(c, n)
}

/// The status of `target` as seen by node `observer`.
fn seen(sim: &Sim, observer: usize, target: usize) -> Option<MemberStatus> {
    let core = sim.core(observer)?;
    core.member(sim.id(target).as_str()).map(|m| m.status())
}

/// True when every running node other than `target` sees it as `status`.
fn all_see(sim: &Sim, target: usize, status: MemberStatus) -> bool {
    (0..sim.len())
        .filter(|&i| i != target && sim.is_up(i))
        .all(|i| seen(sim, i, target) == Some(status))
}

fn everyone_alive(sim: &Sim) -> bool {
    (0..sim.len()).all(|t| all_see(sim, t, MemberStatus::Alive))
}

fn dead_verdicts(events: &[SimEvent], node: &NodeId) -> usize {
    events
        .iter()
        .filter(|e| matches!(&e.event, Event::NodeDead { node: n, .. } if n == node))
        .count()
}

#[test]
fn a_cluster_forms_through_the_seeds_over_real_frames() {
    let mut sim = cluster(24, |c| c.encode = true);
    sim.core_mut(17).unwrap().set_kv("service", "api").unwrap();
    sim.run_rounds(15);
    assert!(everyone_alive(&sim));
    for i in 0..24 {
        let core = sim.core(i).unwrap();
        assert_eq!(core.len(), 24, "node {i} knows {}", core.len());
        let m = core.member("n17").unwrap();
        assert_eq!(m.kv_get("service"), Some("api"), "node {i}");
        assert_eq!(m.address(), "n17:7800");
    }
    let events = sim.take_events();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.event, Event::NodeDead { .. }))
    );
    assert_eq!(sim.net().rejected, 0);
}

#[test]
fn heartbeats_keep_spreading_under_heavy_loss() {
    let mut sim = cluster(60, |c| c.loss = 0.25);
    sim.run_rounds(25);
    sim.take_events();
    // While windows are young (the default model's late-tail prior is
    // strict until a peer has shown its own lateness), a lossy link may
    // cost a rare false suspicion: bounded here, zero afterwards.
    sim.run_rounds(35);
    let learning = sim
        .take_events()
        .iter()
        .filter(|e| matches!(e.event, Event::NodeDead { .. }))
        .count();
    assert!(
        learning <= 2,
        "{learning} false suspicions among 3,540 observer-peer pairs while learning"
    );
    sim.run_rounds(40);
    assert!(everyone_alive(&sim));
    // A heartbeat is at most a few rounds old everywhere.
    let own = sim.core(30).unwrap().member("n30").unwrap().heartbeat();
    for i in 0..60 {
        let known = sim.core(i).unwrap().member("n30").unwrap().heartbeat();
        assert!(
            own - known <= 4,
            "node {i} knows heartbeat {known} of {own}"
        );
    }
    let events = sim.take_events();
    let dead = events
        .iter()
        .filter(|e| matches!(e.event, Event::NodeDead { .. }))
        .count();
    assert_eq!(dead, 0, "false suspicions under 25% loss");
    assert!(sim.net().lost > 1000);
}

#[test]
fn a_partition_is_seen_from_both_sides_and_heals() {
    let mut sim = cluster(16, |_| {});
    sim.run_rounds(20);
    assert!(everyone_alive(&sim));
    let left: Vec<usize> = (0..8).collect();
    let right: Vec<usize> = (8..16).collect();
    sim.partition(&[&left, &right]);
    sim.run_rounds(40);
    for &a in &left {
        for &b in &right {
            assert_eq!(seen(&sim, a, b), Some(MemberStatus::Dead), "{a} on {b}");
            assert_eq!(seen(&sim, b, a), Some(MemberStatus::Dead), "{b} on {a}");
        }
    }
    // Each side still sees its own half alive.
    assert_eq!(seen(&sim, 0, 7), Some(MemberStatus::Alive));
    assert_eq!(seen(&sim, 9, 15), Some(MemberStatus::Alive));
    sim.take_events();
    sim.heal();
    // Dead nodes are contacted now and then; the halves find each other.
    sim.run_rounds(30);
    assert!(everyone_alive(&sim));
    let back = sim
        .take_events()
        .iter()
        .filter(|e| matches!(e.event, Event::NodeAlive { .. }))
        .count();
    assert_eq!(
        back,
        2 * 8 * 8,
        "every node sees every node of the other half come back"
    );
}

#[test]
fn a_cut_link_alone_changes_nothing() {
    let mut sim = cluster(10, |_| {});
    sim.run_rounds(15);
    sim.take_events();
    // Gossip routes around a broken link: no one is suspected.
    sim.cut(3, 4);
    sim.cut(3, 5);
    sim.run_rounds(40);
    assert!(everyone_alive(&sim));
    assert_eq!(dead_verdicts(&sim.take_events(), sim.id(3)), 0);
    assert!(sim.net().cut > 0);
}

#[test]
fn a_crash_is_detected_and_a_restart_supersedes_it_at_once() {
    let mut sim = cluster(12, |c| c.loss = 0.05);
    sim.run_rounds(25);
    sim.take_events();
    sim.crash(5);
    sim.run_rounds(40);
    assert!(all_see(&sim, 5, MemberStatus::Dead));
    let events = sim.take_events();
    assert_eq!(dead_verdicts(&events, sim.id(5)), 11);
    sim.restart(5);
    sim.run_rounds(6);
    for i in (0..12).filter(|&i| i != 5) {
        let core = sim.core(i).unwrap();
        let m = core.member("n5").unwrap();
        assert_eq!(m.generation(), 2, "node {i}");
        assert_eq!(m.status(), MemberStatus::Alive, "node {i}");
        // The fresh window of the new generation: phi is low right away.
        assert!(m.phi(sim.now()).unwrap() < 3.0);
    }
    let events = sim.take_events();
    let restarted = events
        .iter()
        .filter(|e| {
            matches!(&e.event, Event::NodeRestarted { node, old_generation: 1, new_generation: 2 } if node.as_str() == "n5")
        })
        .count();
    assert_eq!(restarted, 11);
    // The restarted node learns the cluster again.
    assert_eq!(sim.core(5).unwrap().len(), 12);
}

#[test]
fn without_local_detection_a_core_gossips_the_same_but_never_judges() {
    let run = |detect: bool| {
        let mut sim = cluster(10, |c| {
            c.loss = 0.1;
            c.gossip.local_detection = detect;
        });
        sim.run_rounds(30);
        sim
    };
    let (on, mut off) = (run(true), run(false));
    // Without verdicts (none while everyone runs) the two runs make the
    // same choices: detection only adds the judgement.
    assert_eq!(on.net(), off.net());
    for i in 0..10 {
        let (a, b) = (on.core(i).unwrap(), off.core(i).unwrap());
        let view = |c: &phimon_gossip::Gossip| -> Vec<(String, u64, u64, MemberStatus)> {
            c.members()
                .map(|m| {
                    (
                        m.node_id().to_string(),
                        m.generation(),
                        m.heartbeat(),
                        m.status(),
                    )
                })
                .collect()
        };
        assert_eq!(view(a), view(b), "node {i}");
        for m in b.members() {
            assert!(m.phi(off.now()).is_none() && m.detector().is_none());
        }
    }
    assert!(everyone_alive(&off));
    let joined = off
        .take_events()
        .iter()
        .filter(|e| matches!(e.event, Event::NodeJoined { .. }))
        .count();
    assert_eq!(joined, 90);
    // A crash is never judged: the node stays alive in every view.
    off.crash(4);
    off.run_rounds(40);
    assert!(all_see(&off, 4, MemberStatus::Alive));
    let events = off.take_events();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.event, Event::NodeDead { .. } | Event::NodeAlive { .. }))
    );
    // Restarts still supersede at once.
    off.restart(4);
    off.run_rounds(6);
    for i in (0..10).filter(|&i| i != 4) {
        let m = off.core(i).unwrap().member("n4").unwrap();
        assert_eq!(
            (m.generation(), m.status()),
            (2, MemberStatus::Alive),
            "node {i}"
        );
    }
}

#[test]
fn only_observers_judge_and_the_cluster_gossips_as_with_all() {
    let observers = vec![0, 3, 7];
    let run = |observers: Option<Vec<usize>>| {
        let mut sim = cluster(10, |c| {
            c.loss = 0.05;
            c.observers = observers;
        });
        sim.run_rounds(25);
        sim.crash(5);
        sim.run_rounds(30);
        sim
    };
    let (mut all, mut some) = (run(None), run(Some(observers.clone())));
    let (all_events, some_events) = (all.take_events(), some.take_events());
    // The observers reach the same verdicts as when every node judges.
    let dead_at = |events: &[SimEvent]| -> Vec<usize> {
        let mut v: Vec<usize> = events
            .iter()
            .filter(|e| matches!(&e.event, Event::NodeDead { node, .. } if node.as_str() == "n5"))
            .map(|e| e.observer)
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(dead_at(&all_events).len(), 9);
    assert_eq!(dead_at(&some_events), observers);
    for &i in &observers {
        assert_eq!(seen(&some, i, 5), Some(MemberStatus::Dead), "observer {i}");
    }
    // The others keep gossiping: every live node still has every live
    // node's state, and only a crashed node is seen differently.
    for i in (0..10).filter(|i| *i != 5 && !observers.contains(i)) {
        assert_eq!(seen(&some, i, 5), Some(MemberStatus::Alive), "node {i}");
        assert!(sim_knows_everyone(&some, i));
    }
}

#[test]
fn two_threads_give_exactly_the_one_thread_run() {
    // Loss, a partition and its heal, a crash, a restart, a leave, an
    // observer stall, key/values, real frames: every event, table and
    // counter must be the same.
    let script = |threads: usize, encode: bool| {
        let mut sim = cluster(24, |c| {
            c.loss = 0.1;
            c.threads = threads;
            c.encode = encode;
            c.observers = Some(vec![0, 2, 5, 11, 19]);
        });
        sim.log_rounds(&[3, 7]);
        sim.core_mut(4).unwrap().set_kv("service", "api").unwrap();
        sim.run_rounds(15);
        sim.partition(&[&[0, 1, 2, 3, 4, 5, 6, 7]]);
        sim.run_rounds(12);
        sim.heal();
        sim.crash(9);
        sim.run_rounds(10);
        sim.restart(9);
        sim.leave(13);
        let until = sim.now() + Duration::from_secs(4);
        sim.pause(2, until);
        sim.run_rounds(12);
        type Row = (String, u64, u64, u64, MemberStatus);
        let tables: Vec<Vec<Row>> = (0..24)
            .map(|i| match sim.core(i) {
                Some(c) => c
                    .members()
                    .map(|m| {
                        let id = m.node_id().to_string();
                        (id, m.generation(), m.heartbeat(), m.version(), m.status())
                    })
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        (
            sim.take_events(),
            sim.net().clone(),
            tables,
            sim.take_round_log(),
        )
    };
    for encode in [false, true] {
        let one = script(1, encode);
        let two = script(2, encode);
        assert!(one.0.len() > 100 && !one.3.is_empty());
        assert_eq!(one.1, two.1, "network counters");
        assert_eq!(one.2, two.2, "tables");
        assert_eq!(one.3, two.3, "round log");
        assert_eq!(one.0, two.0, "events");
    }
}

fn sim_knows_everyone(sim: &Sim, i: usize) -> bool {
    (0..sim.len()).all(|t| seen(sim, i, t).is_some())
}

#[test]
fn a_graceful_leave_is_never_suspected_and_is_forgotten_after_the_grace() {
    let mut sim = cluster(10, |c| c.gossip.dead_grace = Duration::from_secs(120));
    sim.run_rounds(20);
    sim.take_events();
    sim.leave(7);
    let mut rounds = 0;
    while !sim.core(7).unwrap().leave_complete() {
        sim.run_rounds(1);
        rounds += 1;
        assert!(rounds < 10, "leave does not complete");
    }
    sim.run_rounds(3);
    sim.crash(7); // the process exits
    assert!(all_see(&sim, 7, MemberStatus::Left));
    for i in (0..10).filter(|&i| i != 7) {
        assert_eq!(sim.core(i).unwrap().phi("n7", sim.now()), None);
    }
    sim.run_rounds(60);
    assert!(all_see(&sim, 7, MemberStatus::Left));
    let events = sim.take_events();
    assert_eq!(dead_verdicts(&events, sim.id(7)), 0);
    let left = events
        .iter()
        .filter(|e| matches!(&e.event, Event::NodeLeft { node, .. } if node.as_str() == "n7"))
        .count();
    assert_eq!(left, 9);
    sim.run_rounds(70);
    for i in (0..10).filter(|&i| i != 7) {
        assert!(sim.core(i).unwrap().member("n7").is_none(), "node {i}");
    }
}

#[test]
fn dead_nodes_are_forgotten_after_the_grace_and_stay_forgotten() {
    let mut sim = cluster(10, |c| c.gossip.dead_grace = Duration::from_secs(60));
    sim.run_rounds(20);
    sim.crash(3);
    sim.run_rounds(40);
    assert!(all_see(&sim, 3, MemberStatus::Dead));
    sim.run_rounds(70);
    for i in (0..10).filter(|&i| i != 3) {
        assert!(sim.core(i).unwrap().member("n3").is_none(), "node {i}");
    }
    let removed = sim
        .take_events()
        .iter()
        .filter(|e| matches!(&e.event, Event::NodeRemoved { node } if node.as_str() == "n3"))
        .count();
    assert_eq!(removed, 9);
    // A straggler's copy may bring it back as hearsay, but never as a
    // watched member: no join, no new dead verdict.
    sim.run_rounds(30);
    let events = sim.take_events();
    assert!(events.iter().all(|e| !matches!(&e.event,
        Event::NodeJoined { node, .. } | Event::NodeDead { node, .. } if node.as_str() == "n3")));
}

#[test]
fn key_values_propagate_and_old_values_never_win() {
    let mut sim = cluster(8, |_| {});
    sim.run_rounds(12);
    let core = sim.core_mut(2).unwrap();
    core.set_kv("version", "1.0").unwrap();
    core.set_kv("version", "1.1").unwrap();
    core.set_kv("endpoint", "10.0.0.2:80").unwrap();
    sim.run_rounds(8);
    for i in 0..8 {
        let m = sim.core(i).unwrap().member("n2").unwrap().kv_get("version");
        assert_eq!(m, Some("1.1"), "node {i}");
    }
    // A stale delta (version 1 carried "1.0") is ignored.
    let stale = Message {
        kind: Kind::Ack2,
        cluster: Arc::from("phimon"),
        sender: NodeId::from("n1"),
        digest: Digest::default(),
        delta: vec![NodeDelta {
            node_id: NodeId::from("n2"),
            generation: 1,
            heartbeat: 1,
            status: Status::Alive,
            from_version: 0,
            version: 1,
            address: Some("n2:7800".into()),
            kv: vec![KvEntry {
                key: "version".into(),
                value: "1.0".into(),
                version: 1,
            }]
            .into(),
        }],
    };
    sim.inject(5, &NodeId::from("n1"), stale).unwrap();
    let m = sim.core(5).unwrap().member("n2").unwrap().kv_get("version");
    assert_eq!(m, Some("1.1"));
    // The owner refuses a value beyond the cap.
    let err = sim
        .core_mut(2)
        .unwrap()
        .set_kv("blob", &"x".repeat(5000))
        .unwrap_err();
    assert!(matches!(err, GossipError::KvRefused { .. }));
}

#[test]
fn tables_larger_than_one_message_travel_in_slices() {
    let mut sim = cluster(150, |c| {
        c.gossip.max_message_bytes = 2048;
        c.gossip.max_kv_bytes_per_node = 256;
    });
    for i in 0..150 {
        sim.core_mut(i)
            .unwrap()
            .set_kv("service", &format!("service-number-{i}"))
            .unwrap();
    }
    sim.run_rounds(60);
    assert!(sim.max_sent_size() <= 2048, "{}", sim.max_sent_size());
    for i in 0..150 {
        assert_eq!(sim.core(i).unwrap().len(), 150, "node {i}");
    }
    assert!(everyone_alive(&sim));
}

#[test]
fn an_observer_stall_is_not_blamed_on_peers() {
    let mut sim = cluster(6, |_| {});
    sim.run_rounds(20);
    sim.take_events();
    // Node 0 is paused for a minute: nothing of it runs, the others keep
    // going. On resuming it reports the stall before anything else.
    let until = sim.now() + Duration::from_secs(60);
    sim.pause(0, until);
    sim.run_rounds(5);
    let events = sim.take_events();
    let by_0 = events
        .iter()
        .filter(|e| e.observer == 0 && matches!(e.event, Event::NodeDead { .. }))
        .count();
    assert_eq!(by_0, 0);
}
