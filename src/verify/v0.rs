//! The `v0` signature Slack and Zoom share: `v0=<hex>` of HMAC-SHA256 over
//! `v0:{timestamp}:{body}`, the timestamp in its own header and held to a tolerance. Each
//! provider names the two headers and keeps its own URL check (`slack.rs`, `zoom.rs`).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::timestamp::{parse_unix_seconds, within_tolerance};
use super::{ExpectedHeader, VerifyError, signed_header, strip_prefix_ignore_ascii_case};

const VERSION_PREFIX: &[u8] = b"v0=";

pub(crate) struct V0Signature {
    keys: Vec<KeyedMac>,
    tolerance_seconds: u64,
    signature: &'static ExpectedHeader,
    timestamp: &'static ExpectedHeader,
}

impl V0Signature {
    pub(crate) fn new(
        secrets: &[String],
        tolerance_seconds: u64,
        signature: &'static ExpectedHeader,
        timestamp: &'static ExpectedHeader,
    ) -> Result<V0Signature, VerifyConfigError> {
        Ok(V0Signature {
            keys: mac::key_all(HmacAlgorithm::Sha256, secrets, |_, secret| {
                Ok(secret.as_bytes().to_vec())
            })?,
            tolerance_seconds,
            signature,
            timestamp,
        })
    }

    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let signature = self.signature.value(headers)?;
        let timestamp_text = self.timestamp.value(headers)?;

        let signed_at = parse_unix_seconds(timestamp_text)
            .ok_or_else(|| self.timestamp.malformed("not a Unix timestamp in seconds"))?;
        let encoded = strip_prefix_ignore_ascii_case(signature, VERSION_PREFIX)
            .ok_or_else(|| self.signature.malformed("expected v0=<hex>"))?;
        let candidate = SignatureBytes::decode_hex(encoded)
            .ok_or_else(|| self.signature.malformed("expected v0=<hex>"))?;
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
                self.signature.name(),
                format!("v0={}", signature.encode(SignatureEncoding::Hex)),
            ),
            signed_header(self.timestamp.name(), timestamp_text),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The first key, for answers a provider checks with the same secret (Zoom's URL check).
    pub(crate) fn first_key(&self) -> Option<&KeyedMac> {
        self.keys.first()
    }
}
