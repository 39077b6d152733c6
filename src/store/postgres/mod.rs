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

mod accept;
mod deliveries;
mod migrate;
mod pool;
mod queries;
mod replay;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::NoTls;
use uuid::Uuid;

use self::accept::purge_chunk;
use self::deliveries::{claim_due, record_attempt};
use self::migrate::migrate;
use self::pool::{
    CONNECT_TIMEOUT, DbError, OPERATION_TIMEOUT, connection_config, get, run, unsigned,
};
use self::queries::{dead_deliveries, list_events, load_event};
use self::replay::{REPLAY_COLUMNS, replay_record, run_replay};
use self::writer::{AcceptJob, run_writer};
use super::{
    AcceptOutcome, AttemptRecord, ClaimedDelivery, Cursor, DeadDelivery, DeadLetterGroup,
    DeadQuery, DeliveryAttempt, DeliveryReplay, EventQuery, EventRecord, EventSummary, NewEvent,
    NewReplay, ReplayOutcome, ReplayProgress, ReplayRecord, Store, StoreError, UnixMillis,
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

/// Rows the purge deletes per transaction, so it never holds many locks for long.
pub(super) const PURGE_CHUNK: i64 = 5_000;

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
