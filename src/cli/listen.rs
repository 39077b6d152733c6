//! `oncehook listen`: a small receiver that prints every delivery it gets and checks its
//! Standard Webhooks signature, so a set-up can be watched end to end (like `stripe listen`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;

use super::output::outln;
use crate::delivery::signing_verifier;
use crate::verify::Verifier;

struct Listener {
    verifier: Option<Verifier>,
    status: StatusCode,
}

pub async fn run(port: u16, secret: Option<&str>, status: u16) -> anyhow::Result<ExitCode> {
    let verifier = match secret {
        Some(secret) => Some(signing_verifier(secret).context("--secret")?),
        None => None,
    };
    let status = StatusCode::from_u16(status).context("--status is not an HTTP status code")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    outln!(
        "listening on http://{} ({}); answering {}",
        listener.local_addr()?,
        if verifier.is_some() {
            "checking signatures"
        } else {
            "not checking signatures"
        },
        status.as_u16()
    );
    let state = Arc::new(Listener { verifier, status });
    let app = Router::new().fallback(any(receive)).with_state(state);
    let stop = crate::shutdown::on_signals();
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(ExitCode::SUCCESS)
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    };
    let signature = match &listener.verifier {
        None => "unchecked".to_owned(),
        Some(verifier) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            match verifier.verify(&headers, &body, now) {
                Ok(()) => "signature ok".to_owned(),
                Err(e) => format!("SIGNATURE REJECTED ({e})"),
            }
        }
    };
    outln!(
        "{method} {uri}  event {}  key {}  source {}  attempt {}{}  {signature}",
        header("oncehook-event-id"),
        header("idempotency-key"),
        header("oncehook-source"),
        header("oncehook-attempt"),
        headers
            .get("oncehook-replay")
            .and_then(|v| v.to_str().ok())
            .map(|r| format!("  replay {r}"))
            .unwrap_or_default(),
    );
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    for line in text.lines().take(40) {
        outln!("  {line}");
    }
    if listener.verifier.is_some() && signature != "signature ok" {
        return StatusCode::UNAUTHORIZED;
    }
    listener.status
}
