//! [`Service`]: the library path of the loop, without HTTP. It holds the program being
//! served (from `.loop` source or an artifact, with the artifact's hash), the store, and
//! records every run (inputs, outputs, trace, artifact, user, consent) and every piece of
//! feedback, checked against the program's declarations. `loopc serve` is this plus HTTP.
//!
//! The served version can change while requests run (a promoted artifact, a canary taking a
//! share of traffic): each request takes the version in force when it starts and finishes
//! on it, so a swap never drops or fails a request.
//!
//! Online memory: when the program declares `memory` for a step (and it is not switched off,
//! [`MemoryOptions`]), each version keeps a [`Memory`] of the store's feedback and brings it
//! up to date before every run (an indexed read of what changed since its last look), so a
//! correction stored through any replica is recalled by the next similar request on every
//! replica, and a forgotten user's corrections are gone before it.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::error::ServeError;
use super::feedback::{check_feedback, FeedbackInput};
use crate::compile::Example;
use crate::learn::{Current, Memory, VersionRecord};
use crate::runtime::artifact::Artifact;
use crate::runtime::executor::RunError;
use crate::runtime::source::ProgramFile;
use crate::runtime::trace::Trace;
use crate::runtime::{Engine, Program, ProgramOptions};
use crate::store::{ArtifactVersion, Consent, FeedbackWrite, NewFeedback, NewRun, RecordedRun, RunId, Store, Timestamp};

/// A program loaded for serving, with what identifies it in the store.
#[derive(Clone)]
pub struct Loaded {
    /// The program, ready to run.
    pub program: Program,
    /// When it came from an artifact: its content hash ([`Artifact::content_hash`]), and the
    /// artifact as JSON (recorded in the store as a version).
    pub artifact: Option<(String, Value)>,
    /// The program as learning sees it: its source and the artifact in use.
    pub current: Current,
    /// How it was loaded (model override, run limits): versions learned later load the same way.
    pub options: ProgramOptions,
}

/// Loads `path` (a `.loop` file or an artifact, told apart by content) on `engine`. The file
/// is read as [`Engine::load`] reads it: bounded and strictly UTF-8. Blocking: it may
/// provision and load models; call it before serving or from `spawn_blocking`.
pub fn load(engine: &Engine, path: &Path, options: ProgramOptions) -> Result<Loaded, ServeError> {
    let kept = options.clone();
    match ProgramFile::read(path)? {
        ProgramFile::Source { name, text } => {
            let current = Current { name: name.clone(), source_file: name.clone(), source: text.clone(), artifact: None };
            Ok(Loaded { program: engine.load_source(&name, &text, options)?, artifact: None, current, options: kept })
        }
        ProgramFile::Artifact { name, artifact } => {
            let program = engine.load_artifact(&name, &artifact, options)?;
            let recorded = (artifact.content_hash(), serde_json::to_value(&*artifact).unwrap_or(Value::Null));
            let current =
                Current { name, source_file: artifact.program.source_file.clone(), source: artifact.program.source.clone(), artifact: Some(*artifact) };
            Ok(Loaded { program, artifact: Some(recorded), current, options: kept })
        }
    }
}

/// Loads a version learned from (or recorded in) the store: `artifact`, named by `hash`, of the
/// program `base` serves, loaded with `options` but the artifact's own step parameters.
/// Blocking, like [`load`].
pub fn load_version(engine: &Engine, base: &Current, options: &ProgramOptions, hash: &str, artifact: Artifact) -> Result<Loaded, ServeError> {
    let name = format!("{} (version {})", base.name, &hash[..hash.len().min(12)]);
    let options = ProgramOptions { params: Default::default(), ..options.clone() };
    let program = engine.load_artifact(&name, &artifact, options.clone())?;
    let body = serde_json::to_value(&artifact).unwrap_or(Value::Null);
    let current = Current { name: base.name.clone(), source_file: base.source_file.clone(), source: artifact.program.source.clone(), artifact: Some(artifact) };
    Ok(Loaded { program, artifact: Some((hash.to_string(), body)), current, options })
}

/// Who a run is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFor {
    /// The user, by a pseudonymous id.
    pub user_id: Option<String>,
    /// Whether the run may be stored (without consent, only counted).
    pub consent: Consent,
}

