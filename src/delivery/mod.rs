//! Delivery: drains the outbox to every destination.
//!
//! Each destination has its own lane: a task that claims due deliveries from the store (under
//! a lease) and runs at most `concurrency` attempts at once. Lanes share nothing but the store
//! and the HTTP connection pool, so a hanging or failing destination only ever fills its own
//! lane. Claims are leased: if this node dies mid-attempt, the delivery becomes claimable
//! again when the lease runs out (at least once, with the same `Idempotency-Key`).

mod attempt;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DestinationConfig};
use crate::domain::retry::RetryPolicy;
use crate::privacy::PayloadCipher;
use crate::store::{Store, millis, now_millis};
use crate::verify::{SchemeName, Verifier, VerifyConfig};

/// How long a lane with nothing due sleeps before looking again, when nobody wakes it.
/// Wake-ups from intake and from finished attempts make this matter only across nodes.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A lease outlives the attempt's timeout by this much, so a slow but live attempt is never
/// claimed twice.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
const QUEUE_DEPTH_INTERVAL: Duration = Duration::from_secs(5);

/// A destination as workers use it: its config compiled once.
pub struct Destination {
    pub name: Arc<str>,
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub policy: RetryPolicy,
    pub concurrency: usize,
    /// Signs deliveries the Standard Webhooks way when `signing_secret` is set.
    pub signer: Option<Verifier>,
    pub headers: HeaderMap,
}

impl Destination {
    pub fn build(config: &DestinationConfig) -> anyhow::Result<Destination> {
        let context = || format!("destination {:?}", config.name);
        let url = reqwest::Url::parse(&config.url).with_context(context)?;
        let signer = match &config.signing_secret {
            Some(secret) => Some(signing_verifier(secret).with_context(context)?),
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).with_context(context)?,
                HeaderValue::from_str(value).with_context(context)?,
            );
        }
        Ok(Destination {
            name: Arc::from(config.name.as_str()),
            url,
            timeout: config.timeout,
            policy: RetryPolicy {
                base: config.backoff.base,
                max: config.backoff.max,
                max_attempts: config.max_attempts,
            },
            concurrency: config.concurrency,
            signer,
            headers,
        })
    }

    fn lease(&self) -> Duration {
        self.timeout + LEASE_MARGIN
    }
}

/// The Standard Webhooks signer for a destination's `signing_secret` (`whsec_…`).
pub fn signing_verifier(secret: &str) -> Result<Verifier, crate::verify::VerifyConfigError> {
    Verifier::from_config(&VerifyConfig {
        scheme: SchemeName::Standard,
        secrets: vec![secret.to_owned()],
        tolerance: None,
        header: None,
        algorithm: None,
        encoding: None,
        prefix: None,
    })
}

/// Per-destination wake-ups: intake rings after it commits new deliveries, attempts ring when
/// they finish, so lanes do not wait for their poll interval.
#[derive(Default)]
pub struct Wakeups {
    lanes: HashMap<String, Arc<Notify>>,
}

impl Wakeups {
    pub fn new(config: &Config) -> Wakeups {
        let lanes = config
            .destinations
            .iter()
            .map(|d| (d.name.clone(), Arc::new(Notify::new())))
            .collect();
        Wakeups { lanes }
    }

    pub fn wake(&self, destination: &str) {
        if let Some(notify) = self.lanes.get(destination) {
            notify.notify_one();
        }
    }

    fn lane(&self, destination: &str) -> Arc<Notify> {
        self.lanes.get(destination).cloned().unwrap_or_default()
    }
}

/// Starts one lane per destination and the queue-depth gauge on `tasks`. When `stop` is
/// cancelled, lanes stop claiming; attempts already started may finish within `grace`, and
/// the ones still running then hand their delivery back so it is due again at once.
pub fn spawn_workers(
    config: &Config,
    store: Arc<dyn Store>,
    wakeups: Arc<Wakeups>,
    tasks: &TaskTracker,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("oncehook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let cipher = config.payload_cipher().map(Arc::new);
    let mut names = Vec::new();
    for destination_config in &config.destinations {
        let destination = Arc::new(Destination::build(destination_config)?);
        names.push(destination.name.to_string());
        let lane = Lane {
            destination,
            store: Arc::clone(&store),
            client: client.clone(),
            cipher: cipher.clone(),
            wake: wakeups.lane(&destination_config.name),
            stop: stop.clone(),
            grace,
            tasks: tasks.clone(),
        };
        tasks.spawn(lane.run());
    }
    tasks.spawn(report_queue_depths(store, names, stop));
    Ok(())
}

struct Lane {
    destination: Arc<Destination>,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    cipher: Option<Arc<PayloadCipher>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    grace: Duration,
    tasks: TaskTracker,
}

impl Lane {
    async fn run(self) {
        let permits = Arc::new(Semaphore::new(self.destination.concurrency));
        loop {
            // Wait for a free slot first: claiming what cannot be sent yet would only hold leases.
            let permit = tokio::select! {
                _ = self.stop.cancelled() => return,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let free = permits.available_permits() + 1;
            let now = now_millis();
            let lease_until = now.saturating_add(millis(self.destination.lease()));
            let claims = match self
                .store
                .claim_due_deliveries(&self.destination.name, now, lease_until, free)
                .await
            {
                Ok(claims) => claims,
                Err(e) => {
                    tracing::warn!(destination = %self.destination.name, error = %e, "claiming deliveries failed");
                    drop(permit);
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claims.is_empty() {
                drop(permit);
                let wait = match self.store.next_due_at(&self.destination.name).await {
                    Ok(Some(due)) if due > now => {
                        Duration::from_millis((due - now) as u64).min(IDLE_POLL)
                    }
                    _ => IDLE_POLL,
                };
                self.pause(wait).await;
                continue;
            }
            let mut permit = Some(permit);
            for claim in claims {
                // The first claim takes the permit we waited for; the rest were free when we
                // claimed and only this loop takes permits, so they are still free.
                let slot = match permit.take() {
                    Some(permit) => permit,
                    None => match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => permit,
                        Err(_) => {
                            let _ = self.store.release_claim(&claim).await;
                            continue;
                        }
                    },
                };
                let attempt = attempt::Attempt {
                    destination: Arc::clone(&self.destination),
                    store: Arc::clone(&self.store),
                    client: self.client.clone(),
                    cipher: self.cipher.clone(),
                    wake: Arc::clone(&self.wake),
                    claim,
                };
                let (stop, grace) = (self.stop.clone(), self.grace);
                self.tasks.spawn(async move {
                    attempt.run_until_shutdown(stop, grace).await;
                    drop(slot);
                });
            }
        }
    }

    /// Sleeps for `wait`, or less if woken or stopped.
    async fn pause(&self, wait: Duration) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn report_queue_depths(
    store: Arc<dyn Store>,
    destinations: Vec<String>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(QUEUE_DEPTH_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.queue_depths().await {
            Ok(depths) => {
                for name in &destinations {
                    let depth = depths
                        .iter()
                        .find(|(d, _)| d == name)
                        .map_or(0, |(_, n)| *n);
                    crate::metrics::queue_depth(name, depth);
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading queue depths failed"),
        }
    }
}
