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

mod accept;
mod connection;
mod deliveries;
mod migrate;
mod queries;
mod replay;
mod wal;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::accept::accept;
use self::connection::{
    READER_CACHE_KIB, ReadPool, WRITER_CACHE_KIB, classify, open_connection, set_cache,
};
use self::deliveries::{QUEUE_DEPTHS, claim_due, record_attempt};
use self::migrate::migrate;
use self::queries::{Filter, list_events, load_event, sql_limit};
use self::replay::{REPLAY_COLUMNS, replay_record, run_replay};
use self::wal::{Wal, run_checkpointer};
use self::writer::{Job, WriteJob, run_writer};
use super::{
    AcceptOutcome, AttemptRecord, ClaimedDelivery, Cursor, DeadDelivery, DeadLetterGroup,
    DeadQuery, DeliveryAttempt, DeliveryReplay, EventQuery, EventRecord, EventSummary, NewEvent,
    NewReplay, ReplayOutcome, ReplayProgress, ReplayRecord, Store, StoreError, UnixMillis,
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

fn uuid_from_blob(blob: &[u8]) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(blob).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}
