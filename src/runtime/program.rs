//! [`Program`]: a checked program with its models ready, loaded through an [`Engine`]
//! (`engine.load(path)` takes a `.loop` file or a compiled artifact). Call [`Program::run`]
//! from as many tasks as you like; it is `Send + Sync` and cheap to clone, and every run is
//! counted on its engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::artifact::Artifact;
use super::backend::{Backend, BackendError, LocalBackend, OpenAiBackend, PoolOptions, StructuredOutput};
use super::engine::Engine;
use super::executor::{Executor, RunError, RunOptions, StepParams};
use super::trace::Trace;
use crate::graph::{Dag, ModelId, ModelSpec, Provider, StepId};
use crate::model::{ModelError, PrefixCaching};
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
    /// Occurs when a program file is no file to read (a directory, a named pipe) or larger
    /// than a program may be.
    #[error("`{path}` {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What it is instead.
        reason: String,
    },
    /// Occurs when a program file is not UTF-8 text.
    #[error("`{path}` is not UTF-8 text: line {line}, column {col} (byte {byte}) is not a character")]
    NotUtf8 {
        /// The file.
        path: String,
        /// The line of the first byte that is not part of a character.
        line: usize,
        /// Its column, in characters.
        col: usize,
        /// Its offset in the file.
        byte: usize,
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
    /// Occurs when a `--model` override is malformed.
    #[error("bad model override `{0}`: write a model name, a model directory, or openai:BASE_URL[,BASE_URL...]#MODEL")]
    Override(String),
    /// Occurs when step parameters name a step the program does not have.
    #[error("no model step `{step}` in the program (its model steps: {known})")]
    UnknownStep {
        /// The name given.
        step: String,
        /// The program's model steps.
        known: String,
    },
}

/// Options for loading a program.
#[derive(Clone, Debug, Default)]
pub struct ProgramOptions {
    /// Replaces every step's model: a model name or directory, or
    /// `openai:BASE_URL[,BASE_URL...]#MODEL`.
    pub model_override: Option<String>,
    /// Run limits.
    pub run: RunOptions,
    /// Per-step parameters (instruction, template, demos), by step name; they override an
    /// artifact's. A name that is not a model step of the program is an error.
    pub params: HashMap<String, StepParams>,
    /// New URL templates for HTTP tools, by tool name.
    pub tool_urls: HashMap<String, String>,
}

/// What a program's loading found worth telling that does not stop it from running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadWarning {
    /// Occurs when an artifact was compiled against other weights of a local model than the
    /// installed ones (another export, or another precision of the same model): it runs, but
    /// the scores its choices were made on may not hold.
    WeightsDiffer {
        /// The model's name.
        model: String,
        /// The weights' SHA-256 recorded at compile time.
        compiled: String,
        /// The installed weights' SHA-256.
        installed: String,
    },
}

impl std::fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadWarning::WeightsDiffer { model, compiled, installed } => {
                let short = |h: &str| h.chars().take(12).collect::<String>();
                write!(
                    f,
                    "model `{model}`: the artifact was compiled against weights {}, but the installed weights are {} \
                     (another export or precision); it runs, but recompile it to choose its prompts on these weights",
                    short(compiled),
                    short(installed)
                )
            }
        }
    }
}

/// A loaded, checked program with its models ready, bound to the engine that runs it.
#[derive(Clone)]
pub struct Program {
    executor: Executor,
    engine: Engine,
    warnings: Arc<[LoadWarning]>,
}

impl Program {
    /// Checks `source` (named `name` in messages) and readies its models on `engine`.
    pub(crate) fn from_source(engine: &Engine, name: &str, source: &str, options: ProgramOptions) -> Result<Program, LoadError> {
        let mut dag = checked_dag(name, source)?;
        for (tool, url) in &options.tool_urls {
            dag.set_tool_url(tool, url).map_err(|reason| LoadError::ToolUrl { tool: tool.clone(), url: url.clone(), reason })?;
        }
        let override_spec = options.model_override.as_deref().map(parse_override).transpose()?;
        let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
        for spec in dag.models() {
            let spec = match &override_spec {
                Some(p) => ModelSpec { provider: p.clone(), ..spec.clone() },
                None => spec.clone(),
            };
            backends.push(engine.cached(backend(engine, &spec)?));
        }
        let params = step_ids(&dag, options.params)?;
        Ok(Program { executor: Executor::new(Arc::new(dag), backends, params, options.run), engine: engine.clone(), warnings: Arc::new([]) })
    }

