//! `response_capture`: named values read from a destination's 2xx JSON answer (a CRM's record
//! id), which the attempt stores with the delivery so operators can find the event by them.

use serde_json::Value;

use crate::domain::pointer::JsonPointer;
use crate::privacy::{PayloadCipher, SearchKey, seal_text};
use crate::store::CapturedValue;

/// A destination's `response_capture`, compiled: the names and pointers, and the key their
/// values are hashed with for the events search (the same as `search_fields` use).
pub struct ResponseCapture {
    pub fields: Vec<(String, JsonPointer)>,
    pub search_key: SearchKey,
}

impl ResponseCapture {
    /// The values of `answer` as stored: sealed like error texts (encrypted when the store has a
    /// key) and hashed for search.
    pub fn capture(&self, answer: &[u8], cipher: Option<&PayloadCipher>) -> Vec<CapturedValue> {
        capture_values(&self.fields, answer)
            .into_iter()
            .map(|(name, value)| CapturedValue {
                search: self.search_key.hash(&name, &value),
                value: seal_text(cipher, &value),
                name,
            })
            .collect()
    }
}

/// The values at `fields`' pointers in `answer`, by name, as text: strings as they are (when not
/// blank), numbers and booleans as JSON writes them. An answer that is not JSON, and a pointer
/// that finds nothing or an object, an array or null, capture nothing.
pub fn capture_values(fields: &[(String, JsonPointer)], answer: &[u8]) -> Vec<(String, String)> {
    if fields.is_empty() {
        return Vec::new();
    }
    let Ok(json) = serde_json::from_slice::<Value>(answer) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|(name, pointer)| {
            let value = match pointer.get(&json)? {
                Value::String(s) if !s.trim().is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(answer: &str, expected: &[(&str, &str)]) {
        let fields: Vec<(String, JsonPointer)> = [("crm_id", "/id"), ("owner", "/owner/id")]
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.parse().expect("pointer")))
            .collect();
        let captured = capture_values(&fields, answer.as_bytes());
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(captured, expected, "{answer}");
    }

    #[test]
    fn values_come_from_the_pointers_of_a_json_answer() {
        check(
            r#"{"id":"c-1","owner":{"id":7}}"#,
            &[("crm_id", "c-1"), ("owner", "7")],
        );
        check(r#"{"id":true}"#, &[("crm_id", "true")]);
        check(r#"{"id":"  ","owner":{"id":null}}"#, &[]);
        check(r#"{"id":{"nested":1},"owner":[1]}"#, &[]);
        check("not json", &[]);
        check("", &[]);
        assert!(capture_values(&[], br#"{"id":"c-1"}"#).is_empty());
    }
}
