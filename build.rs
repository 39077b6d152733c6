//! Build information for `oncehook --version` and the `oncehook_build_info` metric: the git
//! commit (when the source is a git checkout, or from `ONCEHOOK_GIT_COMMIT`, as container builds
//! without `.git` set it), the target triple and the cargo profile.
//!
//! It stays cheap: cargo runs it again only when `HEAD` or the branch it points at moves (or
//! `ONCEHOOK_GIT_COMMIT` changes), not on every edit of the sources. A missing `.git` or a
//! missing `git` gives the commit `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ONCEHOOK_GIT_COMMIT");

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let from_env = std::env::var("ONCEHOOK_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    // Only ask git when this package is itself a checkout (`.git` is a directory, or a file in a
    // worktree); otherwise git would describe whatever repository happens to contain it.
    let is_checkout = manifest_dir.join(".git").exists();
    let commit = from_env
        .or_else(|| {
            is_checkout
                .then(|| git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"]))
                .flatten()
        })
        .unwrap_or_else(|| "unknown".to_owned());
    if is_checkout {
        for path in watched_git_files(&manifest_dir) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    println!("cargo:rustc-env=ONCEHOOK_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=ONCEHOOK_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned())
    );
    println!(
        "cargo:rustc-env=ONCEHOOK_BUILD_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned())
    );
}

/// `HEAD`, the ref it points at (in the common git directory, for worktrees) and
/// `packed-refs`: the files that change when the commit does. Only existing files are listed,
/// because cargo reruns a build script on every build when a watched path is missing.
fn watched_git_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(head) = git(dir, &["rev-parse", "--git-path", "HEAD"]) {
        paths.push(dir.join(head));
    }
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(dir, &["rev-parse", "--git-path", &reference])
    {
        paths.push(dir.join(path));
    }
    if let Some(packed) = git(dir, &["rev-parse", "--git-path", "packed-refs"]) {
        paths.push(dir.join(packed));
    }
    paths.retain(|p| p.is_file());
    paths
}

/// Runs git in `dir`; its trimmed output, or None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
