//! `application/x-www-form-urlencoded` bodies (Twilio's, Slack's slash commands): the fields
//! decoded once, for `form:NAME` key parts, form fingerprints and the Twilio signature, which
//! all read the decoded names and values rather than the bytes on the wire.

/// The fields of a form body, decoded, in the order they were sent. A name may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormFields {
    pairs: Vec<(String, String)>,
}

impl FormFields {
    /// Decodes a body as the URL standard's `application/x-www-form-urlencoded` parser does
    /// (and so every provider's and browser's): fields split at `&`, empty ones skipped, name
    /// and value split at the first `=` (a field without one has an empty value), `+` read as
    /// a space, then `%XX` escapes decoded. Never fails: a malformed escape stays as written and
    /// bytes that are not UTF-8 become U+FFFD, so any body has exactly one reading.
    pub fn parse(body: &[u8]) -> FormFields {
        let pairs = body
            .split(|&byte| byte == b'&')
            .filter(|field| !field.is_empty())
            .map(|field| {
                let (name, value) = match field.iter().position(|&byte| byte == b'=') {
                    Some(at) => (&field[..at], &field[at + 1..]),
                    None => (field, &b""[..]),
                };
                (decode_component(name), decode_component(value))
            })
            .collect();
        FormFields { pairs }
    }

    /// The first value sent under `name` (names are case-sensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every field, in the order they were sent.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Every field sorted by name, then value (by code point, which is UTF-8 byte order):
    /// the order Twilio signs and form fingerprints hash, whatever order the sender used.
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut sorted: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        sorted.sort_unstable();
        sorted
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Whether a `Content-Type` value names a form body (parameters and case ignored).
pub fn is_form_content_type(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// `+` → space, then `%XX` → the byte; a `%` not followed by two hex digits is kept.
fn decode_component(encoded: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            b'%' => match tail {
                [high, low, after @ ..] => match (hex_value(*high), hex_value(*low)) {
                    (Some(high), Some(low)) => {
                        bytes.push(high << 4 | low);
                        rest = after;
                    }
                    _ => {
                        bytes.push(b'%');
                        rest = tail;
                    }
                },
                _ => {
                    bytes.push(b'%');
                    rest = tail;
                }
            },
            other => {
                bytes.push(other);
                rest = tail;
            }
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes `text` for a form body or a query, as `application/x-www-form-urlencoded`
/// serializers do (space as `+`; letters, digits and `*-._` kept). Used where oncehook writes
/// a form: the requests `oncehook send` makes.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(other >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(other & 0x0f)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(body: &[u8]) -> Vec<(String, String)> {
        FormFields::parse(body).pairs().to_vec()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn parses_as_the_url_standard_does() {
        type Expected<'a> = &'a [(&'a str, &'a str)];
        let cases: [(&[u8], Expected); 13] = [
            (b"", &[]),
            (b"a=1&b=2", &[("a", "1"), ("b", "2")]),
            (b"a=1&&b=2&", &[("a", "1"), ("b", "2")]),
            (b"flag&x=", &[("flag", ""), ("x", "")]),
            (b"=value", &[("", "value")]),
            (b"a=b=c", &[("a", "b=c")]),
            (b"From=%2B15005550006", &[("From", "+15005550006")]),
            (b"Body=hello+world%21", &[("Body", "hello world!")]),
            (b"caf%C3%A9=%e2%9c%93", &[("café", "✓")]),
            (b"bad=%zz%4", &[("bad", "%zz%4")]),
            (b"pct=%", &[("pct", "%")]),
            (b"raw=\xff", &[("raw", "\u{fffd}")]),
            (b"a=1&a=2", &[("a", "1"), ("a", "2")]),
        ];
        for (body, expected) in cases {
            assert_eq!(
                pairs(body),
                owned(expected),
                "{:?}",
                body.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn get_returns_the_first_value_and_sorted_orders_by_name_then_value() {
        let form = FormFields::parse(b"b=2&a=9&a=1&B=0");
        assert_eq!(form.get("a"), Some("9"));
        assert_eq!(form.get("A"), None);
        assert_eq!(
            form.sorted(),
            vec![("B", "0"), ("a", "1"), ("a", "9"), ("b", "2")]
        );
        assert!(FormFields::parse(b"&&").is_empty());
    }

    #[test]
    fn content_types() {
        for (value, expected) in [
            (&b"application/x-www-form-urlencoded"[..], true),
            (b"Application/X-WWW-Form-Urlencoded; charset=utf-8", true),
            (b" application/x-www-form-urlencoded ;charset=UTF-8", true),
            (b"application/json", false),
            (b"multipart/form-data; boundary=x", false),
            (b"", false),
        ] {
            assert_eq!(is_form_content_type(value), expected, "{value:?}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        for text in [
            "",
            "plain",
            "a b+c&d=e",
            "+15005550006",
            "café ✓",
            "%41",
            "*-._~",
        ] {
            let body = format!("{}={}", encode_component(text), encode_component(text));
            assert_eq!(pairs(body.as_bytes()), owned(&[(text, text)]), "{text:?}");
        }
        assert_eq!(encode_component("a b/c"), "a+b%2Fc");
    }
}
