//! Idempotency-key derivation from a request's headers and body. The first line holds the
//! key alternatives, separated by tabs, as a source's `key` list; the rest is a request
//! (see `Request::parse`).
//!
//! Checks that a configured spec prints back as itself (where `+` makes that ambiguous, see
//! below), and that a derived key is non-empty and the same every time. A body that is not
//! JSON is also read as a form, for `form:` parts and the form fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncehook::domain::fingerprint::{fingerprint_bytes, fingerprint_form, fingerprint_json};
use oncehook::domain::form::FormFields;
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
    let form = json.is_none().then(|| FormFields::parse(request.body));
    let fingerprint = match (&json, &form) {
        (Some(value), _) => fingerprint_json(value, &[]),
        // Half the time as a form, half as raw bytes: both must work on any body.
        (None, Some(form)) if request.body.len() % 2 == 0 => fingerprint_form(form, &[]),
        (None, _) => fingerprint_bytes(request.body),
    };
    let email = EmailHasher::unkeyed();
    let derive = || {
        spec.derive(
            "fuzz",
            &request.headers,
            json.as_ref(),
            form.as_ref(),
            &fingerprint,
            &email,
        )
    };
    let first = derive();
    let again = derive();
    assert_eq!(first, again);
    match first {
        Ok(key) => assert!(!key.text.is_empty()),
        Err(missing) => assert_eq!(missing.tried.len(), spec.alternatives.len()),
    }
});
