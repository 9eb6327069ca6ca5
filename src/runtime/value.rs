//! Values of declared types: checking caller-supplied JSON against a type, turning model
//! text into a typed value, and writing values into prompts.

use serde_json::Value;

use crate::graph::Type;

/// Checks that `v` is a value of type `ty`; the error says what was found instead.
pub fn check_type(ty: &Type, v: &Value) -> Result<(), String> {
    let ok = match (ty, v) {
        (Type::Text, Value::String(_)) => true,
        (Type::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Type::Float, Value::Number(_)) => true,
        (Type::Bool, Value::Bool(_)) => true,
        (Type::Json, _) => true,
        (Type::Label(labels), Value::String(s)) => {
            if !labels.contains(s) {
                return Err(format!("`{s}` is not one of the labels {}", labels.join(", ")));
            }
            true
        }
        (Type::List(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_type(inner, item).map_err(|e| format!("item {i}: {e}"))?;
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {}, found {}", describe(ty), kind_of(v)))
    }
}

fn describe(ty: &Type) -> String {
    match ty {
        Type::Text => "text (a JSON string)".into(),
        Type::Int => "an int (a whole JSON number)".into(),
        Type::Float => "a float (a JSON number)".into(),
        Type::Bool => "a bool (true or false)".into(),
        Type::Json => "any JSON".into(),
        Type::Label(l) => format!("one of the labels {}", l.join(", ")),
        Type::List(inner) => format!("a list of {}", describe(inner)),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Writes a value into a prompt: text as is, everything else as compact JSON.
pub fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads model text as a value of type `ty`. Lenient where models are sloppy (surrounding
/// quotes, code fences, trailing punctuation, label case) and strict about the type.
pub fn coerce(ty: &Type, raw: &str) -> Result<Value, String> {
    let text = strip_fences(raw.trim());
    match ty {
        Type::Text => Ok(Value::String(text.to_string())),
        Type::Int => {
            let t = clean_number(text);
            if let Ok(i) = t.parse::<i64>() {
                return Ok(i.into());
            }
            match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok((f as i64).into()),
                _ => Err(format!("`{}` is not a whole number", short(text))),
            }
        }
        Type::Float => clean_number(text)
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| serde_json::json!(f))
            .ok_or_else(|| format!("`{}` is not a number", short(text))),
        Type::Bool => match unquote(text).to_ascii_lowercase().trim_end_matches(['.', '!']) {
            "true" | "yes" => Ok(Value::Bool(true)),
            "false" | "no" => Ok(Value::Bool(false)),
            _ => Err(format!("`{}` is not true or false", short(text))),
        },
        Type::Json => first_json(text).map_err(|e| format!("not valid JSON ({e}): `{}`", short(text))),
        Type::Label(labels) => {
            let t = unquote(text).trim_end_matches(['.', '!', ',']).trim();
            labels
                .iter()
                .find(|l| l.as_str() == t)
                .or_else(|| labels.iter().find(|l| l.eq_ignore_ascii_case(t)))
                .map(|l| Value::String(l.clone()))
                .ok_or_else(|| format!("`{}` is not one of the labels {}", short(text), labels.join(", ")))
        }
        Type::List(inner) => {
            if text.starts_with('[') {
                let v = first_json(text).map_err(|e| format!("not a valid JSON list ({e})"))?;
                let Value::Array(items) = v else { return Err("not a list".into()) };
                // Items that came as strings are read as the item type; others are checked as is.
                return items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) if !matches!(**inner, Type::Text | Type::Json) => coerce(inner, &s),
                        other => check_type(inner, &other).map(|_| other),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array);
            }
            // One item per line ("- a", "1. a"), or comma-separated on one line.
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let items: Vec<&str> = if lines.len() > 1 {
                lines.iter().map(|l| strip_bullet(l)).collect()
            } else {
                text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
            };
            items.into_iter().map(|i| coerce(inner, i)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
    }
}

/// The JSON value at the start of `text`; what follows it is ignored (small models often
/// keep writing after a complete value).
fn first_json(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::Deserializer::from_str(text).into_iter::<Value>().next() {
        Some(v) => v,
        None => serde_json::from_str(text),
    }
}

fn strip_fences(t: &str) -> &str {
    let Some(rest) = t.strip_prefix("```") else { return t };
    let rest = rest.split_once('\n').map_or(rest, |(_, body)| body);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

/// Removes quotes and Markdown emphasis around a value (`"x"`, `**x**`, `` `x` ``).
fn unquote(t: &str) -> &str {
    let mut t = t.trim();
    'strip: loop {
        for q in ['"', '\'', '`', '*', '_'] {
            if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
                t = t[1..t.len() - 1].trim();
                continue 'strip;
            }
        }
        return t;
    }
}

fn clean_number(t: &str) -> String {
    unquote(t).trim_end_matches('.').replace([',', '_'], "")
}

fn strip_bullet(l: &str) -> &str {
    let l = l.trim_start_matches(['-', '*', '•']).trim_start();
    match l.split_once(['.', ')']) {
        Some((n, rest)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => rest.trim_start(),
        _ => l,
    }
}

fn short(t: &str) -> String {
    let mut s: String = t.chars().take(60).collect();
    if t.chars().count() > 60 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn label(ls: &[&str]) -> Type {
        Type::Label(ls.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn coerce_reads_every_type() {
        let cases: Vec<(Type, &str, Value)> = vec![
            (Type::Text, "  hello\n", json!("hello")),
            (Type::Int, "1,234", json!(1234)),
            (Type::Int, "42.0", json!(42)),
            (Type::Float, "3.5.", json!(3.5)),
            (Type::Bool, "Yes.", json!(true)),
            (Type::Bool, "\"false\"", json!(false)),
            (label(&["billing", "bug"]), "Billing.", json!("billing")),
            (label(&["billing", "bug"]), "`bug`", json!("bug")),
            (Type::List(Box::new(Type::Text)), "[\"a\", \"b\"]", json!(["a", "b"])),
            (Type::List(Box::new(Type::Text)), "- Ann Lee\n- Bo Chen", json!(["Ann Lee", "Bo Chen"])),
            (Type::List(Box::new(Type::Int)), "1, 2, 3", json!([1, 2, 3])),
            (Type::List(Box::new(Type::Int)), "[\"4\", 5]", json!([4, 5])),
            (Type::Json, "```json\n{\"a\": [1]}\n```", json!({"a": [1]})),
        ];
        for (ty, raw, want) in cases {
            assert_eq!(coerce(&ty, raw), Ok(want), "{ty} from {raw:?}");
        }
    }

    #[test]
    fn coerce_rejects_malformed_completions_with_a_reason() {
        let cases: Vec<(Type, &str, &str)> = vec![
            (Type::Int, "forty-two", "is not a whole number"),
            (Type::Int, "4.5", "is not a whole number"),
            (Type::Float, "NaN-ish", "is not a number"),
            (Type::Bool, "maybe", "is not true or false"),
            (label(&["billing", "bug"]), "refund", "is not one of the labels billing, bug"),
            (Type::List(Box::new(Type::Int)), "1, two", "is not a whole number"),
            (Type::Json, "{oops", "not valid JSON"),
        ];
        for (ty, raw, want) in cases {
            let err = coerce(&ty, raw).expect_err(raw);
            assert!(err.contains(want), "{ty} from {raw:?}: {err}");
        }
    }

    #[test]
    fn check_explains_what_was_found() {
        assert_eq!(check_type(&Type::Int, &json!("3")), Err("expected an int (a whole JSON number), found a string".into()));
        assert!(check_type(&label(&["a"]), &json!("b")).unwrap_err().contains("not one of the labels a"));
        assert!(check_type(&Type::List(Box::new(Type::Bool)), &json!([true, 1])).unwrap_err().starts_with("item 1:"));
        assert_eq!(check_type(&Type::Float, &json!(2)), Ok(()));
    }
}
