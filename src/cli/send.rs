//! `oncehook send`: posts a payload signed exactly as the source's provider would sign it,
//! optionally several times with the same delivery id, to try a set-up by hand; or, with
//! `--handshake`, the provider's handshake (Slack's and Zoom's URL checks, Meta's subscription
//! check), checking that the gateway answers it as the provider expects.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use super::output::outln;
use crate::app::Runtime;
use crate::config::{Config, SourceConfig};
use crate::domain::form::encode_component;
use crate::domain::key::KeyPart;
use crate::verify::{HandshakeReply, SchemeName, Verifier};

/// What to send, from the command line.
pub struct SendOptions<'a> {
    pub file: Option<&'a Path>,
    pub times: u32,
    pub url: Option<&'a str>,
    pub handshake: bool,
}

pub async fn run(
    config_path: &Path,
    source_name: &str,
    options: SendOptions<'_>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    // Refuses what `serve` would refuse, and signs with the verifier `serve` would check with.
    let runtime = Runtime::build(&config)?;
    let Some(source) = config.source(source_name) else {
        let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no source named {source_name:?} in {} (sources: {})",
            config_path.display(),
            known.join(", ")
        );
    };
    let Some(verifier) = runtime
        .intake
        .sources
        .iter()
        .find(|s| &*s.name == source_name)
        .map(|s| &s.verifier)
    else {
        bail!("source {source_name:?} was not built");
    };
    let url = match options.url {
        Some(url) => url.to_owned(),
        None => {
            let mut addr = config.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            format!("http://{addr}/webhooks/{source_name}")
        }
    };
    if options.handshake {
        return send_handshake(verifier, source_name, &url).await;
    }
    if !verifier.can_sign() {
        bail!(
            "source {source_name:?} uses scheme \"sendgrid\": SendGrid signs with a private key \
             only it holds, so oncehook cannot sign its requests. To try the set-up, make a \
             P-256 key pair for testing and set verify.private_key (base64 PKCS#8 DER) beside \
             its verify.public_key (docs/providers.md shows how)"
        );
    }
    let (body, content_type) = match options.file {
        Some(path) => {
            let body =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let parsed = serde_json::from_slice::<Value>(&body);
            let named_json = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            if let (true, Err(e)) = (named_json, &parsed) {
                eprintln!(
                    "warning: {} is not valid JSON ({e}); sending it as application/json all the same",
                    path.display()
                );
            }
            let content_type = if named_json || parsed.is_ok() {
                "application/json"
            } else if source.verify.scheme == SchemeName::Twilio {
                // Twilio posts forms; its signature covers the fields.
                "application/x-www-form-urlencoded"
            } else {
                "application/octet-stream"
            };
            (body, content_type)
        }
        None => sample_payload(source)?,
    };
    // One delivery id for every repetition: that is what a provider's retry looks like.
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let client = reqwest::Client::new();
    let mut all_ok = true;
    for attempt in 1..=options.times.max(1) {
        let signed = verifier.sign(&body, &message_id, unix_now());
        let mut headers = http::HeaderMap::new();
        // A scheme whose signature depends on the body's type (Twilio) says which it signed.
        if !signed.iter().any(|(name, _)| name == CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        }
        for (name, value) in signed {
            headers.append(name, value);
        }
        let (status, text) = if url.starts_with("http://") {
            // Reads an early answer (413 before the body is sent) instead of a broken pipe.
            super::post::post(&url, headers, bytes::Bytes::from(body.clone())).await
        } else {
            post_with_reqwest(&client, &url, headers, body.clone()).await
        }
        .with_context(|| format!("cannot reach {url}"))?;
        all_ok &= status.is_success();
        outln!("{attempt}: {} {}", status.as_u16(), text.trim_end());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn post_with_reqwest(
    client: &reqwest::Client,
    url: &str,
    headers: http::HeaderMap,
    body: Vec<u8>,
) -> anyhow::Result<(http::StatusCode, String)> {
    let response = client.post(url).headers(headers).body(body).send().await?;
    let status = response.status();
    Ok((status, response.text().await.unwrap_or_default()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sends the source's handshake and prints the answer: `200 text/plain <challenge>`, then
/// whether it is the one the provider expects (exit 0) or not (exit 1).
async fn send_handshake(
    verifier: &Verifier,
    source_name: &str,
    url: &str,
) -> anyhow::Result<ExitCode> {
    let challenge = format!("challenge_{}", uuid::Uuid::now_v7().simple());
    let Some(handshake) = verifier.sign_handshake(&challenge, unix_now()) else {
        bail!(
            "source {source_name:?} uses scheme \"{}\", which has no handshake (slack, zoom and \
             meta do)",
            verifier.scheme()
        );
    };
    let target = match &handshake.query {
        Some(query) => format!("{url}?{query}"),
        None => url.to_owned(),
    };
    let client = reqwest::Client::new();
    let mut request = client
        .request(handshake.method.clone(), &target)
        .body(handshake.body.clone());
    for (name, value) in &handshake.headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = response.bytes().await.unwrap_or_default();
    println!(
        "{} {} {} {content_type} {}",
        handshake.method,
        status.as_u16(),
        verifier.scheme(),
        String::from_utf8_lossy(&body).trim_end()
    );
    if status.as_u16() == 200 && answers(&handshake.expected, &content_type, &body) {
        println!("ok: the answer is the one {} expects", verifier.scheme());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} expects 200 {} {}",
            verifier.scheme(),
            handshake.expected.content_type,
            String::from_utf8_lossy(&handshake.expected.body)
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Whether an answer is the expected one: the same media type, and for JSON the same value
/// (member order and spacing aside), else the same bytes.
fn answers(expected: &HandshakeReply, content_type: &str, body: &[u8]) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(expected.content_type) {
        return false;
    }
    if expected.content_type == "application/json" {
        let parsed = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
        parsed(body).is_some() && parsed(body) == parsed(&expected.body)
    } else {
        body == expected.body.as_slice()
    }
}

/// A sample event in the shape the source's provider sends, carrying every field the source's
/// first body key alternative needs, and its content type.
fn sample_payload(source: &SourceConfig) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let now = unix_now();
    if source.verify.scheme == SchemeName::Twilio {
        return Ok((
            twilio_form(source, &suffix)?,
            "application/x-www-form-urlencoded",
        ));
    }
    let mut payload = match source.verify.scheme {
        SchemeName::Meta => json!({
            "object": "page",
            "entry": [{
                "id": "1234567890",
                "time": now,
                "changes": [{ "field": "feed", "value": { "item": "status", "post_id": format!("post_{suffix}"), "verb": "add", "message": "hello from oncehook send" } }],
            }],
        }),
        SchemeName::Zoom => json!({
            "event": "meeting.started",
            "event_ts": now.saturating_mul(1000),
            "payload": {
                "account_id": "AAAAAABBBB",
                "object": { "id": format!("{}", now), "uuid": format!("{suffix}=="), "topic": "hello from oncehook send" },
            },
        }),
        // SendGrid posts a batch: a JSON array of events.
        SchemeName::Sendgrid => json!([{
            "email": "person@example.com",
            "timestamp": now,
            "event": "delivered",
            "sg_event_id": format!("sg_{suffix}"),
            "sg_message_id": format!("msg_{suffix}"),
            "smtp-id": format!("<{suffix}@example.com>"),
        }]),
        SchemeName::Slack => json!({
            "type": "event_callback",
            "event_id": format!("Ev{suffix}"),
            "event_time": now,
            "event": { "type": "app_mention", "text": "hello from oncehook send" },
        }),
        _ => json!({
            "id": format!("evt_{suffix}"),
            "type": "test.event",
            "created": now,
            "data": { "message": "hello from oncehook send" },
        }),
    };
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
    Ok((serde_json::to_vec_pretty(&payload)?, "application/json"))
}

/// An incoming SMS as Twilio posts it, with every field the key's first form alternative names.
fn twilio_form(source: &SourceConfig, suffix: &str) -> anyhow::Result<Vec<u8>> {
    let mut fields: Vec<(String, String)> = [
        ("MessageSid", format!("SM{suffix}")),
        ("SmsSid", format!("SM{suffix}")),
        (
            "AccountSid",
            "AC00000000000000000000000000000000".to_owned(),
        ),
        ("From", "+15005550006".to_owned()),
        ("To", "+15005550001".to_owned()),
        ("Body", "hello from oncehook send".to_owned()),
        ("NumMedia", "0".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let spec = source.key_spec().map_err(anyhow::Error::msg)?;
    if let Some(alternative) = spec.alternatives.iter().find(|alternative| {
        alternative
            .parts
            .iter()
            .any(|part| matches!(part, KeyPart::Form(_)))
    }) {
        for part in &alternative.parts {
            if let KeyPart::Form(name) = part
                && !fields.iter().any(|(field, _)| field == name)
            {
                fields.push((name.clone(), format!("{name}_{suffix}")));
            }
        }
    }
    let body = fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode_component(name), encode_component(value)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(body.into_bytes())
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
