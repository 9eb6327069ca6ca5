//! The last phase of compiling a classification program (one model step answering one label
//! or bool that the program returns as it is): label scoring modes and the honest final choice.
//!
//! 1. **Finalists.** The program as written, and the search's best whole-dev candidates, ranked
//!    by the best score any scoring mode gets them on dev (a learned bias cross-validated,
//!    when it is a mode at all: see [`learned_bias_fits`]; otherwise the modes a pruned
//!    choice decides exactly, the calibrated sum included).
//! 2. **Scores on more data.** When dev is small (under [`SMALL_DEV`] examples), each finalist
//!    is also run on the training examples that are not its own fixed demos, so candidates are
//!    compared on train + dev; a retrieving finalist draws from the pool of train + dev, an
//!    example never being its own demo. Each finalist also answers the content-free inputs.
//! 3. **Modes, offline.** A label answer is a function of the raw label scores, which the traces
//!    keep: every scoring mode is scored from them with no model call. The learned bias is
//!    cross-validated ([`FOLDS`] folds, seeded): fitted on the other folds, scored on each.
//! 4. **Selection** ([`super::select`]): intervals, the simplest candidate not told apart from
//!    the best, never below the best constant answer or the program as written.
//!
//! The shipped numbers (content-free scores, learned bias) are then fitted on every example.
//!
//! The learned bias is a mode only when the examples can determine it ([`learned_bias_fits`]).
//! When it is not, no mode needs every label's raw score, and every run of the compile but
//! the content-free inputs scores its labels pruned (the winner under the sum, the per-token
//! mean and the calibrated sum exact; see [`crate::runtime::scoring::LabelPruning`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::calibrate::{constant, fit_bias, Scored, CONTENT_FREE};
use super::demos::labeled_demo;
use super::select::{choose as select, Entrant};
use super::{by_id, model_steps, CompileError, Event, Params, Search};
use crate::compile::dataset::Example;
use crate::compile::evaluate::{evaluate, Evaluation};
use crate::graph::{Dag, Source, StepId, Type};
use crate::runtime::adapter::Demo;
use crate::runtime::artifact::{EntrantRecord, SelectionRecord};
use crate::runtime::retrieve::{RetrievalSpec, Retriever};
use crate::runtime::scoring::{LabelPruning, LabelScoring};
use crate::runtime::trace::Trace;

/// Dev sets smaller than this are pooled with the training set for the final choice.
pub const SMALL_DEV: usize = 100;
/// Folds of the cross-validation of fitted modes.
pub const FOLDS: usize = 5;
/// Search candidates that join the program as written in the final choice. One: each finalist
/// costs a run over the training set (on tweet emotion a second one cost 100 of 841 calls and
/// lost to the first under every scoring mode).
pub const FINALISTS: usize = 1;
/// Examples per label, on average, below which the learned bias is not a scoring mode.
///
/// The bias has one free number per label (and a shared scale), and a label's number is
/// pinned down only by the examples whose scores it moves, mostly its own. The usual rule for
/// a logistic fit is about ten events per parameter (Peduzzi et al. 1996, J Clin Epidemiol
/// 49:1373): with fewer, its coefficients come out biased and its error rates understated;
/// and the cross-validation that judges the mode fits it on four fifths of the examples, so
/// at ten per label each fold's fit sees about eight. Below that the mode would mostly fit
/// noise (77 banking labels from 160 examples: about two each), and keeping it would cost
/// every label's score on every run of the compile. The number comes from that rule, not from
/// any task's answers.
pub const MIN_EXAMPLES_PER_LABEL: usize = 10;

/// Whether a learned per-label bias over `labels` labels is a scoring mode when the final
/// choice has `examples` labelled examples: at least [`MIN_EXAMPLES_PER_LABEL`] per label on
/// average.
pub fn learned_bias_fits(examples: usize, labels: usize) -> bool {
    labels > 0 && examples >= MIN_EXAMPLES_PER_LABEL * labels
}

/// The step a classification program answers with.
#[derive(Clone, Debug)]
pub struct LabelStep {
    /// The step.
    pub id: StepId,
    /// Its name.
    pub name: String,
    /// The step output holding the answer.
    pub field: String,
    /// The program output that returns it.
    pub slot: String,
    /// The allowed answers as the runtime scores them.
    pub labels: Vec<String>,
    /// Their values.
    pub values: Vec<Value>,
}

