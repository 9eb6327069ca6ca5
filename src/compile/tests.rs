//! Orchestration tests of the optimizers and the LM judge with a rule-following backend (a
//! test double of the model; the real model is exercised in `tests/compile.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::dataset::{Dataset, Example};
use super::evaluate::{evaluate, evaluate_until, Budget};
use super::metric::Metric;
use super::optimize::{compile, Job, Plan};
use crate::graph::{Dag, OptimizerKind};
use crate::runtime::adapter::Template;
use crate::runtime::backend::{Backend, BackendError, Call, Choice, Completion, Identity};
use crate::runtime::executor::RunOptions;
use crate::Program;

/// Follows rules a test can reason about:
/// - a label choice is right (the label named in the input) only when the instruction says
///   "keyword" (or, for a backend that learns from demos, when the prompt has two demos);
///   otherwise it picks the first label;
/// - a bool choice (the judge) is true when the prompt contains "please";
/// - generation (instruction proposals) writes an instruction that says "keyword".
struct Rules {
    calls: AtomicU64,
    learns_from_demos: bool,
}

impl Rules {
    fn new(learns_from_demos: bool) -> Arc<Rules> {
        Arc::new(Rules { calls: AtomicU64::new(0), learns_from_demos })
    }
}

impl Backend for Rules {
    fn identity(&self) -> Identity {
        Identity { provider: "rules".into(), name: "test".into(), fingerprint: None }
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        self.calls.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let text = " Pick the team named by the ticket's keyword.".to_string();
        Box::pin(async move {
            Ok(calls
                .iter()
                .map(|_| Completion {
                    text: text.clone(),
                    prompt_tokens: 50,
                    cached_tokens: 0,
                    completion_tokens: 9,
                    from_cache: false,
                    shape: Default::default(),
                    structure_note: None,
                })
                .collect())
        })
    }

