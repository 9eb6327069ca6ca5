//! **Answer structure:** what a step's answer must look like, for the two ways a backend can
//! enforce it while decoding.
//!
//! - [`grammar`]: the whole answer after the answer prefix as one llguidance Lark grammar, in
//!   the template's own format (chat markers, a JSON object, `Name: value` lines), every
//!   output in order and each value in its type's language. The local backend decodes under
//!   it, so markers can never become values and one pass yields every field.
//! - [`schema`]: the outputs as one JSON Schema object (labels as an `enum`, constraints as
//!   `pattern`/`format`/lengths), what OpenAI-compatible servers take as structured output.
//!
//! Values are written as the prompt shows them in demos: in chat and completion answers text
//! is raw and everything else compact JSON; in JSON answers everything is JSON.

use serde_json::{json, Map, Value};

use super::adapter::{marker, title, ParseError, ParseProblem, Template, COMPLETED};
use crate::graph::{Field, TextRule, Type};
use crate::model::Grammar;

/// Text in a chat answer may not hold marker syntax, so a value can never swallow or fake a
/// field marker (`[[ ## name ## ]]`): no `[[`, `]]` or `##`.
const NO_MARKERS: &str = r"~/(?s:.*)(\[\[|\]\]|##)(?s:.*)/";

/// One JSON string, escapes allowed (RFC 8259).
const JSON_STRING: &str = r#"/"(\\(["\\\/bfnrt]|u[a-fA-F0-9]{4})|[^"\\\x00-\x1F\x7F])*"/"#;

/// A JSON number, and a JSON whole number.
const NUMBER: &str = r"/-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/";
const INTEGER: &str = r"/-?(0|[1-9][0-9]*)/";

/// The grammar of an answer to `outputs` in `template`, for the text after the answer
/// prefix of a constrained request ([`super::adapter::Request::constrained`]). `inputs` are
/// the step's bound values, which text constrained `from: FIELD` quotes.
pub fn grammar(template: Template, outputs: &[Field], inputs: &Map<String, Value>) -> Grammar {
    let mut g = Lark { inputs: inputs.clone(), ..Lark::default() };
    let mut start = Vec::new();
    match template {
        Template::Chat => {
            for (i, f) in outputs.iter().enumerate() {
                let after = match outputs.get(i + 1) {
                    Some(next) => format!("\n\n{}\n", marker(&next.name)),
                    None => format!("\n\n{COMPLETED}"),
                };
                start.push(g.raw_then(&f.ty, &after, true));
            }
        }
        Template::Completion => {
            for (i, f) in outputs.iter().enumerate() {
                let before = if i == 0 { " ".to_string() } else { format!("\n{}: ", title(&f.name)) };
                start.push(lit(&before));
                // Completion values are one line each: no newline inside a text.
                start.push(g.raw_then(&f.ty, "", false));
            }
        }
        Template::Json => {
            start.push(lit("{"));
            for (i, f) in outputs.iter().enumerate() {
                let key = format!("{}{}:", if i > 0 { "," } else { "" }, json_text(&f.name));
                start.push(lit(&key));
                start.push(g.json(&f.ty, false));
            }
            start.push(lit("}"));
        }
    }
    g.rules.insert(0, format!("start: {}", start.join(" ")));
    Grammar::lark(g.rules.join("\n"))
}

/// Checks what `from: FIELD` promises of an answer: every such value occurs in that input,
/// as written there. (A grammar guarantees it locally; endpoints can't be told.)
pub fn check_sources(outputs: &[Field], values: &Map<String, Value>, inputs: &Map<String, Value>) -> Result<(), ParseError> {
    fn walk(ty: &Type, v: &Value, inputs: &Map<String, Value>) -> Result<(), String> {
        match (ty, v) {
            (Type::Constrained(rule), Value::String(s)) => match rule.source() {
                Some(src) if !inputs.get(src).map(super::value::render).unwrap_or_default().contains(s.as_str()) => {
                    Err(format!("`{}` does not occur in `{src}`", s.chars().take(60).collect::<String>()))
                }
                _ => Ok(()),
            },
            (Type::List(inner), Value::Array(items)) => items.iter().try_for_each(|i| walk(inner, i, inputs)),
            _ => Ok(()),
        }
    }
    for f in outputs {
        if let Some(v) = values.get(&f.name) {
            walk(&f.ty, v, inputs).map_err(|reason| ParseError { field: f.name.clone(), problem: ParseProblem::Invalid(reason) })?;
        }
    }
    Ok(())
}

/// The JSON Schema of an answer object holding `outputs` (every field required, in order,
/// nothing else).
pub fn schema(outputs: &[Field]) -> Value {
    let properties: Map<String, Value> = outputs.iter().map(|f| (f.name.clone(), type_schema(&f.ty))).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": outputs.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        "additionalProperties": false,
    })
}

