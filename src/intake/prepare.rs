//! `prepare`: a verified webhook turned into the event the store records, without I/O. Parse
//! and schema → `drop_fields` → fingerprint → idempotency key → search hashes → deliveries →
//! what is stored of it, sealed. Every check here only reads, so a rejected request stores
//! nothing; the HTTP layer (`super`) does the limits, the signature and the store step.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::rejection::Rejection;
use super::source::SourceRuntime;
use crate::domain::fingerprint::{fingerprint_bytes, fingerprint_form, fingerprint_json};
use crate::domain::form::{FormFields, is_form_content_type};
use crate::privacy::{self, PayloadCipher, SearchKey, SensitiveValues};
use crate::store::{NewEvent, UnixMillis};

/// How what is stored of a request is protected: the payload cipher when encryption is on, and
/// the key for hashes of searchable values and ordering keys.
pub struct Sealing<'a> {
    pub cipher: Option<&'a PayloadCipher>,
    pub search_key: &'a SearchKey,
}

/// An event ready for the store, and what intake says about its key.
#[derive(Debug)]
pub struct Prepared {
    pub event: NewEvent,
    /// The key as the provider sees it in the answer.
    pub key_text: String,
    /// The key with masked and searchable values scrubbed out: stored and logged.
    pub stored_key: String,
}

/// Prepares the event `source` makes of a request whose signature was verified. `id` and `now`
/// are the event's id and receipt time.
pub fn prepare(
    source: &SourceRuntime,
    sealing: &Sealing<'_>,
    headers: &HeaderMap,
    body: Bytes,
    id: Uuid,
    now: UnixMillis,
) -> Result<Prepared, Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut json = parse_body(content_type.as_deref(), &body)?;
    if let Some(schema) = &source.schema {
        let Some(value) = &json else {
            return Err(Rejection::invalid_body(
                "this source has a JSON Schema, but the body is not JSON",
            ));
        };
        let schema = schema.for_body(value).map_err(|unknown| {
            let found = match &unknown.found {
                Some(found) => format!("is {found}"),
                None => "is missing".to_owned(),
            };
            Rejection::invalid_body(format!(
                "unknown schema version: {} {found}; this source accepts {}",
                unknown.pointer,
                unknown.accepted.join(", ")
            ))
            .with_detail(serde_json::json!({
                "pointer": unknown.pointer,
                "version": unknown.found,
                "accepted": unknown.accepted,
            }))
        })?;
        let errors: Vec<Value> = schema
            .iter_errors(value)
            .take(10)
            .map(|e| serde_json::json!({ "path": e.instance_path().to_string(), "message": e.to_string() }))
            .collect();
        if !errors.is_empty() {
            return Err(
                Rejection::invalid_body("body does not match the source's schema")
                    .with_detail(Value::Array(errors)),
            );
        }
    }

    // Dropped fields (and with `keep_fields`, the fields not kept) never reach the store, the
    // fingerprint or the key; the stored (and delivered) body is re-serialized.
    // The replay guard hashes the bytes as received: they are what a captured request repeats.
    let received_body = body.clone();
    let mut stored_body = body;
    if let Some(value) = json.as_mut()
        && source.drop_fields(value)
    {
        let reserialized = serde_json::to_vec(value)
            .map_err(|e| Rejection::unavailable(format!("cannot re-serialize the body: {e}")))?;
        stored_body = Bytes::from(reserialized);
    }

    // A form body is fingerprinted and keyed by its decoded fields, so the order and the
    // escaping a provider happens to send do not make a repeat look new.
    let form = content_type
        .as_deref()
        .filter(|ct| is_form_content_type(ct.as_bytes()))
        .map(|_| FormFields::parse(&stored_body));
    let fingerprint = match (&json, &form) {
        (Some(value), _) => fingerprint_json(value, &source.fingerprint_ignore),
        (None, Some(form)) => fingerprint_form(form, &source.fingerprint_ignore),
        (None, None) => fingerprint_bytes(&stored_body),
    };
    let key = source
        .key
        .derive(
            &source.name,
            headers,
            json.as_ref(),
            form.as_ref(),
            &fingerprint,
            &source.email,
        )
        .map_err(|e| {
            Rejection::invalid_body("no idempotency key could be derived")
                .with_detail(Value::String(e.to_string()))
        })?;

    let search = match &json {
        Some(value) if !source.search_fields.is_empty() => sealing
            .search_key
            .hash_fields(&source.search_fields, value)
            .into_iter()
            .map(|(_, hash)| hash)
            .collect(),
        _ => Vec::new(),
    };
    // A key or a header may repeat a masked or searchable value; what is stored and logged
    // of them is scrubbed (the provider's own response still echoes the key it sent).
    let sensitive = match &json {
        Some(value) if !source.hidden_fields.is_empty() => {
            SensitiveValues::collect(value, &source.hidden_fields)
        }
        _ => SensitiveValues::default(),
    };
    let stored_key = sensitive.scrub(&key.text).into_owned();
    let mut deliveries = source.deliveries_for(headers, json.as_ref(), form.as_ref(), &fingerprint);
    let cipher = sealing.cipher;
    if cipher.is_some() {
        // Ordering keys are only compared for equality: on an encrypted store they are kept as
        // keyed hashes, like search values, so a key read from a masked field is not in clear.
        for delivery in &mut deliveries {
            if let Some(ordering_key) = &mut delivery.ordering_key {
                *ordering_key = sealing.search_key.hash_text("ordering_key", ordering_key);
            }
        }
    }
    let headers_json = sensitive.scrub_headers_json(&source.headers_for_storage(headers));

    let received_at = now;
    // The key's TTL follows the event type; the replay guard's window follows the key's TTL.
    let dedupe_expires_at = received_at.saturating_add(source.dedupe_ttl_ms_for(json.as_ref()));
    let event = NewEvent {
        id,
        source: Arc::clone(&source.name),
        received_at,
        idempotency_key: stored_key.clone(),
        dedupe_key: key.dedupe,
        delivery_key: key.dedupe.delivery_key(),
        fingerprint,
        dedupe_expires_at,
        near_duplicate: source.near_duplicate_check(&fingerprint, received_at),
        replay_guard: source.replay_guard_check(&received_body, dedupe_expires_at),
        content_type,
        headers_json: privacy::seal_text(cipher, &headers_json),
        body: privacy::seal_payload(cipher, stored_body),
        deliveries,
        search,
    };
    Ok(Prepared {
        event,
        key_text: key.text,
        stored_key,
    })
}

