//! The `optimize` declaration: which optimizer `loopc compile` runs, and its settings.

use super::config::{self, Kind};
use super::decl::{MetricId, ModelId};
use super::suggest::did_you_mean;
use crate::syntax::ast::OptimizeDecl;
use crate::syntax::{Diagnostic, Span};

/// A resolved `optimize` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Its settings; unset ones take the compiler's defaults.
    pub settings: OptimizerSettings,
    /// The declaration.
    pub span: Span,
}

/// The optimizers, named as in DSPy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Demos drawn from labelled examples.
    LabeledFewShot,
    /// Demos from the teacher's traces that pass the metric.
    BootstrapFewShot,
    /// Many seeded demo sets, each evaluated, the best kept.
    BootstrapRandomSearch,
    /// Proposed instructions × demo sets × templates, searched with a surrogate.
    InstructionSearch,
}

impl OptimizerKind {
    /// Every optimizer, with its name in source.
    pub const ALL: [(OptimizerKind, &'static str); 4] = [
        (OptimizerKind::LabeledFewShot, "labeled_few_shot"),
        (OptimizerKind::BootstrapFewShot, "bootstrap_few_shot"),
        (OptimizerKind::BootstrapRandomSearch, "bootstrap_random_search"),
        (OptimizerKind::InstructionSearch, "instruction_search"),
    ];

    /// The optimizer's name in source.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, n)| n)
    }
}

/// The prompt templates the runtime can render; `templates` settings choose among these.
pub const TEMPLATE_NAMES: [&str; 3] = ["chat", "json", "completion"];

/// Settings of an optimizer. `None` means "the compiler's default".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerSettings {
    /// The metric to maximise.
    pub metric: Option<MetricId>,
    /// The most demos per step.
    pub max_demos: Option<u32>,
    /// The most labelled (not bootstrapped) demos per step.
    pub max_labeled_demos: Option<u32>,
    /// How many candidate programs to evaluate.
    pub candidates: Option<u32>,
    /// How many instruction variants to propose per signature.
    pub instructions: Option<u32>,
    /// Examples per minibatch in surrogate-guided search.
    pub minibatch: Option<u32>,
    /// The search seed.
    pub seed: Option<u64>,
    /// The model that produces bootstrapped traces (default: the program's own).
    pub teacher: Option<ModelId>,
    /// The templates to search over.
    pub templates: Option<Vec<String>>,
    /// Budget: the most model calls.
    pub max_calls: Option<u64>,
    /// Budget: the most tokens (prompt plus completion).
    pub max_tokens: Option<u64>,
    /// Budget: the most wall-clock seconds.
    pub max_seconds: Option<u64>,
    /// Whether a classification program's search also tries demos retrieved per input.
    pub retrieval: Option<bool>,
}

const SETTINGS: [(&str, Kind); 13] = [
    ("metric", Kind::Name),
    ("max_demos", Kind::Count),
    ("max_labeled_demos", Kind::Count),
    ("candidates", Kind::Count),
    ("instructions", Kind::Count),
    ("minibatch", Kind::Count),
    ("seed", Kind::Count),
    ("teacher", Kind::Name),
    ("templates", Kind::NameList),
    ("max_calls", Kind::Count),
    ("max_tokens", Kind::Count),
    ("max_seconds", Kind::Count),
    ("retrieval", Kind::Bool),
];

/// Resolves the `optimize` declaration against the program's metrics and models.
pub(super) fn lower(decl: &OptimizeDecl, metrics: &[&str], models: &[&str], diags: &mut Vec<Diagnostic>) -> Option<OptimizerSpec> {
    let name = decl.optimizer.name.as_str();
    let Some(&(kind, _)) = OptimizerKind::ALL.iter().find(|(_, n)| *n == name) else {
        let names = OptimizerKind::ALL.map(|(_, n)| n);
        diags.push(
            Diagnostic::error("unknown-name", decl.optimizer.span, format!("unknown optimizer `{name}`"))
                .with_label("not an optimizer")
                .with_hint_opt(did_you_mean(name, names))
                .with_hint(format!("the optimizers are: {}", names.join(", "))),
        );
        return None;
    };
    let s = config::read(&decl.config, &SETTINGS, &format!("optimizer `{name}`"), diags);
    let count = |k: &str| s.count(k).map(|v| u32::try_from(v).unwrap_or(u32::MAX));
    let metric = match s.name("metric") {
        Some(m) => match metrics.iter().position(|n| *n == m.name) {
            Some(i) => Some(MetricId(i)),
            None => {
                diags.push(
                    Diagnostic::error("unknown-name", m.span, format!("unknown metric `{}`", m.name))
                        .with_label("not declared")
                        .with_hint_opt(did_you_mean(&m.name, metrics.iter().copied())),
                );
                None
            }
        },
        None if metrics.len() == 1 => Some(MetricId(0)),
        None => {
            let hint = if metrics.is_empty() {
                "declare one, e.g. `metric accuracy = exact(output.label, example.label)`".to_string()
            } else {
                format!("choose one with `metric: NAME` (declared: {})", metrics.join(", "))
            };
            diags.push(Diagnostic::error("missing-setting", decl.span, format!("`optimize {name}` needs a metric")).with_hint(hint));
            None
        }
    };
    let teacher = s.name("teacher").and_then(|t| match models.iter().position(|n| *n == t.name) {
        Some(i) => Some(ModelId(i)),
        None => {
            diags.push(
                Diagnostic::error("unknown-name", t.span, format!("unknown model `{}`", t.name)).with_hint_opt(did_you_mean(&t.name, models.iter().copied())),
            );
            None
        }
    });
    let templates = s.names("templates").map(|ts| {
        ts.iter()
            .filter(|t| {
                let known = TEMPLATE_NAMES.contains(&t.name.as_str());
                if !known {
                    diags.push(
                        Diagnostic::error("unknown-name", t.span, format!("unknown template `{}`", t.name))
                            .with_hint_opt(did_you_mean(&t.name, TEMPLATE_NAMES))
                            .with_hint(format!("the templates are: {}", TEMPLATE_NAMES.join(", "))),
                    );
                }
                known
            })
            .map(|t| t.name.clone())
            .collect()
    });
    let settings = OptimizerSettings {
        metric,
        max_demos: count("max_demos"),
        max_labeled_demos: count("max_labeled_demos"),
        candidates: count("candidates"),
        instructions: count("instructions"),
        minibatch: count("minibatch"),
        seed: s.count("seed"),
        teacher,
        templates,
        max_calls: s.count("max_calls"),
        max_tokens: s.count("max_tokens"),
        max_seconds: s.count("max_seconds"),
        retrieval: s.boolean("retrieval"),
    };
    Some(OptimizerSpec { kind, settings, span: decl.span })
}
