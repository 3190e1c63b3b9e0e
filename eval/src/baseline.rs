//! Baselines for comparison: reference models of established
//! phi-accrual detectors, with their documented defaults.
//!
//! These are **not** used by phimon to detect anything. They exist so that
//! `phimon eval --compare` can replay the same traces through phimon's
//! detector and through the detectors operators know, and compare
//! detection time at equal mistake budgets. Each follows its project's
//! source as closely as a replay allows; where a model keeps state that
//! depends on its threshold (Akka drops intervals that ended a suspicion,
//! chitchat resets its window on suspicion), the threshold is part of the
//! model's config.
//!
//! - [`AkkaPhi`]: Akka's `PhiAccrualFailureDetector` (normal model with the
//!   logistic approximation of its CDF).
//! - [`CassandraPhi`]: Cassandra's `FailureDetector`/`ArrivalWindow`
//!   (exponential model).
//! - [`ChitchatPhi`]: quickwit-oss chitchat's `SamplingWindow` (elapsed
//!   time over a smoothed mean).

use phimon_detector::AccrualDetector;
use phimon_detector::IntervalWindow;
use phimon_detector::Timestamp;
use std::f64::consts::LN_10;
use std::time::Duration;

/// Microseconds in `d`, saturating at `u64::MAX`.
fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Settings of [`AkkaPhi`]; the defaults are Akka's `reference.conf`
/// (`akka.cluster.failure-detector`).
#[derive(Debug, Clone, PartialEq)]
pub struct AkkaConfig {
    /// `threshold` (default 8): Akka does not record the interval that
    /// ends a silence during which phi reached it ("don't use the first
    /// heartbeat after failure for the history"). `f64::INFINITY` records
    /// every interval.
    pub threshold: f64,
    /// `max-sample-size` (default 1000).
    pub max_sample_size: usize,
    /// `min-std-deviation` (default 100 ms).
    pub min_std_deviation: Duration,
    /// `acceptable-heartbeat-pause` (default 3 s in Akka cluster; 0 s is
    /// the plain phi accrual detector of the paper).
    pub acceptable_heartbeat_pause: Duration,
    /// `heartbeat-interval`-derived `first-heartbeat-estimate` (default
    /// 1 s): seeds the history with two intervals, mean ± mean / 4.
    pub first_heartbeat_estimate: Duration,
}

impl Default for AkkaConfig {
    fn default() -> Self {
        AkkaConfig {
            threshold: 8.0,
            max_sample_size: 1000,
            min_std_deviation: Duration::from_millis(100),
            acceptable_heartbeat_pause: Duration::from_secs(3),
            first_heartbeat_estimate: Duration::from_secs(1),
        }
    }
}

/// Baseline: Akka's `PhiAccrualFailureDetector`
/// (akka/akka, `akka-remote/src/main/scala/akka/remote/PhiAccrualFailureDetector.scala`).
///
/// phi = -log10(1 - F(y)) with y = (t - (mean + pause)) / max(std,
/// min_std) and Akka's logistic approximation of the normal CDF,
/// F(y) = 1 / (1 + exp(-y (1.5976 + 0.070566 y²))). Its phi is `+inf`
/// once exp(...) underflows (about 21 standard deviations late): the
/// comparison treats that as suspected, like Akka does.
#[derive(Debug, Clone)]
pub struct AkkaPhi {
    config: AkkaConfig,
    window: IntervalWindow,
    last: Option<Timestamp>,
}

impl AkkaPhi {
    /// A detector with no history.
    pub fn new(config: AkkaConfig) -> Self {
        AkkaPhi {
            window: IntervalWindow::new(config.max_sample_size),
            config,
            last: None,
        }
    }

    /// Akka's `phi(timeDiff, mean, stdDeviation)`, verbatim.
    pub fn logistic_phi(time_diff: f64, mean: f64, std_dev: f64) -> f64 {
        let y = (time_diff - mean) / std_dev;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        let phi = if time_diff > mean {
            -(e / (1.0 + e)).log10()
        } else {
            -(1.0 - 1.0 / (1.0 + e)).log10()
        };
        // -0.0 and tiny negative rounding are "no suspicion"; NaN cannot
        // arise (std_dev > 0), but never let one out.
        if phi > 0.0 { phi } else { 0.0 }
    }
}

impl AccrualDetector for AkkaPhi {
    fn record(&mut self, at: Timestamp) {
        match self.last {
            None => {
                // `firstHeartbeat`: history = [mean - std, mean + std].
                let mean = duration_micros(self.config.first_heartbeat_estimate);
                let std = mean / 4;
                self.window.push(mean - std);
                self.window.push(mean + std);
                self.last = Some(at);
            }
            Some(last) => {
                // `isAvailable(timestamp)` with the state before this
                // heartbeat.
                if self.phi(at) < self.config.threshold {
                    self.window.push(at.micros_since(last));
                }
                self.last = Some(at.max(last));
            }
        }
    }