/// A run served: its id in the store (none without consent), its outputs or why it failed,
/// its trace, and how long the store write took.
#[derive(Debug)]
pub struct ServedRun {
    /// The stored run's id; `None` when consent was denied.
    pub run_id: Option<RunId>,
    /// The outputs, or the run's error (the run is stored either way).
    pub outputs: Result<Map<String, Value>, RunError>,
    /// What the run did, step by step (`trace.run_id` is the stored id).
    pub trace: Trace,
    /// The store write, until its commit.
    pub store_time: Duration,
    /// The SHA-256 of the artifact version that answered (`None` for a `.loop` file).
    pub artifact: Option<String>,
}

/// Whether a service recalls demos from its store's feedback (online memory), for the steps
/// its program declares a `memory` for.
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// Recall (the default); `false` serves the compiled demos only (`serve --no-memory`).
    pub enabled: bool,
    /// Human-labelled examples (the learner's holdout) that help judge users' trust; never
    /// recalled.
    pub reference: Arc<Vec<Example>>,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions { enabled: true, reference: Arc::new(Vec::new()) }
    }
}

/// One version being served.
struct Version {
    program: Program,
    memory: Option<Arc<Memory>>,
    artifact_hash: Option<String>,
    current: Current,
    options: ProgramOptions,
}

impl Version {
    /// The version of `loaded`, with a memory (caught up with `store`) when its program
    /// declares one and `memory` is on.
    async fn of(loaded: Loaded, memory: &MemoryOptions, store: &Store) -> Result<Arc<Version>, ServeError> {
        let recall = match memory.enabled {
            true => Memory::new(loaded.program.dag(), &memory.reference).map(Arc::new),
            false => None,
        };
        let program = match &recall {
            Some(m) => {
                m.sync(store).await?;
                loaded.program.with_memory(m.clone())
            }
            None => loaded.program,
        };
        Ok(Arc::new(Version { program, memory: recall, artifact_hash: loaded.artifact.map(|(h, _)| h), current: loaded.current, options: loaded.options }))
    }
}

/// A candidate taking a share of traffic until its live feedback decides.
struct Canary {
    version: Arc<Version>,
    share: f64,
    since: Timestamp,
}

/// A program and the store its runs and feedback go to. Cheap to clone; share it across tasks.
#[derive(Clone)]
pub struct Service {
    served: Arc<RwLock<Arc<Version>>>,
    canary: Arc<RwLock<Option<Canary>>>,
    store: Store,
    memory: MemoryOptions,
}

impl Service {
    /// A service for `loaded` recording into `store`, with online memory where the program
    /// declares it. When the program came from an artifact, the artifact is recorded as a
    /// version of the program (once per hash).
    pub async fn new(loaded: Loaded, store: Store) -> Result<Service, ServeError> {
        Service::with_memory(loaded, store, MemoryOptions::default()).await
    }

    /// [`Service::new`] with online memory as `memory` says. The memory reads the store's
    /// feedback before this returns.
    pub async fn with_memory(loaded: Loaded, store: Store, memory: MemoryOptions) -> Result<Service, ServeError> {
        record_version(&store, &loaded).await?;
        let version = Version::of(loaded, &memory, &store).await?;
        Ok(Service { served: Arc::new(RwLock::new(version)), canary: Arc::new(RwLock::new(None)), store, memory })
    }

