//! The command line: parsing, logging set-up and dispatch to one module per command.

mod admin_client;
mod bench;
mod check;
mod destinations;
mod dlq;
mod events;
mod listen;
mod output;
mod post;
mod replay;
mod send;
mod serve;
mod stats;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Role;
use admin_client::CONFIG_VARIABLE;

#[derive(Parser)]
#[command(
    name = "oncehook",
    version,
    long_version = crate::build_info::LONG_VERSION,
    about = "A webhook gateway that makes webhooks effectively once",
    after_help = "Examples:
  oncehook serve -c /etc/oncehook/oncehook.toml
  oncehook check -c examples/quickstart.toml
  oncehook events search --source stripe --status failed_terminal --since 1h

The config file is -c FILE, else $ONCEHOOK_CONFIG, else ./oncehook.toml. The admin commands
(events, dlq, replay, stats) find the admin API at --url, else the config's admin.listen, and
take the token from $ONCEHOOK_ADMIN_TOKEN, else the config's admin.token."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run intake, delivery workers, the admin API and metrics.
    #[command(after_help = "Examples:
  oncehook serve -c examples/quickstart.toml
  oncehook serve -c /etc/oncehook/oncehook.toml --role intake")]
    Serve {
        /// The config file.
        #[arg(short, long, env = CONFIG_VARIABLE, default_value = "oncehook.toml")]
        config: PathBuf,
        /// Which part of the work this node does when nodes share PostgreSQL.
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Validate the config and print its sources, destinations and routes.
    #[command(after_help = "Example:
  oncehook check -c examples/quickstart.toml")]
    Check {
        /// The config file.
        #[arg(short, long, env = CONFIG_VARIABLE, default_value = "oncehook.toml")]
        config: PathBuf,
    },
    /// Sign a payload as the source's provider would and post it to the gateway.
    #[command(after_help = "Examples:
  oncehook send -c examples/quickstart.toml --source demo --times 3
  oncehook send -c examples/quickstart.toml --source forms --file examples/lead.json
  oncehook send -c oncehook.toml --source slack --handshake")]
    Send {
        /// The config file: the source's secret, and server.listen unless --url is given.
        #[arg(short, long, env = CONFIG_VARIABLE, default_value = "oncehook.toml")]
        config: PathBuf,
        /// The source to send as (its name in the config).
        #[arg(long)]
        source: String,
        /// The payload; a sample event when omitted. A `.json` file is sent as application/json
        /// (with a warning when it does not parse); another file as JSON when it parses, else
        /// as application/octet-stream (a Twilio source's as a form).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Send the same delivery this many times, as a retrying provider would.
        #[arg(long, default_value_t = 1)]
        times: u32,
        /// The gateway's intake URL (default: from `server.listen`).
        #[arg(long)]
        url: Option<String>,
        /// Send the provider's handshake instead of an event (Slack's and Zoom's URL checks,
        /// Meta's subscription check) and check the answer.
        #[arg(long, conflicts_with_all = ["file", "times"])]
        handshake: bool,
    },
    /// Receive deliveries on 127.0.0.1:PORT and print them, checking their signature.
    #[command(after_help = "Examples:
  oncehook listen --port 9000 --secret whsec_C2FtcGxlLXNpZ25pbmctc2VjcmV0LTEyMzQ1Njc4
  oncehook listen --port 9000 --status 503      # every delivery fails: watch the retries")]
    Listen {
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// The destination's `signing_secret` (whsec_…): deliveries with a bad signature get 401.
        #[arg(long)]
        secret: Option<String>,
        /// The status to answer with (e.g. 500 to watch retries).
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
    /// Search events and show one, through the admin API.
    #[command(after_help = "Examples:
  oncehook events search --source forms --email ann@example.com --since 1h
  oncehook events show EVENT_ID")]
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// The dead-letter queue, through the admin API.
    #[command(after_help = "Example:
  oncehook dlq tail --follow")]
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Re-queue deliveries on purpose (recorded with who and why), through the admin API.
    #[command(after_help = "Examples:
  oncehook replay --source stripe --status dead --since 2h --reason \"crm was down, INC-123\" --dry-run
  oncehook replay --source stripe --status dead --since 2h --reason \"crm was down, INC-123\" --wait
  oncehook replay --id EVENT_ID --reason \"customer asked for a resend\"")]
    Replay(replay::ReplayArgs),
    /// Intake rate, dedupe hit rate, latency percentiles, queue depth, dead letters.
    #[command(after_help = "Examples:
  oncehook stats --window 1h
  oncehook stats --json | jq .intake.dedupe_hit_rate")]
    Stats(stats::StatsArgs),
    /// Each destination's state, queue and recent outcomes; pause and resume one.
    #[command(after_help = "Examples:
  oncehook destinations
  oncehook destinations pause crm --reason \"CRM deploy, CHG-42\"
  oncehook destinations resume crm")]
    Destinations(destinations::DestinationsArgs),
    /// Load-test a gateway: signed requests, a duplicate mix, closed or open loop, latency
    /// percentiles.
    #[command(after_help = "Examples:
  oncehook bench -c examples/quickstart.toml --source bench --connections 64 --duration 30s
  oncehook bench -c examples/quickstart.toml --source bench --rate 2000 --duplicates 0.1 --json")]
    Bench(bench::BenchArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if !matches!(cli.command, Command::Serve { .. }) {
        output::exit_quietly_when_stdout_closes();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, role } => serve::run(&config, role).await,
            Command::Check { config } => check::run(&config),
            Command::Listen {
                port,
                secret,
                status,
            } => listen::run(port, secret.as_deref(), status).await,
            Command::Send {
                config,
                source,
                file,
                times,
                url,
                handshake,
            } => {
                let options = send::SendOptions {
                    file: file.as_deref(),
                    times,
                    url: url.as_deref(),
                    handshake,
                };
                send::run(&config, &source, options).await
            }
            Command::Events { command } => events::run(command).await,
            Command::Dlq { command } => dlq::run(command).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Stats(args) => stats::run(args).await,
            Command::Destinations(args) => destinations::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Human-readable logs on a terminal, JSON lines otherwise (for log shippers).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONCEHOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().with_current_span(false).init();
    }
}
