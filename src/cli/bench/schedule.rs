//! When requests are due, and which of them repeat an earlier one.
//!
//! Open loop is what keeps the latency honest: requests fall due at a constant arrival rate
//! whether or not earlier ones were answered, and each one's latency counts from its
//! *intended* send time, so a server that stalls is charged for every request that should
//! have gone out during the stall (no coordinated omission). [`Schedule`] is that
//! timetable, in integer arithmetic so that the dispatcher never releases a request before
//! the instant the worker charges its latency from. [`DuplicateMix`] picks the requests
//! that repeat an earlier one byte for byte, as a retrying provider does, deterministically
//! so that two runs with the same settings send the same mix.
//!
//! Both are arithmetic over a request's index, so they are tested without a clock.

use std::time::Duration;

/// Which requests repeat an earlier one. Spread evenly and deterministically (the n-th
/// request is a repeat when ⌊(n+1)·ratio⌋ > ⌊n·ratio⌋), so a ratio is exact over any run
/// length and two runs with the same settings send the same mix.
#[derive(Debug, Clone, Copy)]
pub(super) struct DuplicateMix {
    pub(super) ratio: f64,
}

impl DuplicateMix {
    pub(super) fn new(ratio: f64) -> DuplicateMix {
        DuplicateMix {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    pub(super) fn is_duplicate(&self, index: u64) -> bool {
        if self.ratio <= 0.0 {
            return false;
        }
        let before = (index as f64 * self.ratio).floor();
        let after = ((index + 1) as f64 * self.ratio).floor();
        after > before
    }
}

/// The open-loop schedule: request `n` is due `n / rate` seconds after the start.
///
/// Integer arithmetic (the rate in thousandths of a request per second) so that `offset` and
/// `due_by` agree exactly: a request is never released before its own scheduled time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    pub(super) rate: f64,
    rate_milli: u128,
}

const NANOS_PER_SEC_MILLI: u128 = 1_000_000_000 * 1_000;

impl Schedule {
    pub(super) fn new(rate: f64) -> Schedule {
        Schedule {
            rate,
            rate_milli: ((rate * 1_000.0).round() as u128).max(1),
        }
    }

    pub(super) fn offset(&self, index: u64) -> Duration {
        let nanos = (index as u128 * NANOS_PER_SEC_MILLI).div_ceil(self.rate_milli);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many requests are due at `elapsed` (request 0 is due at once).
    pub(super) fn due_by(&self, elapsed: Duration) -> u64 {
        let due = elapsed.as_nanos() * self.rate_milli / NANOS_PER_SEC_MILLI + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    /// Requests scheduled in a run of `length`.
    pub(super) fn total(&self, length: Duration) -> u64 {
        let total = (length.as_nanos() * self.rate_milli).div_ceil(NANOS_PER_SEC_MILLI);
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_mix_is_exact_and_spread_out() {
        for (ratio, expected) in [(0.0, 0), (0.1, 100), (0.25, 250), (0.5, 500), (1.0, 1000)] {
            let mix = DuplicateMix::new(ratio);
            let repeats = (0..1000).filter(|&i| mix.is_duplicate(i)).count();
            assert_eq!(repeats, expected, "ratio {ratio}");
        }
        // At 10% exactly one in every ten consecutive requests repeats, never a burst.
        let mix = DuplicateMix::new(0.1);
        for window in 0..100 {
            let repeats = (window * 10..window * 10 + 10)
                .filter(|&i| mix.is_duplicate(i))
                .count();
            assert_eq!(repeats, 1);
        }
        // The first request has nothing to repeat.
        assert!(!DuplicateMix::new(0.5).is_duplicate(0));
        assert!(!DuplicateMix::new(-3.0).is_duplicate(7));
    }

    #[test]
    fn open_loop_schedule_is_evenly_spaced() {
        let schedule = Schedule::new(2_000.0);
        assert_eq!(schedule.offset(0), Duration::ZERO);
        assert_eq!(schedule.offset(1), Duration::from_micros(500));
        assert_eq!(schedule.offset(2_000), Duration::from_secs(1));
        assert_eq!(schedule.due_by(Duration::ZERO), 1);
        assert_eq!(schedule.due_by(Duration::from_micros(499)), 1);
        assert_eq!(schedule.due_by(Duration::from_micros(500)), 2);
        assert_eq!(schedule.total(Duration::from_secs(3)), 6_000);
        // Every request is due no earlier than its offset.
        for index in 0..5_000 {
            assert!(schedule.due_by(schedule.offset(index)) > index);
        }
    }
}
