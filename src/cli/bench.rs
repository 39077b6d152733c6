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

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::config::{Config, SourceConfig};
use crate::domain::key::KeyPart;
use crate::domain::pointer::JsonPointer;
use crate::verify::Verifier;

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

/// The whole run, as `--json` prints it and `bench/run` stores it.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub url: String,
    pub source: Option<String>,
    pub scheme: Option<String>,
    pub mode: &'static str,
    pub offered_rate: Option<f64>,
    pub connections: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub body_size: usize,
    pub duplicate_ratio: f64,
    /// Responses to requests scheduled (or sent) inside the measured window.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub status: BTreeMap<u16, u64>,
    pub accepted_202: u64,
    pub duplicate_200: u64,
    pub other_2xx: u64,
    pub client_4xx: u64,
    pub server_5xx: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub error_total: u64,
    /// Open loop only: scheduled requests the generator could not send before the deadline.
    pub not_sent: u64,
    pub latency_us: LatencySummary,
    pub presigned: u64,
    pub signed_inline: u64,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
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

/// Which requests repeat an earlier one. Spread evenly and deterministically (the n-th
/// request is a repeat when ⌊(n+1)·ratio⌋ > ⌊n·ratio⌋), so a ratio is exact over any run
/// length and two runs with the same settings send the same mix.
#[derive(Debug, Clone, Copy)]
struct DuplicateMix {
    ratio: f64,
}

impl DuplicateMix {
    fn new(ratio: f64) -> DuplicateMix {
        DuplicateMix {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    fn is_duplicate(&self, index: u64) -> bool {
        if self.ratio <= 0.0 {
            return false;
        }
        let before = (index as f64 * self.ratio).floor();
        let after = ((index + 1) as f64 * self.ratio).floor();
        after > before
    }
}

/// The open-loop schedule: request `n` is due `n / rate` seconds after the start.
///
/// Integer arithmetic (the rate in thousandths of a request per second) so that `offset` and
/// `due_by` agree exactly: a request is never released before its own scheduled time.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    rate: f64,
    rate_milli: u128,
}

const NANOS_PER_SEC_MILLI: u128 = 1_000_000_000 * 1_000;

impl Schedule {
    fn new(rate: f64) -> Schedule {
        Schedule {
            rate,
            rate_milli: ((rate * 1_000.0).round() as u128).max(1),
        }
    }

