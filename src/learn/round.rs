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
use super::gate::{decide, decide_out_of_reach, out_of_reach, Decision};
use super::human::{calibrate, Calibration, StoredRatings, MIN_CALIBRATION_ITEMS};
use super::record::{Verdict, VersionRecord};
use super::LearnError;
use crate::compile::{self, Budget, Dataset, Event, Example, Job, Metric, Plan, Rater};
use crate::graph::{Dag, MetricKind, OptimizerKind, OptimizerSettings, Source};
use crate::runtime::artifact::{Artifact, DemoOrigin, DemoSource, LearnedFrom};
use crate::runtime::executor::StepParams;
use crate::runtime::{Engine, Program, ProgramOptions};
use crate::store::{ArtifactVersion, AuditKind, Store, StoredRun, Timestamp};

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
    /// The content hash of the current artifact, if any ([`Artifact::content_hash`]).
    pub fn artifact_hash(&self) -> Option<String> {
        self.artifact.as_ref().map(Artifact::content_hash)
    }
}

/// A round's knobs. [`RoundSettings::DEFAULT`] is the one set of defaults `loopc learn`,
/// `serve --learn-every` and `loopc bench loop` start from; each overrides only what its
/// caller asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundSettings {
    /// How much worse than the current program the candidate may be, at the interval's
    /// lower end, and still be promoted.
    pub margin: f64,
    /// Program runs at once (compile and holdout).
    pub concurrency: usize,
    /// The most rows a round compiles on (a seeded sample of everything stored, human labels
    /// first): the store keeps accumulating; each round's cost stays bounded. Measured with
    /// `bench loop` (seed 0): at 300 the compile grew to 53 s by round 5, at 150 it stayed at
    /// 26–28 s with the same answers served.
    pub max_rows: usize,
    /// The agreement with stored human ratings an LM-judge metric needs before a round uses it
    /// (see [`super::human::calibrate`]); other metrics ignore it.
    pub judge_min_agreement: f64,
    /// The share of stored human-labelled inputs held out (by a hash of the input, so the same
    /// ones in every round) to judge candidates on, never trained on.
    pub holdout_share: f64,
    /// Users who must agree on a label before it is one.
    pub min_agreement: usize,
    /// The share of reviewed inputs (a reviewer's correction or approval) that grow the
    /// holdout with the reviewer's label, chosen by a hash of the input (the same inputs in
    /// every round, whatever ids the store gave their runs) and never trained on; the rest are
    /// learned from.
    pub review_holdout_share: f64,
    /// The most new candidates (random demo sets; minibatch trials for `instruction_search`)
    /// a round scores when it continues from an artifact, unless the caller asks for a number:
    /// the artifact is the warm start and carries what earlier rounds found, so each round
    /// adds to one search instead of repeating a whole one (a program's `candidates` is for a
    /// compile from scratch). Measured with `bench loop`: the candidates' dev runs were most
    /// of a round's compile, and its cost grew with the stored rows.
    pub continued_candidates: usize,
}

impl RoundSettings {
    /// The defaults: margin 0.02, 4 runs at once, 150 rows, judges from 0.7 agreement, a
    /// fifth of the stored labels held out, one user makes a label, one in two reviewed inputs
    /// grows the holdout, at most 2 new candidates in a round that continues from an artifact.
    pub const DEFAULT: RoundSettings = RoundSettings {
        margin: 0.02,
        concurrency: 4,
        max_rows: 150,
        judge_min_agreement: 0.7,
        holdout_share: 0.2,
        min_agreement: 1,
        review_holdout_share: 0.5,
        continued_candidates: 2,
    };
}

impl Default for RoundSettings {
    fn default() -> Self {
        RoundSettings::DEFAULT
    }
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
    /// Only feedback on runs since this time.
    pub since: Option<Timestamp>,
    /// The optimizer (default: the program's, else `bootstrap_random_search`).
    pub optimizer: Option<OptimizerKind>,
    /// Search settings over the program's own (seed, candidates, budgets...).
    pub search: OptimizerSettings,
    /// The metric (default: the optimizer's, else the first declared).
    pub metric: Option<String>,
    /// The round's knobs.
    pub settings: RoundSettings,
    /// Record a candidate the gate passes as a [`Verdict::Canary`], not promoted: live
    /// traffic decides (see [`super::judge_canary`]).
    pub canary: bool,
    /// How to load the programs (the model override, run limits), as the service or CLI
    /// loads them; step parameters here are ignored, the round chooses its own.
    pub options: ProgramOptions,
    /// Where progress goes.
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
}

