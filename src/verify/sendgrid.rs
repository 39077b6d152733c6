//! SendGrid (Twilio SendGrid's signed Event Webhook): ECDSA P-256 with SHA-256 over
//! `{X-Twilio-Email-Event-Webhook-Timestamp}{body}`, the signature in
//! `X-Twilio-Email-Event-Webhook-Signature` as base64 DER, checked against the verification key
//! from SendGrid's Mail Settings (`public_key`: base64 DER, SubjectPublicKeyInfo). There is no
//! shared secret: SendGrid signs with its private key, so only a key pair made for testing
//! (`private_key`) lets `oncehook send` sign.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};

use super::config::VerifyConfigError;
use super::mac::BASE64_PADDING_OPTIONAL;
use super::timestamp::{parse_unix_seconds, within_tolerance};
use super::{ExpectedHeader, VerifyError, signed_header};

static SENDGRID_SIGNATURE: ExpectedHeader = ExpectedHeader::provider(
    "x-twilio-email-event-webhook-signature",
    "X-Twilio-Email-Event-Webhook-Signature",
);
static SENDGRID_TIMESTAMP: ExpectedHeader = ExpectedHeader::provider(
    "x-twilio-email-event-webhook-timestamp",
    "X-Twilio-Email-Event-Webhook-Timestamp",
);

/// The base64 of the longest DER P-256 signature (72 bytes), with room for stray padding:
/// anything longer cannot be one, and is refused before decoding.
const MAX_SIGNATURE_TEXT: usize = 100;

pub(crate) struct SendgridSignature {
    keys: Vec<VerifyingKey>,
    signing_key: Option<SigningKey>,
    tolerance_seconds: u64,
}

impl SendgridSignature {
    pub(crate) fn new(
        public_keys: &[String],
        private_key: Option<&str>,
        tolerance_seconds: u64,
    ) -> Result<SendgridSignature, VerifyConfigError> {
        if public_keys.is_empty() {
            return Err(VerifyConfigError::new(
                "public_key",
                "required when scheme = \"sendgrid\": the verification key shown in SendGrid's \
                 Mail Settings when the signed Event Webhook is enabled",
            ));
        }
        let keys = public_keys
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let key = decode_key_text(text)
                    .and_then(|der| VerifyingKey::from_public_key_der(&der).ok());
                key.ok_or_else(|| {
                    VerifyConfigError::new(
                        if public_keys.len() == 1 {
                            "public_key".to_owned()
                        } else {
                            format!("public_key[{index}]")
                        },
                        "not a base64 DER (SubjectPublicKeyInfo) ECDSA P-256 public key",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signing_key = private_key
            .map(|text| {
                let key = decode_key_text(text)
                    .and_then(|der| SigningKey::from_pkcs8_der(&der).ok())
                    .ok_or_else(|| {
                        VerifyConfigError::new(
                            "private_key",
                            "not a base64 DER (PKCS#8) ECDSA P-256 private key",
                        )
                    })?;
                if !keys.contains(key.verifying_key()) {
                    return Err(VerifyConfigError::new(
                        "private_key",
                        "is not the private half of any public_key",
                    ));
                }
                Ok(key)
            })
            .transpose()?;
        Ok(SendgridSignature {
            keys,
            signing_key,
            tolerance_seconds,
        })
    }

    pub(crate) fn can_sign(&self) -> bool {
        self.signing_key.is_some()
    }

    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let signature_text = SENDGRID_SIGNATURE.value(headers)?;
        let timestamp_text = SENDGRID_TIMESTAMP.value(headers)?;

        let signed_at = parse_unix_seconds(timestamp_text)
            .ok_or_else(|| SENDGRID_TIMESTAMP.malformed("not a Unix timestamp in seconds"))?;
        let signature = decode_signature(signature_text)
            .ok_or_else(|| SENDGRID_SIGNATURE.malformed("expected a base64 DER ECDSA signature"))?;
        if !within_tolerance(signed_at, now_unix, self.tolerance_seconds) {
            return Err(VerifyError::TimestampOutOfTolerance);
        }

        // ECDSA hashes the message in one piece: the timestamp and the body, joined.
        let mut signed_content = Vec::with_capacity(timestamp_text.len() + body.len());
        signed_content.extend_from_slice(timestamp_text);
        signed_content.extend_from_slice(body);
        if self
            .keys
            .iter()
            .any(|key| key.verify(&signed_content, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// Nothing without `private_key`: SendGrid's own key never leaves SendGrid.
    pub(crate) fn sign(&self, body: &[u8], now_unix: i64) -> Vec<(HeaderName, HeaderValue)> {
        let Some(signing_key) = &self.signing_key else {
            return Vec::new();
        };
        let timestamp_text = now_unix.to_string();
        let mut signed_content = timestamp_text.as_bytes().to_vec();
        signed_content.extend_from_slice(body);
        // RFC 6979: deterministic, so no random source is needed and tests can pin the output.
        let signature: Signature = signing_key.sign(&signed_content);
        [
            signed_header(
                SENDGRID_SIGNATURE.name(),
                BASE64_PADDING_OPTIONAL.encode(signature.to_der().as_bytes()),
            ),
            signed_header(SENDGRID_TIMESTAMP.name(), timestamp_text),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn decode_signature(text: &[u8]) -> Option<Signature> {
    if text.len() > MAX_SIGNATURE_TEXT {
        return None;
    }
    let der = BASE64_PADDING_OPTIONAL.decode(text).ok()?;
    Signature::from_der(&der).ok()
}

/// The DER bytes of a key as pasted: base64, optionally wrapped in PEM armour and lines.
fn decode_key_text(text: &str) -> Option<Vec<u8>> {
    let base64: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----"))
        .flat_map(str::chars)
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if base64.is_empty() {
        return None;
    }
    BASE64_PADDING_OPTIONAL.decode(base64).ok()
}
