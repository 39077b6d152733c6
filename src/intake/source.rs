//! A source as intake uses it: its config compiled once (verifier, key spec, schema, routes).
//! `app` compiles the config into `SourceParts`; this module only assembles them.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::condition::FieldCondition;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::form::FormFields;
use crate::domain::key::{DedupeKey, EmailHasher, KeyPart, KeySpec};
use crate::domain::pointer::{JsonPointer, keep_only};
use crate::store::{NewDelivery, UnixMillis, WindowKey, millis};
use crate::verify::Verifier;

pub struct SourceRuntime {
    pub name: Arc<str>,
    pub verifier: Verifier,
    pub key: KeySpec,
    pub fingerprint_ignore: Vec<JsonPointer>,
    pub dedupe_ttl_ms: i64,
    /// TTLs per event type in milliseconds: the first matching rule wins, else `dedupe_ttl_ms`.
    pub dedupe_ttl_when: Vec<(FieldCondition, i64)>,
    pub near_duplicate_window_ms: Option<i64>,
    pub max_body: usize,
    pub schema: Option<SourceSchema>,
    pub search_fields: std::collections::BTreeMap<String, JsonPointer>,
    /// `mask_fields` and the `search_fields` pointers: scrubbed from stored keys and headers.
    pub hidden_fields: Vec<JsonPointer>,
    /// Hashes `email:` key parts (keyed by the store's encryption key when there is one).
    pub email: EmailHasher,
    /// Whether the exact body accepted under another key is a duplicate (SPEC §4.3).
    pub replay_guard: bool,
    /// The request headers kept with an event (SPEC §6.2).
    stored_headers: Vec<http::HeaderName>,
    drop_fields: Vec<JsonPointer>,
    keep_fields: Vec<JsonPointer>,
    rate_limiter: Option<DefaultDirectRateLimiter>,
    routes: Vec<RouteRuntime>,
}

/// A source's JSON Schema: one for every body, or one per version, chosen by the value at a
/// pointer.
pub enum SourceSchema {
    Single(jsonschema::Validator),
    Versioned {
        pointer: JsonPointer,
        versions: std::collections::BTreeMap<String, jsonschema::Validator>,
    },
}

/// Why no schema could be chosen for a body: the version found (None: none), and the versions
/// the source accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVersion {
    pub pointer: String,
    pub found: Option<Value>,
    pub accepted: Vec<String>,
}

impl SourceSchema {
    /// The schema `body` must match.
    pub fn for_body(&self, body: &Value) -> Result<&jsonschema::Validator, UnknownVersion> {
        match self {
            SourceSchema::Single(schema) => Ok(schema),
            SourceSchema::Versioned { pointer, versions } => {
                let found = pointer.get(body);
                // A version may be written as a string or a number: `"2"` and `2` are one.
                let text = match found {
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(Value::Number(number)) => Some(number.to_string()),
                    _ => None,
                };
                text.and_then(|text| versions.get(&text))
                    .ok_or_else(|| UnknownVersion {
                        pointer: pointer.to_string(),
                        found: found.cloned(),
                        accepted: versions.keys().cloned().collect(),
                    })
            }
        }
    }
}

/// One of the source's routes: its destinations, its `when` (a condition on a body value) and
/// its ordering key.
pub struct RouteRuntime {
    pub destinations: Vec<Arc<str>>,
    pub when: Option<FieldCondition>,
    pub ordering_key: Option<KeySpec>,
}

/// What a source is compiled from: its config turned into runtime values by `app`.
pub struct SourceParts {
    pub name: Arc<str>,
    pub verifier: Verifier,
    pub key: KeySpec,
    pub fingerprint_ignore: Vec<JsonPointer>,
    pub dedupe_ttl: Duration,
    /// TTLs per event type, in order: the first whose condition matches wins.
    pub dedupe_ttl_when: Vec<(FieldCondition, Duration)>,
    pub near_duplicate_window: Option<Duration>,
    pub max_body: usize,
    pub schema: Option<SourceSchema>,
    pub search_fields: std::collections::BTreeMap<String, JsonPointer>,
    /// `mask_fields` and the `search_fields` pointers.
    pub hidden_fields: Vec<JsonPointer>,
    pub email: EmailHasher,
    pub replay_guard: bool,
    pub drop_fields: Vec<JsonPointer>,
    /// The allow-list applied after `drop_fields` (empty: everything is kept).
    pub keep_fields: Vec<JsonPointer>,
    pub rate_limit: Option<RateLimit>,
    pub routes: Vec<RouteRuntime>,
}

