//! `bench-baseline`: the HTTP ceiling for `bench/run`.
//!
//! The same stack as oncehook's intake (axum on hyper, HTTP/1.1, the same tokio runtime)
//! doing nothing but reading the body and answering 202 with a body of about the size of
//! oncehook's. Whatever oncehook does on top (verification, keys, a durable commit) is the
//! difference between the two.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
}

const ACCEPTED: &str = r#"{"status":"accepted","event_id":"00000000-0000-0000-0000-000000000000","idempotency_key":"msg_0000000000000000000000000000000000"}"#;

async fn receive(body: Bytes) -> impl IntoResponse {
    // The body has been read in full by the extractor; nothing is done with it on purpose.
    let _ = body;
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        ACCEPTED,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bench-baseline listening on {}", listener.local_addr()?);
    let app = Router::new()
        .route("/webhooks/{source}", post(receive))
        .fallback(receive);
    axum::serve(listener, app)
        .with_graceful_shutdown(oncehook::shutdown::on_signals().cancelled_owned())
        .await?;
    Ok(())
}
