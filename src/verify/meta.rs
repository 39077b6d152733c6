//! Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over
//! the body keyed with the app secret, and the subscription check: `GET
//! ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`, answered with the challenge when the
//! token is the configured `verify_token`.

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::{
    ExpectedHeader, HandshakeError, HandshakeReply, VerifyError, signed_header,
    strip_prefix_ignore_ascii_case,
};
use crate::domain::form::{FormFields, encode_component};

static META_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-hub-signature-256", "X-Hub-Signature-256");

const SIGNATURE_PREFIX: &[u8] = b"sha256=";

pub(crate) struct MetaSignature {
    keys: Vec<KeyedMac>,
    /// SHA-256 of the token, compared in constant time whatever the presented token's length.
    verify_token_digest: [u8; 32],
    /// Kept for [`MetaSignature::handshake_query`], which plays Meta's part.
    verify_token: String,
}

impl MetaSignature {
    pub(crate) fn new(
        secrets: &[String],
        verify_token: Option<&str>,
    ) -> Result<MetaSignature, VerifyConfigError> {
        let verify_token = verify_token.unwrap_or_default();
        if verify_token.is_empty() {
            return Err(VerifyConfigError::new(
                "verify_token",
                "required when scheme = \"meta\": the token entered next to the callback URL \
                 in the app's webhook settings, which Meta sends back to verify the subscription",
            ));
        }
        if verify_token.trim() != verify_token {
            return Err(VerifyConfigError::new(
                "verify_token",
                "has leading or trailing whitespace",
            ));
        }
        Ok(MetaSignature {
            keys: mac::key_all(HmacAlgorithm::Sha256, secrets, |_, secret| {
                Ok(secret.as_bytes().to_vec())
            })?,
            verify_token_digest: Sha256::digest(verify_token.as_bytes()).into(),
            verify_token: verify_token.to_owned(),
        })
    }

    pub(crate) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let value = META_SIGNATURE.value(headers)?;
        let encoded = strip_prefix_ignore_ascii_case(value, SIGNATURE_PREFIX)
            .ok_or_else(|| META_SIGNATURE.malformed("expected sha256=<hex>"))?;
        let candidate = SignatureBytes::decode_hex(encoded)
            .ok_or_else(|| META_SIGNATURE.malformed("signature is not hex"))?;
        if mac::any_matches(&self.keys, &[body], std::iter::once(candidate)) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    pub(crate) fn sign(&self, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        let signature = key.digest(&[body]).encode(SignatureEncoding::Hex);
        signed_header(META_SIGNATURE.name(), format!("sha256={signature}"))
            .into_iter()
            .collect()
    }

    /// Meta's subscription check, from the query of a GET.
    pub(crate) fn handshake(&self, query: Option<&str>) -> Result<HandshakeReply, HandshakeError> {
        let fields = FormFields::parse(query.unwrap_or_default().as_bytes());
        let presented = fields.get("hub.verify_token").unwrap_or_default();
        let presented_digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if !bool::from(presented_digest.ct_eq(&self.verify_token_digest)) {
            return Err(HandshakeError::WrongVerifyToken);
        }
        if fields.get("hub.mode") != Some("subscribe") {
            return Err(HandshakeError::Malformed("hub.mode is not subscribe"));
        }
        let challenge = fields
            .get("hub.challenge")
            .filter(|challenge| !challenge.is_empty())
            .ok_or(HandshakeError::Malformed("no hub.challenge"))?;
        Ok(HandshakeReply::text(challenge.as_bytes().to_vec()))
    }

    /// The query Meta sends to check a subscription, with `challenge`.
    pub(crate) fn handshake_query(&self, challenge: &str) -> String {
        format!(
            "hub.mode=subscribe&hub.verify_token={}&hub.challenge={}",
            encode_component(&self.verify_token),
            encode_component(challenge)
        )
    }
}
