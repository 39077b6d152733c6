//! The admin API's OpenAPI document, generated from the handlers' annotations and served at
//! `GET /api/v1/openapi.json`. The test suite checks it lists every route and runs a
//! property-based client (schemathesis) against a live gateway with it.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{destinations, dlq, error, events, replays, stats, transfer};

/// Every route of the admin API, as (method, path template): the router serves exactly these and
/// the OpenAPI document lists exactly these (a test holds both to it).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/{id}"),
    ("GET", "/api/v1/events/export"),
    ("POST", "/api/v1/events/import"),
    ("POST", "/api/v1/replays"),
    ("GET", "/api/v1/replays"),
    ("GET", "/api/v1/replays/{id}"),
    ("GET", "/api/v1/dlq"),
    ("GET", "/api/v1/destinations"),
    ("POST", "/api/v1/destinations/{name}/pause"),
    ("POST", "/api/v1/destinations/{name}/resume"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/openapi.json"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "oncehook admin API",
        description = "Search events, replay deliveries, read the dead-letter queue and stats, \
                       pause and resume destinations. \
                       Every route needs `Authorization: Bearer <admin.token>`."
    ),
    paths(
        events::list,
        events::show,
        transfer::export,
        transfer::import,
        replays::create,
        replays::list,
        replays::show,
        dlq::list,
        destinations::list,
        destinations::pause,
        destinations::resume,
        stats::show,
        document,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object),
        (status = 401, description = "Missing or invalid admin token", body = error::ErrorBody),
    )
)]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
