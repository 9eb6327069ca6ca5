//! `loopc bench run`: runtime throughput with the model at several concurrency levels —
//! examples per second, p50/p95 latency and peak memory per level, the response cache off —
//! and optionally the runtime's own overhead per step from a warm response cache. Each level
//! runs in a fresh process, so its peak memory is its own. Figures only, no thresholds.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use loopc::graph::{Dag, Type};
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::Program;
use serde_json::{json, Map, Value};

use super::args::BenchRunArgs;
use super::measure::Latencies;
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

/// The inputs to run: the first `limit` lines of `file`, or generated text.
fn inputs(args: &BenchRunArgs, dag: &Dag) -> anyhow::Result<Vec<Map<String, Value>>> {
    match &args.inputs {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                if args.limit.is_some_and(|n| out.len() >= n) {
                    break;
                }
                let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
                    anyhow::bail!("{}:{}: not a JSON object", path.display(), i + 1);
                };
                out.push(obj.into_iter().filter(|(k, _)| dag.inputs().iter().any(|f| &f.name == k)).collect());
            }
            anyhow::ensure!(!out.is_empty(), "`{}` has no inputs", path.display());
            Ok(out)
        }
        None => {
            anyhow::ensure!(
                dag.inputs().iter().all(|f| f.ty == Type::Text),
                "without --inputs, bench run generates text inputs; this program has other input types"
            );
            Ok((0..args.limit.unwrap_or(64))
                .map(|i| {
                    dag.inputs().iter().map(|f| (f.name.clone(), Value::String(format!("Item {i}: the product {}.", PHRASES[i % PHRASES.len()])))).collect()
                })
                .collect())
        }
    }
}

