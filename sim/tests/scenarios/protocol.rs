//! Membership and monitoring.

use super::{config, joined, record_at, secs};
use phimon_gossip::wire::{Frame, Records};
use phimon_gossip::{Declared, Event, NodeId, Record, RecordBody, SharedSecretAuthority, Status};
use phimon_sim::{Cluster, Logged, address};
use std::sync::Arc;

#[test]
fn a_cluster_joins_settles_and_is_quiet_when_nothing_happens() {
    let n = 12;
    let mut c = joined(n, config());
    // Observers handed over during the join linger a few intervals.
    c.run_for(secs(5));
    for i in 0..n {
        let g = c.node(i).unwrap().gossip();
        assert_eq!(g.len(), n);
        assert_eq!(g.targets().count(), 3, "node {i}: k = 3 observers");
        assert_eq!(g.subjects().len(), 3);
    }
    c.reset_traffic();
    c.run_for(secs(60));
    let t = c.traffic();
    // Settled: no reconciliation, only heartbeats and probes, a fixed
    // number of small datagrams per node whatever the fleet's size.
    assert_eq!(t.reliable(), 0, "{t:?}");
    let per_node_round = t.bytes() as f64 / (n as f64 * 60.0);
    assert!(per_node_round < 100.0, "{per_node_round:.0} bytes: {t:?}");
    let hb = t.of("heartbeat").0;
    assert!(hb >= 3 * 59 * n as u64 && hb <= 3 * 61 * n as u64, "{hb}");
    assert!(t.of("probe").0 <= 61 * n as u64 * 11 / 10, "{t:?}");
}

#[test]
fn a_crashed_node_is_suspected_everywhere_then_forgotten() {
    let mut cfg = config();
    cfg.node.gossip.dead_grace = secs(120);
    let mut c = joined(8, cfg);
    let victim = 5;
    let mark = c.log().len();
    c.crash(victim);
    let took = c
        .run_until(secs(60), |c| c.all_see(victim, Status::Suspected))
        .expect("suspected everywhere");
    assert!(took < secs(30), "{took:?}");
    // Its observers said so, each once.
    let id = c.id(victim).clone();
    let verdicts = c.log()[mark..]
        .iter()
        .filter(|(_, _, l)| {
            matches!(l, Logged::Event(Event::Verdict { subject, suspected: true, .. }) if *subject == id)
        })
        .count();
    assert!((2..=3).contains(&verdicts), "{verdicts} suspicions");
    for x in c.up() {
        assert!(c.all_see(x, Status::Alive), "node {x}");
    }
    // Forgotten after dead_grace, everywhere.
    c.run_for(secs(130));
    for i in c.up() {
        assert!(c.status(i, victim).is_none(), "node {i} still knows it");
        assert_eq!(c.node(i).unwrap().gossip().len(), 7);
    }
    assert!(c.converged());
}

#[test]
fn a_restart_is_a_new_generation_and_ends_the_suspicion() {
    let mut c = joined(6, config());
    c.crash(2);
    c.run_until(secs(60), |c| c.all_see(2, Status::Suspected))
        .expect("suspected");
    let mark = c.log().len();
    c.start(2);
    c.run_until(secs(30), |c| c.all_see(2, Status::Alive))
        .expect("alive again");
    let id = c.id(2).clone();
    let restarted = c.log()[mark..].iter().any(|(_, i, l)| {
        *i == 0
            && matches!(l, Logged::Event(Event::Restarted { node, old_generation: 1, new_generation: 2 }) if *node == id)
    });
    assert!(restarted);
    assert_eq!(
        c.node(0)
            .unwrap()
            .gossip()
            .member(&id)
            .unwrap()
            .generation(),
        2
    );
}

#[test]
fn a_leaving_node_is_never_suspected() {
    let mut c = joined(6, config());
    let now = c.now();
    c.node_mut(4).unwrap().leave(now);
    c.flush(4);
    c.run_until(secs(10), |c| c.node(4).unwrap().leave_complete())
        .expect("leave completes");
    c.crash(4);
    c.run_until(secs(10), |c| c.all_see(4, Status::Left))
        .expect("left everywhere");
    c.run_for(secs(60));
    assert!(!c.any_sees(4, Status::Suspected));
    assert!(c.all_see(4, Status::Left));
}

