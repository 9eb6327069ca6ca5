//! One round of learning — the same code for `loopc learn`, `serve --learn-every` and
//! `bench loop`: export the stored feedback as data, compile warm-started from the current
//! artifact, score current and candidate on the frozen holdout, promote only when the
//! candidate is not worse, and record the version, its lineage and the decision in the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::export::{from_runs, read_runs, Export, ExportOptions, Row, RowKind};
use super::gate::{decide, Decision};
use super::human::{calibrate, Calibration, StoredRatings, MIN_CALIBRATION_ITEMS};
use super::LearnError;
use crate::compile::{self, Budget, Dataset, Event, Example, Job, Metric, Plan, Rater};
use crate::graph::{Dag, MetricKind, OptimizerKind, OptimizerSettings, Source};
use crate::runtime::artifact::{Artifact, DemoSource, LearnedFrom};
use crate::runtime::executor::StepParams;
use crate::runtime::{Engine, Program, ProgramOptions};
use crate::store::{ArtifactVersion, AuditKind, Store, Timestamp};

/// The program being learned: its source, and the artifact currently serving it, if any.
#[derive(Clone)]
pub struct Current {
    /// What to call it in messages.
    pub name: String,
    /// The `.loop` file it was written as (for provenance).
    pub source_file: String,
    /// The source text.
    pub source: String,
    /// The artifact now in use, if the program has been compiled.
    pub artifact: Option<Artifact>,
}

impl Current {
    /// The content hash of the current artifact, if any.
    pub fn artifact_hash(&self) -> Option<String> {
        self.artifact.as_ref().map(artifact_hash)
    }
}

/// The content hash that names an artifact version in the store.
pub fn artifact_hash(a: &Artifact) -> String {
    crate::fs::sha256_hex(a.to_json().as_bytes())
}

/// Everything a round reads.
pub struct Round<'a> {
    /// The engine that runs the programs.
    pub engine: &'a Engine,
    /// The store with the runs and feedback.
    pub store: &'a Store,
    /// The program now.
    pub current: Current,
    /// A human-labelled holdout file, already read (optional when the store reserves one).
    pub holdout: Option<Dataset>,
    /// How to turn feedback into data.
    pub export: ExportOptions,
    /// The optimizer (default: the program's, else `bootstrap_random_search`).
    pub optimizer: Option<OptimizerKind>,
    /// Settings over the program's own (seed, candidates, budgets...).
    pub settings: OptimizerSettings,
    /// The metric (default: the optimizer's, else the first declared).
    pub metric: Option<String>,
    /// How much worse than the current program the candidate may be, at the interval's
    /// lower end, and still be promoted.
    pub margin: f64,
    /// Runs at once.
    pub concurrency: usize,
    /// The most rows a round compiles on (a seeded sample of everything stored, human labels
    /// first): the store keeps accumulating; each round's cost stays bounded.
    pub max_rows: usize,
    /// Record a candidate the gate passes as a `canary`, not `promoted`: live traffic decides
    /// (see [`super::conclude_canary`]).
    pub canary: bool,
    /// The agreement with stored human ratings an LM-judge metric needs before a round uses it
    /// (see [`super::human::calibrate`]); other metrics ignore it.
    pub judge_min_agreement: f64,
    /// How to load the programs (the model override, run limits), as the service or CLI
    /// loads them; step parameters here are ignored, the round chooses its own.
    pub options: ProgramOptions,
    /// Where progress goes.
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
}

/// What a round did.
pub struct Outcome {
    /// The candidate compiled this round.
    pub candidate: Artifact,
    /// Its content hash.
    pub hash: String,
    /// What the gate decided.
    pub decision: Decision,
    /// The data it learned from.
    pub export: Export,
    /// How well the LM judge agreed with people, when the metric is one.
    pub judge: Option<Calibration>,
}

/// The fewest human-labelled rows a round learns from (some go to dev, the rest to train).
pub const MIN_GOLD_ROWS: usize = 4;

