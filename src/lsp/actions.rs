//! Code actions: the fixes the checker already knows. A diagnostic whose hint says "did you
//! mean `X`?" points at the misspelt name (an unknown step, field, setting, keyword, label…),
//! so replacing the text it points at with `X` is the fix.

use super::analysis::Analysis;
use crate::syntax::{Diagnostic, Span};

/// One fix: replace `span` with `replacement`, resolving the diagnostic at `diagnostic`
/// (an index into the analysis's diagnostics).
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    /// What the editor shows.
    pub title: String,
    /// What to replace.
    pub span: Span,
    /// What to write there.
    pub replacement: String,
    /// The diagnostic it fixes.
    pub diagnostic: usize,
}

/// The suggestion of a "did you mean `X`?" hint.
fn suggestion(d: &Diagnostic) -> Option<&str> {
    d.hints.iter().find_map(|h| h.strip_prefix("did you mean `")?.strip_suffix("`?"))
}

/// The fixes for the diagnostics that overlap `range`.
pub fn fixes(a: &Analysis, range: Span) -> Vec<Fix> {
    let mut out = Vec::new();
    for (i, d) in a.diagnostics.iter().enumerate() {
        if d.span.end < range.start || d.span.start > range.end {
            continue;
        }
        let Some(replacement) = suggestion(d) else { continue };
        let Some(written) = a.text.get(d.span.range()) else { continue };
        // Only a diagnostic that points at exactly one word can be fixed by replacing it.
        let one_word = !written.is_empty() && written.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '"' || c == ' ');
        if !one_word || written == replacement {
            continue;
        }
        // A label written in quotes keeps its quotes.
        let replacement = if written.starts_with('"') { crate::syntax::quote(replacement) } else { replacement.to_string() };
        out.push(Fix { title: format!("Change `{written}` to `{replacement}`"), span: d.span, replacement, diagnostic: i });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(src: &str) -> Vec<String> {
        let a = Analysis::new(src.into());
        fixes(&a, Span::new(0, src.len()))
            .into_iter()
            .map(|f| {
                let mut text = src.to_string();
                text.replace_range(f.span.range(), &f.replacement);
                text
            })
            .collect()
    }

    #[test]
    fn a_misspelt_step_is_fixed_by_the_checkers_suggestion() {
        let src = "program p\ninput t: text\noutput c: text\nsignature S { in t: text out c: text }\nstep classify = predict S { t: input.t }\nreturn { c: clasify.c }\n";
        let fixed = fixed(src);
        assert_eq!(fixed.len(), 1);
        assert!(fixed[0].contains("return { c: classify.c }"));
        assert!(crate::graph::check_text(&fixed[0]).dag.is_some());
    }

    #[test]
    fn misspelt_keywords_settings_and_labels_are_fixed_too() {
        let src = "program p\ninput t: text\noutput c: label(billing, bug)\nreturn { c: \"x\" }\nmodel m = onnx(\"x\") { temprature: 0.5 }\n";
        assert!(fixed(src).iter().any(|t| t.contains("{ temperature: 0.5 }")));
        let src = "program p\ninput t: text\noutput c: label(billing, bug)\nexample e { input { t: \"x\" } output { c: biling } }\n";
        assert!(fixed(src).iter().any(|t| t.contains("output { c: billing }")));
        let src = "program p\nstpe s = predict S {}\n";
        assert!(fixed(src).iter().any(|t| t.contains("step s")), "{:?}", fixed(src));
    }
}
