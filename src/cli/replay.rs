//! `oncehook replay`: re-queues deliveries through the admin API, on purpose and on record.
//!
//! A real replay of more than `CONFIRM_ABOVE` deliveries asks first on a terminal and is refused
//! without `--yes` where it cannot ask (cron, `ssh host cmd`, a pipe); the count comes from a dry
//! run made just before. Large replays (or any, with `--wait`) show their progress until every
//! replayed delivery is delivered or dead; with `--wait` the exit code says how they ended.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::admin_client::{AdminArgs, AdminClient, print_table, text};
use super::output::{self, outln};

/// Replays larger than this ask for confirmation on a terminal and show progress there.
const CONFIRM_ABOVE: u64 = 100;
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// `--wait`: some replayed deliveries ended dead.
const EXIT_SOME_DEAD: u8 = 3;

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Replay the deliveries of these events.
    #[arg(long = "id", value_name = "ID", num_args = 1..)]
    pub ids: Vec<String>,
    /// Only deliveries of this source's events.
    #[arg(long)]
    pub source: Option<String>,
    /// A delivery state (dead, delivered, …) or an event status (failed_terminal, …).
    #[arg(long)]
    pub status: Option<String>,
    /// Only deliveries to this destination.
    #[arg(long)]
    pub destination: Option<String>,
    /// Events received within this long ago (2h) or since an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Events received before this long ago or this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Why: kept with the replay.
    #[arg(long)]
    pub reason: String,
    /// Who: kept with the replay (default: $USER).
    #[arg(long)]
    pub requested_by: Option<String>,
    /// Only count what would be replayed; nothing is sent or recorded.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation; needed for more than 100 deliveries where nobody can be
    /// asked (stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
    /// Follow the replay until every replayed delivery is delivered or dead; exit 0 when all
    /// were delivered, 3 when some ended dead.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.admin)?;
    let filter = filter(&args);
    if filter.is_empty() {
        bail!("name what to replay: --id ID…, or --source, --status, --destination, --since");
    }
    let requested_by = args
        .requested_by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "oncehook-cli".to_owned());
    let request = |dry_run: bool| {
        json!({
            "filter": Value::Object(filter.clone()),
            "dry_run": dry_run,
            "reason": args.reason,
            "requested_by": requested_by,
        })
    };

    let can_ask = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.dry_run && !args.yes {
        let preview = client
            .post_answer("/api/v1/replays", &request(true))
            .await?;
        let matched = preview
            .json
            .get("matched")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if matched > CONFIRM_ABOVE {
            if !can_ask {
                bail!(
                    "{} match, more than {CONFIRM_ABOVE}, and there is no terminal to confirm \
                     on: nothing was replayed. Look first with --dry-run, then add --yes.",
                    deliveries(matched)
                );
            }
            if !confirm(matched)? {
                eprintln!("aborted: nothing was replayed");
                return Ok(ExitCode::FAILURE);
            }
        }
    }

    let answer = client
        .post_answer("/api/v1/replays", &request(args.dry_run))
        .await?;
    if args.admin.json {
        output::text(&answer.text);
    }
    let answer = answer.json;
    let matched = answer.get("matched").and_then(Value::as_u64).unwrap_or(0);
    let skipped = answer
        .get("skipped_in_flight")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let skipped_note = if skipped > 0 {
        format!(" ({skipped} in flight left alone)")
    } else {
        String::new()
    };
    if args.dry_run {
        if !args.admin.json {
            outln!(
                "dry run: {} matched{skipped_note}; nothing was replayed",
                deliveries(matched)
            );
            print_sample(&answer);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let replay_id = text(&answer, "replay_id");
    if !args.admin.json {
        outln!(
            "replay {replay_id}: {} matched and re-queued{skipped_note}",
            deliveries(matched)
        );
        print_sample(&answer);
    }
    let large = matched > CONFIRM_ABOVE && std::io::stderr().is_terminal();
    if matched == 0 || !(args.wait || large) {
        return Ok(ExitCode::SUCCESS);
    }
    let progress = follow(&client, &replay_id, matched).await?;
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if progress.dead > 0 {
        eprintln!(
            "{} ended dead ({}): see `oncehook dlq tail --since 1h`",
            deliveries(progress.dead),
            progress.dead_by_reason
        );
        ExitCode::from(EXIT_SOME_DEAD)
    } else if progress.superseded > 0 {
        eprintln!(
            "{} replayed again by a later replay before they ended: see GET /api/v1/replays",
            deliveries(progress.superseded)
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// "1 delivery", "2 deliveries".
fn deliveries(count: u64) -> String {
    if count == 1 {
        "1 delivery".to_owned()
    } else {
        format!("{count} deliveries")
    }
}

fn filter(args: &ReplayArgs) -> Map<String, Value> {
    let mut filter = Map::new();
    if !args.ids.is_empty() {
        filter.insert("event_ids".into(), json!(args.ids));
    }
    for (name, value) in [
        ("source", &args.source),
        ("status", &args.status),
        ("destination", &args.destination),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(value) = value {
            filter.insert(name.into(), json!(value));
        }
    }
    filter
}

fn confirm(matched: u64) -> anyhow::Result<bool> {
    eprint!("Replay {matched} deliveries? Each will be sent again. [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn print_sample(answer: &Value) {
    let sample = answer
        .get("sample")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if sample.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = sample
        .iter()
        .map(|s| {
            vec![
                text(s, "event_id"),
                text(s, "source"),
                text(s, "destination"),
                text(s, "state"),
                text(s, "received_at"),
            ]
        })
        .collect();
    outln!("sample:");
    print_table(
        &["EVENT", "SOURCE", "DESTINATION", "WAS", "RECEIVED"],
        &rows,
    );
}

/// Where a replay's deliveries ended.
struct Settled {
    dead: u64,
    superseded: u64,
    /// "http_4xx 2, timeout 1".
    dead_by_reason: String,
}

/// Shows the replay's progress on stderr until none of its deliveries is open any more.
async fn follow(client: &AdminClient, replay_id: &str, matched: u64) -> anyhow::Result<Settled> {
    let terminal = std::io::stderr().is_terminal();
    if terminal {
        eprintln!("(Ctrl-C stops watching; the replay goes on)");
    }
    let mut last_line = String::new();
    loop {
        let detail = client
            .get(&format!("/api/v1/replays/{replay_id}"), &[])
            .await?;
        let progress = detail.get("progress").cloned().unwrap_or(Value::Null);
        let count = |field: &str| progress.get(field).and_then(Value::as_u64).unwrap_or(0);
        let settled = count("delivered") + count("dead") + count("superseded");
        let open = count("pending") + count("in_flight") + count("retrying");
        let line = format!(
            "{} {settled}/{matched}  delivered {}  dead {}  open {open}",
            bar(settled, matched, 24),
            count("delivered"),
            count("dead"),
        );
        if terminal {
            eprint!("\r{line}");
            std::io::stderr().flush()?;
        } else if line != last_line {
            eprintln!("{line}");
        }
        last_line = line;
        if progress
            .get("done")
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            if terminal {
                eprintln!();
            }
            let dead_by_reason = progress
                .get("dead_by_reason")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|group| {
                    let reason = match text(group, "reason") {
                        r if r.is_empty() => "unknown".to_owned(),
                        r => r,
                    };
                    format!("{reason} {}", text(group, "count"))
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Settled {
                dead: count("dead"),
                superseded: count("superseded"),
                dead_by_reason,
            });
        }
        tokio::time::sleep(PROGRESS_INTERVAL).await;
    }
}

fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64).round() as usize
    };
    format!(
        "[{}{}]",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width))
    )
}
