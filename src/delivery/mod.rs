//! Delivery: drains the outbox to every destination.
//!
//! Each destination has its own lane: a task that claims due deliveries from the store (under
//! a lease) and runs at most `concurrency` attempts at once. Lanes share nothing but the store
//! and the HTTP connection pool, so a hanging or failing destination only ever fills its own
//! lane. Claims are leased: if this node dies mid-attempt, the delivery becomes claimable
//! again when the lease runs out (at least once, with the same `Idempotency-Key`).
//!
//! Every claim goes through the destination's gate, shared by all nodes through the store: an
//! operator's pause, the circuit breaker and the outbound pace (`health` keeps what this node
//! knows of it between claims).

mod attempt;
mod capture;
mod transform;
mod transport;

pub use transform::{CompileError, RouteTransforms, Transform};
pub use transport::{Bus, Template, TemplateError};
mod health;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::HeaderMap;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::capture::ResponseCapture;
use crate::clock::{Clock, SystemClock};
use crate::domain::circuit::BreakerPolicy;
use crate::domain::gate::Gate;
use crate::domain::pace::Pace;
use crate::domain::retry::RetryPolicy;
use crate::privacy::{HiddenFields, PayloadCipher};
use crate::store::{GateClaim, LaneClaim, Store, millis};
use crate::verify::{SchemeName, Verifier, VerifyConfig};
use crate::wakeups::Wakeups;
use health::Health;

/// How long a lane with nothing due sleeps before looking again, when nobody wakes it.
/// Wake-ups from intake and from finished attempts make this matter only across nodes.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A lease outlives the attempt's timeout by this much, so a slow but live attempt is never
/// claimed twice.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
const QUEUE_DEPTH_INTERVAL: Duration = Duration::from_secs(5);
/// Deliveries a lane may hold claimed per sending slot (waiting to be sent, being sent, or
/// waiting for their outcome to commit).
const OPEN_PER_SLOT: usize = 4;

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
    /// Set for `nats://` and `amqp://` destinations; `None` is HTTP.
    pub bus: Option<Bus>,
    /// `rate_limit`: the pace deliveries start at, summed over every node.
    pub pace: Option<Pace>,
    /// `circuit_breaker` (None: turned off).
    pub breaker: Option<BreakerPolicy>,
    /// `response_capture`: values kept from a 2xx JSON answer (None: nothing is kept).
    pub response_capture: Option<ResponseCapture>,
}

impl Destination {
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
        ..VerifyConfig::default()
    })
}

/// What the delivery workers are built from, compiled from the config by `app`.
pub struct DeliveryParts {
    pub destinations: Vec<Destination>,
    pub cipher: Option<Arc<PayloadCipher>>,
    /// Scrubbed from the error texts destinations answer with.
    pub hidden_fields: Arc<HiddenFields>,
    /// The routes' `transform`s, by source and destination.
    pub transforms: RouteTransforms,
}

