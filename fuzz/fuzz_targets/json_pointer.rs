//! RFC 6901 JSON pointers (from config) evaluated against request bodies, and
//! `fingerprint_ignore`. The first line is the pointer, the rest the body.
//!
//! Checks that parsing is exact (the text round-trips through its tokens), that `get`,
//! `get_mut` and `remove` agree, and that ignoring one pointer while fingerprinting is the
//! same as removing it first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncehook::domain::fingerprint::{canonical_json, canonical_json_ignoring, fingerprint_json};
use oncehook::domain::pointer::JsonPointer;
use oncehook_fuzz::first_line;
use serde_json::Value;

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fuzz_target!(|data: &[u8]| {
    let (pointer_text, body) = first_line(data);
    let Ok(pointer_text) = std::str::from_utf8(pointer_text) else {
        return;
    };
    let Ok(pointer) = pointer_text.parse::<JsonPointer>() else {
        return;
    };
    assert_eq!(pointer.as_str(), pointer_text);
    assert_eq!(pointer.to_string(), pointer_text);
    assert!(pointer.tokens().len() >= 1);
    let rebuilt: String = pointer
        .tokens()
        .map(|t| format!("/{}", escape(t)))
        .collect();
    assert_eq!(rebuilt, pointer_text, "tokens do not spell the pointer");
    assert_eq!(rebuilt.parse::<JsonPointer>().ok(), Some(pointer.clone()));

    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let found = pointer.get(&value).cloned();
    let mut copy = value.clone();
    assert_eq!(pointer.get_mut(&mut copy).map(|v| v.clone()), found);
    let removed = pointer.remove(&mut copy);
    assert_eq!(removed, found, "remove took something other than get found");

    let ignoring = std::slice::from_ref(&pointer);
    assert_eq!(
        canonical_json_ignoring(&value, ignoring),
        canonical_json(&copy),
        "ignoring {pointer_text} differs from removing it"
    );
    let _ = fingerprint_json(&value, ignoring);
});
