//! Detector comparison over a corpus of traces at equal mistake budgets:
//! what `phimon eval --compare` prints.
//!
//! An operator picks one threshold for the whole fleet, so for each
//! contender this module finds the lowest single threshold that keeps the
//! whole corpus within a mistake budget, then reports the detection time
//! it buys. Different models have different phi scales; only the
//! detection *time* at equal mistakes is comparable, never phi.
//!
//! Thresholds are found exactly, not on a grid:
//!
//! - **Zero mistakes.** Replay every trace with a threshold of +inf and
//!   take M, the largest phi reached while the sender was alive. Any
//!   threshold above M makes no mistake; none at or below M does (the
//!   replay is identical up to the first silence that reaches it, even for
//!   models whose state depends on the threshold). The threshold used is
//!   M rounded up by one part in 10^9.
//! - **At most `budget` mistakes per hour of alive time** (summed over the
//!   corpus). The candidates are the per-silence peaks of phi from the
//!   same replay; a bisection over them, replaying the corpus at each,
//!   finds the lowest that meets the budget (exact for models whose state
//!   does not depend on the threshold, which is all but the Akka and
//!   chitchat baselines).

use crate::baseline::{
    AkkaConfig, AkkaPhi, CassandraConfig, CassandraPhi, ChitchatConfig, ChitchatPhi,
};
use crate::qos::{self, Qos};
use crate::trace::Trace;
use phimon_detector::AccrualDetector;
use phimon_detector::DetectorConfig;
use phimon_detector::PeerDetector;
use std::time::Duration;

/// A model to compare, built afresh for each trace and threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// phimon's [`PeerDetector`] with these settings; the cold-start prior
    /// (`first_heartbeat_estimate`) is set to each trace's interval.
    Phimon(DetectorConfig),
    /// [`AkkaPhi`] with this acceptable heartbeat pause and otherwise
    /// Akka's defaults, first-heartbeat estimate = the trace's interval.
    Akka {
        /// `acceptable-heartbeat-pause`.
        acceptable_pause: Duration,
    },
    /// [`CassandraPhi`] with Cassandra's defaults for the trace's interval.
    Cassandra,
    /// [`ChitchatPhi`] with chitchat's defaults, prior = the trace's
    /// interval (as quickwit configures it).
    Chitchat,
}

impl Model {
    /// True for the reference models of other projects.
    pub fn is_baseline(&self) -> bool {
        !matches!(self, Model::Phimon(_))
    }

    /// The model's detector for `trace`, with `threshold` for the models
    /// whose state depends on it.
    pub fn build(&self, trace: &Trace, threshold: f64) -> Box<dyn AccrualDetector> {
        let interval = Duration::from_secs_f64(trace.interval_ms.max(0.001) / 1000.0);
        match self {
            Model::Phimon(cfg) => Box::new(PeerDetector::new(&DetectorConfig {
                first_heartbeat_estimate: interval,
                ..cfg.clone()
            })),
            Model::Akka { acceptable_pause } => Box::new(AkkaPhi::new(AkkaConfig {
                threshold,
                acceptable_heartbeat_pause: *acceptable_pause,
                first_heartbeat_estimate: interval,
                ..AkkaConfig::default()
            })),
            Model::Cassandra => {
                Box::new(CassandraPhi::new(CassandraConfig::for_interval(interval)))
            }
            Model::Chitchat => Box::new(ChitchatPhi::new(ChitchatConfig {
                threshold,
                prior_interval: interval,
                ..ChitchatConfig::default()
            })),
        }
    }
}

/// A named model.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    /// Row label.
    pub name: String,
    /// The model.
    pub model: Model,
}

/// phimon with `config` (its distribution named in the label), phimon's
/// other distributions, and the baselines: Akka with 0 s and 3 s
/// acceptable pause, Cassandra and chitchat.
pub fn default_contenders(config: &DetectorConfig) -> Vec<Contender> {
    let mut out = vec![Contender {
        name: format!("phimon {}", config.distribution),
        model: Model::Phimon(config.clone()),
    }];
    for &d in phimon_detector::Distribution::ALL {
        if d != config.distribution {
            out.push(Contender {
                name: format!("phimon {d}"),
                model: Model::Phimon(DetectorConfig {
                    distribution: d,
                    ..config.clone()
                }),
            });
        }
    }
    out.extend([
        Contender {
            name: "baseline akka pause=0s".into(),
            model: Model::Akka {
                acceptable_pause: Duration::ZERO,
            },
        },
        Contender {
            name: "baseline akka pause=3s".into(),
            model: Model::Akka {
                acceptable_pause: Duration::from_secs(3),
            },
        },
        Contender {
            name: "baseline cassandra".into(),
            model: Model::Cassandra,
        },
        Contender {
            name: "baseline chitchat".into(),
            model: Model::Chitchat,
        },
    ]);
    out
}

