//! The program artifact: a compiled program as one self-contained JSON file — the source,
//! each step's chosen instruction, template and demos, the model identity, and provenance.
//!
//! The compiler writes it; [`super::Engine::load_artifact`] runs it with no `.loop` file present.
//! Everything outside `provenance.timing` is a function of (source, data, settings, seed,
//! model), so the same compile gives the same bytes there.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::adapter::{Demo, Template};
use super::executor::StepParams;
use super::retrieve::{RetrievalSpec, Retriever};
use super::scoring::LabelScoring;
use crate::graph::{Dag, Field, Provider, StepId, Type};

/// The `format` field of every artifact.
pub const FORMAT: &str = "loopc-artifact";
/// The largest artifact loopc reads (real ones are kilobytes to a few megabytes).
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;

/// The artifact layout version this loopc writes and reads.
pub const VERSION: u32 = 1;

/// A compiled program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version, [`VERSION`].
    pub version: u32,
    /// The program itself.
    pub program: ProgramRecord,
    /// What the compiler chose for each model step, by step name.
    pub steps: BTreeMap<String, StepRecord>,
    /// Each declared model as it was when compiled.
    pub models: Vec<ModelRecord>,
    /// How the artifact came to be.
    pub provenance: Provenance,
}

/// The program source and its graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramRecord {
    /// The program's name.
    pub name: String,
    /// The `.loop` file it was compiled from (for people; never read back).
    pub source_file: String,
    /// The full source text, so the artifact loads on its own.
    pub source: String,
    /// SHA-256 of `source`.
    pub source_sha256: String,
    /// The step graph (as `loopc graph --format json` prints it), for reading and tools.
    pub graph: Value,
}

/// One step's compiled parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The signature it runs.
    pub signature: String,
    /// The prompt template: `chat`, `json` or `completion`.
    pub template: Template,
    /// The instruction sent (the signature's own, or a better one found by search).
    pub instruction: String,
    /// The demonstrations, in prompt order (empty when demos are retrieved per input).
    pub demos: Vec<Demo>,
    /// Demos retrieved per input (the pool and the retriever's numbers), if the step does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalSpec>,
    /// How a constrained choice's label scores become the answer, with its numbers
    /// (artifacts from before scoring modes have none: `sum`).
    #[serde(default)]
    pub scoring: LabelScoring,
}

/// A model as compiled against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The name steps use (`default` for the program default).
    pub name: String,
    /// `onnx` or `openai`.
    pub provider: String,
    /// The model name, directory or endpoint.
    pub model: String,
    /// SHA-256 of the weights, for local models.
    pub weights_sha256: Option<String>,
    /// Decoding parameters.
    pub decoding: Value,
}

/// A dataset as used by the compile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Where it was read from (for a split, the file and which part).
    pub source: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// How many examples were used.
    pub examples: usize,
}

/// One candidate program the optimizer evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// Its number, in the order tried.
    pub trial: usize,
    /// What it was, e.g. `template=completion demos=4 (bootstrapped)`.
    pub description: String,
    /// Its mean metric score.
    pub score: f64,
    /// How many examples it was scored on (a minibatch or the whole dev set).
    pub evaluated_on: usize,
    /// Model calls spent on it.
    pub model_calls: u64,
}

/// The final choice of a classification program: every (candidate, scoring mode) compared on
/// one evaluation set, with intervals, and what was shipped and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionRecord {
    /// What the entrants were scored on, e.g. `train + dev (160 examples; ...), 5-fold
    /// cross-validation for fitted modes`.
    pub evaluated_on: String,
    /// Every entrant; the last is the best constant answer.
    pub entrants: Vec<EntrantRecord>,
    /// The index of the entrant shipped.
    pub chosen: usize,
    /// What was shipped, in words.
    pub shipped: String,
    /// Why it was chosen.
    pub reason: String,
}

