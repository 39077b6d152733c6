//! Sharing this node's stats with the nodes that share its store: every few seconds the node
//! writes its latest slots there (each rewritten while it may still gain late recordings), and
//! slots older than the longest window are forgotten. `GET /api/v1/stats` on any node then adds
//! the other nodes' slots to its own.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::stats;
use crate::store::{Store, now_millis};

/// How often the latest slots are written (a small upsert), so another node is at most this
/// far behind.
const EVERY: Duration = Duration::from_secs(2);
/// Slots rewritten each time: the current one and the two before it (a recording may land in a
/// slot a little after it ended).
const REWRITTEN: i64 = 3;

pub async fn run(store: Arc<dyn Store>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(EVERY);
    let day_of_slots =
        i64::try_from(stats::MAX_WINDOW.as_millis()).unwrap_or(i64::MAX) / stats::SLOT_MILLIS;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let current = stats::slot_index(now_millis());
        let slots = stats::global().export(current - REWRITTEN + 1);
        if slots.is_empty() {
            continue;
        }
        if let Err(e) = store
            .save_node_stats(stats::node_id(), slots, current - day_of_slots)
            .await
        {
            tracing::debug!(error = %e, "cannot share this node's stats; other nodes show their own");
        }
    }
}