    fn version(&self) -> Arc<Version> {
        self.served.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The program served (to every request outside a canary's share).
    pub fn program(&self) -> Program {
        self.version().program.clone()
    }

    /// The served version's online memory, when it has one.
    pub fn memory(&self) -> Option<Arc<Memory>> {
        self.version().memory.clone()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The served artifact's hash, when the program came from one.
    pub fn artifact_hash(&self) -> Option<String> {
        self.version().artifact_hash.clone()
    }

    /// The served program as learning sees it.
    pub fn current(&self) -> Current {
        self.version().current.clone()
    }

    /// How the served program was loaded (versions learned later load the same way).
    pub fn options(&self) -> ProgramOptions {
        self.version().options.clone()
    }

    /// Serves `loaded` from now on (requests already running finish on the version they
    /// started with) and ends any canary.
    pub async fn swap(&self, loaded: Loaded) -> Result<(), ServeError> {
        record_version(&self.store, &loaded).await?;
        let version = Version::of(loaded, &self.memory, &self.store).await?;
        *self.served.write().unwrap_or_else(|e| e.into_inner()) = version;
        *self.canary.write().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Sends a `share` (0 to 1) of runs to `loaded` until [`Service::end_canary`].
    pub async fn start_canary(&self, loaded: Loaded, share: f64) -> Result<(), ServeError> {
        let version = Version::of(loaded, &self.memory, &self.store).await?;
        let canary = Canary { version, share: share.clamp(0.0, 1.0), since: Timestamp::now() };
        *self.canary.write().unwrap_or_else(|e| e.into_inner()) = Some(canary);
        Ok(())
    }

    /// The canary's artifact hash and since when it runs, if there is one.
    pub fn canary(&self) -> Option<(String, Timestamp)> {
        let c = self.canary.read().unwrap_or_else(|e| e.into_inner());
        c.as_ref().map(|c| (c.version.artifact_hash.clone().unwrap_or_default(), c.since))
    }

    /// Ends the canary: its version becomes the one served (`promote`), or traffic goes back
    /// to the served version.
    pub fn end_canary(&self, promote: bool) {
        let canary = self.canary.write().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(c), true) = (canary, promote) {
            *self.served.write().unwrap_or_else(|e| e.into_inner()) = c.version;
        }
    }

    /// The version a new run goes to: the canary for its share of runs, else the served one.
    fn pick(&self) -> Arc<Version> {
        if let Some(c) = self.canary.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if rand::random::<f64>() < c.share {
                return c.version.clone();
            }
        }
        self.version()
    }

    /// Runs the program on `inputs` and records the run, returning after the store's commit.
    /// Inputs that do not fit the program are refused before anything runs or is stored; a run
    /// that fails (model, tool, timeout) is stored with its error and returned as such. With
    /// online memory, the memory first takes in what the store gained or lost since its last
    /// look (part of the run's latency).
    pub async fn run(&self, inputs: Map<String, Value>, who: RunFor) -> Result<ServedRun, ServeError> {
        let version = self.pick();
        let program = &version.program;
        program.executor().check_inputs(&inputs).map_err(ServeError::Input)?;
        let started = Instant::now();
        if let Some(m) = &version.memory {
            m.sync(&self.store).await?;
        }
        let (outputs, mut trace) = program.run_traced(inputs.clone()).await;
        let id = RunId::generate();
        trace.run_id = id.to_string();
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The least sure constrained choice of the run: the review queue serves small margins first.
        let label_margin = trace.steps.iter().filter_map(|s| s.label_margin()).filter(|m| m.is_finite()).map(f64::from).reduce(f64::min);
        let run = NewRun {
            id: Some(id),
            artifact_hash: version.artifact_hash.clone(),
            user_id: who.user_id,
            outputs: outputs.as_ref().ok().map(|o| Value::Object(o.clone())),
            // A trace holds nothing the store cannot take; `Null` would only lose it.
            trace: serde_json::to_value(&trace).unwrap_or(Value::Null),
            error: outputs.as_ref().err().map(|e| e.to_string()),
            latency_ms,
            consent: who.consent,
            label_margin,
            ..NewRun::new(program.dag().name(), Value::Object(inputs))
        };
        let write = Instant::now();
        let recorded = self.store.record_run(run).await?;
        let store_time = write.elapsed();
        let run_id = match recorded {
            RecordedRun::Stored(id) => Some(id),
            RecordedRun::Counted => None,
        };
        Ok(ServedRun { run_id, outputs, trace, store_time, artifact: version.artifact_hash.clone() })
    }

    /// Checks `input` against the feedback the program takes and stores it, returning after
    /// the commit. A repeated client id stores nothing and returns the first write's id.
    pub async fn feedback(&self, input: FeedbackInput) -> Result<FeedbackWrite, ServeError> {
        let feedback: NewFeedback = check_feedback(self.version().program.dag(), input)?;
        Ok(self.store.add_feedback(feedback).await?)
    }
}

/// Records `loaded`'s artifact as a version of its program (once per hash).
async fn record_version(store: &Store, loaded: &Loaded) -> Result<(), ServeError> {
    if let Some((hash, body)) = &loaded.artifact {
        let version = ArtifactVersion {
            hash: hash.clone(),
            parent: None,
            program: loaded.program.dag().name().to_string(),
            created: Timestamp::now(),
            body: Some(body.clone()),
            meta: VersionRecord::served().to_meta(),
        };
        store.record_artifact(&version).await?;
    }
    Ok(())
}
