//! Destinations: `GET /api/v1/destinations` shows each one's state, queue and recent outcomes;
//! `POST /api/v1/destinations/{name}/pause` and `…/resume` hold and release its deliveries.
//!
//! A pause is stored with the destination's gate, so it holds on every node and survives
//! restarts; while paused nothing is sent and no attempt is spent. Resuming wakes this node's
//! lane at once (other nodes see it at their next look, within a second); the backlog then
//! drains in due order, at the destination's pace.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiContext;
use super::error::{ApiError, ErrorBody};
use super::params::{format_time, required_text};
use crate::domain::gate::DestinationState;
use crate::domain::pace::Pace;
use crate::store::{DestinationOverview, PauseChange, now_millis};

/// The window `delivered_5m` and `failed_5m` count attempts over.
const RECENT: Duration = Duration::from_secs(5 * 60);

/// A configured destination, as the admin API describes it.
#[derive(Debug, Clone)]
pub struct DestinationInfo {
    pub name: String,
    pub pace: Option<Pace>,
    /// `circuit_breaker`: failures in a row, and the cooldown (None: off).
    pub breaker: Option<(u32, Duration)>,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationList {
    pub destinations: Vec<DestinationItem>,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationItem {
    pub name: String,
    pub state: DestinationState,
    /// Why it is paused (null unless paused).
    pub paused_reason: Option<String>,
    /// Who paused it (null unless paused).
    pub paused_by: Option<String>,
    /// Since when it is paused (null unless paused).
    #[schema(format = DateTime)]
    pub paused_at: Option<String>,
    /// When an open circuit lets its next probe out (null while closed).
    #[schema(format = DateTime)]
    pub probe_at: Option<String>,
    /// Unfinished deliveries (pending, retrying, in flight), paused ones included.
    pub queue_depth: u64,
    /// Age of the oldest unfinished delivery's event, in seconds (null when none).
    pub oldest_pending_age_s: Option<f64>,
    /// `rate_limit` (null: no pace).
    pub rate_limit: Option<RateLimitBody>,
    /// `circuit_breaker` (null: off).
    pub circuit_breaker: Option<CircuitBreakerBody>,
    /// Attempts over the last 5 minutes that delivered.
    pub delivered_5m: u64,
    /// Attempts over the last 5 minutes that did not.
    pub failed_5m: u64,
}

#[derive(Serialize, ToSchema)]
pub struct RateLimitBody {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Serialize, ToSchema)]
pub struct CircuitBreakerBody {
    pub failures: u32,
    pub cooldown_s: f64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why: kept with the pause and shown with the destination.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub reason: Option<String>,
    /// Who (default "api").
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub requested_by: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Who (default "api").
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub requested_by: Option<String>,
}

/// Every configured destination: state, queue and recent outcomes.
#[utoipa::path(
    get,
    path = "/api/v1/destinations",
    tag = "destinations",
    responses(
        (status = 200, description = "Every configured destination", body = DestinationList),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list(
    State(context): State<Arc<ApiContext>>,
) -> Result<Json<DestinationList>, ApiError> {
    let now = now_millis();
    let overviews = context
        .store
        .destination_overview(now.saturating_sub(RECENT.as_millis() as i64))
        .await?;
    let destinations = context
        .destinations
        .iter()
        .map(|info| {
            let overview = overviews.iter().find(|o| o.name == info.name);
            item(info, overview, now)
        })
        .collect();
    Ok(Json(DestinationList { destinations }))
}

/// Pause a destination: nothing is sent to it until it is resumed, on any node.
#[utoipa::path(
    post,
    path = "/api/v1/destinations/{name}/pause",
    tag = "destinations",
    params(("name" = String, Path, description = "The destination's name")),
    request_body = PauseRequest,
    responses(
        (status = 200, description = "Paused; the destination as it is now", body = DestinationItem),
        (status = 400, description = "The request is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "No such destination", body = ErrorBody),
    )
)]
pub async fn pause(
    State(context): State<Arc<ApiContext>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<PauseRequest>, JsonRejection>,
) -> Result<Json<DestinationItem>, ApiError> {
    let info = known(&context, name)?;
    let Json(request) = body?;
    let change = PauseChange {
        paused: true,
        reason: Some(required_text("reason", request.reason.as_deref())?),
        requested_by: requester(request.requested_by.as_deref())?,
        at: now_millis(),
    };
    context.store.set_paused(&info.name, &change).await?;
    tracing::info!(destination = %info.name, requested_by = %change.requested_by,
        reason = change.reason.as_deref(), "destination paused");
    context.wakeups.wake(&info.name);
    current(&context, &info).await
}

/// Resume a paused destination: its backlog drains in order, at its pace.
#[utoipa::path(
    post,
    path = "/api/v1/destinations/{name}/resume",
    tag = "destinations",
    params(("name" = String, Path, description = "The destination's name")),
    request_body(content = ResumeRequest, description = "Optional: who resumed it"),
    responses(
        (status = 200, description = "Resumed; the destination as it is now", body = DestinationItem),
        (status = 400, description = "The request is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "No such destination", body = ErrorBody),
    )
)]
pub async fn resume(
    State(context): State<Arc<ApiContext>>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<DestinationItem>, ApiError> {
    let info = known(&context, name)?;
    // The body is optional: an empty one means "nobody in particular".
    let request: ResumeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let change = PauseChange {
        paused: false,
        reason: None,
        requested_by: requester(request.requested_by.as_deref())?,
        at: now_millis(),
    };
    context.store.set_paused(&info.name, &change).await?;
    tracing::info!(destination = %info.name, requested_by = %change.requested_by,
        "destination resumed");
    context.wakeups.wake(&info.name);
    current(&context, &info).await
}

fn known(
    context: &ApiContext,
    name: Result<Path<String>, PathRejection>,
) -> Result<DestinationInfo, ApiError> {
    let Path(name) = name?;
    context
        .destinations
        .iter()
        .find(|d| d.name == name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no destination named {name:?}")))
}

fn requester(given: Option<&str>) -> Result<String, ApiError> {
    match given {
        None => Ok("api".to_owned()),
        Some(text) => required_text("requested_by", Some(text)),
    }
}

async fn current(
    context: &ApiContext,
    info: &DestinationInfo,
) -> Result<Json<DestinationItem>, ApiError> {
    let now = now_millis();
    let overviews = context
        .store
        .destination_overview(now.saturating_sub(RECENT.as_millis() as i64))
        .await?;
    let overview = overviews.iter().find(|o| o.name == info.name);
    Ok(Json(item(info, overview, now)))
}

fn item(
    info: &DestinationInfo,
    overview: Option<&DestinationOverview>,
    now: i64,
) -> DestinationItem {
    let row = overview.map(|o| o.row).unwrap_or_default();
    let paused = row.paused;
    DestinationItem {
        name: info.name.clone(),
        state: row.state(),
        paused_reason: overview
            .and_then(|o| o.paused_reason.clone())
            .filter(|_| paused),
        paused_by: overview
            .and_then(|o| o.paused_by.clone())
            .filter(|_| paused),
        paused_at: overview
            .and_then(|o| o.paused_at)
            .filter(|_| paused)
            .map(format_time),
        probe_at: (row.state() == DestinationState::Open).then(|| format_time(row.circuit.until)),
        queue_depth: overview.map_or(0, |o| o.queue_depth),
        oldest_pending_age_s: overview
            .and_then(|o| o.oldest_pending_at)
            .map(|at| now.saturating_sub(at).max(0) as f64 / 1000.0),
        rate_limit: info.pace.map(|pace| RateLimitBody {
            per_second: pace.per_second,
            burst: pace.burst,
        }),
        circuit_breaker: info.breaker.map(|(failures, cooldown)| CircuitBreakerBody {
            failures,
            cooldown_s: cooldown.as_secs_f64(),
        }),
        delivered_5m: overview.map_or(0, |o| o.delivered_recent),
        failed_5m: overview.map_or(0, |o| o.failed_recent),
    }
}
