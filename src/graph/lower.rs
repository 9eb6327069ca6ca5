//! **Checking:** turns a syntax tree into a [`Dag`], resolving every name and checking every
//! type, cycle and binding. All problems are collected in one pass.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::dag::{Dag, Wiring};
use super::decl::*;
use super::example_spec;
use super::feedback_spec;
use super::metric_spec::{self, MetricSpec};
use super::model_spec::{self, ModelSpec};
use super::optimizer_spec::{self, OptimizerSpec};
use super::suggest::{did_you_mean, name_list, Suggester};
use super::tool_spec::{self, ToolSpec};
use super::types::{Type, TYPE_NAMES};
use crate::syntax::ast::{self, Item, ValueKind};
use crate::syntax::{format_value, has_errors, Diagnostic, Span};

/// The result of checking a file: the DAG when there were no errors, and every diagnostic
/// (warnings too) in source order.
#[derive(Debug)]
pub struct Lowered {
    /// The checked program, present exactly when no diagnostic is an error.
    pub dag: Option<Dag>,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

/// Names a program reserves for references; no step may take them.
const RESERVED: [&str; 3] = ["input", "output", "example"];

/// Checks `file` and builds its DAG.
///
/// The work is about linear in the size of the file (name look-ups are hashed, a signature's
/// fields are shared by its steps, graph walks are iterative): checking is safe on any text.
pub fn lower(file: &ast::File) -> Lowered {
    let mut cx = Cx { diags: Vec::new(), suggest: Suggester::new() };
    let dag = cx.file(file);
    let mut diagnostics = cx.diags;
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    let dag = if has_errors(&diagnostics) { None } else { dag };
    Lowered { dag, diagnostics }
}

struct Cx {
    diags: Vec<Diagnostic>,
    suggest: Suggester,
}

/// The slots a signature or tool takes and the outputs a step using it produces, with name
/// indexes; made once per signature (and kind) or tool, and shared by every step using it.
struct Shape<'a> {
    slots: &'a [Field],
    slot_index: HashMap<&'a str, usize>,
    outputs: Fields,
    output_index: HashMap<String, usize>,
}

impl<'a> Shape<'a> {
    fn new(slots: &'a [Field], outputs: Vec<Field>) -> Self {
        let output_index = first_index(outputs.iter().map(|f| f.name.clone()));
        Shape { slots, slot_index: first_index(slots.iter().map(|f| f.name.as_str())), outputs: outputs.into(), output_index }
    }

    fn output(&self, name: &str) -> Option<&Field> {
        self.output_index.get(name).map(|&i| &self.outputs[i])
    }
}

/// The index of the first item with each key, as a linear search would find it.
fn first_index<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> HashMap<K, usize> {
    let mut index = HashMap::new();
    for (i, k) in keys.enumerate() {
        index.entry(k).or_insert(i);
    }
    index
}

/// A step's target and its shape, known before any binding is resolved so that steps may
/// refer to steps declared after them.
struct StepShape<'s, 'a> {
    target: Target,
    shape: &'s Shape<'a>,
}

/// A file's declarations, sorted by kind, in file order.
#[derive(Default)]
struct Decls<'f> {
    inputs: Vec<&'f ast::FieldDecl>,
    outputs: Vec<&'f ast::FieldDecl>,
    signatures: Vec<&'f ast::SignatureDecl>,
    models: Vec<&'f ast::ModelDecl>,
    tools: Vec<&'f ast::ToolDecl>,
    steps: Vec<&'f ast::StepDecl>,
    metrics: Vec<&'f ast::MetricDecl>,
    returns: Vec<&'f ast::ReturnDecl>,
    optimizes: Vec<&'f ast::OptimizeDecl>,
    feedback: Vec<&'f ast::FeedbackDecl>,
    examples: Vec<&'f ast::ExampleDecl>,
    memories: Vec<&'f ast::MemoryDecl>,
}

