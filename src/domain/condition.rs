//! A condition on one value of a JSON body, as routes' `when` and `dedupe_ttl_when` rules state
//! it: the value at a pointer is one of a list, or a string that starts with a prefix.

use serde_json::Value;

use super::pointer::JsonPointer;

/// What the value at a pointer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueCondition {
    /// Equal (as JSON: `"1"` is not `1`) to one of these.
    OneOf(Vec<Value>),
    /// A string starting with this text.
    Prefix(String),
}

impl ValueCondition {
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            ValueCondition::OneOf(allowed) => allowed.contains(value),
            ValueCondition::Prefix(prefix) => value
                .as_str()
                .is_some_and(|text| text.starts_with(prefix.as_str())),
        }
    }
}

/// A condition on the value at `pointer`; a body that is not JSON, or lacks the value, does not
/// match.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    pub pointer: JsonPointer,
    pub condition: ValueCondition,
}

impl FieldCondition {
    pub fn matches(&self, body: Option<&Value>) -> bool {
        body.and_then(|value| self.pointer.get(value))
            .is_some_and(|value| self.condition.matches(value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(condition: ValueCondition, body: Value, expected: bool) {
        let field = FieldCondition {
            pointer: "/type".parse().expect("pointer"),
            condition: condition.clone(),
        };
        assert_eq!(
            field.matches(Some(&body)),
            expected,
            "{condition:?} on {body}"
        );
    }

    #[test]
    fn one_of_compares_as_json_and_prefix_only_strings() {
        let one_of = || ValueCondition::OneOf(vec![json!("ping"), json!(1)]);
        let prefix = || ValueCondition::Prefix("invoice.".into());
        check(one_of(), json!({"type": "ping"}), true);
        check(one_of(), json!({"type": 1}), true);
        check(one_of(), json!({"type": "1"}), false);
        check(one_of(), json!({"other": "ping"}), false);
        check(prefix(), json!({"type": "invoice.paid"}), true);
        check(prefix(), json!({"type": "invoice."}), true);
        check(prefix(), json!({"type": "invoice"}), false);
        check(prefix(), json!({"type": "customer.invoice.paid"}), false);
        check(prefix(), json!({"type": ["invoice.paid"]}), false);
        check(prefix(), json!({"type": null}), false);
    }

    #[test]
    fn a_body_that_is_not_json_matches_nothing() {
        let field = FieldCondition {
            pointer: "/type".parse().expect("pointer"),
            condition: ValueCondition::Prefix(String::new()),
        };
        assert!(!field.matches(None));
    }
}
