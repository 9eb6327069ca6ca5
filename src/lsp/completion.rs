//! Completion: what may be written at the cursor. The context comes from the tokens before
//! the cursor (the file is usually half-typed, so it rarely parses), the names from the
//! latest index that exists: keywords at the start of an item, types after `:`, step kinds,
//! signatures and tools after `=`, a step's unbound slots from its signature, `input.` and
//! `STEP.` members, label values in examples, the settings of models, tools and optimizers,
//! metric functions, optimizers and providers.

use std::collections::HashSet;

use super::analysis::Analysis;
use super::catalog::{self, Entry};
use super::index::{Index, SymbolKind};
use super::lexer::{Token, TokenKind, ITEM_KEYWORDS};
use crate::syntax::ast::StepKind;
use crate::syntax::label_literal;

/// What a completion stands for, which editors show as an icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A keyword.
    Keyword,
    /// A type.
    Type,
    /// A step.
    Step,
    /// A signature.
    Signature,
    /// A tool.
    Tool,
    /// A model, or a provider.
    Model,
    /// A metric, or a metric function.
    Function,
    /// A field of a signature, step, input or output.
    Field,
    /// A label value.
    Label,
    /// A setting of a block.
    Setting,
    /// A literal value or other name.
    Value,
}

/// One completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The text shown, and inserted.
    pub label: String,
    /// What it is.
    pub kind: Kind,
    /// A short note shown beside it (a type, say).
    pub detail: Option<String>,
    /// Documentation.
    pub doc: Option<String>,
}

impl Completion {
    fn new(label: impl Into<String>, kind: Kind) -> Self {
        Completion { label: label.into(), kind, detail: None, doc: None }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn doc(mut self, doc: &str) -> Self {
        self.doc = Some(doc.to_string());
        self
    }
}

fn entries(list: &[Entry], kind: Kind) -> Vec<Completion> {
    list.iter().map(|(w, d)| Completion::new(*w, kind).doc(d)).collect()
}

/// The completions at byte `offset` of `a`'s text, with names from `names` (the index of the
/// latest version of the file that parsed).
pub fn complete(a: &Analysis, names: &Index, offset: usize) -> Vec<Completion> {
    let text = a.text.as_str();
    // The word being typed is replaced by the completion; the context is what stands before it.
    let mut end = a.tokens.partition_point(|t| t.span.end <= offset);
    if let Some(t) = a.tokens.get(end) {
        if t.span.start < offset && matches!(t.kind, TokenKind::Str | TokenKind::Comment) {
            return Vec::new();
        }
    }
    if end > 0 {
        let last = a.tokens[end - 1];
        if last.kind == TokenKind::Word && last.span.end == offset {
            end -= 1;
        } else if matches!(last.kind, TokenKind::Comment) && !text[last.span.end..offset].contains('\n') {
            return Vec::new();
        }
    }
    let cx = Context::new(a, end, offset);
    cx.completions(names)
}

/// Where the cursor stands, from the tokens before it.
struct Context<'a> {
    text: &'a str,
    before: &'a [Token],
    /// The index (into `before`) of the keyword that starts the current item.
    item: Option<usize>,
    /// Open brackets (character and token index), innermost last.
    open: Vec<(char, usize)>,
    /// Whether only whitespace stands between the line's start and the word being typed.
    line_start: bool,
}

impl<'a> Context<'a> {
    fn new(a: &'a Analysis, end: usize, offset: usize) -> Context<'a> {
        let before = &a.tokens[..end];
        let mut open: Vec<(char, usize)> = Vec::new();
        let mut item = None;
        for (i, t) in before.iter().enumerate() {
            match t.kind {
                TokenKind::Punct(c @ ('{' | '(' | '[')) => open.push((c, i)),
                TokenKind::Punct('}' | ')' | ']') => {
                    open.pop();
                }
                TokenKind::Word if open.is_empty() && ITEM_KEYWORDS.contains(&t.text(&a.text)) && !(i > 0 && before[i - 1].is('.')) => {
                    item = Some(i);
                }
                _ => {}
            }
        }
        let word_start =
            before.last().map_or(0, |t| t.span.end).max(a.text[..offset].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1));
        let line = &a.text[a.text[..word_start].rfind('\n').map_or(0, |i| i + 1)..word_start];
        Context { text: &a.text, before, item, open, line_start: line.trim().is_empty() }
    }

