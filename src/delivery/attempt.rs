//! One delivery attempt: send, classify, record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::LaneShared;
use super::transport::{Message, Sent};
use crate::domain::circuit::Verdict;
use crate::domain::retry::{AttemptResult, Decision};
use crate::metrics;
use crate::privacy::{SensitiveValues, decrypt_with, seal_text};
use crate::store::{AttemptOutcome, CapturedValue, ClaimedDelivery, DeliveryAttempt, millis};

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

    /// Applies the route's `transform`, if any, and hands the message to the lane's transport:
    /// what happened, the `Retry-After` asked for, the error text, and the values
    /// `response_capture` keeps from a 2xx answer.
    async fn send(
        &self,
        body: bytes::Bytes,
    ) -> (
        AttemptResult,
        Option<Duration>,
        Option<String>,
        Vec<CapturedValue>,
    ) {
        let claim = &self.claim;
        let destination = &self.lane.destination;
        let transform = self.lane.transforms.find(&claim.source, &destination.name);
        let wants_json = transform.is_some() || self.lane.transport.needs_type();
        let json = if wants_json {
            serde_json::from_slice::<serde_json::Value>(&body).ok()
        } else {
            None
        };
        let mut content_type = claim.content_type.as_deref();
        let body = match transform.and_then(|t| t.pick(json.as_ref())) {
            Some(transform) => match &json {
                Some(json) => match transform.apply(json).await {
                    Ok(transformed) => {
                        content_type = Some("application/json");
                        transformed
                    }
                    Err(e) => {
                        return (
                            AttemptResult::Transform,
                            None,
                            Some(format!("transform: {e}")),
                            Vec::new(),
                        );
                    }
                },
                None => {
                    return (
                        AttemptResult::Transform,
                        None,
                        Some("transform: the stored body is not JSON".into()),
                        Vec::new(),
                    );
                }
            },
            None => body,
        };
        let event_type = json
            .as_ref()
            .and_then(|j| j.get("type"))
            .and_then(|t| t.as_str());
        let message = Message {
            body,
            delivery_key: claim.delivery_key,
            event_id: claim.event_id,
            source: &claim.source,
            attempt: claim.attempt,
            replay_id: claim.replay_id,
            content_type,
            event_type,
        };
        let Sent {
            result,
            retry_after,
            error,
            answer,
        } = self.lane.transport.send(destination, message).await;
        let captured = match (&destination.response_capture, &result) {
            (Some(capture), AttemptResult::Status(code)) if (200..300).contains(code) => {
                capture.capture(&answer, self.lane.cipher.as_deref())
            }
            _ => Vec::new(),
        };
        (result, retry_after, error, captured)
    }
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
}
