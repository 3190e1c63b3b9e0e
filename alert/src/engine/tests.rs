//! Scripted scenarios: a fleet of engines on a simulated clock, with
//! gossip modelled as instant dissemination within a connected component.

use super::*;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);
const BEAT: Duration = Duration::from_secs(1);

fn ts(secs: f64) -> Timestamp {
    Timestamp::from_millis_f64(secs * 1000.0)
}

/// phi of a peer silent for `silence`: 0 up to 1 s, then 2 per second,
/// so threshold 8 is crossed after 5 s and resolve 4 needs < 3 s.
fn phi_after(silence: Duration) -> f64 {
    ((silence.as_secs_f64() - 1.0) * 2.0).max(0.0)
}

/// What an observer last heard of a peer: generation, heartbeat, when,
/// status.
type Heard = (u64, u64, Timestamp, MemberStatus);

struct Fleet {
    ids: Vec<String>,
    engines: Vec<AlertEngine>,
    up: Vec<bool>,
    cut: BTreeSet<(usize, usize)>,
    generation: Vec<u64>,
    heartbeat: Vec<u64>,
    last_beat: Vec<Timestamp>,
    status: Vec<MemberStatus>,
    degraded: Vec<bool>,
    /// Per observer, per subject: (generation, heartbeat, when heard).
    heard: Vec<Vec<Option<Heard>>>,
    /// Per observer, per reporter: the last report seen.
    reports_seen: Vec<Vec<BTreeSet<String>>>,
    now: Timestamp,
    events: Vec<(usize, AlertEvent)>,
}

impl Fleet {
    fn new(n: usize, config: AlertConfig) -> Fleet {
        let ids: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
        let engines = ids
            .iter()
            .map(|id| AlertEngine::new(config.clone(), id.clone()))
            .collect();
        let mut f = Fleet {
            ids,
            engines,
            up: vec![true; n],
            cut: BTreeSet::new(),
            generation: vec![1; n],
            heartbeat: vec![0; n],
            last_beat: vec![Timestamp::ZERO; n],
            status: vec![MemberStatus::Alive; n],
            degraded: vec![false; n],
            heard: vec![vec![None; n]; n],
            reports_seen: vec![vec![BTreeSet::new(); n]; n],
            now: Timestamp::ZERO,
            events: Vec::new(),
        };
        f.run(Duration::from_secs(10));
        assert!(
            f.events.is_empty(),
            "no pages in a healthy fleet: {:?}",
            f.events
        );
        f
    }

