//! `loopc bench loop`: the closed loop, measured. A labelled stream is served round by round
//! through the real runtime and a real (temporary SQLite) store; simulated users correct every
//! answer (the gold label with probability 1 − noise, a random one otherwise; poisoned users
//! always a wrong one); after each round the real learn path (`loopc::learn::learn`) compiles
//! a candidate and promotes it only if it is not worse on the frozen holdout. Each round
//! reports, on its items before learning from them, the static program's accuracy and the
//! loop's, whether it promoted, the holdout scores, and the round's seconds: serving its items
//! with the loop's program (runs and feedback stored) plus learning. The static program, the
//! control, answers the same items after the round, outside its time. Figures only, no
//! thresholds.
//!
//! With `--memory` the loop's program is served with online memory, as `serve` serves it: the
//! program's `memory` declarations, a [`Memory`] brought up to date with the store before each
//! item (so a correction stored earlier in the round is recalled for later similar items), and
//! the holdout as the trust reference, as `serve --holdout` gives it. Each round also counts
//! the items that recalled at least one demo, and how many poisoning and other users memory's
//! trust estimate puts below the minimum trust.
//!
//! With `--review SHARE` a reviewer also judges that share of the items (drawn apart from the
//! users' draws, so the same items, users and corrections as without it), storing the gold
//! label as `annotation` feedback on the same run, as a review queue would: the evidence trust
//! is estimated from, and reviewed runs that the rounds' shared rule holds out to grow the
//! holdout (one in two, [`RoundSettings::DEFAULT`]). Without it nobody reviews, as before.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use loopc::compile::{Dataset, Event, Example};
use loopc::graph::{OptimizerSettings, Type};
use loopc::learn::trust::DEFAULT_MIN_TRUST;
use loopc::learn::{self, Current, Memory, Round, RoundSettings, TrustTable};
use loopc::runtime::memory::{DemoMemory, Recall, Recalled};
use loopc::runtime::{CacheSetting, EngineOptions, Program, ProgramOptions};
use loopc::store::{FeedbackPayload, FeedbackSource, NewFeedback, NewRun, Store};
use loopc::Engine;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::args::BenchLoopArgs;
use super::{source, Outcome};

/// One item of a round: the example, who corrects it and what they say, and the gold label
/// when a reviewer also judges it.
struct Item {
    example: Example,
    user: String,
    says: String,
    review: Option<String>,
}

/// Draws a round's items: the next ones in the stream, or after the drift point, mostly of
/// the labels in the second half of the label list (the label mix changes).
fn draw(stream: &mut Vec<Example>, k: usize, drifted: bool, field: &str, labels: &[String], rng: &mut ChaCha8Rng) -> Vec<Example> {
    let late: Vec<&String> = labels[labels.len() / 2..].iter().collect();
    let mut out = Vec::with_capacity(k);
    while out.len() < k && !stream.is_empty() {
        let pick = if drifted && rng.random_bool(0.8) {
            stream.iter().position(|e| e.fields.get(field).and_then(Value::as_str).is_some_and(|l| late.iter().any(|x| *x == l))).unwrap_or(0)
        } else {
            0
        };
        out.push(stream.remove(pick));
    }
    out
}

/// Whether the static program answers `item` right (the control: not stored, not timed as
/// part of the round).
async fn control(item: &Item, stat: &Program, field: &str) -> bool {
    let out = stat.run(item.example.inputs(stat.dag())).await.ok();
    out.as_ref().and_then(|o| o.get(field)) == item.example.fields.get(field)
}

/// Serves `item` with the loop's program, stores the run and the simulated user's correction,
/// and says whether the answer was right.
async fn serve_item(item: &Item, looped: &Program, store: &Store, field: &str, artifact: Option<&str>) -> anyhow::Result<bool> {
    let inputs: Map<String, Value> = item.example.inputs(looped.dag());
    let gold = item.example.fields.get(field).cloned().unwrap_or(Value::Null);
    let (loop_out, trace) = looped.run_traced(inputs.clone()).await;
    let loop_out = loop_out.ok();
    let mut run = NewRun::new(looped.dag().name(), Value::Object(inputs));
    run.user_id = Some(item.user.clone());
    run.outputs = loop_out.clone().map(Value::Object);
    run.artifact_hash = artifact.map(str::to_string);
    run.latency_ms = trace.latency_ms;
    run.trace = serde_json::to_value(&trace)?;
    let recorded = store.record_run(run).await?;
    if let Some(id) = recorded.run_id() {
        let mut fb = NewFeedback::new(id.clone(), "correction", FeedbackPayload::Correction(json!({ field: item.says })));
        fb.source = FeedbackSource::User;
        fb.user_id = Some(item.user.clone());
        store.add_feedback(fb).await?;
        if let Some(gold) = &item.review {
            // The reviewer judges the same run after its user: a correction to the gold label
            // (the answer kept when it was right).
            let mut fb = NewFeedback::new(id.clone(), "correction", FeedbackPayload::Correction(json!({ field: gold })));
            fb.source = FeedbackSource::Annotation;
            fb.user_id = Some(REVIEWER.to_string());
            store.add_feedback(fb).await?;
        }
    }
    Ok(loop_out.as_ref().and_then(|o| o.get(field)) == Some(&gold))
}

