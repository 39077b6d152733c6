//! PostgreSQL for end-to-end tests: a fresh schema per test that several gateways share, and a
//! TCP proxy between gateways and the database that the test can cut and restore.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A schema of its own in the `ONCEHOOK_TEST_PG` database, dropped with this value.
pub struct PgSchema {
    /// The database URL as given, without the schema.
    pub base_url: String,
    pub name: String,
    client: tokio_postgres::Client,
}

impl PgSchema {
    /// None (after printing why) when `ONCEHOOK_TEST_PG` is not set: the test is skipped.
    pub async fn create() -> Option<PgSchema> {
        let Ok(base_url) = std::env::var("ONCEHOOK_TEST_PG") else {
            eprintln!("skipped: set ONCEHOOK_TEST_PG=postgres://user@host/db to run this test");
            return None;
        };
        let name = format!("e2e_{:016x}", rand::random::<u64>());
        // The gateway's own way in, so `sslmode` and `sslrootcert` in ONCEHOOK_TEST_PG hold here too.
        let client = oncehook::store::postgres::connect(&base_url)
            .await
            .expect("connect to ONCEHOOK_TEST_PG");
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        client
            .batch_execute(&format!("SET search_path = {name}"))
            .await
            .expect("search_path");
        Some(PgSchema {
            base_url,
            name,
            client,
        })
    }

    /// The `store.url` for gateways on this schema.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }

    /// `url()`, but through `proxy` instead of straight to the server.
    pub fn url_through(&self, proxy: &TcpProxy) -> String {
        let mut url = reqwest::Url::parse(&self.url()).expect("store URL");
        url.set_port(Some(proxy.addr.port())).expect("port");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.to_string()
    }

    /// Where the database server listens, from the URL.
    pub fn server_addr(&self) -> SocketAddr {
        let url = reqwest::Url::parse(&self.base_url).expect("ONCEHOOK_TEST_PG");
        let host = url.host_str().unwrap_or("127.0.0.1");
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        format!("{host}:{}", url.port().unwrap_or(5432))
            .parse()
            .expect("a numeric host in ONCEHOOK_TEST_PG")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Every row of `sql`, each column read as text (cast in the query where needed).
    pub async fn text_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows = self
            .client
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
            .collect()
    }

    /// Waits until `sql` counts `expected`, or panics after `within`.
    pub async fn wait_for_count(&self, sql: &str, expected: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.count(sql).await;
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sql}: {now} after {within:?}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop cannot await: a thread with its own runtime drops the schema, also after a
        // failed test.
        let (url, name) = (self.base_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(client) = oncehook::store::postgres::connect(&url).await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// A TCP proxy in front of the database. `cut` closes every open connection and turns new ones
/// away (the database is down); `stall` stops forwarding anything while keeping connections open
/// and accepting new ones (a dead network path: only timeouts notice); `restore` lets new
/// connections through again (stalled ones stay stalled, like a broken path's).
pub struct TcpProxy {
    pub addr: SocketAddr,
    state: watch::Sender<ProxyState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyState {
    Open,
    Cut,
    Stalled,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (state, _) = watch::channel(ProxyState::Open);
        let gate = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut changes = gate.subscribe();
                let now = *changes.borrow_and_update();
                tokio::spawn(async move {
                    let mut client = client;
                    match now {
                        ProxyState::Cut => return,
                        ProxyState::Stalled => return swallow(client).await,
                        ProxyState::Open => {}
                    }
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let next = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        next = changes.wait_for(|s| *s != ProxyState::Open) => next.map(|s| *s),
                    };
                    if matches!(next, Ok(ProxyState::Stalled)) {
                        swallow(client).await;
                    }
                });
            }
        });
        TcpProxy { addr, state }
    }

    pub fn cut(&self) {
        self.state.send_replace(ProxyState::Cut);
    }

    pub fn stall(&self) {
        self.state.send_replace(ProxyState::Stalled);
    }

    pub fn restore(&self) {
        self.state.send_replace(ProxyState::Open);
    }
}

/// Reads and drops whatever the client sends, answering nothing, until it hangs up.
async fn swallow(mut client: TcpStream) {
    let _ = tokio::io::copy(&mut client, &mut tokio::io::sink()).await;
}
