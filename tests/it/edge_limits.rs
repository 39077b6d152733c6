//! The limits at intake's edge, against the real binary: what an unauthenticated client can
//! cost the gateway, and that the real provider keeps being served while it tries (SPEC §4.1).
//!
//! Hostile traffic comes from 127.0.0.2 and the honest provider sends from 127.0.0.1, so the
//! per-address limits can tell them apart on one machine. Every loop is bounded in count and
//! time. The heavy tests take `ALONE` so that they do not share the two cores with each other
//! (and `.config/nextest.toml` runs this binary's tests alone).
//!
//! File descriptors: the slow-body test holds about 2,000 sockets in this process and as many
//! in the gateway (which inherits this process's limit); `fd_limit_is_enough` says what to raise
//! when the soft `RLIMIT_NOFILE` is too low.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::receiver::Receiver;
use crate::common::{Gateway, GatewayOptions, Signed, post, post_twice, sign, unix_now};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOSTILE: &str = "127.0.0.2";
const HONEST: &str = "127.0.0.1";
const WAIT: Duration = Duration::from_secs(20);

/// The heavy tests run one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn verify() -> String {
    format!("scheme = \"standard\"\nsecrets = [\"{SECRET}\"]")
}

/// One source, `hooks` (Standard Webhooks), routed to `sink_url`; `extra` is added to the source.
fn config(sink_url: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"hooks\"\n\
         verify = {{ scheme = \"standard\", secrets = [\"{SECRET}\"] }}\n{extra}\n\n\
         [[destinations]]\nname = \"sink\"\nurl = \"{sink_url}\"\n\n\
         [[routes]]\nsource = \"hooks\"\nto = [\"sink\"]\n"
    )
}

fn options(server_extra: &str) -> GatewayOptions {
    GatewayOptions {
        server_extra: server_extra.to_owned(),
        ..GatewayOptions::default()
    }
}

/// Starts a gateway, then restarts it with a longer `body_timeout` than the harness's 1 s, so
/// that slow bodies are held as long as a production default would hold them.
fn start_with_body_timeout(body: &str, options: GatewayOptions, timeout: &str) -> Gateway {
    let mut gateway = Gateway::start_with(body, options);
    gateway.kill();
    let text = std::fs::read_to_string(&gateway.config_path).expect("config");
    let changed = text.replace(
        "body_timeout = \"1s\"",
        &format!("body_timeout = \"{timeout}\""),
    );
    assert_ne!(text, changed, "the harness no longer sets body_timeout");
    std::fs::write(&gateway.config_path, changed).expect("config");
    gateway.spawn();
    gateway
}

fn intake_addr(gateway: &Gateway) -> SocketAddr {
    gateway
        .intake
        .trim_start_matches("http://")
        .parse()
        .expect("intake address")
}

/// A TCP connection to the gateway from `local` (127.0.0.2 for hostile traffic).
async fn connect_from(local: &str, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let ip: IpAddr = local.parse().expect("a local address");
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(target).await
}

/// A client that sends from 127.0.0.1, as the honest provider.
fn honest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(HONEST.parse::<IpAddr>().ok())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn signed_event(id: &str) -> Signed {
    let body = serde_json::to_vec(&json!({"id": id, "type": "lead.created"})).expect("json");
    sign(&verify(), &body, id, unix_now())
}

/// A POST with a signature that does not match (a current timestamp, so the MAC is computed).
fn forged_request(host: &str) -> Vec<u8> {
    format!(
        "POST /webhooks/hooks HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nwebhook-id: forged\r\nwebhook-timestamp: {}\r\n\
         webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n{{}}",
        unix_now()
    )
    .into_bytes()
}

/// One answer read off a keep-alive connection.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 response (with a `Content-Length`) from `stream`; `buffer` keeps what was
/// read past it. None when the connection closed first.
async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> Option<RawResponse> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let status = head.get(9..12).and_then(|s| s.parse().ok())?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            let body = buffer[end + 4..end + 4 + length].to_vec();
            buffer.drain(..end + 4 + length);
            return Some(RawResponse { status, head, body });
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

impl RawResponse {
    /// Whether it carries `Retry-After` and a JSON `{"error": …}`.
    fn is_error_with_retry_after(&self) -> bool {
        let json: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        self.head.to_ascii_lowercase().contains("\r\nretry-after: ") && json["error"].is_string()
    }
}