    fn phi(&self, now: Timestamp) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let (mean, var) = self.window.mean_var().unwrap_or((0.0, 0.0));
        let std = var
            .sqrt()
            .max(duration_micros(self.config.min_std_deviation) as f64)
            .max(1.0);
        let pause = duration_micros(self.config.acceptable_heartbeat_pause) as f64;
        Self::logistic_phi(now.micros_since(last) as f64, mean + pause, std)
    }

    fn last_arrival(&self) -> Option<Timestamp> {
        self.last
    }
}

/// Settings of [`CassandraPhi`]; defaults from Cassandra's
/// `FailureDetector` for a 1 s gossip interval.
#[derive(Debug, Clone, PartialEq)]
pub struct CassandraConfig {
    /// `SAMPLE_SIZE` (1000).
    pub window: usize,
    /// `INITIAL_VALUE_NANOS` (`cassandra.fd_initial_value_ms`, default
    /// twice the gossip interval: 2 s): the first sample of the window.
    pub initial_value: Duration,
    /// `MAX_INTERVAL_IN_NANO` (`cassandra.fd_max_interval_ms`, default the
    /// initial value: 2 s): longer intervals are not recorded.
    pub max_interval: Duration,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            window: 1000,
            initial_value: Duration::from_secs(2),
            max_interval: Duration::from_secs(2),
        }
    }
}

impl CassandraConfig {
    /// Cassandra's defaults for a heartbeat (gossip) interval: initial
    /// value and max interval are twice the interval.
    pub fn for_interval(interval: Duration) -> Self {
        CassandraConfig {
            initial_value: interval * 2,
            max_interval: interval * 2,
            ..CassandraConfig::default()
        }
    }
}

/// Baseline: Cassandra's failure detector
/// (apache/cassandra, `src/java/org/apache/cassandra/gms/FailureDetector.java`,
/// classes `ArrivalWindow` and `ArrayBackedBoundedStats`).
///
/// phi = t / (mean · ln 10), the mean over the last 1000 recorded
/// intervals; the window starts with the initial value, and intervals
/// longer than `max_interval` are dropped ("we'd rather mark it down
/// quickly instead of adapting").
#[derive(Debug, Clone)]
pub struct CassandraPhi {
    config: CassandraConfig,
    window: IntervalWindow,
    last: Option<Timestamp>,
}

impl CassandraPhi {
    /// A detector with no history.
    pub fn new(config: CassandraConfig) -> Self {
        CassandraPhi {
            window: IntervalWindow::new(config.window),
            config,
            last: None,
        }
    }
}

impl AccrualDetector for CassandraPhi {
    fn record(&mut self, at: Timestamp) {
        if self.last.is_none() {
            self.window.push(duration_micros(self.config.initial_value));
        }
        let max = self.config.max_interval;
        record_bounded(&mut self.window, &mut self.last, at, max);
    }

    fn phi(&self, now: Timestamp) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let mean = self.window.mean_var().map_or(1.0, |(m, _)| m).max(1.0);
        now.micros_since(last) as f64 / (mean * LN_10)
    }

    fn last_arrival(&self) -> Option<Timestamp> {
        self.last
    }
}

/// Settings of [`ChitchatPhi`]; defaults from chitchat's
/// `FailureDetectorConfig::default()` and `SamplingWindow::new`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChitchatConfig {
    /// `phi_threshold` (default 8): chitchat clears a node's window when
    /// it judges it dead. `f64::INFINITY` never clears.
    pub threshold: f64,
    /// `sampling_window_size` (1000).
    pub window: usize,
    /// `max_interval` (10 s): longer intervals are dropped.
    pub max_interval: Duration,
    /// `initial_interval`, the prior mean (default 5 s; quickwit sets it to
    /// the gossip interval).
    pub prior_interval: Duration,
    /// Additive-smoothing weight of the prior, in samples (5).
    pub prior_weight: f64,
}

impl Default for ChitchatConfig {
    fn default() -> Self {
        ChitchatConfig {
            threshold: 8.0,
            window: 1000,
            max_interval: Duration::from_secs(10),
            prior_interval: Duration::from_secs(5),
            prior_weight: 5.0,
        }
    }
}

/// Baseline: chitchat's failure detector
/// (quickwit-oss/chitchat, `chitchat/src/failure_detector.rs`,
/// `SamplingWindow::phi` and `AdditiveSmoothing`).
///
/// phi = elapsed / ((sum + w · prior) / (n + w)): elapsed time over the
/// window mean smoothed toward the prior interval with `w` = 5
/// pseudo-samples. Like chitchat, it has no opinion (phi 0 here) until
/// one interval is recorded.
#[derive(Debug, Clone)]
pub struct ChitchatPhi {
    config: ChitchatConfig,
    window: IntervalWindow,
    last: Option<Timestamp>,
}

