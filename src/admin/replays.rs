//! Replays: `POST /api/v1/replays` re-queues deliveries on purpose; `GET /api/v1/replays`
//! lists who replayed what and why; `GET /api/v1/replays/{id}` follows one replay's progress.
//!
//! A replay re-queues every matched delivery that is not in flight: it is due at once, with a
//! fresh attempt budget, and its attempts carry `Oncehook-Replay: <replay_id>` beside the same
//! `Idempotency-Key` as ever, so a destination that already processed the event can tell.
//! A dry run only counts: it changes nothing and records nothing (its `replay_id` is null).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ApiContext;
use super::error::{ApiError, ErrorBody};
use super::params::{
    decode_cursor, format_time, given, paginate, parse_limit, parse_time, required_text, word_list,
};
use super::words::ReplayStatus;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::store::{NewReplay, ReplayFilter, ReplayRecord, now_millis};

/// How many matched deliveries a replay's answer shows.
const SAMPLE_SIZE: usize = 10;
/// Most event ids one replay may name.
const MAX_EVENT_IDS: usize = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub filter: ReplayFilterBody,
    /// Only count and sample what would be replayed.
    #[serde(default)]
    pub dry_run: bool,
    /// Why: kept with the replay.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub reason: Option<String>,
    /// Who: kept with the replay.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub requested_by: Option<String>,
}

