//! The `adaptive` model: a robust, fast-adapting location, a normal body
//! for jitter and a learned exponential tail for late heartbeats.
//!
//! P_later(t) = (1 - q) · Q((t - mu) / sigma) + q · exp(-(t - mu)+ / s)
//!
//! - **Bursts are one event.** A heartbeat that arrives within a quarter of
//!   the expected interval after the previous one is folded into it: after
//!   a sender pause the burst of delayed heartbeats counts as one late
//!   arrival, not as one long interval followed by several tiny ones that
//!   would drag the location down and blow the spread up.
//! - **mu** is the median of the last [`RECENT`] (folded) intervals: one
//!   lost heartbeat, pause or delayed packet does not move it, and after a
//!   change of the heartbeat interval it follows within half that many
//!   heartbeats, where a 1000-interval mean takes minutes.
//! - **sigma** is a running mean absolute deviation of on-time intervals
//!   (times 1.25, the normal ratio of standard to mean absolute
//!   deviation), floored at `min(min_std_dev, mu / 8)` so fast heartbeats
//!   keep a proportionate floor.
//! - **q** is the fraction of late intervals (those beyond
//!   mu + max(4 sigma, mu / 2)), with forgetting over about `window`
//!   intervals and a prior of [`PRIOR_LATE`] late intervals among
//!   [`PRIOR_SAMPLES`], so a link that never lost a heartbeat still has a
//!   tail and a young peer is judged with caution. A peer that often
//!   loses or delays heartbeats gets a heavier tail (lower phi for the
//!   same silence); a clean one a lighter tail.
//! - **s**, the tail's scale, is [`TAIL_SCALE`] times the smaller of mu
//!   and the mean of the whole window: the tail falls by a factor e per
//!   half interval, and after the heartbeat slows down it keeps the
//!   link's long-run steepness until the window has seen the new rhythm.
//!   Its steepness is deliberately not fitted to the peer's own gaps: a
//!   tail fitted to a noisy peer's worst gaps makes its phi so flat that
//!   one fleet-wide threshold detects its crash very late (measured: mean
//!   detection at zero mistakes 15 s instead of 9 s on the corpus).
//!
//! phi grows like the normal tail through the jitter band, then linearly
//! (one decade of improbability per `s · ln 10` of silence):
//! finite, continuous and non-decreasing for as long as the peer is
//! silent.

use crate::tail::{ln_normal_sf, normal_sf};
use std::f64::consts::LN_10;

/// Intervals the location is the median of (odd).
pub const RECENT: usize = 9;
/// Prior late intervals.
pub const PRIOR_LATE: f64 = 0.5;
/// Prior intervals (late or not) the late fraction is smoothed with: a
/// new peer starts at q = 0.5 %, about one late heartbeat in 200.
pub const PRIOR_SAMPLES: f64 = 100.0;
/// Scale of the exponential tail, in units of mu.
pub const TAIL_SCALE: f64 = 0.5;

/// Learned state of the adaptive model. Plain numbers; no allocation.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    /// Ring of the last intervals, microseconds.
    recent: [u32; RECENT],
    /// The same values sorted (the first `len` are valid).
    sorted: [u32; RECENT],
    len: u8,
    head: u8,
    /// Forgetting factor per interval, 1 - 1 / window.
    keep: f64,
    /// Forgotten counts: intervals and late intervals.
    n: f64,
    late: f64,
    /// Running mean absolute deviation of on-time intervals, microseconds.
    mad: f64,
    /// The last learned interval was late: short intervals now are the
    /// burst of heartbeats that queued up behind it.
    after_late: bool,
    prior_mu: f64,
    min_std: f64,
    /// Derived, refreshed on every record.
    mu: f64,
    sigma: f64,
    q: f64,
    kappa_mu: f64,
    /// 1 / sigma and 1 / kappa_mu: phi multiplies instead of dividing.
    inv_sigma: f64,
    inv_scale: f64,
    /// Mean of the peer's long interval window, microseconds.
    long_mean: f64,
}

impl Adaptive {
    pub(crate) fn new(prior_mu: f64, min_std: f64, window: usize) -> Self {
        let mut a = Adaptive {
            recent: [0; RECENT],
            sorted: [0; RECENT],
            len: 0,
            head: 0,
            keep: 1.0 - 1.0 / window.max(1) as f64,
            n: 0.0,
            late: 0.0,
            mad: 0.0,
            after_late: false,
            prior_mu: prior_mu.max(1.0),
            min_std: min_std.max(1.0),
            mu: 0.0,
            sigma: 0.0,
            q: 0.0,
            kappa_mu: 0.0,
            inv_sigma: 0.0,
            inv_scale: 0.0,
            long_mean: f64::INFINITY,
        };
        a.refresh();
        a
    }

    pub(crate) fn reset(&mut self) {
        *self = Adaptive::new(
            self.prior_mu,
            self.min_std,
            (1.0 / (1.0 - self.keep)) as usize,
        );
    }