#[test]
fn an_observer_crash_hands_over_without_a_false_suspicion() {
    let mut c = joined(10, config());
    let first = c
        .node(1)
        .unwrap()
        .gossip()
        .member(c.id(0))
        .unwrap()
        .first_observer()
        .cloned()
        .unwrap();
    let o = c.index_of(&first).unwrap();
    c.crash(o);
    c.run_until(secs(60), |c| c.all_see(o, Status::Suspected))
        .expect("observer suspected");
    c.run_for(secs(60));
    for x in c.up() {
        assert!(
            !c.any_sees(x, Status::Suspected),
            "node {x} falsely suspected"
        );
        assert!(c.all_see(x, Status::Alive), "node {x}");
    }
    // Node 0 has a full set of live observers again, all hearing it.
    let g = c.node(1).unwrap().gossip();
    let obs = g.member(c.id(0)).unwrap().observers();
    assert_eq!(obs.len(), 3);
    assert!(obs.iter().all(|v| *v.observer != first));
    assert!(obs.iter().all(|v| v.suspected == Some(false)), "{obs:?}");
}

#[test]
fn a_partition_is_suspected_on_both_sides_and_heals() {
    let mut c = joined(6, config());
    c.partition(&[0, 1, 2], &[3, 4, 5]);
    c.run_for(secs(60));
    for (at, of) in [(0, 4), (1, 3), (5, 0), (3, 2)] {
        assert_eq!(c.status(at, of), Some(Status::Suspected), "{at} on {of}");
    }
    c.heal();
    let took = c.run_until(secs(90), |c| {
        c.converged() && (0..6).all(|x| c.all_see(x, Status::Alive))
    });
    assert!(took.is_some(), "did not heal");
}

#[test]
fn lossy_datagrams_raise_no_false_suspicion() {
    let mut c = joined(8, config());
    c.set_loss(0.05);
    c.run_for(secs(600));
    for x in 0..8 {
        assert!(
            !c.any_sees(x, Status::Suspected),
            "node {x} suspected under 5% loss"
        );
    }
}

#[test]
fn a_late_joiner_learns_the_table_by_reconciliation() {
    let n = 30;
    let mut c = Cluster::new(n, config());
    c.crash(n - 1);
    c.run_until(secs(60), |c| c.converged()).expect("settled");
    c.start(n - 1);
    c.run_until(secs(30), |c| {
        c.converged() && c.all_see(n - 1, Status::Alive)
    })
    .expect("joined");
    assert_eq!(c.node(n - 1).unwrap().gossip().len(), n);
}

#[test]
fn an_observer_stall_raises_no_suspicion() {
    let mut c = joined(6, config());
    c.run_for(secs(30));
    let mark = c.log().len();
    c.stall(1, secs(20));
    c.run_for(secs(40));
    let suspicions = c.log()[mark..]
        .iter()
        .filter(|(_, i, l)| {
            *i == 1
                && matches!(
                    l,
                    Logged::Event(Event::Verdict {
                        suspected: true,
                        ..
                    })
                )
        })
        .count();
    assert_eq!(suspicions, 0, "the stalled node suspected its subjects");
    // Its own observers did suspect it while it was stopped; it is
    // alive again now.
    assert!(c.all_see(1, Status::Alive));
}

