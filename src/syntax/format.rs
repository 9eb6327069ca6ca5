//! The canonical layout of a `.loop` file, as `loopc fmt` writes it.
//!
//! The law: parsing the formatted text gives the same tree (`parse(format(f)) == f`, spans
//! aside) and formatting is idempotent. Comments are kept; a comment inside an item other
//! than a signature moves to the line above that item.

use super::ast::*;
use super::comments::Comment;
use super::strings::{quote, quote_multiline, quote_regex};

/// Lines longer than this are broken one entry per line.
const WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Formats `file`. `comments` and `source` are those of the text `file` was parsed from
/// (pass `&[]` and `""` for a tree built in code).
pub fn format(file: &File, comments: &[Comment], source: &str) -> String {
    let mut p = Printer { out: String::new(), comments, next_comment: 0, source };
    p.leading_comments(file.header.span.start, "");
    p.out.push_str("program ");
    p.out.push_str(&file.header.name.name);
    if let Some(d) = &file.header.description {
        p.out.push(' ');
        p.out.push_str(&quote_multiline(&d.value, ""));
    }
    p.trailing_comment(file.header.span.end);
    p.out.push('\n');
    let mut prev: Option<&Item> = None;
    for item in &file.items {
        let blank = match prev {
            None => true,
            Some(prev) => {
                group(prev) != group(item)
                    || matches!(item, Item::Signature(_) | Item::Example(_))
                    || had_blank_line(source, prev.span().end, item.span().start)
            }
        };
        if blank {
            p.out.push('\n');
        }
        p.leading_comments(item.span().start, "");
        p.item(item);
        p.trailing_comment(item.span().end);
        p.out.push('\n');
        prev = Some(item);
    }
    p.leading_comments(usize::MAX, "");
    p.out
}

/// Items of one group stand together without blank lines between them.
fn group(item: &Item) -> u8 {
    match item {
        Item::Input(_) | Item::Output(_) => 0,
        Item::Model(_) => 1,
        Item::Tool(_) => 2,
        Item::Signature(_) => 3,
        Item::Step(_) => 4,
        Item::Return(_) => 5,
        Item::Metric(_) | Item::Optimize(_) => 6,
        Item::Feedback(_) => 7,
        Item::Example(_) => 8,
        Item::Memory(_) => 9,
    }
}

/// Whether a blank line stands between `end` and `start` in `source`.
fn had_blank_line(source: &str, end: usize, start: usize) -> bool {
    let Some(gap) = source.get(end..start) else { return false };
    let lines: Vec<&str> = gap.split('\n').collect();
    lines.len() > 2 && lines[1..lines.len() - 1].iter().any(|l| l.trim().is_empty())
}

struct Printer<'a> {
    out: String,
    comments: &'a [Comment],
    next_comment: usize,
    source: &'a str,
}