/// Runs every input at `concurrency`; returns (wall seconds, per-run latencies, failures).
fn pass(rt: &tokio::runtime::Runtime, program: &Program, inputs: &[Map<String, Value>], concurrency: usize) -> (f64, Latencies, usize) {
    let t = Instant::now();
    let results: Vec<(bool, f64)> = rt.block_on(
        stream::iter(inputs.to_vec())
            .map(|i| {
                let p = program.clone();
                async move {
                    let started = Instant::now();
                    let ok = p.run(i).await.is_ok();
                    (ok, started.elapsed().as_secs_f64() * 1000.0)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect(),
    );
    let latencies = Latencies::from_ms(results.iter().map(|r| r.1));
    (t.elapsed().as_secs_f64(), latencies, results.iter().filter(|r| !r.0).count())
}

/// One level, in this process: the figures as JSON.
fn level(args: &BenchRunArgs, concurrency: usize, color: bool) -> anyhow::Result<Value> {
    let dag = source::load_dag(&args.file, color)?;
    let inputs = inputs(args, &dag)?;
    let options = EngineOptions { responses: CacheSetting::Off, load: args.batching.load_options(true), ..EngineOptions::default() };
    let engine = Engine::builder().options(options).build()?;
    let program = engine.load(&args.file)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (wall, latencies, failed) = pass(&rt, &program, &inputs, concurrency);
    let stats = engine.model_stats();
    let (passes, rows, steps, step_rows) =
        stats.iter().fold((0, 0, 0, 0), |a, (_, s)| (a.0 + s.forward_passes - s.decode_steps, a.1 + s.prefill_rows, a.2 + s.decode_steps, a.3 + s.decode_rows));
    Ok(json!({
        "concurrency": concurrency, "examples": inputs.len(), "failed": failed, "wall_seconds": wall,
        "examples_per_second": inputs.len() as f64 / wall,
        "p50_ms": latencies.percentile(0.5), "p95_ms": latencies.percentile(0.95),
        "peak_rss_mb": super::measure::peak_rss_mb(),
        "prefill_passes": passes, "mean_prefill_rows": rows as f64 / passes.max(1) as f64,
        "decode_steps": steps, "mean_decode_rows": step_rows as f64 / steps.max(1) as f64,
    }))
}

/// The runtime's own time per step once every answer comes from the response cache.
fn overhead(args: &BenchRunArgs, color: bool) -> anyhow::Result<f64> {
    let dag = source::load_dag(&args.file, color)?;
    let inputs = inputs(args, &dag)?;
    let cache = tempfile::tempdir()?;
    let options = EngineOptions { responses: CacheSetting::Dir(cache.path().to_path_buf()), ..EngineOptions::default() };
    let program = Engine::builder().options(options).build()?.load(&args.file)?;
    let rt = tokio::runtime::Runtime::new()?;
    let concurrency = args.concurrency.iter().copied().max().unwrap_or(8);
    pass(&rt, &program, &inputs, concurrency);
    let (warm, _, _) = pass(&rt, &program, &inputs, concurrency);
    Ok(warm / (inputs.len() * dag.steps().len().max(1)) as f64 * 1e6)
}

fn run_level_process(file: &Path, args: &BenchRunArgs, concurrency: usize) -> anyhow::Result<Value> {
    let mut cmd = Command::new(std::env::current_exe().context("cannot find the loopc binary")?);
    cmd.args(["bench", "run"]).arg(file).args(["--level", &concurrency.to_string(), "--color", "never"]);
    if let Some(i) = &args.inputs {
        cmd.arg("--inputs").arg(i);
    }
    if let Some(n) = args.limit {
        cmd.args(["--limit", &n.to_string()]);
    }
    if let Some(n) = args.batching.max_batch {
        cmd.args(["--max-batch", &n.to_string()]);
    }
    if let Some(n) = args.batching.kv_budget {
        cmd.args(["--kv-budget", &n.to_string()]);
    }
    if let Some(on) = args.batching.batch_across {
        cmd.args(["--batch-across", if on { "on" } else { "off" }]);
    }
    if let Some(on) = args.batching.prefill_graph {
        cmd.args(["--prefill-graph", if on { "on" } else { "off" }]);
    }
    let out = cmd.output().context("cannot run a benchmark level")?;
    anyhow::ensure!(out.status.success(), "the level at concurrency {concurrency} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).context("a benchmark level printed no figures")
}

/// Runs `loopc bench run`.
pub fn run(args: &BenchRunArgs, color: bool) -> anyhow::Result<Outcome> {
    if let Some(c) = args.level {
        println!("{}", level(args, c, color)?);
        return Ok(Outcome::Success);
    }
    anyhow::ensure!(!args.concurrency.is_empty() && args.concurrency.iter().all(|c| *c > 0), "--concurrency takes levels of at least 1, e.g. 1,8,32");
    source::load_dag(&args.file, color)?;
    let mut levels = Vec::new();
    for &c in &args.concurrency {
        if !args.json {
            eprintln!("measuring concurrency {c} ...");
        }
        levels.push(run_level_process(&args.file, args, c)?);
    }
    let overhead_us = if args.overhead { Some(overhead(args, color)?) } else { None };
    let base = levels.first().cloned().unwrap_or_default();
    let ratio = |v: &Value, key: &str| v[key].as_f64().unwrap_or(0.0) / base[key].as_f64().unwrap_or(1.0).max(1e-9);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "program": args.file, "levels": levels, "runtime_overhead_us_per_step": overhead_us }))?);
        return Ok(Outcome::Success);
    }
    println!("runtime on {} ({} examples, response cache off)", args.file.display(), base["examples"]);
    println!("  concurrency   wall s   examples/s  (x c{})   p50 ms   p95 ms   peak MB (x c{})   mean batch", base["concurrency"], base["concurrency"]);
    for l in &levels {
        println!(
            "  {:>11}  {:>7.2}  {:>11.2}  ({:>5.2})  {:>7.0}  {:>7.0}  {:>8.0} ({:>5.2})   {:.1}",
            l["concurrency"],
            l["wall_seconds"].as_f64().unwrap_or(0.0),
            l["examples_per_second"].as_f64().unwrap_or(0.0),
            ratio(l, "examples_per_second"),
            l["p50_ms"].as_f64().unwrap_or(0.0),
            l["p95_ms"].as_f64().unwrap_or(0.0),
            l["peak_rss_mb"].as_f64().unwrap_or(0.0),
            ratio(l, "peak_rss_mb"),
            l["mean_prefill_rows"].as_f64().unwrap_or(0.0),
        );
    }
    if let Some(us) = overhead_us {
        println!("  runtime overhead {us:.0} µs per step (rendering, hashing, cache, parsing, scheduling)");
    }
    Ok(Outcome::Success)
}