/// Statuses seen by the hostile clients.
#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// 429s whose answer lacked `Retry-After` or a JSON error.
    bad_429s: AtomicU64,
    /// Connections that ended without an answer (closed by the server, or refused).
    dropped: AtomicU64,
}

impl Tally {
    fn count(&self, response: &RawResponse) {
        if response.status == 429 && !response.is_error_with_retry_after() {
            self.bad_429s.fetch_add(1, Ordering::Relaxed);
        }
        *self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(response.status)
            .or_default() += 1;
    }

    fn of(&self, status: u16) -> u64 {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One hostile keep-alive connection sending forged requests at `per_second` until `until`
/// (reconnecting when the server closes it), at most `max_requests` in all.
async fn forge_on_one_connection(
    target: SocketAddr,
    per_second: u32,
    until: Instant,
    max_requests: u64,
    tally: Arc<Tally>,
) {
    let host = target.to_string();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    'connections: while Instant::now() < until && sent < max_requests {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), connect_from(HOSTILE, target)).await
        else {
            tally.dropped.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut buffer = Vec::new();
        while Instant::now() < until && sent < max_requests {
            ticker.tick().await;
            sent += 1;
            if stream.write_all(&forged_request(&host)).await.is_err() {
                tally.dropped.fetch_add(1, Ordering::Relaxed);
                continue 'connections;
            }
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                read_response(&mut stream, &mut buffer),
            )
            .await;
            match answer {
                Ok(Some(response)) => tally.count(&response),
                _ => {
                    tally.dropped.fetch_add(1, Ordering::Relaxed);
                    continue 'connections;
                }
            }
        }
    }
}

/// A POST from the honest client: (status, JSON, how long the answer took).
async fn timed_post(
    client: &reqwest::Client,
    url: &str,
    signed: &Signed,
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(signed.body.clone());
    for (name, value) in &signed.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            (status, json, started.elapsed())
        }
        Err(e) => (
            0,
            json!({ "client error": e.to_string() }),
            started.elapsed(),
        ),
    }
}

/// The gateway's resident memory in bytes (`VmRSS`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Samples the gateway's RSS every 50 ms until `stop`; returns the highest seen.
fn watch_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut highest = 0;
        while !stop.load(Ordering::Relaxed) {
            highest = highest.max(rss_bytes(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        highest.max(rss_bytes(pid))
    })
}

const MIB: u64 = 1024 * 1024;

