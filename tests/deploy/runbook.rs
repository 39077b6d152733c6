//! RUNBOOK.md's commands, as written, on the systemd layout of `deploy/`: the unit's config
//! (`deploy/systemd/oncehook.toml`) at `ROOT/etc/oncehook/oncehook.toml`, its secrets in
//! `ROOT/etc/oncehook/oncehook.env`, the gateway started as the unit's `ExecStart`,
//! `EnvironmentFile` and `WorkingDirectory` say, under a temporary ROOT. Every `oncehook`
//! command of the runbook (its shell blocks and its prose) then runs through `sh` after the
//! set-up lines of "The tools", with `oncehook` on PATH, the placeholders (`EVENT_ID`, `SOURCE`,
//! `THE_KEY`, `NODE`, `FILE`) filled in, and nothing else from the test's environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{BIN, free_port, post, send_json, sign, unix_now};
use crate::markdown::{ShellLine, inline_commands, shell_lines};
use crate::{read, tool_available};

const RUNBOOK: &str = "RUNBOOK.md";
const UNIT: &str = "deploy/systemd/oncehook.service";
const CONFIG: &str = "deploy/systemd/oncehook.toml";
const TOKEN: &str = "runbook-admin-token";
const STRIPE_SECRET: &str = "whsec_runbook_stripe_secret";

/// `KEY=value` settings of a unit file, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{UNIT}: no {key}="))
}

/// Host paths of the layout, moved under `root`.
fn rooted(text: &str, root: &Path) -> String {
    let root = root.to_str().expect("utf-8 path");
    text.replace("/etc/oncehook", &format!("{root}/etc/oncehook"))
        .replace("/var/lib/oncehook", &format!("{root}/var/lib/oncehook"))
        .replace(
            "/usr/local/bin/oncehook",
            &format!("{root}/usr/local/bin/oncehook"),
        )
}

