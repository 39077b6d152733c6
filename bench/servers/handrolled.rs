//! `bench-handrolled`: the receiver teams write by hand, as the comparison for `bench/run`.
//!
//! It verifies the same signature scheme with the same code as oncehook (so crypto costs the
//! same on both sides), takes the provider's delivery id as the key, and stores each webhook
//! with one `INSERT … ON CONFLICT DO NOTHING` in its own transaction on SQLite with oncehook's
//! durability settings (WAL, `synchronous = FULL`): 202 when the row was new, 200 when the key
//! was already there. One fsync per request is what makes it slow, and what oncehook's group
//! commit is there to avoid.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use oncehook::config::Config;
use oncehook::verify::Verifier;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// An oncehook config; `--source` in it says which signature scheme and secret to check.
    #[arg(short, long)]
    config: PathBuf,
    #[arg(long)]
    source: String,
    /// The SQLite file (created if missing).
    #[arg(long)]
    db: PathBuf,
}

struct Receiver {
    verifier: Verifier,
    db: Mutex<Connection>,
}

/// The delivery-id headers providers send, in the order a hand-written receiver checks them.
const ID_HEADERS: [&str; 5] = [
    "webhook-id",
    "svix-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
    "idempotency-key",
];

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if receiver.verifier.verify(&headers, &body, now).is_err() {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let key = ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
        .or_else(|| json.get("id").and_then(|id| id.as_str()).map(str::to_owned))
        .unwrap_or_else(|| hex::encode(Sha256::digest(&body)));
    let stored = tokio::task::spawn_blocking(move || {
        let db = receiver
            .db
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let inserted = db
            .prepare_cached(
                "INSERT INTO webhooks (key, received_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO NOTHING",
            )?
            .execute(rusqlite::params![key, now, &body[..]])?;
        anyhow::Ok(inserted == 1)
    })
    .await;
    match stored {
        Ok(Ok(true)) => (StatusCode::ACCEPTED, r#"{"status":"accepted"}"#).into_response(),
        Ok(Ok(false)) => (StatusCode::OK, r#"{"status":"duplicate"}"#).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store failed").into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let source = config
        .source(&args.source)
        .with_context(|| format!("no source {:?} in the config", args.source))?;
    let verifier = Verifier::from_config(&source.verify)?;
    let db = Connection::open(&args.db)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         CREATE TABLE IF NOT EXISTS webhooks (
             key         TEXT PRIMARY KEY,
             received_at INTEGER NOT NULL,
             body        BLOB NOT NULL
         );",
    )?;
    let receiver = Arc::new(Receiver {
        verifier,
        db: Mutex::new(db),
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bench-handrolled listening on {}", listener.local_addr()?);
    let app = Router::new()
        .route("/webhooks/{source}", post(receive))
        .with_state(receiver);
    axum::serve(listener, app)
        .with_graceful_shutdown(oncehook::shutdown::on_signals().cancelled_owned())
        .await?;
    Ok(())
}
