//! The optimizers. Each produces candidate step parameters (template, instruction, demos per
//! model step); candidates are scored on the dev set and the best is kept. All randomness
//! comes from one ChaCha generator seeded by the `seed` setting, and evaluation keeps example
//! order, so the same seed, model and data give the same artifact.

mod calibrate;
mod choose;
mod demos;
mod propose;
mod record;
mod select;
mod tpe;

use std::collections::{BTreeMap, HashMap};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use self::demos::{labeled_demo, trace_demos, Pools};
use super::dataset::{Dataset, Example};
use super::evaluate::{evaluate, Budget, Evaluation};
use super::metric::{Metric, MetricError};
use crate::graph::{Dag, ModelId, OptimizerKind, OptimizerSettings, StepId, StepKind};
use crate::runtime::adapter::{Demo, Template};
use crate::runtime::artifact::*;
use crate::runtime::backend::BackendError;
use crate::runtime::executor::StepParams;
use crate::runtime::retrieve::{RetrievalSpec, Retriever, Similarity};
use crate::runtime::scoring::{LabelPruning, LabelScoring};
use crate::Program;

/// A trace passes (and may become a demo) when its score is at least this.
pub const PASS: f64 = 0.5;

/// Why a compile failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Occurs when the metric cannot score.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// Occurs when a model call outside a program run (an instruction proposal) fails.
    #[error("proposing instructions: {0}")]
    Model(#[from] BackendError),
    /// Occurs when the settings leave nothing to do.
    #[error("{0}")]
    Settings(String),
    /// Occurs when the budget runs out before the baseline is measured.
    #[error("{0} before the program as written could be scored on the dev set; raise the budget")]
    Budget(String),
    /// Occurs when a step the compile works on is not in the program (a bug: the steps come
    /// from the program itself).
    #[error("the program has no step `{0}`")]
    UnknownStep(String),
}

/// The id of the step named `name`.
fn step_id(dag: &Dag, name: &str) -> Result<StepId, CompileError> {
    dag.step_id(name).ok_or_else(|| CompileError::UnknownStep(name.to_string()))
}

/// The optimizer and its settings, with defaults filled in.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Which optimizer.
    pub optimizer: OptimizerKind,
    /// The most demos per step.
    pub max_demos: usize,
    /// The most labelled demos per step.
    pub max_labeled_demos: usize,
    /// How many candidates (search optimizers; for `instruction_search`, minibatch trials).
    pub candidates: usize,
    /// Instructions proposed per step (`instruction_search`).
    pub instructions: usize,
    /// Dev examples per minibatch trial (`instruction_search`).
    pub minibatch: usize,
    /// The templates to search over.
    pub templates: Vec<Template>,
    /// The model that runs the bootstrap (default: each step's own).
    pub teacher: Option<ModelId>,
    /// The seed.
    pub seed: u64,
    /// Runs at once.
    pub concurrency: usize,
    /// Budget: the most model calls.
    pub max_calls: Option<u64>,
    /// Budget: the most tokens.
    pub max_tokens: Option<u64>,
    /// Budget: the longest wall time.
    pub max_time: Option<std::time::Duration>,
    /// Whether a classification program's search also tries demos retrieved per input. Off
    /// unless asked for: a retrieved prompt shares no prefix with another, so scoring it costs
    /// about four times a fixed-demo candidate (on tweet emotion, 16–19 s of a 55–70 s learning
    /// round), and on the four public tasks it never won the final choice.
    pub retrieval: bool,
    /// Whether a classification program's search candidates score labels only as far as
    /// their decisions under the sum, the per-token mean and the calibrated sum need (exact
    /// pruning, see [`crate::runtime::scoring::LabelPruning`]); the program as written, the
    /// finalists and the content-free inputs are always scored in full. On by default: the
    /// artifact is the same either way, only the model's work differs.
    pub prune_labels: bool,
}

/// Mixed into the seed of the final choice's random stream ("choice" in ASCII).
const FINAL_CHOICE_STREAM: u64 = 0x6368_6f69_6365;

/// Demos per step unless set.
const DEFAULT_MAX_DEMOS: u32 = 4;

