//! Signature headers of every scheme. The first byte picks the scheme (and for `hmac` its
//! algorithm, encoding and prefix); the rest is a request (see `Request::parse`).
//!
//! Checks that verifying and answering handshakes never panic whatever the headers hold, that
//! what `sign` produces for the same body always verifies, and that a handshake made by
//! `sign_handshake` (with a challenge from the input) gets the answer it expects: `oncehook
//! send` relies on both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use http::Method;
use oncehook::verify::{HmacAlgorithm, SchemeName, SignatureEncoding, Verifier, VerifyConfig};
use oncehook_fuzz::{NOW, Request};

/// New schemes go at the end, so that the committed seeds keep their scheme.
const SCHEMES: [SchemeName; 13] = [
    SchemeName::Standard,
    SchemeName::Svix,
    SchemeName::Stripe,
    SchemeName::Github,
    SchemeName::Slack,
    SchemeName::Shopify,
    SchemeName::Hmac,
    SchemeName::Bearer,
    SchemeName::None,
    SchemeName::Meta,
    SchemeName::Zoom,
    SchemeName::Twilio,
    SchemeName::Sendgrid,
];

/// A P-256 key pair made for the tests (`scripts/gen_verify_vectors.py`, "primary").
const SENDGRID_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFnDVIpcVLQTmac/bGdwpkSeuKbLrZy146WFAdcDc+qKbnBuCMhUB7/I1PogkUC0wj9uB6VqJxGoHW8pKjB18vg==";
const SENDGRID_PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNNL2PZk5gi1ZwhtX7tdYfInfO5YWPrxVJXPwaEhluxOhRANCAAQWcNUilxUtBOZpz9sZ3CmRJ64psutnLXjpYUB1wNz6opucG4IyFQHv8jU+iCRQLTCP24HpWonEagdbykqMHXy+";

fn config(selector: u8) -> VerifyConfig {
    let scheme = SCHEMES[usize::from(selector) % SCHEMES.len()];
    let variant = selector / SCHEMES.len() as u8;
    let secrets = match scheme {
        // Two secrets, as during a rotation: every check must try both.
        SchemeName::Standard | SchemeName::Svix => vec![
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
        ],
        SchemeName::None | SchemeName::Sendgrid => Vec::new(),
        _ => vec!["fuzz-secret".to_owned(), "rotated-secret".to_owned()],
    };
    let hmac = scheme == SchemeName::Hmac;
    let sendgrid = scheme == SchemeName::Sendgrid;
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
        verify_token: (scheme == SchemeName::Meta).then(|| "fuzz-verify-token".to_owned()),
        url: (scheme == SchemeName::Twilio)
            .then(|| "https://hooks.example.com/webhooks/twilio?x=1".to_owned()),
        public_key: if sendgrid {
            vec![SENDGRID_PUBLIC_KEY.to_owned()]
        } else {
            Vec::new()
        },
        private_key: sendgrid.then(|| SENDGRID_PRIVATE_KEY.to_owned()),
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
    for method in [Method::GET, Method::POST] {
        let query = std::str::from_utf8(request.head).ok();
        if let Some(Err(error)) =
            verifier.handshake(&method, query, &request.headers, request.body, NOW)
        {
            assert!(!error.to_string().is_empty());
        }
    }
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

    // A challenge is whatever the provider chose; an empty one has no answer.
    let challenge = String::from_utf8_lossy(request.body);
    if let Some(probe) = verifier.sign_handshake(&challenge, NOW) {
        let headers: http::HeaderMap = probe.headers.iter().cloned().collect();
        let answer = verifier.handshake(
            &probe.method,
            probe.query.as_deref(),
            &headers,
            &probe.body,
            NOW,
        );
        assert_eq!(
            answer,
            Some(Ok(probe.expected.clone())),
            "{}: a handshake made by `sign_handshake` is not answered",
            verifier.scheme()
        );
    }
});
