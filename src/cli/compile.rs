//! `loopc compile`: datasets and settings from the command line and the program, progress on
//! the terminal, the artifact (and report) written atomically.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use loopc::compile::{self, Dataset, Event, Job, Metric, Plan, Rater, TerminalRater};
use loopc::graph::Dag;
use loopc::runtime::artifact::Artifact;
use loopc::runtime::source::ProgramFile;
use serde_json::json;

use super::args::CompileArgs;
use super::interrupt::Interrupt;
use super::{source, Outcome};

/// The metric named `name`, else the optimizer's, else the first declared.
pub(super) fn pick_metric(dag: &Dag, name: Option<&str>, rater: Option<Arc<dyn Rater>>) -> anyhow::Result<Metric> {
    Ok(compile::metric::choose(dag, name, rater)?)
}

pub(super) fn load_data(path: &Path, dag: &Dag, metric: &Metric) -> anyhow::Result<Dataset> {
    Ok(compile::dataset::load(path, dag, &metric.example_fields())?)
}

/// One progress bar per phase, and candidate lines above it (`compile` and `learn`).
pub(super) struct Display {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
    max_calls: Option<u64>,
}

impl Display {
    /// A display of a compile's progress; `quiet` shows nothing; `max_calls` is the budget shown.
    pub(super) fn new(quiet: bool, max_calls: Option<u64>) -> Display {
        Display { bar: Mutex::new(None), quiet, max_calls }
    }

    /// Clears the bar (the compile finished, failed or was interrupted).
    pub(super) fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }

    /// Shows `event`.
    pub(super) fn on(&self, event: Event<'_>) {
        if self.quiet {
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Phase(name, runs) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                if runs == 0 {
                    eprintln!("{name}");
                    return;
                }
                let b = ProgressBar::new(runs as u64);
                b.set_style(
                    ProgressStyle::with_template("{msg}\n  [{bar:30}] {pos}/{len} runs, {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_message(name.to_string());
                *bar = Some(b);
            }
            Event::Run => {
                if let Some(b) = bar.as_ref() {
                    b.inc(1);
                }
            }
            Event::Candidate(c, best, spent) => {
                let budget = self.max_calls.map_or(String::new(), |m| format!(" of {m}"));
                let line =
                    format!("trial {:>2}  score {:.3}  (best {best:.3}, {} calls; {spent}{budget} spent)  {}", c.trial, c.score, c.model_calls, c.description);
                match bar.as_ref() {
                    Some(b) if !b.is_hidden() => b.println(line),
                    _ => eprintln!("{line}"),
                }
            }
            Event::Note(n) => eprintln!("note: {n}"),
        }
    }
}

/// Compiles as `args` say and returns the artifact, not yet written (`None`: interrupted).
pub fn compile_artifact(args: &CompileArgs, color: bool) -> anyhow::Result<Option<Artifact>> {
    Ok(compile_measured(args, color)?.map(|(a, _)| a))
}

/// What each local model did during a compile, by model name (passes, positions fed,
/// positions from the prefix cache).
pub type ModelWork = Vec<(String, loopc::model::Stats)>;

