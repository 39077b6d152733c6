//! Pure types and rules, no I/O: JSON pointers, canonical JSON and fingerprints, idempotency
//! keys, the retry policy.

pub mod fingerprint;
pub mod form;
pub mod key;
pub mod pointer;
pub mod retry;
