//! The embedded store: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time and makes every commit durable with an fsync, so a
//! transaction per webhook caps intake at a couple of thousand per second. Instead, all writes
//! go through one writer thread that takes whatever requests are waiting (up to `batch_max`),
//! runs them all in a single transaction, commits once, and only then answers every request of
//! the batch (group commit). A request that fails does not disturb the others: the batch is
//! rolled back and run again with a savepoint per request (`run_batch`). A commit that fails
//! fails the whole batch, and none of it was acknowledged.
//!
//! Reads use separate connections, which WAL lets run beside the writer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    AcceptOutcome, AttemptOutcome, AttemptRecord, ClaimedDelivery, Cursor, DeadDelivery,
    DeadLetterGroup, DeadQuery, DeliveryAttempt, DeliveryRecord, DeliveryReplay, Duplicate,
    DuplicateReason, EventQuery, EventRecord, EventSummary, NewEvent, NewReplay, ReplayOutcome,
    ReplayProgress, ReplayRecord, ReplaySample, Store, StoreError, UnixMillis, migrations,
    now_millis,
};

pub struct SqliteOptions {
    pub path: PathBuf,
    /// Most requests committed by one transaction.
    pub batch_max: usize,
    /// Most requests waiting for the writer; beyond it writes fail fast as unavailable.
    pub queue_max: usize,
}

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Arc<ReadPool>,
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

/// Rows the purge deletes per transaction, so it never holds the writer for long.
const PURGE_CHUNK: i64 = 5_000;
const READ_CONNECTIONS: usize = 4;

