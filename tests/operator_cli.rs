//! The operator commands (`events`, `dlq`, `replay`, `stats`) against a running gateway.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::receiver::{Receiver, Reply};
use common::{
    ADMIN_TOKEN, BIN, Gateway, GatewayOptions, post, run_into_a_closed_pipe, sign, unix_now,
};
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
    assert_eq!(listed["events"][0]["event_id"], event_id.as_str());
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
    assert!(dry.contains("dry run: 1 delivery matched"), "{dry}");
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
    assert!(real.contains("1 delivery matched and re-queued"), "{real}");
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
    // Without the variable the token comes from the config; without either, the error says
    // what to set.
    succeeded(&oncehook(dir, None, &["events", "search", "-c", &config]));
    let elsewhere = tempfile::tempdir().expect("a directory without a config");
    let unset = oncehook(
        elsewhere.path(),
        None,
        &["events", "search", "--url", &gateway.admin],
    );
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

/// A gateway whose `crm` destination answers every `forms` event with `reply`, and `count`
/// events sent to it (each delivered once, or dead at once on a 4xx).
async fn gateway_with_events(
    reply: impl Fn(&common::receiver::Received) -> Reply + Send + Sync + 'static,
    bodies: &[Value],
    options: GatewayOptions,
) -> (Gateway, Receiver, Vec<String>) {
    let crm = Receiver::start().await;
    crm.set_script(move |request, _| reply(request));
    let gateway = Gateway::start_with(
        &format!(
            "[[sources]]\nname = \"forms\"\n\
             verify = {{ scheme = \"github\", secrets = [\"cli-secret\"] }}\n\
             [[destinations]]\nname = \"crm\"\nurl = \"{}\"\n\
             [[routes]]\nsource = \"forms\"\nto = [\"crm\"]\n",
            crm.url
        ),
        options,
    );
    let client = reqwest::Client::new();
    let url = gateway.webhook_url("forms");
    let mut ids = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        let signed = sign(
            VERIFY,
            &serde_json::to_vec(body).expect("json"),
            &format!("d-{n}"),
            unix_now(),
        );
        let reply = post(&client, &url, &signed, "application/json").await;
        assert_eq!(reply.status, 202, "{}", reply.json);
        ids.push(reply.json["event_id"].as_str().expect("id").to_owned());
    }
    (gateway, crm, ids)
}

fn leads(count: usize) -> Vec<Value> {
    (0..count)
        .map(|n| json!({"type": "lead.created", "n": n}))
        .collect()
}

