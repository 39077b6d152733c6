//! `oncehook dlq tail [--follow]`: dead deliveries, newest first, with reason and last error.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient, clip, print_table, text};

/// How often `--follow` asks for new dead deliveries.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Show the most recent dead deliveries; with --follow, keep printing new ones.
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
    let first = dead_deliveries(&client, &query).await?;
    if admin.json {
        for delivery in &first {
            println!("{delivery}");
        }
    } else if first.is_empty() && !follow {
        println!("the dead-letter queue is empty");
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
        let page = dead_deliveries(&client, &query).await?;
        let fresh: Vec<&Value> = page
            .iter()
            .take_while(|d| newest.as_ref().is_none_or(|seen| position(d) > *seen))
            .collect();
        if let Some(latest) = fresh.first() {
            newest = Some(position(latest));
        }
        for delivery in fresh.into_iter().rev() {
            if admin.json {
                println!("{delivery}");
            } else {
                let cells = row(delivery);
                println!("{}", cells.join("  "));
            }
        }
    }
}

async fn dead_deliveries(
    client: &AdminClient,
    query: &[(&str, String)],
) -> anyhow::Result<Vec<Value>> {
    let page = client.get("/api/v1/dlq", query).await?;
    Ok(page
        .get("deliveries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
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
        clip(&text(delivery, "last_error"), 60),
    ]
}
