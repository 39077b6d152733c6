//! What this node knows of its destination's gate, and its own run of failures there.
//!
//! The gate itself (pause, circuit, pace) is shared through the store; each claim tells the
//! lane how it stands. Between claims the lane needs it twice: before an attempt that waited
//! for a sending slot goes out (a destination paused or opened meanwhile gets its delivery back
//! unsent, with no attempt spent), and after each attempt (whose verdict may open or close the
//! circuit). Every change of state is logged and shown in `oncehook_destination_state`.

use std::sync::{Arc, Mutex};

use crate::domain::circuit::{
    BreakerPolicy, Circuit, CircuitChange, CircuitPhase, FailureRun, Verdict,
};
use crate::domain::gate::{DestinationState, GateRow};
use crate::domain::retry::AttemptResult;
use crate::metrics;
use crate::store::UnixMillis;

pub(super) struct Health {
    destination: Arc<str>,
    /// None: `circuit_breaker = false`.
    breaker: Option<BreakerPolicy>,
    known: Mutex<Known>,
}

struct Known {
    run: FailureRun,
    paused: bool,
    /// What was last shown (None before the first claim).
    shown: Option<DestinationState>,
}

impl Known {
    fn state(&self) -> DestinationState {
        if self.paused {
            return DestinationState::Paused;
        }
        match self.run.known() {
            CircuitPhase::Closed => DestinationState::Active,
            CircuitPhase::Open => DestinationState::Open,
            CircuitPhase::HalfOpen => DestinationState::HalfOpen,
        }
    }
}

impl Health {
    pub fn new(destination: Arc<str>, breaker: Option<BreakerPolicy>) -> Health {
        Health {
            destination,
            breaker,
            known: Mutex::new(Known {
                run: FailureRun::default(),
                paused: false,
                shown: None,
            }),
        }
    }

    /// Learns the gate as a claim found it.
    pub fn observe(&self, row: &GateRow) {
        let mut known = self.lock();
        known.paused = row.paused;
        known.run.learn(row.circuit.phase);
        self.show(&mut known);
    }

    /// Whether a claimed delivery that has not gone out yet should be handed back: the
    /// destination is paused, or its circuit is open (or probing with another delivery).
    pub fn holds_back(&self) -> bool {
        self.lock().state() != DestinationState::Active
    }

    /// Whether the circuit is open as far as this node knows: a failed delivery waits for it
    /// rather than going dead.
    pub fn circuit_open(&self) -> bool {
        self.lock().run.known() != CircuitPhase::Closed
    }

    /// Counts an attempt's verdict; returns the circuit to store when it opened or closed.
    pub fn record(&self, result: &AttemptResult, probe: bool, now: UnixMillis) -> Option<Circuit> {
        let breaker = self.breaker?;
        let mut known = self.lock();
        let change = known.run.record(Verdict::of(result), probe, &breaker)?;
        self.show(&mut known);
        Some(match change {
            CircuitChange::Open => Circuit::open(now, breaker.cooldown),
            CircuitChange::Close => Circuit::CLOSED,
        })
    }

    fn show(&self, known: &mut Known) {
        let state = known.state();
        if known.shown == Some(state) {
            return;
        }
        match known.shown {
            None if state == DestinationState::Active => {}
            None => {
                tracing::info!(destination = %self.destination, state = %state, "destination state")
            }
            Some(from) if state == DestinationState::Open => tracing::warn!(
                destination = %self.destination, %from, to = %state,
                "destination state changed: circuit opened"
            ),
            Some(from) => tracing::info!(
                destination = %self.destination, %from, to = %state,
                "destination state changed"
            ),
        }
        metrics::destination_state(&self.destination, state);
        known.shown = Some(state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // The state is a few plain fields: one left half-updated by a panic is still usable.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn health() -> Health {
        Health::new(
            Arc::from("crm"),
            Some(BreakerPolicy {
                failures: 2,
                cooldown: Duration::from_secs(10),
            }),
        )
    }

    #[test]
    fn failures_open_the_circuit_and_hold_back_unsent_deliveries() {
        let health = health();
        health.observe(&GateRow::default());
        assert!(!health.holds_back());
        assert_eq!(health.record(&AttemptResult::Connect, false, 1_000), None);
        let opened = health.record(&AttemptResult::Status(503), false, 1_000);
        assert_eq!(opened, Some(Circuit::open(1_000, Duration::from_secs(10))));
        assert!(health.holds_back());
        assert!(health.circuit_open());
        let closed = health.record(&AttemptResult::Status(200), true, 12_000);
        assert_eq!(closed, Some(Circuit::CLOSED));
        assert!(!health.holds_back());
    }

    #[test]
    fn a_pause_holds_back_and_the_breaker_can_be_off() {
        let health = Health::new(Arc::from("crm"), None);
        health.observe(&GateRow {
            paused: true,
            ..GateRow::default()
        });
        assert!(health.holds_back());
        for _ in 0..10 {
            assert_eq!(health.record(&AttemptResult::Connect, false, 0), None);
        }
        assert!(!health.circuit_open());
    }
}
