//! `loopc bench compile`: a fixed program compiled on fixed data twice, first from an empty
//! response cache and then from the warm one, with the figures of each (no thresholds).

use std::time::Instant;

use super::args::{BenchCompileArgs, CompileArgs, RuntimeArgs, SearchArgs};
use super::compile::compile_artifact;
use super::Outcome;

/// Runs `loopc bench compile`.
pub fn run(args: &BenchCompileArgs, color: bool) -> anyhow::Result<Outcome> {
    let cache = tempfile::tempdir()?;
    let out = cache.path().join("artifact.json");
    let compile = CompileArgs {
        file: args.file.clone(),
        train: Some(args.train.clone()),
        dev: Some(args.dev.clone()),
        dev_fraction: 0.3,
        out,
        report: None,
        search: SearchArgs::default(),
        concurrency: 4,
        interactive: false,
        json: true,
        runtime: RuntimeArgs {
            model: None,
            tool_url: Vec::new(),
            step_timeout: 120,
            no_cache: false,
            batching: Default::default(),
            cache_dir: Some(cache.path().join("responses")),
        },
    };
    let mut passes = Vec::new();
    for name in ["cold", "warm"] {
        if !args.json {
            eprintln!("{name} compile of {} …", args.file.display());
        }
        let t = Instant::now();
        let Some(a) = compile_artifact(&compile, color)? else { return Ok(Outcome::Interrupted) };
        let p = &a.provenance;
        passes.push(serde_json::json!({
            "pass": name,
            "wall_seconds": t.elapsed().as_secs_f64(),
            "model_calls": p.model_calls,
            "cache_hits": p.timing.cache_hits,
            "tokens_prefilled": p.timing.tokens_prefilled,
            "tokens_generated": p.timing.tokens_generated,
            "candidates": p.candidates.len(),
            "baseline_score": p.baseline_score,
            "final_score": p.final_score,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "program": args.file, "passes": passes }))?);
    } else {
        println!("compile of {} ({} train, {} dev)", args.file.display(), args.train.display(), args.dev.display());
        println!("  {:<5} {:>9} {:>8} {:>10} {:>10} {:>10}  score", "pass", "wall s", "calls", "cache hits", "prefilled", "generated");
        for p in &passes {
            println!(
                "  {:<5} {:>9.2} {:>8} {:>10} {:>10} {:>10}  {:.3} → {:.3}",
                p["pass"].as_str().unwrap_or(""),
                p["wall_seconds"].as_f64().unwrap_or(0.0),
                p["model_calls"].as_u64().unwrap_or(0),
                p["cache_hits"].as_u64().unwrap_or(0),
                p["tokens_prefilled"].as_u64().unwrap_or(0),
                p["tokens_generated"].as_u64().unwrap_or(0),
                p["baseline_score"].as_f64().unwrap_or(0.0),
                p["final_score"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(Outcome::Success)
}
