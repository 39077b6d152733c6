//! `GET /api/v1/events` (search) and `GET /api/v1/events/{id}` (one event in detail).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ApiContext;
use super::error::{ApiError, ErrorBody};
use super::params::{
    decode_cursor, format_time, given, paginate, parse_limit, parse_time, word_list,
};
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::privacy::{
    MASK, SensitiveValues, decrypt_with, is_secret_header, masked_preview, open_text,
};
use crate::store::{EventQuery, EventSummary, now_millis};

/// Query parameters of `GET /api/v1/events`. Besides these, any name a source declares in
/// `search_fields` or a destination in `response_capture` is a parameter too (`?crm_id=…`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the parameters; the handler reads them as pairs"
)]
pub struct EventsParams {
    /// Only events of this source.
    source: Option<String>,
    /// Only events with this status.
    #[param(inline)]
    status: Option<EventStatus>,
    /// Only the event with this idempotency key (as shown in listings).
    key: Option<String>,
    /// Events whose `email` search field has this value (case and surrounding spaces ignored).
    email: Option<String>,
    /// Events whose `contact` search field has this value.
    contact: Option<String>,
    /// Received at or after: an RFC 3339 time or a duration ago (`15m`, `2h`, `7d`).
    since: Option<String>,
    /// Received before: an RFC 3339 time or a duration ago.
    until: Option<String>,
    /// Events per page (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of events, newest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventItem {
    pub event_id: Uuid,
    pub source: String,
    pub idempotency_key: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub status: EventStatus,
    pub content_type: Option<String>,
    /// How many deliveries the event has.
    pub deliveries: u32,
}

impl From<EventSummary> for EventItem {
    fn from(event: EventSummary) -> EventItem {
        EventItem {
            event_id: event.id,
            source: event.source,
            idempotency_key: event.idempotency_key,
            received_at: format_time(event.received_at),
            status: event.status,
            content_type: event.content_type,
            deliveries: event.deliveries,
        }
    }
}

/// One event: its payload as operators may see it, its deliveries with every attempt, and the
/// replays that touched it.
#[derive(Serialize, ToSchema)]
pub struct EventDetail {
    pub event_id: Uuid,
    pub source: String,
    pub idempotency_key: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub status: EventStatus,
    pub content_type: Option<String>,
    /// Request headers as received; credentials and signatures are masked.
    pub headers: BTreeMap<String, String>,
    /// The payload with the source's `mask_fields` and `search_fields` masked (JSON), or text.
    pub payload: Value,
    pub deliveries: Vec<DeliveryDetail>,
    /// Newest first.
    pub replays: Vec<EventReplay>,
    /// Values kept from destinations' answers (`response_capture`), by delivery and name.
    pub captured: Vec<CapturedItem>,
    /// Repeats answered 200 at intake while the event's key was live.
    pub duplicates: DuplicatesItem,
}

#[derive(Serialize, ToSchema)]
pub struct DuplicatesItem {
    pub count: u64,
    #[schema(format = DateTime)]
    pub last_seen_at: Option<String>,
    /// Repeats of the key whose content differed from the original's.
    pub conflicts: u64,
}

/// A value kept from the answer that delivered a delivery.
#[derive(Serialize, ToSchema)]
pub struct CapturedItem {
    pub delivery_id: i64,
    pub destination: String,
    /// The `response_capture` name (`crm_id`).
    pub name: String,
    pub value: String,
    #[schema(format = DateTime)]
    pub captured_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    pub delivery_id: i64,
    pub destination: String,
    /// `pending`, `in_flight`, `retrying`, `delivered` or `dead`.
    pub state: DeliveryState,
    /// Attempts counted since the delivery was created or last replayed.
    pub attempt_count: u32,
    pub ordering_key: Option<String>,
    /// When the next attempt is due (open deliveries only).
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub dead_reason: Option<DeadReason>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptItem>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptItem {
    pub number: u32,
    #[schema(format = DateTime)]
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// `delivered`, `retry` or `dead`.
    pub outcome: DeliveryOutcome,
    /// Set when the attempt was made under a replay.
    pub replay_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct EventReplay {
    pub replay_id: Uuid,
    pub delivery_id: i64,
    pub destination: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub requested_by: String,
    pub reason: String,
}

/// Search events.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventsParams),
    responses(
        (status = 200, description = "Matching events, newest first", body = EventList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list(
    State(context): State<Arc<ApiContext>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(pairs) = query?;
    let (mut wanted, limit) = event_query(&context, &pairs, true)?;
    let limit = parse_limit(limit)?;
    wanted.limit = limit + 1;
    let events = context.store.list_events(&wanted).await?;
    let (events, next_cursor) = paginate(events, limit, EventSummary::cursor);
    Ok(Json(EventList {
        events: events.into_iter().map(EventItem::from).collect(),
        next_cursor,
    }))
}

/// The filters of `GET /api/v1/events` (and of the export, which takes no `limit` and no
/// `cursor`: `paged` false), and the `limit` given.
pub(super) fn event_query<'a>(
    context: &ApiContext,
    pairs: &'a [(String, String)],
    paged: bool,
) -> Result<(EventQuery, Option<&'a str>), ApiError> {
    let now = now_millis();
    let mut wanted = EventQuery::default();
    let mut limit = None;
    for (name, value) in pairs {
        if !paged && matches!(name.as_str(), "limit" | "cursor") {
            return Err(ApiError::bad_request(format!(
                "{name}: the export has no pages; it streams every matching event"
            )));
        }
        // An empty text parameter is absent; `status` and `limit` are typed and must be valid.
        if given(Some(value)).is_none() && !matches!(name.as_str(), "status" | "limit") {
            continue;
        }
        match name.as_str() {
            "source" => wanted.source = Some(value.clone()),
            "status" => {
                let Ok(status) = value.parse::<EventStatus>() else {
                    return Err(ApiError::bad_request(format!(
                        "status: expected one of {}",
                        word_list(EventStatus::ALL)
                    )));
                };
                wanted.status = Some(status);
            }
            "key" => wanted.idempotency_key = Some(value.clone()),
            "since" => wanted.since = Some(parse_time("since", value, now)?),
            "until" => wanted.until = Some(parse_time("until", value, now)?),
            "limit" => limit = Some(value.as_str()),
            "cursor" => wanted.after = Some(decode_cursor(value)?),
            // The value itself is never echoed back: it is exactly what must not leak.
            field if context.is_search_field(field) => {
                wanted.search.push(context.search_key.hash(field, value));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: expected source, status, key, since, until, \
                     limit, cursor or a search field ({})",
                    context.search_field_names().join(", ")
                )));
            }
        }
    }
    Ok((wanted, limit))
}

