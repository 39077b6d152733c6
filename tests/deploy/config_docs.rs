//! docs/configuration.md against the real config loader, both ways, so the reference cannot
//! drift from the code:
//!
//! - every documented key's example loads (`Config::from_toml`), and every literal default
//!   matches what the loader fills in when the key is left out;
//! - every key the loader accepts is documented. The keys are discovered from the loader itself:
//!   the structs deny unknown fields, so a bogus key in a table makes serde answer "unknown field
//!   `…`, expected one of `a`, `b`, …", which lists that table's keys. A key whose value can hold
//!   a bogus key of its own is a nested table, and is explored the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use oncehook::app::Runtime;
use oncehook::config::Config;
use oncehook::verify::Verifier;

use crate::read;

const DOC: &str = "docs/configuration.md";
const BOGUS: &str = "zz_not_a_key";
/// Every `${VAR}` in the examples resolves to this: a valid `whsec_` secret is also a valid
/// token, key and plain secret.
const ENV_VALUE: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A valid config that every documented key is set into, one at a time. Names match the doc's
/// examples (`forms`, `crm`, `analytics`) so that route examples resolve.
const BASE: &str = r#"
[[sources]]
name = "forms"
verify = { scheme = "github", secrets = ["base-secret"] }

[[destinations]]
name = "crm"
url = "http://127.0.0.1:9000/leads"

[[destinations]]
name = "analytics"
url = "http://127.0.0.1:9001/events"

[[routes]]
source = "forms"
to = ["crm"]
"#;

/// One row of a key table in the doc.
#[derive(Debug)]
struct Row {
    key: String,
    default: String,
    example: String,
}

/// The rows of every table whose first column is a backticked key.
fn documented_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for line in read(DOC).lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
        if cells.len() < 4 || !line.trim_start().starts_with("| `") {
            continue;
        }
        let key = cells[0].trim().trim_matches('`').to_owned();
        rows.push(Row {
            key,
            default: cells[2].trim().to_owned(),
            example: cells[3].trim().to_owned(),
        });
    }
    assert!(rows.len() > 30, "{DOC}: only {} key rows found", rows.len());
    rows
}

/// The TOML value in a cell that is exactly one backticked TOML value, e.g. `` `"10s"` ``.
fn toml_literal(cell: &str) -> Option<toml::Value> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    if inner.contains('`') {
        return None;
    }
    let table: toml::Table = toml::from_str(&format!("v = {inner}")).ok()?;
    table.get("v").cloned()
}

/// A key path like `sources[].verify.scheme`, split into segments (`sources[]` means the first
/// element of the array).
fn segments(key: &str) -> Vec<&str> {
    key.split('.').collect()
}

/// Sets `value` at `key` in the tree, creating tables (and one-element arrays) on the way.
fn set(tree: &mut toml::Table, key: &str, value: toml::Value) {
    let parts = segments(key);
    let mut table = tree;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (name, array) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (*part, false),
        };
        if last && !array {
            table.insert(name.to_owned(), value);
            return;
        }
        let slot = if array {
            let entry = table.entry(name.to_owned()).or_insert_with(|| {
                toml::Value::Array(vec![toml::Value::Table(Default::default())])
            });
            let items = entry.as_array_mut().expect("an array of tables");
            if items.is_empty() {
                items.push(toml::Value::Table(Default::default()));
            }
            if last {
                items[0] = value;
                return;
            }
            &mut items[0]
        } else {
            table
                .entry(name.to_owned())
                .or_insert_with(|| toml::Value::Table(Default::default()))
        };
        table = slot.as_table_mut().expect("a table on the key's path");
    }
}

fn base_tree() -> toml::Table {
    toml::from_str(BASE).expect("base config")
}

/// Loads a tree with the real loader and builds what `serve` builds from it (verifiers, signers,
/// schemas). Schema files named by the tree are created first.
fn load(tree: &toml::Table) -> Result<Config, oncehook::config::ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(sources) = tree.get("sources").and_then(|s| s.as_array()) {
        for source in sources {
            if let Some(schema) = source.get("schema").and_then(|s| s.as_str()) {
                let path = dir.path().join(schema);
                std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
                std::fs::write(&path, r#"{"type": "object"}"#).expect("schema");
            }
        }
    }
    let text = toml::to_string(tree).expect("serialize");
    let config = Config::from_toml(&text, Path::new("test.toml"), dir.path(), &|_| {
        Some(ENV_VALUE.to_owned())
    })?;
    Runtime::build(&config)?;
    Ok(config)
}

