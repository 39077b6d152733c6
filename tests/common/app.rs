//! A gateway in the test's own process: `App::build` on port-0 listeners, run until the test
//! drops it. For tests that need no process boundary (no crash, signal or restart): they start
//! in milliseconds, and read state through the store the gateway uses or through its API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oncehook::app::{App, Role};
use oncehook::config::Config;
use oncehook::store::Store;
use tokio_util::sync::CancellationToken;

use super::ADMIN_TOKEN;

pub struct TestApp {
    pub intake: String,
    pub admin: String,
    /// The store the gateway runs on (a fresh SQLite file).
    pub store: Arc<dyn Store>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// Starts a gateway whose config is `body` (sources, destinations, routes) plus `[server]`,
/// `[admin]` and `[store]` sections on port 0 and a fresh SQLite file.
pub async fn spawn_app(body: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [store]\nurl = \"sqlite://./data/oncehook.db\"\n\n{body}"
    );
    let config = Config::from_toml(&text, Path::new("oncehook.toml"), dir.path(), &|name| {
        std::env::var(name).ok()
    })
    .unwrap_or_else(|e| panic!("test config: {e}"));
    let app = App::build(config, Role::All).await.expect("build the app");
    let intake = format!("http://{}", app.intake_addr().expect("intake address"));
    let admin = format!("http://{}", app.admin_addr().expect("admin address"));
    let store = app.store();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        intake,
        admin,
        store,
        shutdown,
        _dir: dir,
    }
}

impl TestApp {
    pub fn webhook_url(&self, source: &str) -> String {
        format!("{}/webhooks/{source}", self.intake)
    }

    /// `GET` on the admin listener with the token: (status, JSON body or Null).
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        super::send_json(
            reqwest::Client::new()
                .get(format!("{}{path}", self.admin))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await
    }

    /// Events stored, through the store (no SQL).
    pub async fn event_count(&self) -> usize {
        self.store
            .list_events(&oncehook::store::EventQuery {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("list events")
            .len()
    }

    /// Waits until `done` holds, polling every 20 ms, or panics after `within`.
    pub async fn wait_until<F, Fut>(&self, within: Duration, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + within;
        while !done().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
