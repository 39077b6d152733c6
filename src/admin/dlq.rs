//! `GET /api/v1/dlq`: dead deliveries, newest death first, or grouped by destination and reason.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ApiContext;
use super::error::{ApiError, ErrorBody};
use super::params::{decode_cursor, format_time, given, paginate, parse_limit, parse_time};
use crate::domain::dead_reason::DeadReason;
use crate::privacy::{HiddenFields, PayloadCipher, decrypt_with, open_text, short_preview};
use crate::store::{DeadDelivery, DeadQuery, now_millis};

/// An error text as stored, opened; one that cannot be opened says why instead.
fn open_error(cipher: Option<&PayloadCipher>, stored: &str) -> String {
    open_text(cipher, stored).unwrap_or_else(|e| format!("[{e}]"))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqParams {
    /// `reason`: count dead deliveries per destination and reason instead of listing them
    /// (`source`, `limit` and `cursor` apply to the list only).
    #[param(inline)]
    group_by: Option<GroupBy>,
    /// Only deliveries to this destination.
    destination: Option<String>,
    /// Only deliveries of this source's events.
    source: Option<String>,
    /// Only deliveries that went dead at or after: an RFC 3339 time or a duration ago (`1h`,
    /// `7d`). Applies to the list and to the groups.
    since: Option<String>,
    /// Deliveries per page (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Reason,
}

/// Either the list (without `group_by`) or the groups (with `group_by=reason`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum DlqResponse {
    List(DeadList),
    Groups(DeadGroups),
}

#[derive(Serialize, ToSchema)]
pub struct DeadList {
    pub deliveries: Vec<DeadItem>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadItem {
    pub delivery_id: i64,
    pub event_id: Uuid,
    pub source: String,
    pub destination: String,
    pub idempotency_key: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// When the delivery went dead.
    #[schema(format = DateTime)]
    pub died_at: String,
    /// `http_4xx`, `http_5xx`, `timeout`, `connect`, …
    pub reason: Option<DeadReason>,
    pub last_error: Option<String>,
    pub attempts: u32,
    /// The first lines (at most 10) of the event's payload, JSON pretty-printed, with the
    /// source's masked and searchable fields masked.
    pub preview: String,
}

impl DeadItem {
    /// The item as operators see it; the error text is opened with the payload's cipher.
    fn new(dead: DeadDelivery, cipher: Option<&PayloadCipher>, hidden: &HiddenFields) -> DeadItem {
        let preview = match (decrypt_with(cipher, &dead.body), hidden.get(&dead.source)) {
            (Ok(body), Some(fields)) => short_preview(&body, fields),
            (Ok(_), None) => format!(
                "[{} bytes; hidden because source {:?} is no longer configured]",
                dead.body.len(),
                dead.source
            ),
            (Err(e), _) => format!("[{} bytes; {e}]", dead.body.len()),
        };
        DeadItem {
            preview,
            delivery_id: dead.delivery_id,
            event_id: dead.event_id,
            source: dead.source,
            destination: dead.destination,
            idempotency_key: dead.idempotency_key,
            received_at: format_time(dead.received_at),
            died_at: format_time(dead.died_at),
            reason: dead.reason,
            last_error: dead.last_error.as_deref().map(|e| open_error(cipher, e)),
            attempts: dead.attempts,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeadGroups {
    /// Largest group first.
    pub groups: Vec<DeadGroup>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadGroup {
    pub destination: String,
    pub reason: Option<DeadReason>,
    pub count: u64,
    /// The error of the group's most recent death.
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub last_at: String,
}

/// The dead-letter queue.
#[utoipa::path(
    get,
    path = "/api/v1/dlq",
    tag = "dlq",
    params(DlqParams),
    responses(
        (status = 200, description = "Dead deliveries, newest first, or their groups", body = DlqResponse),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list(
    State(context): State<Arc<ApiContext>>,
    query: Result<Query<DlqParams>, QueryRejection>,
) -> Result<Json<DlqResponse>, ApiError> {
    let Query(params) = query?;
    // Every parameter is checked, also those the grouped answer does not use.
    let limit = parse_limit(params.limit.as_deref())?;
    let after = given(params.cursor.as_deref())
        .map(decode_cursor)
        .transpose()?;
    let destination = given(params.destination.as_deref()).map(str::to_owned);
    let source = given(params.source.as_deref()).map(str::to_owned);
    let since = given(params.since.as_deref())
        .map(|text| parse_time("since", text, now_millis()))
        .transpose()?;
    if let Some(GroupBy::Reason) = params.group_by {
        let groups = context.store.dead_letter_groups(since).await?;
        let groups = groups
            .into_iter()
            .filter(|g| destination.as_ref().is_none_or(|d| *d == g.destination))
            .map(|group| DeadGroup {
                destination: group.destination,
                reason: group.reason,
                count: group.count,
                last_error: group
                    .last_error
                    .as_deref()
                    .map(|e| open_error(context.cipher.as_deref(), e)),
                last_at: format_time(group.last_at),
            })
            .collect();
        return Ok(Json(DlqResponse::Groups(DeadGroups { groups })));
    }
    let query = DeadQuery {
        destination,
        source,
        since,
        after,
        limit: limit + 1,
    };
    let dead = context.store.dead_deliveries(&query).await?;
    let (dead, next_cursor) = paginate(dead, limit, DeadDelivery::cursor);
    Ok(Json(DlqResponse::List(DeadList {
        deliveries: dead
            .into_iter()
            .map(|dead| DeadItem::new(dead, context.cipher.as_deref(), &context.hidden_fields))
            .collect(),
        next_cursor,
    })))
}