/// Keys whose example only loads beside another key: the loader checks some combinations.
fn context_for(key: &str) -> Vec<(&'static str, toml::Value)> {
    let text = |s: &str| toml::Value::String(s.to_owned());
    match key {
        "sources[].verify.header"
        | "sources[].verify.algorithm"
        | "sources[].verify.encoding"
        | "sources[].verify.prefix" => vec![
            ("sources[].verify.scheme", text("hmac")),
            ("sources[].verify.header", text("X-Signature")),
        ],
        "sources[].verify.tolerance" => vec![("sources[].verify.scheme", text("stripe"))],
        "sources[].verify.verify_token" => vec![("sources[].verify.scheme", text("meta"))],
        "sources[].verify.url" => vec![("sources[].verify.scheme", text("twilio"))],
        "sources[].verify.public_key" => vec![
            ("sources[].verify.scheme", text("sendgrid")),
            ("sources[].verify.secrets", toml::Value::Array(Vec::new())),
        ],
        // The example is the private half of this key pair (scripts/gen_verify_vectors.py).
        "sources[].verify.private_key" => vec![
            ("sources[].verify.scheme", text("sendgrid")),
            ("sources[].verify.secrets", toml::Value::Array(Vec::new())),
            (
                "sources[].verify.public_key",
                text(
                    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFnDVIpcVLQTmac/bGdwpkSeuKbLrZy146WFAdcDc+qKbnBuCMhUB7/I1PogkUC0wj9uB6VqJxGoHW8pKjB18vg==",
                ),
            ),
        ],
        "store.previous_encryption_keys" => vec![("store.encryption_key", text("current-key"))],
        "sources[].rate_limit.burst" => {
            vec![("sources[].rate_limit.per_second", toml::Value::Integer(100))]
        }
        "destinations[].rate_limit.burst" => {
            vec![(
                "destinations[].rate_limit.per_second",
                toml::Value::Integer(50),
            )]
        }
        "server.auth_failures_per_ip.burst" => vec![(
            "server.auth_failures_per_ip.per_second",
            toml::Value::Integer(10),
        )],
        "routes[].when.pointer" => vec![(
            "routes[].when.in",
            toml::Value::Array(vec![text("lead.created")]),
        )],
        "routes[].when.in" | "routes[].when.prefix" => {
            vec![("routes[].when.pointer", text("/type"))]
        }
        "sources[].dedupe_ttl_when[].pointer" => vec![
            (
                "sources[].dedupe_ttl_when[].in",
                toml::Value::Array(vec![text("ping")]),
            ),
            ("sources[].dedupe_ttl_when[].ttl", text("24h")),
        ],
        "sources[].dedupe_ttl_when[].in" | "sources[].dedupe_ttl_when[].prefix" => vec![
            ("sources[].dedupe_ttl_when[].pointer", text("/type")),
            ("sources[].dedupe_ttl_when[].ttl", text("24h")),
        ],
        "sources[].dedupe_ttl_when[].ttl" => vec![
            ("sources[].dedupe_ttl_when[].pointer", text("/type")),
            ("sources[].dedupe_ttl_when[].prefix", text("invoice.")),
        ],
        "destinations[].subject" => vec![("destinations[].url", text("nats://127.0.0.1:4222"))],
        "destinations[].exchange" => vec![
            ("destinations[].url", text("amqp://127.0.0.1:5672/%2f")),
            ("destinations[].routing_key", text("leads")),
        ],
        "destinations[].routing_key" => vec![
            ("destinations[].url", text("amqp://127.0.0.1:5672/%2f")),
            ("destinations[].exchange", text("leads")),
        ],
        _ => Vec::new(),
    }
}

