//! The `adaptive` model: a robust location and jitter band for on-time
//! heartbeats, and a Bayesian model, learned per peer, of how late its
//! late heartbeats are.
//!
//! ```text
//! phi(t) = min(phi_jitter, phi_late)
//! phi_jitter = -log10 Q((t - mu) / sigma)
//! phi_late   = -log10 q + A · log10(1 + (t - L)+ / B)
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
//! - **L**, where lateness starts, is `mu + max(3.5 sigma, 0.3 mu)`:
//!   1.35 s on a clean 1 s link (sigma at its 100 ms floor). Direct
//!   heartbeats arrive within milliseconds of their due time, so one a
//!   third of an interval overdue is late.
//! - **q**, the late fraction, is the fraction of late intervals over
//!   about `window` intervals with [`PRIOR_SAMPLES`] on-time ones as the
//!   prior, but never below [`LATE_FLOOR`] (1 in 1,800): a clean peer is
//!   judged the same from its first heartbeat as after an hour, and one
//!   late heartbeat among its first 40 raises q to 1 in 140. (The previous
//!   rule of succession gave a young clean peer q = 1 in 280, which took
//!   a 40 s-old clean 1 s link 12 s of silence to reach phi 8.)
//! - **A, B**: how late a late heartbeat is (its excess over `L`) is
//!   modelled as exponential with an unknown rate, with a Gamma prior
//!   worth [`TAIL_PRIOR_EVENTS`] late heartbeats of
//!   [`TAIL_PRIOR_SCALE_MICROS`] each. The predictive tail is then
//!   `(1 + x / B)^-A` (a Lomax law) with `A` = prior events + late
//!   heartbeats seen and `B` = prior excess + their excess: a little
//!   heavier than exponential while little is known, close to the fitted
//!   exponential once many late heartbeats were seen. Measuring the excess
//!   from `L`, not from `mu`, keeps the fit honest: every late heartbeat is
//!   at least `L - mu` late, and counting that floor as excess would make
//!   the fitted tail several times too heavy on jittery paths. The prior's
//!   scale is absolute, not a fraction of the interval: what a live peer's
//!   first long silence is, on direct heartbeats, is a stall of its
//!   process or host (a collector, a SIGSTOP, steal time), which lasts the
//!   same seconds whatever the heartbeat rate. It is set so that a clean
//!   1 s link reaches phi 8 4.8 s after its last heartbeat with 40 s of
//!   history, while the first 2.8 s silence of a 500 ms peer paused 8 s
//!   after its start scores 6.5 (`phimon corpus --set direct`). Each excess counts at most
//!   [`EXCESS_CAP_MICROS`] (or two intervals, if longer), so that one
//!   partition does not make a peer's tail heavy for good, and the
//!   statistics fade over [`TAIL_MEMORY_WINDOWS`] windows.
//!
//! - **Lost heartbeats** (with sequence numbers only, see
//!   [`crate::loss`]): a gap in the sequence is a loss, not a long
//!   interval, so lost heartbeats never enter the statistics above. The
//!   silence is then explained by runs of lost heartbeats as well:
//!
//!   ```text
//!   P_later(t) = P(run = 0) · S(t) + sum over j >= 1 of P(run = j) · S(t - j mu)
//!   ```
//!
//!   with `S` the single-interval law above (`P_later` without losses) and
//!   `P(run = j)` the learned probability that exactly `j` heartbeats in a
//!   row were lost after the last one that arrived: every heartbeat due
//!   so far was lost, or the first one after the lost ones is still on
//!   its way. Without sequence numbers, or on a link that lost none, this
//!   is `S(t)`: phi is the same as before.
//!
//! phi is non-decreasing in `t`, finite, and keeps growing
//! (logarithmically far out) for as long as the peer stays silent;
//! continuous without losses, with steps up where a term of the loss sum
//! is dropped. Record and phi are O(1) and allocation-free; phi costs
//! nothing inside the expected interval, one table logarithm beyond it,
//! and the normal tail only while jitter can still be the more probable
//! explanation; with losses, a sum of at most five terms.

