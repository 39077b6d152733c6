//! The soak: the real gateway on SQLite, delivering to a local destination, under a steady
//! open-loop load at half of its measured end-to-end capacity, with a one-minute dedupe TTL so
//! keys expire and are purged many times over. Every 10 s it samples memory, storage, the key
//! table, the delivery backlog and ack latency; at the end every accepted event must have been
//! delivered. `reliability/run soak` runs it (ten minutes by default) and draws the samples.
//!
//! The load comes from `oncehook bench` (one run per 10 s window, so each window has its own
//! percentiles); the destination only counts, so it does not grow with the run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::faults::{CountingSink, report};
use common::{BIN, Gateway};
use serde_json::{Value, json};
use tokio::task::block_in_place;

const WINDOW_SECS: u64 = 10;
const DEDUPE_TTL_SECS: u64 = 60;
/// Shorter than the TTL, as the config requires, and longer than a closed-loop run signs ahead.
const TOLERANCE_SECS: u64 = 45;

fn config(sink_url: &str) -> String {
    format!(
        "[[sources]]\nname = \"soak\"\nverify = {{ scheme = \"standard\", secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"], tolerance = \"{TOLERANCE_SECS}s\" }}\n\
         dedupe_ttl = \"{DEDUPE_TTL_SECS}s\"\n\n\
         [[destinations]]\nname = \"sink\"\nurl = \"{sink_url}\"\ntimeout = \"5s\"\nconcurrency = 16\n\
         backoff = {{ base = \"100ms\", max = \"2s\" }}\n\n\
         [[routes]]\nsource = \"soak\"\nto = [\"sink\"]\n"
    )
}

