//! The circuit breaker (`circuit_breaker = { failures, cooldown }`): a destination that fails
//! `failures` times in a row is left alone for `cooldown`; then one waiting delivery probes it,
//! and the probe's answer closes the circuit or opens it again. While it is open, deliveries
//! wait without spending attempts, so an outage of minutes ends in delivery, not dead letters.
//!
//! The circuit itself is shared (it lives in the store with the destination's other state);
//! each node counts the failures of its own attempts and reports when the run reaches the
//! threshold or an answer ends it.

use std::time::Duration;

use super::retry::AttemptResult;
use super::words::words;
use crate::clock::UnixMillis;

/// `circuit_breaker`: how many retryable failures in a row open the circuit, and how long it
/// stays open before a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub cooldown: Duration,
}

impl BreakerPolicy {
    pub const DEFAULT: BreakerPolicy = BreakerPolicy {
        failures: 5,
        cooldown: Duration::from_secs(30),
    };
}

words! {
    /// Where a destination's circuit stands, as stored.
    pub enum CircuitPhase("circuit phase") {
        /// Deliveries go out.
        Closed => "closed",
        /// Deliveries wait until the cooldown is over.
        Open => "open",
        /// One probe is out; the others wait for its answer.
        HalfOpen => "half_open",
    }
}

/// A circuit as stored: its phase and, when not closed, until when it holds (the end of the
/// cooldown, or of the probe's lease: a probe whose node died does not hold the circuit
/// forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit {
    pub phase: CircuitPhase,
    pub until: UnixMillis,
}

impl Circuit {
    pub const CLOSED: Circuit = Circuit {
        phase: CircuitPhase::Closed,
        until: 0,
    };

    /// Open for `cooldown` from `now`.
    pub fn open(now: UnixMillis, cooldown: Duration) -> Circuit {
        Circuit {
            phase: CircuitPhase::Open,
            until: now.saturating_add(i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Whether one waiting delivery may go out now as the probe.
    pub fn probe_due(&self, now: UnixMillis) -> bool {
        self.phase != CircuitPhase::Closed && self.until <= now
    }
}

/// What one attempt tells about the destination's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered: a success, or a refusal that no retry would change (4xx). Either way it is up.
    Answered,
    /// A failure worth retrying: 408, 429, 5xx, a timeout, a connection or network error.
    Failed,
    /// Says nothing about the destination (the payload could not even be prepared).
    Neither,
}

impl Verdict {
    pub fn of(result: &AttemptResult) -> Verdict {
        match result {
            AttemptResult::Status(code) if *code == 408 || *code == 429 || *code >= 500 => {
                Verdict::Failed
            }
            AttemptResult::Status(_) => Verdict::Answered,
            // A broker that took the message, or refused it as unroutable, answered.
            AttemptResult::Published | AttemptResult::Unroutable => Verdict::Answered,
            AttemptResult::Timeout | AttemptResult::Connect | AttemptResult::Network => {
                Verdict::Failed
            }
            // Neither says anything of the destination: the payload or the program is at fault.
            AttemptResult::Undeliverable | AttemptResult::Transform => Verdict::Neither,
        }
    }
}

/// A change a node reports to the shared circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    Open,
    Close,
}

/// One node's run of failures at one destination, and what it last knew of the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRun {
    failures: u32,
    known: CircuitPhase,
}

impl Default for FailureRun {
    fn default() -> Self {
        FailureRun {
            failures: 0,
            known: CircuitPhase::Closed,
        }
    }
}

impl FailureRun {
    /// What the node learned of the shared circuit (from a claim, or its own change).
    pub fn learn(&mut self, phase: CircuitPhase) {
        self.known = phase;
    }

    pub fn known(&self) -> CircuitPhase {
        self.known
    }

    /// Counts one attempt's verdict; returns the change to report, if any. A probe's failure
    /// opens the circuit again; any answer closes a circuit that is not closed; the threshold's
    /// failure in a row opens a closed one.
    pub fn record(
        &mut self,
        verdict: Verdict,
        probe: bool,
        policy: &BreakerPolicy,
    ) -> Option<CircuitChange> {
        let change = match verdict {
            Verdict::Neither => None,
            Verdict::Answered => {
                self.failures = 0;
                (probe || self.known != CircuitPhase::Closed).then_some(CircuitChange::Close)
            }
            Verdict::Failed => {
                self.failures = self.failures.saturating_add(1);
                let opens = probe
                    || (self.known == CircuitPhase::Closed
                        && self.failures >= policy.failures.max(1));
                opens.then_some(CircuitChange::Open)
            }
        };
        match change {
            Some(CircuitChange::Open) => self.known = CircuitPhase::Open,
            Some(CircuitChange::Close) => {
                self.known = CircuitPhase::Closed;
                self.failures = 0;
            }
            None => {}
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        cooldown: Duration::from_secs(30),
    };

    #[test]
    fn the_threshold_s_failure_in_a_row_opens_the_circuit_once() {
        let mut run = FailureRun::default();
        assert_eq!(run.record(Verdict::Failed, false, &POLICY), None);
        assert_eq!(run.record(Verdict::Failed, false, &POLICY), None);
        assert_eq!(
            run.record(Verdict::Failed, false, &POLICY),
            Some(CircuitChange::Open)
        );
        // Already open: further failures of attempts still out change nothing.
        assert_eq!(run.record(Verdict::Failed, false, &POLICY), None);
        assert_eq!(run.known(), CircuitPhase::Open);
    }

    #[test]
    fn an_answer_ends_the_run_and_closes_the_circuit() {
        let mut run = FailureRun::default();
        run.record(Verdict::Failed, false, &POLICY);
        run.record(Verdict::Failed, false, &POLICY);
        assert_eq!(run.record(Verdict::Answered, false, &POLICY), None);
        assert_eq!(run.record(Verdict::Failed, false, &POLICY), None);
        assert_eq!(run.record(Verdict::Neither, false, &POLICY), None);
        run.learn(CircuitPhase::HalfOpen);
        assert_eq!(
            run.record(Verdict::Answered, true, &POLICY),
            Some(CircuitChange::Close)
        );
        assert_eq!(run.known(), CircuitPhase::Closed);
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let mut run = FailureRun::default();
        run.learn(CircuitPhase::HalfOpen);
        assert_eq!(
            run.record(Verdict::Failed, true, &POLICY),
            Some(CircuitChange::Open)
        );
    }

    #[test]
    fn verdicts() {
        use AttemptResult::*;
        for (result, verdict) in [
            (Status(200), Verdict::Answered),
            (Status(404), Verdict::Answered),
            (Status(301), Verdict::Answered),
            (Status(408), Verdict::Failed),
            (Status(429), Verdict::Failed),
            (Status(503), Verdict::Failed),
            (Timeout, Verdict::Failed),
            (Connect, Verdict::Failed),
            (Network, Verdict::Failed),
            (Undeliverable, Verdict::Neither),
        ] {
            assert_eq!(Verdict::of(&result), verdict, "{result:?}");
        }
    }

    #[test]
    fn a_probe_is_due_after_the_cooldown() {
        let open = Circuit::open(1_000, Duration::from_secs(30));
        assert!(!open.probe_due(30_999));
        assert!(open.probe_due(31_000));
        assert!(!Circuit::CLOSED.probe_due(i64::MAX));
    }
}
