//! Per-peer heartbeat inter-arrival quantiles.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Smallest distinguishable interval: 1 ms (in microseconds).
const LOW_MICROS: u64 = 1_000;
/// Largest recordable interval: 1 h; longer ones are clamped.
const HIGH_MICROS: u64 = 3_600_000_000;
/// Samples per half: two halves of 1024 samples make a window of
/// 1024-2048 recent intervals, and keep every count within `u16`.
const HALF: u32 = 1024;

/// Quantiles of a peer's recent heartbeat intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalQuantiles {
    /// Median interval, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Longest interval, ms.
    pub max_ms: f64,
    /// Intervals the quantiles are computed from.
    pub samples: u64,
}

/// Recent heartbeat inter-arrival intervals of one peer, for quantiles
/// (the detector's window has mean and deviation, not quantiles).
///
/// HdrHistogram with 2 significant digits (1 % error) from 1 ms to 1 h,
/// `u16` counts: about 8 KiB per peer. Two halves rotate every 1024
/// samples so the quantiles follow the recent past, like the detector's
/// window. The runtime feeds it the same intervals it records in the
/// detector (not the ones that span this node's own stalls) and calls
/// [`reset`](Self::reset) when the peer restarts.
#[derive(Debug, Clone)]
pub struct IntervalHistogram {
    current: Histogram<u16>,
    previous: Histogram<u16>,
    in_current: u32,
}

impl Default for IntervalHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn empty() -> Histogram<u16> {
    // Constant, valid bounds: creation cannot fail.
    match Histogram::new_with_bounds(LOW_MICROS, HIGH_MICROS, 2) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e:?}"),
    }
}

impl IntervalHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        IntervalHistogram {
            current: empty(),
            previous: empty(),
            in_current: 0,
        }
    }

    /// Records one interval (clamped to 1 ms..1 h).
    pub fn record(&mut self, interval: Duration) {
        if self.in_current >= HALF {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.in_current = 0;
        }
        let micros = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(LOW_MICROS, HIGH_MICROS);
        self.current.saturating_record(micros);
        self.in_current += 1;
    }

    /// Forgets everything (the peer restarted).
    pub fn reset(&mut self) {
        self.current.reset();
        self.previous.reset();
        self.in_current = 0;
    }

    /// Intervals currently counted.
    pub fn len(&self) -> u64 {
        self.current.len() + self.previous.len()
    }

    /// No interval recorded since the last reset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// p50, p99 and max over the last 1024-2048 intervals; `None` before
    /// the first.
    pub fn quantiles(&self) -> Option<IntervalQuantiles> {
        if self.is_empty() {
            return None;
        }
        let mut all = self.current.clone();
        // Both halves hold at most 2 * 1024 samples: no u16 overflow, and
        // identical bounds, so adding cannot fail.
        if all.add(&self.previous).is_err() {
            all = self.current.clone();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(IntervalQuantiles {
            p50_ms: ms(all.value_at_quantile(0.50)),
            p99_ms: ms(all.value_at_quantile(0.99)),
            max_ms: ms(all.max()),
            samples: all.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_one_percent() {
        let mut h = IntervalHistogram::new();
        assert!(h.quantiles().is_none());
        // 1000 intervals: 990 of ~1 s, 10 of 3 s.
        for i in 0..990u64 {
            h.record(Duration::from_micros(995_000 + (i % 10) * 1_000));
        }
        for _ in 0..10 {
            h.record(Duration::from_secs(3));
        }
        let q = h.quantiles().unwrap();
        assert_eq!(q.samples, 1000);
        assert!((q.p50_ms - 1000.0).abs() < 15.0, "{q:?}");
        assert!((q.p99_ms - 1004.0).abs() < 15.0, "{q:?}");
        assert!((q.max_ms - 3000.0).abs() < 30.0, "{q:?}");
    }

    #[test]
    fn follows_the_recent_past_and_resets() {
        let mut h = IntervalHistogram::new();
        for _ in 0..3000 {
            h.record(Duration::from_millis(100));
        }
        for _ in 0..2048 {
            h.record(Duration::from_millis(500));
        }
        let q = h.quantiles().unwrap();
        assert!(q.samples <= 2048);
        assert!((q.p50_ms - 500.0).abs() < 5.0, "{q:?}");
        assert!(
            (q.max_ms - 500.0).abs() < 5.0,
            "old intervals aged out: {q:?}"
        );
        h.reset();
        assert!(h.is_empty());
    }

    #[test]
    fn extremes_are_clamped() {
        let mut h = IntervalHistogram::new();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(100_000));
        let q = h.quantiles().unwrap();
        assert!(q.p50_ms >= 1.0 && q.max_ms <= 3_600_000.0 * 1.01, "{q:?}");
    }
}
