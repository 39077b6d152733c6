//! Webhook signature verification for every provider scheme a source can name in
//! `verify.scheme`, and signing in exactly the provider's format so the CLI can send
//! requests a source will accept.
//!
//! A [`Verifier`] is built once from a [`VerifyConfig`] at start-up (keys decoded and
//! HMACs pre-keyed there) and then checks each request without allocating on success.
//! Nothing in this module panics on request bytes, and no error or `Debug` output
//! contains a secret or an expected signature.

mod bearer;
mod config;
mod hmac_body;
mod mac;
mod slack;
mod standard;
mod stripe;
mod timestamp;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use config::{
    DEFAULT_TOLERANCE, HmacAlgorithm, SchemeName, SignatureEncoding, VerifyConfig,
    VerifyConfigError,
};

use config::RedactedSecrets;

/// Why a request's signature was rejected. The `Display` text goes to the sender in
/// the 401 body, so it says what is wrong without echoing secrets or expected values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(Cow<'static, str>),
    #[error("malformed {header} header: {reason}")]
    MalformedHeader {
        header: Cow<'static, str>,
        reason: &'static str,
    },
    #[error("timestamp outside tolerance")]
    TimestampOutOfTolerance,
    #[error("no signature matched")]
    BadSignature,
}

/// Checks requests for one source. Cheap to share across threads and to call per request.
pub struct Verifier {
    scheme: SchemeName,
    secret_count: usize,
    check: SchemeCheck,
}

enum SchemeCheck {
    StandardWebhooks(standard::StandardWebhooks),
    Stripe(stripe::StripeSignature),
    Slack(slack::SlackSignature),
    BodyMac(hmac_body::BodyMac),
    Bearer(bearer::BearerToken),
    Unsigned,
}

impl Verifier {
    /// Validates `cfg` and precomputes everything a check needs.
    ///
    /// Errors name the offending key relative to the `verify` table, e.g.
    /// `header: required when scheme = "hmac"` or `secrets[1]: not a valid whsec_ secret (base64)`.
    pub fn from_config(cfg: &VerifyConfig) -> Result<Verifier, VerifyConfigError> {
        let scheme = cfg.scheme;
        reject_keys_not_meant_for(scheme, cfg)?;
        check_secrets(scheme, &cfg.secrets)?;
        // Sub-second parts are dropped: providers sign whole seconds.
        let tolerance_seconds = cfg.tolerance.unwrap_or(DEFAULT_TOLERANCE).as_secs();

        let check = match scheme {
            SchemeName::Standard => SchemeCheck::StandardWebhooks(
                standard::StandardWebhooks::standard(&cfg.secrets, tolerance_seconds)?,
            ),
            SchemeName::Svix => SchemeCheck::StandardWebhooks(standard::StandardWebhooks::svix(
                &cfg.secrets,
                tolerance_seconds,
            )?),
            SchemeName::Stripe => SchemeCheck::Stripe(stripe::StripeSignature::new(
                &cfg.secrets,
                tolerance_seconds,
            )?),
            SchemeName::Slack => {
                SchemeCheck::Slack(slack::SlackSignature::new(&cfg.secrets, tolerance_seconds)?)
            }
            SchemeName::Github => SchemeCheck::BodyMac(hmac_body::BodyMac::github(&cfg.secrets)?),
            SchemeName::Shopify => SchemeCheck::BodyMac(hmac_body::BodyMac::shopify(&cfg.secrets)?),
            SchemeName::Hmac => SchemeCheck::BodyMac(hmac_body::BodyMac::generic(cfg)?),
            SchemeName::Bearer => SchemeCheck::Bearer(bearer::BearerToken::new(&cfg.secrets)?),
            SchemeName::None => SchemeCheck::Unsigned,
        };
        Ok(Verifier {
            scheme,
            secret_count: cfg.secrets.len(),
            check,
        })
    }

    pub fn scheme(&self) -> SchemeName {
        self.scheme
    }

    /// Checks one request. `now_unix` is seconds since the epoch, passed in so that
    /// tests are deterministic. Header names are matched case-insensitively; header
    /// values may be any bytes.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        match &self.check {
            SchemeCheck::StandardWebhooks(check) => check.verify(headers, body, now_unix),
            SchemeCheck::Stripe(check) => check.verify(headers, body, now_unix),
            SchemeCheck::Slack(check) => check.verify(headers, body, now_unix),
            SchemeCheck::BodyMac(check) => check.verify(headers, body),
            SchemeCheck::Bearer(check) => check.verify(headers),
            SchemeCheck::Unsigned => Ok(()),
        }
    }

    /// The headers the provider would send with `body`, signed with the first secret
    /// at `now_unix`.
    ///
    /// `message_id` fills the provider's delivery-id header where it has one
    /// (`webhook-id`, `svix-id`, `X-GitHub-Delivery`, `X-Shopify-Webhook-Id`); for
    /// Standard Webhooks and Svix it is also signed. Characters that cannot appear in a
    /// header value are replaced by `_`, in the header and the signed content alike, and
    /// an empty or blank id becomes `_`, so the result always verifies.
    pub fn sign(
        &self,
        body: &[u8],
        message_id: &str,
        now_unix: i64,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let message_id = header_safe_message_id(message_id);
        match &self.check {
            SchemeCheck::StandardWebhooks(check) => check.sign(body, &message_id, now_unix),
            SchemeCheck::Stripe(check) => check.sign(body, now_unix),
            SchemeCheck::Slack(check) => check.sign(body, now_unix),
            SchemeCheck::BodyMac(check) => check.sign(body, &message_id),
            SchemeCheck::Bearer(check) => check.sign(),
            SchemeCheck::Unsigned => Vec::new(),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("secrets", &RedactedSecrets(self.secret_count))
            .finish_non_exhaustive()
    }
}

