//! Event-bus destinations and transforms end to end, on a gateway in the test's process
//! (`spawn_app`): NATS JetStream on 127.0.0.1:4222 and RabbitMQ on 127.0.0.1:5672 (guest/guest),
//! the servers this machine runs (`scripts/ensure-brokers` starts them). Every event is sent
//! twice; each test names its own streams, subjects and queues.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::app::{TestApp, spawn_app};
use crate::common::receiver::Receiver;
use crate::common::{Signed, delivery_key, post, sign, unix_now};

const NATS_URL: &str = "nats://127.0.0.1:4222";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"bus-secret\"]";
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(20);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn source(name: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nverify = {{ scheme = \"github\", secrets = [\"bus-secret\"] }}\n\n"
    )
}

fn destination(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"3s\"\n\
         backoff = {{ base = \"50ms\", max = \"500ms\" }}\n{extra}\n\n"
    )
}

fn route(source: &str, to: &[&str], extra: &str) -> String {
    let to: Vec<String> = to.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[routes]]\nsource = \"{source}\"\nto = [{}]\n{extra}\n\n",
        to.join(", ")
    )
}

/// Sends the event twice as a retrying provider would: 202, then 200 `duplicate`. The event id.
async fn send_twice(app: &TestApp, source: &str, delivery: &str, body: &Value) -> String {
    let client = reqwest::Client::new();
    let signed: Signed = sign(
        VERIFY,
        &serde_json::to_vec(body).expect("json"),
        delivery,
        unix_now(),
    );
    let first = post(
        &client,
        &app.webhook_url(source),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.json);
    let repeat = post(
        &client,
        &app.webhook_url(source),
        &signed,
        "application/json",
    )
    .await;
    assert_eq!(repeat.status, 200, "{}", repeat.json);
    assert_eq!(repeat.json["event_id"], first.json["event_id"]);
    first.json["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

/// The event's deliveries as the admin API shows them, by destination.
async fn deliveries(app: &TestApp, event_id: &str) -> HashMap<String, Value> {
    let (status, event) = app.admin_get(&format!("/api/v1/events/{event_id}")).await;
    assert_eq!(status, 200, "{event}");
    event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["destination"].as_str().unwrap_or("").to_owned(),
                d.clone(),
            )
        })
        .collect()
}

