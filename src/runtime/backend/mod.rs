//! **Backends:** every model behind one trait: the local ONNX model (the default, whose
//! scheduler batches calls from every concurrent run) and pools of OpenAI-compatible
//! chat-completions endpoints.

mod local;
mod openai;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::adapter::Request;
use crate::model::sampling::Sampling;
use crate::model::{ChoiceBounds, TokenCount};

pub use self::local::LocalBackend;
pub use self::openai::{Dialect, OpenAiBackend, PoolOptions, StructuredOutput, DIALECTS};

/// One generation call.
#[derive(Clone, Debug)]
pub struct Call {
    /// The rendered request.
    pub request: Request,
    /// Text already written after the answer prefix (e.g. reasoning before a label).
    pub answer_so_far: String,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// Decoding.
    pub sampling: Sampling,
    /// Extra stop sequences (the template's own are always used).
    pub stop: Vec<String>,
    /// The grammar of the answer (after the answer prefix), for backends that decode under one.
    pub grammar: Option<crate::model::Grammar>,
    /// The answer as one JSON object, for endpoints that take a JSON Schema (structured output).
    pub structured: Option<Structured>,
}

/// How to ask an endpoint for the answer as one JSON object.
#[derive(Clone, Debug)]
pub struct Structured {
    /// The JSON Schema of the answer object (see [`crate::runtime::structure::schema`]).
    pub schema: serde_json::Value,
    /// The same task rendered in the JSON template, so the prompt asks for what the schema
    /// enforces (demos as JSON objects).
    pub request: Request,
    /// The labels, when the answer is one label (for dialects that take a choice).
    pub choice: Option<Vec<String>>,
}

/// A finished call.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The generated text (after the answer prefix and `answer_so_far`).
    pub text: String,
    /// Prompt tokens (as the backend counts them).
    pub prompt_tokens: u64,
    /// Prompt tokens served from a cache of computed prefixes.
    pub cached_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Whether the response cache answered.
    pub from_cache: bool,
    /// How the answer was asked for: as the template's text, or (structured output) as one
    /// JSON object of the outputs, or one label alone.
    pub shape: AnswerShape,
    /// What the endpoint did about the structure asked for, when it was asked remotely (the
    /// dialect it took, or that none was accepted), for the trace.
    pub structure_note: Option<String>,
}

/// How a completion's text is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerShape {
    /// In the request's template, after its answer prefix.
    #[default]
    Template,
    /// One JSON object of the outputs ([`Structured::request`]'s template).
    JsonObject,
    /// One of [`Structured::choice`], alone.
    Choice,
}

/// The scores of a constrained choice after one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Each label's log-probability, in label order.
    pub scores: Vec<f32>,
    /// Each label's length in tokens, in label order (for per-token means).
    pub label_tokens: Vec<u32>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens served from a cache of computed prefixes.
    pub cached_tokens: u64,
    /// Whether the response cache answered.
    pub from_cache: bool,
    /// For a bounded choice ([`Backend::choose_bounded`]), the labels dropped once they could
    /// not win: their score is only an upper bound of their log-probability. Empty when every
    /// label was scored in full.
    pub pruned: Vec<bool>,
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Occurs when the local model fails.
    #[error(transparent)]
    Local(#[from] crate::model::ModelError),
    /// Occurs when an endpoint keeps failing or answers with an error.
    #[error("model endpoint `{url}`: {reason}")]
    Remote {
        /// The endpoint.
        url: String,
        /// What happened, after retries.
        reason: String,
    },
    /// Occurs when a backend cannot do what was asked (e.g. constrained choice remotely).
    #[error("{0}")]
    Unsupported(String),
}

/// How a backend enforces an answer's structure; see [`Backend::enforcement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// It doesn't: answers are parsed (tolerantly) and checked.
    None,
    /// Every token is masked by the answer's grammar (the local model).
    Grammar,
    /// The endpoint is asked for one JSON object fitting a JSON Schema, in the dialect it
    /// takes (OpenAI-compatible servers); answers are still checked.
    JsonSchema,
}

/// What identifies a model for caching and provenance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `onnx` or `openai`.
    pub provider: String,
    /// The model name (or directory), and for endpoints the model and base URLs.
    pub name: String,
    /// What the model is, where the backend can know it: for local models a hash over the
    /// weights, tokenizer and chat template (see [`crate::model::Fingerprint`]).
    pub fingerprint: Option<String>,
}

/// A language model backend. Implementations must be safe to call from many tasks at once.
pub trait Backend: Send + Sync {
    /// What identifies the model.
    fn identity(&self) -> Identity;
    /// Runs every call; the results are in call order.
    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>>;
    /// Whether [`Backend::choose`] works here (otherwise the runtime generates and parses).
    fn supports_choice(&self) -> bool;

    /// How this backend can keep an answer well-formed while decoding it: under the answer's
    /// grammar ([`Call::grammar`]), by asking for a JSON object ([`Call::structured`]), or not
    /// at all (the answer is then only parsed).
    fn enforcement(&self) -> Enforcement {
        Enforcement::None
    }
    /// Scores `labels` (as written by [`Request::choice_text`]) after each call's prompt and
    /// answer so far: the log-probability of each label, per call.
    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>>;

    /// [`Backend::choose`] when only the decision is wanted: the best label under each of
    /// `bounds`' ways of deciding must come back with its exact score; a label that cannot win
    /// under any of them may come back with an upper bound only (marked in
    /// [`Choice::pruned`]). Scoring every label in full (the default) answers it too.
    fn choose_bounded(&self, calls: Vec<Call>, labels: Vec<String>, bounds: Arc<ChoiceBounds>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        let _ = bounds;
        self.choose(calls, labels)
    }

    /// The SHA-256 of the model's weights, where the backend can know it (local models).
    fn weights_sha256(&self) -> Option<String> {
        None
    }

    /// How many tokens `text` is as data, where the backend can know it (bounded: very long
    /// texts get a lower bound). Used to say which input made a prompt too long.
    fn count_tokens(&self, _text: &str) -> Option<TokenCount> {
        None
    }
}
