//! The admin API's errors: the listeners' one error type (`crate::http_error`), under the name
//! its handlers use. Every failure is `{"error": "…"}`; 4xx say what is wrong, 5xx are generic
//! and their cause is logged.

pub use crate::http_error::{ErrorBody, HttpError as ApiError};
