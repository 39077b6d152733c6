//! docs/deploy.md's "two nodes on one PostgreSQL, without Docker", run as the doc shows: the
//! two config files are taken from the doc (the fenced blocks after `<!-- file: NAME -->`), the
//! `oncehook serve` and `oncehook send` lines are the doc's, only the ports are swapped for free
//! ones and the destination for a test receiver. The database is the `ONCEHOOK_TEST_PG` one (the
//! local server by default), in a schema of its own that is dropped afterwards.
//!
//! The test skips, saying why, when the binary has no PostgreSQL backend or no PostgreSQL server
//! answers (unless `ONCEHOOK_TEST_PG` was set explicitly: then that is a failure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::receiver::Receiver;
use crate::common::{BIN, free_port};
use crate::read;

const DOC: &str = "docs/deploy.md";
const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";
/// What `oncehook serve` says when it was built without the PostgreSQL backend.
const BACKEND_MISSING: &str = "PostgreSQL backend is not available";

/// The files the doc shows: a `<!-- file: NAME -->` line, then a fenced block (dedented).
fn doc_files(doc: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut files = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- file:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = index + 1;
        let indent = lines[fence].len() - lines[fence].trim_start().len();
        assert!(
            lines[fence].trim_start().starts_with("```"),
            "{DOC}: a fenced block must follow the file marker for {name}"
        );
        let body: Vec<&str> = lines[fence + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .map(|l| l.get(indent..).unwrap_or("").trim_end())
            .collect();
        files.insert(name.trim().to_owned(), body.join("\n") + "\n");
    }
    files
}