impl SqliteStore {
    /// Opens (creating and migrating) the database and starts the writer thread. Blocking.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = options.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer_conn = open_connection(&options.path)?;
        set_cache(&writer_conn, WRITER_CACHE_KIB)?;
        migrate(&mut writer_conn)?;
        let mut readers = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            let reader = open_connection(&options.path)?;
            set_cache(&reader, READER_CACHE_KIB)?;
            readers.push(Mutex::new(reader));
        }
        // The writer leaves checkpoints to the checkpointer thread (see `Wal`).
        writer_conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(classify)?;
        let wal = Arc::new(Wal::default());
        // A checkpoint copies frames without the page cache.
        let checkpointer_conn = open_connection(&options.path)?;
        set_cache(&checkpointer_conn, 256)?;
        let (tx, rx) = mpsc::channel(options.queue_max.max(1));
        let batch_max = options.batch_max.max(1);
        let writer_wal = Arc::clone(&wal);
        thread::Builder::new()
            .name("oncehook-writer".into())
            .spawn(move || run_writer(writer_conn, rx, batch_max, &writer_wal))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        thread::Builder::new()
            .name("oncehook-ckpt".into())
            .spawn(move || run_checkpointer(checkpointer_conn, &wal))
            .map_err(|e| {
                StoreError::Internal(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(ReadPool::new(readers)),
        })
    }

    /// Queues `work` for the writer and waits for the batch holding it to commit.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            work,
            result: None,
            reply,
        });
        self.writer.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable("the store's write queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("the store's writer has stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(|conn| work(conn).map_err(classify)))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError> {
        self.write(move |conn| accept(conn, &event)).await
    }

    async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
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
        }
    }

    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError> {
        self.read(move |conn| load_event(conn, id)).await
    }

    async fn claim_due_deliveries(
        &self,
        destination: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let destination = destination.to_owned();
        let token: i64 = rand::random::<i64>() & i64::MAX;
        self.write(move |conn| claim_due(conn, &destination, now, lease_until, limit, token))
            .await
    }

    async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError> {
        let (id, token, number, replay_id) =
            (claim.id, claim.lease_token, claim.attempt, claim.replay_id);
        self.write(move |conn| record_attempt(conn, id, token, number, replay_id, &attempt))
            .await
    }

    async fn release_claim(&self, claim: &ClaimedDelivery) -> Result<(), StoreError> {
        let (id, token) = (claim.id, claim.lease_token);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries
                 SET state = CASE WHEN attempts <= 1 THEN 'pending' ELSE 'retrying' END,
                     attempts = MAX(attempts - 1, 0), next_attempt_at = ?3,
                     lease_expires_at = NULL, lease_token = NULL, updated_at = ?3
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'in_flight'",
            )?
            .execute(params![id, token, now_millis()])?;
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

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT number, started_at, duration_ms, status_code, error, outcome, replay_id
                 FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
            )?;
            let rows = statement.query_map([delivery_id], |row| {
                let replay: Option<Vec<u8>> = row.get(6)?;
                Ok(AttemptRecord {
                    number: row.get(0)?,
                    started_at: row.get(1)?,
                    duration_ms: row.get(2)?,
                    status_code: row.get(3)?,
                    error: row.get(4)?,
                    outcome: row.get(5)?,
                    replay_id: replay.as_deref().map(uuid_from_blob).transpose()?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        let query = query.clone();
        self.read(move |conn| list_events(conn, &query)).await
    }

    async fn event_replays(&self, event_id: Uuid) -> Result<Vec<DeliveryReplay>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT r.id, rd.delivery_id, d.destination, r.created_at, r.requested_by, r.reason
                 FROM events e
                 JOIN deliveries d ON d.event_seq = e.seq
                 JOIN replay_deliveries rd ON rd.delivery_id = d.id
                 JOIN replays r ON r.id = rd.replay_id
                 WHERE e.id = ?1
                 ORDER BY r.created_at DESC, r.id DESC, d.id",
            )?;
            let rows = statement.query_map([&event_id.as_bytes()[..]], |row| {
                Ok(DeliveryReplay {
                    replay_id: uuid_from_blob(&row.get::<_, Vec<u8>>(0)?)?,
                    delivery_id: row.get(1)?,
                    destination: row.get(2)?,
                    created_at: row.get(3)?,
                    requested_by: row.get(4)?,
                    reason: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn replay(&self, replay: &NewReplay) -> Result<ReplayOutcome, StoreError> {
        let replay = replay.clone();
        if replay.dry_run {
            self.read(move |conn| run_replay(conn, &replay)).await
        } else {
            self.write(move |conn| run_replay(conn, &replay)).await
        }
    }

    async fn replays(
        &self,
        after: Option<Cursor<Uuid>>,
        limit: usize,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        self.read(move |conn| {
            let mut filter = Filter::default();
            if let Some(after) = after {
                filter.push(
                    "(created_at, id) < (?, ?)",
                    [after.at.into(), after.id.as_bytes().to_vec().into()],
                );
            }
            let sql = format!(
                "SELECT {REPLAY_COLUMNS} FROM replays{} ORDER BY created_at DESC, id DESC LIMIT ?",
                filter.sql()
            );
            filter.params.push(sql_limit(limit));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows =
                statement.query_map(rusqlite::params_from_iter(&filter.params), replay_record)?;
            rows.collect()
        })
        .await
    }

    async fn replay_progress(
        &self,
        id: Uuid,
    ) -> Result<Option<(ReplayRecord, ReplayProgress)>, StoreError> {
        self.read(move |conn| {
            let id_blob = id.as_bytes().to_vec();
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {REPLAY_COLUMNS} FROM replays WHERE id = ?1"
                ))?
                .query_row([&id_blob], replay_record)
                .optional()?;
            let Some(record) = record else {
                return Ok(None);
            };
            let linked: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM replay_deliveries WHERE replay_id = ?1")?
                .query_row([&id_blob], |row| row.get(0))?;
            let mut statement = conn.prepare_cached(
                "SELECT d.state, COUNT(*) FROM replay_deliveries rd
                 JOIN deliveries d ON d.id = rd.delivery_id
                 WHERE rd.replay_id = ?1 AND d.replay_id = ?1
                 GROUP BY d.state",
            )?;
            let mut progress = ReplayProgress::default();
            let mut current = 0u64;
            let rows = statement.query_map([&id_blob], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?;
            for row in rows {
                let (state, count) = row?;
                current += count;
                match state.as_str() {
                    "pending" => progress.pending += count,
                    "in_flight" => progress.in_flight += count,
                    "retrying" => progress.retrying += count,
                    "delivered" => progress.delivered += count,
                    "dead" => progress.dead += count,
                    _ => {}
                }
            }
            progress.superseded = (linked.max(0) as u64).saturating_sub(current);
            Ok(Some((record, progress)))
        })
        .await
    }

    async fn dead_deliveries(&self, query: &DeadQuery) -> Result<Vec<DeadDelivery>, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            let mut filter = Filter::default();
            filter.push("d.state = 'dead'", []);
            if let Some(destination) = &query.destination {
                filter.push("d.destination = ?", [destination.clone().into()]);
            }
            if let Some(source) = &query.source {
                filter.push("e.source = ?", [source.clone().into()]);
            }
            if let Some(after) = query.after {
                filter.push(
                    "(d.updated_at, d.id) < (?, ?)",
                    [after.at.into(), after.id.into()],
                );
            }
            let sql = format!(
                "SELECT d.id, e.id, e.source, d.destination, e.idempotency_key, e.received_at,
                        d.updated_at, d.dead_reason, d.last_error, d.attempts
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq{}
                 ORDER BY d.updated_at DESC, d.id DESC LIMIT ?",
                filter.sql()
            );
            filter.params.push(sql_limit(query.limit));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(&filter.params), |row| {
                Ok(DeadDelivery {
                    delivery_id: row.get(0)?,
                    event_id: uuid_from_blob(&row.get::<_, Vec<u8>>(1)?)?,
                    source: row.get(2)?,
                    destination: row.get(3)?,
                    idempotency_key: row.get(4)?,
                    received_at: row.get(5)?,
                    died_at: row.get(6)?,
                    reason: row.get(7)?,
                    last_error: row.get(8)?,
                    attempts: row.get(9)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn dead_letter_groups(&self) -> Result<Vec<DeadLetterGroup>, StoreError> {
        self.read(|conn| {
            // With a single MAX() aggregate, SQLite takes the bare `last_error` from the row
            // that holds the maximum: the group's most recent death.
            let mut statement = conn.prepare_cached(
                "SELECT destination, dead_reason, COUNT(*), MAX(updated_at), last_error
                 FROM deliveries WHERE state = 'dead'
                 GROUP BY destination, dead_reason
                 ORDER BY COUNT(*) DESC, destination, dead_reason",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(DeadLetterGroup {
                    destination: row.get(0)?,
                    reason: row.get(1)?,
                    count: row.get::<_, i64>(2)?.max(0) as u64,
                    last_at: row.get(3)?,
                    last_error: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
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
        return Ok(AcceptOutcome::Duplicate(Duplicate {
            event_id: uuid_from_blob(event_id)?,
            reason: DuplicateReason::Key,
            conflict: fingerprint.as_slice() != event.fingerprint.0.as_slice(),
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
            return Ok(AcceptOutcome::Duplicate(Duplicate {
                event_id: uuid_from_blob(&original)?,
                reason,
                conflict: false,
            }));
        }
    }

    let status = if event.deliveries.is_empty() {
        "completed"
    } else {
        "received"
    };
    conn.prepare_cached(
        "INSERT INTO events (id, source, idempotency_key, fingerprint, received_at, status,
                             content_type, headers, body, delivery_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        &event.id.as_bytes()[..],
        &*event.source,
        event.idempotency_key,
        &event.fingerprint.0[..],
        now,
        status,
        event.content_type,
        event.headers_json,
        &event.body[..],
        &event.delivery_key.as_bytes()[..],
    ])?;
    let seq = conn.last_insert_rowid();
    // An expired key is replaced: after its TTL the same key is a new event.
    conn.prepare_cached(
        "INSERT INTO dedupe_keys (key, event_id, fingerprint, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id,
             fingerprint = excluded.fingerprint, expires_at = excluded.expires_at",
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

/// id, source, received_at, content_type, body, delivery_key of a claimed delivery's event.
type ClaimedEventRow = (
    Vec<u8>,
    String,
    i64,
    Option<String>,
    Vec<u8>,
    Option<Vec<u8>>,
);

fn claim_due(
    conn: &Connection,
    destination: &str,
    now: UnixMillis,
    lease_until: UnixMillis,
    limit: usize,
    token: i64,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Due retries and fresh deliveries in due order, then attempts whose worker vanished.
    // An ordered delivery waits while an earlier one with its key is still open.
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM (
                 SELECT d.id, d.next_attempt_at AS due FROM deliveries d
                 WHERE d.destination = ?1 AND d.state IN ('pending', 'retrying')
                   AND d.next_attempt_at <= ?2
                   AND (d.ordering_key IS NULL OR NOT EXISTS (
                         SELECT 1 FROM deliveries p
                         WHERE p.destination = d.destination AND p.ordering_key = d.ordering_key
                           AND p.id < d.id AND p.state IN ('pending', 'retrying', 'in_flight')))
                 ORDER BY d.next_attempt_at, d.id LIMIT ?3)
             UNION ALL
             SELECT id FROM (
                 SELECT d.id, d.lease_expires_at AS due FROM deliveries d
                 WHERE d.destination = ?1 AND d.state = 'in_flight' AND d.lease_expires_at <= ?2
                 ORDER BY d.lease_expires_at LIMIT ?3)
             LIMIT ?3",
        )?
        .query_map(params![destination, now, limit], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut claimed = Vec::with_capacity(ids.len());
    let mut take = conn.prepare_cached(
        "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1,
             lease_expires_at = ?2, lease_token = ?3, updated_at = ?4
         WHERE id = ?1
         RETURNING attempts, event_seq, replay_id",
    )?;
    let mut load = conn.prepare_cached(
        "SELECT id, source, received_at, content_type, body, delivery_key
         FROM events WHERE seq = ?1",
    )?;
    let mut mark_processing = conn.prepare_cached(
        "UPDATE events SET status = 'processing' WHERE seq = ?1 AND status = 'received'",
    )?;
    for id in ids {
        let (attempt, event_seq, replay): (u32, i64, Option<Vec<u8>>) = take
            .query_row(params![id, lease_until, token, now], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
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
        attempt.outcome.as_str(),
        replay,
    ])?;
    let now = attempt.started_at + attempt.duration_ms;
    let (state, next_attempt_at, dead_reason, delivered_at) = match &attempt.outcome {
        AttemptOutcome::Delivered => ("delivered", now, None, Some(now)),
        AttemptOutcome::Retry { next_attempt_at } => ("retrying", *next_attempt_at, None, None),
        AttemptOutcome::Dead { reason } => ("dead", now, Some(reason.as_str()), None),
    };
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries
             SET state = ?3, next_attempt_at = ?4, last_error = ?5, dead_reason = ?6,
                 delivered_at = ?7, lease_expires_at = NULL, lease_token = NULL, updated_at = ?8
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
        ])?;
    if changed == 0 {
        return Ok(false);
    }
    let event_seq: i64 = conn
        .prepare_cached("SELECT event_seq FROM deliveries WHERE id = ?1")?
        .query_row([delivery_id], |row| row.get(0))?;
    refresh_event_status(conn, event_seq)?;
    Ok(true)
}

/// Sets an event's status from the states of its deliveries.
fn refresh_event_status(conn: &Connection, event_seq: i64) -> rusqlite::Result<()> {
    let mut counts = conn.prepare_cached(
        "SELECT state, COUNT(*) FROM deliveries WHERE event_seq = ?1 GROUP BY state",
    )?;
    let states: Vec<(String, i64)> = counts
        .query_map([event_seq], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let status = super::event_status(states.iter().map(|(s, n)| (s.as_str(), *n)));
    conn.prepare_cached("UPDATE events SET status = ?2 WHERE seq = ?1")?
        .execute(params![event_seq, status])?;
    Ok(())
}

/// The WHERE clause of a query built from optional criteria, with its positional parameters.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    params: Vec<rusqlite::types::Value>,
}

impl Filter {
    fn push(
        &mut self,
        clause: impl Into<String>,
        params: impl IntoIterator<Item = rusqlite::types::Value>,
    ) {
        self.clauses.push(clause.into());
        self.params.extend(params);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn sql_limit(limit: usize) -> rusqlite::types::Value {
    i64::try_from(limit).unwrap_or(i64::MAX).into()
}

fn list_events(conn: &Connection, query: &EventQuery) -> rusqlite::Result<Vec<EventSummary>> {
    let mut filter = Filter::default();
    if let Some(source) = &query.source {
        filter.push("e.source = ?", [source.clone().into()]);
    }
    if let Some(status) = &query.status {
        filter.push("e.status = ?", [status.clone().into()]);
    }
    if let Some(key) = &query.idempotency_key {
        filter.push("e.idempotency_key = ?", [key.clone().into()]);
    }
    for hash in &query.search {
        filter.push(
            "e.seq IN (SELECT event_seq FROM event_search WHERE hash = ?)",
            [hash.to_vec().into()],
        );
    }
    if let Some(since) = query.since {
        filter.push("e.received_at >= ?", [since.into()]);
    }
    if let Some(until) = query.until {
        filter.push("e.received_at < ?", [until.into()]);
    }
    if let Some(after) = query.after {
        filter.push(
            "(e.received_at, e.id) < (?, ?)",
            [after.at.into(), after.id.as_bytes().to_vec().into()],
        );
    }
    let sql = format!(
        "SELECT e.id, e.source, e.idempotency_key, e.received_at, e.status, e.content_type,
                (SELECT COUNT(*) FROM deliveries d WHERE d.event_seq = e.seq)
         FROM events e{}
         ORDER BY e.received_at DESC, e.id DESC LIMIT ?",
        filter.sql()
    );
    filter.params.push(sql_limit(query.limit));
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(&filter.params), |row| {
        Ok(EventSummary {
            id: uuid_from_blob(&row.get::<_, Vec<u8>>(0)?)?,
            source: row.get(1)?,
            idempotency_key: row.get(2)?,
            received_at: row.get(3)?,
            status: row.get(4)?,
            content_type: row.get(5)?,
            deliveries: row.get(6)?,
        })
    })?;
    rows.collect()
}

const REPLAY_COLUMNS: &str =
    "id, created_at, requested_by, reason, filter, matched, skipped_in_flight";

fn replay_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReplayRecord> {
    Ok(ReplayRecord {
        id: uuid_from_blob(&row.get::<_, Vec<u8>>(0)?)?,
        created_at: row.get(1)?,
        requested_by: row.get(2)?,
        reason: row.get(3)?,
        filter_json: row.get(4)?,
        matched: row.get::<_, i64>(5)?.max(0) as u64,
        skipped_in_flight: row.get::<_, i64>(6)?.max(0) as u64,
    })
}

/// See `Store::replay`. A dry run only reads; a real one runs inside the writer's transaction,
/// so the selection and the re-queueing see the same deliveries.
fn run_replay(conn: &Connection, replay: &NewReplay) -> rusqlite::Result<ReplayOutcome> {
    let wanted = &replay.filter;
    let mut filter = Filter::default();
    if !wanted.event_ids.is_empty() {
        let mut clause = String::from("e.id IN (");
        for (i, _) in wanted.event_ids.iter().enumerate() {
            clause.push_str(if i == 0 { "?" } else { ", ?" });
        }
        clause.push(')');
        // The clause text depends on the number of ids only; the ids are parameters.
        filter.push(
            clause,
            wanted
                .event_ids
                .iter()
                .map(|id| rusqlite::types::Value::from(id.as_bytes().to_vec())),
        );
    }
    if let Some(source) = &wanted.source {
        filter.push("e.source = ?", [source.clone().into()]);
    }
    if let Some(destination) = &wanted.destination {
        filter.push("d.destination = ?", [destination.clone().into()]);
    }
    if let Some(state) = &wanted.delivery_state {
        filter.push("d.state = ?", [state.clone().into()]);
    }
    if let Some(status) = &wanted.event_status {
        filter.push("e.status = ?", [status.clone().into()]);
    }
    if let Some(since) = wanted.since {
        filter.push("e.received_at >= ?", [since.into()]);
    }
    if let Some(until) = wanted.until {
        filter.push("e.received_at < ?", [until.into()]);
    }
    let sql = format!(
        "SELECT d.id, d.state, d.destination, e.id, e.source, e.received_at, e.seq
         FROM deliveries d JOIN events e ON e.seq = d.event_seq{}
         ORDER BY e.received_at DESC, d.id DESC",
        filter.sql()
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(&filter.params), |row| {
        Ok((
            ReplaySample {
                delivery_id: row.get(0)?,
                state: row.get(1)?,
                destination: row.get(2)?,
                event_id: uuid_from_blob(&row.get::<_, Vec<u8>>(3)?)?,
                source: row.get(4)?,
                received_at: row.get(5)?,
            },
            row.get::<_, i64>(6)?,
        ))
    })?;
    let mut outcome = ReplayOutcome {
        matched: 0,
        skipped_in_flight: 0,
        sample: Vec::new(),
        destinations: Vec::new(),
    };
    let mut chosen = Vec::new();
    for row in rows {
        let (delivery, event_seq) = row?;
        if delivery.state == "in_flight" {
            outcome.skipped_in_flight += 1;
            continue;
        }
        outcome.matched += 1;
        if !outcome.destinations.contains(&delivery.destination) {
            outcome.destinations.push(delivery.destination.clone());
        }
        chosen.push((delivery.delivery_id, event_seq));
        if outcome.sample.len() < replay.sample_size {
            outcome.sample.push(delivery);
        }
    }
    if replay.dry_run {
        return Ok(outcome);
    }

    let replay_id = replay.id.as_bytes().to_vec();
    let mut requeue = conn.prepare_cached(
        "UPDATE deliveries
         SET state = 'pending', attempts = 0, next_attempt_at = ?2, replay_id = ?3,
             dead_reason = NULL, delivered_at = NULL, lease_expires_at = NULL,
             lease_token = NULL, updated_at = ?2
         WHERE id = ?1 AND state != 'in_flight'",
    )?;
    let mut link = conn.prepare_cached(
        "INSERT OR IGNORE INTO replay_deliveries (replay_id, delivery_id) VALUES (?1, ?2)",
    )?;
    let mut events = std::collections::BTreeSet::new();
    for (delivery_id, event_seq) in &chosen {
        requeue.execute(params![delivery_id, replay.now, &replay_id])?;
        link.execute(params![&replay_id, delivery_id])?;
        events.insert(*event_seq);
    }
    for event_seq in events {
        refresh_event_status(conn, event_seq)?;
    }
    conn.prepare_cached(
        "INSERT INTO replays (id, created_at, requested_by, reason, filter, matched,
                              skipped_in_flight)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        &replay_id,
        replay.now,
        replay.requested_by,
        replay.reason,
        replay.filter_json,
        i64::try_from(outcome.matched).unwrap_or(i64::MAX),
        i64::try_from(outcome.skipped_in_flight).unwrap_or(i64::MAX),
    ])?;
    Ok(outcome)
}

fn load_event(conn: &Connection, id: Uuid) -> rusqlite::Result<Option<EventRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT seq, source, idempotency_key, received_at, status, content_type, headers, body
             FROM events WHERE id = ?1",
        )?
        .query_row([&id.as_bytes()[..]], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                EventRecord {
                    id,
                    source: row.get(1)?,
                    idempotency_key: row.get(2)?,
                    received_at: row.get(3)?,
                    status: row.get(4)?,
                    content_type: row.get(5)?,
                    headers_json: row.get(6)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(7)?),
                    deliveries: Vec::new(),
                },
            ))
        })
        .optional()?;
    let Some((seq, mut event)) = row else {
        return Ok(None);
    };
    let mut statement = conn.prepare_cached(
        "SELECT id, destination, state, attempts, ordering_key, next_attempt_at, last_error,
                dead_reason, delivered_at
         FROM deliveries WHERE event_seq = ?1 ORDER BY id",
    )?;
    let deliveries = statement.query_map([seq], |row| {
        Ok(DeliveryRecord {
            id: row.get(0)?,
            destination: row.get(1)?,
            state: row.get(2)?,
            attempts: row.get(3)?,
            ordering_key: row.get(4)?,
            next_attempt_at: row.get(5)?,
            last_error: row.get(6)?,
            dead_reason: row.get(7)?,
            delivered_at: row.get(8)?,
        })
    })?;
    event.deliveries = deliveries.collect::<rusqlite::Result<_>>()?;
    Ok(Some(event))
}

fn uuid_from_blob(blob: &[u8]) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(blob).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Page cache per connection, in KiB. The writer's holds the hot pages of every index that
/// intake and delivery touch (the dedupe keys above all); readers serve the admin API and the
/// lanes' small lookups, and each of them fills its cache as the file grows, so they get less.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
const READER_CACHE_KIB: i64 = 8 * 1024;

fn set_cache(conn: &Connection, kib: i64) -> Result<(), StoreError> {
    conn.pragma_update(None, "cache_size", -kib)
        .map_err(classify)
}

fn open_connection(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    // WAL lets readers run beside the writer; synchronous=FULL fsyncs the WAL at every commit,
    // which is what makes a 202 durable. Group commit is what keeps that affordable.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(classify)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(migrations::CREATE_TABLE)
        .map_err(classify)?;
    let applied: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM oncehook_migrations", [], |row| {
            row.get(0)
        })
        .map_err(classify)?;
    let pending = migrations::pending(migrations::SQLITE, applied).map_err(StoreError::Internal)?;
    for migration in pending {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        tx.execute_batch(migration.sql).map_err(|e| {
            StoreError::Internal(format!(
                "migration {} ({}) failed: {e}",
                migration.version, migration.name
            ))
        })?;
        tx.execute(
            "INSERT INTO oncehook_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, now_millis()],
        )
        .map_err(classify)?;
        tx.commit().map_err(classify)?;
    }
    Ok(())
}

/// Errors a retry may cure (busy, locked, full, I/O) are `Unavailable`; the rest are bugs.
fn classify(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match &error {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

/// One request to the writer: work that runs inside the batch transaction, and its reply.
trait WriteJob: Send {
    /// Runs the work, replacing any earlier result; returns false when it failed. A job may
    /// run twice: once in a batch that was rolled back, then again in its own savepoint.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn complete(self: Box<Self>, committed: Result<(), &StoreError>);
}

struct Job<T, F> {
    work: F,
    result: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: Fn(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>, committed: Result<(), &StoreError>) {
        let outcome = match (committed, self.result) {
            (Err(e), _) => Err(match e {
                StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                StoreError::Internal(m) => StoreError::Internal(m.clone()),
            }),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), Some(Err(e))) => Err(classify(e)),
            (Ok(()), None) => Err(StoreError::Internal("the write was not run".into())),
        };
        // The caller may have gone away (client disconnected); the write stands regardless.
        let _ = self.reply.send(outcome);
    }
}

fn run_writer(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Box<dyn WriteJob>>,
    batch_max: usize,
    wal: &Wal,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(batch_max);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let committed = run_batch(&mut conn, &mut batch);
        crate::metrics::store_op("commit_batch", started.elapsed());
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = batch.len(), "store commit failed; the batch was not acknowledged");
        }
        for job in batch.drain(..) {
            job.complete(committed.as_ref().map(|_| ()));
        }
        wal.committed();
        // Only after the batch has been answered: nobody waits for this.
        wal.restart_if_long(&conn);
    }
    wal.stopped.store(true, Ordering::Relaxed);
}

