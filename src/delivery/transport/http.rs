//! HTTP destinations: a POST with the stable identifying headers, signed the Standard Webhooks
//! way when the destination has a `signing_secret`; at most 64 KiB of the answer is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, header};

use super::{Message, Sent};
use crate::delivery::Destination;
use crate::domain::retry::AttemptResult;

/// How much of a destination's response is read: enough for any error message or captured
/// value, and a destination that streams gigabytes cannot make the node hold them.
const RESPONSE_READ_LIMIT: usize = 64 * 1024;

pub(super) async fn send(
    client: &reqwest::Client,
    destination: &Destination,
    message: Message<'_>,
) -> Sent {
    let headers = headers(destination, &message);
    let request = client
        .post(destination.url.clone())
        .timeout(destination.timeout)
        .headers(headers)
        .body(message.body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let result = if e.is_timeout() {
                AttemptResult::Timeout
            } else if e.is_connect() {
                AttemptResult::Connect
            } else {
                AttemptResult::Network
            };
            return Sent::failed(result, describe(&e));
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|value| {
            let date = response
                .headers()
                .get(header::DATE)
                .and_then(|v| v.to_str().ok());
            parse_retry_after(value, date, SystemTime::now())
        });
    let mut answer = Vec::new();
    let error = if response.status().is_success() {
        // Read the body so the connection can be reused, and for `response_capture`.
        answer = read_limited(response, RESPONSE_READ_LIMIT, destination.timeout).await;
        None
    } else {
        // The whole (limited) answer is kept until it is scrubbed: cutting it first could
        // leave half of a masked value that no longer matches.
        let body = read_limited(response, RESPONSE_READ_LIMIT, Duration::from_secs(2)).await;
        let snippet = String::from_utf8_lossy(&body);
        Some(if snippet.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", snippet.trim())
        })
    };
    Sent {
        result: AttemptResult::Status(status),
        retry_after,
        error,
        answer: answer.into(),
    }
}

/// The same identifying headers on every attempt, retry and replay; the signature covers the
/// body as sent (after `transform`).
fn headers(destination: &Destination, message: &Message<'_>) -> HeaderMap {
    let mut headers = destination.headers.clone();
    let delivery_key = message.delivery_key.to_string();
    if let Ok(value) = HeaderValue::from_str(&delivery_key) {
        headers.insert("idempotency-key", value.clone());
        headers.insert("webhook-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&message.event_id.to_string()) {
        headers.insert("oncehook-event-id", value);
    }
    if let Some(content_type) = message
        .content_type
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if let Ok(source) = HeaderValue::from_str(message.source) {
        headers.insert("oncehook-source", source);
    }
    headers.insert("oncehook-attempt", HeaderValue::from(message.attempt));
    if let Some(replay) = message
        .replay_id
        .and_then(|r| HeaderValue::from_str(&r.to_string()).ok())
    {
        headers.insert("oncehook-replay", replay);
    }
    if let Some(signer) = &destination.signer {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for (name, value) in signer.sign(&message.body, &delivery_key, now) {
            headers.insert(name, value);
        }
    }
    headers
}

/// At most `limit` bytes of a response body, within `timeout`; what came before an error or the
/// deadline. The rest is never read (the connection is closed instead of reused).
async fn read_limited(mut response: reqwest::Response, limit: usize, timeout: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while body.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    body
}

/// `Retry-After` as seconds or an HTTP date. A date is read against the response's own `Date`
/// when it has one (RFC 9110 §10.2.3): a destination whose clock is off by an hour means "in two
/// seconds" by its clock, not an hour from now or already past by ours. Without a `Date` it is
/// read against `now`, and a date in the past means at once.
fn parse_retry_after(value: &str, date: Option<&str>, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate_to_system_time(value)?;
    let their_now = date
        .and_then(|d| httpdate_to_system_time(d.trim()))
        .unwrap_or(now);
    Some(at.duration_since(their_now).unwrap_or(Duration::ZERO))
}

fn httpdate_to_system_time(value: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        // IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
        let parts: Vec<&str> = value.split_whitespace().collect();
        let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
            return None;
        };
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|m| m == month)?
            + 1;
        humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
    })
}

/// A transport error with its causes, without the URL's query string.
fn describe(error: &reqwest::Error) -> String {
    let mut text = match error.url() {
        Some(url) => error.to_string().replace(url.as_str(), url.path()),
        None => error.to_string(),
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("2", None, now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after(" 120 ", None, now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", None, now),
            Some(Duration::ZERO)
        );
        let future = httpdate_to_system_time("Fri, 01 Jan 2100 00:00:00 GMT").expect("date");
        assert!(future > now);
        assert_eq!(parse_retry_after("soon", None, now), None);
    }

    #[test]
    fn a_retry_after_date_counts_from_the_destination_s_own_date() {
        // The destination's clock is an hour ahead of ours, or an hour behind: either way it
        // asks for two seconds.
        let ours = httpdate_to_system_time("Mon, 23 Nov 2026 12:00:00 GMT").expect("date");
        for date in [
            "Mon, 23 Nov 2026 13:00:00 GMT",
            "Mon, 23 Nov 2026 11:00:00 GMT",
        ] {
            let theirs = httpdate_to_system_time(date).expect("date");
            let retry = humantime::format_rfc3339(theirs + Duration::from_secs(2)).to_string();
            assert_eq!(
                parse_retry_after(&retry, Some(date), ours),
                Some(Duration::from_secs(2)),
                "{date}"
            );
        }
        // A date before the destination's own now means at once; an unreadable `Date` falls
        // back to our clock.
        assert_eq!(
            parse_retry_after(
                "Mon, 23 Nov 2026 12:59:00 GMT",
                Some("Mon, 23 Nov 2026 13:00:00 GMT"),
                ours
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 12:00:05 GMT", Some("yesterday"), ours),
            Some(Duration::from_secs(5))
        );
    }
}
