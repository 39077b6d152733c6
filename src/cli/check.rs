//! `oncehook check`: validates a config and shows what it sets up.
//!
//! Everything printed from the config goes through [`Config::redact`], so URL passwords,
//! credential query parameters and every value that came from `${VAR}` stay off the terminal;
//! destination headers are shown by name only, secrets not at all (SPEC §4.3). Warnings go to
//! stderr as lines starting `warning:` and do not change the exit code.

use std::path::Path;
use std::process::ExitCode;

use super::output::outln;
use crate::app::Runtime;
use crate::config::Config;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            // Load errors are redacted where they are made (`Config::from_toml`).
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // What `serve` would build from it: verifiers, signers, schema files,
    // subjects, routing keys and transforms are checked there.
    if let Err(e) = Runtime::build(&config) {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let show = |line: String| outln!("{}", config.redact(&line));
    outln!("{}: ok", config_path.display());
    show(format!(
        "intake  http://{}/webhooks/{{source}}",
        config.server.listen
    ));
    show(format!("admin   http://{}", config.admin.listen));
    let encrypted = if config.store.encryption_key.is_some() {
        "  (payloads encrypted)"
    } else {
        ""
    };
    show(format!("store   {}{encrypted}", config.store.url));
    outln!("\nsources ({}):", config.sources.len());
    for source in &config.sources {
        let key = match (source.key_spec(), &source.key) {
            (Ok(spec), Some(_)) => spec.to_string(),
            (Ok(spec), None) => format!("{spec} (scheme default)"),
            (Err(_), _) => "(invalid)".into(),
        };
        let tolerance = if source.verify.scheme.signs_timestamp() {
            let tolerance = source
                .verify
                .tolerance
                .unwrap_or(crate::verify::DEFAULT_TOLERANCE);
            format!("  tolerance={}", humantime::format_duration(tolerance))
        } else {
            String::new()
        };
        let replay_guard = if source.replay_guard() {
            "  replay_guard=on"
        } else {
            ""
        };
        show(format!(
            "  {:<16} verify={:<9} key={}  dedupe_ttl={}{tolerance}{replay_guard}",
            source.name,
            source.verify.scheme.as_str(),
            key,
            humantime::format_duration(source.dedupe_ttl)
        ));
    }
    outln!("\ndestinations ({}):", config.destinations.len());
    for destination in &config.destinations {
        // Header values are often credentials (`X-Api-Key`): names only.
        let headers = if destination.headers.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = destination.headers.keys().map(String::as_str).collect();
            format!("  headers={}", names.join(","))
        };
        let signed = if destination.signing_secret.is_some() {
            "  signed"
        } else {
            ""
        };
        let bus = [
            ("subject", &destination.subject),
            ("exchange", &destination.exchange),
            ("routing_key", &destination.routing_key),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("  {key}={v:?}")))
        .collect::<String>();
        show(format!(
            "  {:<16} {}{bus}  timeout={} max_attempts={} concurrency={}{headers}{signed}",
            destination.name,
            destination.url,
            humantime::format_duration(destination.timeout),
            destination.max_attempts,
            destination.concurrency
        ));
    }
    outln!("\nroutes ({}):", config.routes.len());
    for route in &config.routes {
        let filter = route
            .when
            .as_ref()
            .map(|w| match &w.prefix {
                Some(prefix) => format!("  when {} starts with {prefix:?}", w.pointer),
                None => {
                    let values: Vec<String> = w.one_of.iter().map(|v| v.to_string()).collect();
                    format!("  when {} in [{}]", w.pointer, values.join(", "))
                }
            })
            .unwrap_or_default();
        let ordering = route
            .ordering_key
            .as_ref()
            .map(|k| format!("  ordered by {k}"))
            .unwrap_or_default();
        // The program compiled (the runtime was built above); its text can be long.
        let transform = if route.transform.is_some() {
            "  transformed"
        } else {
            ""
        };
        show(format!(
            "  {} -> {}{filter}{ordering}{transform}",
            route.source,
            route.to.join(", ")
        ));
    }
    for warning in config.warnings() {
        eprintln!("warning: {}", config.redact(&warning));
    }
    Ok(ExitCode::SUCCESS)
}