/// What the loader made of a key, for comparing a left-out key with its documented default.
/// `None`: the key has no literal default to compare (the test then fails, so that a new
/// default gets a way to be checked).
fn effective(key: &str, config: &Config) -> Option<String> {
    let source = &config.sources[0];
    let destination = &config.destinations[0];
    Some(match key {
        "server.listen" => config.server.listen.to_string(),
        "server.shutdown_grace" => format!("{:?}", config.server.shutdown_grace),
        "server.header_timeout" => format!("{:?}", config.server.header_timeout),
        "server.body_timeout" => format!("{:?}", config.server.body_timeout),
        "server.max_connections" => config.server.max_connections.to_string(),
        "server.max_connections_per_ip" => config.server.max_connections_per_ip.to_string(),
        "server.auth_failures_per_ip" => format!("{:?}", config.server.auth_failures_per_ip),
        "server.max_buffered_body" => config.server.max_buffered_body.as_u64().to_string(),
        "admin.listen" => config.admin.listen.to_string(),
        "store.url" => config.store.url.clone(),
        "store.batch_max" => config.store.batch_max.to_string(),
        "store.queue_max" => config.store.queue_max.to_string(),
        "store.pool_size" => config.store.pool_size.to_string(),
        "store.previous_encryption_keys" => config.store.previous_encryption_keys.len().to_string(),
        "sources[].fingerprint_ignore" => source.fingerprint_ignore.len().to_string(),
        "sources[].dedupe_ttl" => format!("{:?}", source.dedupe_ttl),
        "sources[].dedupe_ttl_when" => source.dedupe_ttl_when.len().to_string(),
        "sources[].retention" => format!("{:?}", source.retention()),
        "sources[].max_body" => source.max_body.as_u64().to_string(),
        "sources[].drop_fields" => source.drop_fields.len().to_string(),
        "sources[].mask_fields" => source.mask_fields.len().to_string(),
        "sources[].search_fields" => source.search_fields.len().to_string(),
        "sources[].allow_unsigned" => source.allow_unsigned.to_string(),
        // Defaults applied when the verifier is built: compare what it does.
        k if k.starts_with("sources[].verify.") => verifier_behaviour(config),
        "destinations[].timeout" => format!("{:?}", destination.timeout),
        "destinations[].max_attempts" => destination.max_attempts.to_string(),
        "destinations[].concurrency" => destination.concurrency.to_string(),
        "destinations[].headers" => destination.headers.len().to_string(),
        "destinations[].response_capture" => destination.response_capture.len().to_string(),
        "destinations[].backoff" => format!(
            "{:?} {:?}",
            destination.backoff.base, destination.backoff.max
        ),
        "destinations[].backoff.base" => format!("{:?}", destination.backoff.base),
        "destinations[].backoff.max" => format!("{:?}", destination.backoff.max),
        "destinations[].exchange" => destination.exchange.clone().unwrap_or_default(),
        "destinations[].routing_key" => destination.routing_key.clone().unwrap_or_default(),
        "destinations[].circuit_breaker"
        | "destinations[].circuit_breaker.failures"
        | "destinations[].circuit_breaker.cooldown" => {
            format!("{:?}", destination.circuit_breaker)
        }
        _ => return None,
    })
}

/// The first source's verifier as seen from outside: the headers it signs a body with, and
/// which clock skews it accepts.
fn verifier_behaviour(config: &Config) -> String {
    let verifier = Verifier::from_config(&config.sources[0].verify).expect("verifier");
    let at = 1_700_000_000;
    let body = br#"{"id":"evt_1"}"#;
    let signed = verifier.sign(body, "msg_1", at);
    let mut headers = http::HeaderMap::new();
    for (name, value) in &signed {
        headers.insert(name.clone(), value.clone());
    }
    let accepted: Vec<bool> = [0, 299, 301, 599, 601, 3600]
        .iter()
        .map(|skew| verifier.verify(&headers, body, at + skew).is_ok())
        .collect();
    format!("{signed:?} {accepted:?}")
}

