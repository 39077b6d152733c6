//! Wires a node together: the store, intake, the admin listener and background tasks.
//!
//! `build` turns the config into runtime pieces once (`runtime.rs`); every subsystem takes those
//! pieces and none of them sees `Config`.
//!
//! Listeners are bound in `build` and the shutdown signal is a parameter of `run`, so tests run
//! the same code as `oncehook serve` on port-0 listeners with a token they cancel themselves.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::{self, Config};
use crate::delivery;
use crate::intake::{self, Intake};
use crate::store::{self, Store, StoreLocation, StoreOptions};
use crate::wakeups::Wakeups;

mod import;
mod runtime;
mod stats_sharing;
mod upkeep;

pub use runtime::Runtime;
use upkeep::Upkeep;

/// Which parts of the work this node does when several nodes share one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Intake,
    Worker,
}

pub struct App {
    runtime: Runtime,
    role: Role,
    store: Arc<dyn Store>,
    intake_listener: Option<TcpListener>,
    admin_listener: TcpListener,
}

/// The store's options, from the config's `[store]` section.
fn store_options(config: &Config) -> anyhow::Result<StoreOptions> {
    let location = match config.store_location().map_err(anyhow::Error::msg)? {
        config::StoreLocation::Sqlite(path) => StoreLocation::Sqlite(path),
        config::StoreLocation::Postgres(url) => StoreLocation::Postgres(url),
    };
    Ok(StoreOptions {
        location,
        batch_max: config.store.batch_max,
        queue_max: config.store.queue_max,
        pool_size: config.store.pool_size,
    })
}

impl App {
    pub async fn build(config: Config, role: Role) -> anyhow::Result<App> {
        let runtime = Runtime::build(&config)?;
        // The store's error already reads with its cause; chained, the cause would print twice.
        let store = store::open(store_options(&config)?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
        let intake_listener = if role == Role::Worker {
            None
        } else {
            Some(bind(runtime.intake_listen, "server.listen").await?)
        };
        let admin_listener = bind(runtime.admin_listen, "admin.listen").await?;
        Ok(App {
            runtime,
            role,
            store,
            intake_listener,
            admin_listener,
        })
    }

    pub fn intake_addr(&self) -> Option<SocketAddr> {
        self.intake_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.local_addr().ok()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        crate::metrics::install();
        let tasks = TaskTracker::new();

        let runtime = self.runtime;
        let upkeep = Upkeep::new(runtime.retention.clone());
        tasks.spawn(upkeep.run(Arc::clone(&self.store), shutdown.clone()));
        tasks.spawn(stats_sharing::run(
            Arc::clone(&self.store),
            shutdown.clone(),
        ));

        let limits = runtime.http_limits;
        let grace = runtime.shutdown_grace;
        let wakeups = Arc::new(Wakeups::new(
            runtime.delivery.destinations.iter().map(|d| &*d.name),
        ));
        if matches!(self.role, Role::All | Role::Worker) {
            delivery::spawn_workers(
                runtime.delivery,
                Arc::clone(&self.store),
                Arc::clone(&wakeups),
                &tasks,
                shutdown.clone(),
                grace,
            )?;
        }

        if let Some(listener) = self.intake_listener {
            let intake = Arc::new(Intake::new(
                runtime.intake,
                Arc::clone(&self.store),
                Arc::clone(&wakeups),
                shutdown.clone(),
            ));
            let router = intake::router(intake);
            let stop = shutdown.clone();
            tracing::info!(addr = %listener.local_addr()?, role = ?self.role, "intake listening");
            tasks.spawn(crate::server::serve(listener, router, limits, stop, grace));
        }

        let admin_router = admin::router(AdminState::new(
            runtime.admin,
            Arc::clone(&self.store),
            Arc::clone(&wakeups),
        ));
        let stop = shutdown.clone();
        tracing::info!(addr = %self.admin_listener.local_addr()?, "admin listening");
        let admin_listener = self.admin_listener;
        tasks.spawn(crate::server::serve(
            admin_listener,
            admin_router,
            limits,
            stop,
            grace,
        ));

        tasks.close();
        shutdown.cancelled().await;
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("shutdown grace period over; stopping with work still in flight");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}
