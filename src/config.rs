//! The configuration file (TOML): its model, `${VAR}` substitution, and validation.
//!
//! Loading is layered: the file is parsed into a TOML tree, `${VAR}` references in string values
//! are replaced from the environment, the tree is deserialized into the typed model (unknown keys
//! are errors), and then cross-references (routes to destinations, schema files, signature
//! secrets) are checked. Every error names the file and the key, e.g.
//! `oncehook.toml: sources[1].verify.header: required when scheme = "hmac"`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::key::KeySpec;
use crate::domain::pointer::JsonPointer;
use crate::verify::{SchemeName, Verifier, VerifyConfig};

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
    #[serde(default = "default_dedupe_ttl", with = "humantime_serde")]
    pub dedupe_ttl: Duration,
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default = "default_max_body")]
    pub max_body: bytesize::ByteSize,
    /// A JSON Schema file (relative to the config file); bodies that do not match are rejected.
    pub schema: Option<PathBuf>,
    #[serde(default)]
    pub drop_fields: Vec<JsonPointer>,
    #[serde(default)]
    pub mask_fields: Vec<JsonPointer>,
    #[serde(default)]
    pub search_fields: BTreeMap<String, JsonPointer>,
    /// Required to use `verify.scheme = "none"`.
    #[serde(default)]
    pub allow_unsigned: bool,
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

/// A store URL without its password.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
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
}

impl fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("url", &self.url)
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    pub pointer: JsonPointer,
    #[serde(rename = "in")]
    pub one_of: Vec<serde_json::Value>,
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
        let error = |key: String, message: String| ConfigError {
            file: file.to_owned(),
            key,
            message,
        };
        let mut tree: toml::Table = toml::from_str(text).map_err(|e| {
            error(
                String::new(),
                format!("invalid TOML: {}", e.to_string().trim_end()),
            )
        })?;
        for (key, value) in tree.iter_mut() {
            substitute_env(value, key.clone(), env)
                .map_err(|(key, message)| error(key, message))?;
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                error(key, e.into_inner().to_string())
            })?;
        config.base_dir = base_dir.to_owned();
        config
            .validate()
            .map_err(|(key, message)| error(key, message))?;
        Ok(config)
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
            Ok(StoreLocation::Postgres(url.to_owned()))
        } else {
            Err(format!(
                "unsupported store URL {url:?}: expected sqlite://PATH or postgres://…"
            ))
        }
    }

    /// The payload cipher, when `store.encryption_key` is set.
    pub fn payload_cipher(&self) -> Option<crate::privacy::PayloadCipher> {
        self.store.encryption_key.as_deref().map(|key| {
            crate::privacy::PayloadCipher::new(key, &self.store.previous_encryption_keys)
        })
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
            Verifier::from_config(&source.verify)
                .map_err(|e| (at(&format!("verify.{}", e.key)), e.message))?;
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
            if let Some(schema) = &source.schema {
                load_schema(&self.resolve_path(schema)).map_err(|m| (at("schema"), m))?;
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
            let url = reqwest::Url::parse(&destination.url)
                .map_err(|e| (at("url"), format!("not a URL ({e}): {:?}", destination.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err((
                    at("url"),
                    format!("must be http:// or https://, got {:?}", destination.url),
                ));
            }
            if let Some(secret) = &destination.signing_secret {
                crate::delivery::signing_verifier(secret)
                    .map_err(|e| (at("signing_secret"), e.message))?;
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
            if destination.backoff.base.is_zero()
                || destination.backoff.max < destination.backoff.base
            {
                return Err((
                    at("backoff"),
                    "base must be > 0 and max must be >= base".into(),
                ));
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
            None => Ok(match self.verify.scheme {
                SchemeName::Standard => KeySpec::header("webhook-id"),
                SchemeName::Svix => KeySpec::header("svix-id"),
                SchemeName::Stripe => KeySpec::json("/id"),
                SchemeName::Github => KeySpec::header("x-github-delivery"),
                SchemeName::Shopify => KeySpec::header("x-shopify-webhook-id"),
                SchemeName::Slack | SchemeName::Hmac | SchemeName::Bearer | SchemeName::None => {
                    KeySpec::fingerprint()
                }
            }),
        }
    }
}

/// Reads and compiles a JSON Schema file.
pub fn load_schema(path: &Path) -> Result<jsonschema::Validator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    jsonschema::validator_for(&schema)
        .map_err(|e| format!("{} is not a valid JSON Schema: {e}", path.display()))
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

/// Replaces `${VAR}` in every string of the tree; returns the key path of the first missing variable.
fn substitute_env(
    value: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            if s.contains("${") {
                *s = expand(s, env).map_err(|m| (path, m))?;
            }
            Ok(())
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, format!("{path}[{i}]"), env)?;
            }
            Ok(())
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                substitute_env(item, format!("{path}.{key}"), env)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
