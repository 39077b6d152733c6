//! Bearer-token authentication for every `/api/v1` route.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the content nor the
//! length of the configured token leaks through timing. Without a configured token the API
//! refuses everything: an admin API that is open by default is a data leak waiting to happen.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiContext;
use super::error::ApiError;

/// The configured token, kept only as its digest.
pub struct TokenCheck {
    digest: Option<[u8; 32]>,
}

impl TokenCheck {
    pub fn new(token: Option<&str>) -> TokenCheck {
        TokenCheck {
            digest: token
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    fn check(&self, presented: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.digest else {
            return Err(ApiError::unauthorized(
                "the admin API is disabled: no admin.token is configured",
            ));
        };
        let Some(presented) = presented else {
            return Err(ApiError::unauthorized(
                "missing admin token: send Authorization: Bearer <admin.token>",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("invalid admin token"))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn require_token(
    State(context): State<Arc<ApiContext>>,
    request: Request,
    next: Next,
) -> Response {
    match context.token.check(bearer_token(&request)) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly() {
        let check = TokenCheck::new(Some("s3cret"));
        assert!(check.check(Some("s3cret")).is_ok());
        assert!(check.check(Some("s3cret ")).is_err());
        assert!(check.check(Some("s3cre")).is_err());
        assert!(check.check(None).is_err());
        let disabled = TokenCheck::new(None);
        assert!(matches!(
            disabled.check(Some("anything")),
            Err(e) if e.message().contains("no admin.token")
        ));
        assert!(TokenCheck::new(Some("")).check(Some("")).is_err());
    }
}