/// One entrant of the final choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntrantRecord {
    /// The candidate and its scoring mode.
    pub description: String,
    /// The scoring mode's name (`constant` for the constant answer).
    pub scoring: String,
    /// The mean metric score (cross-validated for fitted modes).
    pub mean: f64,
    /// The 95% bootstrap interval of the mean: low end.
    pub low: f64,
    /// The high end.
    pub high: f64,
    /// Examples it was scored on.
    pub examples: usize,
}

/// How the artifact came to be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The loopc version that compiled it.
    pub loopc_version: String,
    /// The optimizer's name.
    pub optimizer: String,
    /// Its effective settings.
    pub settings: BTreeMap<String, Value>,
    /// The search seed.
    pub seed: u64,
    /// The metric maximised.
    pub metric: String,
    /// The training set.
    pub train: DatasetRecord,
    /// The dev set scores are measured on.
    pub dev: DatasetRecord,
    /// The dev score of the program as written (zero-shot, its own instructions).
    pub baseline_score: f64,
    /// The dev score of the compiled program.
    pub final_score: f64,
    /// Every candidate tried, in order.
    pub candidates: Vec<CandidateRecord>,
    /// Instructions the model proposed, by step (`instruction_search` only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proposed_instructions: BTreeMap<String, Vec<String>>,
    /// Model calls in the whole compile (answers from the response cache included).
    pub model_calls: u64,
    /// Why the search stopped early, if it did (a budget ran out).
    pub stopped_early: Option<String>,
    /// The final choice among label scoring modes and the best candidates, for programs that
    /// answer with one label (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<SelectionRecord>,
    /// Which stored feedback the artifact was learned from (set by `loopc learn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedFrom>,
    /// What differs between two identical compiles: when and how fast.
    pub timing: Timing,
}

/// Which stored feedback made an artifact: the data snapshot, every feedback id used, and
/// where each demo came from (so `loopc why` can answer, and `loopc forget` can find the
/// artifacts a user's data shaped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnedFrom {
    /// The artifact it was learned from (its content hash), if any.
    pub parent: Option<String>,
    /// SHA-256 of the exported rows.
    pub dataset_sha256: String,
    /// Rows with human labels it trained on.
    pub gold_rows: usize,
    /// Rows of accepted model outputs it trained on.
    pub model_labelled_rows: usize,
    /// Every feedback id behind the rows.
    pub feedback_ids: Vec<String>,
    /// For each step, where each of its demos came from, in demo order.
    pub demo_sources: BTreeMap<String, Vec<DemoSource>>,
    /// Users whose feedback the round left out for low trust, and why (absent in artifacts
    /// learned before trust was estimated, and when nobody was left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// A user whose feedback a use of the store (a learning round's data, memory, the `human(..)`
/// metric) left out for low trust, as decisions and artifacts record it. Learning estimates it
/// (`learn::trust`); the artifact only carries it, so `loopc why` can say whose feedback a
/// version did not learn from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeftOut {
    /// SHA-256 of the user's id (what `forget` looks for; the dashboard shows ids and trust).
    pub user_sha256: String,
    /// Their estimated trust.
    pub trust: f64,
    /// Why, in a sentence: the trust and what it rests on.
    pub reason: String,
    /// Pieces of their feedback left out.
    pub feedback: usize,
}

/// What kind of stored row a demo came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoOrigin {
    /// A human-labelled row (a correction or an edit).
    Gold,
    /// A model output people accepted.
    ModelLabelled,
    /// A rejected output (never chosen as a demo by loopc; kept for completeness).
    Negative,
    /// No stored row matches the demo.
    #[default]
    Unknown,
}

impl DemoOrigin {
    /// The origin as written in the artifact: `gold`, `model_labelled`, `negative`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DemoOrigin::Gold => "gold",
            DemoOrigin::ModelLabelled => "model_labelled",
            DemoOrigin::Negative => "negative",
            DemoOrigin::Unknown => "unknown",
        }
    }
}

