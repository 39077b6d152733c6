//! `bearer`: `Authorization: Bearer <token>` where the token is one of the secrets,
//! for first-party producers that cannot sign.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::VerifyConfigError;
use super::{ExpectedHeader, VerifyError, strip_prefix_ignore_ascii_case};

static AUTHORIZATION_HEADER: ExpectedHeader =
    ExpectedHeader::provider("authorization", "Authorization");

/// The auth scheme is case-insensitive (RFC 9110 §11.1).
const BEARER_PREFIX: &[u8] = b"bearer ";

pub(crate) struct BearerToken {
    /// SHA-256 of each accepted token. Comparing fixed-length digests keeps the
    /// comparison constant-time in the token's length as well as its contents.
    token_digests: Vec<[u8; 32]>,
    /// Marked sensitive so HTTP tooling does not log or index it.
    first_token_header: Option<HeaderValue>,
}

impl BearerToken {
    pub(crate) fn new(secrets: &[String]) -> Result<BearerToken, VerifyConfigError> {
        for (index, secret) in secrets.iter().enumerate() {
            if !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(VerifyConfigError::new(
                    format!("secrets[{index}]"),
                    "a bearer token must be printable ASCII without spaces",
                ));
            }
        }
        let first_token_header = secrets.first().and_then(|token| {
            let mut value = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Ok(BearerToken {
            token_digests: secrets
                .iter()
                .map(|token| Sha256::digest(token.as_bytes()).into())
                .collect(),
            first_token_header,
        })
    }

    pub(crate) fn verify(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        let value = AUTHORIZATION_HEADER.value(headers)?;
        let token = strip_prefix_ignore_ascii_case(value, BEARER_PREFIX)
            .map(<[u8]>::trim_ascii)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| AUTHORIZATION_HEADER.malformed("expected Bearer <token>"))?;
        let presented: [u8; 32] = Sha256::digest(token).into();
        let matched = self
            .token_digests
            .iter()
            .any(|accepted| bool::from(accepted.ct_eq(&presented)));
        if matched {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    pub(crate) fn sign(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.first_token_header
            .iter()
            .map(|value| (AUTHORIZATION, value.clone()))
            .collect()
    }
}
