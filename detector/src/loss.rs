//! The loss process of a peer's heartbeats, learned from their sequence
//! numbers, and the law of the length of a run of lost heartbeats it
//! implies.
//!
//! Every heartbeat recorded with a sequence number is one step of a
//! two-state chain (delivered, lost): it follows the previous recorded one
//! directly, or after `g >= 1` lost ones (`g - 1` steps from lost to lost,
//! then one from lost to delivered). The counts fade like the late
//! statistics of [`crate::adaptive`], over [`TAIL_MEMORY_WINDOWS`] windows
//! of heartbeats.
//!
//! - **a = P(loss | delivered)**: the fraction of steps out of a delivered
//!   heartbeat that went to a lost one, with [`FIRST_PRIOR_SAMPLES`]
//!   delivered steps as the prior. 0 on a link that never lost a
//!   heartbeat: a clean link is judged exactly as without sequence
//!   numbers.
//! - **b = P(loss | lost)**, two hypotheses weighed by how well each
//!   explains the steps out of the lost state (Bayes factor, prior odds
//!   [`BURSTY_PRIOR`]):
//!   - *independent* loss, `b = a`: a run continues like a first loss
//!     starts;
//!   - *bursty* loss, `b` free, Beta-distributed with the prior
//!     [`BURSTY_AGAIN_PRIOR`]: runs of a Gilbert–Elliott link.
//!
//!   Loss is independent until repeated losses say otherwise: one chance
//!   double loss among a few single ones barely moves the odds (a 1 %
//!   link stays a 1 % link), four or five runs of 2–4 settle them (a
//!   Gilbert–Elliott link with runs of 2.5 is learned as bursty).
//! - **Run lengths.** Under independence a run continues with probability
//!   `max(RUN_MARGIN · a, AGAIN_FLOOR)`: geometric, with a margin because
//!   a link's loss rate is estimated and comes and goes, and the long runs
//!   come from the times it is higher (at 1 % loss 4 heartbeats lost in a
//!   row then have probability 3e-8, 1e-8 for a chain known exactly; at
//!   20 % loss 13 in a row about 3e-8 instead of 8e-10). Under burstiness the
//!   law is the Beta posterior's predictive (beta-geometric). The mixture
//!   is
//!
//!   ```text
//!   P(run >= 1) = a
//!   P(run >= k) = a · ((1 - w) · b_ind^(k-1) + w · E[b_bursty^(k-1)])
//!   ```
//!
//!   with `w` the posterior weight of burstiness.
//! - **Outages.** A run that lasts more than [`OUTAGE_MICROS`] is a cut
//!   link, not a pattern of loss: it counts as a loss, not as a run, so
//!   one partition does not make a link look bursty. And loss explains at
//!   most [`LOSS_SPAN_MICROS`] of silence (or [`LOSS_SPAN_HEARTBEATS`]
//!   intervals if longer): beyond, a silence is judged by the
//!   single-interval law alone, so even a very bursty link is suspected
//!   after a few seconds more than its runs usually last.
//!
//! [`LossChain::at_least`] and [`LossChain::exactly`] read the law from a
//! table refreshed when a heartbeat is lost and every [`REFRESH_EVERY`]
//! heartbeats while the losses fade (every heartbeat while a link is
//! young), by the last ratio beyond [`RUN_TABLE`] heartbeats. No
//! allocation; O(1) reads.

use crate::adaptive::TAIL_MEMORY_WINDOWS;

