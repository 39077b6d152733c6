//! What is sent: request `n`, built, signed and serialized to its exact wire bytes.
//!
//! Requests look like the source's provider sent them: a unique JSON body padded to
//! `--body-size`, a fresh value in every body field and header the source's key reads (so
//! only the intended repeats are duplicates), and the signature headers from
//! [`Verifier::sign`], the counterpart of the check intake runs. They are finished wire
//! bytes so that sending one costs a single `write`, and in closed loop they are signed on
//! every core before the timed window ([`presign`]) so that signing is not what is measured.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::Target;
use super::schedule::DuplicateMix;
use crate::config::SourceConfig;
use crate::domain::key::KeyPart;
use crate::domain::pointer::JsonPointer;
use crate::verify::Verifier;

/// Builds request `n`: a unique JSON body padded to size, signed as the source's provider
/// would sign it, serialized to its exact wire bytes.
pub(super) struct RequestFactory {
    head: Vec<u8>,
    run_id: String,
    verifier: Option<Verifier>,
    /// Body fields the source's key reads; each request gets its own value in each.
    json_key_pointers: Vec<JsonPointer>,
    email_key_pointers: Vec<JsonPointer>,
    /// Key headers the provider's signature does not already carry (e.g. `Idempotency-Key`).
    extra_key_headers: Vec<HeaderName>,
    body_size: usize,
}

