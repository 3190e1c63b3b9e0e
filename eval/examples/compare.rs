//! Compares phimon's detector with the baselines on the generated corpus
//! and held-out set without building the `phimon` binary:
//! `cargo run -p phimon-eval --release --features corpus --example compare`.
//! Per-trace columns are at zero mistakes, or at the hourly budget with
//! `HOURLY=1`; `PEAKS=1` adds the highest phi of a live sender
//! per trace for every model (the trace that sets a threshold).
//! `SETS=corpus,held-out,variants,direct` chooses the sets (default: the
//! first two; `random:SEED:COUNT` draws a random set). `FIXED=4,5,8` adds, for phimon's default model at each of these
//! thresholds, the mean detection time and the mistakes per alive hour.

use phimon_detector::DetectorConfig;
use phimon_eval::compare::{BudgetOutcome, ContenderOutcome, compare, default_contenders};
use phimon_eval::corpus::CorpusSet;

fn main() {
    let sets = std::env::var("SETS").unwrap_or_else(|_| "corpus,held-out".into());
    for set in sets.split(',') {
        let set = set.trim();
        // `random:SEED:COUNT`: scenarios drawn at random.
        let corpus: Vec<_> = if let Some(rest) = set.strip_prefix("random") {
            let mut it = rest
                .split(':')
                .skip(1)
                .map(|v| v.parse::<u64>().unwrap_or(1));
            let seed = it.next().unwrap_or(1);
            let count = it.next().unwrap_or(20) as usize;
            let drawn = phimon_eval::corpus::random_scenarios(seed, count);
            if std::env::var_os("SCENARIOS").is_some() {
                for (name, s) in &drawn {
                    println!("{name}: {s:?}");
                }
            }
            drawn
                .into_iter()
                .map(|(name, s)| (name, s.generate()))
                .collect()
        } else {
            let named = match set {
                "corpus" => CorpusSet::Corpus,
                "held-out" => CorpusSet::HeldOut,
                "variants" => CorpusSet::Variants,
                "direct" => CorpusSet::Direct,
                _ => continue,
            };
            named
                .scenarios()
                .iter()
                .map(|s| (s.name.to_string(), s.generate()))
                .collect()
        };
        let c = compare(
            &corpus,
            &default_contenders(&DetectorConfig::default()),
            1.0,
        );
        let ratio = |pick: fn(&ContenderOutcome) -> &BudgetOutcome| {
            let ours = c.contenders.first().and_then(|x| pick(x).mean_detection_ms);
            let best = c.best_baseline(pick).map_or(f64::INFINITY, |b| b.1);
            ours.map_or(f64::NAN, |o| o / best)
        };
        println!(
            "{set}: {:.2} alive hours; ratio to the best baseline: {:.2} at zero mistakes, {:.2} at 1/h",
            c.alive_hours,
            ratio(|x| &x.zero_mistakes),
            ratio(|x| &x.hourly)
        );
        if std::env::var_os("SUMMARY").is_some() {
            continue;
        }
        print!("{:<24}", "trace");
        for x in &c.contenders {
            print!(" {:>10.10}", x.name.trim_start_matches("baseline "));
        }
        println!();
        for (i, t) in c.traces.iter().enumerate() {
            print!("{t:<24}");
            for x in &c.contenders {
                let b = if std::env::var_os("HOURLY").is_some() {
                    &x.hourly
                } else {
                    &x.zero_mistakes
                };
                let d = b.traces.get(i).and_then(|o| o.detection_ms);
                print!(" {:>10}", d.map_or("-".into(), |d| format!("{d:.0}")));
            }
            println!();
        }
        for (label, pick) in [("zero", 0), ("1/h", 1)] {
            print!("{:<24}", format!("mean @{label}"));
            for x in &c.contenders {
                let b = if pick == 0 {
                    &x.zero_mistakes
                } else {
                    &x.hourly
                };
                let d = b.mean_detection_ms;
                print!(" {:>10}", d.map_or("none".into(), |d| format!("{d:.0}")));
            }
            println!();
            print!("{:<24}", format!("threshold @{label}"));
            for x in &c.contenders {
                let b = if pick == 0 {
                    &x.zero_mistakes
                } else {
                    &x.hourly
                };
                print!(
                    " {:>10}",
                    b.threshold.map_or("none".into(), |d| format!("{d:.3}"))
                );
            }
            println!();
        }
        if let Ok(list) = std::env::var("FIXED") {
            for th in list.split(',').filter_map(|t| t.trim().parse::<f64>().ok()) {
                let (mut det, mut crashes, mut mistakes, mut alive) = (0.0, 0, 0, 0.0);
                for (_, t) in &corpus {
                    let d = phimon_detector::PeerDetector::new(&DetectorConfig {
                        first_heartbeat_estimate: std::time::Duration::from_secs_f64(
                            t.interval_ms / 1000.0,
                        ),
                        ..DetectorConfig::default()
                    });
                    let q = phimon_eval::qos::evaluate(d, t, &[th]);
                    if let (Some(q), Some(c)) = (q.first(), t.crash_ms) {
                        det += q.detection_ms.unwrap_or(t.end_ms - c);
                        crashes += 1;
                        mistakes += q.mistakes;
                        alive += q.alive_ms;
                    }
                }
                println!(
                    "default at threshold {th:>4}: mean detection {:>6.0} ms, {mistakes} mistakes ({:.2} per alive hour)",
                    det / f64::from(crashes.max(1)),
                    mistakes as f64 / (alive / 3.6e6)
                );
            }
        }
        if std::env::var_os("PEAKS").is_some() {
            println!("highest phi of a live, reachable sender per trace:");
            let contenders = default_contenders(&DetectorConfig::default());
            for (name, t) in &corpus {
                print!("{name:<24}");
                for c in &contenders {
                    let peaks =
                        phimon_eval::compare::alive_peaks(c.model.build(t, f64::INFINITY), t);
                    let max = peaks.iter().copied().fold(0.0f64, f64::max);
                    print!(" {max:>10.3}");
                }
                println!();
            }
        }
        println!();
    }
}
