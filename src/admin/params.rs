//! What the admin API's query parameters and JSON fields look like on the wire: times, limits
//! and opaque page cursors.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ApiError;
use crate::store::{Cursor, UnixMillis};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// A time as the API writes it: RFC 3339 in UTC with milliseconds.
pub fn format_time(at: UnixMillis) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// A time as the API reads it: an RFC 3339 timestamp, or a duration meaning that long ago
/// (`15m`, `2h`, `7d`).
pub fn parse_time(name: &str, text: &str, now: UnixMillis) -> Result<UnixMillis, ApiError> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(ago).max(0));
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text)
        && let Ok(since_epoch) = at.duration_since(UNIX_EPOCH)
    {
        return Ok(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX));
    }
    Err(ApiError::bad_request(format!(
        "{name}: expected an RFC 3339 time (2026-01-31T12:00:00Z) or a duration ago (15m, 2h, 7d)"
    )))
}

/// A query parameter's value, unless it is empty: an empty value means the parameter is
/// absent (as a form submits an empty field), never "match the empty string".
pub fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// An enum's words for an error message: `pending, in_flight, …`.
pub fn word_list<T: std::fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An absent limit is the default; a given one, even empty, must be a number in range.
pub fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    match text.trim().parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_request(format!(
            "limit: expected a number from 1 to {MAX_LIMIT}"
        ))),
    }
}

/// A page cursor as clients see it: opaque text they hand back unchanged.
pub fn encode_cursor<I: std::fmt::Display>(cursor: &Cursor<I>) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.at, cursor.id))
}

pub fn decode_cursor<I: FromStr>(text: &str) -> Result<Cursor<I>, ApiError> {
    let invalid = || ApiError::bad_request("cursor: not a cursor this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    Ok(Cursor {
        at: at.parse().map_err(|_| invalid())?,
        id: id.parse().map_err(|_| invalid())?,
    })
}

/// Fetches `limit + 1` items to learn whether another page follows; returns the page and the
/// cursor of its last item when one does.
pub fn paginate<T, I: std::fmt::Display>(
    mut items: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> Cursor<I>,
) -> (Vec<T>, Option<String>) {
    if items.len() <= limit {
        return (items, None);
    }
    items.truncate(limit);
    let next = items.last().map(|last| encode_cursor(&cursor_of(last)));
    (items, next)
}

/// Most characters of an operator's free text (a reason, a name).
const MAX_TEXT: usize = 1000;

/// An operator's free text (`reason`, `requested_by`): required, trimmed, at most 1000 characters.
pub fn required_text(name: &str, value: Option<&str>) -> Result<String, ApiError> {
    let text = value.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request(format!("{name} is required")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "{name}: at most {MAX_TEXT} characters"
        )));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_800_000_000_000;

    #[test]
    fn times_are_durations_ago_or_timestamps() {
        assert_eq!(parse_time("since", "15m", NOW).ok(), Some(NOW - 900_000));
        assert_eq!(
            parse_time("since", "2027-01-15T08:00:00Z", NOW).ok(),
            Some(NOW)
        );
        assert_eq!(format_time(NOW + 5), "2027-01-15T08:00:00.005Z");
        assert!(parse_time("since", "yesterday", NOW).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            at: NOW,
            id: uuid::Uuid::now_v7(),
        };
        let decoded: Cursor<uuid::Uuid> =
            decode_cursor(&encode_cursor(&cursor)).expect("round trip");
        assert_eq!(decoded, cursor);
        let dead: Cursor<i64> =
            decode_cursor(&encode_cursor(&Cursor { at: 5, id: 7i64 })).expect("round trip");
        assert_eq!((dead.at, dead.id), (5, 7));
        assert!(decode_cursor::<uuid::Uuid>("not-a-cursor").is_err());
        assert!(decode_cursor::<i64>(&URL_SAFE_NO_PAD.encode("1:x")).is_err());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("7")).ok(), Some(7));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("1001")).is_err());
        assert!(parse_limit(Some("-1")).is_err());
    }
}