impl Plan {
    /// The plan for `dag`: each setting from `overrides` (e.g. command-line flags), else from
    /// the program's `optimize` declaration, else loopc's default. The optimizer is
    /// `optimizer`, else the declared one, else `bootstrap_random_search`.
    pub fn new(dag: &Dag, optimizer: Option<OptimizerKind>, overrides: &OptimizerSettings, concurrency: usize) -> Plan {
        let declared = dag.optimizer();
        let program = declared.map(|o| o.settings.clone()).unwrap_or_default();
        let optimizer = optimizer.or(declared.map(|o| o.kind)).unwrap_or(OptimizerKind::BootstrapRandomSearch);
        let templates = match overrides.templates.as_ref().or(program.templates.as_ref()) {
            Some(names) => names.iter().filter_map(|n| Template::from_name(n)).collect(),
            None if matches!(optimizer, OptimizerKind::BootstrapRandomSearch | OptimizerKind::InstructionSearch) => {
                vec![Template::Chat, Template::Completion, Template::Json]
            }
            None => vec![Template::Chat],
        };
        let max_demos = overrides.max_demos.or(program.max_demos).unwrap_or(DEFAULT_MAX_DEMOS) as usize;
        let default_candidates = if optimizer == OptimizerKind::InstructionSearch { 16 } else { 8 };
        Plan {
            optimizer,
            max_demos,
            max_labeled_demos: overrides.max_labeled_demos.or(program.max_labeled_demos).map_or(max_demos, |m| m as usize),
            candidates: overrides.candidates.or(program.candidates).unwrap_or(default_candidates) as usize,
            instructions: overrides.instructions.or(program.instructions).unwrap_or(4) as usize,
            minibatch: overrides.minibatch.or(program.minibatch).unwrap_or(20) as usize,
            templates,
            teacher: overrides.teacher.or(program.teacher),
            seed: overrides.seed.or(program.seed).unwrap_or(0),
            concurrency: concurrency.max(1),
            max_calls: overrides.max_calls.or(program.max_calls),
            max_tokens: overrides.max_tokens.or(program.max_tokens),
            max_time: overrides.max_seconds.or(program.max_seconds).map(std::time::Duration::from_secs),
            retrieval: overrides.retrieval.or(program.retrieval).unwrap_or(false),
            prune_labels: true,
        }
    }

    /// A budget with the plan's limits, starting now.
    pub fn budget(&self) -> Budget {
        Budget::new(self.max_calls, self.max_tokens, self.max_time)
    }

    /// The settings as recorded in provenance.
    pub fn settings(&self, dag: &Dag) -> BTreeMap<String, Value> {
        let mut s = BTreeMap::from([
            ("max_demos".to_string(), json!(self.max_demos)),
            ("max_labeled_demos".to_string(), json!(self.max_labeled_demos)),
            ("candidates".to_string(), json!(self.candidates)),
            ("templates".to_string(), json!(self.templates.iter().map(|t| t.name()).collect::<Vec<_>>())),
        ]);
        if self.optimizer == OptimizerKind::InstructionSearch {
            s.insert("instructions".into(), json!(self.instructions));
            s.insert("minibatch".into(), json!(self.minibatch));
        }
        if let Some(t) = self.teacher {
            s.insert("teacher".into(), json!(dag.model(t).name));
        }
        if self.retrieval {
            s.insert("retrieval".into(), json!(true));
        }
        s
    }
}

/// Something worth showing while compiling.
pub enum Event<'a> {
    /// A phase begins that runs the program `runs` times.
    Phase(&'a str, usize),
    /// One run finished.
    Run,
    /// A candidate was scored: the record, the best whole-dev score so far, and the model
    /// calls the compile has spent so far.
    Candidate(&'a CandidateRecord, f64, u64),
    /// A note for the user (e.g. no trace passed the metric).
    Note(String),
}

/// Everything a compile reads.
pub struct Job<'a> {
    /// The program as written, its models ready.
    pub program: Program,
    /// The source file name, for provenance.
    pub source_file: String,
    /// The source text.
    pub source: String,
    /// Training examples (demos come from here).
    pub train: Dataset,
    /// Dev examples (candidates are scored here).
    pub dev: Dataset,
    /// The metric to maximise.
    pub metric: Metric,
    /// What to do.
    pub plan: Plan,
    /// Limits.
    pub budget: Budget,
    /// Where progress goes.
    pub progress: &'a (dyn Fn(Event<'_>) + Sync),
    /// Step parameters to try first after the program as written (e.g. the current artifact's
    /// demos and instructions, when learning warm-starts from it), by step name.
    pub warm_start: Option<HashMap<String, StepParams>>,
}

