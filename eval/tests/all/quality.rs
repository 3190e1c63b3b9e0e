//! Detection quality guards: the default model against the baselines on
//! generated hostile networks, one threshold per detector at zero
//! mistakes (what `phimon eval --compare` reports). The bounds leave room
//! for noise but fail if the default loses its advantage.
#![cfg(feature = "corpus")]

use phimon_detector::DetectorConfig;
use phimon_eval::compare::{Comparison, compare, default_contenders};
use phimon_eval::corpus::{CorpusSet, random_scenarios};
use phimon_eval::trace::Trace;

/// Mean detection of the default model over that of the best baseline.
fn ratio(corpus: &[(String, Trace)]) -> (f64, Comparison) {
    let contenders: Vec<_> = default_contenders(&DetectorConfig::default())
        .into_iter()
        .enumerate()
        .filter(|(i, c)| *i == 0 || c.model.is_baseline())
        .map(|(_, c)| c)
        .collect();
    let c = compare(corpus, &contenders, 1.0);
    let ours = c.contenders[0]
        .zero_mistakes
        .mean_detection_ms
        .unwrap_or(f64::INFINITY);
    let best = c
        .best_baseline(|x| &x.zero_mistakes)
        .map_or(f64::INFINITY, |b| b.1);
    (ours / best, c)
}

#[test]
fn random_scenarios_are_reproducible_and_varied() {
    let a = random_scenarios(7, 30);
    assert_eq!(a, random_scenarios(7, 30));
    assert_ne!(a, random_scenarios(8, 30));
    let count =
        |f: &dyn Fn(&phimon_eval::corpus::Scenario) -> bool| a.iter().filter(|(_, s)| f(s)).count();
    assert!(count(&|s| s.pauses.is_some()) >= 3);
    assert!(count(&|s| s.partition.is_some()) >= 1);
    assert!(count(&|s| s.interval_change.is_some()) >= 3);
    assert!(count(&|s| s.interval_ms <= 250.0) >= 3);
    assert!(count(&|s| s.interval_ms >= 2000.0) >= 3);
    for (name, s) in &a {
        let t = s.generate();
        assert!(t.arrivals_ms.len() > 100, "{name}");
        let crash = t.crash_ms.unwrap();
        for &(start, end) in &t.outages_ms {
            assert!(start < end && end < crash, "{name}: outage after the crash");
        }
    }
}

#[test]
fn the_default_beats_the_best_baseline_on_random_hostile_networks() {
    let corpus: Vec<_> = random_scenarios(7, 30)
        .into_iter()
        .map(|(n, s)| (n, s.generate()))
        .collect();
    let (r, _) = ratio(&corpus);
    // docs/performance.md gives the measured ratio; the bound leaves
    // room for noise.
    assert!(r < 0.9, "ratio {r:.2}");
}

#[test]
fn the_default_beats_the_best_baseline_on_the_committed_corpus() {
    let corpus: Vec<_> = CorpusSet::Corpus
        .scenarios()
        .iter()
        .map(|s| (s.name.to_string(), s.generate()))
        .collect();
    let (r, c) = ratio(&corpus);
    // docs/performance.md gives the measured ratio; every crash is
    // detected.
    assert!(r < 0.95, "ratio {r:.2}");
    assert_eq!(c.contenders[0].zero_mistakes.undetected, 0);
}
