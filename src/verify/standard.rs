//! Standard Webhooks (`standard`) and Svix (`svix`): HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` keyed with the base64 part of a `whsec_` secret, sent as a
//! space-separated list of `v1,<base64>` signatures. Svix is the same scheme under
//! `svix-*` header names.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, BASE64_PADDING_OPTIONAL, KeyedMac, SignatureBytes};
use super::timestamp::{parse_unix_seconds, within_tolerance};
use super::{ExpectedHeader, VerifyError, signed_header, split_once};
use base64::Engine as _;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &[u8] = b"v1";

struct HeaderSet {
    id: ExpectedHeader,
    timestamp: ExpectedHeader,
    signature: ExpectedHeader,
}

static STANDARD_HEADERS: HeaderSet = HeaderSet {
    id: ExpectedHeader::provider("webhook-id", "webhook-id"),
    timestamp: ExpectedHeader::provider("webhook-timestamp", "webhook-timestamp"),
    signature: ExpectedHeader::provider("webhook-signature", "webhook-signature"),
};

static SVIX_HEADERS: HeaderSet = HeaderSet {
    id: ExpectedHeader::provider("svix-id", "svix-id"),
    timestamp: ExpectedHeader::provider("svix-timestamp", "svix-timestamp"),
    signature: ExpectedHeader::provider("svix-signature", "svix-signature"),
};

pub(crate) struct StandardWebhooks {
    headers: &'static HeaderSet,
    /// Svix's own libraries fall back to the `webhook-*` names header by header,
    /// because Svix can send either spelling; `svix` does the same.
    fallback: Option<&'static HeaderSet>,
    keys: Vec<KeyedMac>,
    tolerance_seconds: u64,
}

impl StandardWebhooks {
    pub(crate) fn standard(
        secrets: &[String],
        tolerance_seconds: u64,
    ) -> Result<StandardWebhooks, VerifyConfigError> {
        Ok(StandardWebhooks {
            headers: &STANDARD_HEADERS,
            fallback: None,
            keys: key_whsec_secrets(secrets)?,
            tolerance_seconds,
        })
    }

    pub(crate) fn svix(
        secrets: &[String],
        tolerance_seconds: u64,
    ) -> Result<StandardWebhooks, VerifyConfigError> {
        Ok(StandardWebhooks {
            headers: &SVIX_HEADERS,
            fallback: Some(&STANDARD_HEADERS),
            keys: key_whsec_secrets(secrets)?,
            tolerance_seconds,
        })
    }

    /// The value and the header it came from, so messages name the header actually sent.
    fn value<'h>(
        &self,
        headers: &'h HeaderMap,
        pick: fn(&'static HeaderSet) -> &'static ExpectedHeader,
    ) -> Result<(&'h [u8], &'static ExpectedHeader), VerifyError> {
        let primary = pick(self.headers);
        if let Some(value) = primary.value_if_present(headers) {
            return Ok((value, primary));
        }
        if let Some(fallback) = self.fallback.map(pick)
            && let Some(value) = fallback.value_if_present(headers)
        {
            return Ok((value, fallback));
        }
        Err(primary.missing())
    }

    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let (signature, signature_header) = self.value(headers, |set| &set.signature)?;
        let (id, _) = self.value(headers, |set| &set.id)?;
        let (timestamp_text, timestamp_header) = self.value(headers, |set| &set.timestamp)?;

        let signed_at = parse_unix_seconds(timestamp_text)
            .ok_or_else(|| timestamp_header.malformed("not a Unix timestamp in seconds"))?;
        if !within_tolerance(signed_at, now_unix, self.tolerance_seconds) {
            return Err(VerifyError::TimestampOutOfTolerance);
        }

        let entries = signature
            .split(|&byte| byte == b' ')
            .filter(|entry| !entry.is_empty());
        if !entries.clone().any(|entry| entry.contains(&b',')) {
            return Err(signature_header.malformed("expected space-separated v1,<base64> entries"));
        }
        // Other versions (such as asymmetric `v1a`) and undecodable entries cannot
        // match an HMAC key, so they are skipped rather than rejected.
        let candidates = entries.filter_map(|entry| {
            let (version, encoded) = split_once(entry, b',')?;
            if version != SIGNATURE_VERSION {
                return None;
            }
            SignatureBytes::decode_base64(encoded)
        });

        let signed_content: [&[u8]; 5] = [id, b".", timestamp_text, b".", body];
        if mac::any_matches(&self.keys, &signed_content, candidates) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    pub(crate) fn sign(
        &self,
        body: &[u8],
        message_id: &str,
        now_unix: i64,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        let timestamp_text = now_unix.to_string();
        let signature = key.digest(&[
            message_id.as_bytes(),
            b".",
            timestamp_text.as_bytes(),
            b".",
            body,
        ]);
        [
            signed_header(self.headers.id.name(), message_id.to_owned()),
            signed_header(self.headers.timestamp.name(), timestamp_text),
            signed_header(
                self.headers.signature.name(),
                format!("v1,{}", signature.encode(SignatureEncoding::Base64)),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The key is the base64 after an optional `whsec_` prefix; padding is optional, as
/// in the Standard Webhooks libraries.
fn key_whsec_secrets(secrets: &[String]) -> Result<Vec<KeyedMac>, VerifyConfigError> {
    mac::key_all(HmacAlgorithm::Sha256, secrets, |index, secret| {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        match BASE64_PADDING_OPTIONAL.decode(encoded) {
            Ok(key) if !key.is_empty() => Ok(key),
            _ => Err(VerifyConfigError::new(
                format!("secrets[{index}]"),
                "not a valid whsec_ secret (base64)",
            )),
        }
    })
}
