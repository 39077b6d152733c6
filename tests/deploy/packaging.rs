//! The packaging files, checked as far as this machine allows. No container engine runs here, so
//! the image is never built and Compose never started: the Dockerfile and docker-compose.yml are
//! checked statically (stages, user, ports, health check, what is copied, what is mounted, which
//! variables are needed), the configs they mount are loaded by the real config loader, the
//! systemd unit goes through `systemd-analyze verify`, and `--version` is run for real.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oncehook::app::Runtime;
use oncehook::config::{Config, ServerConfig, StoreLocation};
use serde_json::Value;

use crate::common::BIN;
use crate::{read, repo, run_ok, tool_available, yaml};

/// One Dockerfile instruction: its keyword (upper case) and the rest, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's stages, each a list of instructions starting with its FROM.
fn dockerfile_stages() -> Vec<Vec<Instruction>> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical.into_iter().filter(|l| !l.trim().is_empty()) {
        let (keyword, args) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let instruction = Instruction {
            keyword: keyword.to_uppercase(),
            args: args.trim().to_owned(),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        // ARGs before the first FROM parameterise the FROM lines; they belong to no stage.
        if let Some(stage) = stages.last_mut() {
            stage.push(instruction);
        }
    }
    stages
}

fn find<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// The admin port the image's HEALTHCHECK asks.
fn healthcheck_port(stage: &[Instruction]) -> u16 {
    let check = find(stage, "HEALTHCHECK").join(" ");
    let after = check
        .split("http://127.0.0.1:")
        .nth(1)
        .unwrap_or_else(|| panic!("HEALTHCHECK does not ask http://127.0.0.1:PORT: {check}"));
    let port: String = after.chars().take_while(char::is_ascii_digit).collect();
    port.parse().expect("HEALTHCHECK port")
}

