//! [`Program`]: the library entry point services use. Load a `.loop` file once, then call
//! [`Program::run`] from as many tasks as you like; it is `Send + Sync` and cheap to clone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use super::artifact::Artifact;
use super::backend::{Backend, BackendError, LocalBackend, OpenAiBackend};
use super::executor::{Executor, RunError, RunOptions, StepParams};
use super::trace::Trace;
use crate::graph::{Dag, ModelId, ModelSpec, Provider};
use crate::model::progress::ConsoleProgress;
use crate::model::{LoadOptions, LocalModel, ModelError, PrefixCaching};
use crate::syntax::{LineIndex, Severity};

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Occurs when the file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Occurs when the program has errors; each is `file:line:col: message`.
    #[error("`{path}` is not a valid program:\n  {}", .errors.join("\n  "))]
    Invalid {
        /// The file.
        path: String,
        /// The errors, located.
        errors: Vec<String>,
    },
    /// Occurs when a local model cannot be provisioned or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Occurs when a remote model cannot be set up.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Occurs when a tool URL override is not usable.
    #[error("cannot point tool `{tool}` at `{url}`: {reason}")]
    ToolUrl {
        /// The tool.
        tool: String,
        /// The URL template given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Occurs when an artifact cannot be read.
    #[error(transparent)]
    Artifact(#[from] super::artifact::ArtifactError),
    /// Occurs when an artifact does not fit its own program or this machine's model.
    #[error("artifact `{path}`: {reason}")]
    Mismatch {
        /// The artifact.
        path: String,
        /// What does not fit.
        reason: String,
    },
    /// Occurs when a `--model` override is malformed.
    #[error("bad model override `{0}`: write a model name, a model directory, or openai:BASE_URL#MODEL")]
    Override(String),
}

/// A loaded, checked program with its models ready.
#[derive(Clone)]
pub struct Program {
    executor: Executor,
}

/// Local models already loaded in this process, shared by every program that uses them.
fn local_models() -> &'static Mutex<HashMap<String, Arc<LocalModel>>> {
    static MODELS: OnceLock<Mutex<HashMap<String, Arc<LocalModel>>>> = OnceLock::new();
    MODELS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// (prefilled, generated) tokens of every local model loaded in this process so far.
pub fn local_stats() -> (u64, u64) {
    let models = local_models().lock().unwrap_or_else(|e| e.into_inner());
    models.values().map(|m| m.stats()).fold((0, 0), |(p, g), s| (p + s.prefilled_tokens, g + s.generated_tokens))
}

fn local_model(name: &str) -> Result<Arc<LocalModel>, ModelError> {
    let mut models = local_models().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = models.get(name) {
        return Ok(m.clone());
    }
    let m = Arc::new(crate::model::provision::open_model(name, LoadOptions::default(), &ConsoleProgress::new())?);
    models.insert(name.to_string(), m.clone());
    Ok(m)
}

/// Where model answers are cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResponseCache {
    /// `responses/` in the loopc cache directory.
    #[default]
    Default,
    /// This directory.
    Dir(std::path::PathBuf),
    /// No caching: every call reaches the model.
    Off,
}

/// Options for loading a program.
#[derive(Clone, Debug, Default)]
pub struct ProgramOptions {
    /// The response cache.
    pub response_cache: ResponseCache,
    /// Replaces every step's model: a model name or directory, or `openai:BASE_URL#MODEL`.
    pub model_override: Option<String>,
    /// Run limits.
    pub run: RunOptions,
    /// Per-step parameters (instruction, template, demos), by step name.
    pub params: HashMap<String, StepParams>,
    /// New URL templates for HTTP tools, by tool name.
    pub tool_urls: HashMap<String, String>,
}