/// The JSON Schema of one type.
pub fn type_schema(ty: &Type) -> Value {
    match ty {
        Type::Text => json!({"type": "string"}),
        Type::Constrained(rule) => {
            let mut s = json!({"type": "string"});
            if let Some(p) = rule.pattern().map(str::to_string).or_else(|| rule.format().map(|f| f.pattern())) {
                s["pattern"] = json!(format!("^(?:{p})$"));
            }
            if let Some(f) = rule.format() {
                s["format"] = json!(f.json_schema_name());
            }
            if let Some(n) = rule.min_length() {
                s["minLength"] = json!(n);
            }
            if let Some(n) = rule.max_length() {
                s["maxLength"] = json!(n);
            }
            s
        }
        Type::Int => json!({"type": "integer"}),
        Type::Float => json!({"type": "number"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Json => json!({}),
        Type::Label(labels) => json!({"type": "string", "enum": labels}),
        Type::List(inner) => json!({"type": "array", "items": type_schema(inner)}),
    }
}

/// A Lark grammar under construction: rules and terminals, named by a counter.
#[derive(Default)]
struct Lark {
    rules: Vec<String>,
    next: usize,
    /// The step's inputs, for `from: FIELD`.
    inputs: Map<String, Value>,
}

/// A Lark string literal.
fn lit(text: &str) -> String {
    json_text(text)
}

/// `text` as a JSON string (also Lark's string literal syntax).
fn json_text(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// A pattern as a Lark regex literal: `/` escaped, escape pairs kept whole.
fn regex(pattern: &str) -> String {
    let mut out = String::from("/");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out.push('/');
    out
}

impl Lark {
    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn terminal(&mut self, body: String) -> String {
        let name = self.name("T");
        self.rules.push(format!("{name}: {body}"));
        name
    }

    fn rule(&mut self, body: String) -> String {
        let name = self.name("r");
        self.rules.push(format!("{name}: {body}"));
        name
    }

    /// A value written raw (chat and completion answers) followed by the literal `after`, as
    /// one symbol. Text and its constraints become one terminal with `after` inside it, so the
    /// lexer never has to guess where a text ends; JSON-written types are rules.
    fn raw_then(&mut self, ty: &Type, after: &str, multiline: bool) -> String {
        let tail = if after.is_empty() { String::new() } else { format!(" {}", lit(after)) };
        let text_body = |rule: Option<&TextRule>| -> String {
            let base = if multiline { format!("/(?s:.*)/ & {NO_MARKERS}") } else { "/[^\\n]*/".to_string() };
            match rule {
                None => base,
                Some(r) => format!("{base} & {}", rule_terminal(r, &self.inputs)),
            }
        };
        match ty {
            Type::Text | Type::Constrained(_) => {
                let rule = match ty {
                    Type::Constrained(r) => Some(r),
                    _ => None,
                };
                let value = self.terminal(text_body(rule));
                self.terminal(format!("{value}{tail}"))
            }
            Type::Int => self.terminal(format!("{INTEGER}{tail}")),
            Type::Float => self.terminal(format!("{NUMBER}{tail}")),
            Type::Bool => self.terminal(format!("(\"true\" | \"false\"){tail}")),
            Type::Label(labels) => {
                let alts: Vec<String> = labels.iter().map(|l| lit(l)).collect();
                self.terminal(format!("({}){tail}", alts.join(" | ")))
            }
            Type::List(_) | Type::Json => {
                let value = self.json(ty, multiline);
                self.rule(format!("{value}{tail}"))
            }
        }
    }

    /// A value written as compact JSON. In a chat answer (`chat`) its strings hold no marker
    /// syntax.
    fn json(&mut self, ty: &Type, chat: bool) -> String {
        match ty {
            Type::Text if chat => self.terminal(format!("{JSON_STRING} & {NO_MARKERS}")),
            Type::Text => self.terminal(JSON_STRING.to_string()),
            // A constrained string is written without escapes: its characters are its value, so
            // the constraints apply to them as they stand.
            Type::Constrained(r) => {
                let body = self.terminal(format!("/[^\"\\\\\\x00-\\x1F\\x7F]*/ & {}", rule_terminal(r, &self.inputs)));
                self.terminal(format!("\"\\\"\" {body} \"\\\"\""))
            }
            Type::Int => self.terminal(INTEGER.to_string()),
            Type::Float => self.terminal(NUMBER.to_string()),
            Type::Bool => self.terminal("\"true\" | \"false\"".to_string()),
            Type::Label(labels) => {
                let alts: Vec<String> = labels.iter().map(|l| lit(&json_text(l))).collect();
                self.terminal(alts.join(" | "))
            }
            Type::List(inner) => {
                let item = self.json(inner, chat);
                self.rule(format!("\"[\" ({item} (\",\" {item})*)? \"]\""))
            }
            Type::Json => self.rule("%json { \"x-guidance\": { \"whitespace_flexible\": false } }".to_string()),
        }
    }
}

/// A text rule's constraints as one terminal expression: its regexes, length and source,
/// intersected. Text quoted `from` an input is a run of that input's words (a value can't
/// start or end inside a word).
fn rule_terminal(rule: &TextRule, inputs: &Map<String, Value>) -> String {
    let mut parts: Vec<String> = rule.regexes().iter().map(|p| regex(&format!("(?:{p})"))).collect();
    if let Some(src) = rule.source() {
        let text = inputs.get(src).map(super::value::render).unwrap_or_default();
        parts.push(format!("%regex {{ \"substring_words\": {} }}", json_text(&text)));
    }
    if rule.min_length().is_some() || rule.max_length().is_some() {
        let min = rule.min_length().unwrap_or(0);
        let max = rule.max_length().map(|m| m.to_string()).unwrap_or_default();
        parts.push(format!("/(?s:.{{{min},{max}}})/"));
    }
    if parts.is_empty() {
        "/(?s:.*)/".into()
    } else {
        parts.join(" & ")
    }
}

#[cfg(test)]
#[path = "structure_tests.rs"]
mod tests;
