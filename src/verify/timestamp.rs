//! Parsing of signed Unix timestamps and the tolerance check against the clock.

/// Parses a timestamp header as providers send it: decimal seconds since the epoch,
/// ASCII digits only. `None` for anything else, including values beyond `i64`.
pub(crate) fn parse_unix_seconds(text: &[u8]) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0i64, |seconds, &byte| {
        if !byte.is_ascii_digit() {
            return None;
        }
        seconds.checked_mul(10)?.checked_add(i64::from(byte - b'0'))
    })
}

/// True when `signed_at` is at most `tolerance_seconds` before or after `now_unix`.
/// `abs_diff` cannot overflow, whatever the two values are.
pub(crate) fn within_tolerance(signed_at: i64, now_unix: i64, tolerance_seconds: u64) -> bool {
    signed_at.abs_diff(now_unix) <= tolerance_seconds
}
