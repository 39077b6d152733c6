//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over
//! `v0:{X-Slack-Request-Timestamp}:{body}` keyed with the app's signing secret, and the Events
//! API's URL check: a signed `url_verification` event, answered with its `challenge`.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::timestamp::{parse_unix_seconds, within_tolerance};
use super::{
    ExpectedHeader, HandshakeError, HandshakeReply, VerifyError, contains, signed_header,
    strip_prefix_ignore_ascii_case,
};

static SLACK_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-slack-signature", "X-Slack-Signature");
static SLACK_REQUEST_TIMESTAMP: ExpectedHeader =
    ExpectedHeader::provider("x-slack-request-timestamp", "X-Slack-Request-Timestamp");

const VERSION_PREFIX: &[u8] = b"v0=";
const URL_VERIFICATION_TYPE: &str = "url_verification";

/// The parts of a `url_verification` event the answer needs.
#[derive(Deserialize)]
struct UrlVerification {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
}

pub(crate) struct SlackSignature {
    keys: Vec<KeyedMac>,
    tolerance_seconds: u64,
}

impl SlackSignature {
    pub(crate) fn new(
        secrets: &[String],
        tolerance_seconds: u64,
    ) -> Result<SlackSignature, VerifyConfigError> {
        Ok(SlackSignature {
            keys: mac::key_all(HmacAlgorithm::Sha256, secrets, |_, secret| {
                Ok(secret.as_bytes().to_vec())
            })?,
            tolerance_seconds,
        })
    }

    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let signature = SLACK_SIGNATURE.value(headers)?;
        let timestamp_text = SLACK_REQUEST_TIMESTAMP.value(headers)?;

        let signed_at = parse_unix_seconds(timestamp_text)
            .ok_or_else(|| SLACK_REQUEST_TIMESTAMP.malformed("not a Unix timestamp in seconds"))?;
        let encoded = strip_prefix_ignore_ascii_case(signature, VERSION_PREFIX)
            .ok_or_else(|| SLACK_SIGNATURE.malformed("expected v0=<hex>"))?;
        let candidate = SignatureBytes::decode_hex(encoded)
            .ok_or_else(|| SLACK_SIGNATURE.malformed("expected v0=<hex>"))?;
        if !within_tolerance(signed_at, now_unix, self.tolerance_seconds) {
            return Err(VerifyError::TimestampOutOfTolerance);
        }

        let signed_content: [&[u8]; 4] = [b"v0:", timestamp_text, b":", body];
        if mac::any_matches(&self.keys, &signed_content, std::iter::once(candidate)) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    pub(crate) fn sign(&self, body: &[u8], now_unix: i64) -> Vec<(HeaderName, HeaderValue)> {
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        let timestamp_text = now_unix.to_string();
        let signature = key.digest(&[b"v0:", timestamp_text.as_bytes(), b":", body]);
        [
            signed_header(
                SLACK_SIGNATURE.name(),
                format!("v0={}", signature.encode(SignatureEncoding::Hex)),
            ),
            signed_header(SLACK_REQUEST_TIMESTAMP.name(), timestamp_text),
        ]
        .into_iter()
        .flatten()
        .collect()
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
