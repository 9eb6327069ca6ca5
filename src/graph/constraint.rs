//! Constraints on text types: `text(email)`, `text(/[A-Z]{3}-[0-9]{4}/)`,
//! `text(url, max_length: 200)`, also inside lists (`list<text(email)>`).
//!
//! A constrained text type is checked here once (the pattern compiles, the constraints are
//! known and can all hold at once), then used three ways: the local backend decodes the
//! value under a grammar built from [`TextRule::regexes`], remote endpoints get the same
//! patterns in a JSON Schema, and every value read back (from a model, a caller or a
//! dataset) must pass [`TextRule::check`]. The patterns are written here, not borrowed, so
//! what decoding allows and what checking accepts are the same language.

use std::fmt;
use std::hash::{Hash, Hasher};

use super::types::Type;
use crate::syntax::ast::{Constraint, ConstraintKind, Ident, ValueKind};
use crate::syntax::{Diagnostic, Span};

/// A well-known text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// An e-mail address: `local@domain.tld`.
    Email,
    /// An `http` or `https` URL.
    Url,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A time of day, `HH:MM` or `HH:MM:SS` (24-hour).
    Time,
    /// A UUID, `8-4-4-4-12` hexadecimal digits.
    Uuid,
}

/// The formats by their names in `.loop` files.
pub const FORMAT_NAMES: [&str; 5] = ["email", "url", "date", "time", "uuid"];

// The formats as regular expressions (anchored by their use: a value matches as a whole).
// Each is the practical form people use for such values, not every corner of the RFCs: an
// e-mail's domain needs a dot and a letter top-level domain, a URL is a web address.
const DOMAIN_LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const EMAIL_LOCAL: &str = "[A-Za-z0-9_%+-]+(?:\\.[A-Za-z0-9_%+-]+)*";
const URL_CHARS: &str = "[A-Za-z0-9._~!$&'()*+,;=:@%/-]";

impl Format {
    /// The format a name stands for.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "email" => Format::Email,
            "url" => Format::Url,
            "date" => Format::Date,
            "time" => Format::Time,
            "uuid" => Format::Uuid,
            _ => return None,
        })
    }

    /// The format's name in `.loop` files.
    pub fn name(self) -> &'static str {
        match self {
            Format::Email => "email",
            Format::Url => "url",
            Format::Date => "date",
            Format::Time => "time",
            Format::Uuid => "uuid",
        }
    }

    /// The format's name in JSON Schema (`format`), for endpoints that know it.
    pub fn json_schema_name(self) -> &'static str {
        match self {
            Format::Url => "uri",
            other => other.name(),
        }
    }

    /// The format as a regular expression matching a whole value.
    pub fn pattern(self) -> String {
        match self {
            Format::Email => format!("{EMAIL_LOCAL}@(?:{DOMAIN_LABEL}\\.)+[A-Za-z]{{2,63}}"),
            Format::Url => {
                format!(
                    "https?://(?:{DOMAIN_LABEL}\\.)*{DOMAIN_LABEL}(?::[0-9]{{1,5}})?(?:/{URL_CHARS}*)?(?:\\?(?:{URL_CHARS}|\\?)*)?(?:#(?:{URL_CHARS}|\\?)*)?"
                )
            }
            // Months with 31, 30 and 29 days (February 29 is allowed in every year).
            Format::Date => {
                "[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-9]))".into()
            }
            Format::Time => "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?".into(),
            Format::Uuid => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}".into(),
        }
    }

    /// What a value of this format looks like, for messages and prompts.
    pub fn example(self) -> &'static str {
        match self {
            Format::Email => "an e-mail address",
            Format::Url => "an http(s) URL",
            Format::Date => "a date written YYYY-MM-DD",
            Format::Time => "a time written HH:MM",
            Format::Uuid => "a UUID",
        }
    }
}

/// The constraints of a `text(...)` type. Compares and hashes by what was written; the
/// compiled checkers ride along.
#[derive(Clone, Debug)]
pub struct TextRule {
    format: Option<Format>,
    pattern: Option<String>,
    min_length: Option<u32>,
    max_length: Option<u32>,
    /// `from: FIELD`: the value must occur in that input of the step, as written there.
    source: Option<String>,
    /// Where `from: FIELD` is written (for diagnostics; not part of what the rule means).
    source_span: Span,
    /// `^(?:format)$` and `^(?:pattern)$`, compiled once.
    checkers: Vec<regex::Regex>,
}