/// Waits until the event's delivery to `destination` is in `state`; returns it.
async fn wait_for_state(app: &TestApp, event_id: &str, destination: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = deliveries(app, event_id).await;
        if let Some(delivery) = all.get(destination)
            && delivery["state"] == state
        {
            return delivery.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{destination} of {event_id} never became {state}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn jetstream_context() -> jetstream::Context {
    let client = async_nats::connect(NATS_URL)
        .await
        .expect("NATS answers on 127.0.0.1:4222 (scripts/ensure-brokers)");
    jetstream::new(client)
}

/// A stream of its own over `subjects`, with a duplicate window of two minutes.
async fn create_stream(context: &jetstream::Context, name: &str, subjects: &str) {
    context
        .create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.to_owned()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("create the stream");
}

/// Every message the stream holds, read by a consumer of its own: (subject, headers, body).
async fn stream_messages(
    context: &jetstream::Context,
    name: &str,
) -> Vec<(String, HashMap<String, String>, Vec<u8>)> {
    let stream = context.get_stream(name).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.expect("message");
        let headers = message
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .map(|(name, values)| {
                (
                    name.to_string(),
                    values.first().map(|v| v.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        messages.push((
            message.subject.to_string(),
            headers,
            message.payload.to_vec(),
        ));
        message.ack().await.expect("ack");
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_sent_twice_reaches_the_stream_once_with_the_http_delivery_key() {
    let name = unique("ONCEHOOK_IT");
    let context = jetstream_context().await;
    create_stream(&context, &name, &format!("{name}.>")).await;
    let crm = Receiver::start().await;
    let app = spawn_app(&format!(
        "{}{}{}{}",
        source("forms"),
        destination(
            "bus",
            NATS_URL,
            &format!("subject = \"{name}.{{source}}.{{type}}\"")
        ),
        destination("crm", &crm.url, ""),
        route("forms", &["bus", "crm"], "")
    ))
    .await;

    let mut events = Vec::new();
    for n in 0..3 {
        let body = json!({"type": "lead.created", "data": {"n": n}});
        let event_id = send_twice(&app, "forms", &format!("d-nats-{n}"), &body).await;
        events.push((event_id, body, format!("d-nats-{n}")));
    }
    for (event_id, _, _) in &events {
        wait_for_state(&app, event_id, "bus", "delivered").await;
        wait_for_state(&app, event_id, "crm", "delivered").await;
    }

    let messages = stream_messages(&context, &name).await;
    assert_eq!(messages.len(), 3, "one message per event");
    let http: HashMap<String, String> = crm
        .received()
        .iter()
        .map(|r| (r.event_id().to_owned(), r.idempotency_key().to_owned()))
        .collect();
    assert_eq!(http.len(), 3);
    for (event_id, body, delivery) in &events {
        let (subject, headers, payload) = messages
            .iter()
            .find(|(_, h, _)| h.get("Oncehook-Event-Id") == Some(event_id))
            .unwrap_or_else(|| panic!("no message for {event_id}"));
        assert_eq!(subject, &format!("{name}.forms.lead.created"));
        assert_eq!(
            headers.get("Nats-Msg-Id"),
            http.get(event_id),
            "Nats-Msg-Id is the HTTP Idempotency-Key"
        );
        assert_eq!(
            headers.get("Nats-Msg-Id").map(String::as_str),
            Some(delivery_key("forms", "header", delivery).as_str())
        );
        assert_eq!(
            headers.get("Oncehook-Source").map(String::as_str),
            Some("forms")
        );
        assert!(!headers.contains_key("Oncehook-Replay"));
        assert_eq!(
            serde_json::from_slice::<Value>(payload).expect("JSON payload"),
            *body
        );
    }
    context.delete_stream(&name).await.expect("delete stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformed_replay_inside_the_duplicate_window_is_dropped_by_the_stream_and_recorded_delivered()
 {
    let name = unique("ONCEHOOK_IT");
    let context = jetstream_context().await;
    create_stream(&context, &name, &format!("{name}.>")).await;
    let app = spawn_app(&format!(
        "{}{}{}",
        source("forms"),
        destination("bus", NATS_URL, &format!("subject = \"{name}.leads\"")),
        route("forms", &["bus"], "transform = '{lead: .type}'")
    ))
    .await;
    let event_id = send_twice(&app, "forms", "d-replay", &json!({"type": "lead"})).await;
    wait_for_state(&app, &event_id, "bus", "delivered").await;

    let (status, answer) = crate::common::send_json(
        reqwest::Client::new()
            .post(format!("{}/api/v1/replays", app.admin))
            .bearer_auth(crate::common::ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(
                json!({
                    "filter": {"event_ids": [event_id]},
                    "dry_run": false,
                    "reason": "the consumer lost its state",
                    "requested_by": "ops@example.com"
                })
                .to_string(),
            ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched"], 1, "{answer}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivery = loop {
        let delivery = deliveries(&app, &event_id)
            .await
            .remove("bus")
            .expect("bus");
        let replayed = delivery["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| !a["replay_id"].is_null()));
        if replayed && delivery["state"] == "delivered" {
            break delivery;
        }
        assert!(tokio::time::Instant::now() < deadline, "{delivery}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["attempts"].as_array().map(Vec::len), Some(2));

    let stream = context.get_stream(&name).await.expect("stream");
    let info = stream.get_info().await.expect("info");
    assert_eq!(info.state.messages, 1, "the stream dropped the replay");
    // What the bus got is the transform's output.
    let messages = stream_messages(&context, &name).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].2, br#"{"lead":"lead"}"#);
    assert_eq!(
        messages[0].1.get("Content-Type").map(String::as_str),
        Some("application/json")
    );
    context.delete_stream(&name).await.expect("delete stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stream_for_the_subject_is_dead_unroutable_and_a_down_server_is_a_connect_failure() {
    let name = unique("ONCEHOOK_IT_NONE");
    let closed = crate::common::free_port();
    let app = spawn_app(&format!(
        "{}{}{}{}",
        source("forms"),
        destination("nowhere", NATS_URL, &format!("subject = \"{name}.x\"")),
        destination(
            "down",
            &format!("nats://127.0.0.1:{closed}"),
            "subject = \"x\"\nmax_attempts = 2\ntimeout = \"1s\""
        )
        .replace("timeout = \"3s\"\n", ""),
        route("forms", &["nowhere", "down"], "")
    ))
    .await;
    let event_id = send_twice(&app, "forms", "d-none", &json!({"type": "lead"})).await;
    let nowhere = wait_for_state(&app, &event_id, "nowhere", "dead").await;
    assert_eq!(nowhere["dead_reason"], "unroutable", "{nowhere}");
    assert_eq!(nowhere["attempt_count"], 1, "dead at once: {nowhere}");
    let down = wait_for_state(&app, &event_id, "down", "dead").await;
    assert_eq!(down["dead_reason"], "connect", "{down}");
    assert_eq!(down["attempt_count"], 2, "retried: {down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_delivers_its_output_signed_over_the_transformed_bytes() {
    let crm = Receiver::start().await;
    let app = spawn_app(&format!(
        "{}{}{}",
        source("forms"),
        destination(
            "crm",
            &crm.url,
            &format!("signing_secret = \"{SIGNING_SECRET}\"")
        ),
        route("forms", &["crm"], "transform = '{email: .data.email}'")
    ))
    .await;
    let body = json!({"type": "lead.created", "data": {"email": "a@example.com", "name": "A"}});
    let event_id = send_twice(&app, "forms", "d-transform", &body).await;
    wait_for_state(&app, &event_id, "crm", "delivered").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = crm.received();
    assert_eq!(received.len(), 1, "one delivery");
    let delivery = &received[0];
    assert_eq!(delivery.json(), json!({"email": "a@example.com"}));
    assert_eq!(delivery.body, br#"{"email":"a@example.com"}"#);
    assert_eq!(delivery.header("content-type"), Some("application/json"));
    assert_eq!(
        delivery.idempotency_key(),
        delivery_key("forms", "header", "d-transform")
    );
    crate::common::verify_with_standardwebhooks_library(SIGNING_SECRET, delivery);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_looping_transform_is_dead_and_the_node_keeps_serving() {
    let crm = Receiver::start().await;
    let app = spawn_app(&format!(
        "{}{}{}{}{}{}{}{}",
        source("failing"),
        source("looping"),
        source("plain"),
        destination("crm_failing", &crm.url, ""),
        destination("crm_looping", &crm.url, ""),
        route(
            "failing",
            &["crm_failing"],
            "transform = 'error(\"no lead here\")'"
        ),
        route("looping", &["crm_looping"], "transform = 'last(repeat(.))'"),
        route("plain", &["crm_failing"], "")
    ))
    .await;
    let failing = send_twice(&app, "failing", "d-fail", &json!({"type": "x"})).await;
    let looping = send_twice(&app, "looping", "d-loop", &json!({"type": "x"})).await;
    let plain = send_twice(&app, "plain", "d-plain", &json!({"type": "x"})).await;

    let dead = wait_for_state(&app, &failing, "crm_failing", "dead").await;
    assert_eq!(dead["dead_reason"], "transform", "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no lead here")),
        "{dead}"
    );
    let dead = wait_for_state(&app, &looping, "crm_looping", "dead").await;
    assert_eq!(dead["dead_reason"], "transform", "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("longer than 100 ms") || e.contains("too deeply")),
        "{dead}"
    );
    let attempt = &dead["attempts"][0];
    assert!(
        attempt["duration_ms"].as_i64().is_some_and(|ms| ms < 1000),
        "stopped near its limit: {attempt}"
    );
    // The node goes on: the untransformed event is delivered, intake and health answer.
    wait_for_state(&app, &plain, "crm_failing", "delivered").await;
    let again = send_twice(&app, "plain", "d-plain-2", &json!({"type": "y"})).await;
    wait_for_state(&app, &again, "crm_failing", "delivered").await;
    let (status, _) = app.admin_get("/healthz").await;
    assert_eq!(status, 200);
    let seen: HashSet<String> = crm
        .received()
        .iter()
        .map(|r| r.event_id().to_owned())
        .collect();
    assert_eq!(
        seen,
        HashSet::from([plain, again]),
        "nothing of the dead ones"
    );
}

mod rabbitmq {
    //! RabbitMQ in one test, since it restarts the broker's application: a test beside it
    //! would see its connections drop.

    use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};

    use super::*;

    async fn channel() -> lapin::Channel {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match Connection::connect(AMQP_URL, ConnectionProperties::default()).await {
                Ok(connection) => return connection.create_channel().await.expect("channel"),
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "RabbitMQ answers on 127.0.0.1:5672 (scripts/ensure-brokers): {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Every message in `queue`: (message_id, headers, body), taken off the queue.
    async fn drain(queue: &str) -> Vec<(String, HashMap<String, String>, Vec<u8>)> {
        let channel = channel().await;
        let mut messages = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let properties = &message.delivery.properties;
            let headers = properties
                .headers()
                .as_ref()
                .map(|table| {
                    table
                        .inner()
                        .iter()
                        .map(|(k, v)| {
                            let value = match v {
                                lapin::types::AMQPValue::LongString(s) => s.to_string(),
                                other => format!("{other:?}"),
                            };
                            (k.to_string(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push((
                properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                headers,
                message.delivery.data.clone(),
            ));
        }
        messages
    }

    /// Runs `rabbitmqctl ARGS`.
    fn rabbitmqctl(args: &[&str]) {
        let output = std::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the broker's application again however the test ends.
    struct StartAppOnDrop;

    impl Drop for StartAppOnDrop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("rabbitmqctl")
                .arg("start_app")
                .output();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq_once_per_event_unroutable_and_a_broker_restart_that_loses_nothing() {
        let queue = unique("oncehook_it");
        let declaring = channel().await;
        declaring
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the queue");
        let crm = Receiver::start().await;
        let app = spawn_app(&format!(
            "{}{}{}{}{}{}{}",
            source("forms"),
            // The breaker opens while the broker is stopped; a cooldown of 1 s keeps the test short.
            destination(
                "rabbit",
                AMQP_URL,
                &format!(
                    "exchange = \"\"\nrouting_key = \"{queue}\"\nmax_attempts = 100\n\
                     circuit_breaker = {{ failures = 5, cooldown = \"1s\" }}"
                )
            ),
            destination(
                "lost",
                AMQP_URL,
                &format!("routing_key = \"{}_nobody\"", unique("oncehook_it"))
            ),
            destination(
                "no_exchange",
                AMQP_URL,
                &format!(
                    "exchange = \"{}\"\nrouting_key = \"x\"",
                    unique("oncehook_it")
                )
            ),
            destination("crm", &crm.url, ""),
            route("forms", &["rabbit", "crm"], ""),
            route(
                "forms",
                &["lost", "no_exchange"],
                "when = { pointer = \"/kind\", in = [\"lost\"] }"
            )
        ))
        .await;

        // Each event sent twice is in the queue once, with the HTTP delivery key as message_id.
        let mut events = Vec::new();
        for n in 0..3 {
            let delivery = format!("d-amqp-{n}");
            let body = json!({"type": "lead", "id": delivery});
            events.push((send_twice(&app, "forms", &delivery, &body).await, delivery));
        }
        for (event_id, _) in &events {
            wait_for_state(&app, event_id, "rabbit", "delivered").await;
        }
        let messages = drain(&queue).await;
        assert_eq!(messages.len(), 3, "one message per event");
        for (event_id, delivery) in &events {
            let (message_id, headers, _) = messages
                .iter()
                .find(|(_, h, _)| h.get("Oncehook-Event-Id") == Some(event_id))
                .unwrap_or_else(|| panic!("no message for {event_id}"));
            assert_eq!(message_id, &delivery_key("forms", "header", delivery));
            let http = crm.for_event(event_id);
            assert_eq!(http.len(), 1);
            assert_eq!(message_id, http[0].idempotency_key());
            assert_eq!(
                headers.get("Oncehook-Source").map(String::as_str),
                Some("forms")
            );
        }

        // A message no queue takes is returned: dead, unroutable.
        let lost = send_twice(
            &app,
            "forms",
            "d-lost",
            &json!({"type": "lead", "kind": "lost"}),
        )
        .await;
        let dead = wait_for_state(&app, &lost, "lost", "dead").await;
        assert_eq!(dead["dead_reason"], "unroutable", "{dead}");
        // So is one published to an exchange that does not exist.
        let dead = wait_for_state(&app, &lost, "no_exchange", "dead").await;
        assert_eq!(dead["dead_reason"], "unroutable", "{dead}");
        assert_eq!(dead["attempt_count"], 1, "{dead}");
        drain(&queue).await;

        // The broker's application stops and starts while events arrive: every event accepted
        // at intake ends up in the queue (at least once: a confirm lost in the restart is
        // published again under the same message_id, which consumers dedupe on).
        let restarted = StartAppOnDrop;
        let mut accepted = Vec::new();
        for n in 0..10 {
            let delivery = format!("d-restart-{n}");
            accepted.push((
                send_twice(
                    &app,
                    "forms",
                    &delivery,
                    &json!({"type": "lead", "id": delivery}),
                )
                .await,
                delivery,
            ));
            if n == 3 {
                tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
                    .await
                    .expect("stop_app");
            }
            if n == 6 {
                tokio::task::spawn_blocking(|| rabbitmqctl(&["start_app"]))
                    .await
                    .expect("start_app");
            }
        }
        drop(restarted);
        let mut attempts = 0;
        for (event_id, _) in &accepted {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let delivery = deliveries(&app, event_id)
                    .await
                    .remove("rabbit")
                    .expect("rabbit");
                if delivery["state"] == "delivered" {
                    attempts += delivery["attempts"].as_array().map_or(0, Vec::len);
                    break;
                }
                assert_ne!(delivery["state"], "dead", "{delivery}");
                assert!(tokio::time::Instant::now() < deadline, "{delivery}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let messages = drain(&queue).await;
        let ids: HashSet<&str> = messages.iter().map(|(id, _, _)| id.as_str()).collect();
        for (_, delivery) in &accepted {
            assert!(
                ids.contains(delivery_key("forms", "header", delivery).as_str()),
                "{delivery} lost in the restart"
            );
        }
        assert_eq!(ids.len(), accepted.len());
        eprintln!(
            "broker restart: {} events, {attempts} attempts, {} messages ({} published again \
             after a lost confirm)",
            accepted.len(),
            messages.len(),
            messages.len() - ids.len()
        );
        assert!(
            attempts > accepted.len(),
            "the events sent while the broker was stopped were retried"
        );
        let _ = channel()
            .await
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}