impl<'f> Decls<'f> {
    fn of(file: &'f ast::File) -> Decls<'f> {
        let mut d = Decls::default();
        for item in &file.items {
            match item {
                Item::Input(f) => d.inputs.push(f),
                Item::Output(f) => d.outputs.push(f),
                Item::Model(m) => d.models.push(m),
                Item::Tool(t) => d.tools.push(t),
                Item::Signature(s) => d.signatures.push(s),
                Item::Step(s) => d.steps.push(s),
                Item::Return(r) => d.returns.push(r),
                Item::Metric(m) => d.metrics.push(m),
                Item::Optimize(o) => d.optimizes.push(o),
                Item::Feedback(f) => d.feedback.push(f),
                Item::Example(e) => d.examples.push(e),
                Item::Memory(m) => d.memories.push(m),
            }
        }
        d
    }
}

impl Cx {
    fn file(&mut self, file: &ast::File) -> Option<Dag> {
        let decls = Decls::of(file);
        self.names(&decls);
        let inputs: Vec<Field> = decls.inputs.iter().map(|f| self.field(f)).collect();
        let outputs: Vec<Field> = decls.outputs.iter().map(|f| self.field(f)).collect();
        super::constraint::forbid_sources(&inputs, "program inputs", &mut self.diags);
        super::constraint::forbid_sources(&outputs, "program outputs (declare it on the signature's `out` field)", &mut self.diags);
        if outputs.is_empty() {
            self.diags.push(
                Diagnostic::error("missing-output", file.header.span, "the program declares no `output`")
                    .with_hint("add e.g. `output answer: text` and bind it in `return { answer: step.field }`"),
            );
        }
        let signatures: Vec<Signature> = decls.signatures.iter().map(|s| self.signature(s)).collect();
        let (models, default_model) = self.models(&decls);
        let tools = self.tools(&decls);

        // Each signature's shapes (as `predict` and as `chain_of_thought`) and each tool's,
        // made once: a program of many steps over one wide signature stays linear.
        let sig_shapes: Vec<(Shape, Shape)> = signatures
            .iter()
            .map(|sig| {
                let reasoning = Field { name: REASONING.into(), ty: Type::Text, description: Some("think step by step before answering".into()) };
                let cot = std::iter::once(reasoning).chain(sig.outputs.iter().cloned()).collect();
                (Shape::new(&sig.inputs, sig.outputs.clone()), Shape::new(&sig.inputs, cot))
            })
            .collect();
        let tool_shapes: Vec<Shape> =
            tools.iter().map(|t| Shape::new(&t.params, vec![Field { name: RESULT.into(), ty: t.returns.clone(), description: None }])).collect();
        let targets = Targets {
            signatures: first_index(signatures.iter().map(|s| s.name.as_str())),
            tools: first_index(tools.iter().map(|t| t.name.as_str())),
            models: first_index(models.iter().map(|m| m.name.as_str())),
        };
        let shapes: Vec<Option<StepShape>> = decls.steps.iter().map(|s| self.step_shape(s, &signatures, &tools, &targets, &sig_shapes, &tool_shapes)).collect();
        let step_names: Vec<&str> = decls.steps.iter().map(|s| s.name.name.as_str()).collect();
        let step_index: HashMap<&str, usize> = first_index(step_names.iter().copied());
        let lookup = Lookup {
            inputs: &inputs,
            input_index: first_index(inputs.iter().map(|f| f.name.as_str())),
            step_names: &step_names,
            step_index: &step_index,
            shapes: &shapes,
        };
        let steps = self.steps(&decls, &shapes, &lookup, &models, &targets, default_model);

        let output_index = first_index(outputs.iter().map(|f| f.name.as_str()));
        let return_bindings = match decls.returns.first() {
            Some(r) => self.bindings(&r.bindings, &outputs, &output_index, &lookup, "the program", r.span),
            None => {
                self.diags.push(
                    Diagnostic::error("missing-output", file.header.span, "the program has no `return`")
                        .with_hint("add `return { output_name: step.field, ... }` to say where each output comes from"),
                );
                Vec::new()
            }
        };

        let metric_scope = metric_spec::Scope {
            inputs: &inputs,
            outputs: &outputs,
            signatures: &signatures,
            input_index: &lookup.input_index,
            output_index: &output_index,
            signature_index: &targets.signatures,
            suggest: &self.suggest,
        };
        let metrics: Vec<MetricSpec> = decls.metrics.iter().filter_map(|m| metric_spec::lower(m, &metric_scope, &mut self.diags)).collect();
        let metric_names: Vec<&str> = decls.metrics.iter().map(|m| m.name.name.as_str()).collect();
        let model_names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let optimizer: Option<OptimizerSpec> = decls.optimizes.first().and_then(|o| optimizer_spec::lower(o, &metric_names, &model_names, &mut self.diags));
        let feedback = feedback_spec::lower(&decls.feedback, &mut self.diags);
        let examples = example_spec::lower(&decls.examples, &inputs, &outputs, &self.suggest, &mut self.diags);
        let memory = super::memory_spec::lower(&decls.memories, &steps, &mut self.diags);

        // Wiring needs every step; with any step unresolved, stop before graph checks.
        if steps.len() != decls.steps.len() {
            return None;
        }
        let wiring = self.wiring(&steps, &return_bindings, &decls);
        Some(Dag {
            name: file.header.name.name.clone(),
            description: file.header.description.as_ref().map(|d| d.value.clone()),
            inputs,
            outputs,
            models,
            default_model: default_model.unwrap_or(ModelId(0)),
            tools,
            signatures,
            steps,
            returns: return_bindings,
            metrics,
            optimizer,
            feedback,
            examples,
            memory,
            wiring,
        })
    }