impl PartialEq for TextRule {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for TextRule {}

impl Hash for TextRule {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// What a rule means (format, pattern, lengths, source): what it compares and hashes by.
type RuleKey<'a> = (Option<Format>, Option<&'a str>, Option<u32>, Option<u32>, Option<&'a str>);

/// The longest `max_length` a program may ask for: long enough for any field a model
/// writes, short enough that the grammar's counting stays small.
pub const MAX_LENGTH_LIMIT: u32 = 100_000;

impl TextRule {
    fn key(&self) -> RuleKey<'_> {
        (self.format, self.pattern.as_deref(), self.min_length, self.max_length, self.source.as_deref())
    }

    /// The same rule with `from: FIELD` set (the field must be an input of the step).
    pub fn with_source(mut self, field: &str, span: Span) -> TextRule {
        self.source = Some(field.to_string());
        self.source_span = span;
        self
    }

    /// The input field the value must occur in (`from: FIELD`), if any.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Whether a value of rule `other` satisfies this rule: the same constraints, where this
    /// rule may leave out `from` (a value quoted from an input is still such a value).
    pub fn admits(&self, other: &TextRule) -> bool {
        let (a, b) = (self.key(), other.key());
        self == other || (self.source.is_none() && (a.0, a.1, a.2, a.3) == (b.0, b.1, b.2, b.3))
    }

    /// A rule from its parts. Fails with a message when the pattern does not compile.
    pub fn new(format: Option<Format>, pattern: Option<String>, min_length: Option<u32>, max_length: Option<u32>) -> Result<TextRule, String> {
        let mut checkers = Vec::new();
        for source in format.map(Format::pattern).iter().chain(pattern.iter()) {
            let rx = regex::Regex::new(&format!("^(?:{source})$")).map_err(|e| short_regex_error(&e.to_string()))?;
            checkers.push(rx);
        }
        Ok(TextRule { format, pattern, min_length, max_length, source: None, source_span: Span::default(), checkers })
    }

    /// The format, if one is set.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// The pattern as written, if one is set.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_deref()
    }

    /// The least number of characters, if set.
    pub fn min_length(&self) -> Option<u32> {
        self.min_length
    }

    /// The most characters, if set.
    pub fn max_length(&self) -> Option<u32> {
        self.max_length
    }

    /// The regular expressions a value must match, each as a whole (the format's and the
    /// pattern); the lengths are separate.
    pub fn regexes(&self) -> Vec<String> {
        self.format.map(Format::pattern).into_iter().chain(self.pattern.clone()).collect()
    }

    /// Checks a value; the error says which constraint it breaks.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let chars = value.chars().count();
        if let Some(max) = self.max_length.filter(|&m| chars > m as usize) {
            return Err(format!("`{}` is {chars} characters, more than the {max} allowed", short(value)));
        }
        if let Some(min) = self.min_length.filter(|&m| chars < m as usize) {
            return Err(format!("`{}` is {chars} characters, fewer than the {min} required", short(value)));
        }
        let mut checkers = self.checkers.iter();
        if let Some(f) = self.format {
            if checkers.next().is_some_and(|rx| !rx.is_match(value)) {
                return Err(format!("`{}` is not {}", short(value), f.example()));
            }
        }
        if let Some(p) = &self.pattern {
            if checkers.next().is_some_and(|rx| !rx.is_match(value)) {
                return Err(format!("`{}` does not match the pattern /{p}/", short(value)));
            }
        }
        Ok(())
    }

    /// What a value must be, in words (for prompts and messages): `an e-mail address, at most
    /// 80 characters, copied from `email``.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.format.map_or("text", Format::example).to_string()];
        if let Some(p) = &self.pattern {
            parts.push(format!("matching /{p}/"));
        }
        match (self.min_length, self.max_length) {
            (Some(a), Some(b)) => parts.push(format!("{a} to {b} characters")),
            (None, Some(b)) => parts.push(format!("at most {b} characters")),
            (Some(a), None) => parts.push(format!("at least {a} characters")),
            (None, None) => {}
        }
        if let Some(field) = &self.source {
            parts.push(format!("copied from `{field}`"));
        }
        parts.join(", ")
    }
}

