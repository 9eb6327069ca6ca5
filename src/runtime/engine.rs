//! [`Engine`]: the one object a service or the CLI holds. It owns the loaded local models
//! (keyed by fingerprint, so programs on the same weights share one model and its
//! scheduler), the load options, the response cache, where progress goes, per-program
//! counters and an optional trace sink. Programs run against an engine; a service holds many
//! programs, on one model or several, on one engine. Nothing here is process-global, and
//! nothing is printed: progress goes to the [`Progress`] sink the caller gives.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::artifact::Artifact;
use super::backend::Backend;
use super::cache::{CacheStats, ResponseCache, DEFAULT_LIMIT_BYTES};
use super::program::{LoadError, Program, ProgramOptions};
use super::source::ProgramFile;
use super::trace::{StepKind, Trace};
use crate::model::progress::{Progress, SilentProgress};
use crate::model::provision::{self, Cache};
use crate::model::{LoadOptions, LocalModel, ModelError, Stats};

/// Where model answers are cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// `responses/` in the loopc cache directory.
    #[default]
    Default,
    /// This directory.
    Dir(PathBuf),
    /// No caching: every call reaches the model.
    Off,
}

/// How an engine is set up.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The loopc cache directory (models, ONNX Runtime, responses); `None` reads
    /// `$LOOPC_CACHE_DIR`, else the platform cache directory.
    pub cache_root: Option<PathBuf>,
    /// How local models are loaded and batched.
    pub load: LoadOptions,
    /// The response cache.
    pub responses: CacheSetting,
    /// The response cache's size limit in bytes.
    pub responses_limit: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { cache_root: None, load: LoadOptions::default(), responses: CacheSetting::Default, responses_limit: DEFAULT_LIMIT_BYTES }
    }
}

/// What every run of one program added up to on this engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramCounters {
    /// Runs finished.
    pub runs: u64,
    /// Of those, runs that failed.
    pub failed: u64,
    /// Model calls (every attempt of every model step).
    pub model_calls: u64,
    /// Model calls answered by the response cache.
    pub cache_hits: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Wall time of every run, summed.
    pub latency_ms: u64,
}

impl ProgramCounters {
    /// Adds a finished run.
    fn add(&mut self, trace: &Trace) {
        self.runs += 1;
        self.failed += u64::from(trace.error.is_some());
        self.latency_ms += trace.latency_ms;
        for st in trace.steps.iter().filter(|s| s.kind != StepKind::Call) {
            let calls = st.raw.len().max(1) as u64;
            self.model_calls += calls;
            if st.cache_hit {
                self.cache_hits += calls;
            }
            self.prompt_tokens += st.prompt_tokens;
            self.completion_tokens += st.completion_tokens;
        }
    }
}

/// Receives every finished run's trace (e.g. to append it to a file or a store).
pub trait TraceSink: Send + Sync {
    /// Called once per run, after it finished or failed.
    fn record(&self, trace: &Trace);
}

struct Inner {
    options: EngineOptions,
    cache: Cache,
    progress: Arc<dyn Progress>,
    /// Loaded models by fingerprint. The lock is held across a load, so two programs asking
    /// for one model at once load it once.
    models: Mutex<HashMap<String, Arc<LocalModel>>>,
    responses: Option<Arc<ResponseCache>>,
    counters: Mutex<BTreeMap<String, ProgramCounters>>,
    traces: Option<Arc<dyn TraceSink>>,
}

/// The runtime a service or the CLI holds: models, caches, counters. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    options: EngineOptions,
    progress: Arc<dyn Progress>,
    traces: Option<Arc<dyn TraceSink>>,
}

impl EngineBuilder {
    /// Sets the options.
    pub fn options(mut self, options: EngineOptions) -> EngineBuilder {
        self.options = options;
        self
    }