    fn supports_choice(&self) -> bool {
        true
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        self.calls.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let out = calls
            .iter()
            .map(|c| {
                let r = &c.request;
                let (user, system) = (r.user.to_plain(), r.system.to_plain());
                let bare: Vec<String> = labels.iter().map(|l| l.trim().trim_matches('"').to_string()).collect();
                let pick = if bare == ["true", "false"] {
                    usize::from(!user.contains("please"))
                } else if system.contains("keyword") || (self.learns_from_demos && r.demos.len() >= 2) {
                    let last_line = user.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                    bare.iter().position(|l| user.contains(&format!("kw-{l}")) || last_line.contains(&format!("kw-{l}"))).unwrap_or(0)
                } else {
                    0
                };
                let scores = (0..labels.len()).map(|i| if i == pick { -0.1 } else { -3.0 }).collect();
                Choice { scores, label_tokens: vec![1; labels.len()], prompt_tokens: 40, cached_tokens: 0, from_cache: false, pruned: Vec::new() }
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }
}

const SRC: &str = r#"program route "Route tickets"
input ticket: text
output team: label(billing, shipping, technical)
signature Route "Decide which team should handle the ticket." {
  in ticket: text
  out team: label(billing, shipping, technical)
}
signature Polite "Is the reply polite?" {
  in reply: text
  out polite: bool
}
step route = predict Route { ticket: input.ticket }
return { team: route.team }
metric accuracy = exact(output.team, example.team)
metric politeness = judge(Polite, reply: example.ticket)
"#;

/// An engine for programs on test backends: nothing is loaded or cached.
fn engine() -> crate::Engine {
    let options = crate::runtime::EngineOptions { responses: crate::runtime::CacheSetting::Off, ..Default::default() };
    crate::Engine::builder().options(options).build().unwrap()
}

fn dag() -> Dag {
    crate::graph::lower(&crate::syntax::parse(SRC).unwrap()).dag.unwrap()
}

fn program(backend: &Arc<Rules>) -> Program {
    Program::with_backends(&engine(), dag(), vec![backend.clone() as Arc<dyn Backend>], RunOptions::default()).unwrap()
}

fn data(name: &str, n: usize) -> Dataset {
    let teams = ["billing", "shipping", "technical"];
    let examples = (0..n)
        .map(|i| {
            let team = teams[(i * 7 + name.len()) % 3];
            let polite = if i % 2 == 0 { "please help" } else { "fix it now" };
            let fields: Map<String, Value> = json!({"ticket": format!("ticket {i}: kw-{team} {polite}"), "team": team}).as_object().cloned().unwrap();
            Example { origin: format!("{name}:{}", i + 1), fields }
        })
        .collect();
    Dataset { source: name.into(), sha256: "0".repeat(64), examples }
}

fn metric(name: &str, program: &Program) -> Metric {
    let spec = dag().metrics().iter().find(|m| m.name == name).cloned().unwrap();
    Metric::new(spec, None).unwrap().judged_by(program)
}

fn plan(optimizer: OptimizerKind, seed: u64) -> Plan {
    Plan {
        optimizer,
        max_demos: 2,
        max_labeled_demos: 2,
        candidates: 8,
        instructions: 2,
        minibatch: 6,
        templates: vec![Template::Chat, Template::Completion],
        teacher: None,
        seed,
        max_calls: None,
        max_tokens: None,
        max_time: None,
        concurrency: 3,
        retrieval: false,
        prune_labels: true,
    }
}

/// A compile of `program` (built from `source`) by accuracy, with no budget and no progress.
fn job(program: Program, source: &str, train: usize, dev: usize, plan: Plan) -> Job<'static> {
    Job {
        metric: metric("accuracy", &program),
        program,
        source_file: "route.loop".into(),
        source: source.into(),
        train: data("train", train),
        dev: data("dev", dev),
        plan,
        budget: Budget::new(None, None, None),
        progress: &|_| {},
        warm_start: None,
    }
}

async fn run(optimizer: OptimizerKind, seed: u64) -> crate::runtime::artifact::Artifact {
    let backend = Rules::new(false);
    let artifact = compile(job(program(&backend), SRC, 12, 12, plan(optimizer, seed))).await.unwrap();
    assert_eq!(artifact.provenance.model_calls, backend.calls.load(Ordering::Relaxed), "every call the backend saw is counted");
    artifact
}

#[tokio::test]
async fn instruction_search_finds_the_proposed_instruction_that_works() {
    let a = run(OptimizerKind::InstructionSearch, 5).await;
    let p = &a.provenance;
    assert!(p.baseline_score < 0.5, "the instruction as written picks the first label: {}", p.baseline_score);
    assert_eq!(p.final_score, 1.0, "the proposed instruction names the keyword rule");
    assert!(a.steps["route"].instruction.contains("keyword"));
    assert_eq!(p.proposed_instructions["route"], ["Pick the team named by the ticket's keyword."]);
    assert!(p.candidates.iter().any(|c| c.evaluated_on == 6), "minibatch trials are recorded");
    assert!(p.candidates.iter().filter(|c| c.evaluated_on == 12).count() >= 2, "the baseline and the leaders are scored on the whole dev set");
    assert_eq!(p.settings["minibatch"], 6);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_search() {
    for optimizer in [OptimizerKind::InstructionSearch, OptimizerKind::BootstrapRandomSearch] {
        let (mut a, mut b) = (run(optimizer, 11).await, run(optimizer, 11).await);
        a.provenance.timing = Default::default();
        b.provenance.timing = Default::default();
        assert_eq!(a, b, "{}", optimizer.name());
    }
}

#[tokio::test]
async fn a_judge_runs_its_rubric_per_example_and_its_calls_count() {
    let backend = Rules::new(false);
    let program = program(&backend);
    let judge = metric("politeness", &program);
    assert!(judge.needs_model());
    let examples = data("d", 4).examples;
    let e = evaluate(&program, &examples, &judge, 2, &Budget::new(None, None, None), &|| {}).await.unwrap();
    assert_eq!(e.scores, [1.0, 0.0, 1.0, 0.0], "polite tickets (every other one) pass the rubric");
    assert_eq!(e.model_calls, 8, "one program call and one judge call per example");
    assert!(e.traces[0].steps.iter().any(|s| s.step == "judge `politeness`"));
}

#[tokio::test]
async fn an_evaluation_stops_where_its_rule_says_with_the_first_examples_scores() {
    let backend = Rules::new(false);
    let program = program(&backend);
    let examples = data("d", 10).examples;
    let accuracy = metric("accuracy", &program);
    let whole = evaluate(&program, &examples, &accuracy, 4, &Budget::new(None, None, None), &|| {}).await.unwrap();
    assert!(!whole.stopped && whole.scores.len() == 10);
    // Stop once three answers were wrong: however the four runs at once finish, the scores
    // are the first examples', up to the third wrong one.
    let wrong = |s: &[f64]| s.iter().filter(|&&x| x == 0.0).count() >= 3;
    let e = evaluate_until(&program, &examples, &accuracy, 4, &Budget::new(None, None, None), &|| {}, &wrong).await.unwrap();
    let third_wrong = (1..=10).find(|&k| wrong(&whole.scores[..k])).unwrap();
    assert!(third_wrong < 10, "the fixture needs three wrong answers: {:?}", whole.scores);
    assert!(e.stopped && !e.cut_short);
    assert_eq!(e.scores, whole.scores[..third_wrong], "{:?}", whole.scores);
    assert_eq!(e.traces.len(), third_wrong);
}

#[tokio::test]
async fn a_teacher_model_runs_the_bootstrap() {
    // Two models: the student (first label always) and a teacher that knows the rule.
    let src = SRC.replace(
        "step route = predict Route { ticket: input.ticket }",
        "model student = onnx(\"none\")\nmodel teacher = onnx(\"none\")\nstep route = predict Route { ticket: input.ticket } using student",
    );
    let dag = crate::graph::lower(&crate::syntax::parse(&src).unwrap()).dag.unwrap_or_else(|| panic!("the test program does not check"));
    let student = Rules::new(true);
    struct Teacher(Arc<Rules>);
    impl Backend for Teacher {
        fn identity(&self) -> Identity {
            Identity { provider: "rules".into(), name: "teacher".into(), fingerprint: None }
        }
        fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
            self.0.generate(calls)
        }
        fn supports_choice(&self) -> bool {
            true
        }
        fn choose(&self, mut calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
            for c in &mut calls {
                c.request.system.push_markup(" (keyword)");
            }
            self.0.choose(calls, labels)
        }
    }
    let teacher = Arc::new(Teacher(Rules::new(false)));
    let n_models = dag.models().len();
    let teacher_id = crate::graph::ModelId(dag.models().iter().position(|m| m.name == "teacher").unwrap());
    let student_id = dag.models().iter().position(|m| m.name == "student").unwrap();
    let backends: Vec<Arc<dyn Backend>> =
        (0..n_models).map(|i| if i == student_id { student.clone() as Arc<dyn Backend> } else { teacher.clone() as Arc<dyn Backend> }).collect();
    let program = Program::with_backends(&engine(), dag, backends, RunOptions::default()).unwrap();
    let mut plan = plan(OptimizerKind::BootstrapFewShot, 1);
    plan.teacher = Some(teacher_id);
    let a = compile(job(program, &src, 9, 6, plan)).await.unwrap();
    assert_eq!(teacher.0.calls.load(Ordering::Relaxed), 9, "the teacher ran every training example");
    let demos = &a.steps["route"].demos;
    assert_eq!(demos.len(), 2);
    assert!(
        demos.iter().all(|d| d.inputs["ticket"].as_str().unwrap().contains(&format!("kw-{}", d.outputs["team"].as_str().unwrap()))),
        "demos are the teacher's right answers"
    );
    assert_eq!(a.provenance.settings["teacher"], "teacher");
}

/// Label scores as a function of the ticket text and the labels (in label order): a model
/// whose biases a test can write down.
struct Scoring {
    calls: AtomicU64,
    scores: fn(&str, &[String]) -> Vec<f32>,
}

impl Backend for Scoring {
    fn identity(&self) -> Identity {
        Identity { provider: "rules".into(), name: "scoring".into(), fingerprint: None }
    }

