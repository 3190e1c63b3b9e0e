//! The `adaptive` model: a robust location and jitter band for on-time
//! heartbeats, and a Bayesian model, learned per peer, of how late its
//! late heartbeats are.
//!
//! ```text
//! phi(t) = min(phi_jitter, phi_late)
//! phi_jitter = -log10 Q((t - mu) / sigma)
//! phi_late   = -log10 q + A · log10(1 + (t - mu)+ / B)
//! ```
//!
//! A silence is judged by whichever explanation makes it more probable:
//! ordinary jitter around the expected interval `mu`, or one of the peer's
//! late heartbeats. (`P_later = max(Q, q · (1 + x / B)^-A)`, within a
//! factor 2 of the mixture of the two and much cheaper to evaluate.)
//!
//! - **Bursts are one event.** A heartbeat that arrives within a quarter of
//!   the expected interval after a *late* one is folded into it: after a
//!   sender pause the burst of queued heartbeats counts as one late
//!   arrival, not as one long interval followed by several tiny ones.
//! - **mu** is the median of the last [`RECENT`] (folded) intervals: a
//!   lost, paused or delayed heartbeat does not move it, and after a
//!   change of the heartbeat interval it follows within half that many
//!   heartbeats. Late heartbeats that turn out to have been the new rhythm
//!   once the median has moved are taken back out of the late statistics.
//! - **sigma** is a running mean absolute deviation of on-time intervals
//!   (times 1.25, the normal ratio of standard to mean absolute
//!   deviation), floored at `min(min_std_dev, mu / 8)`.
//! - **q**, the late fraction, is the rule of succession over about
//!   `window` intervals: [`PRIOR_LATE`] late intervals among
//!   [`PRIOR_SAMPLES`] as the prior, so a clean peer still has a small,
//!   non-zero chance of a late heartbeat (about 1 in 2,200 after 1000
//!   clean ones) and a young peer is judged with caution. Late means
//!   beyond `mu + max(4 sigma, mu / 2)`.
//! - **A, B**: how late a late heartbeat is (its excess over `mu`) is
//!   modelled as exponential with an unknown rate, with a Gamma prior worth
//!   [`TAIL_PRIOR_EVENTS`] late heartbeats of [`TAIL_PRIOR_SCALE_MICROS`]
//!   each. The predictive tail is then `(1 + x / B)^-A` (a Lomax law) with
//!   `A` = prior events + late heartbeats seen and `B` = prior excess +
//!   their excess: heavy while little is known, close to the fitted
//!   exponential once many late heartbeats were seen. The excess is in
//!   absolute time, not in heartbeat intervals: a stalled sender, a
//!   stalled network or a burst of losses lasts seconds whatever the
//!   heartbeat rate. Each excess counts at most [`EXCESS_CAP_MICROS`] (or
//!   two intervals, if longer), so that one partition does not make a
//!   peer's tail heavy for good, and the statistics fade over
//!   [`TAIL_MEMORY_WINDOWS`] windows: rare events need a longer memory
//!   than the jitter band.
//!
//! phi is continuous, non-decreasing in `t`, finite, and keeps growing
//! (logarithmically far out) for as long as the peer stays silent. Record
//! and phi are O(1) and allocation-free; phi costs one logarithm (and the
//! normal tail only while the silence is within the jitter band).

use crate::tail::phi_normal;
use std::f64::consts::{LOG10_2, LOG10_E};

/// Intervals the location is the median of (odd).
pub const RECENT: usize = 9;
/// Prior late intervals of the late fraction.
pub const PRIOR_LATE: f64 = 0.5;
/// Prior intervals (late or not) of the late fraction: a new peer starts
/// at q = 0.5 %, about one late heartbeat in 200.
pub const PRIOR_SAMPLES: f64 = 100.0;
/// Weight of the prior on the lateness of late heartbeats, in late
/// heartbeats.
pub const TAIL_PRIOR_EVENTS: f64 = 10.0;
/// Prior mean excess of a late heartbeat over the expected interval,
/// microseconds.
pub const TAIL_PRIOR_SCALE_MICROS: f64 = 500_000.0;
/// Largest excess one late heartbeat contributes, microseconds (unless two
/// heartbeat intervals are longer).
pub const EXCESS_CAP_MICROS: f64 = 4_000_000.0;
/// The late-heartbeat statistics fade over this many windows of intervals.
pub const TAIL_MEMORY_WINDOWS: f64 = 8.0;

