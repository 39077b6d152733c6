//! What a captured or crafted request can do to the promise "each provider event once", and what
//! the store keeps of a request, end to end against the real binary on SQLite and PostgreSQL.
//! Each test is an attack that succeeded before its fix: the attack, the expected outcome, and
//! the honest traffic beside it still going through.

use std::time::{Duration, Instant};

use crate::common::pg::PgSchema;
use crate::common::receiver::{Receiver, Reply};
use crate::common::{ADMIN_TOKEN, Gateway, GatewayOptions, Signed, post, sign, unix_now};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GITHUB_SECRET: &str = "gh-edge-secret-41c9";
const SHOPIFY_SECRET: &str = "shpss_edge_secret_77a1";
const FORMS_SECRET: &str = "forms-edge-secret-19fe";
const WAIT: Duration = Duration::from_secs(20);

/// Where a test's gateway keeps its data.
enum Backend {
    Sqlite,
    Postgres(Box<PgSchema>),
}

impl Backend {
    /// SQLite always; PostgreSQL when `ONCEHOOK_TEST_PG` names a server.
    async fn all() -> Vec<Backend> {
        let mut backends = vec![Backend::Sqlite];
        if let Some(schema) = PgSchema::create().await {
            backends.push(Backend::Postgres(Box::new(schema)));
        }
        backends
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn start(&self, body: &str, options: GatewayOptions) -> Gateway {
        let store_url = match self {
            Backend::Sqlite => None,
            Backend::Postgres(schema) => Some(schema.url()),
        };
        Gateway::start_with(
            body,
            GatewayOptions {
                store_url,
                ..options
            },
        )
    }
}

fn verify(scheme: &str, secret: &str) -> String {
    format!("scheme = \"{scheme}\"\nsecrets = [\"{secret}\"]")
}

fn meta_verify() -> String {
    "scheme = \"meta\"\nsecrets = [\"meta-edge-secret-5e\"]\nverify_token = \"t\"".to_owned()
}

fn verify_forms() -> String {
    format!(
        "scheme = \"hmac\"\nheader = \"X-Signature\"\nalgorithm = \"sha256\"\nencoding = \"hex\"\n\
         secrets = [\"{FORMS_SECRET}\"]"
    )
}

/// `source`'s event (`GET /api/v1/events/{id}`), once every delivery of it is in a final state.
async fn settled_event(gateway: &Gateway, event_id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, event) = gateway
            .admin_get(&format!("/api/v1/events/{event_id}"))
            .await;
        let settled = status == 200
            && event["deliveries"].as_array().is_some_and(|deliveries| {
                !deliveries.is_empty()
                    && deliveries
                        .iter()
                        .all(|d| d["state"] == "delivered" || d["state"] == "dead")
            });
        if settled {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "event {event_id} did not settle: {status} {event}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn total_events(gateway: &Gateway) -> usize {
    let (status, page) = gateway.admin_get("/api/v1/events?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().map_or(0, Vec::len)
}

/// Posts `signed`; returns (status, JSON answer).
async fn send(client: &reqwest::Client, url: &str, signed: &Signed) -> (u16, Value) {
    let reply = post(client, url, signed, "application/json").await;
    (reply.status, reply.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_body_resent_with_new_delivery_ids_is_a_replay() {
    for backend in Backend::all().await {
        let sink = Receiver::start().await;
        let gateway = backend.start(
            &format!(
                "[[sources]]\nname = \"github\"\nverify = {{ {} }}\n\n\
                 [[sources]]\nname = \"shopify\"\nverify = {{ {} }}\n\n\
                 [[sources]]\nname = \"meta\"\nverify = {{ {} }}\n\
                 key = [\"header:X-Delivery-Id\", \"fingerprint\"]\n\n\
                 [[destinations]]\nname = \"sink\"\nurl = \"{}\"\n\n\
                 [[routes]]\nsource = \"github\"\nto = [\"sink\"]\n\n\
                 [[routes]]\nsource = \"shopify\"\nto = [\"sink\"]\n\n\
                 [[routes]]\nsource = \"meta\"\nto = [\"sink\"]\n",
                verify("github", GITHUB_SECRET).replace('\n', ", "),
                verify("shopify", SHOPIFY_SECRET).replace('\n', ", "),
                meta_verify().replace('\n', ", "),
                sink.url
            ),
            GatewayOptions::default(),
        );
        let client = reqwest::Client::new();
        let mut originals = Vec::new();
        for (source, verifier) in [
            ("github", verify("github", GITHUB_SECRET)),
            ("shopify", verify("shopify", SHOPIFY_SECRET)),
            ("meta", meta_verify()),
        ] {
            // Meta sends no delivery id of its own: this source keys on one a relay adds.
            let sign = |body: &[u8], delivery: &str| {
                let mut signed = sign(&verifier, body, delivery, unix_now());
                if source == "meta" {
                    signed
                        .headers
                        .push(("x-delivery-id".to_owned(), delivery.to_owned()));
                }
                signed
            };
            let url = gateway.webhook_url(source);
            let body =
                serde_json::to_vec(&json!({"action": "opened", "number": 7, "source": source}))
                    .expect("json");
            let captured = sign(&body, "delivery-1");
            let (status, first) = send(&client, &url, &captured).await;
            assert_eq!(status, 202, "{}: {source}: {first}", backend.name());
            let event_id = first["event_id"].clone();
            // The provider's own retry: the same delivery id.
            let (status, again) = send(&client, &url, &captured).await;
            assert_eq!(
                (status, &again["reason"], &again["event_id"]),
                (200, &json!("key"), &event_id)
            );
            // The attacker's replays: the captured body and signature under fresh delivery ids.
            for fresh in ["delivery-2", "delivery-3"] {
                let replayed = sign(&body, fresh);
                assert_eq!(replayed.body, captured.body);
                let (status, answer) = send(&client, &url, &replayed).await;
                assert_eq!(
                    (
                        status,
                        &answer["status"],
                        &answer["reason"],
                        &answer["event_id"]
                    ),
                    (200, &json!("duplicate"), &json!("replay"), &event_id),
                    "{}: {source}: {answer}",
                    backend.name()
                );
                assert_eq!(answer["conflict"], false);
            }
            // Honest traffic: a new body is a new event, sent twice.
            let honest_body =
                serde_json::to_vec(&json!({"action": "closed", "number": 7})).expect("json");
            let honest = sign(&honest_body, "delivery-4");
            let (status, answer) = send(&client, &url, &honest).await;
            assert_eq!(status, 202, "{answer}");
            let (status, answer) = send(&client, &url, &honest).await;
            assert_eq!((status, &answer["reason"]), (200, &json!("key")));
            originals.push(event_id.as_str().expect("event_id").to_owned());
        }
        for event_id in &originals {
            settled_event(&gateway, event_id).await;
        }
        sink.wait_for(WAIT, "six deliveries", |r| r.len() >= 6)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let received = sink.received();
        assert_eq!(
            received.len(),
            6,
            "{}: one delivery per event",
            backend.name()
        );
        for event_id in &originals {
            let deliveries = sink.for_event(event_id);
            assert_eq!(deliveries.len(), 1, "{}: {event_id}", backend.name());
        }
        assert_eq!(total_events(&gateway).await, 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_cannot_suppress_a_future_body_with_the_same_fingerprint() {
    for backend in Backend::all().await {
        let sink = Receiver::start().await;
        let gateway = backend.start(
            &format!(
                "[[sources]]\nname = \"forms\"\nverify = {{ {} }}\n\
                 key = [\"header:Idempotency-Key\", \"fingerprint\"]\n\n\
                 [[destinations]]\nname = \"sink\"\nurl = \"{}\"\n\n\
                 [[routes]]\nsource = \"forms\"\nto = [\"sink\"]\n",
                verify_forms().replace('\n', ", "),
                sink.url
            ),
            GatewayOptions::default(),
        );
        let client = reqwest::Client::new();
        let url = gateway.webhook_url("forms");
        // The lead that will arrive later, without an Idempotency-Key: keyed by its fingerprint.
        let future = json!({"lead": "future", "email": "someone@example.com"});
        let fingerprint = oncehook::domain::fingerprint::fingerprint_json(&future, &[]).to_hex();

        // The attacker (who can sign: a compromised or careless first-party producer) plants that
        // fingerprint as a header key.
        let mut planted = sign(
            &verify_forms(),
            &serde_json::to_vec(&json!({"noise": 1})).expect("json"),
            "",
            unix_now(),
        );
        planted
            .headers
            .push(("idempotency-key".to_owned(), fingerprint.clone()));
        let (status, answer) = send(&client, &url, &planted).await;
        assert_eq!(status, 202, "{}: {answer}", backend.name());
        let (status, _) = send(&client, &url, &planted).await;
        assert_eq!(status, 200);

        let real = sign(
            &verify_forms(),
            &serde_json::to_vec(&future).expect("json"),
            "",
            unix_now(),
        );
        let (status, first) = send(&client, &url, &real).await;
        assert_eq!(
            status,
            202,
            "{}: the real body was suppressed: {first}",
            backend.name()
        );
        assert_eq!(first["idempotency_key"], json!(fingerprint));
        let (status, again) = send(&client, &url, &real).await;
        assert_eq!(
            (status, &again["event_id"], &again["reason"]),
            (200, &first["event_id"], &json!("key"))
        );
        let event_id = first["event_id"].as_str().expect("event_id");
        settled_event(&gateway, event_id).await;
        sink.wait_for(WAIT, "both events", |r| r.len() >= 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.received().len(), 2);
        assert_eq!(sink.for_event(event_id).len(), 1);
        assert_eq!(sink.for_event(event_id)[0].json(), future);
    }
}

/// Everything readable in the store: the raw SQLite files, or every row of the PostgreSQL
/// schema with binary columns decoded as bytes.
async fn raw_store_contents(backend: &Backend, gateway: &Gateway) -> Vec<u8> {
    match backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for extension in ["db", "db-wal", "db-shm"] {
                bytes.extend(
                    std::fs::read(gateway.db_path().with_extension(extension)).unwrap_or_default(),
                );
            }
            bytes
        }
        Backend::Postgres(schema) => {
            // Every column of every table in the schema, bytea decoded so plaintext would show.
            let columns = schema
                .text_rows(&format!(
                    "SELECT table_name::text, column_name::text, data_type::text
                     FROM information_schema.columns WHERE table_schema = '{}'",
                    schema.name
                ))
                .await;
            let mut bytes = Vec::new();
            for column in columns {
                let [Some(table), Some(name), Some(data_type)] = &column[..] else {
                    continue;
                };
                let expression = if data_type == "bytea" {
                    format!("encode(\"{name}\", 'escape')")
                } else {
                    format!("\"{name}\"::text")
                };
                for row in schema
                    .text_rows(&format!(
                        "SELECT {expression} FROM {}.\"{table}\"",
                        schema.name
                    ))
                    .await
                {
                    for value in row.into_iter().flatten() {
                        bytes.extend(value.into_bytes());
                        bytes.push(b'\n');
                    }
                }
            }
            bytes
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_encryption_nothing_a_provider_sent_is_readable_at_rest_or_in_the_output() {
    const SSN: &str = "078-05-1120";
    const EMAIL: &str = "Planted.Person.5521@Example.com";
    const API_KEY: &str = "planted-api-key-5fd0c1";
    const MARKER: &str = "plain-marker-not-masked-93be";
    for backend in Backend::all().await {
        let ok = Receiver::start().await;
        // A destination that quotes the payload, SSN included, in its error answer.
        let failing = Receiver::start().await;
        failing.set_script(|_, _| Reply::Echo(400));
        let gateway = backend.start(
            &format!(
                "[[sources]]\nname = \"forms\"\nverify = {{ {} }}\n\
                 key = [\"json:/submission_id + email:/email\"]\n\
                 mask_fields = [\"/ssn\"]\nsearch_fields = {{ email = \"/email\" }}\n\n\
                 [[destinations]]\nname = \"ok\"\nurl = \"{}\"\n\n\
                 [[destinations]]\nname = \"failing\"\nurl = \"{}\"\n\n\
                 [[routes]]\nsource = \"forms\"\nto = [\"ok\", \"failing\"]\n\
                 ordering_key = \"json:/ssn\"\n",
                verify_forms().replace('\n', ", "),
                ok.url,
                failing.url
            ),
            GatewayOptions {
                store_extra: "encryption_key = \"${ONCEHOOK_TEST_KEY}\"".to_owned(),
                env: vec![
                    (
                        "ONCEHOOK_TEST_KEY".to_owned(),
                        "planted-store-key-0b7e".to_owned(),
                    ),
                    ("ONCEHOOK_LOG".to_owned(), "trace".to_owned()),
                ],
                ..GatewayOptions::default()
            },
        );
        let client = reqwest::Client::new();
        let body = json!({
            "submission_id": "sub-1",
            "email": EMAIL,
            "ssn": SSN,
            "note": MARKER,
        });
        let mut signed = sign(
            &verify_forms(),
            &serde_json::to_vec(&body).expect("json"),
            "",
            unix_now(),
        );
        let signature = signed
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-signature"))
            .map(|(_, value)| value.clone())
            .expect("signature header");
        signed
            .headers
            .push(("x-api-key".to_owned(), API_KEY.to_owned()));
        signed
            .headers
            .push(("user-agent".to_owned(), "edge-test/1".to_owned()));
        let (status, first) = send(&client, &gateway.webhook_url("forms"), &signed).await;
        assert_eq!(status, 202, "{}: {first}", backend.name());
        let (status, again) = send(&client, &gateway.webhook_url("forms"), &signed).await;
        assert_eq!((status, &again["event_id"]), (200, &first["event_id"]));
        let event_id = first["event_id"].as_str().expect("event_id");
        let event = settled_event(&gateway, event_id).await;
        // The honest destination got the payload intact.
        ok.wait_for(WAIT, "the delivery", |r| !r.is_empty()).await;
        assert_eq!(ok.received()[0].json(), body);
        let failed = event["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination"] == "failing"))
            .expect("the failing delivery")
            .clone();
        assert_eq!(failed["state"], "dead", "{event}");
        let error = failed["last_error"].as_str().expect("last_error");
        assert!(error.starts_with("HTTP 400"), "{error}");
        assert!(error.len() <= 512, "{} bytes", error.len());
        // Stored headers: the allow-list only.
        let headers = event["headers"].as_object().expect("headers");
        assert_eq!(headers["user-agent"], "edge-test/1", "{event}");
        assert!(!headers.contains_key("x-api-key"), "{event}");
        assert!(!headers.contains_key("x-signature"), "{event}");

        let email_sha256 = hex::encode(Sha256::digest(EMAIL.trim().to_lowercase()));
        let planted = [
            ("a masked value", SSN.to_owned()),
            ("a searchable value", EMAIL.to_owned()),
            ("a searchable value", EMAIL.to_lowercase()),
            ("the email's unkeyed hash", email_sha256.clone()),
            ("an API-key header", API_KEY.to_owned()),
            ("the signature", signature.clone()),
            ("a payload field", MARKER.to_owned()),
            ("the store key", "planted-store-key-0b7e".to_owned()),
        ];
        let at_rest = raw_store_contents(&backend, &gateway).await;
        assert!(at_rest.len() > 1000, "{}: nothing read", backend.name());
        for (what, value) in &planted {
            assert!(
                !contains(&at_rest, value),
                "{}: {what} is readable in the store",
                backend.name()
            );
        }
        // The API answers and the logs: no masked or searchable value, no credential.
        let mut answers = Vec::new();
        for path in [
            format!("/api/v1/events/{event_id}"),
            "/api/v1/events".to_owned(),
            "/api/v1/dlq".to_owned(),
            "/api/v1/dlq?group_by=reason".to_owned(),
        ] {
            let (status, answer) = gateway.admin_get(&path).await;
            assert_eq!(status, 200, "{path}: {answer}");
            answers.push(answer.to_string());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let output = answers.join("\n") + &gateway.logs().join("\n");
        for (what, value) in &planted {
            if *what == "a payload field" {
                continue; // Not masked: operators may see it in a preview.
            }
            assert!(
                !contains(output.as_bytes(), value),
                "{}: {what} in an API answer or a log line",
                backend.name()
            );
        }
        assert!(!output.contains(ADMIN_TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_looks_encrypted_is_stored_and_delivered_as_sent() {
    for backend in Backend::all().await {
        let sink = Receiver::start().await;
        let gateway = backend.start(
            &format!(
                "[[sources]]\nname = \"forms\"\nverify = {{ {} }}\n\n\
                 [[destinations]]\nname = \"sink\"\nurl = \"{}\"\n\n\
                 [[routes]]\nsource = \"forms\"\nto = [\"sink\"]\n",
                verify_forms().replace('\n', ", "),
                sink.url
            ),
            GatewayOptions::default(),
        );
        let client = reqwest::Client::new();
        // The ciphertext frame's magic, a plausible key id and nonce, and some bytes.
        let body = b"OHE1\x01\x02\x03\x04abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
        let signed = sign(&verify_forms(), &body, "", unix_now());
        let first = post(
            &client,
            &gateway.webhook_url("forms"),
            &signed,
            "application/octet-stream",
        )
        .await;
        assert_eq!(first.status, 202, "{}: {}", backend.name(), first.json);
        let again = post(
            &client,
            &gateway.webhook_url("forms"),
            &signed,
            "application/octet-stream",
        )
        .await;
        assert_eq!(
            (again.status, &again.json["event_id"]),
            (200, &first.json["event_id"])
        );
        let event_id = first.json["event_id"].as_str().expect("event_id");
        let event = settled_event(&gateway, event_id).await;
        assert_eq!(event["deliveries"][0]["state"], "delivered", "{event}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let received = sink.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].body, body);
    }
}

/// A destination that answers every request with `status` and a 1 GiB body, written as fast as
/// the gateway reads it. Returns its URL and a counter of the bytes it managed to write.
async fn endless_destination(
    status: u16,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = std::sync::Arc::clone(&counter);
            tokio::spawn(async move {
                // Read the request head and body (small).
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                const GIB: u64 = 1 << 30;
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {GIB}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..1024 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (url, written)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_streaming_a_gibibyte_cannot_grow_the_gateway() {
    use std::sync::atomic::Ordering;
    let (ok_url, ok_written) = endless_destination(200).await;
    let (failing_url, failing_written) = endless_destination(500).await;
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"forms\"\nverify = {{ {} }}\n\n\
         [[destinations]]\nname = \"ok\"\nurl = \"{ok_url}\"\n\n\
         [[destinations]]\nname = \"failing\"\nurl = \"{failing_url}\"\nmax_attempts = 2\n\
         backoff = {{ base = \"50ms\", max = \"100ms\" }}\ncircuit_breaker = false\n\n\
         [[routes]]\nsource = \"forms\"\nto = [\"ok\", \"failing\"]\n",
        verify_forms().replace('\n', ", "),
    ));
    let pid = gateway.pid().expect("pid");
    let client = reqwest::Client::new();
    let mut event_ids = Vec::new();
    for n in 0..4 {
        let signed = sign(
            &verify_forms(),
            &serde_json::to_vec(&json!({"n": n})).expect("json"),
            "",
            unix_now(),
        );
        let (status, first) = send(&client, &gateway.webhook_url("forms"), &signed).await;
        assert_eq!(status, 202, "{first}");
        let (status, _) = send(&client, &gateway.webhook_url("forms"), &signed).await;
        assert_eq!(status, 200);
        event_ids.push(first["event_id"].as_str().expect("id").to_owned());
    }
    let mut peak = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        peak = peak.max(rss_kib(pid));
        let deliveries = gateway.deliveries();
        if deliveries.len() == 8
            && deliveries
                .iter()
                .all(|d| d.2 == if d.1 == "ok" { "delivered" } else { "dead" })
        {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {deliveries:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak = peak.max(rss_kib(pid));
    let written = ok_written.load(Ordering::Relaxed) + failing_written.load(Ordering::Relaxed);
    eprintln!(
        "peak RSS {} MiB; destinations wrote {} MiB",
        peak / 1024,
        written >> 20
    );
    assert!(peak < 256 * 1024, "RSS reached {} MiB", peak / 1024);
    // The gateway hung up early: it did not read the gigabytes.
    assert!(written < 12 * (64 << 20), "{written} bytes were taken");
    for event_id in &event_ids {
        let event = settled_event(&gateway, event_id).await;
        let failed = event["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination"] == "failing"))
            .expect("failing delivery")
            .clone();
        let error = failed["last_error"].as_str().expect("last_error");
        assert!(error.starts_with("HTTP 500: xxx"), "{error}");
        assert!(error.len() <= 512, "{} bytes", error.len());
    }
    assert!(gateway.healthy().await);
}
