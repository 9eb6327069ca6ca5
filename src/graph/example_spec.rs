//! `example` declarations: an input of the program with the outputs it should give. Each is a
//! test (`loopc test` runs it and compares) and, unless `held_out`, training data for
//! `loopc compile`. This file checks them against the program's inputs and outputs: every
//! input given, every name known, every value a literal of its field's type.
//!
//! ```text
//! example refund "a double charge goes to billing" {
//!   input { ticket: "I was charged twice this month" }
//!   output { category: billing }
//! }
//! ```

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::decl::Field;
use super::suggest::{name_list, Suggester};
use super::types::Type;
use crate::syntax::ast::{self, ExampleDecl, ValueKind};
use crate::syntax::{format_value, Diagnostic, Span};

/// A checked example.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleSpec {
    /// The example's name, unique in the program.
    pub name: String,
    /// What it shows, if written.
    pub description: Option<String>,
    /// A test only: `compile` never trains on it.
    pub held_out: bool,
    /// A value for every program input, typed by its field.
    pub inputs: Map<String, Value>,
    /// The expected value of some or all outputs, typed by their fields.
    pub outputs: Map<String, Value>,
    /// The declaration.
    pub span: Span,
}

impl ExampleSpec {
    /// The example as one dataset row: inputs and expected outputs side by side.
    pub fn fields(&self) -> Map<String, Value> {
        self.inputs.iter().chain(&self.outputs).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Checks every `example` against the program's `inputs` and `outputs`.
pub(super) fn lower(decls: &[&ExampleDecl], inputs: &[Field], outputs: &[Field], suggest: &Suggester, diags: &mut Vec<Diagnostic>) -> Vec<ExampleSpec> {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let cx = Scope {
        inputs,
        outputs,
        input_index: inputs.iter().map(|f| (f.name.as_str(), f)).collect(),
        output_index: outputs.iter().map(|f| (f.name.as_str(), f)).collect(),
        suggest,
    };
    let mut specs = Vec::with_capacity(decls.len());
    for d in decls {
        if let Some(first) = seen.get(d.name.name.as_str()) {
            diags.push(
                Diagnostic::error("duplicate-name", d.name.span, format!("the example `{}` is declared twice", d.name.name))
                    .with_label("declared again here")
                    .with_related(*first, "first declared here")
                    .with_hint("`loopc test` reports examples by name; give each its own"),
            );
        } else {
            seen.insert(&d.name.name, d.name.span);
        }
        specs.push(cx.example(d, diags));
    }
    specs
}

struct Scope<'a> {
    inputs: &'a [Field],
    outputs: &'a [Field],
    input_index: HashMap<&'a str, &'a Field>,
    output_index: HashMap<&'a str, &'a Field>,
    suggest: &'a Suggester,
}

impl Scope<'_> {
    fn example(&self, d: &ExampleDecl, diags: &mut Vec<Diagnostic>) -> ExampleSpec {
        let name = &d.name.name;
        let inputs = self.part(d, &d.inputs, Part::Input, diags);
        let bound: HashSet<&str> = d.inputs.iter().map(|b| b.name.name.as_str()).collect();
        let missing: Vec<&Field> = self.inputs.iter().filter(|f| !bound.contains(f.name.as_str())).collect();
        if !missing.is_empty() {
            let names = name_list(missing.iter().map(|f| f.name.as_str()));
            let (message, hint) = match missing.as_slice() {
                [one] => (
                    format!("example `{name}` gives no value for the input `{}`", one.name),
                    format!("add `{}: ...` (a `{}`) to `input {{ ... }}`", one.name, one.ty.brief()),
                ),
                _ => (
                    format!("example `{name}` gives no value for {} inputs: {names}", missing.len()),
                    "add `NAME: ...` to `input { ... }` for each".to_string(),
                ),
            };
            diags.push(Diagnostic::error("unbound-input", d.inputs_span, message).with_label("missing here").with_hint(hint));
        }
        let outputs = self.part(d, &d.outputs, Part::Output, diags);
        ExampleSpec {
            name: name.clone(),
            description: d.description.as_ref().map(|s| s.value.clone()),
            held_out: d.held_out.is_some(),
            inputs,
            outputs,
            span: d.span,
        }
    }

