//! Idempotency keys: the per-source configuration saying where a request's
//! key comes from (`header:NAME`, `json:/pointer`, `email:/pointer`, `form:NAME`,
//! `fingerprint`, alone or joined with ` + `, tried in order) and the
//! derivation of the key a request carries, both as clients see it and as the
//! compact binary key the dedupe index is built on.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use http::{HeaderMap, HeaderName};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fingerprint::{Fingerprint, canonical_json};
use super::form::FormFields;
use super::pointer::{JsonPointer, PointerError};

/// One source of key material.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeyPart {
    /// A request header, matched case-insensitively.
    Header(HeaderName),
    /// A value in the JSON body.
    Json(JsonPointer),
    /// An e-mail address in the JSON body, trimmed, lowercased and hashed so
    /// the address itself is never stored.
    Email(JsonPointer),
    /// A field of an `application/x-www-form-urlencoded` body, by its decoded name
    /// (case-sensitive, as form names are).
    Form(String),
    /// The body fingerprint (see [`super::fingerprint`]).
    Fingerprint,
}

/// Parts that must all be present for this alternative to produce a key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyAlternative {
    pub parts: Vec<KeyPart>,
}

/// The alternatives of a source's key configuration, in order of preference.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeySpec {
    pub alternatives: Vec<KeyAlternative>,
}

/// Why a key part or alternative does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPartError {
    #[error("empty key part")]
    Empty,
    #[error(
        "unknown key part {0:?} (expected header:NAME, json:/pointer, email:/pointer, form:NAME or fingerprint)"
    )]
    Unknown(String),
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    #[error("form: needs a field name, e.g. form:MessageSid")]
    FormFieldName,
    #[error(transparent)]
    Pointer(#[from] PointerError),
}

/// A key configuration error, naming the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key[{index}]: {message}")]
pub struct KeySpecError {
    pub index: usize,
    pub message: String,
}

/// The key of one request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IdempotencyKey {
    /// What clients see in responses: a single part's value, or the values
    /// of several parts joined with `+`. Not unique; [`Self::dedupe`] is.
    pub text: String,
    pub dedupe: DedupeKey,
}

/// The first 16 bytes of SHA-256 over the source name and every part, each
/// part as its kind (`header`, `json`, `email`, `form`, `fingerprint`) and its value,
/// every field prefixed with its length, so neither `("a+b", "c")` and
/// `("a", "b+c")` nor equal values in different sources collide. Compact on
/// purpose: it is the primary key of the dedupe index.
///
/// The kind is hashed because a value is only as trustworthy as where it came
/// from: an `Idempotency-Key` header set to the fingerprint of a body that has
/// not arrived yet must not make that body a duplicate when it does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DedupeKey(pub [u8; 16]);

/// How `email:` parts are hashed. Without a key, plain SHA-256 of the
/// normalised address (stable, and not the address); with the store's
/// encryption key, HMAC-SHA256 under a key derived from it, so a stolen
/// database or log cannot be searched by hashing guessed addresses.
#[derive(Clone)]
pub struct EmailHasher {
    key: Option<[u8; 32]>,
}

impl EmailHasher {
    pub fn unkeyed() -> EmailHasher {
        EmailHasher { key: None }
    }

    /// Keyed by `secret` (the store's encryption key), when there is one.
    pub fn new(secret: Option<&str>) -> EmailHasher {
        EmailHasher {
            key: secret.map(|secret| {
                Sha256::new_with_prefix(b"oncehook email key\0")
                    .chain_update(secret)
                    .finalize()
                    .into()
            }),
        }
    }

    fn hash(&self, normalized: &str) -> String {
        match &self.key {
            None => hex::encode(Sha256::digest(normalized)),
            Some(key) => {
                use hmac::Mac as _;
                // HMAC takes keys of any length, so a 32-byte key cannot be refused.
                match hmac::Hmac::<Sha256>::new_from_slice(key) {
                    Ok(mut mac) => {
                        mac.update(normalized.as_bytes());
                        hex::encode(mac.finalize().into_bytes())
                    }
                    Err(_) => hex::encode(Sha256::digest(normalized)),
                }
            }
        }
    }
}

impl fmt::Debug for EmailHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.key.is_some() {
            "EmailHasher(keyed)"
        } else {
            "EmailHasher(unkeyed)"
        })
    }
}

/// No alternative of a [`KeySpec`] was complete for a request; the caller
/// answers 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_missing(.tried))]
pub struct NoKeyDerivable {
    /// Every alternative, as configured.
    pub tried: Vec<String>,
}

