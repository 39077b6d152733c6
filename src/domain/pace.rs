//! A destination's outbound pace (`rate_limit`): a token bucket. The bucket lives in the store,
//! beside the destination's other shared state, so every node that sends to the destination
//! draws from the same one and the pace holds for their sum.

use crate::clock::UnixMillis;

/// `rate_limit = { per_second, burst }`: deliveries may start at `per_second` on average, and
/// at most `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub per_second: u32,
    pub burst: u32,
}

/// A bucket as stored: the tokens left at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at: UnixMillis,
}

impl Pace {
    /// The bucket at `now`: what was left, plus what dripped in since, up to `burst`. A
    /// destination nobody has sent to yet starts full. A bucket stamped in the future (another
    /// node's clock runs ahead) gains nothing until then.
    pub fn refill(&self, bucket: Option<Bucket>, now: UnixMillis) -> Bucket {
        let burst = f64::from(self.burst.max(1));
        match bucket {
            None => Bucket {
                tokens: burst,
                at: now,
            },
            Some(bucket) => {
                let elapsed = now.saturating_sub(bucket.at).max(0) as f64;
                let tokens =
                    (bucket.tokens + elapsed * f64::from(self.per_second) / 1000.0).min(burst);
                Bucket {
                    tokens,
                    at: now.max(bucket.at),
                }
            }
        }
    }

    /// When a refilled `bucket` next holds a whole token.
    pub fn next_token_at(&self, bucket: Bucket) -> UnixMillis {
        let missing = (1.0 - bucket.tokens).max(0.0);
        // The epsilon keeps float residue (0.4 stored as 0.40000000000000002) from costing a
        // whole extra millisecond.
        let wait = (missing * 1000.0 / f64::from(self.per_second.max(1)) - 1e-6).ceil() as i64;
        bucket.at.saturating_add(wait.max(1))
    }
}

impl Bucket {
    /// Whole tokens in the bucket: how many deliveries may start now.
    pub fn whole(&self) -> usize {
        self.tokens.max(0.0).floor() as usize
    }

    /// The bucket after `n` deliveries started.
    pub fn take(self, n: usize) -> Bucket {
        Bucket {
            tokens: (self.tokens - n as f64).max(0.0),
            at: self.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        per_second: 20,
        burst: 1,
    };

    #[test]
    fn a_new_bucket_is_full_and_drips_at_the_pace() {
        let bucket = PACE.refill(None, 1_000);
        assert_eq!(bucket.whole(), 1);
        let empty = bucket.take(1);
        assert_eq!(empty.whole(), 0);
        assert_eq!(PACE.next_token_at(empty), 1_050);
        assert_eq!(PACE.refill(Some(empty), 1_025).whole(), 0);
        assert_eq!(PACE.refill(Some(empty), 1_050).whole(), 1);
        // Never more than the burst, however long the quiet.
        assert_eq!(PACE.refill(Some(empty), 100_000).whole(), 1);
    }

    #[test]
    fn a_second_of_refills_gives_per_second_tokens() {
        let pace = Pace {
            per_second: 50,
            burst: 50,
        };
        let mut bucket = pace.refill(None, 0).take(50);
        let mut started = 0;
        for now in (0..=1_000).step_by(7) {
            bucket = pace.refill(Some(bucket), now);
            let n = bucket.whole();
            started += n;
            bucket = bucket.take(n);
        }
        assert!((49..=50).contains(&started), "{started}");
    }

    #[test]
    fn a_clock_behind_the_bucket_gains_nothing() {
        let bucket = Bucket {
            tokens: 0.5,
            at: 2_000,
        };
        let refilled = PACE.refill(Some(bucket), 1_000);
        assert_eq!(refilled.tokens, 0.5);
        assert_eq!(refilled.at, 2_000);
    }
}
