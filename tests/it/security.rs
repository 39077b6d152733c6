//! The security review, end to end against the real binary: the admin API's token, the split
//! between the intake and admin listeners, secrets and masked values kept out of every log
//! line, and hostile requests (oversized heads, malformed framing, connection floods) that
//! must neither crash the process nor reach a handler.
//!
//! Covered elsewhere and not repeated here: a missing, wrong or empty token on every route
//! (`tests/admin.rs`), slow heads and bodies (`tests/intake.rs`,
//! `slow_clients_are_cut_off_and_the_server_stays_healthy`), declared and actual oversized
//! bodies (`tests/intake.rs`, `every_rejection_has_its_status_a_json_error_and_stores_nothing`),
//! and the limits kept per client address before authentication: forged floods, slow and large
//! bodies from one address, encodings (`tests/it/edge_limits.rs`).

use std::time::{Duration, Instant};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{
    ADMIN_TOKEN, Gateway, GatewayOptions, post, post_twice, send_json, sign, unix_now,
};
use base64::Engine as _;
use oncehook::server::MAX_HEAD_BYTES;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GITHUB_SECRET: &str = "gh-source-secret-5a1d93c7";
const SIGNING_SECRET: &str = "whsec_C2FtcGxlLXNpZ25pbmctc2VjcmV0LTEyMzQ1Njc4";
const WAIT: Duration = Duration::from_secs(20);

fn verify_standard() -> String {
    format!("scheme = \"standard\"\nsecrets = [\"{STANDARD_SECRET}\"]")
}

fn verify_github() -> String {
    format!("scheme = \"github\"\nsecrets = [\"{GITHUB_SECRET}\"]")
}

/// A source for each family of schemes (timestamped and body-only), both routed to `ok` and
/// `failing`; `extra` is added to the `forms` source.
fn config(ok_url: &str, failing_url: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"hooks\"\n\
         verify = {{ scheme = \"standard\", secrets = [\"{STANDARD_SECRET}\"] }}\n\
         mask_fields = [\"/card\", \"/email\"]\n\n\
         [[sources]]\nname = \"forms\"\n\
         verify = {{ scheme = \"github\", secrets = [\"{GITHUB_SECRET}\"] }}\n\
         key = [\"json:/email + json:/id\", \"fingerprint\"]\n\
         mask_fields = [\"/card\"]\n\
         search_fields = {{ email = \"/email\" }}\n{extra}\n\n\
         [[destinations]]\nname = \"ok\"\nurl = \"{ok_url}\"\nsigning_secret = \"{SIGNING_SECRET}\"\n\n\
         [[destinations]]\nname = \"failing\"\nurl = \"{failing_url}\"\nmax_attempts = 2\n\
         signing_secret = \"{SIGNING_SECRET}\"\nbackoff = {{ base = \"20ms\", max = \"50ms\" }}\n\n\
         [[routes]]\nsource = \"hooks\"\nto = [\"ok\", \"failing\"]\n\n\
         [[routes]]\nsource = \"forms\"\nto = [\"ok\", \"failing\"]\nordering_key = \"json:/email\"\n"
    )
}

