//! `bench-sink`: a destination that measures end-to-end latency for `bench/run`.
//!
//! Every POST is answered 200 at once. When the delivered body carries `sent_at_us` (the
//! generator's send time, put there by `oncehook bench`), the delay from then to now goes into
//! an HDR histogram; repeats of one event (same `Idempotency-Key`, which oncehook keeps
//! across retries) are counted apart. `GET /stats` returns the numbers as JSON, and they are
//! printed to stdout when the sink stops. Both clocks are the same machine's wall clock.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9102")]
    listen: SocketAddr,
}

struct Tally {
    deliveries: u64,
    /// Deliveries whose body had no send time (e.g. requests signed before the window).
    untimed: u64,
    repeats: u64,
    seen: HashSet<String>,
    latency_us: Histogram<u64>,
}

type Shared = Arc<Mutex<Tally>>;

async fn deliver(State(tally): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let sent_at_us = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json.get("sent_at_us").and_then(Value::as_u64));
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(mut tally) = tally.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    tally.deliveries += 1;
    if let Some(key) = key
        && !tally.seen.insert(key)
    {
        tally.repeats += 1;
        return StatusCode::OK;
    }
    match sent_at_us {
        Some(sent) => {
            tally
                .latency_us
                .saturating_record(now_us.saturating_sub(sent).max(1));
        }
        None => tally.untimed += 1,
    }
    StatusCode::OK
}

fn summary(tally: &Tally) -> Value {
    let h = &tally.latency_us;
    json!({
        "deliveries": tally.deliveries,
        "distinct": tally.seen.len(),
        "repeats": tally.repeats,
        "untimed": tally.untimed,
        "timed": h.len(),
        "end_to_end_us": {
            "p50": h.value_at_quantile(0.5),
            "p90": h.value_at_quantile(0.9),
            "p95": h.value_at_quantile(0.95),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
            "mean": h.mean(),
        },
    })
}

async fn stats(State(tally): State<Shared>) -> Result<Json<Value>, StatusCode> {
    let tally = tally
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(summary(&tally)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tally: Shared = Arc::new(Mutex::new(Tally {
        deliveries: 0,
        untimed: 0,
        repeats: 0,
        seen: HashSet::new(),
        latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
    }));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bench-sink listening on {}", listener.local_addr()?);
    let app = Router::new()
        .route("/stats", get(stats))
        .fallback(axum::routing::post(deliver))
        .with_state(Arc::clone(&tally));
    axum::serve(listener, app)
        .with_graceful_shutdown(oncehook::shutdown::on_signals().cancelled_owned())
        .await?;
    let tally = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("the tally was poisoned"))?;
    if tally.deliveries == 0 {
        eprintln!("bench-sink: no deliveries seen");
    }
    println!("{}", summary(&tally));
    Ok(())
}
