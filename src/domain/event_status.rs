//! `EventStatus`: how far an event got, over the states of its deliveries (SPEC §5), and the
//! rule that derives it.

use super::delivery_state::DeliveryState;
use super::words::words;

words! {
    /// An event's status over its deliveries.
    pub enum EventStatus("event status") {
        /// Stored; no delivery has been attempted yet.
        Received => "received",
        /// Deliveries are under way, none waiting for a retry.
        Processing => "processing",
        /// Every delivery was delivered (or there were none).
        Completed => "completed",
        /// Some delivery failed and waits for its next attempt.
        FailedRetryable => "failed_retryable",
        /// Every delivery is finished and at least one is dead.
        FailedTerminal => "failed_terminal",
    }
}

impl EventStatus {
    /// The status of an event whose deliveries are in these states, given as (state, how many)
    /// pairs; a state may appear more than once. An event without deliveries is complete.
    pub fn from_deliveries(states: impl IntoIterator<Item = (DeliveryState, u64)>) -> EventStatus {
        let (mut open, mut retrying, mut in_flight, mut delivered, mut dead) = (0, 0, 0, 0, 0);
        for (state, count) in states {
            if state.is_open() {
                open += count;
            }
            match state {
                DeliveryState::Pending => {}
                DeliveryState::InFlight => in_flight += count,
                DeliveryState::Retrying => retrying += count,
                DeliveryState::Delivered => delivered += count,
                DeliveryState::Dead => dead += count,
            }
        }
        if open == 0 && dead == 0 {
            EventStatus::Completed
        } else if open == 0 {
            EventStatus::FailedTerminal
        } else if retrying > 0 {
            EventStatus::FailedRetryable
        } else if in_flight > 0 || delivered > 0 || dead > 0 {
            EventStatus::Processing
        } else {
            EventStatus::Received
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    fn check(states: &[(DeliveryState, u64)], expected: EventStatus) {
        assert_eq!(
            EventStatus::from_deliveries(states.iter().copied()),
            expected,
            "{states:?}"
        );
    }

    #[test]
    fn status_follows_the_deliveries() {
        check(&[], EventStatus::Completed);
        check(&[(Pending, 2)], EventStatus::Received);
        check(&[(InFlight, 1)], EventStatus::Processing);
        check(&[(Pending, 1), (InFlight, 1)], EventStatus::Processing);
        check(&[(Pending, 1), (Delivered, 1)], EventStatus::Processing);
        check(&[(Pending, 1), (Dead, 1)], EventStatus::Processing);
        check(&[(Retrying, 1)], EventStatus::FailedRetryable);
        check(
            &[(Retrying, 1), (InFlight, 1), (Dead, 1)],
            EventStatus::FailedRetryable,
        );
        check(&[(Delivered, 3)], EventStatus::Completed);
        check(&[(Delivered, 1), (Dead, 1)], EventStatus::FailedTerminal);
        check(&[(Dead, 1)], EventStatus::FailedTerminal);
        // Pairs of one state add up.
        check(
            &[(Delivered, 1), (Pending, 1), (Pending, 0)],
            EventStatus::Processing,
        );
    }

    #[test]
    fn words() {
        let table = [
            (EventStatus::Received, "received"),
            (EventStatus::Processing, "processing"),
            (EventStatus::Completed, "completed"),
            (EventStatus::FailedRetryable, "failed_retryable"),
            (EventStatus::FailedTerminal, "failed_terminal"),
        ];
        assert_eq!(EventStatus::ALL.len(), table.len());
        for (status, word) in table {
            assert_eq!(status.as_str(), word);
            assert_eq!(word.parse::<EventStatus>(), Ok(status));
        }
    }

    /// A replay filter's `status` names either; the words must not overlap.
    #[test]
    fn no_word_is_both_a_state_and_a_status() {
        for state in DeliveryState::ALL {
            assert!(state.as_str().parse::<EventStatus>().is_err(), "{state}");
        }
    }
}
