//! `loopc bench accuracy`: what compiling buys on public classification tasks. For each task
//! it samples a fixed, seeded train / dev / validation split, compiles the task's program
//! (cold response cache), and scores on validation the program as written (zero-shot), the
//! compiled artifact, and the constant majority answer; it prints accuracy, macro-F1, the
//! compile's wall time and model calls, and what the compile shipped.
//!
//! The samples, fixed so the bench is affordable and repeatable: a seeded shuffle (seed 0) of
//! the task's train file gives 100 train then 60 dev examples; 200 validation examples come
//! from a seeded shuffle of its validation file. banking77 has only a train file: its shuffle
//! gives the 200 validation examples first, then train and dev, so they never overlap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use loopc::compile::{self, Budget, Dataset};
use loopc::runtime::artifact::Artifact;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use super::args::{BenchAccuracyArgs, CompileArgs, RuntimeArgs, SearchArgs};
use super::compile::{compile_measured, load_data, pick_metric};
use super::Outcome;

/// Training examples per task.
pub const TRAIN: usize = 100;
/// Dev examples per task.
pub const DEV: usize = 60;
/// Validation examples per task.
pub const VAL: usize = 200;
/// The seed of every sample.
pub const SEED: u64 = 0;

/// A public task: its program and data files.
struct Task {
    name: &'static str,
    program: &'static str,
    train: &'static str,
    /// `None`: validation is held out from the train file.
    val: Option<&'static str>,
}

const TASKS: [Task; 4] = [
    Task { name: "emotion", program: "programs/tweet_emotion.loop", train: "tweeteval-emotion-train.jsonl", val: Some("tweeteval-emotion-val.jsonl") },
    Task { name: "irony", program: "programs/tweet_irony.loop", train: "tweeteval-irony-train.jsonl", val: Some("tweeteval-irony-val.jsonl") },
    Task { name: "offensive", program: "programs/tweet_offensive.loop", train: "tweeteval-offensive-train.jsonl", val: Some("tweeteval-offensive-val.jsonl") },
    Task { name: "banking77", program: "programs/banking77.loop", train: "banking77-train.jsonl", val: None },
];

