//! `SensitiveValues`: the values of a payload's masked and searchable fields, scrubbed out of
//! free text that may repeat them (an idempotency key built from a field, a header, the error
//! text a destination answered with) before that text is stored or logged.

use std::borrow::Cow;

use serde_json::Value;

use super::mask::MASK;
use crate::domain::pointer::JsonPointer;

/// Values shorter than this are not scrubbed from free text: they would match nearly anything.
const MIN_SCRUBBED_LEN: usize = 3;

/// The values of one payload's hidden fields (see `HiddenFields`), to scrub from free text.
#[derive(Debug, Default, Clone)]
pub struct SensitiveValues {
    /// ASCII-lowercased, so matching ignores ASCII case (emails are matched that way too).
    values: Vec<String>,
}

impl SensitiveValues {
    /// Collects the strings and numbers at `pointers` (every leaf, when a pointer names an
    /// object or an array).
    pub fn collect<'a>(
        body: &Value,
        pointers: impl IntoIterator<Item = &'a JsonPointer>,
    ) -> SensitiveValues {
        let mut values = Vec::new();
        for pointer in pointers {
            if let Some(value) = pointer.get(body) {
                collect_leaves(value, &mut values);
            }
        }
        values.sort();
        values.dedup();
        SensitiveValues { values }
    }

    /// Collects from a stored body when it is JSON; nothing otherwise.
    pub fn from_body<'a>(
        body: &[u8],
        pointers: impl IntoIterator<Item = &'a JsonPointer>,
    ) -> SensitiveValues {
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => SensitiveValues::collect(&json, pointers),
            Err(_) => SensitiveValues::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every occurrence of a sensitive value replaced by the mask.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.values.is_empty() {
            return Cow::Borrowed(text);
        }
        // ASCII lowercasing keeps byte offsets, so ranges found in `lower` apply to `text`.
        let lower = text.to_ascii_lowercase();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for value in &self.values {
            let mut from = 0;
            while let Some(found) = lower[from..].find(value.as_str()) {
                let start = from + found;
                ranges.push((start, start + value.len()));
                from = start + value.len();
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (start, end) in ranges {
            if end <= copied {
                continue;
            }
            if start > copied {
                out.push_str(&text[copied..start]);
            }
            if start >= copied {
                out.push_str(MASK);
            }
            copied = end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// A JSON object of header values, each scrubbed.
    pub fn scrub_headers_json(&self, headers_json: &str) -> String {
        if self.values.is_empty() {
            return headers_json.to_owned();
        }
        match serde_json::from_str::<Value>(headers_json) {
            Ok(Value::Object(mut headers)) => {
                for value in headers.values_mut() {
                    if let Value::String(text) = value
                        && let Cow::Owned(scrubbed) = self.scrub(text)
                    {
                        *text = scrubbed;
                    }
                }
                Value::Object(headers).to_string()
            }
            _ => self.scrub(headers_json).into_owned(),
        }
    }
}

fn collect_leaves(value: &Value, into: &mut Vec<String>) {
    let text = match value {
        Value::String(s) => s.trim().to_ascii_lowercase(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            items.iter().for_each(|item| collect_leaves(item, into));
            return;
        }
        Value::Object(fields) => {
            fields.values().for_each(|item| collect_leaves(item, into));
            return;
        }
        Value::Bool(_) | Value::Null => return,
    };
    if text.len() >= MIN_SCRUBBED_LEN {
        into.push(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::is_secret_header;
    use serde_json::json;

    fn pointers(list: &[&str]) -> Vec<JsonPointer> {
        list.iter().map(|p| p.parse().expect("pointer")).collect()
    }

    #[test]
    fn sensitive_values_are_scrubbed_from_free_text() {
        let body =
            json!({"email": "Ann@Example.com", "contact": 4242, "tags": ["vip-x", "no"], "id": 7});
        let sensitive = SensitiveValues::collect(
            &body,
            &pointers(&["/email", "/contact", "/tags", "/missing", "/id"]),
        );
        let check = |text: &str, expected: &str| assert_eq!(sensitive.scrub(text), expected);
        check("sub_1+ann@example.com", "sub_1+***");
        check(
            "HTTP 400: unknown ANN@EXAMPLE.COM (4242)",
            "HTTP 400: unknown *** (***)",
        );
        check("vip-x", "***");
        check("nothing here, no 7", "nothing here, no 7");
        check("", "");
        let headers = sensitive.scrub_headers_json(r#"{"x-user":"ann@example.com","x-n":"1"}"#);
        assert!(!headers.contains("ann@"), "{headers}");
        assert!(SensitiveValues::from_body(b"not json", &pointers(&["/email"])).is_empty());
        assert!(is_secret_header("X-Hub-Signature-256"));
        assert!(is_secret_header("X-Api-Key"));
        assert!(!is_secret_header("content-type"));
    }
}