/// Prior delivered steps of `a`: one lost heartbeat among a link's first
/// 40 gives `a` = 1 / 80.
pub const FIRST_PRIOR_SAMPLES: f64 = 40.0;
/// Under independent loss a run continues with probability this times
/// `a` ...
pub const RUN_MARGIN: f64 = 1.35;
/// ... and at least this.
pub const AGAIN_FLOOR: f64 = 0.015;
/// Prior probability that a link's loss is bursty.
pub const BURSTY_PRIOR: f64 = 1e-4;
/// Beta prior of `b` under bursty loss (mean 1/7).
pub const BURSTY_AGAIN_PRIOR: (f64, f64) = (1.0, 6.0);
/// A run of lost heartbeats longer than this (microseconds) is an
/// outage.
pub const OUTAGE_MICROS: f64 = 5_500_000.0;
/// Loss explains at most this much silence, microseconds ...
pub const LOSS_SPAN_MICROS: f64 = 8_500_000.0;
/// ... or this many heartbeat intervals, if longer.
pub const LOSS_SPAN_HEARTBEATS: f64 = 2.0;
/// Run lengths whose probabilities are tabulated.
pub const RUN_TABLE: usize = 32;
/// Below this `a` the loss explanation is dropped: it cannot move phi by
/// a measurable amount.
const ACTIVE_FLOOR: f64 = 1e-7;
/// Largest `a` and `b`: a run ends some day, so phi keeps growing.
const CEILING: f64 = 0.999;
/// While a settled link's losses fade, the law is refreshed every this
/// many heartbeats.
const REFRESH_EVERY: u8 = 16;
/// Below this many (forgotten) delivered heartbeats a link is young: its
/// law is refreshed on every heartbeat.
const YOUNG: f64 = 256.0;
/// A gap fades the counts by at most this many steps.
const FADE_STEPS: u64 = 1 << 20;

/// Learned loss process of one peer's heartbeats. Plain numbers; no
/// allocation.
#[derive(Debug, Clone)]
pub(crate) struct LossChain {
    /// Forgotten counts of steps out of a delivered heartbeat, and of
    /// those that went to a lost one.
    from_delivered: f64,
    to_lost: f64,
    /// Forgotten counts of steps out of a lost heartbeat, and of those
    /// that went to another lost one.
    from_lost: f64,
    lost_again: f64,
    /// Forgetting factor per heartbeat.
    keep: f64,
    /// Heartbeats since the last refresh of the law.
    since_refresh: u8,
    /// The loss explanation is in use (`a` above [`ACTIVE_FLOOR`]).
    active: bool,
    /// `a`, and the mean of `b` under the mixture, as of the last refresh.
    first: f64,
    again: f64,
    /// 1 - a: the heartbeat after a delivered one is delivered.
    next_delivered: f64,
    /// P(run >= k) at index k - 1.
    at_least: [f64; RUN_TABLE],
    /// P(run = k) at index k - 1, rounded so that
    /// `exactly[k - 1] + at_least[k] <= at_least[k - 1]` in `f64`: phi
    /// never falls when one more heartbeat becomes due.
    exactly: [f64; RUN_TABLE],
    /// P(run >= k + 1) / P(run >= k) beyond the table.
    beyond: f64,
    /// The longest run the loss explanation covers.
    longest: u64,
}

impl LossChain {
    pub(crate) fn new(window: f64) -> Self {
        LossChain {
            from_delivered: 0.0,
            to_lost: 0.0,
            from_lost: 0.0,
            lost_again: 0.0,
            keep: 1.0 - 1.0 / (TAIL_MEMORY_WINDOWS * window.max(1.0)),
            since_refresh: 0,
            active: false,
            first: 0.0,
            again: 0.0,
            next_delivered: 1.0,
            at_least: [0.0; RUN_TABLE],
            exactly: [0.0; RUN_TABLE],
            beyond: 0.0,
            longest: 0,
        }
    }