    /// Reports names declared twice, items that may appear once, and names both an input and
    /// an output.
    fn names(&mut self, d: &Decls<'_>) {
        self.unique("input", d.inputs.iter().map(|f| &f.name));
        self.unique("output", d.outputs.iter().map(|f| &f.name));
        self.unique("signature", d.signatures.iter().map(|s| &s.name));
        self.unique("model", d.models.iter().map(|m| &m.name));
        self.unique("tool", d.tools.iter().map(|t| &t.name));
        self.unique("step", d.steps.iter().map(|s| &s.name));
        self.unique("metric", d.metrics.iter().map(|m| &m.name));
        self.single("return", d.returns.iter().map(|r| r.span));
        self.single("optimize", d.optimizes.iter().map(|o| o.span));
        let input_decls: HashMap<&str, &ast::FieldDecl> = d.inputs.iter().rev().map(|f| (f.name.name.as_str(), *f)).collect();
        for o in &d.outputs {
            if let Some(i) = input_decls.get(o.name.name.as_str()) {
                self.diags.push(
                    Diagnostic::error("duplicate-name", o.name.span, format!("`{}` is both an input and an output", o.name.name))
                        .with_related(i.name.span, "declared as an input here")
                        .with_hint("datasets hold inputs and outputs side by side, so each name must be unique"),
                );
            }
        }
    }

    /// The declared models and the default one: the model named `default`, else the only one,
    /// else (none declared) the built-in default model.
    fn models(&mut self, d: &Decls<'_>) -> (Vec<ModelSpec>, Option<ModelId>) {
        let mut models: Vec<ModelSpec> = d.models.iter().filter_map(|m| model_spec::lower(m, &mut self.diags)).collect();
        let default_model = match models.iter().position(|m| m.name == "default") {
            Some(i) => Some(ModelId(i)),
            None if models.len() == 1 => Some(ModelId(0)),
            None if models.is_empty() && d.models.is_empty() => {
                models.push(ModelSpec::builtin_default());
                Some(ModelId(0))
            }
            None => None,
        };
        (models, default_model)
    }

    /// The declared tools.
    fn tools(&mut self, d: &Decls<'_>) -> Vec<ToolSpec> {
        d.tools
            .iter()
            .map(|t| {
                self.unique("parameter", t.params.iter().map(|p| &p.name));
                let params = t.params.iter().map(|p| Field { name: p.name.name.clone(), ty: self.ty(&p.ty), description: None }).collect();
                let returns = self.ty(&t.returns);
                tool_spec::lower(t, params, returns, &self.suggest, &mut self.diags)
            })
            .collect()
    }

