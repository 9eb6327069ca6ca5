//! Values of declared types: checking caller-supplied JSON against a type, turning model
//! text into a typed value, and writing values into prompts.
//!
//! Reading model text is strict about the type and tolerant about the wrapping, the way
//! BAML's parser is: code fences, prose around a JSON value, single quotes, trailing commas,
//! quotes around a scalar, one value where a list belongs. Every such fix is a [`Repair`]
//! the caller records (in the trace), so a value read with help is never mistaken for one
//! written right. What still doesn't fit the type (or its constraints) is an error.

use serde_json::Value;

use crate::graph::Type;

/// A fix made while reading a model's text as a typed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// The value stood inside a Markdown code fence.
    CodeFence,
    /// Text before or after the value was dropped.
    ProseAround,
    /// Quotes or emphasis around a scalar were removed (`"42"`, `**yes**`).
    Unquoted,
    /// JSON written with single quotes was read as if double-quoted.
    SingleQuotes,
    /// A comma before a closing bracket or brace was dropped.
    TrailingComma,
    /// One value stood where a list belongs; it became a list of one.
    SingleToList,
    /// A bulleted or comma-separated list was read as a list.
    LinesToList,
    /// A list item written as text was read as the item's type (`"4"` as `4`).
    ItemFromText,
    /// A label matched one of the labels only when case is ignored.
    LabelCase,
    /// A number's separators or trailing period were dropped (`1,234.`).
    NumberFormat,
    /// `yes`/`no` was read as a bool.
    WordToBool,
    /// A whole number written with a fraction (`42.0`) was read as an int.
    WholeFloat,
}

/// Checks that `v` is a value of type `ty`; the error says what was found instead.
pub fn check_type(ty: &Type, v: &Value) -> Result<(), String> {
    let ok = match (ty, v) {
        (Type::Text, Value::String(_)) => true,
        (Type::Constrained(rule), Value::String(s)) => return rule.check(s),
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
        Type::Constrained(rule) => format!("{} (a JSON string)", rule.describe()),
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

/// Reads model text as a value of type `ty`, dropping the record of repairs (for callers
/// that read data people wrote, such as CSV cells). See [`read`].
pub fn coerce(ty: &Type, raw: &str) -> Result<Value, String> {
    read(ty, raw).map(|(v, _)| v)
}

/// Reads model text as a value of type `ty`, with the repairs it took. Lenient about the
/// wrapping (see [`Repair`]), strict about the type and its constraints.
pub fn read(ty: &Type, raw: &str) -> Result<(Value, Vec<Repair>), String> {
    let mut repairs = Vec::new();
    let text = strip_fences(raw.trim(), &mut repairs);
    let value = read_stripped(ty, text, &mut repairs)?;
    repairs.dedup();
    Ok((value, repairs))
}

fn read_stripped(ty: &Type, text: &str, repairs: &mut Vec<Repair>) -> Result<Value, String> {
    match ty {
        Type::Text => Ok(Value::String(text.to_string())),
        Type::Constrained(rule) => {
            // A constrained value has no room for wrapping: quotes around it are the wrapping.
            let t = unquote(text, repairs);
            rule.check(t)?;
            Ok(Value::String(t.to_string()))
        }
        Type::Int => {
            let t = clean_number(text, repairs);
            if let Ok(i) = t.parse::<i64>() {
                return Ok(i.into());
            }
            match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    repairs.push(Repair::WholeFloat);
                    Ok((f as i64).into())
                }
                _ => Err(format!("`{}` is not a whole number", short(text))),
            }
        }
        Type::Float => clean_number(text, repairs)
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| serde_json::json!(f))
            .ok_or_else(|| format!("`{}` is not a number", short(text))),
        Type::Bool => {
            let t = unquote(text, repairs).to_ascii_lowercase();
            let t = t.trim_end_matches(['.', '!']);
            match t {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "yes" | "no" => {
                    repairs.push(Repair::WordToBool);
                    Ok(Value::Bool(t == "yes"))
                }
                _ => Err(format!("`{}` is not true or false", short(text))),
            }
        }
        Type::Json => tolerant_json(text, None, repairs).map_err(|e| format!("not valid JSON ({e}): `{}`", short(text))),
        Type::Label(labels) => {
            let t = unquote(text, repairs);
            let t = t.trim_end_matches(['.', '!', ',']).trim();
            if let Some(l) = labels.iter().find(|l| l.as_str() == t) {
                return Ok(Value::String(l.clone()));
            }
            match labels.iter().find(|l| l.eq_ignore_ascii_case(t)) {
                Some(l) => {
                    repairs.push(Repair::LabelCase);
                    Ok(Value::String(l.clone()))
                }
                None => Err(format!("`{}` is not one of the labels {}", short(text), labels.join(", "))),
            }
        }
        Type::List(inner) => read_list(inner, text, repairs),
    }
}

