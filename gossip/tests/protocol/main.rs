//! Protocol scenarios on a simulated clock: joins, crashes, restarts,
//! leaves, hand-overs, partitions, loss and forgeries, each a script that
//! never sleeps.

mod harness;

use harness::{Harness, addr};
use phimon_gossip::wire::{Frame, Records};
use phimon_gossip::{
    Declared, Event, GossipConfig, NodeId, Record, RecordBody, SharedSecretAuthority, Status,
};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn cfg() -> GossipConfig {
    GossipConfig {
        cluster: "test".into(),
        ..GossipConfig::default()
    }
}

/// A cluster of `n` that has joined and settled.
fn settled(n: usize, cfg: GossipConfig) -> Harness {
    let mut h = Harness::new(n, cfg);
    let took = h.run_until_true(secs(60), |h| {
        h.settled() && (0..n).all(|x| h.all_see(x, Status::Alive))
    });
    assert!(took.is_some(), "cluster of {n} did not settle");
    h
}

fn suspected_anywhere(h: &Harness, of: usize) -> bool {
    h.running()
        .into_iter()
        .any(|i| h.status(i, of) == Some(Status::Suspected))
}

#[test]
fn a_cluster_joins_settles_and_is_quiet_when_nothing_happens() {
    let n = 12;
    let mut h = settled(n, cfg());
    // Observers handed over during the join linger for a few intervals.
    h.run_for(secs(5));
    for i in 0..n {
        assert_eq!(h.node(i).len(), n);
        assert_eq!(h.node(i).targets().count(), 3, "node {i}: k = 3 observers");
        assert_eq!(h.node(i).subjects().len(), 3);
    }
    h.reset_traffic();
    h.run_for(secs(60));
    // Settled: no reconciliation, only heartbeats and probes.
    assert_eq!(h.traffic.messages(), 0, "{:?}", h.traffic.by_kind);
    let per_node_round = h.traffic.bytes() as f64 / (n as f64 * 60.0);
    assert!(
        per_node_round < 250.0,
        "{per_node_round:.0} bytes per node per round: {:?}",
        h.traffic.by_kind
    );
    let (hb, probes) = (
        h.traffic.by_kind["heartbeat"].0,
        h.traffic.by_kind["probe"].0,
    );
    assert!(hb >= 3 * 59 * n as u64 && hb <= 3 * 61 * n as u64, "{hb}");
    assert!(probes <= 61 * n as u64 * 11 / 10, "{probes}");
}

#[test]
fn a_crashed_node_is_suspected_everywhere_then_forgotten() {
    let mut c = cfg();
    c.dead_grace = secs(120);
    let mut h = settled(8, c);
    let victim = 5;
    for i in 0..8 {
        h.take_events(i);
    }
    h.crash(victim);
    let took = h
        .run_until_true(secs(60), |h| h.all_see(victim, Status::Suspected))
        .expect("suspected everywhere");
    assert!(took < secs(30), "{took:?}");
    // Its observers said so, each once.
    let verdicts: usize = (0..8)
        .filter(|&i| i != victim)
        .map(|i| {
            h.take_events(i)
                .iter()
                .filter(|e| matches!(e, Event::Verdict { subject, suspected: true, .. } if *subject == h.ids[victim]))
                .count()
        })
        .sum();
    assert!((2..=3).contains(&verdicts), "{verdicts} suspicions");
    // No one else is suspected.
    for x in h.running() {
        assert!(h.all_see(x, Status::Alive), "node {x}");
    }
    // Forgotten after dead_grace, everywhere.
    h.run_for(secs(130));
    for i in h.running() {
        assert!(h.status(i, victim).is_none(), "node {i} still knows it");
        assert!(h.node(i).len() == 7);
    }
    assert!(h.settled());
}

#[test]
fn a_restart_is_a_new_generation_and_ends_the_suspicion() {
    let mut h = settled(6, cfg());
    h.crash(2);
    h.run_until_true(secs(60), |h| h.all_see(2, Status::Suspected))
        .expect("suspected");
    for i in 0..6 {
        h.take_events(i);
    }
    h.start(2);
    h.run_until_true(secs(30), |h| h.all_see(2, Status::Alive))
        .expect("alive again");
    let restarted = h
        .take_events(0)
        .into_iter()
        .any(|e| matches!(e, Event::Restarted { node, old_generation: 1, new_generation: 2 } if node == h.ids[2]));
    assert!(restarted);
    assert!(h.node(0).member(&h.ids[2]).unwrap().generation() == 2);
}

