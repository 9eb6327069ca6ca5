//! `loopc compile` and `loopc eval`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use loopc::compile::{self, Budget, Dataset, Event, Job, Metric, Plan, Rater, TerminalRater};
use loopc::graph::{Dag, OptimizerKind, Type};
use loopc::runtime::adapter::Template;
use loopc::Program;
use serde_json::{json, Value};

use super::args::{CompileArgs, EvalArgs};
use super::{source, Outcome};

/// The metric named `name`, else the optimizer's, else the first declared.
fn pick_metric(dag: &Dag, name: Option<&str>, rater: Option<Arc<dyn Rater>>) -> anyhow::Result<Metric> {
    let spec = match name {
        Some(n) => {
            let id = dag.metric_id(n).ok_or_else(|| {
                let names: Vec<&str> = dag.metrics().iter().map(|m| m.name.as_str()).collect();
                anyhow::anyhow!("the program has no metric `{n}` (its metrics: {})", names.join(", "))
            })?;
            dag.metrics()[id.0].clone()
        }
        None => match dag.optimizer().and_then(|o| o.settings.metric) {
            Some(id) => dag.metrics()[id.0].clone(),
            None => dag.metrics().first().cloned().ok_or_else(|| anyhow::anyhow!("the program declares no metric: add `metric NAME = exact(output.X, example.X)`"))?,
        },
    };
    Ok(Metric::new(spec, rater)?)
}

fn load_data(path: &Path, dag: &Dag, metric: &Metric) -> anyhow::Result<Dataset> {
    Ok(compile::dataset::load(path, dag, &metric.example_fields())?)
}

