//! Intake when the store cannot take writes: 503 with `Retry-After`, nothing acknowledged,
//! and service resumes by itself. The real intake router runs in-process over a store wrapper
//! that injects the fault in front of a real SQLite store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use oncehook::app::Runtime;
use oncehook::config::Config;
use oncehook::domain::circuit::Circuit;
use oncehook::intake::{Intake, router};
use oncehook::store::sqlite::{SqliteOptions, SqliteStore};
use oncehook::store::*;
use oncehook::verify::{Verifier, VerifyConfig};
use oncehook::wakeups::Wakeups;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A real store that can be switched "unreachable".
struct Switchable {
    inner: SqliteStore,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("injected outage"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl IntakeStore for Switchable {
    async fn accept(&self, event: NewEvent) -> Result<AcceptOutcome, StoreError> {
        self.check()?;
        self.inner.accept(event).await
    }
    async fn purge_expired(&self, now: UnixMillis) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge_expired(now).await
    }
    async fn delete_finished_events(
        &self,
        source: &str,
        received_before: UnixMillis,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner
            .delete_finished_events(source, received_before, limit)
            .await
    }
    async fn live_dedupe_keys(&self, now: UnixMillis) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.live_dedupe_keys(now).await
    }
}

#[async_trait]
impl DeliveryQueue for Switchable {
    async fn claim_due_deliveries(
        &self,
        destination: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.check()?;
        self.inner
            .claim_due_deliveries(destination, now, lease_until, limit)
            .await
    }
    async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.record_attempt(claim, attempt).await
    }
    async fn release_claim(&self, claim: &ClaimedDelivery) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_claim(claim).await
    }
    async fn next_due_at(&self, destination: &str) -> Result<Option<UnixMillis>, StoreError> {
        self.check()?;
        self.inner.next_due_at(destination).await
    }
    async fn queue_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.check()?;
        self.inner.queue_depths().await
    }
}

#[async_trait]
impl DestinationControl for Switchable {
    async fn claim_through_gate(&self, request: &GateClaim) -> Result<LaneClaim, StoreError> {
        self.check()?;
        self.inner.claim_through_gate(request).await
    }
    async fn set_circuit(&self, destination: &str, circuit: Circuit) -> Result<(), StoreError> {
        self.check()?;
        self.inner.set_circuit(destination, circuit).await
    }
    async fn set_paused(&self, destination: &str, change: &PauseChange) -> Result<(), StoreError> {
        self.check()?;
        self.inner.set_paused(destination, change).await
    }
    async fn destination_overview(
        &self,
        recent_since: UnixMillis,
    ) -> Result<Vec<DestinationOverview>, StoreError> {
        self.check()?;
        self.inner.destination_overview(recent_since).await
    }
}

#[async_trait]
impl AdminQueries for Switchable {
    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError> {
        self.check()?;
        self.inner.event(id).await
    }
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        self.check()?;
        self.inner.list_events(query).await
    }
    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        self.check()?;
        self.inner.delivery_attempts(delivery_id).await
    }
    async fn dead_deliveries(&self, query: &DeadQuery) -> Result<Vec<DeadDelivery>, StoreError> {
        self.check()?;
        self.inner.dead_deliveries(query).await
    }
    async fn dead_letter_groups(
        &self,
        since: Option<UnixMillis>,
    ) -> Result<Vec<DeadLetterGroup>, StoreError> {
        self.check()?;
        self.inner.dead_letter_groups(since).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn save_node_stats(
        &self,
        node: &str,
        slots: Vec<(i64, Vec<u8>)>,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_node_stats(node, slots, forget_before).await
    }
    async fn node_stats(
        &self,
        first: i64,
        except: &str,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, StoreError> {
        self.check()?;
        self.inner.node_stats(first, except).await
    }
    async fn writable(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.writable().await
    }
}

#[async_trait]
impl ReplayStore for Switchable {
    async fn replay(&self, replay: &NewReplay) -> Result<ReplayOutcome, StoreError> {
        self.check()?;
        self.inner.replay(replay).await
    }
    async fn replays(
        &self,
        after: Option<Cursor<Uuid>>,
        limit: usize,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        self.check()?;
        self.inner.replays(after, limit).await
    }
    async fn replay_progress(
        &self,
        id: Uuid,
    ) -> Result<Option<(ReplayRecord, ReplayProgress)>, StoreError> {
        self.check()?;
        self.inner.replay_progress(id).await
    }
    async fn event_replays(&self, event_id: Uuid) -> Result<Vec<DeliveryReplay>, StoreError> {
        self.check()?;
        self.inner.event_replays(event_id).await
    }
}

const CONFIG: &str = r#"
[[sources]]
name = "gh"
verify = { scheme = "github", secrets = ["outage-secret"] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_gets_503_with_retry_after_and_nothing_is_acknowledged() {
    let dir = tempfile::tempdir().expect("dir");
    let config =
        Config::from_toml(CONFIG, Path::new("test.toml"), dir.path(), &|_| None).expect("config");
    let inner = SqliteStore::open(SqliteOptions {
        path: dir.path().join("db.sqlite"),
        batch_max: 16,
        queue_max: 64,
    })
    .expect("store");
    let store = Arc::new(Switchable {
        inner,
        down: AtomicBool::new(true),
    });
    let runtime = Runtime::build(&config).expect("runtime");
    let intake = Intake::new(
        runtime.intake,
        store.clone(),
        Arc::new(Wakeups::new(
            config.destinations.iter().map(|d| d.name.as_str()),
        )),
        CancellationToken::new(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/gh",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(intake))).await });

    let verify: VerifyConfig =
        toml::from_str("scheme = \"github\"\nsecrets = [\"outage-secret\"]").expect("verify");
    let verifier = Verifier::from_config(&verify).expect("verifier");
    let body = br#"{"id":"evt_1"}"#;
    let client = reqwest::Client::new();
    let send = || {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(&body[..]);
        for (name, value) in verifier.sign(body, "delivery-1", unix_now()) {
            request = request.header(name, value);
        }
        request.send()
    };
    for _ in 0..2 {
        let response = send().await.expect("response");
        assert_eq!(response.status(), 503);
        assert!(response.headers().get("retry-after").is_some());
        let json: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("text")).expect("json");
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("unavailable")),
            "{json}"
        );
    }
    // Back up: the provider's retry is accepted once, then a duplicate.
    store.down.store(false, Ordering::SeqCst);
    let accepted = send().await.expect("response");
    assert_eq!(accepted.status(), 202);
    let duplicate = send().await.expect("response");
    assert_eq!(duplicate.status(), 200);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
