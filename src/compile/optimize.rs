//! The optimizers. Each produces candidate step parameters (template, instruction, demos per
//! model step); candidates are scored on the dev set and the best is kept. All randomness
//! comes from one ChaCha generator seeded by the `seed` setting, and evaluation keeps example
//! order, so the same seed, model and data give the same artifact.

use std::collections::{BTreeMap, HashMap};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::dataset::{Dataset, Example};
use super::evaluate::{evaluate, Budget, Evaluation};
use super::metric::{Metric, MetricError};
use crate::graph::{Dag, OptimizerKind, Source, StepId, StepKind, REASONING};
use crate::runtime::adapter::{Demo, Template};
use crate::runtime::artifact::*;
use crate::runtime::executor::StepParams;
use crate::runtime::trace::Trace;
use crate::Program;

/// A trace passes (and may become a demo) when its score is at least this.
pub const PASS: f64 = 0.5;

/// Why a compile failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Occurs when the metric cannot score.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// Occurs when the settings leave nothing to do.
    #[error("{0}")]
    Settings(String),
    /// Occurs when the budget runs out before the baseline is measured.
    #[error("{0} before the program as written could be scored on the dev set; raise the budget")]
    Budget(String),
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
    /// How many candidates (search optimizers).
    pub candidates: usize,
    /// The templates to search over.
    pub templates: Vec<Template>,
    /// The seed.
    pub seed: u64,
    /// Runs at once.
    pub concurrency: usize,
}

impl Plan {
    /// The settings as recorded in provenance.
    pub fn settings(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("max_demos".to_string(), json!(self.max_demos)),
            ("max_labeled_demos".to_string(), json!(self.max_labeled_demos)),
            ("candidates".to_string(), json!(self.candidates)),
            ("templates".to_string(), json!(self.templates.iter().map(|t| t.name()).collect::<Vec<_>>())),
        ])
    }
}