/// [`compile_artifact`], with what each local model did during the compile.
pub fn compile_measured(args: &CompileArgs, color: bool) -> anyhow::Result<Option<(Artifact, ModelWork)>> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut interrupt = Interrupt::register(&rt)?;
    // An artifact compiles its embedded program afresh.
    let loaded = source::load(&args.file, color)?;
    let dag = loaded.dag;
    let (source_file, src) = match &loaded.file {
        ProgramFile::Source { text, .. } => (args.file.display().to_string(), text.clone()),
        ProgramFile::Artifact { artifact, .. } => (artifact.program.source_file.clone(), artifact.program.source.clone()),
    };
    let rater: Option<Arc<dyn Rater>> =
        args.interactive.then(|| Arc::new(TerminalRater::new(std::io::BufReader::new(std::io::stdin()), std::io::stderr())) as Arc<dyn Rater>);
    let metric = pick_metric(&dag, args.search.metric.as_deref(), rater)?;
    let mut plan = Plan::new(&dag, args.search.optimizer, &args.search.settings(), args.concurrency);
    plan.prune_labels = !args.search.full_label_scores;
    let (optimizer, seed) = (plan.optimizer, plan.seed);
    // The program's own examples (all but the held-out ones) join the training data; they
    // are the data when no --train is given.
    let examples = compile::examples::training(&dag, &source_file, &src);
    let required = metric.example_fields();
    let file_data = args.train.as_ref().map(|p| load_data(p, &dag, &metric)).transpose()?;
    let (train, dev) = match (&args.dev, file_data) {
        (Some(d), data) => (compile::examples::join_training(data, examples, &dag, &required)?, load_data(d, &dag, &metric)?),
        (None, data) => match data {
            Some(data) => {
                let shown = args.train.as_ref().map_or_else(String::new, |p| p.display().to_string());
                anyhow::ensure!(data.examples.len() >= 2, "`{shown}` has one example; a dev split needs at least two (or pass --dev)");
                let (train, dev) = compile::dataset::split(&data, args.dev_fraction, seed);
                (compile::examples::join_training(Some(train), examples, &dag, &required)?, dev)
            }
            None => {
                anyhow::ensure!(
                    !examples.is_empty(),
                    "give --train, or add `example` blocks to the program (`example NAME {{ input {{ ... }} output {{ ... }} }}`)"
                );
                let all = compile::examples::join_training(None, examples, &dag, &required)?;
                anyhow::ensure!(all.examples.len() >= 2, "the program has one example to train on; a dev split needs at least two (or pass --dev)");
                compile::dataset::split(&all, args.dev_fraction, seed)
            }
        },
    };
    let budget = plan.budget();
    let engine = args.runtime.reproducible_engine()?;
    let program = engine.load_source(&loaded.file.source_name(), &src, args.runtime.options()?)?;
    let metric = metric.judged_by(&program);
    let display = Display::new(args.json, budget.max_calls);
    let on_event = |e: Event<'_>| display.on(e);
    let job = Job { program, source_file, source: src, train, dev, metric, plan, budget, progress: &on_event, warm_start: None };
    if !args.json {
        eprintln!(
            "compiling `{}` with {} (seed {seed}): {} train, {} dev examples",
            args.file.display(),
            optimizer.name(),
            job.train.examples.len(),
            job.dev.examples.len()
        );
    }
    let artifact = rt.block_on(async {
        tokio::select! {
            r = compile::compile(job) => r.map(Some).map_err(anyhow::Error::from),
            _ = interrupt.wait() => Ok(None),
        }
    });
    display.finish();
    Ok(artifact?.map(|a| (a, engine.model_stats())))
}

/// Runs `loopc compile`.
pub fn compile(args: &CompileArgs, color: bool) -> anyhow::Result<Outcome> {
    let Some((artifact, work)) = compile_measured(args, color)? else {
        eprintln!("interrupted: the compile stopped and no artifact was written");
        return Ok(Outcome::Interrupted);
    };
    artifact.write(&args.out)?;
    if let Some(path) = &args.report {
        loopc::fs::atomic_write(path, super::html_report::render(&artifact).as_bytes())
            .with_context(|| format!("cannot write the report `{}`", path.display()))?;
    }
    let p = &artifact.provenance;
    if args.json {
        println!(
            "{}",
            json!({
                "artifact": args.out, "baseline_score": p.baseline_score, "final_score": p.final_score,
                "candidates": p.candidates.len(), "model_calls": p.model_calls, "cache_hits": p.timing.cache_hits,
                "tokens_prefilled": p.timing.tokens_prefilled, "tokens_generated": p.timing.tokens_generated,
                "wall_seconds": p.timing.wall_seconds, "stopped_early": p.stopped_early,
                "model": work.iter().map(|(name, s)| json!({
                    "name": name, "prefill_passes": s.forward_passes - s.decode_steps, "prefill_rows": s.prefill_rows,
                    "positions_fed": s.prefilled_tokens, "positions_cached": s.cached_tokens,
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        if let Some(why) = &p.stopped_early {
            eprintln!("note: the search stopped early: {why}");
        }
        println!(
            "{}: {} {:.3} → {:.3} on {} dev examples ({} candidates, {} model calls, {} from cache, {:.1} s)\nwrote {}{}",
            artifact.program.name,
            p.metric,
            p.baseline_score,
            p.final_score,
            p.dev.examples,
            p.candidates.len(),
            p.model_calls,
            p.timing.cache_hits,
            p.timing.wall_seconds,
            args.out.display(),
            args.report.as_ref().map_or(String::new(), |r| format!(" and {}", r.display()))
        );
    }
    Ok(Outcome::Success)
}