    /// Readies a program from an artifact: its embedded program, validated against the
    /// artifact's records, with the compiled parameters (`options.params` override them).
    pub(crate) fn from_artifact(engine: &Engine, name: &str, artifact: &Artifact, mut options: ProgramOptions) -> Result<Program, LoadError> {
        let source_name = format!("{name} (embedded {})", artifact.program.source_file);
        let dag = checked_dag(&source_name, &artifact.program.source)?;
        let compiled = artifact.validate(name, &dag).map_err(LoadError::Artifact)?;
        for (id, params) in compiled {
            options.params.entry(dag.step(id).name.clone()).or_insert(params);
        }
        let overridden = options.model_override.is_some();
        let mut program = Program::from_source(engine, &source_name, &artifact.program.source, options)?;
        let mut warnings = Vec::new();
        if !overridden {
            for (record, backend) in artifact.models.iter().zip(program.executor.backends()) {
                let (Some(want), Some(have)) = (&record.weights_sha256, backend.weights_sha256()) else { continue };
                if *want != have {
                    warnings.push(LoadWarning::WeightsDiffer { model: record.model.clone(), compiled: want.clone(), installed: have });
                }
            }
        }
        program.warnings = warnings.into();
        Ok(program)
    }

    /// A checked program on backends the caller provides, one per declared model in
    /// declaration order (for models loopc has no backend for, and for tests).
    pub fn with_backends(engine: &Engine, dag: Dag, backends: Vec<Arc<dyn Backend>>, run: RunOptions) -> Result<Program, LoadError> {
        if backends.len() != dag.models().len() {
            return Err(LoadError::Backend(BackendError::Unsupported(format!(
                "the program declares {} model(s) but {} backend(s) were given",
                dag.models().len(),
                backends.len()
            ))));
        }
        Ok(Program { executor: Executor::new(Arc::new(dag), backends, HashMap::new(), run), engine: engine.clone(), warnings: Arc::new([]) })
    }

    /// What loading found worth telling that did not stop it (for the caller to show).
    pub fn warnings(&self) -> &[LoadWarning] {
        &self.warnings
    }

    /// The same program and models with other step parameters (what the compiler searches).
    /// Cheap: models and caches are shared.
    pub fn with_params(&self, params: HashMap<StepId, StepParams>) -> Program {
        Program { executor: self.executor.with_params(params), engine: self.engine.clone(), warnings: self.warnings.clone() }
    }

    /// The same program asking `memory` for demos on every request, after the compiled ones
    /// (online memory; see [`super::memory`]). Cheap: models and caches are shared.
    pub fn with_memory(&self, memory: Arc<dyn super::memory::DemoMemory>) -> Program {
        Program { executor: self.executor.with_memory(memory), engine: self.engine.clone(), warnings: self.warnings.clone() }
    }

    /// The same program scoring labels as far as `pruning` says (see
    /// [`super::scoring::LabelPruning`]). Cheap: models and caches are shared.
    pub fn with_label_pruning(&self, pruning: super::scoring::LabelPruning) -> Program {
        Program { executor: self.executor.with_label_pruning(pruning), engine: self.engine.clone(), warnings: self.warnings.clone() }
    }

    /// The same program without a memory (what a learning round scores: the artifact alone).
    pub fn without_memory(&self) -> Program {
        Program { executor: self.executor.without_memory(), engine: self.engine.clone(), warnings: self.warnings.clone() }
    }

    /// The same program with every model step on declared model `model` (e.g. a teacher that
    /// produces demos for a smaller model). Unknown ids leave the program as it is.
    pub fn on_model(&self, model: ModelId) -> Program {
        let Some(b) = self.executor.backends().get(model.0).cloned() else { return self.clone() };
        let all = vec![b; self.executor.backends().len()];
        Program { executor: self.executor.with_backends(all), engine: self.engine.clone(), warnings: self.warnings.clone() }
    }

    /// Runs the program on `inputs` (a JSON object with the program's inputs).
    pub async fn run(&self, inputs: Map<String, Value>) -> Result<Map<String, Value>, RunError> {
        self.run_traced(inputs).await.0
    }

    /// Runs the program and also returns the trace.
    pub async fn run_traced(&self, inputs: Map<String, Value>) -> (Result<Map<String, Value>, RunError>, Trace) {
        let (result, trace) = self.executor.run(inputs).await;
        self.engine.record_run(self.dag().name(), &trace);
        (result, trace)
    }

