//! The PostgreSQL store: any number of nodes share one database.
//!
//! Everything the SQLite store guarantees with its single writer, this store guarantees with
//! row locks, so that it holds across connections and across nodes:
//!
//! - **Accept** runs `oncehook_accept` (a PL/pgSQL function from the migrations), which takes
//!   the dedupe key with `INSERT … ON CONFLICT DO UPDATE … WHERE expired`: a live key is left
//!   alone, a key held by an uncommitted transaction makes the caller wait for that transaction's
//!   fate, and an expired key is replaced. The event and its deliveries are inserted by the same
//!   call, in the same transaction. The near-duplicate fingerprint is taken the same way.
//! - **Group commit**: a few writer tasks take whatever accepts are waiting (up to `batch_max`),
//!   send one `oncehook_accept` call per event down one connection without waiting for each
//!   answer (pipelining), and commit once. A node pays one commit per batch, not per webhook.
//! - **Claims** lock due deliveries with `FOR UPDATE SKIP LOCKED`, so workers on any node never
//!   take the same delivery; leases and lease tokens work as on SQLite.
//! - **Faults**: every operation has a deadline; a connection that missed one is thrown away
//!   rather than returned to the pool (with the pool's idle connections), and closed connections
//!   are dropped when next checked out, so the node recovers by itself when the database comes
//!   back. Connection-level failures and timeouts are `StoreErrorKind::Unavailable` (intake answers
//!   503, `/readyz` fails).
//!
//! Connections use TLS as the URL's `sslmode` and `sslrootcert` say, with libpq's meanings
//! (`tls.rs`); a node that cannot get the TLS it asked for fails to open the store, so it does
//! not start.

mod accept;
mod deliveries;
mod destinations;
mod migrate;
mod pool;
mod queries;
mod readiness;
mod replay;
mod retention;
mod tls;
mod words;
mod writer;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Mutex, mpsc};

use self::migrate::migrate;
use self::pool::{CONNECT_TIMEOUT, OPERATION_TIMEOUT, connection_config};
use self::writer::{AcceptJob, run_writer};
use super::StoreError;

/// One connection to the database at `url` (a `postgres://` URL as `store.url` takes it, TLS
/// parameters included), outside any store: for tools and tests that need a client of their
/// own. The connection runs on a task of its own until the client is dropped.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let (config, tls) = connection_config(url)?;
    let (client, connection) = config
        .connect(tls::connector(&tls)?)
        .await
        .map_err(|e| pool::classify(e, "connect"))?;
    tokio::spawn(connection);
    Ok(client)
}

pub struct PostgresOptions {
    /// `postgres://…` or `postgresql://…`, with any libpq-style parameters.
    pub url: String,
    /// Most connections this node opens.
    pub pool_size: usize,
    /// Most accepts committed by one transaction.
    pub batch_max: usize,
    /// Most accepts waiting for a writer; beyond it accepts fail fast as unavailable.
    pub queue_max: usize,
}

pub struct PostgresStore {
    pool: Pool,
    accepts: mpsc::Sender<AcceptJob>,
}

