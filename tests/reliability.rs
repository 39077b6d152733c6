//! Faults on purpose, and counting: the gateway SIGKILLed under concurrent load (SQLite and
//! PostgreSQL), the database cut or stalled under load, the SQLite volume full, destinations
//! that flap, reset, stall, throttle or stay down, and clocks that disagree. Every scenario
//! reconciles what the senders were told with what the store holds and what the destinations
//! received: nothing acknowledged may be lost, no key accepted twice.
//!
//! The normal test suite runs each scenario short. `reliability/run` runs them long
//! (`ONCEHOOK_RELIABILITY=full`) and collects the rows each prints into `reliability/results/`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faults::{
    CountingSink, Load, StoredEvent, eventually, full, github_to_sink, reconcile, report, scale,
    stored_pg, stored_sqlite,
};
use common::pg::{PgSchema, TcpProxy};
use common::receiver::{Receiver, Reply as Answer};
use common::{Gateway, GatewayOptions, free_port, post, sign, unix_now};
use oncehook::verify::{Verifier, VerifyConfig};
use serde_json::json;
use tokio::task::block_in_place;

/// Where the events of one gateway are stored, to read them back.
enum Probe<'a> {
    Sqlite(PathBuf),
    Postgres(&'a PgSchema),
}

impl Probe<'_> {
    async fn stored(&self) -> Vec<StoredEvent> {
        match self {
            Probe::Sqlite(path) => stored_sqlite(path),
            Probe::Postgres(schema) => stored_pg(schema).await,
        }
    }

    /// Waits until every stored event's delivery is final and every delivered one reached `sink`.
    async fn settle(&self, sink: &CountingSink, within: Duration) -> bool {
        eventually(within, async || {
            let stored = self.stored().await;
            let delivered = sink.delivered();
            stored.iter().all(|e| match e.delivery_state.as_deref() {
                Some("dead") => true,
                Some("delivered") => delivered.contains_key(&e.event_id),
                _ => false,
            })
        })
        .await
    }
}

/// Destination settings for the fault runs: a lease of timeout + 5 s = 6 s after a kill, and
/// retries that never give up, so every event must end delivered.
const PATIENT: &str = "timeout = \"1s\"\nconcurrency = 8\nmax_attempts = 100000\n\
                       backoff = { base = \"50ms\", max = \"500ms\" }";

