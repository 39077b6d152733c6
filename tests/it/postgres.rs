//! Several nodes on one PostgreSQL database, end to end: real `oncehook serve` processes sharing
//! a schema, a real destination, and a proxy that can make the database unreachable. Every event
//! is sent twice and every test checks that the outcome equals one delivery.
//!
//! Skipped (with a notice) unless `ONCEHOOK_TEST_PG` names a database; `scripts/test` sets it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::pg::{PgSchema, TcpProxy};
use crate::common::receiver::{Received, Receiver, Reply as Answer};
use crate::common::{Gateway, GatewayOptions, Reply, Signed, post, sign, unix_now};
use serde_json::json;
use tokio::sync::Semaphore;

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"pg-e2e-secret\"]";

/// A GitHub-style source (keyed by `X-GitHub-Delivery`) routed to one destination.
fn config(sink_url: &str, destination_extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"gh\"\nverify = {{ scheme = \"github\", secrets = [\"pg-e2e-secret\"] }}\n\
         search_fields = {{ action = \"/action\" }}\n\n\
         [[destinations]]\nname = \"sink\"\nurl = \"{sink_url}\"\n{destination_extra}\n\n\
         [[routes]]\nsource = \"gh\"\nto = [\"sink\"]\n"
    )
}

fn request(delivery: &str) -> Signed {
    let body =
        serde_json::to_vec(&json!({"delivery": delivery, "action": "opened"})).expect("json");
    sign(VERIFY, &body, delivery, unix_now())
}

fn on(store_url: &str, role: Option<&str>) -> GatewayOptions {
    GatewayOptions {
        store_url: Some(store_url.to_owned()),
        role: role.map(str::to_owned),
        ..GatewayOptions::default()
    }
}

async fn send(client: &reqwest::Client, gateway: &Gateway, delivery: &str) -> Reply {
    post(
        client,
        &gateway.webhook_url("gh"),
        &request(delivery),
        "application/json",
    )
    .await
}

fn event_id(reply: &Reply) -> String {
    reply.json["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id in {}", reply.json))
        .to_owned()
}

/// Requests answered 2xx, per event.
fn delivered(received: &[Received]) -> HashMap<String, usize> {
    let mut delivered = HashMap::new();
    for request in received {
        if request.answered.is_some_and(|s| (200..300).contains(&s)) {
            *delivered.entry(request.event_id().to_owned()).or_default() += 1;
        }
    }
    delivered
}

/// `oncehook_deliveries_total{destination="sink",outcome="delivered"}` on one node.
async fn delivered_by(gateway: &Gateway) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|line| {
            line.starts_with("oncehook_deliveries_total{") && line.contains("outcome=\"delivered\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The admin listener answers health, readiness and metrics whatever the node's role.
async fn assert_admin_serves(gateway: &Gateway) {
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = reqwest::get(format!("{}{path}", gateway.admin))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.status(), 200, "{path} on role {:?}", gateway.role);
    }
}

