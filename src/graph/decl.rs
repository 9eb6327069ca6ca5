//! The resolved parts of a program: fields, signatures, steps and where each step's inputs
//! come from.

use std::sync::Arc;

use super::types::Type;
use crate::syntax::Span;

/// A named, typed field with an optional description for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// The field's type.
    pub ty: Type,
    /// What the field means, shown to the model.
    pub description: Option<String>,
}

/// A task for the model: an instruction, typed inputs and typed outputs (DSPy's Signature).
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The signature's name.
    pub name: String,
    /// The task description (the compiler may replace it).
    pub instruction: String,
    /// What the model is given.
    pub inputs: Vec<Field>,
    /// What the model must produce.
    pub outputs: Vec<Field>,
    /// The declaration.
    pub span: Span,
}

/// Indexes into the [`Dag`](super::Dag)'s tables.
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);
    )*};
}
ids!(
    /// A step of a [`Dag`](super::Dag).
    StepId,
    /// A signature of a [`Dag`](super::Dag).
    SignatureId,
    /// A tool of a [`Dag`](super::Dag).
    ToolId,
    /// A model of a [`Dag`](super::Dag).
    ModelId,
    /// A metric of a [`Dag`](super::Dag).
    MetricId
);

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Ask the model for the signature's outputs.
    Predict,
    /// Ask for a `reasoning` field first, then the outputs.
    ChainOfThought,
    /// Run a tool.
    Call,
}

impl StepKind {
    /// The kind as written in `.loop` files: `predict`, `chain_of_thought` or `call`.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Predict => "predict",
            StepKind::ChainOfThought => "chain_of_thought",
            StepKind::Call => "call",
        }
    }
}

/// The signature or tool a step uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// For `predict` and `chain_of_thought`.
    Signature(SignatureId),
    /// For `call`.
    Tool(ToolId),
}

/// One step of the program.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's name.
    pub name: String,
    /// What the step does.
    pub kind: StepKind,
    /// The signature or tool it uses.
    pub target: Target,
    /// Where each input slot's value comes from, in the target's slot order.
    pub bindings: Vec<Binding>,
    /// The model that runs it (unused by `call` steps).
    pub model: ModelId,
    /// What the step produces: the signature's outputs (after `reasoning` for chain of
    /// thought), or a tool's single `result`. Shared by the steps of one signature and kind,
    /// so a program of many steps over a wide signature does not copy its fields per step.
    pub outputs: Fields,
    /// The declaration.
    pub span: Span,
}

/// A shared, read-only list of fields: reads as a `[Field]` slice, and clones by reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Fields(Arc<[Field]>);

impl Fields {
    /// The fields as a slice.
    pub fn as_slice(&self) -> &[Field] {
        &self.0
    }
}

impl std::ops::Deref for Fields {
    type Target = [Field];

    fn deref(&self) -> &[Field] {
        &self.0
    }
}

impl From<Vec<Field>> for Fields {
    fn from(fields: Vec<Field>) -> Self {
        Fields(fields.into())
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = &'a Field;
    type IntoIter = std::slice::Iter<'a, Field>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The field name chain-of-thought steps add before the declared outputs.
pub const REASONING: &str = "reasoning";
/// The field name of a tool call's result.
pub const RESULT: &str = "result";

/// A slot and what fills it.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The slot: a signature input, tool parameter, or program output.
    pub slot: String,
    /// What fills it.
    pub source: Source,
    /// Where the value is written.
    pub span: Span,
}

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A program input: `input.NAME`.
    Input(String),
    /// An output of an earlier step: `STEP.FIELD`.
    Step {
        /// The producing step.
        step: StepId,
        /// The field of that step.
        field: String,
    },
    /// A literal written in the program.
    Const(serde_json::Value),
}
