//! **Backends:** every model behind one trait: the local ONNX model (the default) and
//! OpenAI-compatible chat-completions endpoints. The runtime hands a backend whole batches of
//! calls so the local model can batch them and reuse their shared prefix.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::adapter::Request;
use crate::model::chat::{Message, Role};
use crate::model::sampling::Sampling;
use crate::model::{GenerateRequest, LocalModel, PrefixCaching};

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
}

/// The scores of a constrained choice after one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Each label's log-probability, in label order.
    pub scores: Vec<f32>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens served from a cache of computed prefixes.
    pub cached_tokens: u64,
    /// Whether the response cache answered.
    pub from_cache: bool,
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

/// What identifies a model for caching and provenance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `onnx` or `openai`.
    pub provider: String,
    /// The model name (or directory), and for endpoints the base URL.
    pub name: String,
}

/// A language model backend. Implementations must be safe to call from many tasks at once.
pub trait Backend: Send + Sync {
    /// What identifies the model.
    fn identity(&self) -> Identity;
    /// Runs every call; the results are in call order.
    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>>;
    /// Whether [`Backend::choose`] works here (otherwise the runtime generates and parses).
    fn supports_choice(&self) -> bool;
    /// Scores `labels` (as written by [`Request::choice_text`]) after each call's prompt and
    /// answer so far: the log-probability of each label, per call.
    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>>;

    /// The SHA-256 of the model's weights, where the backend can know it (local models).
    fn weights_sha256(&self) -> Option<String> {
        None
    }
}

/// The local ONNX model. Calls run on the blocking thread pool, batched together.
pub struct LocalBackend {
    model: Arc<LocalModel>,
    caching: PrefixCaching,
}

impl LocalBackend {
    /// Wraps a loaded model.
    pub fn new(model: Arc<LocalModel>, caching: PrefixCaching) -> LocalBackend {
        LocalBackend { model, caching }
    }
}

impl Backend for LocalBackend {
    fn identity(&self) -> Identity {
        Identity { provider: "onnx".into(), name: self.model.name().to_string() }
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        let model = self.model.clone();
        let caching = self.caching;
        Box::pin(async move {
            let format = model.chat_format();
            let requests: Vec<GenerateRequest> = calls
                .iter()
                .map(|c| GenerateRequest {
                    prompt: c.request.local_prompt(format, &c.answer_so_far),
                    max_tokens: c.max_tokens,
                    sampling: c.sampling.clone(),
                    stop: c.request.stop().into_iter().chain(c.stop.iter().cloned()).collect(),
                })
                .collect();
            let gens = tokio::task::spawn_blocking(move || model.generate(&requests, caching))
                .await
                .map_err(|e| BackendError::Unsupported(format!("the model task failed: {e}")))??;
            Ok(gens
                .into_iter()
                .map(|g| Completion {
                    text: g.text,
                    prompt_tokens: g.prompt_tokens as u64,
                    cached_tokens: g.cached_tokens as u64,
                    completion_tokens: g.tokens.len() as u64,
                    from_cache: false,
                })
                .collect())
        })
    }

    fn supports_choice(&self) -> bool {
        true
    }

    fn weights_sha256(&self) -> Option<String> {
        crate::model::model_sha256(self.model.dir()).ok()
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        let model = self.model.clone();
        let caching = self.caching;
        Box::pin(async move {
            let format = model.chat_format();
            let prompts: Vec<_> = calls.iter().map(|c| c.request.local_prompt(format, &c.answer_so_far)).collect();
            let scores = tokio::task::spawn_blocking(move || model.score_choices_counted(&prompts, &labels, caching))
                .await
                .map_err(|e| BackendError::Unsupported(format!("the model task failed: {e}")))??;
            Ok(scores
                .into_iter()
                .map(|c| Choice { scores: c.scores, prompt_tokens: c.prompt_tokens as u64, cached_tokens: c.cached_tokens as u64, from_cache: false })
                .collect())
        })
    }
}

/// An OpenAI-compatible chat-completions endpoint.
pub struct OpenAiBackend {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    retries: u32,
    limit: Arc<tokio::sync::Semaphore>,
}

impl OpenAiBackend {
    /// A backend for `model` at `base_url` (e.g. `http://127.0.0.1:8000/v1`); the key is read
    /// from `api_key_env` now, if given.
    pub fn new(
        base_url: &str,
        model: &str,
        api_key_env: Option<&str>,
        timeout_ms: u64,
        retries: u32,
        concurrency: usize,
    ) -> Result<OpenAiBackend, BackendError> {
        let api_key = match api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| BackendError::Remote { url: base_url.to_string(), reason: format!("the API key variable `{var}` is not set") })?,
            ),
            None => None,
        };
        Ok(OpenAiBackend {
            client: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            timeout: Duration::from_millis(timeout_ms.max(1)),
            retries,
            limit: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        })
    }

    async fn one(&self, call: Call) -> Result<Completion, BackendError> {
        let url = format!("{}/chat/completions", self.base_url);
        let err = |reason: String| BackendError::Remote { url: url.clone(), reason };
        let mut messages = call.request.messages();
        if !call.answer_so_far.is_empty() {
            messages.push(Message { role: Role::Assistant, content: format!("{}{}", call.request.answer_prefix, call.answer_so_far) });
        }
        let role = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let stop: Vec<String> = call.request.stop().into_iter().chain(call.stop.iter().cloned()).take(4).collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages.iter().map(|m| json!({"role": role(m.role), "content": m.content})).collect::<Vec<_>>(),
            "max_tokens": call.max_tokens,
            "temperature": call.sampling.temperature,
            "seed": call.sampling.seed,
        });
        if let Some(p) = call.sampling.top_p {
            body["top_p"] = json!(p);
        }
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        let _permit = self.limit.acquire().await.map_err(|_| err("the backend is shutting down".into()))?;
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                // Exponential backoff with full jitter, capped: rate limits need room to recover.
                let cap = (200u64 << (attempt - 1).min(8)).min(10_000);
                tokio::time::sleep(Duration::from_millis(cap / 2 + rand::random::<u64>() % (cap / 2 + 1))).await;
            }
            let mut req = self.client.post(&url).timeout(self.timeout).header("content-type", "application/json").body(body.to_string());
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    last = format!("timed out after {} ms", self.timeout.as_millis());
                    continue;
                }
                Err(e) => {
                    last = format!("cannot connect: {e}");
                    continue;
                }
            };
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if status.as_u16() == 429 || status.is_server_error() {
                last = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
                continue;
            }
            if !status.is_success() {
                return Err(err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| err(format!("the answer is not JSON ({e})")))?;
            let content = v["choices"][0]["message"]["content"].as_str().ok_or_else(|| err("the answer has no choices[0].message.content".into()))?;
            let usage = &v["usage"];
            return Ok(Completion {
                text: content.to_string(),
                prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                cached_tokens: usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0),
                completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
                from_cache: false,
            });
        }
        Err(err(format!("gave up after {} attempt(s); last: {last}", self.retries + 1)))
    }
}

impl Backend for OpenAiBackend {
    fn identity(&self) -> Identity {
        Identity { provider: "openai".into(), name: format!("{}#{}", self.base_url, self.model) }
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        Box::pin(async move { futures_util::future::try_join_all(calls.into_iter().map(|c| self.one(c))).await })
    }

    fn supports_choice(&self) -> bool {
        false
    }

    fn choose(&self, _calls: Vec<Call>, _labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported("OpenAI-compatible endpoints do not score choices".into())) })
    }
}
