//! `metric` declarations: how a program's outputs are scored against an example, in [0, 1].

use std::collections::HashMap;

use super::decl::{Field, Signature, SignatureId};
use super::suggest::{did_you_mean, name_list, Suggester};
use super::types::Type;
use crate::syntax::ast::{Arg, MetricDecl, ValueKind};
use crate::syntax::{format_value, Diagnostic, Span};

/// A resolved metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSpec {
    /// The metric's name.
    pub name: String,
    /// How it scores.
    pub kind: MetricKind,
    /// The declaration.
    pub span: Span,
}

/// The metric functions.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricKind {
    /// 1 when the two values are equal.
    Exact(Operand, Operand),
    /// 1 when equal after lowercasing, trimming punctuation and collapsing whitespace.
    NormalizedExact(Operand, Operand),
    /// 1 when the first (as text) contains the second, ignoring case.
    Contains(Operand, Operand),
    /// Token-level F1 between the two texts.
    TokenF1(Operand, Operand),
    /// Item-level F1 between two lists: an item counts when the other list has it too
    /// (compared lowercased with whitespace collapsed); two empty lists score 1.
    ItemsF1(Operand, Operand),
    /// 1 when the text matches the regular expression.
    Regex(Operand, String),
    /// 1 when the two numbers differ by at most `tolerance` (relative to the target's size).
    Numeric {
        /// The predicted number.
        prediction: Operand,
        /// The expected number.
        target: Operand,
        /// The allowed relative difference.
        tolerance: f64,
    },
    /// A language-model judge: runs `signature` with the bindings and reads its one score.
    Judge {
        /// The rubric signature.
        signature: SignatureId,
        /// What fills each of its inputs.
        bindings: Vec<(String, Operand)>,
    },
    /// Scores people gave (stored feedback under this criterion), normalised to [0, 1].
    Human {
        /// The feedback key, e.g. `helpfulness`.
        criterion: String,
    },
}

/// A value a metric reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A program output of the run being scored: `output.NAME`.
    Output(String),
    /// A field of the dataset example: `example.NAME`.
    Example(String),
    /// A literal.
    Const(serde_json::Value),
}

/// The metric functions, with a usage line each.
pub const METRIC_FUNCTIONS: [(&str, &str); 9] = [
    ("exact", "exact(output.label, example.label)"),
    ("normalized_exact", "normalized_exact(output.answer, example.answer)"),
    ("contains", "contains(output.answer, example.answer)"),
    ("f1", "f1(output.answer, example.answer)"),
    ("items_f1", "items_f1(output.addresses, example.addresses)"),
    ("regex", "regex(output.code, \"^[A-Z]{3}$\")"),
    ("numeric", "numeric(output.total, example.total, tolerance: 0.01)"),
    ("judge", "judge(Rubric, question: example.question, answer: output.answer)"),
    ("human", "human(\"helpfulness\")"),
];

/// What a metric may refer to, with name indexes (many metrics over many fields stay linear).
pub(super) struct Scope<'a> {
    pub inputs: &'a [Field],
    pub outputs: &'a [Field],
    pub signatures: &'a [Signature],
    pub input_index: &'a HashMap<&'a str, usize>,
    pub output_index: &'a HashMap<&'a str, usize>,
    pub signature_index: &'a HashMap<&'a str, usize>,
    pub suggest: &'a Suggester,
}

impl Scope<'_> {
    fn output(&self, name: &str) -> Option<&Field> {
        self.output_index.get(name).map(|&i| &self.outputs[i])
    }

    fn input(&self, name: &str) -> Option<&Field> {
        self.input_index.get(name).map(|&i| &self.inputs[i])
    }
}