/// Step parameters by step name, as the search and the artifact know them.
type Params = HashMap<String, StepParams>;

/// `params` keyed by step id, as programs take them (every name is a model step's).
fn by_id(dag: &Dag, params: &Params) -> HashMap<StepId, StepParams> {
    params.iter().filter_map(|(name, p)| Some((dag.step_id(name)?, p.clone()))).collect()
}

/// The model steps, in schedule order.
fn model_steps(dag: &Dag) -> Vec<StepId> {
    dag.schedule().into_iter().flatten().filter(|s| dag.step(*s).kind != StepKind::Call).collect()
}

/// The search so far: every candidate scored, and the best on the whole dev set.
struct Search<'j, 'a> {
    job: &'j Job<'a>,
    steps: Vec<String>,
    candidates: Vec<CandidateRecord>,
    best: Option<(f64, Params)>,
    /// Every candidate scored on the whole dev set, with its evaluation and, for a
    /// classification program, its raw label scores for the content-free inputs (the final
    /// choice of a classification program rescores their traces).
    whole: Vec<(String, Params, Evaluation, Vec<Vec<f32>>)>,
    /// A classification program's label step (see [`choose`]), whose scores the final
    /// choice rescores.
    label: Option<choose::LabelStep>,
    /// Whether the learned bias is a scoring mode of the final choice (enough examples per
    /// label, see [`choose::learned_bias_fits`]): fitted to every label's raw score, it keeps
    /// the runs it may be fitted to from pruning labels.
    learned_bias: bool,
}

impl Search<'_, '_> {
    fn describe(&self, params: &Params, origin: &str) -> String {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                let p = params.get(s).cloned().unwrap_or_default();
                let custom = if p.instruction.is_some() { " instruction=proposed" } else { "" };
                match &p.retrieval {
                    Some(r) => {
                        let cap = r.spec().per_label.map_or(String::new(), |c| format!(", at most {c} per label"));
                        format!("{s}: template={} demos=retrieved ({} per input{cap}){custom}", p.template.name(), r.spec().k)
                    }
                    None => format!("{s}: template={} demos={}{custom}", p.template.name(), p.demos.len()),
                }
            })
            .collect();
        format!("{} ({origin})", parts.join("; "))
    }

    /// Scores `params` on `examples` (the whole dev set unless a minibatch is given). Only a
    /// candidate scored on the whole dev set, and not cut short by the budget, can win.
    async fn score(&mut self, params: Params, origin: &str, minibatch: Option<&[Example]>) -> Result<Evaluation, CompileError> {
        let job = self.job;
        let examples = minibatch.unwrap_or(&job.dev.examples);
        let description = self.describe(&params, origin);
        let (pruning, content_free) = self.pruning(&params, minibatch.is_some()).await;
        (job.progress)(Event::Phase(&format!("candidate {}: {description}", self.candidates.len()), examples.len()));
        let tick = || (job.progress)(Event::Run);
        let candidate = job.program.with_params(by_id(job.program.dag(), &params)).with_label_pruning(pruning);
        let e = evaluate(&candidate, examples, &job.metric, job.plan.concurrency, &job.budget, &tick).await?;
        if !e.cut_short {
            let record =
                CandidateRecord { trial: self.candidates.len(), description, score: e.mean(), evaluated_on: e.scores.len(), model_calls: e.model_calls };
            if minibatch.is_none() {
                if self.best.as_ref().is_none_or(|(b, _)| record.score > *b) {
                    self.best = Some((record.score, params.clone()));
                }
                self.whole.push((record.description.clone(), params, e.clone(), content_free));
            }
            (job.progress)(Event::Candidate(&record, self.best.as_ref().map_or(0.0, |b| b.0), job.budget.calls()));
            self.candidates.push(record);
        }
        Ok(e)
    }
}

