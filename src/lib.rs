//! oncehook: a webhook gateway that makes webhooks effectively once.
//!
//! See ARCHITECTURE.md for the map of modules and the flow of one webhook.

pub mod admin;
pub mod app;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod delivery;
pub mod domain;
pub mod http_error;
pub mod intake;
pub mod metrics;
pub mod privacy;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod verify;
pub mod wakeups;
