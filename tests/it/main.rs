//! The end-to-end tests that need no process boundary of their own, in one binary: each module
//! drives the real `oncehook` binary (started by `common::Gateway`) against real destinations,
//! real SQLite files and the real PostgreSQL. Crash, signal and soak tests, the CLI tests and the
//! deploy checks are binaries of their own (`tests/crash.rs`, `tests/reliability.rs`,
//! `tests/soak.rs`, `tests/cli.rs`, `tests/operator_cli.rs`, `tests/deploy/`).

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod bus;
mod console;
mod delivery;
mod destinations;
mod edge_limits;
mod edge_trust;
mod intake;
mod openapi;
mod postgres;
mod providers;
mod retention;
mod security;
mod store_unavailable;
mod transfer;
