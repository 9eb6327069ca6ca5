//! Traces: what a run did, step by step — prompts, raw completions, parsed outputs, tokens,
//! latency, model, errors. Plain data; the artifact and CLI layers serialise it.

use serde_json::{Map, Value};

/// The record of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// A random id for this run.
    pub run_id: String,
    /// The program's name.
    pub program: String,
    /// The inputs given.
    pub inputs: Map<String, Value>,
    /// The outputs, if the run succeeded.
    pub outputs: Option<Map<String, Value>>,
    /// Each step that ran (or failed), in completion order.
    pub steps: Vec<StepTrace>,
    /// Wall time of the whole run.
    pub latency_ms: u64,
    /// The run's error, if it failed.
    pub error: Option<String>,
}

/// The record of one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepTrace {
    /// The step's name.
    pub step: String,
    /// `predict`, `chain_of_thought` or `call`.
    pub kind: String,
    /// The model (or tool) that served it.
    pub served_by: String,
    /// The values bound to its inputs.
    pub inputs: Map<String, Value>,
    /// The final prompt as text (empty for tools).
    pub prompt: String,
    /// The raw completion(s), one per attempt; for tools, the result.
    pub raw: Vec<String>,
    /// The parsed outputs.
    pub outputs: Option<Map<String, Value>>,
    /// Label scores, when the step used constrained choice.
    pub choice_scores: Option<Vec<(String, f32)>>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Whether every model answer of the step came from the response cache.
    pub cache_hit: bool,
    /// Wall time.
    pub latency_ms: u64,
    /// When it started, relative to the run's start (for concurrency checks).
    pub started_ms: u64,
    /// The error, if it failed.
    pub error: Option<String>,
}
