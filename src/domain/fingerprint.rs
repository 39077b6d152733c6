//! Request-body fingerprints: RFC 8785 (JCS) canonical JSON and the SHA-256
//! over it, so that two deliveries of the same event hash alike whatever the
//! sender's member order, whitespace or number spelling, minus the members a
//! source declares volatile (`fingerprint_ignore`).
//!
//! Fingerprints are computed on every request, so the canonical form is
//! streamed straight into the hasher and never materialised, ignored members
//! are skipped while writing instead of cloning the body, and the walk uses an
//! explicit stack so that no value, however deep, can exhaust the call stack.

use std::fmt;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use super::form::FormFields;
use super::pointer::{JsonPointer, array_index};

/// SHA-256 of a request body; shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Appends the RFC 8785 canonical form of `value` to `out`.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    write_canonical(value, None, out);
}

pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out);
    out
}

/// The exact bytes [`fingerprint_json`] hashes; useful to explain why two
/// bodies fingerprint differently.
pub fn canonical_json_ignoring(value: &Value, ignore: &[JsonPointer]) -> Vec<u8> {
    let mut out = Vec::new();
    let tree = IgnoreNode::build(ignore);
    write_canonical(value, tree.as_ref(), &mut out);
    out
}

/// SHA-256 over the canonical form of `value` with the `ignore` pointers removed.
///
/// Every pointer is resolved against the original body, so the order of
/// `ignore` does not matter: `/items/0` and `/items/1` drop the first two
/// elements (removing one after the other would shift indices). Pointers that
/// name nothing in this body are skipped.
pub fn fingerprint_json(value: &Value, ignore: &[JsonPointer]) -> Fingerprint {
    let tree = IgnoreNode::build(ignore);
    let mut sink = HashingSink::new();
    write_canonical(value, tree.as_ref(), &mut sink);
    sink.finish()
}

/// Fingerprint of a body that is not JSON: its raw bytes.
pub fn fingerprint_bytes(body: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(body).into())
}

/// Fingerprint of an `application/x-www-form-urlencoded` body: SHA-256 over the canonical JSON
/// of its decoded fields as `[[name, value], …]`, sorted by name then value. Field order and
/// encoding do not matter (`a=1&b=x+y` and `b=x%20y&a=1` hash alike); a repeated field counts
/// each time. A field is left out when `ignore` holds the one-token pointer of its name
/// (`/Timestamp`); longer pointers name nothing in a form.
pub fn fingerprint_form(form: &FormFields, ignore: &[JsonPointer]) -> Fingerprint {
    let mut sink = HashingSink::new();
    write_form(form, ignore, &mut sink);
    sink.finish()
}

/// The exact bytes [`fingerprint_form`] hashes.
pub fn canonical_form(form: &FormFields, ignore: &[JsonPointer]) -> Vec<u8> {
    let mut out = Vec::new();
    write_form(form, ignore, &mut out);
    out
}

fn write_form<S: Sink>(form: &FormFields, ignore: &[JsonPointer], sink: &mut S) {
    let ignored = |name: &str| {
        ignore.iter().any(|pointer| {
            let mut tokens = pointer.tokens();
            tokens.next() == Some(name) && tokens.next().is_none()
        })
    };
    sink.put(b"[");
    let kept = form.sorted().into_iter().filter(|(name, _)| !ignored(name));
    for (index, (name, value)) in kept.enumerate() {
        sink.put(if index == 0 { b"[" } else { b",[" });
        write_string(name, sink);
        sink.put(b",");
        write_string(value, sink);
        sink.put(b"]");
    }
    sink.put(b"]");
}

/// Where canonical output goes: a byte vector for callers that want the
/// text, a hasher for fingerprints.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

const HASH_BUFFER_LEN: usize = 1024;

/// Canonical JSON arrives in many tiny pieces (`"`, `:`, short keys); batching
/// them keeps the per-call overhead of `Sha256::update` off the hot path.
struct HashingSink {
    hasher: Sha256,
    buffer: [u8; HASH_BUFFER_LEN],
    filled: usize,
}

impl HashingSink {
    fn new() -> Self {
        HashingSink {
            hasher: Sha256::new(),
            buffer: [0; HASH_BUFFER_LEN],
            filled: 0,
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buffer[..self.filled]);
        self.filled = 0;
    }

