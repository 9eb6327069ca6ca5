//! Semantic tokens: every word, string, number and comment of a file with what it is, so an
//! editor colours a step as a step and a signature as a signature (TextMate grammars see
//! only the text). Names are classified from the index; the rest from the tokens.

use std::collections::HashMap;

use lsp_types::{SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokensLegend};

use super::analysis::Analysis;
use super::catalog;
use super::index::SymbolKind;
use super::lexer::{is_keyword, TokenKind};
use super::position::Positions;
use crate::syntax::Span;

/// The token types, in the legend's order.
const TYPES: [SemanticTokenType; 14] = [
    SemanticTokenType::KEYWORD,
    SemanticTokenType::TYPE,
    SemanticTokenType::STRING,
    SemanticTokenType::NUMBER,
    SemanticTokenType::COMMENT,
    SemanticTokenType::FUNCTION,
    SemanticTokenType::INTERFACE,
    SemanticTokenType::METHOD,
    SemanticTokenType::CLASS,
    SemanticTokenType::PARAMETER,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::ENUM_MEMBER,
    SemanticTokenType::EVENT,
    SemanticTokenType::VARIABLE,
];

/// What a token is; as a number, its index in the legend the server announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Class {
    /// A keyword.
    Keyword,
    /// A type name.
    Type,
    /// A string literal.
    Str,
    /// A number literal.
    Number,
    /// A comment.
    Comment,
    /// A step, a metric, or a built-in function.
    Function,
    /// A signature.
    Interface,
    /// A tool.
    Method,
    /// A model.
    Class,
    /// An input, or a tool parameter.
    Parameter,
    /// An output or a signature field.
    Property,
    /// A label, or a feedback key.
    EnumMember,
    /// An example.
    Event,
    /// Any other name.
    Variable,
}

/// The modifier bits, in the legend's order.
const MODIFIERS: [SemanticTokenModifier; 2] = [SemanticTokenModifier::DECLARATION, SemanticTokenModifier::DEFAULT_LIBRARY];
const DECLARATION: u32 = 1;
const DEFAULT_LIBRARY: u32 = 2;

/// The legend the server announces.
pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend { token_types: TYPES.to_vec(), token_modifiers: MODIFIERS.to_vec() }
}

fn class_of(kind: SymbolKind) -> Class {
    match kind {
        SymbolKind::Input | SymbolKind::ToolParam => Class::Parameter,
        SymbolKind::Output | SymbolKind::SigInput | SymbolKind::SigOutput => Class::Property,
        SymbolKind::Step | SymbolKind::Metric => Class::Function,
        SymbolKind::Signature => Class::Interface,
        SymbolKind::Tool => Class::Method,
        SymbolKind::Model => Class::Class,
        SymbolKind::Feedback => Class::EnumMember,
        SymbolKind::Example => Class::Event,
    }
}

