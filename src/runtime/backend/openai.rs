//! Pools of OpenAI-compatible chat-completions endpoints (vLLM, llama.cpp servers, hosted
//! APIs) serving one model: each call goes to the least-loaded healthy endpoint and fails
//! over to another on connection errors, timeouts, 429 and 5xx, with capped exponential
//! backoff and jitter. This is how a program outgrows one machine: point a model at several
//! inference servers.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::{AnswerShape, Backend, BackendError, Call, Choice, Completion, Enforcement, Identity};
use crate::model::chat::{Message, Role};

/// How a pool calls its endpoints.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt (each may go to another endpoint).
    pub retries: u32,
    /// The most requests in flight per endpoint.
    pub concurrency: usize,
    /// The largest response body read, in bytes.
    pub max_response_bytes: usize,
    /// The environment variable holding the API key, if one is needed.
    pub api_key_env: Option<String>,
    /// How to ask for structured output: learnt per endpoint, or one dialect forced.
    pub structured_output: StructuredOutput,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            timeout: Duration::from_secs(60),
            retries: 4,
            concurrency: 4,
            max_response_bytes: 8 << 20,
            api_key_env: None,
            structured_output: StructuredOutput::Auto,
        }
    }
}

/// A way of asking an OpenAI-compatible server for an answer that fits a JSON Schema. Servers
/// differ: OpenAI and llama.cpp's `llama-server` take `json_schema`, llama-cpp-python's
/// server refuses it (422) and takes a schema inside `json_object`, vLLM also takes
/// `guided_json` (and `guided_choice` for one label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`.
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": ...}`.
    JsonObject,
    /// vLLM's `guided_choice` (one label) or `guided_json`.
    Guided,
}

/// The dialects in the order an endpoint is offered them until one is accepted.
pub const DIALECTS: [Dialect; 3] = [Dialect::JsonSchema, Dialect::JsonObject, Dialect::Guided];

impl Dialect {
    /// The dialect's name, as the `structured_output` model setting takes it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::JsonSchema => "json_schema",
            Dialect::JsonObject => "json_object",
            Dialect::Guided => "guided",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Dialect::JsonSchema => 1,
            Dialect::JsonObject => 2,
            Dialect::Guided => 4,
        }
    }
}

/// The `structured_output` setting of an `openai(...)` model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StructuredOutput {
    /// Offer the dialects in turn; an endpoint's first refusal of one (a 4xx answer) moves
    /// it to the next, remembered for that endpoint. When none is accepted, answers are
    /// parsed tolerantly.
    #[default]
    Auto,
    /// Always this dialect (a refusal is an error).
    Forced(Dialect),
    /// Never ask for structure: the prompt's template only, answers parsed.
    Off,
}

impl StructuredOutput {
    /// The setting by its name: `auto`, `json_schema`, `json_object`, `guided` or `off`.
    pub fn from_name(name: &str) -> Option<StructuredOutput> {
        Some(match name {
            "auto" => StructuredOutput::Auto,
            "off" => StructuredOutput::Off,
            other => StructuredOutput::Forced(DIALECTS.into_iter().find(|d| d.name() == other)?),
        })
    }
}

/// One server of the pool and what the pool knows of its health.
struct Endpoint {
    base_url: String,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    /// Not picked before this instant while it has failed recently.
    resting_until: Mutex<Option<Instant>>,
    limit: tokio::sync::Semaphore,
    /// The structured-output dialects this endpoint refused (bits of [`Dialect::bit`]).
    refused: std::sync::atomic::AtomicU8,
}

impl Endpoint {
    fn resting(&self, now: Instant) -> Option<Instant> {
        self.resting_until.lock().unwrap_or_else(|e| e.into_inner()).filter(|t| *t > now)
    }