/// Parses the body when it is JSON. JSON content types (and a missing one) must parse; form and
/// text bodies must be UTF-8 and are kept as bytes; anything else is opaque bytes.
fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Option<Value>, Rejection> {
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let is_json = essence.is_empty() || essence == "application/json" || essence.ends_with("+json");
    if is_json {
        return serde_json::from_slice(body).map(Some).map_err(|e| {
            Rejection::invalid_body("body is not valid JSON")
                .with_detail(Value::String(e.to_string()))
        });
    }
    if (essence.starts_with("text/") || essence == "application/x-www-form-urlencoded")
        && std::str::from_utf8(body).is_err()
    {
        return Err(Rejection::invalid_body("body is not valid UTF-8"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use axum::http::{HeaderValue, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::domain::condition::{FieldCondition, ValueCondition};
    use crate::domain::key::{EmailHasher, KeySpec};
    use crate::domain::pointer::JsonPointer;
    use crate::intake::source::{RouteRuntime, SourceParts, SourceSchema};
    use crate::verify::{Verifier, VerifyConfig};

    const NOW: UnixMillis = 1_800_000_000_000;

    fn pointers(list: &[&str]) -> Vec<JsonPointer> {
        list.iter().map(|p| p.parse().expect("pointer")).collect()
    }

    fn key(entries: &[&str]) -> KeySpec {
        KeySpec::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).expect("key")
    }

    /// A `github` source keyed by `Idempotency-Key`, `/id` or the fingerprint, routed to `crm`
    /// in order of `/contact`; `adjust` changes what a test needs.
    fn forms(adjust: impl FnOnce(&mut SourceParts)) -> SourceRuntime {
        let verify: VerifyConfig =
            toml::from_str("scheme = \"github\"\nsecrets = [\"s\"]").expect("verify");
        let mut parts = SourceParts {
            name: Arc::from("forms"),
            verifier: Verifier::from_config(&verify).expect("verifier"),
            key: key(&["header:Idempotency-Key", "json:/id", "fingerprint"]),
            fingerprint_ignore: Vec::new(),
            dedupe_ttl: Duration::from_secs(72 * 3600),
            dedupe_ttl_when: Vec::new(),
            near_duplicate_window: None,
            max_body: 1 << 20,
            schema: None,
            search_fields: BTreeMap::new(),
            hidden_fields: Vec::new(),
            email: EmailHasher::unkeyed(),
            replay_guard: true,
            drop_fields: Vec::new(),
            keep_fields: Vec::new(),
            rate_limit: None,
            routes: vec![RouteRuntime {
                destinations: vec![Arc::from("crm")],
                when: None,
                ordering_key: Some(key(&["json:/contact"])),
            }],
        };
        adjust(&mut parts);
        SourceRuntime::new(parts)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn run(
        source: &SourceRuntime,
        cipher: Option<&PayloadCipher>,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<Prepared, Rejection> {
        let search_key = SearchKey::new(cipher.map(|_| "k"));
        prepare(
            source,
            &Sealing {
                cipher,
                search_key: &search_key,
            },
            headers,
            Bytes::from(serde_json::to_vec(body).expect("json")),
            Uuid::nil(),
            NOW,
        )
    }

    #[test]
    fn a_verified_request_becomes_the_event_the_store_records() {
        let source = forms(|s| {
            s.drop_fields = pointers(&["/ip"]);
            s.hidden_fields = pointers(&["/email"]);
        });
        let body = json!({"id": "sub_1", "ip": "10.1.2.3", "email": "ann@example.com",
                          "contact": "c-9"});
        let prepared = run(
            &source,
            None,
            &headers(&[
                ("user-agent", "GitHub-Hookshot/1"),
                ("x-hub-signature-256", "sha256=00"),
            ]),
            &body,
        )
        .expect("prepared");
        let event = &prepared.event;
        assert_eq!(prepared.key_text, "sub_1");
        assert_eq!(event.received_at, NOW);
        assert_eq!(event.dedupe_expires_at, NOW + 72 * 3600 * 1000);
        assert_eq!(event.delivery_key, event.dedupe_key.delivery_key());
        // Dropped fields never reach the store; the body is re-serialized without them.
        let stored: Value = serde_json::from_slice(&event.body).expect("stored JSON");
        assert_eq!(stored.get("ip"), None);
        assert_eq!(stored["email"], "ann@example.com");
        // Headers: the allow-list only, no signature.
        let stored_headers: Value = serde_json::from_str(&event.headers_json).expect("headers");
        assert_eq!(stored_headers["user-agent"], "GitHub-Hookshot/1");
        assert!(stored_headers.get("x-hub-signature-256").is_none());
        // One delivery per routed destination, with its ordering key.
        assert_eq!(event.deliveries.len(), 1);
        assert_eq!(event.deliveries[0].ordering_key.as_deref(), Some("c-9"));
        // github signs only the body: the replay guard hashes the bytes as received.
        assert!(event.replay_guard.is_some());
        assert!(event.near_duplicate.is_none());
    }

    #[test]
    fn the_replay_guard_sees_the_bytes_as_received_and_keys_see_the_kind() {
        let source = forms(|s| s.drop_fields = pointers(&["/ip"]));
        let a = run(&source, None, &headers(&[]), &json!({"id": "1", "ip": "a"})).expect("a");
        let b = run(&source, None, &headers(&[]), &json!({"id": "1", "ip": "b"})).expect("b");
        // Same stored body and key, different bytes on the wire.
        assert_eq!(a.event.body, b.event.body);
        assert_eq!(a.event.dedupe_key, b.event.dedupe_key);
        let (ga, gb) = (
            a.event.replay_guard.expect("a"),
            b.event.replay_guard.expect("b"),
        );
        assert_ne!(ga.key, gb.key);
        // A header carrying the same value as the body's id is a different key.
        let from_header = run(
            &source,
            None,
            &headers(&[("idempotency-key", "1")]),
            &json!({"ip": "a"}),
        )
        .expect("header key");
        assert_eq!(from_header.key_text, a.key_text);
        assert_ne!(from_header.event.dedupe_key, a.event.dedupe_key);
        let unguarded = forms(|s| s.replay_guard = false);
        let event = run(&unguarded, None, &headers(&[]), &json!({"id": "1"})).expect("event");
        assert!(event.event.replay_guard.is_none());
    }

    #[test]
    fn with_a_cipher_nothing_the_provider_sent_is_kept_in_clear() {
        let source = forms(|s| s.hidden_fields = pointers(&["/email"]));
        let cipher = PayloadCipher::new("k", &[]);
        let body = json!({"id": "sub_1", "email": "ann@example.com", "contact": "c-secret"});
        let prepared = run(
            &source,
            Some(&cipher),
            &headers(&[("user-agent", "agent-in-clear")]),
            &body,
        )
        .expect("prepared");
        let event = &prepared.event;
        let clear = |bytes: &[u8], needle: &str| {
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        };
        assert!(!clear(&event.body, "ann@example.com"));
        assert!(!clear(event.headers_json.as_bytes(), "agent-in-clear"));
        let ordering_key = event.deliveries[0].ordering_key.as_deref().expect("key");
        assert!(!ordering_key.contains("c-secret"));
        assert_eq!(
            crate::privacy::decrypt_with(Some(&cipher), &event.body).expect("opens"),
            Bytes::from(serde_json::to_vec(&body).expect("json"))
        );
    }

    #[test]
    fn bad_bodies_are_rejected_with_what_is_wrong() {
        #[track_caller]
        fn check(result: Result<Prepared, Rejection>, message: &str) {
            let rejection = result.expect_err("rejected");
            assert_eq!(rejection.status(), StatusCode::BAD_REQUEST);
            assert!(rejection.error.message().contains(message), "{rejection:?}");
        }
        let source = forms(|_| {});
        let search_key = SearchKey::new(None);
        let sealing = Sealing {
            cipher: None,
            search_key: &search_key,
        };
        let raw = |content_type: &'static str, body: &'static [u8]| {
            let mut map = HeaderMap::new();
            map.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            prepare(
                &source,
                &sealing,
                &map,
                Bytes::from_static(body),
                Uuid::nil(),
                NOW,
            )
        };
        check(raw("application/json", b"{\"id\": 1,"), "not valid JSON");
        check(raw("text/plain", b"\xff\xfe"), "not valid UTF-8");
        // Opaque bytes are fine: keyed by their fingerprint.
        assert!(raw("application/octet-stream", b"\xff\xfe").is_ok());

        let keyed = forms(|s| s.key = key(&["json:/id"]));
        let result = run(&keyed, None, &headers(&[]), &json!({"other": 1}));
        check(result, "no idempotency key");

        let schema = json!({"type": "object", "required": ["email"]});
        let with_schema = forms(|s| {
            s.schema = Some(SourceSchema::Single(
                jsonschema::validator_for(&schema).expect("schema"),
            ));
        });
        let rejection = run(&with_schema, None, &headers(&[]), &json!({"id": "1"}))
            .expect_err("schema mismatch");
        assert_eq!(rejection.status(), StatusCode::BAD_REQUEST);
        assert!(rejection.error.message().contains("schema"));
    }

    #[test]
    fn a_versioned_schema_is_chosen_by_the_version_in_the_body() {
        let v1 = json!({"type": "object", "required": ["email"]});
        let v2 = json!({"type": "object", "required": ["phone"]});
        let source = forms(|s| {
            s.schema = Some(SourceSchema::Versioned {
                pointer: "/version".parse().expect("pointer"),
                versions: BTreeMap::from([
                    ("1".to_owned(), jsonschema::validator_for(&v1).expect("v1")),
                    ("2".to_owned(), jsonschema::validator_for(&v2).expect("v2")),
                ]),
            });
        });
        let run_body = |body: Value| run(&source, None, &headers(&[]), &body);
        assert!(run_body(json!({"id": "a", "version": "1", "email": "x"})).is_ok());
        // A number is the same version as its text.
        assert!(run_body(json!({"id": "a", "version": 2, "phone": "1"})).is_ok());
        let mismatch = run_body(json!({"id": "a", "version": "2", "email": "x"}))
            .expect_err("v2 needs a phone");
        assert!(mismatch.error.message().contains("schema"));
        for (body, found) in [
            (json!({"id": "a", "version": "3"}), "is \"3\""),
            (json!({"id": "a"}), "is missing"),
            (json!({"id": "a", "version": {"major": 1}}), "is {"),
        ] {
            let rejection = run_body(body).expect_err("unknown version");
            assert_eq!(rejection.status(), StatusCode::BAD_REQUEST);
            let message = rejection.error.message();
            assert!(
                message.contains("/version") && message.contains(found),
                "{message}"
            );
            assert!(message.contains("accepts 1, 2"), "{message}");
        }
    }

    #[test]
    fn keep_fields_store_fingerprint_and_key_only_what_they_name() {
        let source = forms(|s| {
            s.drop_fields = pointers(&["/contact/secret"]);
            s.keep_fields = pointers(&["/id", "/email", "/contact"]);
        });
        let body = json!({"id": "k1", "email": "a@x", "ip": "1.2.3.4",
                          "contact": {"id": 9, "secret": "s"}, "noise": [1, 2]});
        let prepared = run(&source, None, &headers(&[]), &body).expect("prepared");
        let stored: Value = serde_json::from_slice(&prepared.event.body).expect("json");
        assert_eq!(
            stored,
            json!({"id": "k1", "email": "a@x", "contact": {"id": 9}})
        );
        // What is not kept does not make a repeat look new.
        let other_noise = json!({"id": "k1", "email": "a@x", "ip": "5.6.7.8",
                                 "contact": {"id": 9, "secret": "t"}, "noise": [3]});
        let again = run(&source, None, &headers(&[]), &other_noise).expect("prepared");
        assert_eq!(again.event.fingerprint, prepared.event.fingerprint);
        assert_eq!(again.event.body, prepared.event.body);
    }

    #[test]
    fn the_first_matching_ttl_rule_sets_the_key_and_replay_guard_expiry() {
        let rule = |condition: ValueCondition, hours: u64| {
            let field = FieldCondition {
                pointer: "/type".parse().expect("pointer"),
                condition,
            };
            (field, Duration::from_secs(hours * 3600))
        };
        let source = forms(|s| {
            s.dedupe_ttl_when = vec![
                rule(ValueCondition::Prefix("invoice.".into()), 30 * 24),
                rule(ValueCondition::OneOf(vec![json!("invoice.paid")]), 1),
                rule(ValueCondition::OneOf(vec![json!("ping")]), 24),
            ];
        });
        let hour = 3_600_000;
        let check = |body: Value, ttl: i64| {
            let prepared = run(&source, None, &headers(&[]), &body).expect("prepared");
            assert_eq!(prepared.event.dedupe_expires_at, NOW + ttl, "{body}");
            let guard = prepared.event.replay_guard.expect("replay guard");
            assert_eq!(guard.expires_at, NOW + ttl, "{body}");
        };
        // The prefix rule comes first, so the exact rule after it never applies.
        check(json!({"id": "1", "type": "invoice.paid"}), 30 * 24 * hour);
        check(json!({"id": "2", "type": "ping"}), 24 * hour);
        // No rule matches: the source's dedupe_ttl.
        check(json!({"id": "3", "type": "customer.created"}), 72 * hour);
        check(json!({"id": "4"}), 72 * hour);
    }
}
