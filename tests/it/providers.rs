//! Providers end to end, on a gateway in the test's process (`spawn_app`): the URL checks Slack, Zoom and Meta make before
//! they send anything (answered at once, nothing stored, counted as `handshake`), and form bodies
//! signed the way Twilio signs them. Every accepted event is sent twice.

use crate::common::app::{TestApp, spawn_app};
use crate::common::receiver::Receiver;
use crate::common::{Signed, post, sign, unix_now};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const ZOOM_SECRET: &str = "zoom-secret-token-77";
const META_SECRET: &str = "meta-app-secret-19";
const META_TOKEN: &str = "meta-verify-token-42";
const TWILIO_TOKEN: &str = "12345";
const TWILIO_URL: &str = "https://hooks.example.com/webhooks/twilio";

fn config(sink: &str) -> String {
    format!(
        "[[sources]]\nname = \"slack\"\nverify = {{ scheme = \"slack\", secrets = [\"{SLACK_SECRET}\"] }}\n\n\
         [[sources]]\nname = \"zoom\"\nverify = {{ scheme = \"zoom\", secrets = [\"{ZOOM_SECRET}\"] }}\n\n\
         [[sources]]\nname = \"meta\"\n\
         verify = {{ scheme = \"meta\", secrets = [\"{META_SECRET}\"], verify_token = \"{META_TOKEN}\" }}\n\n\
         [[sources]]\nname = \"twilio\"\n\
         verify = {{ scheme = \"twilio\", secrets = [\"{TWILIO_TOKEN}\"], url = \"{TWILIO_URL}\" }}\n\
         key = [\"form:MessageSid\"]\n\n\
         [[destinations]]\nname = \"sink\"\nurl = \"{sink}\"\n\n\
         [[routes]]\nsource = \"slack\"\nto = [\"sink\"]\n\n\
         [[routes]]\nsource = \"zoom\"\nto = [\"sink\"]\n\n\
         [[routes]]\nsource = \"meta\"\nto = [\"sink\"]\n\n\
         [[routes]]\nsource = \"twilio\"\nto = [\"sink\"]\n"
    )
}

fn verify(scheme: &str, secret: &str, extra: &str) -> String {
    format!("scheme = \"{scheme}\"\nsecrets = [\"{secret}\"]\n{extra}")
}

async fn handshakes_counted(gateway: &TestApp, source: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics");
    let series = format!("oncehook_intake_total{{source=\"{source}\",outcome=\"handshake\"}}");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_checks_are_answered_at_once_and_store_nothing() {
    let sink = Receiver::start().await;
    let gateway = spawn_app(&config(&sink.url)).await;
    let client = reqwest::Client::new();

    // Slack: a signed url_verification gets its challenge back; unsigned, 401.
    let body = serde_json::to_vec(&json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification"
    }))
    .expect("json");
    let signed = sign(&verify("slack", SLACK_SECRET, ""), &body, "", unix_now());
    for _ in 0..2 {
        let reply = post(
            &client,
            &gateway.webhook_url("slack"),
            &signed,
            "application/json",
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.json);
        assert_eq!(
            reply.json,
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        );
    }
    let unsigned = Signed {
        headers: Vec::new(),
        body: body.clone(),
    };
    let reply = post(
        &client,
        &gateway.webhook_url("slack"),
        &unsigned,
        "application/json",
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.json);

    // Zoom: the encrypted token is HMAC-SHA256 of the plain token under the secret token.
    let body = serde_json::to_vec(&json!({
        "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
        "event_ts": 1654503849680u64,
        "event": "endpoint.url_validation"
    }))
    .expect("json");
    let signed = sign(&verify("zoom", ZOOM_SECRET, ""), &body, "", unix_now());
    let reply = post(
        &client,
        &gateway.webhook_url("zoom"),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let mut mac = Hmac::<Sha256>::new_from_slice(ZOOM_SECRET.as_bytes()).expect("key");
    mac.update(b"qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        reply.json,
        json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": hex::encode(mac.finalize().into_bytes())
        })
    );

    // Meta: GET with the right token echoes the challenge as text; a wrong token is 403.
    let url = |token: &str| {
        format!(
            "{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            gateway.webhook_url("meta")
        )
    };
    let answer = client
        .get(url(META_TOKEN))
        .send()
        .await
        .expect("meta check");
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/plain")
    );
    assert_eq!(answer.text().await.expect("body"), "1158201444");
    let answer = client.get(url("wrong")).send().await.expect("meta check");
    assert_eq!(answer.status(), 403);
    // GET is for Meta's check only.
    let answer = client
        .get(gateway.webhook_url("slack"))
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), 405);

    assert_eq!(gateway.event_count().await, 0, "a handshake stores nothing");
    assert_eq!(handshakes_counted(&gateway, "slack").await, 2.0);
    assert_eq!(handshakes_counted(&gateway, "zoom").await, 1.0);
    assert_eq!(handshakes_counted(&gateway, "meta").await, 1.0);
    assert!(sink.received().is_empty());
    assert_eq!(gateway.admin_get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_form_post_signed_over_the_public_url_is_accepted_once() {
    let sink = Receiver::start().await;
    let gateway = spawn_app(&config(&sink.url)).await;
    let client = reqwest::Client::new();
    let twilio = verify("twilio", TWILIO_TOKEN, &format!("url = \"{TWILIO_URL}\""));
    let body =
        b"AccountSid=AC123&Body=Hello+there&From=%2B14158141829&MessageSid=SM777&To=%2B15558675310";
    let signed = sign(&twilio, body, "", unix_now());
    let url = gateway.webhook_url("twilio");
    let send = |signed: &Signed| {
        let mut request = client.post(&url).body(signed.body.clone());
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        async move { request.send().await.expect("post") }
    };
    let first = send(&signed).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value =
        serde_json::from_slice(&first.bytes().await.expect("body")).expect("json");
    assert_eq!(first["idempotency_key"], "SM777");
    let again = send(&signed).await;
    assert_eq!(again.status(), 200);
    let again: serde_json::Value =
        serde_json::from_slice(&again.bytes().await.expect("body")).expect("json");
    assert_eq!(again["event_id"], first["event_id"]);
    // One field changed after signing: the signature no longer holds.
    let tampered = Signed {
        headers: signed.headers.clone(),
        body: String::from_utf8(body.to_vec())
            .expect("utf8")
            .replace("Hello+there", "Hello+world")
            .into_bytes(),
    };
    assert_eq!(send(&tampered).await.status(), 401);

    sink.wait_for(std::time::Duration::from_secs(20), "the delivery", |r| {
        !r.is_empty()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, body.to_vec());
    assert_eq!(
        received[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(gateway.event_count().await, 1);
}
