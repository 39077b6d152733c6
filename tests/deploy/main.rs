//! Checks of what operators run, against the real binary and its real config loader: the alert
//! rules and their unit tests (promtool), the metric names the rules and the dashboard query,
//! the runbook's anchors, the packaging files (image, Compose, systemd), `--version`, the
//! configuration reference and the quickstart, the two-node set-up of docs/deploy.md, the
//! README's walkthrough, and the runbook's commands on the systemd layout.

#[path = "../common/mod.rs"]
mod common;

mod config_docs;
mod markdown;
mod monitoring;
mod packaging;
mod readme;
mod runbook;
mod two_nodes;

use std::path::{Path, PathBuf};

/// The repository's root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Parses YAML (anchors and `<<` merge keys applied) into JSON values, which are easier to walk.
pub fn yaml(path: &str) -> serde_json::Value {
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: merge keys: {e}"));
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether a tool runs; when it does not, a skip is allowed only outside CI.
pub fn tool_available(program: &str, version_arg: &str, install_hint: &str) -> bool {
    let runs = std::process::Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed: {install_hint}"
        );
        eprintln!("skipped: {program} is not installed ({install_hint})");
    }
    runs
}

/// Runs a command; panics with everything it printed when it fails.
pub fn run_ok(program: &str, args: &[&str], dir: &Path) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{text}",
        args.join(" "),
        output.status
    );
    text
}
