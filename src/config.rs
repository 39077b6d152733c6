//! The configuration file (TOML): its model, `${VAR}` substitution, and validation.
//!
//! Loading is layered: the file is parsed into a TOML tree, `${VAR}` references in string values
//! are replaced from the environment, the tree is deserialized into the typed model (unknown keys
//! are errors), and then values and cross-references (ranges, names, routes to destinations) are
//! checked. What can only be checked by building it (signature secrets, signing secrets, schema
//! files) is checked once, where `app` builds the runtime from the config, and reported with
//! [`Config::error`]. Every error names the file and the key, e.g.
//! `oncehook.toml: sources[1].verify.header: required when scheme = "hmac"`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::condition::{FieldCondition, ValueCondition};
use crate::domain::key::{KeyPart, KeySpec};
use crate::domain::pointer::JsonPointer;
use crate::verify::{DEFAULT_TOLERANCE, SchemeName, VerifyConfig};

/// A configuration error: the file, the key (a path like `sources[0].verify.scheme`) and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The directory of the config file: relative paths (schemas, the SQLite file) resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file, named by errors found after loading (see [`Config::error`]).
    #[serde(skip)]
    file: PathBuf,
    /// Every value `${VAR}` substitution put into the file: [`Config::redact`] hides them.
    #[serde(skip)]
    substituted: SubstitutedValues,
}

/// The values `${VAR}` references were replaced with, longest first so that a value
/// containing another is hidden whole. Never printed, not even by `Debug`.
#[derive(Clone, Default)]
struct SubstitutedValues(Vec<String>);

impl fmt::Debug for SubstitutedValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} substituted values>", self.0.len())
    }
}

impl SubstitutedValues {
    fn record(&mut self, value: &str) {
        if !value.is_empty() && !self.0.iter().any(|known| known == value) {
            self.0.push(value.to_owned());
            self.0.sort_by_key(|known| std::cmp::Reverse(known.len()));
        }
    }
}

/// `[server]`: the intake listener, `POST /webhooks/{source}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_server_listen")]
    pub listen: SocketAddr,
    /// How long shutdown waits for in-flight requests and delivery attempts.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time a client has to send its request line and headers (slow-client protection).
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a client has to send its body once the headers are in.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Connections served at once per listener.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may hold open at once per listener; further ones are
    /// closed as soon as they are accepted.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// The budget of failed signature checks per client address; over it, that address gets
    /// 429 without its signatures being checked.
    #[serde(default = "default_auth_failures_per_ip")]
    pub auth_failures_per_ip: RateLimitConfig,
    /// Request bodies being read at once, over all of intake; a body that would take the total
    /// over it gets 503.
    #[serde(default = "default_max_buffered_body")]
    pub max_buffered_body: bytesize::ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_server_listen(),
            shutdown_grace: default_grace(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            auth_failures_per_ip: default_auth_failures_per_ip(),
            max_buffered_body: default_max_buffered_body(),
        }
    }
}

/// `[admin]`: health, readiness, metrics, the admin API and the console.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Bearer token for `/api/v1` and the console. Without one the admin API refuses every request.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: None,
        }
    }
}

/// `[store]`: where events, keys and deliveries live.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the config file) or `postgres://…`.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Optional key for encrypting payloads at rest (any string; it is stretched with SHA-256).
    pub encryption_key: Option<String>,
    /// Keys that encrypted older payloads: still used to decrypt, never to encrypt (rotation).
    #[serde(default)]
    pub previous_encryption_keys: Vec<String>,
    /// Most accepted webhooks committed in one transaction (group commit).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Most write requests waiting for the store before intake answers 503.
    #[serde(default = "default_queue_max")]
    pub queue_max: usize,
    /// PostgreSQL only: most connections this node opens to the database.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            encryption_key: None,
            previous_encryption_keys: Vec::new(),
            batch_max: default_batch_max(),
            queue_max: default_queue_max(),
            pool_size: default_pool_size(),
        }
    }
}

/// `[[sources]]`: one provider sending to `POST /webhooks/{name}`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub verify: VerifyConfig,
    /// Idempotency key alternatives; defaults depend on the signature scheme.
    #[serde(default)]
    pub key: Option<Vec<String>>,
    #[serde(default)]
    pub fingerprint_ignore: Vec<JsonPointer>,
    pub near_duplicate: Option<NearDuplicateConfig>,
    /// How long a key blocks a repeat; longer than `verify.tolerance` where a timestamp is signed.
    #[serde(default = "default_dedupe_ttl", with = "humantime_serde")]
    pub dedupe_ttl: Duration,
    /// TTLs per event type: the first rule whose condition matches the body gives the key's
    /// TTL; none matching, `dedupe_ttl`.
    #[serde(default)]
    pub dedupe_ttl_when: Vec<DedupeTtlRuleConfig>,
    /// How long finished events are kept (by `received_at`); read it through
    /// [`SourceConfig::retention`], which applies the default.
    #[serde(default, with = "humantime_serde::option")]
    pub retention: Option<Duration>,
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default = "default_max_body")]
    pub max_body: bytesize::ByteSize,
    /// A JSON Schema file (relative to the config file), or one file per version chosen by the
    /// value at a pointer; bodies that do not match are rejected.
    pub schema: Option<SchemaConfig>,
    #[serde(default)]
    pub drop_fields: Vec<JsonPointer>,
    /// An allow-list, applied after `drop_fields`: only these values of a JSON body are stored,
    /// fingerprinted, keyed and delivered (empty: all of them).
    #[serde(default)]
    pub keep_fields: Vec<JsonPointer>,
    #[serde(default)]
    pub mask_fields: Vec<JsonPointer>,
    #[serde(default)]
    pub search_fields: BTreeMap<String, JsonPointer>,
    /// Required to use `verify.scheme = "none"`.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Whether a body accepted under one key is a duplicate when it comes again under another
    /// key within the TTL (SPEC §4.3). Read it through [`SourceConfig::replay_guard`], which
    /// applies the scheme's default.
    pub replay_guard: Option<bool>,
}

/// `sources[].schema`: one JSON Schema file, or a file per version of the payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a JSON Schema file, or { pointer = \"/version\", versions = { \"1\" = \"FILE\" } }"
)]
pub enum SchemaConfig {
    File(PathBuf),
    Versioned(VersionedSchemaConfig),
}

/// `schema = { pointer = "/version", versions = { "1" = "lead.v1.json" } }`: the value at
/// `pointer` (a string, or a number written as JSON writes it) chooses the schema; a body whose
/// version is missing or not listed is rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionedSchemaConfig {
    pub pointer: JsonPointer,
    pub versions: BTreeMap<String, PathBuf>,
}

// Keys and tokens stay out of any debug output.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("encrypted", &self.encryption_key.is_some())
            .field("batch_max", &self.batch_max)
            .field("queue_max", &self.queue_max)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What a hidden credential is shown as.
