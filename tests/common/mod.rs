//! The end-to-end harness: the real `oncehook` binary on free ports with its own SQLite file
//! (or a PostgreSQL schema that several gateways share), and helpers to sign, send and inspect
//! what was stored. `receiver` is a scripted destination; `pg` has the PostgreSQL side: schemas
//! and a TCP proxy the test can cut.
#![allow(dead_code)]

pub mod app;
pub mod faults;
pub mod pg;
pub mod receiver;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oncehook::verify::{Verifier, VerifyConfig};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_oncehook");
/// The admin token every test gateway is configured with (unless started without one).
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub intake: String,
    pub admin: String,
    /// `--role` (`all` when None).
    pub role: Option<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Every line the gateway wrote to stderr, over all its runs.
    logs: Arc<Mutex<Vec<String>>>,
}

/// How `Gateway::start_with` sets a gateway up; the default is `Gateway::start`'s.
#[derive(Default, Clone)]
pub struct GatewayOptions {
    /// `store.url`; a fresh SQLite file when None.
    pub store_url: Option<String>,
    /// `--role all|intake|worker`.
    pub role: Option<String>,
    /// Return at once instead of waiting for `/healthz` (to start several gateways together);
    /// call `wait_healthy` afterwards.
    pub no_wait: bool,
    /// Configure no `admin.token` (the admin API then refuses everything).
    pub no_admin_token: bool,
    /// Lines added to the generated `[server]` table, e.g. `max_connections = 2`.
    pub server_extra: String,
    /// Lines added to the generated `[store]` table, e.g. `encryption_key = "…"`.
    pub store_extra: String,
    /// Environment variables of the process, e.g. `ONCEHOOK_LOG` (`warn` unless set here).
    pub env: Vec<(String, String)>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Gateway {
    /// Starts a gateway whose config is `body` (sources, destinations, routes) plus generated
    /// `[server]`, `[admin]` and `[store]` sections on free ports and a fresh SQLite file.
    pub fn start(body: &str) -> Gateway {
        Gateway::start_with(body, GatewayOptions::default())
    }

    /// Like `start`, on the store and with the role `options` name.
    pub fn start_with(body: &str, options: GatewayOptions) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let intake_port = free_port();
        let admin_port = free_port();
        let store = match &options.store_url {
            Some(url) => format!("url = \"{url}\"\npool_size = 8"),
            None => "url = \"sqlite://./data/oncehook.db\"".to_owned(),
        };
        let token_line = if options.no_admin_token {
            String::new()
        } else {
            format!("token = \"{ADMIN_TOKEN}\"\n")
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{intake_port}\"\nshutdown_grace = \"2s\"\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\n{server_extra}\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{token_line}\n\
             [store]\n{store}\n{store_extra}\n\n{body}",
            server_extra = options.server_extra,
            store_extra = options.store_extra
        );
        let config_path = dir.path().join("oncehook.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut gateway = Gateway {
            dir,
            config_path,
            intake: format!("http://127.0.0.1:{intake_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            role: options.role,
            env: options.env,
            child: None,
            logs: Arc::default(),
        };
        gateway.spawn_process(&[]);
        if !options.no_wait {
            gateway.wait_healthy();
        }
        gateway
    }

    pub fn spawn(&mut self) {
        self.spawn_with_env(&[]);
    }

    pub fn spawn_with_env(&mut self, env: &[(&str, &str)]) {
        self.spawn_process(env);
        self.wait_healthy();
    }

    fn spawn_process(&mut self, env: &[(&str, &str)]) {
        let mut command = Command::new(BIN);
        command.args(["serve", "-c"]).arg(&self.config_path);
        if let Some(role) = &self.role {
            command.args(["--role", role]);
        }
        let mut child = command
            .env("ONCEHOOK_LOG", "warn")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oncehook");
        // Keep every line of output for tests that inspect it, and still show it when a test
        // fails. The logs go to stderr; stdout is kept too, since nothing secret may reach it.
        if let Some(stderr) = child.stderr.take() {
            self.collect_lines(stderr);
        }
        if let Some(stdout) = child.stdout.take() {
            self.collect_lines(stdout);
        }
        self.child = Some(child);
    }

    /// The running process's id (None while it is stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn collect_lines(&self, output: impl std::io::Read + Send + 'static) {
        let logs = Arc::clone(&self.logs);
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                eprintln!("{line}");
                logs.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }

    /// The gateway's stderr and stdout lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// GET on the admin listener with the admin token: (status, JSON body).
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let request = reqwest::Client::new()
            .get(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN);
        send_json(request).await
    }

    /// POST JSON on the admin listener with the admin token: (status, JSON body).
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = reqwest::Client::new()
            .post(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string());
        send_json(request).await
    }

    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("{}/healthz", self.admin);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("oncehook exited during start-up: {status}");
            }
            if http_ok(&url) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("oncehook did not become healthy at {url}");
    }

    /// How the process ended, if it ends within `within` (None: still running).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/oncehook.db")
    }

    /// A read-only connection to the gateway's SQLite file (WAL lets it read beside the server).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect("count")
    }

    pub fn event_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM events")
    }

    /// (event id, destination, state, attempts, dead reason) of every delivery.
    pub fn deliveries(&self) -> Vec<(String, String, String, u32, Option<String>)> {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT e.id, d.destination, d.state, d.attempts, d.dead_reason
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq ORDER BY d.id",
            )
            .expect("prepare");
        statement
            .query_map([], |r| {
                let id: Vec<u8> = r.get(0)?;
                let id = uuid::Uuid::from_slice(&id)
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                Ok((id, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Polls `done` (given the deliveries) until it holds, or panics after `timeout`.
    pub async fn wait_for_deliveries(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[(String, String, String, u32, Option<String>)]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let deliveries = self.deliveries();
            if done(&deliveries) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {deliveries:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn webhook_url(&self, source: &str) -> String {
        format!("{}/webhooks/{source}", self.intake)
    }

    pub async fn healthy(&self) -> bool {
        matches!(reqwest::get(format!("{}/healthz", self.admin)).await, Ok(r) if r.status() == 200)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a request and reads its answer as JSON (Null when it is not JSON).
pub async fn send_json(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("admin body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A plain synchronous GET, used while waiting for start-up before any runtime exists.
fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A signed request as the source's provider would send it.
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn sign(verify_toml: &str, body: &[u8], message_id: &str, at: i64) -> Signed {
    let config: VerifyConfig = toml::from_str(verify_toml).expect("verify config");
    let verifier = Verifier::from_config(&config).expect("verifier");
    let headers = verifier
        .sign(body, message_id, at)
        .into_iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
        .collect();
    Signed {
        headers,
        body: body.to_vec(),
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    signed: &Signed,
    content_type: &str,
) -> Reply {
    let mut request = client
        .post(url)
        .header("content-type", content_type)
        .body(signed.body.clone());
    for (name, value) in &signed.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("response is not JSON: {text:?}"));
    Reply {
        status,
        headers,
        json,
    }
}

/// Sends `signed` twice, as a provider that retries does: the first answer is 202, the repeat
/// 200 with the same `event_id`. Returns that event id.
#[allow(dead_code)] // not every test binary sends repeats through this
pub async fn post_twice(client: &reqwest::Client, url: &str, signed: &Signed) -> String {
    let first = post(client, url, signed, "application/json").await;
    assert_eq!(first.status, 202, "{}", first.json);
    let repeat = post(client, url, signed, "application/json").await;
    assert_eq!(repeat.status, 200, "{}", repeat.json);
    assert_eq!(repeat.json["status"], "duplicate", "{}", repeat.json);
    assert_eq!(repeat.json["event_id"], first.json["event_id"]);
    first.json["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

/// The `Idempotency-Key` (and `webhook-id`) destinations get for a `source`'s event keyed by
/// one part of `kind` (`header`, `json`, `email`, `fingerprint`) with `value`.
pub fn delivery_key(source: &str, kind: &str, value: &str) -> String {
    oncehook::domain::key::DedupeKey::new(source, [(kind, value)])
        .delivery_key()
        .to_string()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Verifies a delivery's Standard Webhooks signature with the official `standardwebhooks`
/// Python library (`scripts/test` provides it through `ONCEHOOK_TEST_PYTHON`).
pub fn verify_with_standardwebhooks_library(secret: &str, delivery: &receiver::Received) {
    let Ok(python) = std::env::var("ONCEHOOK_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ONCEHOOK_TEST_PYTHON is not set: run the tests through scripts/test"
        );
        eprintln!("skipping the standardwebhooks cross-check: ONCEHOOK_TEST_PYTHON is not set");
        return;
    };
    let script = "import sys\n\
from standardwebhooks.webhooks import Webhook\n\
secret, msg_id, ts, sig = sys.argv[1:5]\n\
Webhook(secret).verify(sys.stdin.buffer.read(), {'webhook-id': msg_id, 'webhook-timestamp': ts, 'webhook-signature': sig})\n\
print('verified')\n";
    let header = |name: &str| delivery.header(name).unwrap_or_default().to_owned();
    let mut child = Command::new(python)
        .args(["-c", script, secret])
        .args([
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&delivery.body).expect("write body");
    }
    let output = child.wait_with_output().expect("python");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("verified"),
        "standardwebhooks rejected the signature: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `oncehook ARGS` with stdout a pipe whose reader is already gone (a `| head` that has
/// read what it wanted) and stdin not a terminal.
pub fn run_into_a_closed_pipe(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oncehook");
    child.wait_with_output().expect("wait")
}