fn program_of(engine: &Engine, current: &Current, artifact: Option<&Artifact>, options: &ProgramOptions) -> Result<Program, LearnError> {
    let options = ProgramOptions { params: HashMap::new(), ..options.clone() };
    Ok(match artifact {
        Some(a) => engine.load_artifact(&current.name, a, options)?,
        None => engine.load_source(&current.name, &current.source, options)?,
    })
}

/// Rows as a dataset named `source`.
fn dataset(source: &str, rows: &[&Row]) -> Dataset {
    let examples: Vec<Example> = rows.iter().map(|r| r.example()).collect();
    let body: String = rows.iter().map(|r| format!("{}\n", serde_json::to_string(r).unwrap_or_default())).collect();
    Dataset { source: source.to_string(), sha256: crate::fs::sha256_hex(body.as_bytes()), examples }
}

/// Scores `program` on `examples`, example by example (failed runs score 0).
async fn holdout_scores(program: &Program, examples: &[Example], metric: &Metric, concurrency: usize) -> Result<Vec<f64>, LearnError> {
    let budget = Budget::new(None, None, None);
    Ok(compile::evaluate(program, examples, metric, concurrency, &budget, &|| {}).await?.scores)
}

/// Runs one round and records it in the store.
pub async fn learn(round: Round<'_>) -> Result<Outcome, LearnError> {
    let current_program = program_of(round.engine, &round.current, round.current.artifact.as_ref(), &round.options)?;
    let dag = current_program.dag().clone();
    let runs = read_runs(round.store, dag.name(), round.export.since).await?;
    let data = from_runs(&runs, &dag, &round.export);

    // The holdout: the given file and the store's reserved share, human labels only.
    let mut holdout: Vec<Example> = round.holdout.as_ref().map(|d| d.examples.clone()).unwrap_or_default();
    holdout.extend(data.holdout.iter().map(Row::example));
    if holdout.is_empty() {
        return Err(LearnError::NoHoldout);
    }
    let gold: Vec<&Row> = data.train.iter().filter(|r| r.kind == RowKind::Gold).collect();
    let accepted: Vec<&Row> = data.train.iter().filter(|r| r.kind == RowKind::ModelLabelled).collect();
    if gold.len() < MIN_GOLD_ROWS {
        return Err(LearnError::NotEnoughData { gold: gold.len(), needed: MIN_GOLD_ROWS });
    }
    let plan = Plan::new(&dag, round.optimizer, &round.settings, round.concurrency);
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut gold_sample = gold.clone();
    gold_sample.shuffle(&mut rng);
    gold_sample.truncate(round.max_rows.max(MIN_GOLD_ROWS));
    let mut accepted_sample = accepted.clone();
    accepted_sample.shuffle(&mut rng);
    accepted_sample.truncate(round.max_rows.saturating_sub(gold_sample.len()));
    // Dev is human labels only; accepted model outputs may become demos but never choose.
    let (train_gold, dev) = compile::dataset::split(&dataset("store (gold rows)", &gold_sample), 0.3, plan.seed);
    let mut train = train_gold;
    train.examples.extend(accepted_sample.iter().map(|r| r.example()));
    train.source = format!("store: {} gold and {} accepted rows", gold.len(), accepted.len());
    train.sha256 = data.sha256.clone();

    // `human("KEY")` scores by what people said of stored answers; an LM judge is used only
    // when it agrees with people often enough.
    let spec = compile::metric::pick(&dag, round.metric.as_deref())?;
    let rater: Option<Arc<dyn Rater>> = match &spec.kind {
        MetricKind::Human { criterion } => Some(Arc::new(StoredRatings::from_runs(&runs, &dag, criterion)?)),
        _ => None,
    };
    let metric = Metric::new(spec, rater)?.judged_by(&current_program);
    let judge = if metric.needs_model() {
        (round.progress)(Event::Phase("calibrating the judge on stored human ratings", 0));
        let c = calibrate(&metric, &runs, &dag).await;
        if c.items < MIN_CALIBRATION_ITEMS || c.agreement < round.judge_min_agreement {
            return Err(LearnError::JudgeUncalibrated {
                metric: metric.name().to_string(),
                agreement: c.agreement,
                items: c.items,
                threshold: round.judge_min_agreement,
                min_items: MIN_CALIBRATION_ITEMS,
            });
        }
        Some(c)
    } else {
        None
    };
    let written = program_of(round.engine, &round.current, None, &round.options)?;
    let warm_start: Option<HashMap<String, StepParams>> = round.current.artifact.as_ref().and_then(|a| {
        let params = a.validate(&round.current.name, &dag).ok()?;
        Some(params.into_iter().map(|(id, p)| (dag.step(id).name.clone(), p)).collect())
    });
    let budget = plan.budget();
    let job = Job {
        program: written,
        source_file: round.current.source_file.clone(),
        source: round.current.source.clone(),
        train,
        dev,
        metric: metric.clone(),
        plan: plan.clone(),
        budget,
        progress: round.progress,
        warm_start,
    };
    let mut candidate = compile::compile(job).await?;
    let parent = round.current.artifact_hash();
    candidate.provenance.learned = Some(LearnedFrom {
        parent: parent.clone(),
        dataset_sha256: data.sha256.clone(),
        gold_rows: gold.len(),
        model_labelled_rows: accepted.len(),
        feedback_ids: data.feedback_ids.iter().cloned().collect(),
        demo_sources: demo_sources(&dag, &candidate, &data),
    });
    let hash = artifact_hash(&candidate);

    (round.progress)(Event::Phase("scoring the current program and the candidate on the holdout", 0));
    let candidate_program = program_of(round.engine, &round.current, Some(&candidate), &round.options)?;
    let now = holdout_scores(&current_program, &holdout, &metric, round.concurrency).await?;
    let next = holdout_scores(&candidate_program, &holdout, &metric, round.concurrency).await?;
    let decision = decide(&now, &next, round.margin, plan.seed);

    let verdict = match (decision.promote, round.canary) {
        (true, false) => "promoted",
        (true, true) => "canary",
        (false, _) => "rejected",
    };
    let meta = json!({
        "decision": verdict,
        "reason": decision.reason,
        "holdout_current": decision.current,
        "holdout_candidate": decision.candidate,
        "difference": decision.difference,
        "interval": [decision.interval.0, decision.interval.1],
        "margin": decision.margin,
        "holdout_items": decision.items,
        "dev_score": candidate.provenance.final_score,
        "dataset_sha256": data.sha256,
        "gold_rows": gold.len(),
        "model_labelled_rows": accepted.len(),
        "feedback_count": data.feedback_ids.len(),
        "feedback_ids": data.feedback_ids,
        "users_sha256": users_sha256(&data),
        "judge_agreement": judge.as_ref().map(|c| c.agreement),
        "judge_items": judge.as_ref().map(|c| c.items),
    });
    let version = ArtifactVersion {
        hash: hash.clone(),
        parent,
        program: dag.name().to_string(),
        created: Timestamp::now(),
        body: serde_json::to_value(&candidate).ok(),
        meta,
    };
    round.store.record_artifact(&version).await?;
    if verdict != "canary" {
        let kind = if decision.promote { AuditKind::Promote } else { AuditKind::Reject };
        round.store.audit(kind, &hash, &json!({"program": dag.name(), "reason": decision.reason})).await?;
    }
    Ok(Outcome { candidate, hash, decision, export: data, judge })
}