/// Below this score the silence is so far inside the jitter band that
/// Q(y) = 1 in `f64`: phi is exactly 0.
const INSIDE: f64 = -8.3;

/// Learned state of the adaptive model. Plain numbers; no allocation.
///
/// `repr(C)` keeps the fields every phi reads in the first cache line, so
/// a sweep over thousands of peers touches one line per peer.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Adaptive {
    /// Expected interval, microseconds.
    mu: f64,
    /// 1 / sigma.
    inv_sigma: f64,
    /// -log10 q.
    tail_level: f64,
    /// A / ln 10.
    tail_slope: f64,
    /// 1 / B, per microsecond.
    inv_tail_scale: f64,
    /// Jitter band, microseconds.
    sigma: f64,
    /// Forgotten counts of intervals and of late intervals.
    n: f64,
    late: f64,
    /// Running mean absolute deviation of on-time intervals, microseconds.
    mad: f64,
    /// Forgotten count and summed excess (microseconds) of late intervals.
    tail_events: f64,
    tail_excess: f64,
    /// Forgetting factors per interval: 1 - 1 / window, and the slower one
    /// of the late-heartbeat statistics.
    keep: f64,
    keep_tail: f64,
    prior_mu: f64,
    min_std: f64,
    /// Ring of the last intervals, microseconds.
    recent: [u32; RECENT],
    /// The same values sorted (the first `len` are valid).
    sorted: [u32; RECENT],
    /// The excess each interval of the ring added to the late statistics
    /// (0 if it was on time), so a late interval can be taken back.
    recent_excess: [f32; RECENT],
    len: u8,
    head: u8,
    /// Late intervals in the ring.
    recent_late: u8,
    /// The last learned interval was late: short intervals now are the
    /// burst of heartbeats that queued up behind it.
    after_late: bool,
}

impl Adaptive {
    pub(crate) fn new(prior_mu: f64, min_std: f64, window: usize) -> Self {
        let window = window.max(1) as f64;
        let prior_mu = prior_mu.max(1.0);
        let mut a = Adaptive {
            mu: prior_mu,
            inv_sigma: 0.0,
            tail_level: 0.0,
            tail_slope: 0.0,
            inv_tail_scale: 0.0,
            sigma: 0.0,
            n: 0.0,
            late: 0.0,
            mad: 0.0,
            tail_events: 0.0,
            tail_excess: 0.0,
            keep: 1.0 - 1.0 / window,
            keep_tail: 1.0 - 1.0 / (TAIL_MEMORY_WINDOWS * window),
            prior_mu,
            min_std: min_std.max(1.0),
            recent: [0; RECENT],
            sorted: [0; RECENT],
            recent_excess: [0.0; RECENT],
            len: 0,
            head: 0,
            recent_late: 0,
            after_late: false,
        };
        a.refresh_band();
        a.refresh_tail();
        a
    }

    pub(crate) fn reset(&mut self) {
        let window = (1.0 / (1.0 - self.keep)).round() as usize;
        *self = Adaptive::new(self.prior_mu, self.min_std, window);
    }

    /// True when an interval this short after the previous heartbeat is
    /// part of a burst after a late heartbeat (a sender pause): the burst
    /// is folded into the late arrival. A short interval after an on-time
    /// one is learned: it may be a faster heartbeat interval.
    pub(crate) fn is_burst(&self, micros: u64) -> bool {
        self.after_late && (micros as f64) < 0.25 * self.mu
    }

    /// Learns a (folded) interval, microseconds.
    pub(crate) fn push(&mut self, micros: u64) {
        let v = micros.min(u64::from(u32::MAX)) as u32;
        let x = f64::from(v);
        // Classify against the estimate before this interval.
        let late = x > self.late_from();
        self.n = self.n * self.keep + 1.0;
        self.late *= self.keep;
        self.tail_events *= self.keep_tail;
        self.tail_excess *= self.keep_tail;
        let mut excess = 0.0;
        if late {
            self.late += 1.0;
            excess = (x - self.mu).min(EXCESS_CAP_MICROS.max(2.0 * self.mu));
            self.tail_events += 1.0;
            self.tail_excess += excess;
        } else {
            // A running mean over about 32 on-time intervals.
            let dev = (x - self.mu).abs();
            let rate = if self.n >= 32.0 {
                1.0 / 32.0
            } else {
                1.0 / self.n
            };
            self.mad += (dev - self.mad) * rate;
        }
        self.after_late = late;
        self.insert(v, excess as f32);
        let before = self.mu;
        self.mu = self.location();
        self.refresh_band();
        if self.recent_late > 0 && self.mu > before {
            self.take_back_new_rhythm();
        }
        self.refresh_tail();
    }