/// Added to `--seed` for the reviewer's draws.
const REVIEW_SEED: u64 = 0x7265_7669_6577;

/// The simulated reviewer's user id.
const REVIEWER: &str = "reviewer";

/// The loop's online memory, noting the inputs it recalled demos for (the executor may ask
/// more than once per request, so inputs are counted, not calls).
struct Counted {
    memory: Memory,
    hits: Mutex<HashSet<String>>,
}

impl Counted {
    /// Inputs recalled for since the last call, which starts the count again.
    fn take_hits(&self) -> usize {
        std::mem::take(&mut *self.hits.lock().unwrap_or_else(|e| e.into_inner())).len()
    }
}

impl DemoMemory for Counted {
    fn recall(&self, ask: &Recall<'_>) -> Vec<Recalled> {
        let recalled = self.memory.recall(ask);
        if !recalled.is_empty() {
            self.hits.lock().unwrap_or_else(|e| e.into_inner()).insert(Value::Object(ask.inputs.clone()).to_string());
        }
        recalled
    }
}

/// What one round measured.
#[derive(Debug, serde::Serialize)]
struct RoundFigures {
    round: usize,
    n: usize,
    /// The static program's accuracy on the round's items (the control).
    #[serde(rename = "static")]
    static_accuracy: f64,
    /// The loop's accuracy on them, before learning from them.
    #[serde(rename = "loop")]
    loop_accuracy: f64,
    /// Items that recalled at least one demo from online memory (with `--memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_hits: Option<usize>,
    /// Items a reviewer also judged.
    reviewed: usize,
    /// After the round, how many poisoning and how many other users online memory's trust
    /// estimate puts below the minimum trust (with `--memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    low_trust: Option<LowTrust>,
    /// Holdout items the gate compared on, and how many of them reviewed runs grew it by.
    holdout_items: Option<usize>,
    holdout_grown: Option<usize>,
    promoted: bool,
    holdout_current: Option<f64>,
    holdout_candidate: Option<f64>,
    /// Holdout items the candidate was scored on, when its scoring stopped early because it
    /// could no longer reach the current program's score (`holdout_candidate` is then the
    /// most it could have scored).
    #[serde(skip_serializing_if = "Option::is_none")]
    holdout_stopped_after: Option<usize>,
    /// The round's time: serving its items, then learning.
    seconds: f64,
    /// Where it went: serving the items (runs and feedback stored), the compile (the export
    /// included), and scoring current and candidate on the holdout (the record included).
    phases: Phases,
    reason: String,
}

/// A round's seconds by phase.
#[derive(Debug, serde::Serialize, Default, Clone, Copy)]
struct Phases {
    serve: f64,
    compile: f64,
    holdout: f64,
}

/// The labelled task: the one label output, its labels, the stream (shuffled) and the holdout.
struct Task {
    field: String,
    labels: Vec<String>,
    stream: Vec<Example>,
    holdout: Dataset,
}

/// Reads the task of `args` for the program `dag`.
fn task(args: &BenchLoopArgs, dag: &loopc::graph::Dag, rng: &mut ChaCha8Rng) -> anyhow::Result<Task> {
    let (field, labels) = match dag.outputs() {
        [f] => match &f.ty {
            Type::Label(l) => (f.name.clone(), l.clone()),
            _ => anyhow::bail!("bench loop simulates corrections of one label output; `{}` has a `{}` output", args.program.display(), f.ty),
        },
        _ => anyhow::bail!("bench loop simulates corrections of one label output; this program has {}", dag.outputs().len()),
    };
    let metric = super::compile::pick_metric(dag, None, None)?;
    let mut stream = super::compile::load_data(&args.stream, dag, &metric)?.examples;
    let holdout_all = super::compile::load_data(&args.holdout, dag, &metric)?;
    let holdout = Dataset { examples: holdout_all.examples.iter().take(args.holdout_limit).cloned().collect(), ..holdout_all };
    stream.shuffle(rng);
    Ok(Task { field, labels, stream, holdout })
}

