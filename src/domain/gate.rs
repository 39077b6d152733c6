//! A destination's gate: what its shared state (paused or not, its circuit, its pace) lets one
//! claim take now. Both stores read the state, ask `plan` and write back what the plan says,
//! in the claim's own transaction, so every node sees one gate.

use super::circuit::{Circuit, CircuitPhase};
use super::pace::{Bucket, Pace};
use super::words::words;
use crate::clock::UnixMillis;

words! {
    /// A destination's state as operators see it.
    pub enum DestinationState("destination state") {
        /// Deliveries go out (at its pace).
        Active => "active",
        /// An operator paused it: nothing goes out and no attempt is spent.
        Paused => "paused",
        /// Its circuit is open: deliveries wait for the cooldown.
        Open => "open",
        /// A probe is out (or due): the circuit closes on its success.
        HalfOpen => "half_open",
    }
}

/// A destination's shared state, as stored (a destination without a row has the default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateRow {
    pub paused: bool,
    pub circuit: Circuit,
    pub bucket: Option<Bucket>,
}

impl Default for GateRow {
    fn default() -> Self {
        GateRow {
            paused: false,
            circuit: Circuit::CLOSED,
            bucket: None,
        }
    }
}

impl GateRow {
    pub fn state(&self) -> DestinationState {
        if self.paused {
            return DestinationState::Paused;
        }
        match self.circuit.phase {
            CircuitPhase::Closed => DestinationState::Active,
            CircuitPhase::Open => DestinationState::Open,
            CircuitPhase::HalfOpen => DestinationState::HalfOpen,
        }
    }
}

/// Why a claim took what it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Nothing holds the destination back.
    Open,
    /// Paused by an operator: nothing may be claimed.
    Paused,
    /// The circuit is open (or a probe is out) until then: nothing may be claimed.
    CircuitOpen { until: UnixMillis },
    /// The cooldown is over: at most one delivery, the probe, whose attempt is not counted.
    Probe,
    /// The pace allows nothing more before then.
    RateLimited { until: UnixMillis },
}

/// What one claim may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClaimPlan {
    pub gate: Gate,
    /// At most this many deliveries.
    pub limit: usize,
    /// The pace's bucket refilled to now (None without a pace); take from it what is claimed.
    pub bucket: Option<Bucket>,
}

impl ClaimPlan {
    /// The row to store after `claimed` deliveries were taken under this plan; None when
    /// nothing changed. A claimed probe holds the circuit half open until `lease_until`.
    pub fn after(&self, row: &GateRow, claimed: usize, lease_until: UnixMillis) -> Option<GateRow> {
        let mut next = *row;
        if let Some(bucket) = self.bucket {
            next.bucket = Some(bucket.take(claimed));
        }
        if self.gate == Gate::Probe && claimed > 0 {
            next.circuit = Circuit {
                phase: CircuitPhase::HalfOpen,
                until: lease_until,
            };
        }
        (next != *row).then_some(next)
    }
}

/// What a claim of up to `limit` deliveries may take at `now`.
pub fn plan(row: &GateRow, pace: Option<Pace>, now: UnixMillis, limit: usize) -> ClaimPlan {
    let closed = |gate| ClaimPlan {
        gate,
        limit: 0,
        bucket: None,
    };
    if row.paused {
        return closed(Gate::Paused);
    }
    let (gate, limit) = match row.circuit.phase {
        CircuitPhase::Closed => (Gate::Open, limit),
        _ if row.circuit.probe_due(now) => (Gate::Probe, limit.min(1)),
        _ => {
            return closed(Gate::CircuitOpen {
                until: row.circuit.until,
            });
        }
    };
    let Some(pace) = pace else {
        return ClaimPlan {
            gate,
            limit,
            bucket: None,
        };
    };
    let bucket = pace.refill(row.bucket, now);
    if bucket.whole() == 0 {
        return ClaimPlan {
            gate: Gate::RateLimited {
                until: pace.next_token_at(bucket),
            },
            limit: 0,
            bucket: Some(bucket),
        };
    }
    ClaimPlan {
        gate,
        limit: limit.min(bucket.whole()),
        bucket: Some(bucket),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_paused_destination_claims_nothing_whatever_its_circuit() {
        let row = GateRow {
            paused: true,
            circuit: Circuit::open(0, Duration::from_secs(1)),
            bucket: None,
        };
        let plan = plan(&row, None, 10_000, 16);
        assert_eq!(plan.gate, Gate::Paused);
        assert_eq!(plan.limit, 0);
        assert_eq!(row.state(), DestinationState::Paused);
    }

    #[test]
    fn an_open_circuit_waits_then_lets_one_probe_out() {
        let row = GateRow {
            circuit: Circuit::open(1_000, Duration::from_secs(30)),
            ..GateRow::default()
        };
        assert_eq!(row.state(), DestinationState::Open);
        assert_eq!(
            plan(&row, None, 2_000, 16).gate,
            Gate::CircuitOpen { until: 31_000 }
        );
        let probe = plan(&row, None, 31_000, 16);
        assert_eq!((probe.gate, probe.limit), (Gate::Probe, 1));
        let after = probe.after(&row, 1, 41_000).expect("half open");
        assert_eq!(after.state(), DestinationState::HalfOpen);
        // The probe is out: nobody else goes until its answer (or its lease's end).
        assert_eq!(
            plan(&after, None, 35_000, 16).gate,
            Gate::CircuitOpen { until: 41_000 }
        );
        assert_eq!(plan(&after, None, 41_000, 16).gate, Gate::Probe);
        // Nothing was due to probe with: the circuit stays as it was.
        assert_eq!(probe.after(&row, 0, 41_000), None);
    }

    #[test]
    fn the_pace_caps_each_claim_and_says_when_to_come_back() {
        let pace = Pace {
            per_second: 20,
            burst: 1,
        };
        let row = GateRow::default();
        let first = plan(&row, Some(pace), 1_000, 16);
        assert_eq!((first.gate, first.limit), (Gate::Open, 1));
        let row = first.after(&row, 1, 0).expect("tokens taken");
        let second = plan(&row, Some(pace), 1_010, 16);
        assert_eq!(second.gate, Gate::RateLimited { until: 1_050 });
        assert_eq!(plan(&row, Some(pace), 1_050, 16).limit, 1);
    }

    #[test]
    fn a_probe_spends_a_token_like_any_delivery() {
        let pace = Pace {
            per_second: 1,
            burst: 5,
        };
        let row = GateRow {
            circuit: Circuit::open(0, Duration::from_secs(1)),
            bucket: Some(Bucket {
                tokens: 0.0,
                at: 1_000,
            }),
            ..GateRow::default()
        };
        assert_eq!(
            plan(&row, Some(pace), 1_500, 16).gate,
            Gate::RateLimited { until: 2_000 }
        );
        let probe = plan(&row, Some(pace), 2_000, 16);
        assert_eq!((probe.gate, probe.limit), (Gate::Probe, 1));
    }
}
