//! `subject` and `routing_key` with `{source}` and `{type}` (the stored body's `/type`) in them.

use std::fmt;

/// A text with placeholders, checked when the runtime is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Source,
    Type,
}

/// A placeholder other than `{source}` and `{type}`, or a brace left open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| TemplateError(format!("unclosed {{ in {text:?}")))?;
            parts.push(match &after[..close] {
                "source" => Part::Source,
                "type" => Part::Type,
                other => {
                    return Err(TemplateError(format!(
                        "unknown placeholder {{{other}}} (only {{source}} and {{type}})"
                    )));
                }
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError(format!("unmatched }} in {text:?}")));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Whether `{type}` appears: the body is then read for it.
    pub fn needs_type(&self) -> bool {
        self.parts.contains(&Part::Type)
    }

    /// The text for one message; `clean` is applied to each substituted value. None when
    /// `{type}` is wanted and the body has no string at `/type`.
    pub fn render(
        &self,
        source: &str,
        event_type: Option<&str>,
        clean: impl Fn(&str) -> String,
    ) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Source => out.push_str(&clean(source)),
                Part::Type => out.push_str(&clean(event_type?)),
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Source => f.write_str("{source}")?,
                Part::Type => f.write_str("{type}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted() {
        let template = Template::parse("events.{source}.{type}").expect("parses");
        assert!(template.needs_type());
        assert_eq!(
            template.render("forms", Some("lead.created"), str::to_owned),
            Some("events.forms.lead.created".into())
        );
        assert_eq!(template.render("forms", None, str::to_owned), None);
        assert_eq!(template.to_string(), "events.{source}.{type}");
        let plain = Template::parse("leads").expect("parses");
        assert!(!plain.needs_type());
        assert_eq!(plain.render("x", None, str::to_owned), Some("leads".into()));
    }

    #[test]
    fn unknown_or_open_placeholders_are_refused() {
        for text in ["a.{tenant}", "a.{source", "a}b"] {
            assert!(Template::parse(text).is_err(), "{text}");
        }
    }
}