/// Users below the minimum trust, by kind.
#[derive(Debug, serde::Serialize)]
struct LowTrust {
    /// Poisoning users below it (of all of them).
    poisoners: usize,
    /// Other users below it.
    others: usize,
}

/// The simulated users of a run of the bench.
struct Users {
    names: Vec<String>,
    /// The first this many always give a wrong label.
    poisoned: usize,
    noise: f64,
    /// The share of items a reviewer also judges.
    review: f64,
    /// The reviewer's own draws, apart from the users', so a run with `--review` serves the
    /// same items to the same users saying the same things as one without.
    review_rng: ChaCha8Rng,
}

impl Users {
    /// Who corrects each example and what they say. Every random draw happens here, in order,
    /// so results do not depend on timing.
    /// How many poisoning and other users `trust` puts below the minimum trust.
    fn low_trust(&self, trust: &TrustTable) -> LowTrust {
        let below: HashSet<&str> = trust.below(DEFAULT_MIN_TRUST).into_iter().map(|(u, _)| u).collect();
        let (poisoners, others) = self.names.split_at(self.poisoned.min(self.names.len()));
        let count = |users: &[String]| users.iter().filter(|u| below.contains(u.as_str())).count();
        LowTrust { poisoners: count(poisoners), others: count(others) }
    }

    fn correct(&mut self, examples: Vec<Example>, task: &Task, rng: &mut ChaCha8Rng) -> Vec<Item> {
        let labels = &task.labels;
        examples
            .into_iter()
            .map(|example| {
                let gold = example.fields.get(&task.field).and_then(Value::as_str).unwrap_or_default().to_string();
                let u = rng.random_range(0..self.names.len());
                let noisy = rng.random_bool(self.noise);
                let random = labels[rng.random_range(0..labels.len())].clone();
                let says = if u < self.poisoned {
                    // A poisoning user always names a wrong label: the next one along.
                    let i = labels.iter().position(|l| *l == gold).unwrap_or(0);
                    labels[(i + 1) % labels.len()].clone()
                } else if noisy {
                    random
                } else {
                    gold.clone()
                };
                let reviewed = self.review > 0.0 && self.review_rng.random_bool(self.review);
                Item { example, user: self.names[u].clone(), says, review: reviewed.then_some(gold) }
            })
            .collect()
    }
}

/// The loop under measurement: the store, the program it serves and what it learned.
struct Loop<'a> {
    args: &'a BenchLoopArgs,
    engine: &'a Engine,
    store: &'a Store,
    rt: &'a tokio::runtime::Runtime,
    name: String,
    current: Current,
    looped: Program,
    stat: Program,
    /// Online memory, with `--memory`.
    memory: Option<Arc<Counted>>,
}