    fn failed(&self) -> Duration {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).min(8);
        // Capped exponential backoff with jitter: a failing server gets room to recover.
        let cap = (200u64 << n).min(10_000);
        let rest = Duration::from_millis(cap / 2 + rand::random::<u64>() % (cap / 2 + 1));
        *self.resting_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + rest);
        rest
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.resting_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Holds an endpoint's in-flight count up while a request is out.
struct InFlight<'a>(&'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one attempt went.
enum Attempt {
    Done(Completion),
    /// Worth another try elsewhere: connection failures, timeouts, 429, 5xx.
    Retry(String),
    /// Not worth retrying: the request itself is refused, or the answer is unusable.
    Fail(String),
    /// A 4xx answer to a request that asked for structured output: perhaps the dialect.
    Refused(String),
}

/// A pool of OpenAI-compatible endpoints serving one model.
pub struct OpenAiBackend {
    client: reqwest::Client,
    endpoints: Arc<Vec<Endpoint>>,
    model: String,
    api_key: Option<String>,
    options: PoolOptions,
}

impl OpenAiBackend {
    /// A backend for `model` served at each of `base_urls` (e.g. `http://127.0.0.1:8000/v1`);
    /// the API key is read from `options.api_key_env` now, if given.
    pub fn new(base_urls: &[String], model: &str, options: PoolOptions) -> Result<OpenAiBackend, BackendError> {
        let first = base_urls.first().ok_or_else(|| BackendError::Unsupported("an OpenAI-compatible model needs at least one base URL".into()))?;
        let api_key = match &options.api_key_env {
            Some(var) => {
                Some(std::env::var(var).map_err(|_| BackendError::Remote { url: first.clone(), reason: format!("the API key variable `{var}` is not set") })?)
            }
            None => None,
        };
        let endpoints = base_urls
            .iter()
            .map(|u| Endpoint {
                base_url: u.trim_end_matches('/').to_string(),
                in_flight: AtomicUsize::new(0),
                failures: AtomicU32::new(0),
                resting_until: Mutex::new(None),
                limit: tokio::sync::Semaphore::new(options.concurrency.max(1)),
                refused: std::sync::atomic::AtomicU8::new(0),
            })
            .collect();
        // Redirects are not followed: a redirect must not carry the API key to another origin.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BackendError::Remote { url: first.clone(), reason: format!("cannot build an HTTP client: {e}") })?;
        Ok(OpenAiBackend { client, endpoints: Arc::new(endpoints), model: model.to_string(), api_key, options })
    }

    /// The endpoint to try next: the least loaded of those not resting after a failure, else
    /// the one that rests least long (with how long to wait for it).
    fn pick(&self, avoid: Option<usize>) -> (usize, Duration) {
        let now = Instant::now();
        let candidates = || (0..self.endpoints.len()).filter(|&i| self.endpoints.len() == 1 || Some(i) != avoid);
        let ready = candidates().filter(|&i| self.endpoints[i].resting(now).is_none()).min_by_key(|&i| self.endpoints[i].in_flight.load(Ordering::Relaxed));
        if let Some(i) = ready {
            return (i, Duration::ZERO);
        }
        let soonest = candidates().min_by_key(|&i| self.endpoints[i].resting(now).unwrap_or(now)).unwrap_or(0);
        (soonest, self.endpoints[soonest].resting(now).map_or(Duration::ZERO, |t| t - now))
    }

    /// The dialect to use with `endpoint` for `call`: none when the call asks for no
    /// structure, the setting says off, or the endpoint refused every dialect.
    fn dialect(&self, endpoint: &Endpoint, call: &Call) -> Option<Dialect> {
        call.structured.as_ref()?;
        match self.options.structured_output {
            StructuredOutput::Off => None,
            StructuredOutput::Forced(d) => Some(d),
            StructuredOutput::Auto => {
                let refused = endpoint.refused.load(Ordering::Relaxed);
                DIALECTS.into_iter().find(|d| refused & d.bit() == 0)
            }
        }
    }

