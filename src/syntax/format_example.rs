//! The canonical layout of an `example` block (see [`format`](super::format)):
//!
//! ```text
//! example refund "a double charge" held_out {
//!   input { ticket: "I was charged twice" }
//!   output { category: billing }
//! }
//! ```
//!
//! A part that does not fit on its line, or holds text over several lines (written as a
//! `"""` string), gets one entry per line.

use super::ast::{Binding, ExampleDecl, ValueKind};
use super::format::{is_ident, value};
use super::strings::{quote, quote_multiline};

/// Lines longer than this are broken one entry per line (as in the rest of the file).
const WIDTH: usize = 100;

/// Writes `e` as source, without a trailing newline.
pub(super) fn example(e: &ExampleDecl) -> String {
    let mut s = format!("example {}", e.name.name);
    if let Some(d) = &e.description {
        s.push(' ');
        s.push_str(&quote_multiline(&d.value, ""));
    }
    if e.held_out.is_some() {
        s.push_str(" held_out");
    }
    s.push_str(" {\n");
    s.push_str(&part("input", &e.inputs));
    if e.outputs_span.is_some() {
        s.push_str(&part("output", &e.outputs));
    }
    s.push('}');
    s
}

/// `  KEYWORD { a: x, b: y }\n`, or one entry per line.
fn part(keyword: &str, bindings: &[Binding]) -> String {
    if bindings.is_empty() {
        return format!("  {keyword} {{}}\n");
    }
    let one_line: Vec<String> = bindings.iter().map(|b| format!("{}: {}", b.name.name, value(&b.value))).collect();
    let line = format!("  {keyword} {{ {} }}\n", one_line.join(", "));
    let multiline_text = bindings.iter().any(|b| matches!(&b.value.kind, ValueKind::Str(s) if s.contains('\n')));
    if line.len() <= WIDTH + 1 && !multiline_text {
        return line;
    }
    let mut out = format!("  {keyword} {{\n");
    for b in bindings {
        out.push_str("    ");
        out.push_str(&b.name.name);
        out.push_str(": ");
        match &b.value.kind {
            ValueKind::Str(s) => out.push_str(&quote_multiline(s, "    ")),
            _ => out.push_str(&value(&b.value)),
        }
        out.push_str(",\n");
    }
    out.push_str("  }\n");
    out
}

/// How a label value is best written in an example: bare when it is a name, else quoted.
pub fn label_literal(label: &str) -> String {
    if is_ident(label) {
        label.to_string()
    } else {
        quote(label)
    }
}

#[cfg(test)]
mod tests {
    use crate::syntax::{format_source, parse};

    #[test]
    fn examples_format_to_one_line_parts_and_back() {
        let src = "program p\ninput t: text\noutput c: label(a, b)\nexample  one \"first\"  held_out{input{t:\"x\"}output{c:a}}\n";
        let out = format_source(src).unwrap();
        assert_eq!(out, "program p\n\ninput t: text\noutput c: label(a, b)\n\nexample one \"first\" held_out {\n  input { t: \"x\" }\n  output { c: a }\n}\n");
        assert_eq!(parse(&out).unwrap(), parse(src).unwrap());
        assert_eq!(format_source(&out).unwrap(), out, "idempotent");
    }

    #[test]
    fn multiline_text_in_an_example_is_written_as_a_long_string() {
        let src = "program p\ninput t: text\noutput c: text\nexample e { input { t: \"line one\\nline two\" } }\n";
        let out = format_source(src).unwrap();
        assert!(out.contains("  input {\n    t: \"\"\"\n        line one\n        line two\n    \"\"\",\n  }\n"), "{out}");
        assert_eq!(parse(&out).unwrap(), parse(src).unwrap());
        assert_eq!(format_source(&out).unwrap(), out);
    }
}