/// SHA-256 of each distinct user id behind the rows (ids themselves stay in the store).
fn users_sha256(data: &Export) -> Vec<String> {
    let mut users: Vec<String> =
        data.train.iter().chain(&data.holdout).flat_map(|r| r.provenance.users.iter()).map(|u| crate::fs::sha256_hex(u.as_bytes())).collect();
    users.sort();
    users.dedup();
    users
}

/// Where each demo of `artifact` came from: the stored row whose program inputs the demo's
/// input-bound slots carry.
fn demo_sources(dag: &Dag, artifact: &Artifact, data: &Export) -> BTreeMap<String, Vec<DemoSource>> {
    let rows: Vec<&Row> = data.train.iter().collect();
    let mut out = BTreeMap::new();
    for (step, rec) in &artifact.steps {
        let Some(id) = dag.step_id(step) else { continue };
        let bound: Vec<(&str, &str)> = dag
            .step(id)
            .bindings
            .iter()
            .filter_map(|b| match &b.source {
                Source::Input(n) => Some((b.slot.as_str(), n.as_str())),
                _ => None,
            })
            .collect();
        let sources = rec
            .demos
            .iter()
            .map(|d| {
                let matches = |inputs: &Map<String, Value>| !bound.is_empty() && bound.iter().all(|(slot, input)| d.inputs.get(*slot) == inputs.get(*input));
                match rows.iter().find(|r| matches(&r.inputs)) {
                    Some(r) => DemoSource {
                        kind: match r.kind {
                            RowKind::Gold => "gold",
                            RowKind::ModelLabelled => "model_labelled",
                            RowKind::Negative => "negative",
                        }
                        .into(),
                        run_ids: r.provenance.run_ids.clone(),
                        feedback_ids: r.provenance.feedback_ids.clone(),
                        users_sha256: r.provenance.users.iter().map(|u| crate::fs::sha256_hex(u.as_bytes())).collect(),
                    },
                    None => DemoSource { kind: "unknown".into(), ..DemoSource::default() },
                }
            })
            .collect();
        out.insert(step.clone(), sources);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::export::RowProvenance;

    #[test]
    fn each_demo_is_traced_to_the_stored_row_with_its_input() {
        let src = "program p\ninput text: text\noutput mood: label(a, b)\nsignature S { in t: text out mood: label(a, b) }\n\
                   step s = predict S { t: input.text }\nreturn { mood: s.mood }\n";
        let dag = crate::graph::check(src).dag.unwrap();
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        let row = |text: &str, kind: RowKind, run: &str| Row {
            inputs: obj(json!({"text": text})),
            outputs: obj(json!({"mood": "a"})),
            kind,
            provenance: RowProvenance {
                run_ids: vec![run.into()],
                feedback_ids: vec![format!("fb-{run}")],
                users: vec!["alice".into()],
                source: "user".into(),
            },
        };
        let data = Export { train: vec![row("one", RowKind::Gold, "r1"), row("two", RowKind::ModelLabelled, "r2")], ..Export::default() };
        let json_artifact = json!({
            "format": "loopc-artifact", "version": 1,
            "program": {"name": "p", "source_file": "p.loop", "source": src, "source_sha256": crate::fs::sha256_hex(src.as_bytes()), "graph": null},
            "steps": {"s": {"signature": "S", "template": "chat", "instruction": "x", "demos": [
                {"inputs": {"t": "two"}, "outputs": {"mood": "a"}}, {"inputs": {"t": "one"}, "outputs": {"mood": "a"}}, {"inputs": {"t": "zzz"}, "outputs": {"mood": "b"}}]}},
            "models": [], "provenance": {"loopc_version": "0", "optimizer": "o", "settings": {}, "seed": 0, "metric": "m",
                "train": {"source": "t", "sha256": "0", "examples": 0}, "dev": {"source": "d", "sha256": "0", "examples": 0},
                "baseline_score": 0.0, "final_score": 0.0, "candidates": [], "model_calls": 0, "stopped_early": null,
                "timing": {"created_unix": 0, "wall_seconds": 0.0, "cache_hits": 0, "tokens_prefilled": 0, "tokens_generated": 0}}
        });
        let artifact: Artifact = serde_json::from_value(json_artifact).unwrap();
        let sources = demo_sources(&dag, &artifact, &data);
        let kinds: Vec<&str> = sources["s"].iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["model_labelled", "gold", "unknown"]);
        assert_eq!(sources["s"][1].run_ids, ["r1"]);
        assert_eq!(sources["s"][1].feedback_ids, ["fb-r1"]);
        assert_eq!(sources["s"][1].users_sha256, [crate::fs::sha256_hex(b"alice")], "user ids are hashed");
    }
}