impl RequestFactory {
    pub(super) fn new(
        target: &Target,
        source: Option<&SourceConfig>,
        verifier: Option<Verifier>,
        body_size: usize,
    ) -> anyhow::Result<RequestFactory> {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nUser-Agent: oncehook-bench\r\n",
            target.path, target.authority
        )
        .into_bytes();
        let mut factory = RequestFactory {
            head,
            run_id: uuid::Uuid::now_v7().simple().to_string(),
            verifier,
            json_key_pointers: Vec::new(),
            email_key_pointers: Vec::new(),
            extra_key_headers: Vec::new(),
            body_size,
        };
        let Some(source) = source else {
            return Ok(factory);
        };
        let signed: Vec<HeaderName> = match &factory.verifier {
            Some(verifier) => verifier
                .sign(b"{}", "msg_probe", 0)
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            None => Vec::new(),
        };
        let spec = source.key_spec().map_err(anyhow::Error::msg)?;
        for part in spec.alternatives.iter().flat_map(|a| &a.parts) {
            match part {
                KeyPart::Header(name) if !signed.contains(name) => {
                    factory.extra_key_headers.push(name.clone())
                }
                KeyPart::Json(pointer) if pointer.as_str() != "/id" => {
                    factory.json_key_pointers.push(pointer.clone())
                }
                KeyPart::Email(pointer) => factory.email_key_pointers.push(pointer.clone()),
                _ => {}
            }
        }
        Ok(factory)
    }

    /// The wire bytes of request `index`. `sent_at_us` goes into the body for end-to-end
    /// timing (the sink subtracts it from the delivery time); it is left out of requests
    /// signed before the window, whose send time is not known when they are built.
    pub(super) fn build(&self, index: u64, sent_at_us: Option<u64>, now_unix: i64) -> Bytes {
        let message_id = format!("msg_{}_{index}", self.run_id);
        let event_id = format!("evt_{}_{index}", self.run_id);
        let mut body = Map::new();
        body.insert("id".into(), Value::String(event_id.clone()));
        body.insert("type".into(), Value::String("bench.event".into()));
        if let Some(sent_at_us) = sent_at_us {
            body.insert("sent_at_us".into(), Value::from(sent_at_us));
        }
        let mut body = Value::Object(body);
        for pointer in &self.json_key_pointers {
            set_pointer(&mut body, pointer, Value::String(event_id.clone()));
        }
        for pointer in &self.email_key_pointers {
            let email = format!("bench+{}.{index}@example.com", self.run_id);
            set_pointer(&mut body, pointer, Value::String(email));
        }
        let body = pad_json(
            serde_json::to_vec(&body).unwrap_or_default(),
            self.body_size,
        );

        let mut wire = Vec::with_capacity(self.head.len() + 512 + body.len());
        wire.extend_from_slice(&self.head);
        if let Some(verifier) = &self.verifier {
            for (name, value) in verifier.sign(&body, &message_id, now_unix) {
                push_header(&mut wire, &name, &value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&message_id) {
            for name in &self.extra_key_headers {
                push_header(&mut wire, name, &value);
            }
        }
        wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        wire.extend_from_slice(&body);
        Bytes::from(wire)
    }
}

fn push_header(wire: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    wire.extend_from_slice(name.as_str().as_bytes());
    wire.extend_from_slice(b": ");
    wire.extend_from_slice(value.as_bytes());
    wire.extend_from_slice(b"\r\n");
}

/// Grows a serialized JSON object to `size` bytes with a `"pad"` member (never shrinks it).
fn pad_json(mut json: Vec<u8>, size: usize) -> Vec<u8> {
    // What the member adds once the closing brace is taken off: `,"pad":"` + fill + `"}`.
    const MEMBER: usize = r#","pad":""}"#.len();
    if json.last() != Some(&b'}') || json.len() - 1 + MEMBER > size {
        return json;
    }
    json.pop();
    let fill = size - json.len() - MEMBER;
    json.extend_from_slice(br#","pad":""#);
    json.resize(json.len() + fill, b'x');
    json.extend_from_slice(b"\"}");
    json
}

/// Sets `pointer` in `root`, creating objects on the way; leaves arrays and scalars alone.
fn set_pointer(root: &mut Value, pointer: &JsonPointer, value: Value) {
    let tokens: Vec<&str> = pointer.tokens().collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut node = root;
    for token in parents {
        let Value::Object(map) = node else { return };
        node = map
            .entry((*token).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = node {
        map.insert((*last).to_owned(), value);
    }
}

pub(super) fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Signs the first `count` requests (skipping the ones that will be repeats) on every core,
/// before the clock starts.
pub(super) fn presign(
    factory: &RequestFactory,
    duplicates: DuplicateMix,
    count: u64,
) -> Vec<Bytes> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let now = unix_seconds();
    let chunk = count.div_ceil(threads.max(1)).max(1);
    let mut pool = Vec::with_capacity(count as usize);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|from| {
                let to = (from + chunk).min(count);
                scope.spawn(move || {
                    (from..to)
                        .map(|index| {
                            if duplicates.is_duplicate(index) {
                                Bytes::new()
                            } else {
                                factory.build(index, None, now)
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            pool.extend(handle.join().unwrap_or_default());
        }
    });
    pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn bodies_are_padded_to_size() {
        let padded = pad_json(br#"{"id":"a"}"#.to_vec(), 100);
        assert_eq!(padded.len(), 100);
        let value: Value = serde_json::from_slice(&padded).expect("still JSON");
        assert_eq!(value["id"], "a");
        // Too small to pad: left as it is.
        assert_eq!(pad_json(br#"{"id":"a"}"#.to_vec(), 12), br#"{"id":"a"}"#);
    }

    #[test]
    fn signed_requests_verify_and_carry_unique_ids() {
        let config: Config = {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("bench.toml");
            std::fs::write(
                &path,
                r#"
[[sources]]
name = "forms"
verify = { scheme = "hmac", header = "X-Signature", secrets = ["s3cret"] }
key = ["header:Idempotency-Key", "json:/submission_id + email:/email"]
"#,
            )
            .expect("write config");
            Config::load(&path).expect("config")
        };
        let source = config.source("forms").expect("source");
        let target = Target::parse("http://127.0.0.1:9/", Some("forms")).expect("target");
        assert_eq!(target.path, "/webhooks/forms");
        let verifier = Verifier::from_config(&source.verify).expect("verifier");
        let factory =
            RequestFactory::new(&target, Some(source), Some(verifier), 512).expect("factory");
        let check = Verifier::from_config(&source.verify).expect("verifier");
        let mut ids = std::collections::HashSet::new();
        for index in 0..3 {
            let wire = factory.build(index, Some(42), unix_seconds());
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = request.parse(&wire) else {
                panic!("request does not parse");
            };
            let mut map = http::HeaderMap::new();
            for header in request.headers.iter() {
                map.append(
                    HeaderName::from_bytes(header.name.as_bytes()).expect("name"),
                    HeaderValue::from_bytes(header.value).expect("value"),
                );
            }
            let body = &wire[head..];
            assert_eq!(body.len(), 512);
            assert_eq!(check.verify(&map, body, unix_seconds()), Ok(()));
            let json: Value = serde_json::from_slice(body).expect("json");
            assert_eq!(json["sent_at_us"], 42);
            assert!(json["email"].as_str().is_some_and(|e| e.contains('@')));
            assert!(ids.insert(map["idempotency-key"].clone()));
            assert!(ids.insert(
                HeaderValue::from_str(json["submission_id"].as_str().expect("id")).expect("value")
            ));
        }
    }
}
