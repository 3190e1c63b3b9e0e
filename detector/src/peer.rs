//! One peer's heartbeat history and its phi.

use crate::adaptive::Adaptive;
use crate::config::{DetectorConfig, Distribution};
use crate::tail::phi_normal;
use crate::time::{Timestamp, duration_micros};
use std::f64::consts::LN_10;

/// Intervals longer than this (about 71 minutes) are stored as this. Such
/// a gap is an outage, not jitter; clamping keeps a slot at 4 bytes and
/// the exact integer sums far from overflow.
pub const MAX_INTERVAL_MICROS: u64 = u32::MAX as u64;

/// Below this many observed intervals the configured heartbeat interval
/// acts as a prior (as pseudo-samples that fade out one per observation),
/// so a new peer is judged sensibly instead of from one or two samples.
pub const COLD_START_SAMPLES: u32 = 4;

/// Smallest standard deviation ever used, whatever the configuration says,
/// so y = (t - mean) / std stays finite.
const STD_FLOOR_MICROS: f64 = 1.0;

/// A fixed-capacity ring of inter-arrival intervals with exact running sums.
///
/// Sums are integers of microseconds, so they never drift: after a year of
/// heartbeats the mean and variance are bit-for-bit those of a recount.
#[derive(Debug, Clone)]
pub struct IntervalWindow {
    /// Grows to `capacity` (doubling, so a handful of allocations over a
    /// peer's life), then is used as a ring: a cluster of thousands of
    /// peers that are all young does not pay for full windows up front.
    slots: Vec<u32>,
    capacity: usize,
    /// Index of the oldest interval once full.
    head: usize,
    sum: u64,
    sum_sq: u128,
}

impl IntervalWindow {
    /// An empty window of `capacity` slots (at least one).
    pub fn new(capacity: usize) -> Self {
        IntervalWindow {
            slots: Vec::new(),
            capacity: capacity.max(1),
            head: 0,
            sum: 0,
            sum_sq: 0,
        }
    }

    /// Adds an interval, evicting the oldest when full. O(1); allocates
    /// only while the window is still growing toward its capacity.
    pub fn push(&mut self, micros: u64) {
        let v = micros.min(MAX_INTERVAL_MICROS) as u32;
        if self.slots.len() == self.capacity {
            let old = self.slots[self.head];
            self.sum -= u64::from(old);
            // A u32 squared fits a u64: one 64-bit multiply, then widen.
            self.sum_sq -= u128::from(u64::from(old) * u64::from(old));
            self.slots[self.head] = v;
            // A compare instead of `%`: a division costs more than the rest of push.
            self.head += 1;
            if self.head == self.capacity {
                self.head = 0;
            }
        } else {
            if self.slots.len() == self.slots.capacity() {
                // Double, but never past the configured capacity.
                let want = (self.slots.len() * 2).max(8).min(self.capacity);
                self.slots.reserve_exact(want - self.slots.len());
            }
            self.slots.push(v);
        }
        self.sum += u64::from(v);
        self.sum_sq += u128::from(u64::from(v) * u64::from(v));
    }

    /// Forgets every interval (keeping the allocation).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.head = 0;
        self.sum = 0;
        self.sum_sq = 0;
    }

    /// Number of intervals held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no interval is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Maximum number of intervals held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of heap memory held by the window.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
    }

    /// Sum of the held intervals, in microseconds.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Sum of squares of the held intervals, in square microseconds.
    pub fn sum_sq(&self) -> u128 {
        self.sum_sq
    }

    /// The held intervals, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (newer, older) = self.slots.split_at(self.head);
        older.iter().chain(newer).copied()
    }

    /// Mean and population variance in microseconds (and square
    /// microseconds), computed exactly in integers before the one rounding
    /// to `f64`. `None` when empty.
    pub fn mean_var(&self) -> Option<(f64, f64)> {
        if self.slots.is_empty() {
            return None;
        }
        let n = self.slots.len() as u64;
        let sum = u128::from(self.sum);
        // n * sum_sq >= sum^2 by Cauchy-Schwarz, so this never underflows.
        let num = u128::from(n) * self.sum_sq - sum * sum;
        // u128 -> f64 is a slow library call; the numerator fits u64 unless
        // the deviation is minutes, so convert through u64 when it can.
        let num = match u64::try_from(num) {
            Ok(small) => small as f64,
            Err(_) => num as f64,
        };
        // Divide rather than multiply by 1/n: the mean of identical
        // intervals must be exactly that interval (a recount's result).
        let nf = n as f64;
        Some((self.sum as f64 / nf, num / (nf * nf)))
    }
}

