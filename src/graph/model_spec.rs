//! `model` declarations: which backend runs a step, and how it decodes.

use super::config::{self, Kind};
use super::suggest::did_you_mean;
use crate::syntax::ast::ModelDecl;
use crate::syntax::{Diagnostic, Span};

/// The model every program gets when it declares none.
pub const DEFAULT_LOCAL_MODEL: &str = "smollm2-135m-instruct";

/// A resolved model declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The name steps use it by (`default` for the program default).
    pub name: String,
    /// Which backend, and what it needs to find the model.
    pub provider: Provider,
    /// Decoding parameters.
    pub params: DecodeParams,
    /// The declaration (empty for the built-in default).
    pub span: Span,
}

/// Where a model runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    /// A local ONNX model: a name in the loopc model cache, or a directory path.
    Onnx {
        /// The model's name or path.
        model: String,
    },
    /// A pool of OpenAI-compatible chat-completions endpoints serving one model.
    OpenAi {
        /// The API base URLs, e.g. `http://127.0.0.1:8000/v1`: one, or several servers of a
        /// pool (requests go to the least-loaded healthy one).
        base_urls: Vec<String>,
        /// The model name sent with each request.
        model: String,
        /// The environment variable holding the API key, if one is needed.
        api_key_env: Option<String>,
    },
}

/// How a model decodes and how it is called.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeParams {
    /// Sampling temperature; 0 decodes greedily.
    pub temperature: f64,
    /// Nucleus sampling mass, if set.
    pub top_p: Option<f64>,
    /// Sample among the `k` likeliest tokens, if set.
    pub top_k: Option<u32>,
    /// The most tokens to generate per call.
    pub max_tokens: u32,
    /// The sampling seed, if fixed.
    pub seed: Option<u64>,
    /// Extra stop sequences.
    pub stop: Vec<String>,
    /// Per-request timeout for remote models.
    pub timeout_ms: Option<u64>,
    /// The most requests in flight at once, if limited.
    pub concurrency: Option<u32>,
    /// Retries on rate limits and server errors for remote models.
    pub retries: Option<u32>,
    /// The largest response body read from a remote model, in bytes.
    pub max_response_bytes: Option<u64>,
    /// How a remote model is asked for structured output: `auto` (learnt per endpoint),
    /// `json_schema`, `json_object`, `guided` or `off`.
    pub structured_output: Option<String>,
}

/// The values of the `structured_output` setting.
pub const STRUCTURED_OUTPUT_VALUES: [&str; 5] = ["auto", "json_schema", "json_object", "guided", "off"];

impl Default for DecodeParams {
    fn default() -> Self {
        DecodeParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            max_tokens: 256,
            seed: None,
            stop: Vec::new(),
            timeout_ms: None,
            concurrency: None,
            retries: None,
            max_response_bytes: None,
            structured_output: None,
        }
    }
}

impl ModelSpec {
    /// The model used when a program declares none: the embedded local default.
    pub fn builtin_default() -> Self {
        ModelSpec {
            name: "default".into(),
            provider: Provider::Onnx { model: DEFAULT_LOCAL_MODEL.into() },
            params: DecodeParams::default(),
            span: Span::default(),
        }
    }
}

const PROVIDERS: [&str; 2] = ["onnx", "openai"];

const DECODE_SETTINGS: [(&str, Kind); 9] = [
    ("temperature", Kind::Number),
    ("top_p", Kind::Number),
    ("top_k", Kind::Count),
    ("max_tokens", Kind::Count),
    ("seed", Kind::Count),
    ("stop", Kind::StrList),
    ("timeout_ms", Kind::Count),
    ("concurrency", Kind::Count),
    ("retries", Kind::Count),
];

