//! Microbenchmarks of the per-request CPU work on intake's hot path: signature verification
//! for every scheme (1 KB body), the canonical-JSON fingerprint (1 KB and 64 KB), and
//! idempotency-key derivation. `cargo bench --bench intake_hot_path`.

use std::hint::black_box;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use oncehook::domain::fingerprint::{fingerprint_bytes, fingerprint_json};
use oncehook::domain::key::{EmailHasher, KeySpec};
use oncehook::domain::pointer::JsonPointer;
use oncehook::verify::{Verifier, VerifyConfig};
use serde_json::{Value, json};

/// A realistic event body of about `size` bytes: nested objects, numbers, strings, an array.
fn event_body(size: usize) -> Vec<u8> {
    let envelope = |items: Vec<Value>| {
        json!({
            "id": "evt_1PWu2bJ0tyXxTz4lXcjQ0nJm",
            "type": "order.created",
            "created": 1_711_929_600,
            "submitted_at": "2026-01-01T00:00:00Z",
            "email": "  Person@Example.com ",
            "data": { "customer": { "id": "cus_42", "name": "Ada" }, "items": items },
            "meta": { "request_id": "req_123" },
        })
    };
    let mut length = serde_json::to_vec(&envelope(Vec::new())).map_or(0, |b| b.len());
    let mut items = Vec::new();
    while length < size {
        let n = items.len();
        let item = json!({
            "sku": format!("sku_{n:06}"),
            "quantity": n % 7 + 1,
            "price": 19.99 + n as f64,
            "tags": ["a", "b"],
        });
        // Each item adds its own text and a comma.
        length += serde_json::to_vec(&item).map_or(0, |b| b.len()) + 1;
        items.push(item);
    }
    serde_json::to_vec(&envelope(items)).unwrap_or_default()
}

fn verifier(table: &str) -> Verifier {
    let config: VerifyConfig = toml::from_str(table).expect("verify table");
    Verifier::from_config(&config).expect("verifier")
}

fn to_header_map(headers: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
    headers.into_iter().collect()
}

fn verification(c: &mut Criterion) {
    let body = event_body(1024);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let schemes = [
        (
            "standard",
            r#"scheme = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
        ),
        (
            "svix",
            r#"scheme = "svix"
secrets = ["whsec_plJ3nmyCDGBKInavdOK15jsl"]"#,
        ),
        (
            "stripe",
            r#"scheme = "stripe"
secrets = ["whsec_test_secret_4eC39HqLyjWDarjtT1zdp7dc"]"#,
        ),
        (
            "github",
            r#"scheme = "github"
secrets = ["github-secret"]"#,
        ),
        (
            "slack",
            r#"scheme = "slack"
secrets = ["8f742231b10e8888abcd99yyyzzz85a5"]"#,
        ),
        (
            "shopify",
            r#"scheme = "shopify"
secrets = ["shopify-secret"]"#,
        ),
        (
            "hmac-sha256-hex",
            r#"scheme = "hmac"
header = "X-Signature"
secrets = ["forms-secret"]"#,
        ),
        (
            "hmac-sha512-base64",
            r#"scheme = "hmac"
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
secrets = ["forms-secret"]"#,
        ),
        (
            "bearer",
            r#"scheme = "bearer"
secrets = ["a-long-bearer-token-for-first-party-producers"]"#,
        ),
    ];
    let mut group = c.benchmark_group("verify_1KiB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (name, table) in schemes {
        let verifier = verifier(table);
        let headers = to_header_map(verifier.sign(&body, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now));
        assert_eq!(verifier.verify(&headers, &body, now), Ok(()), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(&headers), black_box(&body), now))
        });
    }
    // Two secrets during a rotation, the request signed with the second: the worst case.
    let rotated = verifier(
        r#"scheme = "standard"
secrets = ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
    );
    let signer = verifier(
        r#"scheme = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
    );
    let headers = to_header_map(signer.sign(&body, "msg_rotation", now));
    group.bench_function("standard_second_of_two_secrets", |b| {
        b.iter(|| rotated.verify(black_box(&headers), black_box(&body), now))
    });
    // What `oncehook bench` pays per request it signs while sending.
    group.bench_function("standard_sign", |b| {
        b.iter(|| signer.sign(black_box(&body), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now))
    });
    group.finish();
}

fn fingerprints(c: &mut Criterion) {
    let ignore: Vec<JsonPointer> = ["/submitted_at", "/meta/request_id"]
        .iter()
        .map(|p| JsonPointer::from_str(p).expect("pointer"))
        .collect();
    let mut group = c.benchmark_group("fingerprint");
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let body = event_body(size);
        let value: Value = serde_json::from_slice(&body).expect("json");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("canonical_json_{label}"), |b| {
            b.iter(|| fingerprint_json(black_box(&value), black_box(&ignore)))
        });
        // Intake parses before fingerprinting; this is the two together.
        group.bench_function(format!("parse_and_canonical_json_{label}"), |b| {
            b.iter(|| {
                let value: Value = serde_json::from_slice(black_box(&body)).unwrap_or(Value::Null);
                fingerprint_json(&value, &ignore)
            })
        });
        group.bench_function(format!("raw_bytes_{label}"), |b| {
            b.iter(|| fingerprint_bytes(black_box(&body)))
        });
    }
    group.finish();
}

fn key_derivation(c: &mut Criterion) {
    let body = event_body(1024);
    let value: Value = serde_json::from_slice(&body).expect("json");
    let fingerprint = fingerprint_json(&value, &[]);
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        HeaderValue::from_static("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
    );
    let specs = [
        ("header", vec!["header:webhook-id"]),
        ("json_pointer", vec!["json:/id"]),
        (
            "json_plus_email",
            vec!["json:/data/customer/id + email:/email"],
        ),
        ("fingerprint", vec!["fingerprint"]),
        (
            "fallback_to_third",
            vec!["header:Idempotency-Key", "json:/submission_id", "json:/id"],
        ),
    ];
    let email = EmailHasher::new(Some("bench-encryption-key"));
    let mut group = c.benchmark_group("key_derivation");
    for (name, entries) in specs {
        let entries: Vec<String> = entries.into_iter().map(str::to_owned).collect();
        let spec = KeySpec::parse(&entries).expect("key spec");
        assert!(
            spec.derive("bench", &headers, Some(&value), None, &fingerprint, &email)
                .is_ok()
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                spec.derive(
                    black_box("bench"),
                    black_box(&headers),
                    Some(&value),
                    None,
                    &fingerprint,
                    &email,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verification, fingerprints, key_derivation);
criterion_main!(benches);
