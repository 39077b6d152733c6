//! `oncehook bench`: the load generator for real set-ups.
//!
//! It owns everything between "requests like a provider's" and "a latency histogram":
//! building and signing requests exactly as a source's provider would (through
//! [`Verifier::sign`]), pacing them (closed loop for maximum throughput, or open loop at a
//! constant arrival rate), a minimal HTTP/1.1 client, and the report.
//!
//! Two measurement rules shape the design:
//! - The generator must not be what is measured. Requests are serialized to their exact wire
//!   bytes, and in closed loop signed before the timed window, so that a request costs one
//!   `write` and one `read`; the client is a few dozen lines over a `TcpStream` rather than a
//!   general HTTP client, because a general client's per-request header maps and task
//!   hand-offs cost as much CPU as the server under test on a small machine.
//! - Open-loop latency is measured from each request's *intended* send time, so a server
//!   that stalls is charged for every request that should have been sent during the stall
//!   (no coordinated omission). Requests that were never sent by the end are reported.
//!
//! This module is the command itself: its arguments, the `Plan` settled before the first
//! request, and the run — the dispatcher thread that releases open-loop requests on time,
//! and the workers, one per connection, that send them and record what came back. The
//! parts they use live beside it, one concept each:
//! - `schedule`: when requests are due, and which ones repeat an earlier one;
//! - `requests`: what is sent, built and signed as the provider would;
//! - `http1`: the client that sends it and reads the status back;
//! - `report`: what the run found, as JSON or as text.

mod http1;
mod report;
mod requests;
mod schedule;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::verify::Verifier;

use http1::{Connection, exchange};
use report::{BenchReport, print_report, progress_bar, summarize};
use requests::{RequestFactory, presign, unix_micros, unix_seconds};
use schedule::{DuplicateMix, Schedule};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The intake base (`http://127.0.0.1:8080`) or a full webhook URL. Default: from the
    /// config's `server.listen` and `--source`. Plain HTTP only.
    #[arg(long)]
    url: Option<String>,
    /// A config file whose `--source` says how to sign (without it requests are unsigned).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The source to send as; requests go to `/webhooks/{source}` when `--url` has no path.
    #[arg(long)]
    source: Option<String>,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Load applied before measuring (connections opened, caches warm); not recorded.
    #[arg(long, default_value = "1s")]
    warmup: humantime::Duration,
    /// Size of each JSON body in bytes (padded with a filler field).
    #[arg(long, default_value_t = 1024)]
    body_size: usize,
    /// Fraction (0.0–1.0) of requests that repeat an earlier request byte for byte, as a
    /// retrying provider does; a gateway should answer those 200.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Open loop: requests per second, sent on schedule whether or not earlier ones were
    /// answered; latency counts from the scheduled time. Without it: closed loop, maximum
    /// throughput.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests (warm-up included); `--duration` is then an upper
    /// bound. For filling a store before a scale test.
    #[arg(long)]
    requests: Option<u64>,
    /// Give up on a request after this long (counted as an error).
    #[arg(long, default_value = "10s")]
    timeout: humantime::Duration,
    /// Memory allowed for requests signed before the window (closed loop); requests beyond
    /// it are signed as they are sent.
    #[arg(long, default_value = "256MiB")]
    presign_memory: bytesize::ByteSize,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_args(&args)?;
    let report = execute(plan).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(
        if report.requests > 0 && report.error_total == 0 && report.server_5xx == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Everything decided before the first request: where, what, how fast, how long.
struct Plan {
    target: Target,
    factory: RequestFactory,
    source: Option<String>,
    scheme: Option<String>,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    body_size: usize,
    duplicates: DuplicateMix,
    schedule: Option<Schedule>,
    request_limit: u64,
    timeout: Duration,
    presign_memory: u64,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        if !(0.0..=1.0).contains(&args.duplicates) {
            bail!("--duplicates must be between 0.0 and 1.0");
        }
        if args.connections == 0 {
            bail!("--connections must be at least 1");
        }
        let schedule = match args.rate {
            Some(rate) if rate.is_finite() && rate > 0.0 => Some(Schedule::new(rate)),
            Some(_) => bail!("--rate must be a positive number of requests per second"),
            None => None,
        };
        let config = match &args.config {
            Some(path) => Some(Config::load(path)?),
            None => None,
        };
        let source = match (&config, &args.source) {
            (Some(config), Some(name)) => Some(config.source(name).with_context(|| {
                let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "no source named {name:?} in the config (sources: {})",
                    known.join(", ")
                )
            })?),
            (Some(_), None) => bail!("--source is required with --config"),
            (None, _) => None,
        };
        let url = match (&args.url, &config) {
            (Some(url), _) => url.clone(),
            (None, Some(config)) => {
                let mut addr = config.server.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                }
                format!("http://{addr}")
            }
            (None, None) => bail!("--url is required without --config"),
        };
        let target = Target::parse(&url, args.source.as_deref())?;
        let verifier = match source {
            Some(source) => Some(
                Verifier::from_config(&source.verify)
                    .map_err(|e| anyhow::anyhow!("sources[{:?}].verify: {e}", source.name))?,
            ),
            None => None,
        };
        let factory = RequestFactory::new(&target, source, verifier, args.body_size)?;
        Ok(Plan {
            target,
            factory,
            source: args.source.clone(),
            scheme: source.map(|s| s.verify.scheme.to_string()),
            connections: args.connections,
            duration: *args.duration,
            warmup: *args.warmup,
            body_size: args.body_size,
            duplicates: DuplicateMix::new(args.duplicates),
            schedule,
            request_limit: args.requests.unwrap_or(u64::MAX),
            timeout: *args.timeout,
            presign_memory: args.presign_memory.as_u64(),
        })
    }
}

