//! `GET /api/v1/events/export` and `POST /api/v1/events/import`: events out of one gateway as
//! JSON Lines, and back into another through the same atomic accept (SPEC §6.1).
//!
//! The export pages through the store by the listing's keyset cursor and streams each page, so
//! its memory does not grow with the number of events. The import reads its body line by line;
//! each line becomes the event the importing gateway's own source would have stored (its key
//! derived again, its routes deciding the deliveries) by the `EventImporter` `app` hands over,
//! keeping the exported `event_id` and `received_at`, so importing twice stores once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiContext;
use super::error::{ApiError, ErrorBody};
use super::events::{EventsParams, event_query, shown_headers};
use super::params::{format_time, parse_time};
use crate::privacy::{SensitiveValues, decrypt_with, open_text};
use crate::store::{AcceptOutcome, EventQuery, EventSummary, NewEvent, UnixMillis};

/// Events read from the store per page of the export.
const EXPORT_PAGE: usize = 200;
/// The longest line the import reads; a longer one is rejected (and skipped).
const MAX_IMPORT_LINE: usize = 16 * 1024 * 1024;

/// One line of an export, and of an import.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    pub event_id: Uuid,
    pub source: String,
    /// The key as stored (masked and searchable values scrubbed).
    pub idempotency_key: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub content_type: Option<String>,
    /// The stored body (decrypted), base64.
    pub body_base64: String,
    /// The stored request headers; credentials and signatures masked.
    pub headers: BTreeMap<String, String>,
}

/// An exported event, read back: what the importing gateway's source makes of it.
pub struct ImportedEvent {
    pub event_id: Uuid,
    pub source: String,
    pub idempotency_key: String,
    pub received_at: UnixMillis,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub headers: BTreeMap<String, String>,
}

/// Turns an imported event into the event this gateway stores, by its own sources: the key
/// derived again (it must be the exported one), the routes deciding the deliveries, the body
/// sealed like intake seals it. `app` implements it over intake's source runtimes.
pub trait EventImporter: Send + Sync {
    fn prepare(&self, event: ImportedEvent) -> Result<NewEvent, String>;
}

/// What an import did.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ImportSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<RejectedLine>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectedLine {
    /// Counted from 1.
    pub line: u64,
    pub error: String,
}

