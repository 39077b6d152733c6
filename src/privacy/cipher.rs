//! Sealing what the store keeps: payloads and texts encrypted with ChaCha20-Poly1305 when
//! `store.encryption_key` is set, framed when they are not (so a provider's body that begins
//! like a ciphertext stays plaintext). Every ciphertext names its key by a short id, so keys
//! can rotate: the current key encrypts, the current and `store.previous_encryption_keys`
//! decrypt.

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::SearchKey;

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
}