    /// Threshold beyond which an interval is late.
    fn late_from(&self) -> f64 {
        self.mu + (4.0 * self.sigma).max(0.5 * self.mu)
    }

    /// After the location moved up (the heartbeat interval grew), the
    /// recent intervals that were counted late but are on time for the new
    /// location were the new rhythm, not late heartbeats: take them back
    /// out of the late statistics. (Their forgetting over at most
    /// [`RECENT`] intervals is ignored: a difference below 1 %.)
    fn take_back_new_rhythm(&mut self) {
        let late_from = self.late_from();
        for i in 0..usize::from(self.len) {
            let excess = f64::from(self.recent_excess[i]);
            if excess > 0.0 && f64::from(self.recent[i]) <= late_from {
                self.recent_excess[i] = 0.0;
                self.recent_late -= 1;
                self.late = (self.late - 1.0).max(0.0);
                self.tail_events = (self.tail_events - 1.0).max(0.0);
                self.tail_excess = (self.tail_excess - excess).max(0.0);
            }
        }
    }

    /// Ring and sorted copy: remove the evicted value, insert the new one.
    fn insert(&mut self, v: u32, excess: f32) {
        let len = usize::from(self.len);
        let slot;
        if len == RECENT {
            slot = usize::from(self.head);
            let old = self.recent[slot];
            if self.recent_excess[slot] > 0.0 {
                self.recent_late -= 1;
            }
            self.recent[slot] = v;
            self.head = if slot + 1 == RECENT {
                0
            } else {
                slot as u8 + 1
            };
            // Replace `old` by `v` in the sorted array, keeping it sorted.
            let mut i = self.sorted.iter().position(|&s| s == old).unwrap_or(0);
            while i > 0 && self.sorted[i - 1] > v {
                self.sorted[i] = self.sorted[i - 1];
                i -= 1;
            }
            while i + 1 < RECENT && self.sorted[i + 1] < v {
                self.sorted[i] = self.sorted[i + 1];
                i += 1;
            }
            self.sorted[i] = v;
        } else {
            slot = len;
            self.recent[len] = v;
            let mut i = len;
            while i > 0 && self.sorted[i - 1] > v {
                self.sorted[i] = self.sorted[i - 1];
                i -= 1;
            }
            self.sorted[i] = v;
            self.len += 1;
        }
        self.recent_excess[slot] = excess;
        if excess > 0.0 {
            self.recent_late += 1;
        }
    }

    /// The median of the ring, or for a young peer the median of the held
    /// intervals and `RECENT - len` copies of the prior interval: the
    /// location moves from the prior to the peer's own rhythm one interval
    /// at a time.
    fn location(&self) -> f64 {
        let len = usize::from(self.len);
        let mid = RECENT / 2;
        if len == RECENT {
            return f64::from(self.sorted[mid]).max(1.0);
        }
        let missing = RECENT - len;
        let below = self.sorted[..len]
            .iter()
            .filter(|&&s| f64::from(s) < self.prior_mu)
            .count();
        if mid < below {
            f64::from(self.sorted[mid])
        } else if mid < below + missing {
            self.prior_mu
        } else {
            f64::from(self.sorted[mid - missing])
        }
        .max(1.0)
    }

    /// The jitter band from the deviation learned so far.
    fn refresh_band(&mut self) {
        // Until on-time intervals say otherwise, the jitter is the prior's
        // (Akka's first-heartbeat spread, a quarter of the interval).
        let w = (self.n * 0.125).min(1.0);
        let mad = w * 1.25 * self.mad + (1.0 - w) * 0.25 * self.prior_mu;
        self.sigma = mad.max(self.min_std.min(self.mu * 0.125)).max(1.0);
        self.inv_sigma = 1.0 / self.sigma;
    }

    /// The late fraction and the late-heartbeat law, as phi reads them.
    fn refresh_tail(&mut self) {
        let q = (self.late + PRIOR_LATE) / (self.n + PRIOR_SAMPLES);
        self.tail_level = -q.clamp(1e-12, 0.5).log10();
        self.tail_slope = (TAIL_PRIOR_EVENTS + self.tail_events) * LOG10_E;
        self.inv_tail_scale =
            1.0 / (TAIL_PRIOR_EVENTS * TAIL_PRIOR_SCALE_MICROS + self.tail_excess);
    }