impl PostgresStore {
    /// Connects, migrates the schema and starts the accept writers.
    pub async fn open(options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let (config, tls) = connection_config(&options.url)?;
        let manager = Manager::from_config(
            config,
            tls::connector(&tls)?,
            ManagerConfig {
                // Checking `is_closed` is enough: a connection that died unnoticed fails its next
                // query, which marks it closed, and one that hangs misses its deadline and is
                // closed by `run`. A test query per checkout would cost a round trip each time.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool_size = options.pool_size.max(1);
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OPERATION_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| {
                StoreError::internal(format!("cannot build the connection pool: {e}")).caused_by(e)
            })?;
        migrate(&pool).await?;

        let (accepts, queue) = mpsc::channel(options.queue_max.max(1));
        let queue = Arc::new(Mutex::new(queue));
        // Several writers let one batch gather while another commits; a quarter of the pool
        // leaves the rest for claims and reads.
        for _ in 0..(pool_size / 4).clamp(1, 4) {
            tokio::spawn(run_writer(
                pool.clone(),
                Arc::clone(&queue),
                options.batch_max.max(1),
            ));
        }
        Ok(PostgresStore { pool, accepts })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::store::tests::TestSchema;
    use crate::store::{AdminQueries, StoreErrorKind};

    /// `url` with `parameters` added; later ones win, so they override the URL's own.
    fn with(url: &str, parameters: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{parameters}")
    }

    async fn open(url: String) -> Result<PostgresStore, StoreError> {
        PostgresStore::open(PostgresOptions {
            url,
            pool_size: 2,
            batch_max: 8,
            queue_max: 64,
        })
        .await
    }

    /// Whether the store's own connection is encrypted, as the server sees it.
    async fn store_connection_is_encrypted(store: &PostgresStore) -> bool {
        pool::run(&store.pool, "pg_stat_ssl", |client| {
            Box::pin(async move {
                let row = client
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await?;
                pool::get::<bool>(&row, 0)
            })
        })
        .await
        .expect("pg_stat_ssl")
    }

    #[tokio::test]
    async fn a_server_that_refuses_tls_is_named_as_the_reason() {
        // A server that answers the TLS request with "N", as PostgreSQL with ssl = off does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                if socket.read_exact(&mut request).await.is_ok() {
                    let _ = socket.write_all(b"N").await;
                }
            }
        });
        let error = connect(&format!(
            "postgres://u:hunter2@127.0.0.1:{port}/x?sslmode=require"
        ))
        .await
        .expect_err("TLS was required");
        let message = error.to_string();
        assert!(message.contains("PostgreSQL refused TLS"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn require_encrypts_the_store_s_connections() {
        let Some(schema) = TestSchema::create().await else {
            return;
        };
        let url = schema.url_with_search_path();
        let store = open(with(&url, "sslmode=require")).await.expect("open");
        assert!(store_connection_is_encrypted(&store).await);
        // What TLS adds to opening a connection (printed with --no-capture).
        for mode in ["disable", "require"] {
            let started = Instant::now();
            for _ in 0..10 {
                let client = connect(&with(&schema.url, &format!("sslmode={mode}")))
                    .await
                    .expect("connect");
                client.simple_query("SELECT 1").await.expect("query");
            }
            eprintln!(
                "sslmode={mode}: connect and one query in {:?}",
                started.elapsed() / 10
            );
        }

        let plain = open(with(&url, "sslmode=disable")).await.expect("open");
        assert!(
            !store_connection_is_encrypted(&plain).await,
            "the check tells plain connections apart"
        );
    }

    #[tokio::test]
    async fn a_read_only_database_answers_but_is_not_writable() {
        let Some(schema) = TestSchema::create().await else {
            return;
        };
        // One connection, so the session setting below holds for every operation.
        let store = PostgresStore::open(PostgresOptions {
            url: schema.url_with_search_path(),
            pool_size: 1,
            batch_max: 8,
            queue_max: 64,
        })
        .await
        .expect("open");
        let set_read_only = |on: bool| {
            pool::run(&store.pool, "set", move |client| {
                Box::pin(async move {
                    let value = if on { "on" } else { "off" };
                    client
                        .batch_execute(&format!(
                            "SET SESSION default_transaction_read_only = {value}"
                        ))
                        .await?;
                    Ok(())
                })
            })
        };
        store.writable().await.expect("writable");
        // Read-only, as on a standby or a primary during a failover.
        set_read_only(true).await.expect("read-only");
        store.ping().await.expect("reads still work");
        let error = store.writable().await.expect_err("read-only");
        assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
        assert!(error.to_string().contains("read-only"), "{error}");
        set_read_only(false).await.expect("writable again");
        store
            .writable()
            .await
            .expect("writable again, without a restart");
    }

    #[tokio::test]
    async fn verify_full_with_a_ca_that_did_not_sign_the_certificate_refuses_to_open() {
        let Some(schema) = TestSchema::create().await else {
            return;
        };
        let root = tls::tests::test_ca_path();
        for mode in ["verify-full", "verify-ca", "require"] {
            let started = Instant::now();
            let error = open(with(
                &schema.url_with_search_path(),
                &format!("sslmode={mode}&sslrootcert={}", root.display()),
            ))
            .await
            .err()
            .expect("a certificate the root did not sign");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{mode}: fails fast, not after a timeout: {:?}",
                started.elapsed()
            );
            let message = error.to_string();
            assert!(
                message.contains("the server's certificate is not signed by sslrootcert"),
                "{mode}: {message}"
            );
        }
    }

    #[tokio::test]
    async fn verify_ca_trusts_the_server_s_own_self_signed_certificate() {
        let Some(schema) = TestSchema::create().await else {
            return;
        };
        // The server's certificate file, read by this process: the test server's is Debian's
        // self-signed snakeoil certificate, which is its own CA.
        let client = connect(&schema.url).await.expect("connect");
        let row = client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .expect("ssl_cert_file");
        let cert_file: String = row.get(0);
        if std::fs::metadata(&cert_file).is_err() {
            eprintln!("skipped: the server's certificate {cert_file} is not readable here");
            return;
        }
        let url = with(
            &schema.url_with_search_path(),
            &format!("sslmode=verify-ca&sslrootcert={cert_file}"),
        );
        let store = open(url).await.expect("verify-ca passes");
        assert!(store_connection_is_encrypted(&store).await);
        assert!(store.ping().await.is_ok());

        // The certificate names a host (`localhost`, the machine's name), never 127.0.0.1.
        let by_address = with(
            &schema
                .url_with_search_path()
                .replacen("@localhost", "@127.0.0.1", 1),
            &format!("sslmode=verify-full&sslrootcert={cert_file}"),
        );
        if by_address.contains("@127.0.0.1") {
            let error = open(by_address).await.err().expect("the name is checked");
            let message = error.to_string();
            assert!(message.contains("does not name the host"), "{message}");
        }
        assert_eq!(
            open(with(&schema.url_with_search_path(), "sslmode=verify-ca"))
                .await
                .err()
                .map(|e| e.kind()),
            Some(StoreErrorKind::Internal),
            "verify-ca without sslrootcert is a configuration error"
        );
    }
}