/// Checkpoints: copying committed WAL frames back into the database file, then fsyncing it.
/// SQLite's automatic checkpoint runs inside the commit that passes 1,000 frames, so every
/// request of that batch waits for it (12–65 ms on a virtio disk). Here a checkpointer thread
/// does it beside the writer. It cannot make the WAL start over, though: only a writer that
/// finds every frame copied rewinds it, and by the time the checkpointer has finished the writer
/// has appended more. So once the WAL is longer than `WAL_RESTART_FRAMES`, the writer runs one
/// checkpoint itself between batches; the checkpointer has copied nearly everything by then,
/// so it is short, and the next commit starts the WAL from its beginning again.
#[derive(Default)]
struct Wal {
    commits: AtomicU64,
    /// Frames in the WAL at the checkpointer's last pass.
    frames: AtomicU64,
    stopped: AtomicBool,
}

const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
const WAL_RESTART_FRAMES: u64 = 4_096;

impl Wal {
    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    fn restart_if_long(&self, conn: &Connection) {
        if self.frames.load(Ordering::Relaxed) < WAL_RESTART_FRAMES {
            return;
        }
        match checkpoint(conn) {
            // Busy: the checkpointer is running; it reports the length again when done.
            Ok((busy, _)) if !busy => self.frames.store(0, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// A passive checkpoint (never waits for readers or the writer): (busy, frames in the WAL).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(bool, u64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)? != 0,
            row.get::<_, i64>(1)?.max(0) as u64,
        ))
    })
}