    /// The steps whose target and model resolve, with their bindings (every step's bindings
    /// are checked, so each problem is reported).
    fn steps(
        &mut self,
        d: &Decls<'_>,
        shapes: &[Option<StepShape<'_, '_>>],
        lookup: &Lookup<'_>,
        models: &[ModelSpec],
        targets: &Targets<'_>,
        default_model: Option<ModelId>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for (i, decl) in d.steps.iter().enumerate() {
            let bindings = match &shapes[i] {
                Some(s) => self.bindings(&decl.bindings, s.shape.slots, &s.shape.slot_index, lookup, &decl.target.name, decl.span),
                None => Vec::new(),
            };
            let model = self.step_model(decl, models, targets, default_model);
            if let (Some(s), Some(model)) = (&shapes[i], model) {
                steps.push(Step {
                    name: decl.name.name.clone(),
                    kind: match decl.kind {
                        ast::StepKind::Predict => StepKind::Predict,
                        ast::StepKind::ChainOfThought => StepKind::ChainOfThought,
                        ast::StepKind::Call => StepKind::Call,
                    },
                    target: s.target,
                    bindings,
                    model,
                    outputs: s.shape.outputs.clone(),
                    span: decl.span,
                });
            }
        }
        steps
    }

    /// The graph of every step: cycles are reported, and (when nothing else is wrong) the steps
    /// whose results nobody reads.
    fn wiring(&mut self, steps: &[Step], return_bindings: &[Binding], d: &Decls<'_>) -> Wiring {
        let wiring = Wiring::connect(steps, return_bindings);
        for cycle in wiring.cycles() {
            self.cycle(&cycle, steps);
        }
        // Unused-step warnings would only echo errors (a misspelt reference leaves its step
        // unread), so they wait until the rest is clean.
        let unused = if has_errors(&self.diags) { Vec::new() } else { wiring.unused_steps() };
        for unused in unused {
            let s = &steps[unused.0];
            self.diags.push(
                Diagnostic::warning("unused-step", d.steps[unused.0].name.span, format!("the results of step `{}` are never used", s.name))
                    .with_label("computed but never read")
                    .with_hint("use one of its fields in a later step or in `return`, or remove the step"),
            );
        }
        wiring
    }

