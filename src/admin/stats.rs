//! `GET /api/v1/stats`: recent intake and delivery figures with the queue as it stands.
//!
//! Intake and delivery figures come from this node's in-process recorder (`crate::stats`): a
//! duplicate stores no event, so the database cannot tell them. Queue depth and dead letters
//! come from the store and cover every node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiContext;
use super::error::{ApiError, ErrorBody};
use super::params::format_time;
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::stats::{IntakeCounts, MAX_WINDOW, Percentiles, SLOT_MILLIS, StatsSnapshot};
use crate::store::now_millis;

const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// How far back: a duration from 10s to 24h (default 15m).
    window: Option<String>,
    /// A percentile to report besides p50, p95 and p99: a number above 0 and at most 100
    /// (`95`, `99.9`). Each latency then carries it as `percentile`.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 100)]
    percentile: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StatsResponse {
    /// The window as asked for.
    pub window: String,
    /// How many nodes' figures are in `intake` and `delivery`: this one, and every other node
    /// sharing the store that recorded something in the window.
    pub nodes: u64,
    pub window_seconds: u64,
    /// The part of the window this node has been running (rates are over it).
    pub covered_seconds: u64,
    pub intake: IntakeStats,
    pub delivery: DeliveryStats,
    /// Open deliveries (pending, in flight, retrying) per destination, all nodes.
    pub queue_depth: BTreeMap<String, u64>,
    /// The dead-letter queue as it stands, per destination and reason, all nodes.
    pub dead_by_reason: Vec<DeadByReason>,
}

/// Intake over the window, over the nodes that answered (`nodes`).
#[derive(Serialize, ToSchema)]
pub struct IntakeStats {
    /// `node` when only this node recorded anything in the window, `nodes` when other nodes
    /// sharing the store are added in (`nodes` says how many).
    pub scope: &'static str,
    pub total: u64,
    pub rate_per_second: f64,
    /// Requests per outcome (accepted, duplicate, conflict, invalid_signature, …).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Duplicates and conflicts among requests that reached the dedupe step; null when none did.
    pub dedupe_hit_rate: Option<f64>,
    /// Time from request to response.
    pub ack_latency_ms: LatencyStats,
    /// Requests per `step_seconds`, oldest first, over the window.
    pub series: Series,
    /// The same counts per source (sources with no request in the window are left out).
    pub sources: BTreeMap<String, SourceIntakeStats>,
}

#[derive(Serialize, ToSchema)]
pub struct SourceIntakeStats {
    pub total: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub dedupe_hit_rate: Option<f64>,
}

fn outcomes(counts: &IntakeCounts) -> BTreeMap<&'static str, u64> {
    counts
        .iter()
        .map(|(outcome, count)| (outcome.as_str(), count))
        .collect()
}

