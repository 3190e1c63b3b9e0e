//! Pages: one per incident fleet-wide.

use super::{config, joined, secs};
use phimon_gossip::Status;
use phimon_node::{AlertEvent, EventKind, Scope};
use phimon_sim::Cluster;
use std::collections::BTreeSet;

fn alerts(c: &Cluster) -> Vec<AlertEvent> {
    c.alerts().into_iter().map(|(_, _, a)| a.clone()).collect()
}

fn distinct<'a>(
    alerts: impl Iterator<Item = &'a AlertEvent>,
    f: fn(&AlertEvent) -> &str,
) -> BTreeSet<String> {
    alerts.map(|a| f(a).to_owned()).collect()
}

#[test]
fn a_crash_pages_once_and_its_restart_closes_the_incident() {
    let mut c = joined(8, config());
    c.crash(3);
    c.run_until(secs(60), |c| c.all_see(3, Status::Suspected))
        .expect("suspected");
    c.run_for(secs(5));
    let subject = c.id(3).to_string();
    let a = alerts(&c);
    let suspected: Vec<&AlertEvent> = a
        .iter()
        .filter(|a| a.kind == EventKind::Suspected && a.subject == subject)
        .collect();
    assert_eq!(suspected.len(), 1, "{a:#?}");
    assert_eq!(suspected[0].scope, Scope::Node);
    // Paged by one of its observers.
    let pager = &suspected[0].observer;
    let observers = c
        .node(0)
        .unwrap()
        .gossip()
        .member(c.id(3))
        .unwrap()
        .observers()
        .into_iter()
        .map(|o| o.observer.to_string())
        .collect::<Vec<_>>();
    assert!(observers.contains(pager), "{pager} not in {observers:?}");
    let incident = suspected[0].incident_id.clone();
    c.start(3);
    c.run_until(secs(30), |c| c.all_see(3, Status::Alive))
        .expect("back");
    c.run_for(secs(5));
    let a = alerts(&c);
    let closing: Vec<&AlertEvent> = a
        .iter()
        .filter(|a| a.kind != EventKind::Suspected && a.subject == subject)
        .collect();
    assert_eq!(closing.len(), 1, "{a:#?}");
    assert_eq!(closing[0].kind, EventKind::Restarted);
    assert_eq!(closing[0].incident_id, incident);
    assert_eq!(a.len(), 2, "nothing else paged: {a:#?}");
}

#[test]
fn a_partition_of_one_node_is_one_incident() {
    let mut c = joined(4, config());
    c.run_for(secs(30));
    c.partition(&[3], &[0, 1, 2]);
    c.run_for(secs(30));
    c.heal();
    c.run_until(secs(60), |c| (0..4).all(|x| c.all_see(x, Status::Alive)))
        .expect("healed");
    c.run_for(secs(10));
    let a = alerts(&c);
    let incidents = distinct(a.iter(), |a| &a.incident_id);
    assert_eq!(incidents.len(), 1, "{a:#?}");
    // The fleet's page about node 3 and node 3's own partition page are
    // the same event to a receiver (same webhook-id), and so are their
    // recoveries.
    let events = distinct(a.iter(), |a| &a.event_id);
    assert_eq!(events.len(), 2, "{a:#?}");
    assert!(
        a.iter()
            .any(|a| a.scope == Scope::Partition && a.observer == c.id(3).as_str())
    );
    assert!(
        a.iter()
            .any(|a| a.scope == Scope::Node && a.subject == c.id(3).as_str())
    );
}

#[test]
fn a_stalled_node_is_paged_about_and_pages_no_one() {
    let mut c = joined(5, config());
    c.run_for(secs(40));
    c.stall(1, secs(25));
    c.run_for(secs(60));
    let a = alerts(&c);
    let about: BTreeSet<&str> = a.iter().map(|a| a.subject.as_str()).collect();
    assert_eq!(about, BTreeSet::from([c.id(1).as_str()]), "{a:#?}");
    assert!(a.iter().all(|a| a.observer != c.id(1).as_str()), "{a:#?}");
    assert_eq!(distinct(a.iter(), |a| &a.event_id).len(), 2, "{a:#?}");
    assert!(c.all_see(1, Status::Alive));
}

