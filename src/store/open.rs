//! Opening a store: the options it takes from its caller (never the config file itself), and
//! the choice of backend by location.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Store, StoreError, postgres, sqlite};

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store: this SQLite file (created with its directory when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its `postgres://` URL.
    Postgres(String),
}

/// What opening a store needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    pub location: StoreLocation,
    /// Most writes committed by one transaction (group commit).
    pub batch_max: usize,
    /// Most writes waiting for the store; beyond it writes fail at once as `QueueFull`.
    pub queue_max: usize,
    /// Most connections this node opens (PostgreSQL only).
    pub pool_size: usize,
}

/// Opens the store at `options.location`, creating and migrating it as needed.
pub async fn open(options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    match options.location {
        StoreLocation::Sqlite(path) => {
            let options = sqlite::SqliteOptions {
                path,
                batch_max: options.batch_max,
                queue_max: options.queue_max,
            };
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(options))
                .await
                .map_err(|e| {
                    StoreError::internal(format!("opening the store failed: {e}")).caused_by(e)
                })??;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres(url) => {
            let store = postgres::PostgresStore::open(postgres::PostgresOptions {
                url,
                pool_size: options.pool_size,
                batch_max: options.batch_max,
                queue_max: options.queue_max,
            })
            .await?;
            Ok(Arc::new(store))
        }
    }
}
