//! Retention: finished events past their source's retention deleted with everything that hangs
//! off them, one bounded batch per transaction.
//!
//! The batch is chosen without locks, then its deliveries are locked (in id order) and read
//! again: an event whose delivery a replay re-queued meanwhile is left out. The events are then
//! locked in `seq` order. Deliveries before events is the order replays and outcomes lock in,
//! so retention cannot deadlock with them.

use deadpool_postgres::ClientWrapper;

use super::pool::DbError;
use crate::store::UnixMillis;

pub(super) async fn delete_finished_events(
    client: &mut ClientWrapper,
    source: &str,
    received_before: UnixMillis,
    limit: i64,
) -> Result<u64, DbError> {
    let tx = client.transaction().await?;
    let candidates: Vec<i64> = tx
        .query(
            "SELECT seq FROM events e
             WHERE source = $1 AND received_at < $2
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.event_seq = e.seq
                                 AND d.state NOT IN ('delivered', 'dead'))
             ORDER BY received_at, id
             LIMIT $3",
            &[&source, &received_before, &limit],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    // Locked rows are read in their newest version: a delivery re-queued since the selection
    // shows as open, and its event stays.
    let reopened: Vec<i64> = tx
        .query(
            "SELECT event_seq, state IN ('delivered', 'dead') FROM deliveries
             WHERE event_seq = ANY($1) ORDER BY id FOR UPDATE",
            &[&candidates],
        )
        .await?
        .iter()
        .filter(|row| !row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect();
    let batch: Vec<i64> = candidates
        .into_iter()
        .filter(|seq| !reopened.contains(seq))
        .collect();
    if batch.is_empty() {
        return Ok(0);
    }
    tx.execute(
        "SELECT 1 FROM events WHERE seq = ANY($1) ORDER BY seq FOR UPDATE",
        &[&batch],
    )
    .await?;
    tx.execute(
        "DELETE FROM delivery_attempts WHERE delivery_id IN
           (SELECT id FROM deliveries WHERE event_seq = ANY($1))",
        &[&batch],
    )
    .await?;
    tx.execute(
        "DELETE FROM replay_deliveries WHERE delivery_id IN
           (SELECT id FROM deliveries WHERE event_seq = ANY($1))",
        &[&batch],
    )
    .await?;
    tx.execute(
        "DELETE FROM delivery_captures WHERE delivery_id IN
           (SELECT id FROM deliveries WHERE event_seq = ANY($1))",
        &[&batch],
    )
    .await?;
    tx.execute(
        "DELETE FROM deliveries WHERE event_seq = ANY($1)",
        &[&batch],
    )
    .await?;
    tx.execute(
        "DELETE FROM event_search WHERE event_seq = ANY($1)",
        &[&batch],
    )
    .await?;
    let events = tx
        .execute("DELETE FROM events WHERE seq = ANY($1)", &[&batch])
        .await?;
    tx.commit().await?;
    Ok(events)
}

/// Dedupe keys still blocking repeats at `now`.
pub(super) async fn live_dedupe_keys(
    client: &mut ClientWrapper,
    now: UnixMillis,
) -> Result<u64, DbError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM dedupe_keys WHERE expires_at > $1",
            &[&now],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}
