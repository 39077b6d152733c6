//! The store: one contract (`Store`), one implementation per backend.
//!
//! The contract is five traits, one per concern: `IntakeStore` (the atomic accept, the purge of
//! expired keys, retention), `DeliveryQueue` (claims, outcomes, queue depth), `DestinationControl`
//! (each destination's shared gate: pause, circuit, pace, and what operators see of it),
//! `AdminQueries` (what operators read) and `ReplayStore` (replays and their records). `Store` is
//! all five, for every type that implements them. Handlers and workers hold an `Arc<dyn Store>` and never see
//! SQL. Each backend keeps its SQL to itself (`sqlite/`, `postgres/`, a file per concern);
//! what every backend must do is pinned down by the shared conformance suite in `tests.rs`.

mod error;
pub mod migrations;
mod open;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use crate::domain::circuit::Circuit;
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::gate::{Gate, GateRow};
use crate::domain::key::DedupeKey;
use crate::domain::pace::Pace;

pub use self::error::{StoreError, StoreErrorKind};
pub use self::open::{StoreLocation, StoreOptions, open};
pub use crate::clock::{UnixMillis, millis, now_millis};
pub use crate::domain::replay_progress::ReplayProgress;

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
    /// What destinations dedupe by (`DedupeKey::delivery_key`).
    pub delivery_key: Uuid,
    /// Set when the source has a `near_duplicate` window: the fingerprint.
    pub near_duplicate: Option<WindowKey>,
    /// Set when the source has a replay guard: the exact body bytes, for the key's TTL.
    pub replay_guard: Option<WindowKey>,
    pub content_type: Option<String>,
    /// Request headers worth keeping for operators, as a JSON object.
    pub headers_json: String,
    /// The body as stored: encrypted when the store has an encryption key.
    pub body: Bytes,
    pub deliveries: Vec<NewDelivery>,
    /// Keyed hashes of the `search_fields` values (the hash covers the field name).
    pub search: Vec<[u8; 16]>,
}

/// A content dedupe layer beside the key: the same content within a window is a repeat,
/// whatever its key. Near duplicates hash the fingerprint; the replay guard the exact body bytes.
#[derive(Debug, Clone, Copy)]
pub struct WindowKey {
    /// The content scoped to the source (and to its layer), compacted like a `DedupeKey`.
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
    /// Seen before; no event was written (the repeat is counted on the original's key row).
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
    /// The exact body was accepted under another key within the key's TTL (SPEC §4.3).
    Replay,
}

impl DuplicateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateReason::Key => "key",
            DuplicateReason::Fingerprint => "fingerprint",
            DuplicateReason::Replay => "replay",
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
    pub status: EventStatus,
    pub content_type: Option<String>,
    pub headers_json: String,
    pub body: Bytes,
    pub deliveries: Vec<DeliveryRecord>,
    /// Repeats answered 200 at intake, as counted on the event's key row (zero once the key
    /// has expired and been purged).
    pub duplicates: DuplicateCounts,
}

/// How often an event was repeated at intake while its key was live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DuplicateCounts {
    pub count: u64,
    pub last_seen_at: Option<UnixMillis>,
    /// Repeats of the key with other content.
    pub conflicts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub destination: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub ordering_key: Option<String>,
    pub next_attempt_at: UnixMillis,
    pub last_error: Option<String>,
    pub dead_reason: Option<DeadReason>,
    pub delivered_at: Option<UnixMillis>,
    /// Values kept from the answer that delivered it (`response_capture`), by name.
    pub captured: Vec<CapturedRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: UnixMillis,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub outcome: DeliveryOutcome,
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
    /// Sent as `Idempotency-Key` and `webhook-id` (`DedupeKey::delivery_key`; the event id
    /// for events stored before the key was kept).
    pub delivery_key: Uuid,
    pub source: String,
    pub destination: String,
    /// This attempt's number, from 1; counted at claim so a crashed attempt still counts.
    pub attempt: u32,
    pub received_at: UnixMillis,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub replay_id: Option<Uuid>,
    /// The previous attempt may have reached the destination (its lease ran out, it timed out,
    /// or the connection was lost after sending): this send is a redelivery.
    pub redelivery: bool,
    /// The circuit's probe: its attempt is not counted against `max_attempts` (and not given
    /// back when the claim is released).
    pub probe: bool,
}

