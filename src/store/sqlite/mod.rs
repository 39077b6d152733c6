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
mod destinations;
mod migrate;
mod queries;
mod readiness;
mod replay;
mod retention;
mod wal;
mod words;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::connection::{
    READER_CACHE_KIB, ReadPool, WRITER_CACHE_KIB, classify, open_connection, set_cache,
};
use self::migrate::migrate;
use self::wal::{Wal, run_checkpointer};
use self::writer::{CommitSync, Job, WriteJob, run_writer};
use super::StoreError;

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
    /// The database file: readiness probes its volume.
    path: PathBuf,
}

const READ_CONNECTIONS: usize = 4;

impl SqliteStore {
    /// Opens (creating and migrating) the database and starts the writer thread. Blocking.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = options.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::unavailable(format!("cannot create {}: {e}", dir.display()))
                    .caused_by(e)
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
            .map_err(|e| {
                StoreError::internal(format!("cannot start the writer thread: {e}")).caused_by(e)
            })?;
        thread::Builder::new()
            .name("oncehook-ckpt".into())
            .spawn(move || run_checkpointer(checkpointer_conn, &wal))
            .map_err(|e| {
                StoreError::internal(format!("cannot start the checkpoint thread: {e}"))
                    .caused_by(e)
            })?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(ReadPool::new(readers)),
            path: options.path,
        })
    }

    /// Queues `work` for the writer and waits for the batch holding it to commit, fsynced.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write_with(CommitSync::Full, work).await
    }

    /// Like `write`, for delivery bookkeeping that the protocol redoes if a power loss takes it
    /// (`CommitSync::Deferred`): its commit is fsynced with the next one that must be.
    async fn write_deferred<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write_with(CommitSync::Deferred, work).await
    }

    async fn write_with<T, F>(&self, sync: CommitSync, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            work,
            sync,
            result: None,
            reply,
        });
        self.writer.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::queue_full(),
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::unavailable("the store's writer has stopped")
            }
        })?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the store's writer has stopped"))?
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(|conn| work(conn).map_err(classify)))
            .await
            .map_err(|e| StoreError::internal(format!("read task failed: {e}")).caused_by(e))?
    }
}

fn uuid_from_blob(blob: &[u8]) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(blob).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}
