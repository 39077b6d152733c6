//! `Rejection`: why intake did not accept a webhook — the HTTP answer (the listeners' one
//! error type) and the outcome it is counted as.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::http_error::HttpError;
use crate::metrics::IntakeOutcome;

#[derive(Debug)]
pub struct Rejection {
    /// What the metrics count it as; None for what is not counted (an unknown source: a label
    /// per unknown path would let anyone grow the series).
    pub(crate) outcome: Option<IntakeOutcome>,
    pub(crate) error: HttpError,
}

impl Rejection {
    pub(crate) fn new(
        status: StatusCode,
        outcome: IntakeOutcome,
        message: impl Into<String>,
    ) -> Rejection {
        Rejection {
            outcome: Some(outcome),
            error: HttpError::new(status, message),
        }
    }

    /// Not counted in any metric.
    pub(crate) fn uncounted(error: HttpError) -> Rejection {
        Rejection {
            outcome: None,
            error,
        }
    }

    /// 400: the body (or what was derived from it) is not acceptable.
    pub(crate) fn invalid_body(message: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, IntakeOutcome::InvalidBody, message)
    }

    /// 503 with `Retry-After`: nothing was acknowledged, the provider should retry.
    pub(crate) fn unavailable(message: impl Into<String>) -> Rejection {
        Rejection {
            outcome: Some(IntakeOutcome::Unavailable),
            error: HttpError::unavailable(message, 1),
        }
    }

    pub(crate) fn with_detail(mut self, detail: Value) -> Rejection {
        self.error = self.error.with_detail(detail);
        self
    }

    pub(crate) fn retry_after(mut self, secs: u64) -> Rejection {
        self.error = self.error.retry_after(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.error.status()
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.error.into_response()
    }
}
