//! The command line against a running gateway: `send` and `check`.

mod common;

use std::process::Command;

use common::{BIN, Gateway, run_into_a_closed_pipe};

#[test]
fn send_three_times_yields_one_accept_and_two_duplicates() {
    let gateway = Gateway::start(
        "[[sources]]\nname = \"stripe\"\nverify = { scheme = \"stripe\", secrets = [\"whsec_test_secret\"] }\n",
    );
    let output = Command::new(BIN)
        .args(["send", "--source", "stripe", "--times", "3", "-c"])
        .arg(&gateway.config_path)
        .output()
        .expect("run send");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let replies: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line.splitn(3, ' ').nth(2).expect("body")).expect("json"))
        .collect();
    assert!(lines[0].starts_with("1: 202 "), "{stdout}");
    assert!(lines[1].starts_with("2: 200 "), "{stdout}");
    assert!(lines[2].starts_with("3: 200 "), "{stdout}");
    assert_eq!(replies[1]["event_id"], replies[0]["event_id"]);
    assert_eq!(replies[2]["event_id"], replies[0]["event_id"]);
    assert_eq!(gateway.event_count(), 1);
}

#[test]
fn send_with_a_file_and_a_composite_key() {
    let gateway = Gateway::start(
        "[[sources]]\nname = \"forms\"\n\
         verify = { scheme = \"hmac\", header = \"X-Signature\", secrets = [\"s\"] }\n\
         key = [\"json:/submission_id + email:/email\"]\n",
    );
    let payload = gateway.dir.path().join("lead.json");
    std::fs::write(
        &payload,
        r#"{"submission_id": "42", "email": "a@example.com"}"#,
    )
    .expect("payload");
    for expected in ["1: 202 ", "1: 200 "] {
        let output = Command::new(BIN)
            .args(["send", "--source", "forms", "--file"])
            .arg(&payload)
            .arg("-c")
            .arg(&gateway.config_path)
            .output()
            .expect("run send");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with(expected),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(gateway.event_count(), 1);
}

fn check(config: &str) -> (bool, String, String) {
    check_with_env(config, &[])
}

fn check_with_env(config: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, config).expect("write");
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("run check");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_reports_the_file_and_the_key_of_an_error() {
    let cases = [
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"rot13\", secrets = [\"x\"] }\n",
            "sources[0].verify.scheme",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
             [[routes]]\nsource = \"a\"\nto = [\"nowhere\"]\n",
            "routes[0].to[0]",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\nkey = [\"json:id\"]\n",
            "sources[0].key",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"hmac\", secrets = [\"x\"] }\n",
            "sources[0].verify.header",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"${ONCEHOOK_TEST_UNSET_VAR}\"] }\n",
            "sources[0].verify.secrets[0]",
        ),
        ("[server]\nlisten = \"not an address\"\n", "server.listen"),
    ];
    for (config, key) in cases {
        let (ok, _, stderr) = check(config);
        assert!(!ok, "{key}: check passed a broken config");
        assert!(
            stderr.contains("broken.toml"),
            "{key}: the file is not named: {stderr}"
        );
        assert!(
            stderr.contains(key),
            "{key}: the key is not named: {stderr}"
        );
    }
}

#[test]
fn check_prints_sources_destinations_and_routes() {
    let (ok, stdout, stderr) = check(
        "[[sources]]\nname = \"gh\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
         [[destinations]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9000/leads\"\n\
         [[routes]]\nsource = \"gh\"\nto = [\"crm\"]\n",
    );
    assert!(ok, "{stderr}");
    for expected in [
        "gh",
        "github",
        "crm",
        "http://127.0.0.1:9000/leads",
        "gh -> crm",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in {stdout}"
        );
    }
}

#[test]
fn check_redacts_credentials_wherever_it_prints_the_config() {
    const SECRETS: [&str; 5] = [
        "pa55word",
        "tok123",
        "dbpass",
        "header-value-in-the-file",
        "env-secret-9f2c",
    ];
    let config = "[store]\nurl = \"postgres://app:dbpass@127.0.0.1/db\"\n\
         [[sources]]\nname = \"gh\"\nverify = { scheme = \"github\", secrets = [\"${ONCEHOOK_TEST_GH_SECRET}\"] }\n\
         [[destinations]]\nname = \"crm\"\n\
         url = \"https://user:pa55word@crm.example/hook?token=tok123&x=1\"\n\
         headers = { \"X-Api-Key\" = \"header-value-in-the-file\", \"X-Env\" = \"${ONCEHOOK_TEST_GH_SECRET}\" }\n\
         [[routes]]\nsource = \"gh\"\nto = [\"crm\"]\n\
         when = { pointer = \"/type\", in = [\"${ONCEHOOK_TEST_GH_SECRET}\"] }\n";
    let env = [("ONCEHOOK_TEST_GH_SECRET", "env-secret-9f2c")];
    let (ok, stdout, stderr) = check_with_env(config, &env);
    assert!(ok, "{stderr}");
    for secret in SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed:\n{stdout}{stderr}"
        );
    }
    for expected in [
        "x=1",
        "crm.example/hook",
        "X-Api-Key",
        "127.0.0.1/db",
        "gh -> crm",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in {stdout}"
        );
    }

    // The same config broken further down: the error is redacted too.
    let broken = format!(
        "{config}[[destinations]]\nname = \"bad\"\nurl = \"ftp://u:pa55word@h/?sig=tok123&key=${{ONCEHOOK_TEST_GH_SECRET}}\"\n"
    );
    let (ok, stdout, stderr) = check_with_env(&broken, &env);
    assert!(!ok, "an ftp:// destination passed");
    assert!(stderr.contains("destinations[1].url"), "{stderr}");
    for secret in SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed:\n{stdout}{stderr}"
        );
    }
}