/// Raw HTTP/1.1 over a fresh connection: what the server answered, or "" when it closed the
/// connection without answering.
async fn raw_exchange(host: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(host).await.expect("connect");
    // The server may answer and close before it has read everything sent.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn status_of(response: &str) -> Option<u16> {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_route_answers_any_wrong_credential_or_gives_data() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start(&config(&sink.url, &sink.url, ""));
    // A real event, so that a route leaking data would have some to leak.
    let body = serde_json::to_vec(&json!({"id": "e-1", "email": "a@example.com"})).expect("json");
    let signed = sign(&verify_github(), &body, "d-1", unix_now());
    let client = reqwest::Client::new();
    let event_id = post_twice(&client, &gateway.webhook_url("forms"), &signed).await;
    assert_eq!(gateway.event_count(), 1);

    let (status, document) = gateway.admin_get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");

    // Same length as the real token, every byte different: a comparison that stops at the
    // first difference or compares lengths only would be caught by the right-length ones.
    let same_length: String = ADMIN_TOKEN
        .bytes()
        .map(|b| if b == b'x' { 'y' } else { 'x' })
        .collect();
    let last_byte_differs = format!("{}X", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let basic = base64::engine::general_purpose::STANDARD;
    let credentials: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("wrong token", Some("Bearer not-the-token".to_owned())),
        ("same length", Some(format!("Bearer {same_length}"))),
        (
            "last byte differs",
            Some(format!("Bearer {last_byte_differs}")),
        ),
        (
            "prefix of the token",
            Some(format!("Bearer {}", &ADMIN_TOKEN[..4])),
        ),
        (
            "token with a suffix",
            Some(format!("Bearer {ADMIN_TOKEN}x")),
        ),
        (
            "Basic with the token as password",
            Some(format!(
                "Basic {}",
                basic.encode(format!("admin:{ADMIN_TOKEN}"))
            )),
        ),
        (
            "Basic with the token alone",
            Some(format!("Basic {}", basic.encode(ADMIN_TOKEN))),
        ),
        ("the token without a scheme", Some(ADMIN_TOKEN.to_owned())),
        ("another scheme", Some(format!("Token {ADMIN_TOKEN}"))),
        ("Bearer and nothing", Some("Bearer".to_owned())),
    ];

    let mut targets: Vec<(reqwest::Method, String)> = Vec::new();
    for (path, item) in paths {
        let uri = path.replace("{id}", &event_id).replace(['{', '}'], "");
        for method in item.as_object().expect("path item").keys() {
            let method: reqwest::Method = method.to_ascii_uppercase().parse().expect("method");
            targets.push((method, uri.clone()));
        }
    }
    assert!(targets.len() >= 8, "{targets:?}");
    // Neither an unknown route nor a wrong method may answer differently without the token.
    targets.push((reqwest::Method::GET, "/api/v1/no-such-route".to_owned()));
    targets.push((reqwest::Method::DELETE, "/api/v1/events".to_owned()));
    targets.push((
        reqwest::Method::GET,
        format!("/api/v1/events?token={ADMIN_TOKEN}"),
    ));

    for (method, uri) in &targets {
        for (what, credential) in &credentials {
            let mut request = client.request(method.clone(), format!("{}{uri}", gateway.admin));
            if let Some(credential) = credential {
                request = request.header("authorization", credential);
            }
            if *method == reqwest::Method::POST {
                request = request
                    .header("content-type", "application/json")
                    .body(json!({"dry_run": true, "reason": "probe"}).to_string());
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            assert_eq!(status, 401, "{method} {uri} with {what}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let keys: Vec<&String> = body
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert_eq!(keys, ["error"], "{method} {uri} with {what}: {text}");
            assert!(
                !text.contains(&event_id) && !text.contains("example.com"),
                "{method} {uri} with {what} gave data away: {text}"
            );
        }
    }

    // The real token still works, so the refusals above were about the credential.
    let (status, _) = gateway
        .admin_get(&format!("/api/v1/events/{event_id}"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_and_admin_are_separate_listeners() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start(&config(&sink.url, &sink.url, ""));
    assert_ne!(gateway.intake, gateway.admin);
    let client = reqwest::Client::new();

    // The intake port serves webhooks only, even with the admin token.
    for path in [
        "/api/v1/events",
        "/api/v1/openapi.json",
        "/api/v1/stats",
        "/metrics",
        "/console",
        "/console/app.js",
        "/healthz",
        "/readyz",
    ] {
        let response = client
            .get(format!("{}{path}", gateway.intake))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, 404, "intake answered {path}: {text}");
        assert!(!text.contains("oncehook_"), "{path}: {text}");
    }
    let (status, _) = send_json(
        client
            .post(format!("{}/api/v1/replays", gateway.intake))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(json!({"dry_run": true, "reason": "probe"}).to_string()),
    )
    .await;
    assert_eq!(status, 404);

    // The admin port takes no webhooks, even correctly signed ones.
    let body = serde_json::to_vec(&json!({"id": "e-1"})).expect("json");
    let signed = sign(&verify_standard(), &body, "m-admin", unix_now());
    let mut request = client
        .post(format!("{}/webhooks/hooks", gateway.admin))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in &signed.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(gateway.event_count(), 0);

    // Both answer what they do serve.
    post_twice(&client, &gateway.webhook_url("hooks"), &signed).await;
    assert_eq!(gateway.event_count(), 1);
    assert!(gateway.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_masked_values_never_reach_the_output() {
    const CARD: &str = "4111-0000-7788-9911";
    const REJECTED_CARD: &str = "card-rejected-5512XY";
    const EMAIL: &str = "hidden.person.7731@example.com";
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    // It quotes the request in its error answer, which the attempt log then carries.
    failing.set_script(|_, _| Reply::Echo(500));

    // The schema refuses REJECTED_CARD, so a validation error about a masked field is logged too.
    let schema_dir = tempfile::tempdir().expect("tempdir");
    let schema_path = schema_dir.path().join("forms.schema.json");
    let schema = json!({
        "type": "object",
        "properties": {"card": {"type": "string", "pattern": "^[0-9-]+$"}}
    });
    std::fs::write(&schema_path, schema.to_string()).expect("schema");
    let gateway = Gateway::start_with(
        &config(
            &ok.url,
            &failing.url,
            &format!("schema = \"{}\"", schema_path.display()),
        ),
        GatewayOptions {
            env: vec![("ONCEHOOK_LOG".to_owned(), "trace".to_owned())],
            ..GatewayOptions::default()
        },
    );
    let client = reqwest::Client::new();
    let now = unix_now();
    let event = json!({"id": "e-1", "type": "card.saved", "card": CARD, "email": EMAIL});
    let event_bytes = serde_json::to_vec(&event).expect("json");

    // Valid events on both sources, each sent twice.
    for (source, verify) in [("hooks", verify_standard()), ("forms", verify_github())] {
        let signed = sign(&verify, &event_bytes, &format!("m-{source}"), now);
        for expected in [202, 200] {
            let reply = post(
                &client,
                &gateway.webhook_url(source),
                &signed,
                "application/json",
            )
            .await;
            assert_eq!(reply.status, expected, "{source}: {}", reply.json);
        }
    }
    // A bad signature, a signature made with another secret, no signature at all.
    for (source, verify) in [
        (
            "hooks",
            "scheme = \"standard\"\nsecrets = [\"whsec_b3RoZXItc2VjcmV0\"]".to_owned(),
        ),
        (
            "forms",
            "scheme = \"github\"\nsecrets = [\"another-secret\"]".to_owned(),
        ),
    ] {
        let signed = sign(&verify, &event_bytes, "m-forged", now);
        let reply = post(
            &client,
            &gateway.webhook_url(source),
            &signed,
            "application/json",
        )
        .await;
        assert_eq!(reply.status, 401, "{source}: {}", reply.json);
        let unsigned = crate::common::Signed {
            headers: Vec::new(),
            body: event_bytes.clone(),
        };
        let reply = post(
            &client,
            &gateway.webhook_url(source),
            &unsigned,
            "application/json",
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    // Validly signed but malformed JSON carrying the values, and a schema violation.
    let malformed = format!("{{\"card\": \"{CARD}\", \"email\": \"{EMAIL}\",");
    let signed = sign(&verify_github(), malformed.as_bytes(), "m-bad-json", now);
    let reply = post(
        &client,
        &gateway.webhook_url("forms"),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    let invalid = serde_json::to_vec(&json!({"id": "e-2", "card": REJECTED_CARD})).expect("json");
    let signed = sign(&verify_github(), &invalid, "m-schema", now);
    let reply = post(
        &client,
        &gateway.webhook_url("forms"),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.json);

    // Every delivery settles: the failing destination goes through retries to dead.
    gateway
        .wait_for_deliveries(WAIT, "every delivery settled", |d| {
            d.len() == 4
                && d.iter()
                    .all(|d| d.2 == if d.1 == "ok" { "delivered" } else { "dead" })
        })
        .await;
    // The admin API with the token, and a search by a hidden value.
    let (status, _) = gateway.admin_get("/api/v1/events").await;
    assert_eq!(status, 200);
    let (status, found) = gateway
        .admin_get(&format!(
            "/api/v1/events?email={}",
            EMAIL.replace('@', "%40")
        ))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["events"].as_array().map(Vec::len), Some(1), "{found}");
    let (status, _) = gateway.admin_get("/api/v1/dlq").await;
    assert_eq!(status, 200);
    // Let the last log lines of the deliveries arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = gateway.logs();
    assert!(
        logs.len() > 50 && logs.iter().any(|line| line.contains("\"TRACE\"")),
        "expected trace-level JSON logs, got {} lines",
        logs.len()
    );
    let standard_key = STANDARD_SECRET.trim_start_matches("whsec_");
    let signing_key = SIGNING_SECRET.trim_start_matches("whsec_");
    let hidden = [
        ("a source secret", STANDARD_SECRET),
        ("a source key", standard_key),
        ("a source secret", GITHUB_SECRET),
        ("the admin token", ADMIN_TOKEN),
        ("the destination signing secret", SIGNING_SECRET),
        ("the destination signing key", signing_key),
        ("a masked value", CARD),
        ("a masked value", REJECTED_CARD),
        ("a masked and searchable value", EMAIL),
    ];
    let searched = EMAIL.replace('@', "%40");
    for line in &logs {
        for (what, value) in hidden {
            assert!(!line.contains(value), "{what} in the output: {line}");
        }
        assert!(
            !line.contains(&searched),
            "a searched value in the output: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_answers_and_the_server_survives() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start(&config(&sink.url, &sink.url, ""));
    let intake = host_of(&gateway.intake);
    let admin = host_of(&gateway.admin);

    for host in [&intake, &admin] {
        // A header far beyond what a head may take: 431 before any handler. (hyper checks the
        // limit between reads, so a head somewhat over it may still get through.)
        let huge = format!(
            "POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(4 * MAX_HEAD_BYTES)
        );
        let response = raw_exchange(host, huge.as_bytes()).await;
        assert_eq!(status_of(&response), Some(431), "{host}: {response:.200}");

        // More headers than the parser keeps room for.
        let mut many = String::from("POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\n");
        for i in 0..500 {
            many.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        many.push_str("Content-Length: 0\r\n\r\n");
        let response = raw_exchange(host, many.as_bytes()).await;
        assert_eq!(status_of(&response), Some(431), "{host}: {response:.200}");

        // A request target longer than the head may be.
        let long_uri = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(4 * MAX_HEAD_BYTES)
        );
        let response = raw_exchange(host, long_uri.as_bytes()).await;
        assert!(
            matches!(status_of(&response), Some(414 | 431)),
            "{host}: {response:.200}"
        );

        // Framing no server should accept.
        for garbage in [
            &b"NOT HTTP AT ALL\r\n\r\n"[..],
            b"POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\nX-Bad\0Name: 1\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
        ] {
            let response = raw_exchange(host, garbage).await;
            let status = status_of(&response);
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "{host} answered {:?} with {response:.200}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    // Odd but well-formed requests reach the handlers and are refused, never with a 5xx.
    let client = reqwest::Client::new();
    let odd_intake = [
        "/webhooks/hooks%00",
        "/webhooks/..%2F..%2Fapi%2Fv1%2Fevents",
        "/webhooks/%F0%9F%92%A5",
        "/webhooks/",
    ];
    for path in odd_intake {
        let response = client
            .post(format!("{}{path}", gateway.intake))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let long_source = format!("{}/webhooks/{}", gateway.intake, "s".repeat(10_000));
    let status = client
        .post(long_source)
        .send()
        .await
        .expect("request")
        .status();
    assert!(status.is_client_error(), "{status}");
    let mut signed_garbage = sign(&verify_standard(), b"\xff\xfe{", "m-bytes", unix_now());
    signed_garbage
        .headers
        .push(("content-type".to_owned(), "application/json".to_owned()));
    let mut request = client
        .post(gateway.webhook_url("hooks"))
        .body(signed_garbage.body.clone());
    for (name, value) in &signed_garbage.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let status = request.send().await.expect("request").status();
    assert_eq!(status, 400);
    let weird_signature =
        reqwest::header::HeaderValue::from_bytes(b"v1,\xff\xfe\x80 ,,, v1,").expect("value");
    let status = client
        .post(gateway.webhook_url("hooks"))
        .header("webhook-id", "m")
        .header("webhook-timestamp", "99999999999999999999999")
        .header("webhook-signature", weird_signature)
        .body("{}")
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401);

    for query in [
        "/api/v1/events?limit=-1",
        "/api/v1/events?limit=99999999999999999999999",
        "/api/v1/events?cursor=%00%FF",
        "/api/v1/events?cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/api/v1/events?since=yesterday",
        "/api/v1/events?since=99999999999y",
        "/api/v1/events?status=%F0%9F%92%A5",
        "/api/v1/events/not-a-uuid",
        "/api/v1/replays/00000000-0000-0000-0000-000000000000",
        "/api/v1/stats?window=-5m",
        "/api/v1/dlq?limit=0",
    ] {
        let (status, body) = gateway.admin_get(query).await;
        assert!((200..500).contains(&status), "{query}: {status} {body}");
        if status >= 400 {
            assert!(body["error"].is_string(), "{query}: {body}");
        }
    }
    for body in [
        "",
        "[]",
        "{\"dry_run\": \"yes\"}",
        "{\"filter\": {\"since\": 1e309}}",
    ] {
        let (status, answer) = send_json(
            client
                .post(format!("{}/api/v1/replays", gateway.admin))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert!((400..500).contains(&status), "{body}: {status} {answer}");
    }

    assert!(gateway.healthy().await, "the server went down");
    let signed = sign(&verify_standard(), b"{\"n\": 1}", "m-after", unix_now());
    post_twice(&client, &gateway.webhook_url("hooks"), &signed).await;
    assert!(
        !gateway.logs().iter().any(|line| line.contains("panicked")),
        "{:?}",
        gateway.logs()
    );
}

/// A panicking handler becomes a 500 on the same listener loop the binary uses, and neither the
/// connection nor the process goes down with it. No route of the binary panics on purpose, so
/// this drives `server::serve` with one that does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    use axum::routing::get;
    use oncehook::server::{HttpLimits, serve};

    async fn boom() -> &'static str {
        panic!("handler bug")
    }
    let router = axum::Router::new()
        .route("/boom", get(boom))
        .route("/ok", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        router,
        HttpLimits {
            header_timeout: Duration::from_secs(1),
            max_connections: 4,
            max_connections_per_ip: 4,
        },
        stop.clone(),
        Duration::from_secs(1),
    ));

    // Both requests on one keep-alive connection: the panic must not cost the connection.
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    stream
        .write_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(
        response.contains("{\"error\":\"internal error\"}"),
        "{response}"
    );
    assert!(!response.contains("handler bug"), "{response}");
    assert!(response.contains("HTTP/1.1 200"), "{response}");

    let again = raw_exchange(
        &host,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&again), Some(200), "{again}");
    stop.cancel();
    server.await.expect("server task");
}

/// `server.max_connections` caps the connections a listener serves at once: further clients
/// wait in the backlog, and the header timeout frees the slots idle clients hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start_with(
        &config(&sink.url, &sink.url, ""),
        GatewayOptions {
            server_extra: "max_connections = 2".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let intake = host_of(&gateway.intake);

    // Two clients take both slots and stall in their request heads.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&intake).await.expect("connect");
        stream
            .write_all(b"POST /webhooks/hooks HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A third, complete request is not served while they hold the slots ...
    let started = Instant::now();
    let mut third = TcpStream::connect(&intake).await.expect("connect");
    third
        .write_all(b"GET /webhooks/hooks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut early = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut early)).await;
    assert!(waited.is_err(), "served beyond max_connections");

    // ... and is once the header timeout (1s) cuts the stalled ones off.
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut response))
        .await
        .expect("served after the stalled clients were cut off")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert_eq!(status_of(&response), Some(405), "{response}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    for mut stream in stalled {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a stalled client was never cut off");
    }

    // The admin listener has its own slots: health checks never queue behind intake floods.
    assert!(gateway.healthy().await);
}
