//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over
//! `v0:{X-Slack-Request-Timestamp}:{body}` keyed with the app's signing secret.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::timestamp::{parse_unix_seconds, within_tolerance};
use super::{ExpectedHeader, VerifyError, signed_header, strip_prefix_ignore_ascii_case};

static SLACK_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-slack-signature", "X-Slack-Signature");
static SLACK_REQUEST_TIMESTAMP: ExpectedHeader =
    ExpectedHeader::provider("x-slack-request-timestamp", "X-Slack-Request-Timestamp");

const VERSION_PREFIX: &[u8] = b"v0=";

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
}
