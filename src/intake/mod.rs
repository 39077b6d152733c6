//! Intake: `POST /webhooks/{source}`.
//!
//! The order of checks is the contract (SPEC §4.1): size limit and `Content-Encoding` →
//! signature → rate limit → parse/schema → `drop_fields` → idempotency key → one atomic store
//! step → respond. Every check before the store step only reads, so a rejected request stores
//! nothing, and the response is sent only after the store step has committed.
//!
//! Before a request is authenticated, what it may cost is limited per client address (`edge`):
//! an address whose signatures keep failing is refused with 429 before anything is read or
//! verified, and all bodies being read share one memory budget. A forged request never spends
//! its source's `rate_limit`, so a flood of them cannot throttle the real provider.

mod edge;
mod prepare;
mod rejection;
mod source;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http_error::HttpError;
use crate::metrics::{self, IntakeOutcome};
use crate::privacy::{PayloadCipher, SearchKey};
use crate::store::{self, AcceptOutcome, Store};
use crate::verify::{HandshakeError, HandshakeReply};
use crate::wakeups::Wakeups;
use edge::{AuthFailureLimiter, BodyBudget, BodyReservation};
pub use prepare::{Prepared, Sealing, prepare};
pub use rejection::Rejection;
pub use source::{RateLimit, RouteRuntime, SourceParts, SourceRuntime, SourceSchema};

/// Everything intake needs, built once from the config.
pub struct Intake {
    sources: HashMap<String, Arc<SourceRuntime>>,
    store: Arc<dyn Store>,
    wakeups: Arc<Wakeups>,
    cipher: Option<Arc<PayloadCipher>>,
    search_key: SearchKey,
    body_timeout: std::time::Duration,
    /// `server.auth_failures_per_ip`: failed signature checks per client address.
    auth_failures: AuthFailureLimiter,
    /// `server.max_buffered_body`: request bodies being read at once.
    body_budget: BodyBudget,
    /// Cancelled when the node is shutting down: new webhooks get 503 so providers retry elsewhere.
    stopping: CancellationToken,
}

/// What intake is built from, compiled from the config by `app`.
pub struct IntakeParts {
    pub sources: Vec<SourceRuntime>,
    pub cipher: Option<Arc<PayloadCipher>>,
    pub search_key: SearchKey,
    /// Time a client has to send its body once the headers are in.
    pub body_timeout: std::time::Duration,
    /// `server.auth_failures_per_ip`: failed signature checks allowed per client address.
    pub auth_failures_per_ip: RateLimit,
    /// `server.max_buffered_body`: bytes of request bodies held at once.
    pub max_buffered_body: usize,
}

impl Intake {
    pub fn new(
        parts: IntakeParts,
        store: Arc<dyn Store>,
        wakeups: Arc<Wakeups>,
        stopping: CancellationToken,
    ) -> Intake {
        let sources = parts
            .sources
            .into_iter()
            .map(|source| (source.name.to_string(), Arc::new(source)))
            .collect();
        Intake {
            sources,
            store,
            wakeups,
            cipher: parts.cipher,
            search_key: parts.search_key,
            body_timeout: parts.body_timeout,
            auth_failures: AuthFailureLimiter::new(parts.auth_failures_per_ip),
            body_budget: BodyBudget::new(parts.max_buffered_body),
            stopping,
        }
    }
}

pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(receive).get(receive_get))
        .with_state(intake)
}

#[derive(Serialize)]
struct AcceptedBody<'a> {
    status: &'static str,
    event_id: Uuid,
    idempotency_key: &'a str,
}

#[derive(Serialize)]
struct DuplicateBody<'a> {
    status: &'static str,
    event_id: Uuid,
    idempotency_key: &'a str,
    reason: &'static str,
    conflict: bool,
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    Path(source_name): Path<String>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // `server::serve` provides the peer; a router driven in-process (tests) has none, and then
    // the per-address limits do not apply.
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let started = Instant::now();
    let Some(source) = intake.sources.get(&source_name) else {
        // Not counted in metrics: a label per unknown path would let anyone grow the series.
        return Rejection::uncounted(HttpError::not_found(format!(
            "unknown source {source_name:?}"
        )))
        .into_response();
    };
    match handle(&intake, source, peer, query.as_deref(), headers, body).await {
        Ok(handled) => {
            let elapsed = started.elapsed();
            metrics::intake(&source.name, handled.outcome, elapsed);
            tracing::info!(
                source = %source.name,
                event_id = handled.event_id.map(|id| id.to_string()),
                idempotency_key = handled.logged_key.as_deref(),
                outcome = handled.outcome.as_str(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "webhook {}",
                handled.outcome.as_str()
            );
            handled.response
        }
        Err(rejection) => {
            let elapsed = started.elapsed();
            if let Some(outcome) = rejection.outcome {
                metrics::intake(&source.name, outcome, elapsed);
            }
            // The rejection's text is not logged: a schema error may quote the payload.
            tracing::info!(
                source = %source.name,
                outcome = rejection.outcome.map_or("error", IntakeOutcome::as_str),
                status = rejection.status().as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "webhook rejected"
            );
            rejection.into_response()
        }
    }
}

