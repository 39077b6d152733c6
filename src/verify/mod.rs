//! Webhook signature verification for every provider scheme a source can name in
//! `verify.scheme`, the providers' handshakes (Slack's and Zoom's URL checks, Meta's
//! subscription check), and signing in exactly the provider's format so the CLI can send
//! requests a source will accept.
//!
//! A [`Verifier`] is built once from a [`VerifyConfig`] at start-up (keys decoded and
//! HMACs pre-keyed there) and then checks each request; the HMAC schemes over headers and body
//! without allocating on success (Twilio's decodes the form it signs, SendGrid's joins the
//! timestamp and the body for ECDSA).
//! Nothing in this module panics on request bytes, and no error or `Debug` output
//! contains a secret or an expected signature.

mod bearer;
mod config;
mod hmac_body;
mod mac;
mod meta;
mod sendgrid;
mod slack;
mod standard;
mod stripe;
mod timestamp;
mod twilio;
mod v0;
mod zoom;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

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

/// The answer to a provider's handshake, to be sent at once with status `200 OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    /// The `Content-Type` of the answer: `application/json` (Slack, Zoom) or `text/plain`
    /// (Meta's challenge, echoed as sent).
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl HandshakeReply {
    fn json(value: &serde_json::Value) -> HandshakeReply {
        HandshakeReply {
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    fn text(body: Vec<u8>) -> HandshakeReply {
        HandshakeReply {
            content_type: "text/plain",
            body,
        }
    }
}

/// Why a handshake is refused. The `Display` text goes to the sender; [`Self::status`] is the
/// answer's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A Slack or Zoom URL check whose signature fails: 401, like any request.
    #[error(transparent)]
    Signature(VerifyError),
    /// A Meta subscription check with a missing or wrong `hub.verify_token`: 403.
    #[error("hub.verify_token does not match")]
    WrongVerifyToken,
    /// Authentic, but missing what the answer needs (no challenge): 400.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
}

impl HandshakeError {
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::Signature(_) => StatusCode::UNAUTHORIZED,
            HandshakeError::WrongVerifyToken => StatusCode::FORBIDDEN,
            HandshakeError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A provider's handshake request, made by [`Verifier::sign_handshake`] for `oncehook send
/// --handshake`, with the answer the gateway owes it.
#[derive(Debug, Clone)]
pub struct HandshakeRequest {
    pub method: Method,
    /// The query string without `?` (Meta's check is a GET with its fields there).
    pub query: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
    pub expected: HandshakeReply,
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
    Meta(meta::MetaSignature),
    Zoom(zoom::ZoomSignature),
    Twilio(twilio::TwilioSignature),
    Sendgrid(sendgrid::SendgridSignature),
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
            SchemeName::Meta => SchemeCheck::Meta(meta::MetaSignature::new(
                &cfg.secrets,
                cfg.verify_token.as_deref(),
            )?),
            SchemeName::Zoom => {
                SchemeCheck::Zoom(zoom::ZoomSignature::new(&cfg.secrets, tolerance_seconds)?)
            }
            SchemeName::Twilio => SchemeCheck::Twilio(twilio::TwilioSignature::new(
                &cfg.secrets,
                cfg.url.as_deref(),
            )?),
            SchemeName::Sendgrid => SchemeCheck::Sendgrid(sendgrid::SendgridSignature::new(
                &cfg.public_key,
                cfg.private_key.as_deref(),
                tolerance_seconds,
            )?),
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
            SchemeCheck::Meta(check) => check.verify(headers, body),
            SchemeCheck::Zoom(check) => check.verify(headers, body, now_unix),
            SchemeCheck::Twilio(check) => check.verify(headers, body),
            SchemeCheck::Sendgrid(check) => check.verify(headers, body, now_unix),
            SchemeCheck::Bearer(check) => check.verify(headers),
            SchemeCheck::Unsigned => Ok(()),
        }
    }

    /// Answers a provider's handshake, for intake to call on every request of the source
    /// once the body is read, **before** [`Verifier::verify`] and before the rate limit:
    ///
    /// - `None`: not a handshake; go on as usual (`verify`, and so on). A `GET` that gets
    ///   `None` is not meant for this source: answer 405 (only `meta` has a GET; see
    ///   [`Verifier::answers_get`]).
    /// - `Some(Ok(reply))`: answer `200` with `reply.content_type` and `reply.body` at once,
    ///   store nothing, count outcome `handshake`.
    /// - `Some(Err(error))`: answer `error.status()` (401 for a bad signature, 403 for Meta's
    ///   wrong `verify_token`, 400 when the challenge is missing) with `{"error": error}`, store
    ///   nothing, count outcome `invalid_signature` (`invalid_body` for the 400). A failed
    ///   handshake is an authentication failure like any other.
    ///
    /// What is a handshake (SPEC §3): for `slack`, a `POST` whose JSON `type` is
    /// `url_verification` (answered `{"challenge": …}` when its signature holds); for `zoom`, a
    /// `POST` whose JSON `event` is `endpoint.url_validation` (answered `{"plainToken": P,
    /// "encryptedToken": hex(HMAC-SHA256(first secret, P))}` when its signature holds); for
    /// `meta`, every `GET` (`?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`, answered
    /// `C` as `text/plain` when `T` is `verify.verify_token`). `query` is the request's raw
    /// query string without `?`; `now_unix` is seconds since the epoch, as for `verify`.
    /// Other schemes never have one. Bodies that cannot be a handshake are told apart with a
    /// byte search, without parsing.
    pub fn handshake(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Option<Result<HandshakeReply, HandshakeError>> {
        match &self.check {
            SchemeCheck::Meta(check) if method == Method::GET => Some(check.handshake(query)),
            SchemeCheck::Slack(check) if method == Method::POST => {
                check.handshake(headers, body, now_unix)
            }
            SchemeCheck::Zoom(check) if method == Method::POST => {
                check.handshake(headers, body, now_unix)
            }
            _ => None,
        }
    }

    /// Whether the source answers `GET` (Meta's subscription check); every other source
    /// answers 405 to it.
    pub fn answers_get(&self) -> bool {
        matches!(self.check, SchemeCheck::Meta(_))
    }

    /// Whether [`Verifier::sign`] produces requests this verifier accepts: always, except for
    /// `sendgrid` without a test `private_key` (SendGrid signs with a key only it holds).
    pub fn can_sign(&self) -> bool {
        match &self.check {
            SchemeCheck::Sendgrid(check) => check.can_sign(),
            _ => true,
        }
    }

    /// The handshake the provider would send, signed with the first secret at `now_unix`, with
    /// `challenge` as its challenge (Slack's `challenge`, Zoom's `plainToken`, Meta's
    /// `hub.challenge`), and the answer this verifier gives it. `None` for schemes without one.
    pub fn sign_handshake(&self, challenge: &str, now_unix: i64) -> Option<HandshakeRequest> {
        let (method, query, headers, body) = match &self.check {
            SchemeCheck::Slack(check) => {
                let body = slack::SlackSignature::handshake_body(challenge);
                let mut headers = check.sign(&body, now_unix);
                headers.push(json_content_type());
                (Method::POST, None, headers, body)
            }
            SchemeCheck::Zoom(check) => {
                let body = zoom::ZoomSignature::handshake_body(challenge, now_unix);
                let mut headers = check.sign(&body, now_unix);
                headers.push(json_content_type());
                (Method::POST, None, headers, body)
            }
            SchemeCheck::Meta(check) => (
                Method::GET,
                Some(check.handshake_query(challenge)),
                Vec::new(),
                Vec::new(),
            ),
            _ => return None,
        };
        let header_map: HeaderMap = headers.iter().cloned().collect();
        let expected = self
            .handshake(&method, query.as_deref(), &header_map, &body, now_unix)?
            .ok()?;
        Some(HandshakeRequest {
            method,
            query,
            headers,
            body,
            expected,
        })
    }

    /// The headers the provider would send with `body`, signed with the first secret
    /// at `now_unix`.
    ///
    /// `message_id` fills the provider's delivery-id header where it has one
    /// (`webhook-id`, `svix-id`, `X-GitHub-Delivery`, `X-Shopify-Webhook-Id`,
    /// `I-Twilio-Idempotency-Token`); for Standard Webhooks and Svix it is also signed.
    /// Twilio's signature depends on the body's type, so its headers include the
    /// `Content-Type` it assumed (JSON when the body parses as JSON, else a form). SendGrid
    /// signs only with a test `private_key` (see [`Verifier::can_sign`]); without one, nothing. Characters that cannot appear in a
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
            SchemeCheck::Meta(check) => check.sign(body),
            SchemeCheck::Zoom(check) => check.sign(body, now_unix),
            SchemeCheck::Twilio(check) => check.sign(body, &message_id),
            SchemeCheck::Sendgrid(check) => check.sign(body, now_unix),
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
    let scheme_only = [
        ("verify_token", SchemeName::Meta, cfg.verify_token.is_some()),
        ("url", SchemeName::Twilio, cfg.url.is_some()),
        (
            "public_key",
            SchemeName::Sendgrid,
            !cfg.public_key.is_empty(),
        ),
        (
            "private_key",
            SchemeName::Sendgrid,
            cfg.private_key.is_some(),
        ),
    ];
    if let Some((key, owner, _)) = scheme_only
        .iter()
        .find(|(_, owner, present)| *present && *owner != scheme)
    {
        return Err(VerifyConfigError::new(
            *key,
            format!("only meaningful when scheme = \"{owner}\", not \"{scheme}\""),
        ));
    }
    if cfg.tolerance.is_some() && !scheme.signs_timestamp() {
        let mut timestamped: Vec<&str> = SchemeName::ALL
            .iter()
            .filter(|scheme| scheme.signs_timestamp())
            .map(SchemeName::as_str)
            .collect();
        let last = timestamped.pop().unwrap_or_default();
        return Err(VerifyConfigError::new(
            "tolerance",
            format!(
                "scheme \"{scheme}\" signs no timestamp; tolerance applies only to {} and {last}",
                timestamped.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_secrets(scheme: SchemeName, secrets: &[String]) -> Result<(), VerifyConfigError> {
    if !scheme.uses_secrets() {
        if !secrets.is_empty() {
            let message = match scheme {
                SchemeName::Sendgrid => {
                    "not used when scheme = \"sendgrid\": SendGrid signs with a key pair; \
                     set public_key to the verification key instead"
                }
                _ => "not used when scheme = \"none\"; remove them or choose a signing scheme",
            };
            return Err(VerifyConfigError::new("secrets", message));
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

fn json_content_type() -> (HeaderName, HeaderValue) {
    (
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}

/// Whether `needle` occurs in `haystack`: a cheap test before parsing a body as a handshake.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
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
