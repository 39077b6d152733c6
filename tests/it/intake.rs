//! Intake end to end: the real binary, real sockets, a real SQLite file. Every case sends its
//! request at least twice and checks that the outcome equals one accepted event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Gateway, Signed, post, post_twice, sign, unix_now};
use serde_json::{Value, json};

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_VERIFY: &str = r#"scheme = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#;

fn standard_source(name: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nverify = {{ scheme = \"standard\", secrets = [\"{STANDARD_SECRET}\"] }}\n{extra}\n"
    )
}

const DESTINATIONS: &str = r#"
[[destinations]]
name = "crm"
url = "http://127.0.0.1:9/crm"

[[destinations]]
name = "analytics"
url = "http://127.0.0.1:9/analytics"

[[routes]]
source = "hooks"
to = ["crm", "analytics"]
"#;

fn standard_request(message_id: &str, body: &Value) -> Signed {
    let body = serde_json::to_vec(body).expect("json");
    sign(STANDARD_VERIFY, &body, message_id, unix_now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_identical_deliveries_are_accepted_once() {
    let gateway = Gateway::start(&format!("{}{DESTINATIONS}", standard_source("hooks", "")));
    let client = reqwest::Client::new();
    let signed = Arc::new(standard_request(
        "msg_concurrent",
        &json!({"type": "lead.created", "n": 1}),
    ));
    let url = Arc::new(gateway.webhook_url("hooks"));

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, signed, url) = (client.clone(), Arc::clone(&signed), Arc::clone(&url));
        tasks.push(tokio::spawn(async move {
            post(&client, &url, &signed, "application/json").await
        }));
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    let mut event_ids = HashSet::new();
    for task in tasks {
        let reply = task.await.expect("task");
        match reply.status {
            202 => accepted += 1,
            200 => {
                duplicates += 1;
                assert_eq!(reply.json["status"], "duplicate");
                assert_eq!(reply.json["reason"], "key");
                assert_eq!(reply.json["conflict"], false);
            }
            other => panic!("unexpected status {other}: {}", reply.json),
        }
        assert_eq!(reply.json["idempotency_key"], "msg_concurrent");
        event_ids.insert(
            reply.json["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned(),
        );
    }
    assert_eq!((accepted, duplicates), (1, 49));
    assert_eq!(event_ids.len(), 1, "every reply names the same event");

    // And once more, sequentially, after the burst.
    let again = post(&client, &url, &signed, "application/json").await;
    assert_eq!(again.status, 200);
    assert!(event_ids.contains(again.json["event_id"].as_str().expect("event_id")));

    assert_eq!(gateway.event_count(), 1);
    assert_eq!(
        gateway.count("SELECT COUNT(*) FROM deliveries"),
        2,
        "one delivery per destination"
    );
    assert_eq!(gateway.count("SELECT COUNT(*) FROM dedupe_keys"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_reply_carries_a_uuid_v7_and_duplicates_point_at_it() {
    let gateway = Gateway::start(&format!("{}{DESTINATIONS}", standard_source("hooks", "")));
    let client = reqwest::Client::new();
    let signed = standard_request("msg_1", &json!({"type": "lead.created"}));
    let first = post(
        &client,
        &gateway.webhook_url("hooks"),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.json);
    assert_eq!(first.json["status"], "accepted");
    let event_id = first.json["event_id"].as_str().expect("event_id");
    let parsed = uuid::Uuid::parse_str(event_id).expect("uuid");
    assert_eq!(parsed.get_version_num(), 7);
    let second = post(
        &client,
        &gateway.webhook_url("hooks"),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json["event_id"], event_id);
    assert_eq!(gateway.event_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_with_different_content_is_a_conflicting_duplicate() {
    let gateway = Gateway::start(&standard_source("hooks", ""));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("hooks");
    let original = post(
        &client,
        &url,
        &standard_request("msg_c", &json!({"amount": 10})),
        "application/json",
    )
    .await;
    assert_eq!(original.status, 202);
    for _ in 0..2 {
        let tampered = post(
            &client,
            &url,
            &standard_request("msg_c", &json!({"amount": 99})),
            "application/json",
        )
        .await;
        assert_eq!(tampered.status, 200);
        assert_eq!(tampered.json["conflict"], true);
        assert_eq!(tampered.json["event_id"], original.json["event_id"]);
    }
    assert_eq!(gateway.event_count(), 1);
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"oncehook_intake_total{source="hooks",outcome="conflict"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"oncehook_intake_total{source="hooks",outcome="accepted"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_blocks_repeats_only_for_its_ttl() {
    // The tolerance must be shorter than the TTL (a signed request may not outlive its key).
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"hooks\"\n\
         verify = {{ scheme = \"standard\", secrets = [\"{STANDARD_SECRET}\"], tolerance = \"1s\" }}\n\
         dedupe_ttl = \"2s\"\n"
    ));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("hooks");
    let body = json!({"n": 1});
    let first = post(
        &client,
        &url,
        &standard_request("msg_ttl", &body),
        "application/json",
    )
    .await;
    let second = post(
        &client,
        &url,
        &standard_request("msg_ttl", &body),
        "application/json",
    )
    .await;
    assert_eq!((first.status, second.status), (202, 200));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let after = post(
        &client,
        &url,
        &standard_request("msg_ttl", &body),
        "application/json",
    )
    .await;
    assert_eq!(
        after.status, 202,
        "after the TTL the same key is a new event"
    );
    assert_ne!(after.json["event_id"], first.json["event_id"]);
    let again = post(
        &client,
        &url,
        &standard_request("msg_ttl", &body),
        "application/json",
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["event_id"], after.json["event_id"]);
    assert_eq!(gateway.event_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_key_outlives_a_ping_key_with_ttls_per_event_type() {
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"hooks\"\n\
         verify = {{ scheme = \"standard\", secrets = [\"{STANDARD_SECRET}\"], tolerance = \"1s\" }}\n\
         dedupe_ttl = \"2s\"\n\
         dedupe_ttl_when = [{{ pointer = \"/type\", prefix = \"invoice.\", ttl = \"1h\" }},\n\
                            {{ pointer = \"/type\", in = [\"ping\"], ttl = \"2s\" }}]\n"
    ));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("hooks");
    let events = [
        ("msg_ping", json!({"type": "ping"})),
        (
            "msg_invoice",
            json!({"type": "invoice.paid", "amount": 100}),
        ),
    ];
    let mut first_ids = Vec::new();
    for (message_id, body) in &events {
        let first = post(
            &client,
            &url,
            &standard_request(message_id, body),
            "application/json",
        )
        .await;
        let second = post(
            &client,
            &url,
            &standard_request(message_id, body),
            "application/json",
        )
        .await;
        assert_eq!((first.status, second.status), (202, 200), "{body}");
        assert_eq!(second.json["event_id"], first.json["event_id"]);
        first_ids.push(first.json["event_id"].clone());
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let ping = post(
        &client,
        &url,
        &standard_request(events[0].0, &events[0].1),
        "application/json",
    )
    .await;
    assert_eq!(ping.status, 202, "after the default TTL a ping is new");
    assert_ne!(ping.json["event_id"], first_ids[0]);
    let invoice = post(
        &client,
        &url,
        &standard_request(events[1].0, &events[1].1),
        "application/json",
    )
    .await;
    assert_eq!(
        invoice.status, 200,
        "an invoice key lives for its own TTL: {}",
        invoice.json
    );
    assert_eq!(invoice.json["event_id"], first_ids[1]);
    assert_eq!(gateway.event_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_duplicates_within_the_window_are_caught_by_fingerprint() {
    let gateway = Gateway::start(&standard_source(
        "hooks",
        "near_duplicate = { window = \"15m\" }\nfingerprint_ignore = [\"/sent_at\"]",
    ));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("hooks");
    let first = post(
        &client,
        &url,
        &standard_request("msg_a", &json!({"lead": "x", "sent_at": 1})),
        "application/json",
    )
    .await;
    assert_eq!(first.status, 202);
    for (id, sent_at) in [("msg_b", 2), ("msg_c", 3)] {
        // A different delivery id and a different volatile field: still the same lead.
        let repeat = post(
            &client,
            &url,
            &standard_request(id, &json!({"sent_at": sent_at, "lead": "x"})),
            "application/json",
        )
        .await;
        assert_eq!(repeat.status, 200, "{}", repeat.json);
        assert_eq!(repeat.json["reason"], "fingerprint");
        assert_eq!(repeat.json["event_id"], first.json["event_id"]);
    }
    let other = post(
        &client,
        &url,
        &standard_request("msg_d", &json!({"lead": "y", "sent_at": 1})),
        "application/json",
    )
    .await;
    assert_eq!(other.status, 202);
    assert_eq!(gateway.event_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_fields_are_never_stored() {
    let gateway = Gateway::start(&standard_source(
        "hooks",
        "drop_fields = [\"/ip\", \"/meta/secret\"]",
    ));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("hooks");
    let body =
        json!({"lead": "x", "ip": "203.0.113.9", "meta": {"secret": "hunter2", "keep": true}});
    for expected in [202, 200] {
        assert_eq!(
            post(
                &client,
                &url,
                &standard_request("msg_drop", &body),
                "application/json"
            )
            .await
            .status,
            expected
        );
    }
    let stored: Vec<u8> = gateway
        .db()
        .query_row("SELECT body FROM event_payloads", [], |r| r.get(0))
        .expect("body");
    let stored: Value = serde_json::from_slice(&stored).expect("json");
    assert_eq!(stored, json!({"lead": "x", "meta": {"keep": true}}));
    let raw = std::fs::read(gateway.db_path()).expect("db file");
    let wal = std::fs::read(gateway.db_path().with_extension("db-wal")).unwrap_or_default();
    for haystack in [&raw, &wal] {
        assert!(
            !haystack.windows(7).any(|w| w == b"hunter2"),
            "a dropped field reached the disk"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_and_fallback_keys_come_from_the_body() {
    let gateway = Gateway::start(
        r#"
[[sources]]
name = "forms"
verify = { scheme = "hmac", header = "X-Signature", algorithm = "sha256", encoding = "hex", secrets = ["form-secret"] }
key = ["header:Idempotency-Key", "json:/submission_id + email:/email", "fingerprint"]
fingerprint_ignore = ["/submitted_at"]
"#,
    );
    let verify = r#"scheme = "hmac"
header = "X-Signature"
secrets = ["form-secret"]"#;
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("forms");
    let send = |body: Value| {
        let body = serde_json::to_vec(&body).expect("json");
        sign(verify, &body, "unused", unix_now())
    };
    // The same submission with the email spelled differently: one event.
    let a = post(
        &client,
        &url,
        &send(json!({"submission_id": "s1", "email": "Ann@Example.com"})),
        "application/json",
    )
    .await;
    let b = post(
        &client,
        &url,
        &send(json!({"submission_id": "s1", "email": "  ann@example.COM "})),
        "application/json",
    )
    .await;
    assert_eq!((a.status, b.status), (202, 200), "{} {}", a.json, b.json);
    let key = a.json["idempotency_key"].as_str().expect("key");
    assert!(key.starts_with("s1+"), "{key}");
    assert!(
        !key.contains("ann"),
        "the email is hashed, never shown: {key}"
    );
    // No submission id: the fingerprint decides, ignoring the volatile field.
    let c = post(
        &client,
        &url,
        &send(json!({"email": "x@example.com", "submitted_at": 1})),
        "application/json",
    )
    .await;
    let d = post(
        &client,
        &url,
        &send(json!({"submitted_at": 2, "email": "x@example.com"})),
        "application/json",
    )
    .await;
    assert_eq!((c.status, d.status), (202, 200));
    assert_eq!(c.json["idempotency_key"].as_str().map(str::len), Some(64));
    assert_eq!(gateway.event_count(), 2);
}

/// A source for the rejection cases: schema, size limit, rate limit.
fn strict_source(dir: &std::path::Path) -> String {
    let schema = json!({
        "type": "object",
        "required": ["id", "type"],
        "properties": {"id": {"type": "string"}, "type": {"type": "string"}}
    });
    std::fs::write(dir.join("lead.schema.json"), schema.to_string()).expect("schema");
    format!(
        "{}{}",
        standard_source(
            "strict",
            &format!(
                "schema = \"{}\"\nmax_body = \"1KiB\"\nkey = [\"json:/id\"]",
                dir.join("lead.schema.json").display()
            )
        ),
        standard_source("limited", "rate_limit = { per_second = 1, burst = 2 }"),
    ) + &standard_source("keyed", "key = [\"json:/lead_id\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_has_its_status_a_json_error_and_stores_nothing() {
    let schema_dir = tempfile::tempdir().expect("dir");
    let gateway = Gateway::start(&strict_source(schema_dir.path()));
    let client = reqwest::Client::new();
    let strict = gateway.webhook_url("strict");
    let valid = json!({"id": "evt_1", "type": "lead.created"});

    struct Case {
        name: &'static str,
        url: String,
        signed: Signed,
        content_type: &'static str,
        status: u16,
        error_contains: &'static str,
    }
    let good_body = serde_json::to_vec(&valid).expect("json");
    let mut nested = String::new();
    // Deeper than the parser's limit, yet under the 1 KiB max_body.
    for _ in 0..500 {
        nested.push('[');
    }
    let cases = vec![
        Case {
            name: "unknown source",
            url: gateway.webhook_url("nope"),
            signed: standard_request("m1", &valid),
            content_type: "application/json",
            status: 404,
            error_contains: "unknown source",
        },
        Case {
            name: "bad signature",
            url: strict.clone(),
            signed: sign(
                "scheme = \"standard\"\nsecrets = [\"whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\"]",
                &good_body,
                "m2",
                unix_now(),
            ),
            content_type: "application/json",
            status: 401,
            error_contains: "signature",
        },
        Case {
            name: "missing signature",
            url: strict.clone(),
            signed: Signed {
                headers: vec![],
                body: good_body.clone(),
            },
            content_type: "application/json",
            status: 401,
            error_contains: "signature",
        },
        Case {
            name: "timestamp outside tolerance",
            url: strict.clone(),
            signed: sign(STANDARD_VERIFY, &good_body, "m3", unix_now() - 3600),
            content_type: "application/json",
            status: 401,
            error_contains: "signature",
        },
        Case {
            name: "too large",
            url: strict.clone(),
            signed: standard_request(
                "m4",
                &json!({"id": "x", "type": "y", "pad": "z".repeat(2000)}),
            ),
            content_type: "application/json",
            status: 413,
            error_contains: "max_body",
        },
        Case {
            name: "unparseable",
            url: strict.clone(),
            signed: sign(STANDARD_VERIFY, b"{not json", "m5", unix_now()),
            content_type: "application/json",
            status: 400,
            error_contains: "JSON",
        },
        Case {
            name: "invalid UTF-8",
            url: strict.clone(),
            signed: sign(STANDARD_VERIFY, b"{\"id\": \"\xff\xfe\"}", "m6", unix_now()),
            content_type: "application/json",
            status: 400,
            error_contains: "JSON",
        },
        Case {
            name: "deeply nested",
            url: strict.clone(),
            signed: sign(STANDARD_VERIFY, nested.as_bytes(), "m7", unix_now()),
            content_type: "application/json",
            status: 400,
            error_contains: "JSON",
        },
        Case {
            name: "schema mismatch",
            url: strict.clone(),
            signed: standard_request("m8", &json!({"id": 5})),
            content_type: "application/json",
            status: 400,
            error_contains: "schema",
        },
        Case {
            name: "no key derivable",
            url: gateway.webhook_url("keyed"),
            signed: standard_request("m9", &json!({"type": "lead.created"})),
            content_type: "application/json",
            status: 400,
            error_contains: "idempotency key",
        },
    ];
    for case in &cases {
        for _ in 0..2 {
            let reply = post(&client, &case.url, &case.signed, case.content_type).await;
            assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.json);
            let error = reply.json["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no error field", case.name));
            assert!(
                error.contains(case.error_contains),
                "{}: {error}",
                case.name
            );
        }
        assert_eq!(
            gateway.event_count(),
            0,
            "{}: something was stored",
            case.name
        );
        assert!(
            gateway.healthy().await,
            "{}: the server is unhealthy",
            case.name
        );
    }
    let schema_reply = post(
        &client,
        &strict,
        &standard_request("m10", &json!({"id": 5})),
        "application/json",
    )
    .await;
    assert!(
        schema_reply.json["detail"].is_array(),
        "schema errors are listed: {}",
        schema_reply.json
    );

    // The rate limit: a burst of 2, then 429 with Retry-After.
    let limited = gateway.webhook_url("limited");
    let mut statuses = Vec::new();
    for i in 0..4 {
        let reply = post(
            &client,
            &limited,
            &standard_request(&format!("r{i}"), &json!({"i": i})),
            "application/json",
        )
        .await;
        if reply.status == 429 {
            let retry_after: u64 = reply.headers["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!(retry_after >= 1);
            assert!(
                reply.json["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("rate limit"))
            );
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses, vec![202, 202, 429, 429]);
    assert_eq!(gateway.event_count(), 2);

    // A chunked body over the limit (no Content-Length to refuse early) is still 413.
    let signed = standard_request(
        "m11",
        &json!({"id": "x", "type": "y", "pad": "z".repeat(4000)}),
    );
    let status = post_chunked(&strict, &signed).await;
    assert_eq!(status, 413);
    assert_eq!(gateway.event_count(), 2);
    assert!(gateway.healthy().await);
}

/// Sends the body with `Transfer-Encoding: chunked`, in 512-byte chunks, over a raw socket.
async fn post_chunked(url: &str, signed: &Signed) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in &signed.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    for chunk in signed.body.chunks(512) {
        // The server may answer and close as soon as the limit is crossed.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_accepts_its_providers_signature_once() {
    let schemes = [
        ("standard", format!("{{ scheme = \"standard\", secrets = [\"{STANDARD_SECRET}\"] }}"), "[]"),
        ("svix", format!("{{ scheme = \"svix\", secrets = [\"{STANDARD_SECRET}\"] }}"), "[]"),
        ("stripe", "{ scheme = \"stripe\", secrets = [\"whsec_stripe_test\"] }".to_owned(), "[]"),
        ("github", "{ scheme = \"github\", secrets = [\"gh-secret\"] }".to_owned(), "[]"),
        ("slack", "{ scheme = \"slack\", secrets = [\"slack-secret\"] }".to_owned(), "[]"),
        ("shopify", "{ scheme = \"shopify\", secrets = [\"shop-secret\"] }".to_owned(), "[]"),
        (
            "hmac",
            "{ scheme = \"hmac\", header = \"X-Sig\", algorithm = \"sha512\", encoding = \"base64\", prefix = \"v=\", secrets = [\"h\"] }".to_owned(),
            "[]",
        ),
        ("bearer", "{ scheme = \"bearer\", secrets = [\"token-1\", \"token-2\"] }".to_owned(), "[]"),
        ("none", "{ scheme = \"none\" }".to_owned(), "[]"),
    ];
    let mut config = String::new();
    for (name, verify, _) in &schemes {
        let unsigned = if *name == "none" {
            "allow_unsigned = true\n"
        } else {
            ""
        };
        config.push_str(&format!(
            "[[sources]]\nname = \"{name}\"\nverify = {verify}\n{unsigned}\n"
        ));
    }
    let gateway = Gateway::start(&config);
    let client = reqwest::Client::new();
    for (name, verify, _) in &schemes {
        let verify_table: toml::Table = toml::from_str(&format!("v = {verify}")).expect("toml");
        let verify_toml = toml::to_string(&verify_table["v"]).expect("toml");
        let body = serde_json::to_vec(&json!({"id": format!("evt_{name}"), "type": "ping"}))
            .expect("json");
        let signed = sign(&verify_toml, &body, &format!("delivery_{name}"), unix_now());
        let first = post(
            &client,
            &gateway.webhook_url(name),
            &signed,
            "application/json",
        )
        .await;
        assert_eq!(first.status, 202, "{name}: {}", first.json);
        let second = post(
            &client,
            &gateway.webhook_url(name),
            &signed,
            "application/json",
        )
        .await;
        assert_eq!(second.status, 200, "{name}: {}", second.json);
        assert_eq!(second.json["event_id"], first.json["event_id"], "{name}");
        let expected_key = match *name {
            "standard" | "svix" => Some(format!("delivery_{name}")),
            "stripe" => Some(format!("evt_{name}")),
            "github" | "shopify" => Some(format!("delivery_{name}")),
            _ => None,
        };
        if let Some(expected) = expected_key {
            assert_eq!(
                first.json["idempotency_key"],
                expected.as_str(),
                "{name}: the scheme's default key"
            );
        }
    }
    assert_eq!(gateway.event_count(), schemes.len() as i64);
}

/// Svix sends either the `svix-*` or the `webhook-*` header names; a source left on the default
/// key accepts both, keyed on the id that was sent (and signed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_with_the_default_key_accepts_both_header_spellings_once() {
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"svix\"\nverify = {{ scheme = \"svix\", secrets = [\"{STANDARD_SECRET}\"] }}\n"
    ));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("svix");
    let svix_verify = format!("scheme = \"svix\"\nsecrets = [\"{STANDARD_SECRET}\"]");
    let cases = [
        // Signed like `standard`: the same scheme under the `webhook-*` names.
        ("webhook-id", STANDARD_VERIFY, "msg_webhook_names"),
        ("svix-id", svix_verify.as_str(), "msg_svix_names"),
    ];
    let mut event_ids = HashSet::new();
    for (id_header, verify, message_id) in cases {
        let body = serde_json::to_vec(&json!({"type": "ping", "via": id_header})).expect("json");
        let signed = sign(verify, &body, message_id, unix_now());
        assert!(
            signed.headers.iter().any(|(name, _)| name == id_header),
            "{id_header}: {:?}",
            signed.headers
        );
        let event_id = post_twice(&client, &url, &signed).await;
        let again = post(&client, &url, &signed, "application/json").await;
        assert_eq!(again.status, 200, "{id_header}: {}", again.json);
        assert_eq!(again.json["idempotency_key"], message_id, "{id_header}");
        assert_eq!(again.json["event_id"], event_id.as_str(), "{id_header}");
        event_ids.insert(event_id);
    }
    assert_eq!(event_ids.len(), 2);
    assert_eq!(gateway.event_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_is_in_wal_mode_with_full_sync() {
    let gateway = Gateway::start(&standard_source("hooks", ""));
    let mode: String = gateway
        .db()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_the_server_stays_healthy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = Gateway::start(&standard_source("hooks", ""));
    let host = gateway.intake.trim_start_matches("http://").to_owned();

    // Headers that never finish: the connection is closed after header_timeout (1s here).
    let mut silent = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    silent
        .write_all(b"POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buffer))
        .await
        .expect("closed in time");
    assert!(started.elapsed() < Duration::from_secs(4));

    // A body that stalls: 408 after body_timeout, nothing stored.
    let signed = standard_request("m-slow", &json!({"n": 1}));
    let mut stalled = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let mut head = format!(
        "POST /webhooks/hooks HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        signed.body.len() + 100
    );
    for (name, value) in &signed.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stalled.write_all(head.as_bytes()).await.expect("write");
    stalled.write_all(&signed.body).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut response))
        .await
        .expect("answered in time");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_timeout"), "{response}");

    assert_eq!(gateway.event_count(), 0);
    assert!(gateway.healthy().await);
    let client = reqwest::Client::new();
    for expected in [202, 200] {
        assert_eq!(
            post(
                &client,
                &gateway.webhook_url("hooks"),
                &signed,
                "application/json"
            )
            .await
            .status,
            expected
        );
    }
}

/// Histogram samples are folded by an upkeep thread, not only by a scrape: a gateway nobody
/// scrapes must not keep every latency sample it ever recorded.
#[test]
fn an_unscraped_gateway_folds_its_histograms() {
    let gateway = Gateway::start(&standard_source("hooks", ""));
    let pid = gateway.pid().expect("the gateway runs");
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the gateway's threads")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        threads.iter().any(|name| name == "oncehook-upkeep"),
        "no metrics upkeep thread among {threads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_schemas_choose_by_version_and_keep_fields_shape_what_is_stored() {
    let crm = crate::common::receiver::Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let v1 = json!({"type": "object", "required": ["email"]});
    let v2 = json!({"type": "object", "required": ["phone"]});
    std::fs::write(dir.path().join("lead.v1.json"), v1.to_string()).expect("v1");
    std::fs::write(dir.path().join("lead.v2.json"), v2.to_string()).expect("v2");
    let gateway = Gateway::start(&format!(
        "{}[[destinations]]\nname = \"crm\"\nurl = \"{}\"\n\
         [[routes]]\nsource = \"leads\"\nto = [\"crm\"]\n",
        standard_source(
            "leads",
            &format!(
                "schema = {{ pointer = \"/version\", versions = {{ \"1\" = \"{}\", \"2\" = \"{}\" }} }}\n\
                 drop_fields = [\"/meta/ip\"]\n\
                 keep_fields = [\"/version\", \"/email\", \"/phone\", \"/meta\"]",
                dir.path().join("lead.v1.json").display(),
                dir.path().join("lead.v2.json").display()
            )
        ),
        crm.url
    ));
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("leads");

    // Unknown and missing versions: 400 naming the versions accepted, nothing stored.
    for (n, body) in [
        json!({"version": "3", "email": "a@x"}),
        json!({"email": "a@x"}),
    ]
    .iter()
    .enumerate()
    {
        let signed = standard_request(&format!("msg_bad_{n}"), body);
        for _ in 0..2 {
            let reply = post(&client, &url, &signed, "application/json").await;
            assert_eq!(reply.status, 400, "{}", reply.json);
            let error = reply.json["error"].as_str().expect("error");
            assert!(error.contains("accepts 1, 2"), "{error}");
            assert_eq!(reply.json["detail"]["accepted"], json!(["1", "2"]));
        }
    }
    // A version's own schema decides.
    let wrong = standard_request("msg_wrong", &json!({"version": 2, "email": "a@x"}));
    let reply = post(&client, &url, &wrong, "application/json").await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    assert_eq!(
        gateway.event_count(),
        0,
        "nothing stored for a rejected request"
    );

    // Accepted under version 2, sent twice: one event, one delivery of the kept fields only.
    let body = json!({"version": 2, "phone": "+49 1", "card": "4111", "meta": {"ip": "1.2.3.4", "ua": "x"}});
    let signed = standard_request("msg_v2", &body);
    let first = post(&client, &url, &signed, "application/json").await;
    assert_eq!(first.status, 202, "{}", first.json);
    let second = post(&client, &url, &signed, "application/json").await;
    assert_eq!(second.status, 200, "{}", second.json);
    crm.wait_for(Duration::from_secs(20), "the delivery", |r| {
        r.iter().any(|r| r.answered == Some(200))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = crm.received();
    assert_eq!(received.len(), 1, "one delivery for two sends");
    assert_eq!(
        received[0].json(),
        json!({"version": 2, "phone": "+49 1", "meta": {"ua": "x"}})
    );
    assert_eq!(gateway.event_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_is_timed_as_intake_sees_it() {
    let gateway = Gateway::start(&format!("{}{DESTINATIONS}", standard_source("hooks", "")));
    let client = reqwest::Client::new();
    let signed = standard_request("msg_timed", &json!({"type": "lead.created"}));
    let url = gateway.webhook_url("hooks");
    let event_id = post_twice(&client, &url, &signed).await;
    assert!(!event_id.is_empty());
    assert_eq!(gateway.event_count(), 1);
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Both requests reached the store: the new event and its duplicate.
    assert!(
        metrics.contains("oncehook_store_op_duration_seconds_count{op=\"accept\"} 2"),
        "{metrics}"
    );
}