/// One trace's outcome at a budget's threshold.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TraceOutcome {
    /// Trace name.
    pub trace: String,
    /// Crash to permanent suspicion, ms (`None`: no crash, or undetected).
    pub detection_ms: Option<f64>,
    /// Mistakes on this trace.
    pub mistakes: u64,
    /// Outages (`outage_ms`) in this trace.
    pub outages: u64,
    /// Outages during which a suspicion started.
    pub outages_detected: u64,
    /// Mean time from an outage's start to its suspicion, ms.
    pub outage_detection_ms: Option<f64>,
}

/// A contender's QoS at the lowest threshold that meets a mistake budget.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BudgetOutcome {
    /// Allowed mistakes per hour of alive time.
    pub budget_per_hour: f64,
    /// The threshold, `None` when no finite threshold meets the budget
    /// (a model whose phi is infinite while the sender is alive).
    pub threshold: Option<f64>,
    /// Mean detection time over the traces with a crash, ms. An
    /// undetected crash counts as the time from the crash to the end of
    /// its trace (so this is then a lower bound).
    pub mean_detection_ms: Option<f64>,
    /// Largest detection time, ms (same convention).
    pub max_detection_ms: Option<f64>,
    /// Crashes not detected before their trace ended.
    pub undetected: usize,
    /// Mistakes over the corpus.
    pub mistakes: u64,
    /// Mistakes per hour of alive time.
    pub mistakes_per_hour: f64,
    /// Mean mistake duration T_M, ms.
    pub mistake_mean_ms: f64,
    /// Query accuracy P_A over all alive time.
    pub query_accuracy: f64,
    /// Outages (`outage_ms`) over the corpus: suspicions during them are
    /// not mistakes.
    pub outages: u64,
    /// Outages during which a suspicion started.
    pub outages_detected: u64,
    /// Mean time from an outage's start to its suspicion over the
    /// detected outages, ms.
    pub outage_detection_mean_ms: Option<f64>,
    /// Per-trace outcomes, in corpus order.
    pub traces: Vec<TraceOutcome>,
}

/// A contender's outcomes.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ContenderOutcome {
    /// Row label.
    pub name: String,
    /// True for the reference models of other projects.
    pub baseline: bool,
    /// At zero mistakes.
    pub zero_mistakes: BudgetOutcome,
    /// At the per-hour budget.
    pub hourly: BudgetOutcome,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Comparison {
    /// Trace names, in order.
    pub traces: Vec<String>,
    /// Hours of alive time over the corpus.
    pub alive_hours: f64,
    /// Traces with a crash.
    pub crashes: usize,
    /// One entry per contender.
    pub contenders: Vec<ContenderOutcome>,
}

