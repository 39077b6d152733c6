//! What to do after a delivery attempt: the classification of SPEC §5 and exponential backoff
//! with full jitter.

use std::time::Duration;

use super::dead_reason::DeadReason;

/// How one attempt ended on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The destination answered with this status code.
    Status(u16),
    /// An event bus took the message (the stream acknowledged it, the broker confirmed it).
    Published,
    /// No answer within the destination's timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke mid-request or the response was unreadable.
    Network,
    /// The stored payload cannot be sent (e.g. its encryption key is gone).
    Undeliverable,
    /// The route's `transform` gave no body to send.
    Transform,
    /// The broker took the message but has nowhere to put it.
    Unroutable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Try again after `after`; `reason` is what the delivery dies of if its attempts run out.
    Retry {
        after: Duration,
        reason: DeadReason,
    },
    Dead {
        reason: DeadReason,
    },
}

/// A destination's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

/// The longest `Retry-After` honoured; beyond it a destination is asking for too much.
const RETRY_AFTER_CEILING: Duration = Duration::from_secs(24 * 3600);

impl RetryPolicy {
    /// Decides after attempt number `attempt` (from 1). `retry_after` is the destination's
    /// `Retry-After`, if any; `jitter` is a uniform random number in [0, 1).
    pub fn decide(
        &self,
        attempt: u32,
        result: &AttemptResult,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Decision {
        let reason = match result {
            AttemptResult::Status(code) if (200..300).contains(code) => return Decision::Delivered,
            AttemptResult::Published => return Decision::Delivered,
            AttemptResult::Status(408) => DeadReason::Http408,
            AttemptResult::Status(429) => DeadReason::Http429,
            AttemptResult::Status(code) if (500..600).contains(code) => DeadReason::Http5xx,
            AttemptResult::Status(code) if (400..500).contains(code) => {
                return Decision::Dead {
                    reason: DeadReason::Http4xx,
                };
            }
            // Redirects are not followed (a POST body would be lost); the URL needs fixing.
            AttemptResult::Status(code) if (300..400).contains(code) => {
                return Decision::Dead {
                    reason: DeadReason::Http3xx,
                };
            }
            AttemptResult::Status(_) => {
                return Decision::Dead {
                    reason: DeadReason::HttpOther,
                };
            }
            AttemptResult::Undeliverable => {
                return Decision::Dead {
                    reason: DeadReason::Undeliverable,
                };
            }
            AttemptResult::Transform => {
                return Decision::Dead {
                    reason: DeadReason::Transform,
                };
            }
            AttemptResult::Unroutable => {
                return Decision::Dead {
                    reason: DeadReason::Unroutable,
                };
            }
            AttemptResult::Timeout => DeadReason::Timeout,
            AttemptResult::Connect => DeadReason::Connect,
            AttemptResult::Network => DeadReason::Network,
        };
        if attempt >= self.max_attempts {
            return Decision::Dead { reason };
        }
        let mut after = self.backoff(attempt, jitter);
        if let Some(asked) = retry_after {
            after = after.max(asked.min(RETRY_AFTER_CEILING));
        }
        Decision::Retry { after, reason }
    }

    /// Full jitter: uniform in [0, min(max, base · 2^(attempt-1))].
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(62);
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(exponent.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        max: Duration::from_secs(600),
        max_attempts: 3,
    };

    fn check(attempt: u32, result: AttemptResult, retry_after: Option<u64>, expected: Decision) {
        let decision = POLICY.decide(attempt, &result, retry_after.map(Duration::from_secs), 0.5);
        assert_eq!(decision, expected, "attempt {attempt} {result:?}");
    }

    #[test]
    fn classification() {
        use AttemptResult::*;
        let retry = |secs_x2: u64, reason| Decision::Retry {
            after: Duration::from_millis(secs_x2 * 500),
            reason,
        };
        check(1, Status(200), None, Decision::Delivered);
        check(1, Status(204), None, Decision::Delivered);
        let dead = |reason| Decision::Dead { reason };
        check(1, Status(500), None, retry(1, DeadReason::Http5xx));
        check(2, Status(503), None, retry(2, DeadReason::Http5xx));
        check(1, Status(429), None, retry(1, DeadReason::Http429));
        check(1, Status(408), None, retry(1, DeadReason::Http408));
        check(1, Timeout, None, retry(1, DeadReason::Timeout));
        check(1, Connect, None, retry(1, DeadReason::Connect));
        check(1, Network, None, retry(1, DeadReason::Network));
        check(1, Status(400), None, dead(DeadReason::Http4xx));
        check(1, Status(404), None, dead(DeadReason::Http4xx));
        check(1, Published, None, Decision::Delivered);
        check(1, Transform, None, dead(DeadReason::Transform));
        check(1, Unroutable, None, dead(DeadReason::Unroutable));
        check(1, Status(301), None, dead(DeadReason::Http3xx));
        check(3, Status(500), None, dead(DeadReason::Http5xx));
        check(3, Timeout, None, dead(DeadReason::Timeout));
    }

    #[test]
    fn retry_after_is_a_floor() {
        check(
            1,
            AttemptResult::Status(503),
            Some(2),
            Decision::Retry {
                after: Duration::from_secs(2),
                reason: DeadReason::Http5xx,
            },
        );
        // A longer backoff is not shortened by a small Retry-After.
        let long = RetryPolicy {
            base: Duration::from_secs(100),
            ..POLICY
        };
        assert_eq!(
            long.decide(
                2,
                &AttemptResult::Status(429),
                Some(Duration::from_secs(1)),
                0.5
            ),
            Decision::Retry {
                after: Duration::from_secs(100),
                reason: DeadReason::Http429
            }
        );
    }

    #[test]
    fn backoff_grows_exponentially_up_to_max_with_full_jitter() {
        let policy = RetryPolicy {
            max_attempts: 100,
            ..POLICY
        };
        assert_eq!(policy.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(policy.backoff(11, 1.0), Duration::from_secs(600));
        assert_eq!(policy.backoff(90, 1.0), Duration::from_secs(600));
        assert_eq!(policy.backoff(5, 0.0), Duration::ZERO);
        for attempt in 1..40 {
            for jitter in [0.0, 0.3, 0.999] {
                assert!(policy.backoff(attempt, jitter) <= policy.max);
            }
        }
    }
}
