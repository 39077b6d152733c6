//! Idempotency-key derivation from a request's headers and body. The first line holds the
//! key alternatives, separated by tabs, as a source's `key` list; the rest is a request
//! (see `Request::parse`).
//!
//! Checks that a configured spec prints back as itself (where `+` makes that ambiguous, see
//! below), and that a derived key is non-empty and the same every time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncehook::domain::fingerprint::{fingerprint_bytes, fingerprint_json};
use oncehook::domain::key::{EmailHasher, KeySpec};
use oncehook_fuzz::{Request, first_line};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (spec_line, rest) = first_line(data);
    let Ok(spec_line) = std::str::from_utf8(spec_line) else {
        return;
    };
    let entries: Vec<String> = spec_line.split('\t').map(str::to_owned).collect();
    let Ok(spec) = KeySpec::parse(&entries) else {
        return;
    };
    let printed: Vec<String> = spec.alternatives.iter().map(ToString::to_string).collect();
    // A pointer may itself hold ` + ` around its edges once trimmed (`json:/a +`), which reads
    // back as a separator: the printed form is for messages, and is exact only without `+`.
    let plain = spec
        .alternatives
        .iter()
        .flat_map(|alternative| &alternative.parts)
        .all(|part| !part.to_string().contains('+'));
    if plain {
        assert_eq!(
            KeySpec::parse(&printed).ok().as_ref(),
            Some(&spec),
            "{printed:?} does not parse back"
        );
    }

    let request = Request::parse(rest);
    let json = serde_json::from_slice::<Value>(request.body).ok();
    let fingerprint = match &json {
        Some(value) => fingerprint_json(value, &[]),
        None => fingerprint_bytes(request.body),
    };
    let email = EmailHasher::unkeyed();
    let first = spec.derive("fuzz", &request.headers, json.as_ref(), &fingerprint, &email);
    let again = spec.derive("fuzz", &request.headers, json.as_ref(), &fingerprint, &email);
    assert_eq!(first, again);
    match first {
        Ok(key) => assert!(!key.text.is_empty()),
        Err(missing) => assert_eq!(missing.tried.len(), spec.alternatives.len()),
    }
});