/// Where requests go: the resolved address, and the `Host` header and path to send.
struct Target {
    url: String,
    authority: String,
    path: String,
    addr: SocketAddr,
}

impl Target {
    fn parse(url: &str, source: Option<&str>) -> anyhow::Result<Target> {
        let uri: http::Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs are supported (got {url}); benchmark behind TLS termination");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {url}"))?
            .clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => match source {
                Some(source) => format!("/webhooks/{source}"),
                None => bail!("{url} has no path; pass a full webhook URL or --source"),
            },
            Some(path) => path.to_owned(),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Target {
            url: format!("http://{authority}{path}"),
            authority: authority.to_string(),
            path,
            addr,
        })
    }
}

/// State shared by the workers of one run.
struct Shared {
    target: SocketAddr,
    factory: RequestFactory,
    pool: Vec<Bytes>,
    duplicates: DuplicateMix,
    pacing: Pacing,
    request_limit: u64,
    next_index: AtomicU64,
    completed: AtomicU64,
    start: Instant,
    start_unix_us: u64,
    measure_from: Instant,
    end: Instant,
    /// Past it nothing new is sent (open loop: the backlog is reported as not sent).
    hard_deadline: Instant,
    timeout: Duration,
}

enum Pacing {
    Closed,
    Open {
        schedule: Schedule,
        /// One permit per request that is due; the dispatcher thread releases them on time.
        permits: Arc<Semaphore>,
        total: u64,
    },
}

/// What one worker saw; merged into the report at the end.
struct WorkerStats {
    latency_us: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    sent: u64,
    presigned: u64,
    signed_inline: u64,
}

impl WorkerStats {
    fn new() -> anyhow::Result<WorkerStats> {
        Ok(WorkerStats {
            // 1 µs to 1 h at three significant digits.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("cannot create a histogram")?,
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            sent: 0,
            presigned: 0,
            signed_inline: 0,
        })
    }

    fn merge(&mut self, other: WorkerStats) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .context("cannot merge histograms")?;
        for (status, count) in other.status {
            *self.status.entry(status).or_default() += count;
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.sent += other.sent;
        self.presigned += other.presigned;
        self.signed_inline += other.signed_inline;
        Ok(())
    }
}