impl LabelStep {
    /// The program's label step, if the program is a classification program: one model step,
    /// whose one output is a label or bool returned by the program and read by no other step.
    pub fn of(dag: &Dag) -> Option<LabelStep> {
        let [id] = model_steps(dag)[..] else { return None };
        let step = dag.step(id);
        let [field] = step.outputs.as_slice() else { return None };
        let (labels, values) = match &field.ty {
            Type::Label(l) => (l.clone(), l.iter().map(|s| Value::String(s.clone())).collect()),
            Type::Bool => (vec!["true".to_string(), "false".to_string()], vec![Value::Bool(true), Value::Bool(false)]),
            _ => return None,
        };
        let slot = super::demos::returned_as(dag, id, &field.name)?.to_string();
        let read_elsewhere = dag.steps().iter().any(|s| s.bindings.iter().any(|b| matches!(&b.source, Source::Step { step, .. } if *step == id)));
        (!read_elsewhere).then(|| LabelStep { id, name: step.name.clone(), field: field.name.clone(), slot, labels, values })
    }

    /// The index of the label example `ex` gives, if it gives one.
    fn truth(&self, ex: &Example) -> Option<usize> {
        let v = ex.fields.get(&self.slot)?;
        self.values.iter().position(|x| x == v)
    }

    /// Whether the learned bias is a scoring mode of a compile on `dev` and `train`: the
    /// labelled examples its final choice is made on (dev, with train when dev has fewer than
    /// [`SMALL_DEV`]) number at least [`MIN_EXAMPLES_PER_LABEL`] per label.
    pub fn learned_bias_fits(&self, dev: &[Example], train: &[Example]) -> bool {
        let pooled: &[Example] = if dev.len() < SMALL_DEV { train } else { &[] };
        let labelled = dev.iter().chain(pooled).filter(|ex| self.truth(ex).is_some()).count();
        learned_bias_fits(labelled, self.labels.len())
    }

    /// The label field of the step's demos (for retrieval balance).
    fn label_field(&self) -> Option<String> {
        Some(self.field.clone())
    }
}

/// A finalist's raw label scores on one example.
#[derive(Clone, Debug, PartialEq)]
enum Row {
    /// Not scored there (one of its fixed demos, or the budget ran out).
    Skipped,
    /// The run failed: every mode scores the metric of no output.
    Failed,
    /// The raw scores and label lengths.
    Raw(Vec<f32>, Vec<u32>),
}

fn row_of(trace: &Trace, step: &str) -> Row {
    let Some(st) = trace.steps.iter().find(|s| s.step == step) else { return Row::Failed };
    match &st.choice_scores {
        Some(cs) if st.error.is_none() => Row::Raw(cs.iter().map(|c| c.logprob).collect(), cs.iter().map(|c| c.tokens).collect()),
        _ => Row::Failed,
    }
}

/// A configuration competing in the final choice.
struct Finalist {
    description: String,
    params: Params,
    /// Raw scores per example of the evaluation set.
    rows: Vec<Row>,
    /// Raw scores for the content-free inputs.
    content_free: Vec<Vec<f32>>,
    /// Whether its dev rows came from a search run that dropped labels (so it is run on dev
    /// again, every label in full).
    pruned: bool,
}

impl Finalist {
    /// How simple the prompt is: no demos, fixed demos, retrieved demos.
    fn demo_rank(&self, step: &str) -> u32 {
        match self.params.get(step) {
            Some(p) if p.retrieval.is_some() => 2,
            Some(p) if !p.demos.is_empty() => 1,
            _ => 0,
        }
    }
}

/// The modes tried, simplest first (the order is the complexity rank).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Sum,
    LengthNormalized,
    Calibrated,
    LearnedBias,
}

const MODES: [Mode; 4] = [Mode::Sum, Mode::LengthNormalized, Mode::Calibrated, Mode::LearnedBias];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sum => "sum",
            Mode::LengthNormalized => "length_normalized",
            Mode::Calibrated => "calibrated",
            Mode::LearnedBias => "learned_bias",
        }
    }
}