fn describe_missing(tried: &[String]) -> String {
    match tried {
        [] => "no idempotency key: no key alternatives are configured".to_owned(),
        [only] => format!("no idempotency key: {only} is not present"),
        all => format!("no idempotency key: none of {} is present", all.join(", ")),
    }
}

const PART_SEPARATOR: &str = " + ";

impl FromStr for KeyPart {
    type Err = KeyPartError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyPartError::Empty);
        }
        if text == "fingerprint" {
            return Ok(KeyPart::Fingerprint);
        }
        if let Some(name) = text.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes())
                .map(KeyPart::Header)
                .map_err(|_| KeyPartError::HeaderName(name.to_owned()));
        }
        if let Some(pointer) = text.strip_prefix("json:") {
            return Ok(KeyPart::Json(pointer.parse()?));
        }
        if let Some(pointer) = text.strip_prefix("email:") {
            return Ok(KeyPart::Email(pointer.parse()?));
        }
        if let Some(name) = text.strip_prefix("form:") {
            if name.is_empty() {
                return Err(KeyPartError::FormFieldName);
            }
            return Ok(KeyPart::Form(name.to_owned()));
        }
        Err(KeyPartError::Unknown(text.to_owned()))
    }
}

/// Parts are separated by exactly ` + ` (a bare `+` may be part of a header
/// name or pointer); whitespace around the entry and each part is ignored.
impl FromStr for KeyAlternative {
    type Err = KeyPartError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts = text
            .trim()
            .split(PART_SEPARATOR)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(KeyAlternative { parts })
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Header(name) => {
                f.write_str("header:")?;
                write_header_title_case(name.as_str(), f)
            }
            KeyPart::Json(pointer) => write!(f, "json:{pointer}"),
            KeyPart::Email(pointer) => write!(f, "email:{pointer}"),
            KeyPart::Form(name) => write!(f, "form:{name}"),
            KeyPart::Fingerprint => f.write_str("fingerprint"),
        }
    }
}

/// `HeaderName` keeps only the lowercase form; messages read better in the
/// conventional `Idempotency-Key` spelling.
fn write_header_title_case(name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (index, segment) in name.split('-').enumerate() {
        if index > 0 {
            f.write_str("-")?;
        }
        let mut chars = segment.chars();
        if let Some(first) = chars.next() {
            write!(f, "{}{}", first.to_ascii_uppercase(), chars.as_str())?;
        }
    }
    Ok(())
}