const REDACTED: &str = "redacted";

/// Query parameters whose name contains one of these (ignoring case) carry credentials.
const CREDENTIAL_NAME_PARTS: [&str; 5] = ["token", "key", "secret", "sig", "password"];

/// A URL without its credentials: the password of its user info and the values of query
/// parameters whose name contains `token`, `key`, `secret`, `sig` or `password` become
/// `redacted`; everything else is kept byte for byte.
///
/// It works on the text, not on a parsed URL, so it also hides what it can of a URL that does
/// not parse (which is when an error message quotes it).
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.find('#') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(url.len());
    redact_user_password(base, &mut out);
    if let Some(query) = query {
        out.push('?');
        for (index, pair) in query.split('&').enumerate() {
            if index > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, value)) if !value.is_empty() && is_credential_name(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out.push_str(fragment);
    out
}

/// Appends `base` (a URL up to its query) with the password in its user info replaced.
fn redact_user_password(base: &str, out: &mut String) {
    let Some(authority_start) = base.find("://").map(|at| at + 3) else {
        out.push_str(base);
        return;
    };
    let rest = &base[authority_start..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let password = authority.rfind('@').and_then(|at| {
        let colon = authority[..at].find(':')?;
        Some((colon + 1, at))
    });
    match password {
        Some((start, end)) if start < end => {
            out.push_str(&base[..authority_start + start]);
            out.push_str(REDACTED);
            out.push_str(&base[authority_start + end..]);
        }
        _ => out.push_str(base),
    }
}

fn is_credential_name(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    CREDENTIAL_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// `%XX` escapes and `+` (a space in a query) decoded; malformed escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[index]) {
            (Some(byte), _) => {
                decoded.push(byte);
                index += 3;
            }
            (None, b'+') => {
                decoded.push(b' ');
                index += 1;
            }
            (None, byte) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Free text with every URL in it passed through [`redact_url`] and every value in
/// `substituted` replaced by `[redacted]`.
fn redact_text(text: &str, substituted: &SubstitutedValues) -> String {
    let mut text = text.to_owned();
    for value in &substituted.0 {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), "[redacted]");
        }
    }
    redact_urls_in_text(&text)
}

/// Every `scheme://…` in free text passed through [`redact_url`]. A URL ends at whitespace,
/// a quote, a backtick or an angle bracket.
fn redact_urls_in_text(text: &str) -> String {
    let ends_url = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(separator) = rest.find("://") {
        let scheme_start = rest[..separator]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(separator, |(at, _)| at);
        let url_end = rest[separator..]
            .find(ends_url)
            .map_or(rest.len(), |at| separator + at);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..url_end]));
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for SourceConfig {
    // Secrets live inside `verify`; keep them out of any debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("scheme", &self.verify.scheme)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDuplicateConfig {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: u32,
    /// Defaults to `per_second`.
    pub burst: Option<u32>,
}

/// `[[destinations]]`: where accepted events are delivered.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: BackoffConfig,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    pub signing_secret: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Values kept from a 2xx JSON answer, by name: `{ crm_id = "/id" }`. Each is stored with
    /// the delivery (encrypted at rest with `store.encryption_key`), shown in the event's detail,
    /// and searchable by keyed hash like `search_fields` (`GET /api/v1/events?crm_id=…`).
    #[serde(default)]
    pub response_capture: BTreeMap<String, JsonPointer>,
    /// `nats://` destinations: the JetStream subject published to (`{source}`, `{type}`).
    pub subject: Option<String>,
    /// `amqp://` destinations: the exchange published to (`""`, the default exchange, when unset).
    pub exchange: Option<String>,
    /// `amqp://` destinations: the routing key (`{source}`, `{type}`).
    pub routing_key: Option<String>,
    /// The outbound pace, summed over every node that shares the store.
    pub rate_limit: Option<RateLimitConfig>,
    /// On by default; `circuit_breaker = false` turns it off.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
}

/// `circuit_breaker`: `false`, `true`, or `{ failures, cooldown }` (either may be left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitBreakerConfig {
    Off,
    On { failures: u32, cooldown: Duration },
}

const DEFAULT_BREAKER_FAILURES: u32 = 5;
const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig::On {
            failures: DEFAULT_BREAKER_FAILURES,
            cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitBreakerTable {
    failures: Option<u32>,
    #[serde(default, with = "humantime_serde::option")]
    cooldown: Option<Duration>,
}

impl<'de> Deserialize<'de> for CircuitBreakerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CircuitBreakerConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("false, true or a table { failures = 5, cooldown = \"30s\" }")
            }

            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
                Ok(if on {
                    CircuitBreakerConfig::default()
                } else {
                    CircuitBreakerConfig::Off
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let table = CircuitBreakerTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(CircuitBreakerConfig::On {
                    failures: table.failures.unwrap_or(DEFAULT_BREAKER_FAILURES),
                    cooldown: table.cooldown.unwrap_or(DEFAULT_BREAKER_COOLDOWN),
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Names the events search takes for itself: a search or capture field cannot be called so.
pub const RESERVED_SEARCH_NAMES: [&str; 7] = [
    "source", "status", "key", "since", "until", "limit", "cursor",
];

impl fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub base: Duration,
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: default_backoff_base(),
            max: default_backoff_max(),
        }
    }
}

/// `[[routes]]`: which destinations receive a source's events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub source: String,
    pub to: Vec<String>,
    pub when: Option<WhenConfig>,
    /// A key expression (`json:/contact_id`, `header:X-Tenant`): same key, same destination → intake order.
    pub ordering_key: Option<String>,
    /// A jq program applied to the stored JSON body at send time; its one output is delivered.
    pub transform: Option<String>,
}

/// A route's filter: the value at `pointer` is one of `in`, or a string starting with `prefix`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    pub pointer: JsonPointer,
    #[serde(rename = "in", default)]
    pub one_of: Vec<serde_json::Value>,
    pub prefix: Option<String>,
}

impl WhenConfig {
    /// The filter as a condition; `in` and `prefix` are exclusive and one of them is required.
    pub fn condition(&self) -> Result<FieldCondition, (&'static str, String)> {
        field_condition(&self.pointer, &self.one_of, self.prefix.as_deref())
    }
}

/// One of `sources[].dedupe_ttl_when`: the TTL of keys whose body matches the condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeTtlRuleConfig {
    pub pointer: JsonPointer,
    #[serde(rename = "in", default)]
    pub one_of: Vec<serde_json::Value>,
    pub prefix: Option<String>,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl DedupeTtlRuleConfig {
    pub fn condition(&self) -> Result<FieldCondition, (&'static str, String)> {
        field_condition(&self.pointer, &self.one_of, self.prefix.as_deref())
    }
}

