//! The store contract, tested once and run against every backend.
//!
//! Each behaviour is an `async fn(Arc<dyn Store>)`; `conformance!` instantiates it per backend
//! with a fresh database: a temporary SQLite file, and, when `ONCEHOOK_TEST_PG` names a
//! PostgreSQL database, a schema of its own (so the tests run in parallel) dropped afterwards.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::postgres::{PostgresOptions, PostgresStore};
use super::sqlite::{SqliteOptions, SqliteStore};
use super::*;
use crate::domain::circuit::{Circuit, CircuitPhase};
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::gate::{DestinationState, Gate};
use crate::domain::key::DedupeKey;
use crate::domain::pace::Pace;

struct SqliteFixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
}

fn sqlite() -> SqliteFixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(SqliteOptions {
        path: dir.path().join("store.db"),
        batch_max: 64,
        queue_max: 4096,
    })
    .expect("open");
    SqliteFixture {
        _dir: dir,
        store: Arc::new(store),
    }
}

/// A PostgreSQL store in a fresh schema of the `ONCEHOOK_TEST_PG` database; the schema is
/// dropped when the fixture is, also when the test failed.
struct PostgresFixture {
    // Fields drop in order: the store before its schema.
    store: Arc<dyn Store>,
    schema: TestSchema,
}

async fn postgres() -> Option<PostgresFixture> {
    let schema = TestSchema::create().await?;
    let store = open_postgres(&schema, 8).await;
    Some(PostgresFixture { store, schema })
}

impl PostgresFixture {
    /// Another store on the fixture's schema: a second node sharing the database.
    async fn another_node(&self) -> Arc<dyn Store> {
        open_postgres(&self.schema, 8).await
    }
}

/// A new, empty schema in the `ONCEHOOK_TEST_PG` database, dropped with this value (also when a
/// store failed to open on it).
pub(super) struct TestSchema {
    /// The database's URL, as `ONCEHOOK_TEST_PG` gives it.
    pub(super) url: String,
    name: String,
}

impl TestSchema {
    pub(super) async fn create() -> Option<TestSchema> {
        let Ok(url) = std::env::var("ONCEHOOK_TEST_PG") else {
            eprintln!(
                "skipped on PostgreSQL: set ONCEHOOK_TEST_PG=postgres://user@host/db to run it"
            );
            return None;
        };
        let name = format!("t_{:016x}", rand::random::<u64>());
        let client = super::postgres::connect(&url)
            .await
            .expect("connect to ONCEHOOK_TEST_PG");
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        Some(TestSchema { url, name })
    }

    /// The URL of a store whose tables live in this schema.
    pub(super) fn url_with_search_path(&self) -> String {
        let url = &self.url;
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future: a thread with
        // its own small runtime drops the schema.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = super::postgres::connect(&url).await.expect("connect");
                client
                    .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                    .await
                    .expect("drop schema");
            });
        });
        let _ = dropped.join();
    }
}

async fn open_postgres(schema: &TestSchema, pool_size: usize) -> Arc<dyn Store> {
    let store = PostgresStore::open(PostgresOptions {
        url: schema.url_with_search_path(),
        pool_size,
        batch_max: 64,
        queue_max: 4096,
    })
    .await
    .expect("open");
    Arc::new(store)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::sqlite();
                    super::$name(fixture.store.clone()).await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fixture) = super::postgres().await else {
                        return;
                    };
                    super::$name(fixture.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    accepts_once_then_reports_duplicates,
    same_key_with_other_content_is_a_conflict,
    keys_are_new_again_after_their_ttl,
    purge_removes_only_expired_keys,
    near_duplicates_match_by_fingerprint_within_the_window,
    the_replay_guard_matches_the_body_under_another_key,
    claims_carry_the_delivery_key,
    concurrent_accepts_of_one_key_record_one_event,
    accepted_events_are_stored_with_their_deliveries,
    unknown_events_are_none,
    claims_hold_a_lease_until_it_expires,
    retries_wait_for_their_time,
    dead_deliveries_keep_their_reason_and_fail_the_event,
    ordering_keys_release_one_delivery_at_a_time,
    released_claims_are_due_again_without_counting_an_attempt,
    concurrent_claims_never_share_a_delivery,
    concurrent_claims_keep_each_ordering_key_in_order,
    concurrent_outcomes_of_one_event_settle_its_status,
    text_with_nul_characters_is_stored,
    queue_depths_count_open_deliveries,
    events_are_listed_newest_first_with_filters,
    event_pages_return_every_event_once,
    replays_requeue_matching_deliveries_with_a_fresh_budget,
    dry_runs_change_and_record_nothing,
    replays_leave_in_flight_deliveries_alone,
    replays_match_by_event_ids_destination_and_event_status,
    dead_letters_are_listed_newest_first_and_grouped,
    a_working_store_is_writable,
    retention_deletes_finished_events_and_keeps_their_keys,
    retention_deletes_in_batches_of_the_given_size,
    a_paused_destination_claims_nothing_until_resumed,
    an_open_circuit_lets_one_uncounted_probe_out_after_its_cooldown,
    concurrent_claims_share_one_pace,
    the_destination_overview_counts_queue_and_recent_outcomes,
    node_stats_are_shared_replaced_and_forgotten,
    captured_values_are_kept_with_the_delivery_and_found_by_hash,
    claims_after_an_attempt_that_may_have_arrived_are_redeliveries,
    repeats_are_counted_on_the_original_s_key_row,
);

const T0: UnixMillis = 1_800_000_000_000;

fn key(n: u8) -> DedupeKey {
    DedupeKey([n; 16])
}

fn event(key: DedupeKey, fingerprint: u8, at: UnixMillis) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        source: Arc::from("src"),
        received_at: at,
        idempotency_key: format!("key-{}", key.0[0]),
        dedupe_key: key,
        fingerprint: Fingerprint([fingerprint; 32]),
        dedupe_expires_at: at + 60_000,
        delivery_key: key.delivery_key(),
        near_duplicate: None,
        replay_guard: None,
        content_type: Some("application/json".into()),
        headers_json: "{}".into(),
        body: Bytes::from_static(b"{\"a\":1}"),
        deliveries: vec![NewDelivery {
            destination: Arc::from("crm"),
            ordering_key: None,
        }],
        search: Vec::new(),
    }
}

async fn accepts_once_then_reports_duplicates(store: Arc<dyn Store>) {
    let first = event(key(1), 1, T0);
    let first_id = first.id;
    assert_eq!(
        store.accept(first).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    for _ in 0..2 {
        let repeat = event(key(1), 1, T0 + 1_000);
        assert_eq!(
            store.accept(repeat).await.expect("accept"),
            AcceptOutcome::Duplicate(Duplicate {
                event_id: first_id,
                reason: DuplicateReason::Key,
                conflict: false
            })
        );
    }
    let other = event(key(2), 1, T0 + 2_000);
    assert_eq!(
        store.accept(other).await.expect("accept"),
        AcceptOutcome::Accepted
    );
}

async fn same_key_with_other_content_is_a_conflict(store: Arc<dyn Store>) {
    let first = event(key(1), 1, T0);
    let first_id = first.id;
    store.accept(first).await.expect("accept");
    let tampered = event(key(1), 2, T0 + 1);
    let tampered_id = tampered.id;
    assert_eq!(
        store.accept(tampered).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: first_id,
            reason: DuplicateReason::Key,
            conflict: true
        })
    );
    assert_eq!(
        store.event(tampered_id).await.expect("read"),
        None,
        "a conflict stores nothing"
    );
}

async fn keys_are_new_again_after_their_ttl(store: Arc<dyn Store>) {
    let first = event(key(1), 1, T0);
    store.accept(first).await.expect("accept");
    // Expires at T0 + 60s: one millisecond before, a repeat; at the expiry, a new event.
    let before = event(key(1), 1, T0 + 59_999);
    assert!(matches!(
        store.accept(before).await.expect("accept"),
        AcceptOutcome::Duplicate(_)
    ));
    let after = event(key(1), 1, T0 + 60_000);
    let after_id = after.id;
    assert_eq!(
        store.accept(after).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    let repeat = event(key(1), 1, T0 + 60_001);
    assert_eq!(
        store.accept(repeat).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: after_id,
            reason: DuplicateReason::Key,
            conflict: false
        })
    );
}

async fn purge_removes_only_expired_keys(store: Arc<dyn Store>) {
    let mut old = event(key(1), 1, T0);
    old.near_duplicate = Some(WindowKey {
        key: key(101),
        expires_at: T0 + 1_000,
    });
    store.accept(old).await.expect("accept");
    let young = event(key(2), 2, T0 + 30_000);
    let young_id = young.id;
    store.accept(young).await.expect("accept");
    // At T0 + 60s the first key (and its fingerprint) expired; the second lives until T0 + 90s.
    let purged = store.purge_expired(T0 + 60_000).await.expect("purge");
    assert_eq!(purged, 2);
    assert_eq!(store.purge_expired(T0 + 60_000).await.expect("purge"), 0);
    let repeat = event(key(2), 2, T0 + 60_000);
    assert_eq!(
        store.accept(repeat).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: young_id,
            reason: DuplicateReason::Key,
            conflict: false
        })
    );
}

