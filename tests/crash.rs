//! Durability: a 202 means the event is on disk. The gateway is SIGKILLed in the middle of a
//! burst of concurrent intake; after a restart every acknowledged event must be there.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gateway, post, sign, unix_now};
use serde_json::json;
use tokio::sync::Mutex;

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"crash-secret\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_sigkill() {
    let mut gateway = Gateway::start(
        "[[sources]]\nname = \"gh\"\nverify = { scheme = \"github\", secrets = [\"crash-secret\"] }\n\
         [[destinations]]\nname = \"sink\"\nurl = \"http://127.0.0.1:9/\"\n\
         [[routes]]\nsource = \"gh\"\nto = [\"sink\"]\n",
    );
    let url = Arc::new(gateway.webhook_url("gh"));
    for cycle in 0..3 {
        let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for worker in 0..16 {
            let (url, acknowledged, accepted, stop) = (
                Arc::clone(&url),
                Arc::clone(&acknowledged),
                Arc::clone(&accepted),
                Arc::clone(&stop),
            );
            senders.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("client");
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let delivery = format!("c{cycle}-w{worker}-n{n}");
                    let body =
                        serde_json::to_vec(&json!({"n": n, "worker": worker})).expect("json");
                    let signed = sign(VERIFY, &body, &delivery, unix_now());
                    let mut request = client
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(signed.body);
                    for (name, value) in &signed.headers {
                        request = request.header(name.as_str(), value.as_str());
                    }
                    let Ok(response) = request.send().await else {
                        break;
                    };
                    if response.status() != 202 {
                        continue;
                    }
                    let Ok(text) = response.text().await else {
                        break;
                    };
                    let Ok(reply) = serde_json::from_str::<serde_json::Value>(&text) else {
                        break;
                    };
                    let event_id = reply["event_id"].as_str().unwrap_or_default().to_owned();
                    acknowledged.lock().await.push((delivery, event_id));
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        while accepted.load(Ordering::Relaxed) < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gateway.kill();
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            sender.await.expect("sender");
        }
        gateway.spawn();

        let acknowledged = acknowledged.lock().await.clone();
        assert!(acknowledged.len() >= 300);
        let db = gateway.db();
        let mut lookup = db
            .prepare("SELECT COUNT(*) FROM events WHERE id = ?1")
            .expect("prepare");
        for (delivery, event_id) in &acknowledged {
            let id = uuid::Uuid::parse_str(event_id).expect("uuid");
            let found: i64 = lookup
                .query_row([&id.as_bytes()[..]], |r| r.get(0))
                .expect("query");
            assert_eq!(
                found, 1,
                "cycle {cycle}: {delivery} was acknowledged as {event_id} but is not stored"
            );
        }
        // The provider's retry of an acknowledged event is a duplicate pointing at the original.
        let client = reqwest::Client::new();
        for (delivery, event_id) in acknowledged.iter().take(20) {
            let n: u64 = delivery
                .rsplit("-n")
                .next()
                .and_then(|n| n.parse().ok())
                .expect("n");
            let worker: u64 = delivery
                .split("-w")
                .nth(1)
                .and_then(|w| w.split('-').next())
                .and_then(|w| w.parse().ok())
                .expect("w");
            let body = serde_json::to_vec(&json!({"n": n, "worker": worker})).expect("json");
            let reply = post(
                &client,
                &url,
                &sign(VERIFY, &body, delivery, unix_now()),
                "application/json",
            )
            .await;
            assert_eq!(reply.status, 200, "{delivery}: {}", reply.json);
            assert_eq!(reply.json["event_id"], event_id.as_str());
        }
        let orphans = gateway.count(
            "SELECT COUNT(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq)",
        );
        assert_eq!(orphans, 0, "an event was stored without its delivery rows");
        let keyless = gateway.count(
            "SELECT COUNT(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM dedupe_keys k WHERE k.event_id = e.id)",
        );
        assert_eq!(keyless, 0, "an event was stored without its key");
    }
}
