//! A lane stepped by hand: a real SQLite store, a real HTTP destination on 127.0.0.1, and a
//! clock the test sets, so due times and backoff are exact instead of slept through.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use uuid::Uuid;

use super::*;
use crate::clock::UnixMillis;
use crate::domain::circuit::BreakerPolicy;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::key::DedupeKey;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{AcceptOutcome, NewDelivery, NewEvent};

const T0: UnixMillis = 1_800_000_000_000;

/// A clock that only moves when the test moves it.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_millis(&self) -> UnixMillis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A destination answering each request with the next status of its script (the last one
/// repeats) and `Retry-After: 10`, counting the requests.
struct ScriptedDestination {
    url: String,
    requests: Arc<AtomicUsize>,
}

async fn destination(script: &'static [u16]) -> ScriptedDestination {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let status = script[n.min(script.len() - 1)];
            // Failures ask for 10 s: the backoff's floor, so the retry's time is exact.
            async move {
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    [(axum::http::header::RETRY_AFTER, "10")],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ScriptedDestination { url, requests }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    lane: Lane,
    tasks: TaskTracker,
}

impl Harness {
    fn new(url: &str, concurrency: usize) -> Harness {
        Harness::with_gate(url, concurrency, None, None)
    }

    fn with_gate(
        url: &str,
        concurrency: usize,
        pace: Option<Pace>,
        breaker: Option<BreakerPolicy>,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: dir.path().join("lane.db"),
                batch_max: 64,
                queue_max: 1024,
            })
            .expect("store"),
        );
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let tasks = TaskTracker::new();
        let destination = Arc::new(Destination {
            name: Arc::from("crm"),
            url: url.parse().expect("url"),
            timeout: Duration::from_secs(5),
            policy: RetryPolicy {
                base: Duration::from_secs(10),
                max: Duration::from_secs(10),
                max_attempts: 3,
            },
            concurrency,
            signer: None,
            headers: HeaderMap::new(),
            bus: None,
            pace,
            breaker,
            response_capture: None,
        });
        let shared = LaneShared {
            transport: Arc::new(super::transport::Transport::new(
                &destination,
                &reqwest::Client::new(),
            )),
            transforms: Arc::default(),
            destination,
            store: Arc::clone(&store),
            cipher: None,
            wake: Arc::new(Notify::new()),
            hidden_fields: Arc::default(),
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            health: Health::new(Arc::from("crm"), breaker),
        };
        let lane = Lane::new(
            shared,
            CancellationToken::new(),
            Duration::from_secs(5),
            tasks.clone(),
        );
        Harness {
            _dir: dir,
            store,
            clock,
            lane,
            tasks,
        }
    }

    async fn accept(&self, n: u8) -> Uuid {
        let now = self.clock.now_millis();
        let event = NewEvent {
            id: Uuid::now_v7(),
            source: Arc::from("forms"),
            received_at: now,
            idempotency_key: format!("k-{n}"),
            dedupe_key: DedupeKey([n; 16]),
            delivery_key: DedupeKey([n; 16]).delivery_key(),
            fingerprint: Fingerprint([n; 32]),
            dedupe_expires_at: now + 60_000,
            near_duplicate: None,
            replay_guard: None,
            content_type: Some("application/json".into()),
            headers_json: "{}".into(),
            body: Bytes::from_static(b"{}"),
            deliveries: vec![NewDelivery {
                destination: Arc::from("crm"),
                ordering_key: None,
            }],
            search: Vec::new(),
        };
        let id = event.id;
        assert_eq!(
            self.store.accept(event).await.expect("accept"),
            AcceptOutcome::Accepted
        );
        id
    }

    /// Runs one step and waits for the attempts it started to be recorded.
    async fn step(&self) -> Step {
        let step = self.lane.step().await;
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
        step
    }

    async fn state(&self, id: Uuid) -> (DeliveryState, u32) {
        let event = self.store.event(id).await.expect("read").expect("event");
        (event.deliveries[0].state, event.deliveries[0].attempts)
    }

    fn advance(&self, by: Duration) {
        self.clock.0.fetch_add(millis(by), Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_delivers_what_is_due_and_idles_when_nothing_is() {
    let crm = destination(&[200]).await;
    let lane = Harness::new(&crm.url, 4);
    assert_eq!(lane.step().await, Step::Idle(IDLE_POLL));
    let ids = [lane.accept(1).await, lane.accept(2).await];
    assert_eq!(lane.step().await, Step::Started(2));
    for id in ids {
        assert_eq!(lane.state(id).await, (DeliveryState::Delivered, 1));
    }
    assert_eq!(crm.requests.load(Ordering::SeqCst), 2);
    assert_eq!(lane.step().await, Step::Idle(IDLE_POLL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_for_its_time_on_the_lane_s_clock() {
    let crm = destination(&[500, 200]).await;
    let lane = Harness::new(&crm.url, 1);
    let id = lane.accept(1).await;
    assert_eq!(lane.step().await, Step::Started(1));
    assert_eq!(lane.state(id).await, (DeliveryState::Retrying, 1));
    // Not due before the 10 s the destination asked for; the lane says how long it may sleep
    // (at most the idle poll).
    let idle = lane.step().await;
    assert!(
        matches!(idle, Step::Idle(wait) if wait <= IDLE_POLL),
        "{idle:?}"
    );
    assert_eq!(crm.requests.load(Ordering::SeqCst), 1);
    lane.advance(Duration::from_millis(9_999));
    assert!(matches!(lane.step().await, Step::Idle(_)));
    lane.advance(Duration::from_millis(1));
    assert_eq!(lane.step().await, Step::Started(1));
    assert_eq!(lane.state(id).await, (DeliveryState::Delivered, 2));
    assert_eq!(crm.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_finds_a_backlog_claims_further_rounds_in_the_same_pass() {
    let crm = destination(&[200]).await;
    let lane = Harness::new(&crm.url, 2);
    let ids: Vec<Uuid> = futures_util::future::join_all((1..=5).map(|n| lane.accept(n))).await;
    // Two free slots find a backlog, so the same pass claims further rounds, up to the lane's
    // room for claimed deliveries (4 per slot).
    assert_eq!(lane.step().await, Step::Started(5));
    for id in ids {
        assert_eq!(lane.state(id).await.0, DeliveryState::Delivered);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_the_circuit_and_ends_in_delivery_not_dead_letters() {
    // Down for three requests (the third is the first probe), then back.
    let crm = destination(&[503, 503, 503, 200]).await;
    let breaker = BreakerPolicy {
        failures: 2,
        cooldown: Duration::from_secs(30),
    };
    let lane = Harness::with_gate(&crm.url, 1, None, Some(breaker));
    let ids = [
        lane.accept(1).await,
        lane.accept(2).await,
        lane.accept(3).await,
    ];
    // All three are claimed; two fail in a row and open the circuit; the third, still waiting
    // for the one sending slot, goes back unsent. Which one waits is the runtime's choice: the
    // three attempts start as tasks and queue for the slot in the order they first run.
    assert_eq!(lane.step().await, Step::Started(3));
    assert_eq!(crm.requests.load(Ordering::SeqCst), 2);
    let mut states = Vec::new();
    for id in ids {
        states.push(lane.state(id).await);
    }
    states.sort_by_key(|(_, attempts)| *attempts);
    assert_eq!(
        states,
        [
            (DeliveryState::Pending, 0),
            (DeliveryState::Retrying, 1),
            (DeliveryState::Retrying, 1)
        ]
    );
    // Their retries come due, but the circuit holds them without spending attempts.
    lane.advance(Duration::from_secs(11));
    assert!(matches!(lane.step().await, Step::Idle(_)));
    assert_eq!(crm.requests.load(Ordering::SeqCst), 2);
    // After the cooldown one probe goes; it fails and the circuit opens again, uncounted.
    lane.advance(Duration::from_secs(20));
    assert_eq!(lane.step().await, Step::Started(1));
    assert_eq!(crm.requests.load(Ordering::SeqCst), 3);
    assert!(matches!(lane.step().await, Step::Idle(_)));
    // The next probe succeeds and closes the circuit; the rest follow.
    lane.advance(Duration::from_secs(31));
    assert_eq!(lane.step().await, Step::Started(1));
    lane.advance(Duration::from_secs(11));
    assert_eq!(lane.step().await, Step::Started(2));
    for id in ids {
        assert_eq!(lane.state(id).await.0, DeliveryState::Delivered, "{id}");
    }
    assert_eq!(crm.requests.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_lane_claims_what_its_tokens_allow_and_says_when_to_come_back() {
    let crm = destination(&[200]).await;
    let pace = Pace {
        per_second: 10,
        burst: 2,
    };
    let lane = Harness::with_gate(&crm.url, 4, Some(pace), None);
    for n in 1..=5 {
        lane.accept(n).await;
    }
    assert_eq!(lane.step().await, Step::Started(2));
    assert_eq!(lane.step().await, Step::Idle(Duration::from_millis(100)));
    lane.advance(Duration::from_millis(100));
    assert_eq!(lane.step().await, Step::Started(1));
    lane.advance(Duration::from_millis(250));
    assert_eq!(lane.step().await, Step::Started(2));
    assert_eq!(crm.requests.load(Ordering::SeqCst), 5);
}