    /// phi after `elapsed` microseconds of silence (beyond the acceptable
    /// pause).
    pub(crate) fn phi(&self, elapsed: f64) -> f64 {
        let over = elapsed - self.mu;
        let y = over * self.inv_sigma;
        if y < INSIDE {
            // Where most peers are at any instant: no logarithm at all.
            return 0.0;
        }
        let late =
            self.tail_level + self.tail_slope * (1.0 + over.max(0.0) * self.inv_tail_scale).ln();
        // Q(y) <= exp(-y^2 / 2) / 2 for y >= 0, so the jitter explanation
        // is at least this improbable: when it is already less probable
        // than a late heartbeat, the normal tail is not needed.
        if y > 0.0 && y * y * (0.5 * LOG10_E) + LOG10_2 >= late {
            return late;
        }
        let jitter = phi_normal(y);
        if jitter < late { jitter.max(0.0) } else { late }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(intervals: impl IntoIterator<Item = u64>) -> Adaptive {
        let mut a = Adaptive::new(1e6, 1e5, 1000);
        for iv in intervals {
            if !a.is_burst(iv) {
                a.push(iv);
            }
        }
        a
    }

    #[test]
    fn a_clean_peer_has_the_prior_tail() {
        let a = fed(std::iter::repeat_n(1_000_000, 3000));
        // q ~ 0.5 / 1100: phi just past the jitter band is ~3.3.
        let at = |s: f64| a.phi(s * 1e6);
        assert!((at(1.8) - (3.34 + 10.0 * (1.0 + 0.8 / 5.0f64).log10())).abs() < 0.02);
        assert_eq!(at(0.1), 0.0);
        // Continuous and non-decreasing through the switch of explanation.
        let mut prev = 0.0;
        for i in 0..20_000 {
            let p = at(i as f64 * 1e-3);
            assert!(p >= prev, "phi fell at {i} ms: {prev} -> {p}");
            assert!(p - prev < 0.05, "phi jumped at {i} ms: {prev} -> {p}");
            prev = p;
        }
    }

    #[test]
    fn late_heartbeats_make_the_tail_heavier_and_fade() {
        let clean = fed(std::iter::repeat_n(1_000_000, 1000));
        let mut lossy = std::iter::repeat_n(1_000_000u64, 1000).collect::<Vec<_>>();
        for i in (0..1000).step_by(50) {
            lossy[i] = 3_000_000; // two lost heartbeats
        }
        let lossy = fed(lossy);
        let at = |a: &Adaptive| a.phi(4e6);
        assert!(
            at(&lossy) < at(&clean) - 1.0,
            "{} vs {}",
            at(&lossy),
            at(&clean)
        );
        // After many tail memories (8 windows) of clean heartbeats the peer
        // is clean again.
        let mut healed = lossy.clone();
        for _ in 0..60_000 {
            healed.push(1_000_000);
        }
        assert!(
            (at(&healed) - at(&clean)).abs() < 0.2,
            "{} vs {}",
            at(&healed),
            at(&clean)
        );
    }

    #[test]
    fn the_new_rhythm_is_taken_back_out_of_the_late_statistics() {
        let mut a = fed(std::iter::repeat_n(500_000, 2000));
        let clean_tail = (a.tail_events, a.tail_excess);
        for _ in 0..20 {
            a.push(2_000_000);
        }
        assert!((a.mu - 2e6).abs() < 1.0);
        // The first 2 s intervals were late for a 500 ms peer; once the
        // median moved they were recognised as the new interval.
        assert!(a.tail_events < clean_tail.0 + 0.5, "{}", a.tail_events);
        assert!(a.tail_excess < clean_tail.1 + 1.0, "{}", a.tail_excess);
        assert_eq!(a.recent_late, 0);
    }

    #[test]
    fn one_partition_counts_as_a_capped_excess() {
        let mut intervals = vec![1_000_000u64; 500];
        intervals.push(600_000_000); // a 10 minute cut
        intervals.extend(std::iter::repeat_n(1_000_000, 500));
        let a = fed(intervals);
        assert!(a.tail_excess <= EXCESS_CAP_MICROS, "{}", a.tail_excess);
    }

    #[test]
    fn hours_of_silence_keep_phi_growing_and_finite() {
        let a = fed(std::iter::repeat_n(1_000_000, 100));
        let mut prev = 0.0;
        for s in [10.0, 60.0, 600.0, 3600.0, 86_400.0, 1e7] {
            let p = a.phi(s * 1e6);
            assert!(p.is_finite() && p > prev, "{s} s: {p}");
            prev = p;
        }
    }
}
