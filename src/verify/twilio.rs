//! Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 (keyed with the account's Auth Token) over
//! the URL Twilio called followed by the form fields sorted by name, each name immediately
//! followed by its value, as Twilio's `RequestValidator` computes it:
//!
//! - the URL is the configured `verify.url` (Twilio signs the public URL; behind a proxy the
//!   gateway cannot see it), tried without and with the scheme's default port, since Twilio's
//!   own signing is inconsistent about it;
//! - a body that is not a form (Twilio's JSON callbacks) is signed as the URL with
//!   `bodySHA256=<hex SHA-256 of the body>` appended to its query, and no fields;
//! - `X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256` (webhooks signed with
//!   a SharedKey) selects HMAC-SHA256 instead; the secret is then the SharedKey secret.

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::config::{HmacAlgorithm, SignatureEncoding, VerifyConfigError};
use super::mac::{self, KeyedMac, SignatureBytes};
use super::{ExpectedHeader, VerifyError, signed_header};
use crate::domain::form::{FormFields, is_form_content_type};

static TWILIO_SIGNATURE: ExpectedHeader =
    ExpectedHeader::provider("x-twilio-signature", "X-Twilio-Signature");
static TWILIO_SIGNATURE_SETTINGS: ExpectedHeader = ExpectedHeader::provider(
    "x-twilio-webhooks-signature-settings",
    "X-Twilio-Webhooks-Signature-Settings",
);
static TWILIO_IDEMPOTENCY_TOKEN: HeaderName = HeaderName::from_static("i-twilio-idempotency-token");
static CONTENT_TYPE: ExpectedHeader = ExpectedHeader::provider("content-type", "Content-Type");

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const JSON_CONTENT_TYPE: &str = "application/json";

pub(crate) struct TwilioSignature {
    sha1_keys: Vec<KeyedMac>,
    sha256_keys: Vec<KeyedMac>,
    /// The configured URL without its fragment, then the same URL with the default port added
    /// or the port taken away.
    urls: [String; 2],
}

impl TwilioSignature {
    pub(crate) fn new(
        secrets: &[String],
        url: Option<&str>,
    ) -> Result<TwilioSignature, VerifyConfigError> {
        let url = url
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .ok_or_else(|| {
                VerifyConfigError::new(
                    "url",
                    "required when scheme = \"twilio\": the public URL Twilio calls, exactly as \
                 entered in the Twilio console (Twilio signs it)",
                )
            })?;
        let urls = url_variants(url).ok_or_else(|| {
            VerifyConfigError::new(
                "url",
                "not an http:// or https:// URL with a host (and a numeric port, if any)",
            )
        })?;
        let raw = |_: usize, secret: &str| Ok(secret.as_bytes().to_vec());
        Ok(TwilioSignature {
            sha1_keys: mac::key_all(HmacAlgorithm::Sha1, secrets, raw)?,
            sha256_keys: mac::key_all(HmacAlgorithm::Sha256, secrets, raw)?,
            urls,
        })
    }