/// A webhook that was accepted or recognised as a duplicate.
struct Handled {
    outcome: IntakeOutcome,
    response: Response,
    /// The new event's id, or the original's for a duplicate (none for a handshake).
    event_id: Option<Uuid>,
    /// The idempotency key with any masked or searchable value scrubbed out.
    logged_key: Option<String>,
}

impl Handled {
    fn handshake(reply: HandshakeReply) -> Handled {
        Handled {
            outcome: IntakeOutcome::Handshake,
            response: (
                StatusCode::OK,
                [(header::CONTENT_TYPE, reply.content_type)],
                reply.body,
            )
                .into_response(),
            event_id: None,
            logged_key: None,
        }
    }
}

/// The answer to a handshake that failed its check: 401 (signature) and 403 (Meta's
/// `verify_token`) count as failed authentication, for the address's budget too.
fn handshake_rejection(intake: &Intake, peer: Option<IpAddr>, error: HandshakeError) -> Rejection {
    let status = error.status();
    let outcome = if status == StatusCode::BAD_REQUEST {
        IntakeOutcome::InvalidBody
    } else {
        if let Some(ip) = peer {
            intake.auth_failures.record_failure(ip);
        }
        IntakeOutcome::InvalidSignature
    };
    Rejection::new(status, outcome, format!("handshake refused: {error}"))
}

/// `GET /webhooks/{source}`: only Meta's subscription check (`hub.mode=subscribe`); any other
/// GET is 405, as the route is for POSTs.
async fn receive_get(
    State(intake): State<Arc<Intake>>,
    Path(source_name): Path<String>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let started = Instant::now();
    let not_allowed = || {
        Rejection::uncounted(HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhooks are POSTed; GET answers only a provider's subscription check",
        ))
        .into_response()
    };
    let Some(source) = intake.sources.get(&source_name) else {
        return Rejection::uncounted(HttpError::not_found(format!(
            "unknown source {source_name:?}"
        )))
        .into_response();
    };
    if !source.verifier.answers_get() {
        return not_allowed();
    }
    if let Some(ip) = peer
        && let Err(wait_secs) = intake.auth_failures.check(ip)
    {
        return Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            IntakeOutcome::RateLimited,
            "too many requests with failed signatures from this address",
        )
        .retry_after(wait_secs)
        .into_response();
    }
    let answer =
        source
            .verifier
            .handshake(&Method::GET, query.as_deref(), &headers, b"", unix_now());
    let (outcome, response) = match answer {
        None => return not_allowed(),
        Some(Ok(reply)) => {
            let handled = Handled::handshake(reply);
            (handled.outcome, handled.response)
        }
        Some(Err(error)) => {
            let rejection = handshake_rejection(&intake, peer, error);
            (
                rejection.outcome.unwrap_or(IntakeOutcome::InvalidSignature),
                rejection.into_response(),
            )
        }
    };
    metrics::intake(&source.name, outcome, started.elapsed());
    tracing::info!(source = %source.name, outcome = outcome.as_str(), "webhook handshake");
    response
}