    fn offset(&self, index: u64) -> Duration {
        let nanos = (index as u128 * NANOS_PER_SEC_MILLI).div_ceil(self.rate_milli);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many requests are due at `elapsed` (request 0 is due at once).
    fn due_by(&self, elapsed: Duration) -> u64 {
        let due = elapsed.as_nanos() * self.rate_milli / NANOS_PER_SEC_MILLI + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    /// Requests scheduled in a run of `length`.
    fn total(&self, length: Duration) -> u64 {
        let total = (length.as_nanos() * self.rate_milli).div_ceil(NANOS_PER_SEC_MILLI);
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

/// Builds request `n`: a unique JSON body padded to size, signed as the source's provider
/// would sign it, serialized to its exact wire bytes.
struct RequestFactory {
    head: Vec<u8>,
    run_id: String,
    verifier: Option<Verifier>,
    /// Body fields the source's key reads; each request gets its own value in each.
    json_key_pointers: Vec<JsonPointer>,
    email_key_pointers: Vec<JsonPointer>,
    /// Key headers the provider's signature does not already carry (e.g. `Idempotency-Key`).
    extra_key_headers: Vec<HeaderName>,
    body_size: usize,
}

impl RequestFactory {
    fn new(
        target: &Target,
        source: Option<&SourceConfig>,
        verifier: Option<Verifier>,
        body_size: usize,
    ) -> anyhow::Result<RequestFactory> {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nUser-Agent: oncehook-bench\r\n",
            target.path, target.authority
        )
        .into_bytes();
        let mut factory = RequestFactory {
            head,
            run_id: uuid::Uuid::now_v7().simple().to_string(),
            verifier,
            json_key_pointers: Vec::new(),
            email_key_pointers: Vec::new(),
            extra_key_headers: Vec::new(),
            body_size,
        };
        let Some(source) = source else {
            return Ok(factory);
        };
        let signed: Vec<HeaderName> = match &factory.verifier {
            Some(verifier) => verifier
                .sign(b"{}", "msg_probe", 0)
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            None => Vec::new(),
        };
        let spec = source.key_spec().map_err(anyhow::Error::msg)?;
        for part in spec.alternatives.iter().flat_map(|a| &a.parts) {
            match part {
                KeyPart::Header(name) if !signed.contains(name) => {
                    factory.extra_key_headers.push(name.clone())
                }
                KeyPart::Json(pointer) if pointer.as_str() != "/id" => {
                    factory.json_key_pointers.push(pointer.clone())
                }
                KeyPart::Email(pointer) => factory.email_key_pointers.push(pointer.clone()),
                _ => {}
            }
        }
        Ok(factory)
    }

    /// The wire bytes of request `index`. `sent_at_us` goes into the body for end-to-end
    /// timing (the sink subtracts it from the delivery time); it is left out of requests
    /// signed before the window, whose send time is not known when they are built.
    fn build(&self, index: u64, sent_at_us: Option<u64>, now_unix: i64) -> Bytes {
        let message_id = format!("msg_{}_{index}", self.run_id);
        let event_id = format!("evt_{}_{index}", self.run_id);
        let mut body = Map::new();
        body.insert("id".into(), Value::String(event_id.clone()));
        body.insert("type".into(), Value::String("bench.event".into()));
        if let Some(sent_at_us) = sent_at_us {
            body.insert("sent_at_us".into(), Value::from(sent_at_us));
        }
        let mut body = Value::Object(body);
        for pointer in &self.json_key_pointers {
            set_pointer(&mut body, pointer, Value::String(event_id.clone()));
        }
        for pointer in &self.email_key_pointers {
            let email = format!("bench+{}.{index}@example.com", self.run_id);
            set_pointer(&mut body, pointer, Value::String(email));
        }
        let body = pad_json(
            serde_json::to_vec(&body).unwrap_or_default(),
            self.body_size,
        );

        let mut wire = Vec::with_capacity(self.head.len() + 512 + body.len());
        wire.extend_from_slice(&self.head);
        if let Some(verifier) = &self.verifier {
            for (name, value) in verifier.sign(&body, &message_id, now_unix) {
                push_header(&mut wire, &name, &value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&message_id) {
            for name in &self.extra_key_headers {
                push_header(&mut wire, name, &value);
            }
        }
        wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        wire.extend_from_slice(&body);
        Bytes::from(wire)
    }
}

fn push_header(wire: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    wire.extend_from_slice(name.as_str().as_bytes());
    wire.extend_from_slice(b": ");
    wire.extend_from_slice(value.as_bytes());
    wire.extend_from_slice(b"\r\n");
}

/// Grows a serialized JSON object to `size` bytes with a `"pad"` member (never shrinks it).
fn pad_json(mut json: Vec<u8>, size: usize) -> Vec<u8> {
    // What the member adds once the closing brace is taken off: `,"pad":"` + fill + `"}`.
    const MEMBER: usize = r#","pad":""}"#.len();
    if json.last() != Some(&b'}') || json.len() - 1 + MEMBER > size {
        return json;
    }
    json.pop();
    let fill = size - json.len() - MEMBER;
    json.extend_from_slice(br#","pad":""#);
    json.resize(json.len() + fill, b'x');
    json.extend_from_slice(b"\"}");
    json
}

/// Sets `pointer` in `root`, creating objects on the way; leaves arrays and scalars alone.
fn set_pointer(root: &mut Value, pointer: &JsonPointer, value: Value) {
    let tokens: Vec<&str> = pointer.tokens().collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut node = root;
    for token in parents {
        let Value::Object(map) = node else { return };
        node = map
            .entry((*token).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = node {
        map.insert((*last).to_owned(), value);
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Signs the first `count` requests (skipping the ones that will be repeats) on every core,
/// before the clock starts.
fn presign(factory: &RequestFactory, duplicates: DuplicateMix, count: u64) -> Vec<Bytes> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let now = unix_seconds();
    let chunk = count.div_ceil(threads.max(1)).max(1);
    let mut pool = Vec::with_capacity(count as usize);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|from| {
                let to = (from + chunk).min(count);
                scope.spawn(move || {
                    (from..to)
                        .map(|index| {
                            if duplicates.is_duplicate(index) {
                                Bytes::new()
                            } else {
                                factory.build(index, None, now)
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            pool.extend(handle.join().unwrap_or_default());
        }
    });
    pool
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

/// One keep-alive connection and the bytes read past the last response.
struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    /// Whether a response was already read on it (an idle close is then retried once).
    reused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExchangeError {
    Connect,
    Io,
    BadResponse,
}

impl ExchangeError {
    fn as_str(self) -> &'static str {
        match self {
            ExchangeError::Connect => "connect",
            ExchangeError::Io => "io",
            ExchangeError::BadResponse => "bad_response",
        }
    }
}

/// Sends one request and reads its response, opening a connection if there is none. A
/// reused connection that turns out to have been closed by the server while idle is
/// replaced and the request sent again, as every HTTP client does.
async fn exchange(
    connection: &mut Option<Connection>,
    target: SocketAddr,
    request: &[u8],
) -> Result<u16, ExchangeError> {
    for attempt in 0..2 {
        if connection.is_none() {
            let stream = TcpStream::connect(target)
                .await
                .map_err(|_| ExchangeError::Connect)?;
            let _ = stream.set_nodelay(true);
            *connection = Some(Connection {
                stream,
                buffer: BytesMut::with_capacity(8 * 1024),
                reused: false,
            });
        }
        let Some(conn) = connection.as_mut() else {
            return Err(ExchangeError::Connect);
        };
        match round_trip(conn, request).await {
            Ok((status, keep_alive)) => {
                conn.reused = true;
                if !keep_alive {
                    *connection = None;
                }
                return Ok(status);
            }
            Err(RoundTripError::ClosedBeforeResponse) if conn.reused && attempt == 0 => {
                *connection = None;
            }
            Err(RoundTripError::ClosedBeforeResponse | RoundTripError::Io) => {
                *connection = None;
                return Err(ExchangeError::Io);
            }
            Err(RoundTripError::Bad) => {
                *connection = None;
                return Err(ExchangeError::BadResponse);
            }
        }
    }
    Err(ExchangeError::Io)
}

enum RoundTripError {
    ClosedBeforeResponse,
    Io,
    Bad,
}

async fn round_trip(conn: &mut Connection, request: &[u8]) -> Result<(u16, bool), RoundTripError> {
    if conn.stream.write_all(request).await.is_err() {
        return Err(if conn.buffer.is_empty() {
            RoundTripError::ClosedBeforeResponse
        } else {
            RoundTripError::Io
        });
    }
    let mut read_any = false;
    loop {
        match parse_response(&conn.buffer) {
            Ok(Some(response)) => {
                conn.buffer.advance(response.consumed);
                return Ok((response.status, response.keep_alive));
            }
            Ok(None) => {}
            Err(ParseError::UntilClose) => {
                // A body delimited by the end of the connection: read it out and drop it.
                let mut sink = Vec::new();
                let _ = conn.stream.read_to_end(&mut sink).await;
                let status = parse_status_line(&conn.buffer).ok_or(RoundTripError::Bad)?;
                return Ok((status, false));
            }
            Err(ParseError::Invalid) => return Err(RoundTripError::Bad),
        }
        conn.buffer.reserve(8 * 1024);
        match conn.stream.read_buf(&mut conn.buffer).await {
            Ok(0) if !read_any => return Err(RoundTripError::ClosedBeforeResponse),
            Ok(0) | Err(_) => return Err(RoundTripError::Io),
            Ok(_) => read_any = true,
        }
    }
}

/// A complete response at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
struct ParsedResponse {
    status: u16,
    /// Bytes of the buffer it took, headers and body.
    consumed: usize,
    keep_alive: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum ParseError {
    /// No length and not chunked: the body runs to the end of the connection.
    UntilClose,
    Invalid,
}

/// Parses one HTTP/1.1 response (`Content-Length` or chunked); `Ok(None)` when more bytes
/// are needed.
fn parse_response(buffer: &[u8]) -> Result<Option<ParsedResponse>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ParseError::Invalid),
    };
    let status = response.code.ok_or(ParseError::Invalid)?;
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(|_| ParseError::Invalid)?;
            content_length = Some(
                text.trim()
                    .parse::<usize>()
                    .map_err(|_| ParseError::Invalid)?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header
                .value
                .split(|&b| b == b',')
                .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.trim_ascii().eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"keep-alive")
            {
                keep_alive = true;
            }
        }
    }
    let body = &buffer[head_len..];
    let body_len = if chunked {
        match chunked_length(body)? {
            Some(len) => len,
            None => return Ok(None),
        }
    } else if let Some(len) = content_length {
        if body.len() < len {
            return Ok(None);
        }
        len
    } else if status < 200 || status == 204 || status == 304 {
        0
    } else {
        return Err(ParseError::UntilClose);
    };
    Ok(Some(ParsedResponse {
        status,
        consumed: head_len + body_len,
        keep_alive,
    }))
}

/// The length of a complete chunked body (with its trailers) at the front of `body`.
fn chunked_length(body: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut at = 0;
    loop {
        let Some(line_end) = find_crlf(&body[at..]) else {
            return Ok(None);
        };
        let line = &body[at..at + line_end];
        let size_text = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or(line)
            .trim_ascii();
        let size_text = std::str::from_utf8(size_text).map_err(|_| ParseError::Invalid)?;
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ParseError::Invalid)?;
        at += line_end + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(end) = find_crlf(&body[at..]) else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

fn parse_status_line(buffer: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(buffer).ok()?;
    response.code
}

fn progress_bar(length: Duration) -> indicatif::ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(length.as_millis().min(u64::MAX as u128) as u64),
        target,
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {percent:>3}% {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn summarize(
    run: &RunDescription,
    duration: Duration,
    stats: WorkerStats,
    not_sent: u64,
) -> BenchReport {
    let count = |predicate: &dyn Fn(u16) -> bool| -> u64 {
        stats
            .status
            .iter()
            .filter(|(status, _)| predicate(**status))
            .map(|(_, count)| count)
            .sum()
    };
    let responses: u64 = stats.status.values().sum();
    let error_total: u64 = stats.errors.values().sum();
    let histogram = &stats.latency_us;
    BenchReport {
        url: run.url.clone(),
        source: run.source.clone(),
        scheme: run.scheme.clone(),
        mode: if run.rate.is_some() { "open" } else { "closed" },
        offered_rate: run.rate,
        connections: run.connections,
        duration_secs: duration.as_secs_f64(),
        warmup_secs: run.warmup.as_secs_f64(),
        body_size: run.body_size,
        duplicate_ratio: run.duplicate_ratio,
        requests: responses + error_total,
        requests_per_sec: responses as f64 / duration.as_secs_f64().max(1e-9),
        accepted_202: count(&|s| s == 202),
        duplicate_200: count(&|s| s == 200),
        other_2xx: count(&|s| (200..300).contains(&s) && s != 200 && s != 202),
        client_4xx: count(&|s| (400..500).contains(&s)),
        server_5xx: count(&|s| s >= 500),
        status: stats.status.clone(),
        errors: stats.errors.clone(),
        error_total,
        not_sent,
        latency_us: LatencySummary {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        },
        presigned: stats.presigned,
        signed_inline: stats.signed_inline,
    }
}

fn print_report(report: &BenchReport) {
    let mode = match report.offered_rate {
        Some(rate) => format!("open loop at {rate:.0} req/s"),
        None => "closed loop (maximum throughput)".to_owned(),
    };
    println!(
        "{} — {}, {} connections, {:.0}s (+{:.0}s warm-up), {} B bodies, {:.0}% duplicates",
        report.url,
        mode,
        report.connections,
        report.duration_secs,
        report.warmup_secs,
        report.body_size,
        report.duplicate_ratio * 100.0
    );
    println!(
        "  throughput  {:.0} req/s ({} responses)",
        report.requests_per_sec,
        report.requests - report.error_total
    );
    println!(
        "  status      202: {}  200: {}  other 2xx: {}  4xx: {}  5xx: {}  errors: {}{}",
        report.accepted_202,
        report.duplicate_200,
        report.other_2xx,
        report.client_4xx,
        report.server_5xx,
        report.error_total,
        if report.errors.is_empty() {
            String::new()
        } else {
            format!(" {:?}", report.errors)
        }
    );
    if report.not_sent > 0 {
        println!(
            "  not sent    {} scheduled requests (the server could not keep up)",
            report.not_sent
        );
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let l = &report.latency_us;
    println!(
        "  latency     p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms{}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        if report.offered_rate.is_some() {
            " (from intended send time)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_mix_is_exact_and_spread_out() {
        for (ratio, expected) in [(0.0, 0), (0.1, 100), (0.25, 250), (0.5, 500), (1.0, 1000)] {
            let mix = DuplicateMix::new(ratio);
            let repeats = (0..1000).filter(|&i| mix.is_duplicate(i)).count();
            assert_eq!(repeats, expected, "ratio {ratio}");
        }
        // At 10% exactly one in every ten consecutive requests repeats, never a burst.
        let mix = DuplicateMix::new(0.1);
        for window in 0..100 {
            let repeats = (window * 10..window * 10 + 10)
                .filter(|&i| mix.is_duplicate(i))
                .count();
            assert_eq!(repeats, 1);
        }
        // The first request has nothing to repeat.
        assert!(!DuplicateMix::new(0.5).is_duplicate(0));
        assert!(!DuplicateMix::new(-3.0).is_duplicate(7));
    }

    #[test]
    fn open_loop_schedule_is_evenly_spaced() {
        let schedule = Schedule::new(2_000.0);
        assert_eq!(schedule.offset(0), Duration::ZERO);
        assert_eq!(schedule.offset(1), Duration::from_micros(500));
        assert_eq!(schedule.offset(2_000), Duration::from_secs(1));
        assert_eq!(schedule.due_by(Duration::ZERO), 1);
        assert_eq!(schedule.due_by(Duration::from_micros(499)), 1);
        assert_eq!(schedule.due_by(Duration::from_micros(500)), 2);
        assert_eq!(schedule.total(Duration::from_secs(3)), 6_000);
        // Every request is due no earlier than its offset.
        for index in 0..5_000 {
            assert!(schedule.due_by(schedule.offset(index)) > index);
        }
    }

    #[test]
    fn bodies_are_padded_to_size() {
        let padded = pad_json(br#"{"id":"a"}"#.to_vec(), 100);
        assert_eq!(padded.len(), 100);
        let value: Value = serde_json::from_slice(&padded).expect("still JSON");
        assert_eq!(value["id"], "a");
        // Too small to pad: left as it is.
        assert_eq!(pad_json(br#"{"id":"a"}"#.to_vec(), 12), br#"{"id":"a"}"#);
    }

    #[test]
    fn responses_parse_by_length_and_by_chunks() {
        let fixed = b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(
            parse_response(fixed),
            Ok(Some(ParsedResponse {
                status: 202,
                consumed: fixed.len() - 8,
                keep_alive: true
            }))
        );
        assert_eq!(parse_response(&fixed[..30]), Ok(None));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).map(|r| r.map(|r| (r.status, r.consumed))),
            Ok(Some((200, chunked.len())))
        );
        assert_eq!(parse_response(&chunked[..chunked.len() - 1]), Ok(None));
        let closing = b"HTTP/1.1 503 Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse_response(closing).map(|r| r.map(|r| r.keep_alive)),
            Ok(Some(false))
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n\r\n"),
            Err(ParseError::UntilClose)
        );
        assert_eq!(parse_response(b"garbage\r\n\r\n"), Err(ParseError::Invalid));
    }

    #[test]
    fn signed_requests_verify_and_carry_unique_ids() {
        let config: Config = {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("bench.toml");
            std::fs::write(
                &path,
                r#"
[[sources]]
name = "forms"
verify = { scheme = "hmac", header = "X-Signature", secrets = ["s3cret"] }
key = ["header:Idempotency-Key", "json:/submission_id + email:/email"]
"#,
            )
            .expect("write config");
            Config::load(&path).expect("config")
        };
        let source = config.source("forms").expect("source");
        let target = Target::parse("http://127.0.0.1:9/", Some("forms")).expect("target");
        assert_eq!(target.path, "/webhooks/forms");
        let verifier = Verifier::from_config(&source.verify).expect("verifier");
        let factory =
            RequestFactory::new(&target, Some(source), Some(verifier), 512).expect("factory");
        let check = Verifier::from_config(&source.verify).expect("verifier");
        let mut ids = std::collections::HashSet::new();
        for index in 0..3 {
            let wire = factory.build(index, Some(42), unix_seconds());
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = request.parse(&wire) else {
                panic!("request does not parse");
            };
            let mut map = http::HeaderMap::new();
            for header in request.headers.iter() {
                map.append(
                    HeaderName::from_bytes(header.name.as_bytes()).expect("name"),
                    HeaderValue::from_bytes(header.value).expect("value"),
                );
            }
            let body = &wire[head..];
            assert_eq!(body.len(), 512);
            assert_eq!(check.verify(&map, body, unix_seconds()), Ok(()));
            let json: Value = serde_json::from_slice(body).expect("json");
            assert_eq!(json["sent_at_us"], 42);
            assert!(json["email"].as_str().is_some_and(|e| e.contains('@')));
            assert!(ids.insert(map["idempotency-key"].clone()));
            assert!(ids.insert(
                HeaderValue::from_str(json["submission_id"].as_str().expect("id")).expect("value")
            ));
        }
    }
}
