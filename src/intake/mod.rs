//! Intake: `POST /webhooks/{source}`.
//!
//! The order of checks is the contract (SPEC §4.1): size limit → rate limit → signature →
//! parse/schema → `drop_fields` → idempotency key → one atomic store step → respond. Every
//! check before the store step only reads, so a rejected request stores nothing, and the
//! response is sent only after the store step has committed.

mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::delivery::Wakeups;
use crate::domain::fingerprint::{fingerprint_bytes, fingerprint_json};
use crate::metrics::{self, IntakeOutcome};
use crate::privacy::{self, PayloadCipher, SearchKey, SensitiveValues};
use crate::store::{self, AcceptOutcome, NewEvent, Store};
pub use source::SourceRuntime;

/// Everything intake needs, built once from the config.
pub struct Intake {
    sources: HashMap<String, Arc<SourceRuntime>>,
    store: Arc<dyn Store>,
    wakeups: Arc<Wakeups>,
    cipher: Option<PayloadCipher>,
    search_key: SearchKey,
    body_timeout: std::time::Duration,
    /// Cancelled when the node is shutting down: new webhooks get 503 so providers retry elsewhere.
    stopping: CancellationToken,
}

impl Intake {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        wakeups: Arc<Wakeups>,
        stopping: CancellationToken,
    ) -> anyhow::Result<Intake> {
        let mut sources = HashMap::new();
        for source in &config.sources {
            let runtime = SourceRuntime::build(config, source)?;
            sources.insert(source.name.clone(), Arc::new(runtime));
        }
        Ok(Intake {
            sources,
            store,
            wakeups,
            cipher: config.payload_cipher(),
            search_key: SearchKey::new(config.store.encryption_key.as_deref()),
            body_timeout: config.server.body_timeout,
            stopping,
        })
    }
}

pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(receive))
        .with_state(intake)
}

/// A response body for everything that is not accepted or a duplicate.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    outcome: Option<IntakeOutcome>,
    error: String,
    detail: Option<Value>,
    retry_after_secs: Option<u64>,
}

impl Rejection {
    fn new(status: StatusCode, outcome: IntakeOutcome, error: impl Into<String>) -> Self {
        Rejection {
            status,
            outcome: Some(outcome),
            error: error.into(),
            detail: None,
            retry_after_secs: None,
        }
    }

    fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    fn unavailable(error: impl Into<String>) -> Self {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IntakeOutcome::Unavailable,
            error,
        )
        .retry_after(1)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a Value>,
        }
        let mut response = (
            self.status,
            axum::Json(Body {
                error: &self.error,
                detail: self.detail.as_ref(),
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(source) = intake.sources.get(&source_name) else {
        // Not counted in metrics: a label per unknown path would let anyone grow the series.
        return Rejection {
            status: StatusCode::NOT_FOUND,
            outcome: None,
            error: format!("unknown source {source_name:?}"),
            detail: None,
            retry_after_secs: None,
        }
        .into_response();
    };
    match handle(&intake, source, headers, body).await {
        Ok(handled) => {
            let elapsed = started.elapsed();
            metrics::intake(&source.name, handled.outcome, elapsed);
            tracing::info!(
                source = %source.name,
                event_id = %handled.event_id,
                idempotency_key = %handled.logged_key,
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
                status = rejection.status.as_u16(),
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
    /// The new event's id, or the original's for a duplicate.
    event_id: Uuid,
    /// The idempotency key with any masked or searchable value scrubbed out.
    logged_key: String,
}

async fn handle(
    intake: &Intake,
    source: &SourceRuntime,
    headers: HeaderMap,
    body: Body,
) -> Result<Handled, Rejection> {
    if intake.stopping.is_cancelled() {
        return Err(Rejection::unavailable(
            "the gateway is shutting down; retry later",
        ));
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
    // Refuse a declared oversize body before reading any of it.
    if content_length(&headers).is_some_and(|len| len > source.max_body as u64) {
        return Err(too_large());
    }
    source.check_rate_limit().map_err(|wait_secs| {
        Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            IntakeOutcome::RateLimited,
            "rate limit exceeded for this source",
        )
        .retry_after(wait_secs)
    })?;
    let body = read_body(body, source.max_body, intake.body_timeout)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => too_large(),
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

    source
        .verifier
        .verify(&headers, &body, unix_now())
        .map_err(|e| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                IntakeOutcome::InvalidSignature,
                format!("signature verification failed: {e}"),
            )
        })?;

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut json = parse_body(content_type.as_deref(), &body)?;
    if let Some(schema) = &source.schema {
        let Some(value) = &json else {
            return Err(invalid_body(
                "this source has a JSON Schema, but the body is not JSON",
            ));
        };
        let errors: Vec<Value> = schema
            .iter_errors(value)
            .take(10)
            .map(|e| serde_json::json!({ "path": e.instance_path().to_string(), "message": e.to_string() }))
            .collect();
        if !errors.is_empty() {
            return Err(invalid_body("body does not match the source's schema")
                .with_detail(Value::Array(errors)));
        }
    }

    // Dropped fields never reach the store; the stored (and delivered) body is re-serialized.
    // The replay guard hashes the bytes as received: they are what a captured request repeats.
    let received_body = body.clone();
    let mut stored_body = body;
    if let Some(value) = json.as_mut()
        && source.drop_fields(value)
    {
        let reserialized = serde_json::to_vec(value)
            .map_err(|e| Rejection::unavailable(format!("cannot re-serialize the body: {e}")))?;
        stored_body = Bytes::from(reserialized);
    }

    let fingerprint = match &json {
        Some(value) => fingerprint_json(value, &source.fingerprint_ignore),
        None => fingerprint_bytes(&stored_body),
    };
    let key = source
        .key
        .derive(
            &source.name,
            &headers,
            json.as_ref(),
            None,
            &fingerprint,
            &source.email,
        )
        .map_err(|e| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                IntakeOutcome::InvalidBody,
                "no idempotency key could be derived",
            )
            .with_detail(Value::String(e.to_string()))
        })?;

    let search = match &json {
        Some(value) if !source.search_fields.is_empty() => intake
            .search_key
            .hash_fields(&source.search_fields, value)
            .into_iter()
            .map(|(_, hash)| hash)
            .collect(),
        _ => Vec::new(),
    };
    // A key or a header may repeat a masked or searchable value; what is stored and logged
    // of them is scrubbed (the provider's own response still echoes the key it sent).
    let sensitive = match &json {
        Some(value) if !source.hidden_fields.is_empty() => {
            SensitiveValues::collect(value, &source.hidden_fields)
        }
        _ => SensitiveValues::default(),
    };
    let stored_key = sensitive.scrub(&key.text).into_owned();
    let mut deliveries = source.deliveries_for(&headers, json.as_ref(), &fingerprint);
    let cipher = intake.cipher.as_ref();
    if cipher.is_some() {
        // Ordering keys are only compared for equality: on an encrypted store they are kept as
        // keyed hashes, like search values, so a key read from a masked field is not in clear.
        for delivery in &mut deliveries {
            if let Some(ordering_key) = &mut delivery.ordering_key {
                *ordering_key = intake.search_key.hash_text("ordering_key", ordering_key);
            }
        }
    }
    let headers_json = sensitive.scrub_headers_json(&source.headers_for_storage(&headers));

    let received_at = store::now_millis();
    let dedupe_expires_at = received_at.saturating_add(source.dedupe_ttl_ms);
    let event = NewEvent {
        id: Uuid::now_v7(),
        source: Arc::clone(&source.name),
        received_at,
        idempotency_key: stored_key.clone(),
        dedupe_key: key.dedupe,
        delivery_key: key.dedupe.delivery_key(),
        fingerprint,
        dedupe_expires_at,
        near_duplicate: source.near_duplicate_check(&fingerprint, received_at),
        replay_guard: source.replay_guard_check(&received_body, dedupe_expires_at),
        content_type,
        headers_json: privacy::seal_text(cipher, &headers_json),
        body: privacy::seal_payload(cipher, stored_body),
        deliveries,
        search,
    };
    let event_id = event.id;
    let key_text = key.text;
    let outcome = intake.store.accept(event).await.map_err(|e| {
        if e.is_transient() {
            tracing::warn!(source = %source.name, error = %e, "store unavailable; answering 503");
            Rejection::unavailable("the store is unavailable; retry later")
        } else {
            tracing::error!(source = %source.name, error = %e, "store failed");
            Rejection {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                outcome: Some(IntakeOutcome::Unavailable),
                error: "internal error".into(),
                detail: None,
                retry_after_secs: None,
            }
        }
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
                event_id,
                logged_key: stored_key,
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
                event_id: duplicate.event_id,
                logged_key: stored_key,
            }
        }
    })
}

fn invalid_body(error: &str) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, IntakeOutcome::InvalidBody, error)
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

enum ReadError {
    TooLarge,
    TooSlow,
    Broken(String),
}

async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ReadError> {
    let collect = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect)
        .await
        .map_err(|_| ReadError::TooSlow)?
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Broken(e.to_string())),
    }
}

/// Parses the body when it is JSON. JSON content types (and a missing one) must parse; form and
/// text bodies must be UTF-8 and are kept as bytes; anything else is opaque bytes.
fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Option<Value>, Rejection> {
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let is_json = essence.is_empty() || essence == "application/json" || essence.ends_with("+json");
    if is_json {
        return serde_json::from_slice(body).map(Some).map_err(|e| {
            invalid_body("body is not valid JSON").with_detail(Value::String(e.to_string()))
        });
    }
    if (essence.starts_with("text/") || essence == "application/x-www-form-urlencoded")
        && std::str::from_utf8(body).is_err()
    {
        return Err(invalid_body("body is not valid UTF-8"));
    }
    Ok(None)
}
