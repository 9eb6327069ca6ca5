//! The names of one parsed file: every declaration (a [`Symbol`]) and every place a name
//! refers to one (a [`Reference`]). Hover, go to definition, find references, rename,
//! completion and highlighting all read it.
//!
//! Names resolve as the checker resolves them (the first declaration of a name wins), but
//! from the syntax tree alone, so the index exists while the file has check errors: an
//! unknown name simply refers to nothing.

use std::collections::HashMap;

use crate::syntax::ast::{self, Direction, Item, StepKind, ToolImpl, TypeKind, ValueKind};
use crate::syntax::{format_type, Span};

/// What a declared name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    /// `input NAME: TYPE`.
    Input,
    /// `output NAME: TYPE`.
    Output,
    /// `signature NAME { ... }`.
    Signature,
    /// `in NAME: TYPE` of a signature.
    SigInput,
    /// `out NAME: TYPE` of a signature.
    SigOutput,
    /// `step NAME = ...`.
    Step,
    /// `tool NAME(...)`.
    Tool,
    /// A parameter of a tool.
    ToolParam,
    /// `model NAME = ...`.
    Model,
    /// `metric NAME = ...`.
    Metric,
    /// `feedback NAME`.
    Feedback,
    /// `example NAME { ... }`.
    Example,
}

impl SymbolKind {
    /// The kind as a noun for messages.
    pub fn noun(self) -> &'static str {
        match self {
            SymbolKind::Input => "input",
            SymbolKind::Output => "output",
            SymbolKind::Signature => "signature",
            SymbolKind::SigInput => "signature input",
            SymbolKind::SigOutput => "signature output",
            SymbolKind::Step => "step",
            SymbolKind::Tool => "tool",
            SymbolKind::ToolParam => "tool parameter",
            SymbolKind::Model => "model",
            SymbolKind::Metric => "metric",
            SymbolKind::Feedback => "feedback",
            SymbolKind::Example => "example",
        }
    }

    /// The kinds whose names must differ from this kind's (in the same parent): the checker
    /// refuses an input and an output of one name, and a step target may name either a
    /// signature or a tool, so those pairs share a name space too.
    fn namespace(self) -> &'static [SymbolKind] {
        match self {
            SymbolKind::Input | SymbolKind::Output => &[SymbolKind::Input, SymbolKind::Output],
            SymbolKind::Signature | SymbolKind::Tool => &[SymbolKind::Signature, SymbolKind::Tool],
            SymbolKind::SigInput | SymbolKind::SigOutput => &[SymbolKind::SigInput, SymbolKind::SigOutput],
            SymbolKind::Step => &[SymbolKind::Step],
            SymbolKind::ToolParam => &[SymbolKind::ToolParam],
            SymbolKind::Model => &[SymbolKind::Model],
            SymbolKind::Metric => &[SymbolKind::Metric],
            SymbolKind::Feedback => &[SymbolKind::Feedback],
            SymbolKind::Example => &[SymbolKind::Example],
        }
    }
}

/// The index of a symbol in [`Index::symbols`].
pub type SymbolId = usize;

/// One declared name.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    /// What it is.
    pub kind: SymbolKind,
    /// The name.
    pub name: String,
    /// Where the name is written in its declaration.
    pub def: Span,
    /// The whole declaration (the field, for fields and parameters).
    pub decl: Span,
    /// The item it is declared in (an index into the file's items).
    pub item: usize,
    /// For signature fields and tool parameters: the signature or tool.
    pub parent: Option<SymbolId>,
    /// For fields and parameters: the type as written.
    pub ty: Option<String>,
    /// For fields of a label type (or a list of labels): the labels.
    pub labels: Vec<String>,
    /// For steps: the kind and the target's name.
    pub step: Option<(StepKind, String)>,
}

/// A place where a name refers to a symbol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reference {
    /// The symbol.
    pub symbol: SymbolId,
    /// The name as written there.
    pub span: Span,
}

/// Every declaration and reference of one file.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// The declarations, in source order (a signature before its fields).
    pub symbols: Vec<Symbol>,
    /// The references, in source order.
    pub references: Vec<Reference>,
    /// The first symbol of each kind and name (fields and parameters keyed by parent too).
    by_name: HashMap<(SymbolKind, Option<SymbolId>, String), SymbolId>,
    /// The fields of each signature and the parameters of each tool, so listing them costs
    /// their number, not the file's (a reference to a step's field lists its signature's).
    children: HashMap<SymbolId, Vec<SymbolId>>,
}