/// Resolves one `metric` declaration.
pub(super) fn lower(decl: &MetricDecl, scope: &Scope<'_>, diags: &mut Vec<Diagnostic>) -> Option<MetricSpec> {
    let f = decl.function.name.as_str();
    let Some(&(_, usage)) = METRIC_FUNCTIONS.iter().find(|(n, _)| *n == f) else {
        diags.push(
            Diagnostic::error("unknown-name", decl.function.span, format!("unknown metric function `{f}`"))
                .with_label("not a metric")
                .with_hint_opt(did_you_mean(f, METRIC_FUNCTIONS.iter().map(|(n, _)| *n)))
                .with_hint(format!("the metrics are: {}", METRIC_FUNCTIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))),
        );
        return None;
    };
    let positional: Vec<&Arg> = decl.args.iter().filter(|a| a.name.is_none()).collect();
    let named: Vec<&Arg> = decl.args.iter().filter(|a| a.name.is_some()).collect();
    let arity_error = |diags: &mut Vec<Diagnostic>| {
        diags.push(Diagnostic::error("invalid-value", decl.span, format!("`{f}` is called with the wrong arguments")).with_hint(format!("write `{usage}`")));
    };
    let allow_named = |diags: &mut Vec<Diagnostic>, allowed: &[&str]| {
        for a in &named {
            let n = a.name.as_ref().map_or("", |n| n.name.as_str());
            if !allowed.contains(&n) {
                diags.push(Diagnostic::error("unknown-setting", a.value.span, format!("`{f}` takes no argument `{n}`")).with_hint(format!("write `{usage}`")));
            }
        }
    };
    let kind = match f {
        "exact" | "normalized_exact" | "contains" | "f1" | "items_f1" | "numeric" => {
            if positional.len() != 2 {
                arity_error(diags);
                return None;
            }
            allow_named(diags, if f == "numeric" { &["tolerance"] } else { &[] });
            let a = operand(positional[0], scope, diags)?;
            let b = operand(positional[1], scope, diags)?;
            match f {
                "exact" => MetricKind::Exact(a, b),
                "normalized_exact" => MetricKind::NormalizedExact(a, b),
                "contains" => MetricKind::Contains(a, b),
                "f1" => MetricKind::TokenF1(a, b),
                "items_f1" => MetricKind::ItemsF1(a, b),
                _ => {
                    for (arg, op) in positional.iter().zip([&a, &b]) {
                        if let Some(ty) = operand_type(op, scope) {
                            if !Type::Float.accepts(&ty) {
                                diags.push(Diagnostic::error(
                                    "type-mismatch",
                                    arg.value.span,
                                    format!("`numeric` compares numbers, but this is `{}`", ty.brief()),
                                ));
                            }
                        }
                    }
                    let tolerance = named
                        .iter()
                        .find_map(|a| match a.value.kind {
                            ValueKind::Float(t) => Some(t),
                            ValueKind::Int(t) => Some(t as f64),
                            _ => None,
                        })
                        .unwrap_or(1e-6);
                    MetricKind::Numeric { prediction: a, target: b, tolerance }
                }
            }
        }
        "regex" => {
            allow_named(diags, &[]);
            let (Some(target), Some(pattern), 2) = (positional.first(), positional.get(1), positional.len()) else {
                arity_error(diags);
                return None;
            };
            let ValueKind::Str(p) = &pattern.value.kind else {
                arity_error(diags);
                return None;
            };
            if let Err(e) = regex::Regex::new(p) {
                diags.push(Diagnostic::error("invalid-value", pattern.value.span, format!("bad regular expression: {e}")));
                return None;
            }
            MetricKind::Regex(operand(target, scope, diags)?, p.clone())
        }
        "judge" => judge(decl, &positional, &named, scope, usage, diags)?,
        _ => {
            allow_named(diags, &[]);
            let criterion = match positional.as_slice() {
                [] => "rating".to_string(),
                [a] => match &a.value.kind {
                    ValueKind::Str(s) => s.clone(),
                    _ => {
                        arity_error(diags);
                        return None;
                    }
                },
                _ => {
                    arity_error(diags);
                    return None;
                }
            };
            MetricKind::Human { criterion }
        }
    };
    Some(MetricSpec { name: decl.name.name.clone(), kind, span: decl.span })
}

