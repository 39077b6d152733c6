//! `SearchKey`: `search_fields` values as keyed hashes, so the store can find an event by email
//! without holding the email.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::pointer::JsonPointer;

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
