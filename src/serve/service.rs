//! [`Service`]: the library path of the loop, without HTTP. It holds one loaded program (from
//! `.loop` source or an artifact, with the artifact's hash), the store, and records every run
//! (inputs, outputs, trace, artifact, user, consent) and every piece of feedback, checked
//! against the program's declarations. `loopc serve` is this plus HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::error::ServeError;
use super::feedback::{check_feedback, FeedbackInput};
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
    /// When it came from an artifact: the SHA-256 of the artifact file's bytes, and the
    /// artifact as JSON (recorded in the store as a version).
    pub artifact: Option<(String, Value)>,
}

/// Loads `path` (a `.loop` file or an artifact, told apart by content) on `engine`. Blocking:
/// it may provision and load models; call it before serving or from `spawn_blocking`.
pub fn load(engine: &Engine, path: &Path, options: ProgramOptions) -> Result<Loaded, ServeError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ServeError::Read { path: name.clone(), source })?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match ProgramFile::parse(name.clone(), text.clone())? {
        ProgramFile::Source { name, text } => Ok(Loaded { program: engine.load_source(&name, &text, options)?, artifact: None }),
        ProgramFile::Artifact { name, artifact } => {
            let program = engine.load_artifact(&name, &artifact, options)?;
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Loaded { program, artifact: Some((crate::fs::sha256_hex(&bytes), body)) })
        }
    }
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
}

/// A program and the store its runs and feedback go to. Cheap to clone; share it across tasks.
#[derive(Clone)]
pub struct Service {
    program: Program,
    store: Store,
    artifact_hash: Option<String>,
}

impl Service {
    /// A service for `loaded` recording into `store`. When the program came from an artifact,
    /// the artifact is recorded as a version of the program (once per hash).
    pub async fn new(loaded: Loaded, store: Store) -> Result<Service, ServeError> {
        let artifact_hash = match loaded.artifact {
            Some((hash, body)) => {
                let version = ArtifactVersion {
                    hash: hash.clone(),
                    parent: None,
                    program: loaded.program.dag().name().to_string(),
                    created: Timestamp::now(),
                    body: Some(body),
                    meta: json!({"recorded_by": "serve"}),
                };
                store.record_artifact(&version).await?;
                Some(hash)
            }
            None => None,
        };
        Ok(Service { program: loaded.program, store, artifact_hash })
    }

    /// The program served.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The artifact's hash, when the program came from one.
    pub fn artifact_hash(&self) -> Option<&str> {
        self.artifact_hash.as_deref()
    }

    /// Runs the program on `inputs` and records the run, returning after the store's commit.
    /// Inputs that do not fit the program are refused before anything runs or is stored; a run
    /// that fails (model, tool, timeout) is stored with its error and returned as such.
    pub async fn run(&self, inputs: Map<String, Value>, who: RunFor) -> Result<ServedRun, ServeError> {
        self.program.executor().check_inputs(&inputs).map_err(ServeError::Input)?;
        let started = Instant::now();
        let (outputs, mut trace) = self.program.run_traced(inputs.clone()).await;
        let id = RunId::generate();
        trace.run_id = id.to_string();
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let run = NewRun {
            id: Some(id),
            artifact_hash: self.artifact_hash.clone(),
            user_id: who.user_id,
            outputs: outputs.as_ref().ok().map(|o| Value::Object(o.clone())),
            // A trace holds nothing the store cannot take; `Null` would only lose it.
            trace: serde_json::to_value(&trace).unwrap_or(Value::Null),
            error: outputs.as_ref().err().map(|e| e.to_string()),
            latency_ms,
            consent: who.consent,
            ..NewRun::new(self.program.dag().name(), Value::Object(inputs))
        };
        let write = Instant::now();
        let recorded = self.store.record_run(run).await?;
        let store_time = write.elapsed();
        let run_id = match recorded {
            RecordedRun::Stored(id) => Some(id),
            RecordedRun::Counted => None,
        };
        Ok(ServedRun { run_id, outputs, trace, store_time })
    }

    /// Checks `input` against the feedback the program takes and stores it, returning after
    /// the commit. A repeated client id stores nothing and returns the first write's id.
    pub async fn feedback(&self, input: FeedbackInput) -> Result<FeedbackWrite, ServeError> {
        let feedback: NewFeedback = check_feedback(self.program.dag(), input)?;
        Ok(self.store.add_feedback(feedback).await?)
    }
}
