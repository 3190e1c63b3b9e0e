//! Local-health awareness: noticing that this process itself stalled.
//!
//! The runtime arms one timer at the node's next deadline, which is never
//! more than a heartbeat interval away. Waking up much later than that
//! deadline means the process was not running (SIGSTOP, a blocked event
//! loop, a paused VM, swap storms): the silence it observed meanwhile says
//! nothing about its peers. [`StallDetector`] is a pure state machine fed
//! with every wake-up and the deadline that was armed; the runtime then
//! tells the node, which measures silences from the end of the stall and
//! raises no new suspicion (and pages no one) for a while.

use phimon_detector::Timestamp;
use std::time::Duration;

/// A stall of this node: it was not running from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// When it should have woken up.
    pub from: Timestamp,
    /// When it did.
    pub to: Timestamp,
}

impl Stall {
    /// How long the process was away.
    pub fn duration(&self) -> Duration {
        self.to - self.from
    }
}

/// Watches wake-ups for lateness beyond `threshold`.
///
/// Call [`wake`](Self::wake) first thing on every wake-up, with the
/// deadline the timer was armed for, before any received message is
/// processed, so a heartbeat queued during the stall is not recorded as
/// one long interval.
#[derive(Debug, Clone)]
pub struct StallDetector {
    threshold: Duration,
    /// The latest deadline already judged, so one late deadline is one
    /// stall however many wake-ups follow it.
    judged: Option<Timestamp>,
}

impl StallDetector {
    /// Wake-ups more than `threshold` after their deadline are stalls.
    pub fn new(threshold: Duration) -> Self {
        StallDetector {
            threshold,
            judged: None,
        }
    }

    /// Records a wake-up at `now` of a loop whose timer was armed for
    /// `armed`; returns how late it woke (for the lateness histogram) and
    /// the stall that ended now, if any.
    #[must_use]
    pub fn wake(&mut self, now: Timestamp, armed: Option<Timestamp>) -> (Duration, Option<Stall>) {
        let Some(due) = armed.filter(|d| *d <= now) else {
            return (Duration::ZERO, None);
        };
        let late = now - due;
        if self.judged == Some(due) {
            return (late, None);
        }
        self.judged = Some(due);
        let stall = (late > self.threshold).then_some(Stall { from: due, to: now });
        (late, stall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    #[test]
    fn punctual_wakes_are_healthy_and_a_late_one_is_a_stall() {
        let mut s = StallDetector::new(Duration::from_millis(500));
        // Woken on time, early (a message), or a little late.
        assert_eq!(s.wake(ms(1000), Some(ms(1000))), (Duration::ZERO, None));
        assert_eq!(s.wake(ms(1500), Some(ms(2000))), (Duration::ZERO, None));
        assert_eq!(s.wake(ms(2100), Some(ms(2000))).1, None);
        // Due at 3 s, woken at 13 s: a 10 s stall, reported once even if
        // a message is handled before the timer fires.
        let (late, stall) = s.wake(ms(13_000), Some(ms(3000)));
        assert_eq!(late, Duration::from_secs(10));
        assert_eq!(stall.unwrap().duration(), Duration::from_secs(10));
        assert_eq!(s.wake(ms(13_001), Some(ms(3000))).1, None);
        // No timer armed: nothing to judge.
        assert_eq!(s.wake(ms(20_000), None), (Duration::ZERO, None));
    }
}