    fn connected(&self) -> Vec<usize> {
        // Union-find over running nodes and uncut links: gossip relays
        // heartbeats across any path.
        let n = self.ids.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut x = x;
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for i in 0..n {
            for j in (i + 1)..n {
                if self.up[i] && self.up[j] && !self.cut.contains(&(i, j)) {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
            }
        }
        (0..n).map(|i| find(&mut parent, i)).collect()
    }

    fn step(&mut self) {
        self.now = self.now + TICK;
        let n = self.ids.len();
        for j in 0..n {
            if self.up[j] && self.now >= self.last_beat[j] + BEAT {
                self.heartbeat[j] += 1;
                self.last_beat[j] = self.now;
            }
        }
        let comp = self.connected();
        for i in 0..n {
            if !self.up[i] {
                continue;
            }
            for j in 0..n {
                if i != j && self.up[j] && comp[i] == comp[j] {
                    self.heard[i][j] = Some((
                        self.generation[j],
                        self.heartbeat[j],
                        self.last_beat[j],
                        self.status[j],
                    ));
                    self.reports_seen[i][j] =
                        self.engines[j].suspicion_report().iter().cloned().collect();
                }
            }
        }
        for i in 0..n {
            if !self.up[i] {
                continue;
            }
            let members = (0..n)
                .filter(|j| *j != i)
                .filter_map(|j| {
                    let (generation, heartbeat, at, status) = self.heard[i][j]?;
                    Some(MemberView {
                        node_id: self.ids[j].clone(),
                        generation,
                        heartbeat,
                        status,
                        phi: phi_after(self.now - at),
                    })
                })
                .collect();
            let suspicions = (0..n)
                .filter(|j| *j != i)
                .map(|j| (self.ids[j].clone(), self.reports_seen[i][j].clone()))
                .collect();
            let view = ClusterView {
                generation: self.generation[i],
                members,
                suspicions,
                degraded: self.degraded[i],
            };
            self.engines[i].handle_tick(self.now, &view);
            while let Some(ev) = self.engines[i].poll_event() {
                self.events.push((i, ev));
            }
            if let Some(t) = self.engines[i].poll_timeout() {
                assert!(t > self.now, "timeout in the past");
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn kill(&mut self, i: usize) {
        self.up[i] = false;
    }

    /// Restart with a new generation and a fresh engine (state is lost).
    fn restart(&mut self, i: usize, config: &AlertConfig) {
        self.up[i] = true;
        self.generation[i] += 1;
        self.heartbeat[i] = 0;
        self.last_beat[i] = self.now;
        self.engines[i] = AlertEngine::new(config.clone(), self.ids[i].clone());
        for j in 0..self.ids.len() {
            self.heard[i][j] = None;
            self.reports_seen[i][j].clear();
        }
    }

    fn isolate(&mut self, i: usize) {
        for j in 0..self.ids.len() {
            if j != i {
                self.cut.insert((i.min(j), i.max(j)));
            }
        }
    }

    fn take_events(&mut self) -> Vec<(usize, AlertEvent)> {
        std::mem::take(&mut self.events)
    }
}

fn of(events: &[(usize, AlertEvent)], kind: EventKind, scope: Scope) -> Vec<&AlertEvent> {
    events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.kind == kind && e.scope == scope)
        .collect()
}

fn config() -> AlertConfig {
    AlertConfig {
        cluster: "test".into(),
        ..AlertConfig::default()
    }
}

#[test]
fn one_page_per_incident_in_three_and_five_node_fleets() {
    for n in [3, 5] {
        let cfg = config();
        let mut f = Fleet::new(n, cfg.clone());
        let killed_at = f.now;
        f.kill(1);
        f.run(Duration::from_secs(20));
        let ev = f.take_events();
        let sus = of(&ev, EventKind::Suspected, Scope::Node);
        assert_eq!(sus.len(), 1, "n={n}: exactly one page: {ev:?}");
        assert_eq!(ev.len(), 1, "n={n}: nothing else: {ev:?}");
        let page = sus[0];
        assert_eq!(page.subject, "node-1");
        assert!(page.phi >= 8.0);
        // Detected after 5 s of silence, paged after group_wait.
        let latency = page.at - killed_at;
        assert!(latency >= Duration::from_secs(6), "{latency:?}");
        assert!(latency <= Duration::from_secs(9), "{latency:?}");
        // The sender is a designated observer of the subject.
        let live: Vec<&str> = f
            .ids
            .iter()
            .map(String::as_str)
            .filter(|x| *x != "node-1")
            .collect();
        let observers = designated_observers("node-1", live, 3);
        assert!(observers.contains(&page.observer.as_str()));

        f.restart(1, &cfg);
        f.run(Duration::from_secs(10));
        let ev = f.take_events();
        let restarted = of(&ev, EventKind::Restarted, Scope::Node);
        let recovered = of(&ev, EventKind::Recovered, Scope::Node);
        assert_eq!(restarted.len(), 1, "n={n}: {ev:?}");
        assert_eq!(recovered.len(), 1, "n={n}: {ev:?}");
        assert_eq!(ev.len(), 2, "n={n}: {ev:?}");
        for e in [restarted[0], recovered[0]] {
            assert_eq!(e.incident_id, page.incident_id, "one incident id");
            assert_eq!(e.observer, page.observer, "the pager resolves");
        }
        assert_ne!(restarted[0].event_id, recovered[0].event_id);
        assert_eq!(recovered[0].generation, 1, "resolves the incarnation paged");
    }
}

#[test]
fn every_observer_derives_the_same_ids() {
    // Three engines that all suspect the same subject, each forced to page
    // (k = 1 makes each its own designated observer set of one when views
    // differ), must name the incident alike.
    let id = node_incident_id("c", "node-9", 4, 1234);
    assert_eq!(id, node_incident_id("c", "node-9", 4, 1234));
    assert_ne!(id, node_incident_id("c", "node-9", 4, 1235));
    assert_ne!(id, node_incident_id("c", "node-9", 5, 1234));
    assert_ne!(id, node_incident_id("d", "node-9", 4, 1234));
    assert!(id.starts_with("inc_") && id.len() == 36);
    assert_eq!(
        event_id(&id, EventKind::Suspected, 0),
        event_id(&id, EventKind::Suspected, 0)
    );
    assert_ne!(
        event_id(&id, EventKind::Suspected, 0),
        event_id(&id, EventKind::Recovered, 0)
    );
}

#[test]
fn holder_death_hands_the_incident_over_under_the_same_id() {
    let cfg = config();
    let mut f = Fleet::new(6, cfg.clone());
    f.kill(2);
    f.run(Duration::from_secs(15));
    let first = f.take_events();
    assert_eq!(first.len(), 1, "{first:?}");
    let holder = first[0].0;
    let incident = first[0].1.incident_id.clone();
    // The pager dies: its page is not lost, another designated observer
    // takes over with the same incident id (receivers dedupe), and it
    // owes the resolution.
    f.kill(holder);
    f.run(Duration::from_secs(15));
    let ev = f.take_events();
    let about_2: Vec<_> = ev.iter().filter(|(_, e)| e.subject == "node-2").collect();
    assert_eq!(about_2.len(), 1, "{ev:?}");
    assert_eq!(about_2[0].1.incident_id, incident);
    assert_eq!(about_2[0].1.event_id, first[0].1.event_id);
    let new_holder = about_2[0].0;
    f.restart(2, &cfg);
    f.run(Duration::from_secs(10));
    let ev = f.take_events();
    let rec: Vec<_> = ev
        .iter()
        .filter(|(_, e)| e.subject == "node-2" && e.kind == EventKind::Recovered)
        .collect();
    assert_eq!(rec.len(), 1, "{ev:?}");
    assert_eq!(rec[0].0, new_holder);
    assert_eq!(rec[0].1.incident_id, incident);
}

#[test]
fn isolated_observer_pages_about_itself_only() {
    let cfg = config();
    let mut f = Fleet::new(7, cfg.clone());
    f.isolate(0);
    f.run(Duration::from_secs(20));
    let ev = f.take_events();
    let from_0: Vec<&AlertEvent> = ev.iter().filter(|(i, _)| *i == 0).map(|(_, e)| e).collect();
    assert_eq!(from_0.len(), 1, "{from_0:?}");
    assert_eq!(from_0[0].scope, Scope::Partition);
    assert_eq!(from_0[0].kind, EventKind::Suspected);
    assert_eq!(from_0[0].subject, "node-0");
    assert_eq!(from_0[0].nodes.len(), 6);
    assert!(f.engines[0].is_isolated());
    assert!(f.engines[0].suspicion_report().is_empty());
    // The rest of the fleet pages once about node-0.
    let others: Vec<&AlertEvent> = ev.iter().filter(|(i, _)| *i != 0).map(|(_, e)| e).collect();
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].subject, "node-0");
    assert_eq!(others[0].scope, Scope::Node);

    // Long isolation does not decay into pages about everyone.
    f.run(Duration::from_secs(120));
    assert!(f.take_events().is_empty());

    f.cut.clear();
    f.run(Duration::from_secs(10));
    let ev = f.take_events();
    let rec = of(&ev, EventKind::Recovered, Scope::Partition);
    assert_eq!(rec.len(), 1, "{ev:?}");
    assert_eq!(rec[0].incident_id, from_0[0].incident_id);
    assert_eq!(
        of(&ev, EventKind::Recovered, Scope::Node).len(),
        1,
        "{ev:?}"
    );
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(!f.engines[0].is_isolated());
}

#[test]
fn mass_failure_is_one_grouped_page() {
    let cfg = config();
    let mut f = Fleet::new(12, cfg.clone());
    for i in [3, 5, 8, 10] {
        f.kill(i);
    }
    f.run(Duration::from_secs(30));
    let ev = f.take_events();
    assert_eq!(ev.len(), 1, "one page for four nodes: {ev:?}");
    let g = &ev[0].1;
    assert_eq!((g.kind, g.scope), (EventKind::Suspected, Scope::Group));
    assert_eq!(g.nodes, vec!["node-10", "node-3", "node-5", "node-8"]);
    assert!(g.phi >= 8.0);
    let holder = ev[0].0;

    for i in [3, 5, 8, 10] {
        f.restart(i, &cfg);
    }
    f.run(Duration::from_secs(15));
    let ev = f.take_events();
    assert_eq!(ev.len(), 1, "one resolution, no restart storm: {ev:?}");
    assert_eq!(ev[0].0, holder);
    assert_eq!(
        (ev[0].1.kind, ev[0].1.scope),
        (EventKind::Recovered, Scope::Group)
    );
    assert_eq!(ev[0].1.incident_id, g.incident_id);
}

#[test]
fn later_failures_join_an_open_group() {
    let cfg = config();
    let mut f = Fleet::new(12, cfg.clone());
    for i in [1, 2, 3] {
        f.kill(i);
    }
    f.run(Duration::from_secs(20));
    let ev = f.take_events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    f.kill(4);
    f.run(Duration::from_secs(20));
    let ev2 = f.take_events();
    assert_eq!(ev2.len(), 1, "{ev2:?}");
    let update = &ev2[0].1;
    assert_eq!(update.scope, Scope::Group);
    assert_eq!(update.incident_id, ev[0].1.incident_id);
    assert_ne!(
        update.event_id, ev[0].1.event_id,
        "a new event of the incident"
    );
    assert_eq!(update.nodes.len(), 4);
}

#[test]
fn quick_restart_is_announced_once() {
    let cfg = config();
    let mut f = Fleet::new(5, cfg.clone());
    f.kill(4);
    f.run(Duration::from_secs(2));
    f.restart(4, &cfg);
    f.run(Duration::from_secs(10));
    let ev = f.take_events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].1.kind, EventKind::Restarted);
    assert_eq!(ev[0].1.subject, "node-4");
    assert_eq!(ev[0].1.generation, 2);
}