    /// True when an interval this short after the previous heartbeat is
    /// part of a burst after a late heartbeat (a sender pause): the burst
    /// is folded into the late arrival. A short interval after an on-time
    /// one is learned: it may be a faster heartbeat interval.
    pub(crate) fn is_burst(&self, micros: u64) -> bool {
        self.after_late && (micros as f64) < 0.25 * self.mu
    }

    /// Learns (folded) interval; `long_mean` is the mean of the
    /// peer's whole interval window, microseconds.
    pub(crate) fn push(&mut self, micros: u64, long_mean: f64) {
        self.long_mean = long_mean.max(1.0);
        let v = micros.min(u64::from(u32::MAX)) as u32;
        let x = f64::from(v);
        // Classify against the estimate before this interval.
        let late_from = self.mu + (4.0 * self.sigma).max(0.5 * self.mu);
        self.n = self.n * self.keep + 1.0;
        self.late *= self.keep;
        self.after_late = x > late_from;
        if self.after_late {
            self.late += 1.0;
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
        self.insert(v);
        self.refresh();
    }

    /// Ring and sorted copy: remove the evicted value, insert the new one.
    fn insert(&mut self, v: u32) {
        let len = usize::from(self.len);
        if len == RECENT {
            let old = self.recent[usize::from(self.head)];
            self.recent[usize::from(self.head)] = v;
            self.head = ((usize::from(self.head) + 1) % RECENT) as u8;
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
            self.recent[len] = v;
            let mut i = len;
            while i > 0 && self.sorted[i - 1] > v {
                self.sorted[i] = self.sorted[i - 1];
                i -= 1;
            }
            self.sorted[i] = v;
            self.len += 1;
        }
    }

    fn refresh(&mut self) {
        let len = usize::from(self.len);
        let mid = RECENT / 2;
        if len == RECENT {
            self.mu = f64::from(self.sorted[mid]).max(1.0);
        } else {
            self.mu = self.cold_median(len);
        }
        // Until on-time intervals say otherwise, the jitter is the prior's
        // (Akka's first-heartbeat spread, a quarter of the interval).
        let w = (self.n / 8.0).min(1.0);
        let mad = w * 1.25 * self.mad + (1.0 - w) * 0.25 * self.prior_mu;
        self.sigma = mad.max(self.min_std.min(self.mu / 8.0)).max(1.0);
        let q = (self.late + PRIOR_LATE) / (self.n + PRIOR_SAMPLES);
        self.q = q.clamp(1e-12, 0.5);
        // The tail's steepness follows the smaller of the current and the
        // long-run interval: after the heartbeat slows down, the location
        // (and so the jitter band) moves at once, but phi beyond it keeps
        // the link's long-run steepness until the window has seen the new
        // rhythm for a while, instead of turning lazy at once.
        self.kappa_mu = (TAIL_SCALE * self.mu.min(self.long_mean)).max(1.0);
        self.inv_sigma = 1.0 / self.sigma;
        self.inv_scale = 1.0 / self.kappa_mu;
    }

    /// Median of the `len` held intervals and `RECENT - len` copies of the
    /// prior interval: a young peer's location moves from the prior to its
    /// own rhythm one interval at a time.
    fn cold_median(&self, len: usize) -> f64 {
        let missing = RECENT - len;
        let below = self.sorted[..len]
            .iter()
            .filter(|&&s| f64::from(s) < self.prior_mu)
            .count();
        let mid = RECENT / 2;
        if mid < below {
            f64::from(self.sorted[mid])
        } else if mid < below + missing {
            self.prior_mu
        } else {
            f64::from(self.sorted[mid - missing])
        }
        .max(1.0)
    }

    /// phi after `elapsed` microseconds of silence (beyond the acceptable
    /// pause).
    pub(crate) fn phi(&self, elapsed: f64) -> f64 {
        let over = elapsed - self.mu;
        let y = over * self.inv_sigma;
        if y < -8.3 {
            // Well inside the interval (where most peers are at any
            // instant): Q(y) = 1 to 1e-16 and the tail is q, so
            // P_later = 1 and phi = 0, without an exp.
            return 0.0;
        }
        let decay = over.max(0.0) * self.inv_scale;
        let p_later = if decay < 600.0 {
            // Linear space while everything is representable: the tail
            // term alone is >= 1e-12 * e^-600, far above underflow.
            let body = if y < 38.0 {
                (1.0 - self.q) * normal_sf(y)
            } else {
                0.0
            };
            body + self.q * (-decay).exp()
        } else {
            0.0
        };
        let phi = if p_later > 0.0 {
            -p_later.ln() * std::f64::consts::LOG10_E
        } else {
            // Hours of silence: log space, so phi keeps growing, finite.
            let ln_tail = self.q.ln() - decay;
            let ln_body = (-self.q).ln_1p() + ln_normal_sf(y);
            let (hi, lo) = if ln_body > ln_tail {
                (ln_body, ln_tail)
            } else {
                (ln_tail, ln_body)
            };
            -(hi + (lo - hi).exp().ln_1p()) / LN_10
        };
        if phi > 0.0 { phi } else { 0.0 }
    }
}