    /// Reports long work (provisioning, model conversion) to `progress`.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> EngineBuilder {
        self.progress = progress;
        self
    }

    /// Hands every finished run's trace to `sink`.
    pub fn trace_sink(mut self, sink: Arc<dyn TraceSink>) -> EngineBuilder {
        self.traces = Some(sink);
        self
    }

    /// The engine. Fails only when no cache directory can be found.
    pub fn build(self) -> Result<Engine, ModelError> {
        let cache = match &self.options.cache_root {
            Some(root) => Cache::at(root.clone()),
            None => Cache::from_env()?,
        };
        let responses = match &self.options.responses {
            CacheSetting::Default => Some(cache.root().join("responses")),
            CacheSetting::Dir(d) => Some(d.clone()),
            CacheSetting::Off => None,
        }
        .map(|dir| Arc::new(ResponseCache::new(dir, self.options.responses_limit)));
        Ok(Engine {
            inner: Arc::new(Inner {
                options: self.options,
                cache,
                progress: self.progress,
                models: Mutex::new(HashMap::new()),
                responses,
                counters: Mutex::new(BTreeMap::new()),
                traces: self.traces,
            }),
        })
    }
}

impl Engine {
    /// An engine with default options, silent progress and no trace sink.
    pub fn new() -> Result<Engine, ModelError> {
        Engine::builder().build()
    }

    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder { options: EngineOptions::default(), progress: Arc::new(SilentProgress), traces: None }
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// The loopc cache directory in use.
    pub fn cache_dir(&self) -> &Path {
        self.inner.cache.root()
    }

    /// Loads a `.loop` file or a compiled artifact (told apart by content) and readies its
    /// models.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        self.load_with(path, ProgramOptions::default())
    }

    /// [`Engine::load`] with options.
    pub fn load_with(&self, path: impl AsRef<Path>, options: ProgramOptions) -> Result<Program, LoadError> {
        match ProgramFile::read(path.as_ref())? {
            ProgramFile::Source { name, text } => Program::from_source(self, &name, &text, options),
            ProgramFile::Artifact { name, artifact } => Program::from_artifact(self, &name, &artifact, options),
        }
    }

    /// Checks `source` (named `name` in messages) and readies its models.
    pub fn load_source(&self, name: &str, source: &str, options: ProgramOptions) -> Result<Program, LoadError> {
        Program::from_source(self, name, source, options)
    }

    /// Readies a program from an artifact already in memory (`name` is used in messages).
    pub fn load_artifact(&self, name: &str, artifact: &Artifact, options: ProgramOptions) -> Result<Program, LoadError> {
        Program::from_artifact(self, name, artifact, options)
    }

    /// The local model `spec` (a known name, an installed name or a directory), loaded once
    /// per fingerprint: a second program on the same weights shares the model.
    pub fn local_model(&self, spec: &str) -> Result<Arc<LocalModel>, ModelError> {
        let progress = self.inner.progress.as_ref();
        let library = provision::ort_library(&self.inner.cache, progress)?;
        let env = crate::model::init_runtime(&library)?;
        let dir = provision::locate_model(spec, &self.inner.cache, progress)?;
        let key = crate::model::fingerprint_of(&dir)?.full;
        let mut models = self.inner.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = models.get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(LocalModel::load(env, &dir, spec, self.inner.options.load.clone())?);
        models.insert(key, m.clone());
        Ok(m)
    }

    /// The local models loaded so far, by name, with their counters.
    pub fn model_stats(&self) -> Vec<(String, Stats)> {
        let models = self.inner.models.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, Stats)> = models.values().map(|m| (m.name().to_string(), m.stats())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// (prefilled, generated) tokens of every local model of this engine so far.
    pub fn token_totals(&self) -> (u64, u64) {
        self.model_stats().iter().fold((0, 0), |(p, g), (_, s)| (p + s.prefilled_tokens, g + s.generated_tokens))
    }

    /// The response cache, if one is in use.
    pub fn response_cache(&self) -> Option<&Arc<ResponseCache>> {
        self.inner.responses.as_ref()
    }

    /// The response cache's figures, if one is in use.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.responses.as_ref().map(|c| c.stats())
    }

    /// Counters per program name.
    pub fn counters(&self) -> BTreeMap<String, ProgramCounters> {
        self.inner.counters.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wraps `backend` in the response cache, if the engine has one.
    pub(crate) fn cached(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        match &self.inner.responses {
            Some(cache) => Arc::new(super::cache::CachedBackend::new(backend, cache.clone())),
            None => backend,
        }
    }

    /// Counts a finished run of program `program` and hands its trace to the sink.
    pub(crate) fn record_run(&self, program: &str, trace: &Trace) {
        self.inner.counters.lock().unwrap_or_else(|e| e.into_inner()).entry(program.to_string()).or_default().add(trace);
        if let Some(sink) = &self.inner.traces {
            sink.record(trace);
        }
    }
}