/// A source's token bucket: refilled at `per_second`, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl SourceRuntime {
    pub fn new(parts: SourceParts) -> SourceRuntime {
        let SourceParts {
            name,
            verifier,
            key,
            fingerprint_ignore,
            dedupe_ttl,
            dedupe_ttl_when,
            near_duplicate_window,
            max_body,
            schema,
            search_fields,
            hidden_fields,
            email,
            replay_guard,
            drop_fields,
            keep_fields,
            rate_limit,
            routes,
        } = parts;
        let rate_limiter = rate_limit.map(|limit| {
            RateLimiter::direct(Quota::per_second(limit.per_second).allow_burst(limit.burst))
        });
        SourceRuntime {
            name,
            verifier,
            stored_headers: stored_header_names(&key),
            key,
            fingerprint_ignore,
            dedupe_ttl_ms: millis(dedupe_ttl),
            dedupe_ttl_when: dedupe_ttl_when
                .into_iter()
                .map(|(condition, ttl)| (condition, millis(ttl)))
                .collect(),
            near_duplicate_window_ms: near_duplicate_window.map(millis),
            max_body,
            schema,
            search_fields,
            hidden_fields,
            email,
            replay_guard,
            drop_fields,
            keep_fields,
            rate_limiter,
            routes,
        }
    }

    /// Every destination any of this source's routes may deliver to.
    pub fn destination_names(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .flat_map(|r| r.destinations.iter().map(|d| &**d))
    }

    /// How long the key of an event with this body blocks repeats, in milliseconds: the TTL of
    /// the first `dedupe_ttl_when` rule that matches, else `dedupe_ttl`.
    pub fn dedupe_ttl_ms_for(&self, json: Option<&Value>) -> i64 {
        self.dedupe_ttl_when
            .iter()
            .find(|(condition, _)| condition.matches(json))
            .map_or(self.dedupe_ttl_ms, |(_, ttl)| *ttl)
    }

    /// Takes one request from the source's budget; on refusal, the seconds to wait.
    pub fn check_rate_limit(&self) -> Result<(), u64> {
        let Some(limiter) = &self.rate_limiter else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Removes `drop_fields` from the body, then everything `keep_fields` does not name (when
    /// it names anything); true when anything was removed.
    pub fn drop_fields(&self, value: &mut Value) -> bool {
        let mut removed = false;
        for pointer in &self.drop_fields {
            removed |= pointer.remove(value).is_some();
        }
        if !self.keep_fields.is_empty() {
            removed |= keep_only(value, &self.keep_fields);
        }
        removed
    }

    pub fn near_duplicate_check(
        &self,
        fingerprint: &Fingerprint,
        now: UnixMillis,
    ) -> Option<WindowKey> {
        let window = self.near_duplicate_window_ms?;
        let mut hasher = Sha256::new();
        hasher.update((self.name.len() as u64).to_be_bytes());
        hasher.update(self.name.as_bytes());
        hasher.update(fingerprint.0);
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Some(WindowKey {
            key: DedupeKey(key),
            expires_at: now.saturating_add(window),
        })
    }

    /// The replay guard's key: the exact body bytes as received, scoped to the source, for as
    /// long as the request's key blocks repeats. Hashed in its own domain, so it can share the
    /// near-duplicate table without meeting a fingerprint.
    pub fn replay_guard_check(&self, body: &[u8], key_expires_at: UnixMillis) -> Option<WindowKey> {
        if !self.replay_guard {
            return None;
        }
        let digest = Sha256::new()
            .chain_update(b"oncehook replay guard\0")
            .chain_update((self.name.len() as u64).to_be_bytes())
            .chain_update(self.name.as_bytes())
            .chain_update(body)
            .finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Some(WindowKey {
            key: DedupeKey(key),
            expires_at: key_expires_at,
        })
    }

    /// The request headers stored with an event, as a JSON object: only the allow-listed ones
    /// (SPEC §6.2), so signatures and credentials are never stored.
    pub fn headers_for_storage(&self, headers: &HeaderMap) -> String {
        let mut kept = serde_json::Map::new();
        for name in &self.stored_headers {
            let mut values = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
            let Some(first) = values.next() else {
                continue;
            };
            let joined = values.fold(first, |mut all, value| {
                all.push_str(", ");
                all.push_str(&value);
                all
            });
            kept.insert(name.as_str().to_owned(), Value::String(joined));
        }
        Value::Object(kept).to_string()
    }

    /// One delivery per destination of every route whose `when` matches; a destination named
    /// by several matching routes still gets one delivery (the first route's ordering key).
    pub fn deliveries_for(
        &self,
        headers: &HeaderMap,
        json: Option<&Value>,
        form: Option<&FormFields>,
        fingerprint: &Fingerprint,
    ) -> Vec<NewDelivery> {
        let mut deliveries: Vec<NewDelivery> = Vec::new();
        for route in &self.routes {
            if let Some(when) = &route.when
                && !when.matches(json)
            {
                continue;
            }
            let ordering_key = route
                .ordering_key
                .as_ref()
                .and_then(|spec| {
                    spec.derive(&self.name, headers, json, form, fingerprint, &self.email)
                        .ok()
                })
                .map(|key| key.text);
            for destination in &route.destinations {
                if deliveries.iter().any(|d| d.destination == *destination) {
                    continue;
                }
                deliveries.push(NewDelivery {
                    destination: Arc::clone(destination),
                    ordering_key: ordering_key.clone(),
                });
            }
        }
        deliveries
    }
}

/// Request headers worth keeping for operators: the content type, the user agent, and the
/// providers' event and delivery ids. A header a key is read from is kept too, unless its name
/// says it holds a credential.
const STORED_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "svix-id",
    "svix-timestamp",
    "x-github-delivery",
    "x-github-event",
    "x-github-hook-id",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-triggered-at",
    "x-slack-request-timestamp",
    "x-slack-retry-num",
    "x-slack-retry-reason",
    "x-zm-request-timestamp",
    "x-zm-trackingid",
    "i-twilio-idempotency-token",
    "x-twilio-email-event-webhook-timestamp",
    "x-request-id",
];

fn stored_header_names(key: &KeySpec) -> Vec<http::HeaderName> {
    let mut names: Vec<http::HeaderName> = STORED_HEADERS
        .iter()
        .map(|name| http::HeaderName::from_static(name))
        .collect();
    for part in key.alternatives.iter().flat_map(|a| &a.parts) {
        if let KeyPart::Header(name) = part
            && !crate::privacy::is_secret_header(name.as_str())
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    }
    names
}
