//! `HttpError`: every error answer of both listeners — intake rejections, admin API errors, a
//! panicking handler — in one JSON shape, `{"error": "…"}` (plus `detail` where there is more to
//! say, e.g. schema violations).
//!
//! 4xx bodies say what is wrong with the request; 5xx bodies are generic and their cause is
//! logged, so store internals never reach a client. `Retry-After` goes with every answer that
//! asks the client to come back (429, 503).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::store::StoreError;

#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
    detail: Option<Value>,
    retry_after_secs: Option<u64>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// More about it, where there is more (e.g. each schema violation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            detail: None,
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    /// Asks the client to come back after `secs` (at least one second).
    pub fn unavailable(message: impl Into<String>, secs: u64) -> HttpError {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(secs)
    }

    /// A failure that is ours, not the client's: the answer is generic, the cause is logged.
    pub fn internal(cause: impl std::fmt::Display) -> HttpError {
        tracing::error!(error = %cause, "internal error");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    pub fn with_detail(mut self, detail: Value) -> HttpError {
        self.detail = Some(detail);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> HttpError {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A store that cannot answer now is a 503 the client may retry; anything else is ours (500).
impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> HttpError {
        if error.is_transient() {
            tracing::warn!(error = %error, "store unavailable; answering 503");
            HttpError::unavailable("the store is unavailable; retry later", 1)
        } else {
            HttpError::internal(error)
        }
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> HttpError {
        HttpError::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(rejection: PathRejection) -> HttpError {
        HttpError::bad_request(rejection.body_text())
    }
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> HttpError {
        HttpError::bad_request(rejection.body_text())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            detail: self.detail,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"oncehook\""),
            );
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(error: HttpError) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).expect("JSON"),
        )
    }

    #[tokio::test]
    async fn every_error_is_one_json_shape_with_its_headers() {
        let (status, headers, body) = answer(
            HttpError::bad_request("body is not valid JSON").with_detail(Value::from("line 1")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            serde_json::json!({"error": "body is not valid JSON", "detail": "line 1"})
        );
        assert!(headers.get(header::RETRY_AFTER).is_none());

        let (status, headers, body) = answer(HttpError::unavailable("busy", 0)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body, serde_json::json!({"error": "busy"}));

        let (status, headers, _) = answer(HttpError::unauthorized("no token")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));

        let (status, _, body) = answer(HttpError::internal("disk on fire at /var/x")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, serde_json::json!({"error": "internal error"}));

        let (status, headers, _) = answer(StoreError::queue_full().into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(headers.contains_key(header::RETRY_AFTER));
        let (status, _, body) = answer(StoreError::internal("corrupt").into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("corrupt"));
    }
}