    fn generate(&self, _calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        Box::pin(async move { Err(BackendError::Unsupported("this test model only scores labels".into())) })
    }

    fn supports_choice(&self) -> bool {
        true
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        self.calls.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let bare: Vec<String> = labels.iter().map(|l| l.trim().trim_matches('"').to_string()).collect();
        let out = calls
            .iter()
            .map(|c| {
                let scores = (self.scores)(&c.request.user.to_plain(), &bare);
                Choice { label_tokens: vec![1; scores.len()], scores, prompt_tokens: 30, cached_tokens: 0, from_cache: false, pruned: Vec::new() }
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }
}

/// Tickets whose team is `team_of(i)`.
fn tickets(name: &str, n: usize, team_of: fn(usize) -> &'static str) -> Dataset {
    let examples = (0..n)
        .map(|i| {
            let team = team_of(i);
            let fields: Map<String, Value> = json!({"ticket": format!("ticket {i} of {name}: kw-{team}"), "team": team}).as_object().cloned().unwrap();
            Example { origin: format!("{name}:{}", i + 1), fields }
        })
        .collect();
    Dataset { source: name.into(), sha256: "0".repeat(64), examples }
}

/// Compiles the routing program on `scores` with `team_of` data (40 train, 30 dev).
async fn compile_scored(scores: fn(&str, &[String]) -> Vec<f32>, team_of: fn(usize) -> &'static str) -> (crate::runtime::artifact::Artifact, Program) {
    let backend = Arc::new(Scoring { calls: AtomicU64::new(0), scores });
    let program = Program::with_backends(&engine(), dag(), vec![backend.clone() as Arc<dyn Backend>], RunOptions::default()).unwrap();
    let mut job = job(program.clone(), SRC, 0, 0, plan(OptimizerKind::BootstrapRandomSearch, 4));
    job.train = tickets("train", 40, team_of);
    job.dev = tickets("dev", 30, team_of);
    job.plan.candidates = 2;
    let artifact = compile(job).await.unwrap();
    assert_eq!(artifact.provenance.model_calls, backend.calls.load(Ordering::Relaxed), "every call the backend saw is counted");
    (artifact, program)
}

/// The dev accuracy of `artifact` run afresh (what `loopc eval` does).
async fn rerun(artifact: &crate::runtime::artifact::Artifact, program: &Program, team_of: fn(usize) -> &'static str) -> f64 {
    // The test model is no local model: record it as one so the artifact validates.
    let mut artifact = artifact.clone();
    artifact.models[0].provider = "onnx".into();
    artifact.models[0].weights_sha256 = Some("0".repeat(64));
    let params = artifact.validate("a.json", program.dag()).unwrap();
    let compiled = program.with_params(params);
    let dev = tickets("dev", 30, team_of);
    let mut right = 0;
    for ex in &dev.examples {
        let out = compiled.run(ex.inputs(compiled.dag())).await.unwrap();
        right += usize::from(out["team"] == ex.fields["team"]);
    }
    right as f64 / dev.examples.len() as f64
}

fn thirds(i: usize) -> &'static str {
    ["billing", "shipping", "technical"][i % 3]
}

#[tokio::test]
async fn a_model_biased_toward_one_label_is_corrected_by_a_learned_bias() {
    // The right label scores -1, but `billing` always scores -0.5 when it is wrong: the raw
    // sum answers `billing` every time (a third right); a bias against `billing` fixes it.
    let biased = |user: &str, labels: &[String]| -> Vec<f32> {
        labels
            .iter()
            .map(|l| {
                if user.contains(&format!("kw-{l}")) {
                    -1.0
                } else if l == "billing" {
                    -0.5
                } else {
                    -3.0
                }
            })
            .collect()
    };
    let (a, program) = compile_scored(biased, thirds).await;
    let step = &a.steps["route"];
    assert_eq!(step.scoring.name(), "learned_bias", "{:?}", a.provenance.selection);
    assert!((a.provenance.baseline_score - 1.0 / 3.0).abs() < 1e-9, "{}", a.provenance.baseline_score);
    assert_eq!(a.provenance.final_score, 1.0);
    let selection = a.provenance.selection.as_ref().unwrap();
    assert!(selection.evaluated_on.starts_with("train + dev (70 examples"), "{}", selection.evaluated_on);
    let chosen = &selection.entrants[selection.chosen];
    assert!(chosen.low <= chosen.mean && chosen.mean <= chosen.high && chosen.examples > 30, "{chosen:?}");
    assert_eq!(rerun(&a, &program, thirds).await, a.provenance.final_score, "running the artifact reproduces its dev score");
    // The artifact keeps the numbers, and reads back.
    let back = crate::runtime::artifact::Artifact::parse("a.json", &a.to_json()).unwrap();
    assert_eq!(back.steps["route"].scoring, step.scoring);
}

#[tokio::test]
async fn a_model_worse_than_the_majority_label_ships_no_worse_than_the_majority() {
    // Seven tickets in ten are billing; the model always names the next team after the right
    // one, which no per-label bias can undo.
    let wrong = |user: &str, labels: &[String]| -> Vec<f32> {
        let right = labels.iter().position(|l| user.contains(&format!("kw-{l}"))).unwrap_or(0);
        (0..labels.len()).map(|i| if i == (right + 1) % labels.len() { -0.1 } else { -2.0 }).collect()
    };
    let skewed = |i: usize| if i % 10 < 7 { "billing" } else { ["shipping", "technical"][i % 2] };
    let (a, program) = compile_scored(wrong, skewed).await;
    assert_eq!(a.provenance.baseline_score, 0.0);
    let selection = a.provenance.selection.as_ref().unwrap();
    let constant = selection.entrants.last().unwrap();
    assert_eq!(constant.scoring, "constant");
    assert!(selection.entrants[selection.chosen].mean >= constant.mean, "{selection:?}");
    assert!((a.provenance.final_score - 0.7).abs() < 1e-9, "the shipped program answers billing: {}", a.provenance.final_score);
    assert_eq!(rerun(&a, &program, skewed).await, a.provenance.final_score);
}

#[tokio::test]
async fn demos_retrieved_per_input_are_tried_only_when_asked_for() {
    let right = |user: &str, labels: &[String]| -> Vec<f32> { labels.iter().map(|l| if user.contains(&format!("kw-{l}")) { -0.1 } else { -2.0 }).collect() };
    let mut tried = Vec::new();
    for retrieval in [false, true] {
        let backend = Arc::new(Scoring { calls: AtomicU64::new(0), scores: right });
        let program = Program::with_backends(&engine(), dag(), vec![backend as Arc<dyn Backend>], RunOptions::default()).unwrap();
        let mut job = job(program, SRC, 0, 0, plan(OptimizerKind::BootstrapRandomSearch, 4));
        job.train = tickets("train", 20, thirds);
        job.dev = tickets("dev", 12, thirds);
        job.plan.candidates = 1;
        job.plan.retrieval = retrieval;
        let a = compile(job).await.unwrap();
        tried.push(a.provenance.candidates.iter().any(|c| c.description.contains("demos=retrieved")));
        assert_eq!(a.provenance.settings.contains_key("retrieval"), retrieval, "{:?}", a.provenance.settings);
    }
    assert_eq!(tried, [false, true], "a retrieval candidate only with `retrieval: true`");
}

#[tokio::test]
async fn the_final_choice_of_the_program_as_written_does_not_depend_on_how_many_candidates_ran() {
    // Right on two tickets in three, so every scoring mode has something to weigh.
    let mostly = |user: &str, labels: &[String]| -> Vec<f32> {
        let odd = user.bytes().map(u32::from).sum::<u32>() % 3 == 0;
        labels.iter().map(|l| if user.contains(&format!("kw-{l}")) != odd { -0.2 } else { -1.5 }).collect()
    };
    let mut as_written = Vec::new();
    for candidates in [1, 3] {
        let backend = Arc::new(Scoring { calls: AtomicU64::new(0), scores: mostly });
        let program = Program::with_backends(&engine(), dag(), vec![backend as Arc<dyn Backend>], RunOptions::default()).unwrap();
        let mut job = job(program, SRC, 0, 0, plan(OptimizerKind::BootstrapRandomSearch, 4));
        job.train = tickets("train", 30, thirds);
        job.dev = tickets("dev", 15, thirds);
        job.plan.candidates = candidates;
        let a = compile(job).await.unwrap();
        let selection = a.provenance.selection.unwrap();
        let entrants: Vec<(String, f64, f64, f64)> = selection
            .entrants
            .iter()
            .filter(|e| e.description.starts_with("the program as written"))
            .map(|e| (e.scoring.clone(), e.mean, e.low, e.high))
            .collect();
        assert_eq!(entrants.len(), 4, "{:?}", selection.entrants);
        as_written.push(entrants);
    }
    assert_eq!(as_written[0], as_written[1], "the same folds and resamples whatever the search drew before");
}

/// [`Scoring`] that answers bounded choices as the local model does: the winner under each
/// way of deciding exactly, every other label with an upper bound (half its log-probability)
/// where that bound still loses under every way, marked pruned.
struct Pruning {
    inner: Arc<Scoring>,
    pruned: AtomicU64,
    /// Calls that came bounded (whether or not a label could be dropped).
    bounded: AtomicU64,
}

impl Backend for Pruning {
    fn identity(&self) -> Identity {
        self.inner.identity()
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        self.inner.generate(calls)
    }