/// One progress bar per phase, and candidate lines above it.
struct Display {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Display {
    fn on(&self, event: Event<'_>) {
        if self.quiet {
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Phase(name, runs) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let b = ProgressBar::new(runs as u64);
                b.set_style(ProgressStyle::with_template("{msg}\n  [{bar:30}] {pos}/{len} runs, {elapsed}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
                b.set_message(name.to_string());
                *bar = Some(b);
            }
            Event::Run => {
                if let Some(b) = bar.as_ref() {
                    b.inc(1);
                }
            }
            Event::Candidate(c, best) => {
                let line = format!("trial {:>2}  score {:.3}  (best {best:.3}, {} calls)  {}", c.trial, c.score, c.model_calls, c.description);
                match bar.as_ref() {
                    Some(b) if !b.is_hidden() => b.println(line),
                    _ => eprintln!("{line}"),
                }
            }
            Event::Note(n) => eprintln!("note: {n}"),
        }
    }
}

/// Runs `loopc compile`.
pub fn compile(args: &CompileArgs, color: bool) -> anyhow::Result<Outcome> {
    let dag = source::load_dag(&args.file, color)?;
    let src = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let rater: Option<Arc<dyn Rater>> =
        args.interactive.then(|| Arc::new(TerminalRater::new(std::io::BufReader::new(std::io::stdin()), std::io::stderr())) as Arc<dyn Rater>);
    let metric = pick_metric(&dag, args.metric.as_deref(), rater)?;
    let declared = dag.optimizer();
    let settings = declared.map(|o| o.settings.clone()).unwrap_or_default();
    let optimizer = match &args.optimizer {
        Some(name) => OptimizerKind::ALL.iter().find(|(_, n)| n == name).map(|(k, _)| *k).ok_or_else(|| {
            anyhow::anyhow!("unknown optimizer `{name}` (the optimizers: {})", OptimizerKind::ALL.map(|(_, n)| n).join(", "))
        })?,
        None => declared.map_or(OptimizerKind::BootstrapRandomSearch, |o| o.kind),
    };
    let seed = args.seed.or(settings.seed).unwrap_or(0);
    let train_all = load_data(&args.train, &dag, &metric)?;
    let (train, dev) = match &args.dev {
        Some(d) => (train_all, load_data(d, &dag, &metric)?),
        None => {
            anyhow::ensure!(train_all.examples.len() >= 2, "`{}` has one example; a dev split needs at least two (or pass --dev)", args.train.display());
            anyhow::ensure!(args.dev_fraction > 0.0 && args.dev_fraction < 1.0, "--dev-fraction must be between 0 and 1");
            compile::dataset::split(&train_all, args.dev_fraction, seed)
        }
    };
    let templates = match &settings.templates {
        Some(names) => names.iter().filter_map(|n| Template::from_name(n)).collect(),
        None if matches!(optimizer, OptimizerKind::BootstrapRandomSearch | OptimizerKind::InstructionSearch) => {
            vec![Template::Chat, Template::Completion, Template::Json]
        }
        None => vec![Template::Chat],
    };
    let max_demos = args.max_demos.or(settings.max_demos).unwrap_or(4) as usize;
    let plan = Plan {
        optimizer,
        max_demos,
        max_labeled_demos: settings.max_labeled_demos.map_or(max_demos, |m| m as usize),
        candidates: args.candidates.or(settings.candidates).unwrap_or(8) as usize,
        templates,
        seed,
        concurrency: args.concurrency.max(1),
    };
    let budget = Budget::new(
        args.max_calls.or(settings.max_calls),
        args.max_tokens.or(settings.max_tokens),
        args.max_seconds.or(settings.max_seconds).map(Duration::from_secs),
    );
    let program = Program::from_file_with(&args.file, args.runtime.options()?)?;
    let display = Display { bar: Mutex::new(None), quiet: args.json };
    let on_event = |e: Event<'_>| display.on(e);
    let job = Job {
        program,
        source_file: args.file.display().to_string(),
        source: src,
        train,
        dev,
        metric,
        plan,
        budget,
        progress: &on_event,
    };
    if !args.json {
        eprintln!(
            "compiling `{}` with {} (seed {seed}): {} train, {} dev examples",
            args.file.display(),
            optimizer.name(),
            job.train.examples.len(),
            job.dev.examples.len()
        );
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let artifact = rt.block_on(async {
        tokio::select! {
            r = compile::compile(job) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted: the compile stopped and no artifact was written")),
        }
    });
    if let Some(b) = display.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
        b.finish_and_clear();
    }
    let mut artifact = artifact?;
    let stats = loopc::runtime::local_stats();
    artifact.provenance.timing.tokens_prefilled = stats.0;
    artifact.provenance.timing.tokens_generated = stats.1;
    artifact.write(&args.out)?;
    let p = &artifact.provenance;
    if args.json {
        println!(
            "{}",
            json!({
                "artifact": args.out, "baseline_score": p.baseline_score, "final_score": p.final_score,
                "candidates": p.candidates.len(), "model_calls": p.model_calls, "cache_hits": p.timing.cache_hits,
                "tokens_prefilled": p.timing.tokens_prefilled, "tokens_generated": p.timing.tokens_generated,
                "wall_seconds": p.timing.wall_seconds, "stopped_early": p.stopped_early,
            })
        );
    } else {
        if let Some(why) = &p.stopped_early {
            eprintln!("note: the search stopped early: {why}");
        }
        println!(
            "{}: {} {:.3} → {:.3} on {} dev examples ({} candidates, {} model calls, {} from cache, {:.1} s)\nwrote {}",
            artifact.program.name,
            p.metric,
            p.baseline_score,
            p.final_score,
            p.dev.examples,
            p.candidates.len(),
            p.model_calls,
            p.timing.cache_hits,
            p.timing.wall_seconds,
            args.out.display()
        );
    }
    Ok(Outcome::Success)
}

/// Runs `loopc eval`.
pub fn eval(args: &EvalArgs, color: bool) -> anyhow::Result<Outcome> {
    let options = args.runtime.options()?;
    let is_artifact = args.file.extension().is_some_and(|e| e == "json");
    let program = if is_artifact {
        Program::load_with(&args.file, options)?
    } else {
        source::load_dag(&args.file, color)?;
        Program::from_file_with(&args.file, options)?
    };
    let dag = program.dag().clone();
    let metric = pick_metric(&dag, args.metric.as_deref(), None)?;
    let data = load_data(&args.data, &dag, &metric)?;
    let bar = ProgressBar::new(data.examples.len() as u64);
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let tick = || bar.inc(1);
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let budget = Budget::new(None, None, None);
    let e = rt.block_on(async {
        tokio::select! {
            r = compile::evaluate(&program, &data.examples, &metric, args.concurrency, &budget, &tick) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })?;
    bar.finish_and_clear();
    let failed = e.traces.iter().filter(|t| t.outputs.is_none()).count();
    let mut labels = Vec::new();
    for f in dag.outputs() {
        let Type::Label(names) = &f.ty else { continue };
        let mut confusion = vec![vec![0usize; names.len() + 1]; names.len()];
        for (i, ex) in data.examples.iter().enumerate() {
            let Some(want) = ex.fields.get(&f.name).and_then(Value::as_str).and_then(|w| names.iter().position(|n| n == w)) else { continue };
            let got = e.outputs(i).and_then(|o| o.get(&f.name)).and_then(Value::as_str).and_then(|g| names.iter().position(|n| n == g));
            confusion[want][got.unwrap_or(names.len())] += 1;
        }
        labels.push((f.name.clone(), names.clone(), confusion));
    }
    if args.json {
        let per_label: Vec<Value> = labels
            .iter()
            .map(|(field, names, m)| {
                json!({
                    "field": field,
                    "labels": names,
                    "confusion": m,
                    "accuracy": names.iter().enumerate().map(|(i, n)| (n.clone(), json!(m[i][i] as f64 / m[i].iter().sum::<usize>().max(1) as f64))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        println!("{}", json!({ "metric": metric.name(), "score": e.mean(), "examples": e.scores.len(), "failed_runs": failed, "model_calls": e.model_calls, "labels": per_label }));
    } else {
        println!("{}: {:.3} on {} examples ({failed} failed runs, {} model calls)", metric.name(), e.mean(), e.scores.len(), e.model_calls);
        for (field, names, m) in &labels {
            println!("\n{field}: rows are the expected label, columns what the program said");
            let width = names.iter().map(|n| n.len()).max().unwrap_or(5).max(6);
            print!("{:width$}", "");
            for n in names.iter().map(String::as_str).chain(["(failed)"]) {
                print!(" {n:>width$}");
            }
            println!("  accuracy");
            for (i, n) in names.iter().enumerate() {
                print!("{n:width$}");
                for c in &m[i] {
                    print!(" {c:>width$}");
                }
                println!("  {:.3}", m[i][i] as f64 / m[i].iter().sum::<usize>().max(1) as f64);
            }
        }
    }
    Ok(Outcome::Success)
}