/// A lane's claim: up to `limit` due deliveries to `destination`, through its gate (SPEC §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateClaim {
    pub destination: String,
    pub now: UnixMillis,
    pub lease_until: UnixMillis,
    pub limit: usize,
    /// The destination's `rate_limit`, drawn from the bucket all nodes share.
    pub pace: Option<Pace>,
}

/// What a gated claim took, why, and the gate as it stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneClaim {
    pub deliveries: Vec<ClaimedDelivery>,
    pub gate: Gate,
    pub row: GateRow,
}

/// An operator's pause or resume of a destination, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseChange {
    pub paused: bool,
    /// Why (required to pause).
    pub reason: Option<String>,
    pub requested_by: String,
    pub at: UnixMillis,
}

/// A destination as operators see it: its gate, its queue and its recent outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationOverview {
    pub name: String,
    pub row: GateRow,
    /// The pause in force, if paused: why, by whom, since when.
    pub paused_reason: Option<String>,
    pub paused_by: Option<String>,
    pub paused_at: Option<UnixMillis>,
    /// Unfinished deliveries (pending, retrying, in flight).
    pub queue_depth: u64,
    /// When the event of the oldest unfinished delivery was received.
    pub oldest_pending_at: Option<UnixMillis>,
    /// Attempts since `recent_since` that delivered, and that did not.
    pub delivered_recent: u64,
    pub failed_recent: u64,
}

impl DestinationOverview {
    /// The overview of `name` in `all`, added (active, nothing queued) when it is not there
    /// yet: backends gather an overview from several queries.
    pub fn entry(
        all: &mut std::collections::BTreeMap<String, DestinationOverview>,
        name: String,
    ) -> &mut DestinationOverview {
        all.entry(name.clone())
            .or_insert_with(|| DestinationOverview {
                name,
                row: GateRow::default(),
                paused_reason: None,
                paused_by: None,
                paused_at: None,
                queue_depth: 0,
                oldest_pending_at: None,
                delivered_recent: 0,
                failed_recent: 0,
            })
    }
}

/// What happened on the wire, and what should happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub started_at: UnixMillis,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    /// Values kept from the answer (`response_capture`); only a delivered attempt has any.
    pub captured: Vec<CapturedValue>,
    /// The request may have reached the destination without an answer (a timeout, a connection
    /// lost after sending): the next claim of the delivery is a redelivery.
    pub may_have_reached: bool,
}

/// A value kept from a destination's answer, as the store takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedValue {
    pub name: String,
    /// The value as stored (`privacy::seal_text`: encrypted when the store has a key).
    pub value: String,
    /// Keyed hash of the name and value (`SearchKey::hash`): the event is found by it, like by
    /// a `search_fields` value.
    pub search: [u8; 16],
}

/// A value kept from a delivery's answer, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    pub name: String,
    /// Sealed like error texts.
    pub value: String,
    pub captured_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Retry { next_attempt_at: UnixMillis },
    Dead { reason: DeadReason },
}

impl AttemptOutcome {
    /// The outcome without its details, as logged and counted.
    pub fn kind(&self) -> DeliveryOutcome {
        match self {
            AttemptOutcome::Delivered => DeliveryOutcome::Delivered,
            AttemptOutcome::Retry { .. } => DeliveryOutcome::Retry,
            AttemptOutcome::Dead { .. } => DeliveryOutcome::Dead,
        }
    }
}

/// Where a page of a newest-first listing ended: the sort position of its last item. The next
/// page starts strictly after it, so items that arrive meanwhile never shift or repeat a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor<I> {
    /// The item's time (an event's `received_at`, a dead delivery's death, a replay's creation).
    pub at: UnixMillis,
    /// Breaks ties between items of the same millisecond.
    pub id: I,
}

