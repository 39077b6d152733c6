//! RFC 6901 JSON pointers as they appear in source configuration (`json:/id`,
//! `fingerprint_ignore`): parsed and validated once at config load, then used
//! to look up or remove values in request bodies.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// A parsed, non-root RFC 6901 pointer such as `/data/object/id`.
///
/// The root pointer `""` is deliberately rejected: a key or ignore rule that
/// names the whole document is always a configuration mistake.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonPointer {
    text: String,
    /// Reference tokens with `~1` and `~0` already unescaped; never empty.
    tokens: Vec<String>,
}

/// Why a string is not an acceptable JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a JSON pointer: {reason}")]
pub struct PointerError {
    pub text: String,
    pub reason: &'static str,
}

impl FromStr for JsonPointer {
    type Err = PointerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| PointerError {
            text: text.to_owned(),
            reason,
        };
        let Some(body) = text.strip_prefix('/') else {
            return Err(error("it must start with \"/\""));
        };
        let tokens = body
            .split('/')
            .map(unescape_token)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| error("\"~\" must be followed by \"0\" or \"1\""))?;
        Ok(JsonPointer {
            text: text.to_owned(),
            tokens,
        })
    }
}

/// Undoes RFC 6901 escaping; `None` for `~` followed by anything but `0`/`1`.
fn unescape_token(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_owned());
    }
    let mut token = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => token.push('~'),
                Some('1') => token.push('/'),
                _ => return None,
            }
        } else {
            token.push(c);
        }
    }
    Some(token)
}

/// RFC 6901 array index: `0` or a decimal without leading zeros. `-` (one past
/// the end) never names an existing element, so it never matches.
pub(crate) fn array_index(token: &str) -> Option<usize> {
    let bytes = token.as_bytes();
    let canonical = match bytes {
        [] => false,
        [b'0'] => true,
        [first, ..] => *first != b'0' && bytes.iter().all(u8::is_ascii_digit),
    };
    if canonical { token.parse().ok() } else { None }
}

impl JsonPointer {
    /// The pointer exactly as written in configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped reference tokens, outermost first.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = &str> {
        self.tokens.iter().map(String::as_str)
    }

    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.tokens
            .iter()
            .try_fold(value, |current, token| match current {
                Value::Object(map) => map.get(token),
                Value::Array(items) => items.get(array_index(token)?),
                _ => None,
            })
    }

    pub fn get_mut<'a>(&self, value: &'a mut Value) -> Option<&'a mut Value> {
        self.tokens
            .iter()
            .try_fold(value, |current, token| step_mut(current, token))
    }

    /// Removes the object member or array element the pointer names (later
    /// array elements shift down) and returns it.
    pub fn remove(&self, value: &mut Value) -> Option<Value> {
        let (last, parents) = self.tokens.split_last()?;
        let parent = parents
            .iter()
            .try_fold(value, |current, token| step_mut(current, token))?;
        match parent {
            Value::Object(map) => map.remove(last),
            Value::Array(items) => {
                let index = array_index(last).filter(|&index| index < items.len())?;
                Some(items.remove(index))
            }
            _ => None,
        }
    }
}

impl JsonPointer {
    /// Whether this pointer names `other` or something inside it (`/a` covers `/a/b`).
    pub fn covers(&self, other: &JsonPointer) -> bool {
        other.tokens.len() >= self.tokens.len()
            && self.tokens.iter().zip(&other.tokens).all(|(a, b)| a == b)
    }
}

/// The paths of a `keep_fields` list as a tree: a node either keeps everything below it or
/// keeps only its children.
#[derive(Default)]
struct KeptPaths {
    whole: bool,
    children: std::collections::BTreeMap<String, KeptPaths>,
}

/// Keeps only what `pointers` name in `value` (an allow-list, the complement of removing):
/// objects keep the members on a kept path, arrays the elements on one (in their order, so
/// later indices shift down), and a value a pointer ends at is kept whole. Pointers that find
/// nothing keep nothing. Returns true when anything was removed.
pub fn keep_only(value: &mut Value, pointers: &[JsonPointer]) -> bool {
    let mut tree = KeptPaths::default();
    for pointer in pointers {
        let node = pointer.tokens.iter().fold(&mut tree, |node, token| {
            node.children.entry(token.clone()).or_default()
        });
        node.whole = true;
    }
    let mut removed = false;
    if !prune(value, &tree, &mut removed) {
        // Nothing of the body is kept: an empty container of the same kind remains.
        removed |= match value {
            Value::Object(map) => !std::mem::take(map).is_empty(),
            Value::Array(items) => !std::mem::take(items).is_empty(),
            _ => false,
        };
    }
    removed
}

