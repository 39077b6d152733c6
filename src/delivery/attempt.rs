//! One delivery attempt: send, classify, record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, header};

use super::LaneShared;
use crate::domain::circuit::Verdict;
use crate::domain::retry::{AttemptResult, Decision};
use crate::metrics;
use crate::privacy::{SensitiveValues, decrypt_with, seal_text};
use crate::store::{AttemptOutcome, CapturedValue, ClaimedDelivery, DeliveryAttempt, millis};

/// How much of a destination's response is read: enough for any error message or captured
/// value, and a destination that streams gigabytes cannot make the node hold them.
const RESPONSE_READ_LIMIT: usize = 64 * 1024;
/// How much of an error text is kept (UTF-8 bytes), after scrubbing.
const ERROR_TEXT_LIMIT: usize = 512;
/// How often recording an outcome is retried while the store is unavailable. After that the
/// lease runs out and the delivery is attempted again: at least once, never lost.
const RECORD_TRIES: u32 = 5;

pub(super) struct Attempt {
    /// What every attempt of the lane shares: the destination, the store, the client, …
    pub lane: Arc<LaneShared>,
    pub claim: ClaimedDelivery,
    /// The lane's sending slot: given back as soon as the destination has answered, so the
    /// next delivery goes out while this outcome waits for its commit.
    pub sending: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Time kept back from the shutdown grace period to hand unfinished deliveries back.
const RELEASE_MARGIN: Duration = Duration::from_millis(500);

impl Attempt {
    /// Runs the attempt; if the node is stopping and the grace period is nearly over first,
    /// abandons it and releases the claim (the destination may still have received it: at
    /// least once, with the same key).
    pub async fn run_until_shutdown(
        self,
        stop: tokio_util::sync::CancellationToken,
        grace: Duration,
    ) {
        let deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(grace.saturating_sub(RELEASE_MARGIN)).await;
        };
        let store = Arc::clone(&self.lane.store);
        let claim = self.claim.clone();
        tokio::select! {
            () = self.run() => {}
            () = deadline => {
                if let Err(e) = store.release_claim(&claim).await {
                    tracing::warn!(event_id = %claim.event_id, error = %e,
                        "cannot release an unfinished delivery; it is retried after its lease");
                }
            }
        }
    }