/// Where one demo came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DemoSource {
    /// What kind of row it came from.
    pub kind: DemoOrigin,
    /// The runs on the demo's input.
    pub run_ids: Vec<String>,
    /// The feedback that labelled it.
    pub feedback_ids: Vec<String>,
    /// SHA-256 of each user id that gave it (ids themselves stay in the store).
    pub users_sha256: Vec<String>,
}

/// The parts of provenance that depend on when and where the compile ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Seconds since the Unix epoch when the artifact was written.
    pub created_unix: u64,
    /// Wall time of the compile.
    pub wall_seconds: f64,
    /// Model calls answered by the response cache.
    pub cache_hits: u64,
    /// Prompt tokens the model computed for the compile (not from its prefix cache, not
    /// answered by the response cache), as the compile's own calls report them.
    pub tokens_prefilled: u64,
    /// Tokens the model generated for the compile.
    pub tokens_generated: u64,
}

/// Whether `s` is a lowercase SHA-256 hex digest.
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks that `values` has exactly `fields`, each of its declared type; the error is the
/// path suffix (`.name`) and what is wrong.
fn check_values(fields: &[Field], values: &serde_json::Map<String, Value>) -> Result<(), (String, String)> {
    for f in fields {
        let v = values.get(&f.name).ok_or_else(|| (format!(".{}", f.name), "missing".to_string()))?;
        super::value::check_type(&f.ty, v).map_err(|why| (format!(".{}", f.name), why))?;
    }
    if let Some(extra) = values.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        return Err((format!(".{extra}"), format!("not a field here (the fields: {})", names.join(", "))));
    }
    Ok(())
}