/// `pointer` with either `in` (a non-empty list) or `prefix`; on error, the key at fault.
fn field_condition(
    pointer: &JsonPointer,
    one_of: &[serde_json::Value],
    prefix: Option<&str>,
) -> Result<FieldCondition, (&'static str, String)> {
    let condition = match (one_of.is_empty(), prefix) {
        (false, None) => ValueCondition::OneOf(one_of.to_vec()),
        (true, Some(prefix)) => ValueCondition::Prefix(prefix.to_owned()),
        (false, Some(_)) => {
            return Err(("prefix", "cannot be combined with `in`: use one".into()));
        }
        (true, None) => {
            return Err(("in", "required (a non-empty list), or `prefix`".into()));
        }
    };
    Ok(FieldCondition {
        pointer: pointer.clone(),
        condition,
    })
}

fn default_server_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_ip() -> usize {
    256
}
fn default_auth_failures_per_ip() -> RateLimitConfig {
    RateLimitConfig {
        per_second: 50,
        burst: Some(100),
    }
}
fn default_max_buffered_body() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(256)
}
fn default_store_url() -> String {
    "sqlite://./data/oncehook.db".to_owned()
}
fn default_batch_max() -> usize {
    1024
}
fn default_queue_max() -> usize {
    16384
}
fn default_pool_size() -> usize {
    16
}
/// How long finished events are kept when the source does not say (unless a TTL is longer).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn default_dedupe_ttl() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_max_body() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_attempts() -> u32 {
    8
}
fn default_concurrency() -> usize {
    16
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(600)
}

/// More connections than this per node only queue inside the database server.
const MAX_POOL_SIZE: usize = 1_000;

