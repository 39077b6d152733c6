//! What operators may see of a payload, and what the store may keep of it.
//!
//! - `mask_json` replaces `mask_fields` before a payload leaves the process in an API
//!   response, a console page or a log line.
//! - `PayloadCipher` encrypts stored bodies (ChaCha20-Poly1305) when `store.encryption_key`
//!   is set. Every ciphertext names its key by a short id, so keys can rotate: the current key
//!   encrypts, the current and `store.previous_encryption_keys` decrypt.
//! - `SearchKey` turns `search_fields` values into keyed hashes: the store can find an event by
//!   email without holding the email.
//! - `SensitiveValues` scrubs the values of a payload's masked and searchable fields out of free
//!   text that may repeat them (an idempotency key built from a field, a header, the error text a
//!   destination answered with), before that text is stored or logged.
//!
//! Searchable fields are hidden like masked ones wherever the API shows a payload: a value an
//! operator can search by is exactly the kind of value that should not be on screen.

use std::borrow::Cow;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::SourceConfig;
use crate::domain::pointer::JsonPointer;

/// What a masked value is shown as.
pub const MASK: &str = "***";

/// Replaces every value at `pointers` with a mask that keeps at most its first character.
pub fn mask_json(value: &mut Value, pointers: &[JsonPointer]) {
    for pointer in pointers {
        let Some(target) = pointer.get_mut(value) else {
            continue;
        };
        *target = Value::String(mask_text(target));
    }
}

fn mask_text(value: &Value) -> String {
    match value {
        // Enough to tell two values apart at a glance, not enough to recover either.
        Value::String(s) if s.chars().count() > 4 => {
            let first: String = s.chars().take(1).collect();
            format!("{first}{MASK}")
        }
        _ => MASK.to_owned(),
    }
}

/// A payload as operators may see it: JSON with `mask_fields` masked, or text. A body that
/// cannot be parsed while the source masks fields is not shown at all.
pub fn masked_preview(body: &[u8], pointers: &[JsonPointer]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut json) => {
            mask_json(&mut json, pointers);
            json
        }
        Err(_) if !pointers.is_empty() => Value::String(format!(
            "[{} bytes, not JSON; hidden because the source masks fields]",
            body.len()
        )),
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// The fields of a source's payloads that operators never see in clear: `mask_fields` and the
/// pointers of `search_fields`.
pub fn hidden_fields(source: &SourceConfig) -> Vec<JsonPointer> {
    let mut fields = source.mask_fields.clone();
    for pointer in source.search_fields.values() {
        if !fields.contains(pointer) {
            fields.push(pointer.clone());
        }
    }
    fields
}

/// Values shorter than this are not scrubbed from free text: they would match nearly anything.
const MIN_SCRUBBED_LEN: usize = 3;

/// The values of one payload's hidden fields (see `hidden_fields`), to scrub from free text.
#[derive(Debug, Default, Clone)]
pub struct SensitiveValues {
    /// ASCII-lowercased, so matching ignores ASCII case (emails are matched that way too).
    values: Vec<String>,
}