    /// The checked program graph.
    pub fn dag(&self) -> &Dag {
        self.executor.dag()
    }

    /// The executor (for showing prompts without running).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The engine the program runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Step parameters by step name, turned into step ids; a name that is not a model step is an
/// error rather than silently ignored.
fn step_ids(dag: &Dag, params: HashMap<String, StepParams>) -> Result<HashMap<StepId, StepParams>, LoadError> {
    params
        .into_iter()
        .map(|(name, p)| match dag.step_id(&name).filter(|id| dag.step_signature(*id).is_some()) {
            Some(id) => Ok((id, p)),
            None => {
                let known: Vec<&str> =
                    (0..dag.steps().len()).filter(|&i| dag.step_signature(StepId(i)).is_some()).map(|i| dag.step(StepId(i)).name.as_str()).collect();
                Err(LoadError::UnknownStep { step: name, known: known.join(", ") })
            }
        })
        .collect()
}

/// Parses and checks `source`, turning errors into located messages.
pub fn checked_dag(name: &str, source: &str) -> Result<Dag, LoadError> {
    let index = LineIndex::new(source);
    let locate = |d: &crate::syntax::Diagnostic| {
        let lc = index.line_col(source, d.span.start);
        format!("{name}:{}:{}: {}", lc.line, lc.col, d.message)
    };
    let checked = crate::graph::check_text(source);
    checked.dag.ok_or_else(|| LoadError::Invalid {
        path: name.to_string(),
        errors: checked.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(locate).collect(),
    })
}

fn parse_override(s: &str) -> Result<Provider, LoadError> {
    if let Some(rest) = s.strip_prefix("openai:") {
        let (urls, model) = rest.split_once('#').ok_or_else(|| LoadError::Override(s.to_string()))?;
        let base_urls: Vec<String> = urls.split(',').map(|u| u.trim().to_string()).collect();
        if model.is_empty() || !base_urls.iter().all(|u| u.starts_with("http://") || u.starts_with("https://")) {
            return Err(LoadError::Override(s.to_string()));
        }
        return Ok(Provider::OpenAi { base_urls, model: model.to_string(), api_key_env: None });
    }
    if s.is_empty() {
        return Err(LoadError::Override(s.to_string()));
    }
    Ok(Provider::Onnx { model: s.to_string() })
}

fn backend(engine: &Engine, spec: &ModelSpec) -> Result<Arc<dyn Backend>, LoadError> {
    Ok(match &spec.provider {
        Provider::Onnx { model } => Arc::new(LocalBackend::new(engine.local_model(model)?, PrefixCaching::On)),
        Provider::OpenAi { base_urls, model, api_key_env } => {
            let defaults = PoolOptions::default();
            let options = PoolOptions {
                timeout: spec.params.timeout_ms.map_or(defaults.timeout, |ms| Duration::from_millis(ms.max(1))),
                retries: spec.params.retries.unwrap_or(defaults.retries),
                concurrency: spec.params.concurrency.map_or(defaults.concurrency, |c| c as usize),
                max_response_bytes: spec.params.max_response_bytes.map_or(defaults.max_response_bytes, |b| usize::try_from(b).unwrap_or(usize::MAX)),
                api_key_env: api_key_env.clone(),
                // The checker refused any other value.
                structured_output: spec.params.structured_output.as_deref().and_then(StructuredOutput::from_name).unwrap_or_default(),
            };
            Arc::new(OpenAiBackend::new(base_urls, model, options)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_programs_report_located_errors() {
        let err = checked_dag("bad.loop", "program p\ninput q: text\noutput a: text\nreturn { a: nope.x }\n").err().unwrap();
        assert_eq!(err.to_string(), "`bad.loop` is not a valid program:\n  bad.loop:4:13: unknown step `nope`");
    }

    #[test]
    fn model_overrides_are_parsed() {
        assert_eq!(
            parse_override("openai:http://127.0.0.1:8000/v1#m").unwrap(),
            Provider::OpenAi { base_urls: vec!["http://127.0.0.1:8000/v1".into()], model: "m".into(), api_key_env: None }
        );
        assert_eq!(
            parse_override("openai:http://a/v1,http://b/v1#m").unwrap(),
            Provider::OpenAi { base_urls: vec!["http://a/v1".into(), "http://b/v1".into()], model: "m".into(), api_key_env: None }
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
