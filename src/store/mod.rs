//! The store: one contract (`Store`), one implementation per backend.
//!
//! Handlers and workers hold an `Arc<dyn Store>` and never see SQL. Each backend keeps its SQL
//! to itself (`sqlite.rs`, `postgres.rs`); what every backend must do is pinned down by the
//! shared conformance suite in `tests.rs`.

pub mod migrations;
pub mod postgres;
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
    /// The body as stored: encrypted when the store has an encryption key.
    pub body: Bytes,
    pub deliveries: Vec<NewDelivery>,
    /// Keyed hashes of the `search_fields` values (the hash covers the field name).
    pub search: Vec<[u8; 16]>,
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
    pub next_attempt_at: UnixMillis,
    pub last_error: Option<String>,
    pub dead_reason: Option<String>,
    pub delivered_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: UnixMillis,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub outcome: String,
    pub replay_id: Option<Uuid>,
}

/// A delivery taken by one worker under a lease. Until `record_attempt` or `release_claim`
/// (or the lease's expiry) no other worker can claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// Proves the claim is still ours when the outcome is recorded.
    pub lease_token: i64,
    pub event_id: Uuid,
    pub source: String,
    pub destination: String,
    /// This attempt's number, from 1; counted at claim so a crashed attempt still counts.
    pub attempt: u32,
    pub received_at: UnixMillis,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub replay_id: Option<Uuid>,
}

/// What happened on the wire, and what should happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub started_at: UnixMillis,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Retry { next_attempt_at: UnixMillis },
    Dead { reason: String },
}

impl AttemptOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Dead { .. } => "dead",
        }
    }
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

    /// Claims up to `limit` deliveries to `destination` that are due at `now` (pending or
    /// retrying with `next_attempt_at <= now`, or in flight under an expired lease), oldest
    /// due first. A delivery with an ordering key is only claimable while no earlier delivery
    /// to the same destination with the same key is still open. Each claim counts an attempt
    /// and holds a lease until `lease_until`.
    async fn claim_due_deliveries(
        &self,
        destination: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records an attempt and moves the delivery on (delivered, retrying or dead), and the
    /// event's status with it. Returns false, changing nothing but the attempt log, when the
    /// lease was lost to another worker in the meantime.
    async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError>;

    /// Gives a claimed delivery back without an attempt (shutdown): it is due again at once.
    async fn release_claim(&self, claim: &ClaimedDelivery) -> Result<(), StoreError>;

    /// When the next delivery to `destination` becomes due (None: nothing open).
    async fn next_due_at(&self, destination: &str) -> Result<Option<UnixMillis>, StoreError>;

    /// Open deliveries (pending, retrying, in flight) per destination.
    async fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Every attempt of one delivery, oldest first.
    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Succeeds when the store answers queries.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// An event's status over the states of its deliveries (SPEC §5), given (state, count) pairs.
pub fn event_status<'a>(states: impl IntoIterator<Item = (&'a str, i64)>) -> &'static str {
    let (mut open, mut retrying, mut delivered, mut dead, mut attempted) = (0, 0, 0, 0, false);
    for (state, count) in states {
        match state {
            "pending" => open += count,
            "in_flight" => {
                open += count;
                attempted = true;
            }
            "retrying" => {
                open += count;
                retrying += count;
            }
            "delivered" => delivered += count,
            "dead" => dead += count,
            _ => {}
        }
    }
    if open == 0 && dead == 0 {
        "completed"
    } else if open == 0 {
        "failed_terminal"
    } else if retrying > 0 {
        "failed_retryable"
    } else if attempted || delivered > 0 || dead > 0 {
        "processing"
    } else {
        "received"
    }
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
        StoreLocation::Postgres(url) => {
            let store = postgres::PostgresStore::open(postgres::PostgresOptions {
                url,
                pool_size: config.store.pool_size,
                batch_max: config.store.batch_max,
                queue_max: config.store.queue_max,
            })
            .await?;
            Ok(Arc::new(store))
        }
    }
}
