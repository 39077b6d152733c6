//! Export and import end to end: events out of one gateway and into another, twice, through
//! the same atomic accept.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::pg::PgSchema;
use crate::common::receiver::Receiver;
use crate::common::{ADMIN_TOKEN, Gateway, GatewayOptions, post, sign, unix_now};
use serde_json::{Value, json};

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"transfer-secret\"]";

fn config(destination_url: &str) -> String {
    format!(
        "[[sources]]\nname = \"hooks\"\n\
         verify = {{ scheme = \"github\", secrets = [\"transfer-secret\"] }}\n\
         mask_fields = [\"/email\"]\n\
         [[destinations]]\nname = \"crm\"\nurl = \"{destination_url}\"\n\
         [[routes]]\nsource = \"hooks\"\nto = [\"crm\"]\n"
    )
}

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
    first.json["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

async fn export(client: &reqwest::Client, gateway: &Gateway, query: &str) -> Vec<String> {
    let response = client
        .get(format!("{}/api/v1/events/export{query}", gateway.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.expect("text");
    text.lines().map(str::to_owned).collect()
}

async fn import(client: &reqwest::Client, gateway: &Gateway, lines: &[String]) -> Value {
    let response = client
        .post(format!("{}/api/v1/events/import", gateway.admin))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n") + "\n")
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.expect("text")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_exported_from_one_gateway_are_imported_once_into_another() {
    transfer_run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_exported_from_sqlite_are_imported_once_into_postgres() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    transfer_run(Some(&schema)).await;
}

/// Exports from a gateway on SQLite into one on `schema` (SQLite too when None).
async fn transfer_run(schema: Option<&PgSchema>) {
    let first_crm = Receiver::start().await;
    let second_crm = Receiver::start().await;
    let first = Gateway::start(&config(&first_crm.url));
    let second = Gateway::start_with(
        &config(&second_crm.url),
        GatewayOptions {
            store_url: schema.map(PgSchema::url),
            ..GatewayOptions::default()
        },
    );
    let events_in_second = || async {
        match schema {
            Some(schema) => schema.count("SELECT COUNT(*) FROM events").await,
            None => second.event_count(),
        }
    };
    let client = reqwest::Client::new();
    let mut sent = Vec::new();
    for n in 0..3 {
        let body = json!({"type": "lead.created", "n": n, "email": format!("p{n}@example.com")});
        sent.push(send_twice(&client, &first, &format!("d-{n}"), &body).await);
    }

    let lines = export(&client, &first, "?source=hooks").await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let exported: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let ids: HashSet<&str> = exported
        .iter()
        .map(|e| e["event_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, sent.iter().map(String::as_str).collect());
    // Oldest first, so that an import accepts them in the order intake did.
    let in_order: Vec<&str> = exported
        .iter()
        .map(|e| e["event_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        in_order,
        sent.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for event in &exported {
        assert_eq!(event["source"], "hooks");
        assert!(
            event["idempotency_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("d-"))
        );
        assert!(event["body_base64"].is_string() && event["received_at"].is_string());
        assert_eq!(
            event["headers"]["x-github-delivery"],
            event["idempotency_key"]
        );
        assert!(event["headers"].get("x-hub-signature-256").is_none());
    }

    let once = import(&client, &second, &lines).await;
    assert_eq!(
        once,
        json!({"accepted": 3, "duplicates": 0, "rejected": []})
    );
    let twice = import(&client, &second, &lines).await;
    assert_eq!(
        twice,
        json!({"accepted": 0, "duplicates": 3, "rejected": []})
    );
    assert_eq!(events_in_second().await, 3);
    // Same ids, same times, same bodies: the second gateway's export is the first's.
    let mut again = export(&client, &second, "").await;
    let mut original = lines.clone();
    again.sort();
    original.sort();
    assert_eq!(again, original);
    // The importing gateway's routes deliver each event once, under its original id.
    second_crm
        .wait_for(Duration::from_secs(10), "three deliveries", |r| {
            r.len() == 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered: HashSet<String> = second_crm
        .received()
        .iter()
        .map(|r| r.event_id().to_owned())
        .collect();
    assert_eq!(second_crm.received().len(), 3);
    assert_eq!(delivered, sent.iter().cloned().collect());
    // A provider repeat to the second gateway is a duplicate of the imported event.
    let repeat = post(
        &client,
        &second.webhook_url("hooks"),
        &sign(
            VERIFY,
            &serde_json::to_vec(
                &json!({"type": "lead.created", "n": 0, "email": "p0@example.com"}),
            )
            .expect("json"),
            "d-0",
            unix_now(),
        ),
        "application/json",
    )
    .await;
    assert_eq!(repeat.status, 200, "{}", repeat.json);
    assert_eq!(repeat.json["event_id"], sent[0].as_str());

    // A bad line is reported with its number; the lines around it are not lost.
    let newer = send_twice(
        &client,
        &first,
        "d-9",
        &json!({"type": "lead.created", "n": 9}),
    )
    .await;
    let newer_line = export(&client, &first, "?key=d-9").await;
    assert_eq!(newer_line.len(), 1);
    let mixed = vec![
        newer_line[0].clone(),
        "{not json".to_owned(),
        lines[0].clone(),
        json!({"event_id": newer, "source": "nope", "idempotency_key": "x",
               "received_at": "2026-01-01T00:00:00Z", "content_type": null,
               "body_base64": "e30=", "headers": {}})
        .to_string(),
    ];
    let result = import(&client, &second, &mixed).await;
    assert_eq!(result["accepted"], 1, "{result}");
    assert_eq!(result["duplicates"], 1, "{result}");
    let rejected = result["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2, "{result}");
    assert_eq!(rejected[0]["line"], 2);
    assert_eq!(rejected[1]["line"], 4);
    assert!(
        rejected[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no source")),
        "{result}"
    );
    assert_eq!(events_in_second().await, 4);
}