impl<'a> Round<'a> {
    /// A round of `current` on `store` with the default settings, the program's own search
    /// settings, no holdout file and no progress.
    pub fn new(engine: &'a Engine, store: &'a Store, current: Current) -> Round<'a> {
        Round {
            engine,
            store,
            current,
            holdout: None,
            since: None,
            optimizer: None,
            search: OptimizerSettings::default(),
            metric: None,
            settings: RoundSettings::DEFAULT,
            canary: false,
            options: ProgramOptions::default(),
            progress: &quiet,
        }
    }

    /// The holdout file's examples: human labels that help judge users' trust wherever a
    /// round uses it (its data, its `human(..)` metric), as `serve --holdout` does for memory.
    fn reference(&self) -> Vec<Example> {
        self.holdout.as_ref().map(|d| d.examples.clone()).unwrap_or_default()
    }

    fn export_options(&self) -> ExportOptions {
        ExportOptions {
            since: self.since,
            min_agreement: self.settings.min_agreement.max(1),
            holdout_share: self.settings.holdout_share,
            review_holdout_share: self.settings.review_holdout_share,
            reference: self.reference(),
            ..ExportOptions::default()
        }
    }
}

/// Progress nobody watches.
fn quiet(_: Event<'_>) {}

/// What a round did.
#[derive(Debug)]
pub struct Outcome {
    /// The candidate compiled this round.
    pub candidate: Artifact,
    /// Its content hash.
    pub hash: String,
    /// What the gate decided.
    pub decision: Decision,
    /// How the version was recorded.
    pub verdict: Verdict,
    /// The data it learned from.
    pub export: Export,
    /// How well the LM judge agreed with people, when the metric is one.
    pub judge: Option<Calibration>,
}

/// The phase a round reports when the compile is done and the gate's holdout scoring begins.
pub const HOLDOUT_PHASE: &str = "scoring the current program and the candidate on the holdout";

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

/// Scores `program` on `examples`, example by example (failed runs score 0), stopping early
/// once `stop` holds for the scores so far (then only the first examples' are returned).
async fn holdout_scores(
    program: &Program,
    examples: &[Example],
    metric: &Metric,
    concurrency: usize,
    stop: &(dyn Fn(&[f64]) -> bool + Sync),
) -> Result<Vec<f64>, LearnError> {
    let budget = Budget::new(None, None, None);
    Ok(compile::evaluate_until(program, examples, metric, concurrency, &budget, &|| {}, stop).await?.scores)
}

/// The data of a round: the holdout, and train and dev drawn from the stored rows.
struct Data {
    export: Export,
    /// The holdout file's items, then the store's held-out items.
    holdout: Vec<Example>,
    /// How many of them the holdout file gave (the rest the store: held-out corrections and
    /// reviewed runs).
    frozen: usize,
    train: Dataset,
    dev: Dataset,
}

/// Exports the stored feedback and draws the round's data: the holdout (the given file, frozen,
/// and what the store grows it by: its reserved share of corrections and held-out reviewed
/// runs; human labels only, never trained on), dev from the gold rows alone, and train from the
/// rest of a seeded sample of at most `max_rows` rows, human labels first.
fn draw_data(round: &Round<'_>, runs: &[StoredRun], dag: &Dag, seed: u64) -> Result<Data, LearnError> {
    let export = from_runs(runs, dag, &round.export_options());
    let mut holdout: Vec<Example> = round.holdout.as_ref().map(|d| d.examples.clone()).unwrap_or_default();
    let frozen = holdout.len();
    holdout.extend(export.holdout.iter().chain(&export.grown).map(Row::example));
    if holdout.is_empty() {
        return Err(LearnError::NoHoldout);
    }
    let gold: Vec<&Row> = export.train.iter().filter(|r| r.kind == RowKind::Gold).collect();
    let accepted: Vec<&Row> = export.train.iter().filter(|r| r.kind == RowKind::ModelLabelled).collect();
    if gold.len() < MIN_GOLD_ROWS {
        return Err(LearnError::NotEnoughData { gold: gold.len(), needed: MIN_GOLD_ROWS });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gold_sample = gold.clone();
    gold_sample.shuffle(&mut rng);
    gold_sample.truncate(round.settings.max_rows.max(MIN_GOLD_ROWS));
    let mut accepted_sample = accepted.clone();
    accepted_sample.shuffle(&mut rng);
    accepted_sample.truncate(round.settings.max_rows.saturating_sub(gold_sample.len()));
    // Dev is human labels only; accepted model outputs may become demos but never choose.
    let (mut train, dev) = compile::dataset::split(&dataset("store (gold rows)", &gold_sample), 0.3, seed);
    train.examples.extend(accepted_sample.iter().map(|r| r.example()));
    train.source = format!("store: {} gold and {} accepted rows", gold.len(), accepted.len());
    train.sha256 = export.sha256.clone();
    Ok(Data { export, holdout, frozen, train, dev })
}

/// The round's metric: `human("KEY")` scores by what people said of stored answers; an LM
/// judge is used only when it agrees with people often enough.
async fn metric_of(round: &Round<'_>, runs: &[StoredRun], dag: &Dag, judge_program: &Program) -> Result<(Metric, Option<Calibration>), LearnError> {
    let spec = compile::metric::pick(dag, round.metric.as_deref())?;
    let rater: Option<Arc<dyn Rater>> = match &spec.kind {
        MetricKind::Human { criterion } => Some(Arc::new(StoredRatings::from_runs(runs, dag, criterion, &round.reference())?)),
        _ => None,
    };
    let metric = Metric::new(spec, rater)?.judged_by(judge_program);
    if !metric.needs_model() {
        return Ok((metric, None));
    }
    (round.progress)(Event::Phase("calibrating the judge on stored human ratings", 0));
    let c = calibrate(&metric, runs, dag).await;
    let threshold = round.settings.judge_min_agreement;
    if c.items < MIN_CALIBRATION_ITEMS || c.agreement < threshold {
        return Err(LearnError::JudgeUncalibrated {
            metric: metric.name().to_string(),
            agreement: c.agreement,
            items: c.items,
            threshold,
            min_items: MIN_CALIBRATION_ITEMS,
        });
    }
    Ok((metric, Some(c)))
}

/// The round's compile plan: the caller's search settings over the program's, with at most
/// [`RoundSettings::continued_candidates`] new candidates when the round continues from an
/// artifact (`warm`) and the caller did not ask for a number.
fn round_plan(dag: &Dag, optimizer: Option<OptimizerKind>, search: &OptimizerSettings, settings: &RoundSettings, warm: bool) -> Plan {
    let mut plan = Plan::new(dag, optimizer, search, settings.concurrency);
    if warm && search.candidates.is_none() {
        plan.candidates = plan.candidates.min(settings.continued_candidates);
    }
    plan
}

/// Runs one round and records it in the store.
pub async fn learn(round: Round<'_>) -> Result<Outcome, LearnError> {
    let current_program = program_of(round.engine, &round.current, round.current.artifact.as_ref(), &round.options)?;
    let dag = current_program.dag().clone();
    let runs = read_runs(round.store, dag.name(), round.since).await?;
    let warm_start: Option<HashMap<String, StepParams>> = round.current.artifact.as_ref().and_then(|a| {
        let params = a.validate(&round.current.name, &dag).ok()?;
        Some(params.into_iter().map(|(id, p)| (dag.step(id).name.clone(), p)).collect())
    });
    let plan = round_plan(&dag, round.optimizer, &round.search, &round.settings, warm_start.is_some());
    let Data { export, holdout, frozen, train, dev } = draw_data(&round, &runs, &dag, plan.seed)?;
    let (metric, judge) = metric_of(&round, &runs, &dag, &current_program).await?;

    let written = program_of(round.engine, &round.current, None, &round.options)?;
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
        dataset_sha256: export.sha256.clone(),
        gold_rows: export.gold_rows(),
        model_labelled_rows: export.model_labelled_rows(),
        feedback_ids: export.feedback_ids.iter().cloned().collect(),
        demo_sources: demo_sources(&dag, &candidate, &export),
        left_out: export.left_out.clone(),
    });
    let hash = candidate.content_hash();

    (round.progress)(Event::Phase(HOLDOUT_PHASE, 0));
    let candidate_program = program_of(round.engine, &round.current, Some(&candidate), &round.options)?;
    let now = holdout_scores(&current_program, &holdout, &metric, round.settings.concurrency, &|_| false).await?;
    // The candidate's scoring stops once it cannot reach the current program's score: the
    // gate would reject it whatever the rest scored, and a rejected round then ends sooner.
    let next = holdout_scores(&candidate_program, &holdout, &metric, round.settings.concurrency, &|s| out_of_reach(&now, s)).await?;
    let decision = if next.len() < now.len() {
        decide_out_of_reach(&now, &next, round.settings.margin, plan.seed)
    } else {
        decide(&now, &next, round.settings.margin, plan.seed)
    }
    .with_frozen(frozen);

    let verdict = match (decision.promote, round.canary) {
        (true, false) => Verdict::Promoted,
        (true, true) => Verdict::Canary,
        (false, _) => Verdict::Rejected,
    };
    let record = VersionRecord::of_round(verdict, &decision, candidate.provenance.final_score, &export, judge.as_ref());
    let version = ArtifactVersion {
        hash: hash.clone(),
        parent,
        program: dag.name().to_string(),
        created: Timestamp::now(),
        body: serde_json::to_value(&candidate).ok(),
        meta: record.to_meta(),
    };
    round.store.record_artifact(&version).await?;
    // A canary's audit event comes when live traffic decides (`conclude_canary`).
    let event = match verdict {
        Verdict::Promoted => Some(AuditKind::Promote),
        Verdict::Rejected => Some(AuditKind::Reject),
        Verdict::Canary | Verdict::Recorded => None,
    };
    if let Some(kind) = event {
        round.store.audit(kind, &hash, &json!({"program": dag.name(), "reason": decision.reason})).await?;
    }
    Ok(Outcome { candidate, hash, decision, verdict, export, judge })
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
                            RowKind::Gold => DemoOrigin::Gold,
                            RowKind::ModelLabelled => DemoOrigin::ModelLabelled,
                            RowKind::Negative => DemoOrigin::Negative,
                        },
                        run_ids: r.provenance.run_ids.clone(),
                        feedback_ids: r.provenance.feedback_ids.clone(),
                        users_sha256: r.provenance.users.iter().map(|u| crate::fs::sha256_hex(u.as_bytes())).collect(),
                    },
                    None => DemoSource::default(),
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
    fn a_round_that_continues_from_an_artifact_scores_fewer_new_candidates_unless_asked() {
        let src = "program p\ninput text: text\noutput mood: label(a, b)\nsignature S { in t: text out mood: label(a, b) }\n\
                   step s = predict S { t: input.text }\nreturn { mood: s.mood }\n\
                   metric m = exact(output.mood, example.mood)\noptimize bootstrap_random_search { metric: m, candidates: 5 }\n";
        let dag = crate::graph::check_text(src).dag.unwrap();
        let settings = RoundSettings::DEFAULT;
        let plan = |search: &OptimizerSettings, warm| round_plan(&dag, None, search, &settings, warm).candidates;
        let unset = OptimizerSettings::default();
        assert_eq!(plan(&unset, false), 5, "a round from the program as written is a whole search");
        assert_eq!(plan(&unset, true), settings.continued_candidates, "a continued round adds a few");
        let asked = OptimizerSettings { candidates: Some(7), ..OptimizerSettings::default() };
        assert_eq!(plan(&asked, true), 7, "the caller's number holds");
    }

    #[test]
    fn each_demo_is_traced_to_the_stored_row_with_its_input() {
        let src = "program p\ninput text: text\noutput mood: label(a, b)\nsignature S { in t: text out mood: label(a, b) }\n\
                   step s = predict S { t: input.text }\nreturn { mood: s.mood }\n";
        let dag = crate::graph::check_text(src).dag.unwrap();
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
        let demos = json!([{"inputs": {"t": "two"}, "outputs": {"mood": "a"}}, {"inputs": {"t": "one"}, "outputs": {"mood": "a"}}, {"inputs": {"t": "zzz"}, "outputs": {"mood": "b"}}]);
        let json_artifact = crate::runtime::artifact::test_artifact_json(src, demos);
        let artifact: Artifact = serde_json::from_value(json_artifact).unwrap();
        let sources = demo_sources(&dag, &artifact, &data);
        let kinds: Vec<&str> = sources["s"].iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["model_labelled", "gold", "unknown"]);
        assert_eq!(sources["s"][1].run_ids, ["r1"]);
        assert_eq!(sources["s"][1].feedback_ids, ["fb-r1"]);
        assert_eq!(sources["s"][1].users_sha256, [crate::fs::sha256_hex(b"alice")], "user ids are hashed");
    }
}
