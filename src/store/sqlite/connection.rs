//! Connections: how each is opened (WAL, fsync at commit, page cache), the pool of read
//! connections, and which SQLite errors are worth a retry.

use std::sync::Mutex;

use rusqlite::Connection;
use rusqlite::config::DbConfig;

use crate::store::StoreError;

/// Page cache per connection, in KiB. The writer's holds the hot pages of every index that
/// intake and delivery touch (the dedupe keys above all); readers serve the admin API and the
/// lanes' small lookups, and each of them fills its cache as the file grows, so they get less.
pub(super) const WRITER_CACHE_KIB: i64 = 32 * 1024;
pub(super) const READER_CACHE_KIB: i64 = 8 * 1024;

pub(super) fn set_cache(conn: &Connection, kib: i64) -> Result<(), StoreError> {
    conn.pragma_update(None, "cache_size", -kib)
        .map_err(classify)
}

pub(super) fn open_connection(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| {
        StoreError::unavailable(format!("cannot open {}: {e}", path.display())).caused_by(e)
    })?;
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
    // One plan per statement, kept. Without this SQLite peeks at bound values (a `LIMIT ?`, a
    // range bound) while planning and re-plans the statement whenever the next call binds
    // another value: the claim, whose limit is the lane's free slots, was re-prepared on almost
    // every call, which took about a seventh of the writer's CPU while draining a backlog.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(classify)?;
    Ok(conn)
}

/// Errors a retry may cure (busy, locked, full, I/O) are `Unavailable`; the rest are bugs.
pub(super) fn classify(error: rusqlite::Error) -> StoreError {
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
            StoreError::unavailable(error.to_string()).caused_by(error)
        }
        _ => StoreError::internal(error.to_string()).caused_by(error),
    }
}

/// A few read connections, each used by one blocking task at a time.
pub(super) struct ReadPool {
    connections: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

impl ReadPool {
    pub(super) fn new(connections: Vec<Mutex<Connection>>) -> Self {
        Self {
            connections,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(super) fn with<T>(
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
            .map_err(|_| StoreError::internal("a read connection was poisoned"))?;
        work(&conn)
    }
}