use crate::loss::LossChain;
use crate::tail::phi_normal;
use std::f64::consts::{LN_10, LOG10_2, LOG10_E};

/// Intervals the location is the median of (odd).
pub const RECENT: usize = 9;
/// Prior on-time intervals of the late fraction: a peer's first late
/// heartbeat counts as one in this many more than it has seen.
pub const PRIOR_SAMPLES: f64 = 100.0;
/// Smallest late fraction: a clean peer's chance that its next heartbeat
/// is late, at any age.
pub const LATE_FLOOR: f64 = 1.0 / 1800.0;
/// Late threshold: lateness starts this many jitter bands beyond the
/// expected interval ...
pub const LATE_BANDS: f64 = 3.5;
/// ... or this fraction of it beyond, whichever is later.
pub const LATE_FRACTION: f64 = 0.3;
/// Weight of the prior on the lateness of late heartbeats, in late
/// heartbeats.
pub const TAIL_PRIOR_EVENTS: f64 = 25.0;
/// Prior mean excess of a late heartbeat beyond the late threshold,
/// microseconds, whatever the interval.
pub const TAIL_PRIOR_SCALE_MICROS: f64 = 250_000.0;
/// Largest excess one late heartbeat contributes, microseconds (unless two
/// heartbeat intervals are longer).
pub const EXCESS_CAP_MICROS: f64 = 3_000_000.0;
/// The late-heartbeat statistics fade over this many windows of intervals.
pub const TAIL_MEMORY_WINDOWS: f64 = 2.0;

/// A settled peer's jitter band and late-heartbeat law are refreshed every
/// this many on-time heartbeats (see [`Adaptive::push`]).
const REFRESH_EVERY: u8 = 16;
/// Below this many (forgotten) intervals a peer is young: its parameters
/// are refreshed on every heartbeat.
const SETTLED: f64 = 64.0;

/// Below this score the silence is so far inside the jitter band that
/// Q(y) = 1 in `f64`: phi is exactly 0.
const INSIDE: f64 = -8.3;

/// Terms of heartbeats that may be on their way that phi sums (besides a
/// stall of the sender and the runs of heartbeats not yet due).
const LOSS_TERMS: u64 = 3;

