//! Pre-keyed HMACs, decoding of the signatures a request carries, and the
//! constant-time comparison every HMAC scheme relies on.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::config::{HmacAlgorithm, SignatureEncoding};

/// The longest digest any supported algorithm produces (SHA-512).
const MAX_DIGEST_LEN: usize = 64;

/// Standard-alphabet base64 that accepts input with or without `=` padding: the
/// Standard Webhooks libraries pad secrets themselves before decoding, and some
/// senders strip padding from signatures.
pub(crate) const BASE64_PADDING_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An HMAC already keyed with one secret. Keying hashes the key block once, so
/// cloning this per request is cheaper than keying from the secret again.
#[derive(Clone)]
pub(crate) enum KeyedMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl KeyedMac {
    /// `None` only if the HMAC implementation refuses the key length, which HMAC
    /// never does; callers still turn it into a config error rather than panic.
    pub(crate) fn new(algorithm: HmacAlgorithm, key: &[u8]) -> Option<KeyedMac> {
        Some(match algorithm {
            HmacAlgorithm::Sha1 => KeyedMac::Sha1(Hmac::new_from_slice(key).ok()?),
            HmacAlgorithm::Sha256 => KeyedMac::Sha256(Hmac::new_from_slice(key).ok()?),
            HmacAlgorithm::Sha512 => KeyedMac::Sha512(Hmac::new_from_slice(key).ok()?),
        })
    }

    /// The MAC of the concatenation of `parts`, fed piece by piece so the signed
    /// content is never assembled in memory.
    pub(crate) fn digest(&self, parts: &[&[u8]]) -> SignatureBytes {
        match self {
            KeyedMac::Sha1(mac) => digest_with(mac, parts),
            KeyedMac::Sha256(mac) => digest_with(mac, parts),
            KeyedMac::Sha512(mac) => digest_with(mac, parts),
        }
    }
}

fn digest_with<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> SignatureBytes {
    let mut mac = mac.clone();
    for part in parts {
        mac.update(part);
    }
    SignatureBytes::copy_from(&mac.finalize().into_bytes())
}

/// A digest, either computed or decoded from a header, held without allocating.
#[derive(Clone)]
pub(crate) struct SignatureBytes {
    bytes: [u8; MAX_DIGEST_LEN],
    len: usize,
}

impl SignatureBytes {
    fn copy_from(digest: &[u8]) -> SignatureBytes {
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let len = digest.len().min(MAX_DIGEST_LEN);
        bytes[..len].copy_from_slice(&digest[..len]);
        SignatureBytes { bytes, len }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Constant-time in the contents; only a length mismatch returns early, and
    /// digest lengths are public.
    pub(crate) fn matches(&self, candidate: &SignatureBytes) -> bool {
        self.as_slice().ct_eq(candidate.as_slice()).into()
    }

    /// Decodes a signature as found in a header. `None` for anything that is not
    /// the encoding of at most [`MAX_DIGEST_LEN`] bytes: such a value can match no digest.
    pub(crate) fn decode(encoding: SignatureEncoding, text: &[u8]) -> Option<SignatureBytes> {
        match encoding {
            SignatureEncoding::Hex => Self::decode_hex(text),
            SignatureEncoding::Base64 => Self::decode_base64(text),
        }
    }

    /// Upper- and lower-case hex are both accepted.
    pub(crate) fn decode_hex(text: &[u8]) -> Option<SignatureBytes> {
        if !text.len().is_multiple_of(2) || text.len() > 2 * MAX_DIGEST_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let len = text.len() / 2;
        hex::decode_to_slice(text, &mut bytes[..len]).ok()?;
        Some(SignatureBytes { bytes, len })
    }

    pub(crate) fn decode_base64(text: &[u8]) -> Option<SignatureBytes> {
        // The padded encoding of MAX_DIGEST_LEN bytes; longer input cannot fit.
        if text.len() > MAX_DIGEST_LEN.div_ceil(3) * 4 {
            return None;
        }
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let len = BASE64_PADDING_OPTIONAL
            .decode_slice(text, &mut bytes)
            .ok()?;
        Some(SignatureBytes { bytes, len })
    }

    /// The text form a provider puts in its header.
    pub(crate) fn encode(&self, encoding: SignatureEncoding) -> String {
        match encoding {
            SignatureEncoding::Hex => hex::encode(self.as_slice()),
            SignatureEncoding::Base64 => BASE64_PADDING_OPTIONAL.encode(self.as_slice()),
        }
    }
}

/// Keys every secret for `algorithm`; `key_of` turns a config secret into key bytes.
pub(crate) fn key_all(
    algorithm: HmacAlgorithm,
    secrets: &[String],
    key_of: impl Fn(usize, &str) -> Result<Vec<u8>, super::VerifyConfigError>,
) -> Result<Vec<KeyedMac>, super::VerifyConfigError> {
    secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| {
            let key = key_of(index, secret)?;
            KeyedMac::new(algorithm, &key).ok_or_else(|| {
                super::VerifyConfigError::new(
                    format!("secrets[{index}]"),
                    "cannot be used as an HMAC key",
                )
            })
        })
        .collect()
}

/// Whether any secret's MAC over `parts` equals any of the `candidates`.
///
/// Every secret is tried against every candidate: during a rotation the sender
/// may sign with either secret and may send one signature per secret.
pub(crate) fn any_matches<I>(keys: &[KeyedMac], parts: &[&[u8]], candidates: I) -> bool
where
    I: Iterator<Item = SignatureBytes> + Clone,
{
    keys.iter().any(|key| {
        let expected = key.digest(parts);
        candidates
            .clone()
            .any(|candidate| expected.matches(&candidate))
    })
}
