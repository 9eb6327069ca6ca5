//! Builds an HTTP tool's request body from its template, so that a value fills its slot and
//! can't add fields.
//!
//! A JSON body (declared `Content-Type: …json`, or a template starting with `{` or `[`):
//! a value inside a JSON string is escaped into it; a value outside one is inserted as a JSON
//! value (text becomes a quoted string), so no value adds fields or elements. A form body
//! (`application/x-www-form-urlencoded`): values are percent-encoded, so no `&` or `=` of
//! theirs starts a field. Any other body is text, and values go into it as they are.

use percent_encoding::utf8_percent_encode;
use serde_json::{Map, Value};

use super::call::arg;
use super::url::COMPONENT;
use crate::graph::{Segment, ToolTemplate};

/// How a body's values are written into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// JSON: escaped inside strings, JSON values outside them.
    Json,
    /// `application/x-www-form-urlencoded`: percent-encoded.
    Form,
    /// Anything else: as they are.
    Text,
}

/// The kind of body `template` is, from the declared `Content-Type` or, without one, its first character.
pub(super) fn kind(template: &ToolTemplate, headers: &[(String, ToolTemplate)]) -> BodyKind {
    let declared = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.literal_prefix().to_ascii_lowercase());
    match declared {
        Some(ct) if ct.contains("json") => BodyKind::Json,
        Some(ct) if ct.starts_with("application/x-www-form-urlencoded") => BodyKind::Form,
        Some(_) => BodyKind::Text,
        None if template.literal_prefix().trim_start().starts_with(['{', '[']) => BodyKind::Json,
        None => BodyKind::Text,
    }
}

/// The body for `template` with `args`. The error says why a value can't be placed.
pub(super) fn render(template: &ToolTemplate, kind: BodyKind, args: &Map<String, Value>) -> Result<String, String> {
    match kind {
        BodyKind::Text => Ok(template.render(|p| arg(args, p))),
        BodyKind::Form => Ok(template.render(|p| utf8_percent_encode(&arg(args, p), COMPONENT).to_string())),
        BodyKind::Json => {
            let body = json(template, |p| args.get(p).cloned().unwrap_or(Value::Null))?;
            // If the template is JSON, the body must be too: a backstop for the rules above.
            let neutral = json(template, |_| Value::String("x".into()))?;
            if serde_json::from_str::<Value>(&neutral).is_ok() && serde_json::from_str::<Value>(&body).is_err() {
                return Err("the values would make the JSON body invalid".into());
            }
            Ok(body)
        }
    }
}

/// Fills a JSON template: values inside a string literal are escaped, values outside are JSON.
fn json(template: &ToolTemplate, value_of: impl Fn(&str) -> Value) -> Result<String, String> {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for segment in &template.segments {
        match segment {
            Segment::Text(t) => {
                for c in t.chars() {
                    if escaped {
                        escaped = false;
                    } else if in_string && c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        in_string = !in_string;
                    }
                }
                out.push_str(t);
            }
            Segment::Param(p) if escaped => {
                return Err(format!("the body template puts a `\\` right before `{{{p}}}`, which would escape the value's first character"));
            }
            Segment::Param(p) if in_string => {
                let text = match value_of(p) {
                    Value::String(s) => s,
                    other => crate::runtime::value::render(&other),
                };
                let quoted = Value::String(text).to_string();
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            Segment::Param(p) => out.push_str(&value_of(p).to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fill(template: &str, kind: BodyKind, value: Value) -> Result<String, String> {
        let t = ToolTemplate::parse(template).map_err(|e| e.to_string())?;
        let args = json!({ "p": value }).as_object().cloned().unwrap_or_default();
        render(&t, kind, &args)
    }

    #[test]
    fn json_values_inside_strings_are_escaped() {
        let body = fill(r#"{{"q": "{p}", "n": 1}}"#, BodyKind::Json, json!("x\", \"admin\": true, \"y\": \"")).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"q": "x\", \"admin\": true, \"y\": \"", "n": 1}));
    }

    #[test]
    fn json_values_outside_strings_are_json_values_not_syntax() {
        let body = fill(r#"{{"ids": [{p}]}}"#, BodyKind::Json, json!("1, 2, 3")).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"ids": ["1, 2, 3"]}));
        let body = fill(r#"{{"n": {p}}}"#, BodyKind::Json, json!(7)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"n": 7}));
    }

    #[test]
    fn a_backslash_before_a_placeholder_is_refused() {
        assert!(fill(r#"{{"q": "\{p}"}}"#, BodyKind::Json, json!("\" , \"a\": 1")).unwrap_err().contains("escape"));
    }

    #[test]
    fn form_values_cannot_add_fields() {
        assert_eq!(fill("q={p}&lang=en", BodyKind::Form, json!("x&lang=fr")).unwrap(), "q=x%26lang%3Dfr&lang=en");
    }

    #[test]
    fn the_kind_follows_the_declared_content_type() {
        let form = ToolTemplate::parse("q={p}").unwrap();
        let ct = |v: &str| vec![("Content-Type".to_string(), ToolTemplate::parse(v).unwrap())];
        assert_eq!(kind(&form, &ct("application/x-www-form-urlencoded")), BodyKind::Form);
        assert_eq!(kind(&form, &ct("application/json; charset=utf-8")), BodyKind::Json);
        assert_eq!(kind(&form, &[]), BodyKind::Text);
        assert_eq!(kind(&ToolTemplate::parse("{{\"a\": 1}}").unwrap(), &[]), BodyKind::Json);
    }
}
