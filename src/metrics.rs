//! Every metric oncehook exports (SPEC §7), and the only place that records them.
//!
//! Labels are source and destination names from the config and fixed outcome words, never
//! request paths or keys, so cardinality is bounded by the config.
//!
//! The same calls feed the in-process recorder behind `GET /api/v1/stats` (`stats.rs`). Both sit
//! at the bottom of the module graph: this module imports only `stats`, `clock` and
//! `build_info`, so every other module may record without an import cycle.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::clock::now_millis;
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::gate::DestinationState;
use crate::stats;
pub use crate::stats::IntakeOutcome;

pub const INTAKE_TOTAL: &str = "oncehook_intake_total";
pub const INTAKE_DURATION: &str = "oncehook_intake_duration_seconds";
pub const DELIVERIES_TOTAL: &str = "oncehook_deliveries_total";
pub const DELIVERY_DURATION: &str = "oncehook_delivery_duration_seconds";
pub const END_TO_END: &str = "oncehook_end_to_end_seconds";
pub const QUEUE_DEPTH: &str = "oncehook_queue_depth";
pub const DEAD_TOTAL: &str = "oncehook_dead_total";
pub const STORE_OP_DURATION: &str = "oncehook_store_op_duration_seconds";
pub const REPLAYS_TOTAL: &str = "oncehook_replays_total";
pub const RETENTION_DELETED_TOTAL: &str = "oncehook_retention_deleted_total";
pub const DEDUPE_KEYS: &str = "oncehook_dedupe_keys";
pub const DESTINATION_STATE: &str = "oncehook_destination_state";
/// Always 1; its labels say which build runs (`version`, `commit`).
pub const BUILD_INFO: &str = "oncehook_build_info";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    // Start the stats recorder's clock now: rates are over the time it has been recording,
    // which must include a quiet start, not begin at the first webhook.
    stats::global();
    HANDLE
        .get_or_init(|| {
            // Latency buckets from 100µs to 5 min: intake acks live at the low end,
            // end-to-end times with retries at the high end.
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already installed (an embedding program's): still render ours.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            // Histogram samples wait in the recorder until they are folded into their buckets,
            // which only a scrape or an upkeep pass does: without one, an unscraped gateway
            // keeps every sample (RSS grew ~130 bytes per webhook, 1.4 GiB over 10M).
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name("oncehook-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded only when scraped");
            }
            describe();
            gauge!(
                BUILD_INFO,
                "version" => crate::build_info::VERSION,
                "commit" => crate::build_info::GIT_COMMIT
            )
            .set(1.0);
            handle
        })
        .clone()
}

pub fn render() -> String {
    install().render()
}

fn describe() {
    describe_counter!(INTAKE_TOTAL, "Webhooks received, by source and outcome.");
    describe_histogram!(
        INTAKE_DURATION,
        metrics::Unit::Seconds,
        "Time from request to response at intake."
    );
    describe_counter!(
        DELIVERIES_TOTAL,
        "Delivery attempts, by destination and outcome."
    );
    describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Duration of one delivery attempt."
    );
    describe_histogram!(
        END_TO_END,
        metrics::Unit::Seconds,
        "Time from intake to successful delivery."
    );
    describe_gauge!(QUEUE_DEPTH, "Deliveries waiting, by destination.");
    describe_counter!(
        DEAD_TOTAL,
        "Deliveries that went dead, by destination and reason."
    );
    describe_histogram!(
        STORE_OP_DURATION,
        metrics::Unit::Seconds,
        "Duration of store operations."
    );
    describe_counter!(
        REPLAYS_TOTAL,
        "Replays requested through the admin API, by mode (replay or dry_run)."
    );
    describe_counter!(
        RETENTION_DELETED_TOTAL,
        "Finished events deleted after their source's retention, by source."
    );
    describe_gauge!(
        DEDUPE_KEYS,
        "Dedupe keys still blocking repeats (counted at each purge pass)."
    );
    describe_gauge!(
        DESTINATION_STATE,
        "1 for each destination's current state (active, paused, open, half_open), 0 for the others."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1: the version and git commit of the running binary."
    );
}

pub fn intake(source: &str, outcome: IntakeOutcome, elapsed: Duration) {
    counter!(INTAKE_TOTAL, "source" => source.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
    histogram!(INTAKE_DURATION, "source" => source.to_owned()).record(elapsed.as_secs_f64());
    stats::global().record_intake(now_millis(), source, outcome, elapsed);
}

pub fn store_op(op: &'static str, elapsed: Duration) {
    histogram!(STORE_OP_DURATION, "op" => op).record(elapsed.as_secs_f64());
}

pub fn delivery_attempt(destination: &str, outcome: DeliveryOutcome, elapsed: Duration) {
    counter!(
        DELIVERIES_TOTAL,
        "destination" => destination.to_owned(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
    histogram!(DELIVERY_DURATION, "destination" => destination.to_owned())
        .record(elapsed.as_secs_f64());
    stats::global().record_delivery(now_millis(), outcome);
}

pub fn end_to_end(destination: &str, elapsed: Duration) {
    histogram!(END_TO_END, "destination" => destination.to_owned()).record(elapsed.as_secs_f64());
    stats::global().record_end_to_end(now_millis(), elapsed);
}

/// A replay requested through the admin API (`dry_run`: only counted, nothing re-queued).
pub fn replay(dry_run: bool) {
    let mode = if dry_run { "dry_run" } else { "replay" };
    counter!(REPLAYS_TOTAL, "mode" => mode).increment(1);
}

pub fn dead(destination: &str, reason: DeadReason) {
    counter!(DEAD_TOTAL, "destination" => destination.to_owned(), "reason" => reason.as_str())
        .increment(1);
}

pub fn queue_depth(destination: &str, depth: u64) {
    gauge!(QUEUE_DEPTH, "destination" => destination.to_owned()).set(depth as f64);
}

pub fn retention_deleted(source: &str, events: u64) {
    counter!(RETENTION_DELETED_TOTAL, "source" => source.to_owned()).increment(events);
}

pub fn dedupe_keys(live: u64) {
    gauge!(DEDUPE_KEYS).set(live as f64);
}

/// A destination's state: 1 for `state`, 0 for every other, so a query never sees two at once.
pub fn destination_state(destination: &str, state: DestinationState) {
    for each in DestinationState::ALL {
        gauge!(
            DESTINATION_STATE,
            "destination" => destination.to_owned(),
            "state" => each.as_str()
        )
        .set(if *each == state { 1.0 } else { 0.0 });
    }
}
