//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over
//! `{t}.{body}` keyed with the whole secret string, `whsec_` included.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::timestamp::{parse_unix_seconds, within_tolerance};
use super::{ExpectedHeader, VerifyError, signed_header, split_once};

static STRIPE_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("stripe-signature", "Stripe-Signature");

const TIMESTAMP_KEY: &[u8] = b"t";
const SIGNATURE_KEY: &[u8] = b"v1";

pub(crate) struct StripeSignature {
    keys: Vec<KeyedMac>,
    tolerance_seconds: u64,
}

impl StripeSignature {
    pub(crate) fn new(
        secrets: &[String],
        tolerance_seconds: u64,
    ) -> Result<StripeSignature, VerifyConfigError> {
        Ok(StripeSignature {
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
        let header = STRIPE_SIGNATURE.value(headers)?;
        // `key=value` items; other schemes such as `v0` (test mode) are ignored.
        let items = || {
            header
                .split(|&byte| byte == b',')
                .filter_map(|item| split_once(item.trim_ascii(), b'='))
        };

        let timestamp_text = items()
            .find(|(key, _)| *key == TIMESTAMP_KEY)
            .map(|(_, value)| value)
            .ok_or_else(|| STRIPE_SIGNATURE.malformed("no t= timestamp"))?;
        let signed_at = parse_unix_seconds(timestamp_text)
            .ok_or_else(|| STRIPE_SIGNATURE.malformed("t= is not a Unix timestamp in seconds"))?;
        if !items().any(|(key, _)| key == SIGNATURE_KEY) {
            return Err(STRIPE_SIGNATURE.malformed("no v1= signature"));
        }
        if !within_tolerance(signed_at, now_unix, self.tolerance_seconds) {
            return Err(VerifyError::TimestampOutOfTolerance);
        }

        let candidates = items()
            .filter(|(key, _)| *key == SIGNATURE_KEY)
            .filter_map(|(_, value)| SignatureBytes::decode_hex(value));
        let signed_content: [&[u8]; 3] = [timestamp_text, b".", body];
        if mac::any_matches(&self.keys, &signed_content, candidates) {
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
        let signature = key.digest(&[timestamp_text.as_bytes(), b".", body]);
        let value = format!(
            "t={timestamp_text},v1={}",
            signature.encode(SignatureEncoding::Hex)
        );
        signed_header(STRIPE_SIGNATURE.name(), value)
            .into_iter()
            .collect()
    }
}