fn reject_keys_not_meant_for(
    scheme: SchemeName,
    cfg: &VerifyConfig,
) -> Result<(), VerifyConfigError> {
    if scheme != SchemeName::Hmac {
        let hmac_only = [
            ("header", cfg.header.is_some()),
            ("algorithm", cfg.algorithm.is_some()),
            ("encoding", cfg.encoding.is_some()),
            ("prefix", cfg.prefix.is_some()),
        ];
        if let Some((key, _)) = hmac_only.iter().find(|(_, present)| *present) {
            return Err(VerifyConfigError::new(
                *key,
                format!("only meaningful when scheme = \"hmac\", not \"{scheme}\""),
            ));
        }
    }
    if cfg.tolerance.is_some() && !scheme.signs_timestamp() {
        return Err(VerifyConfigError::new(
            "tolerance",
            format!(
                "scheme \"{scheme}\" signs no timestamp; tolerance applies only to standard, svix, stripe and slack"
            ),
        ));
    }
    Ok(())
}

fn check_secrets(scheme: SchemeName, secrets: &[String]) -> Result<(), VerifyConfigError> {
    if scheme == SchemeName::None {
        if !secrets.is_empty() {
            return Err(VerifyConfigError::new(
                "secrets",
                "not used when scheme = \"none\"; remove them or choose a signing scheme",
            ));
        }
        return Ok(());
    }
    if secrets.is_empty() {
        return Err(VerifyConfigError::new(
            "secrets",
            format!("at least one secret is required for scheme \"{scheme}\""),
        ));
    }
    for (index, secret) in secrets.iter().enumerate() {
        if secret.is_empty() {
            return Err(VerifyConfigError::new(
                format!("secrets[{index}]"),
                "must not be empty",
            ));
        }
        // Usually a stray newline from an environment variable or file; it would
        // silently become part of the key and no signature would ever match.
        if secret.trim() != secret {
            return Err(VerifyConfigError::new(
                format!("secrets[{index}]"),
                "has leading or trailing whitespace",
            ));
        }
    }
    Ok(())
}

/// Keeps printable ASCII and spaces, replacing the rest, and drops surrounding
/// whitespace that HTTP would strip in transit. Never empty: an empty header reads as a
/// missing one, and a signed id that arrives missing fails verification.
fn header_safe_message_id(message_id: &str) -> Cow<'_, str> {
    let trimmed = message_id.trim();
    if trimmed.is_empty() {
        return Cow::Borrowed("_");
    }
    if trimmed.bytes().all(is_header_value_byte) {
        return Cow::Borrowed(trimmed);
    }
    Cow::Owned(
        trimmed
            .chars()
            .map(|c| {
                if c.is_ascii() && is_header_value_byte(c as u8) {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

fn is_header_value_byte(byte: u8) -> bool {
    byte == b' ' || byte.is_ascii_graphic()
}

/// A header a scheme reads: the name to look up and the provider's spelling for messages.
#[derive(Clone)]
pub(crate) struct ExpectedHeader {
    name: HeaderName,
    label: Cow<'static, str>,
}

impl ExpectedHeader {
    /// `name` must be the lower-case form of `label`.
    pub(crate) const fn provider(name: &'static str, label: &'static str) -> ExpectedHeader {
        ExpectedHeader {
            name: HeaderName::from_static(name),
            label: Cow::Borrowed(label),
        }
    }

    pub(crate) fn configured(name: HeaderName, label: String) -> ExpectedHeader {
        ExpectedHeader {
            name,
            label: Cow::Owned(label),
        }
    }

    pub(crate) fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The trimmed value; an empty value counts as missing.
    pub(crate) fn value<'h>(&self, headers: &'h HeaderMap) -> Result<&'h [u8], VerifyError> {
        self.value_if_present(headers).ok_or_else(|| self.missing())
    }

    pub(crate) fn missing(&self) -> VerifyError {
        VerifyError::MissingHeader(self.label.clone())
    }

    pub(crate) fn value_if_present<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        headers
            .get(&self.name)
            .map(|value| value.as_bytes().trim_ascii())
            .filter(|value| !value.is_empty())
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> VerifyError {
        VerifyError::MalformedHeader {
            header: self.label.clone(),
            reason,
        }
    }
}

/// A header for [`Verifier::sign`]; `None` only if `value` is not a valid header value,
/// which the signers rule out by construction.
pub(crate) fn signed_header(name: &HeaderName, value: String) -> Option<(HeaderName, HeaderValue)> {
    HeaderValue::try_from(value)
        .ok()
        .map(|value| (name.clone(), value))
}

/// Splits at the first `separator`, as every provider's own parser does.
pub(crate) fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&byte| byte == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// Strips `prefix` compared case-insensitively, since senders vary in `SHA256=` vs `sha256=`.
pub(crate) fn strip_prefix_ignore_ascii_case<'v>(
    value: &'v [u8],
    prefix: &[u8],
) -> Option<&'v [u8]> {
    if value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&value[prefix.len()..])
    } else {
        None
    }
}