impl Search<'_, '_> {
    /// How a candidate's labels are scored, and (for a whole-dev candidate of a
    /// classification program whose final choice has no learned bias) its raw scores for the
    /// content-free inputs, scored first so that the calibrated sum is among the modes its
    /// pruned choices decide exactly.
    ///
    /// When the learned bias is a mode, it is fitted to every label's raw score, and any
    /// whole-dev candidate may be a finalist: those score every label (and take their
    /// content-free scores only if they become finalists). Otherwise no mode needs more than
    /// the winners of the sum, the per-token mean and the calibrated sum, and every run is
    /// pruned, the program as written included. A minibatch trial is judged by its metric
    /// under its own scoring: pruned either way.
    async fn pruning(&self, params: &Params, minibatch: bool) -> (LabelPruning, Vec<Vec<f32>>) {
        let job = self.job;
        if self.label.is_none() {
            return (LabelPruning::default(), Vec::new());
        }
        if minibatch {
            let p = if job.plan.prune_labels { LabelPruning::default() } else { LabelPruning::Off };
            return (p, Vec::new());
        }
        if self.learned_bias {
            return (LabelPruning::Off, Vec::new());
        }
        let rows = match &self.label {
            Some(step) => choose::content_free(self, job.program.dag(), step, params).await,
            None => Vec::new(),
        };
        (self.label_pruning(&rows), rows)
    }

    /// How a run of the final choice (or the bootstrap) of a configuration whose content-free
    /// scores are `content_free` scores labels: pruned, the winners under the sum, the
    /// per-token mean and the calibrated sum exact, unless the learned bias is a mode or the
    /// plan asks for every label.
    fn label_pruning(&self, content_free: &[Vec<f32>]) -> LabelPruning {
        let Some(step) = self.label.as_ref() else { return LabelPruning::default() };
        if self.learned_bias || !self.job.plan.prune_labels {
            return LabelPruning::Off;
        }
        let mut also = vec![LabelScoring::Sum, LabelScoring::LengthNormalized];
        if let Some(content_free) = crate::runtime::scoring::content_free(&step.labels, content_free) {
            also.push(LabelScoring::Calibrated { content_free });
        }
        LabelPruning::Decision { also }
    }
}

/// The training runs of the program as written, when the bootstrap made them (no teacher):
/// the final choice reuses them.
type BaselineTrain = Option<(Vec<Example>, Evaluation)>;

/// Runs the compile and returns the artifact: the program as written (and a warm start), the
/// demo pools, the optimizer's candidates, the final choice, the artifact.
pub async fn compile(job: Job<'_>) -> Result<Artifact, CompileError> {
    let mut job = job;
    let dag = job.program.dag().clone();
    let steps = compiled_steps(&job, &dag)?;
    // A classification program (one step answering one label) also gets scoring modes,
    // retrieved demos and the honest final choice. They rescore answers offline from the label
    // scores a run keeps, so they need a backend that scores labels (constrained choice): an
    // LM judge cannot be rescored, and an endpoint that only generates text keeps no scores.
    let scores_labels = |s: &choose::LabelStep| job.program.executor().backends().get(dag.step(s.id).model.0).is_some_and(|b| b.supports_choice());
    let label_step = choose::LabelStep::of(&dag).filter(|s| !job.metric.needs_model() && scores_labels(s));
    if label_step.is_some() {
        // Its runs keep every label's raw score unless told otherwise (see
        // `Search::pruning` and `Search::label_pruning`).
        job.program = job.program.with_label_pruning(LabelPruning::Off);
    }
    let job = job;
    let plan = &job.plan;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let baseline_params: Params =
        steps.iter().map(|s| Ok((s.clone(), job.program.executor().params(step_id(&dag, s)?)))).collect::<Result<_, CompileError>>()?;
    let mut search = Search {
        job: &job,
        steps: steps.clone(),
        candidates: Vec::new(),
        best: None,
        whole: Vec::new(),
        label: label_step.clone(),
        learned_bias: label_step.as_ref().is_some_and(|s| s.learned_bias_fits(&job.dev.examples, &job.train.examples)),
    };
    let baseline = search.score(baseline_params.clone(), "the program as written", None).await?;
    if baseline.cut_short {
        return Err(CompileError::Budget(job.budget.exhausted().unwrap_or_default()));
    }
    let baseline_score = baseline.mean();
    if let Some(warm) = &job.warm_start {
        let mut params = baseline_params.clone();
        params.extend(warm.iter().filter(|(s, _)| steps.contains(s)).map(|(s, p)| (s.clone(), p.clone())));
        search.score(params, "warm start: the current artifact", None).await?;
    }
    // The bootstrap's runs of the program as written are its training rows in the final
    // choice: pruned as its dev runs are.
    let baseline_cf = search.whole.iter().find(|(_, p, _, _)| *p == baseline_params).map(|(_, _, _, cf)| cf.clone()).unwrap_or_default();
    let boot_pruning = if label_step.is_some() { search.label_pruning(&baseline_cf) } else { LabelPruning::default() };
    let (pools, baseline_train) = demo_pools(&job, &dag, &steps, &baseline_params, boot_pruning, &mut rng).await?;
    let proposed = search_candidates(&mut search, &pools, &baseline_params, &mut rng).await?;

    if let Some(step) = &label_step {
        if plan.retrieval && plan.optimizer != OptimizerKind::LabeledFewShot && plan.optimizer != OptimizerKind::BootstrapFewShot {
            retrieval_candidates(&mut search, &pools, step, &baseline_params).await?;
        }
    }
    let (final_score, chosen, selection) = match label_step {
        Some(step) if !search.whole.is_empty() => {
            let cx = choose::Context { search: &mut search, step, baseline: baseline_params.clone(), baseline_train };
            // Its own seeded stream: the folds and resamples of the final choice must not
            // depend on how many draws the search made before it (one candidate more or less
            // would otherwise reshuffle every fold).
            let mut choice_rng = ChaCha8Rng::seed_from_u64(plan.seed ^ FINAL_CHOICE_STREAM);
            let d = choose::decide(cx, &mut choice_rng).await?;
            (d.final_score, d.params, Some(d.record))
        }
        _ => {
            let (f, c) = search.best.clone().unwrap_or((baseline_score, baseline_params));
            (f, c, None)
        }
    };
    let outcome = Chosen { baseline_score, final_score, params: chosen, selection, proposed, candidates: search.candidates };
    Ok(artifact(&job, &dag, &steps, outcome))
}

