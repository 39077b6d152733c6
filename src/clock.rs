//! Wall-clock time as oncehook speaks it: milliseconds since the Unix epoch, and `Clock`, the
//! clock a component reads when a test needs to set the time (delivery lanes).
//!
//! It sits below every other module, so the store, the metrics and the stats recorder can all
//! read the clock without importing each other. `store` re-exports these names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one time unit the store speaks.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Where a component reads the time: the system clock in a running node, a clock a test sets
/// in tests that step a component through time.
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> UnixMillis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> UnixMillis {
        now_millis()
    }
}