/// Runs `oncehook bench` against the gateway and returns its JSON report, or None (after
/// saying why) when the generator itself failed.
fn bench(gateway: &Gateway, args: &[&str]) -> Option<Value> {
    let output = Command::new(BIN)
        .args(["bench", "-c"])
        .arg(&gateway.config_path)
        .args(["--source", "soak", "--json", "--body-size", "1024"])
        .args(args)
        .output()
        .expect("run oncehook bench");
    match serde_json::from_slice(&output.stdout) {
        Ok(report) => Some(report),
        Err(e) => {
            eprintln!(
                "bench printed no report ({e}; {}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
    }
}

fn open_deliveries(gateway: &Gateway) -> i64 {
    gateway.count("SELECT COUNT(*) FROM deliveries WHERE state NOT IN ('delivered', 'dead')")
}

async fn drain(gateway: &Gateway, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if open_deliveries(gateway) == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// End-to-end capacity: a closed-loop burst on a gateway of its own, divided by the time until
/// everything it accepted was delivered (intake alone outruns delivery on SQLite).
async fn measure_capacity() -> (f64, Value) {
    let sink = CountingSink::start(Duration::ZERO).await;
    let gateway = block_in_place(|| Gateway::start(&config(&sink.url)));
    let started = Instant::now();
    let report = block_in_place(|| {
        bench(
            &gateway,
            &["--connections", "32", "--duration", "15s", "--warmup", "1s"],
        )
    })
    .expect("the capacity run's report");
    let intake_rate = report["requests_per_sec"].as_f64().unwrap_or(0.0);
    let drained = drain(&gateway, Duration::from_secs(300)).await;
    let events = gateway.event_count() as f64;
    let end_to_end_rate = events / started.elapsed().as_secs_f64();
    assert!(drained, "the capacity run's deliveries did not drain");
    let capacity = intake_rate.min(end_to_end_rate);
    (
        capacity,
        json!({
            "intake_closed_loop_per_sec": intake_rate,
            "intake_p99_us": report["latency_us"]["p99"],
            "end_to_end_per_sec": end_to_end_rate,
            "events": events,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs for minutes: reliability/run soak"]
async fn soak_at_half_capacity_keeps_memory_flat_keys_bounded_and_loses_nothing() {
    let seconds: u64 = std::env::var("ONCEHOOK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let (rate, capacity) = match std::env::var("ONCEHOOK_SOAK_RATE")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
    {
        Some(rate) => (rate, json!({"given_rate": rate})),
        None => {
            let (capacity, figures) = measure_capacity().await;
            ((capacity / 2.0).floor().max(1.0), figures)
        }
    };
    eprintln!("soak: {rate} req/s for {seconds} s; capacity {capacity}");

    let sink = CountingSink::start(Duration::ZERO).await;
    let gateway = block_in_place(|| Gateway::start(&config(&sink.url)));
    let pid = gateway.pid().expect("running");
    let db = gateway.db_path();
    let wal = db.with_extension("db-wal");
    let rate_arg = rate.to_string();
    let window_arg = format!("{WINDOW_SECS}s");
    let started = Instant::now();
    let mut samples = Vec::new();
    let (mut requests, mut accepted, mut duplicates, mut failed) = (0u64, 0u64, 0u64, 0u64);
    // Windows whose generator process failed (not the gateway: its answers are what is counted).
    let mut generator_failures = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let window = block_in_place(|| {
            bench(
                &gateway,
                &[
                    "--rate",
                    &rate_arg,
                    "--duration",
                    &window_arg,
                    "--warmup",
                    "0s",
                    "--duplicates",
                    "0.1",
                    "--connections",
                    "64",
                ],
            )
        });
        let Some(window) = window else {
            generator_failures += 1;
            continue;
        };
        let count = |field: &str| window[field].as_u64().unwrap_or(0);
        requests += count("requests");
        accepted += count("accepted_202");
        duplicates += count("duplicate_200");
        failed +=
            count("server_5xx") + count("error_total") + count("client_4xx") + count("not_sent");
        let sample = json!({
            "t_secs": started.elapsed().as_secs_f64(),
            "rss_kib": status_kib(pid, "VmRSS"),
            "hwm_kib": status_kib(pid, "VmHWM"),
            "db_bytes": file_size(&db),
            "wal_bytes": file_size(&wal),
            "dedupe_keys": gateway.count("SELECT COUNT(*) FROM dedupe_keys"),
            "events": gateway.event_count(),
            "open_deliveries": open_deliveries(&gateway),
            "delivered": sink.unique(),
            "requests": count("requests"),
            "requests_per_sec": window["requests_per_sec"],
            "accepted_202": count("accepted_202"),
            "duplicate_200": count("duplicate_200"),
            "failed": count("server_5xx") + count("error_total") + count("client_4xx"),
            "not_sent": count("not_sent"),
            "ack_p50_us": window["latency_us"]["p50"],
            "ack_p99_us": window["latency_us"]["p99"],
            "ack_p999_us": window["latency_us"]["p999"],
            "ack_max_us": window["latency_us"]["max"],
        });
        eprintln!("{sample}");
        samples.push(sample);
    }
    let drained = drain(&gateway, Duration::from_secs(180)).await;
    let events = gateway.event_count();
    let delivered = sink.unique() as i64;
    let redelivered = sink.total() as i64 - delivered;
    // Every bench run has its own keys, and repeats come within its 10 s: a key stored twice
    // was accepted twice.
    let double_accepts = gateway.count(
        "SELECT COUNT(*) FROM (SELECT idempotency_key FROM events
                               GROUP BY idempotency_key HAVING COUNT(*) > 1)",
    );

    let rss: Vec<u64> = samples
        .iter()
        .filter_map(|s| s["rss_kib"].as_u64())
        .collect();
    let keys: Vec<i64> = samples
        .iter()
        .filter_map(|s| s["dedupe_keys"].as_i64())
        .collect();
    // After the first two minutes keys expire as fast as they arrive.
    let settled_from = (120 / WINDOW_SECS) as usize;
    let (rss_settled, rss_end) = (
        rss.get(settled_from).copied().unwrap_or(0),
        rss.last().copied().unwrap_or(0),
    );
    let key_ceiling = keys.iter().skip(settled_from).max().copied().unwrap_or(0);
    let expected_keys = (rate * 0.9 * (DEDUPE_TTL_SECS + 30) as f64) as i64;
    report(
        "soak",
        json!({
            "seconds": seconds,
            "rate_per_sec": rate,
            "capacity": capacity,
            "dedupe_ttl_secs": DEDUPE_TTL_SECS,
            "purge_interval_secs": 30,
            "duplicates": 0.1,
            "window_secs": WINDOW_SECS,
            "store": "sqlite",
            "samples": samples,
        }),
        &json!({
            "events_sent": accepted,
            "requests": requests,
            "acknowledged": accepted + duplicates,
            "accepted_202": accepted,
            "duplicates_200": duplicates,
            "failed_or_unsent": failed,
            "generator_failures": generator_failures,
            "stored": events,
            "delivered": delivered,
            "dead": 0,
            "lost": events - delivered,
            "double_accepts": double_accepts,
            "redeliveries": redelivered,
            "rss_kib_at_2_min": rss_settled,
            "rss_kib_at_end": rss_end,
            "dedupe_keys_max_after_2_min": key_ceiling,
            "dedupe_keys_expected_ceiling": expected_keys,
        }),
    );
    assert!(drained, "deliveries did not drain after the soak");
    assert_eq!(events, delivered, "every stored event was delivered");
    assert!(accepted as i64 <= events, "a 202 for an event not stored");
    assert_eq!(double_accepts, 0, "a key was accepted twice");
    assert!(
        key_ceiling <= expected_keys * 3 / 2 + 1_000,
        "dedupe keys grew past TTL × rate: {key_ceiling} (expected about {expected_keys})"
    );
}
