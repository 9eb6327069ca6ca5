//! `loopc eval`: score a program or an artifact on labelled data, with per-label accuracy
//! and a confusion matrix for label outputs.

use anyhow::Context;
use indicatif::ProgressBar;
use loopc::compile::{self, Budget};
use loopc::graph::Type;
use serde_json::{json, Value};

use super::args::EvalArgs;
use super::compile::{load_data, pick_metric};
use super::{source, Outcome};

/// Runs `loopc eval`.
pub fn run(args: &EvalArgs, color: bool) -> anyhow::Result<Outcome> {
    if let Some(bar) = args.fail_under {
        anyhow::ensure!(bar.is_finite() && (0.0..=1.0).contains(&bar), "--fail-under must be a score between 0 and 1");
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut interrupt = super::interrupt::Interrupt::register(&rt)?;
    source::load(&args.file, color)?;
    let program = args.runtime.reproducible_engine()?.load_with(&args.file, args.runtime.options()?)?;
    super::report::print_load_warnings(&program);
    let dag = program.dag().clone();
    let metric = pick_metric(&dag, args.metric.as_deref(), None)?.judged_by(&program);
    let data = load_data(&args.data, &dag, &metric)?;
    let bar = ProgressBar::new(data.examples.len() as u64);
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let tick = || bar.inc(1);
    let budget = Budget::new(None, None, None);
    let Some(e) = rt.block_on(async {
        tokio::select! {
            r = compile::evaluate(&program, &data.examples, &metric, args.concurrency, &budget, &tick) => r.map(Some).map_err(anyhow::Error::from),
            _ = interrupt.wait() => Ok(None),
        }
    })?
    else {
        bar.finish_and_clear();
        eprintln!("interrupted: nothing was scored");
        return Ok(Outcome::Interrupted);
    };
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
    // A label with no example in the data has no accuracy (not 0, not 1): n/a.
    let accuracy = |row: &[usize], i: usize| {
        let n: usize = row.iter().sum();
        (n > 0).then(|| row[i] as f64 / n as f64)
    };
    if args.json {
        let per_label: Vec<Value> = labels
            .iter()
            .map(|(field, names, m)| {
                json!({
                    "field": field,
                    "labels": names,
                    "confusion": m,
                    "accuracy": names.iter().enumerate().map(|(i, n)| (n.clone(), json!(accuracy(&m[i], i)))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        let examples: Vec<Value> = data
            .examples
            .iter()
            .enumerate()
            .map(|(i, ex)| {
                let t = e.traces.get(i);
                json!({"example": ex.origin, "score": e.scores.get(i), "outputs": t.and_then(|t| t.outputs.clone()), "error": t.and_then(|t| t.error.clone())})
            })
            .collect();
        println!(
            "{}",
            json!({ "metric": metric.name(), "score": e.mean(), "examples": e.scores.len(), "failed_runs": failed, "model_calls": e.model_calls, "labels": per_label, "results": examples })
        );
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
                match accuracy(&m[i], i) {
                    Some(a) => println!("  {a:.3}"),
                    None => println!("  n/a (no examples)"),
                }
            }
        }
    }
    if !e.scores.is_empty() && failed == e.scores.len() {
        eprintln!("every run failed");
        return Ok(Outcome::Failure);
    }
    if let Some(bar) = args.fail_under.filter(|b| e.mean() < *b) {
        eprintln!("the score {:.3} is under --fail-under {bar}", e.mean());
        return Ok(Outcome::Failure);
    }
    Ok(Outcome::Success)
}