/// The `oncehook …` lines of the doc's shell blocks, split into words (comments dropped).
fn doc_commands(doc: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut in_shell = false;
    for line in doc.lines().map(str::trim) {
        if let Some(info) = line.strip_prefix("```") {
            in_shell = !in_shell && info == "sh";
            continue;
        }
        if in_shell && line.starts_with("oncehook ") {
            let without_comment = line.split(" #").next().unwrap_or(line);
            commands.push(
                without_comment
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    commands
}

/// The value of `export NAME='…'` in the doc.
fn doc_export(doc: &str, name: &str) -> String {
    let prefix = format!("export {name}=");
    let line = doc
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{DOC} does not export {name}"));
    let value = line[prefix.len()..].split(" #").next().unwrap_or("").trim();
    value.trim_matches('\'').trim_matches('"').to_owned()
}

/// `127.0.0.1:PORT` occurrences in a text.
fn loopback_ports(text: &str) -> Vec<u16> {
    text.match_indices("127.0.0.1:")
        .filter_map(|(start, needle)| {
            let rest = &text[start + needle.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A running `oncehook serve`, killed if the test ends early.
struct Node {
    name: String,
    child: Option<Child>,
    stderr: PathBuf,
}

impl Node {
    fn start(dir: &Path, args: &[String], env: &[(&str, String)]) -> Node {
        let name = args.join(" ");
        let stderr = dir.join(format!("{}.stderr", args.last().map_or("node", |s| s)));
        let child = Command::new(BIN)
            .args(&args[1..])
            .current_dir(dir)
            .env("ONCEHOOK_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start oncehook");
        Node {
            name,
            child: Some(child),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `/healthz` answers (Ok) or the process exits (Err with what it printed).
    async fn wait_healthy(&mut self, admin: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{admin}/healthz");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "{} exited ({status}):\n{}",
                    self.name,
                    self.stderr()
                ));
            }
            if matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not become healthy:\n{}",
                    self.name,
                    self.stderr()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Drops the test's schema when the test ends, however it ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = psql(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres_as_the_deploy_guide_shows() {
    let doc = read(DOC);
    let files = doc_files(&doc);
    let commands = doc_commands(&doc);
    let serves: Vec<&Vec<String>> = commands.iter().filter(|c| c[1] == "serve").collect();
    assert_eq!(
        serves.len(),
        2,
        "{DOC}: two `oncehook serve` lines: {commands:?}"
    );
    let send = commands
        .iter()
        .find(|c| c[1] == "send")
        .unwrap_or_else(|| panic!("{DOC}: an `oncehook send` line"));
    let listen = commands
        .iter()
        .find(|c| c[1] == "listen")
        .unwrap_or_else(|| panic!("{DOC}: an `oncehook listen` line"));

    // Ports: the destination's goes to the test receiver, the others to free ports.
    let receiver = Receiver::start().await;
    let listen_port = listen
        .iter()
        .position(|w| w == "--port")
        .and_then(|i| listen.get(i + 1))
        .expect("listen --port");
    let mut ports: BTreeMap<u16, u16> = BTreeMap::new();
    for text in files.values() {
        for port in loopback_ports(text) {
            let new = if port.to_string() == *listen_port {
                receiver.port
            } else {
                free_port()
            };
            ports.entry(port).or_insert(new);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut admin_of = BTreeMap::new();
    let mut intake_of = BTreeMap::new();
    for (name, text) in &files {
        let mut text = text.clone();
        for (old, new) in &ports {
            text = text.replace(&format!("127.0.0.1:{old}"), &format!("127.0.0.1:{new}"));
        }
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let listen_of = |section: &str| {
            table[section]["listen"]
                .as_str()
                .expect("listen")
                .to_owned()
        };
        admin_of.insert(name.clone(), listen_of("admin"));
        intake_of.insert(name.clone(), listen_of("server"));
        std::fs::write(dir.path().join(name), text).expect("write config");
    }
    for serve in &serves {
        let config = &serve[serve.iter().position(|w| w == "-c").expect("-c") + 1];
        assert!(files.contains_key(config), "{DOC}: {config} is not shown");
    }

    // The database: a schema of its own, so that the test runs beside others.
    let explicit = std::env::var("ONCEHOOK_TEST_PG").ok();
    let base_url = explicit.clone().unwrap_or_else(|| DEFAULT_PG.to_owned());
    let schema_name = format!("deploy_{:016x}", rand::random::<u64>());
    let database = psql(&base_url, &format!("CREATE SCHEMA {schema_name}"));
    let _schema = database.is_ok().then(|| Schema {
        url: base_url.clone(),
        name: schema_name.clone(),
    });
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let node_url = format!("{base_url}{separator}options=-c%20search_path%3D{schema_name}");
    let env = [
        ("ONCEHOOK_DATABASE_URL", node_url),
        ("ONCEHOOK_ADMIN_TOKEN", "two-nodes-admin-token".to_owned()),
        (
            "DEMO_WEBHOOK_SECRET",
            doc_export(&doc, "DEMO_WEBHOOK_SECRET"),
        ),
    ];

    let mut nodes = Vec::new();
    for serve in &serves {
        let config = serve[serve.iter().position(|w| w == "-c").expect("-c") + 1].clone();
        let mut node = Node::start(dir.path(), serve, &env);
        if let Err(problem) = node.wait_healthy(&admin_of[&config]).await {
            if problem.contains(BACKEND_MISSING) {
                eprintln!(
                    "skipped: this build of oncehook has no PostgreSQL backend, so {DOC}'s two-node \
                     set-up cannot run (it does once the backend is in): {}",
                    problem.lines().last().unwrap_or("")
                );
                return;
            }
            if let Err(why) = &database {
                assert!(
                    explicit.is_none(),
                    "ONCEHOOK_TEST_PG is set but PostgreSQL does not answer: {why}"
                );
                eprintln!(
                    "skipped: no PostgreSQL answers at {DEFAULT_PG} ({why}); set ONCEHOOK_TEST_PG \
                     to run {DOC}'s two-node set-up"
                );
                return;
            }
            panic!("{problem}");
        }
        nodes.push((config, node));
    }

    // The worker node opens no intake port.
    for (config, node) in &nodes {
        if node.name.contains("--role worker") {
            let address = &intake_of[config];
            assert!(
                std::net::TcpStream::connect(address).is_err(),
                "the worker node listens on its intake address {address}"
            );
        }
    }

    // `oncehook send … --times 2`: accepted, then a duplicate of the same event.
    let output = Command::new(BIN)
        .args(&send[1..])
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("oncehook send");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "oncehook send failed: {printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines.len() >= 2
            && lines[0].contains("202")
            && lines[0].contains("\"accepted\"")
            && lines[1].contains("200")
            && lines[1].contains("\"duplicate\""),
        "{printed}"
    );
    let event_id = lines[0]
        .split("\"event_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("event_id")
        .to_owned();

    // One delivery, made by the worker node.
    receiver
        .wait_for(Duration::from_secs(20), "the delivery", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one delivery for two sends");
    assert_eq!(received[0].event_id(), event_id);
    for (config, node) in &nodes {
        let metrics = reqwest::get(format!("http://{}/metrics", admin_of[config]))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics");
        let delivered = metrics
            .lines()
            .any(|l| l.starts_with("oncehook_deliveries_total{") && l.contains("delivered"));
        let is_worker = node.name.contains("--role worker");
        assert_eq!(
            delivered, is_worker,
            "{}: only the worker node delivers:\n{metrics}",
            node.name
        );
    }

    // SIGTERM: both stop cleanly.
    for (_, node) in &mut nodes {
        let status = node.terminate();
        assert!(status.success(), "{} exited with {status}", node.name);
    }
}

#[test]
fn doc_parsing_helpers() {
    let doc = "text\n\n   <!-- file: a.toml -->\n   ```toml\n   [server]\n   listen = \"127.0.0.1:8080\"\n   ```\n\n```sh\noncehook serve -c a.toml --role intake   # comment\nexport X='v' # why\n```\n";
    let files = doc_files(doc);
    assert_eq!(files["a.toml"], "[server]\nlisten = \"127.0.0.1:8080\"\n");
    assert_eq!(
        doc_commands(doc),
        vec![vec![
            "oncehook", "serve", "-c", "a.toml", "--role", "intake"
        ]]
    );
    assert_eq!(doc_export(doc, "X"), "v");
    assert_eq!(loopback_ports(&files["a.toml"]), vec![8080]);
}