/// Delivery over the window, as seen by this node only.
#[derive(Serialize, ToSchema)]
pub struct DeliveryStats {
    pub scope: &'static str,
    /// Attempts per outcome (delivered, retry, dead).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// From intake to successful delivery (replayed deliveries left out).
    pub end_to_end_ms: LatencyStats,
    /// Replayed deliveries that ended in the window.
    pub replays: ReplayStats,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayStats {
    pub delivered: u64,
    pub dead: u64,
    /// Delivered among those that ended; null when none did.
    pub success_rate: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct LatencyStats {
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// p95 per `intake.series.step_seconds`, oldest first; null where there were no samples.
    pub p95_series: Vec<Option<f64>>,
    /// The latency at the percentile asked for with `?percentile=`; null when none was asked.
    pub percentile: Option<RequestedPercentile>,
}

/// A latency at a percentile the client chose.
#[derive(Serialize, ToSchema)]
pub struct RequestedPercentile {
    /// The percentile, as asked (`99.9`).
    pub p: f64,
    /// The latency in milliseconds below which that share of samples fall; null without samples.
    pub value: Option<f64>,
}

fn round_ms(value: Option<f64>) -> Option<f64> {
    value.map(|ms| (ms * 1000.0).round() / 1000.0)
}

impl LatencyStats {
    fn new(p: Percentiles, p95_series: &[Option<f64>]) -> LatencyStats {
        LatencyStats {
            count: p.count,
            p50: round_ms(p.p50_ms),
            p95: round_ms(p.p95_ms),
            p99: round_ms(p.p99_ms),
            p95_series: p95_series.iter().map(|v| round_ms(*v)).collect(),
            percentile: p.requested.map(|(p, value)| RequestedPercentile {
                p,
                value: round_ms(value),
            }),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Series {
    pub step_seconds: u64,
    pub counts: Vec<u64>,
    /// The same counts split by outcome (every outcome, zeros included).
    pub by_outcome: BTreeMap<&'static str, Vec<u64>>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadByReason {
    pub destination: String,
    pub reason: Option<DeadReason>,
    pub count: u64,
    #[schema(format = DateTime)]
    pub last_at: String,
}

fn parse_window(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = super::params::given(text) else {
        return Ok(DEFAULT_WINDOW);
    };
    let shortest = Duration::from_millis(SLOT_MILLIS as u64);
    match humantime::parse_duration(text.trim()) {
        Ok(window) if window >= shortest && window <= MAX_WINDOW => Ok(window),
        _ => Err(ApiError::bad_request(
            "window: expected a duration from 10s to 24h (e.g. 15m, 1h)",
        )),
    }
}

fn parse_percentile(text: Option<&str>) -> Result<Option<f64>, ApiError> {
    let Some(text) = super::params::given(text) else {
        return Ok(None);
    };
    match text.parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Ok(Some(p)),
        _ => Err(ApiError::bad_request(
            "percentile: expected a number above 0 and at most 100 (e.g. 95, 99.9)",
        )),
    }
}

/// Intake rate and outcomes, dedupe hit rate, latency percentiles, queue depth, dead letters.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "stats",
    params(StatsParams),
    responses(
        (status = 200, description = "Figures over the window", body = StatsResponse),
        (status = 400, description = "The window or the percentile is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn show(
    State(context): State<Arc<ApiContext>>,
    query: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<StatsResponse>, ApiError> {
    let Query(params) = query?;
    let window = parse_window(params.window.as_deref())?;
    let percentile = parse_percentile(params.percentile.as_deref())?;
    let now = now_millis();
    // The other nodes' slots, as they shared them through the store; without them (the store
    // did not answer) this node answers for itself.
    let others = match context
        .store
        .node_stats(
            crate::stats::first_slot(now, window),
            crate::stats::node_id(),
        )
        .await
    {
        Ok(others) => others,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the other nodes' stats; showing this node's");
            Vec::new()
        }
    };
    let nodes = 1 + others
        .iter()
        .map(|(node, _, _)| node.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let slots: Vec<Vec<u8>> = others.into_iter().map(|(_, _, data)| data).collect();
    let snapshot = crate::stats::global().snapshot_with(now, window, percentile, &slots);
    let mut queue_depth: BTreeMap<String, u64> = context
        .destinations
        .iter()
        .map(|destination| (destination.name.clone(), 0))
        .collect();
    queue_depth.extend(context.store.queue_depths().await?);
    let dead_by_reason = context
        .store
        .dead_letter_groups(None)
        .await?
        .into_iter()
        .map(|group| DeadByReason {
            destination: group.destination,
            reason: group.reason,
            count: group.count,
            last_at: format_time(group.last_at),
        })
        .collect();
    Ok(Json(response(
        super::params::given(params.window.as_deref())
            .unwrap_or("15m")
            .to_owned(),
        &snapshot,
        nodes as u64,
        queue_depth,
        dead_by_reason,
    )))
}

fn response(
    window: String,
    snapshot: &StatsSnapshot,
    nodes: u64,
    queue_depth: BTreeMap<String, u64>,
    dead_by_reason: Vec<DeadByReason>,
) -> StatsResponse {
    let scope = if nodes > 1 { "nodes" } else { "node" };
    StatsResponse {
        window,
        nodes,
        window_seconds: snapshot.window.as_secs(),
        covered_seconds: snapshot.covered.as_secs(),
        intake: IntakeStats {
            scope,
            total: snapshot.intake_total(),
            rate_per_second: (snapshot.intake_rate() * 1000.0).round() / 1000.0,
            outcomes: outcomes(&snapshot.intake),
            dedupe_hit_rate: snapshot.intake.dedupe_hit_rate(),
            ack_latency_ms: LatencyStats::new(snapshot.ack_latency, &snapshot.ack_p95_series),
            series: Series {
                step_seconds: snapshot.series_step.as_secs(),
                counts: snapshot.intake_series.clone(),
                by_outcome: snapshot
                    .intake_series_by_outcome
                    .iter()
                    .map(|(outcome, counts)| (outcome.as_str(), counts.clone()))
                    .collect(),
            },
            sources: snapshot
                .intake_by_source
                .iter()
                .map(|(source, counts)| {
                    let stats = SourceIntakeStats {
                        total: counts.total(),
                        outcomes: outcomes(counts),
                        dedupe_hit_rate: counts.dedupe_hit_rate(),
                    };
                    (source.clone(), stats)
                })
                .collect(),
        },
        delivery: DeliveryStats {
            scope,
            outcomes: BTreeMap::from([
                (DeliveryOutcome::Delivered.as_str(), snapshot.delivered),
                (DeliveryOutcome::Retry.as_str(), snapshot.retried),
                (DeliveryOutcome::Dead.as_str(), snapshot.dead),
            ]),
            end_to_end_ms: LatencyStats::new(snapshot.end_to_end, &snapshot.end_to_end_p95_series),
            replays: ReplayStats {
                delivered: snapshot.replays_delivered,
                dead: snapshot.replays_dead,
                success_rate: {
                    let ended = snapshot.replays_delivered + snapshot.replays_dead;
                    (ended > 0).then(|| {
                        (snapshot.replays_delivered as f64 / ended as f64 * 10_000.0).round()
                            / 10_000.0
                    })
                },
            },
        },
        queue_depth,
        dead_by_reason,
    }
}
