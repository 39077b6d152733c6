//! Signature headers of every scheme. The first byte picks the scheme (and for `hmac` its
//! algorithm, encoding and prefix); the rest is a request (see `Request::parse`).
//!
//! Checks that verifying never panics whatever the headers hold, and that what `sign`
//! produces for the same body always verifies: `oncehook send` relies on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncehook::verify::{HmacAlgorithm, SchemeName, SignatureEncoding, Verifier, VerifyConfig};
use oncehook_fuzz::{NOW, Request};

const SCHEMES: [SchemeName; 9] = [
    SchemeName::Standard,
    SchemeName::Svix,
    SchemeName::Stripe,
    SchemeName::Github,
    SchemeName::Slack,
    SchemeName::Shopify,
    SchemeName::Hmac,
    SchemeName::Bearer,
    SchemeName::None,
];

fn config(selector: u8) -> VerifyConfig {
    let scheme = SCHEMES[usize::from(selector) % SCHEMES.len()];
    let variant = selector / SCHEMES.len() as u8;
    let secrets = match scheme {
        // Two secrets, as during a rotation: every check must try both.
        SchemeName::Standard | SchemeName::Svix => vec![
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
        ],
        SchemeName::None => Vec::new(),
        _ => vec!["fuzz-secret".to_owned(), "rotated-secret".to_owned()],
    };
    let hmac = scheme == SchemeName::Hmac;
    VerifyConfig {
        scheme,
        secrets,
        tolerance: None,
        header: hmac.then(|| "X-Signature".to_owned()),
        algorithm: hmac.then_some(match variant % 3 {
            0 => HmacAlgorithm::Sha256,
            1 => HmacAlgorithm::Sha512,
            _ => HmacAlgorithm::Sha1,
        }),
        encoding: hmac.then_some(if (variant / 3).is_multiple_of(2) {
            SignatureEncoding::Hex
        } else {
            SignatureEncoding::Base64
        }),
        prefix: (hmac && !(variant / 6).is_multiple_of(2)).then(|| "sha256=".to_owned()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(verifier) = Verifier::from_config(&config(selector)) else {
        panic!("the fixed config of selector {selector} must be valid");
    };
    let request = Request::parse(rest);
    let outcome = verifier.verify(&request.headers, request.body, NOW);
    // The message goes back to the sender: it must never be empty or name a secret.
    if let Err(error) = &outcome {
        let message = error.to_string();
        assert!(!message.is_empty());
        assert!(!message.contains("secret"), "{message}");
    }

    let message_id = String::from_utf8_lossy(request.head);
    let signed = verifier.sign(request.body, &message_id, NOW);
    let mut headers = http::HeaderMap::new();
    for (name, value) in signed {
        headers.append(name, value);
    }
    if let Err(error) = verifier.verify(&headers, request.body, NOW) {
        panic!(
            "{}: a request signed by `sign` does not verify: {error}",
            verifier.scheme()
        );
    }
});