    /// The request body: in `dialect` when one is given; else, for a call that wants
    /// structure from an endpoint that took no dialect (`Auto`), the JSON-template prompt alone,
    /// whose answer is then parsed tolerantly; else the call's own template.
    fn body(&self, call: &Call, dialect: Option<Dialect>) -> Value {
        let plain_json = self.options.structured_output == StructuredOutput::Auto;
        let Some(structured) = call.structured.as_ref().filter(|_| dialect.is_some() || plain_json) else { return self.template_body(call) };
        // The JSON prompt has no field markers: only the model's own stop strings apply.
        let mut body = self.chat_body(call, &structured.request.messages(), call.stop.iter().take(4).cloned().collect());
        let schema = &structured.schema;
        let Some(dialect) = dialect else { return body };
        match dialect {
            Dialect::JsonSchema => {
                body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema}})
            }
            Dialect::JsonObject => body["response_format"] = json!({"type": "json_object", "schema": schema}),
            Dialect::Guided => match &structured.choice {
                Some(labels) => body["guided_choice"] = json!(labels),
                None => body["guided_json"] = schema.clone(),
            },
        }
        body
    }

    fn template_body(&self, call: &Call) -> Value {
        let mut messages = call.request.messages();
        if !call.answer_so_far.is_empty() {
            messages.push(Message { role: Role::Assistant, content: format!("{}{}", call.request.answer_prefix, call.answer_so_far) });
        }
        let stop: Vec<String> = call.request.stop().into_iter().chain(call.stop.iter().cloned()).take(4).collect();
        self.chat_body(call, &messages, stop)
    }

    /// A chat-completions body of `messages` with the call's decoding settings and `stop`
    /// (at most four strings, as OpenAI takes).
    fn chat_body(&self, call: &Call, messages: &[Message], stop: Vec<String>) -> Value {
        let role = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
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
        body
    }

    async fn attempt(&self, endpoint: &Endpoint, body: &str, refusable: bool) -> Attempt {
        let Ok(_permit) = endpoint.limit.acquire().await else { return Attempt::Fail("the backend is shutting down".into()) };
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(endpoint);
        let url = format!("{}/chat/completions", endpoint.base_url);
        let mut req = self.client.post(&url).timeout(self.options.timeout).header("content-type", "application/json").body(body.to_string());
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Retry(format!("timed out after {} ms", self.options.timeout.as_millis())),
            Err(e) => return Attempt::Retry(format!("cannot connect: {e}")),
        };
        let status = resp.status();
        let text = match read_bounded(resp, self.options.max_response_bytes).await {
            Ok(t) => t,
            Err(Bounded::TooBig) => return Attempt::Fail(format!("the answer is larger than {} bytes", self.options.max_response_bytes)),
            Err(Bounded::Broken(e)) => return Attempt::Retry(format!("the connection broke while reading the answer: {e}")),
        };
        let excerpt = || text.chars().take(200).collect::<String>();
        // A server error that names the structured-output field is a refusal of the dialect:
        // llama-cpp-python's server answers `json_schema` with a validation error that some
        // FastAPI versions turn into a 500 (seen with 0.3.36), others into a 422.
        if refusable && status.is_server_error() && names_a_dialect(&text) {
            return Attempt::Refused(format!("HTTP {status}: {}", excerpt()));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Retry(format!("HTTP {status}: {}", excerpt()));
        }
        if !status.is_success() {
            if refusable && status.is_client_error() && status.as_u16() != 401 && status.as_u16() != 403 {
                return Attempt::Refused(format!("HTTP {status}: {}", excerpt()));
            }
            return Attempt::Fail(format!("HTTP {status}: {}", excerpt()));
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Attempt::Fail(format!("the answer is not JSON ({e})")),
        };
        let Some(content) = v["choices"][0]["message"]["content"].as_str() else {
            return Attempt::Fail("the answer has no choices[0].message.content".into());
        };
        let usage = &v["usage"];
        Attempt::Done(Completion {
            text: content.to_string(),
            prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
            cached_tokens: usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0),
            completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            from_cache: false,
            shape: AnswerShape::Template,
            structure_note: None,
        })
    }

    async fn one(&self, call: Call) -> Result<Completion, BackendError> {
        let mut last = (String::new(), String::new());
        let mut previous = None;
        let mut attempts = 0;
        // Refusals of a dialect don't count as attempts: each endpoint refuses each at most once.
        while attempts <= self.options.retries {
            let (i, wait) = self.pick(previous);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let endpoint = &self.endpoints[i];
            let dialect = self.dialect(endpoint, &call);
            let body = self.body(&call, dialect).to_string();
            match self.attempt(endpoint, &body, dialect.is_some()).await {
                Attempt::Done(mut c) => {
                    endpoint.succeeded();
                    (c.shape, c.structure_note) = match (dialect, call.structured.as_ref()) {
                        (Some(Dialect::Guided), Some(s)) if s.choice.is_some() => (AnswerShape::Choice, Some("guided_choice".to_string())),
                        (Some(d), _) => (AnswerShape::JsonObject, Some(d.name().to_string())),
                        (None, Some(_)) if self.options.structured_output == StructuredOutput::Off => {
                            (AnswerShape::Template, Some("parsed (structured_output: off)".into()))
                        }
                        (None, Some(_)) => (AnswerShape::JsonObject, Some("parsed (the endpoint took no structured-output dialect)".into())),
                        (None, None) => (AnswerShape::Template, None),
                    };
                    return Ok(c);
                }
                Attempt::Refused(reason) => match (dialect, self.options.structured_output) {
                    (Some(d), StructuredOutput::Auto) => {
                        // Remembered for this endpoint: later calls start with the next dialect.
                        endpoint.refused.fetch_or(d.bit(), Ordering::Relaxed);
                        last = (endpoint.base_url.clone(), reason);
                    }
                    (Some(d), _) => {
                        return Err(BackendError::Remote {
                            url: endpoint.base_url.clone(),
                            reason: format!("refused `structured_output: {}`: {reason}", d.name()),
                        })
                    }
                    (None, _) => return Err(BackendError::Remote { url: endpoint.base_url.clone(), reason }),
                },
                Attempt::Fail(reason) => return Err(BackendError::Remote { url: endpoint.base_url.clone(), reason }),
                Attempt::Retry(reason) => {
                    attempts += 1;
                    endpoint.failed();
                    last = (endpoint.base_url.clone(), reason);
                    previous = Some(i);
                }
            }
        }
        Err(BackendError::Remote { url: last.0, reason: format!("gave up after {} attempt(s); last: {}", self.options.retries + 1, last.1) })
    }
}

