//! `IntakeStore`: accepts queued for the group-commit writers, one `oncehook_accept` call per
//! event pipelined in the batch's transaction; the purge of expired windows; and retention's
//! batches (`retention.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::ClientWrapper;
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use uuid::Uuid;

use super::pool::{DbError, get, run, text};
use super::writer::AcceptJob;
use super::{PostgresStore, retention};
use crate::store::{
    AcceptOutcome, Duplicate, DuplicateReason, IntakeStore, NewEvent, StoreError, UnixMillis,
};

/// Rows the purge deletes per transaction, so it never holds many locks for long.
const PURGE_CHUNK: i64 = 5_000;

#[async_trait]
impl IntakeStore for PostgresStore {
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.accepts
            .try_send(AcceptJob { event, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::queue_full(),
                mpsc::error::TrySendError::Closed(_) => {
                    StoreError::unavailable("the store's writers have stopped")
                }
            })?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the store's writers have stopped"))?
    }

    async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let (keys, fingerprints) = run(&self.pool, "purge", move |client| {
                Box::pin(purge_chunk(client, now))
            })
            .await?;
            total += keys + fingerprints;
            if keys < PURGE_CHUNK as u64 && fingerprints < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn delete_finished_events(
        &self,
        source: &str,
        received_before: UnixMillis,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let source: Arc<str> = Arc::from(source);
        run(&self.pool, "retention", move |client| {
            let source = Arc::clone(&source);
            Box::pin(async move {
                retention::delete_finished_events(client, &source, received_before, limit).await
            })
        })
        .await
    }

    async fn live_dedupe_keys(&self, now: UnixMillis) -> Result<u64, StoreError> {
        run(&self.pool, "live_dedupe_keys", move |client| {
            Box::pin(retention::live_dedupe_keys(client, now))
        })
        .await
    }
}

/// Accepts `events[order[..]]` in one transaction, the calls pipelined on one connection.
/// Returns (index into `events`, outcome) pairs.
pub(super) async fn accept_batch(
    client: &mut ClientWrapper,
    events: Arc<[NewEvent]>,
    order: Arc<[usize]>,
) -> Result<Vec<(usize, AcceptOutcome)>, DbError> {
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "SELECT outcome, original, conflict
             FROM oncehook_accept($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                                  $15, $16, $17, $18)",
        )
        .await?;
    // Polled together, the calls are written to the connection back to back and their answers
    // read in order: one round trip for the batch rather than one per event. Each call is its
    // own statement, so later calls see what earlier ones did (a repeat within the batch is a
    // duplicate of the first).
    let calls = order.iter().map(|&index| {
        let event = &events[index];
        let statement = &statement;
        let tx = &tx;
        async move {
            let destinations: Vec<&str> =
                event.deliveries.iter().map(|d| &*d.destination).collect();
            let ordering_keys: Vec<Option<Cow<'_, str>>> = event
                .deliveries
                .iter()
                .map(|d| d.ordering_key.as_deref().map(text))
                .collect();
            let idempotency_key = text(&event.idempotency_key);
            let source: &str = &event.source;
            let dedupe_key: &[u8] = &event.dedupe_key.0;
            let fingerprint: &[u8] = &event.fingerprint.0;
            let near_key: Option<&[u8]> = event.near_duplicate.as_ref().map(|n| &n.key.0[..]);
            let near_expires_at: Option<i64> = event.near_duplicate.map(|n| n.expires_at);
            let replay_key: Option<&[u8]> = event.replay_guard.as_ref().map(|r| &r.key.0[..]);
            let replay_expires_at: Option<i64> = event.replay_guard.map(|r| r.expires_at);
            let body: &[u8] = &event.body;
            let search: Vec<&[u8]> = event.search.iter().map(|hash| &hash[..]).collect();
            let row = tx
                .query_one(
                    statement,
                    &[
                        &event.id,
                        &source,
                        &event.received_at,
                        &idempotency_key,
                        &dedupe_key,
                        &fingerprint,
                        &event.dedupe_expires_at,
                        &near_key,
                        &near_expires_at,
                        &event.content_type,
                        &event.headers_json,
                        &body,
                        &destinations,
                        &ordering_keys,
                        &search,
                        &replay_key,
                        &replay_expires_at,
                        &event.delivery_key,
                    ],
                )
                .await?;
            Ok::<_, DbError>((index, accept_outcome(&row)?))
        }
    });
    let outcomes = join_all(calls)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(outcomes)
}

pub(super) fn accept_outcome(row: &Row) -> Result<AcceptOutcome, DbError> {
    let outcome: &str = get(row, 0)?;
    let original: Option<Uuid> = get(row, 1)?;
    let conflict: Option<bool> = get(row, 2)?;
    let duplicate = |reason| {
        original
            .map(|event_id| {
                AcceptOutcome::Duplicate(Duplicate {
                    event_id,
                    reason,
                    conflict: conflict.unwrap_or(false),
                })
            })
            .ok_or_else(|| DbError::Invalid("a duplicate without its original".into()))
    };
    match outcome {
        "accepted" => Ok(AcceptOutcome::Accepted),
        "key" => duplicate(DuplicateReason::Key),
        "fingerprint" => duplicate(DuplicateReason::Fingerprint),
        "replay" => duplicate(DuplicateReason::Replay),
        other => Err(DbError::Invalid(format!(
            "unknown accept outcome {other:?}"
        ))),
    }
}

async fn purge_chunk(client: &mut ClientWrapper, now: UnixMillis) -> Result<(u64, u64), DbError> {
    // The outer `expires_at` test is re-checked on the newest row version, so a key that an
    // accept replaced (made live again) meanwhile is not deleted.
    let keys = client
        .prepare_cached(
            "DELETE FROM dedupe_keys WHERE expires_at <= $1 AND key IN
               (SELECT key FROM dedupe_keys WHERE expires_at <= $1 LIMIT $2)",
        )
        .await?;
    let fingerprints = client
        .prepare_cached(
            "DELETE FROM recent_fingerprints WHERE expires_at <= $1 AND key IN
               (SELECT key FROM recent_fingerprints WHERE expires_at <= $1 LIMIT $2)",
        )
        .await?;
    let keys = client.execute(&keys, &[&now, &PURGE_CHUNK]).await?;
    let fingerprints = client.execute(&fingerprints, &[&now, &PURGE_CHUNK]).await?;
    Ok((keys, fingerprints))
}
