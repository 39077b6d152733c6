//! The limits intake keeps before a request is authenticated (SPEC §4.1): a budget of failed
//! signature checks per client address, and one budget for all request bodies being read.
//!
//! Both exist so that unauthenticated traffic cannot take what the real provider needs: the
//! source's own `rate_limit` is spent only after the signature passes, the failures of one
//! address slow down that address only, and bodies that arrive all at once cannot take the
//! node's memory.

use std::collections::HashMap;
use std::net::IpAddr;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::RateLimit;
use crate::server::client_key;

/// How often addresses that have not failed for a while are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// Failed signature checks per client address (`server.auth_failures_per_ip`).
///
/// Every failure spends one unit of the address's token bucket (governor's keyed limiter). When
/// a failure finds the bucket empty, the address is blocked until the bucket refills one unit:
/// until then `check` refuses its requests before anything is read or verified, which is what
/// keeps a flood cheap. Correct signatures spend nothing, so a provider is never throttled by
/// this, only by its source's `rate_limit`.
pub struct AuthFailureLimiter {
    budget: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses over their budget, and when they may try again. Only addresses that are
    /// blocked right now are in it (expired entries are removed on sight and when pruning).
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// When the limiter was made, and the last prune in milliseconds after that: an atomic, so
    /// that every request can ask whether a prune is due without taking a lock.
    created: Instant,
    last_prune_ms: AtomicU64,
}

impl AuthFailureLimiter {
    pub fn new(limit: RateLimit) -> AuthFailureLimiter {
        AuthFailureLimiter {
            budget: RateLimiter::keyed(
                Quota::per_second(limit.per_second).allow_burst(limit.burst),
            ),
            blocked: Mutex::new(HashMap::new()),
            created: Instant::now(),
            last_prune_ms: AtomicU64::new(0),
        }
    }

    /// Whether `ip` may have its request verified; on refusal, the seconds until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.prune_if_due();
        let key = client_key(ip);
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(until) = blocked.get(&key).copied() else {
            return Ok(());
        };
        let now = Instant::now();
        if until <= now {
            blocked.remove(&key);
            return Ok(());
        }
        Err(whole_seconds(until - now))
    }

    /// Spends one failure of `ip`'s budget; blocks the address when there was none left.
    pub fn record_failure(&self, ip: IpAddr) {
        let key = client_key(ip);
        if let Err(not_until) = self.budget.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.blocked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, Instant::now() + wait);
        }
        self.prune_if_due();
    }

    /// Forgets addresses whose budget is full again and blocks that have ended, at most once per
    /// `PRUNE_INTERVAL` (whichever request comes first does it): the maps then hold only the
    /// addresses that failed in the last few seconds.
    fn prune_if_due(&self) {
        let now_ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        let interval_ms = u64::try_from(PRUNE_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now_ms.saturating_sub(last) < interval_ms {
            return;
        }
        if self
            .last_prune_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.prune();
        }
    }

    fn prune(&self) {
        self.budget.retain_recent();
        self.budget.shrink_to_fit();
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }

    /// Addresses with a budget being refilled, and addresses blocked (for tests).
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        (self.budget.len(), blocked.len())
    }
}

/// A `Retry-After` in whole seconds, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The bytes of request bodies being held at once (`server.max_buffered_body`), over all of
/// intake. Bytes are counted as they arrive, not as declared, so a client that declares a large
/// body and sends nothing holds nothing; they are given back when the request's handling ends.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

/// The part of the budget one request holds; dropping it gives the bytes back.
#[derive(Debug)]
pub struct BodyReservation<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// An empty reservation, to grow as the body arrives.
    pub fn reservation(&self) -> BodyReservation<'_> {
        BodyReservation {
            budget: self,
            bytes: 0,
        }
    }

    /// Bytes held now, over every request.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl BodyReservation<'_> {
    /// Takes `more` bytes; false (taking nothing) when that would take the total over the limit.
    pub fn grow(&mut self, more: usize) -> bool {
        let budget = self.budget;
        let taken = budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more)
                    .filter(|total| *total <= budget.limit)
            });
        if taken.is_err() {
            return false;
        }
        self.bytes += more;
        true
    }
}

impl Drop for BodyReservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second: std::num::NonZeroU32::new(per_second).expect("positive"),
            burst: std::num::NonZeroU32::new(burst).expect("positive"),
        }
    }

    #[test]
    fn failures_over_the_burst_block_that_address_only() {
        let limiter = AuthFailureLimiter::new(limit(1, 3));
        let hostile = ip("127.0.0.2");
        for _ in 0..3 {
            assert_eq!(limiter.check(hostile), Ok(()));
            limiter.record_failure(hostile);
        }
        // The burst is spent but not exceeded yet: the next failure is the one that blocks.
        assert_eq!(limiter.check(hostile), Ok(()));
        limiter.record_failure(hostile);
        assert_eq!(limiter.check(hostile), Err(1));
        assert_eq!(limiter.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(limiter.tracked(), (1, 1));
    }

    #[test]
    fn a_block_ends_when_the_budget_refills_and_idle_addresses_are_forgotten() {
        let limiter = AuthFailureLimiter::new(limit(50, 1));
        let hostile = ip("2001:db8::7");
        limiter.record_failure(hostile);
        limiter.record_failure(hostile);
        // The same /64 is the same client.
        assert!(limiter.check(ip("2001:db8::8")).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limiter.check(hostile), Ok(()));

        limiter.record_failure(ip("127.0.0.3"));
        std::thread::sleep(Duration::from_millis(60));
        limiter.prune();
        assert_eq!(limiter.tracked(), (0, 0));
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100);
        let mut first = budget.reservation();
        let mut second = budget.reservation();
        assert!(first.grow(60));
        assert!(!second.grow(41), "over the limit");
        assert!(second.grow(40));
        assert_eq!(budget.used(), 100);
        drop(first);
        assert_eq!(budget.used(), 40);
        assert!(second.grow(60));
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