/// Location and scale the detector judges the current silence against,
/// in microseconds, after the prior, the floor and the acceptable pause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Expected interval (mean plus acceptable pause), microseconds.
    pub mean_micros: f64,
    /// Standard deviation after the `min_std_dev` floor, microseconds.
    pub std_dev_micros: f64,
}

/// The heartbeat history of one peer and its suspicion level.
///
/// Call [`record`](Self::record) with the local monotonic time of every
/// heartbeat received from the peer, and [`phi`](Self::phi) with any later
/// time to read the suspicion level. Both are O(1) and allocation-free;
/// the ring buffer is allocated once in [`new`](Self::new).
#[derive(Debug, Clone)]
pub struct PeerDetector {
    window: IntervalWindow,
    last: Option<Timestamp>,
    /// Set after the observer itself stalled: the next interval spans the
    /// stall and says nothing about the peer.
    skip_next: bool,
    estimate: Estimate,
    /// Mean of the window (before the pause), for the exponential model.
    raw_mean_micros: f64,
    distribution: Distribution,
    min_std_micros: f64,
    pause_micros: f64,
    prior_mean_micros: f64,
    /// State of the adaptive model (learned only when it is selected).
    adaptive: Adaptive,
}

impl PeerDetector {
    /// A detector with no history yet.
    pub fn new(config: &DetectorConfig) -> Self {
        let prior = duration_micros(config.first_heartbeat_estimate).max(1) as f64;
        let mut d = PeerDetector {
            window: IntervalWindow::new(config.window.clamp(1, DetectorConfig::MAX_WINDOW)),
            last: None,
            skip_next: false,
            estimate: Estimate {
                mean_micros: prior,
                std_dev_micros: prior / 4.0,
            },
            raw_mean_micros: prior,
            distribution: config.distribution,
            min_std_micros: (duration_micros(config.min_std_dev) as f64).max(STD_FLOOR_MICROS),
            pause_micros: duration_micros(config.acceptable_pause) as f64,
            prior_mean_micros: prior,
            adaptive: Adaptive::new(
                prior,
                (duration_micros(config.min_std_dev) as f64).max(STD_FLOOR_MICROS),
                config.window.clamp(1, DetectorConfig::MAX_WINDOW),
            ),
        };
        d.refresh_estimate();
        d
    }

    /// Records a heartbeat that arrived at `at`. An arrival earlier than
    /// the previous one (a caller bug or clock mix-up) counts as a zero
    /// interval and does not move the last arrival back.
    pub fn record(&mut self, at: Timestamp) {
        match self.last {
            None => self.last = Some(at),
            Some(last) => {
                if self.skip_next {
                    self.skip_next = false;
                } else {
                    let interval = at.micros_since(last);
                    self.window.push(interval);
                    if self.distribution == Distribution::Adaptive {
                        // The window's estimate is only read for reports
                        // (`estimate()` computes it then), so the hot path
                        // skips it.
                        if !self.adaptive.is_burst(interval) {
                            self.adaptive.push(interval);
                        }
                    } else {
                        self.refresh_estimate();
                    }
                }
                self.last = Some(at.max(last));
            }
        }
    }

    /// The suspicion level at `now`: 0 before the first heartbeat, then
    /// -log10 of the probability that the next heartbeat comes later than
    /// `now - last`. Finite, never NaN, non-decreasing in `now`.
    pub fn phi(&self, now: Timestamp) -> f64 {
        match self.last {
            None => 0.0,
            Some(last) => self.phi_after(now.micros_since(last) as f64),
        }
    }