/// The model steps a compile works on, by name; refuses a job with none or a zero budget.
fn compiled_steps(job: &Job<'_>, dag: &Dag) -> Result<Vec<String>, CompileError> {
    let steps: Vec<String> = model_steps(dag).into_iter().map(|s| dag.step(s).name.clone()).collect();
    if steps.is_empty() {
        return Err(CompileError::Settings("the program has no model steps: there is nothing to compile".into()));
    }
    if job.budget.max_calls == Some(0) || job.budget.max_tokens == Some(0) || job.budget.max_time.is_some_and(|t| t.is_zero()) {
        return Err(CompileError::Settings("the budget is zero: not even the program as written can be scored".into()));
    }
    Ok(steps)
}

/// The demo pools: labelled demos from every training example, in a seeded order, and
/// bootstrapped ones from the passing training runs of the teacher (or the program as
/// written), with those runs when they are the program's own (their labels scored as
/// `pruning` says).
async fn demo_pools(
    job: &Job<'_>,
    dag: &Dag,
    steps: &[String],
    baseline: &Params,
    pruning: LabelPruning,
    rng: &mut ChaCha8Rng,
) -> Result<(Pools, BaselineTrain), CompileError> {
    let plan = &job.plan;
    let mut train_order: Vec<&Example> = job.train.examples.iter().collect();
    train_order.shuffle(rng);
    let mut pools = Pools::default();
    for s in steps {
        let id = step_id(dag, s)?;
        pools.labeled.insert(s.clone(), train_order.iter().filter_map(|ex| labeled_demo(dag, id, ex)).collect());
    }
    if plan.optimizer == OptimizerKind::LabeledFewShot {
        return Ok((pools, None));
    }
    let owned: Vec<Example> = train_order.iter().map(|e| (*e).clone()).collect();
    (job.progress)(Event::Phase("bootstrapping demos from the training set", owned.len()));
    let teacher = match plan.teacher {
        Some(m) => job.program.on_model(m).with_params(by_id(dag, baseline)),
        None => job.program.with_params(by_id(dag, baseline)),
    }
    .with_label_pruning(pruning);
    let tick = || (job.progress)(Event::Run);
    let e = evaluate(&teacher, &owned, &job.metric, plan.concurrency, &job.budget, &tick).await?;
    for (i, score) in e.scores.iter().enumerate() {
        if *score >= PASS {
            for (step, demo) in trace_demos(dag, &e.traces[i]) {
                pools.boot.entry(step).or_default().push(demo);
            }
        }
    }
    if !e.scores.iter().any(|s| *s >= PASS) {
        (job.progress)(Event::Note(format!(
            "bootstrapped 0 passing traces from {} training runs (none scored {PASS} or more); falling back to labelled demos",
            e.scores.len()
        )));
    }
    // Without a teacher these are the program as written on the training set.
    let baseline_train = (plan.teacher.is_none() && !e.cut_short).then_some((owned, e));
    Ok((pools, baseline_train))
}