/// Starts one lane per destination and the queue-depth gauge on `tasks`. When `stop` is
/// cancelled, lanes stop claiming; attempts already started may finish within `grace`, and
/// the ones still running then hand their delivery back so it is due again at once.
pub fn spawn_workers(
    parts: DeliveryParts,
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
    let mut names = Vec::new();
    let transforms = Arc::new(parts.transforms);
    for destination in parts.destinations {
        let destination = Arc::new(destination);
        names.push(destination.name.to_string());
        let shared = LaneShared {
            wake: wakeups.lane(&destination.name),
            transport: Arc::new(transport::Transport::new(&destination, &client)),
            transforms: Arc::clone(&transforms),
            health: Health::new(Arc::clone(&destination.name), destination.breaker),
            destination,
            store: Arc::clone(&store),
            cipher: parts.cipher.clone(),
            hidden_fields: Arc::clone(&parts.hidden_fields),
            clock: Arc::new(SystemClock),
        };
        let lane = Lane::new(shared, stop.clone(), grace, tasks.clone());
        tasks.spawn(lane.run());
    }
    if let Some(announcements) = store.subscribe_to_new_work() {
        tasks.spawn(wake_on_announcements(
            announcements,
            Arc::clone(&wakeups),
            names.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(report_queue_depths(store, names, stop));
    Ok(())
}

/// Wakes the lane of each destination another node announced new work for (all of them when
/// the announcement names none, or when some were missed).
async fn wake_on_announcements(
    mut announcements: tokio::sync::broadcast::Receiver<Arc<str>>,
    wakeups: Arc<Wakeups>,
    destinations: Vec<String>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let announced = tokio::select! {
            _ = stop.cancelled() => return,
            announced = announcements.recv() => announced,
        };
        match announced {
            Ok(destination) if !destination.is_empty() => wakeups.wake(&destination),
            Ok(_) | Err(RecvError::Lagged(_)) => {
                for name in &destinations {
                    wakeups.wake(name);
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// What a lane and each of its attempts share.
pub(crate) struct LaneShared {
    destination: Arc<Destination>,
    /// How deliveries reach the destination (HTTP, NATS JetStream, RabbitMQ).
    transport: Arc<transport::Transport>,
    transforms: Arc<RouteTransforms>,
    store: Arc<dyn Store>,
    cipher: Option<Arc<PayloadCipher>>,
    /// Woken by intake (new deliveries) and by finished attempts (an ordering key may be free).
    wake: Arc<Notify>,
    hidden_fields: Arc<HiddenFields>,
    clock: Arc<dyn Clock>,
    /// What this node knows of the destination's gate, and its run of failures there.
    health: Health,
}

/// One destination's worker: claims due deliveries and runs at most `concurrency` attempts.
struct Lane {
    shared: Arc<LaneShared>,
    /// Bounds the requests open to the destination (its `concurrency`).
    sending: Arc<Semaphore>,
    /// Counts claimed deliveries until their outcome is committed, so a slow store holds the
    /// lane back instead of piling up unrecorded outcomes.
    open: Arc<Semaphore>,
    capacity: usize,
    stop: CancellationToken,
    grace: Duration,
    tasks: TaskTracker,
}

/// What one pass of a lane did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Attempts started (each waits for a sending slot).
    Started(usize),
    /// Nothing was due; look again after this long (or when woken).
    Idle(Duration),
    /// The store could not be asked; try again shortly.
    StoreFailed,
    /// The node is stopping.
    Stopped,
}

impl Lane {
    fn new(
        shared: LaneShared,
        stop: CancellationToken,
        grace: Duration,
        tasks: TaskTracker,
    ) -> Lane {
        let concurrency = shared.destination.concurrency.max(1);
        let capacity = concurrency.saturating_mul(OPEN_PER_SLOT);
        Lane {
            shared: Arc::new(shared),
            sending: Arc::new(Semaphore::new(concurrency)),
            open: Arc::new(Semaphore::new(capacity)),
            capacity,
            stop,
            grace,
            tasks,
        }
    }

    async fn run(self) {
        loop {
            match self.step().await {
                Step::Started(_) => {}
                Step::Idle(wait) => self.pause(wait).await,
                Step::StoreFailed => self.pause(Duration::from_secs(1)).await,
                Step::Stopped => return,
            }
        }
    }

    /// One pass: waits for room for one more claimed delivery, claims what the free sending
    /// slots can take at once and starts those attempts. If that found a backlog, it claims
    /// further rounds in the same pass: one store round trip then feeds several rounds of
    /// sends instead of one. A paced destination claims only what free slots send at once, so
    /// a delivery starts when its token is drawn, not later in a bunch.
    async fn step(&self) -> Step {
        let permit = tokio::select! {
            _ = self.stop.cancelled() => return Step::Stopped,
            permit = Arc::clone(&self.open).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Step::Stopped,
            },
        };
        let paced = self.shared.destination.pace.is_some();
        if paced {
            tokio::select! {
                _ = self.stop.cancelled() => return Step::Stopped,
                slot = self.sending.acquire() => drop(slot),
            }
        }
        let now_free = self
            .sending
            .available_permits()
            .clamp(1, self.open.available_permits() + 1);
        let Some(claim) = self.claim(now_free).await else {
            return Step::StoreFailed;
        };
        if claim.deliveries.is_empty() {
            drop(permit);
            return Step::Idle(self.idle_for(claim.gate).await);
        }
        let backlog = claim.gate == Gate::Open && !paced && claim.deliveries.len() == now_free;
        let mut permit = Some(permit);
        let mut started = self.start(claim.deliveries, &mut permit).await;
        let more = self.open.available_permits();
        if backlog
            && more > 0
            && let Some(claim) = self.claim(more).await
        {
            started += self.start(claim.deliveries, &mut permit).await;
        }
        Step::Started(started)
    }

    /// How long to wait after a claim that took nothing: until the gate opens (paused: until
    /// woken, or the next look), or until the next delivery is due.
    async fn idle_for(&self, gate: Gate) -> Duration {
        let now = self.shared.clock.now_millis();
        let until = |at: i64| Duration::from_millis(at.saturating_sub(now).max(1) as u64);
        match gate {
            Gate::Paused => IDLE_POLL,
            Gate::CircuitOpen { until: at } | Gate::RateLimited { until: at } => {
                until(at).min(IDLE_POLL)
            }
            Gate::Open | Gate::Probe => match self
                .shared
                .store
                .next_due_at(&self.shared.destination.name)
                .await
            {
                Ok(Some(due)) if due > now => until(due).min(IDLE_POLL),
                _ => IDLE_POLL,
            },
        }
    }

    /// Claims up to `limit` due deliveries through the destination's gate. Their lease covers
    /// the wait for a sending slot: the last of them may queue behind every delivery the lane
    /// already holds, one attempt per `concurrency` ahead of it. None when the store failed.
    async fn claim(&self, limit: usize) -> Option<LaneClaim> {
        let destination = &self.shared.destination;
        let held = self.capacity.saturating_sub(self.open.available_permits());
        let rounds = (held + limit)
            .div_ceil(destination.concurrency.max(1))
            .max(1);
        let now = self.shared.clock.now_millis();
        let lease = destination.lease() * u32::try_from(rounds).unwrap_or(u32::MAX);
        let lease_until = now.saturating_add(millis(lease));
        let request = GateClaim {
            destination: destination.name.to_string(),
            now,
            lease_until,
            limit,
            pace: destination.pace,
        };
        match self.shared.store.claim_through_gate(&request).await {
            Ok(claim) => {
                self.shared.health.observe(&claim.row);
                Some(claim)
            }
            Err(e) => {
                tracing::warn!(destination = %destination.name, error = %e, "claiming deliveries failed");
                None
            }
        }
    }

    /// Starts an attempt per claim; each waits for a sending slot. `permit` is the `open`
    /// permit the lane waited for; the others were free when claimed, and only the lane takes
    /// them, so they still are. Returns how many started.
    async fn start(
        &self,
        claims: Vec<crate::store::ClaimedDelivery>,
        permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> usize {
        let mut started = 0;
        for claim in claims {
            let held = match permit.take() {
                Some(permit) => permit,
                None => match Arc::clone(&self.open).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        let _ = self.shared.store.release_claim(&claim).await;
                        continue;
                    }
                },
            };
            let mut attempt = attempt::Attempt {
                lane: Arc::clone(&self.shared),
                claim,
                sending: None,
            };
            let (stop, grace, sending) = (self.stop.clone(), self.grace, Arc::clone(&self.sending));
            let store = Arc::clone(&self.shared.store);
            self.tasks.spawn(async move {
                // Claimed but not yet sent when the node stops: hand it back at once.
                tokio::select! {
                    _ = stop.cancelled() => {
                        if let Err(e) = store.release_claim(&attempt.claim).await {
                            tracing::warn!(event_id = %attempt.claim.event_id, error = %e,
                                "cannot release an unsent delivery; it is retried after its lease");
                        }
                    }
                    slot = sending.acquire_owned() => {
                        if let Ok(slot) = slot {
                            // Paused or opened while it waited: back unsent, no attempt spent.
                            if !attempt.claim.probe && attempt.lane.health.holds_back() {
                                if let Err(e) = store.release_claim(&attempt.claim).await {
                                    tracing::warn!(event_id = %attempt.claim.event_id, error = %e,
                                        "cannot hand back a held delivery; it is retried after its lease");
                                }
                            } else {
                                attempt.sending = Some(slot);
                                attempt.run_until_shutdown(stop, grace).await;
                            }
                        }
                    }
                }
                drop(held);
            });
            started += 1;
        }
        started
    }

    /// Sleeps for `wait`, or less if woken or stopped.
    async fn pause(&self, wait: Duration) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = self.shared.wake.notified() => {}
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

#[cfg(test)]
mod tests;
