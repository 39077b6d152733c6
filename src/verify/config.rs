//! The `verify` table of a source as written in the config file, and the error
//! type for a table that cannot be turned into a [`Verifier`](super::Verifier).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::key::KeySpec;

/// How far a signed timestamp may be from the gateway's clock, in either direction,
/// when `tolerance` is not set. Every provider that signs a timestamp documents five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A source's `verify` table.
///
/// `header`, `algorithm`, `encoding` and `prefix` only apply to `scheme = "hmac"`;
/// `tolerance` only to schemes that sign a timestamp (`standard`, `svix`, `stripe`, `slack`,
/// `zoom`, `sendgrid`); `verify_token` only to `meta`, `url` only to `twilio`, `public_key` and
/// `private_key` only to `sendgrid`.
///
/// `VerifyConfig::default()` is the `none` scheme with nothing set, a base for tables built in
/// code: `VerifyConfig { scheme, secrets, ..VerifyConfig::default() }`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Which provider's signature scheme the requests carry.
    pub scheme: SchemeName,
    /// Signing secrets; a request is accepted when any of them matches, so a secret can be
    /// rotated by listing the new one next to the old one. Required unless `scheme = "none"`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Largest accepted distance between the signed timestamp and now, e.g. `"5m"`.
    /// Defaults to five minutes. The config loader requires it to be shorter than the source's
    /// `dedupe_ttl`, so a signed request cannot outlive its key.
    #[serde(default, with = "humantime_serde")]
    pub tolerance: Option<Duration>,
    /// `hmac` only: the request header carrying the signature. Required for `hmac`.
    pub header: Option<String>,
    /// `hmac` only: the hash behind the HMAC. Defaults to `sha256`.
    pub algorithm: Option<HmacAlgorithm>,
    /// `hmac` only: how the signature is written in the header. Defaults to `hex`.
    pub encoding: Option<SignatureEncoding>,
    /// `hmac` only: text in front of the encoded signature, e.g. `"sha256="`.
    pub prefix: Option<String>,
    /// `meta` only, and required there: the token entered in the app's webhook settings, which
    /// Meta sends back in its subscription check (`GET ?hub.verify_token=…`).
    pub verify_token: Option<String>,
    /// `twilio` only, and required there: the public URL Twilio calls, exactly as entered in
    /// the Twilio console (Twilio signs it, and behind a proxy the gateway cannot see it).
    pub url: Option<String>,
    /// `sendgrid` only, and required there: the verification key from SendGrid's Mail Settings
    /// (base64 DER of an ECDSA P-256 public key), or a list of them during a rotation.
    #[serde(default, deserialize_with = "one_or_many")]
    pub public_key: Vec<String>,
    /// `sendgrid` only, optional: a P-256 private key (base64 PKCS#8 DER) matching one of the
    /// `public_key`s, so that `oncehook send` can sign test requests. SendGrid keeps its own
    /// private key: this is only for a key pair made for testing.
    pub private_key: Option<String>,
}

/// `public_key = "…"` or `public_key = ["…", "…"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a base64 key or a list of them")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(key) => vec![key],
        OneOrMany::Many(keys) => keys,
    })
}

// Written by hand so that secrets never reach a log line through `{:?}`.
impl fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("scheme", &self.scheme)
            .field("secrets", &RedactedSecrets(self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .field("header", &self.header)
            .field("algorithm", &self.algorithm)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| RedactedSecrets(1)),
            )
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("public_key", &self.public_key.len())
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| RedactedSecrets(1)),
            )
            .finish()
    }
}

/// Prints as `[<2 redacted>]`: how many secrets there are, never what they are.
pub(crate) struct RedactedSecrets(pub(crate) usize);

impl fmt::Debug for RedactedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[<{} redacted>]", self.0)
    }
}

/// The value of `verify.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeName {
    Standard,
    Svix,
    Stripe,
    Github,
    Slack,
    Shopify,
    Hmac,
    Meta,
    Zoom,
    Twilio,
    Sendgrid,
    Bearer,
    #[default]
    None,
}

