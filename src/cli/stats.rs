//! `oncehook stats [--window 15m]`: the admin API's figures as a small readable report.

use std::process::ExitCode;

use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient, text};
use super::output;

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// How far back (10s to 24h).
    #[arg(long, default_value = "15m")]
    pub window: String,
    /// Also show ack and end-to-end latency at this percentile (above 0, at most 100: 95, 99.9).
    #[arg(long, value_name = "P")]
    pub percentile: Option<String>,
}

pub async fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.admin)?;
    let mut query = vec![("window", args.window.clone())];
    if let Some(p) = &args.percentile {
        query.push(("percentile", p.clone()));
    }
    let stats = client.get_answer("/api/v1/stats", &query).await?;
    if args.admin.json {
        output::text(&stats.text);
        return Ok(ExitCode::SUCCESS);
    }
    output::text(&report(&stats.json));
    Ok(ExitCode::SUCCESS)
}

fn report(stats: &Value) -> String {
    let null = Value::Null;
    let intake = stats.get("intake").unwrap_or(&null);
    let delivery = stats.get("delivery").unwrap_or(&null);
    let mut out = String::new();
    let nodes = stats.get("nodes").and_then(Value::as_u64).unwrap_or(1);
    let scope = if nodes > 1 {
        format!("intake and delivery figures are the {nodes} nodes'")
    } else {
        "intake and delivery figures are this node's".to_owned()
    };
    out.push_str(&format!("last {} ({scope})\n\n", text(stats, "window")));
    let series: Vec<u64> = intake
        .pointer("/series/counts")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "intake            {} requests  {}/s  {}\n",
        text(intake, "total"),
        text(intake, "rate_per_second"),
        sparkline(&series)
    ));
    let outcomes = counts(intake.get("outcomes"), INTAKE_OUTCOMES);
    if !outcomes.is_empty() {
        out.push_str(&format!("  outcomes        {outcomes}\n"));
    }
    let hit_rate = percent(intake.get("dedupe_hit_rate"));
    out.push_str(&format!("  dedupe hit rate {hit_rate}\n"));
    if let Some(sources) = intake.get("sources").and_then(Value::as_object)
        && sources.len() > 1
    {
        for (name, source) in sources {
            out.push_str(&format!(
                "    {name:<13} {} requests  dedupe {}\n",
                text(source, "total"),
                percent(source.get("dedupe_hit_rate"))
            ));
        }
    }
    out.push_str(&format!(
        "  ack latency     {}\n",
        percentiles(intake.get("ack_latency_ms"))
    ));
    out.push_str(&format!(
        "\ndelivery          {}\n",
        counts(delivery.get("outcomes"), &["delivered", "retry", "dead"])
    ));
    out.push_str(&format!(
        "  end to end      {}\n",
        percentiles(delivery.get("end_to_end_ms"))
    ));
    if let Some(replays) = delivery.get("replays") {
        out.push_str(&format!(
            "  replays         delivered {}  dead {}  success {}\n",
            text(replays, "delivered"),
            text(replays, "dead"),
            percent(replays.get("success_rate"))
        ));
    }
    out.push_str("\nqueue depth       ");
    match stats.get("queue_depth").and_then(Value::as_object) {
        Some(depths) if !depths.is_empty() => {
            let cells: Vec<String> = depths.iter().map(|(d, n)| format!("{d} {n}")).collect();
            out.push_str(&cells.join("  "));
        }
        _ => out.push('-'),
    }
    out.push_str("\ndead by reason    ");
    match stats.get("dead_by_reason").and_then(Value::as_array) {
        Some(groups) if !groups.is_empty() => {
            let cells: Vec<String> = groups
                .iter()
                .map(|g| {
                    format!(
                        "{} {} {}",
                        text(g, "destination"),
                        text(g, "reason"),
                        text(g, "count")
                    )
                })
                .collect();
            out.push_str(&cells.join("  "));
        }
        _ => out.push_str("none"),
    }
    out.push('\n');
    out
}

const INTAKE_OUTCOMES: &[&str] = &[
    "accepted",
    "duplicate",
    "conflict",
    "invalid_signature",
    "invalid_body",
    "rate_limited",
    "too_large",
    "unavailable",
];

/// "accepted 30  duplicate 10" in `order`, leaving out zeros.
fn counts(value: Option<&Value>, order: &[&str]) -> String {
    let Some(map) = value.and_then(Value::as_object) else {
        return "-".into();
    };
    let cells: Vec<String> = order
        .iter()
        .filter_map(|name| {
            let n = map.get(*name).and_then(Value::as_u64).unwrap_or(0);
            (n > 0).then(|| format!("{name} {n}"))
        })
        .collect();
    if cells.is_empty() {
        "none".into()
    } else {
        cells.join("  ")
    }
}

fn percent(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_f64)
        .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn percentiles(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "-".into();
    };
    let show = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_f64)
            .map_or("-".to_owned(), format_ms)
    };
    let mut line = format!(
        "p50 {}  p95 {}  p99 {}",
        show("p50"),
        show("p95"),
        show("p99")
    );
    if let Some(requested) = value.get("percentile").filter(|p| !p.is_null()) {
        let at = requested
            .get("value")
            .and_then(Value::as_f64)
            .map_or("-".to_owned(), format_ms);
        line.push_str(&format!("  p{} {at}", text(requested, "p")));
    }
    line
}

fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// Counts as block characters, scaled to the largest.
pub fn sparkline(counts: &[u64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return String::new();
    }
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                ' '
            } else {
                BLOCKS[((n * 7 / max) as usize).min(7)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_reads_the_api_answer() {
        let stats = json!({
            "window": "15m",
            "intake": {
                "total": 40, "rate_per_second": 0.044,
                "outcomes": {"accepted": 30, "duplicate": 10, "conflict": 0},
                "dedupe_hit_rate": 0.25,
                "ack_latency_ms": {"count": 40, "p50": 1.2, "p95": 4.0, "p99": 1500.0,
                                   "percentile": {"p": 99.9, "value": 1600.0}},
                "series": {"step_seconds": 30, "counts": [0, 1, 8, 0]},
                "sources": {
                    "forms": {"total": 20, "dedupe_hit_rate": 0.5},
                    "stripe": {"total": 20, "dedupe_hit_rate": 0.0}
                }
            },
            "delivery": {"outcomes": {"delivered": 3, "retry": 0, "dead": 1},
                         "end_to_end_ms": {"count": 3, "p50": 0.5, "p95": null, "p99": null},
                         "replays": {"delivered": 3, "dead": 1, "success_rate": 0.75}},
            "queue_depth": {"crm": 2},
            "dead_by_reason": [{"destination": "crm", "reason": "http_4xx", "count": 1}]
        });
        let text = report(&stats);
        for expected in [
            "40 requests",
            "accepted 30  duplicate 10",
            "25.0%",
            "p50 1.2ms  p95 4.0ms  p99 1.50s  p99.9 1.60s",
            "delivered 3  dead 1",
            "p50 500µs",
            "crm 2",
            "crm http_4xx 1",
            "replays         delivered 3  dead 1  success 75.0%",
            "this node's",
            "forms         20 requests  dedupe 50.0%",
            "stripe        20 requests  dedupe 0.0%",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert!(!text.contains("conflict"), "zeros are left out");
        assert_eq!(sparkline(&[0, 1, 8, 4]), " ▁█▄");
        assert_eq!(sparkline(&[0, 0]), "");
    }
}