/// Prunes `value` to `kept`; false when nothing of it is kept (the caller removes it).
fn prune(value: &mut Value, kept: &KeptPaths, removed: &mut bool) -> bool {
    if kept.whole {
        return true;
    }
    match value {
        Value::Object(map) => {
            let before = map.len();
            map.retain(|name, member| {
                kept.children
                    .get(name)
                    .is_some_and(|child| prune(member, child, removed))
            });
            *removed |= map.len() != before;
            !map.is_empty()
        }
        Value::Array(items) => {
            let before = items.len();
            let mut index = 0usize;
            items.retain_mut(|item| {
                let keep = kept
                    .children
                    .iter()
                    .find(|(token, _)| array_index(token) == Some(index))
                    .is_some_and(|(_, child)| prune(item, child, removed));
                index += 1;
                keep
            });
            *removed |= items.len() != before;
            !items.is_empty()
        }
        // A path that goes on below a scalar finds nothing.
        _ => false,
    }
}

fn step_mut<'a>(current: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match current {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(array_index(token)?),
        _ => None,
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.text.as_str(), f)
    }
}

impl<'de> serde::Deserialize<'de> for JsonPointer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for JsonPointer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_only_keeps_the_named_paths_and_their_parents() {
        let check = |body: Value, keep: &[&str], expected: Value, removed: bool| {
            let mut body = body;
            let pointers: Vec<JsonPointer> = keep.iter().map(|p| pointer(p)).collect();
            assert_eq!(keep_only(&mut body, &pointers), removed, "{keep:?}");
            assert_eq!(body, expected, "{keep:?}");
        };
        let lead = json!({"email": "a@x", "type": "lead", "ip": "1.2.3.4",
                          "meta": {"id": 7, "agent": "x"}, "tags": ["a", "b", "c"]});
        check(
            lead.clone(),
            &["/email", "/meta/id", "/tags/2", "/missing", "/type/deeper"],
            json!({"email": "a@x", "meta": {"id": 7}, "tags": ["c"]}),
            true,
        );
        check(
            lead.clone(),
            &["/meta"],
            json!({"meta": {"id": 7, "agent": "x"}}),
            true,
        );
        check(json!({"a": 1}), &["/a"], json!({"a": 1}), false);
        check(lead, &["/nothing"], json!({}), true);
        assert!(pointer("/a").covers(&pointer("/a/b")));
        assert!(pointer("/a").covers(&pointer("/a")));
        assert!(!pointer("/a/b").covers(&pointer("/a")));
        assert!(!pointer("/ab").covers(&pointer("/a")));
    }

    fn pointer(text: &str) -> JsonPointer {
        text.parse()
            .unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
    }

    fn sample() -> Value {
        json!({
            "id": "evt_1",
            "data": {"object": {"id": "obj_9", "amount": 1200}},
            "items": [{"id": "a"}, {"id": "b"}],
            "a/b": 1,
            "m~n": 2,
            "~1": 3,
            "": {"": "empty keys"},
            "7": "object member named 7",
            "nothing": null
        })
    }

    #[test]
    fn parse() {
        #[track_caller]
        fn check(text: &str, expected: Result<&[&str], &str>) {
            let actual = text.parse::<JsonPointer>();
            match (actual, expected) {
                (Ok(parsed), Ok(tokens)) => {
                    assert_eq!(parsed.tokens().collect::<Vec<_>>(), tokens, "{text:?}");
                    assert_eq!(parsed.as_str(), text);
                    assert_eq!(parsed.to_string(), text);
                }
                (Err(error), Err(message)) => assert_eq!(error.to_string(), message),
                (actual, expected) => panic!("{text:?}: got {actual:?}, expected {expected:?}"),
            }
        }
        check("/id", Ok(&["id"]));
        check("/data/object/id", Ok(&["data", "object", "id"]));
        check("/items/0/id", Ok(&["items", "0", "id"]));
        check("/", Ok(&[""]));
        check("//", Ok(&["", ""]));
        check("/a~1b", Ok(&["a/b"]));
        check("/m~0n", Ok(&["m~n"]));
        // `~01` is `~0` then `1`, never `~` then `~1`.
        check("/~01", Ok(&["~1"]));
        check("/~10", Ok(&["/0"]));
        check("/ünï cødé", Ok(&["ünï cødé"]));
        check(
            "abc",
            Err(r#""abc" is not a JSON pointer: it must start with "/""#),
        );
        check(
            "",
            Err(r#""" is not a JSON pointer: it must start with "/""#),
        );
        check(
            "#/id",
            Err(r##""#/id" is not a JSON pointer: it must start with "/""##),
        );
        check(
            "/a~2",
            Err(r#""/a~2" is not a JSON pointer: "~" must be followed by "0" or "1""#),
        );
        check(
            "/a~",
            Err(r#""/a~" is not a JSON pointer: "~" must be followed by "0" or "1""#),
        );
        check(
            "/ok/~/x",
            Err(r#""/ok/~/x" is not a JSON pointer: "~" must be followed by "0" or "1""#),
        );
    }

    #[test]
    fn get() {
        #[track_caller]
        fn check(text: &str, expected: Option<Value>) {
            let document = sample();
            assert_eq!(pointer(text).get(&document), expected.as_ref(), "{text:?}");
        }
        check("/id", Some(json!("evt_1")));
        check("/data/object/id", Some(json!("obj_9")));
        check("/data/object/amount", Some(json!(1200)));
        check("/data/object", Some(json!({"id": "obj_9", "amount": 1200})));
        check("/items/0/id", Some(json!("a")));
        check("/items/1/id", Some(json!("b")));
        check("/a~1b", Some(json!(1)));
        check("/m~0n", Some(json!(2)));
        check("/~01", Some(json!(3)));
        check("/", Some(json!({"": "empty keys"})));
        check("//", Some(json!("empty keys")));
        check("/7", Some(json!("object member named 7")));
        check("/nothing", Some(Value::Null));
        // Missing paths.
        check("/missing", None);
        check("/data/missing/id", None);
        check("/items/2/id", None);
        check("/id/0", None);
        check("/data/object/amount/x", None);
        // Array tokens must be canonical indices.
        check("/items/01/id", None);
        check("/items/-", None);
        check("/items/+1/id", None);
        check("/items/ 1/id", None);
        check("/items/id", None);
        check("/items/99999999999999999999999/id", None);
    }

    #[test]
    fn remove() {
        #[track_caller]
        fn check(text: &str, removed: Option<Value>, rest: Value) {
            let mut document = json!({"a": {"b": 1, "c": [10, 20, 30]}, "x/y": true});
            assert_eq!(pointer(text).remove(&mut document), removed, "{text:?}");
            assert_eq!(document, rest, "{text:?}");
        }
        check(
            "/a/b",
            Some(json!(1)),
            json!({"a": {"c": [10, 20, 30]}, "x/y": true}),
        );
        check(
            "/a/c/1",
            Some(json!(20)),
            json!({"a": {"b": 1, "c": [10, 30]}, "x/y": true}),
        );
        check(
            "/a",
            Some(json!({"b": 1, "c": [10, 20, 30]})),
            json!({"x/y": true}),
        );
        check(
            "/x~1y",
            Some(json!(true)),
            json!({"a": {"b": 1, "c": [10, 20, 30]}}),
        );
        let untouched = json!({"a": {"b": 1, "c": [10, 20, 30]}, "x/y": true});
        check("/a/c/3", None, untouched.clone());
        check("/a/c/01", None, untouched.clone());
        check("/a/c/-", None, untouched.clone());
        check("/a/b/c", None, untouched.clone());
        check("/missing/b", None, untouched.clone());
        check("/a/missing", None, untouched);
    }

    #[test]
    fn get_mut_allows_replacing() {
        let mut document = sample();
        if let Some(slot) = pointer("/items/1/id").get_mut(&mut document) {
            *slot = json!("changed");
        }
        assert_eq!(
            pointer("/items/1/id").get(&document),
            Some(&json!("changed"))
        );
        assert!(pointer("/items/-").get_mut(&mut document).is_none());
    }

    #[test]
    fn serde_round_trip_and_config_errors() {
        let parsed: JsonPointer = serde_json::from_value(json!("/a~1b/0")).expect("valid");
        assert_eq!(parsed, pointer("/a~1b/0"));
        assert_eq!(serde_json::to_value(&parsed).ok(), Some(json!("/a~1b/0")));
        assert_eq!(format!("{parsed:?}"), r#""/a~1b/0""#);

        let error = serde_json::from_value::<JsonPointer>(json!("id")).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            r#""id" is not a JSON pointer: it must start with "/""#
        );
    }
}