/// `baseline` with every step's template set to `template` and its demos to `demos_of(step)`.
fn with_demos(steps: &[String], baseline: &Params, template: Template, demos_of: &dyn Fn(&str) -> Vec<Demo>) -> Params {
    steps
        .iter()
        .map(|s| {
            let mut p = baseline.get(s).cloned().unwrap_or_default();
            p.template = template;
            p.demos = demos_of(s);
            (s.clone(), p)
        })
        .collect()
}

/// Scores the optimizer's candidates; returns the instructions it proposed (per step), if it
/// proposes any.
async fn search_candidates(
    search: &mut Search<'_, '_>,
    pools: &Pools,
    baseline: &Params,
    rng: &mut ChaCha8Rng,
) -> Result<BTreeMap<String, Vec<String>>, CompileError> {
    let job = search.job;
    let plan = &job.plan;
    let dag = job.program.dag();
    let steps = search.steps.clone();
    let with = |template: Template, demos_of: &dyn Fn(&str) -> Vec<Demo>| with_demos(&steps, baseline, template, demos_of);
    let first_template = plan.templates.first().copied().unwrap_or(Template::Chat);
    match plan.optimizer {
        OptimizerKind::LabeledFewShot => {
            let params = with(first_template, &|s| pools.labeled_set(s, plan.max_labeled_demos.min(plan.max_demos)));
            search.score(params, "labelled demos", None).await?;
        }
        OptimizerKind::BootstrapFewShot => {
            let params = with(first_template, &|s| pools.bootstrap_set(s, plan.max_demos, plan.max_labeled_demos));
            search.score(params, "bootstrapped demos", None).await?;
        }
        OptimizerKind::BootstrapRandomSearch => {
            for t in &plan.templates {
                let params = with(*t, &|s| pools.bootstrap_set(s, plan.max_demos, plan.max_labeled_demos));
                search.score(params, "bootstrapped demos", None).await?;
                if job.budget.exhausted().is_some() {
                    break;
                }
            }
            let mut tried = 0;
            while tried < plan.candidates && job.budget.exhausted().is_none() {
                tried += 1;
                let template = plan.templates[rng.random_range(0..plan.templates.len())];
                let mut balanced = false;
                let mut sets: HashMap<String, Vec<Demo>> = HashMap::new();
                for s in &steps {
                    let (set, b) = random_set(pools, dag, s, plan, rng);
                    balanced |= b;
                    sets.insert(s.clone(), set);
                }
                let params = with(template, &|s| sets.get(s).cloned().unwrap_or_default());
                search.score(params, if balanced { "random demo set, one per label" } else { "random demo set" }, None).await?;
            }
        }
        OptimizerKind::InstructionSearch => return instruction_search(search, pools, baseline, rng).await,
    }
    Ok(BTreeMap::new())
}

/// What the search and the final choice settled on.
struct Chosen {
    baseline_score: f64,
    final_score: f64,
    params: Params,
    selection: Option<SelectionRecord>,
    proposed: BTreeMap<String, Vec<String>>,
    candidates: Vec<CandidateRecord>,
}