/// What the runbook does not run here, and why; None for what it runs.
fn not_run(command: &str) -> Option<&'static str> {
    let program = command.split_whitespace().next().unwrap_or("");
    match program {
        "oncehook" => None,
        "journalctl" => Some("reads the systemd journal of a host running the unit"),
        "psql" => Some("needs the deployment's PostgreSQL server"),
        "curl" if command.contains("crm.example.com") => {
            Some("calls the deployment's destination, an example host")
        }
        "curl" | "df" => {
            if tool_available(program, "--version", "apt-get install curl coreutils") {
                None
            } else {
                Some("the tool is not installed")
            }
        }
        _ => Some("not a command of the runbook's tools"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_command_runs_as_written_on_the_systemd_layout() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let (intake, admin) = (free_port(), free_port());
    // The destination refuses everything, so that the dead-letter queue has something in it.
    let crm = Receiver::start().await;
    crm.set_script(|_, _| Reply::Status(400));

    // The files where the unit and its comment put them.
    std::fs::create_dir_all(root.join("etc/oncehook")).expect("etc");
    std::fs::create_dir_all(root.join("var/lib/oncehook")).expect("state directory");
    std::fs::create_dir_all(root.join("usr/local/bin")).expect("bin");
    std::os::unix::fs::symlink(BIN, root.join("usr/local/bin/oncehook")).expect("symlink");
    let config = read(CONFIG)
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{intake}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{admin}"))
        .replace("https://crm.example.com/webhooks/stripe", &crm.url);
    std::fs::write(
        root.join("etc/oncehook/oncehook.toml"),
        rooted(&config, root),
    )
    .expect("config");
    let secrets = format!("ONCEHOOK_ADMIN_TOKEN={TOKEN}\nSTRIPE_WEBHOOK_SECRET={STRIPE_SECRET}\n");
    std::fs::write(root.join("etc/oncehook/oncehook.env"), secrets).expect("env file");

    // The node, as the unit starts it.
    let unit = unit_settings(&read(UNIT));
    let exec: Vec<String> = rooted(setting(&unit, "ExecStart"), root)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let env_file = rooted(
        setting(&unit, "EnvironmentFile").trim_start_matches('-'),
        root,
    );
    let mut env: BTreeMap<String, String> = std::fs::read_to_string(&env_file)
        .expect("the unit's EnvironmentFile")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (_, value) in unit.iter().filter(|(k, _)| k == "Environment") {
        if let Some((name, value)) = value.split_once('=') {
            env.insert(name.to_owned(), value.to_owned());
        }
    }
    let log = std::fs::File::create(root.join("serve.log")).expect("log");
    let mut node = Command::new(&exec[0])
        .args(&exec[1..])
        .env_clear()
        .envs(&env)
        .current_dir(rooted(setting(&unit, "WorkingDirectory"), root))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the node");
    let admin_url = format!("http://127.0.0.1:{admin}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{admin_url}/readyz"))
        .send()
        .await
        .is_err()
    {
        if let Ok(Some(status)) = node.try_wait() {
            panic!(
                "the node exited: {status}\n{}",
                std::fs::read_to_string(root.join("serve.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the node did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two Stripe events that go dead at the refusing destination.
    let verify = format!("scheme = \"stripe\"\nsecrets = [\"{STRIPE_SECRET}\"]");
    let mut event_ids = Vec::new();
    for n in 0..2 {
        let body = serde_json::json!({"id": format!("evt_runbook_{n}"), "type": "invoice.paid"});
        let signed = sign(&verify, body.to_string().as_bytes(), "unused", unix_now());
        let reply = post(
            &client,
            &format!("http://127.0.0.1:{intake}/webhooks/stripe"),
            &signed,
            "application/json",
        )
        .await;
        assert_eq!(reply.status, 202, "{}", reply.json);
        event_ids.push(reply.json["event_id"].as_str().expect("id").to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, dead) = send_json(
            client
                .get(format!("{admin_url}/api/v1/dlq"))
                .bearer_auth(TOKEN),
        )
        .await;
        if dead["deliveries"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deliveries did not go dead: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, event) = send_json(
        client
            .get(format!("{admin_url}/api/v1/events/{}", event_ids[0]))
            .bearer_auth(TOKEN),
    )
    .await;
    let key = event["idempotency_key"].as_str().expect("key").to_owned();

    // The runbook: the set-up lines of "The tools", then each command.
    let runbook = read(RUNBOOK);
    let lines = shell_lines(&runbook);
    let mut setup = Vec::new();
    let mut commands = Vec::new();
    for line in &lines {
        if let ShellLine::Command { heading, text, .. } = line {
            let command = text.split(" # ").next().unwrap_or(text).trim().to_owned();
            if heading == "The tools" && !command.starts_with("oncehook ") {
                setup.push(rooted(&command, root));
            } else {
                commands.push(command);
            }
        }
    }
    assert!(
        setup.iter().any(|l| l.contains("ONCEHOOK_CONFIG")),
        "{RUNBOOK}: The tools should set ONCEHOOK_CONFIG for the systemd layout: {setup:?}"
    );
    commands.extend(inline_commands(&runbook, "oncehook "));
    let fill = |command: &str| {
        rooted(command, root)
            .replace("EVENT_ID", &event_ids[0])
            .replace("SOURCE", "stripe")
            .replace("THE_KEY", &key)
            .replace("NODE:8081", &format!("127.0.0.1:{admin}"))
            .replace("-c FILE", "-c \"$ONCEHOOK_CONFIG\"")
    };
    let path = format!(
        "{}:{}",
        root.join("usr/local/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut skipped = BTreeMap::new();
    let mut ran = 0;
    for command in &commands {
        if let Some(why) = not_run(command) {
            skipped.insert(command.clone(), why);
            continue;
        }
        let script = format!("{}\nexec {}", setup.join("\n"), fill(command));
        let mut shell = Command::new("sh");
        shell
            .args(["-c", &script])
            .current_dir(root)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", root)
            .stdin(Stdio::null());
        ran += 1;
        if command.contains("--follow") {
            // Runs until stopped: it must print the queue and keep running.
            let mut child = shell
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run");
            tokio::time::sleep(Duration::from_secs(3)).await;
            let running = child.try_wait().expect("wait").is_none();
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                running && stdout.contains(&event_ids[0]),
                "{command}: running {running}\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        }
        let output = shell.output().expect("run");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}\nran as:\n{script}\nexit {:?}\nstdout: {stdout}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        if command.contains("EVENT_ID") || command.contains("THE_KEY") {
            assert!(stdout.contains(&event_ids[0]), "{command}: {stdout}");
        }
    }
    let _ = node.kill();
    let _ = node.wait();
    assert!(ran >= 20, "only {ran} runbook commands ran");
    eprintln!("runbook commands not run here:");
    for (command, why) in &skipped {
        eprintln!("  {command}: {why}");
    }
}
