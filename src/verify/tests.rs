//! Table-driven tests for every scheme: vectors produced by the providers' own
//! libraries or published docs (regenerate with `scripts/gen_verify_vectors.py`),
//! the rejection paths, sign → verify round trips, and config validation.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::timestamp::parse_unix_seconds;
use super::*;

// ---------------------------------------------------------------------------------
// Vectors. Each block says which library or document produced it.
// ---------------------------------------------------------------------------------

// standardwebhooks 1.1.0 (Python): `standardwebhooks.Webhook(secret).sign(msg_id, timestamp, payload)`.
// The primary vector is also the example in the Standard Webhooks / Svix docs.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_ROTATED_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const STANDARD_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const STANDARD_TIMESTAMP: i64 = 1614265330;
const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;
const STANDARD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const STANDARD_ROTATED_SIGNATURE: &str = "v1,78nXHjpFP0tVJQW5D0SBwmVyyW87BV/rL6MgfM/Bw44=";
// The library strips an optional `whsec_` prefix and pads the base64 itself.
const STANDARD_UNPREFIXED_SECRET: &str = "dW5wYWRkZWQtc2VjcmV0LWtleQ";
const STANDARD_UNPREFIXED_SIGNATURE: &str = "v1,RYeWTu9HlTeEe/mRmmIKXfwEK07iquYf8koE9p02IG4=";
const STANDARD_UTF8_BODY: &[u8] = "{\"name\":\"Café ✓\",\"amount\":12}".as_bytes();
const STANDARD_UTF8_SIGNATURE: &str = "v1,Xh7W229WCYwoom75MC17n2scojO32HfKGT2zso1GM5U=";

// svix 2.9.1 (Python): `svix.webhooks.Webhook(secret).sign(msg_id, timestamp, payload)`.
const SVIX_SECRET: &str = "whsec_plJ3nmyCDGBKInavdOK15jsl";
const SVIX_ROTATED_SECRET: &str = "whsec_dGhpcy1pcy1hLXNlY29uZC1rZXk=";
const SVIX_MSG_ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const SVIX_TIMESTAMP: i64 = 1700000000;
const SVIX_BODY: &[u8] = br#"{"type":"invoice.paid","data":{"id":"inv_123"}}"#;
const SVIX_SIGNATURE: &str = "v1,q+lfjo0hz1nFSzmuN/d6diQhMa0LYp076H524FnkzGE=";
const SVIX_ROTATED_SIGNATURE: &str = "v1,ZU9fA7U8tgre0iE1fhks/fk0hzQShrHF+F35gWBsLJA=";

// stripe 16.1.0 (Python): `stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)`,
// each accepted by the library's own `WebhookSignature.verify_header`.
const STRIPE_SECRET: &str = "whsec_test_secret_4eC39HqLyjWDarjtT1zdp7dc";
const STRIPE_ROTATED_SECRET: &str = "whsec_rotated_8c1c6f1f0d2e4b5a9d3e";
const STRIPE_TIMESTAMP: i64 = 1711929600;
const STRIPE_BODY: &[u8] = b"{\n  \"id\": \"evt_1PWu2bJ0tyXxTz4lXcjQ0nJm\",\n  \"object\": \"event\",\n  \"type\": \"payment_intent.succeeded\"\n}";
const STRIPE_HEADER: &str =
    "t=1711929600,v1=50c935544d05ec5fca029c4648677115643766373c9c382fabba71df490a74ed";
const STRIPE_HEX: &str = "50c935544d05ec5fca029c4648677115643766373c9c382fabba71df490a74ed";
const STRIPE_ROTATED_HEX: &str = "bef2280cfaccde494cb09f8275d857db12c8e20166e58eb7e54941256829cf7b";

// Slack's "Verifying requests from Slack" worked example, reproduced by slack_sdk 3.47.0
// `SignatureVerifier(secret).generate_signature(timestamp=..., body=...)` and accepted by its `is_valid`.
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TIMESTAMP: i64 = 1531420618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
// slack_sdk 3.47.0 `generate_signature` with a second secret, same timestamp.
const SLACK_ROTATED_SECRET: &str = "d1f3a9c0b7e24c58a6f0e2b4c8d9a1e3";
const SLACK_ROTATED_BODY: &[u8] =
    br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention"}}"#;
const SLACK_ROTATED_SIGNATURE: &str =
    "v0=126bb573b0571ddb48619137b345a5a23e284f4f3769d3dd56c97a1b628752a2";

// GitHub docs, "Validating webhook deliveries" (checked with Python's hmac).
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &[u8] = b"Hello, World!";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

// Shopify publishes no library function for webhook HMACs; computed with Python's
// hmac/base64 exactly as the Python example in Shopify's webhook docs:
// base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).
const SHOPIFY_SECRET: &str = "shpss_1f7e0f8d1c9b4a6e8d2c";
const SHOPIFY_ROTATED_SECRET: &str = "shpss_9a8b7c6d5e4f3a2b1c0d";
const SHOPIFY_BODY: &[u8] =
    br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"254.98"}"#;
const SHOPIFY_SIGNATURE: &str = "DpkqIElJYy07gNMtr4Ly1z9USzEW3lFzg6eJlM+7wtE=";
const SHOPIFY_ROTATED_SIGNATURE: &str = "srA/W+Sl+pDMInwjfRqYJwII1wvnNmkizhNIfzvCloQ=";

// Python's hmac/hashlib/base64 (the generic scheme has no provider library).
const HMAC_SECRET: &str = "forms-secret-1";
const HMAC_BODY: &[u8] = br#"{"submission_id":"sub_42","email":"ada@example.com"}"#;
const HMAC_SHA256_HEX: &str = "3053fc734812c0d5ae23be2124c56442b5fdd2462c53186f102fb523b81fc671";
const HMAC_SHA256_BASE64: &str = "MFP8c0gSwNWuI74hJMVkQrX90kYsUxhvEC+1I7gfxnE=";
const HMAC_SHA512_HEX: &str = "abdf9b489fea1c7be5d44f2f89d80c5e18dd6c5b1426652442356749802f2045e6442c9f917df08970f0cb17e8aecbdc9ccb64125715b4c92a2a8088d7b05f2e";
const HMAC_SHA512_BASE64: &str =
    "q9+bSJ/qHHvl1E8vidgMXhjdbFsUJmUkQjVnSYAvIEXmRCyfkX3wiXDwyxforsvcnMtkElcVtMkqKoCI17BfLg==";
const HMAC_SHA1_HEX: &str = "5376f9974ed4198034377fb12678ca0a664be393";
const HMAC_SHA1_BASE64: &str = "U3b5l07UGYA0N3+xJnjKCmZL45M=";

// Slack's `url_verification` example body from its Events API reference, signed with
// slack_sdk 3.48.0 `SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=SLACK_TIMESTAMP, ...)`.
const SLACK_URL_VERIFICATION_BODY: &[u8] = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
const SLACK_URL_VERIFICATION_SIGNATURE: &str =
    "v0=f9bd80929259f3f6d5fe3a3186c453c89cd1ad4862815a15837584f31c993652";
const SLACK_CHALLENGE: &str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";

// Meta publishes no library; its "Validating payloads" docs: 'sha256=' + hex HMAC-SHA256 of the
// raw body keyed with the app secret, computed with Python's hmac.
const META_SECRET: &str = "5f2b6d3c8a9e4f10b7c6d5e4f3a2b1c0";
const META_ROTATED_SECRET: &str = "0c1b2a3f4e5d6c7b01f4e9a8c3d6b2f5";
const META_BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","messages":[{"from":"16315551234","id":"wamid.ABGGFlA5Fpa","timestamp":"1504902988","text":{"body":"this is a text message"},"type":"text"}]},"field":"messages"}]}]}"#;
const META_SIGNATURE: &str =
    "sha256=5606272b0190424ac3a06325db8bbae8355503a0be8585be6e0670bf9cb8eb19";
const META_ROTATED_SIGNATURE: &str =
    "sha256=460a7e40a2225d1ba7133ca49127eee8ea039d063315a17df6dd6e22eaceff53";
const META_VERIFY_TOKEN: &str = "meta-verify-token-7f3a";

// Zoom publishes no library; its "Verify webhook events" docs: v0= + hex HMAC-SHA256 over
// `v0:{x-zm-request-timestamp}:{body}` keyed with the secret token, and for the URL validation
// hex HMAC-SHA256 of `plainToken` (the docs' example token), computed with Python's hmac.
const ZOOM_SECRET: &str = "Fd1kSs0ARKyDq7GmP3jLVQ";
const ZOOM_ROTATED_SECRET: &str = "q7ZxW4yVb2N9rT5uE8aC1d";
const ZOOM_TIMESTAMP: i64 = 1658940994;
const ZOOM_BODY: &[u8] = br#"{"event":"meeting.started","payload":{"account_id":"AAAAAABBBB","object":{"id":"1234567890","uuid":"czLF6FFFoQOKgAB99DlDb9g==","topic":"Zoom Meeting"}},"event_ts":1658940994914}"#;
const ZOOM_SIGNATURE: &str = "v0=cdc984a2935647dbbf02a6afbdaebbd9d54ce0ae6bdc5ea29c742ca8d7e0994a";
const ZOOM_ROTATED_SIGNATURE: &str =
    "v0=cea1dae8d71758e580b1f15da8f2218564a0fb94e6b31fe6826070ed3ad7ce5c";
const ZOOM_VALIDATION_BODY: &[u8] = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
const ZOOM_VALIDATION_SIGNATURE: &str =
    "v0=07490e72c5eda3b1f86d58f42479f01f237158283187035db975189d6faecb0e";
const ZOOM_PLAIN_TOKEN: &str = "qgg8vlvZRS6UYooatFL8Aw";
const ZOOM_ENCRYPTED_TOKEN: &str =
    "6e3ae3607f4b48730ea617b4f51de4b2a303a8eeed799960f497f6e2a992f57f";
const ZOOM_ROTATED_ENCRYPTED_TOKEN: &str =
    "bdd59f10804d3c07ffc98194d1066c729fcc836e1fc1c7a4f2dbc007e0a822c1";

// twilio 9.13.0 (Python): `RequestValidator(token).compute_signature(uri, params)`, accepted by
// its `validate`. The token, URL, fields and expected values are twilio-python's own tests'.
const TWILIO_TOKEN: &str = "12345";
const TWILIO_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
// The fields of those tests as a form body, in another order than Twilio signs them.
const TWILIO_FORM: &[u8] = b"To=%2B18005551212&From=%2B14158675309&CallSid=CA1234567890ABCDE&Digits=1234&Caller=%2B14158675309";
const TWILIO_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
const TWILIO_PORT_443_SIGNATURE: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";
const TWILIO_HTTP_PORT_80_SIGNATURE: &str = "0ZXoZLH/DfblKGATFgpif+LLRf4=";
const TWILIO_HTTP_PORT_1234_SIGNATURE: &str = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=";
const TWILIO_DUPLICATES_FORM: &[u8] = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
const TWILIO_DUPLICATES_SIGNATURE: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
// A JSON callback: the signed URL carries `bodySHA256=<hex SHA-256 of the body>`.
const TWILIO_JSON_BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
const TWILIO_JSON_SIGNATURE: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";
// An SMS with a value beyond ASCII, under a second Auth Token and under a SharedKey (HMAC_SHA256).
const TWILIO_SMS_URL: &str = "https://hooks.example.com/webhooks/twilio";
const TWILIO_SMS_FORM: &[u8] = b"NumMedia=0&Body=Caf%C3%A9+%E2%9C%93+100%25+sure+%26+done&To=%2B15005550001&From=%2B15005550006&AccountSid=AC00000000000000000000000000000000&MessageSid=SM1f0e1d2c3b4a59687766554433221100";
const TWILIO_ROTATED_TOKEN: &str = "f3b1c9e2d4a6b8c0e1f2a3b4c5d6e7f8";
const TWILIO_SMS_ROTATED_SIGNATURE: &str = "oKJeqJowa2yis/SngVOi192+Ayc=";
const TWILIO_SHARED_KEY: &str = "sharedkey_secret_9d8c7b6a5f4e";
const TWILIO_SMS_SHA256_SIGNATURE: &str = "12SA961rFLsQUwwBcBnY4Ql8osOdyYqPLPBfstBfi1U=";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

// sendgrid 6.12.5 (Python): `EventWebhook().verify_signature(payload, signature, timestamp, key)`.
// The first vector and the other key are SendGrid's own Event Webhook tests'.
const SENDGRID_DOCS_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
const SENDGRID_DOCS_OTHER_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
const SENDGRID_DOCS_SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
const SENDGRID_DOCS_TIMESTAMP: i64 = 1588788367;
const SENDGRID_DOCS_BODY: &[u8] =
    br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
