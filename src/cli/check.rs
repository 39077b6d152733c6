//! `oncehook check`: validates a config and shows what it sets up.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("{}: ok", config_path.display());
    println!(
        "intake  http://{}/webhooks/{{source}}",
        config.server.listen
    );
    println!("admin   http://{}", config.admin.listen);
    println!("store   {}", crate::config::redact_url(&config.store.url));
    println!("\nsources ({}):", config.sources.len());
    for source in &config.sources {
        let key = match &source.key {
            Some(key) => key.join(" | "),
            None => "(scheme default)".into(),
        };
        println!(
            "  {:<16} verify={:<9} key={}  dedupe_ttl={}",
            source.name,
            source.verify.scheme.as_str(),
            key,
            humantime::format_duration(source.dedupe_ttl)
        );
    }
    println!("\ndestinations ({}):", config.destinations.len());
    for destination in &config.destinations {
        println!(
            "  {:<16} {}  timeout={} max_attempts={} concurrency={}",
            destination.name,
            destination.url,
            humantime::format_duration(destination.timeout),
            destination.max_attempts,
            destination.concurrency
        );
    }
    println!("\nroutes ({}):", config.routes.len());
    for route in &config.routes {
        let filter = route
            .when
            .as_ref()
            .map(|w| {
                let values: Vec<String> = w.one_of.iter().map(|v| v.to_string()).collect();
                format!("  when {} in [{}]", w.pointer, values.join(", "))
            })
            .unwrap_or_default();
        let ordering = route
            .ordering_key
            .as_ref()
            .map(|k| format!("  ordered by {k}"))
            .unwrap_or_default();
        println!(
            "  {} -> {}{filter}{ordering}",
            route.source,
            route.to.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