    /// Reports every name in `names` declared more than once.
    fn unique<'a>(&mut self, what: &str, names: impl Iterator<Item = &'a ast::Ident>) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for n in names {
            if let Some(first) = seen.get(n.name.as_str()) {
                self.diags.push(
                    Diagnostic::error("duplicate-name", n.span, format!("the {what} `{}` is declared twice", n.name))
                        .with_label("declared again here")
                        .with_related(*first, "first declared here"),
                );
            } else {
                seen.insert(&n.name, n.span);
            }
        }
    }

    fn single(&mut self, keyword: &str, spans: impl Iterator<Item = Span>) {
        let spans: Vec<Span> = spans.collect();
        for extra in spans.iter().skip(1) {
            self.diags
                .push(Diagnostic::error("duplicate-name", *extra, format!("a program has one `{keyword}`")).with_related(spans[0], "the first one is here"));
        }
    }

    fn field(&mut self, f: &ast::FieldDecl) -> Field {
        Field { name: f.name.name.clone(), ty: self.ty(&f.ty), description: f.description.as_ref().map(|d| d.value.clone()) }
    }

    fn ty(&mut self, t: &ast::Type) -> Type {
        match &t.kind {
            ast::TypeKind::Named(n) => Type::from_name(n).unwrap_or_else(|| {
                let hint = if n == "string" || n == "str" { Some("text is written `text`".to_string()) } else { did_you_mean(n, TYPE_NAMES) };
                self.diags.push(
                    Diagnostic::error("unknown-name", t.span, format!("unknown type `{n}`"))
                        .with_label("not a type")
                        .with_hint_opt(hint)
                        .with_hint("the types are text, int, float, bool, json, label(a, b, ...) and list<T>"),
                );
                Type::Json
            }),
            ast::TypeKind::List(inner) => Type::List(Box::new(self.ty(inner))),
            ast::TypeKind::Constrained { name, constraints } => super::constraint::lower(name, constraints, t.span, &mut self.diags),
            ast::TypeKind::Label(labels) => {
                let mut seen: HashSet<&str> = HashSet::new();
                for l in labels {
                    if l.value.trim().is_empty() {
                        self.diags.push(Diagnostic::error("invalid-value", l.span, "a label cannot be empty"));
                    } else if seen.contains(l.value.as_str()) {
                        self.diags.push(Diagnostic::error("duplicate-name", l.span, format!("the label `{}` is listed twice", l.value)));
                    }
                    seen.insert(&l.value);
                }
                Type::Label(labels.iter().map(|l| l.value.clone()).collect())
            }
        }
    }

    fn signature(&mut self, s: &ast::SignatureDecl) -> Signature {
        self.unique("field", s.fields.iter().map(|f| &f.field.name));
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for f in &s.fields {
            let field = self.field(&f.field);
            match f.direction {
                ast::Direction::In => inputs.push(field),
                ast::Direction::Out => outputs.push(field),
            }
        }
        super::constraint::check_sources(&inputs, &outputs, &mut self.diags);
        if outputs.is_empty() {
            self.diags.push(
                Diagnostic::error("missing-output", s.name.span, format!("signature `{}` has no `out` field", s.name.name))
                    .with_hint("add what the model should produce, e.g. `out answer: text`"),
            );
        }
        Signature { name: s.name.name.clone(), instruction: s.instruction.as_ref().map(|i| i.value.clone()).unwrap_or_default(), inputs, outputs, span: s.span }
    }

    fn step_shape<'s, 'a>(
        &mut self,
        s: &ast::StepDecl,
        signatures: &[Signature],
        tools: &[ToolSpec],
        targets: &Targets<'_>,
        sig_shapes: &'s [(Shape<'a>, Shape<'a>)],
        tool_shapes: &'s [Shape<'a>],
    ) -> Option<StepShape<'s, 'a>> {
        if RESERVED.contains(&s.name.name.as_str()) {
            self.diags.push(
                Diagnostic::error("reserved-name", s.name.span, format!("`{}` cannot name a step", s.name.name))
                    .with_hint(format!("`{}.FIELD` already means something; pick another name", s.name.name)),
            );
        }
        let target = &s.target;
        let sig = targets.signatures.get(target.name.as_str()).copied();
        let tool = targets.tools.get(target.name.as_str()).copied();
        match (s.kind, sig, tool) {
            (ast::StepKind::Call, _, Some(t)) => Some(StepShape { target: Target::Tool(ToolId(t)), shape: &tool_shapes[t] }),
            (ast::StepKind::Call, Some(_), None) => {
                self.diags.push(
                    Diagnostic::error("wrong-kind", target.span, format!("`{}` is a signature, and `call` runs a tool", target.name))
                        .with_hint(format!("write `predict {}` to ask the model", target.name)),
                );
                None
            }
            (_, Some(i), _) => {
                let sig = &signatures[i];
                let (plain, cot) = &sig_shapes[i];
                let shape = if s.kind == ast::StepKind::ChainOfThought {
                    if sig.outputs.iter().any(|f| f.name == REASONING) {
                        self.diags.push(
                            Diagnostic::error("duplicate-name", target.span, format!("`{}` already has an output `reasoning`", sig.name))
                                .with_related(sig.span, "declared here")
                                .with_hint("`chain_of_thought` adds its own `reasoning` output; rename the signature's field"),
                        );
                    }
                    cot
                } else {
                    plain
                };
                Some(StepShape { target: Target::Signature(SignatureId(i)), shape })
            }
            (_, None, Some(_)) => {
                self.diags.push(
                    Diagnostic::error("wrong-kind", target.span, format!("`{}` is a tool, and `{}` asks the model", target.name, s.kind.keyword()))
                        .with_hint(format!("write `call {}` to run the tool", target.name)),
                );
                None
            }
            (kind, None, None) => {
                let (what, hint) = if kind == ast::StepKind::Call {
                    ("tool", self.suggest.did_you_mean(&target.name, tools.iter().map(|t| t.name.as_str())))
                } else {
                    ("signature", self.suggest.did_you_mean(&target.name, signatures.iter().map(|t| t.name.as_str())))
                };
                self.diags.push(
                    Diagnostic::error("unknown-name", target.span, format!("unknown {what} `{}`", target.name))
                        .with_label(format!("no {what} has this name"))
                        .with_hint_opt(hint),
                );
                None
            }
        }
    }

    fn step_model(&mut self, s: &ast::StepDecl, models: &[ModelSpec], targets: &Targets<'_>, default: Option<ModelId>) -> Option<ModelId> {
        match &s.model {
            Some(m) => match targets.models.get(m.name.as_str()) {
                Some(&i) => Some(ModelId(i)),
                None => {
                    self.diags.push(
                        Diagnostic::error("unknown-name", m.span, format!("unknown model `{}`", m.name))
                            .with_label("not declared")
                            .with_hint_opt(self.suggest.did_you_mean(&m.name, models.iter().map(|x| x.name.as_str()))),
                    );
                    None
                }
            },
            None => default.or_else(|| {
                self.diags.push(
                    Diagnostic::error("missing-setting", s.span, format!("step `{}` does not say which model runs it", s.name.name))
                        .with_hint("name one model `default`, or add `using MODEL` to the step"),
                );
                None
            }),
        }
    }

    /// Resolves `{ slot: value, ... }` against the slots of `owner` (a signature, tool, or the
    /// program's outputs), checking names, types and that every slot is filled.
    fn bindings(
        &mut self,
        written: &[ast::Binding],
        slots: &[Field],
        slot_index: &HashMap<&str, usize>,
        lookup: &Lookup<'_>,
        owner: &str,
        span: Span,
    ) -> Vec<Binding> {
        let mut out = Vec::new();
        self.unique("binding", written.iter().map(|b| &b.name));
        for b in written {
            let Some(slot) = slot_index.get(b.name.name.as_str()).map(|&i| &slots[i]) else {
                let what = if owner == "the program" { "has no output".to_string() } else { format!("`{owner}` has no input") };
                self.diags.push(
                    Diagnostic::error("unknown-name", b.name.span, format!("{what} `{}`", b.name.name))
                        .with_label("unknown slot")
                        .with_hint_opt(self.suggest.did_you_mean(&b.name.name, slots.iter().map(|s| s.name.as_str())))
                        .with_hint(format!("the slots are: {}", name_list(slots.iter().map(|s| s.name.as_str())))),
                );
                continue;
            };
            let Some((source, ty)) = self.source(&b.value, lookup) else { continue };
            if let Some(ty) = ty {
                if !slot.ty.accepts(&ty) {
                    let owner_text = if owner == "the program" { "the program output".to_string() } else { format!("`{owner}` input") };
                    let (ty_text, slot_text) = (ty.brief(), slot.ty.brief());
                    self.diags.push(
                        Diagnostic::error(
                            "type-mismatch",
                            b.value.span,
                            format!("`{}` is `{ty_text}`, but {owner_text} `{}` takes `{slot_text}`", format_value(&b.value), slot.name),
                        )
                        .with_label(format!("this is `{ty_text}`"))
                        .with_hint(conversion_hint(&slot.ty, &ty)),
                    );
                }
            }
            out.push(Binding { slot: slot.name.clone(), source, span: b.value.span });
        }
        // Count what is missing without walking every slot: the first few missing slots are
        // found within the bound ones plus a few, however wide the target.
        let bound: HashSet<&str> = written.iter().map(|b| b.name.name.as_str()).filter(|n| slot_index.contains_key(n)).collect();
        let missing_count = slots.len() - bound.len();
        let missing: Vec<&Field> = slots.iter().filter(|s| !bound.contains(s.name.as_str())).take(MISSING_NAMED).collect();
        let code = if owner == "the program" { "missing-output" } else { "unbound-input" };
        if missing_count > MISSING_LISTED {
            // One diagnostic for many: a thousand steps that each leave a thousand slots unbound
            // must not make a million diagnostics.
            let what = if owner == "the program" { "outputs are never produced".to_string() } else { format!("inputs of `{owner}` are not bound") };
            let mut names = missing.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
            if missing_count > missing.len() {
                names.push_str(&format!(" and {} more", missing_count - missing.len()));
            }
            self.diags.push(
                Diagnostic::error(code, span, format!("{missing_count} {what}: {names}"))
                    .with_label("these are missing here")
                    .with_hint("add `NAME: ...` to the bindings for each"),
            );
            return sorted_by_slot(out, slot_index);
        }
        for slot in missing {
            let msg = if owner == "the program" {
                format!("output `{}` is never produced", slot.name)
            } else {
                format!("input `{}` of `{owner}` is not bound", slot.name)
            };
            self.diags.push(Diagnostic::error(code, span, msg).with_label(format!("`{}` is missing here", slot.name)).with_hint(format!(
                "add `{}: ...` (a `{}`) to the bindings",
                slot.name,
                slot.ty.brief()
            )));
        }
        sorted_by_slot(out, slot_index)
    }

    /// Resolves a bound value: a reference (with its type) or a literal.
    /// The type is borrowed: cloning a referenced field's type for each of thousands of
    /// references to a wide label set was quadratic.
    fn source<'l>(&mut self, v: &ast::Value, lookup: &'l Lookup<'_>) -> Option<(Source, Option<Cow<'l, Type>>)> {
        Some(match &v.kind {
            ValueKind::Path(p) if p.len() == 2 => {
                let (src, field) = (&p[0], &p[1]);
                if src.name == "input" {
                    match lookup.input_index.get(field.name.as_str()).map(|&i| &lookup.inputs[i]) {
                        Some(f) => (Source::Input(f.name.clone()), Some(Cow::Borrowed(&f.ty))),
                        None => {
                            self.unknown_field(field, "the program has no input", lookup.inputs);
                            return None;
                        }
                    }
                } else if src.name == "output" || src.name == "example" {
                    self.diags.push(
                        Diagnostic::error("unknown-name", src.span, format!("`{}` can only be read by metrics", src.name))
                            .with_hint("steps read `input.FIELD` and `STEP.FIELD`"),
                    );
                    return None;
                } else {
                    let Some(&i) = lookup.step_index.get(src.name.as_str()) else {
                        let hint = if self.suggest.affords(lookup.step_names.len() + 1) {
                            let names: Vec<&str> = lookup.step_names.iter().copied().chain(["input"]).collect();
                            self.suggest.did_you_mean(&src.name, names)
                        } else {
                            None
                        };
                        self.diags.push(
                            Diagnostic::error("unknown-name", src.span, format!("unknown step `{}`", src.name))
                                .with_label("no step has this name")
                                .with_hint_opt(hint),
                        );
                        return None;
                    };
                    let shape = lookup.shapes[i].as_ref()?.shape;
                    match shape.output(&field.name) {
                        Some(f) => (Source::Step { step: StepId(i), field: f.name.clone() }, Some(Cow::Borrowed(&f.ty))),
                        None => {
                            self.unknown_field(field, &format!("step `{}` has no output", src.name), &shape.outputs);
                            return None;
                        }
                    }
                }
            }
            ValueKind::Path(_) => {
                self.diags.push(
                    Diagnostic::error("invalid-value", v.span, format!("`{}` is not a reference", format_value(v)))
                        .with_label("expected `input.FIELD` or `STEP.FIELD`")
                        .with_hint("a reference names where the value comes from, e.g. `input.ticket` or `classify.category`"),
                );
                return None;
            }
            ValueKind::Str(s) => (Source::Const(s.clone().into()), Some(Cow::Owned(Type::Text))),
            ValueKind::Int(i) => (Source::Const((*i).into()), Some(Cow::Owned(Type::Int))),
            ValueKind::Float(f) => (Source::Const(serde_json::json!(f)), Some(Cow::Owned(Type::Float))),
            ValueKind::Bool(b) => (Source::Const((*b).into()), Some(Cow::Owned(Type::Bool))),
            ValueKind::List(_) => (Source::Const(literal_json(v)), Some(Cow::Owned(Type::Json))),
        })
    }

    fn unknown_field(&mut self, field: &ast::Ident, what: &str, fields: &[Field]) {
        self.diags.push(
            Diagnostic::error("unknown-name", field.span, format!("{what} `{}`", field.name))
                .with_label("unknown field")
                .with_hint_opt(self.suggest.did_you_mean(&field.name, fields.iter().map(|f| f.name.as_str())))
                .with_hint(format!("the fields are: {}", name_list(fields.iter().map(|f| f.name.as_str())))),
        );
    }

    fn cycle(&mut self, cycle: &[StepId], steps: &[Step]) {
        // A cycle through thousands of steps is named by its first few; listing all of them
        // would make one diagnostic as long as the program.
        const NAMED: usize = 8;
        let names: Vec<&str> = cycle.iter().map(|s| steps[s.0].name.as_str()).collect();
        let mut path = names.iter().take(NAMED).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" → ");
        if names.len() > NAMED {
            path.push_str(&format!(" → … ({} more)", names.len() - NAMED));
        }
        path.push_str(&format!(" → `{}`", names[0]));
        let first = &steps[cycle[0].0];
        let mut d = Diagnostic::error("cycle", first.span, format!("steps form a cycle: {path}")).with_label("this step depends on itself through the cycle");
        for s in cycle.iter().skip(1).take(NAMED - 1) {
            d = d.with_related(steps[s.0].span, format!("`{}` is on the cycle", steps[s.0].name));
        }
        self.diags.push(d.with_hint("a step can only read the results of steps that do not depend on it"));
    }
}

