//! `feedback` declarations: the kinds of feedback a program takes, typed like Langfuse's
//! ScoreConfigs or TensorZero's metrics, so a bad value is refused when it is sent rather than
//! found when it is learned from.
//!
//! ```text
//! feedback thumbs: bool "was the answer useful"
//! feedback rating: int(1..5)
//! feedback confidence: float(0..1)
//! feedback issue: label(wrong_team, rude, too_long)
//! feedback comment: text
//! feedback correction "what the answer should have been"
//! ```
//!
//! A program without declarations takes `correction` and `thumbs: bool`. The implicit signals
//! (`accepted`, `rejected`, `edited`, `regenerated`) are a fixed vocabulary every program takes;
//! they cannot be declared. Checking a sent value against its kind is the server's job
//! (`serve::feedback`); this file only checks the declarations.

use std::collections::HashMap;

use super::suggest::did_you_mean;
use crate::syntax::ast::{FeedbackDecl, TypeKind, ValueKind};
use crate::syntax::{Diagnostic, Span};

/// One kind of feedback a program takes.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackSpec {
    /// The key it is sent and stored under.
    pub name: String,
    /// What values it takes.
    pub kind: FeedbackKind,
    /// What it asks, for people giving it.
    pub description: Option<String>,
    /// The declaration (empty for the defaults of a program that declares none).
    pub span: Span,
}

/// The values a feedback takes.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedbackKind {
    /// A score of 0 or 1 (`bool`): thumbs down or up.
    Bool,
    /// A whole-number score, within the bounds when given (`int(1..5)`).
    Int {
        /// The lowest allowed score.
        min: Option<i64>,
        /// The highest allowed score.
        max: Option<i64>,
    },
    /// A numeric score, within the bounds when given (`float(0..1)`).
    Float {
        /// The lowest allowed score.
        min: Option<f64>,
        /// The highest allowed score.
        max: Option<f64>,
    },
    /// One of a fixed set of categorical values (`label(a, b)`).
    Label(Vec<String>),
    /// Free text (`text`).
    Text,
    /// A corrected output: a value of the program's outputs.
    Correction,
}

impl FeedbackKind {
    /// How the kind is written in a `.loop` file.
    pub fn describe(&self) -> String {
        fn bounds<T: std::fmt::Display>(name: &str, min: &Option<T>, max: &Option<T>) -> String {
            match (min, max) {
                (Some(a), Some(b)) => format!("{name}({a}..{b})"),
                _ => name.to_string(),
            }
        }
        match self {
            FeedbackKind::Bool => "bool".into(),
            FeedbackKind::Int { min, max } => bounds("int", min, max),
            FeedbackKind::Float { min, max } => bounds("float", min, max),
            FeedbackKind::Label(labels) => format!("label({})", labels.join(", ")),
            FeedbackKind::Text => "text".into(),
            FeedbackKind::Correction => "correction".into(),
        }
    }
}

/// The implicit signals: a fixed vocabulary every program takes, which no declaration may reuse.
pub const IMPLICIT_SIGNALS: [&str; 4] = ["accepted", "rejected", "edited", "regenerated"];

/// The key of a corrected output.
pub const CORRECTION: &str = "correction";

/// The types a feedback may have.
const FEEDBACK_TYPES: [&str; 5] = ["bool", "int", "float", "text", "label"];

/// What a program takes when it declares no feedback: `correction` and `thumbs: bool`.
pub fn default_feedback() -> Vec<FeedbackSpec> {
    vec![
        FeedbackSpec {
            name: CORRECTION.into(),
            kind: FeedbackKind::Correction,
            description: Some("what the outputs should have been".into()),
            span: Span::default(),
        },
        FeedbackSpec {
            name: "thumbs".into(),
            kind: FeedbackKind::Bool,
            description: Some("1 for a good answer, 0 for a bad one".into()),
            span: Span::default(),
        },
    ]
}

/// Resolves every `feedback` declaration, reporting duplicates, reserved names, unknown or
/// unsupported types and bad ranges. Returns the defaults when nothing is declared.
pub(super) fn lower(decls: &[&FeedbackDecl], diags: &mut Vec<Diagnostic>) -> Vec<FeedbackSpec> {
    if decls.is_empty() {
        return default_feedback();
    }
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let mut specs = Vec::new();
    for d in decls {
        let name = d.name.name.as_str();
        if let Some(first) = seen.get(name) {
            diags.push(
                Diagnostic::error("duplicate-name", d.name.span, format!("the feedback `{name}` is declared twice"))
                    .with_label("declared again here")
                    .with_related(*first, "first declared here"),
            );
            continue;
        }
        seen.insert(name, d.name.span);
        if IMPLICIT_SIGNALS.contains(&name) {
            diags.push(
                Diagnostic::error("reserved-name", d.name.span, format!("`{name}` is an implicit signal and cannot be declared"))
                    .with_hint(format!("every program takes the implicit signals {}; pick another name", IMPLICIT_SIGNALS.join(", "))),
            );
            continue;
        }
        if let Some(kind) = kind(d, diags) {
            specs.push(FeedbackSpec { name: name.to_string(), kind, description: d.description.as_ref().map(|s| s.value.clone()), span: d.span });
        }
    }
    specs
}