#[test]
fn a_leaving_node_is_never_suspected() {
    let mut h = settled(6, cfg());
    let now = h.now;
    h.node_mut(4).leave(now);
    h.drain(4);
    h.run_until_true(secs(10), |h| h.node(4).leave_complete())
        .expect("leave completes");
    h.crash(4);
    h.run_until_true(secs(10), |h| h.all_see(4, Status::Left))
        .expect("left everywhere");
    h.run_for(secs(60));
    assert!(!suspected_anywhere(&h, 4));
    assert!(h.all_see(4, Status::Left));
}

#[test]
fn an_observer_crash_hands_over_without_a_false_suspicion() {
    let mut h = settled(10, cfg());
    // An observer of node 0, and node 0's other subjects' observers too.
    let observer = h
        .node(0)
        .member(&h.ids[0])
        .unwrap()
        .first_observer()
        .cloned()
        .unwrap();
    let o = h.ids.iter().position(|id| *id == observer).unwrap();
    h.crash(o);
    h.run_until_true(secs(60), |h| h.all_see(o, Status::Suspected))
        .expect("observer suspected");
    h.run_for(secs(60));
    for x in h.running() {
        assert!(!suspected_anywhere(&h, x), "node {x} falsely suspected");
        assert!(h.all_see(x, Status::Alive), "node {x}");
    }
    // Node 0 now has a full set of live observers again.
    let m = h.node(1).member(&h.ids[0]).unwrap();
    let obs = m.observers();
    assert_eq!(obs.len(), 3);
    assert!(obs.iter().all(|v| *v.observer != h.ids[o]));
    assert!(obs.iter().all(|v| v.suspected == Some(false)), "{obs:?}");
}

#[test]
fn a_partition_is_suspected_on_both_sides_and_heals() {
    let mut h = settled(6, cfg());
    h.partition(&[0, 1, 2], &[3, 4, 5]);
    h.run_for(secs(60));
    for (at, of) in [(0, 4), (1, 3), (5, 0), (3, 2)] {
        assert_eq!(h.status(at, of), Some(Status::Suspected), "{at} on {of}");
    }
    h.heal();
    let took = h.run_until_true(secs(90), |h| {
        h.settled() && (0..6).all(|x| h.all_see(x, Status::Alive))
    });
    assert!(took.is_some(), "did not heal");
}

#[test]
fn lossy_datagrams_raise_no_false_suspicion() {
    let mut h = settled(8, cfg());
    h.loss = 0.05;
    h.run_for(secs(600));
    for x in 0..8 {
        assert!(
            !suspected_anywhere(&h, x),
            "node {x} suspected under 5% loss"
        );
    }
}

#[test]
fn a_late_joiner_learns_the_table_by_reconciliation() {
    let n = 30;
    let mut h = Harness::new(n, cfg());
    h.crash(n - 1);
    h.run_until_true(secs(60), |h| h.settled())
        .expect("settled");
    h.start(n - 1);
    h.run_until_true(secs(30), |h| h.settled() && h.all_see(n - 1, Status::Alive))
        .expect("joined");
    assert_eq!(h.node(n - 1).len(), n);
}