#[test]
fn every_documented_example_loads_and_every_literal_default_is_the_loaders() {
    let mut problems = Vec::new();
    for row in documented_rows() {
        let Some(example) = toml_literal(&row.example) else {
            problems.push(format!(
                "{}: the example is not one TOML value in backticks: {}",
                row.key, row.example
            ));
            continue;
        };
        let mut tree = base_tree();
        for (key, value) in context_for(&row.key) {
            set(&mut tree, key, value);
        }
        let without = load(&tree);
        set(&mut tree, &row.key, example);
        if let Err(e) = load(&tree) {
            problems.push(format!(
                "{}: the example {} does not load: {e}",
                row.key, row.example
            ));
        }

        let Some(default) = toml_literal(&row.default) else {
            continue; // "required", "none", prose: nothing literal to compare.
        };
        let without = match without {
            Ok(config) => config,
            Err(e) => panic!("the base config for {} does not load: {e}", row.key),
        };
        let mut with_default = base_tree();
        for (key, value) in context_for(&row.key) {
            set(&mut with_default, key, value);
        }
        set(&mut with_default, &row.key, default);
        let with_default = match load(&with_default) {
            Ok(config) => config,
            Err(e) => {
                problems.push(format!(
                    "{}: the default {} does not load: {e}",
                    row.key, row.default
                ));
                continue;
            }
        };
        match (
            effective(&row.key, &without),
            effective(&row.key, &with_default),
        ) {
            (Some(left_out), Some(given)) if left_out == given => {}
            (Some(left_out), Some(given)) => problems.push(format!(
                "{}: documented default {} gives {given}, but leaving the key out gives {left_out}",
                row.key, row.default
            )),
            _ => problems.push(format!(
                "{}: has a literal default but no comparison in effective(): add one",
                row.key
            )),
        }
    }
    assert!(problems.is_empty(), "{DOC}:\n{}", problems.join("\n"));
}

/// The keys one table accepts, from the loader's unknown-field error.
fn accepted_fields(path: &str) -> Vec<String> {
    let mut tree = base_tree();
    let bogus_key = if path.is_empty() {
        BOGUS.to_owned()
    } else {
        format!("{path}.{BOGUS}")
    };
    set(&mut tree, &bogus_key, toml::Value::Integer(1));
    let error = match load(&tree) {
        Ok(_) => panic!("the loader accepted {bogus_key}"),
        Err(e) => e,
    };
    assert!(
        error.message.contains(&format!("unknown field `{BOGUS}`")),
        "{bogus_key}: expected an unknown-field error, got {error}"
    );
    // "unknown field `zz_not_a_key`, expected one of `a`, `b`" (toml adds "in `table`" below).
    let first_line = error.message.lines().next().unwrap_or("");
    let listed = first_line.split("expected").nth(1).unwrap_or("");
    listed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Whether a key holds a table with its own fixed keys (a struct): putting a bogus key inside
/// it is then an unknown-field error about that bogus key. Returns the path to explore.
fn nested_table(parent: &str, field: &str) -> Option<String> {
    let key = if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    };
    for candidate in [key.clone(), format!("{key}[]")] {
        let mut tree = base_tree();
        if candidate.ends_with("[]") {
            // Replace the whole array: one element with only the bogus key.
            let mut element = toml::Table::new();
            element.insert(BOGUS.to_owned(), toml::Value::Integer(1));
            set(
                &mut tree,
                &key,
                toml::Value::Array(vec![toml::Value::Table(element)]),
            );
        } else {
            let mut inner = toml::Table::new();
            inner.insert(BOGUS.to_owned(), toml::Value::Integer(1));
            set(&mut tree, &key, toml::Value::Table(inner));
        }
        if let Err(error) = load(&tree)
            && error.message.contains(&format!("unknown field `{BOGUS}`"))
        {
            return Some(candidate);
        }
    }
    None
}

/// Every key the loader accepts, as `table.key` paths with `[]` for arrays of tables.
fn loader_keys(path: &str, keys: &mut BTreeSet<String>, tables: &mut BTreeSet<String>) {
    for field in accepted_fields(path) {
        match nested_table(path, &field) {
            Some(nested) => {
                tables.insert(nested.clone());
                loader_keys(&nested, keys, tables);
            }
            None => {
                keys.insert(if path.is_empty() {
                    field
                } else {
                    format!("{path}.{field}")
                });
            }
        }
    }
}