    fn finish(mut self) -> Fingerprint {
        self.flush();
        Fingerprint(self.hasher.finalize().into())
    }
}

impl Sink for HashingSink {
    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() > HASH_BUFFER_LEN - self.filled {
            self.flush();
            if bytes.len() >= HASH_BUFFER_LEN {
                self.hasher.update(bytes);
                return;
            }
        }
        let end = self.filled + bytes.len();
        self.buffer[self.filled..end].copy_from_slice(bytes);
        self.filled = end;
    }
}

/// The ignore pointers merged into a tree, so the writer can tell at each
/// member or element whether to skip it, descend with a narrower tree, or
/// stop checking altogether.
#[derive(Default)]
struct IgnoreNode<'p> {
    removed: bool,
    children: Vec<IgnoreChild<'p>>,
}

struct IgnoreChild<'p> {
    token: &'p str,
    /// The token read as an array index, parsed once rather than per element.
    index: Option<usize>,
    node: IgnoreNode<'p>,
}

impl<'p> IgnoreNode<'p> {
    fn build(pointers: &'p [JsonPointer]) -> Option<Self> {
        if pointers.is_empty() {
            return None;
        }
        let mut root = IgnoreNode::default();
        for pointer in pointers {
            let mut node = &mut root;
            for token in pointer.tokens() {
                node = node.child_or_insert(token);
            }
            node.removed = true;
        }
        Some(root)
    }

    fn child_or_insert(&mut self, token: &'p str) -> &mut IgnoreNode<'p> {
        let position = match self.children.iter().position(|child| child.token == token) {
            Some(position) => position,
            None => {
                self.children.push(IgnoreChild {
                    token,
                    index: array_index(token),
                    node: IgnoreNode::default(),
                });
                self.children.len() - 1
            }
        };
        &mut self.children[position].node
    }

    fn member(&self, key: &str) -> Option<&IgnoreNode<'p>> {
        self.children
            .iter()
            .find(|child| child.token == key)
            .map(|child| &child.node)
    }

    fn element(&self, index: usize) -> Option<&IgnoreNode<'p>> {
        self.children
            .iter()
            .find(|child| child.index == Some(index))
            .map(|child| &child.node)
    }
}

/// An array or object whose opening bracket has been written and whose
/// children are still being written.
struct Frame<'v, 'i> {
    children: Children<'v>,
    ignore: Option<&'i IgnoreNode<'i>>,
    next_index: usize,
    wrote_child: bool,
    close: &'static [u8],
}

enum Children<'v> {
    Elements(std::slice::Iter<'v, Value>),
    Members(serde_json::map::Iter<'v>),
    ResortedMembers(std::vec::IntoIter<(&'v String, &'v Value)>),
}

impl<'v, 'i> Frame<'v, 'i> {
    /// The next child that is not ignored, with its member name (objects
    /// only) and the part of the ignore tree below it.
    fn next_child(&mut self) -> Option<(Option<&'v str>, &'v Value, Option<&'i IgnoreNode<'i>>)> {
        loop {
            let (key, value) = match &mut self.children {
                Children::Elements(elements) => (None, elements.next()?),
                Children::Members(members) => {
                    let (key, value) = members.next()?;
                    (Some(key.as_str()), value)
                }
                Children::ResortedMembers(members) => {
                    let (key, value) = members.next()?;
                    (Some(key.as_str()), value)
                }
            };
            let index = self.next_index;
            self.next_index += 1;
            let ignore = self.ignore.and_then(|node| match key {
                Some(key) => node.member(key),
                None => node.element(index),
            });
            if ignore.is_some_and(|node| node.removed) {
                continue;
            }
            return Some((key, value, ignore));
        }
    }
}

fn write_canonical<S: Sink>(root: &Value, ignore: Option<&IgnoreNode<'_>>, sink: &mut S) {
    let mut stack = Vec::new();
    open_value(root, ignore, sink, &mut stack);
    while let Some(frame) = stack.last_mut() {
        match frame.next_child() {
            Some((key, value, ignore)) => {
                if frame.wrote_child {
                    sink.put(b",");
                }
                frame.wrote_child = true;
                if let Some(key) = key {
                    write_string(key, sink);
                    sink.put(b":");
                }
                open_value(value, ignore, sink, &mut stack);
            }
            None => {
                sink.put(frame.close);
                stack.pop();
            }
        }
    }
}

/// Writes a scalar completely, or the opening bracket of a container and
/// pushes the frame that will write its children.
fn open_value<'v, 'i, S: Sink>(
    value: &'v Value,
    ignore: Option<&'i IgnoreNode<'i>>,
    sink: &mut S,
    stack: &mut Vec<Frame<'v, 'i>>,
) {
    let (children, close) = match value {
        Value::Null => return sink.put(b"null"),
        Value::Bool(true) => return sink.put(b"true"),
        Value::Bool(false) => return sink.put(b"false"),
        Value::Number(number) => return write_number(number, sink),
        Value::String(text) => return write_string(text, sink),
        Value::Array(elements) => {
            sink.put(b"[");
            (Children::Elements(elements.iter()), b"]")
        }
        Value::Object(members) => {
            sink.put(b"{");
            (object_members(members), b"}")
        }
    };
    stack.push(Frame {
        children,
        ignore,
        next_index: 0,
        wrote_child: false,
        close,
    });
}

/// RFC 8785 orders members by UTF-16 code units. serde_json's map iterates
/// in UTF-8 byte (code point) order, which agrees except that UTF-16 puts
/// supplementary-plane characters (surrogates, 0xD800..) before
/// U+E000..U+FFFF. Only an object holding both kinds needs re-sorting.
fn object_members(members: &Map<String, Value>) -> Children<'_> {
    if !needs_utf16_resort(members) {
        return Children::Members(members.iter());
    }
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    Children::ResortedMembers(sorted.into_iter())
}

