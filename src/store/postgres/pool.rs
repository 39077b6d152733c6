//! Connections and their faults: the connection settings a gateway needs, the deadline and
//! retries around every operation, and which failures are `Unavailable`.

use std::borrow::Cow;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object, Pool, PoolError};
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::tls::{TlsSettings, split_tls_parameters};
use crate::store::{StoreError, StoreErrorKind};

/// How long opening a connection may take before the operation fails as unavailable.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The deadline of one store operation (waiting for a connection, retries and all), and the
/// server-side `statement_timeout`. Intake answers 503 when it passes, so it is kept short.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection whose sent data goes unacknowledged this long (a dead network path) is closed
/// by the kernel, so no query can hang on it for ever.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Tries of an operation that lost a deadlock or serialization race (nothing was committed).
const TRIES: u32 = 3;

/// Why a database step failed: the database said so, or what it returned made no sense.
#[derive(Debug)]
pub(super) enum DbError {
    Pg(tokio_postgres::Error),
    Invalid(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::Pg(error)
    }
}

impl DbError {
    /// A deadlock or serialization failure: the transaction was rolled back and may simply be
    /// run again.
    fn is_retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, DbError::Pg(e) if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
            || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE))
    }

    fn into_store_error(self, op: &str) -> StoreError {
        match self {
            DbError::Pg(e) => classify(e, op),
            DbError::Invalid(message) => StoreError::internal(format!("{op}: {message}")),
        }
    }
}

/// Connection trouble, timeouts, lost races, a server shutting down or out of resources are
/// `Unavailable` (try again later); anything else the server rejected is a bug (`Internal`).
pub(super) fn classify(error: tokio_postgres::Error, op: &str) -> StoreError {
    // The error's own text is terse ("db error", "error connecting to server"); the server's
    // message or the I/O error is in its sources.
    if let Some(tls) = super::tls::explain(&error) {
        return StoreError::unavailable(format!("{op}: {tls}")).caused_by(error);
    }
    let mut message = format!("{op}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let kind = match error.code() {
        // 08 connection, 40 rollback (deadlock, serialization), 53 resources, 57 operator
        // intervention (statement timeout, shutdown), 58 system error; 25006: the database is
        // read-only for now (a standby, or a primary during a failover).
        Some(code) if matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58") => {
            StoreErrorKind::Unavailable
        }
        Some(code) if *code == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => {
            StoreErrorKind::Unavailable
        }
        Some(_) => StoreErrorKind::Internal,
        // No SQLSTATE: the server never answered (I/O, closed connection, connect timeout).
        // Conversions of what it returned are mapped to `DbError::Invalid` by `get`.
        None => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, message).caused_by(error)
}

fn pool_error(error: PoolError, op: &str) -> StoreError {
    match error {
        PoolError::Backend(e) => classify(e, op),
        PoolError::Timeout(_) => {
            StoreError::unavailable(format!("{op}: no database connection within the timeout"))
        }
        other => StoreError::unavailable(format!("{op}: {other}")).caused_by(other),
    }
}

/// Text as PostgreSQL can store it: `text` cannot hold U+0000, which a JSON key value or a
/// destination's error body may contain, so it becomes U+FFFD (as invalid UTF-8 does
/// elsewhere). Dedupe is unaffected: it compares the hashed key, computed from the original.
pub(super) fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A column as `T`, with a conversion failure as an error rather than a panic.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, DbError> {
    row.try_get(index)
        .map_err(|e| DbError::Invalid(format!("column {index}: {e}")))
}

pub(super) fn unsigned(value: i32) -> Result<u32, DbError> {
    u32::try_from(value).map_err(|_| DbError::Invalid(format!("negative count {value}")))
}

