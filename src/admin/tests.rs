//! The admin router against its OpenAPI document: the same routes, all behind the token.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use utoipa::OpenApi;

use super::openapi::API_ROUTES;
use super::*;
use crate::store::sqlite::{SqliteOptions, SqliteStore};

const TOKEN: &str = "unit-test-token";

/// An importer for a gateway without sources: every line is rejected.
struct NoSources;

impl super::EventImporter for NoSources {
    fn prepare(&self, event: super::ImportedEvent) -> Result<crate::store::NewEvent, String> {
        Err(format!("no source {:?} on this gateway", event.source))
    }
}

fn router_with(token: Option<&str>) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().expect("tempdir");
    // One source "forms" with a searchable "/phone", as the config would give it.
    let parts = AdminParts {
        token: token.map(str::to_owned),
        cipher: None,
        search_key: SearchKey::new(None),
        hidden_fields: Arc::new(HiddenFields::from([(
            "forms".to_owned(),
            vec!["/phone".parse().expect("pointer")],
        )])),
        search_fields: BTreeSet::from(["phone".to_owned()]),
        destinations: Vec::new(),
        importer: Arc::new(NoSources),
    };
    let store = SqliteStore::open(SqliteOptions {
        path: dir.path().join("store.db"),
        batch_max: 8,
        queue_max: 64,
    })
    .expect("store");
    let state = AdminState::new(parts, Arc::new(store), Arc::new(Wakeups::default()));
    (dir, router(state))
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if method == "POST" {
        request = request.header("content-type", "application/json");
    }
    let body = if method == "POST" { "{}" } else { "" };
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn concrete(path: &str) -> String {
    path.replace("{id}", &uuid::Uuid::now_v7().to_string())
}

#[test]
fn the_openapi_document_parses_and_lists_every_route() {
    let text = serde_json::to_string(&openapi::ApiDoc::openapi()).expect("serialise");
    let document: Value = serde_json::from_str(&text).expect("parse");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        document["openapi"]
    );
    let mut listed = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                listed.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, expected);
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn every_route_is_served_and_needs_the_token() {
    let (_dir, router) = router_with(Some(TOKEN));
    for (method, path) in API_ROUTES {
        let uri = concrete(path);
        for token in [None, Some("wrong-token")] {
            let (status, body) = call(&router, method, &uri, token).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}"
            );
            assert!(body["error"].is_string(), "{method} {uri}: {body}");
        }
        let (status, body) = call(&router, method, &uri, Some(TOKEN)).await;
        let unknown_route = status == StatusCode::NOT_FOUND
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("no such route"));
        assert!(
            !unknown_route && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} is not served: {status} {body}"
        );
        assert!(!status.is_server_error(), "{method} {uri}: {status} {body}");
    }
    // Unknown paths and methods under /api/v1 answer nothing without the token either.
    for (method, uri) in [("GET", "/api/v1/nope"), ("DELETE", "/api/v1/events")] {
        let (status, _) = call(&router, method, uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let (status, _) = call(&router, "GET", "/api/v1/nope", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&router, "DELETE", "/api/v1/events", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Health, readiness and metrics stay open.
    for uri in ["/healthz", "/readyz", "/metrics"] {
        let request = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn without_a_configured_token_the_api_is_closed() {
    let (_dir, router) = router_with(None);
    for token in [None, Some(""), Some("anything")] {
        let (status, body) = call(&router, "GET", "/api/v1/events", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("no admin.token")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bad_parameters_get_a_json_400_that_does_not_echo_search_values() {
    let (_dir, router) = router_with(Some(TOKEN));
    for uri in [
        "/api/v1/events?status=lost",
        "/api/v1/events?limit=0",
        "/api/v1/events?status=",
        "/api/v1/events?limit=",
        "/api/v1/events?cursor=garbage",
        "/api/v1/events?since=yesterday",
        "/api/v1/events?colour=blue",
        "/api/v1/dlq?group_by=reason&limit=5000",
        "/api/v1/events/not-a-uuid",
        "/api/v1/dlq?group_by=colour",
        "/api/v1/stats?window=1y",
        "/api/v1/replays?limit=x",
    ] {
        let (status, body) = call(&router, "GET", uri, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body["error"].is_string(), "{uri}: {body}");
    }
    let (status, body) = call(
        &router,
        "GET",
        "/api/v1/events?email=secret.person%40example.com&phone=5550100",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], Value::Array(Vec::new()));
    assert!(!body.to_string().contains("secret.person"));
}
