//! A destination for end-to-end tests: a small HTTP/1.1 server on 127.0.0.1 whose answers a
//! test scripts (status, `Retry-After`, delay, or a connection reset) and can change mid-test.
//! It records every request it receives.
//!
//! It is written on a raw socket, not a framework, because tests need what frameworks hide:
//! dropping a connection without any response, and answering slower than the client waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the destination saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    /// Lowercased names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the destination answered (None: the connection was reset).
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The delivery key (`Idempotency-Key`): the same for every attempt and replay of one
    /// provider event.
    pub fn idempotency_key(&self) -> &str {
        self.header("idempotency-key").unwrap_or_default()
    }

    /// The event this request delivers (`Oncehook-Event-Id`).
    pub fn event_id(&self) -> &str {
        self.header("oncehook-event-id").unwrap_or_default()
    }

    pub fn attempt(&self) -> u32 {
        self.header("oncehook-attempt")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The most requests of `received` that arrived within any `window`: a destination's observed
/// peak rate.
pub fn busiest(received: &[Received], window: Duration) -> usize {
    let mut times: Vec<Instant> = received.iter().map(|r| r.at).collect();
    times.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    StatusRetryAfter(u16, u64),
    /// Wait, then answer with the status.
    Slow(Duration, u16),
    /// Close the connection without answering.
    Reset,
    /// Answer with the status, a `Date` from a clock `clock_offset_secs` off, and `Retry-After`
    /// as an HTTP date `retry_after_secs` after that clock's now (a destination with a skewed
    /// clock asking for a short pause).
    SkewedRetryAfter {
        status: u16,
        clock_offset_secs: i64,
        retry_after_secs: i64,
    },
    /// Answer with the status and the request's own body, as error pages that quote the
    /// request do.
    Echo(u16),
    /// Answer with the status and this JSON body (a CRM answering with the record it made).
    Json(u16, String),
}

/// Decides the reply for a request, given how many requests with the same `Idempotency-Key`
/// came before it (0 for the first).
pub type Script = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
}

struct State {
    script: Script,
    received: Vec<Received>,
    in_flight: HashMap<String, usize>,
    overlaps: usize,
}

impl Receiver {
    /// Starts on a free port, answering 200 to everything.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener)
    }

    /// Starts on a given port (to bring a destination "back up" where a config points).
    pub async fn start_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            script: Arc::new(|_, _| Reply::Status(200)),
            received: Vec::new(),
            in_flight: HashMap::new(),
            overlaps: 0,
        }));
        let accept_state = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let _ = handle(stream, state).await;
                });
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            state,
        }
    }

    pub fn set_script(&self, script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) {
        self.lock().script = Arc::new(script);
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Requests for one event (by `Oncehook-Event-Id`), in arrival order.
    pub fn for_event(&self, event_id: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.event_id() == event_id)
            .collect()
    }

    /// How often a request arrived while another with the same key was still being answered.
    pub fn overlapping_attempts(&self) -> usize {
        self.lock().overlaps
    }

    /// Waits until `done` holds for the requests received so far, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.received()) {
                return;
            }
            if Instant::now() > deadline {
                let seen: Vec<(String, u32, Option<u16>)> = self
                    .received()
                    .iter()
                    .map(|r| (r.idempotency_key().to_owned(), r.attempt(), r.answered))
                    .collect();
                panic!("timed out waiting for {what}; received {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn handle(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let mut headers = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[header_end..buffer.len().min(header_end + length)].to_vec();
    let mut received = Received {
        at: Instant::now(),
        path,
        headers,
        body,
        answered: None,
    };
    let key = received.idempotency_key().to_owned();

    let (reply, echo) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let previous = state
            .received
            .iter()
            .filter(|r| r.idempotency_key() == key)
            .count();
        if state.in_flight.get(&key).is_some_and(|n| *n > 0) {
            state.overlaps += 1;
        }
        *state.in_flight.entry(key.clone()).or_insert(0) += 1;
        let reply = (state.script)(&received, previous);
        received.answered = match reply {
            Reply::Status(s)
            | Reply::StatusRetryAfter(s, _)
            | Reply::Slow(_, s)
            | Reply::SkewedRetryAfter { status: s, .. }
            | Reply::Echo(s)
            | Reply::Json(s, _) => Some(s),
            Reply::Reset => None,
        };
        let echo = received.body.clone();
        state.received.push(received);
        (reply, echo)
    };
    if let Reply::Slow(delay, _) = reply {
        tokio::time::sleep(delay).await;
    }
    // The attempt ends when the answer starts: from here the client may already retry.
    {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = state.in_flight.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
    }
    match reply {
        Reply::Reset => {
            // A zero linger turns the close into a TCP reset.
            let _ = stream.set_zero_linger();
            drop(stream);
            Ok(())
        }
        Reply::Status(status) | Reply::Slow(_, status) => {
            respond(&mut stream, status, "", None).await
        }
        Reply::StatusRetryAfter(status, secs) => {
            respond(
                &mut stream,
                status,
                &format!("Retry-After: {secs}\r\n"),
                None,
            )
            .await
        }
        Reply::SkewedRetryAfter {
            status,
            clock_offset_secs,
            retry_after_secs,
        } => {
            let now = super::unix_now() + clock_offset_secs;
            let headers = format!(
                "Date: {}\r\nRetry-After: {}\r\n",
                http_date(now),
                http_date(now + retry_after_secs)
            );
            respond(&mut stream, status, &headers, None).await
        }
        Reply::Echo(status) => respond(&mut stream, status, "", Some(&echo)).await,
        Reply::Json(status, body) => respond(&mut stream, status, "", Some(body.as_bytes())).await,
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for a Unix time.
pub fn http_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &str,
    echo: Option<&[u8]>,
) -> std::io::Result<()> {
    let body = match echo {
        Some(echo) => String::from_utf8_lossy(echo).into_owned(),
        None => format!("{{\"status\":{status}}}"),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