/// Something worth showing while compiling.
pub enum Event<'a> {
    /// A phase begins that runs the program `runs` times.
    Phase(&'a str, usize),
    /// One run finished.
    Run,
    /// A candidate was scored.
    Candidate(&'a CandidateRecord, f64),
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
}

type Params = HashMap<String, StepParams>;

/// The model steps, in schedule order.
fn model_steps(dag: &Dag) -> Vec<StepId> {
    dag.schedule().into_iter().flatten().filter(|s| dag.step(*s).kind != StepKind::Call).collect()
}

/// A labelled demo for `step` from `ex`, when the example gives every input and output the
/// step has (a step fed by another step, or a chain of thought, needs bootstrapped demos).
fn labeled_demo(dag: &Dag, step: StepId, ex: &Example) -> Option<Demo> {
    let s = dag.step(step);
    if s.kind == StepKind::ChainOfThought {
        return None;
    }
    let mut inputs = Map::new();
    for b in &s.bindings {
        let v = match &b.source {
            Source::Input(n) => ex.fields.get(n)?.clone(),
            Source::Const(v) => v.clone(),
            Source::Step { .. } => return None,
        };
        inputs.insert(b.slot.clone(), v);
    }
    let mut outputs = Map::new();
    for f in s.outputs.iter().filter(|f| f.name != REASONING) {
        let ret = dag.returns().iter().find(|r| matches!(&r.source, Source::Step { step: st, field } if *st == step && *field == f.name))?;
        outputs.insert(f.name.clone(), ex.fields.get(&ret.slot)?.clone());
    }
    Some(Demo { inputs, outputs })
}

/// Per-step demos from a run that passed: what each model step saw and answered.
fn trace_demos(dag: &Dag, trace: &Trace) -> HashMap<String, Demo> {
    trace
        .steps
        .iter()
        .filter(|st| dag.step_id(&st.step).is_some_and(|id| dag.step(id).kind != StepKind::Call))
        .filter_map(|st| st.outputs.as_ref().map(|o| (st.step.clone(), Demo { inputs: st.inputs.clone(), outputs: o.clone() })))
        .collect()
}

/// Demo sources for each step: (bootstrapped, labelled).
struct Pools {
    boot: HashMap<String, Vec<Demo>>,
    labeled: HashMap<String, Vec<Demo>>,
}

fn describe(params: &Params, steps: &[String], origin: &str) -> String {
    steps
        .iter()
        .map(|s| {
            let p = params.get(s).cloned().unwrap_or_default();
            format!("{s}: template={} demos={}", p.template.name(), p.demos.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
        + &format!(" ({origin})")
}

/// Runs the compile and returns the artifact.
pub async fn compile(job: Job<'_>) -> Result<Artifact, CompileError> {
    let dag = job.program.dag().clone();
    let steps: Vec<String> = model_steps(&dag).into_iter().map(|s| dag.step(s).name.clone()).collect();
    if steps.is_empty() {
        return Err(CompileError::Settings("the program has no model steps: there is nothing to compile".into()));
    }
    if job.budget.max_calls == Some(0) || job.budget.max_tokens == Some(0) || job.budget.max_time.is_some_and(|t| t.is_zero()) {
        return Err(CompileError::Settings("the budget is zero: not even the program as written can be scored".into()));
    }
    let progress = job.progress;
    let plan = &job.plan;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let tick = || progress(Event::Run);
    let mut candidates: Vec<CandidateRecord> = Vec::new();
    let mut best: Option<(f64, Params)> = None;

    // Scores a candidate on the dev set; a candidate the budget cut short is not kept.
    macro_rules! try_candidate {
        ($params:expr, $origin:expr) => {{
            let params: Params = $params;
            let description = describe(&params, &steps, $origin);
            progress(Event::Phase(&format!("candidate {}: {description}", candidates.len()), job.dev.examples.len()));
            let candidate = job.program.with_params(params.clone());
            let e = evaluate(&candidate, &job.dev.examples, &job.metric, plan.concurrency, &job.budget, &tick).await?;
            if !e.cut_short {
                let record = CandidateRecord { trial: candidates.len(), description, score: e.mean(), evaluated_on: e.scores.len(), model_calls: e.model_calls };
                if best.as_ref().is_none_or(|(b, _)| record.score > *b) {
                    best = Some((record.score, params));
                }
                progress(Event::Candidate(&record, best.as_ref().map_or(0.0, |b| b.0)));
                candidates.push(record);
            }
            e
        }};
    }

    let baseline_params: Params = steps.iter().map(|s| (s.clone(), job.program.executor().params(dag.step_id(s).unwrap_or(StepId(0))))).collect();
    let baseline = try_candidate!(baseline_params.clone(), "the program as written");
    if baseline.cut_short {
        return Err(CompileError::Budget(job.budget.exhausted().unwrap_or_default()));
    }
    let baseline_score = baseline.mean();

    // Demo pools: labelled demos from every train example, bootstrapped ones from teacher runs.
    let mut train_order: Vec<&Example> = job.train.examples.iter().collect();
    train_order.shuffle(&mut rng);
    let labeled: HashMap<String, Vec<Demo>> = steps
        .iter()
        .map(|s| {
            let id = dag.step_id(s).unwrap_or(StepId(0));
            (s.clone(), train_order.iter().filter_map(|ex| labeled_demo(&dag, id, ex)).collect())
        })
        .collect();
    let mut pools = Pools { boot: HashMap::new(), labeled };
    if plan.optimizer != OptimizerKind::LabeledFewShot {
        let owned: Vec<Example> = train_order.iter().map(|e| (*e).clone()).collect();
        progress(Event::Phase("bootstrapping demos from the training set", owned.len()));
        let teacher = job.program.with_params(baseline_params.clone());
        let e: Evaluation = evaluate(&teacher, &owned, &job.metric, plan.concurrency, &job.budget, &tick).await?;
        for (i, score) in e.scores.iter().enumerate() {
            if *score >= PASS {
                for (step, demo) in trace_demos(&dag, &e.traces[i]) {
                    pools.boot.entry(step).or_default().push(demo);
                }
            }
        }
        let passed = e.scores.iter().filter(|s| **s >= PASS).count();
        if passed == 0 {
            progress(Event::Note(format!(
                "bootstrapped 0 passing traces from {} training runs (none scored {PASS} or more); falling back to labelled demos",
                e.scores.len()
            )));
        }
    }

    let pick = |pool: &[Demo], k: usize| pool.iter().take(k).cloned().collect::<Vec<_>>();
    let with_demos = |template: Template, demos_of: &dyn Fn(&str) -> Vec<Demo>| -> Params {
        steps
            .iter()
            .map(|s| {
                let mut p = baseline_params.get(s).cloned().unwrap_or_default();
                p.template = template;
                p.demos = demos_of(s);
                (s.clone(), p)
            })
            .collect()
    };
    let empty = Vec::new();
    let first_template = plan.templates.first().copied().unwrap_or(Template::Chat);
    match plan.optimizer {
        OptimizerKind::LabeledFewShot => {
            let params = with_demos(first_template, &|s| pick(pools.labeled.get(s).unwrap_or(&empty), plan.max_labeled_demos.min(plan.max_demos)));
            try_candidate!(params, "labelled demos");
        }
        OptimizerKind::BootstrapFewShot => {
            let params = with_demos(first_template, &|s| bootstrap_set(&pools, s, plan.max_demos, plan.max_labeled_demos));
            try_candidate!(params, "bootstrapped demos");
        }
        OptimizerKind::BootstrapRandomSearch | OptimizerKind::InstructionSearch => {
            for t in &plan.templates {
                let params = with_demos(*t, &|s| bootstrap_set(&pools, s, plan.max_demos, plan.max_labeled_demos));
                try_candidate!(params, "bootstrapped demos");
                if job.budget.exhausted().is_some() {
                    break;
                }
            }
            let mut tried = 0;
            while tried < plan.candidates && job.budget.exhausted().is_none() {
                tried += 1;
                let template = plan.templates[rng.random_range(0..plan.templates.len())];
                let mut sets = HashMap::new();
                for s in &steps {
                    let mut pool: Vec<Demo> = pools.boot.get(s).unwrap_or(&empty).clone();
                    pool.extend(pools.labeled.get(s).unwrap_or(&empty).iter().take(plan.max_labeled_demos.max(plan.max_demos) * 4).cloned());
                    pool.dedup();
                    pool.shuffle(&mut rng);
                    let k = rng.random_range(1..=plan.max_demos.max(1)).min(pool.len());
                    sets.insert(s.clone(), pool.into_iter().take(k).collect::<Vec<_>>());
                }
                let params = with_demos(template, &|s| sets.get(s).cloned().unwrap_or_default());
                try_candidate!(params, "random demo set");
            }
        }
    }

    let (final_score, chosen) = best.unwrap_or((baseline_score, baseline_params));
    let stopped_early = job.budget.exhausted();
    let step_records = steps
        .iter()
        .filter_map(|s| {
            let id = dag.step_id(s)?;
            let sig = dag.step_signature(id)?;
            let p = chosen.get(s).cloned().unwrap_or_default();
            Some((
                s.clone(),
                StepRecord { signature: sig.name.clone(), template: p.template.name().to_string(), instruction: p.instruction.unwrap_or_else(|| sig.instruction.clone()), demos: p.demos },
            ))
        })
        .collect();
    let models = dag
        .models()
        .iter()
        .zip(job.program.executor().backends())
        .map(|(m, b)| {
            let id = b.identity();
            ModelRecord {
                name: m.name.clone(),
                provider: id.provider,
                model: id.name,
                weights_sha256: b.weights_sha256(),
                decoding: json!({
                    "temperature": m.params.temperature, "top_p": m.params.top_p, "top_k": m.params.top_k,
                    "max_tokens": m.params.max_tokens, "seed": m.params.seed, "stop": m.params.stop,
                }),
            }
        })
        .collect();
    Ok(Artifact {
        format: FORMAT.into(),
        version: VERSION,
        program: ProgramRecord {
            name: dag.name().to_string(),
            source_file: job.source_file.clone(),
            source: job.source.clone(),
            source_sha256: crate::fs::sha256_hex(job.source.as_bytes()),
            graph: graph_json(&dag),
        },
        steps: step_records,
        models,
        provenance: Provenance {
            loopc_version: env!("CARGO_PKG_VERSION").into(),
            optimizer: plan.optimizer.name().into(),
            settings: plan.settings(),
            seed: plan.seed,
            metric: job.metric.name().into(),
            train: DatasetRecord { source: job.train.source.clone(), sha256: job.train.sha256.clone(), examples: job.train.examples.len() },
            dev: DatasetRecord { source: job.dev.source.clone(), sha256: job.dev.sha256.clone(), examples: job.dev.examples.len() },
            baseline_score,
            final_score,
            candidates,
            model_calls: job.budget.calls(),
            stopped_early,
            timing: Timing {
                created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                wall_seconds: job.budget.elapsed().as_secs_f64(),
                cache_hits: job.budget.cache_hits(),
                ..Timing::default()
            },
        },
    })
}

/// Bootstrapped demos first, then labelled ones up to the limits.
fn bootstrap_set(pools: &Pools, step: &str, max_demos: usize, max_labeled: usize) -> Vec<Demo> {
    let mut out: Vec<Demo> = pools.boot.get(step).map(|d| d.iter().take(max_demos).cloned().collect()).unwrap_or_default();
    if let Some(labeled) = pools.labeled.get(step) {
        let room = max_demos.saturating_sub(out.len()).min(max_labeled);
        out.extend(labeled.iter().filter(|d| !out.contains(d)).take(room).cloned().collect::<Vec<_>>());
    }
    out
}

/// The step graph for the artifact: each step with its kind, target, model and inputs.
fn graph_json(dag: &Dag) -> Value {
    let steps: Vec<Value> = dag
        .steps()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let target = dag.step_signature(StepId(i)).map(|sig| sig.name.clone());
            let deps: Vec<String> = dag.dependencies(StepId(i)).iter().map(|d| dag.step(*d).name.clone()).collect();
            json!({
                "name": s.name,
                "kind": match s.kind { StepKind::Predict => "predict", StepKind::ChainOfThought => "chain_of_thought", StepKind::Call => "call" },
                "signature": target,
                "model": (s.kind != StepKind::Call).then(|| dag.model(s.model).name.clone()),
                "after": deps,
            })
        })
        .collect();
    let schedule: Vec<Vec<String>> = dag.schedule().iter().map(|l| l.iter().map(|s| dag.step(*s).name.clone()).collect()).collect();
    json!({ "steps": steps, "schedule": schedule })
}