impl Program {
    /// Loads and checks the `.loop` file at `path`, then readies its models.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Program, LoadError> {
        Program::from_file_with(path, ProgramOptions::default())
    }

    /// [`Program::from_file`] with options.
    pub fn from_file_with(path: impl AsRef<Path>, options: ProgramOptions) -> Result<Program, LoadError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Program::from_source(&path.display().to_string(), &source, options)
    }

    /// Checks `source` (named `name` in messages) and readies its models.
    pub fn from_source(name: &str, source: &str, options: ProgramOptions) -> Result<Program, LoadError> {
        let mut dag = check(name, source)?;
        for (tool, url) in &options.tool_urls {
            dag.set_tool_url(tool, url).map_err(|reason| LoadError::ToolUrl { tool: tool.clone(), url: url.clone(), reason })?;
        }
        let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
        let override_spec = options.model_override.as_deref().map(parse_override).transpose()?;
        let cache_dir = match &options.response_cache {
            ResponseCache::Default => Some(crate::model::provision::Cache::from_env()?.root().join("responses")),
            ResponseCache::Dir(d) => Some(d.clone()),
            ResponseCache::Off => None,
        };
        for spec in dag.models() {
            let spec = match &override_spec {
                Some(p) => ModelSpec { provider: p.clone(), ..spec.clone() },
                None => spec.clone(),
            };
            let b = backend(&spec)?;
            backends.push(match &cache_dir {
                Some(dir) => Arc::new(super::cache::CachedBackend::new(b, dir.clone())),
                None => b,
            });
        }
        let params = options.params.into_iter().filter_map(|(step, p)| dag.step_id(&step).map(|id| (id, p))).collect();
        Ok(Program { executor: Executor::new(Arc::new(dag), backends, params, options.run) })
    }

    /// A checked program on backends the caller provides, one per declared model in
    /// declaration order (for models loopc has no backend for, and for tests).
    pub fn with_backends(dag: Dag, backends: Vec<Arc<dyn Backend>>, run: RunOptions) -> Result<Program, LoadError> {
        if backends.len() != dag.models().len() {
            return Err(LoadError::Backend(BackendError::Unsupported(format!(
                "the program declares {} model(s) but {} backend(s) were given",
                dag.models().len(),
                backends.len()
            ))));
        }
        Ok(Program { executor: Executor::new(Arc::new(dag), backends, HashMap::new(), run) })
    }

    /// Loads a compiled artifact (see [`super::artifact`]); no `.loop` file is needed.
    pub fn load(path: impl AsRef<Path>) -> Result<Program, LoadError> {
        Program::load_with(path, ProgramOptions::default())
    }

    /// [`Program::load`] with options; `options.params` override the artifact's choices.
    pub fn load_with(path: impl AsRef<Path>, options: ProgramOptions) -> Result<Program, LoadError> {
        let path = path.as_ref();
        let artifact = Artifact::read(path)?;
        Program::from_artifact(&path.display().to_string(), &artifact, options)
    }

    /// Readies a program from an artifact already in memory (`name` is used in messages).
    pub fn from_artifact(name: &str, artifact: &Artifact, mut options: ProgramOptions) -> Result<Program, LoadError> {
        let mismatch = |reason: String| LoadError::Mismatch { path: name.to_string(), reason };
        for (step, params) in artifact.step_params().map_err(mismatch)? {
            options.params.entry(step).or_insert(params);
        }
        let overridden = options.model_override.is_some();
        let source_name = format!("{name} (embedded {})", artifact.program.source_file);
        let program = Program::from_source(&source_name, &artifact.program.source, options)?;
        if let Some(step) = artifact.steps.keys().find(|s| program.dag().step_id(s).is_none()) {
            return Err(mismatch(format!("it has parameters for step `{step}`, which its program does not have")));
        }
        if !overridden {
            for (record, backend) in artifact.models.iter().zip(program.executor.backends()) {
                let (Some(want), Some(have)) = (&record.weights_sha256, backend.weights_sha256()) else { continue };
                if *want != have {
                    return Err(mismatch(format!(
                        "it was compiled against model `{}` with weights {want}, but the installed weights hash to {have}; recompile, or pass a model override to run anyway",
                        record.model
                    )));
                }
            }
        }
        Ok(program)
    }

    /// The same program and models with other step parameters, by step name (unknown names
    /// are ignored). Cheap: models and caches are shared.
    pub fn with_params(&self, params: HashMap<String, StepParams>) -> Program {
        let dag = self.dag();
        let params = params.into_iter().filter_map(|(step, p)| dag.step_id(&step).map(|id| (id, p))).collect();
        Program { executor: self.executor.with_params(params) }
    }

    /// The same program with every model step on declared model `model` (e.g. a teacher that
    /// produces demos for a smaller model). Unknown ids leave the program as it is.
    pub fn on_model(&self, model: ModelId) -> Program {
        let Some(b) = self.executor.backends().get(model.0).cloned() else { return self.clone() };
        let all = vec![b; self.executor.backends().len()];
        Program { executor: self.executor.with_backends(all) }
    }

    /// Runs the program on `inputs` (a JSON object with the program's inputs).
    pub async fn run(&self, inputs: Map<String, Value>) -> Result<Map<String, Value>, RunError> {
        self.executor.run(inputs).await.0
    }

    /// Runs the program and also returns the trace.
    pub async fn run_traced(&self, inputs: Map<String, Value>) -> (Result<Map<String, Value>, RunError>, Trace) {
        self.executor.run(inputs).await
    }

    /// The checked program graph.
    pub fn dag(&self) -> &Dag {
        self.executor.dag()
    }

    /// The executor (for showing prompts without running).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }
}