#[test]
fn check_refuses_a_tolerance_not_shorter_than_dedupe_ttl() {
    for (verify_extra, source_extra) in
        [(", tolerance = \"30d\"", ""), ("", "dedupe_ttl = \"2s\"\n")]
    {
        let (ok, _, stderr) = check(&format!(
            "[[sources]]\nname = \"stripe\"\n\
             verify = {{ scheme = \"stripe\", secrets = [\"whsec_x\"]{verify_extra} }}\n{source_extra}"
        ));
        assert!(!ok, "{verify_extra}{source_extra}: check passed");
        assert!(
            stderr.contains(
                "broken.toml: sources[0].verify.tolerance: must be shorter than dedupe_ttl"
            ),
            "{stderr}"
        );
    }
    let (ok, _, stderr) = check(
        "[[sources]]\nname = \"stripe\"\n\
         verify = { scheme = \"stripe\", secrets = [\"whsec_x\"], tolerance = \"1s\" }\n\
         dedupe_ttl = \"2s\"\n",
    );
    assert!(ok, "{stderr}");
}

#[test]
fn check_warns_about_a_header_key_the_signature_does_not_cover_without_a_replay_guard() {
    let github = "[[sources]]\nname = \"gh\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
                  key = [\"header:X-GitHub-Delivery\"]\n";
    let warning_lines = |output: &str| -> Vec<String> {
        output
            .lines()
            .filter(|line| line.starts_with("warning:"))
            .map(str::to_owned)
            .collect()
    };

    let (ok, stdout, stderr) = check(&format!("{github}replay_guard = false\n"));
    assert!(ok, "a warning is not an error: {stderr}");
    let warnings = [warning_lines(&stdout), warning_lines(&stderr)].concat();
    assert_eq!(warnings.len(), 1, "{stdout}{stderr}");
    assert!(warnings[0].contains("\"gh\""), "{warnings:?}");

    // The default: github has the replay guard.
    let (ok, stdout, stderr) = check(github);
    assert!(ok, "{stderr}");
    assert!(
        warning_lines(&stdout).is_empty() && warning_lines(&stderr).is_empty(),
        "{stdout}{stderr}"
    );
}

#[test]
fn the_quickstart_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.toml");
    let output = Command::new(BIN)
        .args(["check", "-c", path])
        .output()
        .expect("run check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn listen_prints_deliveries_and_checks_their_signature() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let port = common::free_port();
    let mut listen = Command::new(BIN)
        .args(["listen", "--port", &port.to_string(), "--secret", secret])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run listen");
    let stdout = listen.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"demo\"\nverify = {{ scheme = \"stripe\", secrets = [\"whsec_x\"] }}\n\
         [[destinations]]\nname = \"local\"\nurl = \"http://127.0.0.1:{port}/webhooks\"\nsigning_secret = \"{secret}\"\n\
         [[routes]]\nsource = \"demo\"\nto = [\"local\"]\n"
    ));
    let output = Command::new(BIN)
        .args(["send", "--source", "demo", "--times", "2", "-c"])
        .arg(&gateway.config_path)
        .output()
        .expect("run send");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reply: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .next()
            .and_then(|l| l.splitn(3, ' ').nth(2))
            .expect("reply"),
    )
    .expect("json");
    let event_id = reply["event_id"].as_str().expect("event_id").to_owned();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
        if seen.iter().any(|l| l.contains(&event_id)) {
            break;
        }
    }
    let _ = listen.kill();
    let _ = listen.wait();
    let delivery = seen
        .iter()
        .find(|l| l.contains(&event_id))
        .unwrap_or_else(|| panic!("no delivery printed: {seen:?}"));
    assert!(delivery.contains("signature ok"), "{delivery}");
    assert!(delivery.contains("source demo"), "{delivery}");
    assert_eq!(
        seen.iter().filter(|l| l.contains("event ")).count(),
        1,
        "one delivery for two sends: {seen:?}"
    );
}

