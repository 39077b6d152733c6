//! A source as intake uses it: its config compiled once (verifier, key spec, schema, routes).

use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::Context;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Config, SourceConfig, load_schema};
use crate::domain::fingerprint::Fingerprint;
use crate::domain::key::{DedupeKey, KeySpec};
use crate::domain::pointer::JsonPointer;
use crate::store::{NearDuplicateCheck, NewDelivery, UnixMillis, millis};
use crate::verify::Verifier;

pub struct SourceRuntime {
    pub name: Arc<str>,
    pub verifier: Verifier,
    pub key: KeySpec,
    pub fingerprint_ignore: Vec<JsonPointer>,
    pub dedupe_ttl_ms: i64,
    pub near_duplicate_window_ms: Option<i64>,
    pub max_body: usize,
    pub schema: Option<jsonschema::Validator>,
    pub search_fields: std::collections::BTreeMap<String, JsonPointer>,
    drop_fields: Vec<JsonPointer>,
    rate_limiter: Option<DefaultDirectRateLimiter>,
    routes: Vec<RouteRuntime>,
}

struct RouteRuntime {
    destinations: Vec<Arc<str>>,
    when: Option<(JsonPointer, Vec<Value>)>,
    ordering_key: Option<KeySpec>,
}

impl SourceRuntime {
    pub fn build(config: &Config, source: &SourceConfig) -> anyhow::Result<SourceRuntime> {
        let context = || format!("source {:?}", source.name);
        let verifier = Verifier::from_config(&source.verify).with_context(context)?;
        let key = source
            .key_spec()
            .map_err(anyhow::Error::msg)
            .with_context(context)?;
        let schema = match &source.schema {
            Some(path) => {
                Some(load_schema(&config.resolve_path(path)).map_err(anyhow::Error::msg)?)
            }
            None => None,
        };
        let rate_limiter = match &source.rate_limit {
            Some(limit) => {
                let per_second = NonZeroU32::new(limit.per_second)
                    .context("rate_limit.per_second must be at least 1")?;
                let burst =
                    NonZeroU32::new(limit.burst.unwrap_or(limit.per_second)).unwrap_or(per_second);
                Some(RateLimiter::direct(
                    Quota::per_second(per_second).allow_burst(burst),
                ))
            }
            None => None,
        };
        let mut routes = Vec::new();
        for route in config.routes.iter().filter(|r| r.source == source.name) {
            let ordering_key = match &route.ordering_key {
                Some(expr) => Some(
                    KeySpec::parse(std::slice::from_ref(expr))
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
                None => None,
            };
            routes.push(RouteRuntime {
                destinations: route.to.iter().map(|d| Arc::from(d.as_str())).collect(),
                when: route
                    .when
                    .as_ref()
                    .map(|w| (w.pointer.clone(), w.one_of.clone())),
                ordering_key,
            });
        }
        Ok(SourceRuntime {
            name: Arc::from(source.name.as_str()),
            verifier,
            key,
            fingerprint_ignore: source.fingerprint_ignore.clone(),
            dedupe_ttl_ms: millis(source.dedupe_ttl),
            near_duplicate_window_ms: source.near_duplicate.as_ref().map(|n| millis(n.window)),
            max_body: usize::try_from(source.max_body.as_u64()).unwrap_or(usize::MAX),
            schema,
            search_fields: source.search_fields.clone(),
            drop_fields: source.drop_fields.clone(),
            rate_limiter,
            routes,
        })
    }

    /// Every destination any of this source's routes may deliver to.
    pub fn destination_names(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .flat_map(|r| r.destinations.iter().map(|d| &**d))
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

    /// Removes `drop_fields` from the body; true when anything was removed.
    pub fn drop_fields(&self, value: &mut Value) -> bool {
        let mut removed = false;
        for pointer in &self.drop_fields {
            removed |= pointer.remove(value).is_some();
        }
        removed
    }

    pub fn near_duplicate_check(
        &self,
        fingerprint: &Fingerprint,
        now: UnixMillis,
    ) -> Option<NearDuplicateCheck> {
        let window = self.near_duplicate_window_ms?;
        let mut hasher = Sha256::new();
        hasher.update((self.name.len() as u64).to_be_bytes());
        hasher.update(self.name.as_bytes());
        hasher.update(fingerprint.0);
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Some(NearDuplicateCheck {
            key: DedupeKey(key),
            expires_at: now.saturating_add(window),
        })
    }

    /// One delivery per destination of every route whose `when` matches; a destination named
    /// by several matching routes still gets one delivery (the first route's ordering key).
    pub fn deliveries_for(
        &self,
        headers: &HeaderMap,
        json: Option<&Value>,
        fingerprint: &Fingerprint,
    ) -> Vec<NewDelivery> {
        let mut deliveries: Vec<NewDelivery> = Vec::new();
        for route in &self.routes {
            if let Some((pointer, allowed)) = &route.when {
                let matches = json
                    .and_then(|v| pointer.get(v))
                    .is_some_and(|v| allowed.contains(v));
                if !matches {
                    continue;
                }
            }
            let ordering_key = route
                .ordering_key
                .as_ref()
                .and_then(|spec| spec.derive(&self.name, headers, json, fingerprint).ok())
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