fn kind(d: &FeedbackDecl, diags: &mut Vec<Diagnostic>) -> Option<FeedbackKind> {
    let name = d.name.name.as_str();
    let Some(ty) = &d.ty else {
        if name == CORRECTION {
            return Some(FeedbackKind::Correction);
        }
        diags.push(
            Diagnostic::error("missing-type", d.name.span, format!("feedback `{name}` has no type")).with_label("add `: TYPE`").with_hint(format!(
                "write e.g. `feedback {name}: bool` or `feedback {name}: int(1..5)`; only `feedback correction` takes the program's outputs"
            )),
        );
        return None;
    };
    if name == CORRECTION {
        diags.push(
            Diagnostic::error("invalid-value", ty.span, "`correction` takes a value of the program's outputs and has no type of its own")
                .with_hint("write `feedback correction`, or give this feedback another name"),
        );
        return None;
    }
    let unsupported = |what: String| {
        Diagnostic::error("invalid-value", ty.span, format!("feedback `{name}` cannot be {what}"))
            .with_hint("feedback types are bool, int(MIN..MAX), float(MIN..MAX), text and label(...); for a corrected output write `feedback correction`")
    };
    let kind = match &ty.kind {
        TypeKind::Named(n) => match n.as_str() {
            "bool" => FeedbackKind::Bool,
            "text" => FeedbackKind::Text,
            "int" => match &d.range {
                None => FeedbackKind::Int { min: None, max: None },
                Some(r) => {
                    let (ValueKind::Int(min), ValueKind::Int(max)) = (&r.min.kind, &r.max.kind) else {
                        diags.push(
                            Diagnostic::error("invalid-value", r.span, "the bounds of an `int` feedback are whole numbers")
                                .with_hint(format!("write e.g. `feedback {name}: int(1..5)`, or make it a `float`")),
                        );
                        return None;
                    };
                    check_order(*min as f64, *max as f64, r.span, diags)?;
                    FeedbackKind::Int { min: Some(*min), max: Some(*max) }
                }
            },
            "float" => match &d.range {
                None => FeedbackKind::Float { min: None, max: None },
                Some(r) => {
                    let number = |v: &ValueKind| match v {
                        ValueKind::Int(i) => *i as f64,
                        ValueKind::Float(f) => *f,
                        // The grammar only admits number literals as bounds.
                        _ => f64::NAN,
                    };
                    let (min, max) = (number(&r.min.kind), number(&r.max.kind));
                    check_order(min, max, r.span, diags)?;
                    FeedbackKind::Float { min: Some(min), max: Some(max) }
                }
            },
            "json" => {
                diags.push(unsupported("`json`".into()));
                return None;
            }
            other => {
                diags.push(
                    Diagnostic::error("unknown-name", ty.span, format!("unknown feedback type `{other}`"))
                        .with_label("not a feedback type")
                        .with_hint_opt(did_you_mean(other, FEEDBACK_TYPES))
                        .with_hint("feedback types are bool, int(MIN..MAX), float(MIN..MAX), text and label(...)"),
                );
                return None;
            }
        },
        TypeKind::Label(labels) => {
            let mut seen: Vec<&str> = Vec::new();
            let mut ok = true;
            for l in labels {
                if l.value.trim().is_empty() {
                    diags.push(Diagnostic::error("invalid-value", l.span, "a label cannot be empty"));
                    ok = false;
                } else if seen.contains(&l.value.as_str()) {
                    diags.push(Diagnostic::error("duplicate-name", l.span, format!("the label `{}` is listed twice", l.value)));
                    ok = false;
                }
                seen.push(&l.value);
            }
            if !ok {
                return None;
            }
            FeedbackKind::Label(labels.iter().map(|l| l.value.clone()).collect())
        }
        TypeKind::List(_) => {
            diags.push(unsupported("a list".into()));
            return None;
        }
        TypeKind::Constrained { .. } => {
            diags.push(unsupported("a constrained type".into()));
            return None;
        }
    };
    if let Some(r) = &d.range {
        if !matches!(kind, FeedbackKind::Int { .. } | FeedbackKind::Float { .. }) {
            diags.push(
                Diagnostic::error("invalid-value", r.span, format!("a range applies to `int` and `float` feedback, not `{}`", kind.describe()))
                    .with_hint("remove the range"),
            );
            return None;
        }
    }
    Some(kind)
}

fn check_order(min: f64, max: f64, span: Span, diags: &mut Vec<Diagnostic>) -> Option<()> {
    if min < max {
        return Some(());
    }
    diags.push(
        Diagnostic::error("invalid-value", span, format!("the range is empty or reversed: {min} is not below {max}"))
            .with_hint("write the lower bound first, e.g. `(1..5)`"),
    );
    None
}