impl fmt::Display for TextRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(format) = self.format {
            parts.push(format.name().to_string());
        }
        if let Some(p) = &self.pattern {
            parts.push(crate::syntax::quote_regex(p));
        }
        if let Some(n) = self.min_length {
            parts.push(format!("min_length: {n}"));
        }
        if let Some(n) = self.max_length {
            parts.push(format!("max_length: {n}"));
        }
        if let Some(field) = &self.source {
            parts.push(format!("from: {field}"));
        }
        write!(f, "text({})", parts.join(", "))
    }
}

fn short(t: &str) -> String {
    let mut s: String = t.chars().take(60).collect();
    if t.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// The first line of a regex error, without the pattern echo the regex crate prints.
fn short_regex_error(e: &str) -> String {
    e.lines().rev().find(|l| l.starts_with("error:")).map_or_else(|| e.lines().next().unwrap_or(e).to_string(), |l| l.trim_start_matches("error: ").to_string())
}

/// Lowers `NAME(constraints)`: checks that the type takes constraints and that they fit,
/// reporting every problem at its constraint. Returns the type to use (unconstrained when
/// the constraints are wrong, so checking goes on).
pub(crate) fn lower(name: &Ident, constraints: &[Constraint], span: Span, diags: &mut Vec<Diagnostic>) -> Type {
    let base = match name.name.as_str() {
        "text" => Type::Text,
        other => {
            let base = Type::from_name(other);
            let message = match &base {
                Some(_) => format!("`{other}` takes no constraints"),
                None => format!("unknown type `{other}`"),
            };
            diags.push(
                Diagnostic::error(if base.is_some() { "invalid-constraint" } else { "unknown-name" }, name.span, message)
                    .with_label("constraints apply to `text` only")
                    .with_hint("constrain text with a format (`text(email)`), a pattern (`text(/[0-9]{4}/)`) or a length (`text(max_length: 80)`)"),
            );
            return base.unwrap_or(Type::Json);
        }
    };
    let mut format: Option<(Format, Span)> = None;
    let mut pattern: Option<(String, Span)> = None;
    let mut min_length: Option<(u32, Span)> = None;
    let mut max_length: Option<(u32, Span)> = None;
    let mut source: Option<(String, Span)> = None;
    let before = diags.len();
    let twice = |diags: &mut Vec<Diagnostic>, what: &str, at: Span, first: Span| {
        diags.push(Diagnostic::error("duplicate-name", at, format!("a text type takes one {what}")).with_related(first, "the first one is here"));
    };
    for c in constraints {
        match &c.kind {
            ConstraintKind::Name(n) => match Format::from_name(n) {
                Some(f) => match format {
                    Some((_, first)) => twice(diags, "format", c.span, first),
                    None => format = Some((f, c.span)),
                },
                None => {
                    let hint = super::did_you_mean(n, FORMAT_NAMES);
                    diags.push(
                        Diagnostic::error("unknown-name", c.span, format!("unknown text format `{n}`"))
                            .with_label("not a format")
                            .with_hint_opt(hint)
                            .with_hint(format!("the formats are {}; a pattern is written `/.../`", FORMAT_NAMES.join(", "))),
                    );
                }
            },
            ConstraintKind::Regex(p) => match pattern {
                Some((_, first)) => twice(diags, "pattern", c.span, first),
                None => match check_pattern(p) {
                    Ok(()) => pattern = Some((p.clone(), c.span)),
                    Err(reason) => diags.push(Diagnostic::error("invalid-pattern", c.span, format!("invalid pattern: {reason}")).with_label("this pattern")),
                },
            },
            ConstraintKind::Setting { key, value } if key.name == "from" => match (&value.kind, &source) {
                (_, Some((_, first))) => twice(diags, "`from`", c.span, *first),
                (ValueKind::Path(parts), None) if parts.len() == 1 => source = Some((parts[0].name.clone(), value.span)),
                _ => diags.push(
                    Diagnostic::error("invalid-value", value.span, "`from` takes the name of one of the step's inputs, e.g. `from: email`")
                        .with_label("not a field name"),
                ),
            },
            ConstraintKind::Setting { key, value } => {
                let slot = match key.name.as_str() {
                    "max_length" => &mut max_length,
                    "min_length" => &mut min_length,
                    other => {
                        let hint = super::did_you_mean(other, ["max_length", "min_length", "from"]);
                        diags.push(
                            Diagnostic::error("unknown-name", key.span, format!("unknown text constraint `{other}`"))
                                .with_label("not a constraint")
                                .with_hint_opt(hint)
                                .with_hint("text takes a format, a `/pattern/`, `min_length: N`, `max_length: N` and `from: FIELD`"),
                        );
                        continue;
                    }
                };
                let n = match value.kind {
                    ValueKind::Int(n) if (0..=i64::from(MAX_LENGTH_LIMIT)).contains(&n) => n as u32,
                    _ => {
                        diags.push(
                            Diagnostic::error("invalid-value", value.span, format!("`{}` takes a whole number from 0 to {MAX_LENGTH_LIMIT}", key.name))
                                .with_label("not a length"),
                        );
                        continue;
                    }
                };
                match slot {
                    Some((_, first)) => twice(diags, &format!("`{}`", key.name), c.span, *first),
                    None => *slot = Some((n, c.span)),
                }
            }
        }
    }
    if diags.len() > before {
        return base;
    }
    if let (Some((min, _)), Some((max, at))) = (min_length, max_length) {
        if min > max {
            diags.push(
                Diagnostic::error("unmatchable-pattern", at, format!("no text is at least {min} and at most {max} characters long"))
                    .with_label("below the minimum"),
            );
            return base;
        }
    }
    if max_length.is_some_and(|(n, _)| n == 0) {
        diags.push(Diagnostic::error("invalid-value", max_length.map_or(span, |(_, s)| s), "`max_length: 0` allows only empty text").with_label("zero"));
        return base;
    }
    let rule = match TextRule::new(format.map(|(f, _)| f), pattern.as_ref().map(|(p, _)| p.clone()), min_length.map(|(n, _)| n), max_length.map(|(n, _)| n)) {
        Ok(rule) => rule,
        Err(reason) => {
            diags.push(Diagnostic::error("invalid-pattern", pattern.as_ref().map_or(span, |(_, s)| *s), format!("invalid pattern: {reason}")));
            return base;
        }
    };
    if let Err(empty) = matchable(&rule) {
        let at = pattern.as_ref().map(|(_, s)| *s).or(max_length.map(|(_, s)| s)).unwrap_or(span);
        diags.push(
            Diagnostic::error("unmatchable-pattern", at, empty)
                .with_label("nothing can match")
                .with_hint("a value would have to match every constraint at once"),
        );
        return base;
    }
    Type::Constrained(match source {
        Some((field, at)) => rule.with_source(&field, at),
        None => rule,
    })
}

/// Checks the `from: FIELD` constraints of a signature: each names one of its `in` fields, and
/// only `out` fields have them (a step's inputs are what its answer may quote).
pub(crate) fn check_sources(inputs: &[super::Field], outputs: &[super::Field], diags: &mut Vec<Diagnostic>) {
    for f in outputs {
        for rule in rules(&f.ty) {
            if let Some(src) = rule.source() {
                if !inputs.iter().any(|i| i.name == src) {
                    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
                    diags.push(
                        Diagnostic::error("unknown-name", rule.source_span, format!("`from: {src}` names no input of this signature"))
                            .with_label("not an `in` field")
                            .with_hint_opt(super::did_you_mean(src, names.iter().copied()))
                            .with_hint(format!("the value must be quoted from one of the signature's inputs: {}", names.join(", "))),
                    );
                }
            }
        }
    }
    forbid_sources(inputs, "a signature's `in` fields", diags);
}

/// Reports every `from: FIELD` in `fields`, which are not a signature's outputs.
pub(crate) fn forbid_sources(fields: &[super::Field], what: &str, diags: &mut Vec<Diagnostic>) {
    for f in fields {
        for rule in rules(&f.ty) {
            if rule.source().is_some() {
                diags.push(
                    Diagnostic::error("invalid-constraint", rule.source_span, format!("`from` does not apply to {what}"))
                        .with_hint("`from: FIELD` constrains what a model writes in a signature's `out` field to text quoted from one of its `in` fields"),
                );
            }
        }
    }
}

/// Every text rule inside a type (through lists).
pub(crate) fn rules(ty: &Type) -> Vec<&TextRule> {
    match ty {
        Type::Constrained(r) => vec![r],
        Type::List(inner) => rules(inner),
        _ => Vec::new(),
    }
}

/// The fuel a pattern's check may spend in the regex engine: patterns real programs use take
/// a tiny part of it; a pathological one gets an error instead of a long wait.
const PATTERN_FUEL: u64 = 2_000_000;

/// Checks a pattern alone: it compiles in both engines (the regex crate checks values, the
/// derivative engine decodes under it) and has no anchors or look-arounds, which a whole-value
/// match has no use for.
fn check_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("the pattern is empty".into());
    }
    regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| short_regex_error(&e.to_string()))?;
    let mut b = llguidance::derivre::RegexBuilder::new();
    let e = b.mk(&llguidance::derivre::RegexAst::Regex(p.to_string())).map_err(|e| format!("{e} (constrained decoding cannot use it)"))?;
    b.to_regex_limited(e, PATTERN_FUEL).map_err(|e| format!("{e}"))?;
    Ok(())
}