#[test]
fn departing_nodes_never_page() {
    let cfg = config();
    let mut f = Fleet::new(5, cfg.clone());
    f.status[2] = MemberStatus::Left;
    f.run(Duration::from_secs(1));
    f.kill(2);
    f.run(Duration::from_secs(30));
    assert!(f.take_events().is_empty());
}

#[test]
fn scenarios_replay_exactly() {
    let run = || {
        let cfg = config();
        let mut f = Fleet::new(9, cfg.clone());
        f.kill(1);
        f.kill(7);
        f.run(Duration::from_secs(20));
        f.restart(1, &cfg);
        f.run(Duration::from_secs(20));
        f.take_events()
    };
    let a = run();
    assert!(!a.is_empty());
    assert_eq!(a, run());
}

// --- one engine, hand-built views ------------------------------------

/// A view with one peer, so this node is its only designated observer.
fn view1(phi: f64) -> ClusterView {
    ClusterView {
        generation: 1,
        members: vec![MemberView {
            node_id: "peer".into(),
            generation: 1,
            heartbeat: 10,
            status: MemberStatus::Alive,
            phi,
        }],
        suspicions: BTreeMap::new(),
        degraded: false,
    }
}

fn cfg_fast() -> AlertConfig {
    AlertConfig {
        group_wait: Duration::ZERO,
        ..config()
    }
}