async fn handle(
    intake: &Intake,
    source: &SourceRuntime,
    peer: Option<IpAddr>,
    query: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Result<Handled, Rejection> {
    if intake.stopping.is_cancelled() {
        return Err(Rejection::unavailable(
            "the gateway is shutting down; retry later",
        ));
    }
    // An address that has used up its failed signature checks is refused before its request is
    // read or verified, so a flood of forgeries costs next to nothing.
    if let Some(ip) = peer {
        intake.auth_failures.check(ip).map_err(|wait_secs| {
            Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                IntakeOutcome::RateLimited,
                "too many requests with failed signatures from this address",
            )
            .retry_after(wait_secs)
        })?;
    }
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IntakeOutcome::TooLarge,
            format!(
                "body is larger than this source's max_body of {} bytes",
                source.max_body
            ),
        )
    };
    // Refuse a declared oversize body, or one in an encoding, before reading any of it.
    if content_length(&headers).is_some_and(|len| len > source.max_body as u64) {
        return Err(too_large());
    }
    if let Some(coding) = unsupported_content_encoding(&headers) {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IntakeOutcome::InvalidBody,
            format!(
                "Content-Encoding {coding:?} is not supported: send the body as it is (identity)"
            ),
        ));
    }
    // Held until the request is answered: the body's bytes count against the shared budget.
    let (body, _body_reservation) = read_body(
        body,
        source.max_body,
        intake.body_timeout,
        &intake.body_budget,
    )
    .await
    .map_err(|e| match e {
        ReadError::TooLarge => too_large(),
        ReadError::OverBudget => Rejection::unavailable(
            "too many request bodies are being received at once; retry later",
        ),
        ReadError::TooSlow => Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            IntakeOutcome::InvalidBody,
            "the request body did not arrive within the server's body_timeout",
        ),
        ReadError::Broken(message) => Rejection::new(
            StatusCode::BAD_REQUEST,
            IntakeOutcome::InvalidBody,
            "cannot read the request body",
        )
        .with_detail(Value::String(message)),
    })?;

    // A provider's URL check (Slack's url_verification, Zoom's endpoint.url_validation) is
    // answered at once, after its own signature check, and stores nothing.
    if let Some(answer) =
        source
            .verifier
            .handshake(&Method::POST, query, &headers, &body, unix_now())
    {
        return answer
            .map(Handled::handshake)
            .map_err(|error| handshake_rejection(intake, peer, error));
    }
    source
        .verifier
        .verify(&headers, &body, unix_now())
        .map_err(|e| {
            if let Some(ip) = peer {
                intake.auth_failures.record_failure(ip);
            }
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                IntakeOutcome::InvalidSignature,
                format!("signature verification failed: {e}"),
            )
        })?;
    // Only an authenticated request spends the source's budget: forgeries cannot throttle the
    // provider.
    source.check_rate_limit().map_err(|wait_secs| {
        Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            IntakeOutcome::RateLimited,
            "rate limit exceeded for this source",
        )
        .retry_after(wait_secs)
    })?;

    let prepared = prepare(
        source,
        &Sealing {
            cipher: intake.cipher.as_deref(),
            search_key: &intake.search_key,
        },
        &headers,
        body,
        Uuid::now_v7(),
        store::now_millis(),
    )?;
    let Prepared {
        event,
        key_text,
        stored_key,
    } = prepared;
    let event_id = event.id;
    // The key store's latency as intake sees it: queueing for the writer, the batch it joins
    // and its commit, whatever the answer.
    let handed_over = Instant::now();
    let outcome = intake.store.accept(event).await;
    metrics::store_op("accept", handed_over.elapsed());
    let outcome = outcome.map_err(|e| Rejection {
        outcome: Some(IntakeOutcome::Unavailable),
        error: HttpError::from(e),
    })?;
    Ok(match outcome {
        AcceptOutcome::Accepted => {
            for destination in source.destination_names() {
                intake.wakeups.wake(destination);
            }
            let body = AcceptedBody {
                status: "accepted",
                event_id,
                idempotency_key: &key_text,
            };
            Handled {
                outcome: IntakeOutcome::Accepted,
                response: (StatusCode::ACCEPTED, axum::Json(body)).into_response(),
                event_id: Some(event_id),
                logged_key: Some(stored_key),
            }
        }
        AcceptOutcome::Duplicate(duplicate) => {
            let outcome = if duplicate.conflict {
                IntakeOutcome::Conflict
            } else {
                IntakeOutcome::Duplicate
            };
            let body = DuplicateBody {
                status: "duplicate",
                event_id: duplicate.event_id,
                idempotency_key: &key_text,
                reason: duplicate.reason.as_str(),
                conflict: duplicate.conflict,
            };
            Handled {
                outcome,
                response: (StatusCode::OK, axum::Json(body)).into_response(),
                event_id: Some(duplicate.event_id),
                logged_key: Some(stored_key),
            }
        }
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The first coding of `Content-Encoding` other than `identity` (case-insensitive; empty list
/// elements are ignored). Bodies are verified and stored as received, so an encoded body would
/// be signed, fingerprinted and delivered as opaque bytes; it is refused instead.
fn unsupported_content_encoding(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|coding| coding.trim_ascii())
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"))
        .map(|coding| String::from_utf8_lossy(coding).chars().take(64).collect())
}

enum ReadError {
    TooLarge,
    TooSlow,
    /// Reading it would take the bodies held at once over `server.max_buffered_body`.
    OverBudget,
    Broken(String),
}

/// Reads the whole body, up to `limit` bytes and within `timeout`. Every frame is counted
/// against `budget` as it arrives (not the declared length: a client that declares a large body
/// and stalls holds nothing); the reservation returned keeps the body's bytes counted until it
/// is dropped. On an error the bytes read so far are freed and given back at once.
async fn read_body<'a>(
    mut body: Body,
    limit: usize,
    timeout: std::time::Duration,
    budget: &'a BodyBudget,
) -> Result<(Bytes, BodyReservation<'a>), ReadError> {
    let mut reservation = budget.reservation();
    let read = async {
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            total = total.saturating_add(data.len());
            if total > limit {
                return Err(ReadError::TooLarge);
            }
            if !reservation.grow(data.len()) {
                return Err(ReadError::OverBudget);
            }
            chunks.push(data);
        }
        // One frame is the common case and needs no copy.
        if chunks.len() == 1 {
            return Ok(chunks.swap_remove(0));
        }
        let mut joined = BytesMut::with_capacity(total);
        for chunk in &chunks {
            joined.extend_from_slice(chunk);
        }
        Ok(joined.freeze())
    };
    let body = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ReadError::TooSlow)??;
    Ok((body, reservation))
}
