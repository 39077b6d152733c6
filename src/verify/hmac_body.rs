//! Schemes that sign the raw body alone with one header and no timestamp: GitHub
//! (`X-Hub-Signature-256: sha256=<hex>`), Shopify (`X-Shopify-Hmac-Sha256: <base64>`)
//! and the generic `hmac` scheme, whose header, hash, encoding and prefix come from config.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfig, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::{ExpectedHeader, VerifyError, signed_header, strip_prefix_ignore_ascii_case};

static GITHUB_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-hub-signature-256", "X-Hub-Signature-256");
static GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
static GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");
/// The event GitHub sends when a webhook is created, and so the one a test delivery imitates.
const GITHUB_TEST_EVENT: &str = "ping";

static SHOPIFY_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-shopify-hmac-sha256", "X-Shopify-Hmac-Sha256");
static SHOPIFY_WEBHOOK_ID: HeaderName = HeaderName::from_static("x-shopify-webhook-id");
static SHOPIFY_TOPIC: HeaderName = HeaderName::from_static("x-shopify-topic");
/// Shopify has no ping event; a test delivery claims the most common topic.
const SHOPIFY_TEST_TOPIC: &str = "orders/create";

/// Which provider's extra, unsigned headers [`BodyMac::sign`] adds.
enum DeliveryHeaders {
    Github,
    Shopify,
    None,
}

pub(crate) struct BodyMac {
    signature_header: ExpectedHeader,
    prefix: Cow<'static, str>,
    prefix_missing_reason: &'static str,
    encoding: SignatureEncoding,
    keys: Vec<KeyedMac>,
    delivery_headers: DeliveryHeaders,
}

impl BodyMac {
    pub(crate) fn github(secrets: &[String]) -> Result<BodyMac, VerifyConfigError> {
        Ok(BodyMac {
            signature_header: GITHUB_SIGNATURE.clone(),
            prefix: Cow::Borrowed("sha256="),
            prefix_missing_reason: "expected sha256=<hex>",
            encoding: SignatureEncoding::Hex,
            keys: key_raw_secrets(HmacAlgorithm::Sha256, secrets)?,
            delivery_headers: DeliveryHeaders::Github,
        })
    }

    pub(crate) fn shopify(secrets: &[String]) -> Result<BodyMac, VerifyConfigError> {
        Ok(BodyMac {
            signature_header: SHOPIFY_SIGNATURE.clone(),
            prefix: Cow::Borrowed(""),
            // Never reported: every value starts with the empty prefix.
            prefix_missing_reason: "",
            encoding: SignatureEncoding::Base64,
            keys: key_raw_secrets(HmacAlgorithm::Sha256, secrets)?,
            delivery_headers: DeliveryHeaders::Shopify,
        })
    }

    /// The `hmac` scheme; `cfg.secrets` has already been checked to be non-empty.
    pub(crate) fn generic(cfg: &VerifyConfig) -> Result<BodyMac, VerifyConfigError> {
        let header_text = cfg
            .header
            .as_deref()
            .map(str::trim)
            .filter(|header| !header.is_empty())
            .ok_or_else(|| VerifyConfigError::new("header", "required when scheme = \"hmac\""))?;
        let header_name = HeaderName::from_bytes(header_text.as_bytes())
            .map_err(|_| VerifyConfigError::new("header", "not a valid HTTP header name"))?;
        let prefix = cfg.prefix.clone().unwrap_or_default();
        // The prefix goes into the header `sign` produces, so it must be a header value.
        if !prefix.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(VerifyConfigError::new(
                "prefix",
                "must be printable ASCII without spaces",
            ));
        }
        let algorithm = cfg.algorithm.unwrap_or(HmacAlgorithm::Sha256);
        Ok(BodyMac {
            signature_header: ExpectedHeader::configured(header_name, header_text.to_owned()),
            prefix: Cow::Owned(prefix),
            prefix_missing_reason: "value does not start with the configured prefix",
            encoding: cfg.encoding.unwrap_or(SignatureEncoding::Hex),
            keys: key_raw_secrets(algorithm, &cfg.secrets)?,
            delivery_headers: DeliveryHeaders::None,
        })
    }

    pub(crate) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let value = self.signature_header.value(headers)?;
        let encoded = strip_prefix_ignore_ascii_case(value, self.prefix.as_bytes())
            .ok_or_else(|| self.signature_header.malformed(self.prefix_missing_reason))?;
        let candidate = SignatureBytes::decode(self.encoding, encoded).ok_or_else(|| {
            self.signature_header.malformed(match self.encoding {
                SignatureEncoding::Hex => "signature is not hex",
                SignatureEncoding::Base64 => "signature is not base64",
            })
        })?;
        if mac::any_matches(&self.keys, &[body], std::iter::once(candidate)) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    pub(crate) fn sign(&self, body: &[u8], message_id: &str) -> Vec<(HeaderName, HeaderValue)> {
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        let signature = key.digest(&[body]).encode(self.encoding);
        let mut signed = Vec::with_capacity(3);
        signed.extend(signed_header(
            self.signature_header.name(),
            format!("{}{signature}", self.prefix),
        ));
        match self.delivery_headers {
            DeliveryHeaders::Github => {
                signed.extend(signed_header(&GITHUB_DELIVERY, message_id.to_owned()));
                signed.extend(signed_header(&GITHUB_EVENT, GITHUB_TEST_EVENT.to_owned()));
            }
            DeliveryHeaders::Shopify => {
                signed.extend(signed_header(&SHOPIFY_WEBHOOK_ID, message_id.to_owned()));
                signed.extend(signed_header(&SHOPIFY_TOPIC, SHOPIFY_TEST_TOPIC.to_owned()));
            }
            DeliveryHeaders::None => {}
        }
        signed
    }
}

fn key_raw_secrets(
    algorithm: HmacAlgorithm,
    secrets: &[String],
) -> Result<Vec<KeyedMac>, VerifyConfigError> {
    mac::key_all(algorithm, secrets, |_, secret| {
        Ok(secret.as_bytes().to_vec())
    })
}