/// `oncehook_intake_total{source="hooks",outcome=…}` from the gateway's `/metrics`.
async fn intake_total(gateway: &Gateway, outcome: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let series = format!("oncehook_intake_total{{source=\"hooks\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The soft limit on open files of this process (the gateway inherits it).
fn fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(0)
}

fn fd_limit_is_enough(needed: u64) {
    let limit = fd_limit();
    assert!(
        limit >= needed,
        "this test holds about {needed} sockets; the open-file limit is {limit}: \
         raise it (`ulimit -n {needed}`) before running the tests"
    );
}

/// During a 10 s flood of forged requests from 127.0.0.2 (~5,000 a second over 50 keep-alive
/// connections), the provider at 127.0.0.1 sends 10 events a second, each twice, to a source
/// whose `rate_limit` (25/s) the flood alone would exceed 200 times over. Every event is accepted
/// and its repeat is a duplicate, each answered within 1 s: forged requests spend the address's
/// failure budget (401, then 429), never the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forgeries_does_not_throttle_or_slow_the_provider() {
    let _alone = ALONE.lock().await;
    let sink = Receiver::start().await;
    let gateway = Gateway::start(&config(
        &sink.url,
        "rate_limit = { per_second = 25, burst = 25 }",
    ));
    let target = intake_addr(&gateway);
    let url = gateway.webhook_url("hooks");
    let client = honest_client();

    const FLOOD: Duration = Duration::from_secs(10);
    const CONNECTIONS: u32 = 50;
    const PER_CONNECTION: u32 = 100; // 50 × 100 = 5,000 forged requests a second
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + FLOOD;
    let mut flood = Vec::new();
    for _ in 0..CONNECTIONS {
        flood.push(tokio::spawn(forge_on_one_connection(
            target,
            PER_CONNECTION,
            until,
            u64::from(PER_CONNECTION) * FLOOD.as_secs() + 10,
            Arc::clone(&tally),
        )));
    }
    // Let the flood spend the address's burst first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut answers = Vec::new();
    let mut worst = Duration::ZERO;
    let mut n = 0u32;
    while Instant::now() + Duration::from_millis(300) < until && n < 100 {
        let due = started + Duration::from_millis(500) + Duration::from_millis(100) * n;
        tokio::time::sleep_until(due.into()).await;
        let signed = signed_event(&format!("evt-{n}"));
        let first = timed_post(&client, &url, &signed).await;
        let repeat = timed_post(&client, &url, &signed).await;
        worst = worst.max(first.2).max(repeat.2);
        answers.push((n, first, repeat));
        n += 1;
    }
    for task in flood {
        task.await.expect("flood task");
    }
    let flood_secs = started.elapsed().as_secs_f64();

    let statuses = tally.snapshot();
    eprintln!(
        "flood: {} answers in {flood_secs:.1}s ({:.0}/s), statuses {statuses:?}, dropped {}; \
         provider: {} events, worst answer {worst:?}",
        tally.total(),
        tally.total() as f64 / flood_secs,
        tally.dropped.load(Ordering::Relaxed),
        answers.len()
    );
    for (n, first, repeat) in &answers {
        assert_eq!(first.0, 202, "event {n}: {} after {:?}", first.1, first.2);
        assert_eq!(
            repeat.0, 200,
            "event {n} repeat: {} after {:?}",
            repeat.1, repeat.2
        );
        assert_eq!(repeat.1["status"], "duplicate", "event {n}: {}", repeat.1);
        assert_eq!(repeat.1["event_id"], first.1["event_id"], "event {n}");
        assert!(
            first.2 < Duration::from_secs(1) && repeat.2 < Duration::from_secs(1),
            "event {n} answered after {:?} and {:?}",
            first.2,
            repeat.2
        );
    }
    assert!(
        answers.len() >= 90,
        "only {} events were sent",
        answers.len()
    );
    // The flood was a flood, and it met both answers: 401 while the address had failures left,
    // then 429 without verification. Nothing else.
    assert!(
        tally.total() >= 20_000,
        "the flood reached only {} answers",
        tally.total()
    );
    assert!(tally.of(401) >= 100, "{statuses:?}");
    assert!(tally.of(429) > tally.of(401), "{statuses:?}");
    assert_eq!(tally.of(401) + tally.of(429), tally.total(), "{statuses:?}");
    assert_eq!(tally.bad_429s.load(Ordering::Relaxed), 0);
    assert!(intake_total(&gateway, "rate_limited").await >= tally.of(429));

    // Each event stored once and delivered once.
    assert_eq!(gateway.event_count(), answers.len() as i64);
    let events = answers.len();
    sink.wait_for(WAIT, "every event delivered", |received| {
        received.len() >= events
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), events, "a delivery was repeated");
    assert!(gateway.healthy().await);
}

/// A short, deterministic version: 50 forged requests against a source whose bucket holds 10,
/// then 5 real events, each sent twice (10 requests): all of them pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_do_not_spend_the_sources_rate_limit() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start(&config(
        &sink.url,
        "rate_limit = { per_second = 1, burst = 10 }",
    ));
    let target = intake_addr(&gateway);
    let mut stream = connect_from(HOSTILE, target).await.expect("connect");
    let mut buffer = Vec::new();
    for i in 0..50 {
        stream
            .write_all(&forged_request(&target.to_string()))
            .await
            .expect("write");
        let response = read_response(&mut stream, &mut buffer)
            .await
            .expect("answered");
        assert_eq!(
            response.status, 401,
            "forged request {i}: {}",
            response.head
        );
    }
    let client = honest_client();
    for i in 0..5 {
        post_twice(
            &client,
            &gateway.webhook_url("hooks"),
            &signed_event(&format!("e-{i}")),
        )
        .await;
    }
    // The bucket is spent by the real events alone, and then it does refuse (a repeat spends it
    // too; it refills one a second, so a few tries are enough).
    let repeat = signed_event("e-4");
    let mut refused = None;
    for _ in 0..5 {
        let reply = post(
            &client,
            &gateway.webhook_url("hooks"),
            &repeat,
            "application/json",
        )
        .await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.json);
    }
    let refused = refused.expect("the source's rate limit never refused");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.json["error"].is_string(), "{}", refused.json);
    assert_eq!(gateway.event_count(), 5);
    assert_eq!(intake_total(&gateway, "invalid_signature").await, 50);
}

