//! **Checking:** turns a syntax tree into a validated step graph ([`Dag`]).
//!
//! Every name is resolved, every binding type-checked, cycles rejected and a concurrent
//! schedule computed before any model is called. The graph stage reads the syntax tree and
//! knows nothing about models, prompts or the runtime.

mod check;
mod config;
mod constraint;
mod dag;
mod decl;
mod example_spec;
mod feedback_spec;
mod lower;
mod memory_spec;
mod metric_spec;
mod model_spec;
mod optimizer_spec;
mod suggest;
mod tool_spec;
mod types;

#[cfg(test)]
mod tests;

pub use self::check::check_text;
pub use self::constraint::{Format, TextRule, FORMAT_NAMES};
pub use self::dag::{Dag, Edge, Node};
pub use self::decl::{Binding, Field, Fields, MetricId, ModelId, Signature, SignatureId, Source, Step, StepId, StepKind, Target, ToolId, REASONING, RESULT};
pub use self::example_spec::ExampleSpec;
pub use self::feedback_spec::{default_feedback, FeedbackKind, FeedbackSpec, CORRECTION, IMPLICIT_SIGNALS};
pub use self::lower::{lower, Lowered};
pub use self::memory_spec::MemorySpec;
pub use self::metric_spec::{MetricKind, MetricSpec, Operand, METRIC_FUNCTIONS};
pub use self::model_spec::{resolve as resolve_model, DecodeParams, ModelSpec, Provider, DEFAULT_LOCAL_MODEL, STRUCTURED_OUTPUT_VALUES};
pub use self::optimizer_spec::{OptimizerKind, OptimizerSettings, OptimizerSpec, TEMPLATE_NAMES};
pub use self::suggest::did_you_mean;
pub use self::tool_spec::{arg_rule, url_slots, ArgRule, Segment, ToolKind, ToolOptions, ToolSpec, ToolTemplate, UrlSlot, UrlTemplateError};
pub use self::types::Type;
