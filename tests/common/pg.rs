//! PostgreSQL for end-to-end tests: a fresh schema per test that several gateways share, a TCP
//! proxy between gateways and the database that the test can cut and restore, and a destination
//! that records every delivery it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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
        let (client, connection) = tokio_postgres::connect(&base_url, tokio_postgres::NoTls)
            .await
            .expect("connect to ONCEHOOK_TEST_PG");
        tokio::spawn(connection);
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
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
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
/// away (the database looks unreachable); `restore` lets connections through again.
pub struct TcpProxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (open, _) = watch::channel(true);
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*gate.borrow() {
                    drop(client);
                    continue;
                }
                let mut closed = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        TcpProxy { addr, open }
    }

    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// How the destination answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// 200 after this delay.
    Ok(Duration),
    /// Holds every request until the mode changes (or the client gives up).
    Hang,
}

/// One request as the destination saw it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub key: String,
    pub attempt: String,
    pub at: Instant,
}

/// A destination on a free port that records deliveries per `Idempotency-Key`, and counts
/// requests for one key that were in flight at the same time (a delivery claimed twice).
pub struct Sink {
    pub url: String,
    state: Arc<SinkState>,
}

struct SinkState {
    mode: Mutex<SinkMode>,
    in_flight: Mutex<HashMap<String, u32>>,
    delivered: Mutex<HashMap<String, u32>>,
    arrivals: Mutex<Vec<Arrival>>,
    overlaps: AtomicUsize,
    stopped: AtomicBool,
}

impl Sink {
    pub async fn start(mode: SinkMode) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let state = Arc::new(SinkState {
            mode: Mutex::new(mode),
            in_flight: Mutex::new(HashMap::new()),
            delivered: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Vec::new()),
            overlaps: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Sink {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.state.mode.lock().expect("mode") = mode;
    }

    /// Successful deliveries per key.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.state.delivered.lock().expect("delivered").clone()
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().expect("arrivals").clone()
    }

    /// Keys with a request in flight right now.
    pub fn in_flight(&self) -> usize {
        self.state
            .in_flight
            .lock()
            .expect("in flight")
            .values()
            .filter(|n| **n > 0)
            .count()
    }

    /// Requests that arrived while another with the same key was still in flight.
    pub fn overlaps(&self) -> usize {
        self.state.overlaps.load(Ordering::SeqCst)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Release held requests so their handlers end.
        self.state.stopped.store(true, Ordering::SeqCst);
    }
}

/// Counts a request in flight for as long as its handler runs, also when the client hangs up.
struct InFlight {
    state: Arc<SinkState>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self
            .state
            .in_flight
            .lock()
            .expect("in flight")
            .get_mut(&self.key)
        {
            *n -= 1;
        }
    }
}

async fn receive(State(state): State<Arc<SinkState>>, headers: HeaderMap) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = header("idempotency-key");
    {
        let mut in_flight = state.in_flight.lock().expect("in flight");
        let n = in_flight.entry(key.clone()).or_default();
        if *n > 0 {
            state.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        *n += 1;
    }
    let _guard = InFlight {
        state: Arc::clone(&state),
        key: key.clone(),
    };
    state.arrivals.lock().expect("arrivals").push(Arrival {
        key: key.clone(),
        attempt: header("oncehook-attempt"),
        at: Instant::now(),
    });
    loop {
        let mode = *state.mode.lock().expect("mode");
        match mode {
            SinkMode::Ok(delay) => {
                tokio::time::sleep(delay).await;
                break;
            }
            SinkMode::Hang if state.stopped.load(Ordering::SeqCst) => {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            SinkMode::Hang => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    *state
        .delivered
        .lock()
        .expect("delivered")
        .entry(key)
        .or_default() += 1;
    StatusCode::OK
}
