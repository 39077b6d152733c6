//! `oncehook dlq tail [--follow] [--since DUR] [--group-by reason]`: dead deliveries, newest
//! first, with reason, last error and a masked preview of the payload; or their counts per
//! destination and reason.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient, clip_middle, print_table, text};
use super::output::{self, outln};

/// How often `--follow` asks for new dead deliveries.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Show the most recent dead deliveries with a masked preview of each payload; with
    /// --follow, keep printing new ones; with --group-by reason, count them per destination and
    /// reason instead.
    ///
    /// With --json: the API's answer (`{"deliveries": […], "next_cursor": …}`, or with
    /// --group-by `{"groups": […]}`) as it came; with --json --follow: one dead delivery per
    /// line, each an item of the API's `deliveries`, the first page's oldest first, then new
    /// ones as they go dead (JSON Lines).
    #[command(
        after_help = "Examples:\n  oncehook dlq tail -n 50\n  oncehook dlq tail --since 1h\n  oncehook dlq tail --group-by reason --since 24h\n  oncehook dlq tail --follow --destination crm\n  oncehook dlq tail --json | jq '.deliveries[].last_error'"
    )]
    Tail {
        #[command(flatten)]
        admin: AdminArgs,
        /// Keep running and print deliveries as they go dead.
        #[arg(long, short, conflicts_with = "group_by")]
        follow: bool,
        /// How many to show first.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Only deliveries to this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Only deliveries that went dead within this long (`1h`, `7d`) or since an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Count dead deliveries per destination and reason, largest group first.
        #[arg(long, value_enum)]
        group_by: Option<GroupBy>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum GroupBy {
    Reason,
}

pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let DlqCommand::Tail {
        admin,
        follow,
        limit,
        destination,
        since,
        group_by,
    } = command;
    let client = AdminClient::new(&admin)?;
    let mut query = Vec::new();
    if let Some(destination) = destination {
        query.push(("destination", destination));
    }
    if let Some(since) = since {
        query.push(("since", since));
    }
    if let Some(GroupBy::Reason) = group_by {
        query.push(("group_by", "reason".to_owned()));
        let answer = client.get_answer("/api/v1/dlq", &query).await?;
        if admin.json {
            output::text(&answer.text);
        } else {
            print_groups(&answer.json);
        }
        return Ok(ExitCode::SUCCESS);
    }
    query.insert(0, ("limit", limit.clamp(1, 1000).to_string()));
    let page = client.get_answer("/api/v1/dlq", &query).await?;
    let first = deliveries(&page.json);
    if admin.json && !follow {
        output::text(&page.text);
        return Ok(ExitCode::SUCCESS);
    }
    if admin.json {
        for delivery in first.iter().rev() {
            outln!("{delivery}");
        }
    } else if first.is_empty() && !follow {
        outln!("the dead-letter queue is empty");
    } else {
        print_table(
            &[
                "DIED",
                "DESTINATION",
                "REASON",
                "EVENT",
                "ATTEMPTS",
                "LAST ERROR",
            ],
            &first.iter().map(row).collect::<Vec<_>>(),
        );
        if !first.is_empty() {
            outln!();
            outln!("payloads (masked):");
            for delivery in &first {
                print_preview(delivery);
            }
        }
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Newest first on the wire; remember the newest seen and print what comes after it,
    // oldest first, like `tail -f`.
    let mut newest = first.first().map(position);
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let page = deliveries(&client.get("/api/v1/dlq", &query).await?);
        let fresh: Vec<&Value> = page
            .iter()
            .take_while(|d| newest.as_ref().is_none_or(|seen| position(d) > *seen))
            .collect();
        if let Some(latest) = fresh.first() {
            newest = Some(position(latest));
        }
        for delivery in fresh.into_iter().rev() {
            if admin.json {
                outln!("{delivery}");
            } else {
                let cells = row(delivery);
                outln!("{}", cells.join("  "));
                print_preview(delivery);
            }
        }
    }
}

/// The groups of `--group-by reason` as a table.
fn print_groups(answer: &Value) {
    let groups = answer
        .get("groups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if groups.is_empty() {
        outln!("the dead-letter queue is empty");
        return;
    }
    print_table(
        &["COUNT", "DESTINATION", "REASON", "LAST DIED", "LAST ERROR"],
        &groups
            .iter()
            .map(|group| {
                vec![
                    text(group, "count"),
                    text(group, "destination"),
                    text(group, "reason"),
                    text(group, "last_at"),
                    clip_middle(&text(group, "last_error"), 120),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

/// A delivery's masked payload preview, indented under a line naming the delivery.
fn print_preview(delivery: &Value) {
    outln!(
        "  delivery {} (event {}):",
        text(delivery, "delivery_id"),
        text(delivery, "event_id")
    );
    for line in text(delivery, "preview").lines() {
        // A payload that is not JSON is shown as text: no terminal control sequences from it.
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        outln!("    {line}");
    }
}

fn deliveries(page: &Value) -> Vec<Value> {
    page.get("deliveries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The list's sort key: (time of death, delivery id); RFC 3339 times of one format sort as text.
fn position(delivery: &Value) -> (String, i64) {
    (
        text(delivery, "died_at"),
        delivery
            .get("delivery_id")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    )
}

fn row(delivery: &Value) -> Vec<String> {
    vec![
        text(delivery, "died_at"),
        text(delivery, "destination"),
        text(delivery, "reason"),
        text(delivery, "event_id"),
        text(delivery, "attempts"),
        // The last column: long enough to hold the cause, which is at the end of the text.
        clip_middle(&text(delivery, "last_error"), 120),
    ]
}
