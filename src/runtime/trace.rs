//! Traces: what a run did, step by step — prompts, raw completions, parsed outputs, label
//! scores, tokens, latency, model, errors.
//!
//! A trace serializes to one JSON object (the JSON-lines format of `loopc run --trace-json`,
//! and what the store keeps), with a `schema` version so readers can tell layouts apart:
//!
//! ```json
//! {"schema": 1, "run_id": "…", "program": "sentiment", "inputs": {…}, "outputs": {…} | null,
//!  "latency_ms": 41, "error": null,
//!  "steps": [{"step": "classify", "kind": "predict", "served_by": "onnx smollm2-135m-instruct",
//!             "inputs": {…}, "prompt": "…", "raw": ["positive"], "outputs": {…} | null,
//!             "choice_scores": [{"label": "positive", "logprob": -0.1, "tokens": 1}] | null,
//!             "prompt_tokens": 120, "cached_tokens": 96, "completion_tokens": 0,
//!             "cache_hit": false, "started_ms": 0, "latency_ms": 40, "error": null}]}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::graph::StepKind;

/// The trace layout version this loopc writes.
pub const TRACE_SCHEMA: u32 = 1;

/// The record of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The layout version, [`TRACE_SCHEMA`].
    pub schema: u32,
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

impl Default for Trace {
    fn default() -> Self {
        Trace {
            schema: TRACE_SCHEMA,
            run_id: String::new(),
            program: String::new(),
            inputs: Map::new(),
            outputs: None,
            steps: Vec::new(),
            latency_ms: 0,
            error: None,
        }
    }
}

/// A label and its score under constrained choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    /// The label.
    pub label: String,
    /// Its log-probability given the prompt (the sum over its tokens).
    pub logprob: f32,
    /// The score the step's label scoring made of it, when that is not the raw sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted: Option<f32>,
    /// Its length in tokens (0 when the backend does not say).
    #[serde(default)]
    pub tokens: u32,
    /// Whether the label was dropped once it could not win: `logprob` (and `adjusted`) is then
    /// an upper bound, the sum over the tokens scored before it was dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
}

impl LabelScore {
    /// The score the decision was made on: the adjusted one if any, else the raw sum.
    pub fn decisive(&self) -> f32 {
        self.adjusted.unwrap_or(self.logprob)
    }
}

/// The record of one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    /// The step's name.
    pub step: String,
    /// What kind of step it is.
    pub kind: StepKind,
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
    pub choice_scores: Option<Vec<LabelScore>>,
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
    /// How the answer's structure was enforced while decoding: `grammar` (local), the JSON
    /// Schema dialect an endpoint took, `parsed` when nothing enforced it. Absent for label
    /// choices and tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<String>,
    /// Every repair made while reading the answer (code fences, prose around JSON, ...): a
    /// value read with help is never mistaken for one written right.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<super::adapter::FieldRepair>,
}

impl StepTrace {
    /// An empty record for step `step` of kind `kind`, given `inputs`.
    pub fn new(step: &str, kind: StepKind, inputs: Map<String, Value>) -> StepTrace {
        StepTrace {
            step: step.to_string(),
            kind,
            served_by: String::new(),
            inputs,
            prompt: String::new(),
            raw: Vec::new(),
            outputs: None,
            choice_scores: None,
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            cache_hit: false,
            latency_ms: 0,
            started_ms: 0,
            error: None,
            structure: None,
            repairs: Vec::new(),
        }
    }

    /// The margin between the best and second-best label score (how sure a constrained choice
    /// was), when the step used one.
    pub fn label_margin(&self) -> Option<f32> {
        let scores = self.choice_scores.as_ref()?;
        let mut v: Vec<f32> = scores.iter().map(LabelScore::decisive).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        Some(match v.as_slice() {
            [a, b, ..] => a - b,
            _ => f32::INFINITY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_round_trips_through_json_with_its_schema() {
        let mut st = StepTrace::new("classify", StepKind::Predict, Map::new());
        st.choice_scores = Some(vec![
            LabelScore { label: "a".into(), logprob: -0.5, adjusted: None, tokens: 1, pruned: false },
            LabelScore { label: "b".into(), logprob: -2.0, adjusted: None, tokens: 2, pruned: false },
        ]);
        let t = Trace { run_id: "r1".into(), program: "p".into(), steps: vec![st], ..Trace::default() };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["schema"], TRACE_SCHEMA);
        assert_eq!(v["steps"][0]["kind"], "predict");
        assert_eq!(v["steps"][0]["choice_scores"][1]["label"], "b");
        let back: Trace = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.steps[0].label_margin(), Some(1.5));
    }
}
