//! The PostgreSQL store: any number of nodes share one database.
//!
//! Everything the SQLite store guarantees with its single writer, this store guarantees with
//! row locks, so that it holds across connections and across nodes:
//!
//! - **Accept** runs `oncehook_accept` (a PL/pgSQL function from the migrations), which takes
//!   the dedupe key with `INSERT … ON CONFLICT DO UPDATE … WHERE expired`: a live key is left
//!   alone, a key held by an uncommitted transaction makes the caller wait for that transaction's
//!   fate, and an expired key is replaced. The event and its deliveries are inserted by the same
//!   call, in the same transaction. The near-duplicate fingerprint is taken the same way.
//! - **Group commit**: a few writer tasks take whatever accepts are waiting (up to `batch_max`),
//!   send one `oncehook_accept` call per event down one connection without waiting for each
//!   answer (pipelining), and commit once. A node pays one commit per batch, not per webhook.
//! - **Claims** lock due deliveries with `FOR UPDATE SKIP LOCKED`, so workers on any node never
//!   take the same delivery; leases and lease tokens work as on SQLite.
//! - **Faults**: every operation has a deadline; a connection that missed one is thrown away
//!   rather than returned to the pool (with the pool's idle connections), and closed connections
//!   are dropped when next checked out, so the node recovers by itself when the database comes
//!   back. Connection-level failures and timeouts are `StoreError::Unavailable` (intake answers
//!   503, `/readyz` fails).
//!
//! Connections are plain TCP (no TLS in this build): run the database on a private network or
//! behind a local TLS-terminating proxy.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures_util::future::{BoxFuture, join_all};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::FromSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::{
    AcceptOutcome, AttemptOutcome, AttemptRecord, ClaimedDelivery, Cursor, DeadDelivery,
    DeadLetterGroup, DeadQuery, DeliveryAttempt, DeliveryRecord, DeliveryReplay, Duplicate,
    DuplicateReason, EventQuery, EventRecord, EventSummary, NewEvent, NewReplay, ReplayOutcome,
    ReplayProgress, ReplayRecord, ReplaySample, Store, StoreError, UnixMillis, migrations,
    now_millis,
};

pub struct PostgresOptions {
    /// `postgres://…` or `postgresql://…`, with any libpq-style parameters.
    pub url: String,
    /// Most connections this node opens.
    pub pool_size: usize,
    /// Most accepts committed by one transaction.
    pub batch_max: usize,
    /// Most accepts waiting for a writer; beyond it accepts fail fast as unavailable.
    pub queue_max: usize,
}

pub struct PostgresStore {
    pool: Pool,
    accepts: mpsc::Sender<AcceptJob>,
}

/// How long opening a connection may take before the operation fails as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The deadline of one store operation (waiting for a connection, retries and all), and the
/// server-side `statement_timeout`. Intake answers 503 when it passes, so it is kept short.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection whose sent data goes unacknowledged this long (a dead network path) is closed
/// by the kernel, so no query can hang on it for ever.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Tries of an operation that lost a deadlock or serialization race (nothing was committed).
const TRIES: u32 = 3;
/// Serializes migrations of nodes starting together ("oncehook" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f6e_6365_686f_6f6b;
/// Rows the purge deletes per transaction, so it never holds many locks for long.
const PURGE_CHUNK: i64 = 5_000;

struct AcceptJob {
    event: NewEvent,
    reply: oneshot::Sender<Result<AcceptOutcome, StoreError>>,
}

