//! The admin listener (`admin.listen`): health, readiness and metrics, open to anyone who can
//! reach the listener, and the admin API under `/api/v1`, closed to anyone without the token.
//!
//! It binds to its own address so that operators' endpoints are never exposed on the public
//! intake port. Handlers hold an `ApiContext` (the store behind `Arc<dyn Store>`, the payload
//! cipher, the search key, each source's hidden fields) and never see SQL.
//!
//! | route | module |
//! |---|---|
//! | `GET /api/v1/events`, `GET /api/v1/events/{id}` | `events` |
//! | `POST /api/v1/replays`, `GET /api/v1/replays`, `GET /api/v1/replays/{id}` | `replays` |
//! | `GET /api/v1/dlq` | `dlq` |
//! | `GET /api/v1/destinations`, `POST /api/v1/destinations/{name}/pause\|resume` | `destinations` |
//! | `GET /api/v1/events/export`, `POST /api/v1/events/import` | `transfer` |
//! | `GET /api/v1/stats` | `stats` |
//! | `GET /api/v1/openapi.json` | `openapi` |
//! | `GET /console` (the operator's page, static files only) | `crate::console` |

mod auth;
mod destinations;
mod dlq;
pub mod error;
mod events;
pub mod openapi;
pub mod params;
mod replays;
mod stats;
#[cfg(test)]
mod tests;
pub mod transfer;
mod words;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::privacy::{HiddenFields, PayloadCipher, SearchKey};
use crate::store::Store;
use crate::wakeups::Wakeups;
pub use destinations::DestinationInfo;
use error::ApiError;
pub use transfer::{EventImporter, ImportedEvent};

/// Search field names always accepted by `GET /api/v1/events` (SPEC §6), even when no source
/// declares them (the search then finds nothing).
const SPEC_SEARCH_FIELDS: [&str; 2] = ["email", "contact"];

/// What the admin API's handlers share, built once from the config.
pub struct ApiContext {
    store: Arc<dyn Store>,
    token: auth::TokenCheck,
    cipher: Option<Arc<PayloadCipher>>,
    search_key: SearchKey,
    /// Every configured source's hidden fields, possibly none.
    hidden_fields: Arc<HiddenFields>,
    search_fields: BTreeSet<String>,
    destinations: Vec<DestinationInfo>,
    wakeups: Arc<Wakeups>,
    importer: Arc<dyn EventImporter>,
}

impl ApiContext {
    fn is_search_field(&self, name: &str) -> bool {
        self.search_fields.contains(name)
    }

    fn search_field_names(&self) -> Vec<&str> {
        self.search_fields.iter().map(String::as_str).collect()
    }
}

/// What the admin listener is built from, compiled from the config by `app`.
pub struct AdminParts {
    /// `admin.token`: without one the API refuses every request.
    pub token: Option<String>,
    pub cipher: Option<Arc<PayloadCipher>>,
    pub search_key: SearchKey,
    /// An entry for every configured source, so an event of a source no longer configured is
    /// told apart.
    pub hidden_fields: Arc<HiddenFields>,
    /// The `search_fields` names the sources declare.
    pub search_fields: BTreeSet<String>,
    /// Every configured destination.
    pub destinations: Vec<DestinationInfo>,
    /// Turns imported events into this gateway's events.
    pub importer: Arc<dyn EventImporter>,
}

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    api: Arc<ApiContext>,
}

impl AdminState {
    /// `wakeups` lets a replay wake the lanes of the destinations it re-queued.
    pub fn new(parts: AdminParts, store: Arc<dyn Store>, wakeups: Arc<Wakeups>) -> AdminState {
        let mut search_fields: BTreeSet<String> =
            SPEC_SEARCH_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        search_fields.extend(parts.search_fields);
        let api = ApiContext {
            store: Arc::clone(&store),
            token: auth::TokenCheck::new(parts.token.as_deref()),
            cipher: parts.cipher,
            search_key: parts.search_key,
            hidden_fields: parts.hidden_fields,
            search_fields,
            destinations: parts.destinations,
            wakeups,
            importer: parts.importer,
        };
        AdminState {
            store,
            api: Arc::new(api),
        }
    }
}

pub fn router(state: AdminState) -> Router {
    let api = api_router(Arc::clone(&state.api));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .nest("/api/v1", api)
        .merge(crate::console::router())
}

/// `/api/v1`: every route, and the answers for unknown paths and methods, behind the token.
fn api_router(context: Arc<ApiContext>) -> Router {
    Router::new()
        .route("/events", get(events::list))
        .route("/events/export", get(transfer::export))
        .route("/events/import", post(transfer::import))
        .route("/events/{id}", get(events::show))
        .route("/replays", get(replays::list).post(replays::create))
        .route("/replays/{id}", get(replays::show))
        .route("/dlq", get(dlq::list))
        .route("/destinations", get(destinations::list))
        .route("/destinations/{name}/pause", post(destinations::pause))
        .route("/destinations/{name}/resume", post(destinations::resume))
        .route("/stats", get(stats::show))
        .route("/openapi.json", get(openapi::document))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&context),
            auth::require_token,
        ))
        .with_state(context)
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no such route; GET /api/v1/openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready when the store answers and can take writes (not on a full disk, not read-only); a load
/// balancer should stop sending webhooks otherwise. Each check asks the store again, so the node
/// is ready again by itself once the store is.
async fn readyz(State(state): State<AdminState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check failed");
        return ApiError::unavailable("the store is unreachable", 1).into_response();
    }
    match state.store.writable().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::unavailable("the store cannot take writes", 1).into_response()
        }
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