fn read_list(inner: &Type, text: &str, repairs: &mut Vec<Repair>) -> Result<Value, String> {
    if text.contains('[') {
        let v = tolerant_json(text, Some('['), repairs).map_err(|e| format!("not a valid JSON list ({e}): `{}`", short(text)))?;
        let Value::Array(items) = v else { return Err(format!("not a list: `{}`", short(text))) };
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| read_item(inner, item, repairs).map_err(|e| format!("item {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if text.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    // One item per line ("- a", "1. a"), comma-separated on one line, or a single value.
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let items: Vec<&str> =
        if lines.len() > 1 { lines.iter().map(|l| strip_bullet(l)).collect() } else { text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect() };
    repairs.push(if items.len() > 1 { Repair::LinesToList } else { Repair::SingleToList });
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| read_stripped(inner, item, repairs).map_err(|e| format!("item {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A JSON list item: checked as it is, or, when it came as a string for a non-text type,
/// read from that string.
fn read_item(inner: &Type, item: Value, repairs: &mut Vec<Repair>) -> Result<Value, String> {
    match (inner, item) {
        (Type::List(deeper), Value::Array(items)) => items.into_iter().map(|i| read_item(deeper, i, repairs)).collect::<Result<Vec<_>, _>>().map(Value::Array),
        (_, item) if check_type(inner, &item).is_ok() => Ok(item),
        (Type::Int | Type::Float | Type::Bool | Type::Label(_), Value::String(s)) => {
            if !matches!(inner, Type::Label(_)) {
                repairs.push(Repair::ItemFromText);
            }
            read_stripped(inner, s.trim(), repairs)
        }
        (_, other) => check_type(inner, &other).map(|_| other),
    }
}

/// The first JSON object in `text`, read as tolerantly as [`read`] reads a value (code fences,
/// prose around it, single quotes, trailing commas), with the repairs it took.
pub fn read_object(text: &str) -> Result<(serde_json::Map<String, Value>, Vec<Repair>), String> {
    let mut repairs = Vec::new();
    let t = strip_fences(text.trim(), &mut repairs);
    let t = match t.find("```") {
        // Prose before a fence: the object is inside it.
        Some(i) if t[..i].find('{').is_none() => {
            repairs.push(Repair::ProseAround);
            strip_fences(t[i..].trim(), &mut repairs)
        }
        _ => t,
    };
    if !t.contains('{') {
        return Err("no JSON object".into());
    }
    match tolerant_json(t, Some('{'), &mut repairs)? {
        Value::Object(o) => {
            repairs.dedup();
            Ok((o, repairs))
        }
        _ => Err("no JSON object".into()),
    }
}

/// The first JSON value in `text` (starting at `open` when given), with repairs: prose
/// around it dropped, single quotes and trailing commas fixed. A value cut short is an error.
fn tolerant_json(text: &str, open: Option<char>, repairs: &mut Vec<Repair>) -> Result<Value, String> {
    let start = match open {
        Some(c) => text.find(c),
        None => text.find(['{', '[', '"']).filter(|_| serde_json::from_str::<Value>(text).is_err()).or(Some(0)),
    }
    .unwrap_or(0);
    let body = &text[start..];
    if let Ok((v, rest)) = first_json(body) {
        if start > 0 && !text[..start].trim().is_empty() || !rest.trim().is_empty() {
            repairs.push(Repair::ProseAround);
        }
        return Ok(v);
    }
    let (fixed, fixes) = fix_json(body);
    match first_json(&fixed) {
        Ok((v, rest)) => {
            repairs.extend(fixes);
            if start > 0 && !text[..start].trim().is_empty() || !rest.trim().is_empty() {
                repairs.push(Repair::ProseAround);
            }
            Ok(v)
        }
        Err(e) => Err(e),
    }
}

/// The JSON value at the start of `text` and what follows it (small models often keep
/// writing after a complete value).
fn first_json(text: &str) -> Result<(Value, &str), String> {
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match it.next() {
        Some(Ok(v)) => Ok((v, &text[it.byte_offset()..])),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no value".into()),
    }
}

/// Rewrites single-quoted strings as double-quoted and drops commas before `]` or `}`,
/// outside strings; returns the text and the repairs it made.
fn fix_json(text: &str) -> (String, Vec<Repair>) {
    let mut out = String::with_capacity(text.len());
    let mut fixes = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                // A double-quoted string, copied whole.
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        out.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if chars[i - 1] == '"' {
                        break;
                    }
                }
            }
            '\'' => {
                fixes.push(Repair::SingleQuotes);
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    match chars[i] {
                        '"' => out.push_str("\\\""),
                        '\\' if i + 1 < chars.len() => {
                            if chars[i + 1] == '\'' {
                                out.push('\'');
                            } else {
                                out.push('\\');
                                out.push(chars[i + 1]);
                            }
                            i += 1;
                        }
                        other => out.push(other),
                    }
                    i += 1;
                }
                out.push('"');
                i += 1;
            }
            ',' => {
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if matches!(next, Some(']') | Some('}')) {
                    fixes.push(Repair::TrailingComma);
                } else {
                    out.push(c);
                }
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    fixes.dedup();
    (out, fixes)
}

fn strip_fences<'t>(t: &'t str, repairs: &mut Vec<Repair>) -> &'t str {
    let Some(rest) = t.strip_prefix("```") else { return t };
    repairs.push(Repair::CodeFence);
    let rest = rest.split_once('\n').map_or(rest, |(_, body)| body);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

/// Removes quotes and Markdown emphasis around a value (`"x"`, `**x**`, `` `x` ``).
fn unquote<'t>(t: &'t str, repairs: &mut Vec<Repair>) -> &'t str {
    let mut t = t.trim();
    'strip: loop {
        for q in ['"', '\'', '`', '*', '_'] {
            if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
                t = t[1..t.len() - 1].trim();
                repairs.push(Repair::Unquoted);
                continue 'strip;
            }
        }
        return t;
    }
}