/// The artifact of a compile: the chosen parameters of each step, the program, the models and
/// the provenance.
fn artifact(job: &Job<'_>, dag: &Dag, steps: &[String], chosen: Chosen) -> Artifact {
    let plan = &job.plan;
    let step_records = steps
        .iter()
        .filter_map(|s| {
            let sig = dag.step_signature(dag.step_id(s)?)?;
            let p = chosen.params.get(s).cloned().unwrap_or_default();
            let record = StepRecord {
                signature: sig.name.clone(),
                template: p.template,
                instruction: p.instruction.unwrap_or_else(|| sig.instruction.clone()),
                demos: p.demos,
                retrieval: p.retrieval.map(|r| r.spec().clone()),
                scoring: p.scoring,
            };
            Some((s.clone(), record))
        })
        .collect();
    Artifact {
        format: FORMAT.into(),
        version: VERSION,
        program: ProgramRecord {
            name: dag.name().to_string(),
            source_file: job.source_file.clone(),
            source: job.source.clone(),
            source_sha256: crate::fs::sha256_hex(job.source.as_bytes()),
            graph: record::graph_json(dag),
        },
        steps: step_records,
        models: record::models(&job.program),
        provenance: Provenance {
            loopc_version: env!("CARGO_PKG_VERSION").into(),
            optimizer: plan.optimizer.name().into(),
            settings: plan.settings(dag),
            seed: plan.seed,
            metric: job.metric.name().into(),
            train: DatasetRecord { source: job.train.source.clone(), sha256: job.train.sha256.clone(), examples: job.train.examples.len() },
            dev: DatasetRecord { source: job.dev.source.clone(), sha256: job.dev.sha256.clone(), examples: job.dev.examples.len() },
            baseline_score: chosen.baseline_score,
            final_score: chosen.final_score,
            candidates: chosen.candidates,
            proposed_instructions: chosen.proposed,
            model_calls: job.budget.calls(),
            stopped_early: job.budget.exhausted(),
            selection: chosen.selection,
            learned: None,
            timing: Timing {
                created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                wall_seconds: job.budget.elapsed().as_secs_f64(),
                cache_hits: job.budget.cache_hits(),
                tokens_prefilled: job.budget.tokens_prefilled(),
                tokens_generated: job.budget.tokens_generated(),
            },
        },
    }
}

/// A seeded random demo set for `step`: shuffled pool, seeded size. For a step whose one
/// output is a label, every other set is balanced instead: one demo per label (as far as the
/// pool has them and `max_demos` allows), in seeded order, since a small model given demos
/// of only some labels rarely answers the others.
fn random_set(pools: &Pools, dag: &Dag, step: &str, plan: &Plan, rng: &mut ChaCha8Rng) -> (Vec<Demo>, bool) {
    let mut pool = pools.candidates(step, plan.max_labeled_demos.max(plan.max_demos) * 4);
    pool.shuffle(rng);
    let label_field = dag.step_id(step).and_then(|id| match dag.step(id).outputs.as_slice() {
        [f] if matches!(f.ty, crate::graph::Type::Label(_)) => Some(f.name.clone()),
        _ => None,
    });
    if let Some(field) = label_field.filter(|_| rng.random_bool(0.5)) {
        let mut seen = Vec::new();
        let mut balanced: Vec<Demo> = Vec::new();
        for d in &pool {
            let label = d.outputs.get(&field).cloned();
            if !seen.contains(&label) {
                seen.push(label);
                balanced.push(d.clone());
            }
        }
        balanced.truncate(plan.max_demos.max(1));
        return (balanced, true);
    }
    let k = rng.random_range(1..=plan.max_demos.max(1)).min(pool.len());
    pool.truncate(k);
    (pool, false)
}

/// Demos retrieved per input as a search candidate for a classification step: the `max_demos`
/// nearest training examples per input, at most `max_demos / labels` (rounded up) of one label,
/// under the template of the best candidate so far. Only the balanced set is tried: nearness
/// alone often shows a small model one label only (on tweet emotion it scored 0.43 on dev
/// against 0.45 balanced), and every retrieval candidate costs a dev run with no prefix cache.
async fn retrieval_candidates(search: &mut Search<'_, '_>, pools: &Pools, step: &choose::LabelStep, baseline: &Params) -> Result<(), CompileError> {
    let job = search.job;
    let pool = pools.labeled.get(&step.name).cloned().unwrap_or_default();
    if pool.is_empty() || job.budget.exhausted().is_some() {
        return Ok(());
    }
    let template = search.best.as_ref().and_then(|(_, p)| p.get(&step.name)).map_or(Template::Chat, |p| p.template);
    let k = job.plan.max_demos.max(1);
    let per_label = Some(k.div_ceil(step.labels.len().max(1)));
    let spec = RetrievalSpec { similarity: Similarity::default(), k, per_label, pool };
    let mut params = baseline.clone();
    if let Some(p) = params.get_mut(&step.name) {
        p.template = template;
        p.demos = Vec::new();
        p.retrieval = Some(std::sync::Arc::new(Retriever::new(spec, Some(step.field.clone()))));
    }
    search.score(params, "demos retrieved per input (BM25, balanced by label)", None).await?;
    Ok(())
}