impl SchemeName {
    /// The spelling used in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            SchemeName::Standard => "standard",
            SchemeName::Svix => "svix",
            SchemeName::Stripe => "stripe",
            SchemeName::Github => "github",
            SchemeName::Slack => "slack",
            SchemeName::Shopify => "shopify",
            SchemeName::Hmac => "hmac",
            SchemeName::Meta => "meta",
            SchemeName::Zoom => "zoom",
            SchemeName::Twilio => "twilio",
            SchemeName::Sendgrid => "sendgrid",
            SchemeName::Bearer => "bearer",
            SchemeName::None => "none",
        }
    }

    /// Every scheme, in the order the docs list them.
    pub const ALL: [SchemeName; 13] = [
        SchemeName::Standard,
        SchemeName::Svix,
        SchemeName::Stripe,
        SchemeName::Github,
        SchemeName::Slack,
        SchemeName::Shopify,
        SchemeName::Hmac,
        SchemeName::Meta,
        SchemeName::Zoom,
        SchemeName::Twilio,
        SchemeName::Sendgrid,
        SchemeName::Bearer,
        SchemeName::None,
    ];

    /// Whether the scheme signs a timestamp, and so whether `tolerance` means anything.
    pub fn signs_timestamp(&self) -> bool {
        matches!(
            self,
            SchemeName::Standard
                | SchemeName::Svix
                | SchemeName::Stripe
                | SchemeName::Slack
                | SchemeName::Zoom
                | SchemeName::Sendgrid
        )
    }

    /// Whether the signature covers the body and nothing else (no timestamp, no delivery id):
    /// a captured body can then be sent again under any header key. Twilio signs the URL and
    /// the form fields, which a captured request repeats as they are, so it counts here too.
    pub fn signs_only_the_body(&self) -> bool {
        matches!(
            self,
            SchemeName::Github
                | SchemeName::Shopify
                | SchemeName::Hmac
                | SchemeName::Meta
                | SchemeName::Twilio
                | SchemeName::Bearer
        )
    }

    /// The key when a source sets none (SPEC §4.3): the provider's own delivery or event id
    /// where it sends one, else the body's fingerprint.
    pub fn default_key(&self) -> KeySpec {
        match self {
            SchemeName::Standard => KeySpec::header("webhook-id"),
            // Svix sends either spelling (the verifier reads both), so key on whichever came.
            SchemeName::Svix => KeySpec {
                alternatives: [KeySpec::header("svix-id"), KeySpec::header("webhook-id")]
                    .into_iter()
                    .flat_map(|spec| spec.alternatives)
                    .collect(),
            },
            SchemeName::Stripe => KeySpec::json("/id"),
            SchemeName::Github => KeySpec::header("x-github-delivery"),
            SchemeName::Shopify => KeySpec::header("x-shopify-webhook-id"),
            // Twilio sends the same token with every retry of one request (connection
            // overrides); requests without one are keyed by their fields.
            SchemeName::Twilio => KeySpec {
                alternatives: [
                    KeySpec::header("i-twilio-idempotency-token"),
                    KeySpec::fingerprint(),
                ]
                .into_iter()
                .flat_map(|spec| spec.alternatives)
                .collect(),
            },
            // Meta, Zoom and SendGrid send no delivery id the signature covers, and SendGrid
            // batches several events (each with its own `sg_event_id`) in one body.
            SchemeName::Slack
            | SchemeName::Hmac
            | SchemeName::Meta
            | SchemeName::Zoom
            | SchemeName::Sendgrid
            | SchemeName::Bearer
            | SchemeName::None => KeySpec::fingerprint(),
        }
    }

    /// `replay_guard` when a source leaves it out: on where the signature covers neither a
    /// timestamp nor the key (SPEC §4.3): GitHub and Shopify key on an unsigned header, Meta
    /// signs only the body, Twilio only the URL and fields.
    pub fn replay_guard_by_default(&self) -> bool {
        matches!(
            self,
            SchemeName::Github | SchemeName::Shopify | SchemeName::Meta | SchemeName::Twilio
        )
    }

    /// Whether the scheme authenticates with `secrets` (every one but `none`, and `sendgrid`,
    /// which verifies with `public_key`).
    pub fn uses_secrets(&self) -> bool {
        !matches!(self, SchemeName::None | SchemeName::Sendgrid)
    }
}

impl fmt::Display for SchemeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of `verify.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha256,
    Sha512,
    Sha1,
}

/// The value of `verify.encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// A `verify` table that deserialized but cannot work, naming the offending key relative
/// to the table (`header`, `secrets[1]`). The message never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct VerifyConfigError {
    pub key: String,
    pub message: String,
}

impl VerifyConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        VerifyConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}