    /// phi after `elapsed_micros` of silence, with the current estimate.
    pub fn phi_after(&self, elapsed_micros: f64) -> f64 {
        match self.distribution {
            Distribution::Adaptive => self.adaptive.phi(elapsed_micros - self.pause_micros),
            Distribution::Normal => {
                let e = self.estimate;
                phi_normal((elapsed_micros - e.mean_micros) / e.std_dev_micros)
            }
            Distribution::Exponential => {
                let t = (elapsed_micros - self.pause_micros).max(0.0);
                t / (self.raw_mean_micros.max(1.0) * LN_10)
            }
        }
    }

    /// Tells the detector that the observer itself was stalled until
    /// `resumed_at` (event loop blocked, process paused, host suspended).
    /// The silence is measured from `resumed_at` and the interval that
    /// spans the stall is not recorded.
    pub fn observer_resumed(&mut self, resumed_at: Timestamp) {
        if let Some(last) = self.last {
            if last < resumed_at {
                self.last = Some(resumed_at);
                self.skip_next = true;
            }
        }
    }

    /// Reads the memory [`record`](Self::record) touches and returns a
    /// value made from it (pass it to [`std::hint::black_box`]). A caller
    /// about to record many detectors scattered in memory reads them all
    /// first: the cache misses of independent reads overlap, while those of
    /// one `record` after another wait for each other.
    pub fn warm(&self) -> u64 {
        let ring = self
            .window
            .slots
            .get(self.window.head)
            .copied()
            .unwrap_or(0);
        u64::from(ring) ^ self.adaptive.warm() ^ self.last.map_or(0, Timestamp::as_micros)
    }

    /// Forgets everything, as for a peer that restarted.
    pub fn reset(&mut self) {
        self.window.clear();
        self.last = None;
        self.skip_next = false;
        self.adaptive.reset();
        self.refresh_estimate();
    }

    /// Time of the last recorded heartbeat (or of the end of an observer
    /// stall that came after it).
    pub fn last_arrival(&self) -> Option<Timestamp> {
        self.last
    }

    /// The interval window.
    pub fn window(&self) -> &IntervalWindow {
        &self.window
    }

    /// Mean and standard deviation phi is computed against.
    pub fn estimate(&self) -> Estimate {
        if self.distribution == Distribution::Adaptive {
            return self.window_estimate().0;
        }
        self.estimate
    }

    fn refresh_estimate(&mut self) {
        let (estimate, raw_mean) = self.window_estimate();
        self.estimate = estimate;
        self.raw_mean_micros = raw_mean;
    }