/// What the final choice needs from the compile.
pub(super) struct Context<'s, 'j, 'a> {
    pub search: &'s mut Search<'j, 'a>,
    pub step: LabelStep,
    pub baseline: Params,
    /// The program as written on the training set (the examples in the order run, and the
    /// evaluation), when the bootstrap ran it (no teacher).
    pub baseline_train: Option<(Vec<Example>, Evaluation)>,
}

/// What the final choice decided.
pub(super) struct Decision {
    pub params: Params,
    pub final_score: f64,
    pub record: SelectionRecord,
}

/// Runs the final choice: finalists, their scores on more data, every (finalist, mode) as an
/// entrant beside the guards, the selection, and the shipped parameters.
pub(super) async fn decide(cx: Context<'_, '_, '_>, rng: &mut ChaCha8Rng) -> Result<Decision, CompileError> {
    let Context { search, step, baseline, baseline_train } = cx;
    let job = search.job;
    let dev = &job.dev.examples;
    let pooled = dev.len() < SMALL_DEV;
    let examples: Vec<Example> = if pooled { dev.iter().chain(&job.train.examples).cloned().collect() } else { dev.clone() };
    let truths: Vec<Option<usize>> = examples.iter().map(|e| step.truth(e)).collect();
    let scorer = Scorer { job_metric: &job.metric, step: &step, examples: &examples };

    let learned = search.learned_bias;
    let mut finalists = finalists(search, &scorer, &step, &baseline, learned, rng);
    score_finalists(search, &step, &mut finalists, &examples, pooled, &baseline_train).await?;
    let field = Field::of(&scorer, &finalists, &truths, learned, rng);
    let verdict = select(&field.entrants, rng);
    let (params, scoring, description) = field.shipped(verdict.chosen, &scorer, &finalists, &truths, &step, &baseline);
    let mut params = params;
    if let Some(p) = params.get_mut(&step.name) {
        p.scoring = scoring.clone();
    }
    let final_score = field.dev_score(verdict.chosen, &scorer, &finalists, &scoring, &step, dev.len());
    let evaluated_on = if pooled {
        format!("train + dev ({} examples; dev has fewer than {SMALL_DEV}), {FOLDS}-fold cross-validation for fitted modes", examples.len())
    } else {
        format!("dev ({} examples), {FOLDS}-fold cross-validation for fitted modes", examples.len())
    };
    let (records, chosen_index) = field.records(&verdict, &step);
    (job.progress)(Event::Note(format!(
        "chose {description}: {:.3} [{:.3}, {:.3}] on {evaluated_on}; {}",
        verdict.summaries[verdict.chosen].mean, verdict.summaries[verdict.chosen].low, verdict.summaries[verdict.chosen].high, verdict.reason
    )));
    let record = SelectionRecord { evaluated_on, entrants: records, chosen: chosen_index, shipped: description, reason: verdict.reason };
    Ok(Decision { params, final_score, record })
}

/// 1. The finalists: the program as written first, then the best distinct search candidates,
///    every one ranked on the same folds of dev (a paired comparison), under the learned bias
///    too when it is a mode (`learned`).
fn finalists(search: &Search<'_, '_>, scorer: &Scorer<'_>, step: &LabelStep, baseline: &Params, learned: bool, rng: &mut ChaCha8Rng) -> Vec<Finalist> {
    let dev_fold = folds(search.job.dev.examples.len(), rng);
    let mut ranked: Vec<(f64, usize)> = search
        .whole
        .iter()
        .enumerate()
        .filter(|(_, (_, p, _, _))| p != baseline)
        .map(|(i, (_, _, e, cf))| (dev_estimate(scorer, step, &rows_of(&e.traces, &step.name), cf, learned, &dev_fold), i))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let (baseline_dev, baseline_cf) = search.whole.iter().find(|(_, p, _, _)| p == baseline).map(|(_, _, e, cf)| (e.clone(), cf.clone())).unwrap_or_default();
    let mut finalists = vec![Finalist {
        description: "the program as written".into(),
        params: baseline.clone(),
        rows: rows_of(&baseline_dev.traces, &step.name),
        content_free: baseline_cf,
        pruned: pruned(&baseline_dev.traces, &step.name),
    }];
    for &(_, i) in &ranked {
        if finalists.len() > FINALISTS {
            break;
        }
        let (description, params, e, cf) = &search.whole[i];
        if finalists.iter().any(|f| f.params == *params) {
            continue;
        }
        finalists.push(Finalist {
            description: description.clone(),
            params: params.clone(),
            rows: rows_of(&e.traces, &step.name),
            content_free: cf.clone(),
            pruned: pruned(&e.traces, &step.name),
        });
    }
    finalists
}

