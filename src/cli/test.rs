//! `loopc test`: run a program's `example` blocks and report each as passed or failed, with a
//! diff of the expected and actual outputs. Exit 1 when any fails.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget};
use loopc::compile::examples::{origin, run_examples, ExampleRun};
use loopc::graph::ExampleSpec;
use loopc::runtime::source::ProgramFile;
use serde_json::{json, Value};

use super::args::TestArgs;
use super::{report, source, Outcome};

/// Runs `loopc test`.
pub fn run(args: &TestArgs, color: bool) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut interrupt = super::interrupt::Interrupt::register(&rt)?;
    // Check first, so problems in the file show as diagnostics with carets.
    let loaded = source::load(&args.file, color)?;
    let (source_name, src) = match &loaded.file {
        ProgramFile::Source { text, .. } => (args.file.display().to_string(), text.clone()),
        ProgramFile::Artifact { artifact, .. } => (artifact.program.source_file.clone(), artifact.program.source.clone()),
    };
    let all = loaded.dag.examples();
    if let Some(unknown) = args.examples.iter().find(|n| !all.iter().any(|e| &&e.name == n)) {
        let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
        let known = if names.is_empty() { "it has none".to_string() } else { format!("its examples: {}", names.join(", ")) };
        anyhow::bail!("`{}` has no example `{unknown}` ({known})", args.file.display());
    }
    let examples: Vec<ExampleSpec> = all.iter().filter(|e| args.examples.is_empty() || args.examples.contains(&e.name)).cloned().collect();
    anyhow::ensure!(
        !examples.is_empty(),
        "`{}` has no examples: add `example NAME {{ input {{ ... }} output {{ ... }} }}` blocks (see the README's language reference)",
        args.file.display()
    );
    let program = args.runtime.reproducible_engine()?.load_with(&args.file, args.runtime.options()?)?;
    let bar = ProgressBar::new(examples.len() as u64);
    if args.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let tick = |_: &ExampleRun| bar.inc(1);
    let Some(runs) = rt.block_on(async {
        tokio::select! {
            r = run_examples(&program, &examples, args.concurrency, &tick) => Some(r),
            _ = interrupt.wait() => None,
        }
    }) else {
        bar.finish_and_clear();
        eprintln!("interrupted: no example was reported");
        return Ok(Outcome::Interrupted);
    };
    bar.finish_and_clear();
    let failed = runs.iter().filter(|r| !r.passed()).count();
    let origins: Vec<String> = examples.iter().map(|e| origin(e, &source_name, &src)).collect();
    if args.json {
        let rows: Vec<Value> = runs
            .iter()
            .zip(&origins)
            .map(|(r, at)| {
                json!({
                    "name": r.name, "origin": at, "passed": r.passed(), "held_out": r.held_out,
                    "inputs": r.inputs, "expected": r.expected, "outputs": r.outputs.as_ref().ok(),
                    "error": r.outputs.as_ref().err(), "mismatched": r.mismatched, "diff": r.diff(), "seconds": r.seconds,
                })
            })
            .collect();
        let summary = json!({ "file": args.file, "passed": runs.len() - failed, "failed": failed, "examples": rows });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let paint = |text: &str, code: &str| if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
        for (r, at) in runs.iter().zip(&origins) {
            let at = report::printable(at);
            let name = if r.held_out { format!("{} (held out)", r.name) } else { r.name.clone() };
            match &r.outputs {
                Ok(outputs) if r.passed() => println!("{} {} ({:.2} s)  {}", paint("PASS", "32"), name, r.seconds, Value::Object(outputs.clone())),
                Ok(_) => {
                    println!("{} {} ({:.2} s)  {at}", paint("FAIL", "31"), name, r.seconds);
                    for line in r.diff().unwrap_or_default().lines() {
                        let shown = report::printable(line);
                        let shown = match line.chars().next() {
                            Some('-') if !line.starts_with("---") => paint(&shown, "31"),
                            Some('+') if !line.starts_with("+++") => paint(&shown, "32"),
                            _ => shown,
                        };
                        println!("    {shown}");
                    }
                }
                Err(e) => println!("{} {} ({:.2} s)  {at}\n    the run failed: {}", paint("FAIL", "31"), name, r.seconds, report::printable(e)),
            }
        }
        println!("{} examples: {} passed, {failed} failed", runs.len(), runs.len() - failed);
    }
    Ok(if failed > 0 { Outcome::Failure } else { Outcome::Success })
}