/// One event in detail.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    tag = "events",
    params(("id" = Uuid, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
    )
)]
pub async fn show(
    State(context): State<Arc<ApiContext>>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<EventDetail>, ApiError> {
    let Path(id) = id?;
    let Some(event) = context.store.event(id).await? else {
        return Err(ApiError::not_found(format!("no event {id}")));
    };
    let hidden = context.hidden_fields.get(&event.source);
    // The payload and every text that may repeat a hidden value, as operators may see them.
    let (payload, sensitive) = match (decrypt_with(context.cipher.as_deref(), &event.body), hidden)
    {
        (Ok(body), Some(fields)) => (
            masked_preview(&body, fields),
            SensitiveValues::from_body(&body, fields),
        ),
        (Ok(_), None) => (
            Value::String(format!(
                "[{} bytes; hidden because source {:?} is no longer configured]",
                event.body.len(),
                event.source
            )),
            SensitiveValues::default(),
        ),
        (Err(e), _) => (
            Value::String(format!("[{} bytes; {e}]", event.body.len())),
            SensitiveValues::default(),
        ),
    };
    let cipher = context.cipher.as_deref();
    let scrub = |text: &str| sensitive.scrub(text).into_owned();
    // Stored texts are sealed like the payload; one that cannot be opened says why instead.
    let unseal = |stored: &str| open_text(cipher, stored).unwrap_or_else(|e| format!("[{e}]"));
    let headers = shown_headers(&unseal(&event.headers_json), &sensitive);
    let mut deliveries = Vec::with_capacity(event.deliveries.len());
    let mut captured = Vec::new();
    for delivery in &event.deliveries {
        for value in &delivery.captured {
            captured.push(CapturedItem {
                delivery_id: delivery.id,
                destination: delivery.destination.clone(),
                name: value.name.clone(),
                value: unseal(&value.value),
                captured_at: format_time(value.captured_at),
            });
        }
        let attempts = context.store.delivery_attempts(delivery.id).await?;
        let open = delivery.state.is_open();
        deliveries.push(DeliveryDetail {
            delivery_id: delivery.id,
            destination: delivery.destination.clone(),
            state: delivery.state,
            attempt_count: delivery.attempts,
            ordering_key: delivery.ordering_key.as_deref().map(scrub),
            next_attempt_at: open.then(|| format_time(delivery.next_attempt_at)),
            delivered_at: delivery.delivered_at.map(format_time),
            last_error: delivery.last_error.as_deref().map(|e| scrub(&unseal(e))),
            dead_reason: delivery.dead_reason,
            attempts: attempts
                .into_iter()
                .map(|attempt| AttemptItem {
                    number: attempt.number,
                    started_at: format_time(attempt.started_at),
                    duration_ms: attempt.duration_ms,
                    status_code: attempt.status_code,
                    error: attempt.error.as_deref().map(|e| scrub(&unseal(e))),
                    outcome: attempt.outcome,
                    replay_id: attempt.replay_id,
                })
                .collect(),
        });
    }
    let replays = context
        .store
        .event_replays(id)
        .await?
        .into_iter()
        .map(|replay| EventReplay {
            replay_id: replay.replay_id,
            delivery_id: replay.delivery_id,
            destination: replay.destination,
            created_at: format_time(replay.created_at),
            requested_by: replay.requested_by,
            reason: replay.reason,
        })
        .collect();
    Ok(Json(EventDetail {
        event_id: event.id,
        idempotency_key: scrub(&event.idempotency_key),
        source: event.source,
        received_at: format_time(event.received_at),
        status: event.status,
        content_type: event.content_type,
        headers,
        payload,
        deliveries,
        replays,
        captured,
        duplicates: DuplicatesItem {
            count: event.duplicates.count,
            last_seen_at: event.duplicates.last_seen_at.map(format_time),
            conflicts: event.duplicates.conflicts,
        },
    }))
}

/// Stored request headers as operators see them: credentials and signatures masked, hidden
/// values scrubbed.
pub(super) fn shown_headers(
    headers_json: &str,
    sensitive: &SensitiveValues,
) -> BTreeMap<String, String> {
    match serde_json::from_str::<Value>(headers_json) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                let shown = if is_secret_header(&name) {
                    MASK.to_owned()
                } else {
                    sensitive.scrub(&text).into_owned()
                };
                (name, shown)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}