/// Whether any run dropped labels of `step` (its raw scores are then partly upper bounds).
fn pruned(traces: &[Trace], step: &str) -> bool {
    traces.iter().flat_map(|t| &t.steps).filter(|s| s.step == step).any(|s| s.choice_scores.as_ref().is_some_and(|cs| cs.iter().any(|c| c.pruned)))
}

/// 2. Every finalist on the whole evaluation set (`examples`: dev, then train when `pooled`),
///    and on the content-free inputs.
async fn score_finalists(
    search: &Search<'_, '_>,
    step: &LabelStep,
    finalists: &mut [Finalist],
    examples: &[Example],
    pooled: bool,
    baseline_train: &Option<(Vec<Example>, Evaluation)>,
) -> Result<(), CompileError> {
    let job = search.job;
    let dag = job.program.dag();
    let dev = &job.dev.examples;
    let pool: Vec<Demo> = dev.iter().chain(&job.train.examples).filter_map(|ex| labeled_demo(dag, step.id, ex)).collect();
    for (k, f) in finalists.iter_mut().enumerate() {
        if job.budget.exhausted().is_some() {
            break;
        }
        // First: a pruned run keeps the calibrated sum's winner exact only when it knows the
        // content-free scores.
        if f.content_free.is_empty() {
            f.content_free = content_free(search, dag, step, &f.params).await;
        }
        let pruning = search.label_pruning(&f.content_free);
        if f.pruned && search.learned_bias && f.params.get(&step.name).is_none_or(|p| p.retrieval.is_none()) {
            // The learned bias is fitted to every label's raw score: pruned runs on dev do not
            // have them. (The search scores its whole-dev candidates in full when the learned
            // bias is a mode, so this is for a caller that pruned them anyway.)
            let e = run(search, &f.params, dev, LabelPruning::Off, &format!("finalist {k}: {} on the dev set, every label scored", f.description)).await?;
            f.rows = rows_of(&e.traces, &step.name);
            f.pruned = false;
        }
        if let Some(r) = f.params.get(&step.name).and_then(|p| p.retrieval.clone()) {
            // Retrieval draws from every example of the evaluation set (never an example's own).
            let spec = RetrievalSpec { pool: pool.clone(), ..r.spec().clone() };
            if let Some(p) = f.params.get_mut(&step.name) {
                p.retrieval = Some(Arc::new(Retriever::new(spec, step.label_field())));
            }
            let e = run(search, &f.params, examples, pruning.clone(), &format!("finalist {k}: {} on {} examples", f.description, examples.len())).await?;
            f.rows = rows_of(&e.traces, &step.name);
            f.rows.resize(examples.len(), Row::Skipped);
        } else if pooled {
            let demos: Vec<&Demo> = f.params.get(&step.name).map(|p| p.demos.iter().collect()).unwrap_or_default();
            let is_demo = |ex: &Example| labeled_demo(dag, step.id, ex).is_some_and(|d| demos.iter().any(|x| x.inputs == d.inputs));
            let train: Vec<Example> = job.train.examples.iter().filter(|ex| !is_demo(ex)).cloned().collect();
            let (ran, e) = match baseline_train {
                Some((ran, e)) if k == 0 => (ran.clone(), e.clone()),
                _ => {
                    let e = run(search, &f.params, &train, pruning.clone(), &format!("finalist {k}: {} on the training set", f.description)).await?;
                    (train, e)
                }
            };
            let mut by_origin: BTreeMap<&str, Row> = BTreeMap::new();
            for (ex, t) in ran.iter().zip(&e.traces) {
                by_origin.insert(&ex.origin, row_of(t, &step.name));
            }
            f.rows.resize(dev.len(), Row::Skipped);
            for ex in &job.train.examples {
                f.rows.push(if is_demo(ex) { Row::Skipped } else { by_origin.get(ex.origin.as_str()).cloned().unwrap_or(Row::Skipped) });
            }
        }
        f.rows.resize(examples.len(), Row::Skipped);
    }
    Ok(())
}