/// Why an artifact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Occurs when the file cannot be read or written.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Occurs when the file is not an artifact this loopc understands.
    #[error("`{path}` is not a loopc artifact: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Artifact {
    /// Reads and validates the artifact at `path`.
    pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let io = |source: std::io::Error| ArtifactError::Io { action: "read", path: shown.clone(), source };
        let invalid = |reason: String| ArtifactError::Invalid { path: shown.clone(), reason };
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(invalid("it is not a regular file".into()));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path).map_err(io)?.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(invalid(format!("it is larger than {} MiB, more than an artifact may be", MAX_ARTIFACT_BYTES >> 20)));
        }
        let text = String::from_utf8(bytes).map_err(|e| invalid(format!("it is not UTF-8 text (byte {} is not a character)", e.utf8_error().valid_up_to())))?;
        Artifact::parse(&shown, &text)
    }

    /// Parses and validates artifact JSON (`name` is used in messages).
    pub fn parse(name: &str, text: &str) -> Result<Artifact, ArtifactError> {
        let invalid = |reason: String| ArtifactError::Invalid { path: name.to_string(), reason };
        // Strictly: a key written twice (say by a hand edit) is an error, not the last one wins.
        let v: Value = crate::json::strict(text).map_err(|e| invalid(format!("not JSON ({e})")))?;
        if v["format"] != FORMAT {
            return Err(invalid(format!("its `format` is not \"{FORMAT}\"")));
        }
        match v["version"].as_u64() {
            Some(n) if n == u64::from(VERSION) => {}
            Some(n) => return Err(invalid(format!("it is version {n}; this loopc reads version {VERSION}"))),
            None => return Err(invalid("it has no `version`".into())),
        }
        // Read from the text again, not the value: serde then says at which line and column.
        drop(v);
        let a: Artifact = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if crate::fs::sha256_hex(a.program.source.as_bytes()) != a.program.source_sha256 {
            return Err(invalid("the embedded source does not match its hash (the file was edited)".into()));
        }
        Ok(a)
    }

    /// Checks the artifact against `dag`, its own embedded program, and returns each step's
    /// compiled parameters. Every problem is an error naming where it is, e.g.
    /// `steps.classify.demos[2].outputs.sentiment: `joyful` is not one of the labels …`.
    pub fn validate(&self, name: &str, dag: &Dag) -> Result<HashMap<StepId, StepParams>, ArtifactError> {
        let at = |path: String, reason: String| ArtifactError::Invalid { path: name.to_string(), reason: format!("at `{path}`: {reason}") };
        if !is_sha256(&self.program.source_sha256) {
            return Err(at("program.source_sha256".into(), "not a SHA-256 hex digest".into()));
        }
        if self.program.name != dag.name() {
            return Err(at("program.name".into(), format!("`{}` differs from the embedded program's name `{}`", self.program.name, dag.name())));
        }
        if self.models.len() != dag.models().len() {
            return Err(at("models".into(), format!("{} model record(s) for the program's {} model(s)", self.models.len(), dag.models().len())));
        }
        for (i, (record, spec)) in self.models.iter().zip(dag.models()).enumerate() {
            let path = |f: &str| format!("models[{i}].{f}");
            if record.name != spec.name {
                return Err(at(path("name"), format!("`{}` where the program declares `{}`", record.name, spec.name)));
            }
            let provider = match spec.provider {
                Provider::Onnx { .. } => "onnx",
                Provider::OpenAi { .. } => "openai",
            };
            if record.provider != provider {
                return Err(at(path("provider"), format!("`{}` where the program's model is `{provider}`", record.provider)));
            }
            match (&record.weights_sha256, provider) {
                (Some(h), _) if !is_sha256(h) => return Err(at(path("weights_sha256"), format!("`{h}` is not a SHA-256 hex digest"))),
                (None, "onnx") => return Err(at(path("weights_sha256"), "a local model's weights hash is missing (null)".into())),
                _ => {}
            }
        }
        for (field, score) in [("baseline_score", self.provenance.baseline_score), ("final_score", self.provenance.final_score)] {
            if !score.is_finite() {
                return Err(at(format!("provenance.{field}"), format!("{score} is not a number")));
            }
        }
        let mut out = HashMap::new();
        for (step, rec) in &self.steps {
            let path = |f: &str| format!("steps.{step}.{f}");
            let id = dag.step_id(step).ok_or_else(|| at(format!("steps.{step}"), format!("the program has no step `{step}`")))?;
            let sig = dag
                .step_signature(id)
                .ok_or_else(|| at(format!("steps.{step}"), format!("`{step}` calls a tool; only model steps have compiled parameters")))?;
            if rec.signature != sig.name {
                return Err(at(path("signature"), format!("`{}` where step `{step}` runs `{}`", rec.signature, sig.name)));
            }
            let template = rec.template;
            if rec.instruction.trim().is_empty() {
                return Err(at(path("instruction"), "the instruction is empty".into()));
            }
            for (d, demo) in rec.demos.iter().enumerate() {
                check_values(&sig.inputs, &demo.inputs).map_err(|(f, why)| at(format!("steps.{step}.demos[{d}].inputs{f}"), why))?;
                check_values(&dag.step(id).outputs, &demo.outputs).map_err(|(f, why)| at(format!("steps.{step}.demos[{d}].outputs{f}"), why))?;
            }
            let outputs = &dag.step(id).outputs;
            let label_field = match outputs.as_slice() {
                [f] if matches!(f.ty, Type::Label(_)) => Some(f.name.clone()),
                _ => None,
            };
            let retrieval = match &rec.retrieval {
                None => None,
                Some(spec) => {
                    spec.check().map_err(|(f, why)| at(format!("steps.{step}.retrieval.{f}"), why))?;
                    if !rec.demos.is_empty() {
                        return Err(at(path("demos"), "a step that retrieves its demos has no fixed demos".into()));
                    }
                    for (d, demo) in spec.pool.iter().enumerate() {
                        check_values(&sig.inputs, &demo.inputs).map_err(|(f, why)| at(format!("steps.{step}.retrieval.pool[{d}].inputs{f}"), why))?;
                        check_values(outputs, &demo.outputs).map_err(|(f, why)| at(format!("steps.{step}.retrieval.pool[{d}].outputs{f}"), why))?;
                    }
                    Some(std::sync::Arc::new(Retriever::new(spec.clone(), label_field)))
                }
            };
            if !rec.scoring.is_sum() {
                let labels = match outputs.as_slice() {
                    [f] => match &f.ty {
                        Type::Label(labels) => labels.clone(),
                        Type::Bool => vec!["true".to_string(), "false".to_string()],
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                if labels.is_empty() {
                    return Err(at(path("scoring"), format!("`{}` applies to a step whose one output is a label or bool", rec.scoring.name())));
                }
                rec.scoring.check(&labels).map_err(|why| at(path("scoring"), why))?;
            }
            out.insert(
                id,
                StepParams { template, instruction: Some(rec.instruction.clone()), demos: rec.demos.clone(), retrieval, scoring: rec.scoring.clone() },
            );
        }
        Ok(out)
    }

    /// The artifact as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The content hash that names the artifact (a version in the store, the `artifact` of a
    /// run): the SHA-256 of its canonical JSON, [`Artifact::to_json`], which is also the file
    /// [`Artifact::write`] writes. The one definition: an artifact read from a file reformatted
    /// by hand has the same hash as the file loopc wrote.
    pub fn content_hash(&self) -> String {
        crate::fs::sha256_hex(self.to_json().as_bytes())
    }

    /// Writes the artifact atomically: readers see the old file or the whole new one.
    pub fn write(&self, path: &Path) -> Result<(), ArtifactError> {
        crate::fs::atomic_write(path, self.to_json().as_bytes()).map_err(|source| ArtifactError::Io {
            action: "write",
            path: path.display().to_string(),
            source,
        })
    }
}

/// The JSON of a small artifact of the one-step program `src` (step `s`, signature `S`) with
/// `demos` as the step's demos, for tests that need an artifact without a compile.
#[cfg(test)]
pub(crate) fn test_artifact_json(src: &str, demos: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "format": "loopc-artifact", "version": 1,
        "program": {"name": "p", "source_file": "p.loop", "source": src, "source_sha256": crate::fs::sha256_hex(src.as_bytes()), "graph": null},
        "steps": {"s": {"signature": "S", "template": "chat", "instruction": "x", "demos": demos}},
        "models": [], "provenance": {"loopc_version": "0", "optimizer": "o", "settings": {}, "seed": 0, "metric": "m",
            "train": {"source": "t", "sha256": "0", "examples": 0}, "dev": {"source": "d", "sha256": "0", "examples": 0},
            "baseline_score": 0.0, "final_score": 0.0, "candidates": [], "model_calls": 0, "stopped_early": null,
            "timing": {"created_unix": 0, "wall_seconds": 0.0, "cache_hits": 0, "tokens_prefilled": 0, "tokens_generated": 0}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_read_back_has_the_hash_of_the_file_it_was_read_from() {
        // 12.982978658570765 is one of the floats (about one in eleven) that serde_json's
        // default parser reads one bit off; a store would then name the served artifact by
        // another hash than the one it was recorded under.
        let src = "program p\ninput t: text\noutput m: label(a, b)\nsignature S { in t: text out m: label(a, b) }\nstep s = predict S { t: input.t }\nreturn { m: s.m }\n";
        let mut json = test_artifact_json(src, serde_json::json!([]));
        json["provenance"]["timing"]["wall_seconds"] = serde_json::json!(12.982_978_658_570_765);
        let artifact: Artifact = serde_json::from_value(json).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        artifact.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let read = Artifact::read(&path).unwrap();
        assert_eq!(read.content_hash(), crate::fs::sha256_hex(&bytes), "the hash of the file's bytes");
        assert_eq!(read.content_hash(), artifact.content_hash(), "the hash it was written with");
    }
}