async fn execute(plan: Plan) -> anyhow::Result<BenchReport> {
    let description = RunDescription {
        url: plan.target.url.clone(),
        source: plan.source.clone(),
        scheme: plan.scheme.clone(),
        rate: plan.schedule.map(|s| s.rate),
        connections: plan.connections,
        warmup: plan.warmup,
        body_size: plan.body_size,
        duplicate_ratio: plan.duplicates.ratio,
    };
    let run_length = plan.warmup + plan.duration;
    let pool = match plan.schedule {
        // Open loop signs as it sends: the body carries its scheduled send time, which is
        // only known once the clock starts, and at a fixed rate the cost is bounded.
        Some(_) => Vec::new(),
        None => {
            let sample = plan.factory.build(0, None, unix_seconds()).len() as u64;
            // Enough for 100k requests per second, within the memory allowance.
            let wanted = (run_length.as_secs_f64() * 100_000.0) as u64;
            let count = wanted
                .min(plan.presign_memory / sample.max(1))
                .min(plan.request_limit);
            let started = Instant::now();
            let pool = presign(&plan.factory, plan.duplicates, count);
            eprintln!(
                "pre-signed {} requests ({:.0} MiB) in {:.2}s",
                pool.len(),
                (pool.len() as u64 * sample) as f64 / (1024.0 * 1024.0),
                started.elapsed().as_secs_f64()
            );
            pool
        }
    };

    // A moment for every worker to be spawned before the first request is due.
    let start = Instant::now() + Duration::from_millis(20);
    let start_unix_us = unix_micros() + 20_000;
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let pacing = match plan.schedule {
        None => Pacing::Closed,
        Some(schedule) => Pacing::Open {
            schedule,
            permits: Arc::new(Semaphore::new(0)),
            total: schedule.total(run_length).min(plan.request_limit),
        },
    };
    let shared = Arc::new(Shared {
        target: plan.target.addr,
        factory: plan.factory,
        pool,
        duplicates: plan.duplicates,
        pacing,
        request_limit: plan.request_limit,
        next_index: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        start,
        start_unix_us,
        measure_from,
        end,
        hard_deadline: end + plan.timeout,
        timeout: plan.timeout,
    });

    let dispatcher_done = Arc::new(AtomicBool::new(false));
    let dispatcher = match &shared.pacing {
        Pacing::Closed => None,
        Pacing::Open {
            schedule,
            permits,
            total,
        } => {
            let (schedule, permits, total) = (*schedule, Arc::clone(permits), *total);
            let workers = plan.connections;
            let done = Arc::clone(&dispatcher_done);
            Some(std::thread::spawn(move || {
                dispatch(schedule, &permits, total, start, workers, &done)
            }))
        }
    };

    let progress = progress_bar(run_length);
    let ticker = {
        let shared = Arc::clone(&shared);
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            let mut last = (Instant::now(), 0u64);
            loop {
                interval.tick().await;
                let now = Instant::now();
                let completed = shared.completed.load(Ordering::Relaxed);
                let rate = (completed - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
                last = (now, completed);
                let elapsed = now.saturating_duration_since(shared.start);
                progress.set_position(elapsed.as_millis().min(u64::MAX as u128) as u64);
                progress.set_message(format!("{completed} requests, {rate:.0} req/s"));
            }
        })
    };

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.connections {
        let shared = Arc::clone(&shared);
        workers.spawn(async move { worker(shared).await });
    }
    let mut total = WorkerStats::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a worker panicked")??)?;
    }
    // A run cut short by `--requests` is measured over the time it took.
    let window = Instant::now()
        .min(shared.end)
        .saturating_duration_since(shared.measure_from);
    ticker.abort();
    progress.finish_and_clear();
    dispatcher_done.store(true, Ordering::Relaxed);
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.join();
    }

    let not_sent = match &shared.pacing {
        Pacing::Open { total: planned, .. } => planned.saturating_sub(total.sent),
        Pacing::Closed => 0,
    };
    Ok(summarize(&description, window, total, not_sent))
}

/// The settings a report repeats, taken from the plan before its parts move into the run.
struct RunDescription {
    url: String,
    source: Option<String>,
    scheme: Option<String>,
    rate: Option<f64>,
    connections: usize,
    warmup: Duration,
    body_size: usize,
    duplicate_ratio: f64,
}

