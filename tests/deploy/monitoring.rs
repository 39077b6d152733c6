//! The monitoring in deploy/: the alert rules pass promtool's checks and their unit tests, every
//! alert fires in a test case and stays silent on healthy traffic, every alert links to a
//! RUNBOOK.md section that exists, and every metric (and label) the rules and the Grafana
//! dashboard query is one the real binary exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{Gateway, post, sign, unix_now};
use crate::{read, repo, run_ok, tool_available, yaml};

const RULES: &str = "deploy/prometheus/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/oncehook.json";
const RUNBOOK_URL: &str = "https://github.com/oncehook/oncehook/blob/main/RUNBOOK.md#";
const PROMTOOL_HINT: &str = "run scripts/ensure-promtool (scripts/test does)";

/// One alerting rule as written in alerts.yml.
struct Alert {
    name: String,
    expr: String,
    rule: Value,
}

fn alerts() -> Vec<Alert> {
    let rules = yaml(RULES);
    let groups = rules["groups"].as_array().expect("groups");
    let mut alerts = Vec::new();
    for group in groups {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            alerts.push(Alert {
                name: name.to_owned(),
                expr: rule["expr"].as_str().expect("expr").to_owned(),
                rule: rule.clone(),
            });
        }
    }
    assert!(!alerts.is_empty(), "{RULES} has no alerts");
    alerts
}

#[test]
fn alert_rules_pass_promtool_check() {
    if !tool_available("promtool", "--version", PROMTOOL_HINT) {
        return;
    }
    let output = run_ok(
        "promtool",
        &["check", "rules", "alerts.yml"],
        &repo().join("deploy/prometheus"),
    );
    let expected = format!("SUCCESS: {} rules found", alerts().len());
    assert!(output.contains(&expected), "{output}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    if !tool_available("promtool", "--version", PROMTOOL_HINT) {
        return;
    }
    let output = run_ok(
        "promtool",
        &["test", "rules", "alerts.test.yml"],
        &repo().join("deploy/prometheus"),
    );
    assert!(output.contains("SUCCESS"), "{output}");
}

/// promtool passes a rule file whose alerts are never exercised; this makes sure they are.
#[test]
fn every_alert_fires_in_a_test_and_stays_silent_on_healthy_traffic() {
    let tests = yaml(RULE_TESTS);
    let mut fired = BTreeSet::new();
    let mut silent_when_healthy = BTreeSet::new();
    for case in tests["tests"].as_array().expect("tests") {
        let healthy = case["name"].as_str().is_some_and(|n| n.contains("healthy"));
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fired.insert(name);
            } else if healthy {
                silent_when_healthy.insert(name);
            }
        }
    }
    for alert in alerts() {
        assert!(
            fired.contains(&alert.name),
            "{RULE_TESTS}: no case makes {} fire",
            alert.name
        );
        assert!(
            silent_when_healthy.contains(&alert.name),
            "{RULE_TESTS}: the healthy case does not check that {} stays silent",
            alert.name
        );
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_section() {
    let runbook = read("RUNBOOK.md");
    let sections = markdown_sections(&runbook);
    for alert in alerts() {
        let severity = alert.rule["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{}: severity {severity:?}",
            alert.name
        );
        for key in ["summary", "description"] {
            assert!(
                alert.rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{}: no {key}",
                alert.name
            );
        }
        let url = alert.rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no runbook_url", alert.name));
        let anchor = url
            .strip_prefix(RUNBOOK_URL)
            .unwrap_or_else(|| panic!("{}: runbook_url {url} is not {RUNBOOK_URL}…", alert.name));
        let section = sections.get(anchor).unwrap_or_else(|| {
            panic!(
                "{}: RUNBOOK.md has no heading with anchor #{anchor}; anchors: {:?}",
                alert.name,
                sections.keys().collect::<Vec<_>>()
            )
        });
        assert!(
            section.contains(&format!("`{}`", alert.name)),
            "RUNBOOK.md#{anchor} does not name the alert {}",
            alert.name
        );
    }
}

/// Links to `#anchor`s in the runbook and the deploy guide land on headings.
#[test]
fn runbook_and_deploy_guide_links_land_on_headings() {
    let runbook = read("RUNBOOK.md");
    let runbook_anchors = markdown_sections(&runbook);
    let checks = [
        ("RUNBOOK.md", "](#", &runbook_anchors),
        ("docs/deploy.md", "](../RUNBOOK.md#", &runbook_anchors),
        ("README.md", "](RUNBOOK.md#", &runbook_anchors),
    ];
    for (file, prefix, anchors) in checks {
        let text = read(file);
        for (start, _) in text.match_indices(prefix) {
            let rest = &text[start + prefix.len()..];
            let anchor = &rest[..rest.find(')').unwrap_or(rest.len())];
            assert!(
                anchors.contains_key(anchor),
                "{file}: link to RUNBOOK.md#{anchor}, which is no heading"
            );
        }
    }
}

#[test]
fn dashboard_is_importable_with_a_prometheus_input() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "the dashboard needs a DS_PROMETHEUS input: {inputs:?}"
    );
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        let grid = &panel["gridPos"];
        let (x, w) = (
            grid["x"].as_u64().expect("x"),
            grid["w"].as_u64().expect("w"),
        );
        assert!(x + w <= 24, "panel {id} is wider than the dashboard");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {id} ({}) does not use the data source input",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}");
            assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()));
            queries += 1;
        }
    }
    assert!(queries >= 10, "only {queries} queries");
    // The panels the issue asks for, by title.
    let titles: Vec<String> = panels(&dashboard)
        .iter()
        .filter_map(|p| p["title"].as_str().map(str::to_lowercase))
        .collect();
    for wanted in [
        "intake by outcome",
        "dedupe hit rate",
        "ack latency",
        "end-to-end latency",
        "queue depth",
        "dead by reason",
        "delivery success by destination",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel titled like {wanted:?}: {titles:?}"
        );
    }
}

