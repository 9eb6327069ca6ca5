//! Turns source text into a [`File`](super::ast::File) using the pest grammar in
//! `grammar/loop.pest`. Pest types never leave this module: syntax errors become
//! [`Diagnostic`]s with a span and a human list of what was expected.

// A diagnostic is large, but a parse fails at most once and never in a hot loop.
#![allow(clippy::result_large_err)]

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use super::strings::{dedent_long, unescape, unescape_regex};
use super::{Diagnostic, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/loop.pest"]
struct LoopParser;

/// Parses a whole `.loop` file. On a syntax error, returns the one diagnostic that stopped
/// the parse, pointing at the offending text. Brackets nested deeper than
/// [`MAX_NESTING`](super::MAX_NESTING) are an error too, found before the recursive parse.
pub fn parse(source: &str) -> Result<File, Diagnostic> {
    super::nesting::check_nesting(source)?;
    let mut pairs = match LoopParser::parse(Rule::file, source) {
        Ok(pairs) => pairs,
        Err(_) => return Err(syntax_error(source)),
    };
    let file = pairs.next().ok_or_else(|| Diagnostic::error("syntax", Span::default(), "empty parse"))?;
    let ends = super::comments::comments(source).into_iter().map(|c| (c.span.end, c.span.start)).collect();
    Builder { source, comment_at_end: ends }.file(file)
}

/// Parses `source` again with pest's detailed tracking (off for the fast path, since it costs
/// time) to learn the furthest position reached and every token and rule expected there.
fn syntax_error(source: &str) -> Diagnostic {
    pest::set_error_detail(true);
    let result = LoopParser::parse(Rule::file, source);
    pest::set_error_detail(false);
    let Err(err) = result else {
        return Diagnostic::error("syntax", Span::default(), "internal: the parse failed once but not twice");
    };
    let (pos, mut expected) = match err.parse_attempts() {
        Some(attempts) => {
            let mut expected: Vec<String> = attempts
                .expected_tokens()
                .into_iter()
                .filter_map(|t| {
                    // pest does not export its token type; its Display shows literals as written,
                    // ranges as `a..z` and built-ins as `BUILTIN_RULE`, which say nothing to users.
                    let t = t.to_string();
                    let t = t.trim();
                    let is_range = t.chars().count() == 4 && t.chars().skip(1).take(2).all(|c| c == '.');
                    // The optional byte-order mark is never what a user means to write next.
                    let noise = t.is_empty() || t == "//" || t == "BUILTIN_RULE" || t == "\u{FEFF}" || is_range;
                    (!noise).then(|| format!("`{t}`"))
                })
                .collect();
            for stack in attempts.call_stacks() {
                if let Some(rule) = stack.deepest.get_rule().or(stack.parent.as_ref()) {
                    // Keywords and punctuation already show up as tokens; structural rules
                    // (a field, a binding) would name what is half-written, not what is next.
                    let leaf = matches!(
                        rule,
                        Rule::ident
                            | Rule::type_name
                            | Rule::ty
                            | Rule::value
                            | Rule::string
                            | Rule::number
                            | Rule::boolean
                            | Rule::path
                            | Rule::list
                            | Rule::label_value
                            | Rule::short_body
                            | Rule::long_body
                    );
                    if leaf {
                        expected.push(describe(*rule).to_string());
                    }
                }
            }
            (attempts.max_position, expected)
        }
        None => {
            let pos = match err.location {
                pest::error::InputLocation::Pos(p) => p,
                pest::error::InputLocation::Span((s, _)) => s,
            };
            let expected = match &err.variant {
                pest::error::ErrorVariant::ParsingError { positives, .. } => positives.iter().map(|r| describe(*r).to_string()).collect(),
                pest::error::ErrorVariant::CustomError { message } => vec![message.clone()],
            };
            (pos, expected)
        }
    };
    expected.sort_unstable();
    expected.dedup();
    if let Some(open) = unclosed_long_string(source).filter(|_| pos == source.len()) {
        return Diagnostic::error("syntax", Span::new(open, open + 3), "this `\"\"\"` string is never closed")
            .with_label("opened here")
            .with_hint("end it with `\"\"\"`");
    }
    let (found, len) = found_at(source, pos);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    Diagnostic::error("syntax", Span::new(pos, pos + len), format!("expected {}, found {found}", one_of(&expected)))
        .with_label("unexpected here")
        .with_hint_opt(hint_for(&expected, source, pos))
}

/// Where a `\"\"\"` string opens that never closes, if one does (scanning as the grammar
/// reads: comments and `"..."` strings skipped).
fn unclosed_long_string(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\"\"\"") {
            match bytes[i + 3..].windows(3).position(|w| w == b"\"\"\"") {
                Some(e) => i += 3 + e + 3,
                None => return Some(i),
            }
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if bytes[i..].starts_with(b"//") {
            i = bytes[i..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |e| i + e);
        } else {
            i += 1;
        }
    }
    None
}

