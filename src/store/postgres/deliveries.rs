//! `DeliveryQueue`: claims with `SKIP LOCKED` under a lease, recorded outcomes with the event
//! status that follows them, released claims, when the next delivery is due, and the queue
//! depths.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{ClientWrapper, Transaction};

use super::PostgresStore;
use super::pool::{DbError, get, run, text, unsigned};
use crate::domain::event_status::EventStatus;
use crate::store::{
    AttemptOutcome, ClaimedDelivery, DeliveryAttempt, DeliveryQueue, StoreError, UnixMillis,
    now_millis,
};

#[async_trait]
impl DeliveryQueue for PostgresStore {
    async fn claim_due_deliveries(
        &self,
        destination: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let destination: Arc<str> = Arc::from(destination);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        run(&self.pool, "claim", move |client| {
            // A fresh token per try: a retried claim must not share one with a lost try.
            let token = rand::random::<i64>() & i64::MAX;
            let destination = Arc::clone(&destination);
            Box::pin(async move {
                let tx = client.transaction().await?;
                let claimed =
                    claim_due(&tx, &destination, now, lease_until, limit, token, true).await?;
                tx.commit().await?;
                Ok(claimed)
            })
        })
        .await
    }

    async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError> {
        let claim = Arc::new(claim.clone());
        let attempt = Arc::new(attempt);
        run(&self.pool, "record_attempt", move |client| {
            Box::pin(record_attempt(
                client,
                Arc::clone(&claim),
                Arc::clone(&attempt),
            ))
        })
        .await
    }

    async fn release_claim(&self, claim: &ClaimedDelivery) -> Result<(), StoreError> {
        let (id, token) = (claim.id, claim.lease_token);
        // A probe's attempt was never counted, so there is none to give back.
        let counted = i32::from(!claim.probe);
        run(&self.pool, "release_claim", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "UPDATE deliveries
                         SET state = CASE WHEN attempts - $4 <= 0 THEN 'pending' ELSE 'retrying' END,
                             attempts = GREATEST(attempts - $4, 0), next_attempt_at = $3,
                             lease_expires_at = NULL, lease_token = NULL, updated_at = $3
                         WHERE id = $1 AND lease_token = $2 AND state = 'in_flight'",
                    )
                    .await?;
                client
                    .execute(&statement, &[&id, &token, &now_millis(), &counted])
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<UnixMillis>, StoreError> {
        let destination: Arc<str> = Arc::from(destination);
        run(&self.pool, "next_due_at", move |client| {
            let destination = Arc::clone(&destination);
            Box::pin(async move {
                // LEAST ignores NULLs: the earlier of the next due retry and the next lease expiry.
                let statement = client
                    .prepare_cached(
                        "SELECT LEAST(
                             (SELECT MIN(next_attempt_at) FROM deliveries
                              WHERE destination = $1 AND state IN ('pending', 'retrying')),
                             (SELECT MIN(lease_expires_at) FROM deliveries
                              WHERE destination = $1 AND state = 'in_flight'))",
                    )
                    .await?;
                let row = client.query_one(&statement, &[&&*destination]).await?;
                get(&row, 0)
            })
        })
        .await
    }

    async fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        run(&self.pool, "queue_depths", |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT destination, COUNT(*) FROM deliveries
                         WHERE state IN ('pending', 'retrying', 'in_flight') GROUP BY destination",
                    )
                    .await?;
                let rows = client.query(&statement, &[]).await?;
                rows.iter()
                    .map(|row| Ok((get(row, 0)?, get::<i64>(row, 1)?.max(0) as u64)))
                    .collect()
            })
        })
        .await
    }
}

