//! The command line: parsing, logging set-up and dispatch to one module per command.

mod bench;
mod check;
mod send;
mod serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Role;

#[derive(Parser)]
#[command(
    name = "oncehook",
    version,
    about = "A webhook gateway that makes webhooks effectively once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run intake, delivery workers, the admin API and metrics.
    Serve {
        /// The config file.
        #[arg(short, long, default_value = "oncehook.toml")]
        config: PathBuf,
        /// Which part of the work this node does when nodes share PostgreSQL.
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Validate the config and print its sources, destinations and routes.
    Check {
        #[arg(short, long, default_value = "oncehook.toml")]
        config: PathBuf,
    },
    /// Sign a payload as the source's provider would and post it to the gateway.
    Send {
        #[arg(short, long, default_value = "oncehook.toml")]
        config: PathBuf,
        /// The source to send as (its name in the config).
        #[arg(long)]
        source: String,
        /// The payload; a sample event when omitted.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Send the same delivery this many times, as a retrying provider would.
        #[arg(long, default_value_t = 1)]
        times: u32,
        /// The gateway's intake URL (default: from `server.listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Load-test a gateway: signed requests, a duplicate mix, closed or open loop, latency
    /// percentiles.
    Bench(bench::BenchArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
            Command::Send {
                config,
                source,
                file,
                times,
                url,
            } => send::run(&config, &source, file.as_deref(), times, url.as_deref()).await,
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
