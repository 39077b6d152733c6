//! The config compiled once into the pieces the subsystems take: each source's `SourceRuntime`,
//! each destination with its signer, the payload cipher, the search key, each source's hidden
//! fields, the admin token, the listen addresses and the limits.
//!
//! Below `app`, no module sees `Config`. What can only be checked by building it (a source's
//! verifier, a destination's signing secret, a schema file) is checked here, once, and reported
//! like a load error, naming the file and the key; `oncehook check` builds the runtime too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::import::SourceImporter;
use crate::admin::{AdminParts, DestinationInfo};
use crate::config::{
    CircuitBreakerConfig, Config, ConfigError, DestinationConfig, SchemaConfig, SourceConfig,
};
use crate::delivery::{
    Bus, DeliveryParts, Destination, ResponseCapture, RouteTransforms, Template, Transform,
    signing_verifier,
};
use crate::domain::circuit::BreakerPolicy;
use crate::domain::key::{EmailHasher, KeySpec};
use crate::domain::pace::Pace;
use crate::domain::pointer::JsonPointer;
use crate::domain::retry::RetryPolicy;
use crate::intake::{
    IntakeParts, RateLimit, RouteRuntime, SourceParts, SourceRuntime, SourceSchema,
};
use crate::privacy::{HiddenFields, PayloadCipher, SearchKey};
use crate::server::HttpLimits;
use crate::verify::Verifier;

/// Everything a node runs, built from the config; the store is opened separately.
pub struct Runtime {
    pub intake: IntakeParts,
    pub delivery: DeliveryParts,
    pub admin: AdminParts,
    /// `server.listen`.
    pub intake_listen: SocketAddr,
    /// `admin.listen`.
    pub admin_listen: SocketAddr,
    /// Both listeners' limits.
    pub http_limits: HttpLimits,
    /// How long shutdown waits for in-flight requests and delivery attempts.
    pub shutdown_grace: Duration,
    /// How long each source's finished events are kept.
    pub retention: Vec<(Arc<str>, Duration)>,
}

impl Runtime {
    /// Builds every piece once; the cipher, the search key and the hidden fields are shared by
    /// the subsystems that need them.
    pub fn build(config: &Config) -> Result<Runtime, ConfigError> {
        let encryption_key = config.store.encryption_key.as_deref();
        let cipher = encryption_key.map(|key| {
            Arc::new(PayloadCipher::new(
                key,
                &config.store.previous_encryption_keys,
            ))
        });
        let search_key = SearchKey::new(encryption_key);
        let email = EmailHasher::new(encryption_key);

        let mut sources = Vec::with_capacity(config.sources.len());
        let mut import_sources = Vec::with_capacity(config.sources.len());
        let mut hidden_fields = HiddenFields::new();
        for (index, source) in config.sources.iter().enumerate() {
            let parts = source_parts(config, index, source, &email)?;
            hidden_fields.insert(source.name.clone(), parts.hidden_fields.clone());
            sources.push(SourceRuntime::new(parts));
            // Imports get their own copy: they share no rate limit with live intake.
            import_sources.push(SourceRuntime::new(source_parts(
                config, index, source, &email,
            )?));
        }
        let hidden_fields = Arc::new(hidden_fields);
        let destinations = config
            .destinations
            .iter()
            .enumerate()
            .map(|(index, destination)| build_destination(config, index, destination, &search_key))
            .collect::<Result<Vec<_>, _>>()?;
        let transforms = route_transforms(config)?;

        let admin = AdminParts {
            token: config.admin.token.clone(),
            cipher: cipher.clone(),
            search_key: search_key.clone(),
            hidden_fields: Arc::clone(&hidden_fields),
            // What `response_capture` keeps is searched like `search_fields`.
            search_fields: config
                .sources
                .iter()
                .flat_map(|source| source.search_fields.keys().cloned())
                .chain(
                    config
                        .destinations
                        .iter()
                        .flat_map(|destination| destination.response_capture.keys().cloned()),
                )
                .collect::<BTreeSet<_>>(),
            destinations: destinations
                .iter()
                .map(|d| DestinationInfo {
                    name: d.name.to_string(),
                    pace: d.pace,
                    breaker: d.breaker.map(|b| (b.failures, b.cooldown)),
                })
                .collect(),
            importer: Arc::new(SourceImporter {
                sources: import_sources,
                cipher: cipher.clone(),
                search_key: search_key.clone(),
            }),
        };
        Ok(Runtime {
            intake: IntakeParts {
                sources,
                cipher: cipher.clone(),
                search_key,
                body_timeout: config.server.body_timeout,
                auth_failures_per_ip: rate_limit(&config.server.auth_failures_per_ip),
                max_buffered_body: usize::try_from(config.server.max_buffered_body.as_u64())
                    .unwrap_or(usize::MAX),
            },
            delivery: DeliveryParts {
                destinations,
                cipher,
                hidden_fields,
                transforms,
            },
            admin,
            intake_listen: config.server.listen,
            admin_listen: config.admin.listen,
            http_limits: HttpLimits {
                header_timeout: config.server.header_timeout,
                max_connections: config.server.max_connections,
                max_connections_per_ip: config.server.max_connections_per_ip,
            },
            shutdown_grace: config.server.shutdown_grace,
            retention: config
                .sources
                .iter()
                .map(|source| (Arc::from(source.name.as_str()), source.retention()))
                .collect(),
        })
    }
}