/// See `Store::claim_due_deliveries`, in the caller's transaction. Rows are locked with
/// `SKIP LOCKED`, so concurrent claims on any node pass over each other's picks instead of
/// waiting or taking them twice. `count_attempt` is false for the circuit's probe: its attempt
/// number is the next one, but it is not counted against `max_attempts`.
pub(super) async fn claim_due(
    tx: &Transaction<'_>,
    destination: &str,
    now: UnixMillis,
    lease_until: UnixMillis,
    limit: i64,
    token: i64,
    count_attempt: bool,
) -> Result<Vec<ClaimedDelivery>, DbError> {
    // Due retries and fresh deliveries in due order, then attempts whose worker vanished. An
    // ordered delivery waits while an earlier one with its key is open: a head another node is
    // claiming right now is still open (pending) in this snapshot, so its successor waits too.
    let claim = tx
        .prepare_cached(
            "WITH ready AS (
                 SELECT d.id, d.next_attempt_at AS due, 0 AS pass FROM deliveries d
                 WHERE d.destination = $1 AND d.state IN ('pending', 'retrying')
                   AND d.next_attempt_at <= $2
                   AND (d.ordering_key IS NULL OR NOT EXISTS (
                         SELECT 1 FROM deliveries p
                         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
                           AND p.id < d.id AND p.state IN ('pending', 'retrying', 'in_flight')))
                 ORDER BY d.next_attempt_at, d.id
                 LIMIT $3
                 FOR UPDATE OF d SKIP LOCKED
             ), abandoned AS (
                 SELECT d.id, d.lease_expires_at AS due, 1 AS pass FROM deliveries d
                 WHERE d.destination = $1 AND d.state = 'in_flight' AND d.lease_expires_at <= $2
                 ORDER BY d.lease_expires_at, d.id
                 LIMIT GREATEST($3 - (SELECT COUNT(*) FROM ready), 0)
                 FOR UPDATE OF d SKIP LOCKED
             ), chosen AS (
                 SELECT id, due, pass FROM ready UNION ALL SELECT id, due, pass FROM abandoned
             )
             UPDATE deliveries d
             SET state = 'in_flight', attempts = d.attempts + $6, lease_expires_at = $4,
                 lease_token = $5, updated_at = $2
             FROM chosen c, events e
             WHERE d.id = c.id AND e.seq = d.event_seq
             RETURNING d.id, d.attempts + 1 - $6, d.replay_id, d.event_seq, e.id, e.source,
                       e.received_at, e.content_type, e.body, c.pass, c.due,
                       COALESCE(e.delivery_key, e.id)",
        )
        .await?;
    let rows = tx
        .query(
            &claim,
            &[
                &destination,
                &now,
                &limit,
                &lease_until,
                &token,
                &i32::from(count_attempt),
            ],
        )
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut event_seqs = Vec::with_capacity(rows.len());
    for row in &rows {
        event_seqs.push(get::<i64>(row, 3)?);
        let rank: (i32, i64) = (get(row, 9)?, get(row, 10)?);
        claimed.push((
            rank,
            ClaimedDelivery {
                id: get(row, 0)?,
                lease_token: token,
                event_id: get(row, 4)?,
                delivery_key: get(row, 11)?,
                source: get(row, 5)?,
                destination: destination.to_string(),
                attempt: unsigned(get(row, 1)?)?,
                received_at: get(row, 6)?,
                content_type: get(row, 7)?,
                body: Bytes::from(get::<Vec<u8>>(row, 8)?),
                replay_id: get(row, 2)?,
                probe: !count_attempt,
            },
        ));
    }
    if !event_seqs.is_empty() {
        // Events are locked in `seq` order, so two claims (or a claim and an outcome) touching
        // the same events cannot deadlock on them.
        let mark_processing = tx
            .prepare_cached(
                "UPDATE events SET status = 'processing'
                 WHERE seq IN (SELECT seq FROM events
                               WHERE seq = ANY($1) AND status = 'received'
                               ORDER BY seq FOR UPDATE)",
            )
            .await?;
        tx.execute(&mark_processing, &[&event_seqs]).await?;
    }
    claimed.sort_by_key(|(rank, claim)| (*rank, claim.id));
    Ok(claimed.into_iter().map(|(_, claim)| claim).collect())
}

async fn record_attempt(
    client: &mut ClientWrapper,
    claim: Arc<ClaimedDelivery>,
    attempt: Arc<DeliveryAttempt>,
) -> Result<bool, DbError> {
    let tx = client.transaction().await?;
    let log = tx
        .prepare_cached(
            "INSERT INTO delivery_attempts
                 (delivery_id, number, started_at, duration_ms, status_code, error, outcome,
                  replay_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    let number = i32::try_from(claim.attempt)
        .map_err(|_| DbError::Invalid(format!("attempt {} out of range", claim.attempt)))?;
    let status_code = attempt.status_code.map(i32::from);
    let error = attempt.error.as_deref().map(text);
    tx.execute(
        &log,
        &[
            &claim.id,
            &number,
            &attempt.started_at,
            &attempt.duration_ms,
            &status_code,
            &error,
            &attempt.outcome.kind(),
            &claim.replay_id,
        ],
    )
    .await?;
    let now = attempt.started_at + attempt.duration_ms;
    let state = attempt.outcome.kind().next_state();
    let (next_attempt_at, dead_reason, delivered_at) = match &attempt.outcome {
        AttemptOutcome::Delivered => (now, None, Some(now)),
        AttemptOutcome::Retry { next_attempt_at } => (*next_attempt_at, None, None),
        AttemptOutcome::Dead { reason } => (now, Some(*reason), None),
    };
    let settle = tx
        .prepare_cached(
            "UPDATE deliveries
             SET state = $3, next_attempt_at = $4, last_error = $5, dead_reason = $6,
                 delivered_at = $7, lease_expires_at = NULL, lease_token = NULL, updated_at = $8
             WHERE id = $1 AND lease_token = $2 AND state = 'in_flight'
             RETURNING event_seq",
        )
        .await?;
    let Some(row) = tx
        .query_opt(
            &settle,
            &[
                &claim.id,
                &claim.lease_token,
                &state,
                &next_attempt_at,
                &error,
                &dead_reason,
                &delivered_at,
                &now,
            ],
        )
        .await?
    else {
        // The lease went to another worker: keep the attempt in the log, change nothing else.
        tx.commit().await?;
        return Ok(false);
    };
    let event_seq: i64 = get(&row, 0)?;
    // Outcomes of the event's other deliveries may be committing on other nodes right now.
    // Locking the event first makes them take turns, and the count below (a new statement, so
    // a new snapshot) then sees every outcome committed before ours.
    let lock = tx
        .prepare_cached("SELECT 1 FROM events WHERE seq = $1 FOR UPDATE")
        .await?;
    tx.execute(&lock, &[&event_seq]).await?;
    let counts = tx
        .prepare_cached(
            "SELECT state, COUNT(*) FROM deliveries WHERE event_seq = $1 GROUP BY state",
        )
        .await?;
    let states = tx
        .query(&counts, &[&event_seq])
        .await?
        .iter()
        .map(|row| Ok((get(row, 0)?, get::<i64>(row, 1)?.max(0) as u64)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let status = EventStatus::from_deliveries(states);
    let update = tx
        .prepare_cached("UPDATE events SET status = $2 WHERE seq = $1")
        .await?;
    tx.execute(&update, &[&event_seq, &status]).await?;
    tx.commit().await?;
    Ok(true)
}