impl Loop<'_> {
    /// `program`, recalling from the loop's memory when it has one.
    fn with_memory(&self, program: Program) -> Program {
        match &self.memory {
            Some(m) => program.with_memory(m.clone()),
            None => program,
        }
    }

    /// Round `r` on `items`: serve them with the loop's program (runs and corrections stored),
    /// learn, then answer them with the static program outside the round's time.
    fn round(&mut self, r: usize, items: &[Item], task: &Task, users: &Users) -> anyhow::Result<RoundFigures> {
        let (args, field) = (self.args, task.field.as_str());
        let hash = self.current.artifact_hash();
        if let Some(m) = &self.memory {
            m.take_hits();
        }
        let t = Instant::now();
        // In waves of `--concurrency` items served at once, memory brought up to date with the
        // store before each wave (as `serve` does before each request): every item of a wave
        // recalls what the users of all earlier waves said, whatever order its neighbours
        // finish in, so a run is the same every time.
        let mut served: Vec<bool> = Vec::with_capacity(items.len());
        for wave in items.chunks(args.concurrency.max(1)) {
            if let Some(m) = &self.memory {
                self.rt.block_on(m.memory.sync(self.store))?;
            }
            let answers = self.rt.block_on(
                stream::iter(wave).map(|item| serve_item(item, &self.looped, self.store, field, hash.as_deref())).buffered(wave.len()).collect::<Vec<_>>(),
            );
            served.extend(answers.into_iter().collect::<anyhow::Result<Vec<bool>>>()?);
        }
        if let Some(m) = &self.memory {
            // What a server reads before its next request: the round's last feedback too, so
            // the trust figures below count every reviewed item of the round.
            self.rt.block_on(m.memory.sync(self.store))?;
        }
        let served_at = t.elapsed().as_secs_f64();
        let share = |right: &[bool]| right.iter().filter(|r| **r).count() as f64 / right.len().max(1) as f64;
        let loop_accuracy = share(&served);
        let memory_hits = self.memory.as_ref().map(|m| m.take_hits());
        if !args.json {
            let hits = memory_hits.map_or(String::new(), |h| format!(", {h} recalled from memory"));
            eprintln!("round {r}: served {} items (loop {loop_accuracy:.3}{hits}); learning …", served.len());
        }
        // When the round's holdout scoring begins, to split its time between compile and gate.
        let holdout_from: Mutex<Option<f64>> = Mutex::new(None);
        let mark = |e: Event<'_>| {
            if matches!(e, Event::Phase(p, _) if p == learn::HOLDOUT_PHASE) {
                if let Ok(mut at) = holdout_from.lock() {
                    *at = Some(t.elapsed().as_secs_f64());
                }
            }
        };
        // The shared round defaults, but for the holdout: the bench's frozen file alone, so
        // every stored correction may be learned from.
        let round = Round {
            holdout: Some(task.holdout.clone()),
            search: OptimizerSettings { seed: Some(args.seed + r as u64), candidates: args.candidates, ..OptimizerSettings::default() },
            settings: RoundSettings { margin: args.margin, max_rows: args.max_rows, holdout_share: 0.0, ..RoundSettings::DEFAULT },
            progress: &mark,
            ..Round::new(self.engine, self.store, self.current.clone())
        };
        let (decision, reason) = match self.rt.block_on(learn::learn(round)) {
            Ok(o) => {
                let d = o.decision;
                if d.promote {
                    self.looped = self.with_memory(self.engine.load_artifact(&self.name, &o.candidate, ProgramOptions::default())?);
                    self.current.artifact = Some(o.candidate);
                }
                let reason = d.reason.clone();
                (Some(d), reason)
            }
            Err(e @ learn::LearnError::NotEnoughData { .. }) => (None, e.to_string()),
            Err(e) => return Err(e.into()),
        };
        let promoted = decision.as_ref().is_some_and(|d| d.promote);
        let seconds = t.elapsed().as_secs_f64();
        let holdout_at = holdout_from.lock().ok().and_then(|at| *at).unwrap_or(seconds);
        let phases = Phases { serve: served_at, compile: holdout_at - served_at, holdout: seconds - holdout_at };
        // The control, after the round and outside its time: the static program on the same
        // items.
        let control: Vec<bool> =
            self.rt.block_on(stream::iter(items).map(|item| control(item, &self.stat, field)).buffered(args.concurrency.max(1)).collect::<Vec<_>>());
        let static_accuracy = share(&control);
        let low_trust = self.memory.as_ref().map(|m| users.low_trust(&m.memory.trust()));
        if !args.json {
            // The round's figures as they come, so a long run says what it measured so far.
            let holdout = decision.as_ref().map_or(String::new(), |d| format!(" on {} holdout items ({} grown)", d.items, d.grown));
            let trust = low_trust
                .as_ref()
                .map_or(String::new(), |l| format!("; below trust {DEFAULT_MIN_TRUST}: {} poisoning and {} other users", l.poisoners, l.others));
            eprintln!(
                "round {r}: {} ({reason}){holdout} in {seconds:.1} s (serving {:.1}, compile {:.1}, holdout {:.1}); static {static_accuracy:.3}, loop {loop_accuracy:.3}{trust}",
                if promoted { "promoted" } else { "kept the current program" },
                phases.serve,
                phases.compile,
                phases.holdout
            );
        }
        Ok(RoundFigures {
            round: r,
            n: served.len(),
            static_accuracy,
            loop_accuracy,
            memory_hits,
            reviewed: items.iter().filter(|i| i.review.is_some()).count(),
            low_trust,
            promoted,
            holdout_current: decision.as_ref().map(|d| d.current),
            holdout_candidate: decision.as_ref().map(|d| d.candidate),
            holdout_stopped_after: decision.as_ref().and_then(|d| d.stopped_after),
            holdout_items: decision.as_ref().map(|d| d.items),
            holdout_grown: decision.as_ref().map(|d| d.grown),
            seconds,
            phases,
            reason,
        })
    }
}