/// Learned state of the adaptive model. Plain numbers; no allocation.
///
/// `repr(C)` keeps the six fields every phi reads together at the front
/// (48 bytes), so a sweep over thousands of peers touches one or two
/// cache lines of each.
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
    /// L: where lateness starts, microseconds of silence.
    late_start: f64,
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
    /// 1 / (1 - keep): the count `n` settles at.
    window: f64,
    prior_mu: f64,
    min_std: f64,
    /// The location at the last refresh of the derived parameters.
    refreshed_mu: f64,
    /// Ring of the last intervals, microseconds.
    recent: [u32; RECENT],
    /// The excess each interval of the ring added to the late statistics
    /// (0 if it was on time), so a late interval can be taken back.
    recent_excess: [f32; RECENT],
    len: u8,
    head: u8,
    /// Late intervals in the ring.
    recent_late: u8,
    /// Intervals learned whose forgetting is not applied yet (the derived
    /// parameters were refreshed before them).
    pending: u8,
    /// The last learned interval was late: short intervals now are the
    /// burst of heartbeats that queued up behind it.
    after_late: bool,
    /// The loss process, learned from sequence numbers (inactive without
    /// them: phi is then the single-interval law alone).
    loss: LossChain,
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
            late_start: 0.0,
            sigma: 0.0,
            n: 0.0,
            late: 0.0,
            mad: 0.0,
            tail_events: 0.0,
            tail_excess: 0.0,
            keep: 1.0 - 1.0 / window,
            keep_tail: 1.0 - 1.0 / (TAIL_MEMORY_WINDOWS * window),
            window,
            prior_mu,
            min_std: min_std.max(1.0),
            refreshed_mu: prior_mu,
            recent: [0; RECENT],
            recent_excess: [0.0; RECENT],
            len: 0,
            head: 0,
            recent_late: 0,
            pending: 0,
            after_late: false,
            loss: LossChain::new(window),
        };
        a.refresh_band();
        a.refresh_tail();
        a
    }

    pub(crate) fn reset(&mut self) {
        *self = Adaptive::new(self.prior_mu, self.min_std, self.window as usize);
    }

    /// True when an interval this short after the previous heartbeat is
    /// part of a burst after a late heartbeat (a sender pause): the burst
    /// is folded into the late arrival. A short interval after an on-time
    /// one is learned: it may be a faster heartbeat interval.
    pub(crate) fn is_burst(&self, micros: u64) -> bool {
        self.after_late && (micros as f64) < 0.25 * self.mu
    }

    /// Learns that the heartbeat after the previous one arrived (its
    /// interval is learned by [`push`](Self::push)).
    pub(crate) fn delivered(&mut self) {
        self.loss.observe(0, self.mu, self.mu);
    }

    /// Learns a heartbeat that came `gap >= 1` sequence numbers after the
    /// previous one: `gap` heartbeats were lost. Its interval spans them,
    /// so it is not an interval of the single-interval law.
    pub(crate) fn lost(&mut self, gap: u64, silence_micros: u64) {
        self.loss.observe(gap, silence_micros as f64, self.mu);
    }

    /// Learns a (folded) interval, microseconds.
    pub(crate) fn push(&mut self, micros: u64) {
        let v = micros.min(u64::from(u32::MAX)) as u32;
        let x = f64::from(v);
        // Classify against the estimate before this interval.
        let late_from = self.late_from();
        let late = x > late_from;
        self.pending += 1;
        let young = self.n < SETTLED;
        if late || young {
            self.forget();
        }
        let mut excess = 0.0;
        if late {
            self.late += 1.0;
            excess = (x - late_from).min(EXCESS_CAP_MICROS.max(2.0 * self.mu));
            self.tail_events += 1.0;
            self.tail_excess += excess;
        } else {
            // A running mean over about 32 on-time intervals (1 / n before
            // that: `n` is exact for young peers, see `forget`).
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
        let moved_up = self.recent_late > 0 && self.mu > before;
        // The derived parameters cost a logarithm and three divisions.
        // While nothing notable happens they move by well under a percent
        // per heartbeat, so a settled peer refreshes them (and applies its
        // forgetting) every REFRESH_EVERY on-time heartbeats, and at once
        // on a late heartbeat or a moved location; a young peer on every
        // heartbeat.
        if late
            || young
            || moved_up
            || self.pending >= REFRESH_EVERY
            || (self.mu - self.refreshed_mu).abs() > self.refreshed_mu * 0.125
        {
            self.forget();
            self.refresh_band();
            if moved_up {
                self.take_back_new_rhythm();
            }
            self.refresh_tail();
        }
    }

    /// Applies the forgetting of the `pending` intervals learned since the
    /// last call: each interval multiplies the counts by `keep` (and
    /// `keep_tail`) and adds itself to `n`.
    #[inline(never)]
    fn forget(&mut self) {
        if self.pending == 0 {
            return;
        }
        let p = i32::from(self.pending);
        let f = self.keep.powi(p);
        // n * keep^p + (1 + keep + ... + keep^(p-1)).
        self.n = self.n * f + (1.0 - f) * self.window;
        self.late *= f;
        let g = self.keep_tail.powi(p);
        self.tail_events *= g;
        self.tail_excess *= g;
        self.pending = 0;
    }

    /// The fitted parameters, as phi reads them.
    pub(crate) fn fit(&self) -> crate::peer::Fit {
        let events = self.tail_slope / LOG10_E;
        crate::peer::Fit::Adaptive {
            expected_micros: self.mu,
            jitter_micros: self.sigma,
            late_from_micros: self.late_start,
            late_fraction: 10f64.powf(-self.tail_level),
            late_events: self.tail_events,
            late_mean_excess_micros: 1.0 / (self.inv_tail_scale * events),
            loss_after_delivered: self.loss.first(),
            loss_after_lost: self.loss.again(),
        }
    }

    /// See [`PeerDetector::warm`](crate::PeerDetector::warm).
    pub(crate) fn warm(&self) -> u64 {
        self.mu.to_bits()
            ^ self.n.to_bits()
            ^ u64::from(self.recent[usize::from(self.head) % RECENT])
    }

    /// Threshold beyond which an interval is late.
    fn late_from(&self) -> f64 {
        self.mu + (LATE_BANDS * self.sigma).max(LATE_FRACTION * self.mu)
    }

    /// After the location moved up (the heartbeat interval grew), the
    /// recent intervals that were counted late but are on time for the new
    /// location were the new rhythm, not late heartbeats: take them back
    /// out of the late statistics. (Their forgetting over at most
    /// [`RECENT`] intervals is ignored: a difference below 1 %.)
    #[cold]
    #[inline(never)]
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

    /// Ring: the new value replaces the oldest.
    fn insert(&mut self, v: u32, excess: f32) {
        let len = usize::from(self.len);
        let slot;
        if len == RECENT {
            slot = usize::from(self.head);
            if self.recent_excess[slot] > 0.0 {
                self.recent_late -= 1;
            }
            self.head = if slot + 1 == RECENT {
                0
            } else {
                slot as u8 + 1
            };
        } else {
            slot = len;
            self.len += 1;
        }
        self.recent[slot] = v;
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
        if usize::from(self.len) == RECENT {
            return f64::from(median9(self.recent)).max(1.0);
        }
        self.young_location()
    }

    /// [`location`](Self::location) of a peer with fewer than [`RECENT`]
    /// intervals: sorts what it has (at most 8 values, 8 times in a
    /// peer's life).
    #[cold]
    #[inline(never)]
    fn young_location(&self) -> f64 {
        let len = usize::from(self.len);
        let mut sorted = self.recent;
        sorted[..len].sort_unstable();
        let mid = RECENT / 2;
        let missing = RECENT - len;
        let below = sorted[..len]
            .iter()
            .filter(|&&s| f64::from(s) < self.prior_mu)
            .count();
        if mid < below {
            f64::from(sorted[mid])
        } else if mid < below + missing {
            self.prior_mu
        } else {
            f64::from(sorted[mid - missing])
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
    #[inline(never)]
    fn refresh_tail(&mut self) {
        self.refreshed_mu = self.mu;
        let q = self.late / (self.n + PRIOR_SAMPLES);
        self.tail_level = -q.clamp(LATE_FLOOR, 0.5).log10();
        self.tail_slope = (TAIL_PRIOR_EVENTS + self.tail_events) * LOG10_E;
        self.inv_tail_scale =
            1.0 / (TAIL_PRIOR_EVENTS * TAIL_PRIOR_SCALE_MICROS + self.tail_excess);
        self.late_start = self.late_from();
    }

    /// phi after `elapsed` microseconds of silence (beyond the acceptable
    /// pause).
    #[inline]
    pub(crate) fn phi(&self, elapsed: f64) -> f64 {
        if self.loss.active() {
            return self.phi_with_losses(elapsed);
        }
        self.phi_one(elapsed)
    }

    /// phi when the heartbeats due during the silence may have been lost:
    ///
    /// ```text
    /// P_later(t) = P(run = 0) · S(t) + sum over j >= 1 of P(run = j) · S(t - j mu)
    /// ```
    ///
    /// where `S` is the single-interval law ([`phi_one`](Self::phi_one))
    /// and a run is the number of heartbeats lost in a row after the last
    /// one that arrived: either every heartbeat due so far was lost, or
    /// the first one after the lost ones is still on its way. `S(x)` is 1
    /// while `x` is far inside the jitter band, so the terms of the runs
    /// longer than `J` (the heartbeats not yet due) add up to
    /// `P(run > J)`. Of the other terms, the three of the heartbeats due
    /// last are kept (and `j = 0`, a stall of the sender): an older one's
    /// `S` is its late tail, many decades below. Dropping a term only
    /// raises phi, and one that enters does so at `S = 1` as part of
    /// `P(run > J)`: the sum, computed from the tail outward, never grows
    /// with `t`, so phi is non-decreasing.
    #[inline(never)]
    fn phi_with_losses(&self, t: f64) -> f64 {
        let inside = self.mu + INSIDE * self.sigma;
        if t.is_nan() || t < inside {
            return 0.0;
        }
        // J: the last heartbeat whose jitter band has begun.
        let due = ((t - inside) / self.mu).floor();
        let last = if due < 1e15 {
            due as u64
        } else {
            1_000_000_000_000_000
        };
        let survive = |j: u64| (-self.phi_one(t - j as f64 * self.mu) * LN_10).exp();
        let first = last.saturating_sub(LOSS_TERMS - 1).max(1);
        let mut p = self.loss.at_least(last + 1);
        let mut j = last;
        while j >= first {
            let e = self.loss.exactly(j);
            if e > 0.0 {
                p += e * survive(j);
            }
            j -= 1;
        }
        let p = self.loss.none() * survive(0) + p;
        if p > 0.0 {
            -p.log10()
        } else {
            // Every term underflowed: the stall's alone, which is larger.
            self.phi_one(t) - self.loss.none().log10()
        }
    }

    /// phi of the single-interval law: the silence is one interval, on
    /// time (jitter) or late.
    fn phi_one(&self, elapsed: f64) -> f64 {
        let over = elapsed - self.mu;
        let y = over * self.inv_sigma;
        if y < INSIDE {
            // Where most peers are at any instant: no logarithm at all.
            return 0.0;
        }
        // Before lateness starts the late explanation is q itself.
        let over_late = elapsed - self.late_start;
        let late = if over_late > 0.0 {
            self.tail_level + self.tail_slope * ln_1p(over_late * self.inv_tail_scale)
        } else {
            self.tail_level
        };
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

/// Bits of the mantissa that index [`LOG2_TABLE`].
const TABLE_BITS: u32 = 8;
/// log2(1 + i / 256) for i = 0..=256, computed at compile time.
static LOG2_TABLE: [f64; (1 << TABLE_BITS) + 1] = log2_table();

/// ln(1 + i / 256) / ln 2 by the series of 2 atanh((x - 1) / (x + 1)),
/// which converges to the last bit within 40 terms for x in [1, 2].
const fn log2_table() -> [f64; (1 << TABLE_BITS) + 1] {
    let mut t = [0.0; (1 << TABLE_BITS) + 1];
    let mut i = 0;
    while i <= 1 << TABLE_BITS {
        let x = 1.0 + i as f64 / (1 << TABLE_BITS) as f64;
        let s = (x - 1.0) / (x + 1.0);
        let s2 = s * s;
        let mut term = s;
        let mut sum = 0.0;
        let mut k = 0;
        while k < 40 {
            sum += term / (2 * k + 1) as f64;
            term *= s2;
            k += 1;
        }
        t[i] = 2.0 * sum / std::f64::consts::LN_2;
        i += 1;
    }
    // The last entry is exactly 1, so the pieces meet across powers of 2.
    t[1 << TABLE_BITS] = 1.0;
    t
}

/// ln(1 + u) for u >= 0 (0 for anything else), by the exponent of 1 + u
/// and linear interpolation of log2 in a 257-entry table. Absolute error
/// below 2e-6 (phi off by less than 1e-6 · A); continuous and strictly
/// increasing, because each piece is a segment between increasing table
/// values and the pieces meet. About a third of the cost of `f64::ln`:
/// the late explanation's logarithm must be cheap and monotone, not exact.
fn ln_1p(u: f64) -> f64 {
    // `max` also maps NaN to 0; infinity is left to `ln` (never reached:
    // silences are microseconds below 2^64).
    let x = 1.0 + u.max(0.0);
    if x.is_infinite() {
        return x.ln();
    }
    let bits = x.to_bits();
    let exponent = ((bits >> 52) as i64 - 1023) as f64;
    let mantissa = bits & ((1u64 << 52) - 1);
    let index = (mantissa >> (52 - TABLE_BITS)) as usize;
    let rest = mantissa & ((1u64 << (52 - TABLE_BITS)) - 1);
    let frac = rest as f64 * (1.0 / (1u64 << (52 - TABLE_BITS)) as f64);
    let lo = LOG2_TABLE[index];
    let hi = LOG2_TABLE[index + 1];
    (exponent + lo + (hi - lo) * frac) * std::f64::consts::LN_2
}

/// The median of nine values by a fixed network of 19 compare-exchanges
/// (Paeth's, as in Devillard's `opt_med9`): no branches, so the random
/// order of jittery intervals costs no mispredictions.
fn median9(mut p: [u32; RECENT]) -> u32 {
    let mut sort = |a: usize, b: usize| {
        let (lo, hi) = (p[a].min(p[b]), p[a].max(p[b]));
        p[a] = lo;
        p[b] = hi;
    };
    sort(1, 2);
    sort(4, 5);
    sort(7, 8);
    sort(0, 1);
    sort(3, 4);
    sort(6, 7);
    sort(1, 2);
    sort(4, 5);
    sort(7, 8);
    sort(0, 3);
    sort(5, 8);
    sort(4, 7);
    sort(3, 6);
    sort(1, 4);
    sort(2, 5);
    sort(4, 7);
    sort(4, 2);
    sort(6, 4);
    sort(4, 2);
    p[4]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_logarithm_is_close_and_strictly_increasing() {
        let mut prev = -1.0;
        let mut u = 0.0f64;
        while u < 1e12 {
            let got = ln_1p(u);
            let want = u.ln_1p();
            assert!((got - want).abs() <= 2e-6, "{u}: {got} vs {want}");
            assert!(got > prev || u == 0.0, "not increasing at {u}");
            prev = got;
            u = u * 1.000_37 + 1e-7;
        }
        // Across a power of two the pieces meet.
        let below = ln_1p(f64::from_bits(2.0f64.to_bits() - 1) - 1.0);
        assert!(below < ln_1p(1.0) && ln_1p(1.0) - below < 1e-12);
        assert_eq!(ln_1p(0.0), 0.0);
        assert_eq!(ln_1p(-5.0), 0.0);
        for (i, &t) in LOG2_TABLE.iter().enumerate() {
            let x = 1.0 + i as f64 / 256.0;
            assert!((t - x.log2()).abs() < 1e-15, "{i}");
        }
    }

    #[test]
    fn the_median_network_is_the_median() {
        // Every arrangement of 9 distinct values would be 362,880 cases;
        // a seeded walk over many arrangements, with duplicates, instead.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            let mut p = [0u32; RECENT];
            for v in &mut p {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = (x % 12) as u32; // small range: many duplicates
            }
            let mut sorted = p;
            sorted.sort_unstable();
            assert_eq!(median9(p), sorted[4], "{p:?}");
        }
    }

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
        // q at its floor: phi past the jitter band is 3.26 up to the late
        // threshold L = 1 s + 3.5 x 100 ms, then the prior's Lomax tail
        // (A = 25, B = 25 x 0.25 s).
        let at = |s: f64| a.phi(s * 1e6);
        let level = -LATE_FLOOR.log10();
        let b = TAIL_PRIOR_EVENTS * TAIL_PRIOR_SCALE_MICROS / 1e6;
        let want = level + TAIL_PRIOR_EVENTS * (1.0 + 0.95 / b).log10();
        assert!((at(2.3) - want).abs() < 0.01, "{} vs {want}", at(2.3));
        assert!((at(1.345) - level).abs() < 1e-3, "{} vs {level}", at(1.345));
        // The same from the first heartbeats on: a young clean peer is
        // judged like a settled one (phi 8 within 5 s of silence).
        let young = fed(std::iter::repeat_n(1_000_000, 40));
        assert!(
            (young.phi(2.3e6) - want).abs() < 0.01,
            "{}",
            young.phi(2.3e6)
        );
        assert!(young.phi(4.9e6) >= 8.0, "{}", young.phi(4.9e6));
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
        // After many tail memories (2 windows each) of clean heartbeats the
        // peer is clean again.
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