/// Which events `list_events` returns. Every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub source: Option<String>,
    pub status: Option<EventStatus>,
    /// The idempotency key's display text, exactly.
    pub idempotency_key: Option<String>,
    /// Keyed hashes of `search_fields` values (`SearchKey::hash`); the event must carry each.
    pub search: Vec<[u8; 16]>,
    /// Received at or after.
    pub since: Option<UnixMillis>,
    /// Received before.
    pub until: Option<UnixMillis>,
    /// Continue after this position (the last item of the previous page).
    pub after: Option<Cursor<Uuid>>,
    pub limit: usize,
    /// Oldest first (ascending, `after` then continues upwards), as an export lists events so
    /// that an import accepts them in intake order; newest first otherwise.
    pub oldest_first: bool,
}

/// An event in a listing: what it is and how far it got, without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub id: Uuid,
    pub source: String,
    pub idempotency_key: String,
    pub received_at: UnixMillis,
    pub status: EventStatus,
    pub content_type: Option<String>,
    pub deliveries: u32,
}

impl EventSummary {
    pub fn cursor(&self) -> Cursor<Uuid> {
        Cursor {
            at: self.received_at,
            id: self.id,
        }
    }
}

/// Which dead deliveries `dead_deliveries` returns, newest death first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadQuery {
    pub destination: Option<String>,
    pub source: Option<String>,
    /// Went dead at or after.
    pub since: Option<UnixMillis>,
    /// Continue after this position (`Cursor { at: died_at, id: delivery_id }`).
    pub after: Option<Cursor<i64>>,
    pub limit: usize,
}

/// A delivery in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadDelivery {
    pub delivery_id: i64,
    pub event_id: Uuid,
    pub source: String,
    pub destination: String,
    pub idempotency_key: String,
    pub received_at: UnixMillis,
    /// When the delivery went dead (its last update).
    pub died_at: UnixMillis,
    pub reason: Option<DeadReason>,
    pub last_error: Option<String>,
    pub attempts: u32,
    /// The event's body as stored (encrypted when the store has an encryption key), for the
    /// masked preview operators see.
    pub body: Bytes,
}

impl DeadDelivery {
    pub fn cursor(&self) -> Cursor<i64> {
        Cursor {
            at: self.died_at,
            id: self.delivery_id,
        }
    }
}

/// The dead-letter queue summed up per destination and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterGroup {
    pub destination: String,
    pub reason: Option<DeadReason>,
    pub count: u64,
    /// The error of the group's most recent death, and when that was.
    pub last_error: Option<String>,
    pub last_at: UnixMillis,
}

/// Which deliveries a replay takes. Every criterion given must hold; callers refuse an empty
/// filter (it would match every delivery ever made).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only deliveries of these events (empty: any event).
    pub event_ids: Vec<Uuid>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub delivery_state: Option<DeliveryState>,
    pub event_status: Option<EventStatus>,
    /// The event was received at or after.
    pub since: Option<UnixMillis>,
    /// The event was received before.
    pub until: Option<UnixMillis>,
}

/// A replay to run (or, with `dry_run`, only to count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplay {
    pub id: Uuid,
    pub filter: ReplayFilter,
    /// The filter as the operator gave it, normalised, for the record (JSON).
    pub filter_json: String,
    pub requested_by: String,
    pub reason: String,
    pub dry_run: bool,
    /// When the replay is made; re-queued deliveries are due then.
    pub now: UnixMillis,
    /// How many matched deliveries to return as a sample.
    pub sample_size: usize,
}

/// What a replay matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Deliveries re-queued (or, in a dry run, that would be).
    pub matched: u64,
    /// Deliveries that matched but were left alone because an attempt is in flight.
    pub skipped_in_flight: u64,
    /// Some of the matched deliveries, newest event first.
    pub sample: Vec<ReplaySample>,
    /// The destinations of the matched deliveries (their lanes should be woken).
    pub destinations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySample {
    pub delivery_id: i64,
    pub event_id: Uuid,
    pub source: String,
    pub destination: String,
    /// The delivery's state before the replay.
    pub state: DeliveryState,
    pub received_at: UnixMillis,
}

/// A recorded replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRecord {
    pub id: Uuid,
    pub created_at: UnixMillis,
    pub requested_by: String,
    pub reason: String,
    pub filter_json: String,
    pub matched: u64,
    pub skipped_in_flight: u64,
}

