//! What a destination's gate costs a claim, measured A/B in one run on the same machine: the
//! same deliveries claimed and recorded in batches of 16, through `claim_due_deliveries` (no
//! gate), `claim_through_gate` without a pace (one read of the gate row), and with a pace that
//! never binds (the shared token bucket read and written with every claim). SQLite always;
//! PostgreSQL too when `ONCEHOOK_TEST_PG` names a database (a fresh schema, dropped after).
//!
//! `cargo bench --bench destination_gate` prints the median of 5 rounds (the modes in rotation)
//! in µs per delivery (claim + record), and the ratio to the ungated claim.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use oncehook::domain::fingerprint::Fingerprint;
use oncehook::domain::key::DedupeKey;
use oncehook::domain::pace::Pace;
use oncehook::store::postgres::{PostgresOptions, PostgresStore};
use oncehook::store::sqlite::{SqliteOptions, SqliteStore};
use oncehook::store::*;
use uuid::Uuid;

const EVENTS: u32 = 3_000;
const BATCH: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Ungated,
    Gate,
    Paced,
}

fn event(n: u32, at: UnixMillis) -> NewEvent {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&n.to_be_bytes());
    let key = DedupeKey(key);
    NewEvent {
        id: Uuid::now_v7(),
        source: Arc::from("bench"),
        received_at: at,
        idempotency_key: format!("k-{n}"),
        dedupe_key: key,
        delivery_key: key.delivery_key(),
        fingerprint: Fingerprint([0; 32]),
        dedupe_expires_at: at + 3_600_000,
        near_duplicate: None,
        replay_guard: None,
        content_type: Some("application/json".into()),
        headers_json: "{}".into(),
        body: Bytes::from(vec![b'x'; 1024]),
        deliveries: vec![NewDelivery {
            destination: Arc::from("crm"),
            ordering_key: None,
        }],
        search: Vec::new(),
    }
}

/// Claims and records every delivery; returns µs per delivery.
async fn drain(store: &Arc<dyn Store>, mode: Mode) -> f64 {
    let now = now_millis();
    let started = Instant::now();
    let mut done = 0u32;
    loop {
        let claims = match mode {
            Mode::Ungated => store
                .claim_due_deliveries("crm", now, now + 60_000, BATCH)
                .await
                .expect("claim"),
            Mode::Gate | Mode::Paced => {
                let request = GateClaim {
                    destination: "crm".into(),
                    now: now_millis(),
                    lease_until: now + 60_000,
                    limit: BATCH,
                    pace: matches!(mode, Mode::Paced).then_some(Pace {
                        per_second: 1_000_000_000,
                        burst: 1_000_000_000,
                    }),
                };
                store
                    .claim_through_gate(&request)
                    .await
                    .expect("claim")
                    .deliveries
            }
        };
        if claims.is_empty() {
            break;
        }
        let outcomes = claims.iter().map(|claim| {
            let attempt = DeliveryAttempt {
                started_at: now,
                duration_ms: 1,
                status_code: Some(200),
                error: None,
                outcome: AttemptOutcome::Delivered,
            };
            store.record_attempt(claim, attempt)
        });
        for recorded in futures_util::future::join_all(outcomes).await {
            recorded.expect("record");
        }
        done += claims.len() as u32;
    }
    assert_eq!(done, EVENTS, "{mode:?}");
    started.elapsed().as_secs_f64() * 1e6 / f64::from(done)
}

async fn fill(store: &Arc<dyn Store>) {
    let at = now_millis();
    let accepts = (0..EVENTS).map(|n| store.accept(event(n, at)));
    for accepted in futures_util::future::join_all(accepts).await {
        accepted.expect("accept");
    }
}

/// Each mode `ROUNDS` times, in rotation (so a noisy neighbour hits every mode alike); the
/// median of each.
async fn report(backend: &str, mut open: impl AsyncFnMut() -> Arc<dyn Store>) {
    const MODES: [Mode; 3] = [Mode::Ungated, Mode::Gate, Mode::Paced];
    const ROUNDS: usize = 5;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for _ in 0..ROUNDS {
        for (i, mode) in MODES.iter().enumerate() {
            let store = open().await;
            fill(&store).await;
            samples[i].push(drain(&store, *mode).await);
        }
    }
    let figures: Vec<(Mode, f64)> = MODES
        .iter()
        .zip(samples)
        .map(|(mode, mut runs)| {
            runs.sort_by(f64::total_cmp);
            (*mode, runs[runs.len() / 2])
        })
        .collect();
    let base = figures[0].1;
    for (mode, us) in figures {
        println!(
            "{backend:<10} {:<8} {us:>7.1} µs per delivery (claim + record)  {:.2}× ungated",
            format!("{mode:?}").to_lowercase(),
            us / base
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("destination_gate: benchmark");
        return;
    }
    // `cargo test` runs bench targets without `--bench`: nothing to check here.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        report("sqlite", async || {
            n += 1;
            let store = SqliteStore::open(SqliteOptions {
                path: dir.path().join(format!("gate-{n}.db")),
                batch_max: 256,
                queue_max: 16_384,
            })
            .expect("open");
            Arc::new(store) as Arc<dyn Store>
        })
        .await;
        let Ok(url) = std::env::var("ONCEHOOK_TEST_PG") else {
            println!("postgresql: skipped (set ONCEHOOK_TEST_PG)");
            return;
        };
        let admin = oncehook::store::postgres::connect(&url)
            .await
            .expect("connect");
        let mut schemas = Vec::new();
        report("postgresql", async || {
            let schema = format!("bench_gate_{:08x}", rand::random::<u32>());
            admin
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .expect("schema");
            schemas.push(schema.clone());
            let separator = if url.contains('?') { '&' } else { '?' };
            let store = PostgresStore::open(PostgresOptions {
                url: format!("{url}{separator}options=-c%20search_path%3D{schema}"),
                pool_size: 8,
                batch_max: 256,
                queue_max: 16_384,
            })
            .await
            .expect("open");
            Arc::new(store) as Arc<dyn Store>
        })
        .await;
        for schema in schemas {
            let _ = admin
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await;
        }
    });
}