async fn sigkill_cycles(scenario: &str, schema: Option<&PgSchema>) {
    let cycles = scale(3, 20);
    let workers = 8;
    let sink = CountingSink::start(Duration::from_millis(2)).await;
    let body = github_to_sink(&sink.url, PATIENT);
    let options = GatewayOptions {
        store_url: schema.map(PgSchema::url),
        ..GatewayOptions::default()
    };
    let mut gateway = block_in_place(|| Gateway::start_with(&body, options));
    let probe = match schema {
        Some(schema) => Probe::Postgres(schema),
        None => Probe::Sqlite(gateway.db_path()),
    };
    let load = Load::start(&gateway.webhook_url("gh"), "kill", workers);
    let started = Instant::now();
    let mut uptimes_ms = Vec::new();
    for _ in 0..cycles {
        let uptime = rand::random_range(300..1_500u64);
        uptimes_ms.push(uptime);
        tokio::time::sleep(Duration::from_millis(uptime)).await;
        block_in_place(|| {
            gateway.kill();
            std::thread::sleep(Duration::from_millis(rand::random_range(0..200)));
            gateway.spawn();
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger = load.stop().await;
    let elapsed = started.elapsed();
    let settled = probe.settle(&sink, Duration::from_secs(90)).await;
    let counts = reconcile(&ledger, &probe.stored().await, &sink.delivered());
    report(
        scenario,
        json!({
            "store": if schema.is_some() { "postgres" } else { "sqlite" },
            "cycles": cycles,
            "senders": workers,
            "uptime_ms_per_cycle": uptimes_ms,
            "seconds": elapsed.as_secs_f64(),
        }),
        &counts,
    );
    assert!(settled, "deliveries did not settle: {counts:?}");
    assert!(counts.acknowledged > 0);
    assert_eq!(counts.lost, 0, "{:?}", counts.problems);
    assert_eq!(counts.double_accepts, 0, "{:?}", counts.problems);
    assert!(
        ledger.other.is_empty(),
        "unexpected statuses: {:?}",
        ledger.other
    );
    assert_eq!(ledger.unavailable_without_retry_after, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_sqlite_loses_nothing_and_accepts_no_key_twice() {
    sigkill_cycles("sigkill_sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_postgres_loses_nothing_and_accepts_no_key_twice() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    sigkill_cycles("sigkill_postgres", Some(&schema)).await;
}

async fn readyz(gateway: &Gateway) -> u16 {
    match reqwest::get(format!("{}/readyz", gateway.admin)).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_and_stalled_under_load_answers_503_and_recovers_by_itself() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let outages = scale(2, 6);
    let outage = scale(Duration::from_secs(3), Duration::from_secs(30));
    let proxy = TcpProxy::start(schema.server_addr()).await;
    let sink = CountingSink::start(Duration::ZERO).await;
    let options = GatewayOptions {
        store_url: Some(schema.url_through(&proxy)),
        ..GatewayOptions::default()
    };
    let gateway =
        block_in_place(|| Gateway::start_with(&github_to_sink(&sink.url, PATIENT), options));
    let load = Load::start(&gateway.webhook_url("gh"), "pg-outage", 6);
    let mut recoveries = Vec::new();
    let mut ready_during = Vec::new();
    for n in 0..outages {
        tokio::time::sleep(scale(Duration::from_secs(1), Duration::from_secs(5))).await;
        // Alternate a refused connection (the server is down) with a silent path (only
        // deadlines notice).
        let kind = if n % 2 == 0 { "cut" } else { "stall" };
        if kind == "cut" {
            proxy.cut();
        } else {
            proxy.stall();
        }
        tokio::time::sleep(outage.mul_f64(0.7)).await;
        ready_during.push(readyz(&gateway).await);
        tokio::time::sleep(outage.mul_f64(0.3)).await;
        proxy.restore();
        let restored = Instant::now();
        let ledger = Arc::clone(&load.ledger);
        let recovered = eventually(Duration::from_secs(30), async || {
            ledger
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first_success_after(restored)
                .is_some()
        })
        .await;
        let after = load
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_success_after(restored);
        assert!(
            recovered,
            "outage {n} ({kind}): no 2xx within 30 s of restoring"
        );
        recoveries
            .push(json!({"kind": kind, "recovered_after_secs": after.map(|d| d.as_secs_f64())}));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = load.stop().await;
    let probe = Probe::Postgres(&schema);
    let settled = probe.settle(&sink, Duration::from_secs(60)).await;
    let counts = reconcile(&ledger, &probe.stored().await, &sink.delivered());
    report(
        "postgres_outage",
        json!({
            "outages": outages,
            "outage_secs": outage.as_secs_f64(),
            "senders": 6,
            "readyz_during_outage": ready_during,
            "recoveries": recoveries,
            "unavailable_without_retry_after": ledger.unavailable_without_retry_after,
            "other_statuses": ledger.other,
        }),
        &counts,
    );
    assert!(settled, "deliveries did not settle: {counts:?}");
    assert!(counts.unavailable_503 > 0, "the outage was never noticed");
    assert_eq!(ledger.unavailable_without_retry_after, 0);
    assert!(ready_during.iter().all(|s| *s == 503), "{ready_during:?}");
    assert_eq!(readyz(&gateway).await, 200);
    assert!(ledger.other.is_empty(), "{:?}", ledger.other);
    assert_eq!(counts.lost, 0, "{:?}", counts.problems);
    assert_eq!(counts.double_accepts, 0, "{:?}", counts.problems);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// None (after saying why) when mounting is not possible here (not root, no tmpfs).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Tmpfs { dir }),
            Ok(output) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros into `path` until the volume refuses more; returns the bytes written.
fn fill_volume(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let mut written = 0u64;
    for chunk in [256 * 1024, 4096, 512] {
        let zeros = vec![0u8; chunk];
        while file.write_all(&zeros).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_sqlite_volume_answers_503_acknowledges_nothing_unstored_and_recovers() {
    let Some(volume) = Tmpfs::mount("48m") else {
        return;
    };
    let fulls = scale(2, 5);
    let full_for = scale(Duration::from_secs(3), Duration::from_secs(20));
    let db_path = volume.path().join("oncehook.db");
    let sink = CountingSink::start(Duration::ZERO).await;
    let options = GatewayOptions {
        store_url: Some(format!("sqlite://{}", db_path.display())),
        ..GatewayOptions::default()
    };
    let mut gateway =
        block_in_place(|| Gateway::start_with(&github_to_sink(&sink.url, PATIENT), options));
    let load = Load::start(&gateway.webhook_url("gh"), "full", 4);
    let filler = volume.path().join("filler");
    let mut episodes = Vec::new();
    for n in 0..fulls {
        tokio::time::sleep(scale(Duration::from_secs(1), Duration::from_secs(5))).await;
        let filled = block_in_place(|| fill_volume(&filler));
        let full_at = Instant::now();
        let unavailable_before = load
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unavailable;
        tokio::time::sleep(full_for.mul_f64(0.7)).await;
        let ready = readyz(&gateway).await;
        tokio::time::sleep(full_for.mul_f64(0.3)).await;
        let (refused, successes_while_full) = {
            let ledger = load.ledger.lock().unwrap_or_else(|p| p.into_inner());
            // Writes already past the commit when the volume filled may still succeed.
            let settled = full_at + Duration::from_millis(500);
            (
                ledger.unavailable - unavailable_before,
                ledger.successes.iter().filter(|t| **t >= settled).count(),
            )
        };
        std::fs::remove_file(&filler).expect("remove filler");
        let freed = Instant::now();
        let ledger = Arc::clone(&load.ledger);
        let recovered = eventually(Duration::from_secs(30), async || {
            ledger
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first_success_after(freed)
                .is_some()
        })
        .await;
        let ready_again = eventually(Duration::from_secs(30), async || {
            readyz(&gateway).await == 200
        })
        .await;
        let ready_after = freed.elapsed();
        let after = load
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_success_after(freed);
        episodes.push(json!({
            "filler_bytes": filled,
            "answered_503": refused,
            "answered_2xx_while_full": successes_while_full,
            "readyz_while_full": ready,
            "recovered_after_secs": after.map(|d| d.as_secs_f64()),
            "ready_again_after_secs": ready_again.then_some(ready_after.as_secs_f64()),
        }));
        assert!(
            recovered,
            "episode {n}: intake did not recover within 30 s of freeing space"
        );
        assert_eq!(ready, 503, "episode {n}: /readyz while the volume was full");
        assert!(
            ready_again,
            "episode {n}: /readyz did not answer 200 within 30 s of freeing space"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = load.stop().await;
    let probe = Probe::Sqlite(db_path.clone());
    let settled = probe.settle(&sink, Duration::from_secs(60)).await;
    let counts = reconcile(&ledger, &probe.stored().await, &sink.delivered());
    report(
        "sqlite_volume_full",
        json!({
            "volume": "tmpfs 48 MiB",
            "episodes": episodes,
            "full_secs": full_for.as_secs_f64(),
            "senders": 4,
            "unavailable_without_retry_after": ledger.unavailable_without_retry_after,
            "other_statuses": ledger.other,
        }),
        &counts,
    );
    gateway.kill();
    assert!(settled, "deliveries did not settle: {counts:?}");
    assert!(
        counts.unavailable_503 > 0,
        "the full volume was never noticed"
    );
    assert_eq!(ledger.unavailable_without_retry_after, 0);
    assert!(ledger.other.is_empty(), "{:?}", ledger.other);
    assert_eq!(counts.lost, 0, "{:?}", counts.problems);
    assert_eq!(counts.double_accepts, 0, "{:?}", counts.problems);
    drop(volume);
}

/// Honest readiness without traffic to notice it: an idle node whose volume fills answers 503 on
/// `/readyz` (its own probe finds it out), and 200 again by itself once space is freed, with every
/// acknowledged event still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_node_on_a_full_sqlite_volume_is_not_ready_until_space_is_freed() {
    let Some(volume) = Tmpfs::mount("24m") else {
        return;
    };
    let db_path = volume.path().join("oncehook.db");
    let sink = CountingSink::start(Duration::ZERO).await;
    let options = GatewayOptions {
        store_url: Some(format!("sqlite://{}", db_path.display())),
        ..GatewayOptions::default()
    };
    let mut gateway =
        block_in_place(|| Gateway::start_with(&github_to_sink(&sink.url, PATIENT), options));
    let sent = send_events_twice(&gateway, "idle", 50).await;
    assert_eq!(readyz(&gateway).await, 200);
    let filler = volume.path().join("filler");
    block_in_place(|| fill_volume(&filler));
    let not_ready = eventually(Duration::from_secs(10), async || {
        readyz(&gateway).await == 503
    })
    .await;
    std::fs::remove_file(&filler).expect("remove filler");
    let freed = Instant::now();
    let ready_again = eventually(Duration::from_secs(30), async || {
        readyz(&gateway).await == 200
    })
    .await;
    eprintln!("ready again {:?} after space was freed", freed.elapsed());
    assert!(not_ready, "/readyz never answered 503 on the full volume");
    assert!(
        ready_again,
        "/readyz did not answer 200 within 30 s of freeing space"
    );
    let stored = Probe::Sqlite(db_path.clone()).stored().await;
    for id in &sent {
        assert!(
            stored.iter().any(|event| &event.event_id == id),
            "acknowledged event {id} is missing"
        );
    }
    gateway.kill();
    drop(volume);
}

/// Sends every event twice from 8 concurrent senders; returns the event ids.
async fn send_events_twice(gateway: &Gateway, prefix: &str, events: usize) -> HashSet<String> {
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("gh");
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, prefix) = (client.clone(), url.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..events).step_by(8) {
                let key = format!("{prefix}-{n}");
                let body = serde_json::to_vec(&json!({"n": n})).expect("json");
                let signed = sign(common::faults::GITHUB_VERIFY, &body, &key, unix_now());
                let first = post(&client, &url, &signed, "application/json").await;
                let second = post(&client, &url, &signed, "application/json").await;
                assert_eq!((first.status, second.status), (202, 200), "{key}");
                assert_eq!(first.json["event_id"], second.json["event_id"]);
                ids.push(
                    first.json["event_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.extend(task.await.expect("sender"));
    }
    assert_eq!(ids.len(), events);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn destination_chaos_every_event_ends_delivered_or_dead_and_counts_reconcile() {
    let events = scale(200, 2_000);
    let down_for = scale(Duration::from_secs(5), Duration::from_secs(180));
    let flappy = Receiver::start().await;
    flappy.set_script(|r, _| {
        let mut hash = 0u64;
        for b in r.event_id().bytes().chain([r.attempt() as u8]) {
            hash = hash.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        match hash % 10 {
            0..=2 => Answer::Status(200),
            3 => Answer::Slow(Duration::from_millis(200), 200),
            4 | 5 => Answer::Status(500),
            6 => Answer::StatusRetryAfter(429, 1),
            7 => Answer::Reset,
            8 => Answer::Status(503),
            // Longer than the destination's timeout: the attempt times out.
            _ => Answer::Slow(Duration::from_millis(1_500), 503),
        }
    });
    let steady = Receiver::start().await;
    let down_port = free_port();
    let body = format!(
        "[[sources]]\nname = \"gh\"\nverify = {{ scheme = \"github\", secrets = [\"fault-secret\"] }}\n\n\
         [[destinations]]\nname = \"flappy\"\nurl = \"{}\"\ntimeout = \"1s\"\nmax_attempts = 4\nconcurrency = 16\n\
         backoff = {{ base = \"20ms\", max = \"200ms\" }}\ncircuit_breaker = {{ failures = 20, cooldown = \"1s\" }}\n\n\
         [[destinations]]\nname = \"down\"\nurl = \"http://127.0.0.1:{down_port}/hook\"\ntimeout = \"1s\"\n\
         max_attempts = 100000\nconcurrency = 16\nbackoff = {{ base = \"100ms\", max = \"{}\" }}\n\
         circuit_breaker = {{ failures = 5, cooldown = \"1s\" }}\n\n\
         [[destinations]]\nname = \"steady\"\nurl = \"{}\"\nconcurrency = 8\n\n\
         [[routes]]\nsource = \"gh\"\nto = [\"flappy\", \"down\", \"steady\"]\n",
        flappy.url,
        if full() { "10s" } else { "1s" },
        steady.url,
    );
    let gateway = block_in_place(|| Gateway::start(&body));
    let started = Instant::now();
    let sent = send_events_twice(&gateway, "chaos", events).await;
    let remaining = down_for.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    let down = Receiver::start_on(down_port).await;
    let back_at = Instant::now();
    let total = events * 3;
    let settled = eventually(Duration::from_secs(scale(60, 180)), async || {
        let deliveries = gateway.deliveries();
        deliveries.len() == total
            && deliveries
                .iter()
                .all(|d| d.2 == "delivered" || d.2 == "dead")
    })
    .await;
    let drained_after = back_at.elapsed();
    let deliveries = gateway.deliveries();

    let mut per_destination = BTreeMap::new();
    let mut lost = 0usize;
    let mut reasonless = 0usize;
    let mut mismatched = Vec::new();
    for (name, receiver) in [("flappy", &flappy), ("down", &down), ("steady", &steady)] {
        let rows: Vec<_> = deliveries.iter().filter(|d| d.1 == name).collect();
        let delivered: HashSet<String> = rows
            .iter()
            .filter(|d| d.2 == "delivered")
            .map(|d| d.0.clone())
            .collect();
        let dead = rows.iter().filter(|d| d.2 == "dead").count();
        reasonless += rows
            .iter()
            .filter(|d| d.2 == "dead" && d.4.is_none())
            .count();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows.iter().filter(|d| d.2 == "dead") {
            *reasons
                .entry(row.4.clone().unwrap_or_default())
                .or_default() += 1;
        }
        let events_here: HashSet<&String> = rows.iter().map(|d| &d.0).collect();
        lost += sent.iter().filter(|id| !events_here.contains(id)).count();
        lost += events.saturating_sub(delivered.len() + dead);
        let mut successes: HashMap<String, usize> = HashMap::new();
        for request in receiver.received() {
            if request.answered.is_some_and(|s| (200..300).contains(&s)) {
                *successes.entry(request.event_id().to_owned()).or_default() += 1;
            }
        }
        if successes.keys().cloned().collect::<HashSet<_>>() != delivered {
            mismatched.push(name);
        }
        per_destination.insert(
            name,
            json!({
                "delivered": delivered.len(),
                "dead": dead,
                "dead_reasons": reasons,
                "requests_received": receiver.received().len(),
                "delivered_twice": successes.values().filter(|n| **n > 1).count(),
                "overlapping_attempts": receiver.overlapping_attempts(),
            }),
        );
    }
    let delivered_total = deliveries.iter().filter(|d| d.2 == "delivered").count();
    let dead_total = deliveries.iter().filter(|d| d.2 == "dead").count();
    report(
        "destination_chaos",
        json!({
            "destinations": {
                "flappy": "per attempt: 30% 200, 10% 200 after 200 ms, 20% 500, 10% 429 Retry-After: 1, 10% reset, 10% 503, 10% hang past the 1 s timeout; max_attempts 4; circuit breaker 20 failures, 1 s cooldown",
                "down": format!("connection refused for {} s, then 200, retried without limit; circuit breaker 5 failures, 1 s cooldown", down_for.as_secs()),
                "steady": "200",
            },
            "per_destination": &per_destination,
            "drained_secs_after_down_came_back": drained_after.as_secs_f64(),
        }),
        &json!({
            "events_sent": events,
            "requests": events * 2,
            "acknowledged": sent.len(),
            "accepted_202": sent.len(),
            "duplicates_200": events,
            "deliveries_expected": total,
            "delivered": delivered_total,
            "dead": dead_total,
            "dead_without_reason": reasonless,
            "lost": lost,
            "double_accepts": 0,
            "redeliveries": per_destination.values().filter_map(|d| d["delivered_twice"].as_u64()).sum::<u64>(),
        }),
    );
    assert!(settled, "not every delivery ended delivered or dead");
    assert_eq!(delivered_total + dead_total, total);
    assert_eq!(lost, 0);
    assert_eq!(reasonless, 0, "dead deliveries keep a reason");
    assert!(
        mismatched.is_empty(),
        "destination successes differ from delivered: {mismatched:?}"
    );
    for name in ["down", "steady"] {
        assert_eq!(
            per_destination[name]["dead"], 0,
            "{name}: {per_destination:?}"
        );
        assert_eq!(per_destination[name]["delivered_twice"], 0, "{name}");
    }
    // The flappy destination's hangs outlast the 1 s timeout, so its next attempt may arrive
    // while it still holds the abandoned one; elsewhere one event is never in flight twice.
    for receiver in [&down, &steady] {
        assert_eq!(receiver.overlapping_attempts(), 0);
    }
}

const TOLERANCE_SECS: i64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_timestamps_just_inside_tolerance_are_accepted_and_just_outside_rejected() {
    let sink = CountingSink::start(Duration::ZERO).await;
    let schemes = [
        ("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("stripe", "whsec_stripe_clock_secret"),
        ("slack", "slack-clock-secret"),
    ];
    let mut config = String::new();
    for (scheme, secret) in schemes {
        config.push_str(&format!(
            "[[sources]]\nname = \"{scheme}\"\nverify = {{ scheme = \"{scheme}\", secrets = [\"{secret}\"], tolerance = \"{TOLERANCE_SECS}s\" }}\n\n\
             [[routes]]\nsource = \"{scheme}\"\nto = [\"sink\"]\n\n"
        ));
    }
    config.push_str(&format!(
        "[[destinations]]\nname = \"sink\"\nurl = \"{}\"\n",
        sink.url
    ));
    let gateway = block_in_place(|| Gateway::start(&config));
    let client = reqwest::Client::new();
    let mut outcomes = BTreeMap::new();
    let mut accepted = HashSet::new();
    let mut mismatches = Vec::new();
    for (scheme, secret) in schemes {
        let verify = format!("scheme = \"{scheme}\"\nsecrets = [\"{secret}\"]");
        for offset in [
            -TOLERANCE_SECS - 5,
            -TOLERANCE_SECS + 5,
            TOLERANCE_SECS - 5,
            TOLERANCE_SECS + 5,
        ] {
            let id = format!("evt_{scheme}_{offset}");
            let body = serde_json::to_vec(&json!({"id": id, "offset": offset})).expect("json");
            let signed = sign(&verify, &body, &id, unix_now() + offset);
            let first = post(
                &client,
                &gateway.webhook_url(scheme),
                &signed,
                "application/json",
            )
            .await;
            let second = post(
                &client,
                &gateway.webhook_url(scheme),
                &signed,
                "application/json",
            )
            .await;
            let expected = if offset.abs() < TOLERANCE_SECS {
                (202, 200)
            } else {
                (401, 401)
            };
            if (first.status, second.status) != expected {
                mismatches.push(format!(
                    "{scheme} at {offset:+} s: {} then {}, expected {expected:?}",
                    first.status, second.status
                ));
            }
            if first.status == 202 {
                accepted.insert(
                    first.json["event_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            outcomes.insert(
                format!("{scheme} {offset:+}s"),
                (first.status, second.status),
            );
        }
    }
    let delivered = eventually(Duration::from_secs(20), async || {
        sink.unique() == accepted.len()
    })
    .await;
    let stored = gateway.event_count();
    report(
        "clock_provider_timestamp",
        json!({"tolerance_secs": TOLERANCE_SECS, "answers": outcomes}),
        &json!({
            "events_sent": outcomes.len(),
            "requests": outcomes.len() * 2,
            "acknowledged": accepted.len(),
            "accepted_202": accepted.len(),
            "duplicates_200": accepted.len(),
            "rejected_401": (outcomes.len() - accepted.len()) * 2,
            "stored": stored,
            "delivered": sink.unique(),
            "dead": 0,
            "lost": accepted.len().saturating_sub(sink.unique()),
            "double_accepts": sink.total() as usize - sink.unique(),
        }),
    );
    assert!(mismatches.is_empty(), "{mismatches:?}");
    assert_eq!(stored, 8, "only the timestamps inside tolerance are stored");
    assert!(delivered, "every accepted event is delivered");
    assert_eq!(sink.total(), 8, "each once");
}

const DESTINATION_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A destination that checks the Standard Webhooks signature (5 minute tolerance) by a clock
/// `skew_secs` off: 200 when it verifies, 401 otherwise.
async fn skewed_verifier(skew_secs: i64) -> Receiver {
    let config: VerifyConfig = toml::from_str(&format!(
        "scheme = \"standard\"\nsecrets = [\"{DESTINATION_SECRET}\"]\ntolerance = \"5m\""
    ))
    .expect("config");
    let verifier = Arc::new(Verifier::from_config(&config).expect("verifier"));
    let receiver = Receiver::start().await;
    receiver.set_script(move |r, _| {
        let mut headers = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            if let Some(value) = r.header(name).and_then(|v| v.parse().ok()) {
                headers.insert(name, value);
            }
        }
        match verifier.verify(&headers, &r.body, unix_now() + skew_secs) {
            Ok(_) => Answer::Status(200),
            Err(_) => Answer::Status(401),
        }
    });
    receiver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_a_skewed_clock_accepts_within_its_tolerance_and_rejects_beyond() {
    let skews = [
        ("ahead_2m", 120),
        ("behind_2m", -120),
        ("ahead_7m", 420),
        ("behind_7m", -420),
    ];
    let mut receivers = Vec::new();
    let mut config = "[[sources]]\nname = \"gh\"\nverify = { scheme = \"github\", secrets = [\"fault-secret\"] }\n\n".to_owned();
    for (name, skew) in skews {
        let receiver = skewed_verifier(skew).await;
        config.push_str(&format!(
            "[[destinations]]\nname = \"{name}\"\nurl = \"{}\"\nsigning_secret = \"{DESTINATION_SECRET}\"\n\
             max_attempts = 3\nbackoff = {{ base = \"20ms\", max = \"100ms\" }}\n\n",
            receiver.url
        ));
        receivers.push((name, skew, receiver));
    }
    config.push_str("[[routes]]\nsource = \"gh\"\nto = [\"ahead_2m\", \"behind_2m\", \"ahead_7m\", \"behind_7m\"]\n");
    let gateway = block_in_place(|| Gateway::start(&config));
    let events = 5;
    let ids = send_events_twice(&gateway, "skew", events).await;
    let settled = eventually(Duration::from_secs(20), async || {
        let deliveries = gateway.deliveries();
        deliveries.len() == events * skews.len()
            && deliveries
                .iter()
                .all(|d| d.2 == "delivered" || d.2 == "dead")
    })
    .await;
    assert!(settled, "{:?}", gateway.deliveries());
    let deliveries = gateway.deliveries();
    let mut per_destination = BTreeMap::new();
    for (name, skew, receiver) in &receivers {
        let rows: Vec<_> = deliveries.iter().filter(|d| d.1 == *name).collect();
        let delivered = rows.iter().filter(|d| d.2 == "delivered").count();
        let dead: Vec<_> = rows
            .iter()
            .filter(|d| d.2 == "dead")
            .map(|d| (d.3, d.4.clone()))
            .collect();
        per_destination.insert(
            *name,
            json!({"skew_secs": skew, "delivered": delivered, "dead": dead.len(), "requests": receiver.received().len()}),
        );
        if skew.abs() < 300 {
            assert_eq!(delivered, events, "{name}");
        } else {
            // Rejected at once as a client error: no retries against a clock that stays wrong.
            assert_eq!(
                dead,
                vec![(1, Some("http_4xx".to_owned())); events],
                "{name}"
            );
        }
        assert!(rows.iter().all(|d| ids.contains(&d.0)));
    }
    report(
        "clock_skewed_destination",
        json!({"destination_tolerance_secs": 300, "per_destination": per_destination}),
        &json!({
            "events_sent": events,
            "requests": events * 2,
            "acknowledged": events,
            "accepted_202": events,
            "duplicates_200": events,
            "delivered": deliveries.iter().filter(|d| d.2 == "delivered").count(),
            "dead": deliveries.iter().filter(|d| d.2 == "dead").count(),
            "lost": 0,
            "double_accepts": 0,
        }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_a_date_from_a_skewed_destination_counts_from_its_own_date() {
    // Each destination answers its first attempt 503 with `Retry-After` two seconds after its
    // own `Date`, which is an hour off; then 200.
    let mut receivers = Vec::new();
    let mut config = "[[sources]]\nname = \"gh\"\nverify = { scheme = \"github\", secrets = [\"fault-secret\"] }\n\n".to_owned();
    for (name, offset) in [
        ("ahead_1h", 3_600i64),
        ("behind_1h", -3_600),
        ("in_sync", 0),
    ] {
        let receiver = Receiver::start().await;
        receiver.set_script(move |_, previous| {
            if previous == 0 {
                Answer::SkewedRetryAfter {
                    status: 503,
                    clock_offset_secs: offset,
                    retry_after_secs: 2,
                }
            } else {
                Answer::Status(200)
            }
        });
        config.push_str(&format!(
            "[[destinations]]\nname = \"{name}\"\nurl = \"{}\"\nbackoff = {{ base = \"10ms\", max = \"20ms\" }}\n\n",
            receiver.url
        ));
        receivers.push((name, receiver));
    }
    config
        .push_str("[[routes]]\nsource = \"gh\"\nto = [\"ahead_1h\", \"behind_1h\", \"in_sync\"]\n");
    let gateway = block_in_place(|| Gateway::start(&config));
    send_events_twice(&gateway, "retry-after-date", 1).await;
    let mut gaps = BTreeMap::new();
    for (name, receiver) in &receivers {
        receiver
            .wait_for(Duration::from_secs(15), name, |r| r.len() >= 2)
            .await;
        let received = receiver.received();
        let gap = received[1].at.duration_since(received[0].at);
        gaps.insert(*name, gap.as_secs_f64());
    }
    report(
        "clock_retry_after_date",
        json!({"retry_after_secs_by_destination_clock": 2, "retry_gap_secs": gaps}),
        &json!({
            "events_sent": 1,
            "requests": 2,
            "acknowledged": 1,
            "accepted_202": 1,
            "duplicates_200": 1,
            "delivered": 3,
            "dead": 0,
            "lost": 0,
            "double_accepts": 0,
        }),
    );
    for (name, gap) in &gaps {
        assert!(
            (1.9..6.0).contains(gap),
            "{name}: retried after {gap:.2} s, asked for 2 s by its own clock"
        );
    }
    gateway
        .wait_for_deliveries(Duration::from_secs(10), "delivered", |d| {
            d.len() == 3 && d.iter().all(|d| d.2 == "delivered")
        })
        .await;
}
