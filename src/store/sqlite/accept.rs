//! `IntakeStore`: the atomic intake step (the dedupe key, the content windows, the event, its
//! search hashes and its deliveries, inside the writer's batch transaction), the purge of
//! expired windows, and retention's batches (`retention.rs`).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, retention, uuid_from_blob};
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::store::{
    AcceptOutcome, Duplicate, DuplicateReason, IntakeStore, NewEvent, StoreError, UnixMillis,
};

/// Rows the purge deletes per writer job. Keys are hashes, so every expired key sits on a
/// leaf page of its own and a job dirties about one page per row; the intake commit that shares
/// the job's transaction writes and fsyncs those pages too. A pass's keys in one 5,000-row job
/// held acks for over 100 ms; 250-row jobs still put 38 ms on the p99 of the second they ran
/// in. At 32 rows a job adds a few hundred KiB to one commit in several.
const PURGE_CHUNK: i64 = 32;
/// The least pause between two purge jobs, so most intake commits carry none: about 5,000
/// expired keys a second. A purge still running after `PURGE_CATCH_UP` is behind a load that
/// makes keys faster than that, and pauses only as long as each job took.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);
const PURGE_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl IntakeStore for SqliteStore {
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError> {
        self.write(move |conn| accept(conn, &event)).await
    }

    async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let mut total = 0u64;
        let purge_started = std::time::Instant::now();
        loop {
            let started = std::time::Instant::now();
            let deleted = self
                .write(move |conn| {
                    let keys = conn
                        .prepare_cached(
                            "DELETE FROM dedupe_keys WHERE key IN
                           (SELECT key FROM dedupe_keys WHERE expires_at <= ?1 LIMIT ?2)",
                        )?
                        .execute(params![now, PURGE_CHUNK])?;
                    let fingerprints = conn
                        .prepare_cached(
                            "DELETE FROM recent_fingerprints WHERE key IN
                           (SELECT key FROM recent_fingerprints WHERE expires_at <= ?1 LIMIT ?2)",
                        )?
                        .execute(params![now, PURGE_CHUNK])?;
                    Ok((keys, fingerprints))
                })
                .await?;
            total += (deleted.0 + deleted.1) as u64;
            if deleted.0 < PURGE_CHUNK as usize && deleted.1 < PURGE_CHUNK as usize {
                return Ok(total);
            }
            let least = if purge_started.elapsed() < PURGE_CATCH_UP {
                PURGE_PAUSE
            } else {
                std::time::Duration::from_millis(1)
            };
            tokio::time::sleep(started.elapsed().max(least)).await;
        }
    }

    async fn delete_finished_events(
        &self,
        source: &str,
        received_before: UnixMillis,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let source = source.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |conn| {
            retention::delete_finished_events(conn, &source, received_before, limit)
        })
        .await
    }

    async fn live_dedupe_keys(&self, now: UnixMillis) -> Result<u64, StoreError> {
        self.read(move |conn| retention::live_dedupe_keys(conn, now))
            .await
    }
}

/// The atomic intake step (see `Store::accept`), inside the writer's transaction.
fn accept(conn: &Connection, event: &NewEvent) -> rusqlite::Result<AcceptOutcome> {
    let now = event.received_at;
    let existing: Option<(Vec<u8>, Vec<u8>, i64)> = conn
        .prepare_cached("SELECT event_id, fingerprint, expires_at FROM dedupe_keys WHERE key = ?1")?
        .query_row([&event.dedupe_key.0[..]], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    if let Some((event_id, fingerprint, expires_at)) = &existing
        && *expires_at > now
    {
        let conflict = fingerprint.as_slice() != event.fingerprint.0.as_slice();
        // The repeat is counted on the row just read (the event's detail shows it).
        conn.prepare_cached(
            "UPDATE dedupe_keys SET duplicates = duplicates + 1, last_duplicate_at = ?2,
                 conflicts = conflicts + ?3
             WHERE key = ?1",
        )?
        .execute(params![&event.dedupe_key.0[..], now, i64::from(conflict)])?;
        return Ok(AcceptOutcome::Duplicate(Duplicate {
            event_id: uuid_from_blob(event_id)?,
            reason: DuplicateReason::Key,
            conflict,
        }));
    }
    // The content layers, in the contract's order: the exact body under the replay guard, then
    // the fingerprint within the near-duplicate window. Both live in `recent_fingerprints`
    // (their keys are hashed in separate domains).
    for (window, reason) in [
        (&event.replay_guard, DuplicateReason::Replay),
        (&event.near_duplicate, DuplicateReason::Fingerprint),
    ] {
        let Some(window) = window else { continue };
        let original: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT event_id FROM recent_fingerprints WHERE key = ?1 AND expires_at > ?2",
            )?
            .query_row(params![&window.key.0[..], now], |row| row.get(0))
            .optional()?;
        if let Some(original) = original {
            conn.prepare_cached(
                "UPDATE dedupe_keys SET duplicates = duplicates + 1, last_duplicate_at = ?2
                 WHERE event_id = ?1 AND expires_at > ?2",
            )?
            .execute(params![&original, now])?;
            return Ok(AcceptOutcome::Duplicate(Duplicate {
                event_id: uuid_from_blob(&original)?,
                reason,
                conflict: false,
            }));
        }
    }

    // Every delivery starts pending: the event is received, or complete when it has none.
    let status =
        EventStatus::from_deliveries([(DeliveryState::Pending, event.deliveries.len() as u64)]);
    conn.prepare_cached(
        "INSERT INTO events (id, source, idempotency_key, fingerprint, received_at, status,
                             content_type, delivery_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        &event.id.as_bytes()[..],
        &*event.source,
        event.idempotency_key,
        &event.fingerprint.0[..],
        now,
        status,
        event.content_type,
        &event.delivery_key.as_bytes()[..],
    ])?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO event_payloads (event_seq, headers, body) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![seq, event.headers_json, &event.body[..]])?;
    // An expired key is replaced: after its TTL the same key is a new event.
    conn.prepare_cached(
        "INSERT INTO dedupe_keys (key, event_id, fingerprint, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id,
             fingerprint = excluded.fingerprint, expires_at = excluded.expires_at,
             duplicates = 0, last_duplicate_at = NULL, conflicts = 0",
    )?
    .execute(params![
        &event.dedupe_key.0[..],
        &event.id.as_bytes()[..],
        &event.fingerprint.0[..],
        event.dedupe_expires_at,
    ])?;
    for window in [&event.replay_guard, &event.near_duplicate]
        .into_iter()
        .flatten()
    {
        conn.prepare_cached(
            "INSERT INTO recent_fingerprints (key, event_id, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id,
                 expires_at = excluded.expires_at",
        )?
        .execute(params![
            &window.key.0[..],
            &event.id.as_bytes()[..],
            window.expires_at
        ])?;
    }
    if !event.search.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO event_search (hash, event_seq) VALUES (?1, ?2)",
        )?;
        for hash in &event.search {
            insert.execute(params![&hash[..], seq])?;
        }
    }
    if !event.deliveries.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO deliveries (event_seq, destination, state, next_attempt_at, ordering_key,
                                     updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?3)",
        )?;
        for delivery in &event.deliveries {
            insert.execute(params![
                seq,
                &*delivery.destination,
                now,
                delivery.ordering_key
            ])?;
        }
    }
    Ok(AcceptOutcome::Accepted)
}