/// The subcommands a `--help` lists under "Commands:" (clap's own `help` left out).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_shows_an_example_in_its_help() {
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut checked = 0;
    while let Some(path) = pending.pop() {
        let output = Command::new(BIN)
            .args(&path)
            .arg("--help")
            .output()
            .expect("run --help");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "oncehook {path:?} --help failed");
        let examples: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.starts_with("Example"))
            .filter(|l| l.starts_with("  oncehook "))
            .collect();
        assert!(
            !examples.is_empty(),
            "`oncehook {} --help` shows no example line:\n{help}",
            path.join(" ")
        );
        for name in listed_subcommands(&help) {
            let mut sub = path.clone();
            sub.push(name);
            pending.push(sub);
        }
        checked += 1;
    }
    // oncehook itself, its eleven commands and the three nested ones (events search and show,
    // dlq tail).
    assert!(checked >= 13, "only {checked} helps checked");
}

/// A source keyed by a fingerprint of the body: it takes anything that is not JSON as bytes.
const FINGERPRINT_SOURCE: &str = "[[sources]]\nname = \"forms\"\n\
     verify = { scheme = \"hmac\", header = \"X-Signature\", secrets = [\"s\"] }\n\
     key = [\"fingerprint\"]\n";

fn send_file(gateway: &Gateway, file: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["send", "--source", "forms", "--file"])
        .arg(file)
        .arg("-c")
        .arg(&gateway.config_path)
        .output()
        .expect("run send")
}

#[test]
fn send_sends_a_json_file_as_json_and_warns_when_it_does_not_parse() {
    let gateway = Gateway::start(FINGERPRINT_SOURCE);
    let bad = gateway.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"submission_id\": \"42\",").expect("file");
    let output = send_file(&gateway, &bad);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("bad.json is not valid JSON"),
        "{stderr}"
    );
    // Sent as JSON, the gateway refuses it rather than storing it as bytes.
    assert!(stdout.starts_with("1: 400 "), "{stdout}{stderr}");
    assert!(!output.status.success());
    assert_eq!(gateway.event_count(), 0);

    // The same bytes under another name still go as bytes, and are accepted as such.
    let bytes = gateway.dir.path().join("bad.txt");
    std::fs::copy(&bad, &bytes).expect("copy");
    let output = send_file(&gateway, &bytes);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("1: 202 "), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).is_empty());
}

#[test]
fn send_prints_the_gateways_answer_to_a_body_over_max_body() {
    let gateway = Gateway::start(FINGERPRINT_SOURCE);
    let big = gateway.dir.path().join("big.bin");
    std::fs::write(&big, vec![b'a'; 10 * 1024 * 1024]).expect("file");
    for _ in 0..3 {
        let output = send_file(&gateway, &big);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stdout.starts_with("1: 413 "), "{stdout}{stderr}");
        assert!(stdout.contains("max_body"), "{stdout}");
        assert!(
            !stderr.to_ascii_lowercase().contains("broken pipe"),
            "{stderr}"
        );
        assert_eq!(output.status.code(), Some(1));
    }
}