    /// True when phi must consider lost heartbeats.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active
    }

    /// Learns one recorded heartbeat that came `gap` sequence numbers after
    /// the previous recorded one (0: the next one), `silence` microseconds
    /// after it, on heartbeats expected every `mu` microseconds.
    pub(crate) fn observe(&mut self, gap: u64, silence: f64, mu: f64) {
        let f = if gap == 0 {
            self.keep
        } else {
            self.keep.powi((gap.min(FADE_STEPS) + 1) as i32)
        };
        self.from_delivered = self.from_delivered * f + 1.0;
        self.to_lost *= f;
        self.from_lost *= f;
        self.lost_again *= f;
        if gap > 0 {
            self.to_lost += 1.0;
            if silence <= OUTAGE_MICROS {
                self.from_lost += gap as f64;
                self.lost_again += (gap - 1) as f64;
            }
            self.refresh(mu);
        } else if self.to_lost > 0.0 {
            self.since_refresh = self.since_refresh.saturating_add(1);
            if self.since_refresh >= REFRESH_EVERY || self.from_delivered < YOUNG {
                self.refresh(mu);
            }
        }
    }

    /// Recomputes `a`, the odds of burstiness and the run-length law.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, mu: f64) {
        self.since_refresh = 0;
        let a = (self.to_lost / (self.from_delivered + FIRST_PRIOR_SAMPLES)).min(CEILING);
        self.active = a >= ACTIVE_FLOOR;
        if !self.active {
            // Faded out: the link is clean again.
            self.to_lost = 0.0;
            self.from_lost = 0.0;
            self.lost_again = 0.0;
            self.first = 0.0;
            self.again = 0.0;
            self.next_delivered = 1.0;
            return;
        }
        let (r, n) = (self.lost_again, self.from_lost.max(self.lost_again));
        // The two hypotheses on b, and the evidence of the steps out of the
        // lost state: r repeats in n.
        let fit = a.clamp(AGAIN_FLOOR, CEILING);
        let independent = (RUN_MARGIN * a).clamp(AGAIN_FLOOR, CEILING);
        let (pa, pb) = BURSTY_AGAIN_PRIOR;
        let (ba, bb) = (pa + r, pb + n - r);
        let ln_bursty = ln_beta(ba, bb) - ln_beta(pa, pb);
        let ln_independent = r * fit.ln() + (n - r) * (-fit).ln_1p();
        let odds = (ln_bursty - ln_independent).exp() * BURSTY_PRIOR / (1.0 - BURSTY_PRIOR);
        let w = if odds.is_finite() {
            odds / (1.0 + odds)
        } else {
            1.0
        };
        self.first = a;
        self.again = (1.0 - w) * independent + w * (ba / (ba + bb));
        self.next_delivered = 1.0 - a;
        let longest = (LOSS_SPAN_MICROS / mu.max(1.0))
            .max(LOSS_SPAN_HEARTBEATS)
            .floor();
        self.longest = if longest < 1e15 {
            longest as u64
        } else {
            u64::MAX
        };
        // P(run >= j + 1) = a · ((1 - w) · independent^j + w · E[b^j]).
        let (mut gi, mut gb) = (1.0f64, 1.0f64);
        let mut ratio = CEILING;
        for j in 0..RUN_TABLE {
            let p = if (j as u64) < self.longest {
                a * ((1.0 - w) * gi + w * gb)
            } else {
                0.0
            };
            if j > 0 && self.at_least[j - 1] > 0.0 && p > 0.0 {
                ratio = (p / self.at_least[j - 1]).min(CEILING);
            }
            self.at_least[j] = p;
            let x = j as f64;
            gi *= independent;
            gb *= ((ba + x) / (ba + bb + x)).min(CEILING);
        }
        self.beyond = ratio;
        for j in 0..RUN_TABLE {
            let next = match self.at_least.get(j + 1) {
                Some(&p) => p,
                None => self.at_least(RUN_TABLE as u64 + 1),
            };
            self.exactly[j] = exact_part(self.at_least[j], next);
        }
    }

    /// P(loss | delivered).
    pub(crate) fn first(&self) -> f64 {
        self.first
    }

    /// P(loss | lost), the mean over both hypotheses.
    pub(crate) fn again(&self) -> f64 {
        self.again
    }

    /// P(run = 0): the heartbeat after a delivered one is delivered.
    #[inline]
    pub(crate) fn none(&self) -> f64 {
        self.next_delivered
    }

    /// P(run >= k).
    #[inline]
    pub(crate) fn at_least(&self, k: u64) -> f64 {
        if k > self.longest {
            return 0.0;
        }
        match usize::try_from(k) {
            Ok(0) => 1.0,
            Ok(k @ 1..=RUN_TABLE) => self.at_least[k - 1],
            _ => self.at_least[RUN_TABLE - 1] * pow(self.beyond, k - RUN_TABLE as u64),
        }
    }

    /// P(run = k) for k >= 1, with `exactly(k) + at_least(k + 1) <=
    /// at_least(k)` in `f64`.
    #[inline]
    pub(crate) fn exactly(&self, k: u64) -> f64 {
        match usize::try_from(k) {
            Ok(k @ 1..=RUN_TABLE) => self.exactly[k - 1],
            _ => exact_part(self.at_least(k), self.at_least(k.saturating_add(1))),
        }
    }
}

/// `x^n` for `x` in [0, 1), 0 for n beyond `i32` (it underflowed long
/// before).
fn pow(x: f64, n: u64) -> f64 {
    match i32::try_from(n) {
        Ok(n) => x.powi(n),
        Err(_) => 0.0,
    }
}