impl fmt::Display for KeyAlternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, part) in self.parts.iter().enumerate() {
            if index > 0 {
                f.write_str(PART_SEPARATOR)?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

impl KeySpec {
    /// Parses the configured alternatives, naming the entry at fault.
    pub fn parse(entries: &[String]) -> Result<KeySpec, KeySpecError> {
        if entries.is_empty() {
            return Err(KeySpecError {
                index: 0,
                message: "no alternatives; list at least one, e.g. \"header:Idempotency-Key\" \
                          or \"fingerprint\""
                    .to_owned(),
            });
        }
        let alternatives = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                entry.parse().map_err(|error: KeyPartError| KeySpecError {
                    index,
                    message: error.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(KeySpec { alternatives })
    }

    /// A spec keyed by one header, for built-in provider presets.
    ///
    /// # Panics
    /// If `name` is not a valid header name: presets are constants, so that
    /// is a programming error.
    pub fn header(name: &'static str) -> KeySpec {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|_| panic!("{name:?} is not a valid header name"));
        KeySpec::single(KeyPart::Header(name))
    }

    /// A spec keyed by one JSON body value, for built-in provider presets.
    ///
    /// # Panics
    /// If `pointer` is not a valid JSON pointer (a programming error).
    pub fn json(pointer: &str) -> KeySpec {
        let pointer = pointer
            .parse()
            .unwrap_or_else(|error| panic!("preset key pointer: {error}"));
        KeySpec::single(KeyPart::Json(pointer))
    }

    /// A spec keyed by the body fingerprint alone.
    pub fn fingerprint() -> KeySpec {
        KeySpec::single(KeyPart::Fingerprint)
    }

    fn single(part: KeyPart) -> KeySpec {
        KeySpec {
            alternatives: vec![KeyAlternative { parts: vec![part] }],
        }
    }

    /// Whether any part reads the JSON body, i.e. whether the caller must
    /// parse it before deriving a key.
    pub fn needs_json(&self) -> bool {
        self.alternatives
            .iter()
            .flat_map(|alternative| &alternative.parts)
            .any(|part| matches!(part, KeyPart::Json(_) | KeyPart::Email(_)))
    }

    /// Whether any part reads a form field, i.e. whether the caller must decode a form body
    /// ([`FormFields::parse`]) before deriving a key.
    pub fn needs_form(&self) -> bool {
        self.alternatives
            .iter()
            .flat_map(|alternative| &alternative.parts)
            .any(|part| matches!(part, KeyPart::Form(_)))
    }

    /// The key of a request from the first alternative whose parts are all
    /// present. `json` is the parsed body when it is JSON, `form` the decoded body when it is a
    /// form (`application/x-www-form-urlencoded`); `fingerprint` the already computed
    /// fingerprint of this request.
    pub fn derive(
        &self,
        source: &str,
        headers: &HeaderMap,
        json: Option<&Value>,
        form: Option<&FormFields>,
        fingerprint: &Fingerprint,
        email: &EmailHasher,
    ) -> Result<IdempotencyKey, NoKeyDerivable> {
        let mut values = Vec::new();
        for alternative in &self.alternatives {
            values.clear();
            let complete = alternative.parts.iter().all(|part| {
                part.value(headers, json, form, fingerprint, email)
                    .map(|value| values.push((part.kind(), value)))
                    .is_some()
            });
            if complete {
                return Ok(IdempotencyKey::new(source, &values));
            }
        }
        Err(NoKeyDerivable {
            tried: self.alternatives.iter().map(ToString::to_string).collect(),
        })
    }
}

impl KeyPart {
    /// The part's value in this request, or `None` when absent: a missing,
    /// empty or non-UTF-8 header; a missing, null or empty-string JSON value;
    /// an e-mail that is not a non-blank string; a missing or empty form field (the
    /// first one counts when a name repeats).
    pub fn value<'a>(
        &self,
        headers: &'a HeaderMap,
        json: Option<&'a Value>,
        form: Option<&'a FormFields>,
        fingerprint: &Fingerprint,
        email: &EmailHasher,
    ) -> Option<Cow<'a, str>> {
        match self {
            KeyPart::Header(name) => {
                let value = std::str::from_utf8(headers.get(name)?.as_bytes()).ok()?;
                let value = value.trim_matches([' ', '\t']);
                (!value.is_empty()).then_some(Cow::Borrowed(value))
            }
            KeyPart::Json(pointer) => match pointer.get(json?)? {
                Value::Null => None,
                Value::String(text) if text.is_empty() => None,
                Value::String(text) => Some(Cow::Borrowed(text)),
                other => Some(Cow::Owned(
                    String::from_utf8_lossy(&canonical_json(other)).into_owned(),
                )),
            },
            KeyPart::Email(pointer) => {
                let Value::String(address) = pointer.get(json?)? else {
                    return None;
                };
                let normalized = address.trim().to_lowercase();
                (!normalized.is_empty()).then(|| Cow::Owned(email.hash(&normalized)))
            }
            KeyPart::Form(name) => {
                let value = form?.get(name)?;
                (!value.is_empty()).then_some(Cow::Borrowed(value))
            }
            KeyPart::Fingerprint => Some(Cow::Owned(fingerprint.to_hex())),
        }
    }
}

impl KeyPart {
    /// What the dedupe hash calls this kind of part (see [`DedupeKey`]).
    pub fn kind(&self) -> &'static str {
        match self {
            KeyPart::Header(_) => "header",
            KeyPart::Json(_) => "json",
            KeyPart::Email(_) => "email",
            KeyPart::Form(_) => "form",
            KeyPart::Fingerprint => "fingerprint",
        }
    }
}

impl IdempotencyKey {
    fn new(source: &str, parts: &[(&'static str, Cow<'_, str>)]) -> IdempotencyKey {
        let text = parts
            .iter()
            .map(|(_, value)| value.as_ref())
            .collect::<Vec<_>>()
            .join("+");
        IdempotencyKey {
            text,
            dedupe: DedupeKey::new(
                source,
                parts.iter().map(|(kind, value)| (*kind, value.as_ref())),
            ),
        }
    }
}

impl DedupeKey {
    /// The key of `(kind, value)` parts in `source`.
    pub fn new<'a>(source: &str, parts: impl IntoIterator<Item = (&'a str, &'a str)>) -> DedupeKey {
        let mut hasher = Sha256::new();
        let mut add = |field: &str| {
            // usize → u64 is lossless on every supported target.
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        };
        add(source);
        for (kind, value) in parts {
            add(kind);
            add(value);
        }
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        DedupeKey(key)
    }

    /// The key a destination dedupes this event by (`Idempotency-Key`, `webhook-id`): a
    /// function of the source and the request's key alone, so it is the same on every attempt
    /// and replay, and when the provider sends the event again after its `dedupe_ttl`. Shaped
    /// as a UUID (version 8, "custom") because destinations often keep idempotency keys in
    /// UUID columns.
    pub fn delivery_key(&self) -> uuid::Uuid {
        uuid::Builder::from_custom_bytes(self.0).into_uuid()
    }