/// The signatures, tools and models by name (the first declared, when a name repeats).
struct Targets<'a> {
    signatures: HashMap<&'a str, usize>,
    tools: HashMap<&'a str, usize>,
    models: HashMap<&'a str, usize>,
}

/// Missing slots reported one by one; more are reported in one diagnostic...
const MISSING_LISTED: usize = 3;
/// ...which names this many of them.
const MISSING_NAMED: usize = 20;

/// `bindings` in the slot order of the target, whatever order they were written in.
fn sorted_by_slot(mut bindings: Vec<Binding>, slot_index: &HashMap<&str, usize>) -> Vec<Binding> {
    bindings.sort_by_key(|b| slot_index.get(b.slot.as_str()).copied());
    bindings
}

/// What a binding may refer to.
struct Lookup<'a> {
    inputs: &'a [Field],
    input_index: HashMap<&'a str, usize>,
    step_names: &'a [&'a str],
    step_index: &'a HashMap<&'a str, usize>,
    shapes: &'a [Option<StepShape<'a, 'a>>],
}

fn conversion_hint(to: &Type, from: &Type) -> String {
    match (to, from) {
        (Type::Label(_), Type::Text) => "text never turns into a label by itself; classify it in a step with a `label(...)` output".into(),
        // Listing the labels that do not fit takes a pass over both sets, for each mismatch:
        // done for sets of ordinary size only.
        (Type::Label(wide), Type::Label(narrow)) if wide.len() + narrow.len() <= 1_000 => {
            let wide: HashSet<&str> = wide.iter().map(String::as_str).collect();
            let missing: Vec<&str> = narrow.iter().map(String::as_str).filter(|l| !wide.contains(l)).collect();
            format!("these labels are not allowed in the slot: {}", name_list(missing))
        }
        (Type::Label(_), Type::Label(_)) => "the value may be a label the slot does not allow".into(),
        _ => format!("change the slot's type to `{}`, or produce a `{}`", from.brief(), to.brief()),
    }
}

fn literal_json(v: &ast::Value) -> serde_json::Value {
    match &v.kind {
        ValueKind::Str(s) => s.clone().into(),
        ValueKind::Int(i) => (*i).into(),
        ValueKind::Float(f) => serde_json::json!(f),
        ValueKind::Bool(b) => (*b).into(),
        ValueKind::List(items) => items.iter().map(literal_json).collect(),
        ValueKind::Path(p) => p.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(".").into(),
    }
}
