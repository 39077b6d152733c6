//! Masking: what operators see of a payload's hidden fields, and which header names are never
//! shown at all.

use std::collections::HashMap;

use serde_json::Value;

use crate::domain::pointer::JsonPointer;

/// What a masked value is shown as.
pub const MASK: &str = "***";

/// Replaces every value at `pointers` with a mask that keeps at most its first character.
pub fn mask_json(value: &mut Value, pointers: &[JsonPointer]) {
    for pointer in pointers {
        let Some(target) = pointer.get_mut(value) else {
            continue;
        };
        *target = Value::String(mask_text(target));
    }
}

fn mask_text(value: &Value) -> String {
    match value {
        // Enough to tell two values apart at a glance, not enough to recover either.
        Value::String(s) if s.chars().count() > 4 => {
            let first: String = s.chars().take(1).collect();
            format!("{first}{MASK}")
        }
        _ => MASK.to_owned(),
    }
}

/// A payload as operators may see it: JSON with `mask_fields` masked, or text. A body that
/// cannot be parsed while the source masks fields is not shown at all.
pub fn masked_preview(body: &[u8], pointers: &[JsonPointer]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut json) => {
            mask_json(&mut json, pointers);
            json
        }
        Err(_) if !pointers.is_empty() => Value::String(format!(
            "[{} bytes, not JSON; hidden because the source masks fields]",
            body.len()
        )),
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// How many lines a short preview has at most (the dead-letter list shows one per delivery).
pub const PREVIEW_LINES: usize = 10;
/// How many characters a line of a short preview keeps.
const PREVIEW_LINE_CHARS: usize = 120;

/// A few lines of a payload as operators may see it (`masked_preview`, JSON pretty-printed):
/// at most `PREVIEW_LINES` lines of at most 120 characters; when the payload is longer, the
/// last line says how many lines were left out.
pub fn short_preview(body: &[u8], pointers: &[JsonPointer]) -> String {
    let text = match masked_preview(body, pointers) {
        Value::String(text) => text,
        json => serde_json::to_string_pretty(&json).unwrap_or_default(),
    };
    short_text(&text)
}

/// `text` cut to `PREVIEW_LINES` lines of at most `PREVIEW_LINE_CHARS` characters each.
pub fn short_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let clip = |line: &str| -> String {
        if line.chars().count() > PREVIEW_LINE_CHARS {
            let kept: String = line.chars().take(PREVIEW_LINE_CHARS - 1).collect();
            format!("{kept}…")
        } else {
            line.to_owned()
        }
    };
    if lines.len() <= PREVIEW_LINES {
        return lines.iter().map(|l| clip(l)).collect::<Vec<_>>().join("\n");
    }
    let kept = PREVIEW_LINES - 1;
    let mut shown: Vec<String> = lines[..kept].iter().map(|l| clip(l)).collect();
    shown.push(format!("… {} more lines", lines.len() - kept));
    shown.join("\n")
}

/// Each source's hidden fields, by source name: the fields of its payloads that operators never
/// see in clear (`mask_fields` and the pointers of `search_fields`), possibly none.
pub type HiddenFields = HashMap<String, Vec<JsonPointer>>;

/// Header names whose values are credentials or signatures: never shown, whatever they hold.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "signature",
        "token",
        "secret",
        "api-key",
        "apikey",
        "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(list: &[&str]) -> Vec<JsonPointer> {
        list.iter().map(|p| p.parse().expect("pointer")).collect()
    }

    #[test]
    fn masking_hides_values_but_keeps_the_shape() {
        let mut body = json!({"email": "ann@example.com", "phone": 123, "name": "Ann", "nested": {"x": "yes"}});
        mask_json(
            &mut body,
            &pointers(&["/email", "/phone", "/missing", "/nested/x"]),
        );
        assert_eq!(
            body,
            json!({"email": "a***", "phone": "***", "name": "Ann", "nested": {"x": "***"}})
        );
        let preview = masked_preview(br#"{"email":"ann@example.com"}"#, &pointers(&["/email"]));
        assert!(!preview.to_string().contains("ann@"));
        let opaque = masked_preview(b"email=ann@example.com", &pointers(&["/email"]));
        assert!(!opaque.to_string().contains("ann@"));
    }

    #[test]
    fn short_previews_keep_ten_lines_and_mask() {
        let small = short_preview(
            br#"{"email":"ann@example.com","type":"lead"}"#,
            &pointers(&["/email"]),
        );
        assert_eq!(small, "{\n  \"email\": \"a***\",\n  \"type\": \"lead\"\n}");
        let fields: Vec<String> = (0..30).map(|n| format!("\"f{n:02}\":{n}")).collect();
        let big = short_preview(format!("{{{}}}", fields.join(",")).as_bytes(), &[]);
        let lines: Vec<&str> = big.lines().collect();
        assert_eq!(lines.len(), PREVIEW_LINES, "{big}");
        assert_eq!(lines[9], "… 23 more lines");
        let long = short_text(&"x".repeat(500));
        assert_eq!(long.chars().count(), 120);
        assert!(long.ends_with('…'));
        assert_eq!(short_text("plain text"), "plain text");
    }
}
