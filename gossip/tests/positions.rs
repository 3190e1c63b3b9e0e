//! Naming nodes by position: cores whose tables hold the same ids speak
//! by position (no ids in digests or heartbeat news), a core holding
//! another table makes its partner fall back to ids, and either way the
//! news arrives.

#![allow(clippy::unwrap_used)] // Test code: a panic is a failed test.

use phimon_gossip::wire::{Beat, Kind, Message, Versions};
use phimon_gossip::{Gossip, GossipConfig, NodeId, Timestamp};

fn core(name: &str, seeds: &[&str]) -> Gossip {
    let config = GossipConfig {
        seeds: seeds.iter().map(|s| format!("{s}:1")).collect(),
        ..GossipConfig::default()
    };
    Gossip::new(
        config,
        NodeId::from(name),
        format!("{name}:1"),
        1,
        name.len() as u64 + u64::from(name.as_bytes()[0]),
        Timestamp::ZERO,
    )
}

/// Delivers every queued message (and the answers) until all are quiet;
/// returns what was delivered, with its sender. Messages to a seed
/// address (no node named: always by id) are delivered, not returned.
fn pump(cores: &mut [Gossip], now: Timestamp) -> Vec<(NodeId, Message)> {
    let mut seen = Vec::new();
    loop {
        let mut queued = Vec::new();
        for c in cores.iter_mut() {
            while let Some(t) = c.poll_transmit_typed() {
                queued.push((c.self_id().clone(), t));
            }
            while c.poll_event().is_some() {}
        }
        if queued.is_empty() {
            return seen;
        }
        for (from, t) in queued {
            let to = cores
                .iter()
                .position(|c| Some(c.self_id()) == t.to_node.as_ref())
                .or_else(|| {
                    cores
                        .iter()
                        .position(|c| format!("{}:1", c.self_id()) == *t.to_addr)
                });
            if let Some(k) = to {
                cores[k]
                    .handle_message_typed(now, &from, t.message.clone())
                    .unwrap();
            }
            if t.to_node.is_some() {
                seen.push((from, t.message));
            }
        }
    }
}

fn rounds(cores: &mut [Gossip], from: u64, to: u64) -> Vec<(NodeId, Message)> {
    let mut seen = Vec::new();
    for s in from..to {
        let now = Timestamp::from_micros(s * 1_000_000);
        for c in cores.iter_mut() {
            c.handle_timeout(now);
        }
        seen.extend(pump(cores, now));
    }
    seen
}

fn heartbeat(c: &Gossip, of: &str) -> Option<u64> {
    c.member(of).map(|m| m.heartbeat())
}

#[test]
fn settled_tables_speak_by_position_and_others_fall_back_to_ids() {
    let mut cores = vec![core("a", &["b"]), core("b", &[])];
    rounds(&mut cores, 1, 6);
    assert_eq!(cores[0].len(), 2);
    assert_eq!(cores[1].len(), 2);
    // Settled: SYNs carry the table by position, answers carry beats,
    // and neither names a node by id.
    let seen = rounds(&mut cores, 6, 10);
    let syns: Vec<&Message> = seen
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.kind == Kind::Syn)
        .collect();
    assert!(!syns.is_empty());
    for m in &syns {
        assert_eq!(m.digest.positions.states.len(), 2, "{m:?}");
        assert!(m.digest.entries.is_empty());
    }
    let beats: usize = seen
        .iter()
        .map(|(_, m)| m.digest.positions.beats.len())
        .sum();
    assert!(beats > 0);
    assert!(seen.iter().all(|(_, m)| m.delta.is_empty()));
    // The news arrived all the same.
    for (c, other) in [(0, "b"), (1, "a")] {
        let own = heartbeat(&cores[1 - c], other).unwrap();
        assert!(heartbeat(&cores[c], other).unwrap() + 1 >= own);
    }

    // A newcomer known to b only: b's table changes, a's positional SYN
    // is answered with an empty ACK and sent again by id, and the three
    // tables converge.
    cores.push(core("c", &["b"]));
    let seen = rounds(&mut cores, 10, 20);
    let empty_ack = seen.iter().any(|(from, m)| {
        from.as_str() == "b"
            && m.kind == Kind::Ack
            && m.delta.is_empty()
            && m.digest.entries.is_empty()
            && m.digest.positions.is_empty()
    });
    assert!(empty_ack, "b never refused a positional SYN");
    let by_id = seen.iter().any(|(from, m)| {
        from.as_str() == "a" && m.kind == Kind::Syn && m.digest.positions.states.is_empty()
    });
    assert!(by_id, "a never repeated its SYN by id");
    for c in &cores {
        assert_eq!(c.len(), 3, "{} knows {}", c.self_id(), c.len());
    }
    let late = rounds(&mut cores, 20, 24);
    assert!(
        late.iter()
            .any(|(_, m)| m.kind == Kind::Syn && m.digest.positions.states.len() == 3),
        "settled again, by position"
    );
    for c in &cores {
        for o in ["a", "b", "c"] {
            let own = heartbeat(cores.iter().find(|x| x.self_id().as_str() == o).unwrap(), o);
            assert!(heartbeat(c, o).unwrap() + 1 >= own.unwrap());
        }
    }
}