/// Whether some text satisfies every constraint of `rule` at once; the error says why not.
fn matchable(rule: &TextRule) -> Result<(), String> {
    use llguidance::derivre::{RegexAst, RegexBuilder};
    let mut parts: Vec<RegexAst> = rule.regexes().into_iter().map(RegexAst::Regex).collect();
    if rule.min_length.is_some() || rule.max_length.is_some() {
        let (min, max) = (rule.min_length.unwrap_or(0), rule.max_length.unwrap_or(u32::MAX));
        parts.push(RegexAst::Repeat(Box::new(RegexAst::Regex("(?s:.)".into())), min, max));
    }
    let mut b = RegexBuilder::new();
    let e = b.mk(&RegexAst::And(parts)).map_err(|e| e.to_string())?;
    let mut rx = b.to_regex_limited(e, PATTERN_FUEL).map_err(|e| e.to_string())?;
    if rx.always_empty() {
        return Err(format!("no text satisfies `{rule}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(format: Option<Format>, pattern: Option<&str>, max: Option<u32>) -> TextRule {
        TextRule::new(format, pattern.map(str::to_string), None, max).expect("compiles")
    }

    #[test]
    fn formats_accept_what_people_write_and_refuse_markers_and_names() {
        let email = rule(Some(Format::Email), None, None);
        for ok in ["ann.lee@example.com", "b+tag@mail.co.uk", "x_y%z@sub-domain.example.org"] {
            assert_eq!(email.check(ok), Ok(()), "{ok}");
        }
        for bad in ["#", "## people ##", "David Okafor and Lena Fischer", "ann@localhost", "@example.com", "a@b.c", "a b@example.com"] {
            assert!(email.check(bad).unwrap_err().contains("is not an e-mail address"), "{bad}");
        }
        let url = rule(Some(Format::Url), None, None);
        assert_eq!(url.check("https://example.com/a/b?x=1#top"), Ok(()));
        assert!(url.check("example.com").is_err());
        let date = rule(Some(Format::Date), None, None);
        assert_eq!(date.check("2026-02-28"), Ok(()));
        assert!(date.check("2026-02-30").is_err());
        assert!(date.check("2026-13-01").is_err());
        assert_eq!(rule(Some(Format::Time), None, None).check("23:59"), Ok(()));
        assert_eq!(rule(Some(Format::Uuid), None, None).check("123e4567-e89b-12d3-a456-426614174000"), Ok(()));
    }

    #[test]
    fn patterns_match_whole_values_and_lengths_count_characters() {
        let code = rule(None, Some("[A-Z]{3}-[0-9]{4}"), None);
        assert_eq!(code.check("ABC-1234"), Ok(()));
        assert!(code.check("xABC-1234").unwrap_err().contains("does not match the pattern /[A-Z]{3}-[0-9]{4}/"));
        let short = rule(None, None, Some(3));
        assert_eq!(short.check("äöü"), Ok(()));
        assert!(short.check("abcd").unwrap_err().contains("4 characters, more than the 3 allowed"));
    }

    #[test]
    fn bad_and_empty_patterns_are_told_apart() {
        assert!(check_pattern("[a-").is_err());
        assert!(check_pattern("(?=a)b").is_err());
        assert_eq!(check_pattern("[a-z]+"), Ok(()));
        let never = TextRule::new(Some(Format::Date), Some("[a-z]+".into()), None, None).expect("compiles");
        assert!(matchable(&never).unwrap_err().contains("no text satisfies"));
        let too_short = TextRule::new(None, Some("[a-z]{5}".into()), None, Some(3)).expect("compiles");
        assert!(matchable(&too_short).is_err());
        assert_eq!(matchable(&rule(Some(Format::Email), None, Some(254))), Ok(()));
    }

    #[test]
    fn rules_print_as_they_are_written() {
        let r = TextRule::new(Some(Format::Email), Some("a/b".into()), Some(3), Some(80)).expect("compiles");
        assert_eq!(r.to_string(), "text(email, /a\\/b/, min_length: 3, max_length: 80)");
    }
}