/// 3. The entrants: every (finalist, mode) scored per example, the learned bias
///    cross-validated, and the guards.
struct Field {
    entrants: Vec<Entrant>,
    /// Per non-guard entrant: its finalist, mode and description.
    described: Vec<(usize, Mode, String)>,
    /// Where the constant-answer guard is.
    constant_at: usize,
    /// The majority label over every example.
    majority: usize,
}

impl Field {
    /// Every (finalist, mode), the learned bias only when `learned` (see [`learned_bias_fits`]).
    fn of(scorer: &Scorer<'_>, finalists: &[Finalist], truths: &[Option<usize>], learned: bool, rng: &mut ChaCha8Rng) -> Field {
        let step = scorer.step;
        let fold = folds(truths.len(), rng);
        let mut entrants = Vec::new();
        let mut described: Vec<(usize, Mode, String)> = Vec::new();
        for (k, f) in finalists.iter().enumerate() {
            for mode in MODES {
                if (mode == Mode::Calibrated && f.content_free.is_empty()) || (mode == Mode::LearnedBias && !learned) {
                    continue;
                }
                let scores = scorer.cross_validated(f, mode, truths, &fold);
                entrants.push(Entrant { complexity: (f.demo_rank(&step.name), mode as u32), scores, guard: false });
                described.push((k, mode, format!("{} with {} scoring", f.description, mode.name())));
            }
        }
        // The guards: the best constant answer (cross-validated like the learned bias), and the
        // program as written (already an entrant; as a guard it is never passed over for a
        // simpler-looking choice that scores below it).
        let constant_scores: Vec<Option<f64>> = (0..truths.len())
            .map(|i| {
                let majority = majority(truths, |j| fold[j] != fold[i])?;
                Some(scorer.score(i, majority))
            })
            .collect();
        let constant_at = entrants.len();
        entrants.push(Entrant { complexity: (0, 0), scores: constant_scores, guard: true });
        if let Some(first) = entrants.first().cloned() {
            entrants.push(Entrant { guard: true, ..first });
        }
        Field { entrants, described, constant_at, majority: majority(truths, |_| true).unwrap_or(0) }
    }

    /// 4. The shipped parameters, scoring and description of entrant `chosen`, its numbers
    ///    fitted on every example.
    fn shipped(
        &self,
        chosen: usize,
        scorer: &Scorer<'_>,
        finalists: &[Finalist],
        truths: &[Option<usize>],
        step: &LabelStep,
        baseline: &Params,
    ) -> (Params, LabelScoring, String) {
        if chosen == self.constant_at {
            let scoring = constant(&step.labels, self.majority);
            return (baseline.clone(), scoring, format!("the constant answer `{}` (the majority label)", step.labels[self.majority]));
        }
        let (k, mode, description) = self.described.get(chosen).cloned().unwrap_or((0, Mode::Sum, "the program as written with sum scoring".into()));
        let f = &finalists[k];
        let scoring = match mode {
            Mode::Sum => LabelScoring::Sum,
            Mode::LengthNormalized => LabelScoring::LengthNormalized,
            Mode::Calibrated => crate::runtime::scoring::content_free(&step.labels, &f.content_free)
                .map_or(LabelScoring::Sum, |content_free| LabelScoring::Calibrated { content_free }),
            Mode::LearnedBias => fit_bias(&step.labels, &scorer.training(f, truths, |_| true)),
        };
        (f.params.clone(), scoring, description)
    }

    /// The dev score of what is shipped, as `loopc eval` on the dev set reproduces it.
    fn dev_score(&self, chosen: usize, scorer: &Scorer<'_>, finalists: &[Finalist], scoring: &LabelScoring, step: &LabelStep, dev: usize) -> f64 {
        let constant = chosen == self.constant_at;
        let shipped_rows: Vec<Row> = if constant { Vec::new() } else { finalists[self.described.get(chosen).map_or(0, |d| d.0)].rows.clone() };
        let dev_scores: Vec<f64> = (0..dev)
            .map(|i| match shipped_rows.get(i) {
                _ if constant => scorer.score(i, self.majority),
                Some(Row::Raw(raw, tokens)) => scorer.score(i, scoring.decide(&step.labels, raw, tokens)),
                _ => scorer.failed(i),
            })
            .collect();
        if dev_scores.is_empty() {
            0.0
        } else {
            dev_scores.iter().sum::<f64>() / dev_scores.len() as f64
        }
    }