/// What stands at `pos`, as a phrase, and how many bytes it covers: a word, or one character.
fn found_at(source: &str, pos: usize) -> (String, usize) {
    let rest = source.get(pos..).unwrap_or("");
    match rest.chars().next() {
        None => ("the end of the file".into(), 0),
        Some('\n') => ("the end of the line".into(), 0),
        Some(c) if c.is_alphanumeric() || c == '_' => {
            let len: usize = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').map(char::len_utf8).sum();
            // A word of a megabyte would make a megabyte of message; the span still covers it.
            let shown: String = rest[..len].chars().take(FOUND_WORD_CHARS).collect();
            let more = if shown.len() < len { "…" } else { "" };
            (format!("`{shown}{more}`"), len)
        }
        // Whitespace the grammar skips never stops a parse, so any found here is unusual
        // (a no-break space, say) and is named by its code like the invisible characters.
        Some(c) if c.is_control() || c.is_whitespace() || is_invisible(c) => (format!("`{}`", c.escape_unicode()), c.len_utf8()),
        Some(c) => (format!("`{c}`"), c.len_utf8()),
    }
}

/// How much of a word "found `...`" quotes.
const FOUND_WORD_CHARS: usize = 40;

/// Characters that show as nothing or reorder the text around them on a terminal (zero-width
/// and byte-order marks, the "Trojan Source" bidirectional controls): quoted raw, a message
/// would show nothing or scramble itself.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn hint_for(expected: &[&str], source: &str, pos: usize) -> Option<String> {
    let rest = source.get(pos..).unwrap_or("");
    if expected.contains(&"`program`") {
        return Some("every `.loop` file starts with `program NAME \"what it does\"`".into());
    }
    if expected.contains(&"`\"`") && rest.starts_with('\n') {
        return Some("a `\"...\"` string ends on its line; use `\"\"\"...\"\"\"` for text over several lines".into());
    }
    let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').take(FOUND_WORD_CHARS + 1).collect();
    if !word.is_empty() && word.chars().count() <= FOUND_WORD_CHARS {
        let keywords = expected.iter().filter_map(|e| e.strip_prefix('`')?.strip_suffix('`'));
        let best = keywords.map(|k| (strsim::jaro_winkler(&word, k), k)).filter(|(score, k)| *score >= 0.8 && *k != word).max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, k)) = best {
            return Some(format!("did you mean `{k}`?"));
        }
    }
    if source.get(..pos).is_some_and(|before| before.ends_with('\\')) {
        return Some("the escapes are \\n \\t \\r \\0 \\\\ \\\" and \\u{HEX}".into());
    }
    None
}