fn drain(e: &mut AlertEngine) -> Vec<AlertEvent> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn hysteresis_pages_once_for_a_peer_hovering_at_the_threshold() {
    let mut e = AlertEngine::new(cfg_fast(), "me");
    let mut t = 0.0;
    let mut events = Vec::new();
    // phi oscillates between 5 and 9 for a minute: around the threshold
    // but never below the resolve threshold.
    for i in 0..600 {
        let phi = if i % 7 < 3 { 9.0 } else { 5.0 };
        e.handle_tick(ts(t), &view1(phi));
        events.extend(drain(&mut e));
        t += 0.1;
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::Suspected);
    e.handle_tick(ts(t), &view1(3.9));
    let rec = drain(&mut e);
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].kind, EventKind::Recovered);
    assert_eq!(rec[0].incident_id, events[0].incident_id);
}

#[test]
fn for_delays_suspicion_and_resets_on_a_dip() {
    let cfg = AlertConfig {
        for_: Duration::from_secs(3),
        ..cfg_fast()
    };
    let mut e = AlertEngine::new(cfg, "me");
    e.handle_tick(ts(0.0), &view1(9.0));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(ts(3.0)));
    e.handle_tick(ts(2.0), &view1(7.9)); // dips below: the clock restarts
    e.handle_tick(ts(2.5), &view1(9.0));
    e.handle_tick(ts(5.0), &view1(9.0));
    assert!(drain(&mut e).is_empty());
    assert!(!e.is_suspected("peer"));
    e.handle_tick(ts(5.5), &view1(9.0));
    let ev = drain(&mut e);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(e.is_suspected("peer"));
    assert_eq!(e.suspicion_report(), ["peer".to_string()]);
}