/// The source at `sources[index]`, compiled: its verifier, key, schema, limits and routes.
fn source_parts(
    config: &Config,
    index: usize,
    source: &SourceConfig,
    email: &EmailHasher,
) -> Result<SourceParts, ConfigError> {
    let at = |key: &str| format!("sources[{index}].{key}");
    let verifier = Verifier::from_config(&source.verify)
        .map_err(|e| config.error(at(&format!("verify.{}", e.key)), e.message))?;
    let key = source.key_spec().map_err(|m| config.error(at("key"), m))?;
    let schema = match &source.schema {
        Some(SchemaConfig::File(path)) => Some(SourceSchema::Single(
            load_schema(&config.resolve_path(path)).map_err(|m| config.error(at("schema"), m))?,
        )),
        // Every version's schema is compiled now: a bad file stops the start, not a request.
        Some(SchemaConfig::Versioned(versioned)) => {
            let mut versions = std::collections::BTreeMap::new();
            for (version, path) in &versioned.versions {
                let schema = load_schema(&config.resolve_path(path))
                    .map_err(|m| config.error(at(&format!("schema.versions.{version}")), m))?;
                versions.insert(version.clone(), schema);
            }
            Some(SourceSchema::Versioned {
                pointer: versioned.pointer.clone(),
                versions,
            })
        }
        None => None,
    };
    let rate_limit = match &source.rate_limit {
        Some(limit) => {
            let per_second = NonZeroU32::new(limit.per_second)
                .ok_or_else(|| config.error(at("rate_limit.per_second"), "must be at least 1"))?;
            let burst =
                NonZeroU32::new(limit.burst.unwrap_or(limit.per_second)).unwrap_or(per_second);
            Some(RateLimit { per_second, burst })
        }
        None => None,
    };
    let mut dedupe_ttl_when = Vec::new();
    for (rule_index, rule) in source.dedupe_ttl_when.iter().enumerate() {
        let condition = rule.condition().map_err(|(key, m)| {
            config.error(at(&format!("dedupe_ttl_when[{rule_index}].{key}")), m)
        })?;
        dedupe_ttl_when.push((condition, rule.ttl));
    }
    let mut routes = Vec::new();
    for (route_index, route) in config.routes.iter().enumerate() {
        if route.source != source.name {
            continue;
        }
        let ordering_key = match &route.ordering_key {
            Some(expr) => Some(KeySpec::parse(std::slice::from_ref(expr)).map_err(|e| {
                config.error(format!("routes[{route_index}].ordering_key"), e.message)
            })?),
            None => None,
        };
        routes.push(RouteRuntime {
            destinations: route.to.iter().map(|d| Arc::from(d.as_str())).collect(),
            when: match &route.when {
                Some(when) => Some(when.condition().map_err(|(key, m)| {
                    config.error(format!("routes[{route_index}].when.{key}"), m)
                })?),
                None => None,
            },
            ordering_key,
        });
    }
    Ok(SourceParts {
        name: Arc::from(source.name.as_str()),
        verifier,
        key,
        fingerprint_ignore: source.fingerprint_ignore.clone(),
        dedupe_ttl: source.dedupe_ttl,
        dedupe_ttl_when,
        near_duplicate_window: source.near_duplicate.as_ref().map(|n| n.window),
        max_body: usize::try_from(source.max_body.as_u64()).unwrap_or(usize::MAX),
        schema,
        search_fields: source.search_fields.clone(),
        hidden_fields: hidden_fields(source),
        email: email.clone(),
        replay_guard: source.replay_guard(),
        drop_fields: source.drop_fields.clone(),
        keep_fields: source.keep_fields.clone(),
        rate_limit,
        routes,
    })
}