/// Which deliveries to replay; every field given must match, and at least one must be given.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilterBody {
    /// Deliveries of these events.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub event_ids: Vec<Uuid>,
    pub source: Option<String>,
    /// A delivery state (`dead`, `delivered`, …) or an event status (`failed_terminal`, …).
    #[schema(value_type = Option<ReplayStatus>)]
    pub status: Option<String>,
    pub destination: Option<String>,
    /// Events received at or after: an RFC 3339 time or a duration ago (`2h`).
    pub since: Option<String>,
    /// Events received before: an RFC 3339 time or a duration ago.
    pub until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayResponse {
    /// The recorded replay; null for a dry run, which records nothing.
    pub replay_id: Option<Uuid>,
    pub dry_run: bool,
    /// Deliveries re-queued (or, in a dry run, that would be).
    pub matched: u64,
    /// Deliveries that matched but have an attempt in flight: left alone.
    pub skipped_in_flight: u64,
    /// Up to 10 matched deliveries, newest event first.
    pub sample: Vec<ReplaySampleItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplaySampleItem {
    pub event_id: Uuid,
    pub delivery_id: i64,
    pub source: String,
    pub destination: String,
    /// The delivery's state before the replay.
    pub state: DeliveryState,
    #[schema(format = DateTime)]
    pub received_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayList {
    pub replays: Vec<ReplayItem>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayItem {
    pub replay_id: Uuid,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub requested_by: String,
    pub reason: String,
    /// The filter as given, normalised (times in RFC 3339).
    pub filter: Value,
    pub matched: u64,
    pub skipped_in_flight: u64,
}

impl From<ReplayRecord> for ReplayItem {
    fn from(record: ReplayRecord) -> ReplayItem {
        ReplayItem {
            replay_id: record.id,
            created_at: format_time(record.created_at),
            requested_by: record.requested_by,
            reason: record.reason,
            filter: serde_json::from_str(&record.filter_json).unwrap_or(Value::Null),
            matched: record.matched,
            skipped_in_flight: record.skipped_in_flight,
        }
    }
}

/// One replay and where its deliveries are now.
#[derive(Serialize, ToSchema)]
pub struct ReplayDetail {
    #[serde(flatten)]
    pub replay: ReplayItem,
    pub progress: ReplayProgressBody,
}

/// The replayed deliveries by current state; `superseded` ones were replayed again since.
#[derive(Serialize, ToSchema)]
pub struct ReplayProgressBody {
    pub pending: u64,
    pub in_flight: u64,
    pub retrying: u64,
    pub delivered: u64,
    pub dead: u64,
    pub superseded: u64,
    /// True when none is pending, in flight or retrying any more.
    pub done: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplaysParams {
    /// Replays per page (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Turns the request's filter into the store's, and its normalised JSON for the record.
fn store_filter(body: &ReplayFilterBody, now: i64) -> Result<(ReplayFilter, Value), ApiError> {
    let mut filter = ReplayFilter {
        event_ids: body.event_ids.clone(),
        source: body.source.clone().filter(|s| !s.is_empty()),
        destination: body.destination.clone().filter(|d| !d.is_empty()),
        ..ReplayFilter::default()
    };
    if filter.event_ids.len() > MAX_EVENT_IDS {
        return Err(ApiError::bad_request(format!(
            "filter.event_ids: at most {MAX_EVENT_IDS} per replay"
        )));
    }
    let mut normalised = Map::new();
    if !filter.event_ids.is_empty() {
        normalised.insert("event_ids".into(), json!(filter.event_ids));
    }
    if let Some(source) = &filter.source {
        normalised.insert("source".into(), json!(source));
    }
    if let Some(status) = body.status.as_deref().filter(|s| !s.is_empty()) {
        // The words of states and statuses do not overlap: a word names at most one.
        let word = if let Ok(state) = status.parse::<DeliveryState>() {
            filter.delivery_state = Some(state);
            state.as_str()
        } else if let Ok(event_status) = status.parse::<EventStatus>() {
            filter.event_status = Some(event_status);
            event_status.as_str()
        } else {
            return Err(ApiError::bad_request(format!(
                "filter.status: expected a delivery state ({}) or an event status ({})",
                word_list(DeliveryState::ALL),
                word_list(EventStatus::ALL)
            )));
        };
        normalised.insert("status".into(), json!(word));
    }
    if let Some(destination) = &filter.destination {
        normalised.insert("destination".into(), json!(destination));
    }
    if let Some(since) = given(body.since.as_deref()) {
        let at = parse_time("filter.since", since, now)?;
        filter.since = Some(at);
        normalised.insert("since".into(), json!(format_time(at)));
    }
    if let Some(until) = given(body.until.as_deref()) {
        let at = parse_time("filter.until", until, now)?;
        filter.until = Some(at);
        normalised.insert("until".into(), json!(format_time(at)));
    }
    if normalised.is_empty() {
        return Err(ApiError::bad_request(
            "filter: name at least one of event_ids, source, status, destination, since, until \
             (an empty filter would replay every delivery)",
        ));
    }
    Ok((filter, Value::Object(normalised)))
}

/// Replay deliveries (or, with `dry_run`, count what would be replayed).
#[utoipa::path(
    post,
    path = "/api/v1/replays",
    tag = "replays",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "What matched; for a real replay, re-queued and recorded", body = ReplayResponse),
        (status = 400, description = "The request is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn create(
    State(context): State<Arc<ApiContext>>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<Json<ReplayResponse>, ApiError> {
    let Json(request) = body?;
    let reason = required_text("reason", request.reason.as_deref())?;
    let requested_by = required_text("requested_by", request.requested_by.as_deref())?;
    let now = now_millis();
    let (filter, normalised) = store_filter(&request.filter, now)?;
    let replay = NewReplay {
        id: Uuid::now_v7(),
        filter,
        filter_json: normalised.to_string(),
        requested_by,
        reason,
        dry_run: request.dry_run,
        now,
        sample_size: SAMPLE_SIZE,
    };
    let outcome = context.store.replay(&replay).await?;
    crate::metrics::replay(replay.dry_run);
    if !replay.dry_run {
        for destination in &outcome.destinations {
            context.wakeups.wake(destination);
        }
    }
    tracing::info!(
        replay_id = %replay.id,
        dry_run = replay.dry_run,
        requested_by = %replay.requested_by,
        matched = outcome.matched,
        skipped_in_flight = outcome.skipped_in_flight,
        "replay requested"
    );
    Ok(Json(ReplayResponse {
        replay_id: (!replay.dry_run).then_some(replay.id),
        dry_run: replay.dry_run,
        matched: outcome.matched,
        skipped_in_flight: outcome.skipped_in_flight,
        sample: outcome
            .sample
            .into_iter()
            .map(|sample| ReplaySampleItem {
                event_id: sample.event_id,
                delivery_id: sample.delivery_id,
                source: sample.source,
                destination: sample.destination,
                state: sample.state,
                received_at: format_time(sample.received_at),
            })
            .collect(),
    }))
}

/// Recorded replays, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/replays",
    tag = "replays",
    params(ReplaysParams),
    responses(
        (status = 200, description = "Replays, newest first", body = ReplayList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list(
    State(context): State<Arc<ApiContext>>,
    query: Result<Query<ReplaysParams>, QueryRejection>,
) -> Result<Json<ReplayList>, ApiError> {
    let Query(params) = query?;
    let limit = parse_limit(params.limit.as_deref())?;
    let after = given(params.cursor.as_deref())
        .map(decode_cursor)
        .transpose()?;
    let replays = context.store.replays(after, limit + 1).await?;
    let (replays, next_cursor) = paginate(replays, limit, ReplayRecord::cursor);
    Ok(Json(ReplayList {
        replays: replays.into_iter().map(ReplayItem::from).collect(),
        next_cursor,
    }))
}

/// One replay and the progress of its deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/replays/{id}",
    tag = "replays",
    params(("id" = Uuid, Path, description = "The replay id")),
    responses(
        (status = 200, description = "The replay", body = ReplayDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "No such replay", body = ErrorBody),
    )
)]
pub async fn show(
    State(context): State<Arc<ApiContext>>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ReplayDetail>, ApiError> {
    let Path(id) = id?;
    let Some((record, progress)) = context.store.replay_progress(id).await? else {
        return Err(ApiError::not_found(format!("no replay {id}")));
    };
    Ok(Json(ReplayDetail {
        replay: ReplayItem::from(record),
        progress: ReplayProgressBody {
            done: progress.is_done(),
            pending: progress.pending,
            in_flight: progress.in_flight,
            retrying: progress.retrying,
            delivered: progress.delivered,
            dead: progress.dead,
            superseded: progress.superseded,
        },
    }))
}
