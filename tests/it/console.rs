//! The console end to end: the real binary with a failing destination and a healthy one, every
//! event sent twice, then a real browser (`console-tests/console.test.mjs`: Playwright driving
//! the system's Chromium) signs in, reads the charts, finds an event by email, replays its dead
//! delivery after a dry run and sees it delivered. Screenshots go to
//! `target/console-screenshots/`.
//!
//! `scripts/test` installs what the browser test needs (`scripts/ensure-browser`). Without it the
//! browser part is skipped with a message, except under CI, where it must run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{BIN, Gateway, post, sign, unix_now};
use serde_json::{Value, json};

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"console-secret\"]";
const WAIT: Duration = Duration::from_secs(20);
const BROWSER_TEST_TIMEOUT: Duration = Duration::from_secs(240);
const EVENTS: usize = 3;

fn config(crm: &str, analytics: &str) -> String {
    format!(
        "[[sources]]\nname = \"forms\"\n\
         verify = {{ scheme = \"github\", secrets = [\"console-secret\"] }}\n\
         mask_fields = [\"/email\", \"/phone\"]\n\
         search_fields = {{ email = \"/email\", contact = \"/contact_id\" }}\n\n\
         [[destinations]]\nname = \"crm\"\nurl = \"{crm}\"\nmax_attempts = 2\n\
         backoff = {{ base = \"20ms\", max = \"100ms\" }}\ncircuit_breaker = false\n\n\
         [[destinations]]\nname = \"analytics\"\nurl = \"{analytics}\"\n\n\
         [[routes]]\nsource = \"forms\"\nto = [\"crm\", \"analytics\"]\n"
    )
}

fn lead(n: usize) -> Value {
    json!({
        "type": "lead.created",
        "email": format!("lead{n}@example.com"),
        "phone": format!("+44 7700 90012{n}"),
        "contact_id": format!("contact-778{n}"),
        "plan": "pro",
    })
}

/// Every value the source masks or makes searchable: none may appear in a page.
fn masked_values() -> Vec<String> {
    (0..EVENTS)
        .flat_map(|n| {
            let lead = lead(n);
            ["/email", "/phone", "/contact_id"].map(|pointer| {
                lead.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .flatten()
        .collect()
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

fn target_dir() -> PathBuf {
    // BIN is <target>/<profile>/oncehook.
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// What the browser test needs, or why it cannot run here.
fn browser_setup() -> Result<(PathBuf, PathBuf), String> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("console-tests");
    let chromium = std::env::var_os("ONCEHOOK_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !tests
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Err("console-tests/node_modules is missing".into());
    }
    if !chromium.exists() {
        return Err(format!("{} is missing", chromium.display()));
    }
    match Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => Ok((tests, chromium)),
        _ => Err("node is missing".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_replays_a_dead_delivery() {
    let crm = Receiver::start().await;
    crm.set_script(|_, _| Reply::Status(503));
    let analytics = Receiver::start().await;
    let gateway = Gateway::start(&config(&crm.url, &analytics.url));

    let mut ids = Vec::new();
    for n in 0..EVENTS {
        ids.push(send_twice(&gateway, &format!("console-{n}"), &lead(n)).await);
    }
    gateway
        .wait_for_deliveries(WAIT, "crm dead and analytics delivered", |d| {
            d.len() == 2 * EVENTS
                && d.iter().all(|(_, destination, state, _, _)| {
                    state
                        == if destination == "crm" {
                            "dead"
                        } else {
                            "delivered"
                        }
                })
        })
        .await;
    assert_eq!(crm.received().len(), 2 * EVENTS, "two attempts per event");

    check_static_files_and_headers(&gateway).await;
    check_stats_series(&gateway).await;

    // The destination is fixed; its dead deliveries stay dead until someone replays them.
    crm.set_script(|_, _| Reply::Status(200));

    let (tests, chromium) = match browser_setup() {
        Ok(setup) => setup,
        Err(missing) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the console's browser test cannot run: {missing}; run scripts/ensure-browser"
            );
            eprintln!("skipping the console's browser test: {missing} (scripts/ensure-browser)");
            return;
        }
    };
    let screenshots = target_dir().join("console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let masked = serde_json::to_string(&masked_values()).expect("json");
    let log_path = gateway.dir.path().join("browser-test.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new("node")
        .arg("console.test.mjs")
        .current_dir(&tests)
        .env("ONCEHOOK_CONSOLE_URL", format!("{}/console", gateway.admin))
        .env("ONCEHOOK_ADMIN_TOKEN", crate::common::ADMIN_TOKEN)
        .env("ONCEHOOK_TEST_EMAIL", "Lead1@Example.com ")
        .env("ONCEHOOK_TEST_EVENT_ID", &ids[1])
        .env("ONCEHOOK_TEST_MASKED", masked)
        .env("ONCEHOOK_TEST_DEAD", EVENTS.to_string())
        .env("ONCEHOOK_SCREENSHOTS", &screenshots)
        .env("ONCEHOOK_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + BROWSER_TEST_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // The destinations and this runtime keep serving while the browser works.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("{output}");
    match status {
        Some(status) => assert!(status.success(), "the browser test failed: {status}"),
        None => panic!("the browser test did not finish within {BROWSER_TEST_TIMEOUT:?}"),
    }

    // What the browser did, as the destination saw it: the dry runs sent nothing; the replay
    // sent the one event again with the same key, marked as a replay.
    let received = crm.received();
    assert_eq!(received.len(), 2 * EVENTS + 1, "one delivery replayed");
    let replayed = received.last().expect("the replayed delivery");
    assert_eq!(replayed.event_id(), ids[1]);
    assert!(replayed.header("oncehook-replay").is_some());
    assert_eq!(replayed.answered, Some(200));
    let dead = gateway
        .deliveries()
        .into_iter()
        .filter(|(_, _, state, _, _)| state == "dead")
        .count();
    assert_eq!(dead, EVENTS - 1);
    for name in ["02-overview-15m", "06-event-dead", "08-event-delivered"] {
        assert!(screenshots.join(format!("{name}.png")).exists(), "{name}");
    }
}

async fn check_static_files_and_headers(gateway: &Gateway) {
    let client = reqwest::Client::new();
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        // No token: the files hold no data.
        let response = client
            .get(format!("{}{path}", gateway.admin))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
    // The data stays behind the token.
    let response = client
        .get(format!("{}/api/v1/events", gateway.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}

async fn check_stats_series(gateway: &Gateway) {
    let (status, stats) = gateway.admin_get("/api/v1/stats?window=15m").await;
    assert_eq!(status, 200, "{stats}");
    let series = &stats["intake"]["series"];
    let points = series["counts"].as_array().expect("counts").len();
    let sum = |outcome: &str| -> u64 {
        let counts = series["by_outcome"][outcome]
            .as_array()
            .unwrap_or_else(|| panic!("a series for {outcome}: {stats}"));
        assert_eq!(counts.len(), points);
        counts.iter().filter_map(Value::as_u64).sum()
    };
    assert_eq!(sum("accepted"), EVENTS as u64);
    assert_eq!(sum("duplicate"), EVENTS as u64);
    assert_eq!(sum("invalid_signature"), 0);
    for latency in [
        &stats["intake"]["ack_latency_ms"],
        &stats["delivery"]["end_to_end_ms"],
    ] {
        let p95 = latency["p95_series"].as_array().expect("p95_series");
        assert_eq!(p95.len(), points);
        assert!(p95.iter().any(Value::is_number), "{latency}");
    }
}
