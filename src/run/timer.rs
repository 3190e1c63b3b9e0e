//! The runtime's one deadline: when the node next has something to do.
//!
//! On Linux it is a `timerfd` armed at the exact deadline, so an idle
//! sidecar wakes once per deadline. tokio's timer wheel would wake it twice
//! for any deadline more than 64 ms away (once to move the entry down a
//! level of the wheel, once when it is due), and every node's next
//! heartbeat is about an interval away. Elsewhere, and if the timerfd
//! cannot be created, tokio's timer serves.

use tokio::time::Instant;

/// A re-armable one-shot deadline.
pub(crate) struct Deadline {
    imp: Imp,
    at: Option<Instant>,
}

enum Imp {
    #[cfg(target_os = "linux")]
    Fd(tokio::io::unix::AsyncFd<fd::Timer>),
    Tokio,
}

impl Deadline {
    pub(crate) fn new() -> Deadline {
        // `AsyncFd::new` is deprecated for fds it does not own (its
        // replacement is `unsafe`, which this crate forbids); here the
        // AsyncFd owns the timerfd for its whole life, so it is sound.
        #[cfg(target_os = "linux")]
        #[allow(deprecated)]
        match fd::Timer::new().and_then(tokio::io::unix::AsyncFd::new) {
            Ok(t) => {
                return Deadline {
                    imp: Imp::Fd(t),
                    at: None,
                };
            }
            Err(e) => tracing::debug!("timerfd unavailable, using tokio's timer: {e}"),
        }
        Deadline {
            imp: Imp::Tokio,
            at: None,
        }
    }

    /// Fires at `at` from now on (never, for `None`); re-arms only when
    /// the deadline moved.
    pub(crate) fn set(&mut self, at: Option<Instant>) {
        if at == self.at {
            return;
        }
        self.at = at;
        match &self.imp {
            #[cfg(target_os = "linux")]
            Imp::Fd(t) => {
                let after = at.map(|at| at.saturating_duration_since(Instant::now()));
                if let Err(e) = t.get_ref().arm(after) {
                    // Cannot happen for a valid fd and time; fall back so
                    // the node still wakes.
                    tracing::warn!("timerfd_settime failed, using tokio's timer: {e}");
                    self.imp = Imp::Tokio;
                }
            }
            Imp::Tokio => {}
        }
    }

    /// Completes once the deadline passed, and disarms it (so that
    /// setting the same deadline again arms it again). Cancel-safe:
    /// dropped before completing, the deadline stays armed.
    pub(crate) async fn fired(&mut self) {
        self.wait().await;
        self.at = None;
    }

    async fn wait(&self) {
        match (&self.imp, self.at) {
            (_, None) => std::future::pending().await,
            #[cfg(target_os = "linux")]
            (Imp::Fd(t), Some(at)) => loop {
                let Ok(mut ready) = t.readable().await else {
                    // The reactor is gone (shutdown): fall back to time.
                    return tokio::time::sleep_until(at).await;
                };
                match ready.try_io(|fd| fd.get_ref().consume()) {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => {
                        tracing::warn!("reading the timerfd failed: {e}");
                        return tokio::time::sleep_until(at).await;
                    }
                    Err(_would_block) => continue,
                }
            },
            (Imp::Tokio, Some(at)) => tokio::time::sleep_until(at).await,
        }
    }
}

#[cfg(target_os = "linux")]
mod fd {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    /// A monotonic, non-blocking timerfd.
    pub(super) struct Timer(TimerFd);

    impl Timer {
        pub(super) fn new() -> io::Result<Timer> {
            TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .map(Timer)
            .map_err(io::Error::from)
        }

        /// Fires once `after` from now; `None` disarms. A zero duration
        /// would disarm a timerfd, so a due deadline fires in 1 ns.
        pub(super) fn arm(&self, after: Option<Duration>) -> io::Result<()> {
            let r = match after {
                None => self.0.unset(),
                Some(d) => self.0.set(
                    Expiration::OneShot(TimeSpec::from_duration(d.max(Duration::from_nanos(1)))),
                    TimerSetTimeFlags::empty(),
                ),
            };
            r.map_err(io::Error::from)
        }

        /// Reads the expiration count: `WouldBlock` until it fired.
        pub(super) fn consume(&self) -> io::Result<()> {
            self.0.wait().map_err(io::Error::from)
        }
    }

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn fires_at_the_deadline_and_can_be_moved() {
        let mut d = Deadline::new();
        let start = Instant::now();
        d.set(Some(start + Duration::from_millis(200)));
        // Moved earlier before it fired: the new deadline counts.
        d.set(Some(start + Duration::from_millis(30)));
        d.fired().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_millis(190), "{took:?}");
        // Re-armed after firing, it fires again.
        let again = Instant::now();
        d.set(Some(again + Duration::from_millis(20)));
        d.fired().await;
        assert!(again.elapsed() >= Duration::from_millis(20));
        // The same deadline again (already past): armed again, fires.
        let same = Instant::now() - Duration::from_millis(1);
        d.set(Some(same));
        d.fired().await;
        d.set(Some(same));
        tokio::time::timeout(Duration::from_secs(2), d.fired())
            .await
            .expect("the same deadline set again fires again");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_past_deadline_fires_at_once_and_none_never() {
        let mut d = Deadline::new();
        d.set(Some(Instant::now() - Duration::from_millis(5)));
        tokio::time::timeout(Duration::from_secs(2), d.fired())
            .await
            .expect("a past deadline fires");
        d.set(None);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), d.fired())
                .await
                .is_err()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_wait_keeps_the_deadline() {
        let mut d = Deadline::new();
        d.set(Some(Instant::now() + Duration::from_millis(40)));
        // A select that another branch won drops the wait.
        let _ = tokio::time::timeout(Duration::from_millis(5), d.fired()).await;
        tokio::time::timeout(Duration::from_secs(2), d.fired())
            .await
            .expect("still armed");
    }
}