    fn supports_choice(&self) -> bool {
        true
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        self.inner.choose(calls, labels)
    }

    fn choose_bounded(
        &self,
        calls: Vec<Call>,
        labels: Vec<String>,
        bounds: Arc<crate::model::ChoiceBounds>,
    ) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(async move {
            self.bounded.fetch_add(calls.len() as u64, Ordering::Relaxed);
            let mut out = self.inner.choose(calls, labels).await?;
            let adjusted = |m: &[crate::model::Adjust], c: usize, s: f32, n: u32| {
                let a = m[c];
                ((f64::from(s) * a.scale / if a.per_token { f64::from(n.max(1)) } else { 1.0 }) + a.offset) as f32
            };
            for choice in &mut out {
                let n = choice.scores.len();
                let winners: Vec<usize> = bounds
                    .modes
                    .iter()
                    .map(|m| (0..n).fold(0, |b, c| if adjusted(m, c, choice.scores[c], 1) > adjusted(m, b, choice.scores[b], 1) { c } else { b }))
                    .collect();
                choice.pruned = vec![false; n];
                for c in (0..n).filter(|c| !winners.contains(c)) {
                    let bound = choice.scores[c] / 2.0;
                    let loses = bounds.modes.iter().zip(&winners).all(|(m, &w)| adjusted(m, c, bound, 1) < adjusted(m, w, choice.scores[w], 1));
                    if loses {
                        choice.scores[c] = bound;
                        choice.pruned[c] = true;
                        self.pruned.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(out)
        })
    }
}

/// A model biased toward `billing` and wrong on a quarter of the tickets: every mode has
/// something to weigh.
fn biased_a_quarter(user: &str, labels: &[String]) -> Vec<f32> {
    let odd = user.bytes().map(u32::from).sum::<u32>() % 4 == 0;
    labels
        .iter()
        .map(|l| {
            if user.contains(&format!("kw-{l}")) != odd {
                -1.0
            } else if l == "billing" {
                -0.6
            } else {
                -2.5 - l.len() as f32 / 10.0
            }
        })
        .collect()
}

/// Compiles the tickets program on `train` and `dev` examples with every label scored and
/// with pruning; returns both artifacts and how many of the pruning compile's calls came
/// bounded.
async fn compiled_full_and_pruned(train: usize, dev: usize) -> (crate::runtime::artifact::Artifact, crate::runtime::artifact::Artifact, u64) {
    let mut artifacts = Vec::new();
    let mut bounded = 0;
    for prune in [false, true] {
        let backend = Arc::new(Pruning {
            inner: Arc::new(Scoring { calls: AtomicU64::new(0), scores: biased_a_quarter }),
            pruned: AtomicU64::new(0),
            bounded: AtomicU64::new(0),
        });
        let program = Program::with_backends(&engine(), dag(), vec![backend.clone() as Arc<dyn Backend>], RunOptions::default()).unwrap();
        let mut job = job(program, SRC, 0, 0, plan(OptimizerKind::BootstrapRandomSearch, 4));
        job.train = tickets("train", train, thirds);
        job.dev = tickets("dev", dev, thirds);
        job.plan.candidates = 3;
        job.plan.prune_labels = prune;
        let a = compile(job).await.unwrap();
        if prune {
            bounded = backend.bounded.load(Ordering::Relaxed);
            assert_eq!(backend.pruned.load(Ordering::Relaxed) > 0, bounded > 0, "bounded calls dropped labels");
        } else {
            assert_eq!(backend.bounded.load(Ordering::Relaxed), 0, "no call bounded without pruning");
        }
        assert_eq!(a.provenance.model_calls, backend.inner.calls.load(Ordering::Relaxed));
        artifacts.push(a);
    }
    let pruned = artifacts.pop().unwrap();
    (artifacts.pop().unwrap(), pruned, bounded)
}

fn assert_same_artifact(full: &crate::runtime::artifact::Artifact, pruned: &crate::runtime::artifact::Artifact) {
    assert_eq!(pruned.steps, full.steps, "the same demos, template and fitted numbers");
    assert_eq!(pruned.provenance.selection, full.provenance.selection);
    assert_eq!(pruned.provenance.candidates, full.provenance.candidates);
    assert_eq!((pruned.provenance.baseline_score, pruned.provenance.final_score), (full.provenance.baseline_score, full.provenance.final_score));
    // Pruning changes how much of each call's labels is scored, never which calls are made.
    assert_eq!(pruned.provenance.model_calls, full.provenance.model_calls);
}

fn learned_bias_entrants(a: &crate::runtime::artifact::Artifact) -> usize {
    a.provenance.selection.as_ref().map_or(0, |s| s.entrants.iter().filter(|e| e.scoring == "learned_bias").count())
}

#[tokio::test]
async fn with_enough_examples_per_label_the_learned_bias_is_fitted_on_full_scores_and_pruning_changes_nothing() {
    // 70 examples over 3 labels: the learned bias is a mode; the runs it may be fitted to
    // score every label, so only the search's minibatch trials (none here) are pruned.
    let (full, pruned, bounded) = compiled_full_and_pruned(40, 30).await;
    assert_eq!(bounded, 0);
    // Fitted (cross-validated) for both finalists: a pruned score reaching a fit would move
    // its entrants' means.
    assert_eq!(learned_bias_entrants(&full), 2, "{:?}", full.provenance.selection);
    assert_same_artifact(&full, &pruned);
}

#[tokio::test]
async fn with_few_examples_per_label_every_run_but_the_content_free_ones_is_pruned_and_ships_the_same_artifact() {
    // 21 examples over 3 labels (7 each): no learned bias, so the program as written, the
    // bootstrap, the search and the finalists all drop labels, and what ships is the same.
    let (full, pruned, bounded) = compiled_full_and_pruned(12, 9).await;
    assert_eq!(learned_bias_entrants(&full), 0, "{:?}", full.provenance.selection);
    assert!(full.provenance.selection.as_ref().is_some_and(|s| s.entrants.iter().any(|e| e.scoring == "calibrated")));
    // Every call but the three content-free inputs of each whole-dev candidate came bounded.
    let whole_dev = pruned.provenance.candidates.len() as u64;
    assert_eq!(bounded, pruned.provenance.model_calls - 3 * whole_dev, "{:?}", pruned.provenance.candidates);
    assert_same_artifact(&full, &pruned);
}