#[test]
fn a_graceful_leave_pages_no_one() {
    let mut c = joined(5, config());
    let now = c.now();
    c.node_mut(2).unwrap().leave(now);
    c.flush(2);
    c.run_until(secs(10), |c| c.node(2).unwrap().leave_complete())
        .expect("left");
    c.crash(2);
    c.run_for(secs(60));
    assert!(alerts(&c).is_empty(), "{:#?}", alerts(&c));
}

#[test]
fn nodes_failing_together_are_one_group_page() {
    let mut c = joined(16, config());
    c.run_for(secs(30));
    for v in [2, 5, 9, 13] {
        c.crash(v);
    }
    c.run_until(secs(60), |c| {
        [2, 5, 9, 13]
            .iter()
            .all(|&v| c.all_see(v, Status::Suspected))
    })
    .expect("suspected");
    c.run_for(secs(5));
    let a = alerts(&c);
    let suspected: Vec<&AlertEvent> = a
        .iter()
        .filter(|a| a.kind == EventKind::Suspected)
        .collect();
    assert!(!suspected.is_empty());
    assert!(
        suspected.iter().all(|a| a.scope == Scope::Group),
        "{suspected:#?}"
    );
    let last = suspected.last().unwrap();
    assert_eq!(last.nodes.len(), 4, "{suspected:#?}");
    assert_eq!(
        distinct(suspected.iter().copied(), |a| &a.incident_id).len(),
        1
    );
}

#[test]
fn a_page_carries_its_evidence() {
    let mut c = joined(8, config());
    c.run_for(secs(60));
    c.crash(3);
    c.run_until(secs(60), |c| c.all_see(3, Status::Suspected))
        .expect("suspected");
    c.run_for(secs(5));
    let subject = c.id(3).to_string();
    let a = alerts(&c);
    let page = a
        .iter()
        .find(|a| a.kind == EventKind::Suspected && a.subject == subject)
        .expect("paged");
    let e = page.evidence.as_deref().expect("evidence");
    assert_eq!(e.version, phimon_node::EVIDENCE_VERSION);
    // The heartbeats' real spacing: every second, within the latency.
    assert_eq!(e.intervals_ms.len(), phimon_node::MAX_INTERVALS);
    assert!(
        e.intervals_ms.iter().all(|i| (990.0..1010.0).contains(i)),
        "{:?}",
        e.intervals_ms
    );
    assert!(e.silence_ms > 3000.0, "{}", e.silence_ms);
    assert_eq!(e.model, "adaptive");
    // The observers that decide, with the pager among the agreeing ones.
    let observers: Vec<String> = c
        .node(0)
        .unwrap()
        .gossip()
        .member(c.id(3))
        .unwrap()
        .observers()
        .iter()
        .map(|o| o.observer.to_string())
        .collect();
    let listed: Vec<String> = e.observers.iter().map(|o| o.node_id.clone()).collect();
    assert_eq!(listed, observers);
    assert!(
        e.observers
            .iter()
            .any(|o| o.node_id == page.observer && o.suspected == Some(true))
    );
    assert!(
        e.observers
            .iter()
            .filter(|o| o.suspected == Some(true))
            .count()
            >= 2
    );
    // phi climbed to the threshold over the silence.
    let last = e.phi_history.last().unwrap();
    assert!(last.t_s <= 0.0 && last.t_s > -1.5, "{last:?}");
    assert!(last.phi >= 6.0, "{:?}", e.phi_history);
    assert!(e.phi_history.iter().any(|s| s.phi < 1.0));
    assert!(!e.local_health.degraded && !e.local_health.isolated);
}