fn config_of(gateway: &Gateway) -> String {
    gateway.config_path.to_str().expect("path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_more_than_100_is_refused_without_yes_when_nobody_can_be_asked() {
    let (gateway, crm, _) = gateway_with_events(
        |_| Reply::Status(400),
        &leads(101),
        GatewayOptions::default(),
    )
    .await;
    gateway
        .wait_for_deliveries(Duration::from_secs(30), "101 dead", |d| {
            d.len() == 101 && d.iter().all(|d| d.2 == "dead")
        })
        .await;
    let config = config_of(&gateway);
    let dir = gateway.dir.path();
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "-c",
            &config,
            "--source",
            "forms",
            "--status",
            "dead",
            "--reason",
            "crm is back",
        ];
        args.extend_from_slice(extra);
        // `Command::output` gives the child a stdin that is not a terminal (cron, ssh host cmd).
        oncehook(dir, None, &args)
    };

    let refused = replay(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("101 deliveries") && stderr(&refused).contains("--yes"),
        "{}",
        stderr(&refused)
    );
    assert!(stdout(&refused).is_empty(), "{}", stdout(&refused));
    let (_, replays) = gateway.admin_get("/api/v1/replays").await;
    assert_eq!(replays["replays"], json!([]), "nothing was replayed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(crm.received().len(), 101, "nothing was sent again");

    // A dry run needs no confirmation.
    let dry = succeeded(&replay(&["--dry-run"]));
    assert!(dry.contains("dry run: 101 deliveries matched"), "{dry}");

    // With --yes it goes ahead; --wait then exits 3, since every replayed delivery ends dead.
    let waited = replay(&["--yes", "--wait"]);
    assert!(
        stdout(&waited).contains("101 deliveries matched and re-queued"),
        "{}",
        stdout(&waited)
    );
    assert_eq!(waited.status.code(), Some(3), "{}", stderr(&waited));
    assert!(
        stderr(&waited).contains("101 deliveries ended dead"),
        "{}",
        stderr(&waited)
    );
    assert_eq!(crm.received().len(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_piped_into_a_closed_reader_exit_quietly() {
    let (gateway, _crm, ids) =
        gateway_with_events(|_| Reply::Status(400), &leads(3), GatewayOptions::default()).await;
    gateway
        .wait_for_deliveries(Duration::from_secs(20), "dead", |d| {
            d.len() == 3 && d.iter().all(|d| d.2 == "dead")
        })
        .await;
    let config = config_of(&gateway);
    let env = [("ONCEHOOK_ADMIN_TOKEN", ADMIN_TOKEN)];
    for args in [
        vec!["events", "search", "-c", &config],
        vec!["events", "search", "-c", &config, "--json"],
        vec!["events", "show", "-c", &config, &ids[0]],
        vec!["dlq", "tail", "-c", &config],
        vec!["dlq", "tail", "-c", &config, "--json"],
        vec!["dlq", "tail", "-c", &config, "--json", "--follow"],
        vec!["dlq", "tail", "-c", &config, "--follow"],
        vec![
            "replay",
            "-c",
            &config,
            "--source",
            "forms",
            "--status",
            "dead",
            "--reason",
            "x",
            "--dry-run",
        ],
        vec!["stats", "-c", &config],
        vec!["send", "-c", &config, "--source", "forms", "--times", "3"],
    ] {
        let output = run_into_a_closed_pipe(&args, &env);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).is_empty(), "{args:?}: {}", stderr(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_exactly_what_the_api_answered() {
    let (gateway, _crm, ids) =
        gateway_with_events(|_| Reply::Status(400), &leads(2), GatewayOptions::default()).await;
    gateway
        .wait_for_deliveries(Duration::from_secs(20), "dead", |d| {
            d.len() == 2 && d.iter().all(|d| d.2 == "dead")
        })
        .await;
    let config = config_of(&gateway);
    let dir = gateway.dir.path();
    let api = |path: String| {
        let request = reqwest::Client::new()
            .get(format!("{}{path}", gateway.admin))
            .bearer_auth(ADMIN_TOKEN);
        async move {
            request
                .send()
                .await
                .expect("api")
                .text()
                .await
                .expect("text")
        }
    };
    for (args, path) in [
        (
            vec![
                "events", "search", "-c", &config, "--source", "forms", "--json",
            ],
            "/api/v1/events?source=forms&limit=20".to_owned(),
        ),
        (
            vec!["events", "show", "-c", &config, &ids[0], "--json"],
            format!("/api/v1/events/{}", ids[0]),
        ),
        (
            vec!["dlq", "tail", "-c", &config, "--json"],
            "/api/v1/dlq?limit=20".to_owned(),
        ),
    ] {
        let printed = succeeded(&oncehook(dir, None, &args));
        assert_eq!(printed.trim_end(), api(path).await, "{args:?}");
    }
    let page: Value = serde_json::from_str(&succeeded(&oncehook(
        dir,
        None,
        &["events", "search", "-c", &config, "--json", "--limit", "1"],
    )))
    .expect("json");
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let second: Value = serde_json::from_str(&succeeded(&oncehook(
        dir,
        None,
        &[
            "events", "search", "-c", &config, "--json", "--limit", "1", "--cursor", cursor,
        ],
    )))
    .expect("json");
    assert_eq!(second["events"][0]["event_id"], ids[0].as_str());
    let stats: Value = serde_json::from_str(&succeeded(&oncehook(
        dir,
        None,
        &["stats", "-c", &config, "--json"],
    )))
    .expect("json");
    let (_, api_stats) = gateway.admin_get("/api/v1/stats").await;
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&stats), keys(&api_stats));

    // --follow: one API object per line, each an item of the API's `deliveries`.
    let mut follow = Command::new(BIN)
        .args(["dlq", "tail", "-c", &config, "--json", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("follow");
    let reader = std::io::BufReader::new(follow.stdout.take().expect("stdout"));
    let lines: Vec<Value> = std::io::BufRead::lines(reader)
        .take(2)
        .map(|l| serde_json::from_str(&l.expect("line")).expect("a JSON object per line"))
        .collect();
    let _ = follow.kill();
    let _ = follow.wait();
    let (_, dlq) = gateway.admin_get("/api/v1/dlq").await;
    // Oldest first, like tail -f.
    assert_eq!(lines[0], dlq["deliveries"][1]);
    assert_eq!(lines[1], dlq["deliveries"][0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_show_the_end_of_errors_and_the_next_attempt() {
    let cause = "the useful cause is at the end";
    let long_body = json!({"type": "lead.created", "padding": "x".repeat(300), "why": cause});
    let bodies = [long_body, json!({"type": "retry-me"})];
    let (gateway, _crm, ids) = gateway_with_events(
        |request| {
            if request.json()["type"] == "retry-me" {
                Reply::StatusRetryAfter(503, 3600)
            } else {
                // An error page that quotes the request: its end is the body's end.
                Reply::Echo(400)
            }
        },
        &bodies,
        GatewayOptions::default(),
    )
    .await;
    gateway
        .wait_for_deliveries(Duration::from_secs(20), "dead and retrying", |d| {
            d.len() == 2 && d[0].2 == "dead" && d[1].2 == "retrying"
        })
        .await;
    let config = config_of(&gateway);
    let dir = gateway.dir.path();
    let dlq = succeeded(&oncehook(dir, None, &["dlq", "tail", "-c", &config]));
    let row = dlq
        .lines()
        .find(|l| l.contains(&ids[0]))
        .expect("the dead row");
    assert!(row.contains("HTTP 400"), "{dlq}");
    assert!(row.contains(cause), "the end of the error is cut:\n{dlq}");
    let shown = succeeded(&oncehook(
        dir,
        None,
        &["events", "show", "-c", &config, &ids[0]],
    ));
    assert!(shown.contains(cause), "{shown}");
    let retrying = succeeded(&oncehook(
        dir,
        None,
        &["events", "show", "-c", &config, &ids[1]],
    ));
    let line = retrying
        .lines()
        .find(|l| l.contains("retrying"))
        .expect("the delivery line");
    assert!(line.contains("next attempt 20"), "{retrying}");
    assert!(
        line.contains("(in 59m") || line.contains("(in 1h"),
        "{retrying}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_find_the_config_and_the_token_without_being_told() {
    let (gateway, _crm, ids) =
        gateway_with_events(|_| Reply::Status(200), &leads(1), GatewayOptions::default()).await;
    let elsewhere = tempfile::tempdir().expect("dir");
    // ONCEHOOK_CONFIG instead of -c, and the token from the config's admin.token.
    let output = Command::new(BIN)
        .args(["events", "search"])
        .current_dir(elsewhere.path())
        .env_remove("ONCEHOOK_ADMIN_TOKEN")
        .env("ONCEHOOK_CONFIG", &gateway.config_path)
        .output()
        .expect("run");
    assert!(succeeded(&output).contains(&ids[0]));

    // A token the config reads from a variable this shell lacks: the error names it. Other
    // keys' variables are not needed by the admin commands.
    let with_variables = std::fs::read_to_string(&gateway.config_path)
        .expect("config")
        .replace(
            &format!("token = \"{ADMIN_TOKEN}\""),
            "token = \"${ONCEHOOK_TEST_TOKEN}\"",
        )
        .replace("cli-secret", "${ONCEHOOK_TEST_UNSET_SECRET}");
    let path = elsewhere.path().join("oncehook.toml");
    std::fs::write(&path, with_variables).expect("write");
    let path = path.to_str().expect("path");
    let missing = oncehook(elsewhere.path(), None, &["stats", "-c", path]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("ONCEHOOK_TEST_TOKEN"),
        "{}",
        stderr(&missing)
    );
    let output = Command::new(BIN)
        .args(["stats", "-c", path])
        .env_remove("ONCEHOOK_ADMIN_TOKEN")
        .env("ONCEHOOK_TEST_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run");
    assert!(succeeded(&output).contains("intake"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_log_lines_name_the_delivery_key_the_destination_got() {
    let options = GatewayOptions {
        env: vec![("ONCEHOOK_LOG".into(), "info".into())],
        ..GatewayOptions::default()
    };
    let (gateway, crm, ids) = gateway_with_events(|_| Reply::Status(200), &leads(1), options).await;
    crm.wait_for(Duration::from_secs(20), "the delivery", |r| r.len() == 1)
        .await;
    let key = crm.received()[0].idempotency_key().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = gateway.logs().into_iter().find_map(|line| {
            let json: Value = serde_json::from_str(&line).ok()?;
            let fields = json.get("fields")?.clone();
            (fields["message"] == "delivery delivered").then_some(fields)
        });
        if let Some(fields) = found {
            break fields;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["delivery_key"], key.as_str(), "{line}");
    assert_eq!(line["event_id"], ids[0].as_str(), "{line}");
    assert!(line.get("idempotency_key").is_none(), "{line}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_listed_paused_and_resumed_from_the_command_line() {
    let crm = Receiver::start().await;
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"forms\"\n\
         verify = {{ scheme = \"github\", secrets = [\"cli-secret\"] }}\n\
         [[destinations]]\nname = \"crm\"\nurl = \"{}\"\n\
         rate_limit = {{ per_second = 50, burst = 10 }}\n\
         [[routes]]\nsource = \"forms\"\nto = [\"crm\"]\n",
        crm.url
    ));
    let dir = gateway.dir.path();
    let config = gateway.config_path.to_str().expect("path").to_owned();
    let token = Some(ADMIN_TOKEN);

    let paused = succeeded(&oncehook(
        dir,
        token,
        &[
            "destinations",
            "pause",
            "crm",
            "-c",
            &config,
            "--reason",
            "CRM deploy, CHG-42",
            "--requested-by",
            "ann",
        ],
    ));
    assert!(paused.contains("crm: paused"), "{paused}");
    // Sent twice, held once.
    let client = reqwest::Client::new();
    let signed = sign(VERIFY, br#"{"n":1}"#, "d-held", unix_now());
    let url = gateway.webhook_url("forms");
    assert_eq!(
        post(&client, &url, &signed, "application/json")
            .await
            .status,
        202
    );
    assert_eq!(
        post(&client, &url, &signed, "application/json")
            .await
            .status,
        200
    );

    let table = succeeded(&oncehook(dir, token, &["destinations", "-c", &config]));
    assert!(table.contains("DESTINATION"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("crm"))
        .expect("crm row");
    for expected in [
        "paused",
        "50/s burst 10",
        "paused by ann: CRM deploy, CHG-42",
    ] {
        assert!(row.contains(expected), "{expected:?} in {row}");
    }
    let json = succeeded(&oncehook(
        dir,
        token,
        &["destinations", "list", "-c", &config, "--json"],
    ));
    let json: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["destinations"][0]["queue_depth"], 1);
    assert!(crm.received().is_empty());

    let unknown = oncehook(
        dir,
        token,
        &[
            "destinations",
            "pause",
            "nope",
            "-c",
            &config,
            "--reason",
            "x",
        ],
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no destination named \"nope\""),
        "{}",
        stderr(&unknown)
    );

    let resumed = succeeded(&oncehook(
        dir,
        token,
        &["destinations", "resume", "crm", "-c", &config],
    ));
    assert!(resumed.contains("crm: active"), "{resumed}");
    crm.wait_for(Duration::from_secs(20), "the held delivery", |r| {
        r.len() == 1
    })
    .await;
}