/// The non-empty lines of a JSONL file.
fn lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}` (pass --tasks DIR with the task data)", path.display()))?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
}

/// `lines` in a seeded order.
fn shuffled(mut lines: Vec<String>) -> Vec<String> {
    lines.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(SEED));
    lines
}

/// The (train, dev, val) samples of a task: lines of JSONL.
fn samples(train_lines: Vec<String>, val_lines: Option<Vec<String>>) -> anyhow::Result<[Vec<String>; 3]> {
    let mut pool = shuffled(train_lines);
    let val = match val_lines {
        Some(v) => shuffled(v).into_iter().take(VAL).collect(),
        None => pool.drain(..VAL.min(pool.len())).collect(),
    };
    anyhow::ensure!(pool.len() >= TRAIN + DEV, "a task needs {} training lines besides its validation sample; it has {}", TRAIN + DEV, pool.len());
    let dev = pool[TRAIN..TRAIN + DEV].to_vec();
    pool.truncate(TRAIN);
    Ok([pool, dev, val])
}

/// Accuracy and macro-F1 (over the labels that occur as truth or answer) of `answers`.
fn accuracy_and_f1(truth: &[String], answers: &[Option<String>]) -> (f64, f64) {
    let n = truth.len().max(1) as f64;
    let right = truth.iter().zip(answers).filter(|(t, a)| a.as_deref() == Some(t.as_str())).count();
    let mut counts: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new(); // (tp, fp, fn)
    for (t, a) in truth.iter().zip(answers) {
        match a.as_deref() {
            Some(a) if a == t => counts.entry(t).or_default().0 += 1.0,
            other => {
                counts.entry(t).or_default().2 += 1.0;
                if let Some(a) = other {
                    counts.entry(a).or_default().1 += 1.0;
                }
            }
        }
    }
    let f1: f64 =
        counts.values().map(|(tp, fp, fneg)| if *tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + fp + fneg) }).sum::<f64>() / counts.len().max(1) as f64;
    (right as f64 / n, f1)
}

/// The most frequent label of `truth` (the first in sorted order among equals).
fn majority(truth: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in truth {
        *counts.entry(t).or_default() += 1;
    }
    counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(l, _)| l.to_string()).unwrap_or_default()
}

/// What one task measured.
struct Row {
    task: &'static str,
    labels: usize,
    zero_shot: (f64, f64),
    compiled: (f64, f64),
    majority_label: String,
    majority: (f64, f64),
    best_constant: f64,
    compile_wall: f64,
    model_calls: u64,
    dev_cv: Option<(f64, f64, f64)>,
    shipped: String,
    peak_mb: Option<f64>,
    /// What the model did during the compile: prefill passes, their rows, positions fed and
    /// positions taken from the prefix cache.
    work: (u64, u64, u64, u64),
}

/// The answers of `program` (a `.loop` file or an artifact) on `data`, read from output `field`.
fn answers(file: &Path, data: &Path, field: &str, model: Option<&str>, color: bool) -> anyhow::Result<(Vec<String>, Vec<Option<String>>)> {
    super::source::load(file, color)?;
    let runtime = runtime_args(None, model);
    let program = runtime.reproducible_engine()?.load_with(file, runtime.options()?)?;
    let dag = program.dag().clone();
    let metric = pick_metric(&dag, None, None)?;
    let set: Dataset = load_data(data, &dag, &metric)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let e = rt.block_on(compile::evaluate(&program, &set.examples, &metric, 4, &Budget::new(None, None, None), &|| {}))?;
    let truth = set.examples.iter().map(|ex| ex.fields.get(field).map(loopc::runtime::value::render).unwrap_or_default()).collect();
    let got = (0..set.examples.len()).map(|i| e.outputs(i).and_then(|o| o.get(field)).map(loopc::runtime::value::render)).collect();
    Ok((truth, got))
}

fn runtime_args(cache: Option<PathBuf>, model: Option<&str>) -> RuntimeArgs {
    RuntimeArgs {
        model: model.map(str::to_string),
        tool_url: Vec::new(),
        step_timeout: 120,
        no_cache: cache.is_none(),
        batching: Default::default(),
        cache_dir: cache,
    }
}

/// Runs one task (`None`: interrupted).
fn task(t: &Task, args: &BenchAccuracyArgs, dir: &Path, color: bool) -> anyhow::Result<Option<Row>> {
    let [train, dev, val] = samples(lines(&args.tasks.join(t.train))?, t.val.map(|v| lines(&args.tasks.join(v))).transpose()?)?;
    let write = |name: &str, rows: &[String]| -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{}-{name}.jsonl", t.name));
        loopc::fs::atomic_write(&path, rows.iter().map(|l| format!("{l}\n")).collect::<String>().as_bytes())?;
        Ok(path)
    };
    let (train_path, dev_path, val_path) = (write("train", &train)?, write("dev", &dev)?, write("val", &val)?);
    let artifact_path = dir.join(format!("{}-compiled.json", t.name));
    let cache = tempfile::tempdir()?;
    let compile = CompileArgs {
        file: PathBuf::from(t.program),
        train: Some(train_path),
        dev: Some(dev_path),
        dev_fraction: 0.3,
        out: artifact_path.clone(),
        report: None,
        search: SearchArgs { full_label_scores: args.full_label_scores, ..SearchArgs::default() },
        concurrency: 4,
        interactive: false,
        json: true,
        runtime: runtime_args(Some(cache.path().join("responses")), args.model.as_deref()),
    };
    if !args.json {
        eprintln!("{}: compiling {} on {TRAIN} train / {DEV} dev examples …", t.name, t.program);
    }
    let started = Instant::now();
    let Some((artifact, stats)): Option<(Artifact, _)> = compile_measured(&compile, color)? else { return Ok(None) };
    let compile_wall = started.elapsed().as_secs_f64();
    artifact.write(&artifact_path)?;
    let field = "label";
    if !args.json {
        eprintln!("{}: scoring the program as written, the compiled artifact and the majority label on {VAL} validation examples …", t.name);
    }
    let (truth, zero) = answers(Path::new(t.program), &val_path, field, args.model.as_deref(), color)?;
    let (_, compiled) = answers(&artifact_path, &val_path, field, args.model.as_deref(), color)?;
    let seen: Vec<String> =
        [&train, &dev].into_iter().flatten().filter_map(|l| serde_json::from_str::<Value>(l).ok()?.get(field).map(loopc::runtime::value::render)).collect();
    let majority_label = majority(&seen);
    let constant: Vec<Option<String>> = truth.iter().map(|_| Some(majority_label.clone())).collect();
    let best = majority(&truth);
    let best_constant = truth.iter().filter(|t| **t == best).count() as f64 / truth.len().max(1) as f64;
    let selection = artifact.provenance.selection.as_ref();
    let labels = {
        let mut all: Vec<&String> = truth.iter().chain(&seen).collect();
        all.sort();
        all.dedup();
        all.len()
    };
    Ok(Some(Row {
        task: t.name,
        labels,
        zero_shot: accuracy_and_f1(&truth, &zero),
        compiled: accuracy_and_f1(&truth, &compiled),
        majority: accuracy_and_f1(&truth, &constant),
        majority_label,
        best_constant,
        compile_wall,
        model_calls: artifact.provenance.model_calls,
        dev_cv: selection.and_then(|s| s.entrants.get(s.chosen)).map(|e| (e.mean, e.low, e.high)),
        shipped: selection.map_or_else(|| "the search's best candidate".to_string(), |s| s.shipped.clone()),
        peak_mb: super::measure::peak_rss_mb(),
        work: stats
            .iter()
            .fold((0, 0, 0, 0), |a, (_, s)| (a.0 + s.forward_passes - s.decode_steps, a.1 + s.prefill_rows, a.2 + s.prefilled_tokens, a.3 + s.cached_tokens)),
    }))
}

/// Runs `loopc bench accuracy`.
pub fn run(args: &BenchAccuracyArgs, color: bool) -> anyhow::Result<Outcome> {
    for name in &args.only {
        anyhow::ensure!(TASKS.iter().any(|t| t.name == name), "unknown task `{name}` (the tasks: {})", TASKS.map(|t| t.name).join(", "));
    }
    let keep = match &args.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create `{}`", d.display()))?;
            None
        }
        None => Some(tempfile::tempdir()?),
    };
    let dir = args.out.clone().unwrap_or_else(|| keep.as_ref().map(|k| k.path().to_path_buf()).unwrap_or_default());
    let mut rows = Vec::new();
    for t in TASKS.iter().filter(|t| args.only.is_empty() || args.only.iter().any(|n| n == t.name)) {
        match task(t, args, &dir, color)? {
            Some(row) => rows.push(row),
            None => return Ok(Outcome::Interrupted),
        }
    }
    if args.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "task": r.task, "labels": r.labels,
                    "zero_shot": {"accuracy": r.zero_shot.0, "macro_f1": r.zero_shot.1},
                    "compiled": {"accuracy": r.compiled.0, "macro_f1": r.compiled.1},
                    "majority": {"label": r.majority_label, "accuracy": r.majority.0, "macro_f1": r.majority.1},
                    "best_constant_accuracy": r.best_constant,
                    "compile_wall_seconds": r.compile_wall, "compile_model_calls": r.model_calls,
                    "selection_estimate": r.dev_cv.map(|(m, l, h)| json!({"mean": m, "low": l, "high": h})),
                    "shipped": r.shipped, "peak_rss_mb": r.peak_mb,
                    "compile_model": {"prefill_passes": r.work.0, "prefill_rows": r.work.1, "positions_fed": r.work.2, "positions_cached": r.work.3},
                })
            })
            .collect();
        let samples = json!({"train": TRAIN, "dev": DEV, "val": VAL, "seed": SEED});
        println!("{}", serde_json::to_string_pretty(&json!({ "samples": samples, "tasks": out }))?);
    } else {
        println!("validation accuracy / macro-F1 ({VAL} examples per task; compiled on {TRAIN} train + {DEV} dev, seed {SEED})");
        println!(
            "  {:<10} {:>6}  {:>13}  {:>13}  {:>13}  {:>8}  {:>9}  {:>6}  {:>7}",
            "task", "labels", "zero-shot", "compiled", "majority", "best const", "wall s", "calls", "peak MB"
        );
        for r in &rows {
            println!(
                "  {:<10} {:>6}  {:>6.3} {:>6.3}  {:>6.3} {:>6.3}  {:>6.3} {:>6.3}  {:>10.3}  {:>8.1}  {:>6}  {:>7.0}",
                r.task,
                r.labels,
                r.zero_shot.0,
                r.zero_shot.1,
                r.compiled.0,
                r.compiled.1,
                r.majority.0,
                r.majority.1,
                r.best_constant,
                r.compile_wall,
                r.model_calls,
                r.peak_mb.unwrap_or(f64::NAN)
            );
        }
        println!();
        for r in &rows {
            let est = r.dev_cv.map_or(String::new(), |(m, l, h)| format!(" (selection estimate {m:.3} [{l:.3}, {h:.3}])"));
            println!("  {}: shipped {}{est}; majority label `{}`", r.task, r.shipped, r.majority_label);
            let (passes, rows, fed, cached) = r.work;
            println!(
                "  {}: the compile ran {passes} prefill passes ({:.1} rows, {:.0} positions each), fed {fed} positions and took {cached} from the prefix cache",
                r.task,
                rows as f64 / passes.max(1) as f64,
                fed as f64 / passes.max(1) as f64
            );
        }
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_seeded_disjoint_and_sized() {
        let train: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        let [a, b, c] = samples(train.clone(), None).unwrap();
        assert_eq!((a.len(), b.len(), c.len()), (TRAIN, DEV, VAL));
        let all: std::collections::BTreeSet<&String> = a.iter().chain(&b).chain(&c).collect();
        assert_eq!(all.len(), TRAIN + DEV + VAL, "validation is held out of a train-only task");
        assert_eq!(samples(train.clone(), None).unwrap(), [a, b, c]);
        let [_, _, v] = samples(train, Some((0..50).map(|i| format!("v{i}")).collect())).unwrap();
        assert_eq!(v.len(), 50, "a validation file smaller than the sample is used whole");
        assert!(samples((0..100).map(|i| i.to_string()).collect(), None).is_err());
    }

    #[test]
    fn macro_f1_averages_the_labels_that_occur() {
        let truth: Vec<String> = ["a", "a", "b", "b"].map(String::from).to_vec();
        let answers = vec![Some("a".to_string()), Some("b".to_string()), Some("b".to_string()), None];
        // a: tp 1, fn 1 → F1 2/3; b: tp 1, fp 1, fn 1 → F1 1/2.
        let (acc, f1) = accuracy_and_f1(&truth, &answers);
        assert_eq!(acc, 0.5);
        assert!((f1 - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        assert_eq!(majority(&truth), "a");
    }
}