    /// The window's estimate (with the cold-start prior, floor and pause)
    /// and its raw mean.
    fn window_estimate(&self) -> (Estimate, f64) {
        let n = self.window.len() as f64;
        let (mean, var) = self.window.mean_var().unwrap_or((0.0, 0.0));
        let (mean, var) = if (self.window.len() as u32) < COLD_START_SAMPLES {
            // Blend with (COLD_START_SAMPLES - n) pseudo-samples drawn from
            // the prior: mean = estimate, std = estimate / 4 (Akka's choice).
            let w = f64::from(COLD_START_SAMPLES) - n;
            let pm = self.prior_mean_micros;
            let pv = (pm / 4.0) * (pm / 4.0);
            let total = w + n;
            let m = (w * pm + n * mean) / total;
            let second = (w * (pv + pm * pm) + n * (var + mean * mean)) / total;
            (m, (second - m * m).max(0.0))
        } else {
            (mean, var)
        };
        (
            Estimate {
                mean_micros: mean + self.pause_micros,
                std_dev_micros: var.sqrt().max(self.min_std_micros),
            },
            mean,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    #[test]
    fn window_sums_match_recount_after_wraparound() {
        let mut w = IntervalWindow::new(7);
        for i in 0..1000u64 {
            w.push(i * 7919 % 100_003);
            let sum: u64 = w.iter().map(u64::from).sum();
            let sq: u128 = w.iter().map(|v| u128::from(v) * u128::from(v)).sum();
            assert_eq!((w.sum(), w.sum_sq()), (sum, sq));
        }
        assert_eq!(w.len(), 7);
    }

    #[test]
    fn memory_per_peer_stays_under_8_kib_at_window_1000() {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..5000 {
            d.record(ms(i * 1000));
        }
        let total = std::mem::size_of::<PeerDetector>() + d.window().heap_bytes();
        assert_eq!(d.window().len(), 1000);
        assert!(total <= 8 * 1024, "{total} bytes per peer");
        // A young peer pays only for what it holds.
        let mut young = PeerDetector::new(&DetectorConfig::default());
        for i in 0..10 {
            young.record(ms(i * 1000));
        }
        assert!(young.window().heap_bytes() <= 64);
    }

    #[test]
    fn huge_intervals_are_clamped_not_overflowed() {
        let mut w = IntervalWindow::new(100_000);
        for _ in 0..100_000 {
            w.push(u64::MAX);
        }
        let (mean, var) = w.mean_var().unwrap();
        assert_eq!(mean, MAX_INTERVAL_MICROS as f64);
        assert_eq!(var, 0.0);
    }

    #[test]
    fn steady_heartbeats_follow_the_normal_tail() {
        let cfg = DetectorConfig {
            distribution: Distribution::Normal,
            ..DetectorConfig::default()
        };
        let mut d = PeerDetector::new(&cfg);
        for i in 0..100 {
            d.record(ms(i * 1000));
        }
        let e = d.estimate();
        assert_eq!(e.mean_micros, 1_000_000.0);
        assert_eq!(e.std_dev_micros, 100_000.0); // the floor
        // One mean later, phi = -log10(0.5).
        let p = d.phi(ms(99_000 + 1000));
        assert!((p - 0.5f64.log10().abs()).abs() < 1e-12, "{p}");
        // 10 sigma late: Q(10) = 7.62e-24.
        let p = d.phi(ms(99_000 + 2000));
        assert!((p - 23.118_05).abs() < 1e-4, "{p}");
    }

    #[test]
    fn cold_start_uses_the_prior() {
        let cfg = DetectorConfig {
            first_heartbeat_estimate: Duration::from_secs(2),
            distribution: Distribution::Normal,
            ..DetectorConfig::default()
        };
        let mut d = PeerDetector::new(&cfg);
        assert_eq!(d.phi(ms(5_000)), 0.0, "no heartbeat yet");
        d.record(ms(0));
        assert_eq!(d.estimate().mean_micros, 2_000_000.0);
        assert_eq!(d.estimate().std_dev_micros, 500_000.0);
        // 1 s after the first heartbeat of a 2 s sender: not suspicious.
        assert!(d.phi(ms(1_000)) < 1.0);
        assert!(d.phi(ms(6_000)) > 8.0);
    }

    #[test]
    fn acceptable_pause_shifts_the_mean() {
        let cfg = DetectorConfig {
            acceptable_pause: Duration::from_secs(3),
            ..DetectorConfig::default()
        };
        let mut d = PeerDetector::new(&cfg);
        for i in 0..10 {
            d.record(ms(i * 1000));
        }
        assert_eq!(d.estimate().mean_micros, 4_000_000.0);
        assert!(d.phi(ms(9_000 + 3_500)) < 0.5);
    }

    #[test]
    fn exponential_is_cassandras_formula() {
        let cfg = DetectorConfig {
            distribution: Distribution::Exponential,
            ..DetectorConfig::default()
        };
        let mut d = PeerDetector::new(&cfg);
        for i in 0..10 {
            d.record(ms(i * 1000));
        }
        let p = d.phi(ms(9_000 + 2_000));
        assert!((p - 2.0 / LN_10).abs() < 1e-12, "{p}");
    }

    #[test]
    fn observer_stall_is_not_recorded() {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..10 {
            d.record(ms(i * 1000));
        }
        // The observer froze from 9 s to 30 s.
        d.observer_resumed(ms(30_000));
        assert!(d.phi(ms(30_100)) < 0.1);
        d.record(ms(30_050));
        assert_eq!(d.window().len(), 9, "the stall interval was skipped");
        d.record(ms(31_050));
        assert_eq!(d.window().len(), 10);
        assert_eq!(d.estimate().mean_micros, 1_000_000.0);
    }

    #[test]
    fn out_of_order_arrival_does_not_go_back() {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        d.record(ms(1000));
        d.record(ms(500));
        assert_eq!(d.last_arrival(), Some(ms(1000)));
        assert_eq!(d.window().iter().collect::<Vec<_>>(), vec![0]);
    }
}
