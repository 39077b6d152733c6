//! `DeliveryOutcome`: how one delivery attempt ended, as the attempt log, the metrics
//! (`oncehook_deliveries_total{outcome}`) and the stats count it, and the delivery state it
//! leads to.

use super::delivery_state::DeliveryState;
use super::words::words;

words! {
    /// How an attempt ended.
    pub enum DeliveryOutcome("delivery outcome") {
        Delivered => "delivered",
        /// It failed and another attempt is due later.
        Retry => "retry",
        /// It failed for good.
        Dead => "dead",
    }
}

impl DeliveryOutcome {
    /// The outcome's position in `ALL`, for per-outcome counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The state the delivery is in after an attempt with this outcome.
    pub fn next_state(self) -> DeliveryState {
        match self {
            DeliveryOutcome::Delivered => DeliveryState::Delivered,
            DeliveryOutcome::Retry => DeliveryState::Retrying,
            DeliveryOutcome::Dead => DeliveryState::Dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_indexes_and_next_states() {
        let table = [
            (
                DeliveryOutcome::Delivered,
                "delivered",
                DeliveryState::Delivered,
            ),
            (DeliveryOutcome::Retry, "retry", DeliveryState::Retrying),
            (DeliveryOutcome::Dead, "dead", DeliveryState::Dead),
        ];
        assert_eq!(DeliveryOutcome::ALL.len(), table.len());
        for (index, (outcome, word, state)) in table.into_iter().enumerate() {
            assert_eq!(outcome.as_str(), word);
            assert_eq!(word.parse::<DeliveryOutcome>(), Ok(outcome));
            assert_eq!(outcome.index(), index);
            assert_eq!(DeliveryOutcome::ALL[index], outcome);
            assert_eq!(outcome.next_state(), state);
        }
    }
}
