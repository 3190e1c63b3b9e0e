//! Monotonic timestamps supplied by the caller.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the caller's monotonic clock, in whole microseconds since an
/// origin the caller chooses (process start, trace start, simulator epoch).
///
/// The detector never reads a clock: every arrival and every phi query
/// carries one of these. Microsecond integers keep the interval sums exact
/// for years of heartbeats; a `u64` of microseconds spans 584,000 years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's origin.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros)
    }

    /// A timestamp `millis` milliseconds after the origin, rounded to the
    /// nearest microsecond. Negative or NaN inputs map to the origin and
    /// values beyond the range saturate, so traces cannot make it panic.
    pub fn from_millis_f64(millis: f64) -> Self {
        let micros = (millis * 1000.0).round();
        if micros.is_nan() || micros <= 0.0 {
            Timestamp(0)
        } else if micros >= u64::MAX as f64 {
            Timestamp(u64::MAX)
        } else {
            Timestamp(micros as u64)
        }
    }

    /// A timestamp `since_origin` after the origin (saturating).
    pub fn from_duration(since_origin: Duration) -> Self {
        Timestamp(u64::try_from(since_origin.as_micros()).unwrap_or(u64::MAX))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the origin, as a float.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// Microseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating: a timestamp never wraps.
    fn add(self, rhs: Duration) -> Timestamp {
        let d = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(d))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    /// Saturating: zero when `rhs` is later than `self`.
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Microseconds in `d`, saturating at `u64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_conversion_is_total() {
        assert_eq!(Timestamp::from_millis_f64(-5.0), Timestamp::ZERO);
        assert_eq!(Timestamp::from_millis_f64(f64::NAN), Timestamp::ZERO);
        assert_eq!(Timestamp::from_millis_f64(1e300), Timestamp(u64::MAX));
        assert_eq!(Timestamp::from_millis_f64(1.0005).as_micros(), 1001);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_micros(10);
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(
            Timestamp(u64::MAX) + Duration::from_secs(1),
            Timestamp(u64::MAX)
        );
    }
}