fn judge(decl: &MetricDecl, positional: &[&Arg], named: &[&Arg], scope: &Scope<'_>, usage: &str, diags: &mut Vec<Diagnostic>) -> Option<MetricKind> {
    let sig_name = match positional {
        [a] => match &a.value.kind {
            ValueKind::Path(p) if p.len() == 1 => Some(&p[0]),
            _ => None,
        },
        _ => None,
    };
    let Some(sig_name) = sig_name else {
        diags.push(Diagnostic::error("invalid-value", decl.span, "`judge` takes one rubric signature").with_hint(format!("write `{usage}`")));
        return None;
    };
    let Some(&idx) = scope.signature_index.get(sig_name.name.as_str()) else {
        diags.push(
            Diagnostic::error("unknown-name", sig_name.span, format!("unknown signature `{}`", sig_name.name))
                .with_hint_opt(scope.suggest.did_you_mean(&sig_name.name, scope.signatures.iter().map(|s| s.name.as_str()))),
        );
        return None;
    };
    let sig = &scope.signatures[idx];
    let scored = sig.outputs.len() == 1 && matches!(sig.outputs[0].ty, Type::Float | Type::Int | Type::Bool);
    if !scored {
        diags.push(
            Diagnostic::error(
                "type-mismatch",
                sig_name.span,
                format!("a judge's signature needs exactly one `float`, `int` or `bool` output; `{}` has other outputs", sig.name),
            )
            .with_related(sig.span, "declared here")
            .with_hint("a float is read as a score in [0, 1], an int as a rating out of 5, a bool as pass/fail"),
        );
    }
    let mut bindings = Vec::new();
    for a in named {
        let Some(n) = a.name.as_ref() else { continue };
        if !sig.inputs.iter().any(|f| f.name == n.name) {
            diags.push(
                Diagnostic::error("unknown-name", n.span, format!("`{}` has no input `{}`", sig.name, n.name))
                    .with_hint_opt(scope.suggest.did_you_mean(&n.name, sig.inputs.iter().map(|f| f.name.as_str()))),
            );
            continue;
        }
        bindings.push((n.name.clone(), operand(a, scope, diags)?));
    }
    let bound: std::collections::HashSet<&str> = bindings.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&str> = sig.inputs.iter().map(|f| f.name.as_str()).filter(|n| !bound.contains(n)).collect();
    if missing.len() > 3 {
        // One diagnostic for many, as for steps.
        diags.push(
            Diagnostic::error("unbound-input", decl.span, format!("{} inputs of `{}` are not bound: {}", missing.len(), sig.name, name_list(missing)))
                .with_hint("add `NAME: output.FIELD` or `NAME: example.FIELD` for each"),
        );
    } else {
        for f in missing {
            diags.push(
                Diagnostic::error("unbound-input", decl.span, format!("input `{f}` of `{}` is not bound", sig.name))
                    .with_hint(format!("add `{f}: output.FIELD` or `{f}: example.FIELD`")),
            );
        }
    }
    Some(MetricKind::Judge { signature: super::decl::SignatureId(idx), bindings })
}

fn operand(arg: &Arg, scope: &Scope<'_>, diags: &mut Vec<Diagnostic>) -> Option<Operand> {
    let v = &arg.value;
    let op = match &v.kind {
        ValueKind::Path(p) if p.len() == 2 => {
            let (src, field) = (&p[0], &p[1]);
            let (known, op): (bool, fn(String) -> Operand) = match src.name.as_str() {
                "output" => (scope.output(&field.name).is_some(), Operand::Output),
                "example" => (scope.output(&field.name).or_else(|| scope.input(&field.name)).is_some(), Operand::Example),
                _ => {
                    diags.push(
                        Diagnostic::error("unknown-name", src.span, format!("a metric cannot read `{}`", src.name))
                            .with_hint("metrics read `output.FIELD` (the run) and `example.FIELD` (the dataset row)"),
                    );
                    return None;
                }
            };
            if !known {
                let fields: &[&[Field]] = if src.name == "output" { &[scope.outputs] } else { &[scope.inputs, scope.outputs] };
                let count = fields.iter().map(|f| f.len()).sum();
                let hint = if scope.suggest.affords(count) {
                    let names: Vec<&str> = fields.iter().flat_map(|f| f.iter()).map(|f| f.name.as_str()).collect();
                    scope.suggest.did_you_mean(&field.name, names)
                } else {
                    None
                };
                diags.push(
                    Diagnostic::error("unknown-name", field.span, format!("`{}` has no field `{}`", src.name, field.name))
                        .with_label("unknown field")
                        .with_hint_opt(hint),
                );
                return None;
            }
            op(field.name.clone())
        }
        ValueKind::Str(s) => Operand::Const(serde_json::Value::String(s.clone())),
        ValueKind::Int(i) => Operand::Const((*i).into()),
        ValueKind::Float(f) => Operand::Const(serde_json::json!(f)),
        ValueKind::Bool(b) => Operand::Const((*b).into()),
        _ => {
            diags.push(
                Diagnostic::error("invalid-value", v.span, format!("`{}` is not a metric operand", format_value(v)))
                    .with_hint("write `output.FIELD`, `example.FIELD` or a literal"),
            );
            return None;
        }
    };
    Some(op)
}

fn operand_type(op: &Operand, scope: &Scope<'_>) -> Option<Type> {
    match op {
        Operand::Output(n) => scope.output(n).map(|f| f.ty.clone()),
        Operand::Example(n) => scope.output(n).or_else(|| scope.input(n)).map(|f| f.ty.clone()),
        Operand::Const(v) if v.is_number() => Some(Type::Float),
        Operand::Const(_) => Some(Type::Text),
    }
}