/// Every classified token of `a`, as byte spans (one line or many), in order.
pub fn classify(a: &Analysis) -> Vec<(Span, Class, u32)> {
    let mut names: HashMap<usize, (Class, u32)> = HashMap::new();
    for s in &a.index.symbols {
        names.insert(s.def.start, (class_of(s.kind), DECLARATION));
    }
    for r in &a.index.references {
        names.insert(r.span.start, (class_of(a.index.symbols[r.symbol].kind), 0));
    }
    let builtin = |w: &str| [&catalog::METRIC_FUNCTIONS[..], &catalog::OPTIMIZERS, &catalog::PROVIDERS].iter().any(|t| t.iter().any(|(n, _)| *n == w));
    let mut out = Vec::with_capacity(a.tokens.len());
    // Inside `label(...)`, words are labels.
    let mut in_label = false;
    for (i, t) in a.tokens.iter().enumerate() {
        let text = t.text(&a.text);
        let (class, mods) = match t.kind {
            TokenKind::Comment => (Class::Comment, 0),
            TokenKind::Str => (Class::Str, 0),
            TokenKind::Number => (Class::Number, 0),
            TokenKind::Punct(')') => {
                in_label = false;
                continue;
            }
            TokenKind::Punct(_) | TokenKind::Arrow | TokenKind::DotDot => continue,
            TokenKind::Word => {
                if let Some(&(class, mods)) = names.get(&t.span.start) {
                    (class, mods)
                } else if in_label {
                    (Class::EnumMember, 0)
                } else if text == "label" && a.tokens.get(i + 1).is_some_and(|n| n.is('(')) {
                    in_label = true;
                    (Class::Type, DEFAULT_LIBRARY)
                } else if is_keyword(text) {
                    (Class::Keyword, 0)
                } else if catalog::TYPES.iter().any(|(n, _)| *n == text) {
                    (Class::Type, DEFAULT_LIBRARY)
                } else if builtin(text) {
                    (Class::Function, DEFAULT_LIBRARY)
                } else {
                    (Class::Variable, 0)
                }
            }
        };
        out.push((t.span, class, mods));
    }
    out
}

/// The semantic tokens of `a`, encoded for the protocol (relative positions, one line each).
pub fn encode(a: &Analysis, positions: &Positions<'_>) -> Vec<SemanticToken> {
    let mut out = Vec::new();
    let (mut prev_line, mut prev_start) = (0u32, 0u32);
    for (span, class, mods) in classify(a) {
        // A token over several lines (a `"""` string) becomes one token per line.
        let mut start = span.start;
        while start < span.end {
            let line_end = a.text[start..span.end].find('\n').map_or(span.end, |i| start + i);
            if line_end > start {
                let from = positions.position(start);
                let to = positions.position(line_end);
                let delta_line = from.line - prev_line;
                let delta_start = if delta_line == 0 { from.character - prev_start } else { from.character };
                out.push(SemanticToken {
                    delta_line,
                    delta_start,
                    length: to.character - from.character,
                    token_type: class as u32,
                    token_modifiers_bitset: mods,
                });
                (prev_line, prev_start) = (from.line, from.character);
            }
            start = line_end + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::position::Encoding;

    #[test]
    fn names_are_classified_by_what_they_declare() {
        let src = "program p // note\ninput t: text\noutput c: label(a, b)\nsignature S { in t: text out c: label(a, b) }\nstep s = predict S { t: input.t }\nreturn { c: s.c }\n";
        let a = Analysis::new(src.into());
        let classes: Vec<(&str, Class, u32)> = classify(&a).into_iter().map(|(s, c, m)| (&src[s.range()], c, m)).collect();
        assert!(classes.contains(&("// note", Class::Comment, 0)));
        assert!(classes.contains(&("S", Class::Interface, DECLARATION)));
        assert!(classes.contains(&("s", Class::Function, DECLARATION)));
        assert!(classes.contains(&("predict", Class::Keyword, 0)));
        assert!(classes.contains(&("a", Class::EnumMember, 0)));
        assert!(classes.contains(&("text", Class::Type, DEFAULT_LIBRARY)));
        let step_ref = classes.iter().filter(|(w, c, _)| *w == "s" && *c == Class::Function).count();
        assert_eq!(step_ref, 2, "the declaration and `s.c`");
    }

    #[test]
    fn a_string_over_lines_becomes_a_token_per_line() {
        let src = "program p \"\"\"\n  one\n  two\n\"\"\"\n";
        let a = Analysis::new(src.into());
        let positions = Positions::new(&a.text, &a.lines, Encoding::Utf16);
        let tokens = encode(&a, &positions);
        let strings: Vec<&SemanticToken> = tokens.iter().filter(|t| t.token_type == Class::Str as u32).collect();
        assert_eq!(strings.len(), 4);
        assert_eq!((strings[1].delta_line, strings[1].delta_start, strings[1].length), (1, 0, 5));
    }
}