    pub async fn run(mut self) {
        let started_at = self.lane.clock.now_millis();
        let clock = Instant::now();
        let (result, retry_after, error, captured) =
            match decrypt_with(self.lane.cipher.as_deref(), &self.claim.body) {
                Ok(body) => {
                    if self.claim.redelivery {
                        metrics::redelivery(&self.lane.destination.name);
                    }
                    let (result, retry_after, error, captured) = self.send(body.clone()).await;
                    let error =
                        error.map(|e| truncate_utf8(self.scrub(&body, e), ERROR_TEXT_LIMIT));
                    (result, retry_after, error, captured)
                }
                // Without the key the payload cannot be sent; sending ciphertext would be worse.
                Err(e) => (
                    AttemptResult::Undeliverable,
                    None,
                    Some(e.to_string()),
                    Vec::new(),
                ),
            };
        let elapsed = clock.elapsed();
        let policy = &self.lane.destination.policy;
        let jitter = rand::random::<f64>();
        let decision = policy.decide(self.claim.attempt, &result, retry_after, jitter);
        let name = &self.lane.destination.name;
        // The verdict is counted before the sending slot is given back, so a delivery waiting
        // for the slot sees a circuit this attempt opened and goes back unsent.
        let circuit =
            self.lane
                .health
                .record(&result, self.claim.probe, self.lane.clock.now_millis());
        drop(self.sending.take());
        if let Some(circuit) = circuit
            && let Err(e) = self.lane.store.set_circuit(name, circuit).await
        {
            tracing::warn!(destination = %name, error = %e,
                "cannot store the destination's circuit; other nodes learn it later");
        }
        // A failure that meets an open circuit is the outage's, not the delivery's: it waits
        // for the circuit instead of going dead (and a probe's attempt does not count at all).
        let decision = match decision {
            Decision::Dead { reason }
                if Verdict::of(&result) == Verdict::Failed
                    && (self.claim.probe || self.lane.health.circuit_open()) =>
            {
                Decision::Retry {
                    after: policy.backoff(self.claim.attempt, jitter),
                    reason,
                }
            }
            decision => decision,
        };
        let outcome = match &decision {
            // A replayed delivery's age is the time since the event came, hours or days: it
            // would drown the live latency.
            Decision::Delivered if self.claim.replay_id.is_some() => AttemptOutcome::Delivered,
            Decision::Delivered => {
                metrics::end_to_end(
                    name,
                    Duration::from_millis(
                        self.lane
                            .clock
                            .now_millis()
                            .saturating_sub(self.claim.received_at)
                            .max(0) as u64,
                    ),
                );
                AttemptOutcome::Delivered
            }
            Decision::Retry { after, .. } => AttemptOutcome::Retry {
                next_attempt_at: self.lane.clock.now_millis().saturating_add(millis(*after)),
            },
            Decision::Dead { reason } => {
                metrics::dead(name, *reason);
                AttemptOutcome::Dead { reason: *reason }
            }
        };
        metrics::delivery_attempt(name, outcome.kind(), elapsed);
        if self.claim.replay_id.is_some() && !matches!(outcome, AttemptOutcome::Retry { .. }) {
            metrics::replay_delivery(name, outcome.kind());
        }
        let status_code = match result {
            AttemptResult::Status(code) => Some(code),
            _ => None,
        };
        tracing::info!(
            destination = %name,
            source = %self.claim.source,
            event_id = %self.claim.event_id,
            delivery_key = %self.claim.delivery_key,
            attempt = self.claim.attempt,
            replay_id = self.claim.replay_id.map(|r| r.to_string()),
            outcome = outcome.kind().as_str(),
            status_code,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            error = error.as_deref(),
            "delivery {}",
            outcome.kind()
        );
        // Without an answer, the request may still have been processed.
        let may_have_reached = matches!(result, AttemptResult::Timeout | AttemptResult::Network);
        let record = DeliveryAttempt {
            may_have_reached,
            started_at,
            duration_ms: millis(elapsed),
            status_code,
            // Encrypted at rest with the payload's key: an error may quote the payload.
            error: error.map(|e| seal_text(self.lane.cipher.as_deref(), &e)),
            // Only what delivered it is kept: a 2xx that still counts as a failure keeps nothing.
            captured: if matches!(outcome, AttemptOutcome::Delivered) {
                captured
            } else {
                Vec::new()
            },
            outcome,
        };
        for tries in 1..=RECORD_TRIES {
            match self
                .lane
                .store
                .record_attempt(&self.claim, record.clone())
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!(destination = %name, event_id = %self.claim.event_id,
                        "lease lost before the outcome was recorded; another worker owns the delivery");
                    break;
                }
                Err(e) if tries < RECORD_TRIES && e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                }
                Err(e) => {
                    tracing::error!(destination = %name, event_id = %self.claim.event_id, error = %e,
                        "cannot record the delivery outcome; it will be attempted again after its lease");
                    break;
                }
            }
        }
        // A finished attempt may unblock the next delivery with the same ordering key.
        self.lane.wake.notify_one();
    }

    /// A destination's error text may quote the payload: masked and searchable values are
    /// scrubbed before it is logged or stored.
    fn scrub(&self, body: &[u8], error: String) -> String {
        let Some(fields) = self.lane.hidden_fields.get(&self.claim.source) else {
            return error;
        };
        SensitiveValues::from_body(body, fields)
            .scrub(&error)
            .into_owned()
    }

    /// Sends the delivery: what happened, the `Retry-After` asked for, the error text, and the
    /// values `response_capture` keeps from a 2xx answer.
    async fn send(
        &self,
        body: bytes::Bytes,
    ) -> (
        AttemptResult,
        Option<Duration>,
        Option<String>,
        Vec<CapturedValue>,
    ) {
        let request = self
            .lane
            .client
            .post(self.lane.destination.url.clone())
            .timeout(self.lane.destination.timeout)
            .headers(self.headers(&body))
            .body(body);
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
                return (result, None, Some(describe(&e)), Vec::new());
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
        let mut captured = Vec::new();
        let error = if response.status().is_success() {
            // Read the body so the connection can be reused, and keep what `response_capture`
            // names from it.
            let answer =
                read_limited(response, RESPONSE_READ_LIMIT, self.lane.destination.timeout).await;
            if let Some(capture) = &self.lane.destination.response_capture {
                captured = capture.capture(&answer, self.lane.cipher.as_deref());
            }
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
        (AttemptResult::Status(status), retry_after, error, captured)
    }

    /// The same identifying headers on every attempt, retry and replay (SPEC §5).
    fn headers(&self, body: &[u8]) -> HeaderMap {
        let claim = &self.claim;
        let mut headers = self.lane.destination.headers.clone();
        let delivery_key = claim.delivery_key.to_string();
        if let Ok(value) = HeaderValue::from_str(&delivery_key) {
            headers.insert("idempotency-key", value.clone());
            headers.insert("webhook-id", value);
        }
        if let Ok(value) = HeaderValue::from_str(&claim.event_id.to_string()) {
            headers.insert("oncehook-event-id", value);
        }
        if let Some(content_type) = claim
            .content_type
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        if let Ok(source) = HeaderValue::from_str(&claim.source) {
            headers.insert("oncehook-source", source);
        }
        headers.insert("oncehook-attempt", HeaderValue::from(claim.attempt));
        if let Some(replay) = claim
            .replay_id
            .and_then(|r| HeaderValue::from_str(&r.to_string()).ok())
        {
            headers.insert("oncehook-replay", replay);
        }
        if let Some(signer) = &self.lane.destination.signer {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for (name, value) in signer.sign(body, &delivery_key, now) {
                headers.insert(name, value);
            }
        }
        headers
    }
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

/// `text` cut to at most `limit` bytes at a character boundary.
fn truncate_utf8(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
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
    fn error_texts_are_cut_at_a_character_boundary() {
        assert_eq!(truncate_utf8("short".into(), 512), "short");
        let long = "é".repeat(400);
        let cut = truncate_utf8(long, 511);
        assert_eq!(cut.len(), 510);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_utf8("abc".into(), 0), "");
    }

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
