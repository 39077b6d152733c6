//! What operators may see of a payload, and what the store may keep of it.
//!
//! - `mask_json` replaces `mask_fields` before a payload leaves the process in an API
//!   response, a console page or a log line.
//! - `PayloadCipher` encrypts stored bodies (ChaCha20-Poly1305) when `store.encryption_key`
//!   is set. Every ciphertext names its key by a short id, so keys can rotate: the current key
//!   encrypts, the current and `store.previous_encryption_keys` decrypt.
//! - `SearchKey` turns `search_fields` values into keyed hashes: the store can find an event by
//!   email without holding the email.

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

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

const CIPHERTEXT_MAGIC: &[u8; 4] = b"OHE1";
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

/// Decrypts a stored payload if it is encrypted; plain payloads pass through unchanged.
pub fn decrypt_with(cipher: Option<&PayloadCipher>, stored: &Bytes) -> Result<Bytes, CipherError> {
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
}
