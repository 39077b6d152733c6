//! `oncehook destinations [list | pause NAME --reason TEXT | resume NAME]`: each destination's
//! state, queue and recent outcomes, and holding or releasing its deliveries, through the admin
//! API.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::admin_client::{AdminArgs, AdminClient, print_table, text};
use super::output::{self, outln};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DestinationsArgs {
    #[command(subcommand)]
    pub command: Option<DestinationsCommand>,
    /// Without a subcommand: the list.
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum DestinationsCommand {
    /// Each destination's state, queue depth, oldest pending age, pace and last 5 minutes.
    #[command(
        after_help = "Examples:\n  oncehook destinations list\n  oncehook destinations list --json | jq '.destinations[] | select(.state != \"active\")'"
    )]
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Hold a destination's deliveries (on every node, across restarts) until it is resumed.
    #[command(
        after_help = "Example:\n  oncehook destinations pause crm --reason \"CRM deploy, CHG-42\""
    )]
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        /// The destination's name.
        name: String,
        /// Why: kept with the pause and shown with the destination.
        #[arg(long)]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        requested_by: Option<String>,
    },
    /// Release a paused destination: its backlog drains in order, at its pace.
    #[command(after_help = "Example:\n  oncehook destinations resume crm")]
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        /// The destination's name.
        name: String,
        /// Who (default: $USER).
        #[arg(long)]
        requested_by: Option<String>,
    },
}

pub async fn run(args: DestinationsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => list(&args.admin).await,
        Some(DestinationsCommand::List { admin }) => list(&admin).await,
        Some(DestinationsCommand::Pause {
            admin,
            name,
            reason,
            requested_by,
        }) => {
            let body = json!({ "reason": reason, "requested_by": requester(requested_by) });
            change(&admin, &name, "pause", &body).await
        }
        Some(DestinationsCommand::Resume {
            admin,
            name,
            requested_by,
        }) => {
            let body = json!({ "requested_by": requester(requested_by) });
            change(&admin, &name, "resume", &body).await
        }
    }
}

async fn list(admin: &AdminArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(admin)?;
    let answer = client.get_answer("/api/v1/destinations", &[]).await?;
    if admin.json {
        output::text(&answer.text);
        return Ok(ExitCode::SUCCESS);
    }
    let destinations = answer
        .json
        .get("destinations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if destinations.is_empty() {
        outln!("no destinations are configured");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = destinations.iter().map(row).collect();
    print_table(
        &[
            "DESTINATION",
            "STATE",
            "QUEUE",
            "OLDEST",
            "PACE",
            "DELIVERED 5M",
            "FAILED 5M",
            "NOTE",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

async fn change(
    admin: &AdminArgs,
    name: &str,
    action: &str,
    body: &Value,
) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(admin)?;
    let path = format!("/api/v1/destinations/{name}/{action}");
    let answer = client.post_answer(&path, body).await?;
    if admin.json {
        output::text(&answer.text);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{name}: {} ({} queued)",
        text(&answer.json, "state"),
        text(&answer.json, "queue_depth")
    );
    Ok(ExitCode::SUCCESS)
}

fn requester(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "oncehook-cli".to_owned())
}

fn row(destination: &Value) -> Vec<String> {
    let oldest = destination
        .get("oldest_pending_age_s")
        .and_then(Value::as_f64)
        .map_or_else(
            || "-".to_owned(),
            |s| humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string(),
        );
    let pace = destination
        .get("rate_limit")
        .filter(|p| !p.is_null())
        .map_or_else(
            || "-".to_owned(),
            |p| format!("{}/s burst {}", text(p, "per_second"), text(p, "burst")),
        );
    let note = match text(destination, "state").as_str() {
        "paused" => format!(
            "paused by {}: {}",
            text(destination, "paused_by"),
            text(destination, "paused_reason")
        ),
        "open" => format!("probe at {}", text(destination, "probe_at")),
        _ => String::new(),
    };
    vec![
        text(destination, "name"),
        text(destination, "state"),
        text(destination, "queue_depth"),
        oldest,
        pace,
        text(destination, "delivered_5m"),
        text(destination, "failed_5m"),
        note,
    ]
}
