//! `oncehook events search`, `oncehook events show ID`, and `oncehook events export|import`
//! (JSON Lines out of one gateway and into another, SPEC §6.1).

use std::process::ExitCode;

use anyhow::bail;

use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient, clip, clip_middle, print_table, text};
use super::output::{self, outln};

#[derive(clap::Subcommand, Debug)]
pub enum EventsCommand {
    /// Find events, newest first.
    #[command(after_help = "Examples:
  oncehook events search --source forms --email ann@example.com --since 1h
  oncehook events search --field phone=+4915112345678 --field crm_id=C-1042
  oncehook events search --source stripe --status failed_terminal --since 1h
  oncehook events search --source stripe --json --limit 1000   # one API page; then --cursor")]
    Search {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        source: Option<String>,
        /// received, processing, completed, failed_retryable or failed_terminal.
        #[arg(long)]
        status: Option<String>,
        /// The idempotency key, exactly.
        #[arg(long)]
        key: Option<String>,
        /// The value of the `email` search field (never stored in clear; matched by keyed hash).
        #[arg(long)]
        email: Option<String>,
        /// The value of the `contact` search field.
        #[arg(long)]
        contact: Option<String>,
        /// NAME=VALUE: the value of any `search_fields` or `response_capture` name (repeat to
        /// require several).
        #[arg(long = "field", value_name = "NAME=VALUE", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        /// Received within this long ago (15m, 2h, 7d) or since an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Received before this long ago or this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// At most this many events (with --json: one page of the API, 1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// With --json: the page after the one whose `next_cursor` this is.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One event: masked payload, headers, deliveries with every attempt, replays.
    #[command(after_help = "Example:
  oncehook events show EVENT_ID      # an EVENT from `oncehook events search`")]
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// The event id.
        id: String,
    },
    /// Every matching event as JSON Lines (stdout unless --output).
    #[command(after_help = "Examples:
  oncehook events export --source stripe --since 7d --output stripe-week.jsonl
  oncehook events export --status failed_terminal | head -3")]
    Export {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        source: Option<String>,
        /// received, processing, completed, failed_retryable or failed_terminal.
        #[arg(long)]
        status: Option<String>,
        /// The idempotency key, exactly.
        #[arg(long)]
        key: Option<String>,
        /// Received within this long ago (15m, 2h, 7d) or since an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Received before this long ago or this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Write the lines to this file instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Import an export through the gateway's atomic accept (importing twice stores once).
    #[command(after_help = "Example:
  oncehook events import --file stripe-week.jsonl --url http://staging:8081")]
    Import {
        #[command(flatten)]
        admin: AdminArgs,
        /// A JSON Lines file written by `oncehook events export`.
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

pub async fn run(command: EventsCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::Search {
            admin,
            source,
            status,
            key,
            email,
            contact,
            fields,
            since,
            until,
            limit,
            cursor,
        } => {
            let client = AdminClient::new(&admin)?;
            let mut query: Vec<(&str, String)> = [
                ("source", source),
                ("status", status),
                ("key", key),
                ("email", email),
                ("contact", contact),
                ("since", since),
                ("until", until),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
            query.extend(
                fields
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.clone())),
            );
            if admin.json {
                // Exactly the API's page: `{"events": […], "next_cursor": …}`.
                query.push(("limit", limit.to_string()));
                if let Some(cursor) = cursor {
                    query.push(("cursor", cursor));
                }
                let page = client.get_answer("/api/v1/events", &query).await?;
                output::text(&page.text);
                return Ok(ExitCode::SUCCESS);
            }
            if cursor.is_some() {
                bail!("--cursor pages through the API's JSON: use it with --json");
            }
            search(&client, &mut query, limit.max(1)).await
        }
        EventsCommand::Export {
            admin,
            source,
            status,
            key,
            since,
            until,
            output,
        } => {
            let query: Vec<(&str, String)> = [
                ("source", source),
                ("status", status),
                ("key", key),
                ("since", since),
                ("until", until),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
            export(&admin, &query, output.as_deref()).await
        }
        EventsCommand::Import { admin, file } => import(&admin, &file).await,
        EventsCommand::Show { admin, id } => {
            let client = AdminClient::new(&admin)?;
            let event = client
                .get_answer(&format!("/api/v1/events/{id}"), &[])
                .await?;
            if admin.json {
                output::text(&event.text);
            } else {
                print_event(&event.json);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Follows `next_cursor` until `limit` events are collected or the list ends.
/// `--field NAME=VALUE`: a search or capture field's name and the value to find.
fn parse_field(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err("expected NAME=VALUE, e.g. crm_id=C-1042".into());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("the field name before '=' is empty".into());
    }
    if crate::config::RESERVED_SEARCH_NAMES.contains(&name) {
        return Err(format!("{name} has an option of its own: use --{name}"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

async fn search(
    client: &AdminClient,
    query: &mut Vec<(&str, String)>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let mut events: Vec<Value> = Vec::new();
    let mut more = false;
    loop {
        let page_size = (limit - events.len()).min(1000);
        let mut page_query = query.clone();
        page_query.push(("limit", page_size.to_string()));
        let page = client.get("/api/v1/events", &page_query).await?;
        if let Some(items) = page.get("events").and_then(Value::as_array) {
            events.extend(items.iter().cloned());
        }
        let next = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match next {
            Some(cursor) if events.len() < limit => {
                query.retain(|(name, _)| *name != "cursor");
                query.push(("cursor", cursor));
            }
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    if events.is_empty() {
        outln!("no events match");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                text(e, "event_id"),
                text(e, "received_at"),
                text(e, "source"),
                text(e, "status"),
                clip(&text(e, "idempotency_key"), 48),
            ]
        })
        .collect();
    print_table(&["EVENT", "RECEIVED", "SOURCE", "STATUS", "KEY"], &rows);
    if more {
        outln!("(more events match; raise --limit to see them)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Error texts keep their start and end within this many characters: the end says why.
const ERROR_WIDTH: usize = 160;

/// " (in 41s)" for an RFC 3339 time in the future; "" otherwise.
fn from_now(time: &str) -> String {
    let Ok(at) = humantime::parse_rfc3339(time) else {
        return String::new();
    };
    match at.duration_since(std::time::SystemTime::now()) {
        Ok(wait) if wait.as_secs() > 0 => {
            let seconds = std::time::Duration::from_secs(wait.as_secs());
            format!(" (in {})", humantime::format_duration(seconds))
        }
        _ => " (due)".to_owned(),
    }
}

fn print_event(event: &Value) {
    outln!("event     {}", text(event, "event_id"));
    outln!("source    {}", text(event, "source"));
    outln!("key       {}", text(event, "idempotency_key"));
    outln!("received  {}", text(event, "received_at"));
    outln!("status    {}", text(event, "status"));
    if let Some(duplicates) = event.get("duplicates") {
        let count = text(duplicates, "count");
        if count != "0" {
            outln!(
                "repeats   {count} (last {}, {} with other content)",
                text(duplicates, "last_seen_at"),
                text(duplicates, "conflicts")
            );
        }
    }
    if let Some(headers) = event.get("headers").and_then(Value::as_object)
        && !headers.is_empty()
    {
        outln!("\nheaders:");
        for (name, value) in headers {
            outln!("  {name}: {}", value.as_str().unwrap_or_default());
        }
    }
    outln!("\npayload (masked):");
    let payload = event.get("payload").cloned().unwrap_or(Value::Null);
    let pretty = match &payload {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    for line in pretty.lines() {
        outln!("  {line}");
    }
    let deliveries = event
        .get("deliveries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    outln!("\ndeliveries ({}):", deliveries.len());
    for delivery in &deliveries {
        let mut line = format!(
            "  {}  {}  attempts {}",
            text(delivery, "destination"),
            text(delivery, "state"),
            text(delivery, "attempt_count")
        );
        let reason = text(delivery, "dead_reason");
        if !reason.is_empty() {
            line.push_str(&format!("  reason {reason}"));
        }
        let next = text(delivery, "next_attempt_at");
        if !next.is_empty() {
            line.push_str(&format!("  next attempt {next}{}", from_now(&next)));
        }
        outln!("{line}");
        for attempt in delivery
            .get("attempts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let status = match text(attempt, "status_code") {
                s if s.is_empty() => "---".to_owned(),
                s => s,
            };
            let replay = match text(attempt, "replay_id") {
                r if r.is_empty() => String::new(),
                r => format!("  replay {r}"),
            };
            outln!(
                "    #{:<3} {}  {}  {:>6} ms  {}{}  {}",
                text(attempt, "number"),
                text(attempt, "started_at"),
                status,
                text(attempt, "duration_ms"),
                text(attempt, "outcome"),
                replay,
                clip_middle(&text(attempt, "error"), ERROR_WIDTH)
            );
        }
    }
    let captured = event
        .get("captured")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !captured.is_empty() {
        outln!("\ncaptured ({}):", captured.len());
        for value in &captured {
            outln!(
                "  {}  {} = {}  ({})",
                text(value, "destination"),
                text(value, "name"),
                clip(&text(value, "value"), ERROR_WIDTH),
                text(value, "captured_at")
            );
        }
    }
    let replays = event
        .get("replays")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !replays.is_empty() {
        outln!("\nreplays ({}):", replays.len());
        for replay in &replays {
            outln!(
                "  {}  {}  to {}  by {}: {}",
                text(replay, "created_at"),
                text(replay, "replay_id"),
                text(replay, "destination"),
                text(replay, "requested_by"),
                clip(&text(replay, "reason"), 80)
            );
        }
    }
}

/// The admin API's address and the token, as `AdminClient` finds them, with a client without
/// an overall timeout: an export or an import takes as long as it has events.
fn transfer_client(admin: &AdminArgs) -> anyhow::Result<(String, String, reqwest::Client)> {
    let base = match &admin.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let config = crate::config::Config::load(&admin.config).map_err(|e| {
                anyhow::anyhow!(
                    "{e}\n(pass --url http://HOST:PORT to reach the admin API without a config)"
                )
            })?;
            let mut addr = config.admin.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            }
            format!("http://{addr}")
        }
    };
    let variable = super::admin_client::TOKEN_VARIABLE;
    let token = std::env::var(variable)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{variable} is not set: export the admin token (admin.token in the config)"
            )
        })?;
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()?;
    Ok((base, token, http))
}

/// A counter of lines on stderr (hidden when stderr is not a terminal).
fn line_counter(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

async fn export(
    admin: &AdminArgs,
    query: &[(&str, String)],
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let (base, token, http) = transfer_client(admin)?;
    let mut response = http
        .get(format!("{base}/api/v1/events/export"))
        .query(query)
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {base}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!("the admin API answered {status}: {text}");
    }
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = line_counter("events exported");
    let mut lines = 0u64;
    let mut last_byte = b'\n';
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("the export was cut off after {lines} events: {e}"))?
    {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(last) = chunk.last() {
            last_byte = *last;
        }
        out.write_all(&chunk)?;
        bar.set_position(lines);
    }
    out.flush()?;
    bar.finish_and_clear();
    if last_byte != b'\n' {
        anyhow::bail!("the export was cut off after {lines} events");
    }
    eprintln!("{lines} events exported");
    Ok(ExitCode::SUCCESS)
}

async fn import(admin: &AdminArgs, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (base, token, http) = transfer_client(admin)?;
    let body =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let bar = line_counter("importing");
    let response = http
        .post(format!("{base}/api/v1/events/import"))
        .bearer_auth(&token)
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {base}: {e}"))?;
    bar.finish_and_clear();
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the admin API answered {status}: {text}");
    }
    let summary: Value = serde_json::from_str(&text)?;
    if admin.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "accepted {}, duplicates {}, rejected {}",
            summary["accepted"],
            summary["duplicates"],
            summary["rejected"].as_array().map_or(0, Vec::len)
        );
        for rejected in summary["rejected"].as_array().into_iter().flatten() {
            println!(
                "  line {}: {}",
                rejected["line"],
                text_of(&rejected["error"])
            );
        }
    }
    let clean = summary["rejected"].as_array().is_none_or(Vec::is_empty);
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_name_equals_value() {
        assert_eq!(
            parse_field("crm_id=C-1=2"),
            Ok(("crm_id".to_owned(), "C-1=2".to_owned()))
        );
        assert_eq!(
            parse_field(" phone =+49 151"),
            Ok(("phone".to_owned(), "+49 151".to_owned()))
        );
        assert!(parse_field("crm_id").is_err());
        assert!(parse_field("=x").is_err());
        assert!(
            parse_field("source=x")
                .expect_err("own option")
                .contains("--source")
        );
    }
}