    /// The entrants as the artifact records them, and where the chosen one is among them.
    fn records(&self, verdict: &super::select::Verdict, step: &LabelStep) -> (Vec<EntrantRecord>, usize) {
        let mut records: Vec<EntrantRecord> = self
            .described
            .iter()
            .zip(&verdict.summaries)
            .map(|((_, mode, d), s)| EntrantRecord {
                description: d.clone(),
                scoring: mode.name().into(),
                mean: s.mean,
                low: s.low,
                high: s.high,
                examples: s.n,
            })
            .collect();
        if let Some(s) = verdict.summaries.get(self.constant_at) {
            records.push(EntrantRecord {
                description: format!("the constant answer `{}` (the majority label)", step.labels[self.majority]),
                scoring: "constant".into(),
                mean: s.mean,
                low: s.low,
                high: s.high,
                examples: s.n,
            });
        }
        let chosen = if verdict.chosen == self.constant_at { records.len() - 1 } else { verdict.chosen.min(records.len().saturating_sub(1)) };
        (records, chosen)
    }
}

/// Runs `params` on `examples` for the final choice (counted against the budget), its labels
/// scored as `pruning` says.
async fn run(search: &Search<'_, '_>, params: &Params, examples: &[Example], pruning: LabelPruning, phase: &str) -> Result<Evaluation, CompileError> {
    let job = search.job;
    (job.progress)(Event::Phase(phase, examples.len()));
    let program = job.program.with_params(by_id(job.program.dag(), params)).with_label_pruning(pruning);
    let tick = || (job.progress)(Event::Run);
    Ok(evaluate(&program, examples, &job.metric, job.plan.concurrency, &job.budget, &tick).await?)
}

/// The raw scores of `params` for content-free inputs: every text input of the program
/// replaced by each of [`CONTENT_FREE`]. Runs that fail are left out.
pub(super) async fn content_free(search: &Search<'_, '_>, dag: &Dag, step: &LabelStep, params: &Params) -> Vec<Vec<f32>> {
    let job = search.job;
    let program = job.program.with_params(by_id(dag, params));
    let mut rows = Vec::new();
    let Some(template) = job.dev.examples.first() else { return rows };
    if job.budget.exhausted().is_some() {
        return rows;
    }
    // All at once: the model scores them in one pass.
    let runs = CONTENT_FREE.iter().map(|value| {
        let inputs: Map<String, Value> = dag
            .inputs()
            .iter()
            .filter_map(|f| {
                let v = if f.ty == Type::Text { Value::String(value.to_string()) } else { template.fields.get(&f.name)?.clone() };
                Some((f.name.clone(), v))
            })
            .collect();
        program.run_traced(inputs)
    });
    for (_, trace) in futures_util::future::join_all(runs).await {
        job.budget.record(&trace);
        if let Row::Raw(raw, _) = row_of(&trace, &step.name) {
            rows.push(raw);
        }
    }
    rows
}

fn rows_of(traces: &[Trace], step: &str) -> Vec<Row> {
    traces.iter().map(|t| row_of(t, step)).collect()
}

/// The most frequent truth among the examples `keep` admits (the first label of equals).
fn majority(truths: &[Option<usize>], keep: impl Fn(usize) -> bool) -> Option<usize> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, t) in truths.iter().enumerate() {
        if let Some(t) = t.filter(|_| keep(i)) {
            *counts.entry(t).or_default() += 1;
        }
    }
    counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(l, _)| *l)
}

/// Scores label decisions with the compile's metric.
struct Scorer<'a> {
    job_metric: &'a crate::compile::metric::Metric,
    step: &'a LabelStep,
    examples: &'a [Example],
}