impl Printer<'_> {
    /// Writes every comment not yet written that starts before `before`, one per line.
    fn leading_comments(&mut self, before: usize, indent: &str) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.span.start >= before {
                break;
            }
            self.out.push_str(indent);
            self.out.push_str("//");
            self.out.push_str(&c.text);
            self.out.push('\n');
            self.next_comment += 1;
        }
    }

    /// Appends the comment that stands on the same line right after `end`, if there is one.
    fn trailing_comment(&mut self, end: usize) {
        if let Some(c) = self.comments.get(self.next_comment) {
            let same_line = self.source.get(end..c.span.start).is_some_and(|gap| !gap.contains('\n'));
            if c.span.start >= end && same_line {
                self.out.push_str(" //");
                self.out.push_str(&c.text);
                self.next_comment += 1;
            }
        }
    }

    /// Writes `text` if it fits on the current line, otherwise `multi`.
    fn fitted(&mut self, one_line: String, multi: impl FnOnce() -> String) {
        let line_start = self.out.rfind('\n').map_or(0, |i| i + 1);
        let current = self.out.len() - line_start;
        if current + one_line.len() <= WIDTH && !one_line.contains('\n') {
            self.out.push_str(&one_line);
        } else {
            self.out.push_str(&multi());
        }
    }

    fn item(&mut self, item: &Item) {
        // Comments inside an item (other than a signature) move above it.
        if !matches!(item, Item::Signature(_)) {
            self.leading_comments(item.span().end, "");
        }
        match item {
            Item::Input(f) => self.out.push_str(&format!("input {}", field(f, ""))),
            Item::Output(f) => self.out.push_str(&format!("output {}", field(f, ""))),
            Item::Model(m) => {
                let args: Vec<String> = m.args.iter().map(|a| quote(&a.value)).collect();
                self.out.push_str(&format!("model {} = {}({})", m.name.name, m.provider.name, args.join(", ")));
                self.config(&m.config.entries);
            }
            Item::Tool(t) => {
                let params: Vec<String> = t.params.iter().map(|p| format!("{}: {}", p.name.name, ty(&p.ty))).collect();
                let imp = match &t.implementation {
                    ToolImpl::Http { method, url } => format!("http {} {}", method.name, quote(&url.value)),
                    ToolImpl::Command { argv } => {
                        let args: Vec<String> = argv.iter().map(|a| quote(&a.value)).collect();
                        format!("command [{}]", args.join(", "))
                    }
                };
                self.out.push_str(&format!("tool {}({}) -> {} = {imp}", t.name.name, params.join(", "), ty(&t.returns)));
                self.config(&t.config.entries);
            }
            Item::Signature(s) => self.signature(s),
            Item::Step(s) => {
                self.out.push_str(&format!("step {} = {} {}", s.name.name, s.kind.keyword(), s.target.name));
                self.braced(&s.bindings, true);
                if let Some(m) = &s.model {
                    self.out.push_str(" using ");
                    self.out.push_str(&m.name);
                }
            }
            Item::Return(r) => {
                self.out.push_str("return");
                self.braced(&r.bindings, true);
            }
            Item::Metric(m) => {
                let args: Vec<String> = m
                    .args
                    .iter()
                    .map(|a| match &a.name {
                        Some(n) => format!("{}: {}", n.name, value(&a.value)),
                        None => value(&a.value),
                    })
                    .collect();
                self.out.push_str(&format!("metric {} = {}({})", m.name.name, m.function.name, args.join(", ")));
            }
            Item::Optimize(o) => {
                self.out.push_str("optimize ");
                self.out.push_str(&o.optimizer.name);
                self.config(&o.config.entries);
            }
            Item::Feedback(f) => self.out.push_str(&feedback(f)),
            Item::Example(e) => self.out.push_str(&super::format_example::example(e)),
            Item::Memory(m) => {
                self.out.push_str("memory ");
                self.out.push_str(&m.step.name);
                self.config(&m.config.entries);
            }
        }
    }

    fn config(&mut self, entries: &[Binding]) {
        if !entries.is_empty() {
            self.braced(entries, false);
        }
    }

    /// Writes ` { a: x, b: y }`, or one entry per line when that is too long.
    fn braced(&mut self, entries: &[Binding], always: bool) {
        if entries.is_empty() {
            if always {
                self.out.push_str(" {}");
            }
            return;
        }
        let parts: Vec<String> = entries.iter().map(|b| format!("{}: {}", b.name.name, value(&b.value))).collect();
        let one_line = format!(" {{ {} }}", parts.join(", "));
        self.fitted(one_line, || {
            let mut s = String::from(" {\n");
            for part in &parts {
                s.push_str(INDENT);
                s.push_str(part);
                s.push_str(",\n");
            }
            s.push('}');
            s
        });
    }

    fn signature(&mut self, s: &SignatureDecl) {
        self.out.push_str("signature ");
        self.out.push_str(&s.name.name);
        if let Some(i) = &s.instruction {
            self.out.push(' ');
            self.out.push_str(&quote_multiline(&i.value, ""));
        }
        self.out.push_str(" {");
        let body_start = s.instruction.as_ref().map_or(s.name.span.end, |i| i.span.end);
        self.trailing_comment(body_start + 1);
        self.out.push('\n');
        for f in &s.fields {
            self.leading_comments(f.field.span.start, INDENT);
            self.out.push_str(INDENT);
            self.out.push_str(match f.direction {
                Direction::In => "in ",
                Direction::Out => "out ",
            });
            self.out.push_str(&field(&f.field, INDENT));
            self.trailing_comment(f.field.span.end);
            self.out.push('\n');
        }
        self.leading_comments(s.span.end, INDENT);
        self.out.push('}');
    }
}

/// `feedback NAME[: TYPE[(MIN..MAX)]] ["description"]`.
fn feedback(f: &FeedbackDecl) -> String {
    let mut s = format!("feedback {}", f.name.name);
    if let Some(t) = &f.ty {
        s.push_str(": ");
        s.push_str(&ty(t));
    }
    if let Some(r) = &f.range {
        s.push_str(&format!("({}..{})", value(&r.min), value(&r.max)));
    }
    if let Some(d) = &f.description {
        s.push(' ');
        s.push_str(&quote_multiline(&d.value, ""));
    }
    s
}

fn field(f: &FieldDecl, indent: &str) -> String {
    let mut s = format!("{}: {}", f.name.name, ty(&f.ty));
    if let Some(d) = &f.description {
        s.push(' ');
        s.push_str(&quote_multiline(&d.value, indent));
    }
    s
}

/// Writes a type as source.
pub fn ty(t: &Type) -> String {
    match &t.kind {
        TypeKind::Named(n) => n.clone(),
        TypeKind::List(inner) => format!("list<{}>", ty(inner)),
        TypeKind::Label(labels) => {
            let parts: Vec<String> = labels.iter().map(|l| if is_ident(&l.value) { l.value.clone() } else { quote(&l.value) }).collect();
            format!("label({})", parts.join(", "))
        }
        TypeKind::Constrained { name, constraints } => {
            let parts: Vec<String> = constraints
                .iter()
                .map(|c| match &c.kind {
                    ConstraintKind::Name(n) => n.clone(),
                    ConstraintKind::Regex(p) => quote_regex(p),
                    ConstraintKind::Setting { key, value: v } => match &v.kind {
                        // A schema spans lines: keep it readable as a long string.
                        ValueKind::Str(text) => format!("{}: {}", key.name, quote_multiline(text, "")),
                        _ => format!("{}: {}", key.name, value(v)),
                    },
                })
                .collect();
            format!("{}({})", name.name, parts.join(", "))
        }
    }
}

/// Writes a value as source.
pub fn value(v: &Value) -> String {
    match &v.kind {
        ValueKind::Str(s) => quote(s),
        ValueKind::Int(i) => i.to_string(),
        // `{:?}` is the shortest text that reads back to the same f64, and always has `.` or `e`.
        ValueKind::Float(f) => format!("{f:?}"),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::List(items) => {
            let parts: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", parts.join(", "))
        }
        ValueKind::Path(segments) => segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("."),
    }
}

/// Whether `s` can be written as a bare name.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