fn run_checkpointer(conn: Connection, wal: &Wal) {
    let mut seen = 0;
    while !wal.stopped.load(Ordering::Relaxed) {
        thread::sleep(CHECKPOINT_INTERVAL);
        let commits = wal.commits.load(Ordering::Relaxed);
        if commits == seen {
            continue;
        }
        seen = commits;
        match checkpoint(&conn) {
            Ok((_, frames)) => wal.frames.store(frames, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Commits the batch in one transaction. Jobs almost never fail inside the store, so the batch
/// first runs without savepoints (each costs a sub-journal copy of every page it touches: about
/// a sixth of the writer's time). If a job fails, that attempt is rolled back and the batch is
/// run again with a savepoint per job, so the failing job takes none of the others with it.
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    if batch.iter_mut().all(|job| job.run(&tx)) {
        return tx.commit().map_err(classify);
    }
    // Some errors (a full disk, I/O) have already ended the transaction; then there is nothing
    // to roll back, and the next attempt reports the error again.
    let _ = tx.rollback();
    run_batch_isolated(conn, batch)
}

fn run_batch_isolated(
    conn: &mut Connection,
    batch: &mut [Box<dyn WriteJob>],
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    for job in batch.iter_mut() {
        tx.prepare_cached("SAVEPOINT job")
            .and_then(|mut s| s.execute([]))
            .map_err(classify)?;
        if job.run(&tx) {
            tx.prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]))
                .map_err(classify)?;
        } else {
            tx.prepare_cached("ROLLBACK TO job")
                .and_then(|mut s| s.execute([]))
                .map_err(classify)?;
            tx.prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]))
                .map_err(classify)?;
        }
    }
    tx.commit().map_err(classify)
}