// Key pairs from fixed scalars (cryptography 50.0.2), signed with RFC 6979
// (`ec.ECDSA(hashes.SHA256(), deterministic_signing=True)`), each accepted by the helper above.
const SENDGRID_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFnDVIpcVLQTmac/bGdwpkSeuKbLrZy146WFAdcDc+qKbnBuCMhUB7/I1PogkUC0wj9uB6VqJxGoHW8pKjB18vg==";
const SENDGRID_PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNNL2PZk5gi1ZwhtX7tdYfInfO5YWPrxVJXPwaEhluxOhRANCAAQWcNUilxUtBOZpz9sZ3CmRJ64psutnLXjpYUB1wNz6opucG4IyFQHv8jU+iCRQLTCP24HpWonEagdbykqMHXy+";
const SENDGRID_ROTATED_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZySdh+rtQ9xeoAcCVPG2M+eUDYC/FMskGK4Enzllq6iK9HclEtrBSnPBlYpBH03e1Fww9e2vYUU0cofC9DqwHw==";
const SENDGRID_ROTATED_PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsic+UGQ5b5wB9olMLtlJG9VyIA5Ce40xZL1JzSNdlbqhRANCAARnJJ2H6u1D3F6gBwJU8bYz55QNgL8UyyQYrgSfOWWrqIr0dyUS2sFKc8GVikEfTd7UXDD17a9hRTRyh8L0OrAf";
const SENDGRID_TIMESTAMP: i64 = 1700000000;
const SENDGRID_BODY: &[u8] = br#"[{"email":"ada@example.com","timestamp":1700000000,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"delivered","sg_event_id":"sg_event_id_delivered_1","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}]"#;
// Its `s` is above half the group order (as OpenSSL leaves it); LOW_S is the same signature
// as `(r, n - s)`, which SendGrid's helper accepts too.
const SENDGRID_SIGNATURE: &str = "MEYCIQCO3r0xOWnRbZzwFqw1zmnViu/NaP3Yy/n5vZF28XogowIhAMu7c+W06SBFm69BTINR5en+Ef3JBmx68G5PtII6U0M/";
const SENDGRID_LOW_S_SIGNATURE: &str = "MEUCIQCO3r0xOWnRbZzwFqw1zmnViu/NaP3Yy/n5vZF28XogowIgNESMGUsW37tkUL6zfK4aFb7U/OSgqyOUhWoWQMIP4hI=";
const SENDGRID_ROTATED_SIGNATURE: &str = "MEUCIQDZT+9zlXIq5CNZxh3X2IBUy9I1JTy7Mcu14Ax7+KuI2QIgWXJOLcdmo2pYJZRvBicUKAR2keyyXW5MBPc55M1z+X0=";

const TAMPERED_BODY: &[u8] = b"{\"tampered\": true}";
const FIVE_MINUTES: i64 = 300;

// ---------------------------------------------------------------------------------
// The table runner.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    MissingHeader,
    MalformedHeader,
    OutOfTolerance,
    BadSignature,
}

struct Case {
    name: &'static str,
    /// The inside of the source's `verify = { … }` inline table.
    config: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: &'static [u8],
    now: i64,
    expect: Expect,
}

#[derive(Deserialize)]
struct SourceTable {
    verify: VerifyConfig,
}

fn parse_config(table: &str) -> Result<VerifyConfig, toml::de::Error> {
    toml::from_str::<SourceTable>(&format!("verify = {{ {table} }}")).map(|source| source.verify)
}

fn verifier(table: &str) -> Verifier {
    let cfg = parse_config(table).unwrap_or_else(|err| panic!("config {table:?}: {err}"));
    Verifier::from_config(&cfg).unwrap_or_else(|err| panic!("config {table:?}: {err}"))
}

fn header_map(headers: &[(&str, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
        let value = HeaderValue::from_bytes(value).expect("test header value");
        map.append(name, value);
    }
    map
}

fn outcome(result: &Result<(), VerifyError>) -> Expect {
    match result {
        Ok(()) => Expect::Ok,
        Err(VerifyError::MissingHeader(_)) => Expect::MissingHeader,
        Err(VerifyError::MalformedHeader { .. }) => Expect::MalformedHeader,
        Err(VerifyError::TimestampOutOfTolerance) => Expect::OutOfTolerance,
        Err(VerifyError::BadSignature) => Expect::BadSignature,
    }
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let result = verifier(&case.config).verify(&header_map(&case.headers), case.body, case.now);
        if outcome(&result) != case.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.expect, result
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn h(name: &'static str, value: impl AsRef<[u8]>) -> (&'static str, Vec<u8>) {
    (name, value.as_ref().to_vec())
}

fn secrets_config(scheme: &str, secrets: &[&str]) -> String {
    let quoted: Vec<String> = secrets.iter().map(|secret| format!("{secret:?}")).collect();
    format!("scheme = {scheme:?}, secrets = [{}]", quoted.join(", "))
}

// ---------------------------------------------------------------------------------
// Standard Webhooks and Svix.
// ---------------------------------------------------------------------------------

fn standard_headers(
    names: [&'static str; 3],
    id: &str,
    timestamp: impl AsRef<[u8]>,
    signature: impl AsRef<[u8]>,
) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        h(names[0], id),
        h(names[1], timestamp),
        h(names[2], signature),
    ]
}

const WEBHOOK_NAMES: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];
const SVIX_NAMES: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];