fn one_of(items: &[&str]) -> String {
    match items {
        [] => "something else".into(),
        [one] => (*one).into(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// How each rule reads in an "expected ..." message.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "the end of the file",
        Rule::program_decl | Rule::kw_program => "`program`",
        Rule::input_decl | Rule::kw_input => "`input`",
        Rule::output_decl | Rule::kw_output => "`output`",
        Rule::model_decl | Rule::kw_model => "`model`",
        Rule::tool_decl | Rule::kw_tool => "`tool`",
        Rule::signature_decl | Rule::kw_signature => "`signature`",
        Rule::step_decl | Rule::kw_step => "`step`",
        Rule::return_decl | Rule::kw_return => "`return`",
        Rule::metric_decl | Rule::kw_metric => "`metric`",
        Rule::optimize_decl | Rule::kw_optimize => "`optimize`",
        Rule::feedback_decl | Rule::kw_feedback => "`feedback`",
        Rule::feedback_ty | Rule::range_ty => "a type",
        Rule::example_decl | Rule::kw_example => "`example`",
        Rule::kw_held_out => "`held_out`",
        Rule::memory_decl | Rule::kw_memory => "`memory`",
        Rule::example_input => "`input`",
        Rule::example_output => "`output`",
        Rule::http_impl | Rule::kw_http => "`http`",
        Rule::command_impl | Rule::kw_command => "`command`",
        Rule::sig_field | Rule::direction | Rule::kw_in | Rule::kw_out => "`in` or `out`",
        Rule::step_kind | Rule::kw_predict | Rule::kw_chain_of_thought | Rule::kw_call => "a step kind (`predict`, `chain_of_thought` or `call`)",
        Rule::using | Rule::kw_using => "`using`",
        Rule::ident | Rule::type_name => "a name",
        Rule::field => "a field (`name: type`)",
        Rule::ty | Rule::label_ty | Rule::list_ty => "a type",
        Rule::label_value => "a label",
        Rule::params | Rule::param => "a parameter (`name: type`)",
        Rule::argv => "an argument list `[\"program\", ...]`",
        Rule::bindings | Rule::config => "`{`",
        Rule::binding | Rule::entry | Rule::named_arg => "`name: value`",
        Rule::arg | Rule::value | Rule::path => "a value",
        Rule::list => "a list",
        Rule::boolean => "`true` or `false`",
        Rule::number => "a number",
        Rule::string | Rule::long_string | Rule::short_string => "a string",
        Rule::long_body | Rule::short_body => "the rest of the string",
        Rule::escape => "an escape",
        Rule::file | Rule::item | Rule::WHITESPACE | Rule::COMMENT => "an item",
        Rule::string_list => "a string",
        Rule::tool_impl => "`http` or `command`",
        Rule::ident_char => "a letter, digit or `_`",
        Rule::constrained_ty => "a type",
        Rule::constraint | Rule::named_constraint => "a constraint (`email`, `/pattern/`, `max_length: N`)",
        Rule::regex | Rule::regex_body => "a pattern (`/.../`)",
    }
}

/// Turns pest pairs into AST nodes. The only input-dependent failures (bad numbers, bad
/// escapes) become diagnostics; the rest is guaranteed by the grammar.
struct Builder<'s> {
    source: &'s str,
    /// Comment start by comment end, for trimming spans.
    comment_at_end: std::collections::HashMap<usize, usize>,
}

type Result<T, E = Diagnostic> = std::result::Result<T, E>;

fn raw_span(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

/// Pulls the next child pair, which the grammar guarantees.
fn next<'a>(it: &mut impl Iterator<Item = Pair<'a, Rule>>, parent: Span) -> Result<Pair<'a, Rule>> {
    it.next().ok_or_else(|| Diagnostic::error("syntax", parent, "internal: the parse tree ended early"))
}