impl Index {
    /// Indexes `file`.
    pub fn new(file: &ast::File) -> Index {
        let mut index = Index::default();
        for (i, item) in file.items.iter().enumerate() {
            index.declare_item(i, item);
        }
        for item in &file.items {
            index.refer_item(item);
        }
        index.references.sort_by_key(|r| r.span.start);
        index
    }

    /// The first symbol of `kind` named `name` (under `parent`, for fields and parameters).
    pub fn find(&self, kind: SymbolKind, parent: Option<SymbolId>, name: &str) -> Option<SymbolId> {
        self.by_name.get(&(kind, parent, name.to_string())).copied()
    }

    /// Every symbol of `kind` (under `parent`, when given), first declarations only.
    pub fn all(&self, kind: SymbolKind, parent: Option<SymbolId>) -> impl Iterator<Item = (SymbolId, &Symbol)> {
        self.symbols
            .iter()
            .enumerate()
            .filter(move |(id, s)| s.kind == kind && (parent.is_none() || s.parent == parent) && self.find(kind, s.parent, &s.name) == Some(*id))
    }

    /// The symbol whose name (declared or referred to) covers byte `offset`, and the span of
    /// that name. An offset just after a name counts as on it, as editors place the cursor.
    pub fn at(&self, offset: usize) -> Option<(SymbolId, Span)> {
        let covers = |s: Span| s.start <= offset && offset <= s.end;
        let r = self.references.partition_point(|r| r.span.end < offset);
        if let Some(r) = self.references[r..].iter().take_while(|r| r.span.start <= offset).find(|r| covers(r.span)) {
            return Some((r.symbol, r.span));
        }
        self.symbols.iter().enumerate().find(|(_, s)| covers(s.def)).map(|(id, s)| (id, s.def))
    }

    /// Every span where `symbol`'s name is written: its declaration first, then its references.
    pub fn occurrences(&self, symbol: SymbolId) -> Vec<Span> {
        let mut spans = vec![self.symbols[symbol].def];
        spans.extend(self.references.iter().filter(|r| r.symbol == symbol).map(|r| r.span));
        spans
    }

    /// The symbol `name` would collide with if `symbol` were renamed to it.
    pub fn collision(&self, symbol: SymbolId, name: &str) -> Option<SymbolId> {
        let s = &self.symbols[symbol];
        s.kind.namespace().iter().find_map(|kind| self.find(*kind, s.parent, name)).filter(|other| *other != symbol)
    }

    /// The signature a step uses, if it uses one that exists.
    pub fn step_signature(&self, step: &Symbol) -> Option<SymbolId> {
        match &step.step {
            Some((kind, target)) if *kind != StepKind::Call => self.find(SymbolKind::Signature, None, target),
            _ => None,
        }
    }

    /// The tool a step calls, if it calls one that exists.
    pub fn step_tool(&self, step: &Symbol) -> Option<SymbolId> {
        match &step.step {
            Some((StepKind::Call, target)) => self.find(SymbolKind::Tool, None, target),
            _ => None,
        }
    }

    /// The fields a step produces, with their types: its signature's outputs (after
    /// `reasoning` for chain of thought) or a tool's `result`.
    pub fn step_outputs(&self, step: &Symbol) -> Vec<(String, String, Option<SymbolId>)> {
        match &step.step {
            Some((StepKind::Call, _)) => {
                let ty = self.step_tool(step).and_then(|t| self.symbols[t].ty.clone()).unwrap_or_else(|| "json".into());
                vec![("result".into(), ty, None)]
            }
            Some((kind, _)) => {
                let mut out = Vec::new();
                if *kind == StepKind::ChainOfThought {
                    out.push(("reasoning".to_string(), "text".to_string(), None));
                }
                if let Some(sig) = self.step_signature(step) {
                    out.extend(self.all(SymbolKind::SigOutput, Some(sig)).map(|(id, f)| (f.name.clone(), f.ty.clone().unwrap_or_default(), Some(id))));
                }
                out
            }
            None => Vec::new(),
        }
    }

    fn declare(&mut self, symbol: Symbol) -> SymbolId {
        let id = self.symbols.len();
        self.by_name.entry((symbol.kind, symbol.parent, symbol.name.clone())).or_insert(id);
        if let Some(parent) = symbol.parent {
            self.children.entry(parent).or_default().push(id);
        }
        self.symbols.push(symbol);
        id
    }