/// The storage backend named by `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Config {
    /// Reads, substitutes, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::from_toml(&text, path, &base_dir, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `env` looks up `${VAR}` references (injected so tests need no global state).
    pub fn from_toml(
        text: &str,
        file: &Path,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut substituted = SubstitutedValues::default();
        // Messages may quote a value (serde does, and so do some checks): hide credentials.
        let error = |key: String, message: String, substituted: &SubstitutedValues| ConfigError {
            file: file.to_owned(),
            key,
            message: redact_text(&message, substituted),
        };
        let mut tree: toml::Table = toml::from_str(text).map_err(|e| {
            error(
                String::new(),
                format!("invalid TOML: {}", e.to_string().trim_end()),
                &substituted,
            )
        })?;
        for (key, value) in tree.iter_mut() {
            substitute_env(value, key.clone(), env, &mut substituted)
                .map_err(|(key, message)| error(key, message, &substituted))?;
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                error(
                    key,
                    with_accepted_forms(e.into_inner().to_string()),
                    &substituted,
                )
            })?;
        config.base_dir = base_dir.to_owned();
        config.file = file.to_owned();
        config.substituted = substituted;
        config
            .validate()
            .map_err(|(key, message)| error(key, message, &config.substituted))?;
        Ok(config)
    }

    /// An error about `key` found after loading, when the config's parts are built (a secret a
    /// verifier refuses, a schema file that cannot be read): like a load error, it names the
    /// file and the key, and hides the credentials its message quotes.
    pub fn error(&self, key: impl Into<String>, message: impl AsRef<str>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: key.into(),
            message: redact_text(message.as_ref(), &self.substituted),
        }
    }

    /// `text` as it may be shown: every URL in it without credentials (see [`redact_url`]) and
    /// every value that came from `${VAR}` replaced by `[redacted]`. Anything `oncehook check`
    /// prints from the config goes through here.
    pub fn redact(&self, text: &str) -> String {
        redact_text(text, &self.substituted)
    }

    /// Lines worth an operator's attention in a config that loads: a source keyed on a header
    /// its signature does not cover, with no replay guard (SPEC §4.3). Each names the source.
    pub fn warnings(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|source| {
                let header = source.unsigned_header_key_part()?;
                Some(format!(
                    "source {:?} keys on {header}, which its {} signature does not cover, and \
                     has no replay guard: anyone holding one signed body can resend it under a \
                     new key; set replay_guard = true or key on the body",
                    source.name,
                    source.verify.scheme.as_str(),
                ))
            })
            .collect()
    }

    pub fn store_location(&self) -> Result<StoreLocation, String> {
        let url = self.store.url.as_str();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://./data/oncehook.db".into());
            }
            let path = Path::new(path);
            Ok(StoreLocation::Sqlite(if path.is_absolute() {
                path.to_owned()
            } else {
                self.base_dir.join(path)
            }))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The store reads the TLS parameters itself; a mistyped mode is caught here already,
            // so `oncehook check` reports it.
            let query = url.split_once('?').map_or("", |(_, query)| query);
            for value in query.split('&').filter_map(|p| p.strip_prefix("sslmode=")) {
                if !matches!(
                    value,
                    "disable" | "prefer" | "require" | "verify-ca" | "verify-full"
                ) {
                    return Err(format!(
                        "sslmode={value} is not one of disable, prefer, require, verify-ca or \
                         verify-full"
                    ));
                }
            }
            Ok(StoreLocation::Postgres(url.to_owned()))
        } else {
            Err(format!(
                "unsupported store URL {:?}: expected sqlite://PATH or postgres://…",
                redact_url(url)
            ))
        }
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        self.store_location()
            .map_err(|m| ("store.url".to_owned(), m))?;
        for (key, value) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
        ] {
            if value.is_zero() {
                return Err((key.into(), "must be longer than zero".into()));
            }
        }
        if self.server.max_connections == 0 {
            return Err(("server.max_connections".into(), "must be at least 1".into()));
        }
        if self.server.max_connections_per_ip == 0 {
            return Err((
                "server.max_connections_per_ip".into(),
                "must be at least 1".into(),
            ));
        }
        let auth_failures = &self.server.auth_failures_per_ip;
        if auth_failures.per_second == 0 {
            return Err((
                "server.auth_failures_per_ip.per_second".into(),
                "must be at least 1".into(),
            ));
        }
        if auth_failures.burst == Some(0) {
            return Err((
                "server.auth_failures_per_ip.burst".into(),
                "must be at least 1".into(),
            ));
        }
        // A body larger than the whole budget could never be read.
        if let Some((i, source)) = self
            .sources
            .iter()
            .enumerate()
            .find(|(_, s)| s.max_body > self.server.max_buffered_body)
        {
            return Err((
                "server.max_buffered_body".into(),
                format!(
                    "{} is smaller than sources[{i}].max_body ({}) of source {:?}",
                    self.server.max_buffered_body, source.max_body, source.name
                ),
            ));
        }
        if self
            .store
            .encryption_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err((
                "store.encryption_key".into(),
                "is empty (unset it to store payloads unencrypted)".into(),
            ));
        }
        if !self.store.previous_encryption_keys.is_empty() && self.store.encryption_key.is_none() {
            return Err((
                "store.previous_encryption_keys".into(),
                "needs store.encryption_key: old keys only decrypt".into(),
            ));
        }
        if self.store.batch_max == 0 {
            return Err(("store.batch_max".into(), "must be at least 1".into()));
        }
        if self.store.queue_max == 0 {
            return Err(("store.queue_max".into(), "must be at least 1".into()));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.store.pool_size) {
            return Err((
                "store.pool_size".into(),
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        let mut names = HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let at = |key: &str| format!("sources[{i}].{key}");
            validate_name(&source.name).map_err(|m| (at("name"), m))?;
            if !names.insert(source.name.as_str()) {
                return Err((
                    at("name"),
                    format!("duplicate source name {:?}", source.name),
                ));
            }
            if source.verify.scheme == SchemeName::None && !source.allow_unsigned {
                return Err((
                    at("verify.scheme"),
                    "scheme \"none\" accepts unsigned requests; set allow_unsigned = true on the source to allow it".into(),
                ));
            }
            source.key_spec().map_err(|m| (at("key"), m))?;
            if source.dedupe_ttl.is_zero() {
                return Err((at("dedupe_ttl"), "must be longer than zero".into()));
            }
            for (j, rule) in source.dedupe_ttl_when.iter().enumerate() {
                rule.condition()
                    .map_err(|(key, m)| (at(&format!("dedupe_ttl_when[{j}].{key}")), m))?;
                if rule.ttl.is_zero() {
                    return Err((
                        at(&format!("dedupe_ttl_when[{j}].ttl")),
                        "must be longer than zero".into(),
                    ));
                }
            }
            // Retention shorter than a TTL would delete events whose keys still answer with them.
            if let Some(retention) = source.retention
                && retention < source.longest_ttl()
            {
                return Err((
                    at("retention"),
                    format!(
                        "must be at least the longest TTL of the source's keys ({}), but is {}",
                        humantime::format_duration(source.longest_ttl()),
                        humantime::format_duration(retention),
                    ),
                ));
            }
            // A signed request stays valid for `tolerance`; if its key expired sooner, a copy
            // sent after the expiry would be accepted again (SPEC §4.3). Every TTL a key may get
            // counts, so the shortest one decides.
            if source.verify.scheme.signs_timestamp() {
                let (tolerance, written) = match source.verify.tolerance {
                    Some(tolerance) => (tolerance, ""),
                    None => (DEFAULT_TOLERANCE, " (the default)"),
                };
                let (shortest, name) = source.shortest_ttl();
                if tolerance >= shortest {
                    return Err((
                        at("verify.tolerance"),
                        format!(
                            "must be shorter than {name} ({}), but is {}{written}: a signed \
                             request could be accepted again after its key expired",
                            humantime::format_duration(shortest),
                            humantime::format_duration(tolerance),
                        ),
                    ));
                }
            }
            if let Some(near) = &source.near_duplicate
                && near.window.is_zero()
            {
                return Err((
                    at("near_duplicate.window"),
                    "must be longer than zero".into(),
                ));
            }
            if let Some(limit) = &source.rate_limit {
                if limit.per_second == 0 {
                    return Err((at("rate_limit.per_second"), "must be at least 1".into()));
                }
                if limit.burst == Some(0) {
                    return Err((at("rate_limit.burst"), "must be at least 1".into()));
                }
            }
            if source.max_body.as_u64() == 0 {
                return Err((at("max_body"), "must be larger than zero".into()));
            }
            if let Some(SchemaConfig::Versioned(versioned)) = &source.schema
                && versioned.versions.is_empty()
            {
                return Err((at("schema.versions"), "lists no version".into()));
            }
            // The key and the search fields are read from the kept body: what they point at
            // must be kept.
            if !source.keep_fields.is_empty() {
                let kept = |pointer: &JsonPointer| {
                    source.keep_fields.iter().any(|keep| keep.covers(pointer))
                };
                let key = source.key_spec().unwrap_or_else(|_| KeySpec {
                    alternatives: Vec::new(),
                });
                for part in key.alternatives.iter().flat_map(|a| &a.parts) {
                    if let KeyPart::Json(pointer) | KeyPart::Email(pointer) = part
                        && !kept(pointer)
                    {
                        return Err((
                            at("keep_fields"),
                            format!(
                                "does not keep {pointer}, which the key reads: add it to keep_fields"
                            ),
                        ));
                    }
                }
                for (name, pointer) in &source.search_fields {
                    if !kept(pointer) {
                        return Err((
                            at("keep_fields"),
                            format!(
                                "does not keep {pointer}, which search_fields.{name} reads: add \
                                 it to keep_fields"
                            ),
                        ));
                    }
                }
            }
        }
        let mut destinations = HashSet::new();
        for (i, destination) in self.destinations.iter().enumerate() {
            let at = |key: &str| format!("destinations[{i}].{key}");
            validate_name(&destination.name).map_err(|m| (at("name"), m))?;
            if !destinations.insert(destination.name.as_str()) {
                return Err((
                    at("name"),
                    format!("duplicate destination name {:?}", destination.name),
                ));
            }
            let url = reqwest::Url::parse(&destination.url).map_err(|e| {
                (
                    at("url"),
                    format!("not a URL ({e}): {:?}", redact_url(&destination.url)),
                )
            })?;
            let bus_keys = [
                ("subject", destination.subject.is_some()),
                ("exchange", destination.exchange.is_some()),
                ("routing_key", destination.routing_key.is_some()),
            ];
            let allowed: &[&str] = match url.scheme() {
                "http" | "https" => &[],
                "nats" => &["subject"],
                "amqp" => &["exchange", "routing_key"],
                _ => {
                    return Err((
                        at("url"),
                        format!(
                            "must be http://, https://, nats:// or amqp://, got {:?}",
                            redact_url(&destination.url)
                        ),
                    ));
                }
            };
            for (key, set) in bus_keys {
                if set && !allowed.contains(&key) {
                    return Err((
                        at(key),
                        format!("does not apply to a {}:// destination", url.scheme()),
                    ));
                }
            }
            match url.scheme() {
                "nats" if destination.subject.as_deref().is_none_or(str::is_empty) => {
                    return Err((
                        at("subject"),
                        "a nats:// destination needs the subject it publishes to".into(),
                    ));
                }
                "amqp"
                    if destination.exchange.as_deref().is_none_or(str::is_empty)
                        && destination.routing_key.as_deref().is_none_or(str::is_empty) =>
                {
                    return Err((
                        at("routing_key"),
                        "an amqp:// destination needs an exchange, a routing key or both".into(),
                    ));
                }
                "nats" | "amqp" if destination.signing_secret.is_some() => {
                    return Err((
                        at("signing_secret"),
                        "signs HTTP deliveries only; event-bus messages carry no signature".into(),
                    ));
                }
                _ => {}
            }
            if destination.max_attempts == 0 {
                return Err((at("max_attempts"), "must be at least 1".into()));
            }
            if destination.concurrency == 0 {
                return Err((at("concurrency"), "must be at least 1".into()));
            }
            if destination.timeout.is_zero() {
                return Err((at("timeout"), "must be longer than zero".into()));
            }
            if let Some(limit) = &destination.rate_limit {
                if limit.per_second == 0 {
                    return Err((at("rate_limit.per_second"), "must be at least 1".into()));
                }
                if limit.burst == Some(0) {
                    return Err((at("rate_limit.burst"), "must be at least 1".into()));
                }
            }
            if let CircuitBreakerConfig::On { failures, cooldown } = destination.circuit_breaker {
                if failures == 0 {
                    return Err((at("circuit_breaker.failures"), "must be at least 1".into()));
                }
                if cooldown.is_zero() {
                    return Err((
                        at("circuit_breaker.cooldown"),
                        "must be longer than zero".into(),
                    ));
                }
            }
            if destination.backoff.base.is_zero()
                || destination.backoff.max < destination.backoff.base
            {
                return Err((
                    at("backoff"),
                    "base must be > 0 and max must be >= base".into(),
                ));
            }
            for name in destination.response_capture.keys() {
                let key = at(&format!("response_capture.{name}"));
                validate_name(name).map_err(|m| (key.clone(), m))?;
                if RESERVED_SEARCH_NAMES.contains(&name.as_str()) {
                    return Err((
                        key,
                        format!(
                            "{name:?} is a parameter of the events search; choose another name"
                        ),
                    ));
                }
            }
            for (name, value) in &destination.headers {
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    (
                        at(&format!("headers.{name}")),
                        "not a valid header name".into(),
                    )
                })?;
                http::HeaderValue::from_str(value).map_err(|_| {
                    (
                        at(&format!("headers.{name}")),
                        "not a valid header value".into(),
                    )
                })?;
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let at = |key: &str| format!("routes[{i}].{key}");
            if !names.contains(route.source.as_str()) {
                return Err((at("source"), format!("unknown source {:?}", route.source)));
            }
            if route.to.is_empty() {
                return Err((at("to"), "names no destination".into()));
            }
            for (j, to) in route.to.iter().enumerate() {
                if !destinations.contains(to.as_str()) {
                    return Err((
                        at(&format!("to[{j}]")),
                        format!("unknown destination {to:?}"),
                    ));
                }
            }
            if let Some(key) = &route.ordering_key {
                KeySpec::parse(std::slice::from_ref(key))
                    .map_err(|e| (at("ordering_key"), e.message))?;
            }
            if let Some(when) = &route.when {
                when.condition()
                    .map_err(|(key, m)| (at(&format!("when.{key}")), m))?;
            }
            if route
                .transform
                .as_deref()
                .is_some_and(|t| t.trim().is_empty())
            {
                return Err((at("transform"), "is empty".into()));
            }
        }
        Ok(())
    }
}