impl Builder<'_> {
    /// The span of a pair without the whitespace and comments pest's implicit skipping may
    /// leave at its end (when its last, optional part is absent).
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let raw = raw_span(pair);
        let mut end = raw.end;
        loop {
            let trimmed = self.source[raw.start..end].trim_end().len() + raw.start;
            end = trimmed;
            match self.comment_at_end.get(&end) {
                Some(&start) if start >= raw.start => end = start,
                _ => break,
            }
        }
        Span::new(raw.start, end)
    }

    fn file(&self, pair: Pair<Rule>) -> Result<File> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let header = self.header(next(&mut inner, span)?)?;
        let mut items = Vec::new();
        for p in inner {
            if p.as_rule() != Rule::EOI {
                items.push(self.item(p)?);
            }
        }
        Ok(File { header, items })
    }

    fn header(&self, pair: Pair<Rule>) -> Result<Header> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().filter(|p| p.as_rule() != Rule::kw_program);
        let name = ident(next(&mut it, span)?);
        let description = it.next().map(string).transpose()?;
        Ok(Header { name, description, span })
    }

    fn item(&self, pair: Pair<Rule>) -> Result<Item> {
        Ok(match pair.as_rule() {
            Rule::input_decl => Item::Input(self.keyworded_field(pair)?),
            Rule::output_decl => Item::Output(self.keyworded_field(pair)?),
            Rule::model_decl => Item::Model(self.model(pair)?),
            Rule::tool_decl => Item::Tool(self.tool(pair)?),
            Rule::signature_decl => Item::Signature(self.signature(pair)?),
            Rule::step_decl => Item::Step(self.step(pair)?),
            Rule::return_decl => {
                let span = self.span(&pair);
                let mut it = pair.into_inner().skip(1);
                Item::Return(ReturnDecl { bindings: self.bindings(next(&mut it, span)?)?, span })
            }
            Rule::metric_decl => Item::Metric(self.metric(pair)?),
            Rule::optimize_decl => Item::Optimize(self.optimize(pair)?),
            Rule::feedback_decl => Item::Feedback(self.feedback(pair)?),
            Rule::example_decl => Item::Example(self.example(pair)?),
            Rule::memory_decl => {
                let span = self.span(&pair);
                let mut it = pair.into_inner().skip(1);
                let step = ident(next(&mut it, span)?);
                let config = it.next().map(|p| self.config(p)).transpose()?.unwrap_or_default();
                Item::Memory(MemoryDecl { step, config, span })
            }
            other => return Err(Diagnostic::error("syntax", self.span(&pair), format!("internal: unexpected {other:?}"))),
        })
    }

    fn keyworded_field(&self, pair: Pair<Rule>) -> Result<FieldDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let mut field = self.field(next(&mut it, span)?)?;
        field.span = span;
        Ok(field)
    }

    fn field(&self, pair: Pair<Rule>) -> Result<FieldDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let name = ident(next(&mut it, span)?);
        let ty = self.ty(next(&mut it, span)?)?;
        let description = it.next().map(string).transpose()?;
        Ok(FieldDecl { name, ty, description, span })
    }

    fn ty(&self, pair: Pair<Rule>) -> Result<Type> {
        let span = self.span(&pair);
        let inner = next(&mut pair.into_inner(), span)?;
        let kind = match inner.as_rule() {
            Rule::type_name => TypeKind::Named(inner.as_str().to_string()),
            Rule::list_ty => TypeKind::List(Box::new(self.ty(next(&mut inner.into_inner(), span)?)?)),
            Rule::constrained_ty => {
                let mut parts = inner.into_inner();
                let name = ident(next(&mut parts, span)?);
                let constraints = parts.map(|c| self.constraint(c)).collect::<Result<Vec<_>>>()?;
                TypeKind::Constrained { name, constraints }
            }
            _ => {
                let mut labels = Vec::new();
                for lv in inner.into_inner() {
                    let v = next(&mut lv.into_inner(), span)?;
                    labels.push(match v.as_rule() {
                        Rule::ident => {
                            let id = ident(v);
                            Str { value: id.name, span: id.span }
                        }
                        _ => string(v)?,
                    });
                }
                TypeKind::Label(labels)
            }
        };
        Ok(Type { kind, span })
    }

    fn constraint(&self, pair: Pair<Rule>) -> Result<Constraint> {
        let span = self.span(&pair);
        let inner = next(&mut pair.into_inner(), span)?;
        let kind = match inner.as_rule() {
            Rule::regex => ConstraintKind::Regex(unescape_regex(next(&mut inner.into_inner(), span)?.as_str())),
            Rule::named_constraint => {
                let mut it = inner.into_inner();
                let key = ident(next(&mut it, span)?);
                ConstraintKind::Setting { key, value: self.value(next(&mut it, span)?)? }
            }
            _ => ConstraintKind::Name(inner.as_str().to_string()),
        };
        Ok(Constraint { kind, span })
    }

    fn model(&self, pair: Pair<Rule>) -> Result<ModelDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let name = ident(next(&mut it, span)?);
        let provider = ident(next(&mut it, span)?);
        let mut args = Vec::new();
        let mut config = Config::default();
        for p in it {
            match p.as_rule() {
                Rule::string => args.push(string(p)?),
                _ => config = self.config(p)?,
            }
        }
        Ok(ModelDecl { name, provider, args, config, span })
    }

    fn tool(&self, pair: Pair<Rule>) -> Result<ToolDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1).peekable();
        let name = ident(next(&mut it, span)?);
        let mut params = Vec::new();
        if it.peek().map(|p| p.as_rule()) == Some(Rule::params) {
            for p in next(&mut it, span)?.into_inner() {
                let pspan = self.span(&p);
                let mut pi = p.into_inner();
                params.push(Param { name: ident(next(&mut pi, pspan)?), ty: self.ty(next(&mut pi, pspan)?)? });
            }
        }
        let returns = self.ty(next(&mut it, span)?)?;
        let imp = next(&mut it, span)?;
        let implementation = match imp.as_rule() {
            Rule::http_impl => {
                let mut hi = imp.into_inner().skip(1);
                let method = ident(next(&mut hi, span)?);
                ToolImpl::Http { method, url: string(next(&mut hi, span)?)? }
            }
            _ => {
                let argv_pair = next(&mut imp.into_inner().skip(1), span)?;
                ToolImpl::Command { argv: argv_pair.into_inner().map(string).collect::<Result<_>>()? }
            }
        };
        let config = it.next().map(|p| self.config(p)).transpose()?.unwrap_or_default();
        Ok(ToolDecl { name, params, returns, implementation, config, span })
    }

    fn signature(&self, pair: Pair<Rule>) -> Result<SignatureDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let name = ident(next(&mut it, span)?);
        let mut instruction = None;
        let mut fields = Vec::new();
        for p in it {
            match p.as_rule() {
                Rule::string => instruction = Some(string(p)?),
                _ => {
                    let fspan = self.span(&p);
                    let mut fi = p.into_inner();
                    let dir = next(&mut fi, fspan)?;
                    let direction = match next(&mut dir.into_inner(), fspan)?.as_rule() {
                        Rule::kw_in => Direction::In,
                        _ => Direction::Out,
                    };
                    let mut field = self.field(next(&mut fi, fspan)?)?;
                    field.span = fspan;
                    fields.push(SigField { direction, field });
                }
            }
        }
        Ok(SignatureDecl { name, instruction, fields, span })
    }

    fn step(&self, pair: Pair<Rule>) -> Result<StepDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let name = ident(next(&mut it, span)?);
        let kind_pair = next(&mut it, span)?;
        let kind_span = self.span(&kind_pair);
        let kind = match next(&mut kind_pair.into_inner(), span)?.as_rule() {
            Rule::kw_predict => StepKind::Predict,
            Rule::kw_chain_of_thought => StepKind::ChainOfThought,
            _ => StepKind::Call,
        };
        let target = ident(next(&mut it, span)?);
        let bindings = self.bindings(next(&mut it, span)?)?;
        let model = match it.next() {
            Some(u) => Some(ident(next(&mut u.into_inner().skip(1), span)?)),
            None => None,
        };
        Ok(StepDecl { name, kind, kind_span, target, bindings, model, span })
    }

    fn metric(&self, pair: Pair<Rule>) -> Result<MetricDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let name = ident(next(&mut it, span)?);
        let function = ident(next(&mut it, span)?);
        let mut args = Vec::new();
        for a in it {
            let aspan = self.span(&a);
            let inner = next(&mut a.into_inner(), aspan)?;
            args.push(match inner.as_rule() {
                Rule::named_arg => {
                    let b = self.binding(inner)?;
                    Arg { name: Some(b.name), value: b.value }
                }
                _ => Arg { name: None, value: self.value(inner)? },
            });
        }
        Ok(MetricDecl { name, function, args, span })
    }

    fn optimize(&self, pair: Pair<Rule>) -> Result<OptimizeDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let optimizer = ident(next(&mut it, span)?);
        let config = it.next().map(|p| self.config(p)).transpose()?.unwrap_or_default();
        Ok(OptimizeDecl { optimizer, config, span })
    }

    fn feedback(&self, pair: Pair<Rule>) -> Result<FeedbackDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let name = ident(next(&mut it, span)?);
        let (mut ty, mut range, mut description) = (None, None, None);
        for p in it {
            match p.as_rule() {
                Rule::string => description = Some(string(p)?),
                _ => {
                    let inner = next(&mut p.into_inner(), span)?;
                    match inner.as_rule() {
                        Rule::range_ty => {
                            let rspan = self.span(&inner);
                            let mut ri = inner.into_inner();
                            let type_pair = next(&mut ri, rspan)?;
                            let type_span = self.span(&type_pair);
                            ty = Some(Type { kind: TypeKind::Named(type_pair.as_str().to_string()), span: type_span });
                            let bound = |p: Pair<Rule>| -> Result<Value> {
                                let bspan = raw_span(&p);
                                Ok(Value { kind: number(p.as_str(), bspan)?, span: bspan })
                            };
                            let min = bound(next(&mut ri, rspan)?)?;
                            let max = bound(next(&mut ri, rspan)?)?;
                            range = Some(Range { min, max, span: Span::new(type_span.end, rspan.end) });
                        }
                        _ => ty = Some(self.ty(inner)?),
                    }
                }
            }
        }
        Ok(FeedbackDecl { name, ty, range, description, span })
    }

    fn example(&self, pair: Pair<Rule>) -> Result<ExampleDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().skip(1);
        let name = ident(next(&mut it, span)?);
        let mut decl =
            ExampleDecl { name, description: None, held_out: None, inputs: Vec::new(), inputs_span: span, outputs: Vec::new(), outputs_span: None, span };
        for p in it {
            match p.as_rule() {
                Rule::string => decl.description = Some(string(p)?),
                Rule::kw_held_out => decl.held_out = Some(raw_span(&p)),
                Rule::example_input => {
                    decl.inputs_span = self.span(&p);
                    decl.inputs = self.bindings(next(&mut p.into_inner().skip(1), span)?)?;
                }
                _ => {
                    decl.outputs_span = Some(self.span(&p));
                    decl.outputs = self.bindings(next(&mut p.into_inner().skip(1), span)?)?;
                }
            }
        }
        Ok(decl)
    }

    fn config(&self, pair: Pair<Rule>) -> Result<Config> {
        let span = self.span(&pair);
        let entries = pair.into_inner().map(|p| self.binding(p)).collect::<Result<_>>()?;
        Ok(Config { entries, span })
    }

    fn bindings(&self, pair: Pair<Rule>) -> Result<Vec<Binding>> {
        pair.into_inner().map(|p| self.binding(p)).collect()
    }

    fn binding(&self, pair: Pair<Rule>) -> Result<Binding> {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let name = ident(next(&mut it, span)?);
        Ok(Binding { name, value: self.value(next(&mut it, span)?)? })
    }

    fn value(&self, pair: Pair<Rule>) -> Result<Value> {
        let span = self.span(&pair);
        let inner = next(&mut pair.into_inner(), span)?;
        let kind = match inner.as_rule() {
            Rule::string => ValueKind::Str(string(inner)?.value),
            Rule::boolean => ValueKind::Bool(inner.as_str() == "true"),
            Rule::list => ValueKind::List(inner.into_inner().map(|p| self.value(p)).collect::<Result<_>>()?),
            Rule::path => ValueKind::Path(inner.into_inner().map(ident).collect()),
            _ => number(inner.as_str(), span)?,
        };
        Ok(Value { kind, span })
    }
}