/// Runs `work` on a pooled connection within `OPERATION_TIMEOUT`, retrying lost deadlock races.
/// `work` may run more than once, so it takes what it needs by value for each run.
pub(super) async fn run<T, F>(pool: &Pool, op: &'static str, work: F) -> Result<T, StoreError>
where
    F: for<'c> Fn(&'c mut ClientWrapper) -> BoxFuture<'c, Result<T, DbError>> + Send + Sync,
{
    let started = Instant::now();
    let deadline = started + OPERATION_TIMEOUT;
    let timed_out = || {
        StoreError::unavailable(format!(
            "{op}: the database did not answer within {OPERATION_TIMEOUT:?}"
        ))
    };
    let mut client: Object = match tokio::time::timeout_at(deadline, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(pool_error(e, op)),
        Err(_) => return Err(timed_out()),
    };
    let mut tries = 0;
    let result = loop {
        tries += 1;
        match tokio::time::timeout_at(deadline, work(&mut client)).await {
            Ok(Err(e)) if e.is_retryable() && tries < TRIES => continue,
            Ok(result) => break result,
            Err(_) => {
                // The connection may be stuck on a dead network path, or mid-transaction: it is
                // closed here instead of going back to the pool. The idle ones most likely share
                // its path, and would each cost the next operations a full deadline to find out:
                // they are closed too, and fresh connections made as needed.
                drop(Object::take(client));
                drop(pool.retain(|_, _| false));
                return Err(timed_out());
            }
        }
    };
    crate::metrics::store_op(op, started.elapsed());
    result.map_err(|e| e.into_store_error(op))
}

/// Parses `store.url` and adds what a gateway needs: timeouts on connect, on statements and on
/// dead TCP paths, and an application name operators can see in `pg_stat_activity`. The TLS
/// parameters (`sslmode`, `sslrootcert`) come back apart, for `tls::connector`.
pub(super) fn connection_config(
    url: &str,
) -> Result<(tokio_postgres::Config, TlsSettings), StoreError> {
    let (url, tls) = split_tls_parameters(url)?;
    // The URL may hold a password: errors describe the problem, never echo the URL.
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        StoreError::internal(format!("store.url: not a PostgreSQL URL: {e}")).caused_by(e)
    })?;
    config.ssl_mode(tls.mode.driver_mode());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("oncehook");
    }
    let statement_timeout = format!("-c statement_timeout={}", OPERATION_TIMEOUT.as_millis());
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {statement_timeout}"),
        _ => statement_timeout,
    };
    config.options(options);
    Ok((config, tls))
}

#[cfg(test)]
mod tests {
    use tokio_postgres::NoTls;
    use tokio_postgres::config::SslMode;

    use super::*;

    #[test]
    fn connection_config_adds_timeouts_and_keeps_the_url_s_options() {
        let (config, _) =
            connection_config("postgres://u@db:5433/x?options=-c%20search_path%3Dt_1").expect("ok");
        assert_eq!(
            config.get_options(),
            Some("-c search_path=t_1 -c statement_timeout=5000")
        );
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_application_name(), Some("oncehook"));

        let (config, _) =
            connection_config("postgresql://u@db/x?connect_timeout=1&application_name=a")
                .expect("ok");
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)));
        assert_eq!(config.get_application_name(), Some("a"));
        assert_eq!(config.get_options(), Some("-c statement_timeout=5000"));
    }

    #[tokio::test]
    async fn errors_carry_the_cause() {
        // Nothing listens on port 1: the connection is refused at once.
        let error = tokio_postgres::connect("postgres://u@127.0.0.1:1/x", NoTls)
            .await
            .err()
            .expect("refused");
        let error = classify(error, "ping");
        assert_eq!(
            error.kind(),
            StoreErrorKind::Unavailable,
            "a refused connection is unavailable"
        );
        let message = error.message();
        assert!(message.starts_with("ping: "), "{message}");
        assert!(message.to_lowercase().contains("refused"), "{message}");
        assert!(
            std::error::Error::source(&error).is_some(),
            "the driver's error is kept"
        );
    }

    #[test]
    fn connection_config_errors_name_the_problem_not_the_password() {
        let (config, tls) =
            connection_config("postgres://u:hunter2@db/x?sslmode=verify-ca&sslrootcert=/ca.pem")
                .expect("libpq's TLS parameters are understood");
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(tls.mode, super::super::tls::SslMode::VerifyCa);
        let Err(error) = connection_config("postgres://u:hunter2@db/x?sslmode=on") else {
            panic!("an unknown sslmode must be refused");
        };
        assert!(error.to_string().contains("sslmode=on"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let Err(error) = connection_config("postgres://u:hunter2@db/x?bogus=1") else {
            panic!("an unknown parameter must be refused");
        };
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