/// Leaders (by mean minibatch score) that get a full dev evaluation.
const LEADERS: usize = 3;
/// Random demo sets per step besides the bootstrapped set and the empty set.
const RANDOM_SETS: usize = 4;

/// `instruction_search`: propose instructions per step, then search instruction × demo set ×
/// template with the TPE surrogate on seeded minibatches of the dev set, and score the leaders
/// on the whole dev set. Returns the proposed instructions, by step, for provenance.
async fn instruction_search(
    search: &mut Search<'_, '_>,
    pools: &Pools,
    baseline: &Params,
    rng: &mut ChaCha8Rng,
) -> Result<BTreeMap<String, Vec<String>>, CompileError> {
    let job = search.job;
    let plan = &job.plan;
    let dag = job.program.dag();
    let steps = search.steps.clone();

    // Per step: instruction options (the signature's own first) and demo-set options.
    let mut instructions: Vec<Vec<Option<String>>> = Vec::new();
    let mut demo_sets: Vec<Vec<Vec<Demo>>> = Vec::new();
    let mut proposed = BTreeMap::new();
    for s in &steps {
        let id = step_id(dag, s)?;
        let boot = pools.bootstrap_set(s, plan.max_demos, plan.max_labeled_demos);
        (job.progress)(Event::Phase(&format!("proposing {} instructions for `{s}`", plan.instructions), 0));
        let new = propose::instructions(&job.program, id, &job.train.examples, &boot, plan.instructions, rng, &job.budget).await?;
        (job.progress)(Event::Note(format!("`{s}`: {} instruction(s) proposed", new.len())));
        instructions.push(std::iter::once(None).chain(new.iter().cloned().map(Some)).collect());
        proposed.insert(s.clone(), new);
        let mut sets = vec![boot, Vec::new()];
        for _ in 0..RANDOM_SETS {
            sets.push(random_set(pools, dag, s, plan, rng).0);
        }
        demo_sets.push(sets);
    }
    // Dimensions: the template, then (instruction, demo set) per step.
    let mut sizes = vec![plan.templates.len()];
    for (i, d) in instructions.iter().zip(&demo_sets) {
        sizes.extend([i.len(), d.len()]);
    }
    let params_of = |c: &tpe::Config| -> Params {
        steps
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let mut p = baseline.get(s).cloned().unwrap_or_default();
                p.template = plan.templates[c[0]];
                p.instruction = instructions[k][c[1 + 2 * k]].clone();
                p.demos = demo_sets[k][c[2 + 2 * k]].clone();
                (s.clone(), p)
            })
            .collect()
    };

    let mut surrogate = tpe::Tpe::new(sizes.clone(), 4);
    let mut seen: Vec<(tpe::Config, Vec<f64>)> = Vec::new();
    let size = plan.minibatch.clamp(1, job.dev.examples.len().max(1));
    for trial in 0..plan.candidates {
        if job.budget.exhausted().is_some() {
            break;
        }
        // The first trial is the bootstrapped program as it stands; the surrogate takes over.
        let config = if trial == 0 { vec![0; sizes.len()] } else { surrogate.propose(rng) };
        let mut batch: Vec<Example> = job.dev.examples.clone();
        batch.shuffle(rng);
        batch.truncate(size);
        let e = search.score(params_of(&config), &format!("trial on a minibatch of {size}"), Some(&batch)).await?;
        if e.cut_short {
            break;
        }
        surrogate.observe(config.clone(), e.mean());
        match seen.iter_mut().find(|(c, _)| *c == config) {
            Some((_, scores)) => scores.push(e.mean()),
            None => seen.push((config, vec![e.mean()])),
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut order: Vec<usize> = (0..seen.len()).collect();
    order.sort_by(|&a, &b| mean(&seen[b].1).total_cmp(&mean(&seen[a].1)).then(a.cmp(&b)));
    for &i in order.iter().take(LEADERS) {
        if job.budget.exhausted().is_some() {
            break;
        }
        search.score(params_of(&seen[i].0), "leader, whole dev set", None).await?;
    }
    Ok(proposed)
}
