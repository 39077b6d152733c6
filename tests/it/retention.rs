//! Retention end to end: finished events leave the API once their source's retention is over;
//! unfinished ones stay whatever their age.

use std::time::{Duration, Instant};

use crate::common::pg::PgSchema;
use crate::common::receiver::{Receiver, Reply};
use crate::common::{Gateway, GatewayOptions, post, sign, unix_now};
use serde_json::{Value, json};

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"retention-secret\"]";

async fn send_twice(client: &reqwest::Client, gateway: &Gateway, id: &str, body: &Value) -> String {
    let signed = sign(
        VERIFY,
        &serde_json::to_vec(body).expect("json"),
        id,
        unix_now(),
    );
    let url = gateway.webhook_url("hooks");
    let first = post(client, &url, &signed, "application/json").await;
    let second = post(client, &url, &signed, "application/json").await;
    assert_eq!((first.status, second.status), (202, 200), "{}", first.json);
    assert_eq!(second.json["event_id"], first.json["event_id"]);
    first.json["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_go_after_retention_and_retrying_ones_stay() {
    retention_run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_go_after_retention_and_retrying_ones_stay_on_postgres() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    retention_run(Some(&schema)).await;
}

/// Counts rows of the gateway's store, SQLite or PostgreSQL.
async fn count(gateway: &Gateway, schema: Option<&PgSchema>, sql: &str) -> i64 {
    match schema {
        Some(schema) => schema.count(sql).await,
        None => gateway.count(sql),
    }
}

async fn retention_run(schema: Option<&PgSchema>) {
    let crm = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.set_script(|_, _| Reply::Status(503));
    // Retention may not be shorter than the longest key TTL, so both are 3 s here.
    let options = GatewayOptions {
        store_url: schema.map(PgSchema::url),
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start_with(
        &format!(
            "[[sources]]\nname = \"hooks\"\n\
         verify = {{ scheme = \"github\", secrets = [\"retention-secret\"] }}\n\
         dedupe_ttl = \"3s\"\nretention = \"3s\"\n\
         [[destinations]]\nname = \"crm\"\nurl = \"{}\"\n\
         [[destinations]]\nname = \"flaky\"\nurl = \"{}\"\nmax_attempts = 1000\n\
         backoff = {{ base = \"200ms\", max = \"500ms\" }}\n\
         [[routes]]\nsource = \"hooks\"\nto = [\"crm\"]\nwhen = {{ pointer = \"/type\", prefix = \"ok.\" }}\n\
         [[routes]]\nsource = \"hooks\"\nto = [\"flaky\"]\nwhen = {{ pointer = \"/type\", in = [\"stuck\"] }}\n",
            crm.url, flaky.url
        ),
        options,
    );
    let client = reqwest::Client::new();
    let delivered = send_twice(&client, &gateway, "d-ok", &json!({"type": "ok.done"})).await;
    let retrying = send_twice(&client, &gateway, "d-stuck", &json!({"type": "stuck"})).await;
    crm.wait_for(Duration::from_secs(10), "the delivery", |r| r.len() == 1)
        .await;
    flaky
        .wait_for(Duration::from_secs(10), "an attempt", |r| !r.is_empty())
        .await;

    let (status, _) = gateway
        .admin_get(&format!("/api/v1/events/{delivered}"))
        .await;
    assert_eq!(status, 200, "kept until its retention is over");
    // Retention (3 s) plus at most one pass (every second for a 3 s retention).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = gateway
            .admin_get(&format!("/api/v1/events/{delivered}"))
            .await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivered event outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, event) = gateway
        .admin_get(&format!("/api/v1/events/{retrying}"))
        .await;
    assert_eq!(status, 200, "an unfinished event stays: {event}");
    assert_eq!(event["deliveries"][0]["state"], "retrying", "{event}");
    assert_eq!(
        count(&gateway, schema, "SELECT COUNT(*) FROM events").await,
        1
    );
    let crm_rows = "SELECT COUNT(*) FROM deliveries WHERE destination = 'crm'";
    assert_eq!(count(&gateway, schema, crm_rows).await, 0);

    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("oncehook_retention_deleted_total{source=\"hooks\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("oncehook_dedupe_keys "), "{metrics}");
}
