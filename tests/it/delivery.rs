//! Delivery end to end: the real binary delivering to real HTTP servers on 127.0.0.1. Every
//! case sends its events twice and checks the destination saw one logical delivery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{Gateway, Signed, delivery_key, free_port, post, sign, unix_now};
use serde_json::{Value, json};

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"delivery-secret\"]";
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn source(name: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nverify = {{ scheme = \"github\", secrets = [\"delivery-secret\"] }}\n"
    )
}

/// A destination with fast retries unless `extra` sets its own backoff.
pub(crate) fn destination(name: &str, url: &str, extra: &str) -> String {
    let backoff = if extra.contains("backoff") {
        ""
    } else {
        "backoff = { base = \"20ms\", max = \"100ms\" }\n"
    };
    format!("[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\n{backoff}{extra}\n")
}

pub(crate) fn route(source: &str, to: &[&str], extra: &str) -> String {
    let to: Vec<String> = to.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[routes]]\nsource = \"{source}\"\nto = [{}]\n{extra}\n",
        to.join(", ")
    )
}

fn request(delivery: &str, body: &Value) -> Signed {
    sign(
        VERIFY,
        &serde_json::to_vec(body).expect("json"),
        delivery,
        unix_now(),
    )
}

/// Sends the event twice (a provider retry); returns the event id, checking the second is a duplicate.
pub(crate) async fn send_twice(
    client: &reqwest::Client,
    gateway: &Gateway,
    source: &str,
    delivery: &str,
    body: &Value,
) -> String {
    let signed = request(delivery, body);
    let first = post(
        client,
        &gateway.webhook_url(source),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.json);
    let second = post(
        client,
        &gateway.webhook_url(source),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(second.json["event_id"], first.json["event_id"]);
    first.json["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

pub(crate) const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_to_every_destination_with_stable_headers() {
    let crm = Receiver::start().await;
    let analytics = Receiver::start().await;
    let gateway = Gateway::start(&format!(
        "{}{}{}{}",
        source("forms"),
        destination(
            "crm",
            &crm.url,
            &format!(
                "signing_secret = \"{SIGNING_SECRET}\"\nheaders = {{ \"X-Api-Key\" = \"k-123\" }}"
            )
        ),
        destination("analytics", &analytics.url, ""),
        route("forms", &["crm", "analytics"], ""),
    ));
    let client = reqwest::Client::new();
    let body = json!({"type": "lead.created", "email": "a@example.com"});
    let event_id = send_twice(&client, &gateway, "forms", "d-fanout", &body).await;

    for receiver in [&crm, &analytics] {
        receiver
            .wait_for(WAIT, "one delivery", |r| !r.is_empty())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for receiver in [&crm, &analytics] {
        let received = receiver.received();
        assert_eq!(received.len(), 1, "exactly one delivery per destination");
        let delivery = &received[0];
        assert_eq!(delivery.event_id(), event_id);
        let key = delivery_key("forms", "header", "d-fanout");
        assert_eq!(delivery.idempotency_key(), key);
        assert_eq!(delivery.header("webhook-id"), Some(key.as_str()));
        assert_eq!(delivery.header("oncehook-source"), Some("forms"));
        assert_eq!(delivery.attempt(), 1);
        assert_eq!(delivery.header("content-type"), Some("application/json"));
        assert_eq!(delivery.json(), body);
    }
    let signed = &crm.received()[0];
    assert_eq!(signed.header("x-api-key"), Some("k-123"));
    // The Standard Webhooks signature verifies with the destination's secret.
    let verify_config: oncehook::verify::VerifyConfig = toml::from_str(&format!(
        "scheme = \"standard\"\nsecrets = [\"{SIGNING_SECRET}\"]"
    ))
    .expect("config");
    let verifier = oncehook::verify::Verifier::from_config(&verify_config).expect("verifier");
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let value = signed
            .header(name)
            .unwrap_or_else(|| panic!("missing {name}"));
        headers.insert(name, value.parse().expect("header"));
    }
    verifier
        .verify(&headers, &signed.body, unix_now())
        .expect("signature verifies");
    assert!(
        analytics.received()[0]
            .header("webhook-signature")
            .is_none()
    );
    crate::common::verify_with_standardwebhooks_library(SIGNING_SECRET, signed);

    gateway
        .wait_for_deliveries(WAIT, "both delivered", |d| {
            d.len() == 2 && d.iter().all(|d| d.2 == "delivered")
        })
        .await;
    let status: String = gateway
        .db()
        .query_row("SELECT status FROM events", [], |r| r.get(0))
        .expect("status");
    assert_eq!(status, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_filter_excludes_events_that_do_not_match() {
    let crm = Receiver::start().await;
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("forms"),
        destination("crm", &crm.url, ""),
        route(
            "forms",
            &["crm"],
            "when = { pointer = \"/type\", in = [\"lead.created\", \"lead.updated\"] }"
        ),
    ));
    let client = reqwest::Client::new();
    let kept = send_twice(
        &client,
        &gateway,
        "forms",
        "d-kept",
        &json!({"type": "lead.updated"}),
    )
    .await;
    let skipped = send_twice(
        &client,
        &gateway,
        "forms",
        "d-skip",
        &json!({"type": "newsletter.signup"}),
    )
    .await;
    crm.wait_for(WAIT, "the matching event", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys: Vec<String> = crm
        .received()
        .iter()
        .map(|r| r.event_id().to_owned())
        .collect();
    assert_eq!(keys, vec![kept]);
    let skipped_deliveries = gateway
        .deliveries()
        .into_iter()
        .filter(|d| d.0 == skipped)
        .count();
    assert_eq!(skipped_deliveries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_provider_event_after_its_ttl_keeps_its_delivery_key() {
    let crm = Receiver::start().await;
    let gateway = Gateway::start(&format!(
        "{}dedupe_ttl = \"1s\"\n{}{}",
        source("s"),
        destination("crm", &crm.url, ""),
        route("s", &["crm"], "")
    ));
    let client = reqwest::Client::new();
    let body = json!({"n": 1});
    let first = send_twice(&client, &gateway, "s", "d-ttl", &body).await;
    crm.wait_for(WAIT, "the first delivery", |r| r.len() == 1)
        .await;
    // After the key's TTL the provider sends the event again: a new event, delivered again,
    // under the same key, so a destination that keeps keys longer still dedupes it.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = send_twice(&client, &gateway, "s", "d-ttl", &body).await;
    assert_ne!(first, second);
    crm.wait_for(WAIT, "the second delivery", |r| r.len() == 2)
        .await;
    let received = crm.received();
    let key = delivery_key("s", "header", "d-ttl");
    assert_eq!(
        received
            .iter()
            .map(|r| (r.event_id().to_owned(), r.idempotency_key().to_owned()))
            .collect::<Vec<_>>(),
        vec![(first.clone(), key.clone()), (second, key.clone())]
    );
    // A replay of the first event keeps the key too.
    let (status, replay) = gateway
        .admin_post(
            "/api/v1/replays",
            &json!({"filter": {"event_ids": [first]}, "reason": "resend", "requested_by": "ops"}),
        )
        .await;
    assert_eq!(status, 200, "{replay}");
    crm.wait_for(WAIT, "the replayed delivery", |r| r.len() == 3)
        .await;
    let received = crm.received();
    assert!(received[2].header("oncehook-replay").is_some());
    for r in &received {
        assert_eq!(r.idempotency_key(), key);
        assert_eq!(r.header("webhook-id"), Some(key.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_server_errors_until_delivered_with_one_key() {
    let crm = Receiver::start().await;
    crm.set_script(|_, previous| {
        if previous < 2 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, ""),
        route("s", &["crm"], "")
    ));
    let client = reqwest::Client::new();
    let event_id = send_twice(&client, &gateway, "s", "d-retry", &json!({"n": 1})).await;
    crm.wait_for(WAIT, "three attempts", |r| r.len() >= 3).await;
    gateway
        .wait_for_deliveries(WAIT, "delivered", |d| d.iter().all(|d| d.2 == "delivered"))
        .await;
    let received = crm.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.event_id() == event_id));
    let key = delivery_key("s", "header", "d-retry");
    assert!(received.iter().all(|r| r.idempotency_key() == key));
    assert_eq!(
        received.iter().map(|r| r.attempt()).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(gateway.deliveries()[0].3, 3);
    let attempts = gateway.count("SELECT COUNT(*) FROM delivery_attempts");
    assert_eq!(attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let crm = Receiver::start().await;
    crm.set_script(|_, previous| {
        if previous == 0 {
            Reply::StatusRetryAfter(503, 2)
        } else {
            Reply::Status(200)
        }
    });
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, ""),
        route("s", &["crm"], "")
    ));
    let client = reqwest::Client::new();
    send_twice(&client, &gateway, "s", "d-ra", &json!({"n": 1})).await;
    crm.wait_for(WAIT, "the retry", |r| r.len() >= 2).await;
    let received = crm.received();
    let gap = received[1].at.duration_since(received[0].at);
    assert!(
        gap >= Duration::from_millis(1990),
        "retried after {gap:?}, before Retry-After: 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_dead_at_once_and_exhausted_retries_after_max_attempts() {
    let rejecting = Receiver::start().await;
    rejecting.set_script(|_, _| Reply::Status(400));
    let failing = Receiver::start().await;
    failing.set_script(|_, _| Reply::Status(500));
    let gateway = Gateway::start(&format!(
        "{}{}{}{}",
        source("s"),
        destination("rejecting", &rejecting.url, ""),
        destination("failing", &failing.url, "max_attempts = 3"),
        route("s", &["rejecting", "failing"], ""),
    ));
    let client = reqwest::Client::new();
    send_twice(&client, &gateway, "s", "d-dead", &json!({"n": 1})).await;
    gateway
        .wait_for_deliveries(WAIT, "both dead", |d| {
            d.len() == 2 && d.iter().all(|d| d.2 == "dead")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rejecting.received().len(), 1, "a 4xx is not retried");
    assert_eq!(
        failing.received().len(),
        3,
        "dead after exactly max_attempts"
    );
    let deliveries: HashMap<String, (u32, Option<String>)> = gateway
        .deliveries()
        .into_iter()
        .map(|d| (d.1, (d.3, d.4)))
        .collect();
    assert_eq!(deliveries["rejecting"], (1, Some("http_4xx".into())));
    assert_eq!(deliveries["failing"], (3, Some("http_5xx".into())));
    let last_error: String = gateway
        .db()
        .query_row(
            "SELECT last_error FROM deliveries WHERE destination = 'rejecting'",
            [],
            |r| r.get(0),
        )
        .expect("last error");
    assert!(last_error.contains("400"), "{last_error}");
    let status: String = gateway
        .db()
        .query_row("SELECT status FROM events", [], |r| r.get(0))
        .expect("status");
    assert_eq!(status, "failed_terminal");
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"oncehook_dead_total{destination="rejecting",reason="http_4xx"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("oncehook_deliveries_total{destination=\"failing\",outcome=\"retry\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_does_not_delay_another() {
    let slow = Receiver::start().await;
    slow.set_script(|_, _| Reply::Slow(Duration::from_secs(5), 200));
    let fast = Receiver::start().await;
    let gateway = Gateway::start(&format!(
        "{}{}{}{}",
        source("s"),
        destination("slow", &slow.url, "timeout = \"500ms\"\nconcurrency = 1"),
        destination("fast", &fast.url, "concurrency = 1"),
        route("s", &["slow", "fast"], ""),
    ));
    let client = reqwest::Client::new();
    let started = Instant::now();
    for n in 0..5 {
        send_twice(
            &client,
            &gateway,
            "s",
            &format!("d-slow-{n}"),
            &json!({"n": n}),
        )
        .await;
    }
    fast.wait_for(
        Duration::from_secs(3),
        "all five at the fast destination",
        |r| r.len() >= 5,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fast destination waited {:?}",
        started.elapsed()
    );
    assert!(
        slow.received().len() <= 2,
        "the slow lane runs one attempt at a time"
    );
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    gateway
        .wait_for_deliveries(WAIT, "a timeout recorded", |d| {
            d.iter().any(|d| d.1 == "slow" && d.3 >= 1)
        })
        .await;
    assert!(metrics.contains("oncehook_end_to_end_seconds"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_key_keeps_intake_order_through_a_failure() {
    let crm = Receiver::start().await;
    // The second event of contact "c1" fails twice before it succeeds.
    crm.set_script(|r, previous| {
        if r.json()["seq"] == 2 && previous < 2 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, "concurrency = 8"),
        route("s", &["crm"], "ordering_key = \"json:/contact\""),
    ));
    let client = reqwest::Client::new();
    for seq in 1..=5 {
        send_twice(
            &client,
            &gateway,
            "s",
            &format!("d-order-{seq}"),
            &json!({"contact": "c1", "seq": seq}),
        )
        .await;
    }
    send_twice(
        &client,
        &gateway,
        "s",
        "d-order-other",
        &json!({"contact": "c2", "seq": 100}),
    )
    .await;
    crm.wait_for(WAIT, "all delivered", |r| {
        r.iter().filter(|r| r.answered == Some(200)).count() >= 6
    })
    .await;
    let c1: Vec<(i64, Option<u16>)> = crm
        .received()
        .iter()
        .filter(|r| r.json()["contact"] == "c1")
        .map(|r| (r.json()["seq"].as_i64().unwrap_or(0), r.answered))
        .collect();
    // Nothing after seq 2 was sent before seq 2 succeeded.
    assert_eq!(
        c1,
        vec![
            (1, Some(200)),
            (2, Some(500)),
            (2, Some(500)),
            (2, Some(200)),
            (3, Some(200)),
            (4, Some(200)),
            (5, Some(200))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_survive_sigkill_and_reach_a_destination_that_comes_back() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination(
            "crm",
            &url,
            "timeout = \"1s\"\nmax_attempts = 1000\nbackoff = { base = \"50ms\", max = \"300ms\" }"
        ),
        route("s", &["crm"], ""),
    ));
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    for n in 0..20 {
        accepted.push(
            send_twice(
                &client,
                &gateway,
                "s",
                &format!("d-crash-{n}"),
                &json!({"n": n}),
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.kill();
    gateway.spawn();
    let crm = Receiver::start_on(port).await;
    let expected: HashSet<String> = accepted.iter().cloned().collect();
    crm.wait_for(Duration::from_secs(30), "every accepted event", |r| {
        r.iter()
            .filter(|r| r.answered == Some(200))
            .map(|r| r.event_id().to_owned())
            .collect::<HashSet<_>>()
            == expected
    })
    .await;
    gateway
        .wait_for_deliveries(WAIT, "all delivered", |d| {
            d.len() == 20 && d.iter().all(|d| d.2 == "delivered")
        })
        .await;
    // Sending them again after all this is still a duplicate.
    for (n, event_id) in accepted.iter().enumerate().take(3) {
        let reply = post(
            &client,
            &gateway.webhook_url("s"),
            &request(&format!("d-crash-{n}"), &json!({"n": n})),
            "application/json",
        )
        .await;
        assert_eq!(
            (reply.status, reply.json["event_id"].as_str()),
            (200, Some(event_id.as_str()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_every_event_ends_delivered_or_dead_and_counts_reconcile() {
    let chaos = Receiver::start().await;
    chaos.set_script(|r, _| {
        // A deterministic mix per request, from the key and the attempt.
        let mut hash = 0u64;
        for b in r.event_id().bytes().chain([r.attempt() as u8]) {
            hash = hash.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        match hash % 10 {
            0..=3 => Reply::Status(200),
            4 => Reply::Slow(Duration::from_millis(150), 200),
            5 | 6 => Reply::Status(500),
            7 => Reply::StatusRetryAfter(429, 0),
            8 => Reply::Reset,
            _ => Reply::Status(503),
        }
    });
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination(
            "chaos",
            &chaos.url,
            "timeout = \"2s\"\nmax_attempts = 4\nconcurrency = 32\nbackoff = { base = \"10ms\", max = \"50ms\" }\n\
             circuit_breaker = { failures = 5, cooldown = \"500ms\" }"
        ),
        route("s", &["chaos"], ""),
    ));
    let client = reqwest::Client::new();
    let sent = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (client, sent, url) = (client.clone(), Arc::clone(&sent), gateway.webhook_url("s"));
        senders.push(tokio::spawn(async move {
            for n in 0..125 {
                let signed = request(
                    &format!("chaos-{worker}-{n}"),
                    &json!({"w": worker, "n": n}),
                );
                let first = post(&client, &url, &signed, "application/json").await;
                let second = post(&client, &url, &signed, "application/json").await;
                assert_eq!((first.status, second.status), (202, 200));
                sent.lock().await.push(
                    first.json["event_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let sent: HashSet<String> = sent.lock().await.iter().cloned().collect();
    assert_eq!(sent.len(), 1000);
    gateway
        .wait_for_deliveries(Duration::from_secs(120), "every delivery final", |d| {
            d.len() == 1000 && d.iter().all(|d| d.2 == "delivered" || d.2 == "dead")
        })
        .await;
    let deliveries = gateway.deliveries();
    let delivered: HashSet<String> = deliveries
        .iter()
        .filter(|d| d.2 == "delivered")
        .map(|d| d.0.clone())
        .collect();
    let dead = deliveries.iter().filter(|d| d.2 == "dead").count();
    assert_eq!(delivered.len() + dead, 1000, "no event missing");
    assert!(deliveries.iter().all(|d| sent.contains(&d.0)));
    assert!(
        deliveries
            .iter()
            .filter(|d| d.2 == "dead")
            .all(|d| d.4.is_some()),
        "dead deliveries keep a reason"
    );
    let succeeded: HashSet<String> = chaos
        .received()
        .iter()
        .filter(|r| r.answered == Some(200))
        .map(|r| r.event_id().to_owned())
        .collect();
    assert_eq!(
        succeeded, delivered,
        "the destination's successes are exactly the delivered events"
    );
    assert_eq!(
        chaos.overlapping_attempts(),
        0,
        "an event was in flight twice at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly() {
    let crm = Receiver::start().await;
    let mut gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, ""),
        route("s", &["crm"], "")
    ));
    let client = reqwest::Client::new();
    send_twice(&client, &gateway, "s", "d-term", &json!({"n": 1})).await;
    crm.wait_for(WAIT, "the delivery", |r| !r.is_empty()).await;
    let started = Instant::now();
    let status = gateway.terminate();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_in_flight_deliveries_which_resume_after_restart() {
    let crm = Receiver::start().await;
    crm.set_script(|_, previous| {
        if previous == 0 {
            Reply::Slow(Duration::from_secs(30), 200)
        } else {
            Reply::Status(200)
        }
    });
    let mut gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, "timeout = \"60s\""),
        route("s", &["crm"], ""),
    ));
    let client = reqwest::Client::new();
    let event_id = send_twice(&client, &gateway, "s", "d-grace", &json!({"n": 1})).await;
    crm.wait_for(WAIT, "the slow attempt", |r| !r.is_empty())
        .await;
    let started = Instant::now();
    let status = gateway.terminate();
    assert!(status.success(), "{status}");
    // The harness sets shutdown_grace = 2s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let (state, attempts): (String, u32) = gateway
        .db()
        .query_row("SELECT state, attempts FROM deliveries", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("delivery");
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 0),
        "the unfinished attempt was handed back"
    );
    gateway.spawn();
    crm.wait_for(WAIT, "the delivery after restart", |r| {
        r.iter()
            .any(|r| r.answered == Some(200) && r.attempt() == 1 && r.at > started)
    })
    .await;
    gateway
        .wait_for_deliveries(WAIT, "delivered", |d| d.iter().all(|d| d.2 == "delivered"))
        .await;
    assert!(crm.received().iter().all(|r| r.event_id() == event_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_payloads_never_reach_the_disk_in_clear_but_arrive_intact() {
    let crm = Receiver::start().await;
    let mut gateway = Gateway::start(&format!(
        "{}search_fields = {{ email = \"/email\" }}\n{}{}",
        source("s"),
        destination("crm", &crm.url, ""),
        route("s", &["crm"], ""),
    ));
    // Restart with an encryption key (the harness writes [store] itself, so add the key there).
    gateway.kill();
    let config = std::fs::read_to_string(&gateway.config_path).expect("config");
    let config = config.replace(
        "[store]\n",
        "[store]\nencryption_key = \"${ONCEHOOK_TEST_KEY}\"\n",
    );
    std::fs::write(&gateway.config_path, config).expect("config");
    gateway.spawn_with_env(&[("ONCEHOOK_TEST_KEY", "correct horse battery staple")]);

    let client = reqwest::Client::new();
    let secret_marker = "very-private-lead-7f3a";
    let body = json!({"email": "ann@example.com", "note": secret_marker});
    send_twice(&client, &gateway, "s", "d-enc", &body).await;
    crm.wait_for(WAIT, "the delivery", |r| {
        r.iter().any(|r| r.answered == Some(200))
    })
    .await;
    assert_eq!(
        crm.received()[0].json(),
        body,
        "the destination gets the plaintext"
    );
    assert_eq!(gateway.count("SELECT COUNT(*) FROM event_search"), 1);
    for path in [
        gateway.db_path(),
        gateway.db_path().with_extension("db-wal"),
    ] {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for needle in [secret_marker.as_bytes(), b"ann@example.com"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext",
                path.display()
            );
        }
    }
}
