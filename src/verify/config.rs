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
/// `tolerance` only to schemes that sign a timestamp (`standard`, `svix`, `stripe`, `slack`).
#[derive(Clone, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeName {
    Standard,
    Svix,
    Stripe,
    Github,
    Slack,
    Shopify,
    Hmac,
    Bearer,
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
            SchemeName::Bearer => "bearer",
            SchemeName::None => "none",
        }
    }

    /// Whether the scheme signs a timestamp, and so whether `tolerance` means anything.
    pub fn signs_timestamp(&self) -> bool {
        matches!(
            self,
            SchemeName::Standard | SchemeName::Svix | SchemeName::Stripe | SchemeName::Slack
        )
    }

    /// Whether the signature covers the body and nothing else (no timestamp, no delivery id):
    /// a captured body can then be sent again under any header key.
    pub fn signs_only_the_body(&self) -> bool {
        matches!(
            self,
            SchemeName::Github | SchemeName::Shopify | SchemeName::Hmac | SchemeName::Bearer
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
            SchemeName::Slack | SchemeName::Hmac | SchemeName::Bearer | SchemeName::None => {
                KeySpec::fingerprint()
            }
        }
    }

    /// `replay_guard` when a source leaves it out: on where the signature covers only the body
    /// and the default key is a header the signature does not cover (SPEC §4.3).
    pub fn replay_guard_by_default(&self) -> bool {
        matches!(self, SchemeName::Github | SchemeName::Shopify)
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