impl ReplayRecord {
    pub fn cursor(&self) -> Cursor<Uuid> {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

/// One replay that re-queued one of an event's deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReplay {
    pub replay_id: Uuid,
    pub delivery_id: i64,
    pub destination: String,
    pub created_at: UnixMillis,
    pub requested_by: String,
    pub reason: String,
}

/// What intake needs: the atomic accept, and what keeps its storage bounded: the purge of
/// expired dedupe windows, the deletion of finished events past their retention, and the count
/// of live keys.
#[async_trait]
pub trait IntakeStore: Send + Sync + 'static {
    /// The atomic intake step: unless the key is live (a duplicate with reason `key`), or the
    /// body under the replay guard (`replay`), or the fingerprint within the near-duplicate
    /// window (`fingerprint`), checked in that order, records the key, the window keys, the
    /// event and one delivery row per `deliveries` entry, durably, in one transaction. A
    /// duplicate is counted on the original's live key row (`EventRecord::duplicates`; a key
    /// repeat with other content also as a conflict). Returns only once that transaction is
    /// committed.
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError>;

    /// Deletes dedupe keys and near-duplicate fingerprints whose window ended before `now`.
    /// Returns how many rows went.
    async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError>;

    /// Deletes at most `limit` finished events of `source` (every delivery `delivered` or
    /// `dead`, or none) received before `received_before`, oldest first, with their deliveries,
    /// attempts, search hashes and replay links, in one short transaction. Unfinished events are
    /// kept whatever their age. Dedupe keys are left alone: a key whose event was deleted still
    /// answers repeats with the original event id until it expires. Returns how many events
    /// went; fewer than `limit` means none is left to delete.
    async fn delete_finished_events(
        &self,
        source: &str,
        received_before: UnixMillis,
        limit: usize,
    ) -> Result<u64, StoreError>;

    /// Dedupe keys that still block repeats at `now`.
    async fn live_dedupe_keys(&self, now: UnixMillis) -> Result<u64, StoreError>;
}

/// What delivery lanes need: due deliveries claimed under a lease, outcomes recorded, claims
/// given back, and how much is waiting.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Claims up to `limit` deliveries to `destination` that are due at `now` (pending or
    /// retrying with `next_attempt_at <= now`, or in flight under an expired lease), oldest
    /// due first. A delivery with an ordering key is only claimable while no earlier delivery
    /// to the same destination with the same key is still open. Each claim counts an attempt
    /// and holds a lease until `lease_until`. A claim is a `redelivery` when its lease had
    /// expired or its last recorded attempt `may_have_reached` the destination.
    async fn claim_due_deliveries(
        &self,
        destination: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records an attempt and moves the delivery on (delivered, retrying or dead), and the
    /// event's status with it; keeps the attempt's captured values with the delivery (a value
    /// captured again under the same name replaces the old one) and their search hashes with
    /// the event. Returns false, changing nothing but the attempt log, when the lease was lost
    /// to another worker in the meantime.
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

    /// New work that other nodes sharing the store announce, by destination (empty: any
    /// destination may have some), so a lane starts at once rather than at its next poll.
    /// None when no other node can share the store (SQLite).
    fn subscribe_to_new_work(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
        None
    }
}

/// Each destination's gate, shared by every node: pause, circuit and pace live in the store so
/// that they hold on every node and survive restarts.
#[async_trait]
pub trait DestinationControl: Send + Sync + 'static {
    /// Claims like `claim_due_deliveries`, through the destination's gate, in one transaction:
    /// nothing while paused or while the circuit is open; one probe (its attempt not counted)
    /// once the cooldown is over, which holds the circuit half open until `lease_until`; with
    /// a pace, no more than the shared bucket's whole tokens, which are taken.
    async fn claim_through_gate(&self, request: &GateClaim) -> Result<LaneClaim, StoreError>;

    /// Sets the destination's circuit (a node opened it, or an answer closed it).
    async fn set_circuit(&self, destination: &str, circuit: Circuit) -> Result<(), StoreError>;

    /// Pauses or resumes the destination, and records who did it and why. Pausing a paused
    /// destination keeps the first pause's time; the newer reason is kept.
    async fn set_paused(&self, destination: &str, change: &PauseChange) -> Result<(), StoreError>;

    /// Every destination that has shared state or deliveries, with its queue and the attempt
    /// outcomes since `recent_since`.
    async fn destination_overview(
        &self,
        recent_since: UnixMillis,
    ) -> Result<Vec<DestinationOverview>, StoreError>;
}