/// Starts a real gateway, makes every metric family appear (accepted and duplicate webhooks,
/// delivered and dead deliveries), scrapes `/metrics`, and checks every metric and label that
/// the alert rules and the dashboard use against what it exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_metrics_the_binary_exports() {
    let ok = Receiver::start().await;
    let rejects = Receiver::start().await;
    rejects.set_script(|_, _| Reply::Status(400));
    let gateway = Gateway::start(&format!(
        "[[sources]]\nname = \"gh\"\nverify = {{ scheme = \"github\", secrets = [\"metrics-secret\"] }}\n\n\
         [[destinations]]\nname = \"ok\"\nurl = \"{}\"\n\n\
         [[destinations]]\nname = \"rejects\"\nurl = \"{}\"\n\n\
         [[routes]]\nsource = \"gh\"\nto = [\"ok\", \"rejects\"]\n",
        ok.url, rejects.url
    ));
    let client = reqwest::Client::new();
    for n in 0..3 {
        let body = serde_json::to_vec(&json!({"n": n})).expect("json");
        let signed = sign(
            "scheme = \"github\"\nsecrets = [\"metrics-secret\"]",
            &body,
            &format!("delivery-{n}"),
            unix_now(),
        );
        let url = gateway.webhook_url("gh");
        let first = post(&client, &url, &signed, "application/json").await;
        assert_eq!(first.status, 202, "{}", first.json);
        let second = post(&client, &url, &signed, "application/json").await;
        assert_eq!(second.status, 200, "{}", second.json);
    }
    gateway
        .wait_for_deliveries(Duration::from_secs(20), "3 delivered, 3 dead", |d| {
            d.iter().filter(|r| r.2 == "delivered").count() == 3
                && d.iter().filter(|r| r.2 == "dead").count() == 3
        })
        .await;

    let exported = scrape(&format!("{}/metrics", gateway.admin)).await;
    for family in [
        "oncehook_intake_total",
        "oncehook_intake_duration_seconds_bucket",
        "oncehook_deliveries_total",
        "oncehook_delivery_duration_seconds_bucket",
        "oncehook_end_to_end_seconds_bucket",
        "oncehook_queue_depth",
        "oncehook_dead_total",
        "oncehook_store_op_duration_seconds_bucket",
        "oncehook_build_info",
    ] {
        assert!(
            exported.contains_key(family),
            "/metrics lacks {family}: {:?}",
            exported.keys()
        );
    }

    let mut queries: Vec<(String, String)> = alerts()
        .into_iter()
        .map(|a| (format!("alert {}", a.name), a.expr))
        .collect();
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["definition"].as_str() {
            queries.push((format!("variable {:?}", variable["name"]), query.to_owned()));
        }
    }

    let mut problems = Vec::new();
    for (place, query) in &queries {
        let used = metric_names(query);
        if used.is_empty() {
            problems.push(format!("{place}: queries no oncehook metric: {query}"));
        }
        let mut labels_in_query: BTreeSet<String> =
            ["job", "instance", "le"].map(String::from).into();
        for name in &used {
            match exported.get(name) {
                None => problems.push(format!("{place}: {name} is not exported")),
                Some(labels) => labels_in_query.extend(labels.iter().cloned()),
            }
        }
        for (metric, label) in selector_labels(query) {
            if let Some(labels) = exported.get(&metric)
                && !labels.contains(&label)
                && !["job", "instance"].contains(&label.as_str())
            {
                problems.push(format!("{place}: {metric} has no label {label:?}"));
            }
        }
        for label in grouping_labels(query) {
            if !labels_in_query.contains(&label) {
                problems.push(format!(
                    "{place}: groups by {label:?}, which no metric of the query has"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "queries that do not match /metrics:\n{}",
        problems.join("\n")
    );
}

/// Metric names (with `_bucket`, `_sum`, `_count` for histograms) → their label names.
async fn scrape(url: &str) -> BTreeMap<String, BTreeSet<String>> {
    let text = reqwest::get(url)
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let labels = exported.entry(name.to_owned()).or_default();
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            let inside = &rest[..rest.rfind('}').unwrap_or(rest.len())];
            for pair in split_label_pairs(inside) {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
    }
    exported
}

/// Splits `a="x",b="y, z"` at the commas outside quotes.
fn split_label_pairs(inside: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in inside.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&inside[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inside.len() {
        pairs.push(&inside[start..]);
    }
    pairs
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `oncehook_…` metric name in a PromQL query.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in query.match_indices("oncehook_") {
        if query[..start].chars().next_back().is_some_and(is_name_char) {
            continue;
        }
        let rest = &query[start..];
        let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
        names.insert(rest[..end].to_owned());
    }
    names
}

/// `(metric, label)` for every label matcher in a `metric{…}` selector.
fn selector_labels(query: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for metric in metric_names(query) {
        for (start, _) in query.match_indices(&format!("{metric}{{")) {
            let rest = &query[start + metric.len() + 1..];
            let inside = &rest[..rest.find('}').unwrap_or(rest.len())];
            for matcher in split_label_pairs(inside) {
                let label: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| is_name_char(*c))
                    .collect();
                if !label.is_empty() {
                    found.push((metric.clone(), label));
                }
            }
        }
    }
    found
}

/// Labels named in `by (…)` and `without (…)` clauses.
fn grouping_labels(query: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for keyword in ["by", "without"] {
        for (start, _) in query.match_indices(keyword) {
            let before_ok = !query[..start].chars().next_back().is_some_and(is_name_char);
            let rest = query[start + keyword.len()..].trim_start();
            if !before_ok || !rest.starts_with('(') {
                continue;
            }
            let inside = &rest[1..rest.find(')').unwrap_or(rest.len())];
            labels.extend(
                inside
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
        }
    }
    labels
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel.clone());
        for nested in panel["panels"].as_array().into_iter().flatten() {
            all.push(nested.clone());
        }
    }
    all
}

/// Heading anchor (as GitHub renders it) → the section's text, up to the next heading of
/// the same or a higher level. Headings inside fenced code blocks are not headings.
fn markdown_sections(markdown: &str) -> BTreeMap<String, String> {
    let mut headings = Vec::new();
    let mut in_code = false;
    let lines: Vec<&str> = markdown.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&level) && line[level..].starts_with(' ') {
            headings.push((index, level, github_anchor(line[level..].trim())));
        }
    }
    let mut sections = BTreeMap::new();
    for (i, (start, level, anchor)) in headings.iter().enumerate() {
        let end = headings[i + 1..]
            .iter()
            .find(|(_, l, _)| l <= level)
            .map_or(lines.len(), |(index, _, _)| *index);
        sections.insert(anchor.clone(), lines[*start..end].join("\n"));
    }
    sections
}

/// GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens.
fn github_anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn query_parsing_helpers() {
    let query = r#"sum by (job, source) (rate(oncehook_intake_total{outcome=~"a|b",source="x,y"}[5m])) / histogram_quantile(0.9, sum by (le) (rate(oncehook_intake_duration_seconds_bucket[5m])))"#;
    assert_eq!(
        metric_names(query),
        BTreeSet::from([
            "oncehook_intake_total".to_owned(),
            "oncehook_intake_duration_seconds_bucket".to_owned()
        ])
    );
    assert_eq!(
        selector_labels(query),
        vec![
            ("oncehook_intake_total".to_owned(), "outcome".to_owned()),
            ("oncehook_intake_total".to_owned(), "source".to_owned())
        ]
    );
    assert_eq!(
        grouping_labels(query),
        BTreeSet::from(["job", "source", "le"].map(String::from))
    );
    assert_eq!(github_anchor("Intake latency p95"), "intake-latency-p95");
    assert_eq!(github_anchor("Full disk on SQLite"), "full-disk-on-sqlite");
}