#[test]
fn every_key_the_loader_accepts_is_documented() {
    let mut keys = BTreeSet::new();
    let mut tables = BTreeSet::new();
    loader_keys("", &mut keys, &mut tables);
    // The discovery itself works: it finds the tables and keys everyone knows.
    for table in [
        "server",
        "store",
        "sources[]",
        "sources[].verify",
        "destinations[].backoff",
        "routes[].when",
    ] {
        assert!(
            tables.contains(table),
            "discovery missed the table {table}: {tables:?}"
        );
    }
    for key in [
        "server.shutdown_grace",
        "store.batch_max",
        "sources[].verify.scheme",
        "routes[].when.in",
    ] {
        assert!(keys.contains(key), "discovery missed {key}: {keys:?}");
    }

    let documented: BTreeMap<String, Row> = documented_rows()
        .into_iter()
        .map(|row| (row.key.clone(), row))
        .collect();
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        undocumented.is_empty(),
        "{DOC} does not document these keys the loader accepts: {undocumented:?}"
    );
    // And nothing is documented that the loader does not know (a renamed key, a typo). A row
    // may describe a list of tables as a whole (`sources[].dedupe_ttl_when`).
    let unknown: Vec<&String> = documented
        .keys()
        .filter(|k| {
            !keys.contains(*k) && !tables.contains(*k) && !tables.contains(&format!("{k}[]"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "{DOC} documents keys the loader does not accept: {unknown:?}"
    );
}

const QUICKSTART: &str = "examples/quickstart.toml";

/// Every leaf key path under `path` in a TOML value (`[]` for arrays of tables).
fn key_paths(path: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        toml::Value::Table(table) => {
            for (key, item) in table {
                key_paths(&join(key), item, out);
            }
        }
        toml::Value::Array(items)
            if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
        {
            for item in items {
                key_paths(&format!("{path}[]"), item, out);
            }
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

/// The key paths a commented config shows: its active keys, and the keys of every comment line
/// that is itself TOML (`# encryption_key = "${ONCEHOOK_KEY}"`), under the table it sits in.
fn shown_keys(text: &str, tables: &BTreeSet<String>) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    let active: toml::Table = toml::from_str(text).expect("the quickstart is TOML");
    key_paths("", &toml::Value::Table(active), &mut shown);
    let mut table = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            table = format!("{}[]", header.trim());
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // `[sources.verify]` is the verify table of the last `[[sources]]`.
            let mut path = String::new();
            for segment in header.trim().split('.') {
                path = if path.is_empty() {
                    segment.to_owned()
                } else {
                    format!("{path}.{segment}")
                };
                if tables.contains(&format!("{path}[]")) {
                    path.push_str("[]");
                }
            }
            table = path;
        } else if let Some(comment) = line.strip_prefix('#')
            && let Ok(parsed) = toml::from_str::<toml::Table>(comment.trim())
            && !parsed.is_empty()
        {
            key_paths(&table, &toml::Value::Table(parsed), &mut shown);
        }
    }
    shown
}

#[test]
fn the_quickstart_shows_every_key_the_loader_accepts() {
    let mut keys = BTreeSet::new();
    let mut tables = BTreeSet::new();
    loader_keys("", &mut keys, &mut tables);
    let shown = shown_keys(&read(QUICKSTART), &tables);
    // A key whose value is a table of free names (`headers`, `search_fields`) shows as its
    // entries.
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            !shown.contains(*key) && !shown.iter().any(|s| s.starts_with(&format!("{key}.")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{QUICKSTART} says it documents every key, but lacks (add them, commented out where \
         they are optional): {missing:?}"
    );
    // And it shows nothing the loader does not know.
    let unknown: Vec<&String> = shown
        .iter()
        .filter(|s| !keys.contains(*s) && !keys.iter().any(|key| s.starts_with(&format!("{key}."))))
        .collect();
    assert!(
        unknown.is_empty(),
        "{QUICKSTART} shows keys the loader does not accept: {unknown:?}"
    );
}