/// A few read connections, each used by one blocking task at a time.
struct ReadPool {
    connections: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

impl ReadPool {
    fn new(connections: Vec<Mutex<Connection>>) -> Self {
        Self {
            connections,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Take the first free connection, else wait on the one round-robin picked.
        for offset in 0..self.connections.len() {
            let slot = &self.connections[(start + offset) % self.connections.len()];
            if let Ok(conn) = slot.try_lock() {
                return work(&conn);
            }
        }
        let slot = &self.connections[start % self.connections.len()];
        let conn = slot
            .lock()
            .map_err(|_| StoreError::Internal("a read connection was poisoned".into()))?;
        work(&conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<T: Send + 'static>(
        work: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> (Box<dyn WriteJob>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            work,
            result: None,
            reply,
        });
        (job, answer)
    }

    fn insert(value: i64) -> impl Fn(&Connection) -> rusqlite::Result<usize> + Send + 'static {
        move |conn| conn.execute("INSERT INTO t (v) VALUES (?1)", [value])
    }

    #[test]
    fn a_failing_job_takes_none_of_its_batch_with_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = open_connection(&dir.path().join("batch.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .expect("create");
        // The second job writes, then fails: the fast path's transaction is rolled back and
        // every job runs again in its own savepoint, so job 2's partial write is undone too.
        let (first, first_answer) = job(insert(1));
        let (failing, failing_answer) = job(|conn| {
            conn.execute("INSERT INTO t (v) VALUES (2)", [])?;
            conn.execute("INSERT INTO t (v) VALUES (1)", [])
        });
        let (third, third_answer) = job(insert(3));
        let mut batch = vec![first, failing, third];
        run_batch(&mut conn, &mut batch).expect("the batch commits");
        for job in batch {
            job.complete(Ok(()));
        }
        assert!(first_answer.blocking_recv().expect("answer").is_ok());
        assert!(failing_answer.blocking_recv().expect("answer").is_err());
        assert!(third_answer.blocking_recv().expect("answer").is_ok());
        let stored: Vec<i64> = conn
            .prepare("SELECT v FROM t ORDER BY v")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(stored, vec![1, 3]);
    }

    #[test]
    fn a_batch_without_failures_commits_every_job_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = open_connection(&dir.path().join("batch.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .expect("create");
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for value in 0..100 {
            let (job, answer) = job(insert(value));
            batch.push(job);
            answers.push(answer);
        }
        run_batch(&mut conn, &mut batch).expect("the batch commits");
        for job in batch {
            job.complete(Ok(()));
        }
        for answer in answers {
            assert_eq!(answer.blocking_recv().expect("answer").expect("ok"), 1);
        }
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 100);
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

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
