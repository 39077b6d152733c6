//! `DeliveryQueue`: claims under a lease, recorded outcomes with the event status that follows
//! them, released claims, when the next delivery is due, and the queue depths.

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::{SqliteStore, uuid_from_blob};
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::store::{
    AttemptOutcome, ClaimedDelivery, DeliveryAttempt, DeliveryQueue, StoreError, UnixMillis,
    now_millis,
};

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_due_deliveries(
        &self,
        destination: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let destination = destination.to_owned();
        let token: i64 = rand::random::<i64>() & i64::MAX;
        self.write_deferred(move |conn| {
            claim_due(conn, &destination, now, lease_until, limit, token, true)
        })
        .await
    }

    async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError> {
        let (id, token, number, replay_id) =
            (claim.id, claim.lease_token, claim.attempt, claim.replay_id);
        self.write_deferred(move |conn| {
            record_attempt(conn, id, token, number, replay_id, &attempt)
        })
        .await
    }

    async fn release_claim(&self, claim: &ClaimedDelivery) -> Result<(), StoreError> {
        let (id, token) = (claim.id, claim.lease_token);
        // A probe's attempt was never counted, so there is none to give back.
        let counted = i64::from(!claim.probe);
        self.write_deferred(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries
                 SET state = CASE WHEN attempts - ?4 <= 0 THEN 'pending' ELSE 'retrying' END,
                     attempts = MAX(attempts - ?4, 0), next_attempt_at = ?3,
                     lease_expires_at = NULL, lease_token = NULL, updated_at = ?3
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'in_flight'",
            )?
            .execute(params![id, token, now_millis(), counted])?;
            Ok(())
        })
        .await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<UnixMillis>, StoreError> {
        let destination = destination.to_owned();
        self.read(move |conn| {
            let due: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries
                     WHERE destination = ?1 AND state IN ('pending', 'retrying')",
                )?
                .query_row([&destination], |row| row.get(0))?;
            let lease: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(lease_expires_at) FROM deliveries
                     WHERE destination = ?1 AND state = 'in_flight'",
                )?
                .query_row([&destination], |row| row.get(0))?;
            Ok(match (due, lease) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        })
        .await
    }

    async fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(QUEUE_DEPTHS)?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        })
        .await
    }
}

/// Open deliveries per destination, read every few seconds for the queue-depth gauge. Each half
/// walks one partial index of open rows: a plain `state IN (…)` over all three states matches
/// neither index, and scanning every delivery ever made grew with the history (and filled the
/// read connections' page caches with it).
const QUEUE_DEPTHS: &str = "SELECT destination, SUM(n) FROM (
        SELECT destination, COUNT(*) AS n FROM deliveries
        WHERE state IN ('pending', 'retrying') GROUP BY destination
        UNION ALL
        SELECT destination, COUNT(*) AS n FROM deliveries
        WHERE state = 'in_flight' GROUP BY destination
    ) GROUP BY destination";

/// What a claim reads of its event: id, source, received_at, content_type, body, delivery_key.
type ClaimedEventRow = (
    Vec<u8>,
    String,
    i64,
    Option<String>,
    Vec<u8>,
    Option<Vec<u8>>,
);

/// Claims up to `limit` due deliveries. `count_attempt` is false for the circuit's probe: its
/// attempt number is the next one, but it is not counted against `max_attempts`.
pub(super) fn claim_due(
    conn: &Connection,
    destination: &str,
    now: UnixMillis,
    lease_until: UnixMillis,
    limit: usize,
    token: i64,
    count_attempt: bool,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Due retries and fresh deliveries in due order, then attempts whose worker vanished.
    // An ordered delivery waits while an earlier one with its key is still open.
    let ids: Vec<(i64, bool)> = conn
        .prepare_cached(
            "SELECT id, abandoned FROM (
                 SELECT d.id, d.next_attempt_at AS due, 0 AS abandoned FROM deliveries d
                 WHERE d.destination = ?1 AND d.state IN ('pending', 'retrying')
                   AND d.next_attempt_at <= ?2
                   AND (d.ordering_key IS NULL OR NOT EXISTS (
                         SELECT 1 FROM deliveries p
                         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
                           AND p.id < d.id AND p.state IN ('pending', 'retrying', 'in_flight')))
                 ORDER BY d.next_attempt_at, d.id LIMIT ?3)
             UNION ALL
             SELECT id, abandoned FROM (
                 SELECT d.id, d.lease_expires_at AS due, 1 AS abandoned FROM deliveries d
                 WHERE d.destination = ?1 AND d.state = 'in_flight' AND d.lease_expires_at <= ?2
                 ORDER BY d.lease_expires_at LIMIT ?3)
             LIMIT ?3",
        )?
        .query_map(params![destination, now, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut claimed = Vec::with_capacity(ids.len());
    let mut take = conn.prepare_cached(
        "UPDATE deliveries SET state = 'in_flight', attempts = attempts + ?5,
             lease_expires_at = ?2, lease_token = ?3, updated_at = ?4
         WHERE id = ?1
         RETURNING attempts + 1 - ?5, event_seq, replay_id, maybe_received",
    )?;
    let mut load = conn.prepare_cached(
        "SELECT e.id, e.source, e.received_at, e.content_type, p.body, e.delivery_key
         FROM events e JOIN event_payloads p ON p.event_seq = e.seq WHERE e.seq = ?1",
    )?;
    let mut mark_processing = conn.prepare_cached(
        "UPDATE events SET status = 'processing' WHERE seq = ?1 AND status = 'received'",
    )?;
    for (id, abandoned) in ids {
        let (attempt, event_seq, replay, maybe_received): (u32, i64, Option<Vec<u8>>, bool) = take
            .query_row(
                params![id, lease_until, token, now, i64::from(count_attempt)],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )?;
        let (event_id, source, received_at, content_type, body, delivery_key): ClaimedEventRow =
            load.query_row([event_seq], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })?;
        mark_processing.execute([event_seq])?;
        let event_id = uuid_from_blob(&event_id)?;
        claimed.push(ClaimedDelivery {
            id,
            lease_token: token,
            event_id,
            delivery_key: delivery_key
                .as_deref()
                .map(uuid_from_blob)
                .transpose()?
                .unwrap_or(event_id),
            source,
            destination: destination.to_owned(),
            attempt,
            received_at,
            content_type,
            body: Bytes::from(body),
            replay_id: replay.as_deref().map(uuid_from_blob).transpose()?,
            probe: !count_attempt,
            redelivery: abandoned || maybe_received,
        });
    }
    Ok(claimed)
}

