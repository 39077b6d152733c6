//! The admin API end to end: the real binary, real destinations, every event sent twice.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::receiver::{Receiver, Reply};
use crate::common::{ADMIN_TOKEN, Gateway, GatewayOptions, post, send_json, sign, unix_now};
use serde_json::{Value, json};

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"admin-secret\"]";
const WAIT: Duration = Duration::from_secs(20);

fn config(destination_url: Option<&str>, extra_source: &str, extra_route: &str) -> String {
    let mut config = format!(
        "[[sources]]\nname = \"forms\"\n\
         verify = {{ scheme = \"github\", secrets = [\"admin-secret\"] }}\n\
         mask_fields = [\"/email\"]\n\
         search_fields = {{ email = \"/email\", contact = \"/contact_id\" }}\n{extra_source}\n"
    );
    if let Some(url) = destination_url {
        config.push_str(&format!(
            "[[destinations]]\nname = \"crm\"\nurl = \"{url}\"\nmax_attempts = 3\n\
             backoff = {{ base = \"20ms\", max = \"100ms\" }}\n\n\
             [[routes]]\nsource = \"forms\"\nto = [\"crm\"]\n{extra_route}\n"
        ));
    }
    config
}

/// Sends one event twice, as a retrying provider would; returns its id.
async fn send_twice(gateway: &Gateway, delivery: &str, body: &Value) -> String {
    let client = reqwest::Client::new();
    let signed = sign(
        VERIFY,
        &serde_json::to_vec(body).expect("json"),
        delivery,
        unix_now(),
    );
    let url = gateway.webhook_url("forms");
    let first = post(&client, &url, &signed, "application/json").await;
    assert_eq!(first.status, 202, "{}", first.json);
    let second = post(&client, &url, &signed, "application/json").await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(second.json["event_id"], first.json["event_id"]);
    first.json["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

fn lead(n: usize) -> Value {
    json!({"type": "lead.created", "n": n, "email": format!("lead{n}@example.com")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_a_missing_or_wrong_token() {
    let gateway = Gateway::start(&config(None, "", ""));
    send_twice(&gateway, "d-auth", &lead(1)).await;
    let (status, document) = gateway.admin_get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 7, "{paths:?}");
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in paths {
        let uri = format!(
            "{}{}",
            gateway.admin,
            path.replace("{id}", &uuid::Uuid::now_v7().to_string())
        );
        for method in item.as_object().expect("item").keys() {
            let method: reqwest::Method = method.to_ascii_uppercase().parse().expect("method");
            for token in [None, Some("not-the-token"), Some("")] {
                let mut request = client.request(method.clone(), &uri);
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let (status, body) = send_json(request).await;
                assert_eq!(status, 401, "{method} {uri} with {token:?}: {body}");
                assert!(body["error"].is_string(), "{method} {uri}: {body}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 24);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let response = reqwest::get(format!("{}{open}", gateway.admin))
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{open}");
    }

    // Without a configured token the API refuses everyone, and says why.
    let closed = Gateway::start_with(
        &config(None, "", ""),
        GatewayOptions {
            no_admin_token: true,
            ..GatewayOptions::default()
        },
    );
    let request = client
        .get(format!("{}/api/v1/events", closed.admin))
        .bearer_auth(ADMIN_TOKEN);
    let (status, body) = send_json(request).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no admin.token")),
        "{body}"
    );
}

/// Two events whose single delivery each went dead (the destination answers 400 to everything).
async fn two_dead_events(gateway: &Gateway) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(send_twice(gateway, &format!("d-dead-{n}"), &lead(n)).await);
    }
    gateway
        .wait_for_deliveries(WAIT, "both dead", |d| {
            d.len() == 2 && d.iter().all(|d| d.2 == "dead")
        })
        .await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_replay_sends_nothing_and_reports_the_count() {
    let crm = Receiver::start().await;
    crm.set_script(|_, _| Reply::Status(400));
    let gateway = Gateway::start(&config(Some(&crm.url), "", ""));
    let ids = two_dead_events(&gateway).await;
    assert_eq!(crm.received().len(), 2, "one delivery per event");

    let (status, answer) = gateway
        .admin_post(
            "/api/v1/replays",
            &json!({
                "filter": {"source": "forms", "status": "dead", "since": "1h"},
                "dry_run": true,
                "reason": "checking the blast radius",
                "requested_by": "ops@example.com"
            }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched"], 2);
    assert_eq!(answer["dry_run"], true);
    assert_eq!(
        answer["replay_id"],
        Value::Null,
        "a dry run records nothing"
    );
    let sampled: HashSet<&str> = answer["sample"]
        .as_array()
        .expect("sample")
        .iter()
        .filter_map(|s| s["event_id"].as_str())
        .collect();
    assert_eq!(sampled, ids.iter().map(String::as_str).collect());

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(crm.received().len(), 2, "a dry run sends nothing");
    assert!(gateway.deliveries().iter().all(|d| d.2 == "dead"));
    let (_, replays) = gateway.admin_get("/api/v1/replays").await;
    assert_eq!(replays["replays"], json!([]));

    // Who and why are required; an empty filter would replay everything.
    for (body, complaint) in [
        (
            json!({"filter": {"status": "dead"}, "requested_by": "ops"}),
            "reason",
        ),
        (
            json!({"filter": {"status": "dead"}, "reason": "x"}),
            "requested_by",
        ),
        (
            json!({"filter": {}, "reason": "x", "requested_by": "ops"}),
            "filter",
        ),
        (
            json!({"filter": {"status": "lost"}, "reason": "x", "requested_by": "ops"}),
            "status",
        ),
    ] {
        let (status, answer) = gateway.admin_post("/api/v1/replays", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains(complaint)),
            "{body}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_delivers_a_dead_delivery_again_and_is_recorded() {
    let crm = Receiver::start().await;
    // The destination rejects the event at first, then is fixed.
    crm.set_script(|_, previous| {
        if previous == 0 {
            Reply::Status(400)
        } else {
            Reply::Status(200)
        }
    });
    let gateway = Gateway::start(&config(Some(&crm.url), "", ""));
    let event_id = send_twice(&gateway, "d-replay", &lead(7)).await;
    gateway
        .wait_for_deliveries(WAIT, "dead", |d| d.len() == 1 && d[0].2 == "dead")
        .await;

    let (status, dlq) = gateway.admin_get("/api/v1/dlq").await;
    assert_eq!(status, 200, "{dlq}");
    let dead = &dlq["deliveries"][0];
    assert_eq!(dead["event_id"], event_id.as_str());
    assert_eq!(dead["destination"], "crm");
    assert_eq!(dead["reason"], "http_4xx");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("400"))
    );
    let (_, groups) = gateway.admin_get("/api/v1/dlq?group_by=reason").await;
    assert_eq!(groups["groups"][0]["count"], 1, "{groups}");
    assert_eq!(groups["groups"][0]["reason"], "http_4xx");

    let (status, answer) = gateway
        .admin_post(
            "/api/v1/replays",
            &json!({
                "filter": {"event_ids": [event_id]},
                "dry_run": false,
                "reason": "crm fixed its validation",
                "requested_by": "ops@example.com"
            }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched"], 1);
    let replay_id = answer["replay_id"].as_str().expect("replay_id").to_owned();

    crm.wait_for(WAIT, "the replayed delivery", |r| r.len() == 2)
        .await;
    gateway
        .wait_for_deliveries(WAIT, "delivered", |d| d[0].2 == "delivered")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = crm.for_event(&event_id);
    assert_eq!(received.len(), 2, "the original attempt and the replay");
    assert_eq!(received[0].header("oncehook-replay"), None);
    let replayed = &received[1];
    assert_eq!(replayed.event_id(), event_id);
    assert_eq!(
        replayed.idempotency_key(),
        received[0].idempotency_key(),
        "the same key as ever"
    );
    assert_ne!(replayed.idempotency_key(), event_id);
    assert_eq!(replayed.header("oncehook-replay"), Some(replay_id.as_str()));
    assert_eq!(replayed.attempt(), 1, "a fresh attempt budget");
    assert_eq!(replayed.json(), received[0].json());

    let (_, replays) = gateway.admin_get("/api/v1/replays").await;
    let recorded = &replays["replays"][0];
    assert_eq!(recorded["replay_id"], replay_id.as_str());
    assert_eq!(recorded["requested_by"], "ops@example.com");
    assert_eq!(recorded["reason"], "crm fixed its validation");
    assert_eq!(recorded["matched"], 1);
    assert_eq!(recorded["filter"]["event_ids"][0], event_id.as_str());
    assert!(recorded["created_at"].is_string());

    let (_, detail) = gateway
        .admin_get(&format!("/api/v1/replays/{replay_id}"))
        .await;
    assert_eq!(detail["progress"]["delivered"], 1, "{detail}");
    assert_eq!(detail["progress"]["done"], true);

    let (_, event) = gateway
        .admin_get(&format!("/api/v1/events/{event_id}"))
        .await;
    assert_eq!(event["status"], "completed", "{event}");
    let attempts = event["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(attempts.len(), 2, "{event}");
    assert_eq!(attempts[0]["status_code"], 400);
    assert_eq!(attempts[0]["outcome"], "dead");
    assert_eq!(attempts[1]["status_code"], 200);
    assert_eq!(attempts[1]["replay_id"], replay_id.as_str());
    assert!(attempts[1]["duration_ms"].is_number());
    assert!(attempts[1]["started_at"].is_string());
    assert_eq!(event["replays"][0]["replay_id"], replay_id.as_str());
    assert_eq!(event["replays"][0]["requested_by"], "ops@example.com");

    let (_, dlq) = gateway.admin_get("/api/v1/dlq").await;
    assert_eq!(dlq["deliveries"], json!([]), "delivered: out of the DLQ");
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oncehook_replays_total{mode=\"replay\"} 1")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_email_finds_the_event_without_revealing_it() {
    const EMAIL: &str = "Ann.Secret@Example.com";
    const CONTACT: &str = "contact-778199";
    let crm = Receiver::start().await;
    crm.set_script(|_, _| Reply::Status(422));
    let mut gateway = Gateway::start(&config(
        Some(&crm.url),
        // The key and the ordering key repeat searchable values: they must not leak either.
        "key = [\"json:/email + json:/submission_id\", \"header:X-GitHub-Delivery\"]",
        "ordering_key = \"json:/contact_id\"",
    ));
    // Restart with every log line on, to check none of them carries the values.
    gateway.kill();
    gateway.spawn_with_env(&[("ONCEHOOK_LOG", "debug")]);

    let body = json!({
        "type": "lead.created", "submission_id": "sub-1", "email": EMAIL,
        "contact_id": CONTACT, "name": "Ann"
    });
    let event_id = send_twice(&gateway, "d-private", &body).await;
    let other = send_twice(&gateway, "d-other", &lead(2)).await;
    gateway
        .wait_for_deliveries(WAIT, "both dead", |d| {
            d.len() == 2 && d.iter().all(|d| d.2 == "dead")
        })
        .await;
    assert_eq!(crm.received().len(), 2, "one delivery per event");

    let mut answers = Vec::new();
    for query in [
        "email=ann.secret%40example.com",
        "email=%20ANN.SECRET%40EXAMPLE.COM%20",
        "contact=contact-778199",
        "email=ann.secret%40example.com&source=forms&since=1h",
    ] {
        let (status, found) = gateway.admin_get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(status, 200, "{query}: {found}");
        let ids: Vec<&str> = found["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["event_id"].as_str())
            .collect();
        assert_eq!(ids, vec![event_id.as_str()], "{query}");
        answers.push(found);
    }
    let (_, none) = gateway
        .admin_get("/api/v1/events?email=someone.else%40example.com")
        .await;
    assert_eq!(none["events"], json!([]));
    let (_, all) = gateway.admin_get("/api/v1/events").await;
    assert_eq!(all["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        all["events"][1]["event_id"],
        event_id.as_str(),
        "newest first"
    );
    assert_eq!(all["events"][0]["event_id"], other.as_str());
    answers.push(all);

    let (_, event) = gateway
        .admin_get(&format!("/api/v1/events/{event_id}"))
        .await;
    assert_eq!(event["payload"]["name"], "Ann", "{event}");
    assert_eq!(event["payload"]["email"], "A***", "masked, not removed");
    assert_eq!(event["payload"]["contact_id"], "c***");
    // Signature headers are not stored at all (SPEC §6.2); the delivery id is.
    assert!(
        event["headers"].get("x-hub-signature-256").is_none(),
        "{event}"
    );
    assert_eq!(
        event["headers"]["x-github-delivery"], "d-private",
        "{event}"
    );
    assert_eq!(event["deliveries"][0]["attempts"][0]["status_code"], 422);
    answers.push(event);
    for path in [
        "/api/v1/dlq",
        "/api/v1/dlq?group_by=reason",
        "/api/v1/stats",
        "/api/v1/replays",
    ] {
        answers.push(gateway.admin_get(path).await.1);
    }
    let (_, replay) = gateway
        .admin_post(
            "/api/v1/replays",
            &json!({"filter": {"event_ids": [event_id]}, "dry_run": true,
                    "reason": "look", "requested_by": "ops"}),
        )
        .await;
    answers.push(replay);

    for answer in &answers {
        let text = answer.to_string().to_ascii_lowercase();
        assert!(!text.contains("ann.secret"), "the email leaked: {answer}");
        assert!(!text.contains(CONTACT), "the contact leaked: {answer}");
    }
    let logs = gateway.logs();
    assert!(
        logs.iter().any(|l| l.contains(&event_id)),
        "the intake and delivery lines name the event: {logs:?}"
    );
    assert!(logs.iter().any(|l| l.contains("\"idempotency_key\"")));
    for line in &logs {
        let lower = line.to_ascii_lowercase();
        assert!(!lower.contains("ann.secret"), "the email leaked: {line}");
        assert!(!lower.contains(CONTACT), "the contact leaked: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_with_a_cursor_return_every_event_exactly_once() {
    let gateway = Gateway::start(&config(None, "", ""));
    let mut sent = HashSet::new();
    for n in 0..23 {
        sent.insert(send_twice(&gateway, &format!("d-page-{n}"), &lead(n)).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/events?limit=5&cursor={cursor}"),
            None => "/api/v1/events?limit=5".to_owned(),
        };
        let (status, page) = gateway.admin_get(&path).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 5);
        seen.extend(
            events
                .iter()
                .map(|e| e["event_id"].as_str().expect("id").to_owned()),
        );
        pages += 1;
        if pages == 1 {
            // Newer events arriving meanwhile do not shift the pages still to come.
            for n in 100..103 {
                send_twice(&gateway, &format!("d-late-{n}"), &lead(n)).await;
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), sent);

    // Intake figures: every event was sent twice.
    let (status, stats) = gateway.admin_get("/api/v1/stats?window=5m").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["intake"]["scope"], "node");
    assert_eq!(stats["intake"]["outcomes"]["accepted"], 26);
    assert_eq!(stats["intake"]["outcomes"]["duplicate"], 26);
    assert_eq!(stats["intake"]["dedupe_hit_rate"], 0.5);
    assert_eq!(stats["intake"]["sources"]["forms"]["total"], 52);
    assert_eq!(stats["intake"]["sources"]["forms"]["dedupe_hit_rate"], 0.5);
    assert_eq!(stats["intake"]["ack_latency_ms"]["count"], 52);
    assert!(stats["intake"]["ack_latency_ms"]["p99"].is_number());
    assert_eq!(stats["window_seconds"], 300);
}