impl SourceConfig {
    /// The configured key alternatives, or the scheme's default (SPEC §4.3).
    pub fn key_spec(&self) -> Result<KeySpec, String> {
        match &self.key {
            Some(entries) if entries.is_empty() => Err("lists no key alternative".into()),
            Some(entries) => KeySpec::parse(entries).map_err(|e| e.to_string()),
            None => Ok(self.verify.scheme.default_key()),
        }
    }

    /// The shortest TTL a key of this source may get, and the key that sets it.
    pub fn shortest_ttl(&self) -> (Duration, String) {
        let mut shortest = (self.dedupe_ttl, "dedupe_ttl".to_owned());
        for (j, rule) in self.dedupe_ttl_when.iter().enumerate() {
            if rule.ttl < shortest.0 {
                shortest = (rule.ttl, format!("dedupe_ttl_when[{j}].ttl"));
            }
        }
        shortest
    }

    /// The longest TTL a key of this source may get.
    pub fn longest_ttl(&self) -> Duration {
        self.dedupe_ttl_when
            .iter()
            .map(|rule| rule.ttl)
            .fold(self.dedupe_ttl, Duration::max)
    }

    /// How long finished events are kept: `retention`, else 30 days or the longest TTL when
    /// that is longer.
    pub fn retention(&self) -> Duration {
        self.retention
            .unwrap_or_else(|| DEFAULT_RETENTION.max(self.longest_ttl()))
    }

    /// `replay_guard` with the scheme's default (SPEC §4.3).
    pub fn replay_guard(&self) -> bool {
        self.replay_guard
            .unwrap_or(self.verify.scheme.replay_guard_by_default())
    }