    fn declare_name(&mut self, kind: SymbolKind, name: &ast::Ident, decl: Span, item: usize, parent: Option<SymbolId>) -> SymbolId {
        self.declare(Symbol { kind, name: name.name.clone(), def: name.span, decl, item, parent, ty: None, labels: Vec::new(), step: None })
    }

    fn declare_field(&mut self, kind: SymbolKind, f: &ast::FieldDecl, item: usize, parent: Option<SymbolId>) -> SymbolId {
        let id = self.declare_name(kind, &f.name, f.span, item, parent);
        self.symbols[id].ty = Some(format_type(&f.ty));
        self.symbols[id].labels = labels(&f.ty);
        id
    }

    fn declare_item(&mut self, i: usize, item: &Item) {
        match item {
            Item::Input(f) => {
                self.declare_field(SymbolKind::Input, f, i, None);
            }
            Item::Output(f) => {
                self.declare_field(SymbolKind::Output, f, i, None);
            }
            Item::Model(m) => {
                self.declare_name(SymbolKind::Model, &m.name, m.span, i, None);
            }
            Item::Tool(t) => {
                let tool = self.declare_name(SymbolKind::Tool, &t.name, t.span, i, None);
                self.symbols[tool].ty = Some(format_type(&t.returns));
                for p in &t.params {
                    let id = self.declare_name(SymbolKind::ToolParam, &p.name, p.name.span.to(p.ty.span), i, Some(tool));
                    self.symbols[id].ty = Some(format_type(&p.ty));
                    self.symbols[id].labels = labels(&p.ty);
                }
            }
            Item::Signature(s) => {
                let sig = self.declare_name(SymbolKind::Signature, &s.name, s.span, i, None);
                for f in &s.fields {
                    let kind = if f.direction == Direction::In { SymbolKind::SigInput } else { SymbolKind::SigOutput };
                    self.declare_field(kind, &f.field, i, Some(sig));
                }
            }
            Item::Step(s) => {
                let id = self.declare_name(SymbolKind::Step, &s.name, s.span, i, None);
                self.symbols[id].step = Some((s.kind, s.target.name.clone()));
            }
            Item::Metric(m) => {
                self.declare_name(SymbolKind::Metric, &m.name, m.span, i, None);
            }
            Item::Feedback(f) => {
                self.declare_name(SymbolKind::Feedback, &f.name, f.span, i, None);
            }
            Item::Example(e) => {
                self.declare_name(SymbolKind::Example, &e.name, e.span, i, None);
            }
            Item::Return(_) | Item::Optimize(_) | Item::Memory(_) => {}
        }
    }

    fn refer(&mut self, symbol: Option<SymbolId>, span: Span) {
        if let Some(symbol) = symbol {
            self.references.push(Reference { symbol, span });
        }
    }