/// Releases one permit per request as it falls due. A thread with `thread::sleep` rather
/// than a tokio timer: tokio's timer wheel has millisecond ticks, which would add up to a
/// millisecond of false latency to every request; sleeps of ~100 µs keep the schedule tight
/// without spinning.
fn dispatch(
    schedule: Schedule,
    permits: &Semaphore,
    total: u64,
    start: Instant,
    workers: usize,
    done: &AtomicBool,
) {
    let mut released = 0u64;
    while released < total && !done.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= start {
            let due = schedule.due_by(now - start).min(total);
            if due > released {
                permits.add_permits((due - released) as usize);
                released = due;
            }
        }
        let next_due = start + schedule.offset(released);
        let wait = next_due
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_micros(100), Duration::from_millis(5));
        std::thread::sleep(wait);
    }
    // One more permit per worker: each wakes, finds the schedule exhausted and stops.
    permits.add_permits(workers);
}

async fn worker(shared: Arc<Shared>) -> anyhow::Result<WorkerStats> {
    let mut stats = WorkerStats::new()?;
    let mut connection: Option<Connection> = None;
    // This worker's last unique request: what a retrying provider would send again. Its own,
    // so the original has been answered before the repeat goes out.
    let mut last_unique: Option<Bytes> = None;
    let now = Instant::now();
    if now < shared.start {
        tokio::time::sleep(shared.start - now).await;
    }
    loop {
        let (index, intended) = match &shared.pacing {
            Pacing::Closed => {
                let now = Instant::now();
                let index = shared.next_index.fetch_add(1, Ordering::Relaxed);
                if now >= shared.end || index >= shared.request_limit {
                    break;
                }
                (index, now)
            }
            Pacing::Open {
                schedule,
                permits,
                total,
            } => {
                match tokio::time::timeout_at(shared.hard_deadline.into(), permits.acquire()).await
                {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => break,
                }
                let index = shared.next_index.fetch_add(1, Ordering::Relaxed);
                if index >= *total || Instant::now() >= shared.hard_deadline {
                    break;
                }
                (index, shared.start + schedule.offset(index))
            }
        };
        let request = match (&last_unique, shared.duplicates.is_duplicate(index)) {
            (Some(previous), true) => previous.clone(),
            _ => {
                let request = match shared.pool.get(index as usize) {
                    Some(presigned) if !presigned.is_empty() => {
                        stats.presigned += 1;
                        presigned.clone()
                    }
                    _ => {
                        stats.signed_inline += 1;
                        let sent_at_us = match &shared.pacing {
                            Pacing::Open { schedule, .. } => {
                                shared.start_unix_us + schedule.offset(index).as_micros() as u64
                            }
                            Pacing::Closed => unix_micros(),
                        };
                        shared
                            .factory
                            .build(index, Some(sent_at_us), unix_seconds())
                    }
                };
                last_unique = Some(request.clone());
                request
            }
        };
        let started = Instant::now();
        stats.sent += 1;
        let outcome = tokio::time::timeout(
            shared.timeout,
            exchange(&mut connection, shared.target, &request),
        )
        .await;
        let finished = Instant::now();
        shared.completed.fetch_add(1, Ordering::Relaxed);
        let outcome = match outcome {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(kind)) => Err(kind.as_str()),
            Err(_) => Err("timeout"),
        };
        if outcome.is_err() {
            // A timed-out request leaves its response in flight: the connection is unusable.
            connection = None;
        }
        if intended < shared.measure_from {
            continue;
        }
        match outcome {
            Ok(status) => {
                let from = match shared.pacing {
                    Pacing::Open { .. } => intended,
                    Pacing::Closed => started,
                };
                let micros = finished.saturating_duration_since(from).as_micros();
                stats
                    .latency_us
                    .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
                *stats.status.entry(status).or_default() += 1;
            }
            Err(kind) => *stats.errors.entry(kind).or_default() += 1,
        }
    }
    Ok(stats)
}