/// Every forgery a member holding its own credential can try: speaking
/// for another node (any address, generation, status), inventing ids,
/// replaying old records, another cluster's records. Each is refused and
/// counted, and nothing changes.
#[test]
fn no_member_can_speak_for_another() {
    let mut c = joined(6, config());
    let (liar, victim, target) = (1usize, 2usize, 3usize);
    let auth = c.authority().clone();
    let mut liar_signer = auth.signer(c.id(liar));
    let before = c.node(target).unwrap().gossip().fingerprint();
    let real = record_at(&c, target, c.id(victim));
    let forge = |node: &NodeId, f: &dyn Fn(&mut RecordBody)| {
        let mut b = real.body().clone();
        b.node = node.clone();
        f(&mut b);
        b
    };
    let mut sign = |b: RecordBody| Record::sign(b, &mut liar_signer).unwrap().signed().clone();
    let victim_id = c.id(victim).clone();
    let mut all = vec![
        // The victim's record with a far generation and a bogus address.
        sign(forge(&victim_id, &|b| {
            b.generation += 1 << 32;
            b.address = "203.0.113.9:1".into();
        })),
        // The victim declaring it left.
        sign(forge(&victim_id, &|b| {
            b.version += 1;
            b.status = Declared::Left;
        })),
        // An invented id.
        sign(forge(&NodeId::from("invented-1"), &|_| {})),
    ];
    // A record signed under another cluster's secret.
    let mut foreign = SharedSecretAuthority::new(b"other secret").signer(&victim_id);
    let mut b = real.body().clone();
    b.version += 5;
    all.push(Record::sign(b, &mut foreign).unwrap().signed().clone());
    // Another cluster's name, signed with the victim's own key.
    let mut victim_signer = auth.signer(&victim_id);
    let mut b = real.body().clone();
    b.version += 7;
    b.cluster = "other".into();
    all.push(
        Record::sign(b, &mut victim_signer)
            .unwrap()
            .signed()
            .clone(),
    );
    // A replay of the victim's own, current record.
    all.push(real.signed().clone());
    let from = c.id(liar).clone();
    let r = c.inject(
        &from,
        target,
        Frame::Records(Records {
            records: all,
            want: vec![],
            relay: true,
        }),
    );
    assert_eq!(r, Some(Ok(())));
    let stats = c.node(target).unwrap().gossip().stats().clone();
    assert_eq!(stats.records_rejected.get("forged"), Some(&3), "{stats:?}");
    assert_eq!(
        stats.records_rejected.get("signature"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.records_rejected.get("cluster"), Some(&1), "{stats:?}");
    assert!(stats.records_known >= 1);
    assert_eq!(c.node(target).unwrap().gossip().fingerprint(), before);
    c.run_for(secs(30));
    assert!(c.all_see(victim, Status::Alive));
    let m0 = c.node(0).unwrap().gossip();
    assert_eq!(m0.member(&victim_id).unwrap().address(), address(victim));
    assert!(m0.member(&NodeId::from("invented-1")).is_none());
}

/// A newer version of a record of the same generation travels without
/// its credential in a push; a node that holds no version of that
/// generation refuses it and gets it whole by reconciliation.
#[test]
fn pushes_of_a_known_generation_omit_the_credential() {
    let mut c = joined(6, config());
    c.reset_traffic();
    let node = 2;
    let now = c.now();
    c.node_mut(node).unwrap().set_kv(now, "role", "db").unwrap();
    c.flush(node);
    c.run_for(secs(3));
    assert!(c.converged());
    let id = c.id(node).clone();
    for i in 0..6 {
        let m = c
            .node(i)
            .unwrap()
            .gossip()
            .member(&id)
            .unwrap()
            .kv_get("role")
            .map(str::to_owned);
        assert_eq!(m.as_deref(), Some("db"), "node {i}");
    }
    let (records, bytes) = c.traffic().of("records");
    assert!(records > 0);
    assert!(
        bytes / records < 400,
        "{bytes} bytes in {records} pushes: credentials were sent"
    );
    let mut stripped = record_at(&c, 0, &id).signed().clone();
    stripped.credential = Arc::from(&[][..]);
    let mut lone = Cluster::new(2, config());
    let from = lone.id(0).clone();
    lone.inject(
        &from,
        1,
        Frame::Records(Records {
            records: vec![stripped],
            want: vec![],
            relay: true,
        }),
    );
    let stats = lone.node(1).unwrap().gossip().stats().clone();
    assert_eq!(stats.records_rejected.get("credential_missing"), Some(&1));
}

/// After a certificate reload the runtime re-signs the node's record: a
/// new version, otherwise unchanged, reaches every node.
#[test]
fn a_resigned_record_reaches_every_node() {
    let mut c = joined(6, config());
    let node = 3;
    let id = c.id(node).clone();
    let before = record_at(&c, 0, &id).body().clone();
    let now = c.now();
    c.node_mut(node).unwrap().resign(now);
    c.flush(node);
    c.run_for(secs(3));
    assert!(c.converged());
    for i in (0..6).filter(|i| *i != node) {
        let after = record_at(&c, i, &id).body().clone();
        assert_eq!(after.version, before.version + 1, "node {i}");
        assert_eq!(
            (after.generation, &after.kv, &after.address),
            (before.generation, &before.kv, &before.address)
        );
    }
    assert!(c.all_see(node, Status::Alive));
}

/// Thousands of malformed, mutated and well-formed-but-hostile frames
/// into a live node, from a non-member and from a real member: each is
/// refused or harmless, nothing panics, and the fleet stays as it was.
#[test]
fn hostile_bytes_into_a_live_node_change_nothing() {
    use phimon_gossip::wire::{Digest, DigestEntry, Heartbeat, Probe, SignedRecord, Summary};
    use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
    let n = 6;
    let mut c = joined(n, config());
    let target = 0;
    let member = c.id(3).clone();
    let outsider = NodeId::from("mallory");
    let real = record_at(&c, target, c.id(2)).signed().clone();
    let mut rng = StdRng::seed_from_u64(17);
    let mut refused = 0u32;
    let fingerprint = c.node(target).unwrap().gossip().fingerprint();
    for round in 0..3000u32 {
        let frame = match rng.random_range(0..6) {
            0 => Frame::Heartbeat(Heartbeat {
                generation: rng.random(),
                seq: rng.random(),
                fingerprint: rng.random(),
            }),
            1 => Frame::Probe(Probe {
                fingerprint: rng.random(),
                members: rng.random(),
                reply: rng.random(),
            }),
            2 => Frame::Summary(Summary {
                fingerprint,
                members: rng.random(),
                buckets: (0..256).map(|_| rng.random()).collect(),
            }),
            3 => Frame::Digest(Digest {
                buckets: vec![rng.random()],
                entries: vec![DigestEntry(rng.random(), rng.random(), rng.random())],
            }),
            4 => {
                let mut body = real.body.to_vec();
                let i = rng.random_range(0..body.len());
                body[i] ^= 1 << rng.random_range(0..8);
                Frame::Records(Records {
                    records: vec![SignedRecord {
                        body: Arc::from(body),
                        signature: real.signature.clone(),
                        credential: real.credential.clone(),
                    }],
                    want: vec![rng.random()],
                    relay: true,
                })
            }
            _ => Frame::Records(Records {
                records: Vec::new(),
                want: (0..rng.random_range(0..50)).map(|_| rng.random()).collect(),
                relay: false,
            }),
        };
        let mut bytes = frame.encode();
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
        }
        if rng.random_bool(0.1) {
            bytes.truncate(rng.random_range(0..bytes.len()));
        }
        if rng.random_bool(0.05) {
            bytes.resize(rng.random_range(0..3000), 0);
            rng.fill_bytes(&mut bytes);
        }
        // Heartbeats only from the outsider: a member may say anything
        // about itself, including a new generation.
        let from = if round % 2 == 0 || matches!(frame, Frame::Heartbeat(_)) {
            &outsider
        } else {
            &member
        };
        let now = c.now();
        let node = c.node_mut(target).unwrap();
        let r = match frame.channel() {
            phimon_gossip::wire::Channel::Datagram => node.handle_datagram(now, from, &bytes),
            _ => node.handle_message(now, from, &bytes),
        };
        refused += u32::from(r.is_err());
        c.flush(target);
        if round % 100 == 0 {
            c.run_for(secs(1));
        }
    }
    c.run_for(secs(30));
    assert!(c.converged());
    for i in 0..n {
        assert!(c.all_see(i, Status::Alive), "node {i}");
        assert_eq!(c.node(i).unwrap().gossip().len(), n, "node {i}");
    }
    let stats = c.node(target).unwrap().gossip().stats();
    let records_refused: u64 = stats.records_rejected.values().sum();
    // Both layers were reached: the decoder and the record checks.
    assert!(refused > 500, "{refused} frames refused");
    assert!(records_refused > 100, "{stats:?}");
}