fn needs_utf16_resort(members: &Map<String, Value>) -> bool {
    // UTF-8 lead bytes: 0xEE/0xEF start U+E000..U+FFFF, 0xF0.. start U+10000...
    let mut high_bmp = false;
    let mut supplementary = false;
    for key in members.keys() {
        if key.is_ascii() {
            continue;
        }
        for &byte in key.as_bytes() {
            if byte >= 0xF0 {
                supplementary = true;
            } else if byte >= 0xEE {
                high_bmp = true;
            }
        }
        if high_bmp && supplementary {
            return true;
        }
    }
    false
}

/// Largest magnitude below which every integer is exactly a double, so its
/// decimal digits are already the ECMAScript form.
const EXACT_INTEGER_LIMIT: u64 = 1 << 53;

/// RFC 8785 numbers are IEEE 754 doubles printed as ECMAScript's
/// `Number.prototype.toString` would, so integers beyond 2^53 are rounded
/// to the nearest double first, just as a JavaScript receiver would see them.
fn write_number<S: Sink>(number: &Number, sink: &mut S) {
    if let Some(integer) = number.as_i64()
        && integer.unsigned_abs() <= EXACT_INTEGER_LIMIT
    {
        return write_integer(integer, sink);
    }
    match number.as_f64() {
        Some(double) => sink.put(ryu_js::Buffer::new().format(double).as_bytes()),
        // Unreachable without serde_json's arbitrary_precision; keep the
        // number's own text rather than panic if that feature is ever on.
        None => sink.put(number.to_string().as_bytes()),
    }
}