    fn word(&self, i: usize) -> &'a str {
        self.before.get(i).filter(|t| t.kind == TokenKind::Word).map_or("", |t| t.text(self.text))
    }

    fn last(&self) -> Option<Token> {
        self.before.last().copied()
    }

    fn last_is(&self, c: char) -> bool {
        self.last().is_some_and(|t| t.is(c))
    }

    fn item_keyword(&self) -> &'a str {
        self.item.map_or("", |i| self.word(i))
    }

    fn completions(&self, names: &Index) -> Vec<Completion> {
        let n = self.before.len();
        // `input.`, `output.`, `example.`, `STEP.`
        if n >= 2 && self.last_is('.') && self.before[n - 2].kind == TokenKind::Word {
            return members(self.word(n - 2), self.item_keyword(), names);
        }
        if self.last().is_some_and(|t| t.is('<')) {
            return types();
        }
        match self.open.last() {
            None => self.top_level(names),
            Some(&(bracket, at)) => self.inside(bracket, at, names),
        }
    }

    /// At depth 0: an item's keyword or the words of its head.
    fn top_level(&self, names: &Index) -> Vec<Completion> {
        let last = self.last();
        let last_word = last.filter(|t| t.kind == TokenKind::Word).map_or("", |t| t.text(self.text));
        let item = self.item_keyword();
        let after_head = self.item.map_or(0, |i| self.before.len() - i);
        let mut out = match item {
            "input" | "output" | "feedback" if self.last_is(':') => types(),
            "step" if self.last_is('=') => entries(&catalog::STEP_KINDS, Kind::Keyword),
            "step" if last_word == "predict" || last_word == "chain_of_thought" => symbols(names, SymbolKind::Signature, Kind::Signature),
            "step" if last_word == "call" => symbols(names, SymbolKind::Tool, Kind::Tool),
            "step" if last_word == "using" => symbols(names, SymbolKind::Model, Kind::Model),
            "step" if self.last_is('}') => vec![Completion::new("using", Kind::Keyword).doc(catalog::KEYWORDS[5].1)],
            "model" if self.last_is('=') => entries(&catalog::PROVIDERS, Kind::Model),
            "tool" if last.is_some_and(|t| t.kind == TokenKind::Arrow) => types(),
            "tool" if self.last_is('=') => entries(&catalog::TOOL_KINDS, Kind::Keyword),
            "tool" if last_word == "http" => catalog::METHODS.iter().map(|m| Completion::new(*m, Kind::Keyword)).collect(),
            "metric" if self.last_is('=') => entries(&catalog::METRIC_FUNCTIONS, Kind::Function),
            "optimize" if after_head == 1 => entries(&catalog::OPTIMIZERS, Kind::Function),
            "memory" if after_head == 1 => symbols(names, SymbolKind::Step, Kind::Step),
            "example" if (2..=3).contains(&after_head) && last_word != "held_out" => {
                vec![Completion::new("held_out", Kind::Keyword).doc(catalog::KEYWORDS[8].1)]
            }
            _ => Vec::new(),
        };
        if self.line_start && out.iter().all(|c| c.kind != Kind::Keyword || c.label == "using") {
            out.extend(entries(&catalog::ITEMS[1..], Kind::Keyword));
            if self.item.is_none() {
                out = entries(&catalog::ITEMS[..1], Kind::Keyword);
            }
        }
        out
    }

    /// Inside brackets opened at token `at`.
    fn inside(&self, bracket: char, at: usize, names: &Index) -> Vec<Completion> {
        let item = self.item_keyword();
        // What stands since the start of the current entry (after the bracket or a comma).
        let entry_start = self.before[at + 1..].iter().rposition(|t| t.is(',')).map_or(at + 1, |p| at + 1 + p + 1);
        let entry = &self.before[entry_start..];
        let key_position = entry.is_empty();
        let value_of = match entry {
            [k, c] if k.kind == TokenKind::Word && c.is(':') => Some(k.text(self.text)),
            _ => None,
        };
        let opener = if at > 0 { self.word(at - 1) } else { "" };
        let given: HashSet<&str> =
            self.before[at + 1..].windows(2).filter(|w| w[0].kind == TokenKind::Word && w[1].is(':')).map(|w| w[0].text(self.text)).collect();
        match (item, bracket) {
            ("signature", '{') if self.last_is(':') => types(),
            ("signature", '{') if self.line_start || key_position => entries(&catalog::KEYWORDS[..2], Kind::Keyword),
            ("tool", '(') if self.last_is(':') => types(),
            ("tool", '[') | ("model", '(') => Vec::new(),
            ("step", '{') if key_position => {
                let (kind, target) = (self.word(at.saturating_sub(2)), opener);
                slots(names, kind, target, &given)
            }
            ("step" | "return", '{') if value_of.is_some() => sources(names),
            ("return", '{') if key_position => fields(names, SymbolKind::Output, None, &given),
            ("model", '{') if key_position => {
                let openai = self.before[..at].iter().any(|t| t.kind == TokenKind::Word && t.text(self.text) == "openai");
                let mut out = entries(&catalog::MODEL_SETTINGS, Kind::Setting);
                if openai {
                    out.extend(entries(&catalog::OPENAI_SETTINGS, Kind::Setting));
                }
                unset(out, &given)
            }
            ("tool", '{') if key_position => {
                let command = self.before[..at].iter().any(|t| t.kind == TokenKind::Word && t.text(self.text) == "command");
                unset(entries(if command { &catalog::COMMAND_SETTINGS } else { &catalog::HTTP_SETTINGS }, Kind::Setting), &given)
            }
            ("optimize", '{') if key_position => unset(entries(&catalog::OPTIMIZER_SETTINGS, Kind::Setting), &given),
            ("optimize", '{') => match value_of {
                Some("metric") => symbols(names, SymbolKind::Metric, Kind::Function),
                Some("teacher") => symbols(names, SymbolKind::Model, Kind::Model),
                Some("retrieval") => booleans(),
                _ => Vec::new(),
            },
            ("memory", '{') if key_position => unset(entries(&catalog::MEMORY_SETTINGS, Kind::Setting), &given),
            ("memory", '{') if value_of == Some("approved") => booleans(),
            ("optimize", '[') if self.open.len() == 2 => catalog::TEMPLATES.iter().map(|t| Completion::new(*t, Kind::Value)).collect(),
            ("metric", '(') => {
                let first_arg = entry_start == at + 1;
                match (opener, key_position) {
                    ("judge", true) if first_arg => symbols(names, SymbolKind::Signature, Kind::Signature),
                    ("judge", true) => {
                        let sig = self.word(at + 1);
                        let sig = names.find(SymbolKind::Signature, None, sig);
                        let mut out = sig.map_or_else(Vec::new, |s| fields(names, SymbolKind::SigInput, Some(s), &given));
                        out.extend(metric_roots());
                        out
                    }
                    ("numeric", true) if !first_arg => {
                        let mut out = metric_roots();
                        out.push(Completion::new("tolerance", Kind::Setting).doc("The allowed difference."));
                        out
                    }
                    _ if key_position || value_of.is_some() => metric_roots(),
                    _ => Vec::new(),
                }
            }
            ("example", '{') if self.open.len() == 1 => {
                let has_input = self.before[at..].iter().any(|t| t.kind == TokenKind::Word && t.text(self.text) == "input");
                let has_output = self.before[at..].iter().any(|t| t.kind == TokenKind::Word && t.text(self.text) == "output");
                let mut out = Vec::new();
                if !has_input {
                    out.push(Completion::new("input", Kind::Keyword).doc("`input { FIELD: VALUE, ... }`: a value for every program input."));
                } else if !has_output {
                    out.push(Completion::new("output", Kind::Keyword).doc("`output { FIELD: VALUE, ... }`: the outputs the example expects."));
                }
                out
            }
            ("example", '{') => {
                let kind = match opener {
                    "input" => SymbolKind::Input,
                    "output" => SymbolKind::Output,
                    _ => return Vec::new(),
                };
                if key_position {
                    return fields(names, kind, None, &given);
                }
                match value_of.and_then(|f| names.find(kind, None, f)) {
                    Some(id) => {
                        let field = &names.symbols[id];
                        if !field.labels.is_empty() {
                            field.labels.iter().map(|l| Completion::new(label_literal(l), Kind::Label).detail(field.ty.clone().unwrap_or_default())).collect()
                        } else if field.ty.as_deref() == Some("bool") {
                            booleans()
                        } else {
                            Vec::new()
                        }
                    }
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
}

/// The members after `ROOT.`.
fn members(root: &str, item: &str, names: &Index) -> Vec<Completion> {
    let none = HashSet::new();
    match (root, item) {
        ("input", _) => fields(names, SymbolKind::Input, None, &none),
        ("output", "metric") => fields(names, SymbolKind::Output, None, &none),
        ("example", "metric") => {
            let mut out = fields(names, SymbolKind::Output, None, &none);
            out.extend(fields(names, SymbolKind::Input, None, &none));
            out
        }
        (step, _) => match names.find(SymbolKind::Step, None, step) {
            Some(id) => {
                let s = &names.symbols[id];
                names.step_outputs(s).into_iter().map(|(name, ty, _)| Completion::new(name, Kind::Field).detail(ty)).collect()
            }
            None => Vec::new(),
        },
    }
}

/// The slots of a step's target (signature inputs or tool parameters) not yet bound.
fn slots(names: &Index, kind: &str, target: &str, given: &HashSet<&str>) -> Vec<Completion> {
    let (target_kind, slot_kind) =
        if kind == StepKind::Call.keyword() { (SymbolKind::Tool, SymbolKind::ToolParam) } else { (SymbolKind::Signature, SymbolKind::SigInput) };
    match names.find(target_kind, None, target) {
        Some(t) => fields(names, slot_kind, Some(t), given),
        None => Vec::new(),
    }
}

/// Declared fields of `kind` (under `parent`) not in `given`, with their types.
fn fields(names: &Index, kind: SymbolKind, parent: Option<usize>, given: &HashSet<&str>) -> Vec<Completion> {
    names
        .all(kind, parent)
        .filter(|(_, s)| !given.contains(s.name.as_str()))
        .map(|(_, s)| {
            let c = Completion::new(s.name.clone(), Kind::Field);
            match &s.ty {
                Some(ty) => c.detail(ty.clone()),
                None => c,
            }
        })
        .collect()
}

/// Every declared name of `kind`.
fn symbols(names: &Index, kind: SymbolKind, as_kind: Kind) -> Vec<Completion> {
    names.all(kind, None).map(|(_, s)| Completion::new(s.name.clone(), as_kind).detail(kind.noun())).collect()
}

/// Where a step's slot or an output can take its value from: `input` and the steps.
fn sources(names: &Index) -> Vec<Completion> {
    let mut out = vec![Completion::new("input", Kind::Keyword).doc("`input.FIELD`: a program input.")];
    out.extend(names.all(SymbolKind::Step, None).map(|(_, s)| Completion::new(s.name.clone(), Kind::Step).detail("step")));
    out
}

fn metric_roots() -> Vec<Completion> {
    vec![
        Completion::new("output", Kind::Keyword).doc("`output.FIELD`: an output of the run being scored."),
        Completion::new("example", Kind::Keyword).doc("`example.FIELD`: a field of the dataset example."),
    ]
}

fn types() -> Vec<Completion> {
    entries(&catalog::TYPES, Kind::Type)
}

fn booleans() -> Vec<Completion> {
    vec![Completion::new("true", Kind::Value), Completion::new("false", Kind::Value)]
}

/// `settings` without the ones already written.
fn unset(settings: Vec<Completion>, given: &HashSet<&str>) -> Vec<Completion> {
    settings.into_iter().filter(|c| !given.contains(c.label.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "program p\ninput ticket: text\ninput urgent: bool\noutput category: label(billing, \"bug report\")\n\
        signature Classify { in ticket: text in urgent: bool out category: label(billing, \"bug report\") }\n\
        step classify = chain_of_thought Classify { ticket: input.ticket, urgent: input.urgent }\n\
        return { category: classify.category }\n\
        metric ok = exact(output.category, example.category)\n";

    /// The labels completed where `|` stands in `text` (added to the good program).
    fn at(text: &str) -> Vec<String> {
        let names = Analysis::new(GOOD.into()).index;
        let full = format!("{GOOD}{text}");
        let offset = full.find('|').unwrap();
        let full = full.replace('|', "");
        let a = Analysis::new(full);
        complete(&a, &names, offset).into_iter().map(|c| c.label).collect()
    }

    #[test]
    fn item_keywords_start_a_line() {
        let got = at("\nst|");
        assert!(got.contains(&"step".to_string()) && got.contains(&"example".to_string()), "{got:?}");
    }

    #[test]
    fn types_follow_a_colon() {
        assert!(at("input x: |").contains(&"label".to_string()));
        assert!(at("signature S {\n  in x: |").contains(&"text".to_string()));
        assert!(at("output y: list<|").contains(&"int".to_string()));
    }

    #[test]
    fn a_steps_unbound_slots_come_from_its_signature() {
        assert_eq!(at("step again = predict Classify { ticket: input.ticket, |"), ["urgent"]);
        assert_eq!(at("step again = predict Classify { |"), ["ticket", "urgent"]);
        assert_eq!(at("step again = predict |"), ["Classify"]);
    }

    #[test]
    fn members_of_input_and_steps_are_their_fields() {
        assert_eq!(at("step s = predict Classify { ticket: input.|"), ["ticket", "urgent"]);
        assert_eq!(at("return { category: classify.|"), ["reasoning", "category"]);
        assert_eq!(at("step s = predict Classify { ticket: cl|"), ["input", "classify"]);
    }

    #[test]
    fn example_blocks_complete_fields_and_label_values() {
        assert_eq!(at("example e {\n  input { |"), ["ticket", "urgent"]);
        assert_eq!(at("example e {\n  input { ticket: \"x\" }\n  output { category: |"), ["billing", "\"bug report\""]);
        assert_eq!(at("example e {\n  input { urgent: |"), ["true", "false"]);
        assert_eq!(at("example e {\n  input { ticket: \"x\" }\n  |"), ["output"]);
    }

    #[test]
    fn settings_and_optimizers_complete_in_their_blocks() {
        assert!(at("optimize |").contains(&"bootstrap_random_search".to_string()));
        let got = at("optimize bootstrap_random_search { metric: ok, |");
        assert!(got.contains(&"max_demos".to_string()) && !got.contains(&"metric".to_string()), "{got:?}");
        assert_eq!(at("optimize bootstrap_random_search { metric: |"), ["ok"]);
        assert!(at("model m = onnx(\"x\") { |").contains(&"temperature".to_string()));
        assert!(at("metric m2 = |").contains(&"exact".to_string()));
        assert_eq!(at("metric m2 = exact(output.|"), ["category"]);
    }

    #[test]
    fn memory_blocks_complete_steps_and_their_settings() {
        assert_eq!(at("memory |"), ["classify"]);
        let got = at("memory classify { demos: 4, |");
        assert!(got.contains(&"min_trust".to_string()) && !got.contains(&"demos".to_string()), "{got:?}");
        assert_eq!(at("memory classify { approved: |"), ["true", "false"]);
    }

    #[test]
    fn nothing_is_completed_inside_strings_and_comments() {
        assert!(at("input x: text \"a |").is_empty());
        assert!(at("// a |").is_empty());
    }
}