/// A positional SYN is answered slot by slot: heartbeat-only news for
/// the sender as beats, what the sender knows better (a newer heartbeat,
/// or newer metadata under the same heartbeat) as the request, another
/// generation as a full state by id, and nothing where both agree.
#[test]
fn a_positional_syn_is_answered_slot_by_slot() {
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let mut cores: Vec<Gossip> = names.iter().map(|n| core(n, &["a"])).collect();
    cores[6].set_kv("service", "api").unwrap();
    rounds(&mut cores, 1, 12);
    let seen = rounds(&mut cores, 12, 14);
    // A settled SYN of a, to be rewritten as if a knew what it says below.
    let (_, syn) = seen
        .iter()
        .find(|(from, m)| {
            from.as_str() == "a" && m.kind == Kind::Syn && m.digest.positions.states.len() == 7
        })
        .unwrap();
    let x = cores
        .iter()
        .position(|c| c.self_id().as_str() == "d")
        .unwrap();
    let table: Vec<(String, Versions)> = cores[x]
        .members()
        .map(|m| {
            let v = Versions {
                generation: m.generation(),
                heartbeat: m.heartbeat(),
                version: m.version(),
            };
            (m.node_id().to_string(), v)
        })
        .collect();
    let pos = |n: &str| table.iter().position(|(id, _)| id == n).unwrap();
    let state = |n: &str| table[pos(n)].1;
    assert!(state("b").heartbeat > 1);
    let mut states: Vec<Versions> = table.iter().map(|(_, v)| *v).collect();
    // d lacks nothing of a or itself; a lags on b's heartbeat and g's
    // metadata ...
    states[pos("b")].heartbeat -= 1;
    states[pos("g")].version -= 1;
    // ... and is ahead on e's heartbeat and on f's metadata.
    states[pos("e")].heartbeat += 1;
    states[pos("f")].version += 1;
    // a holds c's previous generation: d sends c's whole state.
    states[pos("c")].generation -= 1;
    let mut msg = syn.clone();
    msg.digest.positions.states = states.into();
    while cores[x].poll_transmit_typed().is_some() {}
    let now = Timestamp::from_micros(14_000_000);
    cores[x]
        .handle_message_typed(now, &NodeId::from("a"), msg)
        .unwrap();
    let ack = cores[x].poll_transmit_typed().unwrap();
    assert_eq!(ack.to_node.as_ref().map(NodeId::as_str), Some("a"));
    let ack = ack.message;
    assert_eq!(ack.kind, Kind::Ack);
    let b = state("b");
    assert_eq!(
        ack.digest.positions.beats,
        vec![Beat {
            position: pos("b") as u32,
            generation: b.generation,
            heartbeat: b.heartbeat,
        }]
    );
    let request: Vec<(u32, Versions)> = ack
        .digest
        .positions
        .request
        .iter()
        .map(|r| (r.position, r.known))
        .collect();
    assert_eq!(
        request,
        vec![(pos("e") as u32, state("e")), (pos("f") as u32, state("f"))]
    );
    let delta: Vec<&str> = ack.delta.iter().map(|d| d.node_id.as_str()).collect();
    assert_eq!(delta, ["c", "g"]);
    assert_eq!(ack.delta[0].generation, state("c").generation);
    assert!(ack.delta[0].address.is_some(), "a whole state");
    let g = &ack.delta[1];
    assert_eq!(
        (g.from_version, g.version),
        (state("g").version - 1, state("g").version)
    );
    assert!(g.address.is_none(), "only what changed");
    assert_eq!(g.kv.len(), 1);
}
