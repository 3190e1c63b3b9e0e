//! Local-health awareness: noticing that this process itself stalled.
//!
//! The runtime wakes at least every `tick`. When a wake-up comes much later
//! than that, the process was not running (SIGSTOP, a blocked event loop,
//! a paused VM, swap storms): silence it observed during the gap says
//! nothing about its peers. [`StallDetector`] is a pure state machine fed
//! with the monotonic time of every wake-up; the runtime then tells the
//! detector registry to measure silences from the end of the stall, and
//! reports itself degraded (and pages no one) for a hold period.

use phimon_detector::Timestamp;
use std::time::Duration;

/// A stall of the observer: it was not running from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Last wake-up before the stall.
    pub from: Timestamp,
    /// First wake-up after it.
    pub to: Timestamp,
}

impl Stall {
    /// How long the process was away.
    pub fn duration(&self) -> Duration {
        self.to - self.from
    }
}

/// Watches wake-up times for gaps longer than `threshold`.
///
/// Call [`wake`](Self::wake) first thing on every wake-up, before any
/// received message is processed, so a heartbeat queued during the stall
/// is not recorded as one long interval.
#[derive(Debug, Clone)]
pub struct StallDetector {
    threshold: Duration,
    hold: Duration,
    last_wake: Option<Timestamp>,
    degraded_until: Option<Timestamp>,
    max_lateness: Duration,
    stalls: u64,
}

impl StallDetector {
    /// Gaps above `threshold` are stalls; the node stays degraded for
    /// `hold` after each (long enough for peers' heartbeats to arrive and
    /// re-establish their rhythm).
    pub fn new(threshold: Duration, hold: Duration) -> Self {
        StallDetector {
            threshold,
            hold,
            last_wake: None,
            degraded_until: None,
            max_lateness: Duration::ZERO,
            stalls: 0,
        }
    }

    /// Records a wake-up at `now`; returns the stall that ended now, if any.
    #[must_use]
    pub fn wake(&mut self, now: Timestamp) -> Option<Stall> {
        let prev = self
            .last_wake
            .replace(now.max(self.last_wake.unwrap_or(now)));
        let prev = prev?;
        let gap = now - prev;
        self.max_lateness = self.max_lateness.max(gap);
        if gap > self.threshold {
            self.stalls += 1;
            self.degraded_until = Some(now + self.hold);
            Some(Stall {
                from: prev,
                to: now,
            })
        } else {
            None
        }
    }

    /// True while the node recovers from a recent stall.
    pub fn degraded(&self, now: Timestamp) -> bool {
        self.degraded_until.is_some_and(|u| now < u)
    }

    /// Largest gap between wake-ups since the last call, then resets it
    /// (the tick-lateness gauge).
    pub fn take_max_gap(&mut self) -> Duration {
        std::mem::take(&mut self.max_lateness)
    }

    /// Stalls seen since start.
    #[cfg(test)]
    pub fn stalls(&self) -> u64 {
        self.stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    #[test]
    fn regular_wakes_are_healthy_and_a_gap_is_a_stall() {
        let mut s = StallDetector::new(Duration::from_millis(500), Duration::from_secs(3));
        for i in 0..100 {
            assert_eq!(s.wake(ms(i * 100)), None);
        }
        assert!(!s.degraded(ms(9_900)));
        let stall = s.wake(ms(20_000)).unwrap();
        assert_eq!(stall.duration(), Duration::from_millis(10_100));
        assert!(s.degraded(ms(20_000)));
        assert!(s.degraded(ms(22_999)));
        assert!(!s.degraded(ms(23_000)));
        assert_eq!(s.stalls(), 1);
        assert_eq!(s.take_max_gap(), Duration::from_millis(10_100));
        assert_eq!(s.take_max_gap(), Duration::ZERO);
    }

    #[test]
    fn time_going_backwards_is_not_a_stall() {
        let mut s = StallDetector::new(Duration::from_millis(500), Duration::from_secs(1));
        assert_eq!(s.wake(ms(1000)), None);
        assert_eq!(s.wake(ms(900)), None);
        assert_eq!(s.wake(ms(1100)), None);
    }
}