#[test]
fn a_live_threshold_change_keeps_the_windows() {
    let mut c = joined(5, config());
    c.run_for(secs(60));
    let fill = |c: &Cluster| -> Vec<usize> {
        c.node(0)
            .unwrap()
            .gossip()
            .subjects()
            .map(|s| s.detector().window().len())
            .collect()
    };
    let before = fill(&c);
    assert!(before.iter().all(|&n| n >= 55), "{before:?}");
    let mut cfg = config().node;
    cfg.gossip.threshold = 3.0;
    cfg.gossip.resolve_threshold = 1.0;
    cfg.gossip.detector.min_std_dev = std::time::Duration::from_millis(50);
    cfg.alert.threshold = 3.0;
    let now = c.now();
    c.node_mut(0).unwrap().reconfigure(&cfg, now);
    c.flush(0);
    assert_eq!(fill(&c), before, "windows kept");
    // The next page about a node this node pages for is at the new
    // threshold: kill one of its subjects.
    let subject = c
        .node(0)
        .unwrap()
        .gossip()
        .subjects()
        .next()
        .unwrap()
        .node_id()
        .clone();
    let v = c.index_of(&subject).unwrap();
    c.crash(v);
    c.run_until(secs(60), |c| c.all_see(v, Status::Suspected))
        .expect("suspected");
    c.run_for(secs(5));
    let verdict_phi = c
        .node(0)
        .unwrap()
        .gossip()
        .member(&subject)
        .unwrap()
        .observed()
        .unwrap()
        .verdict_phi();
    assert!(
        (3.0..4.0).contains(&verdict_phi),
        "suspected at phi {verdict_phi}"
    );
}

#[test]
fn a_minority_pages_only_about_itself() {
    let mut c = joined(5, config());
    c.run_for(secs(30));
    c.partition(&[0, 1, 2], &[3, 4]);
    c.run_for(secs(30));
    c.heal();
    c.run_until(secs(60), |c| (0..5).all(|x| c.all_see(x, Status::Alive)))
        .expect("healed");
    c.run_for(secs(10));
    let minority = [c.id(3).to_string(), c.id(4).to_string()];
    let a = alerts(&c);
    for p in &a {
        if minority.contains(&p.observer) {
            assert_eq!(
                p.scope,
                Scope::Partition,
                "minority paged about a peer: {p:#?}"
            );
        } else if p.kind == EventKind::Suspected {
            assert!(
                minority.contains(&p.subject) || p.scope == Scope::Group,
                "a majority node was paged: {p:#?}"
            );
        }
    }
    assert!(
        a.iter().any(|p| p.kind == EventKind::Suspected
            && p.scope == Scope::Node
            && minority.contains(&p.subject)),
        "the majority never paged about the minority: {a:#?}"
    );
    // Every incident that opened was closed.
    for inc in distinct(a.iter().filter(|p| p.kind == EventKind::Suspected), |a| {
        &a.incident_id
    }) {
        assert!(
            a.iter()
                .any(|p| p.incident_id == inc && p.kind != EventKind::Suspected),
            "incident {inc} never closed: {a:#?}"
        );
    }
}

#[test]
fn the_minority_of_a_split_never_pages_about_the_majority() {
    // 3-2 and 4-2 splits, at a few phases.
    for run in 0..4u64 {
        let n = 5 + (run % 2) as usize;
        let mut c = joined(n, config());
        c.run_for(secs(20 + run));
        let minority: Vec<usize> = (n - 2..n).collect();
        let majority: Vec<usize> = (0..n - 2).collect();
        c.partition(&minority, &majority);
        c.run_for(secs(30));
        c.heal();
        c.run_until(secs(60), |c| (0..n).all(|x| c.all_see(x, Status::Alive)))
            .expect("healed");
        c.run_for(secs(10));
        let a = alerts(&c);
        let minority_ids: Vec<String> = minority.iter().map(|&i| c.id(i).to_string()).collect();
        let majority_ids: Vec<String> = majority.iter().map(|&i| c.id(i).to_string()).collect();
        for p in &a {
            assert!(
                !(p.scope == Scope::Node
                    && minority_ids.contains(&p.observer)
                    && majority_ids.contains(&p.subject)),
                "a minority node paged about the majority (run {run}): {p:#?}"
            );
        }
    }
}