/// ln B(x, y).
fn ln_beta(x: f64, y: f64) -> f64 {
    libm::lgamma(x) + libm::lgamma(y) - libm::lgamma(x + y)
}

/// `all - rest`, rounded down until adding `rest` back does not exceed
/// `all`.
fn exact_part(all: f64, rest: f64) -> f64 {
    let mut e = (all - rest).max(0.0);
    while e > 0.0 && e + rest > all {
        e = f64::from_bits(e.to_bits() - 1);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const MU: f64 = 1e6;

    fn chain(gaps: impl IntoIterator<Item = u64>) -> LossChain {
        let mut c = LossChain::new(1000.0);
        for g in gaps {
            c.observe(g, (g + 1) as f64 * MU, MU);
        }
        c
    }

    #[test]
    fn a_clean_link_has_no_loss_explanation() {
        let c = chain(std::iter::repeat_n(0, 5000));
        assert!(!c.active());
        assert_eq!((c.none(), c.at_least(1)), (1.0, 0.0));
    }

    #[test]
    fn independent_loss_is_learned_as_independent() {
        // 1 % loss, one heartbeat in a hundred, never two in a row.
        let c = chain((0..20_000).map(|i| u64::from(i % 100 == 99)));
        assert!(c.active());
        assert!((c.first() - 0.01).abs() < 0.001, "{}", c.first());
        assert!((c.again() - AGAIN_FLOOR).abs() < 1e-3, "{}", c.again());
        // Four in a row: a few times 1e-8, so a 1 s link lets the fifth
        // heartbeat arrive; five: well below 1e-8.
        let four = c.at_least(4);
        assert!(four > 2e-8 && four < 1e-7, "{four:e}");
        assert!(c.at_least(5) < 1e-9, "{:e}", c.at_least(5));
        // One chance double loss changes little.
        let mut once = c.clone();
        once.observe(2, 3.0 * MU, MU);
        assert!(once.at_least(5) < 3e-9, "{:e}", once.at_least(5));
    }

    #[test]
    fn bursty_loss_is_learned_as_bursty() {
        // Runs of 3 lost heartbeats every 100.
        let c = chain((0..20_000).map(|i| if i % 100 == 99 { 3 } else { 0 }));
        assert!(c.again() > 0.5, "{}", c.again());
        assert!(c.at_least(4) > 1e-3, "{:e}", c.at_least(4));
        // Loss explains at most 8.5 s of silence on 1 s heartbeats.
        assert!(c.at_least(8) > 1e-4);
        assert_eq!(c.at_least(9), 0.0);
    }

    #[test]
    fn a_partition_is_an_outage_not_a_burst() {
        let mut c = chain((0..5000).map(|i| u64::from(i % 100 == 99)));
        let before = c.at_least(5);
        c.observe(30, 31.0 * MU, MU);
        assert!(
            c.at_least(5) < before * 1.5,
            "{:e} {before:e}",
            c.at_least(5)
        );
    }

    #[test]
    fn the_law_is_consistent_and_decreasing() {
        for (gaps, mu) in [
            (vec![0, 0, 1, 0, 0, 0, 2, 0], MU),
            (vec![5; 50], MU),
            (vec![1000, 0, 0, 1, 0], MU),
            (vec![0, 3, 0, 0, 1, 7, 0, 2], 1e5),
        ] {
            let mut c = LossChain::new(1000.0);
            for &g in gaps.iter().cycle().take(3000) {
                c.observe(g, (g + 1) as f64 * mu, mu);
            }
            let mut prev = c.at_least(1);
            assert!(prev > 0.0 && prev < 1.0);
            for k in 1..300u64 {
                let next = c.at_least(k + 1);
                let e = c.exactly(k);
                assert!(next <= prev, "{gaps:?} {k}: {next:e} > {prev:e}");
                assert!(e >= 0.0 && e + next <= prev, "{gaps:?} {k}");
                prev = next;
            }
        }
    }

    #[test]
    fn losses_fade() {
        let mut c = chain((0..2000).map(|i| u64::from(i % 50 == 0)));
        assert!(c.active());
        for _ in 0..60_000 {
            c.observe(0, MU, MU);
        }
        assert!(!c.active(), "{}", c.first());
    }
}
