//! Wall-clock time as oncehook speaks it: milliseconds since the Unix epoch.
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
