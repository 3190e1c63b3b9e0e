//! One peer's heartbeat history and its phi.

use crate::adaptive::Adaptive;
use crate::config::{DetectorConfig, Distribution};
use crate::tail::phi_normal;
use crate::time::{Timestamp, duration_micros};
use std::f64::consts::LN_10;
use std::time::Duration;

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

    /// The last `count` intervals held (fewer if the window holds fewer),
    /// oldest first, in microseconds. No allocation: what a page quotes
    /// as evidence.
    pub fn recent(&self, count: usize) -> impl Iterator<Item = u32> + '_ {
        self.iter().skip(self.slots.len().saturating_sub(count))
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

/// What a detector was told about a peer's heartbeats, for metrics and
/// for the evidence of a page.
///
/// Sequence numbers come with [`PeerDetector::record_seq`]: a gap is
/// counted as lost heartbeats, a heartbeat whose sequence number is not
/// above the highest seen is not recorded and is counted as reordered (it
/// fills a gap of the last 64, which is then no longer counted as lost)
/// or duplicate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HeartbeatCounts {
    /// Heartbeats recorded (with or without a sequence number).
    pub received: u64,
    /// Heartbeats missing from the sequence and not (yet) arrived.
    pub lost: u64,
    /// Heartbeats that arrived after a later one: not recorded.
    pub reordered: u64,
    /// Heartbeats whose sequence number was already seen (or is too old
    /// to tell): not recorded.
    pub duplicate: u64,
}

/// The model a detector judges silence with and its fitted parameters,
/// as of the last heartbeat: the evidence a page can quote.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Fit {
    /// The `adaptive` model (see `docs/detection.md`).
    Adaptive {
        /// Expected interval (median of the last intervals), microseconds.
        expected_micros: f64,
        /// Jitter band, microseconds.
        jitter_micros: f64,
        /// Silence beyond which a heartbeat counts as late, microseconds.
        late_from_micros: f64,
        /// Probability that a heartbeat is late.
        late_fraction: f64,
        /// Late heartbeats learned (faded), prior excluded.
        late_events: f64,
        /// Mean lateness beyond `late_from_micros` of a late heartbeat,
        /// prior included, microseconds.
        late_mean_excess_micros: f64,
        /// Probability that the heartbeat after a delivered one is lost,
        /// learned from sequence numbers (0 without them, or on a link
        /// that lost none).
        loss_after_delivered: f64,
        /// Probability that the heartbeat after a lost one is lost too
        /// (about `loss_after_delivered` for independent loss, higher for
        /// bursty loss).
        loss_after_lost: f64,
    },
    /// The `normal` model.
    Normal {
        /// Mean interval plus the acceptable pause, microseconds.
        mean_micros: f64,
        /// Standard deviation after the floor, microseconds.
        std_dev_micros: f64,
    },
    /// The `exponential` model.
    Exponential {
        /// Mean interval, microseconds.
        mean_micros: f64,
    },
}

/// The heartbeat history of one peer and its suspicion level.
///
/// - Create it with [`new`](Self::new), or with
///   [`started_at`](Self::started_at) for a peer that is already running
///   (an observer hand-over).
/// - Feed it every heartbeat received from the peer with
///   [`record_seq`](Self::record_seq) (the sender's sequence number:
///   duplicates and reordered heartbeats are filtered and counted, lost
///   ones learned as losses) or
///   [`record`](Self::record) (arrival times only, as in a trace), at the
///   local monotonic time of reception.
/// - Read the suspicion level at any later time with [`phi`](Self::phi),
///   or ask [`when_phi_reaches`](Self::when_phi_reaches) when it will
///   cross a threshold if nothing arrives (the one timer to arm).
/// - Tell it [`observer_resumed`](Self::observer_resumed) after the
///   observer itself stalled, [`reset`](Self::reset) on a new generation.
/// - Evidence: [`counts`](Self::counts),
///   [`recent_intervals`](Self::recent_intervals), [`fit`](Self::fit),
///   [`estimate`](Self::estimate).
///
/// Record and phi are O(1) and allocation-free (the ring buffer grows to
/// its capacity over the first heartbeats, then never again).
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
    /// Highest sequence number recorded, if any came with one.
    last_seq: Option<u64>,
    /// Bit `i` set: heartbeat `last_seq - 1 - i` arrived (64 before the
    /// highest), so a late one can be told from a duplicate.
    seen: u64,
    /// The last recorded heartbeat came after a gap in the sequence
    /// numbers and is not learned yet: until the next one, heartbeats of
    /// the gap that turn up late were overtaken, not lost.
    gap: Option<Gap>,
    counts: HeartbeatCounts,
}

