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
//!
//! One file per concept: `mask` (previews and secret header names), `scrub` (`SensitiveValues`),
//! `cipher` (payload and text sealing, their frames, `PayloadCipher`) and `search`
//! (`SearchKey`).

mod cipher;
mod mask;
mod scrub;
mod search;

pub use cipher::{CipherError, PayloadCipher, decrypt_with, open_text, seal_payload, seal_text};
pub use mask::{
    HiddenFields, MASK, is_secret_header, mask_json, masked_preview, short_preview, short_text,
};
pub use scrub::SensitiveValues;
pub use search::SearchKey;