/// Parses and checks `source`, turning errors into located messages.
pub fn check(name: &str, source: &str) -> Result<Dag, LoadError> {
    let index = LineIndex::new(source);
    let locate = |d: &crate::syntax::Diagnostic| {
        let lc = index.line_col(source, d.span.start);
        format!("{name}:{}:{}: {}", lc.line, lc.col, d.message)
    };
    let file = crate::syntax::parse(source).map_err(|d| LoadError::Invalid { path: name.to_string(), errors: vec![locate(&d)] })?;
    let lowered = crate::graph::lower(&file);
    lowered.dag.ok_or_else(|| LoadError::Invalid {
        path: name.to_string(),
        errors: lowered.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(locate).collect(),
    })
}

fn parse_override(s: &str) -> Result<Provider, LoadError> {
    if let Some(rest) = s.strip_prefix("openai:") {
        let (base_url, model) = rest.split_once('#').ok_or_else(|| LoadError::Override(s.to_string()))?;
        if model.is_empty() || !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(LoadError::Override(s.to_string()));
        }
        return Ok(Provider::OpenAi { base_url: base_url.to_string(), model: model.to_string(), api_key_env: None });
    }
    if s.is_empty() {
        return Err(LoadError::Override(s.to_string()));
    }
    Ok(Provider::Onnx { model: s.to_string() })
}

fn backend(spec: &ModelSpec) -> Result<Arc<dyn Backend>, LoadError> {
    Ok(match &spec.provider {
        Provider::Onnx { model } => Arc::new(LocalBackend::new(local_model(model)?, PrefixCaching::On)),
        Provider::OpenAi { base_url, model, api_key_env } => Arc::new(OpenAiBackend::new(
            base_url,
            model,
            api_key_env.as_deref(),
            spec.params.timeout_ms.unwrap_or(60_000),
            spec.params.retries.unwrap_or(4),
            spec.params.concurrency.unwrap_or(4) as usize,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_programs_report_located_errors() {
        let err =
            Program::from_source("bad.loop", "program p\ninput q: text\noutput a: text\nreturn { a: nope.x }\n", ProgramOptions::default()).err().unwrap();
        assert_eq!(err.to_string(), "`bad.loop` is not a valid program:\n  bad.loop:4:13: unknown step `nope`");
    }

    #[test]
    fn model_overrides_are_parsed() {
        assert_eq!(
            parse_override("openai:http://127.0.0.1:8000/v1#m").unwrap(),
            Provider::OpenAi { base_url: "http://127.0.0.1:8000/v1".into(), model: "m".into(), api_key_env: None }
        );
        assert!(parse_override("openai:http://x").is_err());
        assert_eq!(parse_override("/models/tiny").unwrap(), Provider::Onnx { model: "/models/tiny".into() });
    }

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn programs_are_send_sync_and_clone() {
        assert_send_sync::<Program>();
    }
}