fn write_integer<S: Sink>(integer: i64, sink: &mut S) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = integer.unsigned_abs();
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if integer < 0 {
        sink.put(b"-");
    }
    sink.put(&digits[start..]);
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Bytes RFC 8785 escapes: C0 controls, `"` and `\`. A table keeps the scan
/// over ordinary text to one load and branch per byte.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// RFC 8785 §3.2.2.2: only `"`, `\` and C0 controls are escaped, with the
/// short forms where JSON has them; everything else (DEL, U+2028, `/`,
/// non-ASCII) is written as is.
fn write_string<S: Sink>(text: &str, sink: &mut S) {
    sink.put(b"\"");
    let bytes = text.as_bytes();
    let mut unescaped_from = 0;
    let mut control_escape = *b"\\u0000";
    for (position, &byte) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(byte)] {
            continue;
        }
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0C => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1F => {
                control_escape[4] = HEX_DIGITS[usize::from(byte >> 4)];
                control_escape[5] = HEX_DIGITS[usize::from(byte & 0x0F)];
                &control_escape
            }
            _ => continue,
        };
        sink.put(&bytes[unescaped_from..position]);
        sink.put(escape);
        unescaped_from = position + 1;
    }
    sink.put(&bytes[unescaped_from..]);
    sink.put(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[track_caller]
    fn canonical_text(value: &Value) -> String {
        String::from_utf8(canonical_json(value)).expect("canonical JSON is UTF-8")
    }

    fn pointers(texts: &[&str]) -> Vec<JsonPointer> {
        texts
            .iter()
            .map(|text| text.parse().expect("valid pointer"))
            .collect()
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        #[track_caller]
        fn check(bits: u64, expected: &str) {
            let number = Number::from_f64(f64::from_bits(bits)).expect("finite");
            assert_eq!(
                canonical_text(&Value::Number(number)),
                expected,
                "{bits:016x}"
            );
        }
        check(0x0000000000000000, "0");
        check(0x8000000000000000, "0");
        check(0x0000000000000001, "5e-324");
        check(0x8000000000000001, "-5e-324");
        check(0x7fefffffffffffff, "1.7976931348623157e+308");
        check(0xffefffffffffffff, "-1.7976931348623157e+308");
        check(0x4340000000000000, "9007199254740992");
        check(0xc340000000000000, "-9007199254740992");
        check(0x4430000000000000, "295147905179352830000");
        check(0x44b52d02c7e14af5, "9.999999999999997e+22");
        check(0x44b52d02c7e14af6, "1e+23");
        check(0x44b52d02c7e14af7, "1.0000000000000001e+23");
        check(0x444b1ae4d6e2ef4e, "999999999999999700000");
        check(0x444b1ae4d6e2ef4f, "999999999999999900000");
        check(0x444b1ae4d6e2ef50, "1e+21");
        check(0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7");
        check(0x3eb0c6f7a0b5ed8d, "0.000001");
        check(0x41b3de4355555553, "333333333.3333332");
        check(0x41b3de4355555554, "333333333.33333325");
        check(0x41b3de4355555555, "333333333.3333333");
        check(0x41b3de4355555556, "333333333.3333334");
        check(0x41b3de4355555557, "333333333.33333343");
        check(0xbecbf647612f3696, "-0.0000033333333333333333");
        check(0x43143ff3c1cb0959, "1424953923781206.2");
        // Sample lines of the JCS reference es6testfile.
        check(0x4340000000000001, "9007199254740994");
        check(0x4340000000000002, "9007199254740996");
    }

    /// Number spellings as senders write them, through serde_json's parser.
    #[test]
    fn number_spellings() {
        #[track_caller]
        fn check(json_text: &str, expected: &str) {
            let value: Value = serde_json::from_str(json_text).expect("valid JSON");
            assert_eq!(canonical_text(&value), expected, "{json_text}");
        }
        check("1e30", "1e+30");
        check("1E30", "1e+30");
        check("4.50", "4.5");
        check("2e-3", "0.002");
        check("0.000001", "0.000001");
        check("1e-7", "1e-7");
        check("0.000000000000000000000000001", "1e-27");
        check("-0", "0");
        check("-0.0", "0");
        check("0", "0");
        check("1.0", "1");
        check("100", "100");
        check("1e2", "100");
        check("-17", "-17");
        check("1e21", "1e+21");
        check("1e20", "100000000000000000000");
        check("123456789012345678901234567890", "1.2345678901234568e+29");
        // Integers are doubles in JCS: 2^53 + 1 rounds (ties to even) to 2^53.
        check("9007199254740993", "9007199254740992");
        check("-9007199254740993", "-9007199254740992");
        check("9007199254740992", "9007199254740992");
        check("9007199254740995", "9007199254740996");
        check("18446744073709551615", "18446744073709552000");
        check("-9223372036854775808", "-9223372036854776000");
        check("333333333.33333329", "333333333.3333333");
        check("[1, 1.0, 1e0, 10e-1]", "[1,1,1,1]");
        // serde_json's default float parser can be one ULP off for such
        // inputs, which would make equal numbers fingerprint differently;
        // these fail unless its `float_roundtrip` feature is enabled.
        check("3.0537185325120974e-306", "3.0537185325120974e-306");
        check("-3.925226259257969e-18", "-3.925226259257969e-18");
    }

    #[test]
    fn string_escaping() {
        #[track_caller]
        fn check(raw: &str, expected: &str) {
            assert_eq!(canonical_text(&json!(raw)), expected, "{raw:?}");
        }
        check("", r#""""#);
        check("plain", r#""plain""#);
        check("\"", r#""\"""#);
        check("\\", r#""\\""#);
        check("\u{8}\t\n\u{c}\r", r#""\b\t\n\f\r""#);
        check("\u{0}", r#""\u0000""#);
        check("\u{1}\u{f}\u{1f}", r#""\u0001\u000f\u001f""#);
        check("\u{b}", r#""\u000b""#);
        check("\u{1a}\u{1b}", r#""\u001a\u001b""#);
        // Everything else is literal: DEL, C1, line/paragraph separators,
        // solidus, non-ASCII and supplementary characters.
        check("\u{7f}\u{80}\u{9f}", "\"\u{7f}\u{80}\u{9f}\"");
        check("\u{2028}\u{2029}", "\"\u{2028}\u{2029}\"");
        check("a/b</script>", "\"a/b</script>\"");
        check("€ ö 😂 \u{fb33}", "\"€ ö 😂 \u{fb33}\"");
        check("x\"y\\z\nw", r#""x\"y\\z\nw""#);
    }

    /// The JCS reference test data (input → expected output files).
    #[test]
    fn jcs_reference_documents() {
        #[track_caller]
        fn check(input: &str, expected: &str) {
            let value: Value = serde_json::from_str(input).expect("valid JSON");
            assert_eq!(canonical_text(&value), expected);
        }
        // testdata/{input,output}/values.json
        check(
            r#"{
  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#,
            r#"{"escaping":"€$\u000f\nA'B\"\\\\\"/","literals":[null,true,false],"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}"#,
        );
        // testdata/{input,output}/weird.json: the RFC 8785 §3.2.3 sorting example.
        check(
            r#"{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"#,
            "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\
             \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
             \"😂\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
        );
        // testdata/{input,output}/structures.json
        check(
            r#"{
  "1": {"f": {"f": "hi","F": 5} ,"\n": 56.0},
  "10": { },
  "": "empty",
  "a": { },
  "111": [ { } ],
  "A": { }
}"#,
            r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}"#,
        );
        // testdata/{input,output}/arrays.json
        check(
            r#"[
  56,
  {
    "d": true,
    "10": null,
    "1": [ ]
  }
]"#,
            r#"[56,{"1":[],"10":null,"d":true}]"#,
        );
        // testdata/{input,output}/unicode.json: no Unicode normalisation.
        check(
            r#"{"Unnormalized Unicode":"\u1e0d\u0307"}"#,
            "{\"Unnormalized Unicode\":\"\u{1e0d}\u{307}\"}",
        );
        // testdata/{input,output}/french.json: code units, not locale.
        check(
            r#"{"peach": "This sorting order", "péché": "is wrong according to French",
                "pêche": "but canonicalization MUST", "sin": "ingnore locale"}"#,
            r#"{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}"#,
        );
    }

    #[test]
    fn member_order_is_utf16() {
        #[track_caller]
        fn check(keys: &[&str], expected_order: &[&str]) {
            let object: Map<String, Value> = keys
                .iter()
                .map(|key| (key.to_string(), Value::Null))
                .collect();
            let expected = format!(
                "{{{}}}",
                expected_order
                    .iter()
                    .map(|key| format!("{}:null", canonical_text(&json!(key))))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            assert_eq!(canonical_text(&Value::Object(object)), expected, "{keys:?}");
        }
        // Supplementary characters (surrogates) sort before U+E000..U+FFFF.
        check(&["\u{e000}", "\u{10000}"], &["\u{10000}", "\u{e000}"]);
        check(&["\u{ffff}", "😂", "a"], &["a", "😂", "\u{ffff}"]);
        check(&["\u{fb33}", "😂", "€"], &["€", "😂", "\u{fb33}"]);
        // A shared prefix still compares at the first differing unit.
        check(
            &["x\u{ff01}", "x\u{1f600}", "x"],
            &["x", "x\u{1f600}", "x\u{ff01}"],
        );
        // Without both kinds present UTF-8 order already is UTF-16 order.
        check(&["b", "a", "\u{d7ff}", "😂"], &["a", "b", "\u{d7ff}", "😂"]);
        check(
            &["\u{ffff}", "\u{e000}", "z"],
            &["z", "\u{e000}", "\u{ffff}"],
        );
        check(
            &["B", "a", "A", "", "10", "1"],
            &["", "1", "10", "A", "B", "a"],
        );
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let depth = 100_000;
        let mut value = json!(1);
        for _ in 0..depth {
            value = Value::Array(vec![value]);
        }
        let text = canonical_json(&value);
        assert_eq!(text.len(), 2 * depth + 1);
        assert_eq!(
            fingerprint_json(&value, &[]),
            fingerprint_bytes(&text),
            "streamed hash equals hash of the text"
        );
        // serde_json drops nested values recursively; unwind by hand.
        while let Value::Array(mut inner) = value {
            value = inner.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn fingerprint_is_sha256_of_canonical_text() {
        assert_eq!(
            fingerprint_bytes(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let value = json!({"b": [1, 2.5, "x"], "a": {"c": null}});
        assert_eq!(
            fingerprint_json(&value, &[]),
            fingerprint_bytes(br#"{"a":{"c":null},"b":[1,2.5,"x"]}"#)
        );
        // Larger than the hashing buffer, in both small and large pieces.
        let long = "é".repeat(3000);
        let value = json!({"long": long, "list": vec![long.clone(); 3], "n": 7});
        assert_eq!(
            fingerprint_json(&value, &[]),
            fingerprint_bytes(&canonical_json(&value))
        );
        let fingerprint = fingerprint_bytes(b"");
        assert_eq!(
            format!("{fingerprint:?}"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(fingerprint.to_hex(), fingerprint.to_string());
    }

    #[test]
    fn form_fingerprints_hash_the_sorted_decoded_fields() {
        let form = |body: &[u8]| FormFields::parse(body);
        let text = |body: &[u8], ignore: &[&str]| {
            String::from_utf8(canonical_form(&form(body), &pointers(ignore))).expect("UTF-8")
        };
        assert_eq!(
            text(b"b=x+y&a=1&a=0", &[]),
            r#"[["a","0"],["a","1"],["b","x y"]]"#
        );
        assert_eq!(text(b"", &[]), "[]");
        assert_eq!(text(b"q=%22%5C%0A", &[]), r#"[["q","\"\\\n"]]"#);
        assert_eq!(
            text(
                b"Body=hi&Timestamp=1&Nested=2",
                &["/Timestamp", "/Nested/x", "/Body/0"]
            ),
            r#"[["Body","hi"],["Nested","2"]]"#
        );
        // Order and encoding do not matter; values, repeats and names do.
        let base = fingerprint_form(&form(b"a=1&b=x+y"), &[]);
        assert_eq!(fingerprint_form(&form(b"b=x%20y&a=1"), &[]), base);
        assert_eq!(fingerprint_form(&form(b"a=%31&&b=x+y&"), &[]), base);
        for other in [&b"a=1&b=x+z"[..], b"a=1&b=x+y&a=1", b"A=1&b=x+y", b"a=1"] {
            assert_ne!(fingerprint_form(&form(other), &[]), base, "{other:?}");
        }
        // The hash is exactly the hash of the canonical text.
        let body = b"MessageSid=SM1&Body=caf%C3%A9";
        assert_eq!(
            fingerprint_form(&form(body), &[]),
            fingerprint_bytes(text(body, &[]).as_bytes())
        );
    }

    #[test]
    fn ignored_pointers_are_left_out() {
        #[track_caller]
        fn check(document: Value, ignore: &[&str], expected: &str) {
            let ignore = pointers(ignore);
            let text = canonical_json_ignoring(&document, &ignore);
            assert_eq!(String::from_utf8_lossy(&text), expected, "{ignore:?}");
            assert_eq!(
                fingerprint_json(&document, &ignore),
                fingerprint_bytes(&text)
            );
        }
        let document = json!({
            "id": "evt_1",
            "created": 1700000000,
            "meta": {"sent_at": "now", "attempt": 3, "trace": {"id": "t"}},
            "items": [{"id": "a", "ts": 1}, {"id": "b", "ts": 2}, {"id": "c", "ts": 3}],
            "a/b": 1,
            "m~n": 2
        });
        check(
            document.clone(),
            &["/created", "/meta/sent_at"],
            r#"{"a/b":1,"id":"evt_1","items":[{"id":"a","ts":1},{"id":"b","ts":2},{"id":"c","ts":3}],"meta":{"attempt":3,"trace":{"id":"t"}},"m~n":2}"#,
        );
        check(
            document.clone(),
            &["/meta", "/meta/attempt", "/items", "/a~1b", "/m~0n"],
            r#"{"created":1700000000,"id":"evt_1"}"#,
        );
        // Indices refer to the original array, whatever the pointer order.
        check(
            document.clone(),
            &["/items/1", "/items/0", "/items/2/ts"],
            r#"{"a/b":1,"created":1700000000,"id":"evt_1","items":[{"id":"c"}],"meta":{"attempt":3,"sent_at":"now","trace":{"id":"t"}},"m~n":2}"#,
        );
        // Pointers that name nothing here change nothing.
        let unchanged = canonical_text(&document);
        check(
            document.clone(),
            &[
                "/missing",
                "/id/x",
                "/items/3",
                "/items/01",
                "/items/-",
                "/meta/trace/id/deeper",
            ],
            &unchanged,
        );
        // Every member of an object ignored leaves an empty object.
        check(json!({"o": {"x": 1}}), &["/o/x"], r#"{"o":{}}"#);
        check(json!([0, {"k": 1}]), &["/1/k", "/0"], r#"[{}]"#);
        // An object member named like an index is still a member.
        check(json!({"0": "zero", "1": "one"}), &["/0"], r#"{"1":"one"}"#);
    }

    #[test]
    fn skipping_matches_removing_from_a_copy() {
        let document = json!({"a": {"b": [1, {"c": 2, "d": 3}], "e": 4}, "f": 5});
        let ignore = pointers(&["/a/b/1/c", "/f", "/a/e"]);
        let mut copy = document.clone();
        for pointer in &ignore {
            pointer.remove(&mut copy);
        }
        assert_eq!(
            fingerprint_json(&document, &ignore),
            fingerprint_json(&copy, &[])
        );
    }

    // ---- property tests -------------------------------------------------

    fn arbitrary_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", Number::from_f64)
                .prop_map(Value::Number),
            "[a-z0-9 \"\\\\/\u{0}-\u{1f}\u{7f}é€😂\u{e000}\u{ffff}]{0,8}".prop_map(Value::String),
        ]
    }

    fn arbitrary_key() -> impl Strategy<Value = String> {
        "[a-d0-2~/é😂\u{e000}\u{ffff}]{0,3}"
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        arbitrary_scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(arbitrary_key(), inner, 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn arbitrary_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(arbitrary_key(), arbitrary_json(), 1..8)
            .prop_map(|members| Value::Object(members.into_iter().collect()))
    }

    /// Writes `value` as JSON text with members in a seed-dependent order and
    /// seed-dependent whitespace.
    fn write_shuffled(value: &Value, seed: &mut u64, out: &mut String) {
        fn next(seed: &mut u64) -> u64 {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        }
        fn space(seed: &mut u64, out: &mut String) {
            out.push_str(["", " ", "\n  ", "\t", "\r\n"][(next(seed) % 5) as usize]);
        }
        match value {
            Value::Array(elements) => {
                out.push('[');
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    space(seed, out);
                    write_shuffled(element, seed, out);
                    space(seed, out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                let mut members: Vec<_> = members.iter().collect();
                for end in (1..members.len()).rev() {
                    members.swap(end, (next(seed) % (end as u64 + 1)) as usize);
                }
                out.push('{');
                for (index, (key, member)) in members.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    space(seed, out);
                    out.push_str(&serde_json::to_string(key).expect("string"));
                    space(seed, out);
                    out.push(':');
                    space(seed, out);
                    write_shuffled(member, seed, out);
                }
                space(seed, out);
                out.push('}');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).expect("scalar")),
        }
    }

    /// Pointers to every scalar and empty container in `value`.
    fn leaf_pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
        let escape = |token: &str| token.replace('~', "~0").replace('/', "~1");
        match value {
            Value::Array(elements) if !elements.is_empty() => {
                for (index, element) in elements.iter().enumerate() {
                    leaf_pointers(element, format!("{prefix}/{index}"), out);
                }
            }
            Value::Object(members) if !members.is_empty() => {
                for (key, member) in members {
                    leaf_pointers(member, format!("{prefix}/{}", escape(key)), out);
                }
            }
            _ => out.push(prefix),
        }
    }

    fn changed(value: &Value) -> Value {
        if value == &json!("changed") {
            json!("changed again")
        } else {
            json!("changed")
        }
    }

    proptest! {
        #[test]
        fn member_order_and_whitespace_never_matter(value in arbitrary_object(), seed in 1u64..) {
            let compact: Value = serde_json::from_str(&serde_json::to_string(&value)?)?;
            let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&value)?)?;
            let mut shuffled_text = String::new();
            write_shuffled(&value, &mut seed.clone(), &mut shuffled_text);
            let shuffled: Value = serde_json::from_str(&shuffled_text)?;
            let expected = fingerprint_json(&value, &[]);
            prop_assert_eq!(fingerprint_json(&compact, &[]), expected);
            prop_assert_eq!(fingerprint_json(&pretty, &[]), expected);
            prop_assert_eq!(fingerprint_json(&shuffled, &[]), expected);
            prop_assert_eq!(fingerprint_bytes(&canonical_json(&value)), expected);
        }

        #[test]
        fn canonical_text_is_json_that_reproduces_itself(value in arbitrary_json()) {
            let text = canonical_json(&value);
            let reparsed: Value = serde_json::from_slice(&text)?;
            prop_assert_eq!(canonical_json(&reparsed), text);
        }

        #[test]
        fn values_at_ignored_pointers_never_matter(
            value in arbitrary_object(),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
            extra_key in arbitrary_key(),
            replacement in arbitrary_json(),
        ) {
            let mut leaves = Vec::new();
            leaf_pointers(&value, String::new(), &mut leaves);
            let mut ignore_texts: Vec<String> =
                picks.iter().map(|pick| pick.get(&leaves).clone()).collect();
            let escaped_extra = extra_key.replace('~', "~0").replace('/', "~1");
            ignore_texts.push(format!("/{escaped_extra}"));
            let ignore: Vec<JsonPointer> = ignore_texts
                .iter()
                .map(|text| text.parse())
                .collect::<Result<_, _>>()?;
            let expected = fingerprint_json(&value, &ignore);

            let mut modified = value.clone();
            for pointer in &ignore[..ignore.len() - 1] {
                if let Some(slot) = pointer.get_mut(&mut modified) {
                    *slot = replacement.clone();
                }
            }
            // Adds the member when absent, replaces it otherwise.
            if let Value::Object(members) = &mut modified {
                members.insert(extra_key.clone(), replacement.clone());
            }
            prop_assert_eq!(fingerprint_json(&modified, &ignore), expected);

            let mut removed = value.clone();
            for pointer in &ignore {
                if ignore.iter().any(|other| other != pointer && is_prefix(other, pointer)) {
                    continue;
                }
                pointer.remove(&mut removed);
            }
            if ignore.iter().all(|pointer| pointer.tokens().all(|token| array_index(token).is_none())) {
                prop_assert_eq!(fingerprint_json(&removed, &[]), expected);
            }
        }

        #[test]
        fn non_ignored_leaf_changes_always_matter(
            value in arbitrary_object(),
            ignore_pick in any::<prop::sample::Index>(),
            change_pick in any::<prop::sample::Index>(),
        ) {
            let mut leaves = Vec::new();
            leaf_pointers(&value, String::new(), &mut leaves);
            let ignored: JsonPointer = ignore_pick.get(&leaves).parse()?;
            let candidates: Vec<JsonPointer> = leaves
                .iter()
                .map(|text| text.parse())
                .collect::<Result<Vec<JsonPointer>, _>>()?
                .into_iter()
                .filter(|leaf| !is_prefix(&ignored, leaf))
                .collect();
            prop_assume!(!candidates.is_empty());
            let target = change_pick.get(&candidates);
            let ignore = [ignored];
            let before = fingerprint_json(&value, &ignore);
            let mut modified = value.clone();
            if let Some(slot) = target.get_mut(&mut modified) {
                *slot = changed(slot);
            }
            prop_assert_ne!(fingerprint_json(&modified, &ignore), before);
            prop_assert_ne!(fingerprint_json(&modified, &[]), fingerprint_json(&value, &[]));
        }
    }

    fn is_prefix(prefix: &JsonPointer, pointer: &JsonPointer) -> bool {
        prefix.tokens().len() <= pointer.tokens().len()
            && prefix.tokens().zip(pointer.tokens()).all(|(a, b)| a == b)
    }
}
