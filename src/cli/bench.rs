//! `loopc bench`: measure loopc's own speed and print the figures (no thresholds: figures
//! are for people and for tracking over time).

use std::time::{Duration, Instant};

use loopc::{graph, syntax};

use super::args::BenchParseArgs;
use super::measure::Latencies;
use super::Outcome;

/// A program with `steps` steps in a layered pipeline: each step reads the program input and
/// up to two earlier steps, so the graph has long chains and wide layers.
pub fn generated_program(steps: usize) -> String {
    let mut src = String::from("program generated \"A generated program for benchmarks\"\n\n");
    src.push_str("input text: text \"the input\"\noutput result: text\n\n");
    src.push_str("signature Step \"Rewrite the text using the hints.\" {\n  in text: text\n  in hint: text\n  in other: text\n  out rewritten: text\n}\n\n");
    for i in 0..steps {
        let hint = if i == 0 { "input.text".to_string() } else { format!("s{}.rewritten", i - 1) };
        let other = if i < 2 { "input.text".to_string() } else { format!("s{}.rewritten", i / 2) };
        src.push_str(&format!("step s{i} = predict Step {{ text: input.text, hint: {hint}, other: {other} }}\n"));
    }
    let last = steps.saturating_sub(1);
    src.push_str(&format!("\nreturn {{ result: s{last}.rewritten }}\n"));
    src
}

/// Runs `loopc bench parse`.
pub fn parse(args: &BenchParseArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    let source = generated_program(args.steps);
    let mut parse_times = Vec::new();
    let mut check_times = Vec::new();
    let mut layers = 0;
    for _ in 0..args.iterations {
        let t = Instant::now();
        let file = syntax::parse(&source).map_err(|d| anyhow::anyhow!("generated program does not parse: {}", d.message))?;
        parse_times.push(t.elapsed());
        let t = Instant::now();
        let lowered = graph::lower(&file);
        check_times.push(t.elapsed());
        let dag = lowered.dag.ok_or_else(|| anyhow::anyhow!("generated program does not check"))?;
        layers = dag.schedule().len();
    }
    let (p, c) = (median(&parse_times), median(&check_times));
    let mb = source.len() as f64 / 1e6;
    let figures = serde_json::json!({
        "steps": args.steps,
        "source_bytes": source.len(),
        "schedule_layers": layers,
        "iterations": args.iterations,
        "parse_ms": ms(p),
        "check_ms": ms(c),
        "total_ms": ms(p + c),
        "parse_mb_per_s": mb / p.as_secs_f64(),
        "steps_per_s": args.steps as f64 / (p + c).as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("parse + check of a generated program: {} steps, {:.2} MB, {layers} schedule layers", args.steps, mb);
        println!("  parse   {:>9.2} ms   ({:.1} MB/s)", ms(p), mb / p.as_secs_f64());
        println!("  check   {:>9.2} ms", ms(c));
        println!("  total   {:>9.2} ms   ({:.0} steps/s)   median of {}", ms(p + c), args.steps as f64 / (p + c).as_secs_f64(), args.iterations);
    }
    Ok(Outcome::Success)
}

fn median(times: &[Duration]) -> Duration {
    Duration::from_secs_f64(Latencies::from_durations(times.iter().copied()).percentile(0.5) / 1e3)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