/// The fields of a source's payloads that operators never see in clear: `mask_fields` and the
/// pointers of `search_fields`.
fn hidden_fields(source: &SourceConfig) -> Vec<JsonPointer> {
    let mut fields = source.mask_fields.clone();
    for pointer in source.search_fields.values() {
        if !fields.contains(pointer) {
            fields.push(pointer.clone());
        }
    }
    fields
}

/// Reads and compiles a JSON Schema file.
fn load_schema(path: &Path) -> Result<jsonschema::Validator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    jsonschema::validator_for(&schema)
        .map_err(|e| format!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// The destination at `destinations[index]`, compiled: its URL, retry policy, signer and
/// headers.
fn build_destination(
    config: &Config,
    index: usize,
    destination: &DestinationConfig,
    search_key: &SearchKey,
) -> Result<Destination, ConfigError> {
    let at = |key: &str| format!("destinations[{index}].{key}");
    let url = reqwest::Url::parse(&destination.url)
        .map_err(|e| config.error(at("url"), format!("not a URL ({e})")))?;
    let signer = match &destination.signing_secret {
        Some(secret) => Some(
            signing_verifier(secret).map_err(|e| config.error(at("signing_secret"), e.message))?,
        ),
        None => None,
    };
    let template = |key: &str, text: &str| {
        Template::parse(text).map_err(|e| config.error(at(key), e.to_string()))
    };
    let bus = match url.scheme() {
        "nats" => Some(Bus::Nats {
            subject: template(
                "subject",
                destination.subject.as_deref().unwrap_or_default(),
            )?,
        }),
        "amqp" => Some(Bus::Amqp {
            exchange: destination.exchange.clone().unwrap_or_default(),
            routing_key: template(
                "routing_key",
                destination.routing_key.as_deref().unwrap_or_default(),
            )?,
        }),
        _ => None,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &destination.headers {
        let key = at(&format!("headers.{name}"));
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config.error(key.clone(), "not a valid header name"))?,
            HeaderValue::from_str(value)
                .map_err(|_| config.error(key.clone(), "not a valid header value"))?,
        );
    }
    Ok(Destination {
        name: Arc::from(destination.name.as_str()),
        url,
        timeout: destination.timeout,
        policy: RetryPolicy {
            base: destination.backoff.base,
            max: destination.backoff.max,
            max_attempts: destination.max_attempts,
        },
        concurrency: destination.concurrency,
        signer,
        headers,
        bus,
        pace: destination.rate_limit.as_ref().map(pace),
        breaker: match destination.circuit_breaker {
            CircuitBreakerConfig::Off => None,
            CircuitBreakerConfig::On { failures, cooldown } => {
                Some(BreakerPolicy { failures, cooldown })
            }
        },
        response_capture: (!destination.response_capture.is_empty()).then(|| ResponseCapture {
            fields: destination
                .response_capture
                .iter()
                .map(|(name, pointer)| (name.clone(), pointer.clone()))
                .collect(),
            search_key: search_key.clone(),
        }),
    })
}

/// Every route's `transform`, compiled once, by source and destination; a program that does not
/// compile is reported with its position.
fn route_transforms(config: &Config) -> Result<RouteTransforms, ConfigError> {
    let mut transforms = RouteTransforms::default();
    for (index, route) in config.routes.iter().enumerate() {
        let at = |key: &str| format!("routes[{index}].{key}");
        let transform = match &route.transform {
            Some(code) => {
                Some(Arc::new(Transform::compile(code).map_err(|e| {
                    config.error(at("transform"), format!("jq program {e}"))
                })?))
            }
            None => None,
        };
        let when = match &route.when {
            Some(when) => Some(
                when.condition()
                    .map_err(|(key, m)| config.error(at(&format!("when.{key}")), m))?,
            ),
            None => None,
        };
        let destinations: Vec<Arc<str>> = route.to.iter().map(|d| Arc::from(d.as_str())).collect();
        transforms.add_route(
            &Arc::from(route.source.as_str()),
            &destinations,
            when,
            transform,
        );
    }
    Ok(transforms.finish())
}

/// A destination's `rate_limit`, already checked by the config loader (both at least 1).
fn pace(limit: &crate::config::RateLimitConfig) -> Pace {
    Pace {
        per_second: limit.per_second.max(1),
        burst: limit.burst.unwrap_or(limit.per_second).max(1),
    }
}