fn record_attempt(
    conn: &Connection,
    delivery_id: i64,
    token: i64,
    number: u32,
    replay_id: Option<Uuid>,
    attempt: &DeliveryAttempt,
) -> rusqlite::Result<bool> {
    let replay = replay_id.map(|r| r.as_bytes().to_vec());
    conn.prepare_cached(
        "INSERT INTO delivery_attempts
             (delivery_id, number, started_at, duration_ms, status_code, error, outcome, replay_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        delivery_id,
        number,
        attempt.started_at,
        attempt.duration_ms,
        attempt.status_code,
        attempt.error,
        attempt.outcome.kind(),
        replay,
    ])?;
    let now = attempt.started_at + attempt.duration_ms;
    let state = attempt.outcome.kind().next_state();
    let (next_attempt_at, dead_reason, delivered_at) = match &attempt.outcome {
        AttemptOutcome::Delivered => (now, None, Some(now)),
        AttemptOutcome::Retry { next_attempt_at } => (*next_attempt_at, None, None),
        AttemptOutcome::Dead { reason } => (now, Some(*reason), None),
    };
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries
             SET state = ?3, next_attempt_at = ?4, last_error = ?5, dead_reason = ?6,
                 delivered_at = ?7, lease_expires_at = NULL, lease_token = NULL, updated_at = ?8,
                 maybe_received = ?9
             WHERE id = ?1 AND lease_token = ?2 AND state = 'in_flight'",
        )?
        .execute(params![
            delivery_id,
            token,
            state,
            next_attempt_at,
            attempt.error,
            dead_reason,
            delivered_at,
            now,
            attempt.may_have_reached,
        ])?;
    if changed == 0 {
        return Ok(false);
    }
    let event_seq: i64 = conn
        .prepare_cached("SELECT event_seq FROM deliveries WHERE id = ?1")?
        .query_row([delivery_id], |row| row.get(0))?;
    for captured in &attempt.captured {
        conn.prepare_cached(
            "INSERT INTO delivery_captures (delivery_id, name, value, captured_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (delivery_id, name) DO UPDATE
             SET value = excluded.value, captured_at = excluded.captured_at",
        )?
        .execute(params![delivery_id, captured.name, captured.value, now])?;
        conn.prepare_cached(
            "INSERT INTO event_search (hash, event_seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![&captured.search[..], event_seq])?;
    }
    refresh_event_status(conn, event_seq)?;
    Ok(true)
}

/// Sets an event's status from the states of its deliveries.
pub(super) fn refresh_event_status(conn: &Connection, event_seq: i64) -> rusqlite::Result<()> {
    let mut counts = conn.prepare_cached(
        "SELECT state, COUNT(*) FROM deliveries WHERE event_seq = ?1 GROUP BY state",
    )?;
    let states: Vec<(DeliveryState, u64)> = counts
        .query_map([event_seq], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let status = EventStatus::from_deliveries(states);
    // Unchanged (another of its deliveries still open) writes nothing.
    conn.prepare_cached("UPDATE events SET status = ?2 WHERE seq = ?1 AND status IS NOT ?2")?
        .execute(params![event_seq, status])?;
    Ok(())
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::store::sqlite::connection::open_connection;
    use crate::store::sqlite::migrate::migrate;

    /// Queries that run on a timer must not read every delivery ever made.
    #[test]
    fn queue_depths_reads_only_open_deliveries() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = open_connection(&dir.path().join("plan.db")).expect("open");
        migrate(&mut conn).expect("migrate");
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {QUEUE_DEPTHS}"))
            .expect("plan");
        let plan: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        assert!(
            plan.iter()
                .filter(|step| step.contains("deliveries"))
                .all(|step| step.contains("INDEX deliveries_due")
                    || step.contains("INDEX deliveries_leased")),
            "{plan:?}"
        );
    }
}