#[test]
fn degraded_node_raises_nothing_and_reports_nothing() {
    let mut e = AlertEngine::new(cfg_fast(), "me");
    let mut v = view1(20.0);
    v.degraded = true;
    for i in 0..100 {
        e.handle_tick(ts(f64::from(i) * 0.1), &v);
    }
    assert!(drain(&mut e).is_empty());
    assert!(e.suspicion_report().is_empty());
    assert!(!e.is_suspected("peer"));
    // Health back, peer still silent: now it pages.
    e.handle_tick(ts(10.1), &view1(20.0));
    assert_eq!(drain(&mut e).len(), 1);
}

#[test]
fn quorum_needs_a_second_designated_observer() {
    // Three nodes: me, b, and the subject s. Designated observers of s
    // are me and b; a page needs both.
    let mut e = AlertEngine::new(cfg_fast(), "me");
    let members = |phi_s: f64| {
        vec![
            MemberView {
                node_id: "b".into(),
                generation: 1,
                heartbeat: 5,
                status: MemberStatus::Alive,
                phi: 0.5,
            },
            MemberView {
                node_id: "s".into(),
                generation: 1,
                heartbeat: 7,
                status: MemberStatus::Alive,
                phi: phi_s,
            },
        ]
    };
    let mut v = ClusterView {
        generation: 1,
        members: members(12.0),
        suspicions: BTreeMap::new(),
        degraded: false,
    };
    for i in 0..50 {
        e.handle_tick(ts(f64::from(i)), &v);
    }
    assert!(drain(&mut e).is_empty(), "b does not agree: no page");
    assert_eq!(e.suspicion_report(), ["s".to_string()]);
    v.suspicions
        .insert("b".into(), ["s".to_string()].into_iter().collect());
    e.handle_tick(ts(51.0), &v);
    let ev = drain(&mut e);
    // Rank decides which of the two agreeing observers sends.
    let leader = designated_observers("s", ["me", "b"], 3)[0];
    assert_eq!(ev.len(), usize::from(leader == "me"), "{ev:?}");
    if let Some(p) = ev.first() {
        assert_eq!(p.incident_id, node_incident_id("test", "s", 1, 7));
    }
}

#[test]
fn reports_of_suspected_observers_do_not_count() {
    // k = 2 and a subject whose designated observers are [me, b]: b's
    // report completes the quorum only while b itself is trusted.
    let cfg = AlertConfig {
        observers: 2,
        ..cfg_fast()
    };
    let all = ["me", "b", "c", "d", "e"];
    let subject = (0..1000)
        .map(|i| format!("s{i}"))
        .find(|s| designated_observers(s, all, 2) == ["me", "b"])
        .unwrap();
    let view = |phi_b: f64| ClusterView {
        generation: 1,
        members: ["b", "c", "d", "e", subject.as_str()]
            .iter()
            .map(|id| MemberView {
                node_id: id.to_string(),
                generation: 1,
                heartbeat: 7,
                status: MemberStatus::Alive,
                phi: if *id == "b" {
                    phi_b
                } else if *id == subject {
                    30.0
                } else {
                    0.0
                },
            })
            .collect(),
        suspicions: [("b".to_string(), [subject.clone()].into_iter().collect())]
            .into_iter()
            .collect(),
        degraded: false,
    };
    let mut e = AlertEngine::new(cfg.clone(), "me");
    e.handle_tick(ts(1.0), &view(30.0));
    e.handle_tick(ts(2.0), &view(30.0));
    assert!(
        drain(&mut e).is_empty(),
        "b is suspected: its report is void"
    );
    assert!(!e.is_isolated());

    let mut e = AlertEngine::new(cfg, "me");
    e.handle_tick(ts(1.0), &view(0.0));
    let ev = drain(&mut e);
    assert_eq!(ev.len(), 1, "b trusted: quorum of 2 met: {ev:?}");
    assert_eq!(ev[0].subject, subject);
}