fn ident(pair: Pair<Rule>) -> Ident {
    Ident { span: raw_span(&pair), name: pair.as_str().to_string() }
}

fn string(pair: Pair<Rule>) -> Result<Str> {
    let span = raw_span(&pair);
    let inner = next(&mut pair.into_inner(), span)?;
    let value = match inner.as_rule() {
        Rule::long_string => dedent_long(next(&mut inner.into_inner(), span)?.as_str()),
        _ => {
            let body = next(&mut inner.into_inner(), span)?;
            unescape(body.as_str()).ok_or_else(|| {
                Diagnostic::error("syntax", span, "this `\\u{...}` escape names no character").with_hint("use a Unicode scalar value, e.g. `\\u{1F600}`")
            })?
        }
    };
    Ok(Str { value, span })
}

fn number(text: &str, span: Span) -> Result<ValueKind> {
    let is_float = text.contains(['.', 'e', 'E']);
    if is_float {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(ValueKind::Float(f)),
            _ => Err(Diagnostic::error("syntax", span, format!("the number `{text}` is too large"))),
        }
    } else {
        text.parse::<i64>().map(ValueKind::Int).map_err(|_| {
            Diagnostic::error("syntax", span, format!("the integer `{text}` does not fit in 64 bits"))
                .with_hint("write it as a float, e.g. `1.0e20`, if a float is meant")
        })
    }
}