/// A rate limit the config loader has already checked (`per_second` and `burst` at least 1).
fn rate_limit(limit: &crate::config::RateLimitConfig) -> RateLimit {
    let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = limit.burst.and_then(NonZeroU32::new).unwrap_or(per_second);
    RateLimit { per_second, burst }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str, dir: &Path) -> Config {
        Config::from_toml(text, Path::new("test.toml"), dir, &|_| None).expect("loads")
    }

    #[test]
    fn what_only_building_can_check_is_reported_with_the_file_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                "[[sources]]\nname = \"a\"\nverify = { scheme = \"hmac\", secrets = [\"x\"] }\n",
                "sources[0].verify.header",
            ),
            (
                "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
                 schema = \"missing.json\"\n",
                "sources[0].schema",
            ),
            (
                "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
                 schema = { pointer = \"/version\", versions = { \"1\" = \"lead.v1.json\" } }\n",
                "sources[0].schema.versions.1",
            ),
            (
                "[[destinations]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\n\
                 signing_secret = \"not-whsec\"\n",
                "destinations[0].signing_secret",
            ),
        ];
        for (text, key) in cases {
            let error = match Runtime::build(&config(text, dir.path())) {
                Ok(_) => panic!("{key}: built"),
                Err(e) => e,
            };
            assert_eq!(error.key, key, "{error}");
            assert!(error.to_string().starts_with("test.toml: "), "{error}");
        }
    }

    #[test]
    fn a_transform_that_does_not_compile_is_reported_with_its_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
                    [[destinations]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\n\
                    [[routes]]\nsource = \"a\"\nto = [\"crm\"]\ntransform = \"{email: .email | nope}\"\n";
        let error = match Runtime::build(&config(text, dir.path())) {
            Ok(_) => panic!("built"),
            Err(e) => e,
        };
        assert_eq!(error.key, "routes[0].transform", "{error}");
        let text = error.to_string();
        assert!(text.starts_with("test.toml: "), "{text}");
        assert!(
            text.contains("line 1, column 18") && text.contains("undefined filter nope"),
            "{text}"
        );
    }

    #[test]
    fn bus_destinations_get_their_subject_and_routing_key_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let destination = |extra: &str| format!("[[destinations]]\nname = \"bus\"\n{extra}\n");
        let error = match Runtime::build(&config(
            &destination("url = \"nats://127.0.0.1:4222\"\nsubject = \"a.{tenant}\""),
            dir.path(),
        )) {
            Ok(_) => panic!("built"),
            Err(e) => e,
        };
        assert_eq!(error.key, "destinations[0].subject", "{error}");
        let runtime = Runtime::build(&config(
            &destination(
                "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nrouting_key = \"{source}.{type}\"",
            ),
            dir.path(),
        ))
        .expect("builds");
        assert!(matches!(
            runtime.delivery.destinations[0].bus,
            Some(Bus::Amqp { .. })
        ));
    }

    #[test]
    fn the_cipher_and_the_hidden_fields_are_built_once_and_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::build(&config(
            "[store]\nencryption_key = \"k\"\n\
             [[sources]]\nname = \"forms\"\nverify = { scheme = \"github\", secrets = [\"x\"] }\n\
             mask_fields = [\"/name\"]\nsearch_fields = { email = \"/email\" }\n",
            dir.path(),
        ))
        .expect("builds");
        let (Some(intake), Some(delivery), Some(admin)) = (
            &runtime.intake.cipher,
            &runtime.delivery.cipher,
            &runtime.admin.cipher,
        ) else {
            panic!("an encryption key gives a cipher");
        };
        assert!(Arc::ptr_eq(intake, delivery) && Arc::ptr_eq(intake, admin));
        assert!(Arc::ptr_eq(
            &runtime.delivery.hidden_fields,
            &runtime.admin.hidden_fields
        ));
        let pointers = |list: &[&str]| -> Vec<JsonPointer> {
            list.iter().map(|p| p.parse().expect("pointer")).collect()
        };
        assert_eq!(
            runtime.admin.hidden_fields.get("forms"),
            Some(&pointers(&["/name", "/email"]))
        );
        assert_eq!(
            runtime.intake.sources[0].hidden_fields,
            pointers(&["/name", "/email"])
        );
        assert_eq!(
            runtime.admin.search_fields,
            BTreeSet::from(["email".to_owned()])
        );
    }
}