#[test]
fn config_errors_for_durations_and_sizes_say_what_is_accepted() {
    let source = "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n";
    for (extra, key, accepted) in [
        (
            "dedupe_ttl = \"forever\"\n",
            "sources[0].dedupe_ttl",
            "\"72h\"",
        ),
        ("dedupe_ttl = 72\n", "sources[0].dedupe_ttl", "\"500ms\""),
        ("max_body = \"lots\"\n", "sources[0].max_body", "\"1MiB\""),
        ("max_body = true\n", "sources[0].max_body", "\"1MiB\""),
    ] {
        let (ok, _, stderr) = check(&format!("{source}{extra}"));
        assert!(!ok, "{extra}");
        assert!(stderr.contains(key), "{extra}: {stderr}");
        assert!(
            stderr.contains(accepted),
            "{extra}: no example of what works: {stderr}"
        );
    }
    let (ok, _, stderr) = check("[server]\nshutdown_grace = \"10 seconds please\"\n");
    assert!(!ok);
    assert!(stderr.contains("\"10s\""), "{stderr}");
}

#[test]
fn the_config_path_comes_from_oncehook_config_when_c_is_not_given() {
    let gateway = Gateway::start(FINGERPRINT_SOURCE);
    let elsewhere = tempfile::tempdir().expect("dir");
    for args in [vec!["check"], vec!["send", "--source", "forms"]] {
        let output = Command::new(BIN)
            .args(&args)
            .current_dir(elsewhere.path())
            .env("ONCEHOOK_CONFIG", &gateway.config_path)
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // -c wins over the variable.
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&gateway.config_path)
        .current_dir(elsewhere.path())
        .env("ONCEHOOK_CONFIG", "/nonexistent/oncehook.toml")
        .output()
        .expect("run");
    assert!(output.status.success());
}

#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.toml");
    let output = run_into_a_closed_pipe(&["check", "-c", path], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Runs `oncehook send` with `args` against `config`; returns success, stdout and stderr.
fn send(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .arg("send")
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("run send");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A P-256 key pair made for the tests (`scripts/gen_verify_vectors.py`, "primary").
const SENDGRID_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFnDVIpcVLQTmac/bGdwpkSeuKbLrZy146WFAdcDc+qKbnBuCMhUB7/I1PogkUC0wj9uB6VqJxGoHW8pKjB18vg==";
const SENDGRID_PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNNL2PZk5gi1ZwhtX7tdYfInfO5YWPrxVJXPwaEhluxOhRANCAAQWcNUilxUtBOZpz9sZ3CmRJ64psutnLXjpYUB1wNz6opucG4IyFQHv8jU+iCRQLTCP24HpWonEagdbykqMHXy+";

#[test]
fn send_signs_for_twilio_meta_zoom_and_sendgrid() {
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"twilio\"\n\
         verify = {{ scheme = \"twilio\", secrets = [\"twilio-auth-token\"], url = \"https://hooks.example.com/webhooks/twilio\" }}\n\
         [[sources]]\nname = \"meta\"\n\
         verify = {{ scheme = \"meta\", secrets = [\"app-secret\"], verify_token = \"vt\" }}\n\
         [[sources]]\nname = \"zoom\"\n\
         verify = {{ scheme = \"zoom\", secrets = [\"zoom-secret-token\"] }}\n\
         [[sources]]\nname = \"sendgrid\"\n\
         verify = {{ scheme = \"sendgrid\", public_key = \"{SENDGRID_PUBLIC_KEY}\", private_key = \"{SENDGRID_PRIVATE_KEY}\" }}\n"
    ));
    for source in ["twilio", "meta", "zoom", "sendgrid"] {
        let (ok, stdout, stderr) =
            send(&gateway.config_path, &["--source", source, "--times", "2"]);
        assert!(ok, "{source}: {stdout}{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{source}: {stdout}");
        assert!(lines[0].starts_with("1: 202 "), "{source}: {stdout}");
        assert!(lines[1].starts_with("2: 200 "), "{source}: {stdout}");
    }
    assert_eq!(gateway.event_count(), 4);
    // Twilio's sample is a form, keyed by the idempotency token its retries repeat.
    let (content_type, key): (String, String) = gateway
        .db()
        .query_row(
            "SELECT content_type, idempotency_key FROM events WHERE source = 'twilio'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the twilio event");
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert!(key.starts_with("msg_"), "{key}");
}

#[test]
fn send_explains_that_sendgrid_needs_a_test_private_key() {
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"sendgrid\"\nverify = {{ scheme = \"sendgrid\", public_key = \"{SENDGRID_PUBLIC_KEY}\" }}\n"
    ));
    let (ok, stdout, stderr) = send(&gateway.config_path, &["--source", "sendgrid"]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("verify.private_key"), "{stderr}");
    assert_eq!(gateway.event_count(), 0);
}

