//! What this binary was built from: its version, git commit, target and cargo profile.
//!
//! `build.rs` sets the values at compile time; `oncehook --version` prints them and the
//! `oncehook_build_info` metric carries the version and commit, so a dashboard shows which
//! build each node runs.

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The abbreviated git commit the binary was built from, or `unknown`.
pub const GIT_COMMIT: &str = env!("ONCEHOOK_GIT_COMMIT");

/// The target triple, e.g. `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("ONCEHOOK_BUILD_TARGET");

/// The cargo profile: `release` or `debug`.
pub const PROFILE: &str = env!("ONCEHOOK_BUILD_PROFILE");

/// The text after the program name in `oncehook --version`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ONCEHOOK_GIT_COMMIT"),
    ", ",
    env!("ONCEHOOK_BUILD_TARGET"),
    ", ",
    env!("ONCEHOOK_BUILD_PROFILE"),
    ")"
);
