//! `loopc bench run`: the runtime's batch throughput with the model, and its own overhead
//! per step once every model answer comes from the response cache (no thresholds).

use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use loopc::graph::Type;
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::Program;
use serde_json::{Map, Value};

use super::args::BenchRunArgs;
use super::{source, Outcome};

const PHRASES: [&str; 8] = [
    "arrived on time and works well",
    "stopped working after a week",
    "is fine for the price",
    "exceeded what I expected",
    "broke the first time I used it",
    "does the job, nothing more",
    "has a lovely finish",
    "came with a missing part",
];

/// Runs `loopc bench run`.
pub fn run(args: &BenchRunArgs, color: bool) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.inputs > 0 && args.concurrency > 0, "--inputs and --concurrency must be at least 1");
    let dag = source::load_dag(&args.file, color)?;
    anyhow::ensure!(dag.inputs().iter().all(|f| f.ty == Type::Text), "bench run generates text inputs; `{}` has other input types", args.file.display());
    let inputs: Vec<Map<String, Value>> = (0..args.inputs)
        .map(|i| dag.inputs().iter().map(|f| (f.name.clone(), Value::String(format!("Item {i}: the product {}.", PHRASES[i % PHRASES.len()])))).collect())
        .collect();
    let steps = dag.steps().len();
    let cache = tempfile::tempdir()?;
    let options = EngineOptions { responses: CacheSetting::Dir(cache.path().to_path_buf()), ..EngineOptions::default() };
    let engine = Engine::builder().options(options).progress(std::sync::Arc::new(super::progress::ConsoleProgress::new())).build()?;
    let program = engine.load(&args.file)?;
    let rt = tokio::runtime::Runtime::new()?;
    let pass = |program: &Program| -> anyhow::Result<(f64, usize)> {
        let t = Instant::now();
        let results: Vec<bool> = rt.block_on(
            stream::iter(inputs.clone())
                .map(|i| {
                    let p = program.clone();
                    async move { p.run(i).await.is_ok() }
                })
                .buffer_unordered(args.concurrency)
                .collect(),
        );
        Ok((t.elapsed().as_secs_f64(), results.iter().filter(|ok| !**ok).count()))
    };
    let (cold, cold_failed) = pass(&program)?;
    let (warm, _) = pass(&program)?;
    let per_step_us = warm / (args.inputs * steps.max(1)) as f64 * 1e6;
    let figures = serde_json::json!({
        "program": args.file, "inputs": args.inputs, "steps_per_run": steps, "concurrency": args.concurrency,
        "cold_seconds": cold, "cold_runs_per_s": args.inputs as f64 / cold, "cold_failed_runs": cold_failed,
        "warm_seconds": warm, "warm_runs_per_s": args.inputs as f64 / warm, "runtime_overhead_us_per_step": per_step_us,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("runtime on {} ({steps} step(s) per run), {} inputs, concurrency {}", args.file.display(), args.inputs, args.concurrency);
        println!("  with the model        {cold:>8.2} s   ({:.1} runs/s, {cold_failed} failed)", args.inputs as f64 / cold);
        println!("  warm response cache   {warm:>8.3} s   ({:.0} runs/s)", args.inputs as f64 / warm);
        println!("  runtime overhead      {per_step_us:>8.0} µs per step (rendering, hashing, cache, parsing, scheduling)");
    }
    Ok(Outcome::Success)
}