impl PostgresStore {
    /// Connects, migrates the schema and starts the accept writers.
    pub async fn open(options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let config = connection_config(&options.url)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // Checking `is_closed` is enough: a connection that died unnoticed fails its next
                // query, which marks it closed, and one that hangs misses its deadline and is
                // closed by `run`. A test query per checkout would cost a round trip each time.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool_size = options.pool_size.max(1);
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OPERATION_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
        migrate(&pool).await?;

        let (accepts, queue) = mpsc::channel(options.queue_max.max(1));
        let queue = Arc::new(Mutex::new(queue));
        // Several writers let one batch gather while another commits; a quarter of the pool
        // leaves the rest for claims and reads.
        for _ in 0..(pool_size / 4).clamp(1, 4) {
            tokio::spawn(run_writer(
                pool.clone(),
                Arc::clone(&queue),
                options.batch_max.max(1),
            ));
        }
        Ok(PostgresStore { pool, accepts })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.accepts
            .try_send(AcceptJob { event, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    StoreError::Unavailable("the store's write queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    StoreError::Unavailable("the store's writers have stopped".into())
                }
            })?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writers have stopped".into()))?
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

    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError> {
        run(&self.pool, "event", move |client| {
            Box::pin(load_event(client, id))
        })
        .await
    }

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
            Box::pin(claim_due(
                client,
                Arc::clone(&destination),
                now,
                lease_until,
                limit,
                token,
            ))
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
        run(&self.pool, "release_claim", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "UPDATE deliveries
                         SET state = CASE WHEN attempts <= 1 THEN 'pending' ELSE 'retrying' END,
                             attempts = GREATEST(attempts - 1, 0), next_attempt_at = $3,
                             lease_expires_at = NULL, lease_token = NULL, updated_at = $3
                         WHERE id = $1 AND lease_token = $2 AND state = 'in_flight'",
                    )
                    .await?;
                client
                    .execute(&statement, &[&id, &token, &now_millis()])
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

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        run(&self.pool, "delivery_attempts", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT number, started_at, duration_ms, status_code, error, outcome,
                                replay_id
                         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
                    )
                    .await?;
                let rows = client.query(&statement, &[&delivery_id]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(AttemptRecord {
                            number: unsigned(get(row, 0)?)?,
                            started_at: get(row, 1)?,
                            duration_ms: get(row, 2)?,
                            status_code: get::<Option<i32>>(row, 3)?
                                .map(|code| {
                                    u16::try_from(code).map_err(|_| {
                                        DbError::Invalid(format!("status code {code} out of range"))
                                    })
                                })
                                .transpose()?,
                            error: get(row, 4)?,
                            outcome: get(row, 5)?,
                            replay_id: get(row, 6)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        let query = Arc::new(query.clone());
        run(&self.pool, "list_events", move |client| {
            Box::pin(list_events(client, Arc::clone(&query)))
        })
        .await
    }

    async fn event_replays(&self, event_id: Uuid) -> Result<Vec<DeliveryReplay>, StoreError> {
        run(&self.pool, "event_replays", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT r.id, rd.delivery_id, d.destination, r.created_at, r.requested_by,
                                r.reason
                         FROM events e
                         JOIN deliveries d ON d.event_seq = e.seq
                         JOIN replay_deliveries rd ON rd.delivery_id = d.id
                         JOIN replays r ON r.id = rd.replay_id
                         WHERE e.id = $1
                         ORDER BY r.created_at DESC, r.id DESC, d.id",
                    )
                    .await?;
                let rows = client.query(&statement, &[&event_id]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeliveryReplay {
                            replay_id: get(row, 0)?,
                            delivery_id: get(row, 1)?,
                            destination: get(row, 2)?,
                            created_at: get(row, 3)?,
                            requested_by: get(row, 4)?,
                            reason: get(row, 5)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn replay(&self, replay: &NewReplay) -> Result<ReplayOutcome, StoreError> {
        let replay = Arc::new(replay.clone());
        run(&self.pool, "replay", move |client| {
            Box::pin(run_replay(client, Arc::clone(&replay)))
        })
        .await
    }

    async fn replays(
        &self,
        after: Option<Cursor<Uuid>>,
        limit: usize,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        run(&self.pool, "replays", move |client| {
            Box::pin(async move {
                let rows = match after {
                    Some(after) => {
                        let statement = client
                            .prepare_cached(&format!(
                                "SELECT {REPLAY_COLUMNS} FROM replays
                                 WHERE (created_at, id) < ($1, $2)
                                 ORDER BY created_at DESC, id DESC LIMIT $3"
                            ))
                            .await?;
                        client
                            .query(&statement, &[&after.at, &after.id, &limit])
                            .await?
                    }
                    None => {
                        let statement = client
                            .prepare_cached(&format!(
                                "SELECT {REPLAY_COLUMNS} FROM replays
                                 ORDER BY created_at DESC, id DESC LIMIT $1"
                            ))
                            .await?;
                        client.query(&statement, &[&limit]).await?
                    }
                };
                rows.iter().map(replay_record).collect()
            })
        })
        .await
    }

    async fn replay_progress(
        &self,
        id: Uuid,
    ) -> Result<Option<(ReplayRecord, ReplayProgress)>, StoreError> {
        run(&self.pool, "replay_progress", move |client| {
            Box::pin(async move {
                let record = client
                    .prepare_cached(&format!(
                        "SELECT {REPLAY_COLUMNS} FROM replays WHERE id = $1"
                    ))
                    .await?;
                let Some(row) = client.query_opt(&record, &[&id]).await? else {
                    return Ok(None);
                };
                let record = replay_record(&row)?;
                let linked = client
                    .prepare_cached("SELECT COUNT(*) FROM replay_deliveries WHERE replay_id = $1")
                    .await?;
                let linked: i64 = get(&client.query_one(&linked, &[&id]).await?, 0)?;
                let states = client
                    .prepare_cached(
                        "SELECT d.state, COUNT(*) FROM replay_deliveries rd
                         JOIN deliveries d ON d.id = rd.delivery_id
                         WHERE rd.replay_id = $1 AND d.replay_id = $1
                         GROUP BY d.state",
                    )
                    .await?;
                let mut progress = ReplayProgress::default();
                let mut current = 0u64;
                for row in client.query(&states, &[&id]).await? {
                    let state: String = get(&row, 0)?;
                    let count = get::<i64>(&row, 1)?.max(0) as u64;
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
        })
        .await
    }

    async fn dead_deliveries(&self, query: &DeadQuery) -> Result<Vec<DeadDelivery>, StoreError> {
        let query = Arc::new(query.clone());
        run(&self.pool, "dead_deliveries", move |client| {
            Box::pin(dead_deliveries(client, Arc::clone(&query)))
        })
        .await
    }

    async fn dead_letter_groups(&self) -> Result<Vec<DeadLetterGroup>, StoreError> {
        run(&self.pool, "dead_letter_groups", |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT destination, dead_reason, COUNT(*), MAX(updated_at),
                                (array_agg(last_error ORDER BY updated_at DESC, id DESC))[1]
                         FROM deliveries WHERE state = 'dead'
                         GROUP BY destination, dead_reason
                         ORDER BY COUNT(*) DESC, destination, dead_reason NULLS FIRST",
                    )
                    .await?;
                let rows = client.query(&statement, &[]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeadLetterGroup {
                            destination: get(row, 0)?,
                            reason: get(row, 1)?,
                            count: get::<i64>(row, 2)?.max(0) as u64,
                            last_at: get(row, 3)?,
                            last_error: get(row, 4)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        run(&self.pool, "ping", |client| {
            Box::pin(async move {
                client.simple_query("SELECT 1").await?;
                Ok(())
            })
        })
        .await
    }
}

/// Why a database step failed: the database said so, or what it returned made no sense.
#[derive(Debug)]
enum DbError {
    Pg(tokio_postgres::Error),
    Invalid(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::Pg(error)
    }
}

impl DbError {
    /// A deadlock or serialization failure: the transaction was rolled back and may simply be
    /// run again.
    fn is_retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, DbError::Pg(e) if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
            || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE))
    }

    fn into_store_error(self, op: &str) -> StoreError {
        match self {
            DbError::Pg(e) => classify(&e, op),
            DbError::Invalid(message) => StoreError::Internal(format!("{op}: {message}")),
        }
    }
}

/// Connection trouble, timeouts, lost races, a server shutting down or out of resources are
/// `Unavailable` (try again later); anything else the server rejected is a bug (`Internal`).
fn classify(error: &tokio_postgres::Error, op: &str) -> StoreError {
    // The error's own text is terse ("db error", "error connecting to server"); the server's
    // message or the I/O error is in its sources.
    let mut message = format!("{op}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    match error.code() {
        // 08 connection, 40 rollback (deadlock, serialization), 53 resources, 57 operator
        // intervention (statement timeout, shutdown), 58 system error.
        Some(code) if matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58") => {
            StoreError::Unavailable(message)
        }
        Some(_) => StoreError::Internal(message),
        // No SQLSTATE: the server never answered (I/O, closed connection, connect timeout).
        // Conversions of what it returned are mapped to `DbError::Invalid` by `get`.
        None => StoreError::Unavailable(message),
    }
}

fn pool_error(error: PoolError, op: &str) -> StoreError {
    match error {
        PoolError::Backend(e) => classify(&e, op),
        PoolError::Timeout(_) => {
            StoreError::Unavailable(format!("{op}: no database connection within the timeout"))
        }
        other => StoreError::Unavailable(format!("{op}: {other}")),
    }
}

/// Text as PostgreSQL can store it: `text` cannot hold U+0000, which a JSON key value or a
/// destination's error body may contain, so it becomes U+FFFD (as invalid UTF-8 does
/// elsewhere). Dedupe is unaffected: it compares the hashed key, computed from the original.
fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A column as `T`, with a conversion failure as an error rather than a panic.
fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, DbError> {
    row.try_get(index)
        .map_err(|e| DbError::Invalid(format!("column {index}: {e}")))
}

fn unsigned(value: i32) -> Result<u32, DbError> {
    u32::try_from(value).map_err(|_| DbError::Invalid(format!("negative count {value}")))
}

/// Runs `work` on a pooled connection within `OPERATION_TIMEOUT`, retrying lost deadlock races.
/// `work` may run more than once, so it takes what it needs by value for each run.
async fn run<T, F>(pool: &Pool, op: &'static str, work: F) -> Result<T, StoreError>
where
    F: for<'c> Fn(&'c mut ClientWrapper) -> BoxFuture<'c, Result<T, DbError>> + Send + Sync,
{
    let started = Instant::now();
    let deadline = started + OPERATION_TIMEOUT;
    let timed_out = || {
        StoreError::Unavailable(format!(
            "{op}: the database did not answer within {OPERATION_TIMEOUT:?}"
        ))
    };
    let mut client: Object = match tokio::time::timeout_at(deadline, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(pool_error(e, op)),
        Err(_) => return Err(timed_out()),
    };
    let mut tries = 0;
    let result = loop {
        tries += 1;
        match tokio::time::timeout_at(deadline, work(&mut client)).await {
            Ok(Err(e)) if e.is_retryable() && tries < TRIES => continue,
            Ok(result) => break result,
            Err(_) => {
                // The connection may be stuck on a dead network path, or mid-transaction: it is
                // closed here instead of going back to the pool. The idle ones most likely share
                // its path, and would each cost the next operations a full deadline to find out:
                // they are closed too, and fresh connections made as needed.
                drop(Object::take(client));
                drop(pool.retain(|_, _| false));
                return Err(timed_out());
            }
        }
    };
    crate::metrics::store_op(op, started.elapsed());
    result.map_err(|e| e.into_store_error(op))
}

/// Parses `store.url` and adds what a gateway needs: timeouts on connect, on statements and on
/// dead TCP paths, and an application name operators can see in `pg_stat_activity`.
fn connection_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    // The URL may hold a password: errors describe the problem, never echo the URL.
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Internal(format!("store.url: not a PostgreSQL URL: {e}")))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(StoreError::Internal(
            "store.url: sslmode=require, but this build connects without TLS".into(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("oncehook");
    }
    let statement_timeout = format!("-c statement_timeout={}", OPERATION_TIMEOUT.as_millis());
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {statement_timeout}"),
        _ => statement_timeout,
    };
    config.options(options);
    Ok(config)
}

/// Applies pending migrations one transaction each, under a database-wide advisory lock so that
/// nodes starting together take turns (the later ones find the work done).
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    while run(pool, "migrate", |client| Box::pin(migrate_step(client))).await? {}
    Ok(())
}

/// Applies the next pending migration; false when there was none.
async fn migrate_step(client: &mut ClientWrapper) -> Result<bool, DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(migrations::CREATE_TABLE).await?;
    let row = tx
        .query_one("SELECT MAX(version)::bigint FROM oncehook_migrations", &[])
        .await?;
    let applied: Option<i64> = get(&row, 0)?;
    let pending = migrations::pending(migrations::POSTGRES, applied).map_err(DbError::Invalid)?;
    let Some(migration) = pending.first() else {
        tx.commit().await?;
        return Ok(false);
    };
    tx.batch_execute(migration.sql).await.map_err(|e| {
        if let Some(db) = e.as_db_error() {
            DbError::Invalid(format!(
                "migration {} ({}) failed: {db}",
                migration.version, migration.name
            ))
        } else {
            DbError::Pg(e)
        }
    })?;
    tx.execute(
        "INSERT INTO oncehook_migrations (version, name, applied_at)
         VALUES ($1::bigint, $2, $3::bigint)",
        &[&migration.version, &migration.name, &now_millis()],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// One accept writer: takes every waiting accept (up to `batch_max`) and commits them together.
/// While one writer commits, another gathers the next batch.
async fn run_writer(pool: Pool, queue: Arc<Mutex<mpsc::Receiver<AcceptJob>>>, batch_max: usize) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < batch_max {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        commit_batch(&pool, batch).await;
    }
}

async fn commit_batch(pool: &Pool, batch: Vec<AcceptJob>) {
    let (events, replies): (Vec<NewEvent>, Vec<_>) =
        batch.into_iter().map(|job| (job.event, job.reply)).unzip();
    let events: Arc<[NewEvent]> = events.into();
    // Key order: batches on different nodes that share keys then lock them in the same order
    // and cannot deadlock on them. The sort is stable, so among requests with one key the first
    // to arrive is the one accepted.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].dedupe_key.0);
    let order: Arc<[usize]> = order.into();

    let batch_events = Arc::clone(&events);
    let result = run(pool, "commit_batch", move |client| {
        Box::pin(accept_batch(
            client,
            Arc::clone(&batch_events),
            Arc::clone(&order),
        ))
    })
    .await;
    match result {
        Ok(outcomes) => {
            let mut replies: Vec<_> = replies.into_iter().map(Some).collect();
            for (index, outcome) in outcomes {
                if let Some(reply) = replies.get_mut(index).and_then(Option::take) {
                    // The caller may have gone away; the event is committed regardless.
                    let _ = reply.send(Ok(outcome));
                }
            }
        }
        Err(StoreError::Internal(message)) if events.len() > 1 => {
            // Something in one request made the server reject the whole transaction. Nothing
            // was committed: run each request alone, so one bad request cannot fail its
            // neighbours.
            tracing::warn!(error = %message, jobs = events.len(), "batch rejected; committing its accepts one by one");
            for (index, reply) in replies.into_iter().enumerate() {
                let single: Arc<[usize]> = Arc::from([index]);
                let events = Arc::clone(&events);
                let result = run(pool, "accept", move |client| {
                    Box::pin(accept_batch(
                        client,
                        Arc::clone(&events),
                        Arc::clone(&single),
                    ))
                })
                .await
                .map(|mut outcomes| outcomes.pop().map(|(_, outcome)| outcome));
                let _ = reply.send(match result {
                    Ok(Some(outcome)) => Ok(outcome),
                    Ok(None) => Err(StoreError::Internal("accept returned nothing".into())),
                    Err(e) => Err(e),
                });
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, jobs = events.len(), "store commit failed; the batch was not acknowledged");
            for reply in replies {
                let _ = reply.send(Err(match &error {
                    StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                    StoreError::Internal(m) => StoreError::Internal(m.clone()),
                }));
            }
        }
    }
}

/// Accepts `events[order[..]]` in one transaction, the calls pipelined on one connection.
/// Returns (index into `events`, outcome) pairs.
async fn accept_batch(
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

fn accept_outcome(row: &Row) -> Result<AcceptOutcome, DbError> {
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

async fn load_event(client: &mut ClientWrapper, id: Uuid) -> Result<Option<EventRecord>, DbError> {
    let event = client
        .prepare_cached(
            "SELECT seq, source, idempotency_key, received_at, status, content_type, headers, body
             FROM events WHERE id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&event, &[&id]).await? else {
        return Ok(None);
    };
    let seq: i64 = get(&row, 0)?;
    let mut event = EventRecord {
        id,
        source: get(&row, 1)?,
        idempotency_key: get(&row, 2)?,
        received_at: get(&row, 3)?,
        status: get(&row, 4)?,
        content_type: get(&row, 5)?,
        headers_json: get(&row, 6)?,
        body: Bytes::from(get::<Vec<u8>>(&row, 7)?),
        deliveries: Vec::new(),
    };
    let deliveries = client
        .prepare_cached(
            "SELECT id, destination, state, attempts, ordering_key, next_attempt_at, last_error,
                    dead_reason, delivered_at
             FROM deliveries WHERE event_seq = $1 ORDER BY id",
        )
        .await?;
    for row in client.query(&deliveries, &[&seq]).await? {
        event.deliveries.push(DeliveryRecord {
            id: get(&row, 0)?,
            destination: get(&row, 1)?,
            state: get(&row, 2)?,
            attempts: unsigned(get(&row, 3)?)?,
            ordering_key: get(&row, 4)?,
            next_attempt_at: get(&row, 5)?,
            last_error: get(&row, 6)?,
            dead_reason: get(&row, 7)?,
            delivered_at: get(&row, 8)?,
        });
    }
    Ok(Some(event))
}

/// See `Store::claim_due_deliveries`. Rows are locked with `SKIP LOCKED`, so concurrent claims
/// on any node pass over each other's picks instead of waiting or taking them twice.
async fn claim_due(
    client: &mut ClientWrapper,
    destination: Arc<str>,
    now: UnixMillis,
    lease_until: UnixMillis,
    limit: i64,
    token: i64,
) -> Result<Vec<ClaimedDelivery>, DbError> {
    let tx = client.transaction().await?;
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
             SET state = 'in_flight', attempts = d.attempts + 1, lease_expires_at = $4,
                 lease_token = $5, updated_at = $2
             FROM chosen c, events e
             WHERE d.id = c.id AND e.seq = d.event_seq
             RETURNING d.id, d.attempts, d.replay_id, d.event_seq, e.id, e.source,
                       e.received_at, e.content_type, e.body, c.pass, c.due,
                       COALESCE(e.delivery_key, e.id)",
        )
        .await?;
    let rows = tx
        .query(
            &claim,
            &[&&*destination, &now, &limit, &lease_until, &token],
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
    tx.commit().await?;
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
            &attempt.outcome.as_str(),
            &claim.replay_id,
        ],
    )
    .await?;
    let now = attempt.started_at + attempt.duration_ms;
    let (state, next_attempt_at, dead_reason, delivered_at) = match &attempt.outcome {
        AttemptOutcome::Delivered => ("delivered", now, None, Some(now)),
        AttemptOutcome::Retry { next_attempt_at } => ("retrying", *next_attempt_at, None, None),
        AttemptOutcome::Dead { reason } => ("dead", now, Some(reason.as_str()), None),
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
        .map(|row| Ok((get::<String>(row, 0)?, get::<i64>(row, 1)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let status = super::event_status(states.iter().map(|(s, n)| (s.as_str(), *n)));
    let update = tx
        .prepare_cached("UPDATE events SET status = $2 WHERE seq = $1")
        .await?;
    tx.execute(&update, &[&event_seq, &status]).await?;
    tx.commit().await?;
    Ok(true)
}

/// A parameter of a query built at run time.
type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// The WHERE clause of a query built from optional criteria. Clauses are written with `?`;
/// `sql` numbers them `$1`, `$2`, … in order, matching `params`.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    fn push(&mut self, clause: impl Into<String>, params: Vec<Param>) {
        self.clauses.push(clause.into());
        self.params.extend(params);
    }

    /// `head`, the WHERE clause, then `tail`, with every `?` numbered.
    fn sql(&self, head: &str, tail: &str) -> String {
        let mut text = String::from(head);
        if !self.clauses.is_empty() {
            text.push_str(" WHERE ");
            text.push_str(&self.clauses.join(" AND "));
        }
        text.push(' ');
        text.push_str(tail);
        let mut numbered = String::with_capacity(text.len() + 16);
        let mut next = 0;
        for c in text.chars() {
            if c == '?' {
                next += 1;
                numbered.push_str(&format!("${next}"));
            } else {
                numbered.push(c);
            }
        }
        numbered
    }

    fn refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect()
    }
}

fn sql_limit(limit: usize) -> Param {
    Box::new(i64::try_from(limit).unwrap_or(i64::MAX))
}

async fn list_events(
    client: &mut ClientWrapper,
    query: Arc<EventQuery>,
) -> Result<Vec<EventSummary>, DbError> {
    let mut filter = Filter::default();
    if let Some(source) = &query.source {
        filter.push("e.source = ?", vec![Box::new(text(source).into_owned())]);
    }
    if let Some(status) = &query.status {
        filter.push("e.status = ?", vec![Box::new(text(status).into_owned())]);
    }
    if let Some(key) = &query.idempotency_key {
        filter.push(
            "e.idempotency_key = ?",
            vec![Box::new(text(key).into_owned())],
        );
    }
    for hash in &query.search {
        filter.push(
            "e.seq IN (SELECT event_seq FROM event_search WHERE hash = ?)",
            vec![Box::new(hash.to_vec())],
        );
    }
    if let Some(since) = query.since {
        filter.push("e.received_at >= ?", vec![Box::new(since)]);
    }
    if let Some(until) = query.until {
        filter.push("e.received_at < ?", vec![Box::new(until)]);
    }
    if let Some(after) = query.after {
        filter.push(
            "(e.received_at, e.id) < (?, ?)",
            vec![Box::new(after.at), Box::new(after.id)],
        );
    }
    filter.params.push(sql_limit(query.limit));
    let sql = filter.sql(
        "SELECT e.id, e.source, e.idempotency_key, e.received_at, e.status, e.content_type,
                (SELECT COUNT(*) FROM deliveries d WHERE d.event_seq = e.seq)
         FROM events e",
        "ORDER BY e.received_at DESC, e.id DESC LIMIT ?",
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &filter.refs()).await?;
    rows.iter()
        .map(|row| {
            Ok(EventSummary {
                id: get(row, 0)?,
                source: get(row, 1)?,
                idempotency_key: get(row, 2)?,
                received_at: get(row, 3)?,
                status: get(row, 4)?,
                content_type: get(row, 5)?,
                deliveries: u32::try_from(get::<i64>(row, 6)?.max(0)).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

async fn dead_deliveries(
    client: &mut ClientWrapper,
    query: Arc<DeadQuery>,
) -> Result<Vec<DeadDelivery>, DbError> {
    let mut filter = Filter::default();
    filter.push("d.state = 'dead'", Vec::new());
    if let Some(destination) = &query.destination {
        filter.push(
            "d.destination = ?",
            vec![Box::new(text(destination).into_owned())],
        );
    }
    if let Some(source) = &query.source {
        filter.push("e.source = ?", vec![Box::new(text(source).into_owned())]);
    }
    if let Some(after) = query.after {
        filter.push(
            "(d.updated_at, d.id) < (?, ?)",
            vec![Box::new(after.at), Box::new(after.id)],
        );
    }
    filter.params.push(sql_limit(query.limit));
    let sql = filter.sql(
        "SELECT d.id, e.id, e.source, d.destination, e.idempotency_key, e.received_at,
                d.updated_at, d.dead_reason, d.last_error, d.attempts
         FROM deliveries d JOIN events e ON e.seq = d.event_seq",
        "ORDER BY d.updated_at DESC, d.id DESC LIMIT ?",
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &filter.refs()).await?;
    rows.iter()
        .map(|row| {
            Ok(DeadDelivery {
                delivery_id: get(row, 0)?,
                event_id: get(row, 1)?,
                source: get(row, 2)?,
                destination: get(row, 3)?,
                idempotency_key: get(row, 4)?,
                received_at: get(row, 5)?,
                died_at: get(row, 6)?,
                reason: get(row, 7)?,
                last_error: get(row, 8)?,
                attempts: unsigned(get(row, 9)?)?,
            })
        })
        .collect()
}

const REPLAY_COLUMNS: &str =
    "id, created_at, requested_by, reason, filter, matched, skipped_in_flight";

fn replay_record(row: &Row) -> Result<ReplayRecord, DbError> {
    Ok(ReplayRecord {
        id: get(row, 0)?,
        created_at: get(row, 1)?,
        requested_by: get(row, 2)?,
        reason: get(row, 3)?,
        filter_json: get(row, 4)?,
        matched: get::<i64>(row, 5)?.max(0) as u64,
        skipped_in_flight: get::<i64>(row, 6)?.max(0) as u64,
    })
}

/// See `Store::replay`. A real replay locks the matched deliveries (claims on any node skip
/// locked rows), re-queues those not in flight, then locks their events in `seq` order (as
/// claims and outcomes do) to settle their statuses, all in one transaction.
async fn run_replay(
    client: &mut ClientWrapper,
    replay: Arc<NewReplay>,
) -> Result<ReplayOutcome, DbError> {
    let wanted = &replay.filter;
    let mut filter = Filter::default();
    if !wanted.event_ids.is_empty() {
        filter.push("e.id = ANY(?)", vec![Box::new(wanted.event_ids.clone())]);
    }
    if let Some(source) = &wanted.source {
        filter.push("e.source = ?", vec![Box::new(text(source).into_owned())]);
    }
    if let Some(destination) = &wanted.destination {
        filter.push(
            "d.destination = ?",
            vec![Box::new(text(destination).into_owned())],
        );
    }
    if let Some(state) = &wanted.delivery_state {
        filter.push("d.state = ?", vec![Box::new(text(state).into_owned())]);
    }
    if let Some(status) = &wanted.event_status {
        filter.push("e.status = ?", vec![Box::new(text(status).into_owned())]);
    }
    if let Some(since) = wanted.since {
        filter.push("e.received_at >= ?", vec![Box::new(since)]);
    }
    if let Some(until) = wanted.until {
        filter.push("e.received_at < ?", vec![Box::new(until)]);
    }
    let lock = if replay.dry_run {
        ""
    } else {
        " FOR UPDATE OF d"
    };
    let sql = filter.sql(
        "SELECT d.id, d.state, d.destination, e.id, e.source, e.received_at, e.seq
         FROM deliveries d JOIN events e ON e.seq = d.event_seq",
        &format!("ORDER BY e.received_at DESC, d.id DESC{lock}"),
    );
    let tx = client.transaction().await?;
    let rows = tx.query(&sql, &filter.refs()).await?;
    let mut outcome = ReplayOutcome {
        matched: 0,
        skipped_in_flight: 0,
        sample: Vec::new(),
        destinations: Vec::new(),
    };
    let mut chosen: Vec<i64> = Vec::new();
    let mut events: Vec<i64> = Vec::new();
    for row in &rows {
        let delivery = ReplaySample {
            delivery_id: get(row, 0)?,
            state: get(row, 1)?,
            destination: get(row, 2)?,
            event_id: get(row, 3)?,
            source: get(row, 4)?,
            received_at: get(row, 5)?,
        };
        if delivery.state == "in_flight" {
            outcome.skipped_in_flight += 1;
            continue;
        }
        outcome.matched += 1;
        if !outcome.destinations.contains(&delivery.destination) {
            outcome.destinations.push(delivery.destination.clone());
        }
        chosen.push(delivery.delivery_id);
        events.push(get(row, 6)?);
        if outcome.sample.len() < replay.sample_size {
            outcome.sample.push(delivery);
        }
    }
    if replay.dry_run {
        tx.commit().await?;
        return Ok(outcome);
    }
    events.sort_unstable();
    events.dedup();

    let requeue = tx
        .prepare_cached(
            "UPDATE deliveries
             SET state = 'pending', attempts = 0, next_attempt_at = $2, replay_id = $3,
                 dead_reason = NULL, delivered_at = NULL, lease_expires_at = NULL,
                 lease_token = NULL, updated_at = $2
             WHERE id = ANY($1) AND state <> 'in_flight'",
        )
        .await?;
    tx.execute(&requeue, &[&chosen, &replay.now, &replay.id])
        .await?;
    let link = tx
        .prepare_cached(
            "INSERT INTO replay_deliveries (replay_id, delivery_id)
             SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&link, &[&replay.id, &chosen]).await?;

    let lock_events = tx
        .prepare_cached("SELECT seq FROM events WHERE seq = ANY($1) ORDER BY seq FOR UPDATE")
        .await?;
    tx.execute(&lock_events, &[&events]).await?;
    let counts = tx
        .prepare_cached(
            "SELECT event_seq, state, COUNT(*) FROM deliveries
             WHERE event_seq = ANY($1) GROUP BY event_seq, state ORDER BY event_seq",
        )
        .await?;
    let mut states: std::collections::BTreeMap<i64, Vec<(String, i64)>> = Default::default();
    for row in tx.query(&counts, &[&events]).await? {
        states
            .entry(get(&row, 0)?)
            .or_default()
            .push((get(&row, 1)?, get(&row, 2)?));
    }
    let (seqs, statuses): (Vec<i64>, Vec<&str>) = states
        .iter()
        .map(|(seq, states)| {
            let status = super::event_status(states.iter().map(|(s, n)| (s.as_str(), *n)));
            (*seq, status)
        })
        .unzip();
    let settle = tx
        .prepare_cached(
            "UPDATE events e SET status = v.status
             FROM unnest($1::bigint[], $2::text[]) AS v (seq, status)
             WHERE e.seq = v.seq",
        )
        .await?;
    tx.execute(&settle, &[&seqs, &statuses]).await?;

    let record = tx
        .prepare_cached(
            "INSERT INTO replays (id, created_at, requested_by, reason, filter, matched,
                                  skipped_in_flight)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &record,
        &[
            &replay.id,
            &replay.now,
            &text(&replay.requested_by),
            &text(&replay.reason),
            &text(&replay.filter_json),
            &i64::try_from(outcome.matched).unwrap_or(i64::MAX),
            &i64::try_from(outcome.skipped_in_flight).unwrap_or(i64::MAX),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_config_adds_timeouts_and_keeps_the_url_s_options() {
        let config =
            connection_config("postgres://u@db:5433/x?options=-c%20search_path%3Dt_1").expect("ok");
        assert_eq!(
            config.get_options(),
            Some("-c search_path=t_1 -c statement_timeout=5000")
        );
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_application_name(), Some("oncehook"));

        let config = connection_config("postgresql://u@db/x?connect_timeout=1&application_name=a")
            .expect("ok");
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)));
        assert_eq!(config.get_application_name(), Some("a"));
        assert_eq!(config.get_options(), Some("-c statement_timeout=5000"));
    }

    #[tokio::test]
    async fn errors_carry_the_cause() {
        // Nothing listens on port 1: the connection is refused at once.
        let error = tokio_postgres::connect("postgres://u@127.0.0.1:1/x", NoTls)
            .await
            .err()
            .expect("refused");
        let StoreError::Unavailable(message) = classify(&error, "ping") else {
            panic!("a refused connection is unavailable");
        };
        assert!(message.starts_with("ping: "), "{message}");
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }

    #[test]
    fn connection_config_errors_name_the_problem_not_the_password() {
        let Err(error) = connection_config("postgres://u:hunter2@db/x?sslmode=require") else {
            panic!("sslmode=require must be refused");
        };
        assert!(error.to_string().contains("TLS"), "{error}");
        let Err(error) = connection_config("postgres://u:hunter2@db/x?bogus=1") else {
            panic!("an unknown parameter must be refused");
        };
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
