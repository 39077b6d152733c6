//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over
//! `v0:{X-Slack-Request-Timestamp}:{body}` keyed with the app's signing secret, and the Events
//! API's URL check: a signed `url_verification` event, answered with its `challenge`.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::config::VerifyConfigError;
use super::v0::V0Signature;
use super::{ExpectedHeader, HandshakeError, HandshakeReply, VerifyError, contains};

static SLACK_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-slack-signature", "X-Slack-Signature");
static SLACK_REQUEST_TIMESTAMP: ExpectedHeader =
    ExpectedHeader::provider("x-slack-request-timestamp", "X-Slack-Request-Timestamp");

const URL_VERIFICATION_TYPE: &str = "url_verification";

/// The parts of a `url_verification` event the answer needs.
#[derive(Deserialize)]
struct UrlVerification {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
}

pub(crate) struct SlackSignature {
    signature: V0Signature,
}

impl SlackSignature {
    pub(crate) fn new(
        secrets: &[String],
        tolerance_seconds: u64,
    ) -> Result<SlackSignature, VerifyConfigError> {
        Ok(SlackSignature {
            signature: V0Signature::new(
                secrets,
                tolerance_seconds,
                &SLACK_SIGNATURE,
                &SLACK_REQUEST_TIMESTAMP,
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

    /// `None` unless the body is a `url_verification` event; then its signature decides.
    pub(crate) fn handshake(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Option<Result<HandshakeReply, HandshakeError>> {
        // Every event passes through here: look for the type before parsing anything.
        if !contains(body, URL_VERIFICATION_TYPE.as_bytes()) {
            return None;
        }
        let verification: UrlVerification = serde_json::from_slice(body).ok()?;
        if verification.kind != URL_VERIFICATION_TYPE {
            return None;
        }
        Some(
            self.verify(headers, body, now_unix)
                .map_err(HandshakeError::Signature)
                .and_then(|()| {
                    let challenge = verification
                        .challenge
                        .filter(|challenge| !challenge.is_empty())
                        .ok_or(HandshakeError::Malformed("no challenge"))?;
                    Ok(HandshakeReply::json(
                        &serde_json::json!({ "challenge": challenge }),
                    ))
                }),
        )
    }

    /// The body of Slack's `url_verification` event for `challenge`.
    pub(crate) fn handshake_body(challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "challenge": challenge,
            "type": URL_VERIFICATION_TYPE,
        }))
        .unwrap_or_default()
    }
}