/// Past its failure budget (burst 100 at 50/s by default) an address gets 429 with
/// `Retry-After` for every request, a correctly signed one too, while another address is
/// served; once the budget refills, it is heard again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_failure_budget_gets_429_and_others_do_not() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start_with(
        &config(&sink.url, ""),
        options("auth_failures_per_ip = { per_second = 2, burst = 5 }"),
    );
    let target = intake_addr(&gateway);
    let mut stream = connect_from(HOSTILE, target).await.expect("connect");
    let mut buffer = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        stream
            .write_all(&forged_request(&target.to_string()))
            .await
            .expect("write");
        let response = read_response(&mut stream, &mut buffer)
            .await
            .expect("answered");
        if response.status == 429 {
            assert!(response.is_error_with_retry_after(), "{}", response.head);
        }
        statuses.push(response.status);
    }
    // 5 in the burst, the 6th spends nothing left and blocks: the rest are not verified.
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429, 429, 429, 429]);

    // A correctly signed request from the blocked address is refused too, unread...
    let hostile_client = reqwest::Client::builder()
        .local_address(HOSTILE.parse::<IpAddr>().ok())
        .build()
        .expect("client");
    let url = gateway.webhook_url("hooks");
    let signed = signed_event("e-hostile");
    let reply = post(&hostile_client, &url, &signed, "application/json").await;
    assert_eq!(reply.status, 429, "{}", reply.json);
    // ... while the provider's address is served.
    let client = honest_client();
    post_twice(&client, &url, &signed_event("e-honest")).await;

    // After the bucket refills one failure (0.5 s at 2/s), the address is heard again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    post_twice(&hostile_client, &url, &signed).await;
    assert_eq!(gateway.event_count(), 2);
    assert_eq!(intake_total(&gateway, "rate_limited").await, 5);
}

