//! What the fault tests share: a destination that only counts (it holds up under sustained load,
//! where `receiver::Receiver` keeps every request), concurrent senders that act like a provider
//! and keep a ledger of every answer, the reconciliation of that ledger with the store and the
//! destination, and the result rows `reliability/run` collects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::pg::PgSchema;
use super::{sign, unix_now};

/// Whether the long versions run (`reliability/run` sets `ONCEHOOK_RELIABILITY=full`).
pub fn full() -> bool {
    std::env::var("ONCEHOOK_RELIABILITY").is_ok_and(|v| v == "full")
}

/// `quick` in the normal test suite, `full` under `reliability/run`.
pub fn scale<T>(quick: T, full_value: T) -> T {
    if full() { full_value } else { quick }
}

/// A destination that answers 200 after `delay` and counts requests per event
/// (`Oncehook-Event-Id`).
#[derive(Clone)]
pub struct CountingSink {
    pub url: String,
    pub port: u16,
    state: Arc<SinkState>,
}

struct SinkState {
    delay: Duration,
    per_key: Mutex<HashMap<String, u32>>,
}

impl CountingSink {
    pub async fn start(delay: Duration) -> CountingSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(SinkState {
            delay,
            per_key: Mutex::default(),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, router).await });
        CountingSink {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            state,
        }
    }

    /// Requests answered 200, per key.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.lock().clone()
    }

    pub fn unique(&self) -> usize {
        self.lock().len()
    }

    pub fn total(&self) -> u64 {
        self.lock().values().map(|n| u64::from(*n)).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.state
            .per_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn hook(
    State(state): State<Arc<SinkState>>,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let key = headers
        .get("oncehook-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *state
        .per_key
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
    StatusCode::OK
}

/// Every answer one key got from intake.
#[derive(Debug, Default, Clone)]
pub struct KeyAnswers {
    pub accepted: u32,
    pub duplicate: u32,
    pub event_ids: HashSet<String>,
}

/// Everything the senders saw.
#[derive(Debug, Default)]
pub struct Ledger {
    pub keys: HashMap<String, KeyAnswers>,
    pub requests: u64,
    pub unavailable: u64,
    pub unavailable_without_retry_after: u64,
    pub transport_errors: u64,
    /// Statuses other than 202, 200 and 503.
    pub other: BTreeMap<u16, u64>,
    /// When each 2xx arrived, to measure recovery.
    pub successes: Vec<Instant>,
}

impl Ledger {
    pub fn first_success_after(&self, at: Instant) -> Option<Duration> {
        self.successes
            .iter()
            .filter(|t| **t >= at)
            .min()
            .map(|t| t.duration_since(at))
    }
}

/// Concurrent senders acting like a provider: each event is sent until it is answered 2xx,
/// then once more (the provider's repeat, also until answered); 503s and broken connections
/// are retried after a short pause. Keys are `{prefix}-w{worker}-n{n}` in `X-GitHub-Delivery`.
pub struct Load {
    pub ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The GitHub scheme the fault tests' source verifies.
pub const GITHUB_VERIFY: &str = "scheme = \"github\"\nsecrets = [\"fault-secret\"]";

/// A source `gh` keyed by `X-GitHub-Delivery`, routed to one destination `sink` at `url`.
pub fn github_to_sink(url: &str, destination_extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"gh\"\nverify = {{ scheme = \"github\", secrets = [\"fault-secret\"] }}\n\n\
         [[destinations]]\nname = \"sink\"\nurl = \"{url}\"\n{destination_extra}\n\n\
         [[routes]]\nsource = \"gh\"\nto = [\"sink\"]\n"
    )
}

impl Load {
    pub fn start(url: &str, prefix: &str, workers: usize) -> Load {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|worker| {
                let (url, prefix) = (url.to_owned(), prefix.to_owned());
                let (ledger, stop) = (Arc::clone(&ledger), Arc::clone(&stop));
                tokio::spawn(async move { send_loop(url, prefix, worker, ledger, stop).await })
            })
            .collect();
        Load {
            ledger,
            stop,
            tasks,
        }
    }

    pub fn answers(&self) -> usize {
        lock(&self.ledger).successes.len()
    }

    /// Stops starting new events, lets each sender finish the one it has, and returns the ledger.
    pub async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("sender");
        }
        std::mem::take(&mut *lock(&self.ledger))
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

async fn send_loop(
    url: String,
    prefix: String,
    worker: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("{prefix}-w{worker}-n{n}");
        let body =
            serde_json::to_vec(&json!({"key": key, "n": n, "pad": "x".repeat(200)})).expect("json");
        let mut answered = 0;
        let mut tries_after_stop = 0;
        while answered < 2 {
            if stop.load(Ordering::SeqCst) {
                // A key never answered is not owed anything; a repeat that was started is
                // finished (the gateway is up at the end), within bounds.
                if answered == 0 || tries_after_stop > 300 {
                    return;
                }
                tries_after_stop += 1;
            }
            let signed = sign(GITHUB_VERIFY, &body, &key, unix_now());
            let mut request = client
                .post(&url)
                .header("content-type", "application/json")
                .body(signed.body);
            for (name, value) in &signed.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let result = request.send().await;
            let status = result.as_ref().map(|r| r.status().as_u16()).ok();
            let retry_after = result
                .as_ref()
                .is_ok_and(|r| r.headers().contains_key("retry-after"));
            let text = match result {
                Ok(response) => response.text().await.ok(),
                Err(_) => None,
            };
            let answered_now = {
                let mut ledger = lock(&ledger);
                ledger.requests += 1;
                match (status, text) {
                    (Some(code @ (200 | 202)), Some(text)) => {
                        let reply: serde_json::Value =
                            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                        let event_id = reply["event_id"].as_str().unwrap_or_default().to_owned();
                        ledger.successes.push(Instant::now());
                        let answers = ledger.keys.entry(key.clone()).or_default();
                        if code == 202 {
                            answers.accepted += 1;
                        } else {
                            answers.duplicate += 1;
                        }
                        answers.event_ids.insert(event_id);
                        true
                    }
                    (Some(503), _) => {
                        ledger.unavailable += 1;
                        if !retry_after {
                            ledger.unavailable_without_retry_after += 1;
                        }
                        false
                    }
                    (Some(code), Some(_)) => {
                        *ledger.other.entry(code).or_default() += 1;
                        false
                    }
                    _ => {
                        ledger.transport_errors += 1;
                        false
                    }
                }
            };
            if answered_now {
                answered += 1;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// One stored event with the state of its (single) delivery.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub key: String,
    pub event_id: String,
    pub delivery_state: Option<String>,
    pub dead_reason: Option<String>,
}

const STORED_SQL: &str = "SELECT e.idempotency_key, e.id, d.state, d.dead_reason
     FROM events e LEFT JOIN deliveries d ON d.event_seq = e.seq";

pub fn stored_sqlite(db_path: &Path) -> Vec<StoredEvent> {
    let db =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let mut statement = db.prepare(STORED_SQL).expect("prepare");
    statement
        .query_map([], |r| {
            let id: Vec<u8> = r.get(1)?;
            Ok(StoredEvent {
                key: r.get(0)?,
                event_id: uuid::Uuid::from_slice(&id)
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                delivery_state: r.get(2)?,
                dead_reason: r.get(3)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

pub async fn stored_pg(schema: &PgSchema) -> Vec<StoredEvent> {
    schema
        .text_rows(
            "SELECT e.idempotency_key, e.id::text, d.state, d.dead_reason
             FROM events e LEFT JOIN deliveries d ON d.event_seq = e.seq",
        )
        .await
        .into_iter()
        .map(|row| StoredEvent {
            key: row[0].clone().unwrap_or_default(),
            event_id: row[1].clone().unwrap_or_default(),
            delivery_state: row[2].clone(),
            dead_reason: row[3].clone(),
        })
        .collect()
}

/// The figures of one scenario run, as `RELIABILITY.md` shows them.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Distinct events the senders tried to deliver.
    pub events_sent: u64,
    /// HTTP requests, repeats and retries included.
    pub requests: u64,
    /// Events answered 2xx at least once.
    pub acknowledged: u64,
    pub accepted_202: u64,
    pub duplicates_200: u64,
    pub unavailable_503: u64,
    pub transport_errors: u64,
    /// Stored without its sender ever hearing 2xx (the answer was lost in a kill).
    pub stored_unacknowledged: u64,
    pub delivered: u64,
    pub dead: u64,
    /// Acknowledged but not stored, stored under another id than answered, or never delivered.
    pub lost: u64,
    /// Keys answered 202 twice, or stored twice, or answered with two different event ids.
    pub double_accepts: u64,
    /// Deliveries the destination received more than once (at least once across kills).
    pub redeliveries: u64,
    pub problems: Vec<String>,
}

/// Holds the senders' ledger against what the store holds and what the destination received.
pub fn reconcile(
    ledger: &Ledger,
    stored: &[StoredEvent],
    delivered: &HashMap<String, u32>,
) -> Counts {
    let mut counts = Counts {
        events_sent: ledger.keys.len() as u64,
        requests: ledger.requests,
        unavailable_503: ledger.unavailable,
        transport_errors: ledger.transport_errors,
        ..Counts::default()
    };
    let mut by_key: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for event in stored {
        by_key.entry(event.key.as_str()).or_default().push(event);
    }
    let problem = |counts: &mut Counts, text: String| {
        if counts.problems.len() < 20 {
            counts.problems.push(text);
        }
    };
    for (key, rows) in &by_key {
        if rows.len() > 1 {
            counts.double_accepts += 1;
            problem(&mut counts, format!("{key}: stored {} times", rows.len()));
        }
    }
    for (key, answers) in &ledger.keys {
        counts.accepted_202 += u64::from(answers.accepted);
        counts.duplicates_200 += u64::from(answers.duplicate);
        if answers.accepted + answers.duplicate == 0 {
            continue;
        }
        counts.acknowledged += 1;
        if answers.accepted > 1 || answers.event_ids.len() > 1 {
            counts.double_accepts += 1;
            problem(
                &mut counts,
                format!(
                    "{key}: {} × 202, event ids {:?}",
                    answers.accepted, answers.event_ids
                ),
            );
        }
        let stored_ids: HashSet<&str> = by_key
            .get(key.as_str())
            .map(|rows| rows.iter().map(|r| r.event_id.as_str()).collect())
            .unwrap_or_default();
        if !answers
            .event_ids
            .iter()
            .all(|id| stored_ids.contains(id.as_str()))
        {
            counts.lost += 1;
            problem(
                &mut counts,
                format!(
                    "{key}: answered {:?}, stored {stored_ids:?}",
                    answers.event_ids
                ),
            );
        }
    }
    for event in stored {
        let acknowledged = ledger
            .keys
            .get(&event.key)
            .is_some_and(|a| a.accepted + a.duplicate > 0);
        if !acknowledged {
            counts.stored_unacknowledged += 1;
        }
        match event.delivery_state.as_deref() {
            Some("dead") => counts.dead += 1,
            _ => match delivered.get(&event.event_id) {
                Some(n) => {
                    counts.delivered += 1;
                    counts.redeliveries += u64::from(n.saturating_sub(1));
                }
                None => {
                    counts.lost += 1;
                    problem(
                        &mut counts,
                        format!(
                            "{} ({}): {:?}, never reached the destination",
                            event.key, event.event_id, event.delivery_state
                        ),
                    );
                }
            },
        }
    }
    counts
}

/// Prints the scenario's row and, under `reliability/run`, writes it to
/// `$ONCEHOOK_RELIABILITY_RESULTS/{scenario}.json`.
pub fn report(scenario: &str, settings: serde_json::Value, counts: &impl Serialize) {
    let row = json!({
        "scenario": scenario,
        "mode": if full() { "full" } else { "quick" },
        "finished_at_unix": unix_now(),
        "settings": settings,
        "counts": counts,
    });
    let text = serde_json::to_string_pretty(&row).expect("json");
    eprintln!("{text}");
    if let Ok(dir) = std::env::var("ONCEHOOK_RELIABILITY_RESULTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("results dir");
        std::fs::write(dir.join(format!("{scenario}.json")), text).expect("write result");
    }
}

/// Waits until `done` holds, polling every 100 ms; false after `within`.
pub async fn eventually(within: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
