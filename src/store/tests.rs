//! The store contract, tested once and run against every backend.
//!
//! Each behaviour is an `async fn(Arc<dyn Store>)`; `conformance!` instantiates it per backend
//! with a fresh database.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::sqlite::{SqliteOptions, SqliteStore};
use super::*;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::key::DedupeKey;

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
    };
}

conformance!(
    accepts_once_then_reports_duplicates,
    same_key_with_other_content_is_a_conflict,
    keys_are_new_again_after_their_ttl,
    purge_removes_only_expired_keys,
    near_duplicates_match_by_fingerprint_within_the_window,
    concurrent_accepts_of_one_key_record_one_event,
    accepted_events_are_stored_with_their_deliveries,
    unknown_events_are_none,
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
        near_duplicate: None,
        content_type: Some("application/json".into()),
        headers_json: "{}".into(),
        body: Bytes::from_static(b"{\"a\":1}"),
        deliveries: vec![NewDelivery {
            destination: Arc::from("crm"),
            ordering_key: None,
        }],
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
    old.near_duplicate = Some(NearDuplicateCheck {
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
        Some(NearDuplicateCheck {
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
    assert_eq!(stored.status, "received");
    assert_eq!(stored.body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(stored.content_type.as_deref(), Some("application/json"));
    let deliveries: Vec<(&str, &str, Option<&str>)> = stored
        .deliveries
        .iter()
        .map(|d| {
            (
                d.destination.as_str(),
                d.state.as_str(),
                d.ordering_key.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        vec![
            ("crm", "pending", Some("contact-1")),
            ("analytics", "pending", None)
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
        stored.status, "completed",
        "an event with nowhere to go is complete"
    );
}

async fn unknown_events_are_none(store: Arc<dyn Store>) {
    assert_eq!(store.event(Uuid::now_v7()).await.expect("read"), None);
    store.ping().await.expect("ping");
}