/// 2,000 connections from 127.0.0.2 send their headers with a large `Content-Length` and then
/// trickle (every other one) or stall; the listener's global cap (1,024 here) would let them
/// take every slot. Requests from 127.0.0.1 are still answered within 1 s, and the gateway's
/// memory stays under 256 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_one_address_neither_block_others_nor_take_memory() {
    let _alone = ALONE.lock().await;
    const SLOW: usize = 2_000;
    fd_limit_is_enough(2 * SLOW as u64 + 1_000);
    let sink = Receiver::start().await;
    let gateway = start_with_body_timeout(
        &config(&sink.url, ""),
        options("max_connections = 1024"),
        "30s",
    );
    let pid = gateway.pid().expect("running");
    let target = intake_addr(&gateway);
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss = watch_rss(pid, Arc::clone(&stop_rss));

    // Open them 100 at a time; each sends its head and a first byte.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let stop = Arc::clone(&stop);
        let refused = Arc::clone(&refused);
        let closed = Arc::clone(&closed);
        slow.push(tokio::spawn(async move {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), connect_from(HOSTILE, target)).await;
            let Ok(Ok(mut stream)) = connected else {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let head = format!(
                "POST /webhooks/hooks HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000000\r\nwebhook-id: slow-{i}\r\nwebhook-timestamp: {}\r\n\
                 webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n{{",
                unix_now()
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut byte = [0u8; 1];
            // A closed connection reads 0 (or an error) at once; an open one times out.
            while !stop.load(Ordering::Relaxed) {
                let wrote = i % 2 != 0 || stream.write_all(b" ").await.is_ok();
                let read =
                    tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await;
                if !wrote || read.is_ok() {
                    closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The provider, meanwhile: five events, each twice, each answer within 1 s.
    let client = honest_client();
    let url = gateway.webhook_url("hooks");
    let mut worst = Duration::ZERO;
    for n in 0..5 {
        let signed = signed_event(&format!("evt-{n}"));
        let first = timed_post(&client, &url, &signed).await;
        let repeat = timed_post(&client, &url, &signed).await;
        assert_eq!(first.0, 202, "event {n}: {} after {:?}", first.1, first.2);
        assert_eq!(
            repeat.0, 200,
            "event {n}: {} after {:?}",
            repeat.1, repeat.2
        );
        assert_eq!(repeat.1["event_id"], first.1["event_id"]);
        worst = worst.max(first.2).max(repeat.2);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let closed_by_gateway = closed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in slow {
        task.await.expect("slow client");
    }
    stop_rss.store(true, Ordering::Relaxed);
    let highest_rss = rss.await.expect("rss watcher");
    eprintln!(
        "slow bodies: {SLOW} tried, {} could not connect, {closed_by_gateway} closed by the \
         gateway while the provider sent; provider's worst answer {worst:?}; gateway RSS at most \
         {:.1} MiB",
        refused.load(Ordering::Relaxed),
        highest_rss as f64 / MIB as f64
    );
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    // The address kept at most its 256 connections.
    assert!(
        closed_by_gateway >= (SLOW - 256) as u64,
        "{closed_by_gateway}"
    );
    assert!(highest_rss > 0 && highest_rss < 256 * MIB, "{highest_rss}");
    assert_eq!(gateway.event_count(), 5);
    assert!(gateway.healthy().await);
}

/// 600 bodies of 1 MiB arrive at once from 127.0.0.2 (each held one byte short of complete, so
/// the gateway must keep what it read), with `max_buffered_body = "64MiB"`: the ones that would
/// take the total over it get 503 with `Retry-After`, memory stays under 256 MiB, and the
/// provider's next request is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_at_once_share_a_memory_budget() {
    let _alone = ALONE.lock().await;
    const BODIES: usize = 600;
    const SIZE: usize = 1_000_000;
    fd_limit_is_enough(2 * BODIES as u64 + 1_000);
    let sink = Receiver::start().await;
    // The per-address cap is raised so that the memory budget is what this test meets.
    let gateway = start_with_body_timeout(
        &config(&sink.url, ""),
        options("max_buffered_body = \"64MiB\"\nmax_connections_per_ip = 1024"),
        "30s",
    );
    let pid = gateway.pid().expect("running");
    let target = intake_addr(&gateway);
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss = watch_rss(pid, Arc::clone(&stop_rss));
    let baseline_rss = rss_bytes(pid);

    let body = Arc::new(vec![b' '; SIZE - 1]);
    let release = Arc::new(tokio::sync::Notify::new());
    let release_flag = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for i in 0..BODIES {
        let body = Arc::clone(&body);
        let release = Arc::clone(&release);
        let release_flag = Arc::clone(&release_flag);
        senders.push(tokio::spawn(async move {
            let Ok(mut stream) = connect_from(HOSTILE, target).await else {
                return None;
            };
            let head = format!(
                "POST /webhooks/hooks HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\n\
                 Content-Length: {SIZE}\r\nwebhook-id: big-{i}\r\nwebhook-timestamp: {}\r\n\
                 webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                unix_now()
            );
            let (mut reader, mut writer) = stream.split();
            let mut buffer = Vec::new();
            // All but the last byte, while reading: a 503 may come before the body is in.
            let send = async {
                writer.write_all(head.as_bytes()).await?;
                writer.write_all(&body).await
            };
            let early = tokio::select! {
                _ = send => None,
                response = read_response(&mut reader, &mut buffer) => Some(response),
            };
            let response = match early {
                Some(response) => response,
                None => {
                    // Held one byte short until told to finish.
                    if !release_flag.load(Ordering::Relaxed) {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
                    }
                    let _ = writer.write_all(b" ").await;
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        read_response(&mut reader, &mut buffer),
                    )
                    .await
                    .ok()
                    .flatten()
                }
            };
            response.map(|r| (r.status, r.is_error_with_retry_after()))
        }));
    }
    // Every body is either refused or held one byte short.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rss_while_held = rss_bytes(pid);
    release_flag.store(true, Ordering::Relaxed);
    release.notify_waiters();
    // Status → count; 0 for a connection that ended without an answer.
    let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
    let mut good_503s = 0;
    for sender in senders {
        let (status, well_formed) = sender.await.expect("sender").unwrap_or((0, false));
        if status == 503 && well_formed {
            good_503s += 1;
        }
        *answers.entry(status).or_default() += 1;
    }
    stop_rss.store(true, Ordering::Relaxed);
    let highest_rss = rss.await.expect("rss watcher");
    eprintln!(
        "large bodies: answers {answers:?}; gateway RSS {:.1} MiB before, {:.1} MiB while held, \
         at most {:.1} MiB",
        baseline_rss as f64 / MIB as f64,
        rss_while_held as f64 / MIB as f64,
        highest_rss as f64 / MIB as f64
    );
    let refused = answers.get(&503).copied().unwrap_or(0);
    let read_whole = answers.get(&401).copied().unwrap_or(0);
    assert!(refused >= 400, "{answers:?}");
    assert_eq!(
        good_503s, refused,
        "a 503 without Retry-After or a JSON error"
    );
    // The ones that were read whole fail their signature; no other answer.
    assert!(read_whole > 0, "{answers:?}");
    assert_eq!(refused + read_whole, BODIES as u64, "{answers:?}");
    assert!(highest_rss < 256 * MIB, "{highest_rss}");
    assert!(intake_total(&gateway, "unavailable").await >= refused);

    let client = honest_client();
    post_twice(
        &client,
        &gateway.webhook_url("hooks"),
        &signed_event("after"),
    )
    .await;
    assert_eq!(gateway.event_count(), 1);
}

/// A body in an encoding is refused with 415 before it is read or verified; `identity`, in any
/// case, is what every body is anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_encodings_other_than_identity_get_415() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start(&config(&sink.url, ""));
    let client = honest_client();
    let url = gateway.webhook_url("hooks");
    for coding in [
        "gzip",
        "GZIP",
        "br",
        "deflate",
        "identity, gzip",
        "x-custom",
    ] {
        let mut signed = signed_event(&format!("e-{coding}"));
        signed
            .headers
            .push(("content-encoding".to_owned(), coding.to_owned()));
        let reply = post(&client, &url, &signed, "application/json").await;
        assert_eq!(reply.status, 415, "{coding}: {}", reply.json);
        let keys: Vec<&String> = reply.json.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["error"], "{coding}: {}", reply.json);
    }
    // Unsigned, with a body it never reads: refused for the encoding, not the signature.
    let unsigned = Signed {
        headers: vec![("content-encoding".to_owned(), "gzip".to_owned())],
        body: b"\x1f\x8b\x08\x00".to_vec(),
    };
    let reply = post(&client, &url, &unsigned, "application/json").await;
    assert_eq!(reply.status, 415, "{}", reply.json);
    assert_eq!(gateway.event_count(), 0);
    let (status, listed) = gateway.admin_get("/api/v1/events").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["events"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    assert_eq!(intake_total(&gateway, "invalid_body").await, 7);
    assert_eq!(intake_total(&gateway, "invalid_signature").await, 0);
    assert!(gateway.healthy().await);

    for (n, coding) in ["identity", "Identity"].iter().enumerate() {
        let mut signed = signed_event(&format!("e-identity-{n}"));
        signed
            .headers
            .push(("content-encoding".to_owned(), (*coding).to_owned()));
        post_twice(&client, &url, &signed).await;
    }
    assert_eq!(gateway.event_count(), 2);
}

/// With `max_connections_per_ip = 4`, a fifth connection from 127.0.0.2 is closed at once
/// without a byte of HTTP, while 127.0.0.1 is served; a closed connection gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_closed_at_once() {
    let sink = Receiver::start().await;
    let gateway = Gateway::start_with(
        &config(&sink.url, ""),
        options("max_connections_per_ip = 4"),
    );
    let target = intake_addr(&gateway);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(HOSTILE, target).await.expect("connect");
        // Half a head: the connection is open and counted, and no handler runs.
        stream
            .write_all(b"POST /webhooks/hooks HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let mut fifth = connect_from(HOSTILE, target).await.expect("connect");
    let _ = fifth
        .write_all(b"GET /webhooks/hooks HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_millis(500), fifth.read_to_end(&mut answer))
        .await
        .expect("closed at once");
    // Closed (possibly reset, since the request was never read), with nothing written.
    assert!(read.is_err() || answer.is_empty(), "answered: {answer:?}");
    assert!(started.elapsed() < Duration::from_millis(500));

    // The provider's address is not affected.
    let client = honest_client();
    post_twice(&client, &gateway.webhook_url("hooks"), &signed_event("e-1")).await;

    // One of the four goes away: its slot is free again for that address.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from(HOSTILE, target).await.expect("connect");
    again
        .write_all(b"GET /webhooks/hooks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), again.read_to_end(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    assert_eq!(gateway.event_count(), 1);
}