/// A stand-in for a gateway that answers handshakes (`Verifier::handshake`, as intake calls it)
/// and, with `wrong`, one that stores them as events instead. Serves `connections` requests.
fn handshake_answerer(
    verify: &str,
    wrong: bool,
    connections: usize,
) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Read, Write};

    #[derive(serde::Deserialize)]
    struct Table {
        verify: oncehook::verify::VerifyConfig,
    }
    let table: Table = toml::from_str(&format!("verify = {verify}")).expect("verify table");
    let verifier = oncehook::verify::Verifier::from_config(&table.verify).expect("verifier");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/webhooks/src",
        listener.local_addr().expect("addr")
    );
    let server = std::thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let mut parts = request_line.split_whitespace();
            let method: http::Method = parts.next().unwrap_or("GET").parse().expect("method");
            let target = parts.next().unwrap_or("/").to_owned();
            let mut headers = http::HeaderMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.append(
                        http::HeaderName::from_bytes(name.trim().as_bytes()).expect("name"),
                        http::HeaderValue::from_str(value.trim()).expect("value"),
                    );
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            let query = target.split_once('?').map(|(_, query)| query);
            let (status, content_type, answer) = if wrong {
                (
                    202,
                    "application/json",
                    br#"{"status":"accepted"}"#.to_vec(),
                )
            } else {
                match verifier.handshake(&method, query, &headers, &body, unix_now()) {
                    Some(Ok(reply)) => (200, reply.content_type, reply.body),
                    Some(Err(error)) => (
                        error.status().as_u16(),
                        "application/json",
                        error.to_string().into_bytes(),
                    ),
                    None => (405, "application/json", b"{}".to_vec()),
                }
            };
            let mut stream = stream;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            stream.write_all(head.as_bytes()).expect("write");
            stream.write_all(&answer).expect("write");
        }
    });
    (url, server)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[test]
fn send_handshake_sends_the_providers_check_and_verifies_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (scheme, verify) in [
        (
            "slack",
            r#"{ scheme = "slack", secrets = ["slack-signing-secret"] }"#,
        ),
        (
            "zoom",
            r#"{ scheme = "zoom", secrets = ["zoom-secret-token"] }"#,
        ),
        (
            "meta",
            r#"{ scheme = "meta", secrets = ["app-secret"], verify_token = "vt-1" }"#,
        ),
    ] {
        let config = dir.path().join(format!("{scheme}.toml"));
        std::fs::write(
            &config,
            format!("[[sources]]\nname = \"src\"\nverify = {verify}\n"),
        )
        .expect("config");

        let (url, server) = handshake_answerer(verify, false, 1);
        let (ok, stdout, stderr) =
            send(&config, &["--source", "src", "--handshake", "--url", &url]);
        server.join().expect("server");
        assert!(ok, "{scheme}: {stdout}{stderr}");
        let method = if scheme == "meta" { "GET" } else { "POST" };
        assert!(
            stdout.starts_with(&format!("{method} 200 {scheme} ")),
            "{scheme}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("ok: the answer is the one {scheme} expects")),
            "{scheme}: {stdout}"
        );

        let (url, server) = handshake_answerer(verify, true, 1);
        let (ok, stdout, stderr) =
            send(&config, &["--source", "src", "--handshake", "--url", &url]);
        server.join().expect("server");
        assert!(!ok, "{scheme}: {stdout}");
        assert!(stdout.contains(" 202 "), "{scheme}: {stdout}");
        assert!(
            stderr.contains(&format!("error: {scheme} expects 200 ")),
            "{scheme}: {stderr}"
        );
    }

    let config = dir.path().join("stripe.toml");
    std::fs::write(
        &config,
        "[[sources]]\nname = \"src\"\nverify = { scheme = \"stripe\", secrets = [\"whsec_x\"] }\n",
    )
    .expect("config");
    let (ok, _, stderr) = send(&config, &["--source", "src", "--handshake"]);
    assert!(!ok);
    assert!(stderr.contains("has no handshake"), "{stderr}");
    let (ok, _, stderr) = send(&config, &["--source", "src", "--handshake", "--times", "2"]);
    assert!(!ok);
    assert!(stderr.contains("--times"), "{stderr}");
}
