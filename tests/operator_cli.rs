//! The operator commands (`events`, `dlq`, `replay`, `stats`) against a running gateway.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::receiver::{Receiver, Reply};
use common::{ADMIN_TOKEN, BIN, Gateway, post, sign, unix_now};
use serde_json::{Value, json};

const VERIFY: &str = "scheme = \"github\"\nsecrets = [\"cli-secret\"]";
const EMAIL: &str = "Bea.Private@Example.org";

/// Runs `oncehook ARGS` in `dir` with `token` as ONCEHOOK_ADMIN_TOKEN (None: unset).
fn oncehook(dir: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("ONCEHOOK_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("ONCEHOOK_ADMIN_TOKEN", token);
    }
    command.output().expect("run oncehook")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_work_against_a_running_gateway() {
    let crm = Receiver::start().await;
    crm.set_script(|_, previous| {
        if previous == 0 {
            Reply::Status(400)
        } else {
            Reply::Status(200)
        }
    });
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"forms\"\n\
         verify = {{ scheme = \"github\", secrets = [\"cli-secret\"] }}\n\
         mask_fields = [\"/email\"]\nsearch_fields = {{ email = \"/email\" }}\n\
         [[destinations]]\nname = \"crm\"\nurl = \"{}\"\n\
         [[routes]]\nsource = \"forms\"\nto = [\"crm\"]\n",
        crm.url
    ));
    let client = reqwest::Client::new();
    let body = json!({"type": "lead.created", "email": EMAIL});
    let signed = sign(
        VERIFY,
        &serde_json::to_vec(&body).expect("json"),
        "d-cli",
        unix_now(),
    );
    let url = gateway.webhook_url("forms");
    let first = post(&client, &url, &signed, "application/json").await;
    assert_eq!(first.status, 202);
    let second = post(&client, &url, &signed, "application/json").await;
    assert_eq!(second.status, 200);
    let event_id = first.json["event_id"].as_str().expect("id").to_owned();
    gateway
        .wait_for_deliveries(Duration::from_secs(20), "dead", |d| {
            d.len() == 1 && d[0].2 == "dead"
        })
        .await;
    assert_eq!(crm.received().len(), 1, "one delivery for two sends");

    let dir = gateway.dir.path();
    let config = gateway.config_path.to_str().expect("path").to_owned();
    let token = Some(ADMIN_TOKEN);

    // events search, by email in any case, and events show: the email never shows.
    let found = succeeded(&oncehook(
        dir,
        token,
        &[
            "events",
            "search",
            "-c",
            &config,
            "--email",
            "bea.private@example.org",
            "--since",
            "1h",
        ],
    ));
    assert!(found.contains(&event_id), "{found}");
    assert!(found.contains("failed_terminal"), "{found}");
    let listed = succeeded(&oncehook(
        dir,
        token,
        &[
            "events", "search", "-c", &config, "--json", "--source", "forms",
        ],
    ));
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed[0]["event_id"], event_id.as_str());
    let none = succeeded(&oncehook(
        dir,
        token,
        &[
            "events",
            "search",
            "-c",
            &config,
            "--email",
            "x@example.org",
        ],
    ));
    assert!(none.contains("no events match"), "{none}");
    let shown = succeeded(&oncehook(
        dir,
        token,
        &["events", "show", "-c", &config, &event_id],
    ));
    for expected in ["payload (masked)", "crm", "dead", "400", "http_4xx", "B***"] {
        assert!(shown.contains(expected), "{expected:?} missing: {shown}");
    }

    // dlq tail
    let dlq = succeeded(&oncehook(dir, token, &["dlq", "tail", "-c", &config]));
    assert!(
        dlq.contains(&event_id) && dlq.contains("http_4xx") && dlq.contains("HTTP 400"),
        "{dlq}"
    );

    // replay: a dry run, then the real thing; each prints how many matched.
    let dry = succeeded(&oncehook(
        dir,
        token,
        &[
            "replay",
            "-c",
            &config,
            "--source",
            "forms",
            "--status",
            "dead",
            "--since",
            "1h",
            "--reason",
            "checking",
            "--dry-run",
        ],
    ));
    assert!(dry.contains("dry run: 1 deliveries matched"), "{dry}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(crm.received().len(), 1, "a dry run sends nothing");
    let real = succeeded(&oncehook(
        dir,
        token,
        &[
            "replay",
            "-c",
            &config,
            "--id",
            &event_id,
            "--reason",
            "crm fixed",
            "--yes",
            "--wait",
            "--requested-by",
            "cli-test",
        ],
    ));
    assert!(
        real.contains("1 deliveries matched and re-queued"),
        "{real}"
    );
    crm.wait_for(Duration::from_secs(20), "the replay", |r| r.len() == 2)
        .await;
    assert!(crm.received()[1].header("oncehook-replay").is_some());
    let (_, replays) = gateway.admin_get("/api/v1/replays").await;
    assert_eq!(replays["replays"][0]["requested_by"], "cli-test");
    assert_eq!(replays["replays"][0]["reason"], "crm fixed");

    // stats
    let stats = succeeded(&oncehook(
        dir,
        token,
        &["stats", "-c", &config, "--window", "15m"],
    ));
    for expected in ["accepted 1", "duplicate 1", "50.0%", "this node's", "crm"] {
        assert!(stats.contains(expected), "{expected:?} missing: {stats}");
    }

    for output in [&found, &shown, &dlq, &dry, &real, &stats] {
        assert!(
            !output.to_ascii_lowercase().contains("bea.private"),
            "{output}"
        );
    }

    // --url works without any config file (this directory has none).
    let elsewhere = tempfile::tempdir().expect("dir");
    let by_url = succeeded(&oncehook(
        elsewhere.path(),
        token,
        &["events", "search", "--url", &gateway.admin],
    ));
    assert!(by_url.contains(&event_id), "{by_url}");
    let lost = oncehook(elsewhere.path(), token, &["events", "search"]);
    assert_eq!(lost.status.code(), Some(1));
    assert!(stderr(&lost).contains("oncehook.toml"), "{}", stderr(&lost));
}