    /// Reads a key back from storage; `None` unless exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<DedupeKey> {
        bytes.try_into().ok().map(DedupeKey)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for DedupeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, alternative) in self.alternatives.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{alternative}")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for KeyAlternative {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Deserializes from the list of alternatives, so config errors say
/// `key[1]: ...`.
impl<'de> serde::Deserialize<'de> for KeySpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        KeySpec::parse(&entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fingerprint::fingerprint_bytes;
    use http::HeaderValue;
    use serde_json::json;

    fn spec(entries: &[&str]) -> KeySpec {
        let entries: Vec<String> = entries.iter().map(|entry| entry.to_string()).collect();
        KeySpec::parse(&entries).unwrap_or_else(|error| panic!("{entries:?}: {error}"))
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(value).expect("header value"),
            );
        }
        map
    }

    fn sha256_hex(text: &str) -> String {
        hex::encode(Sha256::digest(text))
    }

    fn body_fingerprint() -> Fingerprint {
        fingerprint_bytes(b"body")
    }

    #[test]
    fn parse_alternatives() {
        #[track_caller]
        fn check(entry: &str, expected: Result<&str, &str>) {
            let parsed = entry.parse::<KeyAlternative>();
            match (parsed, expected) {
                (Ok(alternative), Ok(display)) => assert_eq!(alternative.to_string(), display),
                (Err(error), Err(message)) => assert_eq!(error.to_string(), message, "{entry:?}"),
                (parsed, expected) => panic!("{entry:?}: got {parsed:?}, expected {expected:?}"),
            }
        }
        check("header:X-GitHub-Delivery", Ok("header:X-Github-Delivery"));
        check("header:webhook-id", Ok("header:Webhook-Id"));
        check("header:IDEMPOTENCY-KEY", Ok("header:Idempotency-Key"));
        check("json:/id", Ok("json:/id"));
        check("json:/data/object/id", Ok("json:/data/object/id"));
        check("json:/items/0/id", Ok("json:/items/0/id"));
        check("json:/a~1b/m~0n", Ok("json:/a~1b/m~0n"));
        check("email:/email", Ok("email:/email"));
        check("fingerprint", Ok("fingerprint"));
        check(
            "json:/submission_id + email:/email",
            Ok("json:/submission_id + email:/email"),
        );
        check(
            "  header:X-Shop + json:/order/id + fingerprint ",
            Ok("header:X-Shop + json:/order/id + fingerprint"),
        );
        // `+` without surrounding spaces belongs to the pointer.
        check("json:/a+b", Ok("json:/a+b"));
        check(
            "foo:/x",
            Err(
                r#"unknown key part "foo:/x" (expected header:NAME, json:/pointer, email:/pointer, form:NAME or fingerprint)"#,
            ),
        );
        check(
            "Fingerprint",
            Err(
                r#"unknown key part "Fingerprint" (expected header:NAME, json:/pointer, email:/pointer, form:NAME or fingerprint)"#,
            ),
        );
        check(
            "/id",
            Err(
                r#"unknown key part "/id" (expected header:NAME, json:/pointer, email:/pointer, form:NAME or fingerprint)"#,
            ),
        );
        check("header:", Err(r#""" is not a valid header name"#));
        check("header:X Y", Err(r#""X Y" is not a valid header name"#));
        check("header:a:b", Err(r#""a:b" is not a valid header name"#));
        check(
            "json:id",
            Err(r#""id" is not a JSON pointer: it must start with "/""#),
        );
        check(
            "email:/a~2",
            Err(r#""/a~2" is not a JSON pointer: "~" must be followed by "0" or "1""#),
        );
        check("", Err("empty key part"));
        check("json:/a +  + json:/b", Err("empty key part"));
    }

    #[test]
    fn spec_errors_name_the_entry() {
        #[track_caller]
        fn check(entries: &[&str], expected: &str) {
            let entries: Vec<String> = entries.iter().map(|entry| entry.to_string()).collect();
            let error = KeySpec::parse(&entries).expect_err("invalid");
            assert_eq!(error.to_string(), expected);
        }
        check(
            &["header:Idempotency-Key", "json:id"],
            r#"key[1]: "id" is not a JSON pointer: it must start with "/""#,
        );
        check(
            &["nope", "fingerprint"],
            r#"key[0]: unknown key part "nope" (expected header:NAME, json:/pointer, email:/pointer, form:NAME or fingerprint)"#,
        );
        check(
            &["fingerprint", "json:/a", "header:bad name"],
            r#"key[2]: "bad name" is not a valid header name"#,
        );
        check(
            &[],
            r#"key[0]: no alternatives; list at least one, e.g. "header:Idempotency-Key" or "fingerprint""#,
        );

        let error = serde_json::from_value::<KeySpec>(json!(["fingerprint", "json:x"]))
            .expect_err("invalid");
        assert_eq!(
            error.to_string(),
            r#"key[1]: "x" is not a JSON pointer: it must start with "/""#
        );
        let parsed: KeySpec =
            serde_json::from_value(json!(["header:Idempotency-Key", "fingerprint"])).expect("ok");
        assert_eq!(parsed, spec(&["header:idempotency-key", "fingerprint"]));
    }

    #[test]
    fn derive_text() {
        #[track_caller]
        fn check(
            entries: &[&str],
            request_headers: &[(&str, &[u8])],
            body: Option<Value>,
            expected: Result<&str, &str>,
        ) {
            let result = spec(entries).derive(
                "src",
                &headers(request_headers),
                body.as_ref(),
                None,
                &body_fingerprint(),
                &EmailHasher::unkeyed(),
            );
            match (result, expected) {
                (Ok(key), Ok(text)) => assert_eq!(key.text, text, "{entries:?}"),
                (Err(error), Err(message)) => assert_eq!(error.to_string(), message),
                (result, expected) => panic!("{entries:?}: got {result:?}, expected {expected:?}"),
            }
        }
        let body = json!({
            "id": "evt_1",
            "submission_id": "sub_7",
            "email": "  Foo@Example.COM ",
            "data": {"object": {"id": "obj_9"}},
            "items": [{"id": "first"}, {"id": "second"}],
            "a/b": {"m~n": "escaped"},
            "count": 42,
            "ratio": 1.50,
            "big": 1e30,
            "flag": false,
            "object": {"b": 2, "a": [1, "x"]},
            "list": [3, 2],
            "empty_object": {},
            "nothing": null,
            "blank": "",
            "spaces": "  ",
            "blank_email": "   ",
            "numeric_email": 5
        });
        let no_headers: &[(&str, &[u8])] = &[];

        // Single parts.
        check(
            &["header:Idempotency-Key"],
            &[("idempotency-key", b"k-1")],
            None,
            Ok("k-1"),
        );
        check(
            &["header:x-github-delivery"],
            &[("X-GitHub-Delivery", b"72d3162e")],
            None,
            Ok("72d3162e"),
        );
        check(
            &["header:Webhook-Id"],
            &[("webhook-id", "msg_ü".as_bytes())],
            None,
            Ok("msg_ü"),
        );
        check(
            &["header:webhook-id"],
            &[("webhook-id", b" \tmsg_1 ")],
            None,
            Ok("msg_1"),
        );
        // Repeated headers: the first one counts.
        check(
            &["header:webhook-id"],
            &[("webhook-id", b"one"), ("webhook-id", b"two")],
            None,
            Ok("one"),
        );
        check(&["json:/id"], no_headers, Some(body.clone()), Ok("evt_1"));
        check(
            &["json:/data/object/id"],
            no_headers,
            Some(body.clone()),
            Ok("obj_9"),
        );
        check(
            &["json:/items/1/id"],
            no_headers,
            Some(body.clone()),
            Ok("second"),
        );
        check(
            &["json:/a~1b/m~0n"],
            no_headers,
            Some(body.clone()),
            Ok("escaped"),
        );
        check(&["json:/spaces"], no_headers, Some(body.clone()), Ok("  "));
        // Non-string values are their canonical JSON text.
        check(&["json:/count"], no_headers, Some(body.clone()), Ok("42"));
        check(&["json:/ratio"], no_headers, Some(body.clone()), Ok("1.5"));
        check(&["json:/big"], no_headers, Some(body.clone()), Ok("1e+30"));
        check(&["json:/flag"], no_headers, Some(body.clone()), Ok("false"));
        check(
            &["json:/object"],
            no_headers,
            Some(body.clone()),
            Ok(r#"{"a":[1,"x"],"b":2}"#),
        );
        check(&["json:/list"], no_headers, Some(body.clone()), Ok("[3,2]"));
        check(
            &["json:/empty_object"],
            no_headers,
            Some(body.clone()),
            Ok("{}"),
        );
        check(
            &["email:/email"],
            no_headers,
            Some(body.clone()),
            Ok(&sha256_hex("foo@example.com")),
        );
        check(
            &["fingerprint"],
            no_headers,
            None,
            Ok(&body_fingerprint().to_hex()),
        );

        // Composite parts join with "+".
        let composite = format!("sub_7+{}", sha256_hex("foo@example.com"));
        check(
            &["json:/submission_id + email:/email"],
            no_headers,
            Some(body.clone()),
            Ok(&composite),
        );
        check(
            &["header:X-Shop + json:/count"],
            &[("x-shop", b"shop-1")],
            Some(body.clone()),
            Ok("shop-1+42"),
        );

        // The first complete alternative wins, in configured order.
        check(
            &["header:Idempotency-Key", "json:/id"],
            &[("idempotency-key", b"from-header")],
            Some(body.clone()),
            Ok("from-header"),
        );
        check(
            &["json:/id", "header:Idempotency-Key"],
            &[("idempotency-key", b"from-header")],
            Some(body.clone()),
            Ok("evt_1"),
        );
        check(
            &["header:Idempotency-Key", "json:/id"],
            no_headers,
            Some(body.clone()),
            Ok("evt_1"),
        );
        // A partly present composite is skipped as a whole.
        check(
            &["json:/submission_id + email:/missing", "json:/id"],
            no_headers,
            Some(body.clone()),
            Ok("evt_1"),
        );
        check(
            &["json:/missing", "json:/nothing", "fingerprint"],
            no_headers,
            Some(body.clone()),
            Ok(&body_fingerprint().to_hex()),
        );

        // Absent parts.
        let absent = |part: &str| format!("no idempotency key: {part} is not present");
        check(
            &["header:Idempotency-Key"],
            no_headers,
            None,
            Err(&absent("header:Idempotency-Key")),
        );
        check(
            &["header:Idempotency-Key"],
            &[("idempotency-key", b"")],
            None,
            Err(&absent("header:Idempotency-Key")),
        );
        check(
            &["header:Idempotency-Key"],
            &[("idempotency-key", b"  ")],
            None,
            Err(&absent("header:Idempotency-Key")),
        );
        check(
            &["header:Idempotency-Key"],
            &[("idempotency-key", b"\xff\xfe")],
            None,
            Err(&absent("header:Idempotency-Key")),
        );
        check(
            &["header:Idempotency-Key"],
            &[("other", b"value")],
            None,
            Err(&absent("header:Idempotency-Key")),
        );
        check(
            &["json:/nothing"],
            no_headers,
            Some(body.clone()),
            Err(&absent("json:/nothing")),
        );
        check(
            &["json:/blank"],
            no_headers,
            Some(body.clone()),
            Err(&absent("json:/blank")),
        );
        check(
            &["json:/missing"],
            no_headers,
            Some(body.clone()),
            Err(&absent("json:/missing")),
        );
        check(
            &["json:/items/01/id"],
            no_headers,
            Some(body.clone()),
            Err(&absent("json:/items/01/id")),
        );
        check(&["json:/id"], no_headers, None, Err(&absent("json:/id")));
        check(
            &["email:/numeric_email"],
            no_headers,
            Some(body.clone()),
            Err(&absent("email:/numeric_email")),
        );
        check(
            &["email:/blank_email"],
            no_headers,
            Some(body.clone()),
            Err(&absent("email:/blank_email")),
        );
        check(
            &["email:/nothing"],
            no_headers,
            Some(body.clone()),
            Err(&absent("email:/nothing")),
        );
        check(
            &[
                "header:Idempotency-Key",
                "json:/submission_id + email:/email",
            ],
            no_headers,
            Some(json!({"submission_id": "sub_7"})),
            Err("no idempotency key: none of header:Idempotency-Key, \
                 json:/submission_id + email:/email is present"),
        );
    }

    #[test]
    fn email_normalisation() {
        let key_for = |address: &str| {
            spec(&["email:/email"])
                .derive(
                    "forms",
                    &HeaderMap::new(),
                    Some(&json!({ "email": address })),
                    None,
                    &body_fingerprint(),
                    &EmailHasher::unkeyed(),
                )
                .expect("present")
        };
        let expected = key_for("foo@example.com");
        assert_eq!(key_for("  Foo@Example.COM "), expected);
        assert_eq!(key_for("FOO@EXAMPLE.COM"), expected);
        assert_eq!(key_for("\tfoo@example.com\n"), expected);
        assert_ne!(key_for("foo+1@example.com"), expected);
        assert_eq!(expected.text, sha256_hex("foo@example.com"));
        assert!(!expected.text.contains("example"));
        // Unicode lowercasing, not just ASCII.
        assert_eq!(key_for("ÉLODIE@EXAMPLE.FR"), key_for("élodie@example.fr"));

        // With the store's encryption key, the hash is keyed: not the address's plain SHA-256,
        // stable for one key, different under another.
        let keyed = |secret: &str, address: &str| {
            spec(&["email:/email"])
                .derive(
                    "forms",
                    &HeaderMap::new(),
                    Some(&json!({ "email": address })),
                    None,
                    &body_fingerprint(),
                    &EmailHasher::new(Some(secret)),
                )
                .expect("present")
        };
        let under_a = keyed("key-a", "foo@example.com");
        assert_eq!(under_a, keyed("key-a", " FOO@example.com"));
        assert_ne!(under_a.text, sha256_hex("foo@example.com"));
        assert_ne!(under_a.text, keyed("key-b", "foo@example.com").text);
        assert_eq!(under_a.text.len(), 64);
    }

    #[test]
    fn dedupe_keys() {
        let derive = |source: &str, entries: &[&str], body: Value| {
            spec(entries)
                .derive(
                    source,
                    &HeaderMap::new(),
                    Some(&body),
                    None,
                    &body_fingerprint(),
                    &EmailHasher::unkeyed(),
                )
                .expect("present")
        };
        let two_parts = ["json:/x + json:/y"];
        let left = derive("s", &two_parts, json!({"x": "a+b", "y": "c"}));
        let right = derive("s", &two_parts, json!({"x": "a", "y": "b+c"}));
        assert_eq!(left.text, "a+b+c");
        assert_eq!(right.text, "a+b+c");
        assert_ne!(left.dedupe, right.dedupe);

        let single = derive("s", &["json:/x"], json!({"x": "a+b+c"}));
        assert_eq!(single.text, "a+b+c");
        assert_ne!(single.dedupe, left.dedupe);

        let in_github = derive("github", &["json:/id"], json!({"id": "1"}));
        let in_stripe = derive("stripe", &["json:/id"], json!({"id": "1"}));
        assert_eq!(in_github.text, in_stripe.text);
        assert_ne!(in_github.dedupe, in_stripe.dedupe);
        // The source name and the value are framed, not concatenated.
        assert_ne!(
            DedupeKey::new("ab", [("json", "c")]),
            DedupeKey::new("a", [("json", "bc")])
        );

        // Equal values from one kind of part dedupe alike whatever JSON type carried them;
        // from different kinds they are different keys (a header cannot stand in for a
        // fingerprint or a body field).
        let from_number = derive("s", &["json:/id"], json!({"id": 42}));
        let from_string = derive("s", &["json:/id"], json!({"id": "42"}));
        assert_eq!(from_number, from_string);
        let from_header = spec(&["header:Idempotency-Key", "json:/id"])
            .derive(
                "s",
                &headers(&[("idempotency-key", b"42")]),
                None,
                None,
                &body_fingerprint(),
                &EmailHasher::unkeyed(),
            )
            .expect("present");
        assert_eq!(from_header.text, from_number.text);
        assert_ne!(from_header.dedupe, from_number.dedupe);
        let fingerprint_hex = body_fingerprint().to_hex();
        let forged = spec(&["header:Idempotency-Key", "fingerprint"])
            .derive(
                "s",
                &headers(&[("idempotency-key", fingerprint_hex.as_bytes())]),
                None,
                None,
                &body_fingerprint(),
                &EmailHasher::unkeyed(),
            )
            .expect("present");
        let real = spec(&["header:Idempotency-Key", "fingerprint"])
            .derive(
                "s",
                &HeaderMap::new(),
                None,
                None,
                &body_fingerprint(),
                &EmailHasher::unkeyed(),
            )
            .expect("present");
        assert_eq!(forged.text, real.text);
        assert_ne!(forged.dedupe, real.dedupe);

        // Stable across releases: the dedupe index is keyed on these bytes.
        let mut expected = Sha256::new();
        for field in ["s", "json", "a+b", "json", "c"] {
            expected.update((field.len() as u64).to_be_bytes());
            expected.update(field);
        }
        assert_eq!(left.dedupe.as_bytes()[..], expected.finalize()[..16]);
        assert_eq!(
            DedupeKey::from_slice(left.dedupe.as_bytes()),
            Some(left.dedupe)
        );
        assert_eq!(DedupeKey::from_slice(&[0; 15]), None);
        assert_eq!(left.dedupe.to_string().len(), 32);
    }

    #[test]
    fn presets_and_needs_json() {
        #[track_caller]
        fn check(spec: KeySpec, display: &str, needs_json: bool) {
            assert_eq!(spec.to_string(), display);
            assert_eq!(spec.needs_json(), needs_json, "{display}");
        }
        check(
            KeySpec::header("X-GitHub-Delivery"),
            "header:X-Github-Delivery",
            false,
        );
        check(KeySpec::header("webhook-id"), "header:Webhook-Id", false);
        check(
            KeySpec::json("/data/object/id"),
            "json:/data/object/id",
            true,
        );
        check(KeySpec::fingerprint(), "fingerprint", false);
        check(
            spec(&["header:Idempotency-Key", "fingerprint"]),
            "header:Idempotency-Key, fingerprint",
            false,
        );
        check(
            spec(&["header:Idempotency-Key", "email:/email + fingerprint"]),
            "header:Idempotency-Key, email:/email + fingerprint",
            true,
        );
        assert_eq!(
            KeySpec::header("Idempotency-Key"),
            spec(&["header:idempotency-key"])
        );
    }

    #[test]
    fn empty_spec_never_derives() {
        let empty = KeySpec {
            alternatives: Vec::new(),
        };
        let error = empty
            .derive(
                "s",
                &HeaderMap::new(),
                None,
                None,
                &body_fingerprint(),
                &EmailHasher::unkeyed(),
            )
            .expect_err("nothing to try");
        assert_eq!(
            error.to_string(),
            "no idempotency key: no key alternatives are configured"
        );
    }

    #[test]
    fn form_parts() {
        let form = FormFields::parse(
            b"MessageSid=SM123&From=%2B15005550006&Body=hi+there&Empty=&Body=second",
        );
        let derive =
            |entries: &[&str], form: Option<&FormFields>, request_headers: &[(&str, &[u8])]| {
                spec(entries).derive(
                    "twilio",
                    &headers(request_headers),
                    None,
                    form,
                    &body_fingerprint(),
                    &EmailHasher::unkeyed(),
                )
            };
        let text = |entries: &[&str], form: Option<&FormFields>| {
            derive(entries, form, &[])
                .map(|key| key.text)
                .map_err(|error| error.to_string())
        };
        assert_eq!(
            text(&["form:MessageSid"], Some(&form)),
            Ok("SM123".to_owned())
        );
        assert_eq!(
            text(&["form:From"], Some(&form)),
            Ok("+15005550006".to_owned())
        );
        // A repeated name: the first value counts.
        assert_eq!(text(&["form:Body"], Some(&form)), Ok("hi there".to_owned()));
        assert_eq!(
            text(&["form:MessageSid + form:From"], Some(&form)),
            Ok("SM123++15005550006".to_owned())
        );
        // Names are case-sensitive; empty and missing fields are absent; no form, no field.
        for (entries, form) in [
            (&["form:messagesid"][..], Some(&form)),
            (&["form:Empty"], Some(&form)),
            (&["form:Missing"], Some(&form)),
            (&["form:MessageSid"], None),
        ] {
            assert_eq!(
                text(entries, form),
                Err(format!("no idempotency key: {} is not present", entries[0])),
            );
        }
        assert_eq!(
            text(&["form:Missing", "fingerprint"], Some(&form)),
            Ok(body_fingerprint().to_hex())
        );

        // Parsing and display.
        let part: KeyPart = "form:MessageSid".parse().expect("form part");
        assert_eq!(part, KeyPart::Form("MessageSid".to_owned()));
        assert_eq!(part.to_string(), "form:MessageSid");
        assert_eq!(part.kind(), "form");
        assert_eq!(
            "form:"
                .parse::<KeyPart>()
                .map_err(|error| error.to_string()),
            Err("form: needs a field name, e.g. form:MessageSid".to_owned())
        );
        assert!(spec(&["header:I-Twilio-Idempotency-Token", "form:MessageSid"]).needs_form());
        assert!(!spec(&["json:/id", "fingerprint"]).needs_form());
        assert!(!spec(&["form:MessageSid"]).needs_json());

        // The kind is hashed: a header or a JSON value equal to the form field is another key.
        let from_form = derive(&["form:MessageSid"], Some(&form), &[]).expect("form");
        let from_header =
            derive(&["header:MessageSid"], None, &[("messagesid", b"SM123")]).expect("header");
        let from_json = spec(&["json:/MessageSid"])
            .derive(
                "twilio",
                &HeaderMap::new(),
                Some(&json!({"MessageSid": "SM123"})),
                None,
                &body_fingerprint(),
                &EmailHasher::unkeyed(),
            )
            .expect("json");
        assert_eq!(from_form.text, from_header.text);
        assert_ne!(from_form.dedupe, from_header.dedupe);
        assert_ne!(from_form.dedupe, from_json.dedupe);
        assert_eq!(
            from_form.dedupe,
            DedupeKey::new("twilio", [("form", "SM123")])
        );
    }
}
