//! `DeliveryState`: where one delivery of an event to one destination stands (SPEC §5).

use super::words::words;

words! {
    /// Where a delivery stands. `pending`, `in_flight` and `retrying` are open (it will be
    /// attempted again); `delivered` and `dead` are finished until a replay re-opens them.
    pub enum DeliveryState("delivery state") {
        /// Waiting for its first attempt (or re-queued by a replay).
        Pending => "pending",
        /// Claimed by a worker under a lease; an attempt is under way.
        InFlight => "in_flight",
        /// An attempt failed; the next one is due at `next_attempt_at`.
        Retrying => "retrying",
        /// The destination accepted it.
        Delivered => "delivered",
        /// It failed for good (see its `DeadReason`).
        Dead => "dead",
    }
}

impl DeliveryState {
    /// Whether the delivery will be attempted (again) without a replay.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            DeliveryState::Pending | DeliveryState::InFlight | DeliveryState::Retrying
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_openness() {
        let table = [
            (DeliveryState::Pending, "pending", true),
            (DeliveryState::InFlight, "in_flight", true),
            (DeliveryState::Retrying, "retrying", true),
            (DeliveryState::Delivered, "delivered", false),
            (DeliveryState::Dead, "dead", false),
        ];
        assert_eq!(DeliveryState::ALL.len(), table.len());
        for (state, word, open) in table {
            assert_eq!(state.as_str(), word);
            assert_eq!(word.parse::<DeliveryState>(), Ok(state));
            assert_eq!(state.is_open(), open, "{word}");
        }
        assert!("in-flight".parse::<DeliveryState>().is_err());
    }
}