#[test]
fn most_peers_silent_at_once_is_isolation_but_long_dead_peers_are_not() {
    let mut e = AlertEngine::new(cfg_fast(), "me");
    let member = |id: &str, phi: f64| MemberView {
        node_id: id.into(),
        generation: 1,
        heartbeat: 1,
        status: MemberStatus::Alive,
        phi,
    };
    // Two peers die one after the other, far apart in time.
    let mut v = ClusterView {
        generation: 3,
        members: vec![member("a", 0.0), member("b", 0.0), member("c", 0.0)],
        ..ClusterView::default()
    };
    e.handle_tick(ts(0.0), &v);
    v.members[0].phi = 20.0;
    e.handle_tick(ts(1.0), &v);
    v.members[1].phi = 20.0;
    e.handle_tick(ts(100.0), &v);
    assert!(!e.is_isolated(), "a has been silent for long: not counted");
    // Then the last one, long after: one fresh silence, not "at once".
    v.members[2].phi = 20.0;
    e.handle_tick(ts(200.0), &v);
    assert!(!e.is_isolated());
    let _ = drain(&mut e);

    let mut e = AlertEngine::new(cfg_fast(), "me");
    v.members.iter_mut().for_each(|m| m.phi = 0.0);
    e.handle_tick(ts(0.0), &v);
    v.members[0].phi = 20.0;
    v.members[1].phi = 20.0;
    e.handle_tick(ts(1.0), &v);
    assert!(e.is_isolated());
    let ev = drain(&mut e);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].scope, Scope::Partition);
    assert_eq!(ev[0].generation, 3);
    assert_eq!(ev[0].nodes, ["a", "b"]);
}

#[test]
fn garbage_phi_is_tolerated() {
    let mut e = AlertEngine::new(cfg_fast(), "me");
    e.handle_tick(ts(0.0), &view1(f64::NAN));
    e.handle_tick(ts(1.0), &view1(f64::INFINITY));
    let ev = drain(&mut e);
    assert_eq!(ev.len(), 1);
    e.handle_tick(ts(2.0), &view1(f64::NAN));
    assert_eq!(drain(&mut e)[0].kind, EventKind::Recovered);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Kill any minority of any fleet: pages are only about killed
        /// nodes, each failure is one incident fleet-wide (one page, or
        /// one grouped page for three or more), and every incident
        /// resolves exactly once after the restarts.
        #[test]
        fn one_incident_per_failure(n in 3usize..12, seed in any::<u64>()) {
            let cfg = config();
            let mut f = Fleet::new(n, cfg.clone());
            // A minority small enough that no survivor sees more than
            // half of its peers go silent (that is isolation).
            let max_kill = (n - 1) / 2;
            let mut victims: Vec<usize> = (0..n).collect();
            let mut s = seed;
            for i in (1..victims.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                victims.swap(i, (s >> 33) as usize % (i + 1));
            }
            let k = 1 + (seed as usize % max_kill.max(1));
            victims.truncate(k.min(max_kill).max(1));
            for v in &victims {
                f.kill(*v);
            }
            f.run(Duration::from_secs(30));
            let ev = f.take_events();
            let killed: BTreeSet<String> = victims.iter().map(|v| f.ids[*v].clone()).collect();
            let sus: Vec<&AlertEvent> = ev.iter().map(|(_, e)| e).filter(|e| e.kind == EventKind::Suspected).collect();
            prop_assert!(ev.iter().all(|(_, e)| e.scope != Scope::Partition), "{ev:?}");
            for e in &sus {
                prop_assert!(e.nodes.iter().all(|x| killed.contains(x)), "page about a live node: {e:?}");
            }
            let incidents: BTreeSet<&str> = sus.iter().map(|e| e.incident_id.as_str()).collect();
            if victims.len() >= cfg.mass_failure_min {
                prop_assert_eq!(sus.len(), 1, "{:?}", ev);
                prop_assert_eq!(sus[0].scope, Scope::Group);
                prop_assert_eq!(sus[0].nodes.len(), victims.len());
            } else {
                prop_assert_eq!(sus.len(), victims.len(), "{:?}", ev);
                prop_assert_eq!(incidents.len(), victims.len());
            }
            for v in &victims {
                f.restart(*v, &cfg);
            }
            f.run(Duration::from_secs(15));
            let ev = f.take_events();
            let rec: Vec<&AlertEvent> = ev.iter().map(|(_, e)| e).filter(|e| e.kind == EventKind::Recovered).collect();
            let resolved: BTreeSet<&str> = rec.iter().map(|e| e.incident_id.as_str()).collect();
            prop_assert_eq!(rec.len(), incidents.len(), "{:?}", ev);
            prop_assert_eq!(resolved, incidents);
        }
    }
}