impl SensitiveValues {
    /// Collects the strings and numbers at `pointers` (every leaf, when a pointer names an
    /// object or an array).
    pub fn collect<'a>(
        body: &Value,
        pointers: impl IntoIterator<Item = &'a JsonPointer>,
    ) -> SensitiveValues {
        let mut values = Vec::new();
        for pointer in pointers {
            if let Some(value) = pointer.get(body) {
                collect_leaves(value, &mut values);
            }
        }
        values.sort();
        values.dedup();
        SensitiveValues { values }
    }

    /// Collects from a stored body when it is JSON; nothing otherwise.
    pub fn from_body<'a>(
        body: &[u8],
        pointers: impl IntoIterator<Item = &'a JsonPointer>,
    ) -> SensitiveValues {
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => SensitiveValues::collect(&json, pointers),
            Err(_) => SensitiveValues::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every occurrence of a sensitive value replaced by the mask.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.values.is_empty() {
            return Cow::Borrowed(text);
        }
        // ASCII lowercasing keeps byte offsets, so ranges found in `lower` apply to `text`.
        let lower = text.to_ascii_lowercase();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for value in &self.values {
            let mut from = 0;
            while let Some(found) = lower[from..].find(value.as_str()) {
                let start = from + found;
                ranges.push((start, start + value.len()));
                from = start + value.len();
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (start, end) in ranges {
            if end <= copied {
                continue;
            }
            if start > copied {
                out.push_str(&text[copied..start]);
            }
            if start >= copied {
                out.push_str(MASK);
            }
            copied = end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// A JSON object of header values, each scrubbed.
    pub fn scrub_headers_json(&self, headers_json: &str) -> String {
        if self.values.is_empty() {
            return headers_json.to_owned();
        }
        match serde_json::from_str::<Value>(headers_json) {
            Ok(Value::Object(mut headers)) => {
                for value in headers.values_mut() {
                    if let Value::String(text) = value
                        && let Cow::Owned(scrubbed) = self.scrub(text)
                    {
                        *text = scrubbed;
                    }
                }
                Value::Object(headers).to_string()
            }
            _ => self.scrub(headers_json).into_owned(),
        }
    }
}

fn collect_leaves(value: &Value, into: &mut Vec<String>) {
    let text = match value {
        Value::String(s) => s.trim().to_ascii_lowercase(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            items.iter().for_each(|item| collect_leaves(item, into));
            return;
        }
        Value::Object(fields) => {
            fields.values().for_each(|item| collect_leaves(item, into));
            return;
        }
        Value::Bool(_) | Value::Null => return,
    };
    if text.len() >= MIN_SCRUBBED_LEN {
        into.push(text);
    }
}

/// Header names whose values are credentials or signatures: never shown, whatever they hold.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "signature",
        "token",
        "secret",
        "api-key",
        "apikey",
        "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

const CIPHERTEXT_MAGIC: &[u8; 4] = b"OHE1";
/// Frames a plaintext payload that itself begins with a magic, so it is never taken for
/// ciphertext (or for a framed plaintext) when read back.
const PLAINTEXT_MAGIC: &[u8; 4] = b"OHP1";
/// The same two frames for text columns (stored headers, error texts): the sealed bytes are
/// base64 after the prefix.
const SEALED_TEXT_PREFIX: &str = "ohe1:";
const FRAMED_TEXT_PREFIX: &str = "ohp1:";
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("the payload was encrypted with key {0}, which is not configured")]
    UnknownKey(String),
    #[error("the payload cannot be decrypted (corrupt, or a wrong key)")]
    Corrupt,
}

struct CipherKey {
    id: [u8; KEY_ID_LEN],
    aead: ChaCha20Poly1305,
}

impl CipherKey {
    /// Any passphrase or random string works as a key: it is stretched with SHA-256.
    fn derive(secret: &str) -> CipherKey {
        let key: [u8; 32] = Sha256::new_with_prefix(b"oncehook payload key\0")
            .chain_update(secret)
            .finalize()
            .into();
        let id_digest = Sha256::digest(key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&id_digest[..KEY_ID_LEN]);
        CipherKey {
            id,
            aead: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }
}

/// Encrypts payloads at rest. Layout: "OHE1" ‖ key id (4) ‖ nonce (12) ‖ ciphertext+tag.
pub struct PayloadCipher {
    current: CipherKey,
    previous: Vec<CipherKey>,
}

impl PayloadCipher {
    pub fn new(current: &str, previous: &[String]) -> PayloadCipher {
        PayloadCipher {
            current: CipherKey::derive(current),
            previous: previous.iter().map(|k| CipherKey::derive(k)).collect(),
        }
    }

    pub fn encrypt(&self, plain: &[u8]) -> Bytes {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a fresh nonce cannot fail for in-memory buffers.
        let sealed = self.current.aead.encrypt(&nonce, plain).unwrap_or_default();
        let mut out = Vec::with_capacity(4 + KEY_ID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(CIPHERTEXT_MAGIC);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Bytes::from(out)
    }

    /// Decrypts what `encrypt` produced; passes through payloads stored before encryption was on.
    pub fn decrypt(&self, stored: &Bytes) -> Result<Bytes, CipherError> {
        decrypt_with(Some(self), stored)
    }
}

/// The stored form of a payload: encrypted with a cipher; without one the payload itself,
/// framed when it begins like a frame (so a provider cannot make its body look encrypted).
pub fn seal_payload(cipher: Option<&PayloadCipher>, plain: Bytes) -> Bytes {
    match cipher {
        Some(cipher) => cipher.encrypt(&plain),
        None if plain.starts_with(CIPHERTEXT_MAGIC) || plain.starts_with(PLAINTEXT_MAGIC) => {
            let mut framed = Vec::with_capacity(PLAINTEXT_MAGIC.len() + plain.len());
            framed.extend_from_slice(PLAINTEXT_MAGIC);
            framed.extend_from_slice(&plain);
            Bytes::from(framed)
        }
        None => plain,
    }
}

/// The stored form of a text (stored headers, a delivery's error text): like `seal_payload`,
/// as text.
pub fn seal_text(cipher: Option<&PayloadCipher>, plain: &str) -> String {
    use base64::Engine as _;
    match cipher {
        Some(cipher) => {
            let sealed = cipher.encrypt(plain.as_bytes());
            let mut text =
                String::with_capacity(SEALED_TEXT_PREFIX.len() + sealed.len() * 4 / 3 + 4);
            text.push_str(SEALED_TEXT_PREFIX);
            base64::engine::general_purpose::STANDARD.encode_string(&sealed, &mut text);
            text
        }
        None if plain.starts_with(SEALED_TEXT_PREFIX) || plain.starts_with(FRAMED_TEXT_PREFIX) => {
            format!("{FRAMED_TEXT_PREFIX}{plain}")
        }
        None => plain.to_owned(),
    }
}

/// Reads back what `seal_text` stored.
pub fn open_text(cipher: Option<&PayloadCipher>, stored: &str) -> Result<String, CipherError> {
    use base64::Engine as _;
    if let Some(plain) = stored.strip_prefix(FRAMED_TEXT_PREFIX) {
        return Ok(plain.to_owned());
    }
    let Some(encoded) = stored.strip_prefix(SEALED_TEXT_PREFIX) else {
        return Ok(stored.to_owned());
    };
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| CipherError::Corrupt)?;
    let plain = decrypt_with(cipher, &Bytes::from(sealed))?;
    String::from_utf8(plain.to_vec()).map_err(|_| CipherError::Corrupt)
}

/// Reads back what `seal_payload` stored: decrypts an encrypted payload, unframes a framed one;
/// payloads stored before encryption was switched on pass through unchanged.
pub fn decrypt_with(cipher: Option<&PayloadCipher>, stored: &Bytes) -> Result<Bytes, CipherError> {
    if stored.starts_with(PLAINTEXT_MAGIC) {
        return Ok(stored.slice(PLAINTEXT_MAGIC.len()..));
    }
    let header = 4 + KEY_ID_LEN + NONCE_LEN;
    if stored.len() < header || &stored[..4] != CIPHERTEXT_MAGIC {
        return Ok(stored.clone());
    }
    let key_id = &stored[4..4 + KEY_ID_LEN];
    let Some(cipher) = cipher else {
        return Err(CipherError::UnknownKey(hex::encode(key_id)));
    };
    let key = std::iter::once(&cipher.current)
        .chain(&cipher.previous)
        .find(|k| k.id == key_id)
        .ok_or_else(|| CipherError::UnknownKey(hex::encode(key_id)))?;
    let nonce = Nonce::from_slice(&stored[4 + KEY_ID_LEN..header]);
    key.aead
        .decrypt(nonce, &stored[header..])
        .map(Bytes::from)
        .map_err(|_| CipherError::Corrupt)
}

/// Keys the hashes of `search_fields` values.
#[derive(Clone)]
pub struct SearchKey([u8; 32]);

impl SearchKey {
    /// With an encryption key the hashes are keyed by it (a stolen database does not reveal
    /// which emails it holds by hashing guesses); without one, by a fixed key.
    pub fn new(encryption_key: Option<&str>) -> SearchKey {
        let mut hasher = Sha256::new_with_prefix(b"oncehook search key\0");
        if let Some(key) = encryption_key {
            hasher.update(key);
        }
        SearchKey(hasher.finalize().into())
    }

    /// The stored form of a `search_fields` value: trimmed, lowercased, keyed-hashed, 16 bytes.
    pub fn hash(&self, field: &str, value: &str) -> [u8; 16] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_key());
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(value.trim().to_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// A keyed hash of `text` as hex, for values compared only for equality (ordering keys
    /// on an encrypted store): equal texts stay equal, the text itself is not stored.
    pub fn hash_text(&self, purpose: &str, text: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_key());
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The values of a body's `search_fields`, hashed. Strings and numbers are searchable.
    pub fn hash_fields<'a>(
        &self,
        fields: impl IntoIterator<Item = (&'a String, &'a JsonPointer)>,
        body: &Value,
    ) -> Vec<(String, [u8; 16])> {
        let mut hashes = Vec::new();
        for (field, pointer) in fields {
            let value = match pointer.get(body) {
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            hashes.push((field.clone(), self.hash(field, &value)));
        }
        hashes
    }
}

fn unreachable_key() -> Hmac<Sha256> {
    // HMAC accepts keys of any length; a 32-byte key cannot be rejected.
    match <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes any key length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(list: &[&str]) -> Vec<JsonPointer> {
        list.iter().map(|p| p.parse().expect("pointer")).collect()
    }

    #[test]
    fn masking_hides_values_but_keeps_the_shape() {
        let mut body = json!({"email": "ann@example.com", "phone": 123, "name": "Ann", "nested": {"x": "yes"}});
        mask_json(
            &mut body,
            &pointers(&["/email", "/phone", "/missing", "/nested/x"]),
        );
        assert_eq!(
            body,
            json!({"email": "a***", "phone": "***", "name": "Ann", "nested": {"x": "***"}})
        );
        let preview = masked_preview(br#"{"email":"ann@example.com"}"#, &pointers(&["/email"]));
        assert!(!preview.to_string().contains("ann@"));
        let opaque = masked_preview(b"email=ann@example.com", &pointers(&["/email"]));
        assert!(!opaque.to_string().contains("ann@"));
    }

    #[test]
    fn payloads_round_trip_and_rotate() {
        let old = PayloadCipher::new("old-key", &[]);
        let sealed_old = old.encrypt(b"{\"email\":\"ann@example.com\"}");
        assert!(!sealed_old.windows(3).any(|w| w == b"ann"));
        let rotated = PayloadCipher::new("new-key", &["old-key".to_owned()]);
        assert_eq!(
            &rotated.decrypt(&sealed_old).expect("old key")[..],
            b"{\"email\":\"ann@example.com\"}"
        );
        let sealed_new = rotated.encrypt(b"hello");
        assert_eq!(
            &rotated.decrypt(&sealed_new).expect("new key")[..],
            b"hello"
        );
        assert!(matches!(
            old.decrypt(&sealed_new),
            Err(CipherError::UnknownKey(_))
        ));
        let mut tampered = sealed_new.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            rotated.decrypt(&Bytes::from(tampered)),
            Err(CipherError::Corrupt)
        ));
        // Stored before encryption was switched on: passes through.
        assert_eq!(
            &rotated.decrypt(&Bytes::from_static(b"{}")).expect("plain")[..],
            b"{}"
        );
        assert!(matches!(
            decrypt_with(None, &sealed_new),
            Err(CipherError::UnknownKey(_))
        ));
    }

    #[test]
    fn plaintext_is_never_taken_for_ciphertext() {
        let cipher = PayloadCipher::new("k", &[]);
        let lookalike = cipher.encrypt(b"{\"a\":1}");
        // A provider's body that happens to look encrypted, on a store without encryption.
        for plain in [
            lookalike.clone(),
            Bytes::from_static(b"OHE1-not-really-encrypted-but-long-enough"),
            Bytes::from_static(b"OHP1xyz"),
            Bytes::from_static(b"{}"),
            Bytes::new(),
        ] {
            let stored = seal_payload(None, plain.clone());
            assert_eq!(decrypt_with(None, &stored).expect("plain"), plain);
            assert_eq!(decrypt_with(Some(&cipher), &stored).expect("plain"), plain);
        }
        let sealed = seal_payload(Some(&cipher), Bytes::from_static(b"secret"));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(&cipher.decrypt(&sealed).expect("sealed")[..], b"secret");

        for text in ["", "HTTP 500", "ohe1:AAAA", "ohp1:x", "{\"a\":\"b\"}"] {
            assert_eq!(
                open_text(None, &seal_text(None, text)).expect("plain"),
                text
            );
            let sealed = seal_text(Some(&cipher), text);
            assert!(sealed.starts_with(SEALED_TEXT_PREFIX));
            assert_eq!(open_text(Some(&cipher), &sealed).expect("sealed"), text);
            assert!(open_text(None, &sealed).is_err());
        }
        let key = SearchKey::new(Some("k"));
        assert_eq!(key.hash_text("o", "ann"), key.hash_text("o", "ann"));
        assert_ne!(key.hash_text("o", "ann"), key.hash_text("o", "Ann"));
        assert!(!key.hash_text("o", "ann").contains("ann"));
    }

    #[test]
    fn search_hashes_normalise_and_depend_on_field_and_key() {
        let key = SearchKey::new(Some("k"));
        assert_eq!(
            key.hash("email", " Ann@Example.com "),
            key.hash("email", "ann@example.com")
        );
        assert_ne!(
            key.hash("email", "ann@example.com"),
            key.hash("contact", "ann@example.com")
        );
        assert_ne!(
            key.hash("email", "ann@example.com"),
            SearchKey::new(None).hash("email", "ann@example.com")
        );
        let fields = [("email".to_owned(), "/email".parse().expect("pointer"))];
        let hashes = key.hash_fields(
            fields.iter().map(|(f, p)| (f, p)),
            &json!({"email": "ann@example.com"}),
        );
        assert_eq!(
            hashes,
            vec![("email".to_owned(), key.hash("email", "ann@example.com"))]
        );
    }
    #[test]
    fn sensitive_values_are_scrubbed_from_free_text() {
        let body =
            json!({"email": "Ann@Example.com", "contact": 4242, "tags": ["vip-x", "no"], "id": 7});
        let sensitive = SensitiveValues::collect(
            &body,
            &pointers(&["/email", "/contact", "/tags", "/missing", "/id"]),
        );
        let check = |text: &str, expected: &str| assert_eq!(sensitive.scrub(text), expected);
        check("sub_1+ann@example.com", "sub_1+***");
        check(
            "HTTP 400: unknown ANN@EXAMPLE.COM (4242)",
            "HTTP 400: unknown *** (***)",
        );
        check("vip-x", "***");
        check("nothing here, no 7", "nothing here, no 7");
        check("", "");
        let headers = sensitive.scrub_headers_json(r#"{"x-user":"ann@example.com","x-n":"1"}"#);
        assert!(!headers.contains("ann@"), "{headers}");
        assert!(SensitiveValues::from_body(b"not json", &pointers(&["/email"])).is_empty());
        assert!(is_secret_header("X-Hub-Signature-256"));
        assert!(is_secret_header("X-Api-Key"));
        assert!(!is_secret_header("content-type"));
    }
}