/// What operators read: events, their attempts, the dead-letter queue, and whether the store
/// answers at all.
#[async_trait]
pub trait AdminQueries: Send + Sync + 'static {
    /// One event with its deliveries (None: no such event).
    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError>;

    /// Events matching `query`, newest first: ordered by `(received_at, id)` descending (or
    /// ascending with `query.oldest_first`), at most `query.limit`, starting strictly after
    /// `query.after` when given.
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>, StoreError>;

    /// Every attempt of one delivery, oldest first.
    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Dead deliveries matching `query`, newest death first (by `(died_at, delivery_id)`
    /// descending), after `query.after`.
    async fn dead_deliveries(&self, query: &DeadQuery) -> Result<Vec<DeadDelivery>, StoreError>;

    /// Dead deliveries counted per destination and reason, largest group first; with `since`,
    /// only those that went dead at or after it.
    async fn dead_letter_groups(
        &self,
        since: Option<UnixMillis>,
    ) -> Result<Vec<DeadLetterGroup>, StoreError>;

    /// Succeeds when the store answers queries.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Keeps this node's recent stats slots (`(slot index, data)`, replacing the node's earlier
    /// copies of the same slots) for the other nodes, and forgets every node's slots before
    /// `forget_before`.
    async fn save_node_stats(
        &self,
        node: &str,
        slots: Vec<(i64, Vec<u8>)>,
        forget_before: i64,
    ) -> Result<(), StoreError>;

    /// The other nodes' stats slots from index `first` on: `(node, slot index, data)`.
    async fn node_stats(
        &self,
        first: i64,
        except: &str,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, StoreError>;

    /// Succeeds when the store can take writes now: a write as small as can be, taken where
    /// intake's writes go (a full disk, a read-only database fail it). Behind `/readyz`, so it
    /// is called every few seconds, never on the hot path.
    async fn writable(&self) -> Result<(), StoreError>;
}

/// Replays: re-queueing deliveries on purpose, with the record of who did it and why, and
/// where the re-queued deliveries are now.
#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Runs a replay in one transaction: every delivery matching `replay.filter` that is not in
    /// flight becomes `pending`, due at `replay.now`, with its attempt count reset to zero (a
    /// fresh `max_attempts` budget; attempt numbers restart at 1 under the replay), its dead
    /// reason cleared and `replay_id` set (workers send it as `Oncehook-Replay`); the events'
    /// statuses follow; the replay is recorded with its count and linked to each delivery.
    /// In-flight deliveries are counted in `skipped_in_flight` and left alone (their attempt
    /// decides). With `dry_run`, nothing changes and nothing is recorded: only the counts and
    /// the sample are computed.
    async fn replay(&self, replay: &NewReplay) -> Result<ReplayOutcome, StoreError>;

    /// Recorded replays, newest first (by `(created_at, id)` descending), after `after`.
    async fn replays(
        &self,
        after: Option<Cursor<Uuid>>,
        limit: usize,
    ) -> Result<Vec<ReplayRecord>, StoreError>;

    /// One recorded replay and where its deliveries are now.
    async fn replay_progress(
        &self,
        id: Uuid,
    ) -> Result<Option<(ReplayRecord, ReplayProgress)>, StoreError>;

    /// Every replay that re-queued one of the event's deliveries, newest first.
    async fn event_replays(&self, event_id: Uuid) -> Result<Vec<DeliveryReplay>, StoreError>;
}

/// The whole store contract. Every type that implements the five concerns is a `Store`, so
/// handlers and workers hold one `Arc<dyn Store>`, and a wrapper (a fault-injecting one in
/// tests) implements the concerns and is a `Store` too.
pub trait Store:
    IntakeStore + DeliveryQueue + DestinationControl + AdminQueries + ReplayStore
{
}

impl<T: IntakeStore + DeliveryQueue + DestinationControl + AdminQueries + ReplayStore + ?Sized>
    Store for T
{
}