    /// Checks one `input { ... }` or `output { ... }` block and gives its values as JSON.
    fn part(&self, d: &ExampleDecl, bindings: &[ast::Binding], part: Part, diags: &mut Vec<Diagnostic>) -> Map<String, Value> {
        let (index, fields, other) = match part {
            Part::Input => (&self.input_index, self.inputs, &self.output_index),
            Part::Output => (&self.output_index, self.outputs, &self.input_index),
        };
        let mut values = Map::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for b in bindings {
            let key = b.name.name.as_str();
            if let Some(first) = seen.insert(key, b.name.span) {
                diags.push(Diagnostic::error("duplicate-name", b.name.span, format!("`{key}` is given twice")).with_related(first, "first given here"));
                continue;
            }
            let Some(field) = index.get(key) else {
                let mut diag = Diagnostic::error("unknown-name", b.name.span, format!("the program has no {} `{key}`", part.noun()))
                    .with_label(format!("not {}", part.article()));
                if other.contains_key(key) {
                    diag = diag.with_hint(format!("`{key}` is {}: give it in `{} {{ ... }}`", part.other().article(), part.other().keyword()));
                } else {
                    diag = diag.with_hint_opt(self.suggest.did_you_mean(key, fields.iter().map(|f| f.name.as_str()))).with_hint(format!(
                        "the {}s are: {}",
                        part.noun(),
                        name_list(fields.iter().map(|f| f.name.as_str()))
                    ));
                }
                diags.push(diag);
                continue;
            };
            match self.literal(&b.value, &field.ty) {
                Ok(v) => {
                    values.insert(key.to_string(), v);
                }
                Err(problem) => diags.push(problem.diagnostic(&b.value, field, &d.name.name, self.suggest)),
            }
        }
        values
    }

    /// The JSON value of literal `v` as a value of `ty`, or why it is not one.
    fn literal(&self, v: &ast::Value, ty: &Type) -> Result<Value, Problem> {
        Ok(match (&v.kind, ty) {
            (ValueKind::Path(p), _) if p.len() != 1 || !matches!(ty, Type::Label(_)) => return Err(Problem::NotLiteral),
            (ValueKind::Path(p), Type::Label(labels)) => label(&p[0].name, labels, p[0].span)?,
            (ValueKind::Str(s), Type::Label(labels)) => label(s, labels, v.span)?,
            (ValueKind::Str(s), Type::Text | Type::Json) => Value::String(s.clone()),
            (ValueKind::Str(s), Type::Constrained(rule)) => {
                rule.check(s).map_err(|reason| Problem::Breaks { reason, span: v.span })?;
                Value::String(s.clone())
            }
            (ValueKind::Int(i), Type::Int | Type::Float | Type::Json) => Value::from(*i),
            (ValueKind::Float(f), Type::Float | Type::Json) => serde_json::json!(f),
            (ValueKind::Bool(b), Type::Bool | Type::Json) => Value::Bool(*b),
            (ValueKind::List(items), Type::List(inner)) => Value::Array(items.iter().map(|i| self.literal(i, inner)).collect::<Result<_, _>>()?),
            (ValueKind::List(items), Type::Json) => Value::Array(items.iter().map(|i| self.literal(i, &Type::Json)).collect::<Result<_, _>>()?),
            _ => return Err(Problem::Mismatch(v.span)),
        })
    }
}

/// `value` as a label of `labels`, or the problem at `span`.
fn label(value: &str, labels: &[String], span: Span) -> Result<Value, Problem> {
    if labels.iter().any(|l| l == value) {
        Ok(Value::String(value.to_string()))
    } else {
        Err(Problem::NotALabel { value: value.to_string(), span })
    }
}

/// Why a literal does not fit its field.
enum Problem {
    /// A reference or dotted path where a literal belongs.
    NotLiteral,
    /// A literal (at the span: maybe a list element) of another type.
    Mismatch(Span),
    /// Text that is not one of the field's labels.
    NotALabel {
        /// The text.
        value: String,
        /// Where it is written.
        span: Span,
    },
    /// Text that breaks its field's constraints (a format, a pattern, a length).
    Breaks {
        /// Which constraint it breaks, and how.
        reason: String,
        /// Where it is written.
        span: Span,
    },
}

