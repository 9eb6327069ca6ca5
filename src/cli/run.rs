//! `loopc run`: one input, or a JSONL file of inputs with bounded concurrency.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use loopc::model::LoadOptions;
use loopc::runtime::executor::RunOptions;
use loopc::runtime::trace::Trace;
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::{Program, ProgramOptions};
use serde_json::{json, Map, Value};

use super::args::{BatchArgs, RunArgs, RuntimeArgs};
use super::{source, Outcome};

impl BatchArgs {
    /// Load options with these batching limits; `across` is whether passes serve several
    /// runs unless the flags say.
    pub fn load_options(&self, across: bool) -> LoadOptions {
        let defaults = LoadOptions::default();
        LoadOptions {
            max_batch: self.max_batch.unwrap_or(defaults.max_batch).max(1),
            kv_budget_tokens: self.kv_budget.unwrap_or(defaults.kv_budget_tokens),
            cross_request: self.batch_across.unwrap_or(across),
            prefill_graph: self.prefill_graph.unwrap_or(defaults.prefill_graph),
            ..defaults
        }
    }
}

impl RuntimeArgs {
    /// The engine these flags ask for, reporting provisioning on stderr; passes serve several
    /// runs at once unless the flags say otherwise.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        self.engine_with(true)
    }

    /// The engine for commands whose results must be reproducible: one run per pass unless
    /// `--batch-across on`.
    pub fn reproducible_engine(&self) -> anyhow::Result<Engine> {
        self.engine_with(false)
    }

    fn engine_with(&self, across: bool) -> anyhow::Result<Engine> {
        let responses = match (&self.cache_dir, self.no_cache) {
            (_, true) => CacheSetting::Off,
            (Some(d), false) => CacheSetting::Dir(d.clone()),
            (None, false) => CacheSetting::Default,
        };
        let options = EngineOptions { responses, load: self.batching.load_options(across), ..EngineOptions::default() };
        Ok(Engine::builder().options(options).progress(std::sync::Arc::new(super::progress::ConsoleProgress::new())).build()?)
    }

    /// The program options these flags ask for.
    pub fn options(&self) -> anyhow::Result<ProgramOptions> {
        let mut tool_urls = HashMap::new();
        for t in &self.tool_url {
            let (name, url) = t.split_once('=').ok_or_else(|| anyhow::anyhow!("--tool-url `{t}`: write TOOL=URL"))?;
            tool_urls.insert(name.trim().to_string(), url.trim().to_string());
        }
        Ok(ProgramOptions {
            model_override: self.model.clone(),
            run: RunOptions { step_timeout: std::time::Duration::from_secs(self.step_timeout.max(1)), ..RunOptions::default() },
            tool_urls,
            ..ProgramOptions::default()
        })
    }
}

/// Runs `loopc run`.
pub fn run(args: &RunArgs, color: bool) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut interrupt = super::interrupt::Interrupt::register(&rt)?;
    // Check first, so problems in the file show as diagnostics with carets.
    source::load(&args.file, color)?;
    let program = args.runtime.engine()?.load_with(&args.file, args.runtime.options()?)?;
    super::report::print_load_warnings(&program);
    match (&args.input, &args.inputs) {
        (Some(arg), _) => {
            let text = input_text(arg)?;
            let inputs = parse_object(&text).map_err(|e| anyhow::anyhow!("--input: {e}"))?;
            // The trace file is opened first, so a bad path fails before the run.
            let mut traces = match &args.trace_json {
                Some(p) => Some(loopc::fs::LineAppender::open(p).with_context(|| format!("cannot write the traces to `{}`", p.display()))?),
                None => None,
            };
            let Some((result, trace)) = rt.block_on(async {
                tokio::select! {
                    r = program.run_traced(inputs) => Some(r),
                    _ = interrupt.wait() => None,
                }
            }) else {
                eprintln!("interrupted");
                return Ok(Outcome::Interrupted);
            };
            report_trace(args, &trace)?;
            if let Some(t) = traces.as_mut() {
                t.write_line(&serde_json::to_string(&trace)?)?;
            }
            match result {
                Ok(out) => {
                    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
                    Ok(Outcome::Success)
                }
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        }
        (None, Some(path)) => rt.block_on(batch(args, &program, path, &mut interrupt)),
        (None, None) => anyhow::bail!("give --input or --inputs"),
    }
}

/// The text of `--input`: the argument itself, standard input for `-`, a file for `@FILE`.
fn input_text(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("cannot read the input from standard input")?;
        return Ok(text);
    }
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read the input file `{path}`")),
        None => Ok(arg.to_string()),
    }
}

/// A batch row: its line number, its outputs or error, and its trace.
type RowResult = (usize, Result<Map<String, Value>, String>, Trace);

fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// Where finished rows of `--out F` go while the batch runs: `F.partial`, next to `F`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// The line numbers already in a partial file (rows a `--resume` skips), and its rows.
fn finished_rows(partial: &Path) -> anyhow::Result<Vec<(usize, Value)>> {
    let text = match std::fs::read_to_string(partial) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", partial.display())),
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not a result row", partial.display(), i + 1))?;
        let n = v["line"].as_u64().ok_or_else(|| anyhow::anyhow!("{}:{}: a result row without `line`", partial.display(), i + 1))?;
        rows.push((n as usize, v));
    }
    Ok(rows)
}