#[test]
fn a_wrong_or_missing_token_is_a_clear_error() {
    let gateway = Gateway::start(
        "[[sources]]\nname = \"forms\"\nverify = { scheme = \"github\", secrets = [\"s\"] }\n",
    );
    let dir = gateway.dir.path();
    let config = gateway.config_path.to_str().expect("path").to_owned();
    for args in [
        vec!["events", "search", "-c", &config],
        vec![
            "events",
            "show",
            "-c",
            &config,
            "0193e4b2-0000-7000-8000-000000000000",
        ],
        vec!["dlq", "tail", "-c", &config],
        vec![
            "replay", "-c", &config, "--status", "dead", "--reason", "x", "--yes",
        ],
        vec!["stats", "-c", &config],
    ] {
        let refused = oncehook(dir, Some("not-the-token"), &args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&refused).contains("the admin API refused the token (401)"),
            "{args:?}: {}",
            stderr(&refused)
        );
        assert!(stdout(&refused).is_empty(), "{args:?}");
    }
    let unset = oncehook(dir, None, &["events", "search", "-c", &config]);
    assert_eq!(unset.status.code(), Some(1));
    assert!(
        stderr(&unset).contains("ONCEHOOK_ADMIN_TOKEN"),
        "{}",
        stderr(&unset)
    );
    let unknown = oncehook(
        dir,
        Some(ADMIN_TOKEN),
        &[
            "events",
            "show",
            "-c",
            &config,
            "0193e4b2-0000-7000-8000-000000000000",
        ],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("404"), "{}", stderr(&unknown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_export_and_import_move_events_between_gateways() {
    let config = "[[sources]]\nname = \"forms\"\n\
         verify = { scheme = \"github\", secrets = [\"cli-secret\"] }\n";
    let first = Gateway::start(config);
    let second = Gateway::start(config);
    let client = reqwest::Client::new();
    for n in 0..2 {
        let body = serde_json::to_vec(&json!({"n": n})).expect("json");
        let signed = sign(VERIFY, &body, &format!("x-{n}"), unix_now());
        let reply = post(
            &client,
            &first.webhook_url("forms"),
            &signed,
            "application/json",
        )
        .await;
        assert_eq!(reply.status, 202);
    }
    let dir = first.dir.path();
    let file = dir.join("events.jsonl");
    let file_arg = file.to_str().expect("utf-8 path");
    let exported = oncehook(
        dir,
        Some(ADMIN_TOKEN),
        &[
            "events",
            "export",
            "--url",
            &first.admin,
            "--source",
            "forms",
            "--output",
            file_arg,
        ],
    );
    succeeded(&exported);
    assert!(
        stderr(&exported).contains("2 events exported"),
        "{}",
        stderr(&exported)
    );
    let lines = std::fs::read_to_string(&file).expect("export file");
    assert_eq!(lines.lines().count(), 2, "{lines}");
    // Without --output the lines go to stdout.
    let to_stdout = oncehook(
        dir,
        Some(ADMIN_TOKEN),
        &["events", "export", "--url", &first.admin],
    );
    assert_eq!(succeeded(&to_stdout).lines().count(), 2);

    let import = |args: &[&str]| {
        let mut all = vec![
            "events",
            "import",
            "--url",
            second.admin.as_str(),
            "--file",
            file_arg,
        ];
        all.extend_from_slice(args);
        oncehook(dir, Some(ADMIN_TOKEN), &all)
    };
    assert!(succeeded(&import(&[])).contains("accepted 2, duplicates 0, rejected 0"));
    let again: Value = serde_json::from_str(&succeeded(&import(&["--json"]))).expect("json");
    assert_eq!(
        again,
        json!({"accepted": 0, "duplicates": 2, "rejected": []})
    );
    assert_eq!(second.event_count(), 2);
    // A bad line fails the command and names the line.
    std::fs::write(&file, format!("{lines}not json\n")).expect("write");
    let bad = import(&[]);
    assert!(!bad.status.success());
    assert!(stdout(&bad).contains("line 3:"), "{}", stdout(&bad));
}