    /// The first `header:` part of the effective key when the signature covers neither a
    /// timestamp nor that header and no replay guard stands in: whoever holds one signed body
    /// can then resend it under any key. Schemes that sign a timestamp are left out (the
    /// tolerance is shorter than the TTL), and so is `none`, which signs nothing on purpose.
    fn unsigned_header_key_part(&self) -> Option<KeyPart> {
        if !self.verify.scheme.signs_only_the_body() || self.replay_guard() {
            return None;
        }
        self.key_spec()
            .ok()?
            .alternatives
            .into_iter()
            .flat_map(|alternative| alternative.parts)
            .find(|part| matches!(part, KeyPart::Header(_)))
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Replaces `${VAR}` in every string of the tree, recording each value put in; returns the key
/// path of the first missing variable.
/// The value parsers' words for a bad duration or size ("expected a duration", "expected
/// parsable string"), followed by what is accepted.
fn with_accepted_forms(message: String) -> String {
    const FORMS: [(&str, &str); 3] = [
        (
            "expected a duration",
            "expected a duration: a string such as \"500ms\", \"10s\", \"15m\", \"72h\" or \"30d\"",
        ),
        (
            "expected parsable string",
            "expected a size: a string such as \"512KiB\", \"1MiB\" or \"10MB\", or a number of bytes",
        ),
        (
            "expected an integer or string",
            "expected a size: a string such as \"512KiB\", \"1MiB\" or \"10MB\", or a number of bytes",
        ),
    ];
    for (said, accepted) in FORMS {
        if message.contains(said) {
            return message.replacen(said, accepted, 1);
        }
    }
    message
}

fn substitute_env(
    value: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    substituted: &mut SubstitutedValues,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            if s.contains("${") {
                *s = expand(s, env, substituted).map_err(|m| (path, m))?;
            }
            Ok(())
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, format!("{path}[{i}]"), env, substituted)?;
            }
            Ok(())
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                substitute_env(item, format!("{path}.{key}"), env, substituted)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
    substituted: &mut SubstitutedValues,
) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{…}} in {input:?}"))?;
        let name = &after[..end];
        if name.is_empty() {
            return Err("empty ${} reference".into());
        }
        let value = env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        substituted.record(&value);
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| match name {
            "SECRET" => Some("s3cret".to_owned()),
            _ => None,
        };
        Config::from_toml(text, Path::new("test.toml"), Path::new("."), &env)
    }

    fn check_error(text: &str, key: &str, message_part: &str) {
        let error = match load(text) {
            Ok(_) => panic!("expected an error for key {key}"),
            Err(e) => e,
        };
        assert_eq!(error.key, key, "{error}");
        assert!(error.message.contains(message_part), "{error}");
        assert!(error.to_string().starts_with("test.toml: "), "{error}");
    }

    const MINIMAL: &str = r#"
        [[sources]]
        name = "gh"
        verify = { scheme = "github", secrets = ["${SECRET}"] }
    "#;

    #[test]
    fn minimal_config_gets_defaults_and_substitutes_env() {
        let config = load(MINIMAL).expect("valid");
        assert_eq!(config.server.listen.port(), 8080);
        assert_eq!(config.admin.listen.port(), 8081);
        assert_eq!(config.sources[0].verify.secrets, vec!["s3cret".to_owned()]);
        assert_eq!(config.sources[0].dedupe_ttl, Duration::from_secs(72 * 3600));
        assert_eq!(config.store.pool_size, 16);
        assert_eq!(
            config.store_location(),
            Ok(StoreLocation::Sqlite(PathBuf::from("./data/oncehook.db")))
        );
    }

    #[test]
    fn bus_keys_belong_to_their_kind_of_destination() {
        let destination = |url: &str, extra: &str| {
            format!("[[destinations]]\nname = \"d\"\nurl = \"{url}\"\n{extra}\n")
        };
        let nats = "nats://127.0.0.1:4222";
        let amqp = "amqp://u:p@127.0.0.1:5672/%2f";
        check_error(
            &destination(nats, ""),
            "destinations[0].subject",
            "needs the subject",
        );
        check_error(
            &destination(nats, "subject = \"a\"\nrouting_key = \"b\""),
            "destinations[0].routing_key",
            "does not apply to a nats:// destination",
        );
        check_error(
            &destination(amqp, ""),
            "destinations[0].routing_key",
            "needs an exchange, a routing key or both",
        );
        check_error(
            &destination("http://127.0.0.1:9/", "subject = \"a\""),
            "destinations[0].subject",
            "does not apply to a http:// destination",
        );
        check_error(
            &destination(
                nats,
                "subject = \"a\"\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
            ),
            "destinations[0].signing_secret",
            "HTTP deliveries only",
        );
        check_error(
            &destination("ftp://127.0.0.1/", ""),
            "destinations[0].url",
            "nats:// or amqp://",
        );
        assert!(load(&destination(nats, "subject = \"events.{source}.{type}\"")).is_ok());
        assert!(load(&destination(amqp, "exchange = \"leads\"")).is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["${MISSING}"] }"#,
            "sources[0].verify.secrets[0]",
            "MISSING",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "nope", secrets = ["a"] }"#,
            "sources[0].verify.scheme",
            "unknown variant",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "none" }"#,
            "sources[0].verify.scheme",
            "allow_unsigned",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               dedupe_ttl = "forever""#,
            "sources[0].dedupe_ttl",
            "",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               colour = "blue""#,
            "sources[0].colour",
            "unknown field",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               [[routes]]
               source = "x"
               to = ["crm"]"#,
            "routes[0].to[0]",
            "unknown destination",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               fingerprint_ignore = ["no-slash"]"#,
            "sources[0].fingerprint_ignore[0]",
            "",
        );
        check_error(
            r#"[[destinations]]
               name = "crm"
               url = "ftp://example"
            "#,
            "destinations[0].url",
            "http",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               key = ["json:/submission_id"]
               keep_fields = ["/email"]"#,
            "sources[0].keep_fields",
            "/submission_id",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               key = ["json:/data/id"]
               keep_fields = ["/data"]
               search_fields = { phone = "/phone" }"#,
            "sources[0].keep_fields",
            "search_fields.phone",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               schema = { pointer = "/version", versions = {} }"#,
            "sources[0].schema.versions",
            "no version",
        );
        check_error(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "github", secrets = ["a"] }
               schema = { pointer = "/version", files = {} }"#,
            "sources[0].schema",
            "versions = {",
        );
        check_error(
            r#"[[destinations]]
               name = "crm"
               url = "http://127.0.0.1:9/"
               response_capture = { status = "/status" }
            "#,
            "destinations[0].response_capture.status",
            "parameter of the events search",
        );
        check_error(
            r#"[[destinations]]
               name = "crm"
               url = "http://127.0.0.1:9/"
               response_capture = { crm_id = "id" }
            "#,
            "destinations[0].response_capture.crm_id",
            "",
        );
        check_error(
            r#"[store]
               url = "mysql://x""#,
            "store.url",
            "unsupported",
        );
        check_error(
            r#"[store]
               pool_size = 0"#,
            "store.pool_size",
            "between 1 and",
        );
    }

    #[test]
    fn tolerance_must_be_shorter_than_every_dedupe_ttl_where_a_timestamp_is_signed() {
        for scheme in ["standard", "svix", "stripe", "slack"] {
            let secret = if matches!(scheme, "standard" | "svix") {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            } else {
                "s"
            };
            let source = |extra: &str, verify_extra: &str| {
                format!(
                    "[[sources]]\nname = \"x\"\n\
                     verify = {{ scheme = \"{scheme}\", secrets = [\"{secret}\"]{verify_extra} }}\n{extra}"
                )
            };
            // The finding: a month of tolerance outlives the default 72 h key.
            check_error(
                &source("", ", tolerance = \"30d\""),
                "sources[0].verify.tolerance",
                "must be shorter than dedupe_ttl (3days)",
            );
            // The default tolerance (5m) against a short TTL.
            check_error(
                &source("dedupe_ttl = \"2s\"", ""),
                "sources[0].verify.tolerance",
                "must be shorter than dedupe_ttl (2s), but is 5m (the default)",
            );
            // Equal is not shorter.
            check_error(
                &source("dedupe_ttl = \"10m\"", ", tolerance = \"10m\""),
                "sources[0].verify.tolerance",
                "shorter than dedupe_ttl (10m)",
            );
            let config = load(&source("dedupe_ttl = \"2s\"", ", tolerance = \"1s\""))
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
            assert_eq!(config.sources[0].dedupe_ttl, Duration::from_secs(2));
            // A TTL per event type shorter than the tolerance is caught like `dedupe_ttl`.
            check_error(
                &source(
                    "dedupe_ttl_when = [{ pointer = \"/type\", in = [\"ping\"], ttl = \"1m\" }]",
                    "",
                ),
                "sources[0].verify.tolerance",
                "must be shorter than dedupe_ttl_when[0].ttl (1m), but is 5m (the default)",
            );
        }
        // A scheme without a signed timestamp has no tolerance to compare.
        let config = load(
            r#"[[sources]]
               name = "gh"
               verify = { scheme = "github", secrets = ["s"] }
               dedupe_ttl = "2s""#,
        )
        .expect("github has no tolerance");
        assert_eq!(config.sources[0].dedupe_ttl, Duration::from_secs(2));
    }

    #[test]
    fn dedupe_ttl_when_rules_and_route_filters_take_in_or_prefix() {
        let source = |rules: &str| {
            format!(
                "[[sources]]\nname = \"x\"\nverify = {{ scheme = \"github\", secrets = [\"s\"] }}\n\
                 dedupe_ttl_when = [{rules}]"
            )
        };
        let config = load(&source(
            r#"{ pointer = "/type", prefix = "invoice.", ttl = "30d" },
               { pointer = "/type", in = ["ping"], ttl = "1h" }"#,
        ))
        .expect("valid");
        let rules = &config.sources[0].dedupe_ttl_when;
        assert_eq!(
            rules[0].condition().expect("condition").condition,
            ValueCondition::Prefix("invoice.".into())
        );
        assert_eq!(rules[1].ttl, Duration::from_secs(3600));
        assert_eq!(
            config.sources[0].longest_ttl(),
            Duration::from_secs(30 * 86400)
        );
        check_error(
            &source(r#"{ pointer = "/type", ttl = "1h" }"#),
            "sources[0].dedupe_ttl_when[0].in",
            "required",
        );
        check_error(
            &source(r#"{ pointer = "/type", in = ["a"], prefix = "b", ttl = "1h" }"#),
            "sources[0].dedupe_ttl_when[0].prefix",
            "cannot be combined",
        );
        check_error(
            &source(r#"{ pointer = "/type", in = ["a"], ttl = "0s" }"#),
            "sources[0].dedupe_ttl_when[0].ttl",
            "longer than zero",
        );
        check_error(
            &source(r#"{ pointer = "type", in = ["a"], ttl = "1h" }"#),
            "sources[0].dedupe_ttl_when[0].pointer",
            "must start with",
        );
        let route = |when: &str| {
            format!(
                "[[sources]]\nname = \"x\"\nverify = {{ scheme = \"github\", secrets = [\"s\"] }}\n\
                 [[destinations]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\n\
                 [[routes]]\nsource = \"x\"\nto = [\"crm\"]\nwhen = {when}"
            )
        };
        let config = load(&route(r#"{ pointer = "/type", prefix = "lead." }"#)).expect("valid");
        let when = config.routes[0].when.as_ref().expect("when");
        assert_eq!(
            when.condition().expect("condition").condition,
            ValueCondition::Prefix("lead.".into())
        );
        check_error(
            &route(r#"{ pointer = "/type" }"#),
            "routes[0].when.in",
            "required",
        );
    }

    #[test]
    fn retention_defaults_to_30_days_or_the_longest_ttl_and_is_never_shorter() {
        let source = |extra: &str| {
            format!(
                "[[sources]]\nname = \"x\"\nverify = {{ scheme = \"github\", secrets = [\"s\"] }}\n{extra}"
            )
        };
        let day = Duration::from_secs(86400);
        let retention = |extra: &str| load(&source(extra)).expect("valid").sources[0].retention();
        assert_eq!(retention(""), 30 * day);
        assert_eq!(retention("dedupe_ttl = \"40d\""), 40 * day);
        assert_eq!(
            retention(
                "dedupe_ttl_when = [{ pointer = \"/type\", prefix = \"invoice.\", ttl = \"60d\" }]"
            ),
            60 * day
        );
        assert_eq!(retention("retention = \"72h\""), 3 * day);
        check_error(
            &source("retention = \"1h\""),
            "sources[0].retention",
            "must be at least the longest TTL of the source's keys (3days), but is 1h",
        );
        check_error(
            &source(
                "retention = \"7d\"\n\
                 dedupe_ttl_when = [{ pointer = \"/type\", prefix = \"invoice.\", ttl = \"30d\" }]",
            ),
            "sources[0].retention",
            "(30days)",
        );
    }

    #[test]
    fn svix_keys_on_svix_id_and_else_on_webhook_id() {
        let config = load(
            r#"[[sources]]
               name = "sv"
               verify = { scheme = "svix", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }"#,
        )
        .expect("valid");
        let spec = config.sources[0].key_spec().expect("default key");
        assert_eq!(spec.to_string(), "header:Svix-Id, header:Webhook-Id");
        let fingerprint = crate::domain::fingerprint::fingerprint_bytes(b"{}");
        let key = |headers: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in headers {
                map.insert(*name, http::HeaderValue::from_static(value));
            }
            spec.derive(
                "sv",
                &map,
                None,
                None,
                &fingerprint,
                &crate::domain::key::EmailHasher::unkeyed(),
            )
            .map(|key| key.text)
        };
        assert_eq!(key(&[("svix-id", "msg_1")]), Ok("msg_1".to_owned()));
        assert_eq!(key(&[("webhook-id", "msg_2")]), Ok("msg_2".to_owned()));
        // Both sent: the svix name wins, as in the verifier.
        assert_eq!(
            key(&[("svix-id", "msg_3"), ("webhook-id", "other")]),
            Ok("msg_3".to_owned())
        );
        assert!(key(&[]).is_err());
    }

    #[test]
    fn replay_guard_defaults_per_scheme_and_can_be_set() {
        let guard = |verify: &str, extra: &str| {
            let text = format!("[[sources]]\nname = \"x\"\nverify = {verify}\n{extra}");
            load(&text)
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .sources[0]
                .replay_guard()
        };
        let github = r#"{ scheme = "github", secrets = ["s"] }"#;
        let shopify = r#"{ scheme = "shopify", secrets = ["s"] }"#;
        let hmac = r#"{ scheme = "hmac", header = "X-Sig", secrets = ["s"] }"#;
        let stripe = r#"{ scheme = "stripe", secrets = ["s"] }"#;
        assert!(guard(github, ""));
        assert!(guard(shopify, ""));
        assert!(!guard(hmac, ""));
        assert!(!guard(stripe, ""));
        assert!(!guard(github, "replay_guard = false"));
        assert!(guard(hmac, "replay_guard = true"));
    }

    #[test]
    fn a_header_key_the_signature_does_not_cover_warns_without_a_replay_guard() {
        let warnings = |text: &str| load(text).expect("valid").warnings();
        let github = r#"[[sources]]
               name = "gh"
               verify = { scheme = "github", secrets = ["s"] }"#;
        assert!(warnings(github).is_empty(), "guarded by default");
        let unguarded = warnings(&format!("{github}\nreplay_guard = false"));
        assert_eq!(unguarded.len(), 1, "{unguarded:?}");
        assert!(unguarded[0].contains("\"gh\""), "{unguarded:?}");
        assert!(
            unguarded[0].contains("header:X-Github-Delivery"),
            "{unguarded:?}"
        );
        // A header anywhere among the alternatives counts.
        let forms = r#"[[sources]]
               name = "forms"
               verify = { scheme = "hmac", header = "X-Sig", secrets = ["s"] }
               key = ["json:/id", "header:Idempotency-Key"]"#;
        assert_eq!(warnings(forms).len(), 1);
        assert!(warnings(&format!("{forms}\nreplay_guard = true")).is_empty());
        for quiet in [
            // Keyed on the body only.
            r#"[[sources]]
               name = "forms"
               verify = { scheme = "hmac", header = "X-Sig", secrets = ["s"] }"#,
            // The id header is signed, and so is a timestamp.
            r#"[[sources]]
               name = "std"
               verify = { scheme = "standard", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
               key = ["header:webhook-id"]"#,
            // Signs nothing on purpose.
            r#"[[sources]]
               name = "open"
               verify = { scheme = "none" }
               allow_unsigned = true
               key = ["header:Idempotency-Key"]"#,
        ] {
            assert!(warnings(quiet).is_empty(), "{quiet}");
        }
    }

    #[test]
    fn store_url_sslmode_must_be_one_of_libpq_s() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let text = format!(
                "{MINIMAL}\n[store]\nurl = \"postgres://u@db/x?sslmode={mode}&sslrootcert=/ca.pem\"\n"
            );
            assert!(load(&text).is_ok(), "{mode}");
        }
        let text = format!(
            "{MINIMAL}\n[store]\nurl = \"postgres://u:secret@db/x?application_name=a&sslmode=verify\"\n"
        );
        check_error(&text, "store.url", "sslmode=verify is not one of");
        let error = load(&text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn redact_url_hides_passwords_and_credential_query_values() {
        let cases = [
            (
                "https://user:pa55word@crm.example/hook?token=tok123&x=1",
                "https://user:redacted@crm.example/hook?token=redacted&x=1",
            ),
            (
                "postgres://app:dbpass@127.0.0.1/db?sslmode=verify-full",
                "postgres://app:redacted@127.0.0.1/db?sslmode=verify-full",
            ),
            (
                "http://h/p?API_KEY=a&Signature=b&client_secret=c&Password=d&access%5Ftoken=e&page=2",
                "http://h/p?API_KEY=redacted&Signature=redacted&client_secret=redacted&Password=redacted&access%5Ftoken=redacted&page=2",
            ),
            // Nothing to hide: unchanged, byte for byte (no added slash, no re-encoding).
            ("https://user@crm.example", "https://user@crm.example"),
            (
                "http://127.0.0.1:9000/a%20b?q=x+y#top",
                "http://127.0.0.1:9000/a%20b?q=x+y#top",
            ),
            ("sqlite://./data/oncehook.db", "sqlite://./data/oncehook.db"),
            // Does not parse as a URL, and is still hidden.
            (
                "https://u:secret@[bad/x?key=k",
                "https://u:redacted@[bad/x?key=redacted",
            ),
            ("", ""),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn redact_hides_urls_in_text_and_every_substituted_value() {
        let env = |name: &str| match name {
            "CRM_KEY" => Some("k-123456".to_owned()),
            "GH_SECRET" => Some("gh-secret-value".to_owned()),
            _ => None,
        };
        let config = Config::from_toml(
            r#"[[sources]]
               name = "gh"
               verify = { scheme = "github", secrets = ["${GH_SECRET}"] }
               [[destinations]]
               name = "crm"
               url = "https://crm.example/hook"
               headers = { "X-Api-Key" = "${CRM_KEY}" }"#,
            Path::new("test.toml"),
            Path::new("."),
            &env,
        )
        .expect("valid");
        let shown = config.redact(
            "crm https://u:pw@crm.example/?sig=s&x=1 k-123456 and \"gh-secret-value\", é://x",
        );
        assert_eq!(
            shown,
            "crm https://u:redacted@crm.example/?sig=redacted&x=1 [redacted] and \"[redacted]\", é://x"
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains("k-123456"), "{debug}");
        assert!(!debug.contains("gh-secret-value"), "{debug}");
    }

    #[test]
    fn errors_hide_credentials_they_quote() {
        let env = |name: &str| match name {
            "SCHEME" => Some("sekrit-scheme".to_owned()),
            _ => None,
        };
        let load = |text: &str| {
            Config::from_toml(text, Path::new("test.toml"), Path::new("."), &env)
                .expect_err("an error")
                .to_string()
        };
        // serde quotes the unknown variant, which came from the environment.
        let error = load(
            r#"[[sources]]
               name = "x"
               verify = { scheme = "${SCHEME}", secrets = ["s"] }"#,
        );
        assert!(error.contains("sources[0].verify.scheme"), "{error}");
        assert!(!error.contains("sekrit"), "{error}");
        let error = load(
            r#"[[destinations]]
               name = "crm"
               url = "ftp://user:pa55@crm.example/?token=t0k""#,
        );
        assert!(error.contains("destinations[0].url"), "{error}");
        assert!(!error.contains("pa55") && !error.contains("t0k"), "{error}");
        let error = load(
            r#"[store]
               url = "mysql://app:dbpass@db/x""#,
        );
        assert!(error.contains("store.url"), "{error}");
        assert!(!error.contains("dbpass"), "{error}");
    }

    #[test]
    fn edge_limits_have_their_defaults_and_are_checked() {
        let config = load(MINIMAL).expect("valid");
        assert_eq!(config.server.max_connections_per_ip, 256);
        assert_eq!(config.server.auth_failures_per_ip.per_second, 50);
        assert_eq!(config.server.auth_failures_per_ip.burst, Some(100));
        assert_eq!(
            config.server.max_buffered_body,
            bytesize::ByteSize::mib(256)
        );

        let with_server = |server: &str| format!("[server]\n{server}\n{MINIMAL}");
        check_error(
            &with_server("max_connections_per_ip = 0"),
            "server.max_connections_per_ip",
            "at least 1",
        );
        check_error(
            &with_server("auth_failures_per_ip = { per_second = 0 }"),
            "server.auth_failures_per_ip.per_second",
            "at least 1",
        );
        check_error(
            &with_server("auth_failures_per_ip = { per_second = 5, burst = 0 }"),
            "server.auth_failures_per_ip.burst",
            "at least 1",
        );
        check_error(
            &with_server("auth_failures_per_ip = { burst = 5 }"),
            "server.auth_failures_per_ip",
            "per_second",
        );
        check_error(
            &with_server("max_buffered_body = \"512KiB\""),
            "server.max_buffered_body",
            "sources[0].max_body",
        );
        check_error(
            &with_server("max_buffered_body = \"lots\""),
            "server.max_buffered_body",
            "",
        );
    }
}