async fn near_duplicates_match_by_fingerprint_within_the_window(store: Arc<dyn Store>) {
    let near = |at| {
        Some(WindowKey {
            key: key(200),
            expires_at: at + 10_000,
        })
    };
    let mut first = event(key(1), 7, T0);
    first.near_duplicate = near(T0);
    let first_id = first.id;
    store.accept(first).await.expect("accept");
    let mut other_key = event(key(2), 7, T0 + 5_000);
    other_key.near_duplicate = near(T0 + 5_000);
    assert_eq!(
        store.accept(other_key).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: first_id,
            reason: DuplicateReason::Fingerprint,
            conflict: false
        })
    );
    let mut after_window = event(key(3), 7, T0 + 10_000);
    after_window.near_duplicate = near(T0 + 10_000);
    assert_eq!(
        store.accept(after_window).await.expect("accept"),
        AcceptOutcome::Accepted
    );
}

async fn repeats_are_counted_on_the_original_s_key_row(store: Arc<dyn Store>) {
    let near = |at| {
        Some(WindowKey {
            key: key(200),
            expires_at: at + 10_000,
        })
    };
    let mut first = event(key(1), 7, T0);
    first.near_duplicate = near(T0);
    let first_id = first.id;
    store.accept(first).await.expect("accept");
    let counts = |id: Uuid| {
        let store = Arc::clone(&store);
        async move {
            store
                .event(id)
                .await
                .expect("read")
                .expect("event")
                .duplicates
        }
    };
    assert_eq!(counts(first_id).await, DuplicateCounts::default());
    // The same key, then the same key with other content, then other key and same content.
    let mut same = event(key(1), 7, T0 + 1_000);
    same.near_duplicate = near(T0 + 1_000);
    store.accept(same).await.expect("accept");
    let mut tampered = event(key(1), 8, T0 + 2_000);
    tampered.near_duplicate = near(T0 + 2_000);
    store.accept(tampered).await.expect("accept");
    let mut near_copy = event(key(2), 7, T0 + 3_000);
    near_copy.near_duplicate = near(T0 + 3_000);
    assert!(matches!(
        store.accept(near_copy).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            reason: DuplicateReason::Fingerprint,
            ..
        })
    ));
    assert_eq!(
        counts(first_id).await,
        DuplicateCounts {
            count: 3,
            last_seen_at: Some(T0 + 3_000),
            conflicts: 1,
        }
    );
    // After its TTL the key is a new event's, counted from zero.
    let renewed = event(key(1), 7, T0 + 60_000);
    let renewed_id = renewed.id;
    assert_eq!(
        store.accept(renewed).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    assert_eq!(counts(renewed_id).await, DuplicateCounts::default());
    assert_eq!(
        counts(first_id).await,
        DuplicateCounts::default(),
        "the key row is no longer the first event's"
    );
}

async fn the_replay_guard_matches_the_body_under_another_key(store: Arc<dyn Store>) {
    let guard = |at| {
        Some(WindowKey {
            key: key(210),
            expires_at: at + 60_000,
        })
    };
    let mut first = event(key(1), 7, T0);
    first.replay_guard = guard(T0);
    let first_id = first.id;
    store.accept(first).await.expect("accept");
    // The same key stays a key duplicate; the same body under a new key is a replay.
    let mut same_key = event(key(1), 7, T0 + 1_000);
    same_key.replay_guard = guard(T0 + 1_000);
    assert_eq!(
        store.accept(same_key).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: first_id,
            reason: DuplicateReason::Key,
            conflict: false
        })
    );
    let mut new_key = event(key(2), 7, T0 + 2_000);
    new_key.replay_guard = guard(T0 + 2_000);
    let replay_id = new_key.id;
    assert_eq!(
        store.accept(new_key).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: first_id,
            reason: DuplicateReason::Replay,
            conflict: false
        })
    );
    assert_eq!(store.event(replay_id).await.expect("read"), None);
    // The replay took nothing: its key is still free for a different body.
    let mut other_body = event(key(2), 8, T0 + 3_000);
    other_body.replay_guard = Some(WindowKey {
        key: key(211),
        expires_at: T0 + 63_000,
    });
    assert_eq!(
        store.accept(other_body).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    // A replay within the near-duplicate window is still reported as a replay (checked first).
    let mut both = event(key(3), 7, T0 + 4_000);
    both.replay_guard = guard(T0 + 4_000);
    both.near_duplicate = Some(WindowKey {
        key: key(212),
        expires_at: T0 + 14_000,
    });
    assert!(matches!(
        store.accept(both).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            reason: DuplicateReason::Replay,
            ..
        })
    ));
    // Once the guard's window is over, the body is new again under a new key.
    let mut later = event(key(4), 7, T0 + 60_000);
    later.replay_guard = guard(T0 + 60_000);
    assert_eq!(
        store.accept(later).await.expect("accept"),
        AcceptOutcome::Accepted
    );
}

async fn claims_carry_the_delivery_key(store: Arc<dyn Store>) {
    let first = event(key(5), 1, T0);
    store.accept(first).await.expect("accept");
    let claimed = store
        .claim_due_deliveries("crm", T0, T0 + 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivery_key, key(5).delivery_key());
    assert_ne!(claimed[0].delivery_key, claimed[0].event_id);
}

async fn concurrent_accepts_of_one_key_record_one_event(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.accept(event(key(9), 9, T0 + i)).await
        }));
    }
    let mut accepted = Vec::new();
    let mut originals = std::collections::HashSet::new();
    for task in tasks {
        match task.await.expect("task").expect("accept") {
            AcceptOutcome::Accepted => accepted.push(()),
            AcceptOutcome::Duplicate(d) => {
                originals.insert(d.event_id);
            }
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        originals.len(),
        1,
        "every duplicate names the same original"
    );
}

async fn accepted_events_are_stored_with_their_deliveries(store: Arc<dyn Store>) {
    let mut new = event(key(1), 1, T0);
    new.deliveries = vec![
        NewDelivery {
            destination: Arc::from("crm"),
            ordering_key: Some("contact-1".into()),
        },
        NewDelivery {
            destination: Arc::from("analytics"),
            ordering_key: None,
        },
    ];
    let id = new.id;
    store.accept(new).await.expect("accept");
    let stored = store.event(id).await.expect("read").expect("stored");
    assert_eq!(stored.source, "src");
    assert_eq!(stored.idempotency_key, "key-1");
    assert_eq!(stored.received_at, T0);
    assert_eq!(stored.status, EventStatus::Received);
    assert_eq!(stored.body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(stored.content_type.as_deref(), Some("application/json"));
    let deliveries: Vec<(&str, DeliveryState, Option<&str>)> = stored
        .deliveries
        .iter()
        .map(|d| (d.destination.as_str(), d.state, d.ordering_key.as_deref()))
        .collect();
    assert_eq!(
        deliveries,
        vec![
            ("crm", DeliveryState::Pending, Some("contact-1")),
            ("analytics", DeliveryState::Pending, None)
        ]
    );

    let mut no_routes = event(key(2), 2, T0);
    no_routes.deliveries.clear();
    let no_routes_id = no_routes.id;
    store.accept(no_routes).await.expect("accept");
    let stored = store
        .event(no_routes_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.status,
        EventStatus::Completed,
        "an event with nowhere to go is complete"
    );
}

async fn unknown_events_are_none(store: Arc<dyn Store>) {
    assert_eq!(store.event(Uuid::now_v7()).await.expect("read"), None);
    store.ping().await.expect("ping");
}

fn with_deliveries(mut new: NewEvent, deliveries: &[(&str, Option<&str>)]) -> NewEvent {
    new.deliveries = deliveries
        .iter()
        .map(|(d, k)| NewDelivery {
            destination: Arc::from(*d),
            ordering_key: k.map(str::to_owned),
        })
        .collect();
    new
}

fn attempt(at: UnixMillis, status: Option<u16>, outcome: AttemptOutcome) -> DeliveryAttempt {
    DeliveryAttempt {
        started_at: at,
        duration_ms: 5,
        status_code: status,
        error: status.filter(|s| *s >= 300).map(|s| format!("HTTP {s}")),
        outcome,
        captured: Vec::new(),
        may_have_reached: false,
    }
}

async fn claims_after_an_attempt_that_may_have_arrived_are_redeliveries(store: Arc<dyn Store>) {
    store.accept(event(key(1), 1, T0)).await.expect("accept");
    let claim_at = |at: UnixMillis, lease: UnixMillis| {
        let store = Arc::clone(&store);
        async move {
            store
                .claim_due_deliveries("crm", at, lease, 1)
                .await
                .expect("claim")
                .remove(0)
        }
    };
    let retry = |at: UnixMillis, may_have_reached: bool| DeliveryAttempt {
        may_have_reached,
        ..attempt(
            at,
            None,
            AttemptOutcome::Retry {
                next_attempt_at: at + 10,
            },
        )
    };
    let first = claim_at(T0, T0 + 1_000).await;
    assert!(!first.redelivery, "a first send");
    // A timeout: the request may have been processed.
    assert!(
        store
            .record_attempt(&first, retry(T0, true))
            .await
            .expect("record")
    );
    let second = claim_at(T0 + 100, T0 + 1_000).await;
    assert!(second.redelivery, "sent again after a timeout");
    // A refused connection: nothing arrived.
    assert!(
        store
            .record_attempt(&second, retry(T0 + 100, false))
            .await
            .expect("record")
    );
    let third = claim_at(T0 + 200, T0 + 300).await;
    assert!(!third.redelivery, "sent again after a connection error");
    // The worker vanished: its lease runs out and the attempt may have arrived.
    let fourth = claim_at(T0 + 400, T0 + 1_000).await;
    assert_eq!(fourth.attempt, 4);
    assert!(fourth.redelivery, "claimed again after its lease expired");
}

async fn captured_values_are_kept_with_the_delivery_and_found_by_hash(store: Arc<dyn Store>) {
    let new = with_deliveries(event(key(1), 1, T0), &[("crm", None), ("analytics", None)]);
    let event_id = new.id;
    store.accept(new).await.expect("accept");
    let second = with_deliveries(event(key(2), 2, T0 + 1), &[("crm", None)]);
    let second_id = second.id;
    store.accept(second).await.expect("accept");
    let claim = store
        .claim_due_deliveries("crm", T0 + 10, T0 + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(claim.event_id, event_id);
    let capture = |name: &str, value: &str, hash: u8| CapturedValue {
        name: name.into(),
        value: value.into(),
        search: [hash; 16],
    };
    let mut delivered = attempt(T0 + 10, Some(200), AttemptOutcome::Delivered);
    delivered.captured = vec![capture("crm_id", "c-1", 41), capture("owner", "7", 42)];
    assert!(
        store
            .record_attempt(&claim, delivered)
            .await
            .expect("record")
    );
    let found = |hash: u8| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_events(&EventQuery {
                    search: vec![[hash; 16]],
                    limit: 10,
                    ..EventQuery::default()
                })
                .await
                .expect("list")
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found(41).await, vec![event_id]);
    assert_eq!(found(42).await, vec![event_id]);
    assert!(found(43).await.is_empty());
    let stored = store.event(event_id).await.expect("read").expect("event");
    let crm = stored
        .deliveries
        .iter()
        .find(|d| d.destination == "crm")
        .expect("crm");
    assert_eq!(
        crm.captured
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_str(), c.captured_at))
            .collect::<Vec<_>>(),
        vec![("crm_id", "c-1", T0 + 15), ("owner", "7", T0 + 15)]
    );
    let analytics = stored
        .deliveries
        .iter()
        .find(|d| d.destination == "analytics")
        .expect("analytics");
    assert!(analytics.captured.is_empty());

    // A late report of a lost lease keeps nothing: the attempt log only.
    let stale = store
        .claim_due_deliveries("crm", T0 + 20, T0 + 30, 1)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(stale.event_id, second_id);
    let late = ClaimedDelivery {
        lease_token: stale.lease_token.wrapping_add(1),
        ..stale.clone()
    };
    let mut lost = attempt(T0 + 21, Some(200), AttemptOutcome::Delivered);
    lost.captured = vec![capture("crm_id", "c-2", 44)];
    assert!(!store.record_attempt(&late, lost).await.expect("record"));
    assert!(found(44).await.is_empty());

    // Retention takes the captured values with the delivery.
    let mut done = attempt(T0 + 22, Some(200), AttemptOutcome::Delivered);
    done.captured = vec![capture("crm_id", "c-3", 45)];
    assert!(store.record_attempt(&stale, done).await.expect("record"));
    let analytics_claim = store
        .claim_due_deliveries("analytics", T0 + 23, T0 + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    store
        .record_attempt(
            &analytics_claim,
            attempt(T0 + 23, Some(200), AttemptOutcome::Delivered),
        )
        .await
        .expect("record");
    assert_eq!(
        store
            .delete_finished_events("src", T0 + 1, 10)
            .await
            .expect("delete"),
        1
    );
    assert!(found(41).await.is_empty());
    assert_eq!(found(45).await, vec![second_id]);
}