impl Comparison {
    /// The baseline with the lowest mean detection time at the budget
    /// `pick` selects (`|c| &c.zero_mistakes` or `|c| &c.hourly`), and
    /// that time; `None` when no baseline has a threshold there.
    pub fn best_baseline(
        &self,
        pick: fn(&ContenderOutcome) -> &BudgetOutcome,
    ) -> Option<(&ContenderOutcome, f64)> {
        self.contenders
            .iter()
            .filter(|c| c.baseline)
            .filter_map(|c| pick(c).mean_detection_ms.map(|d| (c, d)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The peak phi of every silence during which the sender was alive and
/// reachable: phi just before the next arrival, the crash, or the start of
/// an outage (a suspicion from then on is not a mistake).
pub fn alive_peaks<D: AccrualDetector>(mut detector: D, trace: &Trace) -> Vec<f64> {
    use phimon_detector::Timestamp;
    let us = |ms: f64| Timestamp::from_millis_f64(ms).as_micros();
    let end = us(trace.end_ms);
    let alive_until = trace.crash_ms.map_or(end, us);
    let spans = trace.outage_spans_micros();
    let mut silences = qos::Silences::new(&spans);
    let mut peaks = Vec::new();
    let arrivals = &trace.arrivals_ms;
    for (i, &a) in arrivals.iter().enumerate() {
        qos::record_arrival(&mut detector, trace, i);
        let last = detector.last_arrival().map_or(us(a), |t| t.as_micros());
        let next = arrivals.get(i + 1).map_or(end, |&n| us(n));
        // Suspicion that starts before the crash is a mistake, so the
        // last alive instant is one microsecond before it.
        let mut until = if next >= alive_until {
            alive_until.saturating_sub(1)
        } else {
            next
        };
        if next > last {
            if let Some((from, _)) = silences.exempt(last, next) {
                if from <= last {
                    continue; // the whole silence is the outage's
                }
                until = until.min(from - 1);
            }
        }
        if until >= last && next > last {
            peaks.push(detector.phi(Timestamp::from_micros(until)));
        }
    }
    peaks
}

/// Rounds a threshold up so that a phi equal to `peak` stays below it.
fn just_above(peak: f64) -> f64 {
    peak + peak.abs() * 1e-9 + 1e-12
}

fn run_at(model: &Model, corpus: &[(String, Trace)], threshold: f64) -> Vec<Qos> {
    corpus
        .iter()
        .map(|(_, t)| {
            let mut q = qos::evaluate(model.build(t, threshold), t, &[threshold]);
            q.pop().unwrap_or(Qos {
                threshold,
                detection_ms: None,
                detected: false,
                mistakes: 0,
                mistake_ms_total: 0.0,
                alive_ms: 0.0,
                outages: 0,
                outage_detections: 0,
                outage_detection_ms_total: 0.0,
            })
        })
        .collect()
}

fn summarize(
    corpus: &[(String, Trace)],
    budget_per_hour: f64,
    threshold: Option<f64>,
    results: Option<Vec<Qos>>,
) -> BudgetOutcome {
    let Some(results) = results else {
        return BudgetOutcome {
            budget_per_hour,
            threshold,
            mean_detection_ms: None,
            max_detection_ms: None,
            undetected: 0,
            mistakes: 0,
            mistakes_per_hour: 0.0,
            mistake_mean_ms: 0.0,
            query_accuracy: 0.0,
            outages: 0,
            outages_detected: 0,
            outage_detection_mean_ms: None,
            traces: Vec::new(),
        };
    };
    let mut detections = Vec::new();
    let mut undetected = 0;
    let (mut mistakes, mut mistake_ms, mut alive_ms) = (0u64, 0.0, 0.0);
    let (mut outages, mut outages_detected, mut outage_ms) = (0u64, 0u64, 0.0);
    let mut traces = Vec::new();
    for ((name, t), q) in corpus.iter().zip(&results) {
        outages += q.outages;
        outages_detected += q.outage_detections;
        outage_ms += q.outage_detection_ms_total;
        mistakes += q.mistakes;
        mistake_ms += q.mistake_ms_total;
        alive_ms += q.alive_ms;
        if let Some(c) = t.crash_ms {
            match q.detection_ms {
                Some(d) => detections.push(d),
                None => {
                    undetected += 1;
                    detections.push(t.end_ms - c);
                }
            }
        }
        traces.push(TraceOutcome {
            trace: name.clone(),
            detection_ms: q.detection_ms,
            mistakes: q.mistakes,
            outages: q.outages,
            outages_detected: q.outage_detections,
            outage_detection_ms: q.outage_detection_mean_ms(),
        });
    }
    let n = detections.len();
    BudgetOutcome {
        budget_per_hour,
        threshold,
        mean_detection_ms: (n > 0).then(|| detections.iter().sum::<f64>() / n as f64),
        max_detection_ms: detections.iter().copied().reduce(f64::max),
        undetected,
        mistakes,
        mistakes_per_hour: if alive_ms > 0.0 {
            mistakes as f64 / (alive_ms / 3_600_000.0)
        } else {
            0.0
        },
        mistake_mean_ms: if mistakes > 0 {
            mistake_ms / mistakes as f64
        } else {
            0.0
        },
        query_accuracy: if alive_ms > 0.0 {
            (1.0 - mistake_ms / alive_ms).clamp(0.0, 1.0)
        } else {
            1.0
        },
        outages,
        outages_detected,
        outage_detection_mean_ms: (outages_detected > 0)
            .then(|| outage_ms / outages_detected as f64),
        traces,
    }
}

/// Compares `contenders` on `corpus` at zero mistakes and at
/// `budget_per_hour` mistakes per hour of alive time.
pub fn compare(
    corpus: &[(String, Trace)],
    contenders: &[Contender],
    budget_per_hour: f64,
) -> Comparison {
    let alive_ms: f64 = corpus.iter().map(|(_, t)| qos::alive_ms(t)).sum();
    let alive_hours = alive_ms / 3_600_000.0;
    let allowed = (budget_per_hour * alive_hours).floor().max(0.0) as u64;
    let outcomes = contenders
        .iter()
        .map(|c| {
            let mut peaks: Vec<f64> = corpus
                .iter()
                .flat_map(|(_, t)| alive_peaks(c.model.build(t, f64::INFINITY), t))
                .collect();
            let max = peaks.iter().copied().fold(0.0f64, f64::max);
            let zero = if max.is_finite() {
                let th = just_above(max);
                summarize(corpus, 0.0, Some(th), Some(run_at(&c.model, corpus, th)))
            } else {
                summarize(corpus, 0.0, None, None)
            };

            // Candidates: finite peaks, ascending, deduplicated.
            peaks.retain(|p| p.is_finite());
            peaks.sort_by(f64::total_cmp);
            peaks.dedup();
            let meets = |i: usize| -> Option<Vec<Qos>> {
                let r = run_at(&c.model, corpus, just_above(peaks[i]));
                let m: u64 = r.iter().map(|q| q.mistakes).sum();
                (m <= allowed).then_some(r)
            };
            let hourly = match peaks
                .len()
                .checked_sub(1)
                .and_then(|top| meets(top).map(|r| (top, r)))
            {
                None => summarize(corpus, budget_per_hour, None, None),
                Some((top, top_result)) => {
                    // Lowest index that meets the budget: ok(hi) holds.
                    let (mut lo, mut hi) = (0usize, top);
                    let mut best = top_result;
                    if let Some(r) = meets(0) {
                        hi = 0;
                        best = r;
                    }
                    while hi > lo + 1 {
                        let mid = lo + (hi - lo) / 2;
                        match meets(mid) {
                            Some(r) => {
                                hi = mid;
                                best = r;
                            }
                            None => lo = mid,
                        }
                    }
                    summarize(
                        corpus,
                        budget_per_hour,
                        Some(just_above(peaks[hi])),
                        Some(best),
                    )
                }
            };
            ContenderOutcome {
                name: c.name.clone(),
                baseline: c.model.is_baseline(),
                zero_mistakes: zero,
                hourly,
            }
        })
        .collect();
    Comparison {
        traces: corpus.iter().map(|(n, _)| n.clone()).collect(),
        alive_hours,
        crashes: corpus.iter().filter(|(_, t)| t.crash_ms.is_some()).count(),
        contenders: outcomes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(gap_at: Option<usize>) -> Trace {
        let mut arrivals: Vec<f64> = (0..600).map(|i| i as f64 * 1000.0).collect();
        if let Some(g) = gap_at {
            arrivals.retain(|&a| !(a > g as f64 * 1000.0 && a < (g + 5) as f64 * 1000.0));
        }
        Trace {
            interval_ms: 1000.0,
            end_ms: 900_000.0,
            crash_ms: Some(599_500.0),
            outages_ms: vec![],
            metadata: vec![],
            arrivals_ms: arrivals,
            seqs: None,
        }
    }

    #[test]
    fn zero_mistake_threshold_is_exactly_above_the_worst_alive_peak() {
        let corpus = vec![
            ("a".to_string(), steady(None)),
            ("b".into(), steady(Some(300))),
        ];
        let cmp = compare(
            &corpus,
            &[Contender {
                name: "cassandra".into(),
                model: Model::Cassandra,
            }],
            1.0,
        );
        let z = &cmp.contenders[0].zero_mistakes;
        assert_eq!(z.mistakes, 0);
        // The 5 s hole (a 5 s interval is dropped by Cassandra, mean stays
        // ~1 s): peak ~5 / ln 10.
        let th = z.threshold.unwrap();
        assert!((th - 5.0 / std::f64::consts::LN_10).abs() < 0.01, "{th}");
        // Both crashes detected 5 s after the last heartbeat, 4.5 s after
        // the crash.
        for t in &z.traces {
            let d = t.detection_ms.unwrap();
            assert!((d - 4500.0).abs() < 15.0, "{t:?}");
        }
        // A slightly lower threshold makes exactly that one mistake.
        let r = run_at(&Model::Cassandra, &corpus, th * 0.999);
        assert_eq!(r.iter().map(|q| q.mistakes).sum::<u64>(), 1);
        // The corpus is 20 alive minutes: the hourly budget allows none.
        assert_eq!(cmp.contenders[0].hourly.mistakes, 0);
    }

    #[test]
    fn an_infinite_phi_while_alive_has_no_zero_mistake_threshold() {
        let corpus = vec![("b".to_string(), steady(Some(300)))];
        let cmp = compare(
            &corpus,
            &[Contender {
                name: "akka".into(),
                model: Model::Akka {
                    acceptable_pause: Duration::ZERO,
                },
            }],
            1.0,
        );
        assert_eq!(cmp.contenders[0].zero_mistakes.threshold, None);
        assert_eq!(cmp.contenders[0].zero_mistakes.mean_detection_ms, None);
    }
}
