//! Protecting a destination, end to end: the real binary pacing, pausing and breaking the
//! circuit to real HTTP servers on 127.0.0.1. Every event is sent twice and each case checks the
//! destination saw one delivery per event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Gateway;
use crate::common::receiver::{Received, Receiver, Reply, busiest};
use crate::delivery::{WAIT, destination, route, send_twice, source};

/// Sends `n` events twice each from a few concurrent senders; returns their event ids.
async fn send_many(gateway: &Arc<Gateway>, n: usize) -> HashSet<String> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for sender in 0..8 {
        let (client, gateway) = (client.clone(), Arc::clone(gateway));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (sender..n).step_by(8) {
                let body = json!({"n": i});
                ids.push(send_twice(&client, &gateway, "s", &format!("d-{i}"), &body).await);
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.extend(task.await.expect("sender"));
    }
    assert_eq!(ids.len(), n);
    ids
}

fn once_each(received: &[Received], ids: &HashSet<String>) {
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for r in received.iter().filter(|r| r.answered == Some(200)) {
        *per_event.entry(r.event_id()).or_default() += 1;
    }
    let seen: HashSet<String> = per_event.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(&seen, ids, "every event was delivered");
    let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paced_destination_never_goes_faster_than_its_rate_limit() {
    let crm = Receiver::start().await;
    let gateway = Arc::new(Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination(
            "crm",
            &crm.url,
            "rate_limit = { per_second = 20, burst = 1 }"
        ),
        route("s", &["crm"], "")
    )));
    let ids = send_many(&gateway, 200).await;
    crm.wait_for(Duration::from_secs(40), "200 deliveries", |r| {
        r.len() >= 200
    })
    .await;
    let received = crm.received();
    once_each(&received, &ids);
    let most = busiest(&received, Duration::from_secs(2));
    assert!(
        most <= 44,
        "{most} deliveries within 2 s: more than 22/s at a pace of 20/s"
    );
    // The pace is a ceiling, not a crawl: 200 at 20/s take about 10 s.
    let first = received.iter().map(|r| r.at).min().expect("first");
    let last = received.iter().map(|r| r.at).max().expect("last");
    assert!(
        last.duration_since(first) >= Duration::from_millis(9_000),
        "{:?}",
        last.duration_since(first)
    );
    let (status, list) = gateway.admin_get("/api/v1/destinations").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["destinations"][0]["rate_limit"],
        json!({"per_second": 20, "burst": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_destination_holds_everything_across_a_restart_and_drains_in_order() {
    let crm = Receiver::start().await;
    let mut gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, ""),
        route("s", &["crm"], "ordering_key = \"json:/contact\"")
    ));
    let (status, paused) = gateway
        .admin_post(
            "/api/v1/destinations/crm/pause",
            &json!({"reason": "CRM deploy, CHG-42", "requested_by": "ops"}),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");

    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..50 {
        let body = json!({"contact": format!("c{}", n % 5), "n": n});
        ids.push(send_twice(&client, &gateway, "s", &format!("d-{n}"), &body).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(crm.received().is_empty(), "nothing goes out while paused");
    assert_eq!(gateway.count("SELECT COUNT(*) FROM delivery_attempts"), 0);
    assert_eq!(
        gateway.count("SELECT COUNT(*) FROM deliveries WHERE attempts > 0"),
        0,
        "no attempt is spent while paused"
    );
    let (_, list) = gateway.admin_get("/api/v1/destinations").await;
    let crm_state = &list["destinations"][0];
    assert_eq!(crm_state["state"], "paused", "{list}");
    assert_eq!(crm_state["paused_reason"], "CRM deploy, CHG-42");
    assert_eq!(crm_state["paused_by"], "ops");
    assert_eq!(crm_state["queue_depth"], 50);
    assert!(crm_state["oldest_pending_age_s"].as_f64().expect("age") >= 3.0);
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("oncehook_destination_state{destination=\"crm\",state=\"paused\"} 1"),
        "{metrics}"
    );

    // A restart does not forget the pause.
    gateway.terminate();
    gateway.spawn();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(crm.received().is_empty(), "still paused after a restart");
    let (_, list) = gateway.admin_get("/api/v1/destinations").await;
    assert_eq!(list["destinations"][0]["state"], "paused");

    let (status, resumed) = gateway
        .admin_post(
            "/api/v1/destinations/crm/resume",
            &json!({"requested_by": "ops"}),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    crm.wait_for(WAIT, "50 deliveries", |r| r.len() >= 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = crm.received();
    once_each(&received, &ids.iter().cloned().collect());
    // Each contact's events arrive in intake order.
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in &received {
        let body = r.json();
        let contact = body["contact"].as_str().expect("contact").to_owned();
        let n = body["n"].as_i64().expect("n");
        if let Some(before) = last.insert(contact.clone(), n) {
            assert!(before < n, "{contact}: {n} after {before}");
        }
    }
    let (_, list) = gateway.admin_get("/api/v1/destinations").await;
    assert_eq!(list["destinations"][0]["state"], "active");
    assert_eq!(list["destinations"][0]["paused_reason"], json!(null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_long_outage_ends_in_delivery_with_one_probe_per_cooldown() {
    let down = Arc::new(AtomicBool::new(true));
    let crm = Receiver::start().await;
    {
        let down = Arc::clone(&down);
        crm.set_script(move |_, _| {
            if down.load(Ordering::SeqCst) {
                Reply::Status(503)
            } else {
                Reply::Status(200)
            }
        });
    }
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination(
            "crm",
            &crm.url,
            "max_attempts = 3\nbackoff = { base = \"100ms\", max = \"1s\" }\n\
             circuit_breaker = { failures = 5, cooldown = \"10s\" }"
        ),
        route("s", &["crm"], "")
    ));
    let client = reqwest::Client::new();
    let mut ids = HashSet::new();
    for n in 0..10 {
        ids.insert(send_twice(&client, &gateway, "s", &format!("d-{n}"), &json!({"n": n})).await);
    }
    let outage_began = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (_, list) = gateway.admin_get("/api/v1/destinations").await;
    let state = list["destinations"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(state == "open" || state == "half_open", "{list}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    down.store(false, Ordering::SeqCst);
    let outage_ended = Instant::now();

    crm.wait_for(Duration::from_secs(30), "every event delivered", |r| {
        r.iter().filter(|r| r.answered == Some(200)).count() >= 10
    })
    .await;
    let received = crm.received();
    once_each(&received, &ids);
    assert_eq!(
        gateway.count("SELECT COUNT(*) FROM deliveries WHERE state = 'dead'"),
        0,
        "no delivery died of the outage"
    );
    // Once the first failures opened the circuit, one probe per cooldown reached the port.
    let first = received.iter().map(|r| r.at).min().expect("first request");
    let probes: Vec<Instant> = received
        .iter()
        .map(|r| r.at)
        .filter(|at| *at > first + Duration::from_secs(2) && *at < outage_ended)
        .collect();
    assert!(
        probes.len() <= 6,
        "{} requests during a 60 s outage with a 10 s cooldown",
        probes.len()
    );
    for pair in probes.windows(2) {
        assert!(
            pair[1].duration_since(pair[0]) >= Duration::from_millis(9_500),
            "two probes {:?} apart",
            pair[1].duration_since(pair[0])
        );
    }
    assert!(outage_ended.duration_since(outage_began) >= Duration::from_secs(60));
    assert!(
        gateway
            .logs()
            .iter()
            .any(|line| line.contains("circuit opened")),
        "the state change is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_needs_a_reason_and_a_known_destination_and_changes_nothing_otherwise() {
    let crm = Receiver::start().await;
    let gateway = Gateway::start(&format!(
        "{}{}{}",
        source("s"),
        destination("crm", &crm.url, "circuit_breaker = false"),
        route("s", &["crm"], "")
    ));
    for path in [
        "/api/v1/destinations/nope/pause",
        "/api/v1/destinations/nope/resume",
    ] {
        let (status, body) = gateway
            .admin_post(path, &json!({"reason": "x", "requested_by": "ops"}))
            .await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].as_str().expect("error").contains("nope"));
    }
    for bad in [
        json!({}),
        json!({"reason": "   "}),
        json!({"reason": "x", "colour": "red"}),
    ] {
        let (status, body) = gateway
            .admin_post("/api/v1/destinations/crm/pause", &bad)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, list) = gateway.admin_get("/api/v1/destinations").await;
    assert_eq!(status, 200);
    let crm_state = &list["destinations"][0];
    assert_eq!(crm_state["name"], "crm");
    assert_eq!(crm_state["state"], "active");
    assert_eq!(crm_state["queue_depth"], 0);
    assert_eq!(crm_state["oldest_pending_age_s"], json!(null));
    assert_eq!(crm_state["rate_limit"], json!(null));
    assert_eq!(crm_state["circuit_breaker"], json!(null));
    assert_eq!(crm_state["delivered_5m"], 0);
    // Resuming what is not paused is harmless; an empty body is fine.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/destinations/crm/resume", gateway.admin))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .send()
        .await
        .expect("resume");
    assert_eq!(response.status(), 200);
    // And the destination still delivers.
    let client = reqwest::Client::new();
    let id = send_twice(&client, &gateway, "s", "d-after", &json!({"n": 1})).await;
    crm.wait_for(WAIT, "the delivery", |r| r.len() == 1).await;
    assert_eq!(crm.received()[0].event_id(), id);
    // The outcome is recorded just after the destination answered.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, list) = gateway.admin_get("/api/v1/destinations").await;
        if list["destinations"][0]["delivered_5m"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