/// Runs `loopc bench loop`.
pub fn run(args: &BenchLoopArgs, color: bool) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.rounds > 0 && args.per_round > 0 && args.users > 0, "--rounds, --per-round and --users must be at least 1");
    let loaded = source::load(&args.program, color)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut task = task(args, &loaded.dag, &mut rng)?;
    let dir = tempfile::tempdir()?;
    let options =
        EngineOptions { responses: CacheSetting::Dir(dir.path().join("responses")), load: args.batching.load_options(false), ..EngineOptions::default() };
    let engine = Engine::builder().options(options).progress(std::sync::Arc::new(super::progress::ConsoleProgress::new())).build()?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let store = rt.block_on(Store::open(&format!("sqlite://{}", dir.path().join("store.db").display())))?;
    let source_text = loaded.file.source().to_string();
    let name = args.program.display().to_string();
    let stat = engine.load_source(&name, &source_text, ProgramOptions::default())?;
    let current = Current { name: name.clone(), source_file: name.clone(), source: source_text, artifact: None };
    let memory = match args.memory {
        false => None,
        true => {
            let m = Memory::new(stat.dag(), &task.holdout.examples)
                .with_context(|| format!("--memory recalls for the steps a program declares `memory STEP` for; `{}` declares none", args.program.display()))?;
            Some(Arc::new(Counted { memory: m, hits: Mutex::new(HashSet::new()) }))
        }
    };
    let mut the_loop = Loop { args, engine: &engine, store: &store, rt: &rt, name, current, looped: stat.clone(), stat, memory };
    the_loop.looped = the_loop.with_memory(the_loop.stat.clone());
    let mut users = Users {
        names: (0..args.users).map(|i| format!("user-{i}")).collect(),
        poisoned: ((args.users as f64) * args.poison).round() as usize,
        noise: args.noise,
        review: args.review,
        review_rng: ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(REVIEW_SEED)),
    };
    let mut rounds = Vec::new();
    for r in 1..=args.rounds {
        let drifted = args.drift && r > args.rounds / 2;
        let examples = draw(&mut task.stream, args.per_round, drifted, &task.field, &task.labels, &mut rng);
        if examples.is_empty() {
            eprintln!("the stream ran out after {} round(s)", r - 1);
            break;
        }
        let items = users.correct(examples, &task, &mut rng);
        rounds.push(the_loop.round(r, &items, &task, &users)?);
    }
    let mean = |f: fn(&RoundFigures) -> f64| rounds.iter().map(f).sum::<f64>() / rounds.len().max(1) as f64;
    let (static_mean, loop_mean) = (mean(|r| r.static_accuracy), mean(|r| r.loop_accuracy));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"rounds": rounds, "static": static_mean, "loop": loop_mean}))?);
        return Ok(Outcome::Success);
    }
    println!(
        "closed loop on {} ({} per round, noise {}, poison {}{}{}{}; holdout {} items)",
        args.program.display(),
        args.per_round,
        args.noise,
        args.poison,
        if args.drift { ", drift halfway" } else { "" },
        if args.memory { ", online memory" } else { "" },
        if args.review > 0.0 { format!(", a reviewer on {} of the items", args.review) } else { String::new() },
        task.holdout.examples.len()
    );
    println!(
        "  round      n   static     loop   memory hits   reviewed   low trust (poisoners, others)   promoted   holdout current → candidate   holdout items (grown)   seconds (serve + compile + holdout)"
    );
    let score = |v: Option<f64>| v.map_or("   -  ".to_string(), |x| format!("{x:.3}"));
    for r in &rounds {
        println!(
            "  {:>5}  {:>5}   {:.3}    {:.3}   {:>11}   {:>8}   {:>29}   {:>8}   {} → {:>7}         {:>21}   {:>7.1} ({:.1} + {:.1} + {:.1})",
            r.round,
            r.n,
            r.static_accuracy,
            r.loop_accuracy,
            r.memory_hits.map_or("-".to_string(), |h| h.to_string()),
            r.reviewed,
            r.low_trust.as_ref().map_or("-".to_string(), |l| format!(
                "{} of {}, {} of {}",
                l.poisoners,
                users.poisoned,
                l.others,
                users.names.len() - users.poisoned
            )),
            if r.promoted { "yes" } else { "no" },
            score(r.holdout_current),
            format!("{}{}", loopc::learn::gate::at_most(r.holdout_stopped_after), score(r.holdout_candidate)),
            r.holdout_items.map_or("-".to_string(), |n| format!("{n} ({})", r.holdout_grown.unwrap_or(0))),
            r.seconds,
            r.phases.serve,
            r.phases.compile,
            r.phases.holdout
        );
    }
    println!("  mean          {static_mean:.3}    {loop_mean:.3}");
    Ok(Outcome::Success)
}