/// Resolves one `model` declaration, reporting problems to `diags`.
pub(super) fn lower(decl: &ModelDecl, diags: &mut Vec<Diagnostic>) -> Option<ModelSpec> {
    let owner = format!("model `{}`", decl.name.name);
    let arg = |i: usize| decl.args.get(i).map(|a| a.value.clone());
    let (provider, arity, usage) = match decl.provider.name.as_str() {
        "onnx" => (arg(0).map(|model| Provider::Onnx { model }), 1..=1, "onnx(\"smollm2-135m-instruct\")"),
        "openai" => {
            // Every argument but the last is a base URL; the last names the model.
            let p = match decl.args.split_last() {
                Some((model, urls)) if !urls.is_empty() => {
                    Some(Provider::OpenAi { base_urls: urls.iter().map(|a| a.value.clone()).collect(), model: model.value.clone(), api_key_env: None })
                }
                _ => None,
            };
            (p, 2..=usize::MAX, "openai(\"http://127.0.0.1:8000/v1\", \"model-name\"), or several base URLs then the model")
        }
        other => {
            diags.push(
                Diagnostic::error("unknown-name", decl.provider.span, format!("unknown model provider `{other}`"))
                    .with_label("not a provider")
                    .with_hint_opt(did_you_mean(other, PROVIDERS))
                    .with_hint("the providers are `onnx` (local) and `openai` (OpenAI-compatible endpoint)"),
            );
            return None;
        }
    };
    if !arity.contains(&decl.args.len()) {
        let takes = if arity.end() == arity.start() { arity.start().to_string() } else { format!("at least {}", arity.start()) };
        diags.push(
            Diagnostic::error(
                "invalid-value",
                decl.provider.span.to(decl.args.last().map_or(decl.provider.span, |a| a.span)),
                format!("`{}` takes {takes} argument(s), {} given", decl.provider.name, decl.args.len()),
            )
            .with_hint(format!("write e.g. `{usage}`")),
        );
        return None;
    }
    let mut provider = provider?;
    let mut schema = DECODE_SETTINGS.to_vec();
    if matches!(provider, Provider::OpenAi { .. }) {
        schema.push(("api_key_env", Kind::Str));
        schema.push(("max_response_bytes", Kind::Count));
        schema.push(("structured_output", Kind::Str));
    }
    let settings = config::read(&decl.config, &schema, &owner, diags);
    if let Provider::OpenAi { base_urls, api_key_env, .. } = &mut provider {
        for (url, arg) in base_urls.iter().zip(&decl.args) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                diags.push(
                    Diagnostic::error("invalid-value", arg.span, format!("`{url}` is not an http(s) URL"))
                        .with_hint("write the API base, e.g. \"http://127.0.0.1:8000/v1\"; the model's name comes last"),
                );
            }
        }
        *api_key_env = settings.string("api_key_env");
    }
    let defaults = DecodeParams::default();
    let params = DecodeParams {
        temperature: settings.number("temperature").unwrap_or(defaults.temperature),
        top_p: settings.number("top_p"),
        top_k: settings.count("top_k").map(clamp_u32),
        max_tokens: settings.count("max_tokens").map_or(defaults.max_tokens, clamp_u32),
        seed: settings.count("seed"),
        stop: settings.strings("stop").unwrap_or_default(),
        timeout_ms: settings.count("timeout_ms"),
        concurrency: settings.count("concurrency").map(clamp_u32),
        retries: settings.count("retries").map(clamp_u32),
        max_response_bytes: settings.count("max_response_bytes"),
        structured_output: settings.string("structured_output"),
    };
    if let (Some(v), Some(value)) = (&params.structured_output, settings.get("structured_output")) {
        if !STRUCTURED_OUTPUT_VALUES.contains(&v.as_str()) {
            diags.push(
                Diagnostic::error("invalid-value", value.span, format!("unknown `structured_output` value `{v}`"))
                    .with_hint_opt(did_you_mean(v, STRUCTURED_OUTPUT_VALUES))
                    .with_hint(format!("the values are {}", STRUCTURED_OUTPUT_VALUES.join(", "))),
            );
        }
    }
    check_range(&settings, "temperature", params.temperature, 0.0..=10.0, diags);
    if let Some(p) = params.top_p {
        check_range(&settings, "top_p", p, 0.0..=1.0, diags);
    }
    for key in ["max_tokens", "concurrency"] {
        if settings.count(key) == Some(0) {
            if let Some(v) = settings.get(key) {
                diags.push(Diagnostic::error("invalid-value", v.span, format!("`{key}` must be at least 1")));
            }
        }
    }
    Some(ModelSpec { name: decl.name.name.clone(), provider, params, span: decl.span })
}

/// Resolves one `model` declaration on its own, for tools that show what a model will use
/// (an editor's hover): its settings with the defaults filled in, or `None` when the
/// declaration is too broken to say (its problems are what `lower` reports).
pub fn resolve(decl: &ModelDecl) -> Option<ModelSpec> {
    lower(decl, &mut Vec::new())
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn check_range(settings: &config::Settings<'_>, key: &str, v: f64, range: std::ops::RangeInclusive<f64>, diags: &mut Vec<Diagnostic>) {
    if !range.contains(&v) {
        if let Some(val) = settings.get(key) {
            diags.push(Diagnostic::error("invalid-value", val.span, format!("`{key}` must be between {} and {}", range.start(), range.end())));
        }
    }
}
