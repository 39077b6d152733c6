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
//!   back. Connection-level failures and timeouts are `StoreErrorKind::Unavailable` (intake answers
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
mod retention;
mod words;
mod writer;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Mutex, mpsc};
use tokio_postgres::NoTls;

use self::migrate::migrate;
use self::pool::{CONNECT_TIMEOUT, OPERATION_TIMEOUT, connection_config};
use self::writer::{AcceptJob, run_writer};
use super::StoreError;

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
            .map_err(|e| {
                StoreError::internal(format!("cannot build the connection pool: {e}")).caused_by(e)
            })?;
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
