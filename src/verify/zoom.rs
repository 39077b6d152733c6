//! Zoom: `x-zm-signature: v0=<hex>`, HMAC-SHA256 over `v0:{x-zm-request-timestamp}:{body}`
//! keyed with the app's secret token, and the URL validation: a signed
//! `endpoint.url_validation` event, answered with its `plainToken` and that token's
//! HMAC-SHA256 under the secret token (`encryptedToken`, hex).

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::config::{SignatureEncoding, VerifyConfigError};
use super::v0::V0Signature;
use super::{ExpectedHeader, HandshakeError, HandshakeReply, VerifyError, contains};

static ZOOM_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-zm-signature", "x-zm-signature");
static ZOOM_REQUEST_TIMESTAMP: ExpectedHeader =
    ExpectedHeader::provider("x-zm-request-timestamp", "x-zm-request-timestamp");

const URL_VALIDATION_EVENT: &str = "endpoint.url_validation";

pub(crate) struct ZoomSignature {
    signature: V0Signature,
}

/// The parts of an `endpoint.url_validation` event the answer needs.
#[derive(Deserialize)]
struct UrlValidation {
    event: String,
    payload: Option<UrlValidationPayload>,
}

#[derive(Deserialize)]
struct UrlValidationPayload {
    #[serde(rename = "plainToken")]
    plain_token: Option<String>,
}

impl ZoomSignature {
    pub(crate) fn new(
        secrets: &[String],
        tolerance_seconds: u64,
    ) -> Result<ZoomSignature, VerifyConfigError> {
        Ok(ZoomSignature {
            signature: V0Signature::new(
                secrets,
                tolerance_seconds,
                &ZOOM_SIGNATURE,
                &ZOOM_REQUEST_TIMESTAMP,
            )?,
        })
    }

    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        self.signature.verify(headers, body, now_unix)
    }

    pub(crate) fn sign(&self, body: &[u8], now_unix: i64) -> Vec<(HeaderName, HeaderValue)> {
        self.signature.sign(body, now_unix)
    }

    /// `None` unless the body is an `endpoint.url_validation` event; then its signature decides.
    pub(crate) fn handshake(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Option<Result<HandshakeReply, HandshakeError>> {
        // Every event passes through here: look for the name before parsing anything.
        if !contains(body, URL_VALIDATION_EVENT.as_bytes()) {
            return None;
        }
        let validation: UrlValidation = serde_json::from_slice(body).ok()?;
        if validation.event != URL_VALIDATION_EVENT {
            return None;
        }
        Some(self.answer(headers, body, now_unix, validation))
    }

    fn answer(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
        validation: UrlValidation,
    ) -> Result<HandshakeReply, HandshakeError> {
        self.verify(headers, body, now_unix)
            .map_err(HandshakeError::Signature)?;
        let plain_token = validation
            .payload
            .and_then(|payload| payload.plain_token)
            .filter(|token| !token.is_empty())
            .ok_or(HandshakeError::Malformed("no payload.plainToken"))?;
        let encrypted_token = self
            .encrypted_token(&plain_token)
            .ok_or(HandshakeError::Malformed("no secret to answer with"))?;
        Ok(HandshakeReply::json(&serde_json::json!({
            "plainToken": plain_token,
            "encryptedToken": encrypted_token,
        })))
    }

    /// `hex(HMAC-SHA256(first secret, plain_token))`, as Zoom documents: with the first secret,
    /// so during a rotation the new secret goes first once Zoom uses it.
    pub(crate) fn encrypted_token(&self, plain_token: &str) -> Option<String> {
        let key = self.signature.first_key()?;
        Some(
            key.digest(&[plain_token.as_bytes()])
                .encode(SignatureEncoding::Hex),
        )
    }

    /// The body of Zoom's URL validation event for `plain_token`, sent at `now_unix`.
    pub(crate) fn handshake_body(plain_token: &str, now_unix: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "payload": { "plainToken": plain_token },
            "event_ts": now_unix.saturating_mul(1000),
            "event": URL_VALIDATION_EVENT,
        }))
        .unwrap_or_default()
    }
}
