//! `oncehook dlq tail [--follow]`: dead deliveries, newest first, with reason and last error.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient, clip_middle, print_table, text};
use super::output::{self, outln};

/// How often `--follow` asks for new dead deliveries.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Show the most recent dead deliveries; with --follow, keep printing new ones.
    ///
    /// With --json: the API's page (`{"deliveries": […], "next_cursor": …}`) as it came; with
    /// --json --follow: one dead delivery per line, each an item of the API's `deliveries`, the
    /// first page's oldest first, then new ones as they go dead (JSON Lines).
    #[command(
        after_help = "Examples:\n  oncehook dlq tail -n 50\n  oncehook dlq tail --follow --destination crm\n  oncehook dlq tail --json | jq '.deliveries[].last_error'"
    )]
    Tail {
        #[command(flatten)]
        admin: AdminArgs,
        /// Keep running and print deliveries as they go dead.
        #[arg(long, short)]
        follow: bool,
        /// How many to show first.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Only deliveries to this destination.
        #[arg(long)]
        destination: Option<String>,
    },
}

pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let DlqCommand::Tail {
        admin,
        follow,
        limit,
        destination,
    } = command;
    let client = AdminClient::new(&admin)?;
    let mut query = vec![("limit", limit.clamp(1, 1000).to_string())];
    if let Some(destination) = destination {
        query.push(("destination", destination));
    }
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
            }
        }
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