const DELIVERED: &str = "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accept_fifty_concurrent_identical_deliveries_once() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let sink = Receiver::start().await;
    let body = config(&sink.url, "");
    // Started together, so both migrate the fresh schema at once (one waits on the other).
    let together = |role: Option<&str>| GatewayOptions {
        no_wait: true,
        ..on(&schema.url(), role)
    };
    let mut intake_only = Gateway::start_with(&body, together(Some("intake")));
    let mut full = Gateway::start_with(&body, together(None));
    intake_only.wait_healthy();
    full.wait_healthy();
    let nodes = Arc::new([intake_only, full]);

    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, nodes) = (client.clone(), Arc::clone(&nodes));
        tasks.push(tokio::spawn(async move {
            send(&client, &nodes[i % 2], "gh-delivery-concurrent").await
        }));
    }
    let mut statuses = HashMap::new();
    let mut ids = HashSet::new();
    for task in tasks {
        let reply = task.await.expect("task");
        *statuses.entry(reply.status).or_insert(0) += 1;
        if reply.status == 200 {
            assert_eq!(reply.json["reason"], "key", "{}", reply.json);
            assert_eq!(reply.json["conflict"], false, "{}", reply.json);
        }
        ids.insert(event_id(&reply));
    }
    assert_eq!(statuses, HashMap::from([(202, 1), (200, 49)]));
    assert_eq!(ids.len(), 1, "every reply names the same event");

    // And again on each node after the burst.
    for node in nodes.iter() {
        let again = send(&client, node, "gh-delivery-concurrent").await;
        assert_eq!(again.status, 200);
        assert!(ids.contains(&event_id(&again)));
    }
    assert_eq!(schema.count("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(schema.count("SELECT COUNT(*) FROM dedupe_keys").await, 1);
    assert_eq!(schema.count("SELECT COUNT(*) FROM event_search").await, 1);
    schema
        .wait_for_count(DELIVERED, 1, Duration::from_secs(20))
        .await;
    let delivered = delivered(&sink.received());
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered.values().copied().collect::<Vec<_>>(), vec![1]);
    assert!(ids.contains(delivered.keys().next().expect("one key")));

    for node in nodes.iter() {
        assert_admin_serves(node).await;
    }
    assert_eq!(
        delivered_by(&nodes[0]).await,
        0.0,
        "an intake-only node delivers nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_events_across_two_nodes_are_each_delivered_once() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    // A small delay widens the window in which a second claim of one delivery would overlap.
    let sink = Receiver::start().await;
    sink.set_script(|_, _| Answer::Slow(Duration::from_millis(3), 200));
    let body = config(&sink.url, "concurrency = 8");
    let nodes = Arc::new([
        Gateway::start_with(&body, on(&schema.url(), None)),
        Gateway::start_with(&body, on(&schema.url(), None)),
    ]);

    let client = reqwest::Client::new();
    let senders = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..1_000usize {
        let (client, nodes, senders) = (client.clone(), Arc::clone(&nodes), Arc::clone(&senders));
        tasks.push(tokio::spawn(async move {
            let _permit = senders.acquire().await.expect("permit");
            let delivery = format!("gh-delivery-{i}");
            // First to one node, the provider's retry to the other.
            let first = send(&client, &nodes[i % 2], &delivery).await;
            assert_eq!(first.status, 202, "{delivery}: {}", first.json);
            let repeat = send(&client, &nodes[(i + 1) % 2], &delivery).await;
            assert_eq!(repeat.status, 200, "{delivery}: {}", repeat.json);
            assert_eq!(event_id(&repeat), event_id(&first));
            event_id(&first)
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    assert_eq!(ids.len(), 1_000);

    schema
        .wait_for_count(DELIVERED, 1_000, Duration::from_secs(90))
        .await;
    let delivered = delivered(&sink.received());
    assert_eq!(
        delivered.keys().cloned().collect::<HashSet<_>>(),
        ids,
        "every event reached the destination"
    );
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(
        sink.overlapping_attempts(),
        0,
        "a delivery was in flight twice at once"
    );
    assert_eq!(schema.count("SELECT COUNT(*) FROM events").await, 1_000);
    assert_eq!(
        schema
            .count("SELECT COUNT(*) FROM deliveries WHERE attempts <> 1")
            .await,
        0,
        "every delivery took exactly one attempt"
    );
    let (a, b) = (delivered_by(&nodes[0]).await, delivered_by(&nodes[1]).await);
    assert_eq!(a + b, 1_000.0);
    assert!(a > 0.0 && b > 0.0, "both nodes delivered ({a} and {b})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_node_s_deliveries_are_taken_over_after_the_lease() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    // First attempts hang at the destination (longer than anyone waits); the lease is
    // timeout + 5 s = 10 s. The node is killed well within its 5 s timeout.
    let sink = Receiver::start().await;
    sink.set_script(|_, previous| match previous {
        0 => Answer::Slow(Duration::from_secs(120), 200),
        _ => Answer::Status(200),
    });
    let body = config(
        &sink.url,
        "timeout = \"5s\"\nbackoff = { base = \"100ms\", max = \"1s\" }",
    );
    let mut doomed = Gateway::start_with(&body, on(&schema.url(), None));
    let client = reqwest::Client::new();
    let mut ids = HashSet::new();
    for i in 0..5 {
        let delivery = format!("gh-delivery-{i}");
        let first = send(&client, &doomed, &delivery).await;
        assert_eq!(first.status, 202, "{}", first.json);
        let repeat = send(&client, &doomed, &delivery).await;
        assert_eq!(repeat.status, 200, "{}", repeat.json);
        ids.insert(event_id(&first));
    }
    // Every delivery is claimed and its attempt is in flight at the destination: kill the node.
    sink.wait_for(Duration::from_secs(4), "five attempts in flight", |r| {
        r.len() >= 5
    })
    .await;
    doomed.kill();

    let survivor = Gateway::start_with(&body, on(&schema.url(), Some("worker")));
    schema
        .wait_for_count(DELIVERED, 5, Duration::from_secs(30))
        .await;
    for id in &ids {
        let attempts = sink.for_event(id);
        assert_eq!(
            attempts.iter().map(Received::attempt).collect::<Vec<_>>(),
            vec![1, 2],
            "{id}: the killed node's attempt, then the survivor's"
        );
        // Not before the lease ran out: never two live claims of one delivery.
        let waited = attempts[1].at.duration_since(attempts[0].at);
        assert!(
            waited >= Duration::from_secs(9),
            "{id}: taken over after {waited:?}"
        );
    }
    assert_eq!(
        schema
            .count("SELECT COUNT(*) FROM deliveries WHERE attempts <> 2")
            .await,
        0
    );

    // A worker node has no intake listener, and its admin listener still answers.
    assert_admin_serves(&survivor).await;
    assert!(
        reqwest::get(survivor.webhook_url("gh")).await.is_err(),
        "a worker node must not listen for webhooks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_gets_503_and_service_resumes() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let proxy = TcpProxy::start(schema.server_addr()).await;
    let sink = Receiver::start().await;
    let body = config(&sink.url, "");
    let gateway = Gateway::start_with(&body, on(&schema.url_through(&proxy), None));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");

    let mut acknowledged = HashMap::new();
    for i in 0..10 {
        let delivery = format!("gh-before-{i}");
        let first = send(&client, &gateway, &delivery).await;
        assert_eq!(first.status, 202, "{}", first.json);
        assert_eq!(send(&client, &gateway, &delivery).await.status, 200);
        acknowledged.insert(delivery, event_id(&first));
    }
    // Nothing in flight when the database goes away, so each delivery is attempted once.
    schema
        .wait_for_count(DELIVERED, 10, Duration::from_secs(20))
        .await;

    proxy.cut();
    let mut refused = Vec::new();
    for i in 0..10 {
        let delivery = format!("gh-during-{i}");
        for _ in 0..2 {
            let started = Instant::now();
            let reply = send(&client, &gateway, &delivery).await;
            assert_eq!(reply.status, 503, "{delivery}: {}", reply.json);
            assert!(
                reply.headers.contains_key("retry-after"),
                "503 without Retry-After"
            );
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "503 took {:?}",
                started.elapsed()
            );
        }
        refused.push(delivery);
    }
    let ready = reqwest::get(format!("{}/readyz", gateway.admin))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    assert!(gateway.healthy().await, "the process itself stays healthy");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = reqwest::get(format!("{}/readyz", gateway.admin))
            .await
            .expect("readyz");
        if ready.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The provider retries what was refused: now accepted, once.
    for delivery in &refused {
        let first = send(&client, &gateway, delivery).await;
        assert_eq!(first.status, 202, "{delivery}: {}", first.json);
        assert_eq!(send(&client, &gateway, delivery).await.status, 200);
        acknowledged.insert(delivery.clone(), event_id(&first));
    }
    // What was acknowledged before the outage is still there.
    for (delivery, id) in acknowledged
        .iter()
        .filter(|(d, _)| d.starts_with("gh-before"))
    {
        let again = send(&client, &gateway, delivery).await;
        assert_eq!((again.status, event_id(&again)), (200, id.clone()));
    }
    schema
        .wait_for_count(DELIVERED, 20, Duration::from_secs(30))
        .await;
    assert_eq!(schema.count("SELECT COUNT(*) FROM events").await, 20);
    let delivered = delivered(&sink.received());
    assert_eq!(
        delivered.keys().cloned().collect::<HashSet<_>>(),
        acknowledged.values().cloned().collect::<HashSet<_>>()
    );
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_that_stops_answering_gets_503_within_the_deadline_and_service_resumes() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let proxy = TcpProxy::start(schema.server_addr()).await;
    let sink = Receiver::start().await;
    let body = config(&sink.url, "");
    let gateway = Gateway::start_with(&body, on(&schema.url_through(&proxy), None));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let before = send(&client, &gateway, "gh-before").await;
    assert_eq!(before.status, 202, "{}", before.json);
    assert_eq!(send(&client, &gateway, "gh-before").await.status, 200);
    schema
        .wait_for_count(DELIVERED, 1, Duration::from_secs(20))
        .await;

    // Packets vanish: no error arrives, only the store's deadline (5 s) notices.
    proxy.stall();
    for _ in 0..2 {
        let started = Instant::now();
        let reply = send(&client, &gateway, "gh-stalled").await;
        assert_eq!(reply.status, 503, "{}", reply.json);
        assert!(reply.headers.contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "503 took {:?}",
            started.elapsed()
        );
    }
    let ready = reqwest::get(format!("{}/readyz", gateway.admin))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);

    // The path heals; connections stuck on the old one must not keep the node down.
    proxy.restore();
    let healed = Instant::now();
    loop {
        let ready = reqwest::get(format!("{}/readyz", gateway.admin))
            .await
            .expect("readyz");
        if ready.status() == 200 {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(20),
            "not ready again after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = send(&client, &gateway, "gh-stalled").await;
    assert_eq!(retried.status, 202, "{}", retried.json);
    assert_eq!(send(&client, &gateway, "gh-stalled").await.status, 200);
    schema
        .wait_for_count(DELIVERED, 2, Duration::from_secs(30))
        .await;
    let delivered = delivered(&sink.received());
    assert_eq!(
        delivered.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from([event_id(&before), event_id(&retried)])
    );
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
}

/// A node that cannot get the TLS its `store.url` asks for does not start, and says why: here the
/// server's certificate is not signed by the CA named in `sslrootcert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_when_the_server_certificate_is_not_signed_by_sslrootcert() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let sink = Receiver::start().await;
    let ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unrelated-ca.pem"
    );
    let url = format!("{}&sslmode=verify-full&sslrootcert={ca}", schema.url());
    let started = Instant::now();
    let mut node = Gateway::start_with(
        &config(&sink.url, ""),
        GatewayOptions {
            no_wait: true,
            ..on(&url, None)
        },
    );
    let status = tokio::task::block_in_place(|| node.wait_exit(Duration::from_secs(10)));
    let took = started.elapsed();
    let logs = node.logs().join("\n");
    node.kill();
    let status = status.unwrap_or_else(|| panic!("the node kept running:\n{logs}"));
    assert!(!status.success(), "{status}");
    assert!(
        took < Duration::from_secs(5),
        "refused after {took:?}, not at once"
    );
    assert!(
        logs.contains("cannot open the store")
            && logs.contains("the server's certificate is not signed by sslrootcert"),
        "{logs}"
    );
}

/// With `sslmode=require`, every connection the node holds is encrypted, as the server sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sslmode_require_every_connection_of_the_node_is_encrypted() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let sink = Receiver::start().await;
    // A name of its own, to find this node's connections among the other tests'.
    let name = format!("oncehook-{}", schema.name);
    let url = format!("{}&sslmode=require&application_name={name}", schema.url());
    let mut node = Gateway::start_with(&config(&sink.url, ""), on(&url, None));
    let client = reqwest::Client::new();
    assert_eq!(send(&client, &node, "gh-delivery-tls").await.status, 202);
    let rows = schema
        .text_rows(&format!(
            "SELECT count(*)::text, bool_and(s.ssl)::text, min(s.version) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{name}'"
        ))
        .await;
    node.kill();
    let row = &rows[0];
    let connections: u32 = row[0].as_deref().unwrap_or("0").parse().expect("count");
    assert!(connections > 0, "the node holds no connection: {row:?}");
    assert_eq!(row[1].as_deref(), Some("true"), "{row:?}");
    eprintln!("{connections} connections, all over {:?}", row[2]);
}

/// Two nodes share one destination's pace (the token bucket lives in the database) and one
/// pause: the sum of what both send stays under the rate, and a pause given to one node holds
/// the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_a_destination_s_pace_and_its_pause() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let sink = Receiver::start().await;
    let body = config(&sink.url, "rate_limit = { per_second = 20, burst = 1 }");
    let nodes = Arc::new([
        Gateway::start_with(&body, on(&schema.url(), None)),
        Gateway::start_with(&body, on(&schema.url(), None)),
    ]);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let (client, nodes) = (client.clone(), Arc::clone(&nodes));
        tasks.push(tokio::spawn(async move {
            let delivery = format!("paced-{i}");
            let first = send(&client, &nodes[i % 2], &delivery).await;
            assert_eq!(first.status, 202, "{delivery}: {}", first.json);
            let repeat = send(&client, &nodes[(i + 1) % 2], &delivery).await;
            assert_eq!(repeat.status, 200, "{delivery}: {}", repeat.json);
            event_id(&first)
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    schema
        .wait_for_count(DELIVERED, 200, Duration::from_secs(60))
        .await;
    let received = sink.received();
    let delivered = delivered(&received);
    assert_eq!(delivered.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(
        delivered.values().all(|n| *n == 1),
        "delivered more than once"
    );
    let most = crate::common::receiver::busiest(&received, Duration::from_secs(2));
    assert!(
        most <= 44,
        "{most} deliveries within 2 s from two nodes at 20/s"
    );
    let (a, b) = (delivered_by(&nodes[0]).await, delivered_by(&nodes[1]).await);
    assert!(a > 0.0 && b > 0.0, "both nodes delivered ({a} and {b})");

    // Paused through one node, held by both.
    let (status, _) = nodes[0]
        .admin_post(
            "/api/v1/destinations/sink/pause",
            &json!({"reason": "deploy", "requested_by": "ops"}),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..10usize {
        let delivery = format!("held-{i}");
        assert_eq!(send(&client, &nodes[i % 2], &delivery).await.status, 202);
        assert_eq!(
            send(&client, &nodes[(i + 1) % 2], &delivery).await.status,
            200
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 200, "nothing sent while paused");
    let (_, list) = nodes[1].admin_get("/api/v1/destinations").await;
    assert_eq!(list["destinations"][0]["state"], "paused", "{list}");
    assert_eq!(list["destinations"][0]["queue_depth"], 10);
    let (status, _) = nodes[1]
        .admin_post("/api/v1/destinations/sink/resume", &json!({}))
        .await;
    assert_eq!(status, 200);
    schema
        .wait_for_count(DELIVERED, 210, Duration::from_secs(30))
        .await;
}

/// A worker node starts on work another node accepted within milliseconds (the intake node
/// announces it), not at its next poll (up to 500 ms later). Events go one at a time, at
/// irregular gaps, so that a poll could not line up with them by chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_node_starts_on_work_another_node_accepted_at_once() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let sink = Receiver::start().await;
    let body = config(&sink.url, "");
    let intake = Gateway::start_with(&body, on(&schema.url(), Some("intake")));
    let _worker = Gateway::start_with(&body, on(&schema.url(), Some("worker")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for i in 0..20usize {
        tokio::time::sleep(Duration::from_millis(37 + (i as u64 * 71) % 300)).await;
        let delivery = format!("woken-{i}");
        let sent = Instant::now();
        assert_eq!(send(&client, &intake, &delivery).await.status, 202);
        assert_eq!(send(&client, &intake, &delivery).await.status, 200);
        while sink.received().len() <= i {
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "{delivery} was not delivered"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    eprintln!("from the intake node's 202 to the worker node's delivery: {latencies:?}");
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "median {median:?}: the worker waited for its poll"
    );
    assert_eq!(delivered(&sink.received()).len(), 20);
}

/// One view of many nodes: intake on node A, delivery and a replay on node B; node B's stats
/// show both nodes' figures and say how many nodes answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_on_one_node_show_every_node_s_figures() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let sink = Receiver::start().await;
    let body = config(&sink.url, "");
    let intake = Gateway::start_with(&body, on(&schema.url(), Some("intake")));
    let worker = Gateway::start_with(&body, on(&schema.url(), Some("worker")));
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..5usize {
        let delivery = format!("viewed-{i}");
        let first = send(&client, &intake, &delivery).await;
        assert_eq!(first.status, 202);
        assert_eq!(send(&client, &intake, &delivery).await.status, 200);
        ids.push(event_id(&first));
    }
    schema
        .wait_for_count(DELIVERED, 5, Duration::from_secs(20))
        .await;
    let (status, replay) = worker
        .admin_post(
            "/api/v1/replays",
            &json!({"filter": {"event_ids": ids}, "reason": "one view", "requested_by": "ops"}),
        )
        .await;
    assert_eq!(status, 200, "{replay}");
    sink.wait_for(Duration::from_secs(20), "the replayed deliveries", |r| {
        r.len() >= 10
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, stats) = worker.admin_get("/api/v1/stats?window=15m").await;
        assert_eq!(status, 200, "{stats}");
        let done = stats["nodes"] == 2
            && stats["intake"]["total"] == 10
            && stats["intake"]["outcomes"]["duplicate"] == 5
            && stats["delivery"]["replays"]["delivered"] == 5
            && stats["delivery"]["outcomes"]["delivered"] == 10;
        if done {
            assert_eq!(stats["intake"]["scope"], "nodes");
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The intake node answers for both too, once the worker has shared its latest slots
    // (every 2 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = intake.admin_get("/api/v1/stats?window=15m").await;
        if stats["nodes"] == 2 && stats["delivery"]["outcomes"]["delivered"] == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