    fn refer_item(&mut self, item: &Item) {
        match item {
            Item::Tool(t) => {
                let tool = self.find(SymbolKind::Tool, None, &t.name.name);
                let mut templates: Vec<&ast::Str> = match &t.implementation {
                    ToolImpl::Http { url, .. } => vec![url],
                    ToolImpl::Command { argv } => argv.iter().collect(),
                };
                let mut config_strings = Vec::new();
                for b in &t.config.entries {
                    strings_in(&b.value, &mut config_strings);
                }
                templates.extend(config_strings.iter());
                for s in templates {
                    for (name, span) in placeholders(s) {
                        let param = self.find(SymbolKind::ToolParam, tool, &name);
                        self.refer(param, span);
                    }
                }
            }
            Item::Step(s) => {
                let (target, slot_kind) = match s.kind {
                    StepKind::Call => (self.find(SymbolKind::Tool, None, &s.target.name), SymbolKind::ToolParam),
                    _ => (self.find(SymbolKind::Signature, None, &s.target.name), SymbolKind::SigInput),
                };
                self.refer(target, s.target.span);
                for b in &s.bindings {
                    let slot = target.and_then(|t| self.find(slot_kind, Some(t), &b.name.name));
                    self.refer(slot, b.name.span);
                    self.refer_value(&b.value);
                }
                if let Some(m) = &s.model {
                    let model = self.find(SymbolKind::Model, None, &m.name);
                    self.refer(model, m.span);
                }
            }
            Item::Return(r) => {
                for b in &r.bindings {
                    let output = self.find(SymbolKind::Output, None, &b.name.name);
                    self.refer(output, b.name.span);
                    self.refer_value(&b.value);
                }
            }
            Item::Metric(m) => {
                let judge = if m.function.name == "judge" {
                    match m.args.first().map(|a| (&a.name, &a.value.kind)) {
                        Some((None, ValueKind::Path(p))) if p.len() == 1 => {
                            let sig = self.find(SymbolKind::Signature, None, &p[0].name);
                            self.refer(sig, p[0].span);
                            sig
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                for a in &m.args {
                    if let Some(n) = &a.name {
                        let slot = judge.and_then(|sig| self.find(SymbolKind::SigInput, Some(sig), &n.name));
                        self.refer(slot, n.span);
                    }
                    self.refer_metric_value(&a.value);
                }
            }
            Item::Optimize(o) => {
                for b in &o.config.entries {
                    let kind = match b.name.name.as_str() {
                        "metric" => SymbolKind::Metric,
                        "teacher" => SymbolKind::Model,
                        _ => continue,
                    };
                    if let ValueKind::Path(p) = &b.value.kind {
                        if let [one] = p.as_slice() {
                            let symbol = self.find(kind, None, &one.name);
                            self.refer(symbol, one.span);
                        }
                    }
                }
            }
            Item::Example(e) => {
                for b in &e.inputs {
                    let input = self.find(SymbolKind::Input, None, &b.name.name);
                    self.refer(input, b.name.span);
                }
                for b in &e.outputs {
                    let output = self.find(SymbolKind::Output, None, &b.name.name);
                    self.refer(output, b.name.span);
                }
            }
            Item::Memory(m) => {
                let step = self.find(SymbolKind::Step, None, &m.step.name);
                self.refer(step, m.step.span);
            }
            Item::Input(_) | Item::Output(_) | Item::Model(_) | Item::Signature(_) | Item::Feedback(_) => {}
        }
    }

    /// `input.NAME` and `STEP.FIELD` in a step's or the return's bindings.
    fn refer_value(&mut self, v: &ast::Value) {
        match &v.kind {
            ValueKind::Path(p) if p.len() == 2 => {
                let (root, field) = (&p[0], &p[1]);
                if root.name == "input" {
                    let input = self.find(SymbolKind::Input, None, &field.name);
                    self.refer(input, field.span);
                    return;
                }
                let Some(step) = self.find(SymbolKind::Step, None, &root.name) else { return };
                self.refer(Some(step), root.span);
                let step = self.symbols[step].clone();
                let out = self.step_outputs(&step).into_iter().find(|(name, _, _)| *name == field.name).and_then(|(_, _, id)| id);
                self.refer(out, field.span);
            }
            ValueKind::List(items) => items.iter().for_each(|i| self.refer_value(i)),
            _ => {}
        }
    }

    /// `output.NAME` and `example.NAME` in a metric's arguments.
    fn refer_metric_value(&mut self, v: &ast::Value) {
        match &v.kind {
            ValueKind::Path(p) if p.len() == 2 => {
                let (root, field) = (&p[0], &p[1]);
                let symbol = match root.name.as_str() {
                    "output" => self.find(SymbolKind::Output, None, &field.name),
                    "example" => self.find(SymbolKind::Output, None, &field.name).or_else(|| self.find(SymbolKind::Input, None, &field.name)),
                    _ => None,
                };
                self.refer(symbol, field.span);
            }
            ValueKind::List(items) => items.iter().for_each(|i| self.refer_metric_value(i)),
            _ => {}
        }
    }
}

/// The labels of a label type, or of a list of labels.
fn labels(ty: &ast::Type) -> Vec<String> {
    match &ty.kind {
        TypeKind::Label(labels) => labels.iter().map(|l| l.value.clone()).collect(),
        TypeKind::List(inner) => labels(inner),
        TypeKind::Named(_) | TypeKind::Constrained { .. } => Vec::new(),
    }
}

/// The string literals in a value (a setting may hold one or a list of them).
fn strings_in(v: &ast::Value, out: &mut Vec<ast::Str>) {
    match &v.kind {
        ValueKind::Str(s) => out.push(ast::Str { value: s.clone(), span: v.span }),
        ValueKind::List(items) => items.iter().for_each(|i| strings_in(i, out)),
        _ => {}
    }
}

/// The `{name}` placeholders of a template literal, with the span of each name in the source.
/// Spans are found in the literal as written, so they are exact only where escapes do not
/// shift them; a placeholder whose text differs between source and value is skipped.
fn placeholders(s: &ast::Str) -> Vec<(String, Span)> {
    // The literal's source text is not at hand here, but for a `"..."` string without escapes
    // (and any `"""` string) the value is the text between the quotes.
    let long = s.span.end - s.span.start >= 6 && s.value.len() + 6 == s.span.end - s.span.start;
    let short = s.value.len() + 2 == s.span.end - s.span.start;
    if !(short || long) {
        return Vec::new();
    }
    let body_start = s.span.start + if long { 3 } else { 1 };
    let bytes = s.value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => match s.value[i + 1..].find('}') {
                Some(len) => {
                    let name = &s.value[i + 1..i + 1 + len];
                    if crate::syntax::is_ident(name) {
                        out.push((name.to_string(), Span::new(body_start + i + 1, body_start + i + 1 + len)));
                    }
                    i += len + 2;
                }
                None => break,
            },
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "program p\ninput ticket: text\noutput category: label(billing, bug)\n\
        tool kb(query: text) -> text = http GET \"http://h/s?q={query}\"\n\
        signature Classify { in ticket: text out category: label(billing, bug) }\n\
        step classify = predict Classify { ticket: input.ticket }\n\
        step notes = call kb { query: input.ticket }\n\
        return { category: classify.category }\n\
        metric ok = exact(output.category, example.category)\n\
        optimize labeled_few_shot { metric: ok }\n\
        example one { input { ticket: \"x\" } output { category: billing } }\n";

    fn index() -> Index {
        Index::new(&crate::syntax::parse(SRC).unwrap())
    }

    fn spans_of(index: &Index, id: SymbolId) -> Vec<&'static str> {
        index.occurrences(id).into_iter().map(|s| &SRC[s.range()]).collect()
    }

    #[test]
    fn every_use_of_a_name_refers_to_its_declaration() {
        let index = index();
        let ticket = index.find(SymbolKind::Input, None, "ticket").unwrap();
        assert_eq!(spans_of(&index, ticket).len(), 4, "declaration, two bindings, the example");
        let classify = index.find(SymbolKind::Step, None, "classify").unwrap();
        assert_eq!(spans_of(&index, classify), ["classify", "classify"]);
        let sig = index.find(SymbolKind::Signature, None, "Classify").unwrap();
        let out = index.find(SymbolKind::SigOutput, Some(sig), "category").unwrap();
        assert_eq!(index.occurrences(out).len(), 2, "`classify.category` reads the signature's output");
        let output = index.find(SymbolKind::Output, None, "category").unwrap();
        assert_eq!(index.occurrences(output).len(), 5, "declaration, return, metric twice, example");
        let query = index.find(SymbolKind::ToolParam, index.find(SymbolKind::Tool, None, "kb"), "query").unwrap();
        let at = index.occurrences(query);
        assert_eq!(at.len(), 3, "declaration, placeholder, binding");
        assert_eq!(&SRC[at[1].range()], "query");
        let metric = index.find(SymbolKind::Metric, None, "ok").unwrap();
        assert_eq!(index.occurrences(metric).len(), 2);
    }

    #[test]
    fn the_symbol_under_the_cursor_is_found_at_either_end_of_its_name() {
        let index = index();
        let at = SRC.find("input.ticket").unwrap() + "input.".len();
        let (id, span) = index.at(at).unwrap();
        assert_eq!(index.symbols[id].kind, SymbolKind::Input);
        assert_eq!(&SRC[span.range()], "ticket");
        assert_eq!(index.at(span.end).map(|(i, _)| i), Some(id));
        assert!(index.at(SRC.find("program").unwrap() + 2).is_none());
    }

    #[test]
    fn renaming_into_a_taken_name_is_a_collision() {
        let index = index();
        let classify = index.find(SymbolKind::Step, None, "classify").unwrap();
        assert_eq!(index.collision(classify, "notes"), index.find(SymbolKind::Step, None, "notes"));
        assert_eq!(index.collision(classify, "fresh"), None);
        let ticket = index.find(SymbolKind::Input, None, "ticket").unwrap();
        assert!(index.collision(ticket, "category").is_some(), "an input may not take an output's name");
        let sig = index.find(SymbolKind::Signature, None, "Classify").unwrap();
        assert!(index.collision(sig, "kb").is_some(), "signatures and tools share step targets");
    }
}