#[test]
fn dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a multi-stage build");
    let builder = &stages[0];
    let from = builder[0].args.to_lowercase();
    assert!(
        from.contains("rust:") && from.contains("slim-bookworm") && from.ends_with(" as builder"),
        "first stage: FROM rust:…-slim-bookworm AS builder, got {from}"
    );
    let runtime = stages.last().expect("stages");
    let base = &runtime[0].args;
    assert!(
        base.starts_with("debian:bookworm-slim") || base.contains("distroless"),
        "runtime base {base}"
    );

    let user = find(runtime, "USER");
    let user = user.last().expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or("");
    assert!(
        !["0", "root", ""].contains(&uid),
        "the runtime user must not be root: {user}"
    );

    let exposed: BTreeSet<&str> = find(runtime, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .collect();
    assert!(
        exposed.contains("8080") && exposed.contains("8081"),
        "EXPOSE {exposed:?}"
    );
    assert!(
        find(runtime, "VOLUME")
            .iter()
            .any(|v| v.contains("/var/lib/oncehook")),
        "VOLUME /var/lib/oncehook"
    );
    assert_eq!(find(runtime, "STOPSIGNAL"), ["SIGTERM"]);

    // The health check asks /healthz with a tool the runtime stage installs.
    let check = find(runtime, "HEALTHCHECK").join(" ");
    assert!(check.contains("/healthz"), "HEALTHCHECK {check}");
    let tool = check
        .split("CMD [\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("HEALTHCHECK CMD in exec form: {check}"));
    assert!(
        find(runtime, "RUN")
            .iter()
            .any(|run| run.contains("apt-get install") && run.contains(tool)),
        "the runtime stage does not install {tool}, which HEALTHCHECK runs"
    );
    assert_eq!(healthcheck_port(runtime), 8081);

    // The binary comes from the builder and is the entry point.
    assert!(
        find(runtime, "COPY")
            .iter()
            .any(|c| c.starts_with("--from=builder") && c.ends_with("/usr/local/bin/oncehook")),
        "COPY --from=builder … /usr/local/bin/oncehook"
    );
    assert!(
        find(runtime, "ENTRYPOINT")
            .iter()
            .any(|e| e.contains("/usr/local/bin/oncehook"))
    );
    assert!(
        find(runtime, "CMD")
            .iter()
            .any(|c| c.contains("\"serve\"") && c.contains("/etc/oncehook/oncehook.toml"))
    );
}

/// What the build reads must be copied into the builder and not be excluded by .dockerignore:
/// the manifest, build.rs, the sources and every file they embed (`include_str!` and
/// `include_bytes!`).
#[test]
fn dockerfile_copies_everything_the_build_reads() {
    let stages = dockerfile_stages();
    let copied: BTreeSet<String> = find(&stages[0], "COPY")
        .iter()
        .filter(|c| !c.starts_with("--from"))
        .flat_map(|c| {
            let parts: Vec<&str> = c.split_whitespace().collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| p.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "build.rs", "src"]
        .map(String::from)
        .into();
    for file in rust_files(&repo().join("src")) {
        let text = std::fs::read_to_string(&file).expect("read source");
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (start, _) in text.match_indices(macro_name) {
                let rest = &text[start + macro_name.len()..];
                let relative = &rest[..rest.find('"').unwrap_or(0)];
                let target = normalize(&file.parent().expect("dir").join(relative));
                let inside = target
                    .strip_prefix(repo())
                    .unwrap_or_else(|_| panic!("{} embeds {relative}", file.display()));
                if let Some(Component::Normal(top)) = inside.components().next() {
                    needed.insert(top.to_string_lossy().into_owned());
                }
            }
        }
    }
    let ignored: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_owned())
        .collect();
    for path in &needed {
        assert!(
            copied.contains(path),
            "the builder stage does not COPY {path}"
        );
        assert!(!ignored.contains(path), ".dockerignore excludes {path}");
    }
    for path in &copied {
        assert!(repo().join(path).exists(), "COPY {path}: no such path");
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `KEY=VALUE` lines of an env file.
fn env_file(path: &str) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Compose's interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
/// `${VAR?error}` and `$$`. A required variable that is missing is an error naming it.
fn interpolate(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = inner
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {text}"))?;
        let expression = &inner[..end];
        rest = &inner[end + 1..];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_end);
        let value = env.get(name).filter(|v| !v.is_empty());
        let set = env.contains_key(name);
        let resolved = match operator {
            "" => value.cloned().unwrap_or_default(),
            op if op.starts_with(":-") => value.cloned().unwrap_or_else(|| op[2..].to_owned()),
            op if op.starts_with('-') => {
                env.get(name).cloned().unwrap_or_else(|| op[1..].to_owned())
            }
            op if op.starts_with(":?") => value
                .cloned()
                .ok_or_else(|| format!("{name} is required: {}", &op[2..]))?,
            op if op.starts_with('?') => {
                if !set {
                    return Err(format!("{name} is required: {}", &op[1..]));
                }
                env.get(name).cloned().unwrap_or_default()
            }
            op => return Err(format!("unsupported interpolation {op} in {text}")),
        };
        out.push_str(&resolved);
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolates every string of a YAML tree.
fn interpolate_tree(value: &Value, env: &BTreeMap<String, String>) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(interpolate(s, env)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| interpolate_tree(v, env))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), interpolate_tree(v, env)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn port_of(address: std::net::SocketAddr) -> String {
    address.port().to_string()
}

#[test]
fn compose_file_parses_and_its_nodes_load_their_mounted_config() {
    let example_env = env_file("deploy/compose/example.env");
    let raw = yaml("docker-compose.yml");
    // Every variable Compose requires is in example.env (which users copy to .env).
    let without_env = interpolate_tree(&raw, &BTreeMap::new());
    assert!(
        without_env.is_err(),
        "docker-compose.yml requires no variable? secrets should not have defaults"
    );
    let compose = interpolate_tree(&raw, &example_env)
        .unwrap_or_else(|e| panic!("deploy/compose/example.env lacks a variable: {e}"));
    let services = compose["services"].as_object().expect("services");

    let postgres = &services["postgres"];
    assert!(
        postgres["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:")),
        "a postgres service"
    );
    assert!(
        postgres["healthcheck"]["test"].is_array(),
        "postgres has a health check"
    );

    let stages = dockerfile_stages();
    let image_admin_port = healthcheck_port(stages.last().expect("runtime stage"));
    let mut roles = Vec::new();
    let mut admin_targets = Vec::new();
    for (name, service) in services {
        // Every bind mount names a file of the repository.
        for volume in strings(&service["volumes"]) {
            if let Some(host) = volume.split(':').next().filter(|h| h.starts_with("./")) {
                assert!(
                    repo().join(host).exists(),
                    "service {name} mounts {host}, which does not exist"
                );
            }
        }
        let Some(build) = service.get("build") else {
            continue;
        };
        assert_eq!(
            build["context"], ".",
            "service {name} builds the Dockerfile"
        );
        let command = strings(&service["command"]);
        assert_eq!(command.first().map(String::as_str), Some("serve"), "{name}");
        let flag = |f: &str| {
            command
                .iter()
                .position(|c| c == f)
                .and_then(|i| command.get(i + 1))
                .cloned()
        };
        roles.push(flag("--role").unwrap_or_else(|| "all".to_owned()));
        let config_in_container = flag("-c").expect("serve -c FILE");
        let host_config = strings(&service["volumes"])
            .iter()
            .find_map(|v| {
                let mut parts = v.split(':');
                let host = parts.next()?;
                (parts.next()? == config_in_container).then(|| host.to_owned())
            })
            .unwrap_or_else(|| panic!("service {name} does not mount {config_in_container}"));

        // The mounted config loads with the environment Compose gives the container.
        let environment: BTreeMap<String, String> = service["environment"]
            .as_object()
            .expect("environment as a map")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let path = repo().join(&host_config);
        let config = Config::from_toml(
            &read(&host_config),
            &path,
            path.parent().expect("dir"),
            &|var| environment.get(var).cloned(),
        )
        .unwrap_or_else(|e| panic!("service {name}: {e}"));
        // What the node builds from it at start-up: verifiers, signers, schema files.
        Runtime::build(&config).unwrap_or_else(|e| panic!("service {name}: {e}"));
        let Ok(StoreLocation::Postgres(url)) = config.store_location() else {
            panic!("service {name}: nodes sharing work need PostgreSQL");
        };
        assert!(
            url.contains("@postgres:5432/"),
            "service {name} reaches the postgres service: {url}"
        );
        let database = url.rsplit('/').next().unwrap_or("");
        assert_eq!(postgres["environment"]["POSTGRES_DB"], database);
        assert!(url.contains(&format!(
            "://{}:",
            postgres["environment"]["POSTGRES_USER"]
                .as_str()
                .unwrap_or("")
        )));
        assert_eq!(
            config.admin.listen.port(),
            image_admin_port,
            "{name}: the image's HEALTHCHECK asks another admin port"
        );
        assert!(
            config.admin.listen.ip().is_unspecified(),
            "{name}: admin must listen on 0.0.0.0 for Prometheus in another container"
        );
        admin_targets.push(format!("{name}:{}", config.admin.listen.port()));
        let grace: Duration = humantime::parse_duration(
            service["stop_grace_period"]
                .as_str()
                .expect("stop_grace_period"),
        )
        .expect("a duration");
        assert!(
            grace > config.server.shutdown_grace,
            "{name}: stop_grace_period {grace:?} must exceed shutdown_grace {:?}",
            config.server.shutdown_grace
        );
        assert_eq!(
            service["depends_on"]["postgres"]["condition"], "service_healthy",
            "{name} waits for PostgreSQL"
        );
        if roles.last().is_some_and(|r| r != "worker") {
            let published = strings(&service["ports"]);
            assert!(
                published
                    .iter()
                    .any(|p| p.ends_with(&format!(":{}", port_of(config.server.listen)))),
                "{name} takes webhooks but does not publish {}: {published:?}",
                config.server.listen
            );
        }
    }
    roles.sort();
    assert!(
        roles == ["intake", "worker"] || roles == ["all", "all"],
        "two oncehook nodes, intake + worker or two all: {roles:?}"
    );

    // Prometheus scrapes every node's admin port and loads the alert rules.
    let prometheus = yaml("deploy/compose/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| strings(&c["targets"]))
        .collect();
    for target in &admin_targets {
        assert!(
            targets.contains(target),
            "Prometheus does not scrape {target}"
        );
    }
    let mounts = strings(&services["prometheus"]["volumes"]);
    for rule_file in strings(&prometheus["rule_files"]) {
        assert!(
            mounts
                .iter()
                .any(|m| m.contains(&format!("/etc/prometheus/{rule_file}"))),
            "rule file {rule_file} is not mounted next to prometheus.yml"
        );
    }

    // `oncehook send -c deploy/compose/send.toml` reaches the published intake port.
    let send = Config::from_toml(
        &read("deploy/compose/send.toml"),
        Path::new("deploy/compose/send.toml"),
        &repo().join("deploy/compose"),
        &|var| example_env.get(var).cloned(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Runtime::build(&send).unwrap_or_else(|e| panic!("{e}"));
    assert!(send.source("demo").is_some());
}

/// `promtool check config` on prometheus.yml, laid out as the container sees it.
#[test]
fn compose_prometheus_config_passes_promtool() {
    if !tool_available(
        "promtool",
        "--version",
        "run scripts/ensure-promtool (scripts/test does)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo().join("deploy/compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .expect("copy");
    std::fs::copy(
        repo().join("deploy/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .expect("copy");
    let output = run_ok(
        "promtool",
        &["check", "config", "prometheus.yml"],
        dir.path(),
    );
    assert!(output.contains("SUCCESS: 1 rule files found"), "{output}");
}

/// `[Service]` settings of the unit: key → every value given.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings
                .entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    settings
}

#[test]
fn systemd_unit_is_hardened_and_stops_after_the_grace_period() {
    let text = read("deploy/systemd/oncehook.service");
    let settings = unit_settings(&text);
    let one = |key: &str| -> String {
        settings
            .get(key)
            .and_then(|v| v.last().cloned())
            .unwrap_or_else(|| panic!("the unit does not set {key}="))
    };
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("StateDirectory", "oncehook"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(
        one("DynamicUser") == "yes" || settings.contains_key("User"),
        "a dynamic or dedicated user"
    );
    let families = one("RestrictAddressFamilies");
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
    assert!(
        settings["SystemCallFilter"].contains(&"@system-service".to_owned()),
        "SystemCallFilter=@system-service"
    );
    let files: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE number");
    assert!(files >= 4096, "LimitNOFILE={files}");
    let stop = humantime::parse_duration(&one("TimeoutStopSec")).expect("TimeoutStopSec");
    let grace = ServerConfig::default().shutdown_grace;
    assert!(
        stop > grace,
        "TimeoutStopSec {stop:?} must exceed the default shutdown_grace {grace:?}"
    );
    assert_eq!(
        one("WorkingDirectory"),
        format!("/var/lib/{}", one("StateDirectory"))
    );
    assert!(one("ExecStart").starts_with("/usr/local/bin/oncehook serve -c /etc/oncehook/"));
}

/// `systemd-analyze verify` on the unit, with ExecStart pointed at the binary under test (the
/// installed path does not exist here). Any complaint about the unit fails the test.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !tool_available(
        "systemd-analyze",
        "--version",
        "install systemd (Debian: apt-get install systemd)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = read("deploy/systemd/oncehook.service").replace("/usr/local/bin/oncehook", BIN);
    let path = dir.path().join("oncehook.service");
    std::fs::write(&path, unit).expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Complaints about other units of this machine (dependencies it loads) are not ours.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("oncehook.service"))
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn version_shows_the_commit_target_and_profile() {
    let output = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let version = env!("CARGO_PKG_VERSION");
    let prefix = format!("oncehook {version} (commit ");
    assert!(text.starts_with(&prefix), "{text}");
    let inside = text
        .strip_prefix(&prefix)
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = inside.split(", ").collect();
    let [commit, target, profile] = parts[..] else {
        panic!("expected commit, target, profile: {text}");
    };
    assert!(
        target.starts_with(std::env::consts::ARCH),
        "target {target}"
    );
    assert!(["debug", "release"].contains(&profile), "profile {profile}");
    // In a git checkout the commit is HEAD's (build.rs reruns when HEAD moves).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success() && repo().join(".git").exists())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match (head, std::env::var("ONCEHOOK_GIT_COMMIT")) {
        (_, Ok(given)) if !given.trim().is_empty() => assert_eq!(commit, given.trim()),
        (Some(head), _) => assert_eq!(commit, head, "{text}"),
        (None, _) => assert_eq!(commit, "unknown"),
    }

    let short = Command::new(BIN).arg("-V").output().expect("run -V");
    assert_eq!(
        String::from_utf8_lossy(&short.stdout).trim(),
        format!("oncehook {version}")
    );
}

#[test]
fn compose_interpolation() {
    let env = BTreeMap::from([
        ("A".to_owned(), "1".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]);
    assert_eq!(interpolate("x${A}y", &env).as_deref(), Ok("x1y"));
    assert_eq!(interpolate("${B:-d}", &env).as_deref(), Ok("d"));
    assert_eq!(interpolate("${EMPTY:-d}", &env).as_deref(), Ok("d"));
    assert_eq!(interpolate("${EMPTY-d}", &env).as_deref(), Ok(""));
    assert_eq!(interpolate("$$A", &env).as_deref(), Ok("$A"));
    assert!(interpolate("${B:?set B}", &env).is_err());
    assert_eq!(interpolate("${A:?set A}", &env).as_deref(), Ok("1"));
}
