//! Packet time. The core's only clock is the timestamp the caller passes in with each frame,
//! in nanoseconds since the Unix epoch. Durations saturate at zero, so a capture whose clock
//! steps backwards never yields a negative or huge latency.

use std::fmt;

/// A packet timestamp, nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_secs_nanos(secs: u64, nanos: u32) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(u64::from(nanos)))
    }

    pub fn from_micros(us: u64) -> Self {
        Timestamp(us.saturating_mul(1000))
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn nanos_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Whole microseconds from `earlier` to `self`, rounded to the nearest microsecond.
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.nanos_since(earlier).saturating_add(500) / 1000
    }

    pub fn add_nanos(self, nanos: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Unix seconds with microsecond precision, as events carry them.
    pub fn as_unix_secs_f64(self) -> f64 {
        let us = self.0.saturating_add(500) / 1000;
        (us / 1_000_000) as f64 + (us % 1_000_000) as f64 / 1e6
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_never_go_negative() {
        let a = Timestamp::from_secs_nanos(10, 0);
        let b = Timestamp::from_secs_nanos(9, 999_000_000);
        assert_eq!(b.micros_since(a), 0);
        assert_eq!(a.micros_since(b), 1000);
    }

    #[test]
    fn micros_round_to_nearest() {
        let a = Timestamp(1_418_145_369_924_505_488);
        let b = Timestamp(1_418_145_370_052_027_262);
        // tshark prints 127.522 ms for this pair.
        assert_eq!(b.micros_since(a), 127_522);
    }

    #[test]
    fn unix_secs_keep_microseconds() {
        let t = Timestamp::from_secs_nanos(1_692_898_402, 475_801_000);
        assert_eq!(format!("{}", t.as_unix_secs_f64()), "1692898402.475801");
    }
}