/// Every forgery a member holding its own credential can try: speaking
/// for another node (any address, generation, status), inventing ids,
/// replaying old records, another cluster's records. Each is refused and
/// counted, and nothing changes.
#[test]
fn no_member_can_speak_for_another() {
    let mut h = settled(6, cfg());
    let (liar, victim, target) = (1usize, 2usize, 3usize);
    let auth = h.auth.clone();
    let mut liar_signer = auth.signer(&h.ids[liar]);
    let before = h.node(target).fingerprint();
    let real = h
        .node(target)
        .member(&h.ids[victim])
        .unwrap()
        .record()
        .clone();
    let forge = |node: &NodeId, f: &dyn Fn(&mut RecordBody)| {
        let mut b = real.body().clone();
        b.node = node.clone();
        f(&mut b);
        b
    };
    let mut sign = |b: RecordBody| Record::sign(b, &mut liar_signer).unwrap().signed().clone();
    let forgeries = vec![
        // The victim's record with a far generation and a bogus address.
        sign(forge(&h.ids[victim], &|b| {
            b.generation += 1 << 32;
            b.address = "203.0.113.9:1".into();
        })),
        // The victim declaring it left.
        sign(forge(&h.ids[victim], &|b| {
            b.version += 1;
            b.status = Declared::Left;
        })),
        // An invented id.
        sign(forge(&NodeId::from("invented-1"), &|_| {})),
    ];
    // A record signed under another cluster's secret.
    let mut foreign = SharedSecretAuthority::new(b"other secret").signer(&h.ids[victim]);
    let mut b = real.body().clone();
    b.version += 5;
    let foreign = Record::sign(b, &mut foreign).unwrap().signed().clone();
    // Another cluster's name, correctly signed by the victim's key.
    let mut victim_signer = auth.signer(&h.ids[victim]);
    let mut b = real.body().clone();
    b.version += 7;
    b.cluster = "other".into();
    let other_cluster = Record::sign(b, &mut victim_signer)
        .unwrap()
        .signed()
        .clone();
    let mut all = forgeries;
    all.push(foreign);
    all.push(other_cluster);
    // A replay of the victim's own, older record.
    all.push(real.signed().clone());
    let now = h.now;
    let from = h.ids[liar].clone();
    h.node_mut(target)
        .handle_frame(
            now,
            &from,
            Frame::Records(Records {
                records: all,
                want: vec![],
                relay: true,
            }),
        )
        .unwrap();
    h.drain(target);
    let stats = h.node(target).stats().clone();
    assert_eq!(stats.records_rejected.get("forged"), Some(&3), "{stats:?}");
    assert_eq!(
        stats.records_rejected.get("signature"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.records_rejected.get("cluster"), Some(&1), "{stats:?}");
    assert!(stats.records_known >= 1);
    assert_eq!(h.node(target).fingerprint(), before);
    h.run_for(secs(30));
    assert!(h.all_see(victim, Status::Alive));
    assert_eq!(
        h.node(0).member(&h.ids[victim]).unwrap().address(),
        addr(victim)
    );
    assert!(h.node(0).member(&NodeId::from("invented-1")).is_none());
}

/// A newer version of a record of the same generation travels without
/// its credential in a push; a receiver that holds no version of that
/// generation refuses it (and gets it whole by reconciliation).
#[test]
fn pushes_of_a_known_generation_omit_the_credential() {
    let mut h = settled(6, cfg());
    h.reset_traffic();
    let node = 2;
    h.node_mut(node).set_kv("role", "db").unwrap();
    let now = h.now;
    h.node_mut(node).handle_timeout(now);
    h.drain(node);
    h.run_for(secs(3));
    assert!(h.settled());
    for i in 0..6 {
        assert_eq!(
            h.node(i).member(&h.ids[node]).unwrap().kv_get("role"),
            Some("db"),
            "node {i}"
        );
    }
    let (records, bytes) = h.traffic.by_kind["records"];
    assert!(
        bytes / records < 400,
        "{bytes} bytes in {records} pushes: credentials were sent"
    );
    // A credential-less record of a generation the receiver does not hold.
    let stripped = {
        let mut s = h
            .node(0)
            .member(&h.ids[node])
            .unwrap()
            .record()
            .signed()
            .clone();
        s.credential = std::sync::Arc::from(&[][..]);
        s
    };
    let mut lone = Harness::new(2, cfg());
    let now = lone.now;
    lone.node_mut(1)
        .handle_frame(
            now,
            &NodeId::from("n0"),
            Frame::Records(Records {
                records: vec![stripped],
                want: vec![],
                relay: true,
            }),
        )
        .unwrap();
    assert_eq!(
        lone.node(1)
            .stats()
            .records_rejected
            .get("credential_missing"),
        Some(&1)
    );
}