/// Whether an error answer speaks of a structured-output field (its name or a dialect's).
fn names_a_dialect(body: &str) -> bool {
    ["response_format", "json_schema", "json_object", "guided_json", "guided_choice"].iter().any(|k| body.contains(k))
}

enum Bounded {
    TooBig,
    Broken(reqwest::Error),
}

/// Reads a response body, refusing one larger than `max` bytes without buffering more.
async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<String, Bounded> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Bounded::TooBig);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Bounded::Broken)? {
        if buf.len() + chunk.len() > max {
            return Err(Bounded::TooBig);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

impl Backend for OpenAiBackend {
    fn identity(&self) -> Identity {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.base_url.as_str()).collect();
        Identity { provider: "openai".into(), name: format!("{}#{}", urls.join(","), self.model), fingerprint: None }
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        Box::pin(async move { futures_util::future::try_join_all(calls.into_iter().map(|c| self.one(c))).await })
    }

    fn supports_choice(&self) -> bool {
        false
    }

    fn enforcement(&self) -> Enforcement {
        match self.options.structured_output {
            StructuredOutput::Off => Enforcement::None,
            _ => Enforcement::JsonSchema,
        }
    }

    fn choose(&self, _calls: Vec<Call>, _labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported("OpenAI-compatible endpoints do not score choices".into())) })
    }
}