impl Problem {
    fn diagnostic(self, v: &ast::Value, field: &Field, example: &str, suggest: &Suggester) -> Diagnostic {
        match self {
            Problem::NotLiteral => Diagnostic::error("invalid-value", v.span, format!("`{}` is not a literal", format_value(v)))
                .with_label("an example holds values, not references")
                .with_hint(format!("write the value of `{}` itself, e.g. {}", field.name, sample(&field.ty))),
            Problem::Mismatch(span) => Diagnostic::error(
                "type-mismatch",
                span,
                format!("`{}` of example `{example}` takes `{}`, not `{}`", field.name, field.ty.brief(), format_value(v)),
            )
            .with_label(format!("expected `{}`", field.ty.brief()))
            .with_hint(format!("write a `{}`, e.g. {}", field.ty.brief(), sample(&field.ty))),
            Problem::NotALabel { value, span } => {
                let labels = field.ty.labels().or_else(|| match &field.ty {
                    Type::List(inner) => inner.labels(),
                    _ => None,
                });
                let labels = labels.unwrap_or_default();
                Diagnostic::error("unknown-name", span, format!("`{value}` is not a label of `{}`", field.name))
                    .with_label("not one of the labels")
                    .with_hint_opt(suggest.did_you_mean(&value, labels.iter().map(String::as_str)))
                    .with_hint(format!("the labels are: {}", name_list(labels.iter().map(String::as_str))))
            }
            Problem::Breaks { reason, span } => Diagnostic::error("invalid-value", span, format!("`{}` of example `{example}`: {reason}", field.name))
                .with_label(format!("expected `{}`", field.ty.brief())),
        }
    }
}

/// A literal of `ty` for a hint.
fn sample(ty: &Type) -> String {
    match ty {
        Type::Text | Type::Json => "`\"some text\"`".into(),
        Type::Constrained(rule) => format!("a `text({rule})` value"),
        Type::Int => "`3`".into(),
        Type::Float => "`0.5`".into(),
        Type::Bool => "`true`".into(),
        Type::Label(labels) => labels.first().map_or("a label".into(), |l| format!("`{}`", crate::syntax::label_literal(l))),
        Type::List(inner) => format!("`[{}]`", sample(inner).trim_matches('`')),
    }
}

/// Which block of an example.
#[derive(Clone, Copy)]
enum Part {
    Input,
    Output,
}

impl Part {
    fn noun(self) -> &'static str {
        match self {
            Part::Input => "input",
            Part::Output => "output",
        }
    }

    fn article(self) -> &'static str {
        match self {
            Part::Input => "an input",
            Part::Output => "an output",
        }
    }

    fn keyword(self) -> &'static str {
        self.noun()
    }

    fn other(self) -> Part {
        match self {
            Part::Input => Part::Output,
            Part::Output => Part::Input,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::tests::check;

    /// A program with inputs `t: text` and `n: int`, outputs `c: label(billing, "bug report")` and
    /// `tags: list<text>`, and `example` appended.
    fn with(example: &str) -> Vec<String> {
        check(&format!(
            "program p\ninput t: text\ninput n: int\noutput c: label(billing, \"bug report\")\noutput tags: list<text>\n\
             return {{ c: billing, tags: [\"x\"] }}\n{example}\n"
        ))
        .into_iter()
        // Only what is said about the example (from line 7 on); the return has its own errors.
        .filter(|d| d.split_whitespace().nth(1).and_then(|lc| lc.split(':').next()?.parse::<usize>().ok()).is_some_and(|line| line >= 7))
        .collect()
    }

    #[test]
    fn a_well_typed_example_checks() {
        let ok = "example e \"d\" held_out { input { t: \"x\", n: 3 } output { c: \"bug report\", tags: [\"a\", \"b\"] } }";
        assert_eq!(with(ok), Vec::<String>::new());
        assert_eq!(with("example e { input { t: \"x\", n: 3 } }"), Vec::<String>::new(), "expected outputs are optional");
    }

    #[test]
    fn every_input_must_be_given_and_named_right() {
        assert_eq!(
            with("example e { input { tt: \"x\" } }"),
            ["unbound-input 7:13 example `e` gives no value for 2 inputs: t, n", "unknown-name 7:21 the program has no input `tt`",]
        );
        assert_eq!(with("example e { input { t: \"x\", n: 1, c: billing } }"), ["unknown-name 7:35 the program has no input `c`"]);
    }

    #[test]
    fn values_are_literals_of_their_fields_types() {
        let got = with("example e { input { t: 1, n: 2.5 } output { c: biling, tags: [1] } }");
        assert_eq!(
            got,
            [
                "type-mismatch 7:24 `t` of example `e` takes `text`, not `1`",
                "type-mismatch 7:30 `n` of example `e` takes `int`, not `2.5`",
                "unknown-name 7:48 `biling` is not a label of `c`",
                "type-mismatch 7:63 `tags` of example `e` takes `list<text>`, not `[1]`",
            ]
        );
        assert_eq!(with("example e { input { t: input.t, n: 1 } }"), ["invalid-value 7:24 `input.t` is not a literal"]);
    }

    #[test]
    fn example_names_are_unique() {
        let got = with("example e { input { t: \"x\", n: 1 } }\nexample e { input { t: \"y\", n: 2 } }");
        assert_eq!(got, ["duplicate-name 8:9 the example `e` is declared twice"]);
    }
}