#[test]
fn standard_webhooks_cases() {
    let config = || secrets_config("standard", &[STANDARD_SECRET]);
    let ts = STANDARD_TIMESTAMP.to_string();
    let valid = || standard_headers(WEBHOOK_NAMES, STANDARD_MSG_ID, &ts, STANDARD_SIGNATURE);
    let with_timestamp = |timestamp: &[u8]| {
        standard_headers(
            WEBHOOK_NAMES,
            STANDARD_MSG_ID,
            timestamp,
            STANDARD_SIGNATURE,
        )
    };
    let with_signature =
        |signature: &[u8]| standard_headers(WEBHOOK_NAMES, STANDARD_MSG_ID, &ts, signature);
    let case = |name, config: String, headers, body, now, expect| Case {
        name,
        config,
        headers,
        body,
        now,
        expect,
    };
    let now = STANDARD_TIMESTAMP;
    check(vec![
        case(
            "library vector",
            config(),
            valid(),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "header names in any case",
            config(),
            standard_headers(
                ["Webhook-Id", "WEBHOOK-TIMESTAMP", "Webhook-Signature"],
                STANDARD_MSG_ID,
                &ts,
                STANDARD_SIGNATURE,
            ),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "unprefixed, unpadded secret",
            secrets_config("standard", &[STANDARD_UNPREFIXED_SECRET]),
            with_signature(STANDARD_UNPREFIXED_SIGNATURE.as_bytes()),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "non-ASCII UTF-8 body",
            config(),
            with_signature(STANDARD_UTF8_SIGNATURE.as_bytes()),
            STANDARD_UTF8_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            secrets_config("standard", &[STANDARD_ROTATED_SECRET]),
            valid(),
            STANDARD_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("standard", &[STANDARD_ROTATED_SECRET, STANDARD_SECRET]),
            valid(),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "rotation: sender signs with the new secret",
            secrets_config("standard", &[STANDARD_SECRET, STANDARD_ROTATED_SECRET]),
            with_signature(STANDARD_ROTATED_SIGNATURE.as_bytes()),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "several signatures, the second matches",
            config(),
            with_signature(format!("{STANDARD_ROTATED_SIGNATURE} {STANDARD_SIGNATURE}").as_bytes()),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "other versions are ignored",
            config(),
            with_signature(format!("v1a,c2lnbmF0dXJl v2,abc {STANDARD_SIGNATURE}").as_bytes()),
            STANDARD_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "right signature under another version",
            config(),
            with_signature(STANDARD_SIGNATURE.replace("v1,", "v2,").as_bytes()),
            STANDARD_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "missing signature",
            config(),
            vec![
                h("webhook-id", STANDARD_MSG_ID),
                h("webhook-timestamp", &ts),
            ],
            STANDARD_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "missing id",
            config(),
            vec![
                h("webhook-timestamp", &ts),
                h("webhook-signature", STANDARD_SIGNATURE),
            ],
            STANDARD_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "missing timestamp",
            config(),
            vec![
                h("webhook-id", STANDARD_MSG_ID),
                h("webhook-signature", STANDARD_SIGNATURE),
            ],
            STANDARD_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "empty signature header counts as missing",
            config(),
            with_signature(b""),
            STANDARD_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "timestamp not a number",
            config(),
            with_timestamp(b"yesterday"),
            STANDARD_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "timestamp beyond i64",
            config(),
            with_timestamp(b"99999999999999999999999999"),
            STANDARD_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "signature without version",
            config(),
            with_signature(b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            STANDARD_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "signature not base64",
            config(),
            with_signature(b"v1,!!!not-base64!!!"),
            STANDARD_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "just inside tolerance, past",
            config(),
            valid(),
            STANDARD_BODY,
            now + FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, past",
            config(),
            valid(),
            STANDARD_BODY,
            now + FIVE_MINUTES + 1,
            Expect::OutOfTolerance,
        ),
        case(
            "just inside tolerance, future",
            config(),
            valid(),
            STANDARD_BODY,
            now - FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, future",
            config(),
            valid(),
            STANDARD_BODY,
            now - FIVE_MINUTES - 1,
            Expect::OutOfTolerance,
        ),
        case(
            "configured tolerance, inside",
            format!("{}, tolerance = \"10s\"", config()),
            valid(),
            STANDARD_BODY,
            now + 10,
            Expect::Ok,
        ),
        case(
            "configured tolerance, outside",
            format!("{}, tolerance = \"10s\"", config()),
            valid(),
            STANDARD_BODY,
            now - 11,
            Expect::OutOfTolerance,
        ),
        case(
            "clock at i64::MAX",
            config(),
            valid(),
            STANDARD_BODY,
            i64::MAX,
            Expect::OutOfTolerance,
        ),
        case(
            "clock at i64::MIN",
            config(),
            valid(),
            STANDARD_BODY,
            i64::MIN,
            Expect::OutOfTolerance,
        ),
        case(
            "tampered body",
            config(),
            valid(),
            TAMPERED_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "tampered id",
            config(),
            standard_headers(WEBHOOK_NAMES, "msg_other", &ts, STANDARD_SIGNATURE),
            STANDARD_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 signature",
            config(),
            with_signature(b"v1,\xff\xfe\x80 \xc3"),
            STANDARD_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 timestamp",
            config(),
            with_timestamp(b"16142\xff65330"),
            STANDARD_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "non-UTF-8 id",
            config(),
            standard_headers(WEBHOOK_NAMES, "msg", &ts, STANDARD_SIGNATURE)
                .into_iter()
                .map(|(name, value)| {
                    if name == "webhook-id" {
                        (name, b"msg_\xff".to_vec())
                    } else {
                        (name, value)
                    }
                })
                .collect(),
            STANDARD_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "svix header names are not read by standard",
            config(),
            standard_headers(SVIX_NAMES, STANDARD_MSG_ID, &ts, STANDARD_SIGNATURE),
            STANDARD_BODY,
            now,
            Expect::MissingHeader,
        ),
    ]);
}

#[test]
fn svix_cases() {
    let config = || secrets_config("svix", &[SVIX_SECRET]);
    let ts = SVIX_TIMESTAMP.to_string();
    let valid = || standard_headers(SVIX_NAMES, SVIX_MSG_ID, &ts, SVIX_SIGNATURE);
    let case = |name, config: String, headers, body, now, expect| Case {
        name,
        config,
        headers,
        body,
        now,
        expect,
    };
    let now = SVIX_TIMESTAMP;
    check(vec![
        case(
            "library vector",
            config(),
            valid(),
            SVIX_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "webhook-* names, as the svix library also accepts",
            config(),
            standard_headers(WEBHOOK_NAMES, SVIX_MSG_ID, &ts, SVIX_SIGNATURE),
            SVIX_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            secrets_config("svix", &[SVIX_ROTATED_SECRET]),
            valid(),
            SVIX_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("svix", &[SVIX_ROTATED_SECRET, SVIX_SECRET]),
            valid(),
            SVIX_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "rotation: both signatures sent",
            secrets_config("svix", &[SVIX_ROTATED_SECRET]),
            standard_headers(
                SVIX_NAMES,
                SVIX_MSG_ID,
                &ts,
                format!("{SVIX_SIGNATURE} {SVIX_ROTATED_SIGNATURE}"),
            ),
            SVIX_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "missing signature",
            config(),
            vec![h("svix-id", SVIX_MSG_ID), h("svix-timestamp", &ts)],
            SVIX_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "malformed timestamp",
            config(),
            standard_headers(SVIX_NAMES, SVIX_MSG_ID, "-1700000000", SVIX_SIGNATURE),
            SVIX_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "malformed signature",
            config(),
            standard_headers(SVIX_NAMES, SVIX_MSG_ID, &ts, "v1"),
            SVIX_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "just inside tolerance, past",
            config(),
            valid(),
            SVIX_BODY,
            now + FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, past",
            config(),
            valid(),
            SVIX_BODY,
            now + FIVE_MINUTES + 1,
            Expect::OutOfTolerance,
        ),
        case(
            "just inside tolerance, future",
            config(),
            valid(),
            SVIX_BODY,
            now - FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, future",
            config(),
            valid(),
            SVIX_BODY,
            now - FIVE_MINUTES - 1,
            Expect::OutOfTolerance,
        ),
        case(
            "tampered body",
            config(),
            valid(),
            TAMPERED_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 signature",
            config(),
            standard_headers(SVIX_NAMES, SVIX_MSG_ID, &ts, b"v1,\xff\xff\xff\xff"),
            SVIX_BODY,
            now,
            Expect::BadSignature,
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// Stripe.
// ---------------------------------------------------------------------------------

#[test]
fn stripe_cases() {
    let config = || secrets_config("stripe", &[STRIPE_SECRET]);
    let signed = |value: &[u8]| vec![h("stripe-signature", value)];
    let valid = || signed(STRIPE_HEADER.as_bytes());
    let case = |name, config: String, headers, body, now, expect| Case {
        name,
        config,
        headers,
        body,
        now,
        expect,
    };
    let now = STRIPE_TIMESTAMP;
    check(vec![
        case("library vector", config(), valid(), STRIPE_BODY, now, Expect::Ok),
        case(
            "header name in provider case",
            config(),
            vec![h("Stripe-Signature", STRIPE_HEADER)],
            STRIPE_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "upper-case hex",
            config(),
            signed(format!("t={now},v1={}", STRIPE_HEX.to_uppercase()).as_bytes()),
            STRIPE_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "several v1 and a v0, spaces after commas",
            config(),
            signed(
                format!("t={now}, v1={STRIPE_ROTATED_HEX}, v1={STRIPE_HEX}, v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
                    .as_bytes(),
            ),
            STRIPE_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "right signature only under v0",
            config(),
            signed(format!("t={now},v0={STRIPE_HEX},v1={STRIPE_ROTATED_HEX}").as_bytes()),
            STRIPE_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "wrong secret",
            secrets_config("stripe", &[STRIPE_ROTATED_SECRET]),
            valid(),
            STRIPE_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("stripe", &[STRIPE_ROTATED_SECRET, STRIPE_SECRET]),
            valid(),
            STRIPE_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "rotation: sender signs with the new secret",
            secrets_config("stripe", &[STRIPE_SECRET, STRIPE_ROTATED_SECRET]),
            signed(format!("t={now},v1={STRIPE_ROTATED_HEX}").as_bytes()),
            STRIPE_BODY,
            now,
            Expect::Ok,
        ),
        case("missing header", config(), vec![], STRIPE_BODY, now, Expect::MissingHeader),
        case(
            "no timestamp",
            config(),
            signed(format!("v1={STRIPE_HEX}").as_bytes()),
            STRIPE_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "timestamp not a number",
            config(),
            signed(format!("t=now,v1={STRIPE_HEX}").as_bytes()),
            STRIPE_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "no v1 signature",
            config(),
            signed(format!("t={now},v0={STRIPE_HEX}").as_bytes()),
            STRIPE_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case("garbage", config(), signed(b"garbage"), STRIPE_BODY, now, Expect::MalformedHeader),
        case(
            "truncated signature",
            config(),
            signed(format!("t={now},v1={}", &STRIPE_HEX[..63]).as_bytes()),
            STRIPE_BODY,
            now,
            Expect::BadSignature,
        ),
        case("just inside tolerance, past", config(), valid(), STRIPE_BODY, now + FIVE_MINUTES, Expect::Ok),
        case(
            "just outside tolerance, past",
            config(),
            valid(),
            STRIPE_BODY,
            now + FIVE_MINUTES + 1,
            Expect::OutOfTolerance,
        ),
        case("just inside tolerance, future", config(), valid(), STRIPE_BODY, now - FIVE_MINUTES, Expect::Ok),
        case(
            "just outside tolerance, future",
            config(),
            valid(),
            STRIPE_BODY,
            now - FIVE_MINUTES - 1,
            Expect::OutOfTolerance,
        ),
        case(
            "configured tolerance",
            format!("{}, tolerance = \"1h\"", config()),
            valid(),
            STRIPE_BODY,
            now + 3600,
            Expect::Ok,
        ),
        case("tampered body", config(), valid(), TAMPERED_BODY, now, Expect::BadSignature),
        case(
            "tampered timestamp",
            config(),
            signed(format!("t={},v1={STRIPE_HEX}", now + 1).as_bytes()),
            STRIPE_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 timestamp",
            config(),
            signed(b"t=17\xff,v1=00"),
            STRIPE_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "non-UTF-8 signature",
            config(),
            signed(&[format!("t={now},v1=").as_bytes(), b"\xff\xfe"].concat()),
            STRIPE_BODY,
            now,
            Expect::BadSignature,
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// Slack.
// ---------------------------------------------------------------------------------

#[test]
fn slack_cases() {
    let config = || secrets_config("slack", &[SLACK_SECRET]);
    let ts = SLACK_TIMESTAMP.to_string();
    let headers = |timestamp: &[u8], signature: &[u8]| {
        vec![
            h("x-slack-request-timestamp", timestamp),
            h("x-slack-signature", signature),
        ]
    };
    let valid = || headers(ts.as_bytes(), SLACK_SIGNATURE.as_bytes());
    let case = |name, config: String, headers, body, now, expect| Case {
        name,
        config,
        headers,
        body,
        now,
        expect,
    };
    let now = SLACK_TIMESTAMP;
    check(vec![
        case(
            "docs example",
            config(),
            valid(),
            SLACK_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "provider-case header names",
            config(),
            vec![
                h("X-Slack-Request-Timestamp", &ts),
                h("X-Slack-Signature", SLACK_SIGNATURE),
            ],
            SLACK_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            secrets_config("slack", &[SLACK_ROTATED_SECRET]),
            valid(),
            SLACK_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("slack", &[SLACK_SECRET, SLACK_ROTATED_SECRET]),
            headers(ts.as_bytes(), SLACK_ROTATED_SIGNATURE.as_bytes()),
            SLACK_ROTATED_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "missing signature",
            config(),
            vec![h("x-slack-request-timestamp", &ts)],
            SLACK_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "missing timestamp",
            config(),
            vec![h("x-slack-signature", SLACK_SIGNATURE)],
            SLACK_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "signature without v0=",
            config(),
            headers(ts.as_bytes(), &SLACK_SIGNATURE.as_bytes()[3..]),
            SLACK_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "signature not hex",
            config(),
            headers(ts.as_bytes(), b"v0=not-hex"),
            SLACK_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "timestamp not a number",
            config(),
            headers(b"1531420618.5", SLACK_SIGNATURE.as_bytes()),
            SLACK_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "just inside tolerance, past",
            config(),
            valid(),
            SLACK_BODY,
            now + FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, past",
            config(),
            valid(),
            SLACK_BODY,
            now + FIVE_MINUTES + 1,
            Expect::OutOfTolerance,
        ),
        case(
            "just inside tolerance, future",
            config(),
            valid(),
            SLACK_BODY,
            now - FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, future",
            config(),
            valid(),
            SLACK_BODY,
            now - FIVE_MINUTES - 1,
            Expect::OutOfTolerance,
        ),
        case(
            "tampered body",
            config(),
            valid(),
            TAMPERED_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "tampered timestamp",
            config(),
            headers(b"1531420619", SLACK_SIGNATURE.as_bytes()),
            SLACK_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 signature",
            config(),
            headers(ts.as_bytes(), b"v0=\xff\xfe"),
            SLACK_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "non-UTF-8 timestamp",
            config(),
            headers(b"\xff1531420618", SLACK_SIGNATURE.as_bytes()),
            SLACK_BODY,
            now,
            Expect::MalformedHeader,
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// GitHub, Shopify and the generic hmac scheme: the body alone, no timestamp.
// ---------------------------------------------------------------------------------

#[test]
fn github_cases() {
    let config = || secrets_config("github", &[GITHUB_SECRET]);
    let signed = |value: &[u8]| vec![h("x-hub-signature-256", value)];
    let valid = || signed(GITHUB_SIGNATURE.as_bytes());
    let case = |name, config: String, headers, body, expect| Case {
        name,
        config,
        headers,
        body,
        // GitHub signs no timestamp, so any clock is fine.
        now: 0,
        expect,
    };
    check(vec![
        case("docs example", config(), valid(), GITHUB_BODY, Expect::Ok),
        case(
            "provider-case header name",
            config(),
            vec![h("X-Hub-Signature-256", GITHUB_SIGNATURE)],
            GITHUB_BODY,
            Expect::Ok,
        ),
        case(
            "upper-case hex and prefix",
            config(),
            signed(GITHUB_SIGNATURE.to_uppercase().as_bytes()),
            GITHUB_BODY,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            secrets_config("github", &["not the secret"]),
            valid(),
            GITHUB_BODY,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("github", &["new secret", GITHUB_SECRET]),
            valid(),
            GITHUB_BODY,
            Expect::Ok,
        ),
        case(
            "only the legacy sha1 header",
            config(),
            vec![h(
                "x-hub-signature",
                "sha1=0000000000000000000000000000000000000000",
            )],
            GITHUB_BODY,
            Expect::MissingHeader,
        ),
        case(
            "no sha256= prefix",
            config(),
            signed(&GITHUB_SIGNATURE.as_bytes()[7..]),
            GITHUB_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "not hex",
            config(),
            signed(b"sha256=xyz"),
            GITHUB_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "sha1-length signature",
            config(),
            signed(b"sha256=0123456789012345678901234567890123456789"),
            GITHUB_BODY,
            Expect::BadSignature,
        ),
        case(
            "tampered body",
            config(),
            valid(),
            b"Hello, World?",
            Expect::BadSignature,
        ),
        case("empty body", config(), valid(), b"", Expect::BadSignature),
        case(
            "non-UTF-8 value",
            config(),
            signed(b"sha256=\xff\xfe\xfd"),
            GITHUB_BODY,
            Expect::MalformedHeader,
        ),
    ]);
}

#[test]
fn shopify_cases() {
    let config = || secrets_config("shopify", &[SHOPIFY_SECRET]);
    let signed = |value: &[u8]| vec![h("x-shopify-hmac-sha256", value)];
    let valid = || signed(SHOPIFY_SIGNATURE.as_bytes());
    let case = |name, config: String, headers, body, expect| Case {
        name,
        config,
        headers,
        body,
        now: 0,
        expect,
    };
    check(vec![
        case(
            "docs recipe vector",
            config(),
            valid(),
            SHOPIFY_BODY,
            Expect::Ok,
        ),
        case(
            "provider-case header name",
            config(),
            vec![h("X-Shopify-Hmac-Sha256", SHOPIFY_SIGNATURE)],
            SHOPIFY_BODY,
            Expect::Ok,
        ),
        case(
            "unpadded base64",
            config(),
            signed(SHOPIFY_SIGNATURE.trim_end_matches('=').as_bytes()),
            SHOPIFY_BODY,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            secrets_config("shopify", &[SHOPIFY_ROTATED_SECRET]),
            valid(),
            SHOPIFY_BODY,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("shopify", &[SHOPIFY_SECRET, SHOPIFY_ROTATED_SECRET]),
            signed(SHOPIFY_ROTATED_SIGNATURE.as_bytes()),
            SHOPIFY_BODY,
            Expect::Ok,
        ),
        case(
            "missing header",
            config(),
            vec![],
            SHOPIFY_BODY,
            Expect::MissingHeader,
        ),
        case(
            "not base64",
            config(),
            signed(b"!!not base64!!"),
            SHOPIFY_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "hex where base64 is expected decodes to the wrong length",
            config(),
            signed(b"0e992a204949632d3b80d32daf82f2d73f544b3116de517383a78994cfbbc2d1"),
            SHOPIFY_BODY,
            Expect::BadSignature,
        ),
        case(
            "tampered body",
            config(),
            valid(),
            TAMPERED_BODY,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 value",
            config(),
            signed(b"\xff\xfe=="),
            SHOPIFY_BODY,
            Expect::MalformedHeader,
        ),
    ]);
}

#[test]
fn generic_hmac_cases() {
    let config = |extra: &str| {
        format!(
            "{}, header = \"X-Signature\"{extra}",
            secrets_config("hmac", &[HMAC_SECRET])
        )
    };
    let signed = |value: &[u8]| vec![h("x-signature", value)];
    let case = |name, config: String, headers, body, expect| Case {
        name,
        config,
        headers,
        body,
        now: 0,
        expect,
    };
    check(vec![
        case(
            "defaults: sha256, hex",
            config(""),
            signed(HMAC_SHA256_HEX.as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "sha256, hex, prefix",
            config(", algorithm = \"sha256\", encoding = \"hex\", prefix = \"sha256=\""),
            signed(format!("sha256={HMAC_SHA256_HEX}").as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "sha256, base64",
            config(", encoding = \"base64\""),
            signed(HMAC_SHA256_BASE64.as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "sha512, hex",
            config(", algorithm = \"sha512\""),
            signed(HMAC_SHA512_HEX.as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "sha512, base64",
            config(", algorithm = \"sha512\", encoding = \"base64\""),
            signed(HMAC_SHA512_BASE64.as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "sha1, upper-case hex",
            config(", algorithm = \"sha1\""),
            signed(HMAC_SHA1_HEX.to_uppercase().as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "sha1, base64, prefix",
            config(", algorithm = \"sha1\", encoding = \"base64\", prefix = \"sha1=\""),
            signed(format!("sha1={HMAC_SHA1_BASE64}").as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "header name in another case",
            config(""),
            vec![h("X-SIGNATURE", HMAC_SHA256_HEX)],
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "wrong algorithm",
            config(", algorithm = \"sha512\""),
            signed(HMAC_SHA256_HEX.as_bytes()),
            HMAC_BODY,
            Expect::BadSignature,
        ),
        case(
            "wrong secret",
            format!(
                "{}, header = \"X-Signature\"",
                secrets_config("hmac", &["other"])
            ),
            signed(HMAC_SHA256_HEX.as_bytes()),
            HMAC_BODY,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            format!(
                "{}, header = \"X-Signature\"",
                secrets_config("hmac", &["other", HMAC_SECRET])
            ),
            signed(HMAC_SHA256_HEX.as_bytes()),
            HMAC_BODY,
            Expect::Ok,
        ),
        case(
            "missing header",
            config(""),
            vec![h("x-other", HMAC_SHA256_HEX)],
            HMAC_BODY,
            Expect::MissingHeader,
        ),
        case(
            "prefix missing",
            config(", prefix = \"sha256=\""),
            signed(HMAC_SHA256_HEX.as_bytes()),
            HMAC_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "not hex",
            config(""),
            signed(b"zz"),
            HMAC_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "odd-length hex",
            config(""),
            signed(b"abc"),
            HMAC_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "too long to be any digest",
            config(""),
            signed("ab".repeat(65).as_bytes()),
            HMAC_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "tampered body",
            config(""),
            signed(HMAC_SHA256_HEX.as_bytes()),
            TAMPERED_BODY,
            Expect::BadSignature,
        ),
        case(
            "non-UTF-8 value",
            config(""),
            signed(b"\xc3\x28\xa0\xa1"),
            HMAC_BODY,
            Expect::MalformedHeader,
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// Bearer and none.
// ---------------------------------------------------------------------------------

#[test]
fn bearer_cases() {
    let config = || secrets_config("bearer", &["tok_first", "tok_second"]);
    let auth = |value: &[u8]| vec![h("authorization", value)];
    let case = |name, config: String, headers, expect| Case {
        name,
        config,
        headers,
        body: b"{}",
        now: 0,
        expect,
    };
    check(vec![
        case(
            "first token",
            config(),
            auth(b"Bearer tok_first"),
            Expect::Ok,
        ),
        case(
            "rotation: second token",
            config(),
            auth(b"Bearer tok_second"),
            Expect::Ok,
        ),
        case(
            "scheme in lower case",
            config(),
            auth(b"bearer tok_first"),
            Expect::Ok,
        ),
        case(
            "extra spaces",
            config(),
            auth(b"Bearer   tok_first"),
            Expect::Ok,
        ),
        case(
            "wrong token",
            config(),
            auth(b"Bearer tok_third"),
            Expect::BadSignature,
        ),
        case(
            "prefix of a token",
            config(),
            auth(b"Bearer tok_fir"),
            Expect::BadSignature,
        ),
        case(
            "token with a suffix",
            config(),
            auth(b"Bearer tok_first2"),
            Expect::BadSignature,
        ),
        case("missing header", config(), vec![], Expect::MissingHeader),
        case(
            "basic auth",
            config(),
            auth(b"Basic dG9rX2ZpcnN0"),
            Expect::MalformedHeader,
        ),
        case(
            "no token",
            config(),
            auth(b"Bearer"),
            Expect::MalformedHeader,
        ),
        case(
            "bare token",
            config(),
            auth(b"tok_first"),
            Expect::MalformedHeader,
        ),
        case(
            "non-UTF-8 token",
            config(),
            auth(b"Bearer \xfftok"),
            Expect::BadSignature,
        ),
    ]);
}

#[test]
fn none_accepts_anything() {
    let case = |name, headers| Case {
        name,
        config: "scheme = \"none\"".to_owned(),
        headers,
        body: b"\xff\x00anything",
        now: i64::MIN,
        expect: Expect::Ok,
    };
    check(vec![
        case("no headers", vec![]),
        case(
            "a bogus signature",
            vec![h("webhook-signature", "v1,bogus")],
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// Meta, Zoom, Twilio and SendGrid.
// ---------------------------------------------------------------------------------

fn meta_config(secrets: &[&str]) -> String {
    format!(
        "{}, verify_token = {META_VERIFY_TOKEN:?}",
        secrets_config("meta", secrets)
    )
}

#[test]
fn meta_cases() {
    let signed = |value: &[u8]| vec![h("x-hub-signature-256", value)];
    let valid = || signed(META_SIGNATURE.as_bytes());
    let case = |name, config: String, headers, body, expect| Case {
        name,
        config,
        headers,
        body,
        // Meta signs no timestamp.
        now: 0,
        expect,
    };
    check(vec![
        case(
            "docs recipe vector",
            meta_config(&[META_SECRET]),
            valid(),
            META_BODY,
            Expect::Ok,
        ),
        case(
            "provider-case header name, with Meta's legacy sha1 header beside it",
            meta_config(&[META_SECRET]),
            vec![
                h(
                    "X-Hub-Signature",
                    "sha1=0000000000000000000000000000000000000000",
                ),
                h("X-Hub-Signature-256", META_SIGNATURE),
            ],
            META_BODY,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            meta_config(&[META_ROTATED_SECRET]),
            valid(),
            META_BODY,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            meta_config(&[META_SECRET, META_ROTATED_SECRET]),
            signed(META_ROTATED_SIGNATURE.as_bytes()),
            META_BODY,
            Expect::Ok,
        ),
        case(
            "tampered body",
            meta_config(&[META_SECRET]),
            valid(),
            TAMPERED_BODY,
            Expect::BadSignature,
        ),
        case(
            "only the legacy sha1 header",
            meta_config(&[META_SECRET]),
            vec![h(
                "x-hub-signature",
                "sha1=0000000000000000000000000000000000000000",
            )],
            META_BODY,
            Expect::MissingHeader,
        ),
        case(
            "no sha256= prefix",
            meta_config(&[META_SECRET]),
            signed(&META_SIGNATURE.as_bytes()[7..]),
            META_BODY,
            Expect::MalformedHeader,
        ),
        case(
            "not hex",
            meta_config(&[META_SECRET]),
            signed(b"sha256=xyz"),
            META_BODY,
            Expect::MalformedHeader,
        ),
    ]);
}

#[test]
fn zoom_cases() {
    let config = || secrets_config("zoom", &[ZOOM_SECRET]);
    let ts = ZOOM_TIMESTAMP.to_string();
    let headers = |timestamp: &[u8], signature: &[u8]| {
        vec![
            h("x-zm-request-timestamp", timestamp),
            h("x-zm-signature", signature),
        ]
    };
    let valid = || headers(ts.as_bytes(), ZOOM_SIGNATURE.as_bytes());
    let case = |name, config: String, headers, body, now, expect| Case {
        name,
        config,
        headers,
        body,
        now,
        expect,
    };
    let now = ZOOM_TIMESTAMP;
    check(vec![
        case(
            "docs recipe vector",
            config(),
            valid(),
            ZOOM_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "the URL validation event is signed the same way",
            config(),
            headers(ts.as_bytes(), ZOOM_VALIDATION_SIGNATURE.as_bytes()),
            ZOOM_VALIDATION_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "wrong secret",
            secrets_config("zoom", &[ZOOM_ROTATED_SECRET]),
            valid(),
            ZOOM_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "rotation: second secret matches",
            secrets_config("zoom", &[ZOOM_SECRET, ZOOM_ROTATED_SECRET]),
            headers(ts.as_bytes(), ZOOM_ROTATED_SIGNATURE.as_bytes()),
            ZOOM_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "tampered body",
            config(),
            valid(),
            TAMPERED_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "tampered timestamp",
            config(),
            headers(b"1658940995", ZOOM_SIGNATURE.as_bytes()),
            ZOOM_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "stale: just outside tolerance, past",
            config(),
            valid(),
            ZOOM_BODY,
            now + FIVE_MINUTES + 1,
            Expect::OutOfTolerance,
        ),
        case(
            "just inside tolerance, past",
            config(),
            valid(),
            ZOOM_BODY,
            now + FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "just outside tolerance, future",
            config(),
            valid(),
            ZOOM_BODY,
            now - FIVE_MINUTES - 1,
            Expect::OutOfTolerance,
        ),
        case(
            "a configured tolerance",
            format!("{}, tolerance = \"10m\"", config()),
            valid(),
            ZOOM_BODY,
            now + 2 * FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "missing signature",
            config(),
            vec![h("x-zm-request-timestamp", &ts)],
            ZOOM_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "missing timestamp",
            config(),
            vec![h("x-zm-signature", ZOOM_SIGNATURE)],
            ZOOM_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "signature without v0=",
            config(),
            headers(ts.as_bytes(), &ZOOM_SIGNATURE.as_bytes()[3..]),
            ZOOM_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "timestamp in milliseconds is still a number, and far off",
            config(),
            headers(b"1658940994914", ZOOM_SIGNATURE.as_bytes()),
            ZOOM_BODY,
            now,
            Expect::OutOfTolerance,
        ),
        case(
            "timestamp not a number",
            config(),
            headers(b"soon", ZOOM_SIGNATURE.as_bytes()),
            ZOOM_BODY,
            now,
            Expect::MalformedHeader,
        ),
    ]);
}

fn twilio_config(tokens: &[&str], url: &str) -> String {
    format!("{}, url = {url:?}", secrets_config("twilio", tokens))
}

#[test]
fn twilio_cases() {
    let config = |url: &str| twilio_config(&[TWILIO_TOKEN], url);
    let form = |signature: &str| {
        vec![
            h("content-type", FORM_CONTENT_TYPE),
            h("x-twilio-signature", signature),
        ]
    };
    let json = |signature: &str| {
        vec![
            h("content-type", "application/json"),
            h("x-twilio-signature", signature),
        ]
    };
    let http_url = TWILIO_URL.replace("https", "http");
    let case = |name, config: String, headers, body, expect| Case {
        name,
        config,
        headers,
        body,
        // Twilio signs no timestamp.
        now: 0,
        expect,
    };
    check(vec![
        case(
            "twilio-python's vector, fields in another order",
            config(TWILIO_URL),
            form(TWILIO_SIGNATURE),
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "provider-case header names and a charset",
            config(TWILIO_URL),
            vec![
                h("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8"),
                h("X-Twilio-Signature", TWILIO_SIGNATURE),
            ],
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "the same fields encoded otherwise",
            config(TWILIO_URL),
            form(TWILIO_SIGNATURE),
            b"To=%2B18005551212&&From=%2b14158675309&CallSid=%43A1234567890ABCDE&Digits=1234&Caller=%2B14158675309&",
            Expect::Ok,
        ),
        case(
            "a field changed",
            config(TWILIO_URL),
            form(TWILIO_SIGNATURE),
            b"To=%2B18005551212&From=%2B14158675309&CallSid=CA1234567890ABCDE&Digits=1235&Caller=%2B14158675309",
            Expect::BadSignature,
        ),
        case(
            "a field added",
            config(TWILIO_URL),
            form(TWILIO_SIGNATURE),
            b"To=%2B18005551212&From=%2B14158675309&CallSid=CA1234567890ABCDE&Digits=1234&Caller=%2B14158675309&Extra=1",
            Expect::BadSignature,
        ),
        case(
            "wrong token",
            twilio_config(&[TWILIO_ROTATED_TOKEN], TWILIO_URL),
            form(TWILIO_SIGNATURE),
            TWILIO_FORM,
            Expect::BadSignature,
        ),
        case(
            "another URL configured",
            config("https://mycompany.com/myapp.php?foo=1&bar=3"),
            form(TWILIO_SIGNATURE),
            TWILIO_FORM,
            Expect::BadSignature,
        ),
        case(
            "a fragment (connection overrides) is not signed",
            config(&format!("{TWILIO_URL}#rc=3&rp=all")),
            form(TWILIO_SIGNATURE),
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "signed with :443, configured without a port",
            config(TWILIO_URL),
            form(TWILIO_PORT_443_SIGNATURE),
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "signed without a port, configured with :1234",
            config(&TWILIO_URL.replace(".com", ".com:1234")),
            form(TWILIO_SIGNATURE),
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "http, signed with :80",
            config(&http_url),
            form(TWILIO_HTTP_PORT_80_SIGNATURE),
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "http, signed and configured with :1234",
            config(&http_url.replace(".com", ".com:1234")),
            form(TWILIO_HTTP_PORT_1234_SIGNATURE),
            TWILIO_FORM,
            Expect::Ok,
        ),
        case(
            "a repeated field: every distinct value, sorted",
            config(TWILIO_URL),
            form(TWILIO_DUPLICATES_SIGNATURE),
            TWILIO_DUPLICATES_FORM,
            Expect::Ok,
        ),
        case(
            "a repeated pair counts once, as in the library",
            config(TWILIO_URL),
            form(TWILIO_DUPLICATES_SIGNATURE),
            b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234",
            Expect::Ok,
        ),
        case(
            "a JSON body through bodySHA256",
            config(TWILIO_URL),
            json(TWILIO_JSON_SIGNATURE),
            TWILIO_JSON_BODY,
            Expect::Ok,
        ),
        case(
            "a JSON body tampered",
            config(TWILIO_URL),
            json(TWILIO_JSON_SIGNATURE),
            br#"{"property": "value", "boolean": false}"#,
            Expect::BadSignature,
        ),
        case(
            "a JSON body announced as a form",
            config(TWILIO_URL),
            form(TWILIO_JSON_SIGNATURE),
            TWILIO_JSON_BODY,
            Expect::BadSignature,
        ),
        case(
            "a form announced as JSON",
            config(TWILIO_URL),
            json(TWILIO_SIGNATURE),
            TWILIO_FORM,
            Expect::BadSignature,
        ),
        case(
            "rotation: second token matches, value beyond ASCII",
            twilio_config(&[TWILIO_TOKEN, TWILIO_ROTATED_TOKEN], TWILIO_SMS_URL),
            form(TWILIO_SMS_ROTATED_SIGNATURE),
            TWILIO_SMS_FORM,
            Expect::Ok,
        ),
        case(
            "SharedKey with HMAC_SHA256",
            twilio_config(&[TWILIO_SHARED_KEY], TWILIO_SMS_URL),
            vec![
                h("content-type", FORM_CONTENT_TYPE),
                h(
                    "x-twilio-webhooks-signature-settings",
                    "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
                ),
                h("x-twilio-signature", TWILIO_SMS_SHA256_SIGNATURE),
            ],
            TWILIO_SMS_FORM,
            Expect::Ok,
        ),
        case(
            "an HMAC_SHA256 signature read as HMAC_SHA1",
            twilio_config(&[TWILIO_SHARED_KEY], TWILIO_SMS_URL),
            form(TWILIO_SMS_SHA256_SIGNATURE),
            TWILIO_SMS_FORM,
            Expect::BadSignature,
        ),
        case(
            "an algorithm the library does not know",
            config(TWILIO_URL),
            vec![
                h("content-type", FORM_CONTENT_TYPE),
                h("x-twilio-webhooks-signature-settings", "algorithm=HMAC_SHA512"),
                h("x-twilio-signature", TWILIO_SIGNATURE),
            ],
            TWILIO_FORM,
            Expect::MalformedHeader,
        ),
        case(
            "missing signature",
            config(TWILIO_URL),
            vec![h("content-type", FORM_CONTENT_TYPE)],
            TWILIO_FORM,
            Expect::MissingHeader,
        ),
        case(
            "signature not base64",
            config(TWILIO_URL),
            form("not base64!"),
            TWILIO_FORM,
            Expect::MalformedHeader,
        ),
    ]);
}

fn sendgrid_config(public_keys: &[&str]) -> String {
    let quoted: Vec<String> = public_keys.iter().map(|key| format!("{key:?}")).collect();
    format!(
        "scheme = \"sendgrid\", public_key = [{}]",
        quoted.join(", ")
    )
}

#[test]
fn sendgrid_cases() {
    let headers = |timestamp: &[u8], signature: &[u8]| {
        vec![
            h("x-twilio-email-event-webhook-timestamp", timestamp),
            h("x-twilio-email-event-webhook-signature", signature),
        ]
    };
    let docs_ts = SENDGRID_DOCS_TIMESTAMP.to_string();
    let ts = SENDGRID_TIMESTAMP.to_string();
    let docs = || headers(docs_ts.as_bytes(), SENDGRID_DOCS_SIGNATURE.as_bytes());
    let valid = || headers(ts.as_bytes(), SENDGRID_SIGNATURE.as_bytes());
    let case = |name, config: String, headers, body, now, expect| Case {
        name,
        config,
        headers,
        body,
        now,
        expect,
    };
    let docs_now = SENDGRID_DOCS_TIMESTAMP;
    let now = SENDGRID_TIMESTAMP;
    check(vec![
        case(
            "SendGrid's own vector",
            sendgrid_config(&[SENDGRID_DOCS_PUBLIC_KEY]),
            docs(),
            SENDGRID_DOCS_BODY,
            docs_now,
            Expect::Ok,
        ),
        case(
            "a key given as one string",
            format!("scheme = \"sendgrid\", public_key = {SENDGRID_DOCS_PUBLIC_KEY:?}"),
            docs(),
            SENDGRID_DOCS_BODY,
            docs_now,
            Expect::Ok,
        ),
        case(
            "a key pasted as PEM",
            format!(
                "scheme = \"sendgrid\", public_key = \"-----BEGIN PUBLIC KEY-----\\n{}\\n{}\\n-----END PUBLIC KEY-----\\n\"",
                &SENDGRID_DOCS_PUBLIC_KEY[..64],
                &SENDGRID_DOCS_PUBLIC_KEY[64..]
            ),
            docs(),
            SENDGRID_DOCS_BODY,
            docs_now,
            Expect::Ok,
        ),
        case(
            "SendGrid's vector under its other key",
            sendgrid_config(&[SENDGRID_DOCS_OTHER_PUBLIC_KEY]),
            docs(),
            SENDGRID_DOCS_BODY,
            docs_now,
            Expect::BadSignature,
        ),
        case(
            "SendGrid's vector with another payload",
            sendgrid_config(&[SENDGRID_DOCS_PUBLIC_KEY]),
            docs(),
            b"payload",
            docs_now,
            Expect::BadSignature,
        ),
        case(
            "SendGrid's tampered signature",
            sendgrid_config(&[SENDGRID_DOCS_PUBLIC_KEY]),
            headers(
                docs_ts.as_bytes(),
                b"MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=",
            ),
            SENDGRID_DOCS_BODY,
            docs_now,
            Expect::BadSignature,
        ),
        case(
            "SendGrid's vector with a timestamp that is not one",
            sendgrid_config(&[SENDGRID_DOCS_PUBLIC_KEY]),
            headers(b"timestamp", SENDGRID_DOCS_SIGNATURE.as_bytes()),
            SENDGRID_DOCS_BODY,
            docs_now,
            Expect::MalformedHeader,
        ),
        case(
            "an event batch, s above n/2",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            valid(),
            SENDGRID_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "the same signature with s below n/2",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            headers(ts.as_bytes(), SENDGRID_LOW_S_SIGNATURE.as_bytes()),
            SENDGRID_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "wrong key",
            sendgrid_config(&[SENDGRID_ROTATED_PUBLIC_KEY]),
            valid(),
            SENDGRID_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "rotation: second key matches",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY, SENDGRID_ROTATED_PUBLIC_KEY]),
            headers(ts.as_bytes(), SENDGRID_ROTATED_SIGNATURE.as_bytes()),
            SENDGRID_BODY,
            now,
            Expect::Ok,
        ),
        case(
            "tampered body",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            valid(),
            TAMPERED_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "tampered timestamp",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            headers(b"1700000001", SENDGRID_SIGNATURE.as_bytes()),
            SENDGRID_BODY,
            now,
            Expect::BadSignature,
        ),
        case(
            "stale: just outside tolerance",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            valid(),
            SENDGRID_BODY,
            now + FIVE_MINUTES + 1,
            Expect::OutOfTolerance,
        ),
        case(
            "just inside tolerance",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            valid(),
            SENDGRID_BODY,
            now - FIVE_MINUTES,
            Expect::Ok,
        ),
        case(
            "missing signature",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            vec![h("x-twilio-email-event-webhook-timestamp", &ts)],
            SENDGRID_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "missing timestamp",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            vec![h("x-twilio-email-event-webhook-signature", SENDGRID_SIGNATURE)],
            SENDGRID_BODY,
            now,
            Expect::MissingHeader,
        ),
        case(
            "signature not base64",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            headers(ts.as_bytes(), b"not base64!"),
            SENDGRID_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "base64 but not DER",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            headers(ts.as_bytes(), b"AAAA"),
            SENDGRID_BODY,
            now,
            Expect::MalformedHeader,
        ),
        case(
            "far too long",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY]),
            headers(ts.as_bytes(), "A".repeat(4096).as_bytes()),
            SENDGRID_BODY,
            now,
            Expect::MalformedHeader,
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// Handshakes: Slack's and Zoom's URL checks, Meta's subscription check.
// ---------------------------------------------------------------------------------

fn reply_json(reply: &HandshakeReply) -> serde_json::Value {
    assert_eq!(reply.content_type, "application/json");
    serde_json::from_slice(&reply.body).expect("a JSON answer")
}

#[test]
fn slack_answers_a_signed_url_verification() {
    let slack = verifier(&secrets_config("slack", &[SLACK_SECRET]));
    let ts = SLACK_TIMESTAMP.to_string();
    let signed = header_map(&[
        h("x-slack-request-timestamp", &ts),
        h("x-slack-signature", SLACK_URL_VERIFICATION_SIGNATURE),
    ]);
    let handshake = |method: &Method, headers: &HeaderMap, body: &[u8], now| {
        slack.handshake(method, None, headers, body, now)
    };
    let reply = handshake(
        &Method::POST,
        &signed,
        SLACK_URL_VERIFICATION_BODY,
        SLACK_TIMESTAMP,
    )
    .expect("a handshake")
    .expect("answered");
    assert_eq!(
        reply_json(&reply),
        serde_json::json!({ "challenge": SLACK_CHALLENGE })
    );

    // Unsigned, forged or stale: 401 like any request.
    for (headers, now, expected) in [
        (
            HeaderMap::new(),
            SLACK_TIMESTAMP,
            VerifyError::MissingHeader("X-Slack-Signature".into()),
        ),
        (
            header_map(&[
                h("x-slack-request-timestamp", &ts),
                h("x-slack-signature", SLACK_SIGNATURE),
            ]),
            SLACK_TIMESTAMP,
            VerifyError::BadSignature,
        ),
        (
            signed.clone(),
            SLACK_TIMESTAMP + FIVE_MINUTES + 1,
            VerifyError::TimestampOutOfTolerance,
        ),
    ] {
        let error = handshake(&Method::POST, &headers, SLACK_URL_VERIFICATION_BODY, now)
            .expect("a handshake")
            .expect_err("refused");
        assert_eq!(error, HandshakeError::Signature(expected));
        assert_eq!(error.status(), http::StatusCode::UNAUTHORIZED);
    }

    // Not a handshake: events, a body that only mentions the word, non-JSON, a GET.
    let mention = br#"{"type":"event_callback","event":{"text":"url_verification"}}"#;
    for (method, body) in [
        (&Method::POST, SLACK_ROTATED_BODY),
        (&Method::POST, &mention[..]),
        (&Method::POST, SLACK_BODY),
        (&Method::POST, b"url_verification"),
        (&Method::GET, SLACK_URL_VERIFICATION_BODY),
    ] {
        assert!(
            handshake(method, &signed, body, SLACK_TIMESTAMP).is_none(),
            "{method} {}",
            String::from_utf8_lossy(body)
        );
    }

    // Authentic but without a challenge: 400.
    let body = br#"{"type":"url_verification"}"#;
    let headers: HeaderMap = slack
        .sign(body, "id", SLACK_TIMESTAMP)
        .into_iter()
        .collect();
    let error = handshake(&Method::POST, &headers, body, SLACK_TIMESTAMP)
        .expect("a handshake")
        .expect_err("refused");
    assert_eq!(error, HandshakeError::Malformed("no challenge"));
    assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
}

#[test]
fn zoom_answers_a_signed_url_validation_with_the_documented_hmac() {
    let ts = ZOOM_TIMESTAMP.to_string();
    let signed = header_map(&[
        h("x-zm-request-timestamp", &ts),
        h("x-zm-signature", ZOOM_VALIDATION_SIGNATURE),
    ]);
    let answer = |config: &str, headers: &HeaderMap, body: &[u8], now| {
        verifier(config).handshake(&Method::POST, None, headers, body, now)
    };
    let reply = answer(
        &secrets_config("zoom", &[ZOOM_SECRET]),
        &signed,
        ZOOM_VALIDATION_BODY,
        ZOOM_TIMESTAMP,
    )
    .expect("a handshake")
    .expect("answered");
    assert_eq!(
        reply_json(&reply),
        serde_json::json!({ "plainToken": ZOOM_PLAIN_TOKEN, "encryptedToken": ZOOM_ENCRYPTED_TOKEN })
    );

    // During a rotation the request may be signed with either secret; the answer is keyed
    // with the first one (SPEC §3).
    let reply = answer(
        &secrets_config("zoom", &[ZOOM_ROTATED_SECRET, ZOOM_SECRET]),
        &signed,
        ZOOM_VALIDATION_BODY,
        ZOOM_TIMESTAMP,
    )
    .expect("a handshake")
    .expect("answered");
    assert_eq!(
        reply_json(&reply)["encryptedToken"],
        ZOOM_ROTATED_ENCRYPTED_TOKEN
    );

    for (config, headers, now, expected) in [
        (
            secrets_config("zoom", &[ZOOM_ROTATED_SECRET]),
            signed.clone(),
            ZOOM_TIMESTAMP,
            VerifyError::BadSignature,
        ),
        (
            secrets_config("zoom", &[ZOOM_SECRET]),
            HeaderMap::new(),
            ZOOM_TIMESTAMP,
            VerifyError::MissingHeader("x-zm-signature".into()),
        ),
        (
            secrets_config("zoom", &[ZOOM_SECRET]),
            signed.clone(),
            ZOOM_TIMESTAMP - FIVE_MINUTES - 1,
            VerifyError::TimestampOutOfTolerance,
        ),
    ] {
        let error = answer(&config, &headers, ZOOM_VALIDATION_BODY, now)
            .expect("a handshake")
            .expect_err("refused");
        assert_eq!(error, HandshakeError::Signature(expected), "{config}");
    }

    let zoom = verifier(&secrets_config("zoom", &[ZOOM_SECRET]));
    let event_headers = header_map(&[
        h("x-zm-request-timestamp", &ts),
        h("x-zm-signature", ZOOM_SIGNATURE),
    ]);
    assert!(
        zoom.handshake(
            &Method::POST,
            None,
            &event_headers,
            ZOOM_BODY,
            ZOOM_TIMESTAMP
        )
        .is_none()
    );
    assert!(
        zoom.handshake(
            &Method::GET,
            None,
            &signed,
            ZOOM_VALIDATION_BODY,
            ZOOM_TIMESTAMP
        )
        .is_none()
    );
    let body = br#"{"event":"endpoint.url_validation","payload":{}}"#;
    let headers: HeaderMap = zoom.sign(body, "id", ZOOM_TIMESTAMP).into_iter().collect();
    assert_eq!(
        zoom.handshake(&Method::POST, None, &headers, body, ZOOM_TIMESTAMP),
        Some(Err(HandshakeError::Malformed("no payload.plainToken")))
    );
}

#[test]
fn meta_answers_its_subscription_check_when_the_token_matches() {
    let meta = verifier(&meta_config(&[META_SECRET]));
    let get = |query: Option<&str>| meta.handshake(&Method::GET, query, &HeaderMap::new(), b"", 0);
    let reply = get(Some(
        "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify-token-7f3a",
    ))
    .expect("a handshake")
    .expect("answered");
    assert_eq!(reply.content_type, "text/plain");
    assert_eq!(reply.body, b"1158201444");
    // Values are percent-decoded as in any query.
    let reply = get(Some(
        "hub.mode=subscribe&hub.verify_token=meta%2Dverify%2Dtoken%2D7f3a&hub.challenge=a+b%26c",
    ))
    .expect("a handshake")
    .expect("answered");
    assert_eq!(reply.body, b"a b&c");

    for (query, expected) in [
        (
            Some("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"),
            HandshakeError::WrongVerifyToken,
        ),
        (
            Some("hub.mode=subscribe&hub.verify_token=meta-verify-token-7f3&hub.challenge=1"),
            HandshakeError::WrongVerifyToken,
        ),
        (
            Some("hub.mode=subscribe&hub.challenge=1"),
            HandshakeError::WrongVerifyToken,
        ),
        (None, HandshakeError::WrongVerifyToken),
        (
            Some("hub.mode=unsubscribe&hub.verify_token=meta-verify-token-7f3a&hub.challenge=1"),
            HandshakeError::Malformed("hub.mode is not subscribe"),
        ),
        (
            Some("hub.mode=subscribe&hub.verify_token=meta-verify-token-7f3a"),
            HandshakeError::Malformed("no hub.challenge"),
        ),
    ] {
        assert_eq!(get(query), Some(Err(expected.clone())), "{query:?}");
    }
    assert_eq!(
        HandshakeError::WrongVerifyToken.status(),
        http::StatusCode::FORBIDDEN
    );
    assert_eq!(
        HandshakeError::WrongVerifyToken.to_string(),
        "hub.verify_token does not match"
    );
    // Events come as signed POSTs: not a handshake.
    let signed = header_map(&[h("x-hub-signature-256", META_SIGNATURE)]);
    assert!(
        meta.handshake(&Method::POST, None, &signed, META_BODY, 0)
            .is_none()
    );
}

#[test]
fn only_slack_zoom_and_meta_have_handshakes() {
    for config in every_scheme_config() {
        let verifier = verifier(&config);
        let scheme = verifier.scheme();
        assert_eq!(
            verifier.answers_get(),
            scheme == SchemeName::Meta,
            "{config}"
        );
        let probe = verifier.sign_handshake("challenge-1", 1_750_000_000);
        let has_handshake = matches!(
            scheme,
            SchemeName::Slack | SchemeName::Zoom | SchemeName::Meta
        );
        assert_eq!(probe.is_some(), has_handshake, "{config}");
        if !has_handshake {
            for method in [Method::GET, Method::POST] {
                for body in [SLACK_URL_VERIFICATION_BODY, ZOOM_VALIDATION_BODY] {
                    assert!(
                        verifier
                            .handshake(
                                &method,
                                Some("hub.mode=subscribe"),
                                &HeaderMap::new(),
                                body,
                                0
                            )
                            .is_none(),
                        "{config}"
                    );
                }
            }
        }
    }
}

/// What `oncehook send --handshake` sends is answered as the provider expects.
#[test]
fn signed_handshakes_are_answered() {
    let now = 1_750_000_000;
    for config in [
        secrets_config("slack", &[SLACK_SECRET, SLACK_ROTATED_SECRET]),
        secrets_config("zoom", &[ZOOM_SECRET]),
        meta_config(&[META_SECRET]),
    ] {
        let verifier = verifier(&config);
        let probe = verifier
            .sign_handshake("challenge-1", now)
            .unwrap_or_else(|| panic!("{config}: a handshake"));
        let headers: HeaderMap = probe.headers.iter().cloned().collect();
        let reply = verifier
            .handshake(
                &probe.method,
                probe.query.as_deref(),
                &headers,
                &probe.body,
                now,
            )
            .expect("a handshake")
            .expect("answered");
        assert_eq!(reply, probe.expected, "{config}");
        match verifier.scheme() {
            SchemeName::Slack => {
                assert_eq!(
                    reply_json(&reply),
                    serde_json::json!({"challenge": "challenge-1"})
                );
            }
            SchemeName::Zoom => assert_eq!(
                reply_json(&reply),
                serde_json::json!({
                    "plainToken": "challenge-1",
                    // hmac.new(b"Fd1kSs0ARKyDq7GmP3jLVQ", b"challenge-1", hashlib.sha256).hexdigest()
                    "encryptedToken": "c722544cf32d8e1ff21997dc179545cb471fc622b3d11a8086745fcfc2541f20",
                })
            ),
            _ => {
                assert_eq!(probe.method, Method::GET);
                assert_eq!(reply.body, b"challenge-1");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Signing reproduces the providers' own output, and round-trips.
// ---------------------------------------------------------------------------------

fn signed_value(signed: &[(HeaderName, HeaderValue)], name: &str) -> Option<Vec<u8>> {
    signed
        .iter()
        .find(|(header, _)| header.as_str().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_bytes().to_vec())
}

#[test]
fn sign_reproduces_provider_vectors() {
    struct SignCase {
        config: String,
        body: &'static [u8],
        message_id: &'static str,
        now: i64,
        expected: Vec<(&'static str, &'static str)>,
    }
    let standard_ts: &'static str = "1614265330";
    let svix_ts: &'static str = "1700000000";
    let slack_ts: &'static str = "1531420618";
    let zoom_ts: &'static str = "1658940994";
    let sendgrid_ts: &'static str = "1700000000";
    let cases = vec![
        SignCase {
            config: secrets_config("standard", &[STANDARD_SECRET]),
            body: STANDARD_BODY,
            message_id: STANDARD_MSG_ID,
            now: STANDARD_TIMESTAMP,
            expected: vec![
                ("webhook-id", STANDARD_MSG_ID),
                ("webhook-timestamp", standard_ts),
                ("webhook-signature", STANDARD_SIGNATURE),
            ],
        },
        SignCase {
            config: secrets_config("svix", &[SVIX_SECRET, SVIX_ROTATED_SECRET]),
            body: SVIX_BODY,
            message_id: SVIX_MSG_ID,
            now: SVIX_TIMESTAMP,
            expected: vec![
                ("svix-id", SVIX_MSG_ID),
                ("svix-timestamp", svix_ts),
                ("svix-signature", SVIX_SIGNATURE),
            ],
        },
        SignCase {
            config: secrets_config("stripe", &[STRIPE_SECRET]),
            body: STRIPE_BODY,
            message_id: "unused",
            now: STRIPE_TIMESTAMP,
            expected: vec![("stripe-signature", STRIPE_HEADER)],
        },
        SignCase {
            config: secrets_config("slack", &[SLACK_SECRET]),
            body: SLACK_BODY,
            message_id: "unused",
            now: SLACK_TIMESTAMP,
            expected: vec![
                ("x-slack-signature", SLACK_SIGNATURE),
                ("x-slack-request-timestamp", slack_ts),
            ],
        },
        SignCase {
            config: secrets_config("github", &[GITHUB_SECRET]),
            body: GITHUB_BODY,
            message_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            now: 0,
            expected: vec![
                ("x-hub-signature-256", GITHUB_SIGNATURE),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("x-github-event", "ping"),
            ],
        },
        SignCase {
            config: secrets_config("shopify", &[SHOPIFY_SECRET]),
            body: SHOPIFY_BODY,
            message_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            now: 0,
            expected: vec![
                ("x-shopify-hmac-sha256", SHOPIFY_SIGNATURE),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
                ("x-shopify-topic", "orders/create"),
            ],
        },
        SignCase {
            config: format!(
                "{}, header = \"X-Signature\", algorithm = \"sha512\", encoding = \"base64\"",
                secrets_config("hmac", &[HMAC_SECRET])
            ),
            body: HMAC_BODY,
            message_id: "unused",
            now: 0,
            expected: vec![("x-signature", HMAC_SHA512_BASE64)],
        },
        SignCase {
            config: format!(
                "{}, header = \"X-Signature\", prefix = \"sha256=\"",
                secrets_config("hmac", &[HMAC_SECRET])
            ),
            body: HMAC_BODY,
            message_id: "unused",
            now: 0,
            expected: vec![(
                "x-signature",
                "sha256=3053fc734812c0d5ae23be2124c56442b5fdd2462c53186f102fb523b81fc671",
            )],
        },
        SignCase {
            config: secrets_config("bearer", &["tok_first", "tok_second"]),
            body: b"{}",
            message_id: "unused",
            now: 0,
            expected: vec![("authorization", "Bearer tok_first")],
        },
        SignCase {
            config: meta_config(&[META_SECRET, META_ROTATED_SECRET]),
            body: META_BODY,
            message_id: "unused",
            now: 0,
            expected: vec![("x-hub-signature-256", META_SIGNATURE)],
        },
        SignCase {
            config: secrets_config("zoom", &[ZOOM_SECRET]),
            body: ZOOM_BODY,
            message_id: "unused",
            now: ZOOM_TIMESTAMP,
            expected: vec![
                ("x-zm-signature", ZOOM_SIGNATURE),
                ("x-zm-request-timestamp", zoom_ts),
            ],
        },
        SignCase {
            config: twilio_config(&[TWILIO_TOKEN], TWILIO_URL),
            body: TWILIO_FORM,
            message_id: "idem_4f1c",
            now: 0,
            expected: vec![
                ("x-twilio-signature", TWILIO_SIGNATURE),
                ("content-type", FORM_CONTENT_TYPE),
                ("i-twilio-idempotency-token", "idem_4f1c"),
            ],
        },
        SignCase {
            config: twilio_config(&[TWILIO_TOKEN], TWILIO_URL),
            body: TWILIO_JSON_BODY,
            message_id: "idem_4f1c",
            now: 0,
            expected: vec![
                ("x-twilio-signature", TWILIO_JSON_SIGNATURE),
                ("content-type", "application/json"),
                ("i-twilio-idempotency-token", "idem_4f1c"),
            ],
        },
        // RFC 6979 on both sides: the same signature as cryptography's deterministic signer.
        SignCase {
            config: format!(
                "{}, private_key = {SENDGRID_PRIVATE_KEY:?}",
                sendgrid_config(&[SENDGRID_PUBLIC_KEY])
            ),
            body: SENDGRID_BODY,
            message_id: "unused",
            now: SENDGRID_TIMESTAMP,
            expected: vec![
                ("x-twilio-email-event-webhook-signature", SENDGRID_SIGNATURE),
                ("x-twilio-email-event-webhook-timestamp", sendgrid_ts),
            ],
        },
    ];
    for case in cases {
        let signed = verifier(&case.config).sign(case.body, case.message_id, case.now);
        let names: Vec<&str> = signed.iter().map(|(name, _)| name.as_str()).collect();
        let expected_names: Vec<&str> = case.expected.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, expected_names, "{}", case.config);
        for (name, value) in &case.expected {
            assert_eq!(
                signed_value(&signed, name).as_deref(),
                Some(value.as_bytes()),
                "{}: {name}",
                case.config
            );
        }
    }
}

/// One config per scheme and variant, with two secrets where the scheme takes secrets.
fn every_scheme_config() -> Vec<String> {
    vec![
        secrets_config("standard", &[STANDARD_SECRET, STANDARD_ROTATED_SECRET]),
        secrets_config("svix", &[SVIX_SECRET, SVIX_ROTATED_SECRET]),
        secrets_config("stripe", &[STRIPE_SECRET, STRIPE_ROTATED_SECRET]),
        secrets_config("github", &[GITHUB_SECRET, "second"]),
        secrets_config("slack", &[SLACK_SECRET, SLACK_ROTATED_SECRET]),
        secrets_config("shopify", &[SHOPIFY_SECRET, SHOPIFY_ROTATED_SECRET]),
        format!(
            "{}, header = \"X-Signature\"",
            secrets_config("hmac", &[HMAC_SECRET, "b"])
        ),
        format!(
            "{}, header = \"X-Sig\", algorithm = \"sha1\", encoding = \"base64\", prefix = \"v1=\"",
            secrets_config("hmac", &[HMAC_SECRET])
        ),
        format!(
            "{}, header = \"X-Sig\", algorithm = \"sha512\"",
            secrets_config("hmac", &[HMAC_SECRET])
        ),
        secrets_config("bearer", &["tok_first", "tok_second"]),
        meta_config(&[META_SECRET, META_ROTATED_SECRET]),
        secrets_config("zoom", &[ZOOM_SECRET, ZOOM_ROTATED_SECRET]),
        twilio_config(&[TWILIO_TOKEN, TWILIO_ROTATED_TOKEN], TWILIO_URL),
        twilio_config(&[TWILIO_TOKEN], "http://127.0.0.1:8080/webhooks/twilio"),
        format!(
            "{}, private_key = {SENDGRID_ROTATED_PRIVATE_KEY:?}",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY, SENDGRID_ROTATED_PUBLIC_KEY])
        ),
        "scheme = \"none\"".to_owned(),
    ]
}

#[test]
fn sign_then_verify_round_trips_for_every_scheme() {
    let now = 1_750_000_000;
    let bodies: [&[u8]; 3] = [b"", b"{\"id\":\"evt_1\"}", b"\xff\x00 not UTF-8 \r\n"];
    for config in every_scheme_config() {
        let verifier = verifier(&config);
        for body in bodies {
            let signed = verifier.sign(body, "msg_round_trip", now);
            let headers: HeaderMap = signed.into_iter().collect();
            assert_eq!(verifier.verify(&headers, body, now), Ok(()), "{config}");
            assert_eq!(
                verifier.verify(&headers, body, now + 60),
                Ok(()),
                "{config}"
            );
            if verifier.scheme() != SchemeName::None && verifier.scheme() != SchemeName::Bearer {
                assert_eq!(
                    verifier.verify(&headers, b"other body", now),
                    Err(VerifyError::BadSignature),
                    "{config}"
                );
            }
        }
    }
}

#[test]
fn sign_uses_the_first_secret() {
    let both = verifier(&secrets_config(
        "stripe",
        &[STRIPE_SECRET, STRIPE_ROTATED_SECRET],
    ));
    let first_only = verifier(&secrets_config("stripe", &[STRIPE_SECRET]));
    let second_only = verifier(&secrets_config("stripe", &[STRIPE_ROTATED_SECRET]));
    let headers: HeaderMap = both
        .sign(STRIPE_BODY, "id", STRIPE_TIMESTAMP)
        .into_iter()
        .collect();
    assert_eq!(
        first_only.verify(&headers, STRIPE_BODY, STRIPE_TIMESTAMP),
        Ok(())
    );
    assert_eq!(
        second_only.verify(&headers, STRIPE_BODY, STRIPE_TIMESTAMP),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn sign_replaces_characters_a_header_cannot_carry() {
    let verifier = verifier(&secrets_config("standard", &[STANDARD_SECRET]));
    let signed = verifier.sign(STANDARD_BODY, " msg\n1\u{e9} ", STANDARD_TIMESTAMP);
    assert_eq!(
        signed_value(&signed, "webhook-id").as_deref(),
        Some(&b"msg_1_"[..])
    );
    let headers: HeaderMap = signed.into_iter().collect();
    assert_eq!(
        verifier.verify(&headers, STANDARD_BODY, STANDARD_TIMESTAMP),
        Ok(())
    );
}

/// Found by the `verify_signature` fuzz target: an empty id made an empty `webhook-id`
/// header, which verification reads as missing.
#[test]
fn sign_with_an_empty_or_blank_message_id_still_verifies() {
    for config in every_scheme_config() {
        let verifier = verifier(&config);
        for message_id in ["", "   ", "\t\r\n"] {
            let signed = verifier.sign(STANDARD_BODY, message_id, STANDARD_TIMESTAMP);
            let headers: HeaderMap = signed.into_iter().collect();
            assert_eq!(
                verifier.verify(&headers, STANDARD_BODY, STANDARD_TIMESTAMP),
                Ok(()),
                "{config} with id {message_id:?}"
            );
        }
    }
    let standard = verifier(&secrets_config("standard", &[STANDARD_SECRET]));
    let signed = standard.sign(STANDARD_BODY, "", STANDARD_TIMESTAMP);
    assert_eq!(
        signed_value(&signed, "webhook-id").as_deref(),
        Some(&b"_"[..])
    );
}

#[test]
fn bearer_sign_marks_the_token_sensitive() {
    let signed = verifier(&secrets_config("bearer", &["tok_first"])).sign(b"", "id", 0);
    assert!(signed.iter().all(|(_, value)| value.is_sensitive()));
}

// ---------------------------------------------------------------------------------
// Hostile input never panics.
// ---------------------------------------------------------------------------------

/// Every header any scheme reads, filled with pseudo-random bytes (including
/// non-UTF-8 and huge numbers), against every scheme. Only a panic fails.
#[test]
fn arbitrary_header_bytes_never_panic() {
    let names = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "stripe-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-hub-signature-256",
        "x-shopify-hmac-sha256",
        "x-signature",
        "x-sig",
        "authorization",
        "x-zm-signature",
        "x-zm-request-timestamp",
        "x-twilio-signature",
        "x-twilio-webhooks-signature-settings",
        "content-type",
        "x-twilio-email-event-webhook-signature",
        "x-twilio-email-event-webhook-timestamp",
    ];
    let fragments: [&[u8]; 16] = [
        b"v1,",
        b"t=",
        b"v0=",
        b"sha256=",
        b"Bearer ",
        b",",
        b"=",
        b" ",
        b"99999999999999999999",
        b"\xff\xfe",
        b"1750000000",
        b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        b"algorithm=HMAC_SHA256",
        b"application/x-www-form-urlencoded",
        b"MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIg",
        b"MAYCAQACAQA=",
    ];
    let verifiers: Vec<Verifier> = every_scheme_config().iter().map(|c| verifier(c)).collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64: deterministic, so a failure reproduces.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut headers = HeaderMap::new();
        for name in names {
            if next() % 3 == 0 {
                continue;
            }
            let mut value = Vec::new();
            for _ in 0..(next() % 6) {
                match next() % 3 {
                    0 => value.extend_from_slice(fragments[(next() % 16) as usize]),
                    _ => {
                        // Bytes a header value may hold: tab, visible ASCII, obs-text.
                        let byte = (next() % 256) as u8;
                        if byte == b'\t' || (0x20..0x7f).contains(&byte) || byte >= 0x80 {
                            value.push(byte);
                        }
                    }
                }
            }
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
        let now = match next() % 4 {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => 1_750_000_000,
        };
        for verifier in &verifiers {
            let _ = verifier.verify(&headers, b"body", now);
            let _ = verifier.verify(&headers, b"a=1&b=%zz&&=", now);
            let _ = verifier.handshake(&Method::POST, None, &headers, ZOOM_VALIDATION_BODY, now);
            let _ = verifier.handshake(
                &Method::POST,
                None,
                &headers,
                SLACK_URL_VERIFICATION_BODY,
                now,
            );
            let _ = verifier.handshake(
                &Method::GET,
                Some("hub.verify_token=%ff"),
                &headers,
                b"",
                now,
            );
        }
    }
}

#[test]
fn timestamps_parse_strictly_without_overflow() {
    let cases: [(&[u8], Option<i64>); 9] = [
        (b"0", Some(0)),
        (b"1614265330", Some(1614265330)),
        (b"9223372036854775807", Some(i64::MAX)),
        (b"9223372036854775808", None),
        (b"", None),
        (b"-5", None),
        (b"+5", None),
        (b"1.5", None),
        (b"12\xff", None),
    ];
    for (text, expected) in cases {
        assert_eq!(
            parse_unix_seconds(text),
            expected,
            "{:?}",
            text.escape_ascii().to_string()
        );
    }
}

// ---------------------------------------------------------------------------------
// Config validation and what errors say.
// ---------------------------------------------------------------------------------

#[test]
fn config_errors_name_the_key() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "hmac without header",
            secrets_config("hmac", &["s"]),
            "header: required when scheme = \"hmac\"",
        ),
        (
            "hmac with an invalid header name",
            format!(
                "{}, header = \"X Signature\"",
                secrets_config("hmac", &["s"])
            ),
            "header: not a valid HTTP header name",
        ),
        (
            "hmac prefix with a space",
            format!(
                "{}, header = \"X-Sig\", prefix = \"sha 256=\"",
                secrets_config("hmac", &["s"])
            ),
            "prefix: must be printable ASCII without spaces",
        ),
        (
            "header on stripe",
            format!(
                "{}, header = \"X-Signature\"",
                secrets_config("stripe", &["whsec_x"])
            ),
            "header: only meaningful when scheme = \"hmac\", not \"stripe\"",
        ),
        (
            "algorithm on github",
            format!("{}, algorithm = \"sha1\"", secrets_config("github", &["s"])),
            "algorithm: only meaningful when scheme = \"hmac\", not \"github\"",
        ),
        (
            "encoding on shopify",
            format!("{}, encoding = \"hex\"", secrets_config("shopify", &["s"])),
            "encoding: only meaningful when scheme = \"hmac\", not \"shopify\"",
        ),
        (
            "prefix on standard",
            format!(
                "{}, prefix = \"v1,\"",
                secrets_config("standard", &[STANDARD_SECRET])
            ),
            "prefix: only meaningful when scheme = \"hmac\", not \"standard\"",
        ),
        (
            "tolerance on github",
            format!("{}, tolerance = \"5m\"", secrets_config("github", &["s"])),
            "tolerance: scheme \"github\" signs no timestamp; tolerance applies only to standard, svix, stripe, slack, zoom and sendgrid",
        ),
        (
            "no secrets",
            "scheme = \"stripe\"".to_owned(),
            "secrets: at least one secret is required for scheme \"stripe\"",
        ),
        (
            "empty secrets list",
            secrets_config("bearer", &[]),
            "secrets: at least one secret is required for scheme \"bearer\"",
        ),
        (
            "secrets on none",
            secrets_config("none", &["s"]),
            "secrets: not used when scheme = \"none\"; remove them or choose a signing scheme",
        ),
        (
            "empty secret",
            secrets_config("slack", &["a", ""]),
            "secrets[1]: must not be empty",
        ),
        (
            "secret with a trailing newline",
            secrets_config("github", &["secret\n"]),
            "secrets[0]: has leading or trailing whitespace",
        ),
        (
            "bad whsec base64",
            secrets_config("standard", &[STANDARD_SECRET, "whsec_not*base64"]),
            "secrets[1]: not a valid whsec_ secret (base64)",
        ),
        (
            "whsec with nothing after the prefix",
            secrets_config("svix", &["whsec_"]),
            "secrets[0]: not a valid whsec_ secret (base64)",
        ),
        (
            "bearer token with a space",
            secrets_config("bearer", &["two words"]),
            "secrets[0]: a bearer token must be printable ASCII without spaces",
        ),
        (
            "tolerance on meta",
            format!("{}, tolerance = \"5m\"", meta_config(&["s"])),
            "tolerance: scheme \"meta\" signs no timestamp; tolerance applies only to standard, svix, stripe, slack, zoom and sendgrid",
        ),
        (
            "meta without verify_token",
            secrets_config("meta", &["s"]),
            "verify_token: required when scheme = \"meta\": the token entered next to the callback URL in the app's webhook settings, which Meta sends back to verify the subscription",
        ),
        (
            "meta with an empty verify_token",
            format!("{}, verify_token = \"\"", secrets_config("meta", &["s"])),
            "verify_token: required when scheme = \"meta\": the token entered next to the callback URL in the app's webhook settings, which Meta sends back to verify the subscription",
        ),
        (
            "meta verify_token with a trailing newline",
            format!(
                "{}, verify_token = \"t\\n\"",
                secrets_config("meta", &["s"])
            ),
            "verify_token: has leading or trailing whitespace",
        ),
        (
            "verify_token on github",
            format!("{}, verify_token = \"t\"", secrets_config("github", &["s"])),
            "verify_token: only meaningful when scheme = \"meta\", not \"github\"",
        ),
        (
            "twilio without url",
            secrets_config("twilio", &["s"]),
            "url: required when scheme = \"twilio\": the public URL Twilio calls, exactly as entered in the Twilio console (Twilio signs it)",
        ),
        (
            "twilio with a relative url",
            twilio_config(&["s"], "/webhooks/twilio"),
            "url: not an http:// or https:// URL with a host (and a numeric port, if any)",
        ),
        (
            "twilio with a bad port",
            twilio_config(&["s"], "https://example.com:https/sms"),
            "url: not an http:// or https:// URL with a host (and a numeric port, if any)",
        ),
        (
            "url on stripe",
            format!(
                "{}, url = \"https://example.com/\"",
                secrets_config("stripe", &["whsec_x"])
            ),
            "url: only meaningful when scheme = \"twilio\", not \"stripe\"",
        ),
        (
            "twilio without secrets",
            format!("scheme = \"twilio\", url = {TWILIO_URL:?}"),
            "secrets: at least one secret is required for scheme \"twilio\"",
        ),
        (
            "zoom without secrets",
            "scheme = \"zoom\"".to_owned(),
            "secrets: at least one secret is required for scheme \"zoom\"",
        ),
        (
            "sendgrid without public_key",
            "scheme = \"sendgrid\"".to_owned(),
            "public_key: required when scheme = \"sendgrid\": the verification key shown in SendGrid's Mail Settings when the signed Event Webhook is enabled",
        ),
        (
            "sendgrid with secrets",
            format!(
                "{}, secrets = [\"s\"]",
                sendgrid_config(&[SENDGRID_PUBLIC_KEY])
            ),
            "secrets: not used when scheme = \"sendgrid\": SendGrid signs with a key pair; set public_key to the verification key instead",
        ),
        (
            "sendgrid with a key that is not base64",
            sendgrid_config(&["not*base64"]),
            "public_key: not a base64 DER (SubjectPublicKeyInfo) ECDSA P-256 public key",
        ),
        (
            "sendgrid with a private key as public key",
            format!("scheme = \"sendgrid\", public_key = {SENDGRID_PRIVATE_KEY:?}"),
            "public_key: not a base64 DER (SubjectPublicKeyInfo) ECDSA P-256 public key",
        ),
        (
            "sendgrid with a bad second key",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY, "MFkw"]),
            "public_key[1]: not a base64 DER (SubjectPublicKeyInfo) ECDSA P-256 public key",
        ),
        (
            "sendgrid with a private key that matches no public key",
            format!(
                "{}, private_key = {SENDGRID_ROTATED_PRIVATE_KEY:?}",
                sendgrid_config(&[SENDGRID_PUBLIC_KEY])
            ),
            "private_key: is not the private half of any public_key",
        ),
        (
            "sendgrid with a public key as private key",
            format!(
                "{}, private_key = {SENDGRID_PUBLIC_KEY:?}",
                sendgrid_config(&[SENDGRID_PUBLIC_KEY])
            ),
            "private_key: not a base64 DER (PKCS#8) ECDSA P-256 private key",
        ),
        (
            "public_key on zoom",
            format!(
                "{}, public_key = {SENDGRID_PUBLIC_KEY:?}",
                secrets_config("zoom", &["s"])
            ),
            "public_key: only meaningful when scheme = \"sendgrid\", not \"zoom\"",
        ),
        (
            "private_key on none",
            format!("scheme = \"none\", private_key = {SENDGRID_PRIVATE_KEY:?}"),
            "private_key: only meaningful when scheme = \"sendgrid\", not \"none\"",
        ),
    ];
    for (name, table, expected) in cases {
        let cfg = parse_config(&table).unwrap_or_else(|err| panic!("{name}: {err}"));
        match Verifier::from_config(&cfg) {
            Ok(_) => panic!("{name}: accepted"),
            Err(err) => assert_eq!(err.to_string(), expected, "{name}"),
        }
    }
}

#[test]
fn config_deserialization_rejects_unknown_values() {
    let cases = [
        (
            "unknown scheme",
            "scheme = \"paypal\", secrets = [\"s\"]",
            "paypal",
        ),
        (
            "unknown key",
            "scheme = \"github\", secrets = [\"s\"], secret = \"s\"",
            "secret",
        ),
        (
            "unknown algorithm",
            "scheme = \"hmac\", header = \"X\", secrets = [\"s\"], algorithm = \"md5\"",
            "md5",
        ),
        (
            "unknown encoding",
            "scheme = \"hmac\", header = \"X\", secrets = [\"s\"], encoding = \"base32\"",
            "base32",
        ),
        (
            "bad tolerance",
            "scheme = \"stripe\", secrets = [\"s\"], tolerance = \"soon\"",
            "tolerance",
        ),
        (
            "public_key neither a string nor a list",
            "scheme = \"sendgrid\", public_key = 5",
            "a base64 key or a list of them",
        ),
        ("missing scheme", "secrets = [\"s\"]", "scheme"),
    ];
    for (name, table, mentioned) in cases {
        match parse_config(table) {
            Ok(_) => panic!("{name}: accepted"),
            Err(err) => assert!(err.to_string().contains(mentioned), "{name}: {err}"),
        }
    }
}

#[test]
fn config_defaults_and_example_tables() {
    let stripe = parse_config(r#"scheme = "stripe", secrets = ["whsec_abc"], tolerance = "5m""#)
        .expect("stripe example");
    assert_eq!(stripe.tolerance, Some(std::time::Duration::from_secs(300)));
    assert_eq!(
        Verifier::from_config(&stripe).map(|v| v.scheme()).ok(),
        Some(SchemeName::Stripe)
    );

    let hmac = parse_config(
        r#"scheme = "hmac", header = "X-Signature", algorithm = "sha256", encoding = "hex", secrets = ["s1", "s2"], prefix = "sha256=""#,
    )
    .expect("hmac example");
    assert_eq!(hmac.algorithm, Some(HmacAlgorithm::Sha256));
    assert_eq!(hmac.encoding, Some(SignatureEncoding::Hex));
    assert!(Verifier::from_config(&hmac).is_ok());

    let none = parse_config(r#"scheme = "none""#).expect("none");
    assert!(none.secrets.is_empty());
    assert_eq!(
        Verifier::from_config(&none).map(|v| v.scheme()).ok(),
        Some(SchemeName::None)
    );
}

#[test]
fn scheme_names_round_trip_through_as_str() {
    let mut seen = std::collections::HashSet::new();
    for scheme in SchemeName::ALL {
        let parsed = parse_config(&format!("scheme = {:?}", scheme.as_str())).expect("scheme");
        assert_eq!(parsed.scheme, scheme);
        assert_eq!(scheme.to_string(), scheme.as_str());
        assert!(seen.insert(scheme), "{scheme} listed twice");
    }
    // Every config above exercises every scheme.
    let covered: std::collections::HashSet<SchemeName> = every_scheme_config()
        .iter()
        .map(|config| verifier(config).scheme())
        .collect();
    assert_eq!(covered, seen);
    assert_eq!(VerifyConfig::default().scheme, SchemeName::None);
}

/// What each scheme's signature covers decides its tolerance, its default key and its replay
/// guard (SPEC §3 and §4.3).
#[test]
fn scheme_properties_follow_the_spec() {
    // (scheme, signs a timestamp, signs only the body (for the check warning), default key,
    // replay guard by default)
    let table = [
        (
            SchemeName::Standard,
            true,
            false,
            "header:Webhook-Id",
            false,
        ),
        (
            SchemeName::Svix,
            true,
            false,
            "header:Svix-Id, header:Webhook-Id",
            false,
        ),
        (SchemeName::Stripe, true, false, "json:/id", false),
        (
            SchemeName::Github,
            false,
            true,
            "header:X-Github-Delivery",
            true,
        ),
        (SchemeName::Slack, true, false, "fingerprint", false),
        (
            SchemeName::Shopify,
            false,
            true,
            "header:X-Shopify-Webhook-Id",
            true,
        ),
        (SchemeName::Hmac, false, true, "fingerprint", false),
        (SchemeName::Meta, false, true, "fingerprint", true),
        (SchemeName::Zoom, true, false, "fingerprint", false),
        (
            SchemeName::Twilio,
            false,
            true,
            "header:I-Twilio-Idempotency-Token, fingerprint",
            true,
        ),
        (SchemeName::Sendgrid, true, false, "fingerprint", false),
        (SchemeName::Bearer, false, true, "fingerprint", false),
        (SchemeName::None, false, false, "fingerprint", false),
    ];
    assert_eq!(table.len(), SchemeName::ALL.len());
    for (scheme, timestamp, body_only, key, guard) in table {
        assert_eq!(scheme.signs_timestamp(), timestamp, "{scheme}");
        assert_eq!(scheme.signs_only_the_body(), body_only, "{scheme}");
        assert_eq!(scheme.default_key().to_string(), key, "{scheme}");
        assert_eq!(scheme.replay_guard_by_default(), guard, "{scheme}");
        assert_eq!(
            scheme.uses_secrets(),
            !matches!(scheme, SchemeName::None | SchemeName::Sendgrid),
            "{scheme}"
        );
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let cfg = parse_config(&secrets_config("standard", &[secret, "whsec_bad*"])).expect("config");
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("MfKQ9r8"), "{debug}");
    assert!(debug.contains("[<2 redacted>]"), "{debug}");
    let error = Verifier::from_config(&cfg)
        .err()
        .map(|err| format!("{err} {err:?}"));
    let error = error.expect("bad secret rejected");
    assert!(
        !error.contains("bad*") && !error.contains("MfKQ9r8"),
        "{error}"
    );

    let verifier = verifier(&secrets_config("bearer", &["tok_very_secret"]));
    let debug = format!("{verifier:?}");
    assert!(!debug.contains("tok_very_secret"), "{debug}");
    let signed = verifier.sign(b"", "id", 0);
    assert!(!format!("{signed:?}").contains("tok_very_secret"));

    let meta = parse_config(&format!(
        "{}, verify_token = \"vt_very_secret\"",
        secrets_config("meta", &["s"])
    ))
    .expect("meta");
    assert!(!format!("{meta:?}").contains("vt_very_secret"));
    let sendgrid = parse_config(&format!(
        "{}, private_key = {SENDGRID_PRIVATE_KEY:?}",
        sendgrid_config(&[SENDGRID_PUBLIC_KEY])
    ))
    .expect("sendgrid");
    assert!(!format!("{sendgrid:?}").contains(&SENDGRID_PRIVATE_KEY[20..60]));
    let error = Verifier::from_config(
        &parse_config(&format!(
            "{}, private_key = {SENDGRID_ROTATED_PRIVATE_KEY:?}",
            sendgrid_config(&[SENDGRID_PUBLIC_KEY])
        ))
        .expect("sendgrid"),
    )
    .err()
    .map(|err| format!("{err} {err:?}"))
    .expect("mismatched key");
    assert!(
        !error.contains(&SENDGRID_ROTATED_PRIVATE_KEY[20..60]),
        "{error}"
    );

    // Rejections never echo the expected signature.
    let stripe = self::verifier(&secrets_config("stripe", &[STRIPE_SECRET]));
    let headers = header_map(&[h("stripe-signature", format!("t={STRIPE_TIMESTAMP},v1=00"))]);
    let error = stripe
        .verify(&headers, STRIPE_BODY, STRIPE_TIMESTAMP)
        .expect_err("bad signature");
    assert!(!format!("{error} {error:?}").contains(STRIPE_HEX));
}

#[test]
fn verify_error_texts() {
    let verifier = verifier(&secrets_config("stripe", &[STRIPE_SECRET]));
    let verify = |value: Option<&str>, now| {
        let headers = match value {
            Some(value) => header_map(&[h("stripe-signature", value)]),
            None => HeaderMap::new(),
        };
        verifier
            .verify(&headers, STRIPE_BODY, now)
            .map_err(|err| err.to_string())
    };
    assert_eq!(
        verify(None, STRIPE_TIMESTAMP),
        Err("missing header Stripe-Signature".to_owned())
    );
    assert_eq!(
        verify(Some("v1=00"), STRIPE_TIMESTAMP),
        Err("malformed Stripe-Signature header: no t= timestamp".to_owned())
    );
    assert_eq!(
        verify(Some(STRIPE_HEADER), STRIPE_TIMESTAMP + 301),
        Err("timestamp outside tolerance".to_owned())
    );
    assert_eq!(
        verify(
            Some(&format!("t={STRIPE_TIMESTAMP},v1=00")),
            STRIPE_TIMESTAMP
        ),
        Err("no signature matched".to_owned())
    );
    let standard = self::verifier(&secrets_config("standard", &[STANDARD_SECRET]));
    assert_eq!(
        standard
            .verify(&HeaderMap::new(), b"", 0)
            .map_err(|err| err.to_string()),
        Err("missing header webhook-signature".to_owned())
    );
}

#[test]
fn verifier_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<VerifyError>();
    assert_send_sync::<VerifyConfigError>();
}
