//! The command line against a running gateway: `send` and `check`.

mod common;

use std::process::Command;

use common::{BIN, Gateway};

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
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, config).expect("write");
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
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