impl ChitchatPhi {
    /// A detector with no history.
    pub fn new(config: ChitchatConfig) -> Self {
        ChitchatPhi {
            window: IntervalWindow::new(config.window),
            config,
            last: None,
        }
    }
}

impl AccrualDetector for ChitchatPhi {
    fn record(&mut self, at: Timestamp) {
        // `update_node_liveness` resets the window of a node it judges
        // dead; the silence that ends here was judged so if phi passed the
        // threshold during it.
        if self.last.is_some() && self.phi(at) > self.config.threshold {
            self.window.clear();
        }
        let max = self.config.max_interval;
        record_bounded(&mut self.window, &mut self.last, at, max);
    }

    fn phi(&self, now: Timestamp) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        if self.window.is_empty() {
            return 0.0;
        }
        let w = self.config.prior_weight.max(0.0);
        let prior = duration_micros(self.config.prior_interval) as f64;
        let mean =
            ((self.window.sum() as f64 + w * prior) / (self.window.len() as f64 + w)).max(1.0);
        now.micros_since(last) as f64 / mean
    }

    fn last_arrival(&self) -> Option<Timestamp> {
        self.last
    }
}

/// The part of `record` Cassandra and chitchat share: the interval since
/// `last` goes into `window` unless it is longer than `max_interval` (both
/// drop such intervals rather than adapt to them), and `at` becomes the
/// last arrival unless a later one was already recorded.
fn record_bounded(
    window: &mut IntervalWindow,
    last: &mut Option<Timestamp>,
    at: Timestamp,
    max_interval: Duration,
) {
    if let Some(prev) = *last {
        let interval = at.micros_since(prev);
        if interval <= duration_micros(max_interval) {
            window.push(interval);
        }
    }
    *last = Some(last.map_or(at, |l| l.max(at)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    #[test]
    fn akka_matches_its_published_formula() {
        let mut d = AkkaPhi::new(AkkaConfig {
            acceptable_heartbeat_pause: Duration::ZERO,
            ..AkkaConfig::default()
        });
        d.record(ms(0));
        // Seeded history [750, 1250]: mean 1000, std 250.
        let p = d.phi(ms(1000));
        assert!((p - 0.5f64.log10().abs()).abs() < 1e-12, "{p}");
        for i in 1..=100 {
            d.record(ms(i * 1000));
        }
        // Mean ~1000 ms, std ~ 35 ms floored at 100 ms; 2 s late is y ~ 10:
        // the logistic curve says ~40 while the exact tail is ~23.
        let p = d.phi(ms(100_000 + 2000));
        assert!(p > 35.0 && p.is_finite(), "{p}");
        // Far out it is infinite.
        assert_eq!(d.phi(ms(100_000 + 10_000)), f64::INFINITY);
    }

    #[test]
    fn akka_skips_the_interval_that_ended_a_suspicion() {
        let mut d = AkkaPhi::new(AkkaConfig {
            acceptable_heartbeat_pause: Duration::ZERO,
            ..AkkaConfig::default()
        });
        for i in 0..=10 {
            d.record(ms(i * 1000));
        }
        let n = d.window.len();
        d.record(ms(30_000));
        assert_eq!(d.window.len(), n, "the 20 s interval was recorded");
        d.record(ms(31_000));
        assert_eq!(d.window.len(), n + 1);
    }

    #[test]
    fn cassandra_seeds_drops_and_divides() {
        let mut d = CassandraPhi::new(CassandraConfig::default());
        d.record(ms(0));
        // Window [2000]: phi(2 s) = 1 / ln 10.
        assert!((d.phi(ms(2000)) - 1.0 / LN_10).abs() < 1e-12);
        d.record(ms(1000));
        d.record(ms(10_000)); // 9 s: dropped
        assert_eq!(d.window.len(), 2);
        let p = d.phi(ms(11_500));
        assert!((p - 1.0 / LN_10).abs() < 1e-12, "{p}");
    }

    #[test]
    fn chitchat_smooths_toward_its_prior_and_resets_on_suspicion() {
        let mut d = ChitchatPhi::new(ChitchatConfig {
            prior_interval: Duration::from_secs(2),
            ..ChitchatConfig::default()
        });
        d.record(ms(0));
        assert_eq!(d.phi(ms(5000)), 0.0, "no opinion before an interval");
        d.record(ms(1000));
        // mean = (1 + 5 * 2) / 6 s.
        let p = d.phi(Timestamp::from_micros(1_000_000 + 11_000_000 / 6));
        assert!((p - 1.0).abs() < 1e-6, "{p}");
        d.record(ms(1000 + 20_000)); // phi ~ 10.9 > 8: reset, 20 s > 10 s
        assert!(d.window.is_empty());
    }
}
