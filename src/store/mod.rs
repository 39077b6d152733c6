//! The store: one contract (`Store`), one implementation per backend.
//!
//! Handlers and workers hold an `Arc<dyn Store>` and never see SQL. Each backend keeps its SQL
//! to itself (`sqlite.rs`); what every backend must do is pinned down by the shared conformance
//! suite in `tests.rs`.

pub mod migrations;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use crate::config::{Config, StoreLocation};
use crate::domain::fingerprint::Fingerprint;
use crate::domain::key::DedupeKey;

/// Milliseconds since the Unix epoch: the one time unit the store speaks.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A webhook that passed every check and is ready to be recorded, with its outbox rows.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub source: Arc<str>,
    pub received_at: UnixMillis,
    /// The key as shown to clients and operators.
    pub idempotency_key: String,
    /// The compact form the dedupe index is keyed by (already scoped to the source).
    pub dedupe_key: DedupeKey,
    pub fingerprint: Fingerprint,
    /// When the key stops blocking repeats (`received_at + dedupe_ttl`).
    pub dedupe_expires_at: UnixMillis,
    /// Set when the source has a `near_duplicate` window.
    pub near_duplicate: Option<NearDuplicateCheck>,
    pub content_type: Option<String>,
    /// Request headers worth keeping for operators, as a JSON object.
    pub headers_json: String,
    pub body: Bytes,
    pub deliveries: Vec<NewDelivery>,
}

/// The second dedupe layer: the same fingerprint within a window is a repeat, whatever its key.
#[derive(Debug, Clone, Copy)]
pub struct NearDuplicateCheck {
    /// The fingerprint scoped to the source, compacted like a `DedupeKey`.
    pub key: DedupeKey,
    pub expires_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub destination: Arc<str>,
    pub ordering_key: Option<String>,
}

/// What the atomic accept step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Recorded: the key, the event and its deliveries are committed.
    Accepted,
    /// Seen before; nothing was written.
    Duplicate(Duplicate),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    /// The original event's id.
    pub event_id: Uuid,
    pub reason: DuplicateReason,
    /// The key matched but the content differs from the original's.
    pub conflict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateReason {
    Key,
    Fingerprint,
}

impl DuplicateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateReason::Key => "key",
            DuplicateReason::Fingerprint => "fingerprint",
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: Uuid,
    pub source: String,
    pub idempotency_key: String,
    pub received_at: UnixMillis,
    pub status: String,
    pub content_type: Option<String>,
    pub headers_json: String,
    pub body: Bytes,
    pub deliveries: Vec<DeliveryRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub destination: String,
    pub state: String,
    pub attempts: u32,
    pub ordering_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take the write now (queue full, database unreachable, disk full);
    /// the caller should answer 503 and the provider retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corruption: retrying will not help.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The atomic intake step: unless the key (or, with a window, the fingerprint) is live,
    /// records the key, the event and one delivery row per `deliveries` entry, durably, in one
    /// transaction. Returns only once that transaction is committed.
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError>;

    /// Deletes dedupe keys and near-duplicate fingerprints whose window ended before `now`.
    /// Returns how many rows went.
    async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError>;

    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError>;

    /// Succeeds when the store answers queries.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store named by `store.url`, creating and migrating it as needed.
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store_location().map_err(anyhow::Error::msg)? {
        StoreLocation::Sqlite(path) => {
            let options = sqlite::SqliteOptions {
                path,
                batch_max: config.store.batch_max,
                queue_max: config.store.queue_max,
            };
            let store =
                tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(options)).await??;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres(_) => {
            anyhow::bail!("store.url: the PostgreSQL backend is not available in this build yet")
        }
    }
}