impl Scorer<'_> {
    /// The metric when example `i` is answered with label `label`.
    fn score(&self, i: usize, label: usize) -> f64 {
        let mut outputs = Map::new();
        outputs.insert(self.step.slot.clone(), self.step.values[label].clone());
        self.job_metric.score(Some(&outputs), &self.examples[i]).unwrap_or(0.0)
    }

    /// The metric of a failed run on example `i`.
    fn failed(&self, i: usize) -> f64 {
        self.job_metric.score(None, &self.examples[i]).unwrap_or(0.0)
    }

    /// The learned-bias training rows of `f` among the examples `keep` admits.
    fn training(&self, f: &Finalist, truths: &[Option<usize>], keep: impl Fn(usize) -> bool) -> Vec<Scored> {
        f.rows
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .filter_map(|(i, r)| match (r, truths.get(i).copied().flatten()) {
                (Row::Raw(raw, _), Some(truth)) => Some(Scored { raw: raw.clone(), truth }),
                _ => None,
            })
            .collect()
    }

    /// `f` under `mode`, per example; the learned bias fitted on the other folds.
    fn cross_validated(&self, f: &Finalist, mode: Mode, truths: &[Option<usize>], fold: &[usize]) -> Vec<Option<f64>> {
        let labels = &self.step.labels;
        let fixed = match mode {
            Mode::Sum => Some(LabelScoring::Sum),
            Mode::LengthNormalized => Some(LabelScoring::LengthNormalized),
            Mode::Calibrated => crate::runtime::scoring::content_free(labels, &f.content_free).map(|content_free| LabelScoring::Calibrated { content_free }),
            Mode::LearnedBias => None,
        };
        let fitted: Vec<LabelScoring> = match &fixed {
            Some(_) => Vec::new(),
            None => (0..FOLDS).map(|k| fit_bias(labels, &self.training(f, truths, |j| fold[j] != k))).collect(),
        };
        f.rows
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Row::Skipped => None,
                Row::Failed => Some(self.failed(i)),
                Row::Raw(raw, tokens) => {
                    let scoring = fixed.as_ref().or_else(|| fitted.get(fold[i]))?;
                    Some(self.score(i, scoring.decide(labels, raw, tokens)))
                }
            })
            .collect()
    }
}

/// A seeded assignment of `n` examples to [`FOLDS`] folds of (nearly) equal size.
fn folds(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut fold = vec![0; n];
    for (k, &i) in order.iter().enumerate() {
        fold[i] = k % FOLDS;
    }
    fold
}

/// How well a search candidate could do on dev under its best mode: the most of the sum, the
/// per-token mean, the calibrated sum (when its content-free scores were taken: the search
/// takes them when it prunes, see `Search::pruning`) and, when `learned`, the learned bias
/// cross-validated (its runs then scored every label in full).
fn dev_estimate(scorer: &Scorer<'_>, step: &LabelStep, rows: &[Row], content_free: &[Vec<f32>], learned: bool, fold: &[usize]) -> f64 {
    let truths: Vec<Option<usize>> = (0..rows.len()).map(|i| scorer.examples.get(i).and_then(|e| step.truth(e))).collect();
    let fold: Vec<usize> = (0..rows.len()).map(|i| fold.get(i).copied().unwrap_or(i % FOLDS)).collect();
    let f = Finalist { description: String::new(), params: Params::new(), rows: rows.to_vec(), content_free: content_free.to_vec(), pruned: false };
    let modes = MODES.iter().filter(|&&m| match m {
        Mode::Calibrated => !content_free.is_empty(),
        Mode::LearnedBias => learned,
        Mode::Sum | Mode::LengthNormalized => true,
    });
    modes
        .map(|&m| {
            let s: Vec<f64> = scorer.cross_validated(&f, m, &truths, &fold).into_iter().flatten().collect();
            if s.is_empty() {
                0.0
            } else {
                s.iter().sum::<f64>() / s.len() as f64
            }
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majority_is_the_most_frequent_truth_and_ties_go_to_the_first_label() {
        assert_eq!(majority(&[Some(1), Some(0), Some(1), None], |_| true), Some(1));
        assert_eq!(majority(&[Some(1), Some(0)], |_| true), Some(0));
        assert_eq!(majority(&[Some(1), Some(0), Some(1)], |i| i < 2), Some(0));
        assert_eq!(majority(&[None], |_| true), None);
    }

    #[test]
    fn the_learned_bias_is_a_mode_only_with_ten_examples_per_label_on_average() {
        // TweetEval emotion's compile: 160 examples, 4 labels (40 each).
        assert!(learned_bias_fits(160, 4));
        // banking77's: 160 examples, 77 labels (about 2 each).
        assert!(!learned_bias_fits(160, 77));
        assert!(learned_bias_fits(770, 77));
        assert!(!learned_bias_fits(769, 77));
        assert!(!learned_bias_fits(0, 0));
    }
}
