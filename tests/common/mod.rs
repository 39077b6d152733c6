//! The end-to-end harness: the real `oncehook` binary on free ports with its own SQLite file
//! (or a PostgreSQL schema that several gateways share), and helpers to sign, send and inspect
//! what was stored. `pg` has the PostgreSQL side: schemas, a TCP proxy the test can cut, and a
//! destination that records what it receives.
#![allow(dead_code)]

pub mod pg;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oncehook::verify::{Verifier, VerifyConfig};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_oncehook");

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub intake: String,
    pub admin: String,
    /// `--role` (`all` when None).
    pub role: Option<String>,
    child: Option<Child>,
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
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{intake_port}\"\nshutdown_grace = \"2s\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"test-admin-token\"\n\n\
             [store]\n{store}\n\n{body}"
        );
        let config_path = dir.path().join("oncehook.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut gateway = Gateway {
            dir,
            config_path,
            intake: format!("http://127.0.0.1:{intake_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            role: options.role,
            child: None,
        };
        gateway.spawn_process();
        if !options.no_wait {
            gateway.wait_healthy();
        }
        gateway
    }

    pub fn spawn(&mut self) {
        self.spawn_process();
        self.wait_healthy();
    }

    fn spawn_process(&mut self) {
        let mut command = Command::new(BIN);
        command.args(["serve", "-c"]).arg(&self.config_path);
        if let Some(role) = &self.role {
            command.args(["--role", role]);
        }
        let child = command
            .env("ONCEHOOK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start oncehook");
        self.child = Some(child);
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

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
