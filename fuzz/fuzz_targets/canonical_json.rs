//! RFC 8785 canonical JSON and body fingerprints, from arbitrary bytes as a request body.
//!
//! Checks that canonicalizing never panics, that its output is JSON whose canonical form is
//! itself (so a stored fingerprint can be recomputed from the canonical text), and that the
//! streamed fingerprint is the SHA-256 of exactly those bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncehook::domain::fingerprint::{
    canonical_json, canonical_json_ignoring, fingerprint_bytes, fingerprint_json,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        // Not JSON: intake fingerprints the raw bytes instead.
        let _ = fingerprint_bytes(data);
        return;
    };
    let canonical = canonical_json(&value);
    let reparsed: Value = match serde_json::from_slice(&canonical) {
        Ok(reparsed) => reparsed,
        Err(error) => panic!(
            "canonical form is not JSON ({error}): {}",
            String::from_utf8_lossy(&canonical)
        ),
    };
    assert_eq!(
        canonical_json(&reparsed),
        canonical,
        "canonicalizing the canonical form changed it"
    );
    assert_eq!(canonical_json_ignoring(&value, &[]), canonical);
    assert_eq!(fingerprint_json(&value, &[]), fingerprint_bytes(&canonical));
    assert_eq!(
        fingerprint_json(&reparsed, &[]),
        fingerprint_bytes(&canonical)
    );
});