/// Batch mode. Rows run concurrently and are written as they finish: to standard output in
/// input order, or with `--out F` appended to `F.partial` (kept on Ctrl-C or a failure, so
/// `--resume` continues where it stopped) and, once every row is done, written to `F` in one
/// atomic replace: an existing `F` is never left half-written or lost to a later failure.
async fn batch(args: &RunArgs, program: &Program, path: &Path, interrupt: &mut super::interrupt::Interrupt) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    // Validate every line before running anything: a bad line is reported by number.
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let obj = parse_object(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        // Keep only the program's inputs; datasets often carry labels too.
        let inputs: Map<String, Value> = obj.into_iter().filter(|(k, _)| program.dag().inputs().iter().any(|f| &f.name == k)).collect();
        program.executor().check_inputs(&inputs).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        rows.push((i + 1, inputs));
    }
    // Every output is opened before the first run, so a bad path fails before any work.
    let mut traces = match &args.trace_json {
        Some(p) => Some(loopc::fs::LineAppender::open(p).with_context(|| format!("cannot write the traces to `{}`", p.display()))?),
        None => None,
    };
    let partial = args.out.as_deref().map(partial_path);
    let mut done: Vec<(usize, Value)> = match (&partial, args.resume) {
        (Some(p), true) => finished_rows(p)?,
        (Some(p), false) if p.exists() => {
            anyhow::bail!("`{}` holds the rows of an unfinished run: pass --resume to continue it, or delete it to start over", p.display())
        }
        _ => Vec::new(),
    };
    let mut appender = match &partial {
        Some(p) => Some(loopc::fs::LineAppender::open(p).with_context(|| format!("cannot write `{}`", p.display()))?),
        None => None,
    };
    rows.retain(|(line, _)| !done.iter().any(|(n, _)| n == line));
    if args.resume && !done.is_empty() {
        eprintln!("resuming: {} row(s) already done, {} to run", done.len(), rows.len());
    }
    let bar = indicatif::ProgressBar::new(rows.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("running [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = stream::iter(rows)
        .map(|(line, inputs)| async move {
            let (res, trace) = program.run_traced(inputs).await;
            (line, res.map_err(|e| e.to_string()), trace)
        })
        .buffered(args.concurrency);
    let mut stdout = std::io::stdout().lock();
    let mut interrupted = false;
    loop {
        let next: Option<RowResult> = tokio::select! {
            r = results.next() => r,
            _ = interrupt.wait() => { interrupted = true; None }
        };
        let Some((line, res, trace)) = next else { break };
        bar.inc(1);
        report_trace(args, &trace)?;
        if let Some(t) = traces.as_mut() {
            t.write_line(&serde_json::to_string(&trace)?)?;
        }
        let row = match res {
            Ok(o) => json!({"line": line, "outputs": o}),
            Err(e) => json!({"line": line, "error": e}),
        };
        match appender.as_mut() {
            Some(a) => a.write_line(&row.to_string()).context("cannot append a finished row")?,
            None => writeln!(stdout, "{row}")?,
        }
        done.push((line, row));
    }
    // Dropping the stream cancels the runs still going (their tool processes are killed).
    drop(results);
    bar.finish_and_clear();
    let failed = done.iter().filter(|(_, r)| r.get("error").is_some()).count();
    if interrupted {
        match &partial {
            Some(p) => eprintln!("interrupted: {} row(s) done are kept in `{}`; rerun with --resume to finish", done.len(), p.display()),
            None => eprintln!("interrupted after {} row(s)", done.len()),
        }
        return Ok(Outcome::Interrupted);
    }
    if let (Some(out), Some(p)) = (&args.out, &partial) {
        if let Some(a) = appender.as_mut() {
            a.sync()?;
        }
        done.sort_by_key(|(n, _)| *n);
        let body: String = done.iter().map(|(_, r)| format!("{r}\n")).collect();
        loopc::fs::atomic_write(out, body.as_bytes()).with_context(|| format!("cannot write `{}`", out.display()))?;
        std::fs::remove_file(p).with_context(|| format!("cannot remove `{}`", p.display()))?;
    }
    stdout.flush()?;
    eprintln!("{} input(s) run, {failed} failed", done.len());
    Ok(if failed == 0 { Outcome::Success } else { Outcome::Failure })
}

fn report_trace(args: &RunArgs, trace: &Trace) -> anyhow::Result<()> {
    if args.trace {
        eprintln!("run {} of {} ({} ms)", trace.run_id, trace.program, trace.latency_ms);
        for s in &trace.steps {
            let hit = if s.cache_hit { ", answer from the response cache" } else { "" };
            eprintln!(
                "── step {} ({}, {}) {} ms, {} prompt tokens ({} cached), {} generated{hit}",
                s.step,
                s.kind.name(),
                s.served_by,
                s.latency_ms,
                s.prompt_tokens,
                s.cached_tokens,
                s.completion_tokens
            );
            if !s.prompt.is_empty() {
                eprintln!("{}", indent(&s.prompt));
            }
            for r in &s.raw {
                eprintln!("   raw: {r:?}");
            }
            if let Some(scores) = &s.choice_scores {
                eprintln!(
                    "   label scores: {}",
                    scores.iter().map(|s| format!("{} {}{:.3}", s.label, if s.pruned { "≤ " } else { "" }, s.logprob)).collect::<Vec<_>>().join(", ")
                );
            }
            if let Some(o) = &s.outputs {
                eprintln!("   outputs: {}", Value::Object(o.clone()));
            }
            if let Some(e) = &s.error {
                eprintln!("   error: {e}");
            }
        }
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   │ {l}")).collect::<Vec<_>>().join("\n")
}
