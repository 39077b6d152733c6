//! What a run found: the [`BenchReport`] that `--json` prints and `bench/run` stores, the
//! text summary, and the progress bar shown while the run lasts.
//!
//! [`summarize`] turns the workers' merged counts into the report: responses by status
//! class (202 accepted, 200 duplicate, other 2xx, 4xx, 5xx), errors by kind, open-loop
//! requests never sent, and latency percentiles — from the intended send time in open loop,
//! from the actual send in closed loop. The report's field names are a format: `bench/run`
//! and `bench/lib/summarize.py` read them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use serde::Serialize;

use super::{RunDescription, WorkerStats};

/// The whole run, as `--json` prints it and `bench/run` stores it.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub url: String,
    pub source: Option<String>,
    pub scheme: Option<String>,
    pub mode: &'static str,
    pub offered_rate: Option<f64>,
    pub connections: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub body_size: usize,
    pub duplicate_ratio: f64,
    /// Responses to requests scheduled (or sent) inside the measured window.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub status: BTreeMap<u16, u64>,
    pub accepted_202: u64,
    pub duplicate_200: u64,
    pub other_2xx: u64,
    pub client_4xx: u64,
    pub server_5xx: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub error_total: u64,
    /// Open loop only: scheduled requests the generator could not send before the deadline.
    pub not_sent: u64,
    pub latency_us: LatencySummary,
    pub presigned: u64,
    pub signed_inline: u64,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

pub(super) fn progress_bar(length: Duration) -> indicatif::ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(length.as_millis().min(u64::MAX as u128) as u64),
        target,
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {percent:>3}% {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

pub(super) fn summarize(
    run: &RunDescription,
    duration: Duration,
    stats: WorkerStats,
    not_sent: u64,
) -> BenchReport {
    let count = |predicate: &dyn Fn(u16) -> bool| -> u64 {
        stats
            .status
            .iter()
            .filter(|(status, _)| predicate(**status))
            .map(|(_, count)| count)
            .sum()
    };
    let responses: u64 = stats.status.values().sum();
    let error_total: u64 = stats.errors.values().sum();
    let histogram = &stats.latency_us;
    BenchReport {
        url: run.url.clone(),
        source: run.source.clone(),
        scheme: run.scheme.clone(),
        mode: if run.rate.is_some() { "open" } else { "closed" },
        offered_rate: run.rate,
        connections: run.connections,
        duration_secs: duration.as_secs_f64(),
        warmup_secs: run.warmup.as_secs_f64(),
        body_size: run.body_size,
        duplicate_ratio: run.duplicate_ratio,
        requests: responses + error_total,
        requests_per_sec: responses as f64 / duration.as_secs_f64().max(1e-9),
        accepted_202: count(&|s| s == 202),
        duplicate_200: count(&|s| s == 200),
        other_2xx: count(&|s| (200..300).contains(&s) && s != 200 && s != 202),
        client_4xx: count(&|s| (400..500).contains(&s)),
        server_5xx: count(&|s| s >= 500),
        status: stats.status.clone(),
        errors: stats.errors.clone(),
        error_total,
        not_sent,
        latency_us: LatencySummary {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        },
        presigned: stats.presigned,
        signed_inline: stats.signed_inline,
    }
}

pub(super) fn print_report(report: &BenchReport) {
    let mode = match report.offered_rate {
        Some(rate) => format!("open loop at {rate:.0} req/s"),
        None => "closed loop (maximum throughput)".to_owned(),
    };
    println!(
        "{} — {}, {} connections, {:.0}s (+{:.0}s warm-up), {} B bodies, {:.0}% duplicates",
        report.url,
        mode,
        report.connections,
        report.duration_secs,
        report.warmup_secs,
        report.body_size,
        report.duplicate_ratio * 100.0
    );
    println!(
        "  throughput  {:.0} req/s ({} responses)",
        report.requests_per_sec,
        report.requests - report.error_total
    );
    println!(
        "  status      202: {}  200: {}  other 2xx: {}  4xx: {}  5xx: {}  errors: {}{}",
        report.accepted_202,
        report.duplicate_200,
        report.other_2xx,
        report.client_4xx,
        report.server_5xx,
        report.error_total,
        if report.errors.is_empty() {
            String::new()
        } else {
            format!(" {:?}", report.errors)
        }
    );
    if report.not_sent > 0 {
        println!(
            "  not sent    {} scheduled requests (the server could not keep up)",
            report.not_sent
        );
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let l = &report.latency_us;
    println!(
        "  latency     p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms{}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        if report.offered_rate.is_some() {
            " (from intended send time)"
        } else {
            ""
        }
    );
}