fn clean_number(t: &str, repairs: &mut Vec<Repair>) -> String {
    let u = unquote(t, repairs);
    let cleaned = u.trim_end_matches('.').replace([',', '_'], "");
    if cleaned != u {
        repairs.push(Repair::NumberFormat);
    }
    cleaned
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
    use crate::graph::{Format, TextRule};
    use serde_json::json;

    fn label(ls: &[&str]) -> Type {
        Type::Label(ls.iter().map(|s| s.to_string()).collect())
    }

    fn emails() -> Type {
        Type::List(Box::new(Type::Constrained(TextRule::new(Some(Format::Email), None, None, None).expect("compiles"))))
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
    fn every_repair_is_recorded() {
        let list = Type::List(Box::new(Type::Text));
        let cases: Vec<(Type, &str, Value, Vec<Repair>)> = vec![
            (list.clone(), "```json\n[\"a\"]\n```", json!(["a"]), vec![Repair::CodeFence]),
            (list.clone(), "The names are [\"a\", \"b\"] as asked.", json!(["a", "b"]), vec![Repair::ProseAround]),
            (list.clone(), "['a', 'b']", json!(["a", "b"]), vec![Repair::SingleQuotes]),
            (list.clone(), "[\"a\", \"b\",]", json!(["a", "b"]), vec![Repair::TrailingComma]),
            (list.clone(), "Ann Lee", json!(["Ann Lee"]), vec![Repair::SingleToList]),
            (Type::Json, "{'a': 1,}", json!({"a": 1}), vec![Repair::SingleQuotes, Repair::TrailingComma]),
            (Type::Int, "\"42\"", json!(42), vec![Repair::Unquoted]),
            (label(&["bug"]), "BUG", json!("bug"), vec![Repair::LabelCase]),
            (Type::Bool, "no", json!(false), vec![Repair::WordToBool]),
            (list, "[\"a\"]", json!(["a"]), vec![]),
        ];
        for (ty, raw, want, fixes) in cases {
            match read(&ty, raw) {
                Ok((v, r)) => {
                    assert_eq!(v, want, "{raw}");
                    assert_eq!(r, fixes, "{raw}");
                }
                Err(e) => panic!("{raw}: {e}"),
            }
        }
    }

    #[test]
    fn junk_never_passes_as_an_email_address() {
        // What the unconstrained default model wrote for addresses (issue 20).
        for junk in ["[\"#\"]", "[\"## completed ## ]\"]", "[\"David Okafor and Lena Fischer\"]", "## people ##"] {
            let err = read(&emails(), junk).expect_err(junk);
            assert!(err.contains("is not an e-mail address"), "{junk}: {err}");
        }
        assert_eq!(read(&emails(), "[\"ann@example.com\"]").map(|(v, _)| v), Ok(json!(["ann@example.com"])));
        assert_eq!(read(&emails(), "[]").map(|(v, _)| v), Ok(json!([])));
    }

    #[test]
    fn a_list_cut_short_is_an_error_not_a_guess() {
        assert!(read(&Type::List(Box::new(Type::Text)), "[\"a\", \"b").is_err());
    }

    #[test]
    fn check_explains_what_was_found() {
        assert_eq!(check_type(&Type::Int, &json!("3")), Err("expected an int (a whole JSON number), found a string".into()));
        assert!(check_type(&label(&["a"]), &json!("b")).unwrap_err().contains("not one of the labels a"));
        assert!(check_type(&Type::List(Box::new(Type::Bool)), &json!([true, 1])).unwrap_err().starts_with("item 1:"));
        assert_eq!(check_type(&Type::Float, &json!(2)), Ok(()));
        assert!(check_type(&emails(), &json!(["nobody"])).unwrap_err().contains("item 0: `nobody` is not an e-mail address"));
    }
}