/// A heartbeat recorded after `size` skipped sequence numbers, `missing`
/// of which have not arrived since, `interval` microseconds after the
/// previous recorded one.
#[derive(Debug, Clone, Copy)]
struct Gap {
    size: u64,
    missing: u64,
    interval: u64,
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
            last_seq: None,
            seen: 0,
            gap: None,
            counts: HeartbeatCounts::default(),
        };
        d.refresh_estimate();
        d
    }

    /// A detector for a peer that is already running, as if a heartbeat
    /// had arrived at `at`: see [`start_at`](Self::start_at).
    pub fn started_at(config: &DetectorConfig, at: Timestamp) -> Self {
        let mut d = PeerDetector::new(config);
        d.start_at(at);
        d
    }

    /// Starts watching a peer that is already running (an observer
    /// hand-over) as if a heartbeat had arrived at `at`: phi rises from
    /// `at` on the configured interval prior, so a peer that died during
    /// the hand-over is still suspected, and one that lives is judged from
    /// its first heartbeat on like a new peer. The span from `at` to the
    /// first real heartbeat is not an interval of the peer and is not
    /// recorded. Does nothing once a heartbeat was recorded.
    pub fn start_at(&mut self, at: Timestamp) {
        if self.last.is_none() {
            self.last = Some(at);
            self.skip_next = true;
        }
    }

    /// Records heartbeat number `seq` (the sender's counter, one per
    /// heartbeat interval), received at `at`. A heartbeat whose number is
    /// not above the highest recorded one (a duplicate, or one overtaken
    /// by a later one) is counted and otherwise ignored: it is never an
    /// interval. Numbers skipped are counted as lost, and the `adaptive`
    /// model learns them as lost heartbeats, not as a long interval (once
    /// the next heartbeat arrives: skipped ones that turn up before it were
    /// overtaken, not lost). Returns whether the heartbeat was recorded.
    /// O(1), no allocation.
    pub fn record_seq(&mut self, at: Timestamp, seq: u64) -> bool {
        match self.last_seq {
            Some(last) if seq <= last => {
                let back = last - seq;
                if (1..=64).contains(&back) && self.seen & (1 << (back - 1)) == 0 {
                    self.seen |= 1 << (back - 1);
                    self.counts.reordered += 1;
                    self.counts.lost = self.counts.lost.saturating_sub(1);
                    if let Some(gap) = &mut self.gap {
                        if back <= gap.size {
                            gap.missing = gap.missing.saturating_sub(1);
                        }
                    }
                } else {
                    self.counts.duplicate += 1;
                }
                false
            }
            Some(last) => {
                let gap = seq - last - 1;
                self.counts.lost = self.counts.lost.saturating_add(gap);
                // Shift in the previous highest (arrived) and the gap
                // (missing).
                let shift = u32::try_from(gap).unwrap_or(u32::MAX);
                self.seen = self.seen.checked_shl(shift.saturating_add(1)).unwrap_or(0)
                    | 1u64.checked_shl(shift).unwrap_or(0);
                self.last_seq = Some(seq);
                self.learn(at, Some(gap));
                true
            }
            None => {
                self.last_seq = Some(seq);
                self.seen = 0;
                self.learn(at, None);
                true
            }
        }
    }

    /// Records a heartbeat that arrived at `at`. An arrival earlier than
    /// the previous one (a caller bug or clock mix-up) counts as a zero
    /// interval and does not move the last arrival back.
    pub fn record(&mut self, at: Timestamp) {
        self.learn(at, None);
    }

    /// Records an arrival; `gap` is the count of sequence numbers skipped
    /// since the previous recorded heartbeat, if it came with one.
    fn learn(&mut self, at: Timestamp, gap: Option<u64>) {
        self.settle_gap();
        self.counts.received += 1;
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
                        match gap {
                            // Learned with the next heartbeat, once late
                            // arrivals had the chance to fill the gap.
                            Some(size @ 1..) => {
                                self.gap = Some(Gap {
                                    size,
                                    missing: size,
                                    interval,
                                });
                            }
                            Some(0) => self.learn_interval(interval, true),
                            None => self.learn_interval(interval, false),
                        }
                    } else {
                        self.refresh_estimate();
                    }
                }
                self.last = Some(at.max(last));
            }
        }
    }

    /// Learns an interval between two heartbeats that followed each other
    /// (`in_sequence`: their sequence numbers say so).
    fn learn_interval(&mut self, interval: u64, in_sequence: bool) {
        if in_sequence {
            self.adaptive.delivered();
        }
        if !self.adaptive.is_burst(interval) {
            self.adaptive.push(interval);
        }
    }

    /// Learns the heartbeat that came after a gap: if every skipped one
    /// arrived since, they were overtaken (a burst reordered by the
    /// network), and its interval is an ordinary one; otherwise the ones
    /// still missing were lost, and a lost heartbeat is not a late one:
    /// the interval, which spans them, is not learned.
    fn settle_gap(&mut self) {
        if let Some(gap) = self.gap.take() {
            if gap.missing == 0 {
                self.learn_interval(gap.interval, true);
            } else {
                self.adaptive.lost(gap.missing, gap.interval);
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
        self.settle_gap();
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
        self.last_seq = None;
        self.seen = 0;
        self.gap = None;
        self.counts = HeartbeatCounts::default();
        self.refresh_estimate();
    }

    /// The earliest time, at or after the last heartbeat, at which phi
    /// reaches `threshold` if no heartbeat comes before: the one timer a
    /// runtime needs per peer instead of polling phi. Exact to the
    /// microsecond (phi is non-decreasing in silence, so this is a search
    /// over it: a doubling bracket, then steps that alternate between the
    /// point where the chord between the bracket's ends crosses the
    /// threshold and the middle, about 15 evaluations of phi). `None`
    /// before the first heartbeat (phi stays 0), for a NaN threshold, or
    /// when phi never gets there (an infinite threshold).
    pub fn when_phi_reaches(&self, threshold: f64) -> Option<Timestamp> {
        let last = self.last?;
        if threshold.is_nan() {
            return None;
        }
        let phi = |elapsed: u64| self.phi_after(elapsed as f64);
        let (mut lo, mut phi_lo) = (0u64, phi(0));
        if phi_lo >= threshold {
            return Some(last);
        }
        // Bracket: the first power of two (from the expected interval) at
        // which phi has reached it; phi grows without bound, so only an
        // infinite threshold fails, at the end of the clock.
        let room = u64::MAX - last.as_micros();
        let mut hi = (self.prior_mean_micros as u64).clamp(1, room);
        let mut phi_hi = phi(hi);
        while phi_hi < threshold {
            if hi == room {
                return None;
            }
            (lo, phi_lo) = (hi, phi_hi);
            hi = hi.saturating_mul(2).min(room);
            phi_hi = phi(hi);
        }
        // Invariant: phi at `lo` is below the threshold, at `hi` it is not.
        // Where phi is smooth the chord's crossing is close; where it
        // jumps, the bisection steps in between still halve the bracket.
        let mut chord = true;
        while hi - lo > 1 {
            let mut mid = lo + (hi - lo) / 2;
            if chord && phi_hi.is_finite() {
                let f = (threshold - phi_lo) / (phi_hi - phi_lo);
                mid = (lo + ((hi - lo) as f64 * f) as u64).clamp(lo + 1, hi - 1);
            }
            chord = !chord;
            let p = phi(mid);
            if p >= threshold {
                (hi, phi_hi) = (mid, p);
            } else {
                (lo, phi_lo) = (mid, p);
            }
        }
        Some(Timestamp::from_micros(last.as_micros() + hi))
    }

    /// Heartbeats received, lost, reordered and duplicated so far.
    pub fn counts(&self) -> HeartbeatCounts {
        self.counts
    }

    /// Highest sequence number recorded by [`record_seq`](Self::record_seq).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The last `count` intervals recorded (at most the window), oldest
    /// first: see [`IntervalWindow::recent`].
    pub fn recent_intervals(&self, count: usize) -> impl Iterator<Item = Duration> + '_ {
        self.window
            .recent(count)
            .map(|us| Duration::from_micros(u64::from(us)))
    }

    /// The model and its fitted parameters, as phi uses them now.
    pub fn fit(&self) -> Fit {
        match self.distribution {
            Distribution::Adaptive => self.adaptive.fit(),
            Distribution::Normal => Fit::Normal {
                mean_micros: self.estimate.mean_micros,
                std_dev_micros: self.estimate.std_dev_micros,
            },
            Distribution::Exponential => Fit::Exponential {
                mean_micros: self.raw_mean_micros,
            },
        }
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
    fn sequence_numbers_filter_duplicates_and_count_losses() {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        assert!(d.record_seq(ms(0), 10));
        assert!(d.record_seq(ms(1000), 11));
        // 12 and 13 lost, 14 arrives; then 13 turns up late, 11 again.
        assert!(d.record_seq(ms(3000), 14));
        assert_eq!(d.counts().lost, 2);
        assert!(!d.record_seq(ms(3001), 13));
        assert!(!d.record_seq(ms(3002), 11));
        assert!(!d.record_seq(ms(3003), 13));
        assert!(d.record_seq(ms(4000), 15));
        let c = d.counts();
        assert_eq!(
            c,
            HeartbeatCounts {
                received: 4,
                lost: 1,
                reordered: 1,
                duplicate: 2,
            }
        );
        // Only the three recorded intervals; nothing of ~0 ms.
        let recent: Vec<_> = d.recent_intervals(32).collect();
        assert_eq!(
            recent,
            [1000, 2000, 1000].map(Duration::from_millis).to_vec()
        );
        assert_eq!(d.last_seq(), Some(15));
        assert_eq!(d.last_arrival(), Some(ms(4000)));
        d.reset();
        assert_eq!(d.counts(), HeartbeatCounts::default());
        assert!(d.record_seq(ms(5000), 0), "a new generation starts over");
    }

    /// A 1 s link, `lost(i)` saying whether heartbeat `i` is lost, with
    /// sequence numbers (or without).
    fn link(n: u64, with_seq: bool, lost: impl Fn(u64) -> bool) -> PeerDetector {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in (0..n).filter(|&i| !lost(i)) {
            let at = ms(i * 1000 + (i * 7919) % 3);
            if with_seq {
                d.record_seq(at, i);
            } else {
                d.record(at);
            }
        }
        d
    }

    fn silence_to(d: &PeerDetector, threshold: f64) -> f64 {
        let last = d.last_arrival().unwrap();
        (d.when_phi_reaches(threshold).unwrap().as_micros() - last.as_micros()) as f64 / 1e6
    }

    #[test]
    fn a_clean_link_is_judged_the_same_with_sequence_numbers() {
        let (with, without) = (link(600, true, |_| false), link(600, false, |_| false));
        let last = with.last_arrival().unwrap().as_micros();
        for k in 0..2000 {
            let at = Timestamp::from_micros(last + k * 10_000);
            assert_eq!(with.phi(at), without.phi(at), "{k}");
        }
    }

    #[test]
    fn a_lost_heartbeat_is_not_a_late_one() {
        // 1 % loss for an hour: learned as late heartbeats, the losses
        // make a link wait 8 s; as losses, 5.0-5.5 s, after the fifth
        // heartbeat of a run of four lost ones is due.
        let lossy = |i: u64| i % 100 == 57;
        let (with, without) = (link(3600, true, lossy), link(3600, false, lossy));
        let (w, wo) = (silence_to(&with, 8.0), silence_to(&without, 8.0));
        assert!(w > 5.0 && w < 5.5, "{w}");
        assert!(wo > 7.0, "{wo}");
        let Fit::Adaptive {
            late_events,
            loss_after_delivered,
            loss_after_lost,
            ..
        } = with.fit()
        else {
            panic!()
        };
        assert!(late_events < 0.01, "{late_events}");
        assert!((loss_after_delivered - 0.01).abs() < 0.002);
        assert!(loss_after_lost < 0.02, "{loss_after_lost}");
        // Four lost in a row, then the fifth arrives: not suspected.
        let four = link(3605, true, |i| lossy(i) || (3600..3604).contains(&i));
        let last = four.last_arrival().unwrap();
        let before = Timestamp::from_micros(last.as_micros() - 1);
        assert_eq!(four.counts().lost, 36 + 4);
        let mut d = link(3600, true, lossy);
        assert!(d.phi(before) < 8.0, "{}", d.phi(before));
        d.record_seq(last, 3604);
        assert!(d.phi(last) < 0.01);
    }

    #[test]
    fn bursty_loss_is_tolerated_as_bursty() {
        // Runs of 3 lost heartbeats about every 100: a 5 s silence (a run
        // of 4) is ordinary, but loss explains at most 8.5 s (runs of 8;
        // the ninth heartbeat may still be late).
        let d = link(3600, true, |i| (i % 97) < 3 && i > 50);
        let last = d.last_arrival().unwrap().as_micros();
        assert!(d.phi(Timestamp::from_micros(last + 5_100_000)) < 5.0);
        let t = silence_to(&d, 8.0);
        assert!(t > 8.5 && t < 11.0, "{t}");
    }

    #[test]
    fn a_burst_reordered_by_the_network_is_a_stall_not_a_loss() {
        // After a 3 s pause the queued heartbeats 10, 11 and 12 leave at
        // once and 12 overtakes the others: the interval is learned as a
        // late one (a stall), and nothing as lost.
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..10 {
            d.record_seq(ms(i * 1000), i);
        }
        d.record_seq(ms(12_000), 12);
        d.record_seq(ms(12_001), 10);
        d.record_seq(ms(12_002), 11);
        d.record_seq(ms(13_000), 13);
        let Fit::Adaptive {
            late_events,
            loss_after_delivered,
            ..
        } = d.fit()
        else {
            panic!()
        };
        assert!(late_events > 0.9, "{late_events}");
        assert_eq!(loss_after_delivered, 0.0);
        assert_eq!(d.counts().lost, 0);
        // Left unfilled, the same gap is two lost heartbeats.
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..10 {
            d.record_seq(ms(i * 1000), i);
        }
        d.record_seq(ms(12_000), 12);
        d.record_seq(ms(13_000), 13);
        let Fit::Adaptive {
            late_events,
            loss_after_delivered,
            ..
        } = d.fit()
        else {
            panic!()
        };
        assert!(late_events < 0.01 && loss_after_delivered > 0.0);
    }

    #[test]
    fn heartbeats_missed_during_an_observer_stall_are_not_lost() {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..20 {
            d.record_seq(ms(i * 1000), i);
        }
        d.observer_resumed(ms(40_000));
        d.record_seq(ms(40_100), 40);
        d.record_seq(ms(41_100), 41);
        let Fit::Adaptive {
            loss_after_delivered,
            ..
        } = d.fit()
        else {
            panic!()
        };
        assert_eq!(loss_after_delivered, 0.0);
    }

    #[test]
    fn recent_intervals_are_the_newest_oldest_first() {
        let mut d = PeerDetector::new(&DetectorConfig {
            window: 50,
            ..DetectorConfig::default()
        });
        let mut t = 0;
        for i in 0..120u64 {
            t += 1000 + i;
            d.record(ms(t));
        }
        let last: Vec<_> = d.recent_intervals(32).collect();
        assert_eq!(last.len(), 32);
        assert_eq!(last[0], Duration::from_millis(1000 + 119 - 31));
        assert_eq!(last[31], Duration::from_millis(1000 + 119));
        assert_eq!(d.recent_intervals(500).count(), 50);
        assert_eq!(
            PeerDetector::new(&DetectorConfig::default())
                .recent_intervals(32)
                .count(),
            0
        );
    }

    #[test]
    fn a_hand_over_starts_from_the_prior_and_still_detects() {
        let cfg = DetectorConfig::default();
        let mut d = PeerDetector::started_at(&cfg, ms(100_000));
        assert_eq!(d.last_arrival(), Some(ms(100_000)));
        assert!(d.phi(ms(100_500)) < 0.5, "{}", d.phi(ms(100_500)));
        // No heartbeat ever comes: suspected like a silent new peer.
        let at = d.when_phi_reaches(8.0).unwrap();
        assert!(at > ms(102_000) && at < ms(115_000), "{at:?}");
        // A heartbeat comes: the span since the hand-over is no interval.
        d.record(ms(100_700));
        assert_eq!(d.window().len(), 0);
        d.record(ms(101_700));
        assert_eq!(d.window().len(), 1);
        // Once heartbeats were recorded, start_at changes nothing.
        d.start_at(ms(200_000));
        assert_eq!(d.last_arrival(), Some(ms(101_700)));
    }

    #[test]
    fn when_phi_reaches_matches_phi() {
        for distribution in Distribution::ALL.iter().copied() {
            let mut d = PeerDetector::new(&DetectorConfig {
                distribution,
                ..DetectorConfig::default()
            });
            assert_eq!(d.when_phi_reaches(8.0), None);
            for i in 0..100 {
                d.record(ms(i * 1000));
            }
            let last = d.last_arrival().unwrap();
            assert_eq!(d.when_phi_reaches(0.0), Some(last));
            for th in [0.5, 3.0, 8.0, 30.0] {
                let at = d.when_phi_reaches(th).unwrap();
                assert!(d.phi(at) >= th, "{distribution}: {th}");
                let before = Timestamp::from_micros(at.as_micros() - 1);
                assert!(d.phi(before) < th, "{distribution}: {th}");
            }
        }
    }

    #[test]
    fn the_fit_reads_the_model() {
        let mut d = PeerDetector::new(&DetectorConfig::default());
        for i in 0..200 {
            d.record(ms(i * 1000));
        }
        let Fit::Adaptive {
            expected_micros,
            late_from_micros,
            late_fraction,
            late_mean_excess_micros,
            ..
        } = d.fit()
        else {
            panic!("{:?}", d.fit());
        };
        assert_eq!(expected_micros, 1e6);
        assert!(late_from_micros > 1e6 && late_from_micros < 2e6);
        assert!(late_fraction > 0.0 && late_fraction < 0.01);
        assert!(late_mean_excess_micros > 1e4 && late_mean_excess_micros < 2e6);
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