/// Export events as JSON Lines.
#[utoipa::path(
    get,
    path = "/api/v1/events/export",
    tag = "events",
    params(EventsParams),
    responses(
        (status = 200, description = "Every matching event, oldest first, one JSON object per line", body = ExportedEvent, content_type = "application/x-ndjson"),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn export(
    State(context): State<Arc<ApiContext>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query?;
    let (mut wanted, _) = event_query(&context, &pairs, false)?;
    wanted.limit = EXPORT_PAGE;
    // Oldest first: an import then accepts the events in the order intake did.
    wanted.oldest_first = true;
    let state = ExportState {
        context,
        query: wanted,
        page: VecDeque::new(),
        done: false,
    };
    let lines = futures_util::stream::unfold(state, |mut state| async move {
        let line = state.next_line().await.transpose()?;
        Some((line, state))
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

struct ExportState {
    context: Arc<ApiContext>,
    query: EventQuery,
    page: VecDeque<EventSummary>,
    done: bool,
}

impl ExportState {
    /// The next line, or None at the end. An error ends the stream (the client sees a cut
    /// response, not a complete one), and is logged.
    async fn next_line(&mut self) -> Result<Option<Bytes>, std::io::Error> {
        loop {
            let Some(summary) = self.page.pop_front() else {
                if self.done {
                    return Ok(None);
                }
                let page = self
                    .context
                    .store
                    .list_events(&self.query)
                    .await
                    .map_err(export_failed)?;
                self.done = page.len() < self.query.limit;
                self.query.after = page.last().map(EventSummary::cursor);
                self.page = page.into();
                continue;
            };
            // Deleted since the page was read (retention): skipped.
            let Some(event) = self
                .context
                .store
                .event(summary.id)
                .await
                .map_err(export_failed)?
            else {
                continue;
            };
            let cipher = self.context.cipher.as_deref();
            let body = decrypt_with(cipher, &event.body).map_err(export_failed)?;
            let sensitive = match self.context.hidden_fields.get(&event.source) {
                Some(fields) => SensitiveValues::from_body(&body, fields),
                None => SensitiveValues::default(),
            };
            let headers_json = open_text(cipher, &event.headers_json).map_err(export_failed)?;
            let line = ExportedEvent {
                event_id: event.id,
                idempotency_key: event.idempotency_key,
                source: event.source,
                received_at: format_time(event.received_at),
                content_type: event.content_type,
                body_base64: BASE64.encode(&body),
                headers: shown_headers(&headers_json, &sensitive),
            };
            let mut text = serde_json::to_vec(&line).map_err(export_failed)?;
            text.push(b'\n');
            return Ok(Some(Bytes::from(text)));
        }
    }
}

fn export_failed(error: impl std::fmt::Display) -> std::io::Error {
    tracing::warn!(%error, "export stopped");
    std::io::Error::other("export failed")
}

/// Import events from JSON Lines.
#[utoipa::path(
    post,
    path = "/api/v1/events/import",
    tag = "events",
    request_body(content = ExportedEvent, content_type = "application/x-ndjson", description = "One exported event per line"),
    responses(
        (status = 200, description = "What the import did; rejected lines are counted from 1", body = ImportSummary),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 503, description = "The store cannot take writes; lines before the failure were imported", body = ErrorBody),
    )
)]
pub async fn import(
    State(context): State<Arc<ApiContext>>,
    body: Body,
) -> Result<Json<ImportSummary>, ApiError> {
    let importer = Arc::clone(&context.importer);
    let mut summary = ImportSummary::default();
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut line_number = 0u64;
    // A line longer than the limit is reported once and skipped up to its end.
    let mut skipping = false;
    let mut finished = false;
    while !finished {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                return Err(ApiError::bad_request(format!("cannot read the body: {e}")));
            }
            None => {
                finished = true;
                Bytes::new()
            }
        };
        buffer.extend_from_slice(&chunk);
        loop {
            let end = buffer.iter().position(|b| *b == b'\n');
            let line: Vec<u8> = match end {
                Some(end) => {
                    let rest = buffer.split_off(end + 1);
                    let mut line = std::mem::replace(&mut buffer, rest);
                    line.pop();
                    line
                }
                None if finished && !buffer.is_empty() => std::mem::take(&mut buffer),
                None => {
                    if buffer.len() > MAX_IMPORT_LINE && !skipping {
                        line_number += 1;
                        summary.rejected.push(RejectedLine {
                            line: line_number,
                            error: format!("longer than {MAX_IMPORT_LINE} bytes"),
                        });
                        skipping = true;
                    }
                    if skipping {
                        buffer.clear();
                    }
                    break;
                }
            };
            if skipping {
                skipping = false;
                continue;
            }
            line_number += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match import_line(&context, importer.as_ref(), &line).await {
                Ok(AcceptOutcome::Accepted) => summary.accepted += 1,
                Ok(AcceptOutcome::Duplicate(_)) => summary.duplicates += 1,
                Err(LineError::Rejected(error)) => summary.rejected.push(RejectedLine {
                    line: line_number,
                    error,
                }),
                Err(LineError::Store(e)) => return Err(e),
            }
        }
    }
    Ok(Json(summary))
}

enum LineError {
    /// The line is wrong: reported, and the import goes on.
    Rejected(String),
    /// The store failed: the import stops (the lines before were committed).
    Store(ApiError),
}

async fn import_line(
    context: &ApiContext,
    importer: &dyn EventImporter,
    line: &[u8],
) -> Result<AcceptOutcome, LineError> {
    let exported: ExportedEvent =
        serde_json::from_slice(line).map_err(|e| LineError::Rejected(e.to_string()))?;
    let received_at = parse_time("received_at", &exported.received_at, 0)
        .map_err(|e| LineError::Rejected(e.message().to_owned()))?;
    let body = BASE64
        .decode(exported.body_base64.as_bytes())
        .map_err(|e| LineError::Rejected(format!("body_base64: {e}")))?;
    let event = importer
        .prepare(ImportedEvent {
            event_id: exported.event_id,
            source: exported.source,
            idempotency_key: exported.idempotency_key,
            received_at,
            content_type: exported.content_type,
            body: Bytes::from(body),
            headers: exported.headers,
        })
        .map_err(LineError::Rejected)?;
    let destinations: Vec<_> = event
        .deliveries
        .iter()
        .map(|d| Arc::clone(&d.destination))
        .collect();
    let outcome = context
        .store
        .accept(event)
        .await
        .map_err(|e| LineError::Store(e.into()))?;
    if outcome == AcceptOutcome::Accepted {
        for destination in destinations {
            context.wakeups.wake(&destination);
        }
    }
    Ok(outcome)
}
