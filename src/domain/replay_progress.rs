//! `ReplayProgress`: where the deliveries a replay re-queued are now, counted from their
//! current states.

use super::dead_reason::DeadReason;
use super::delivery_state::DeliveryState;

/// Where the deliveries a replay re-queued are now. A delivery replayed again by a later
/// replay counts as `superseded` here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    pub pending: u64,
    pub in_flight: u64,
    pub retrying: u64,
    pub delivered: u64,
    pub dead: u64,
    pub superseded: u64,
    /// The dead ones per reason (None: a reason the row does not have), largest count first.
    pub dead_by_reason: Vec<(Option<DeadReason>, u64)>,
}

impl ReplayProgress {
    /// The progress of a replay that re-queued `linked` deliveries, of which those still under
    /// this replay are in `current` (state, dead reason, how many) triples; the rest were
    /// replayed again since.
    pub fn count(
        linked: u64,
        current: impl IntoIterator<Item = (DeliveryState, Option<DeadReason>, u64)>,
    ) -> ReplayProgress {
        let mut progress = ReplayProgress::default();
        let mut still_ours = 0u64;
        for (state, reason, count) in current {
            still_ours += count;
            if state == DeliveryState::Dead {
                match progress
                    .dead_by_reason
                    .iter_mut()
                    .find(|(r, _)| *r == reason)
                {
                    Some((_, total)) => *total += count,
                    None => progress.dead_by_reason.push((reason, count)),
                }
            }
            let counter = match state {
                DeliveryState::Pending => &mut progress.pending,
                DeliveryState::InFlight => &mut progress.in_flight,
                DeliveryState::Retrying => &mut progress.retrying,
                DeliveryState::Delivered => &mut progress.delivered,
                DeliveryState::Dead => &mut progress.dead,
            };
            *counter += count;
        }
        progress.superseded = linked.saturating_sub(still_ours);
        progress
            .dead_by_reason
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        progress
    }

    /// True when none of the replay's deliveries is open any more.
    pub fn is_done(&self) -> bool {
        self.pending + self.in_flight + self.retrying == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    /// (linked, current states, expected progress, done)
    type Case = (
        u64,
        &'static [(DeliveryState, Option<DeadReason>, u64)],
        ReplayProgress,
        bool,
    );

    #[test]
    fn counts_each_state_and_the_superseded_rest() {
        let table: &[Case] = &[
            (0, &[], ReplayProgress::default(), true),
            (
                3,
                &[(Pending, None, 1), (Delivered, None, 2)],
                ReplayProgress {
                    pending: 1,
                    delivered: 2,
                    ..ReplayProgress::default()
                },
                false,
            ),
            (
                5,
                &[
                    (Dead, Some(DeadReason::Http4xx), 1),
                    (Delivered, None, 1),
                    (Dead, Some(DeadReason::Timeout), 2),
                ],
                ReplayProgress {
                    delivered: 1,
                    dead: 3,
                    superseded: 1,
                    dead_by_reason: vec![
                        (Some(DeadReason::Timeout), 2),
                        (Some(DeadReason::Http4xx), 1),
                    ],
                    ..ReplayProgress::default()
                },
                true,
            ),
            (
                2,
                &[(InFlight, None, 1), (Retrying, None, 1)],
                ReplayProgress {
                    in_flight: 1,
                    retrying: 1,
                    ..ReplayProgress::default()
                },
                false,
            ),
        ];
        for (linked, current, expected, done) in table {
            let progress = ReplayProgress::count(*linked, current.iter().copied());
            assert_eq!(&progress, expected, "{linked} {current:?}");
            assert_eq!(progress.is_done(), *done, "{linked} {current:?}");
        }
    }
}