async fn claims_hold_a_lease_until_it_expires(store: Arc<dyn Store>) {
    let new = with_deliveries(event(key(1), 1, T0), &[("crm", None), ("analytics", None)]);
    let event_id = new.id;
    store.accept(new).await.expect("accept");

    let claims = store
        .claim_due_deliveries("crm", T0, T0 + 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1, "one delivery per destination");
    let first = &claims[0];
    assert_eq!(
        (first.event_id, first.attempt, first.destination.as_str()),
        (event_id, 1, "crm")
    );
    assert_eq!(first.body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(first.source, "src");
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        store
            .event(event_id)
            .await
            .expect("read")
            .expect("event")
            .status,
        EventStatus::Processing
    );

    // Held: nobody else gets it before the lease runs out.
    assert!(
        store
            .claim_due_deliveries("crm", T0 + 9_999, T0 + 20_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // The other destination has its own delivery.
    assert_eq!(
        store
            .claim_due_deliveries("analytics", T0, T0 + 10_000, 10)
            .await
            .expect("claim")
            .len(),
        1
    );

    // The worker vanished: after the lease the delivery is claimed again, as a new attempt.
    let again = store
        .claim_due_deliveries("crm", T0 + 10_000, T0 + 20_000, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (first.id, 2));
    assert_ne!(again[0].lease_token, first.lease_token);

    // The stale worker's late report changes nothing but the attempt log.
    let stale = store.record_attempt(
        first,
        attempt(T0 + 11_000, Some(200), AttemptOutcome::Delivered),
    );
    assert!(!stale.await.expect("record"));
    let current = store.record_attempt(
        &again[0],
        attempt(T0 + 11_000, Some(200), AttemptOutcome::Delivered),
    );
    assert!(current.await.expect("record"));
    let stored = store.event(event_id).await.expect("read").expect("event");
    let crm = stored
        .deliveries
        .iter()
        .find(|d| d.destination == "crm")
        .expect("crm");
    assert_eq!((crm.state, crm.attempts), (DeliveryState::Delivered, 2));
    assert_eq!(crm.delivered_at, Some(T0 + 11_005));
    assert_eq!(
        store
            .delivery_attempts(crm.id)
            .await
            .expect("attempts")
            .len(),
        2
    );
    assert!(
        store
            .claim_due_deliveries("crm", T0 + 100_000, T0 + 200_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

async fn retries_wait_for_their_time(store: Arc<dyn Store>) {
    let new = with_deliveries(event(key(1), 1, T0), &[("crm", None)]);
    let event_id = new.id;
    store.accept(new).await.expect("accept");
    assert_eq!(store.next_due_at("crm").await.expect("due"), Some(T0));
    let claim = store
        .claim_due_deliveries("crm", T0, T0 + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let retry = AttemptOutcome::Retry {
        next_attempt_at: T0 + 5_000,
    };
    assert!(
        store
            .record_attempt(&claim, attempt(T0, Some(503), retry))
            .await
            .expect("record")
    );
    let stored = store.event(event_id).await.expect("read").expect("event");
    assert_eq!(stored.status, EventStatus::FailedRetryable);
    assert_eq!(stored.deliveries[0].state, DeliveryState::Retrying);
    assert_eq!(stored.deliveries[0].last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(
        store.next_due_at("crm").await.expect("due"),
        Some(T0 + 5_000)
    );
    assert!(
        store
            .claim_due_deliveries("crm", T0 + 4_999, T0 + 20_000, 1)
            .await
            .expect("claim")
            .is_empty()
    );
    let second = store
        .claim_due_deliveries("crm", T0 + 5_000, T0 + 20_000, 1)
        .await
        .expect("claim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    assert!(
        store
            .record_attempt(
                &second[0],
                attempt(T0 + 5_000, Some(200), AttemptOutcome::Delivered)
            )
            .await
            .expect("record")
    );
    assert_eq!(
        store
            .event(event_id)
            .await
            .expect("read")
            .expect("event")
            .status,
        EventStatus::Completed
    );
    let attempts = store
        .delivery_attempts(second[0].id)
        .await
        .expect("attempts");
    let summary: Vec<(u32, Option<u16>, DeliveryOutcome)> = attempts
        .iter()
        .map(|a| (a.number, a.status_code, a.outcome))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Some(503), DeliveryOutcome::Retry),
            (2, Some(200), DeliveryOutcome::Delivered)
        ]
    );
    assert_eq!(store.next_due_at("crm").await.expect("due"), None);
}

async fn dead_deliveries_keep_their_reason_and_fail_the_event(store: Arc<dyn Store>) {
    let new = with_deliveries(event(key(1), 1, T0), &[("crm", None), ("analytics", None)]);
    let event_id = new.id;
    store.accept(new).await.expect("accept");
    let crm = store
        .claim_due_deliveries("crm", T0, T0 + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let dead = AttemptOutcome::Dead {
        reason: DeadReason::Http4xx,
    };
    assert!(
        store
            .record_attempt(&crm, attempt(T0, Some(400), dead))
            .await
            .expect("record")
    );
    // One dead, one still open: the event is not final yet.
    assert_eq!(
        store
            .event(event_id)
            .await
            .expect("read")
            .expect("event")
            .status,
        EventStatus::Processing
    );
    let analytics = store
        .claim_due_deliveries("analytics", T0, T0 + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    assert!(
        store
            .record_attempt(
                &analytics,
                attempt(T0, Some(200), AttemptOutcome::Delivered)
            )
            .await
            .expect("record")
    );
    let stored = store.event(event_id).await.expect("read").expect("event");
    assert_eq!(stored.status, EventStatus::FailedTerminal);
    let crm = stored
        .deliveries
        .iter()
        .find(|d| d.destination == "crm")
        .expect("crm");
    assert_eq!(crm.state, DeliveryState::Dead);
    assert_eq!(crm.dead_reason, Some(DeadReason::Http4xx));
    assert_eq!(crm.last_error.as_deref(), Some("HTTP 400"));
    assert!(
        store
            .claim_due_deliveries("crm", T0 + 1_000_000, T0 + 2_000_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

async fn ordering_keys_release_one_delivery_at_a_time(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (n, ordering) in [(1, "k"), (2, "k"), (3, "j"), (4, "k")] {
        let new = with_deliveries(
            event(key(n), n, T0 + i64::from(n)),
            &[("crm", Some(ordering))],
        );
        ids.push(new.id);
        store.accept(new).await.expect("accept");
    }
    let unordered = with_deliveries(event(key(9), 9, T0 + 9), &[("crm", None)]);
    let unordered_id = unordered.id;
    store.accept(unordered).await.expect("accept");

    let now = T0 + 100;
    let claims = store
        .claim_due_deliveries("crm", now, now + 10_000, 10)
        .await
        .expect("claim");
    let mut claimed: Vec<Uuid> = claims.iter().map(|c| c.event_id).collect();
    claimed.sort();
    let mut expected = vec![ids[0], ids[2], unordered_id];
    expected.sort();
    assert_eq!(
        claimed, expected,
        "only the head of each key, plus unordered deliveries"
    );

    // While the head of "k" is retrying, the rest of "k" waits; other keys do not.
    let head = claims.iter().find(|c| c.event_id == ids[0]).expect("head");
    let retry = AttemptOutcome::Retry {
        next_attempt_at: now + 1_000,
    };
    store
        .record_attempt(head, attempt(now, Some(500), retry))
        .await
        .expect("record");
    assert!(
        store
            .claim_due_deliveries("crm", now + 10, now + 10_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let head = store
        .claim_due_deliveries("crm", now + 1_000, now + 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(
        head.iter().map(|c| c.event_id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    store
        .record_attempt(
            &head[0],
            attempt(now + 1_000, Some(200), AttemptOutcome::Delivered),
        )
        .await
        .expect("record");
    let next = store
        .claim_due_deliveries("crm", now + 1_001, now + 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(
        next.iter().map(|c| c.event_id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    // A dead head releases its key too.
    let dead = AttemptOutcome::Dead {
        reason: DeadReason::Http4xx,
    };
    store
        .record_attempt(&next[0], attempt(now + 1_001, Some(400), dead))
        .await
        .expect("record");
    let last = store
        .claim_due_deliveries("crm", now + 1_002, now + 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(
        last.iter().map(|c| c.event_id).collect::<Vec<_>>(),
        vec![ids[3]]
    );
}

async fn released_claims_are_due_again_without_counting_an_attempt(store: Arc<dyn Store>) {
    let new = with_deliveries(event(key(1), 1, T0), &[("crm", None)]);
    store.accept(new).await.expect("accept");
    let claim = store
        .claim_due_deliveries("crm", T0, T0 + 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    store.release_claim(&claim).await.expect("release");
    let again = store
        .claim_due_deliveries("crm", now_millis().max(T0), T0 + 60_000, 1)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 1);
}

async fn concurrent_claims_never_share_a_delivery(store: Arc<dyn Store>) {
    for n in 0..100u8 {
        let new = with_deliveries(event(key(n), n, T0), &[("crm", None)]);
        store.accept(new).await.expect("accept");
    }
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = store
                    .claim_due_deliveries("crm", T0, T0 + 60_000, 3)
                    .await
                    .expect("claim");
                if claims.is_empty() {
                    return mine;
                }
                mine.extend(claims.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let distinct: std::collections::HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 100);
    assert_eq!(distinct.len(), 100, "a delivery was claimed twice");
}

async fn concurrent_claims_keep_each_ordering_key_in_order(store: Arc<dyn Store>) {
    claim_ordered_deliveries_concurrently(&[Arc::clone(&store), store]).await;
}

/// Workers on `nodes` drain 60 deliveries over 5 ordering keys at once. Each key's deliveries
/// must be claimed one at a time (never two of a key between claim and outcome) and in intake
/// order.
async fn claim_ordered_deliveries_concurrently(nodes: &[Arc<dyn Store>]) {
    use std::collections::HashMap;
    use std::sync::Mutex;

    let mut order: HashMap<String, Vec<i64>> = HashMap::new();
    for n in 0..60u8 {
        let ordering = format!("k{}", n % 5);
        let new = with_deliveries(
            event(key(n), n, T0 + i64::from(n)),
            &[("crm", Some(&ordering))],
        );
        let id = new.id;
        let node = &nodes[usize::from(n) % nodes.len()];
        node.accept(new).await.expect("accept");
        let delivery = node
            .event(id)
            .await
            .expect("read")
            .expect("event")
            .deliveries[0]
            .id;
        order.entry(ordering).or_default().push(delivery);
    }
    let key_of: Arc<HashMap<i64, String>> = Arc::new(
        order
            .iter()
            .flat_map(|(k, ids)| ids.iter().map(move |id| (*id, k.clone())))
            .collect(),
    );
    // Per key: the delivery between its claim and its outcome, and the outcomes in order.
    let holding: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let finished: Arc<Mutex<HashMap<String, Vec<i64>>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8 {
        let store = Arc::clone(&nodes[w % nodes.len()]);
        let (key_of, holding, finished) = (
            Arc::clone(&key_of),
            Arc::clone(&holding),
            Arc::clone(&finished),
        );
        workers.push(tokio::spawn(async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while finished
                .lock()
                .expect("finished")
                .values()
                .map(Vec::len)
                .sum::<usize>()
                < 60
            {
                assert!(std::time::Instant::now() < deadline, "not drained in 30 s");
                let now = T0 + 1_000;
                let claims = store
                    .claim_due_deliveries("crm", now, now + 60_000, 2)
                    .await
                    .expect("claim");
                if claims.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                for claim in &claims {
                    let k = &key_of[&claim.id];
                    let before = holding.lock().expect("holding").insert(k.clone(), claim.id);
                    assert_eq!(before, None, "two deliveries of {k} claimed at once");
                }
                // Hold the claims a moment: a second claim of a key would land in this window.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                for claim in claims {
                    let k = key_of[&claim.id].clone();
                    // Recorded as finished before the outcome commits, so that the next claim of
                    // the key (possible only after the commit) always finds the slot free.
                    holding.lock().expect("holding").remove(&k);
                    finished
                        .lock()
                        .expect("finished")
                        .entry(k)
                        .or_default()
                        .push(claim.id);
                    let done = attempt(now, Some(200), AttemptOutcome::Delivered);
                    assert!(store.record_attempt(&claim, done).await.expect("record"));
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let finished = finished.lock().expect("finished").clone();
    assert_eq!(finished, order, "each key's deliveries in intake order");
}

async fn concurrent_outcomes_of_one_event_settle_its_status(store: Arc<dyn Store>) {
    settle_two_destinations_concurrently(&[Arc::clone(&store), store]).await;
}

/// The last outcome of an event's deliveries decides its status, even when the outcomes of its
/// two deliveries are recorded at the same moment (on two nodes).
async fn settle_two_destinations_concurrently(nodes: &[Arc<dyn Store>]) {
    let mut ids = Vec::new();
    for n in 0..40u8 {
        let new = with_deliveries(event(key(n), n, T0), &[("crm", None), ("analytics", None)]);
        ids.push(new.id);
        nodes[0].accept(new).await.expect("accept");
    }
    let mut claims = Vec::new();
    for (i, destination) in ["crm", "analytics"].into_iter().enumerate() {
        let node = Arc::clone(&nodes[i % nodes.len()]);
        let mine = node
            .claim_due_deliveries(destination, T0, T0 + 60_000, 100)
            .await
            .expect("claim");
        assert_eq!(mine.len(), 40);
        claims.push((node, mine));
    }
    let mut tasks = Vec::new();
    for (node, mine) in claims {
        for claim in mine {
            let node = Arc::clone(&node);
            tasks.push(tokio::spawn(async move {
                let done = attempt(T0 + 1, Some(200), AttemptOutcome::Delivered);
                node.record_attempt(&claim, done).await.expect("record")
            }));
        }
    }
    for task in tasks {
        assert!(task.await.expect("task"));
    }
    for id in ids {
        let stored = nodes[0].event(id).await.expect("read").expect("event");
        assert_eq!(stored.status, EventStatus::Completed, "{id}");
    }
}

/// U+0000 can come from a JSON key value or a destination's error body; it must not make a
/// store refuse the event or the outcome (how it is stored may differ per backend).
async fn text_with_nul_characters_is_stored(store: Arc<dyn Store>) {
    let mut new = with_deliveries(event(key(1), 1, T0), &[("crm", Some("contact\0-1"))]);
    new.idempotency_key = "evt\0_1".into();
    let id = new.id;
    assert_eq!(
        store.accept(new).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    let repeat = event(key(1), 1, T0 + 1);
    assert!(matches!(
        store.accept(repeat).await.expect("accept"),
        AcceptOutcome::Duplicate(Duplicate { event_id, .. }) if event_id == id
    ));
    let claim = store
        .claim_due_deliveries("crm", T0, T0 + 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let mut failed = attempt(
        T0,
        Some(500),
        AttemptOutcome::Retry {
            next_attempt_at: T0 + 1_000,
        },
    );
    failed.error = Some("HTTP 500: bad\0body".into());
    assert!(store.record_attempt(&claim, failed).await.expect("record"));
    let stored = store.event(id).await.expect("read").expect("event");
    assert_eq!(stored.deliveries[0].state, DeliveryState::Retrying);
    assert!(stored.idempotency_key.starts_with("evt"));
}

async fn queue_depths_count_open_deliveries(store: Arc<dyn Store>) {
    for n in 0..3u8 {
        let new = with_deliveries(event(key(n), n, T0), &[("crm", None), ("analytics", None)]);
        store.accept(new).await.expect("accept");
    }
    let claim = store
        .claim_due_deliveries("crm", T0, T0 + 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    store
        .record_attempt(&claim, attempt(T0, Some(200), AttemptOutcome::Delivered))
        .await
        .expect("record");
    let mut depths = store.queue_depths().await.expect("depths");
    depths.sort();
    assert_eq!(
        depths,
        vec![("analytics".to_owned(), 3), ("crm".to_owned(), 2)]
    );
}

fn ids(events: &[EventSummary]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

async fn events_are_listed_newest_first_with_filters(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for n in 0..4u8 {
        let mut new = event(key(n), n, T0 + i64::from(n) * 1_000);
        if n == 2 {
            new.source = Arc::from("other");
        }
        new.search = vec![[n % 2; 16], [9; 16]];
        made.push(new.id);
        store.accept(new).await.expect("accept");
    }
    let all = EventQuery {
        limit: 10,
        ..EventQuery::default()
    };
    let listed = store.list_events(&all).await.expect("list");
    assert_eq!(ids(&listed), vec![made[3], made[2], made[1], made[0]]);
    // Oldest first, continuing upwards from a cursor (the export's order).
    let oldest_first = EventQuery {
        oldest_first: true,
        limit: 2,
        ..EventQuery::default()
    };
    let first_page = store.list_events(&oldest_first).await.expect("list");
    assert_eq!(ids(&first_page), vec![made[0], made[1]]);
    let second_page = store
        .list_events(&EventQuery {
            after: first_page.last().map(EventSummary::cursor),
            ..oldest_first.clone()
        })
        .await
        .expect("list");
    assert_eq!(ids(&second_page), vec![made[2], made[3]]);
    assert_eq!(listed[0].source, "src");
    assert_eq!(listed[0].idempotency_key, "key-3");
    assert_eq!(listed[0].received_at, T0 + 3_000);
    assert_eq!(listed[0].status, EventStatus::Received);
    assert_eq!(listed[0].deliveries, 1);

    let check = |query: EventQuery, expected: Vec<Uuid>| {
        let store = Arc::clone(&store);
        async move {
            let listed = store.list_events(&query).await.expect("list");
            assert_eq!(ids(&listed), expected, "{query:?}");
        }
    };
    check(
        EventQuery {
            source: Some("other".into()),
            ..all.clone()
        },
        vec![made[2]],
    )
    .await;
    check(
        EventQuery {
            idempotency_key: Some("key-1".into()),
            ..all.clone()
        },
        vec![made[1]],
    )
    .await;
    check(
        EventQuery {
            search: vec![[1; 16]],
            ..all.clone()
        },
        vec![made[3], made[1]],
    )
    .await;
    check(
        EventQuery {
            search: vec![[0; 16], [9; 16]],
            ..all.clone()
        },
        vec![made[2], made[0]],
    )
    .await;
    check(
        EventQuery {
            search: vec![[0; 16], [1; 16]],
            ..all.clone()
        },
        vec![],
    )
    .await;
    check(
        EventQuery {
            since: Some(T0 + 1_000),
            until: Some(T0 + 3_000),
            ..all.clone()
        },
        vec![made[2], made[1]],
    )
    .await;
    check(
        EventQuery {
            status: Some(EventStatus::Completed),
            ..all.clone()
        },
        vec![],
    )
    .await;
    // Text no event holds, NUL included, matches nothing rather than failing.
    check(
        EventQuery {
            source: Some("o\0ther".into()),
            idempotency_key: Some("key-\0".into()),
            ..all.clone()
        },
        vec![],
    )
    .await;
    check(
        EventQuery {
            limit: 2,
            ..all.clone()
        },
        vec![made[3], made[2]],
    )
    .await;
}

async fn event_pages_return_every_event_once(store: Arc<dyn Store>) {
    // Many events share a millisecond: the id breaks the tie, so no page repeats or skips one.
    let mut made = std::collections::HashSet::new();
    for n in 0..23u8 {
        let new = event(key(n), n, T0 + i64::from(n / 5));
        made.insert(new.id);
        store.accept(new).await.expect("accept");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(&EventQuery {
                after,
                limit: 4,
                ..EventQuery::default()
            })
            .await
            .expect("list");
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        seen.extend(page.iter().map(|e| (e.received_at, e.id)));
    }
    assert_eq!(seen.len(), 23);
    let distinct: std::collections::HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct, made);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
}

fn replay_of(filter: ReplayFilter, dry_run: bool, now: UnixMillis) -> NewReplay {
    NewReplay {
        id: Uuid::now_v7(),
        filter,
        filter_json: "{}".into(),
        requested_by: "ops@example.com".into(),
        reason: "crm was down".into(),
        dry_run,
        now,
        sample_size: 10,
    }
}

/// Accepts an event with one delivery to `destination` and makes that delivery dead.
async fn dead_event(store: &Arc<dyn Store>, n: u8, destination: &str, at: UnixMillis) -> Uuid {
    let new = with_deliveries(event(key(n), n, at), &[(destination, None)]);
    let id = new.id;
    store.accept(new).await.expect("accept");
    let claim = store
        .claim_due_deliveries(destination, at, at + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let dead = AttemptOutcome::Dead {
        reason: DeadReason::Http4xx,
    };
    assert!(
        store
            .record_attempt(&claim, attempt(at, Some(400), dead))
            .await
            .expect("record")
    );
    id
}

async fn replays_requeue_matching_deliveries_with_a_fresh_budget(store: Arc<dyn Store>) {
    let dead = dead_event(&store, 1, "crm", T0).await;
    let delivered = with_deliveries(event(key(2), 2, T0 + 1), &[("crm", None)]);
    store.accept(delivered).await.expect("accept");
    let claim = store
        .claim_due_deliveries("crm", T0 + 1, T0 + 10_000, 1)
        .await
        .expect("claim")
        .remove(0);
    store
        .record_attempt(
            &claim,
            attempt(T0 + 1, Some(200), AttemptOutcome::Delivered),
        )
        .await
        .expect("record");

    let filter = ReplayFilter {
        source: Some("src".into()),
        delivery_state: Some(DeliveryState::Dead),
        ..ReplayFilter::default()
    };
    let replay = replay_of(filter, false, T0 + 50_000);
    let outcome = store.replay(&replay).await.expect("replay");
    assert_eq!((outcome.matched, outcome.skipped_in_flight), (1, 0));
    assert_eq!(outcome.destinations, vec!["crm".to_owned()]);
    assert_eq!(outcome.sample.len(), 1);
    assert_eq!(outcome.sample[0].event_id, dead);
    assert_eq!(outcome.sample[0].state, DeliveryState::Dead);

    let stored = store.event(dead).await.expect("read").expect("event");
    assert_eq!(
        stored.status,
        EventStatus::Received,
        "the event is open again"
    );
    assert_eq!(
        (stored.deliveries[0].state, stored.deliveries[0].attempts),
        (DeliveryState::Pending, 0)
    );
    assert_eq!(stored.deliveries[0].dead_reason, None);
    // Due at the replay's time, with the replay's id and attempt numbers from 1 again.
    assert!(
        store
            .claim_due_deliveries("crm", T0 + 49_999, T0 + 60_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim_due_deliveries("crm", T0 + 50_000, T0 + 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].event_id, again[0].attempt, again[0].replay_id),
        (dead, 1, Some(replay.id))
    );
    store
        .record_attempt(
            &again[0],
            attempt(T0 + 50_000, Some(200), AttemptOutcome::Delivered),
        )
        .await
        .expect("record");
    let attempts = store
        .delivery_attempts(again[0].id)
        .await
        .expect("attempts");
    let replays: Vec<Option<Uuid>> = attempts.iter().map(|a| a.replay_id).collect();
    assert_eq!(replays, vec![None, Some(replay.id)]);
    assert_eq!(
        store
            .event(dead)
            .await
            .expect("read")
            .expect("event")
            .status,
        EventStatus::Completed
    );

    let recorded = store.replays(None, 10).await.expect("replays");
    assert_eq!(recorded.len(), 1);
    let record = &recorded[0];
    assert_eq!(
        (
            record.id,
            record.created_at,
            record.requested_by.as_str(),
            record.reason.as_str(),
            record.matched,
            record.filter_json.as_str()
        ),
        (
            replay.id,
            T0 + 50_000,
            "ops@example.com",
            "crm was down",
            1,
            "{}"
        )
    );
    let (_, progress) = store
        .replay_progress(replay.id)
        .await
        .expect("progress")
        .expect("recorded");
    assert_eq!(
        progress,
        ReplayProgress {
            delivered: 1,
            ..ReplayProgress::default()
        }
    );
    assert_eq!(
        store
            .replay_progress(Uuid::now_v7())
            .await
            .expect("progress"),
        None
    );
    let history = store.event_replays(dead).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0].replay_id,
            history[0].destination.as_str(),
            history[0].reason.as_str()
        ),
        (replay.id, "crm", "crm was down")
    );

    // A second replay of the same delivery supersedes the first one's claim on it.
    let second = replay_of(
        ReplayFilter {
            event_ids: vec![dead],
            ..ReplayFilter::default()
        },
        false,
        T0 + 60_000,
    );
    assert_eq!(store.replay(&second).await.expect("replay").matched, 1);
    let (_, progress) = store
        .replay_progress(replay.id)
        .await
        .expect("progress")
        .expect("recorded");
    assert_eq!(progress.superseded, 1);
    // Where the second replay's delivery ended, with the reason it went dead for.
    let claim = store
        .claim_due_deliveries("crm", T0 + 60_000, T0 + 70_000, 1)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(claim.replay_id, Some(second.id));
    store
        .record_attempt(
            &claim,
            attempt(
                T0 + 60_000,
                None,
                AttemptOutcome::Dead {
                    reason: DeadReason::Timeout,
                },
            ),
        )
        .await
        .expect("record");
    let (_, progress) = store
        .replay_progress(second.id)
        .await
        .expect("progress")
        .expect("recorded");
    assert_eq!(
        progress,
        ReplayProgress {
            dead: 1,
            dead_by_reason: vec![(Some(DeadReason::Timeout), 1)],
            ..ReplayProgress::default()
        }
    );
    let listed = store.replays(None, 10).await.expect("replays");
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![second.id, replay.id],
        "newest first"
    );
    let page = store
        .replays(Some(listed[0].cursor()), 10)
        .await
        .expect("replays");
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![replay.id]
    );
    assert_eq!(store.event_replays(dead).await.expect("history").len(), 2);
}

async fn dry_runs_change_and_record_nothing(store: Arc<dyn Store>) {
    let dead = dead_event(&store, 1, "crm", T0).await;
    let before = store.event(dead).await.expect("read");
    let filter = ReplayFilter {
        delivery_state: Some(DeliveryState::Dead),
        ..ReplayFilter::default()
    };
    let outcome = store
        .replay(&replay_of(filter, true, T0 + 1_000))
        .await
        .expect("dry run");
    assert_eq!(outcome.matched, 1);
    assert_eq!(outcome.sample[0].event_id, dead);
    assert_eq!(store.event(dead).await.expect("read"), before);
    assert!(store.replays(None, 10).await.expect("replays").is_empty());
    assert!(store.event_replays(dead).await.expect("history").is_empty());
}

async fn replays_leave_in_flight_deliveries_alone(store: Arc<dyn Store>) {
    let new = with_deliveries(event(key(1), 1, T0), &[("crm", None), ("analytics", None)]);
    let id = new.id;
    store.accept(new).await.expect("accept");
    let claim = store
        .claim_due_deliveries("crm", T0, T0 + 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let mut replay = replay_of(
        ReplayFilter {
            event_ids: vec![id],
            ..ReplayFilter::default()
        },
        false,
        T0 + 1_000,
    );
    // Free text from an operator may hold anything, NUL included.
    replay.reason = "pasted from a terminal\0".into();
    let outcome = store.replay(&replay).await.expect("replay");
    assert_eq!((outcome.matched, outcome.skipped_in_flight), (1, 1));
    assert_eq!(outcome.destinations, vec!["analytics".to_owned()]);
    // The in-flight attempt still owns its delivery and records its outcome as usual.
    assert!(
        store
            .record_attempt(
                &claim,
                attempt(T0 + 2_000, Some(200), AttemptOutcome::Delivered)
            )
            .await
            .expect("record")
    );
    let stored = store.event(id).await.expect("read").expect("event");
    let crm = stored
        .deliveries
        .iter()
        .find(|d| d.destination == "crm")
        .expect("crm");
    assert_eq!((crm.state, crm.attempts), (DeliveryState::Delivered, 1));
    let recorded = store.replays(None, 10).await.expect("replays");
    assert_eq!((recorded[0].matched, recorded[0].skipped_in_flight), (1, 1));
}

async fn replays_match_by_event_ids_destination_and_event_status(store: Arc<dyn Store>) {
    let first = dead_event(&store, 1, "crm", T0).await;
    let second = dead_event(&store, 2, "analytics", T0 + 1).await;
    let open = with_deliveries(event(key(3), 3, T0 + 2), &[("crm", None)]);
    let open_id = open.id;
    store.accept(open).await.expect("accept");
    let count = |filter: ReplayFilter| {
        let store = Arc::clone(&store);
        async move {
            store
                .replay(&replay_of(filter, true, T0 + 10_000))
                .await
                .expect("dry run")
                .matched
        }
    };
    assert_eq!(
        count(ReplayFilter {
            event_ids: vec![first, second],
            ..ReplayFilter::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(ReplayFilter {
            event_ids: vec![first, second],
            destination: Some("analytics".into()),
            ..ReplayFilter::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(ReplayFilter {
            event_status: Some(EventStatus::FailedTerminal),
            ..ReplayFilter::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(ReplayFilter {
            destination: Some("crm".into()),
            ..ReplayFilter::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(ReplayFilter {
            delivery_state: Some(DeliveryState::Pending),
            since: Some(T0 + 2),
            until: Some(T0 + 3),
            ..ReplayFilter::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(ReplayFilter {
            event_ids: vec![open_id],
            source: Some("elsewhere".into()),
            ..ReplayFilter::default()
        })
        .await,
        0
    );
}

async fn dead_letters_are_listed_newest_first_and_grouped(store: Arc<dyn Store>) {
    let first = dead_event(&store, 1, "crm", T0).await;
    let second = dead_event(&store, 2, "crm", T0 + 1_000).await;
    let third = dead_event(&store, 3, "analytics", T0 + 2_000).await;
    // An open delivery is not dead.
    store
        .accept(with_deliveries(event(key(4), 4, T0), &[("crm", None)]))
        .await
        .expect("accept");

    let all = DeadQuery {
        limit: 10,
        ..DeadQuery::default()
    };
    let listed = store.dead_deliveries(&all).await.expect("dlq");
    let event_ids: Vec<Uuid> = listed.iter().map(|d| d.event_id).collect();
    assert_eq!(event_ids, vec![third, second, first]);
    let newest = &listed[0];
    assert_eq!(
        (
            newest.destination.as_str(),
            newest.source.as_str(),
            newest.reason,
            newest.last_error.as_deref(),
            newest.attempts,
            newest.died_at,
            newest.idempotency_key.as_str()
        ),
        (
            "analytics",
            "src",
            Some(DeadReason::Http4xx),
            Some("HTTP 400"),
            1,
            T0 + 2_005,
            "key-3"
        )
    );
    assert_eq!(&newest.body[..], b"{\"a\":1}", "the body, for the preview");
    let recent = store
        .dead_deliveries(&DeadQuery {
            since: Some(T0 + 1_005),
            ..all.clone()
        })
        .await
        .expect("dlq");
    assert_eq!(
        recent.iter().map(|d| d.event_id).collect::<Vec<_>>(),
        vec![third, second],
        "since: died at or after"
    );
    let crm = store
        .dead_deliveries(&DeadQuery {
            destination: Some("crm".into()),
            ..all.clone()
        })
        .await
        .expect("dlq");
    assert_eq!(
        crm.iter().map(|d| d.event_id).collect::<Vec<_>>(),
        vec![second, first]
    );
    let page = store
        .dead_deliveries(&DeadQuery {
            after: Some(listed[0].cursor()),
            limit: 1,
            ..all.clone()
        })
        .await
        .expect("dlq");
    assert_eq!(
        page.iter().map(|d| d.event_id).collect::<Vec<_>>(),
        vec![second]
    );

    let groups = store.dead_letter_groups(None).await.expect("groups");
    assert_eq!(
        groups,
        vec![
            DeadLetterGroup {
                destination: "crm".into(),
                reason: Some(DeadReason::Http4xx),
                count: 2,
                last_error: Some("HTTP 400".into()),
                last_at: T0 + 1_005,
            },
            DeadLetterGroup {
                destination: "analytics".into(),
                reason: Some(DeadReason::Http4xx),
                count: 1,
                last_error: Some("HTTP 400".into()),
                last_at: T0 + 2_005,
            },
        ]
    );
    let recent = store
        .dead_letter_groups(Some(T0 + 1_006))
        .await
        .expect("groups");
    assert_eq!(
        recent
            .iter()
            .map(|g| (g.destination.as_str(), g.count))
            .collect::<Vec<_>>(),
        vec![("analytics", 1)],
        "since: only deaths at or after it are counted"
    );
}

// What only a shared database can show: several nodes (stores) on one schema.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_accept_one_key_once_between_them() {
    let Some(fixture) = postgres().await else {
        return;
    };
    let nodes = [fixture.store.clone(), fixture.another_node().await];
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = Arc::clone(&nodes[i % 2]);
        tasks.push(tokio::spawn(async move {
            store.accept(event(key(9), 9, T0 + i as i64)).await
        }));
    }
    let mut accepted = 0;
    let mut originals = std::collections::HashSet::new();
    for task in tasks {
        match task.await.expect("task").expect("accept") {
            AcceptOutcome::Accepted => accepted += 1,
            AcceptOutcome::Duplicate(d) => {
                originals.insert(d.event_id);
            }
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(originals.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_never_claim_one_delivery_together() {
    let Some(fixture) = postgres().await else {
        return;
    };
    let nodes = [fixture.store.clone(), fixture.another_node().await];
    for n in 0..100u8 {
        let new = with_deliveries(event(key(n), n, T0), &[("crm", None)]);
        nodes[usize::from(n) % 2].accept(new).await.expect("accept");
    }
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&nodes[i % 2]);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = store
                    .claim_due_deliveries("crm", T0, T0 + 60_000, 3)
                    .await
                    .expect("claim");
                if claims.is_empty() {
                    return mine;
                }
                mine.extend(claims.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let distinct: std::collections::HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (100, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_keep_each_ordering_key_in_order() {
    let Some(fixture) = postgres().await else {
        return;
    };
    claim_ordered_deliveries_concurrently(&[fixture.store.clone(), fixture.another_node().await])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_settle_one_event_s_status_together() {
    let Some(fixture) = postgres().await else {
        return;
    };
    settle_two_destinations_concurrently(&[fixture.store.clone(), fixture.another_node().await])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_starting_together_migrate_once() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let opens = (0..4).map(|_| open_postgres(&schema, 2));
    let mut stores = futures_util::future::join_all(opens).await;
    let fixture = PostgresFixture {
        store: stores.remove(0),
        schema,
    };
    for store in std::iter::once(&fixture.store).chain(&stores) {
        store.ping().await.expect("ping");
    }
    let new = event(key(1), 1, T0);
    assert_eq!(
        stores[0].accept(new).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    assert!(matches!(
        fixture
            .store
            .accept(event(key(1), 1, T0))
            .await
            .expect("accept"),
        AcceptOutcome::Duplicate(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_neighbours_survive_a_rejected_request() {
    let Some(fixture) = postgres().await else {
        return;
    };
    // An event id that is already taken makes the server reject that request's insert (ids are
    // UUIDv7 and never repeat in practice; it stands for any request the server refuses). Only
    // that request fails; the rest of its batch is accepted.
    let taken = event(key(200), 200, T0);
    let taken_id = taken.id;
    fixture.store.accept(taken).await.expect("accept");
    let mut tasks = Vec::new();
    for n in 0..32u8 {
        let store = fixture.store.clone();
        let mut new = event(key(n), n, T0);
        if n == 7 {
            new.id = taken_id;
        }
        tasks.push(tokio::spawn(async move { store.accept(new).await }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    for (n, outcome) in outcomes.iter().enumerate() {
        if n == 7 {
            assert!(
                matches!(&outcome, Err(e) if e.kind() == StoreErrorKind::Internal),
                "{outcome:?}"
            );
        } else {
            assert!(
                matches!(outcome, Ok(AcceptOutcome::Accepted)),
                "{n}: {outcome:?}"
            );
        }
    }
}

async fn a_working_store_is_writable(store: Arc<dyn Store>) {
    store.writable().await.expect("writable");
    // The probe leaves nothing behind that intake would see, and can be repeated at will.
    store.writable().await.expect("writable again");
    assert!(store.queue_depths().await.expect("depths").is_empty());
    assert_eq!(
        store.accept(event(key(1), 1, T0)).await.expect("accept"),
        AcceptOutcome::Accepted
    );
    store.writable().await.expect("writable beside real writes");
}

/// Claims every due delivery to `destination` at `at` and records `outcome` for the one of
/// `event_id`; the others are given back.
async fn settle(
    store: &Arc<dyn Store>,
    destination: &str,
    event_id: Uuid,
    at: UnixMillis,
    outcome: AttemptOutcome,
) {
    let claims = store
        .claim_due_deliveries(destination, at, at + 10_000, 100)
        .await
        .expect("claim");
    for claim in claims {
        if claim.event_id == event_id {
            let status = matches!(outcome, AttemptOutcome::Delivered).then_some(200);
            assert!(
                store
                    .record_attempt(&claim, attempt(at, status.or(Some(503)), outcome.clone()))
                    .await
                    .expect("record")
            );
        } else {
            store.release_claim(&claim).await.expect("release");
        }
    }
}

async fn retention_deletes_finished_events_and_keeps_their_keys(store: Arc<dyn Store>) {
    // Finished: delivered, dead then replayed and delivered (a replay link), no deliveries.
    let mut delivered = event(key(1), 1, T0);
    delivered.search = vec![[9; 16]];
    let delivered_id = delivered.id;
    store.accept(delivered).await.expect("accept");
    settle(
        &store,
        "crm",
        delivered_id,
        T0 + 1,
        AttemptOutcome::Delivered,
    )
    .await;
    let replayed_id = dead_event(&store, 2, "crm", T0 + 2).await;
    let replay = replay_of(
        ReplayFilter {
            event_ids: vec![replayed_id],
            ..ReplayFilter::default()
        },
        false,
        T0 + 3,
    );
    assert_eq!(store.replay(&replay).await.expect("replay").matched, 1);
    settle(
        &store,
        "crm",
        replayed_id,
        T0 + 4,
        AttemptOutcome::Delivered,
    )
    .await;
    let unrouted = with_deliveries(event(key(3), 3, T0 + 5), &[]);
    let unrouted_id = unrouted.id;
    store.accept(unrouted).await.expect("accept");
    // Unfinished, as old: one delivery retrying while the other was delivered.
    let retrying = with_deliveries(event(key(4), 4, T0 + 6), &[("crm", None), ("bus", None)]);
    let retrying_id = retrying.id;
    store.accept(retrying).await.expect("accept");
    settle(
        &store,
        "bus",
        retrying_id,
        T0 + 7,
        AttemptOutcome::Delivered,
    )
    .await;
    let retry = AttemptOutcome::Retry {
        next_attempt_at: T0 + 3_600_000,
    };
    settle(&store, "crm", retrying_id, T0 + 7, retry).await;
    // Finished but young, and finished but of another source.
    let young = with_deliveries(event(key(5), 5, T0 + 20_000), &[]);
    let young_id = young.id;
    store.accept(young).await.expect("accept");
    let mut other = with_deliveries(event(key(6), 6, T0), &[]);
    other.source = Arc::from("other");
    let other_id = other.id;
    store.accept(other).await.expect("accept");

    let deleted = store
        .delete_finished_events("src", T0 + 10_000, 100)
        .await
        .expect("retention");
    assert_eq!(deleted, 3);
    for gone in [delivered_id, replayed_id, unrouted_id] {
        assert_eq!(store.event(gone).await.expect("read"), None);
        assert!(store.event_replays(gone).await.expect("replays").is_empty());
    }
    for kept in [retrying_id, young_id, other_id] {
        assert!(store.event(kept).await.expect("read").is_some(), "{kept}");
    }
    let by_search = store
        .list_events(&EventQuery {
            search: vec![[9; 16]],
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("list");
    assert!(by_search.is_empty(), "search rows go with the event");
    // The replay's record stays: who replayed what, and when.
    assert_eq!(store.replays(None, 10).await.expect("replays").len(), 1);
    // The deleted event's key still answers repeats with the original id until it expires.
    assert_eq!(
        store
            .accept(event(key(1), 1, T0 + 30_000))
            .await
            .expect("accept"),
        AcceptOutcome::Duplicate(Duplicate {
            event_id: delivered_id,
            reason: DuplicateReason::Key,
            conflict: false
        })
    );
    assert_eq!(store.live_dedupe_keys(T0 + 30_000).await.expect("keys"), 6);
    assert_eq!(store.live_dedupe_keys(T0 + 60_003).await.expect("keys"), 3);
    // Nothing finished and old enough is left.
    assert_eq!(
        store
            .delete_finished_events("src", T0 + 10_000, 100)
            .await
            .expect("retention"),
        0
    );
    // Once its last delivery is finished, the retrying event goes too.
    let delivered_late = AttemptOutcome::Delivered;
    settle(&store, "crm", retrying_id, T0 + 3_600_000, delivered_late).await;
    assert_eq!(
        store
            .delete_finished_events("src", T0 + 10_000, 100)
            .await
            .expect("retention"),
        1
    );
    assert_eq!(store.event(retrying_id).await.expect("read"), None);
}

async fn retention_deletes_in_batches_of_the_given_size(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for n in 1..=5u8 {
        let new = with_deliveries(event(key(n), n, T0 + i64::from(n)), &[]);
        ids.push(new.id);
        store.accept(new).await.expect("accept");
    }
    let mut batches = Vec::new();
    loop {
        let deleted = store
            .delete_finished_events("src", T0 + 1_000, 2)
            .await
            .expect("retention");
        batches.push(deleted);
        if deleted < 2 {
            break;
        }
    }
    assert_eq!(batches, vec![2, 2, 1]);
    for id in ids {
        assert_eq!(store.event(id).await.expect("read"), None);
    }
}

fn gate_claim(destination: &str, now: UnixMillis, limit: usize, pace: Option<Pace>) -> GateClaim {
    GateClaim {
        destination: destination.to_owned(),
        now,
        lease_until: now + 60_000,
        limit,
        pace,
    }
}

fn pause(reason: &str, at: UnixMillis) -> PauseChange {
    PauseChange {
        paused: true,
        reason: Some(reason.to_owned()),
        requested_by: "ops".to_owned(),
        at,
    }
}

async fn a_paused_destination_claims_nothing_until_resumed(store: Arc<dyn Store>) {
    for n in 1..=2 {
        let new = with_deliveries(event(key(n), n, T0), &[("crm", None), ("analytics", None)]);
        store.accept(new).await.expect("accept");
    }
    store
        .set_paused("crm", &pause("CRM deploy", T0))
        .await
        .expect("pause");
    // Pausing again keeps when the pause began; the newer reason is shown.
    store
        .set_paused("crm", &pause("CRM deploy, CHG-42", T0 + 5))
        .await
        .expect("pause again");
    let held = store
        .claim_through_gate(&gate_claim("crm", T0 + 10, 10, None))
        .await
        .expect("claim");
    assert_eq!(held.gate, Gate::Paused);
    assert!(held.deliveries.is_empty());
    assert_eq!(held.row.state(), DestinationState::Paused);
    // Another destination is not held back.
    let other = store
        .claim_through_gate(&gate_claim("analytics", T0 + 10, 10, None))
        .await
        .expect("claim");
    assert_eq!((other.gate, other.deliveries.len()), (Gate::Open, 2));

    let overview = store.destination_overview(T0).await.expect("overview");
    let crm = overview.iter().find(|o| o.name == "crm").expect("crm");
    assert_eq!(crm.row.state(), DestinationState::Paused);
    assert_eq!(crm.paused_reason.as_deref(), Some("CRM deploy, CHG-42"));
    assert_eq!(crm.paused_by.as_deref(), Some("ops"));
    assert_eq!(crm.paused_at, Some(T0));
    assert_eq!(crm.queue_depth, 2);
    assert_eq!(crm.oldest_pending_at, Some(T0));
    // Nothing was attempted while paused.
    assert_eq!((crm.delivered_recent, crm.failed_recent), (0, 0));

    let resume = PauseChange {
        paused: false,
        reason: None,
        requested_by: "ops".to_owned(),
        at: T0 + 20,
    };
    store.set_paused("crm", &resume).await.expect("resume");
    let drained = store
        .claim_through_gate(&gate_claim("crm", T0 + 30, 10, None))
        .await
        .expect("claim");
    assert_eq!(drained.gate, Gate::Open);
    assert_eq!(drained.deliveries.len(), 2);
    assert!(
        drained
            .deliveries
            .iter()
            .all(|d| d.attempt == 1 && !d.probe)
    );
    let overview = store.destination_overview(T0).await.expect("overview");
    let crm = overview.iter().find(|o| o.name == "crm").expect("crm");
    assert_eq!(crm.row.state(), DestinationState::Active);
    assert_eq!(crm.paused_reason, None);
}

async fn an_open_circuit_lets_one_uncounted_probe_out_after_its_cooldown(store: Arc<dyn Store>) {
    for n in 1..=3 {
        store.accept(event(key(n), n, T0)).await.expect("accept");
    }
    let open = Circuit::open(T0, std::time::Duration::from_secs(30));
    store.set_circuit("crm", open).await.expect("open");
    let waiting = store
        .claim_through_gate(&gate_claim("crm", T0 + 1_000, 10, None))
        .await
        .expect("claim");
    assert_eq!(waiting.gate, Gate::CircuitOpen { until: T0 + 30_000 });
    assert!(waiting.deliveries.is_empty());
    assert_eq!(waiting.row.state(), DestinationState::Open);

    // The cooldown is over: one probe, whose attempt is numbered but not counted.
    let probe = store
        .claim_through_gate(&gate_claim("crm", T0 + 30_000, 10, None))
        .await
        .expect("claim");
    assert_eq!(probe.gate, Gate::Probe);
    assert_eq!(probe.deliveries.len(), 1);
    assert!(probe.deliveries[0].probe);
    assert_eq!(probe.deliveries[0].attempt, 1);
    assert_eq!(probe.row.circuit.phase, CircuitPhase::HalfOpen);
    // While the probe is out nobody else goes, on any node.
    let meanwhile = store
        .claim_through_gate(&gate_claim("crm", T0 + 30_001, 10, None))
        .await
        .expect("claim");
    assert_eq!(meanwhile.gate, Gate::CircuitOpen { until: T0 + 90_000 });
    let probe = probe.deliveries[0].clone();
    let failed = attempt(
        T0 + 30_000,
        Some(503),
        AttemptOutcome::Retry {
            next_attempt_at: T0 + 30_100,
        },
    );
    assert!(store.record_attempt(&probe, failed).await.expect("record"));
    let record = store
        .event(probe.event_id)
        .await
        .expect("read")
        .expect("event");
    assert_eq!(record.deliveries[0].attempts, 0, "a probe is not counted");
    assert_eq!(record.deliveries[0].state, DeliveryState::Retrying);

    // An answer closes the circuit: everything due goes again, attempts counted as ever.
    store
        .set_circuit("crm", Circuit::CLOSED)
        .await
        .expect("close");
    let drained = store
        .claim_through_gate(&gate_claim("crm", T0 + 31_000, 10, None))
        .await
        .expect("claim");
    assert_eq!(drained.gate, Gate::Open);
    assert_eq!(drained.deliveries.len(), 3);
    assert!(
        drained
            .deliveries
            .iter()
            .all(|d| d.attempt == 1 && !d.probe)
    );

    // A released probe gives back no attempt either.
    let second = store.accept(event(key(9), 9, T0)).await.expect("accept");
    assert_eq!(second, AcceptOutcome::Accepted);
    store
        .set_circuit("crm", Circuit::open(T0, std::time::Duration::from_secs(1)))
        .await
        .expect("open");
    let probe = store
        .claim_through_gate(&gate_claim("crm", T0 + 40_000, 10, None))
        .await
        .expect("claim")
        .deliveries
        .remove(0);
    store.release_claim(&probe).await.expect("release");
    let record = store
        .event(probe.event_id)
        .await
        .expect("read")
        .expect("event");
    assert_eq!(record.deliveries[0].attempts, 0);
    assert_eq!(record.deliveries[0].state, DeliveryState::Pending);
}

async fn concurrent_claims_share_one_pace(store: Arc<dyn Store>) {
    claim_with_one_pace(&[Arc::clone(&store), store]).await;
}

/// Workers on `nodes` claim at the same moment from a bucket of 3 (10/s): 3 deliveries between
/// them, then one more per 100 ms.
async fn claim_with_one_pace(nodes: &[Arc<dyn Store>]) {
    for n in 0..20u8 {
        nodes[0].accept(event(key(n), n, T0)).await.expect("accept");
    }
    let pace = Pace {
        per_second: 10,
        burst: 3,
    };
    let claim_all = |now: UnixMillis| {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&nodes[i % nodes.len()]);
                tokio::spawn(async move {
                    store
                        .claim_through_gate(&gate_claim("crm", now, 5, Some(pace)))
                        .await
                        .expect("claim")
                })
            })
            .collect();
        async move {
            let mut claimed = 0;
            let mut limited = 0;
            for task in tasks {
                let claim = task.await.expect("task");
                claimed += claim.deliveries.len();
                if matches!(claim.gate, Gate::RateLimited { .. }) {
                    limited += 1;
                }
            }
            (claimed, limited)
        }
    };
    let (claimed, limited) = claim_all(T0).await;
    assert_eq!(claimed, 3, "the burst");
    assert!(limited >= 1);
    assert_eq!(claim_all(T0 + 100).await.0, 1);
    assert_eq!(claim_all(T0 + 350).await.0, 2);
    let waiting = nodes[0]
        .claim_through_gate(&gate_claim("crm", T0 + 360, 5, Some(pace)))
        .await
        .expect("claim");
    assert_eq!(waiting.gate, Gate::RateLimited { until: T0 + 400 });
}

async fn the_destination_overview_counts_queue_and_recent_outcomes(store: Arc<dyn Store>) {
    for n in 1..=3 {
        store
            .accept(event(key(n), n, T0 + i64::from(n)))
            .await
            .expect("accept");
    }
    let claims = store
        .claim_through_gate(&gate_claim("crm", T0 + 10, 2, None))
        .await
        .expect("claim")
        .deliveries;
    assert_eq!(claims.len(), 2);
    let delivered = attempt(T0 + 10, Some(200), AttemptOutcome::Delivered);
    assert!(
        store
            .record_attempt(&claims[0], delivered)
            .await
            .expect("record")
    );
    let failed = attempt(
        T0 + 10,
        Some(503),
        AttemptOutcome::Retry {
            next_attempt_at: T0 + 1_000,
        },
    );
    assert!(
        store
            .record_attempt(&claims[1], failed)
            .await
            .expect("record")
    );
    let overview = store.destination_overview(T0).await.expect("overview");
    let crm = overview.iter().find(|o| o.name == "crm").expect("crm");
    assert_eq!(crm.row.state(), DestinationState::Active);
    assert_eq!(crm.queue_depth, 2, "one retrying, one pending");
    assert_eq!(crm.oldest_pending_at, Some(T0 + 2));
    assert_eq!((crm.delivered_recent, crm.failed_recent), (1, 1));
    // Outcomes before the window are not counted.
    let later = store.destination_overview(T0 + 20).await.expect("overview");
    let crm = later.iter().find(|o| o.name == "crm").expect("crm");
    assert_eq!((crm.delivered_recent, crm.failed_recent), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_one_pace_and_one_pause() {
    let Some(fixture) = postgres().await else {
        return;
    };
    let nodes = [fixture.store.clone(), fixture.another_node().await];
    claim_with_one_pace(&nodes).await;
    nodes[0]
        .set_paused("crm", &pause("deploy", T0))
        .await
        .expect("pause");
    let held = nodes[1]
        .claim_through_gate(&gate_claim("crm", T0 + 10_000, 5, None))
        .await
        .expect("claim");
    assert_eq!(held.gate, Gate::Paused);
}

async fn node_stats_are_shared_replaced_and_forgotten(store: Arc<dyn Store>) {
    store
        .save_node_stats("a", vec![(10, b"a10".to_vec()), (11, b"a11".to_vec())], 0)
        .await
        .expect("save");
    store
        .save_node_stats("b", vec![(11, b"b11".to_vec())], 0)
        .await
        .expect("save");
    // A node rewrites its latest slot as it gains recordings.
    store
        .save_node_stats("b", vec![(11, b"b11+".to_vec()), (12, b"b12".to_vec())], 0)
        .await
        .expect("save");
    let mut seen = store.node_stats(11, "a").await.expect("read");
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("b".to_owned(), 11, b"b11+".to_vec()),
            ("b".to_owned(), 12, b"b12".to_vec())
        ]
    );
    assert_eq!(store.node_stats(10, "b").await.expect("read").len(), 2);
    // Slots before `forget_before` go, every node's.
    store
        .save_node_stats("b", vec![(13, b"b13".to_vec())], 12)
        .await
        .expect("save");
    let mut left = store.node_stats(0, "nobody").await.expect("read");
    left.sort();
    let slots: Vec<(String, i64)> = left.into_iter().map(|(n, s, _)| (n, s)).collect();
    assert_eq!(slots, vec![("b".to_owned(), 12), ("b".to_owned(), 13)]);
}
