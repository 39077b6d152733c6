//! `oncehook send`: posts a payload signed exactly as the source's provider would sign it,
//! optionally several times with the same delivery id, to try a set-up by hand.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::domain::key::KeyPart;
use crate::verify::Verifier;

pub async fn run(
    config_path: &Path,
    source_name: &str,
    file: Option<&Path>,
    times: u32,
    url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let Some(source) = config.source(source_name) else {
        let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no source named {source_name:?} in {} (sources: {})",
            config_path.display(),
            known.join(", ")
        );
    };
    let verifier = Verifier::from_config(&source.verify)?;
    let (body, content_type) = match file {
        Some(path) => {
            let body =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let content_type = if serde_json::from_slice::<Value>(&body).is_ok() {
                "application/json"
            } else {
                "application/octet-stream"
            };
            (body, content_type)
        }
        None => (sample_payload(source)?, "application/json"),
    };
    let url = match url {
        Some(url) => url.to_owned(),
        None => {
            let mut addr = config.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            format!("http://{addr}/webhooks/{source_name}")
        }
    };
    // One delivery id for every repetition: that is what a provider's retry looks like.
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let client = reqwest::Client::new();
    let mut all_ok = true;
    for attempt in 1..=times.max(1) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut request = client
            .post(&url)
            .header("content-type", content_type)
            .body(body.clone());
        for (name, value) in verifier.sign(&body, &message_id, now) {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        all_ok &= status.is_success();
        println!("{attempt}: {} {}", status.as_u16(), text.trim_end());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A sample event carrying every field the source's first JSON key alternative needs.
fn sample_payload(source: &crate::config::SourceConfig) -> anyhow::Result<Vec<u8>> {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let mut payload = json!({
        "id": format!("evt_{suffix}"),
        "type": "test.event",
        "created": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "data": { "message": "hello from oncehook send" },
    });
    let spec = source.key_spec().map_err(anyhow::Error::msg)?;
    for alternative in &spec.alternatives {
        let mut needs_body = false;
        for part in &alternative.parts {
            match part {
                KeyPart::Json(pointer) => {
                    needs_body = true;
                    let value = format!(
                        "{}_{suffix}",
                        pointer.as_str().rsplit('/').next().unwrap_or("value")
                    );
                    set_if_missing(&mut payload, pointer.as_str(), Value::String(value));
                }
                KeyPart::Email(pointer) => {
                    needs_body = true;
                    set_if_missing(
                        &mut payload,
                        pointer.as_str(),
                        Value::String("person@example.com".into()),
                    );
                }
                KeyPart::Header(_) | KeyPart::Form(_) | KeyPart::Fingerprint => {}
            }
        }
        if needs_body {
            break;
        }
    }
    Ok(serde_json::to_vec_pretty(&payload)?)
}

fn set_if_missing(root: &mut Value, pointer: &str, value: Value) {
    if root.pointer(pointer).is_some() {
        return;
    }
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut node = root;
    for token in parents {
        let Value::Object(map) = node else { return };
        node = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}