    pub(crate) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let signature = TWILIO_SIGNATURE.value(headers)?;
        let keys = match TWILIO_SIGNATURE_SETTINGS.value_if_present(headers) {
            None => &self.sha1_keys,
            Some(settings) => match signature_algorithm(settings) {
                Some(HmacAlgorithm::Sha256) => &self.sha256_keys,
                Some(_) => &self.sha1_keys,
                None => {
                    return Err(TWILIO_SIGNATURE_SETTINGS
                        .malformed("algorithm is neither HMAC_SHA1 nor HMAC_SHA256"));
                }
            },
        };
        let candidate = SignatureBytes::decode_base64(signature)
            .ok_or_else(|| TWILIO_SIGNATURE.malformed("signature is not base64"))?;
        let is_form = is_form_body(CONTENT_TYPE.value_if_present(headers), body);
        let matched = self.urls.iter().any(|url| {
            let content = SignedContent::new(url, is_form, body);
            mac::any_matches(keys, &content.parts(), std::iter::once(candidate.clone()))
        });
        if matched {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// Signs as Twilio does with the Auth Token: a body that parses as JSON like one of Twilio's
    /// JSON callbacks, anything else as a form. The headers include the `Content-Type` the
    /// signature assumed, and `message_id` as `I-Twilio-Idempotency-Token`.
    pub(crate) fn sign(&self, body: &[u8], message_id: &str) -> Vec<(HeaderName, HeaderValue)> {
        let Some(key) = self.sha1_keys.first() else {
            return Vec::new();
        };
        let is_json =
            !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        let content = SignedContent::new(&self.urls[0], !is_json, body);
        let signature = key.digest(&content.parts());
        [
            signed_header(
                TWILIO_SIGNATURE.name(),
                signature.encode(SignatureEncoding::Base64),
            ),
            signed_header(
                CONTENT_TYPE.name(),
                (if is_json {
                    JSON_CONTENT_TYPE
                } else {
                    FORM_CONTENT_TYPE
                })
                .to_owned(),
            ),
            signed_header(&TWILIO_IDEMPOTENCY_TOKEN, message_id.to_owned()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Twilio signs the fields of a form; any other body through `bodySHA256`. An empty body has no
/// fields whatever its type.
fn is_form_body(content_type: Option<&[u8]>, body: &[u8]) -> bool {
    body.is_empty() || content_type.is_some_and(is_form_content_type)
}

/// What the HMAC runs over, as pieces fed one after the other.
struct SignedContent<'a> {
    url: &'a str,
    /// `?bodySHA256=<hex>` or `&bodySHA256=<hex>`, for a body that is not a form.
    body_hash: Option<String>,
    /// Each field's name and value, sorted, each distinct pair once.
    fields: Vec<(String, String)>,
}

impl<'a> SignedContent<'a> {
    fn new(url: &'a str, is_form: bool, body: &[u8]) -> SignedContent<'a> {
        if is_form {
            let form = FormFields::parse(body);
            let mut fields: Vec<(String, String)> = form
                .sorted()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            // The library signs `sorted(set(values))` per name: a repeated pair counts once.
            fields.dedup();
            SignedContent {
                url,
                body_hash: None,
                fields,
            }
        } else {
            let separator = if url.contains('?') { '&' } else { '?' };
            SignedContent {
                url,
                body_hash: Some(format!(
                    "{separator}bodySHA256={}",
                    hex::encode(Sha256::digest(body))
                )),
                fields: Vec::new(),
            }
        }
    }

    fn parts(&self) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(2 + 2 * self.fields.len());
        parts.push(self.url.as_bytes());
        if let Some(body_hash) = &self.body_hash {
            parts.push(body_hash.as_bytes());
        }
        for (name, value) in &self.fields {
            parts.push(name.as_bytes());
            parts.push(value.as_bytes());
        }
        parts
    }
}

/// The algorithm named in `X-Twilio-Webhooks-Signature-Settings` (`key=…,algorithm=…`): SHA-1
/// when none is named, `None` when one is named that Twilio's library does not know.
fn signature_algorithm(settings: &[u8]) -> Option<HmacAlgorithm> {
    let named = settings
        .split(|&byte| byte == b',')
        .filter_map(|part| super::split_once(part, b'='))
        .find(|(name, value)| name.trim_ascii() == b"algorithm" && !value.trim_ascii().is_empty())
        .map(|(_, value)| value.trim_ascii());
    match named {
        None => Some(HmacAlgorithm::Sha1),
        Some(name) if name.eq_ignore_ascii_case(b"HMAC_SHA1") => Some(HmacAlgorithm::Sha1),
        Some(name) if name.eq_ignore_ascii_case(b"HMAC_SHA256") => Some(HmacAlgorithm::Sha256),
        Some(_) => None,
    }
}

/// The URL as configured (without a `#fragment`, which never reaches a server: Twilio's
/// connection overrides live there), and the same URL with the scheme's default port added
/// when it has none or with its port taken away when it has one. `None` unless it is an
/// `http`/`https` URL with a host.
fn url_variants(url: &str) -> Option<[String; 2]> {
    let url = url.split('#').next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        return None;
    };
    let scheme = scheme.to_ascii_lowercase();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (host, port) = split_port(host_port)?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let as_configured = format!("{scheme}://{authority}{path}");
    let other = match port {
        Some(_) => format!("{scheme}://{userinfo}{host}{path}"),
        None => format!("{scheme}://{userinfo}{host}:{default_port}{path}"),
    };
    Some([as_configured, other])
}

/// `host[:port]` (the host may be a bracketed IPv6 address); `None` for a port that is not a
/// number.
fn split_port(host_port: &str) -> Option<(&str, Option<u16>)> {
    let host_end = if host_port.starts_with('[') {
        host_port.find(']')? + 1
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let (host, port) = host_port.split_at(host_end);
    match port.strip_prefix(':') {
        None if port.is_empty() => Some((host, None)),
        None => None,
        Some(digits) => Some((host, Some(digits.parse().ok()?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_or_remove_the_port() {
        let variants = |url: &str| url_variants(url).map(|[a, b]| (a, b));
        let pair = |a: &str, b: &str| Some((a.to_owned(), b.to_owned()));
        assert_eq!(
            variants("https://example.com/sms?x=1#rc=3"),
            pair(
                "https://example.com/sms?x=1",
                "https://example.com:443/sms?x=1"
            )
        );
        assert_eq!(
            variants("http://example.com:8080/sms"),
            pair("http://example.com:8080/sms", "http://example.com/sms")
        );
        assert_eq!(
            variants("HTTPS://user:pw@example.com?q"),
            pair(
                "https://user:pw@example.com?q",
                "https://user:pw@example.com:443?q"
            )
        );
        assert_eq!(
            variants("https://[::1]:8443/x"),
            pair("https://[::1]:8443/x", "https://[::1]/x")
        );
        for bad in [
            "example.com/sms",
            "ftp://example.com/",
            "https:///path",
            "https://example.com:port/",
            "https://[::1/",
            "https://exa mple.com/",
        ] {
            assert_eq!(variants(bad), None, "{bad}");
        }
    }

    #[test]
    fn settings_name_the_algorithm() {
        let cases: [(&[u8], Option<HmacAlgorithm>); 6] = [
            (b"", Some(HmacAlgorithm::Sha1)),
            (b"key=webhooks_sharedkey_1", Some(HmacAlgorithm::Sha1)),
            (
                b"key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
                Some(HmacAlgorithm::Sha256),
            ),
            (b" algorithm = hmac_sha1 ", Some(HmacAlgorithm::Sha1)),
            (b"algorithm=", Some(HmacAlgorithm::Sha1)),
            (b"algorithm=HMAC_SHA512", None),
        ];
        for (settings, expected) in cases {
            assert_eq!(signature_algorithm(settings), expected, "{settings:?}");
        }
    }
}
