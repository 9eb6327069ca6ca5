//! `loopc bench structured`: typed outputs with and without constrained decoding, on a
//! labelled dataset — how many runs give well-formed outputs, item F1 of each list output,
//! accuracy of each label or bool output, values holding marker syntax or found nowhere in
//! the input, and decode speed. Optionally the same through a real OpenAI-compatible server
//! (llama-cpp-python's, started here on the GGUF behind `--model`, by default the default
//! model's). Figures only.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use loopc::graph::{Dag, Type, DEFAULT_LOCAL_MODEL};
use loopc::model::progress::{Progress, SilentProgress};
use loopc::model::provision::Cache;
use loopc::model::source::gguf_file;
use loopc::runtime::executor::RunOptions;
use loopc::runtime::{CacheSetting, Engine, EngineOptions, ProgramOptions};
use serde_json::{json, Map, Value};

use super::args::BenchStructuredArgs;
use super::progress::ConsoleProgress;
use super::{source, Outcome};

/// One labelled example: the program's inputs and the expected outputs it has.
struct Example {
    inputs: Map<String, Value>,
    expected: Map<String, Value>,
}

fn examples(path: &Path, dag: &Dag, limit: Option<usize>) -> anyhow::Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
            anyhow::bail!("{}:{}: not a JSON object", path.display(), i + 1);
        };
        let pick = |fields: &[loopc::graph::Field]| -> Map<String, Value> {
            obj.iter().filter(|(k, _)| fields.iter().any(|f| &f.name == *k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let inputs = pick(dag.inputs());
        anyhow::ensure!(inputs.len() == dag.inputs().len(), "{}:{}: the line lacks some of the program's inputs", path.display(), i + 1);
        out.push(Example { inputs, expected: pick(dag.outputs()) });
    }
    anyhow::ensure!(!out.is_empty(), "`{}` has no examples", path.display());
    Ok(out)
}

/// A list item as compared: lowercase, whitespace collapsed.
fn norm(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a value holds marker syntax (what a template's field markers look like).
fn has_marker(s: &str) -> bool {
    s.contains("[[") || s.contains("]]") || s.contains("##")
}

/// Every string inside a value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(o) => o.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// The figures of one configuration.
fn measure(args: &BenchStructuredArgs, dag: &Dag, data: &[Example], name: &str, model: Option<String>, constrain: bool) -> anyhow::Result<Value> {
    let options = EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() };
    let engine = Engine::builder().options(options).build()?;
    let program = engine
        .load_with(&args.file, ProgramOptions { model_override: model, run: RunOptions { constrain, ..RunOptions::default() }, ..ProgramOptions::default() })?;
    let rt = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let results: Vec<_> = rt.block_on(
        stream::iter(data.iter().map(|e| e.inputs.clone()))
            .map(|inputs| {
                let p = program.clone();
                async move { p.run_traced(inputs).await }
            })
            .buffered(args.concurrency.max(1))
            .collect(),
    );
    let wall = started.elapsed().as_secs_f64();
    let (mut ok, mut retried, mut repaired, mut generated, mut markers, mut absent, mut values) = (0, 0, 0, 0u64, 0, 0, 0);
    let mut errors: Vec<String> = Vec::new();
    let mut scores = Map::new();
    // How each step's structure was enforced (`grammar`, the dialect a server took, `parsed`):
    // which dialect an endpoint ended up speaking is a figure too.
    let mut structures = Map::new();
    for step in results.iter().flat_map(|(_, trace)| &trace.steps) {
        let name = step.structure.clone().unwrap_or_else(|| "label choice or none".into());
        let n = structures.get(&name).and_then(Value::as_u64).unwrap_or(0);
        structures.insert(name, json!(n + 1));
    }
    for f in dag.outputs() {
        let list = matches!(f.ty, Type::List(_));
        let (mut tp, mut fp, mut fneg, mut right, mut seen) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for (e, (result, _)) in data.iter().zip(&results) {
            let Some(want) = e.expected.get(&f.name) else { continue };
            seen += 1;
            let got = result.as_ref().ok().and_then(|o| o.get(&f.name));
            if list {
                let want: HashSet<String> = want.as_array().map(|a| a.iter().map(norm).collect()).unwrap_or_default();
                let got: HashSet<String> = got.and_then(Value::as_array).map(|a| a.iter().map(norm).collect()).unwrap_or_default();
                tp += got.intersection(&want).count();
                fp += got.difference(&want).count();
                fneg += want.difference(&got).count();
            } else if got == Some(want) {
                right += 1;
            }
        }
        if seen == 0 {
            continue;
        }
        let score = if list {
            let (p, r) = (tp as f64 / (tp + fp).max(1) as f64, tp as f64 / (tp + fneg).max(1) as f64);
            json!({"kind": "f1", "f1": if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 }, "precision": p, "recall": r})
        } else {
            json!({"kind": "accuracy", "accuracy": right as f64 / seen as f64})
        };
        scores.insert(f.name.clone(), score);
    }
    for (e, (result, trace)) in data.iter().zip(&results) {
        generated += trace.steps.iter().map(|s| s.completion_tokens).sum::<u64>();
        retried += usize::from(trace.steps.iter().any(|s| s.raw.len() > 1));
        repaired += usize::from(trace.steps.iter().any(|s| !s.repairs.is_empty()));
        match result {
            Ok(out) => {
                ok += 1;
                let input_text = e.inputs.values().map(norm).collect::<Vec<_>>().join(" ");
                for (name, v) in out {
                    let labelled = dag.outputs().iter().find(|f| &f.name == name).is_some_and(|f| matches!(f.ty, Type::List(_)));
                    let mut found = Vec::new();
                    strings(v, &mut found);
                    for s in found {
                        values += 1;
                        markers += usize::from(has_marker(&s));
                        absent += usize::from(labelled && !input_text.contains(&norm(&Value::String(s))));
                    }
                }
            }
            Err(err) => {
                if errors.len() < 3 {
                    errors.push(err.to_string().chars().take(200).collect());
                }
            }
        }
    }
    Ok(json!({
        "configuration": name, "constrained": constrain, "examples": data.len(), "well_formed": ok,
        "well_formed_rate": ok as f64 / data.len() as f64, "runs_with_a_retry": retried, "runs_with_repairs": repaired,
        "scores": scores, "values": values, "values_with_markers": markers, "list_values_not_in_input": absent,
        "generated_tokens": generated, "wall_seconds": wall, "generated_tokens_per_second": generated as f64 / wall,
        "examples_per_second": data.len() as f64 / wall, "structures": structures, "first_errors": errors,
    }))
}

/// A llama-cpp-python server this bench started; stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our launcher of llama-cpp-python's server (`bench/llama_server.py`): the stock server with
/// the weights on llama.cpp's plain CPU buffers, which keeps llama-cpp-python 0.3.36 from
/// dying with SIGILL on its first completion on some CPUs. Built in, so the installed binary
/// needs no checkout.
const LAUNCHER: &str = include_str!("../../bench/llama_server.py");

/// Starts llama-cpp-python's server through [`LAUNCHER`] (written into `scratch`) on `gguf` at
/// a free loopback port and waits until it answers (`/v1/models`), at most `wait`. The
/// server's log goes to `scratch/llama_server.log`, whose tail a failure shows.
fn start_server(python: &Path, gguf: &Path, scratch: &Path, wait: Duration) -> anyhow::Result<Server> {
    let launcher = scratch.join("llama_server.py");
    std::fs::write(&launcher, LAUNCHER).with_context(|| format!("cannot write `{}`", launcher.display()))?;
    let log_path = scratch.join("llama_server.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create `{}`", log_path.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(python)
        .arg(&launcher)
        .arg("--model")
        .arg(gguf)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "4096", "--n_threads", "2"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start `{}` with `{}`", launcher.display(), python.display()))?;
    let mut server = Server { child, url: format!("http://127.0.0.1:{port}/v1") };
    let deadline = Instant::now() + wait;
    let rt = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n    ")
    };
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait()? {
            anyhow::bail!("the llama-cpp-python server exited ({status}) before answering:\n    {}", log_tail());
        }
        let up =
            rt.block_on(async { client.get(format!("{}/models", server.url)).timeout(Duration::from_secs(2)).send().await.map(|r| r.status().is_success()) });
        if up.unwrap_or(false) {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    anyhow::bail!("the llama-cpp-python server did not answer within {} s:\n    {}", wait.as_secs(), log_tail())
}

/// Runs `loopc bench structured`.
pub fn run(args: &BenchStructuredArgs, color: bool) -> anyhow::Result<Outcome> {
    let dag = source::load_dag(&args.file, color)?;
    let data = examples(&args.data, &dag, args.limit)?;
    let mut configs: Vec<(String, Option<String>, bool)> =
        vec![("local, constrained".into(), args.model.clone(), true), ("local, unconstrained".into(), args.model.clone(), false)];
    let scratch = tempfile::tempdir()?;
    let server = match (&args.server_url, &args.server_python) {
        (Some(url), _) => Some((None, url.clone())),
        (None, Some(python)) => {
            let gguf = match &args.gguf {
                Some(g) => g.clone(),
                None => {
                    // The model the local configurations run, so both sides answer with the same weights.
                    let spec = args.model.as_deref().unwrap_or(DEFAULT_LOCAL_MODEL);
                    let cache = Cache::from_env()?;
                    let console = ConsoleProgress::new();
                    let progress: &dyn Progress = if args.json { &SilentProgress } else { &console };
                    gguf_file(spec, &cache, scratch.path(), progress)
                        .with_context(|| format!("cannot find the GGUF file the server should load for `{spec}` (--gguf FILE names one)"))?
                }
            };
            if !args.json {
                eprintln!("starting llama-cpp-python's server on {} ...", gguf.display());
            }
            let s = start_server(python, &gguf, scratch.path(), Duration::from_secs(120))?;
            let url = s.url.clone();
            Some((Some(s), url))
        }
        (None, None) => None,
    };
    if let Some((_, url)) = &server {
        let model = format!("openai:{url}#{}", args.server_model);
        configs.push(("server, structured output".into(), Some(model.clone()), true));
        configs.push(("server, text only".into(), Some(model), false));
    }
    let mut rows = Vec::new();
    for (name, model, constrain) in &configs {
        if !args.json {
            eprintln!("measuring {name} on {} examples ...", data.len());
        }
        rows.push(measure(args, &dag, &data, name, model.clone(), *constrain)?);
    }
    drop(server);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"program": args.file, "data": args.data, "configurations": rows}))?);
        return Ok(Outcome::Success);
    }
    println!("structured outputs: {} on {} ({} examples, concurrency {})", args.file.display(), args.data.display(), data.len(), args.concurrency);
    let score_names: Vec<String> = rows.first().and_then(|r| r["scores"].as_object()).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let mut header = format!("  {:<26} {:>12} {:>8}", "configuration", "well-formed", "retried");
    for s in &score_names {
        header.push_str(&format!(" {:>16}", s));
    }
    header.push_str(&format!(" {:>8} {:>10} {:>9} {:>9}", "markers", "not input", "gen tok/s", "runs/s"));
    println!("{header}");
    for r in &rows {
        let mut line = format!(
            "  {:<26} {:>3}/{:<3} {:>4.0}% {:>8}",
            r["configuration"].as_str().unwrap_or(""),
            r["well_formed"],
            r["examples"],
            100.0 * r["well_formed_rate"].as_f64().unwrap_or(0.0),
            r["runs_with_a_retry"]
        );
        for s in &score_names {
            let sc = &r["scores"][s];
            let v = sc["f1"].as_f64().or(sc["accuracy"].as_f64()).unwrap_or(0.0);
            line.push_str(&format!(" {:>9} {:>6.3}", if sc["kind"] == "f1" { "F1" } else { "accuracy" }, v));
        }
        line.push_str(&format!(
            " {:>8} {:>10} {:>9.1} {:>9.2}",
            r["values_with_markers"],
            r["list_values_not_in_input"],
            r["generated_tokens_per_second"].as_f64().unwrap_or(0.0),
            r["examples_per_second"].as_f64().unwrap_or(0.0)
        ));
        println!("{line}");
    }
    for r in &rows {
        let how: Vec<String> = r["structures"].as_object().map(|o| o.iter().map(|(k, v)| format!("{k} ({v} steps)")).collect()).unwrap_or_default();
        println!("  {} — structure: {}", r["configuration"].as_str().unwrap_or(""), how.join(", "));
    }
    for r in &rows {
        if let Some(errs) = r["first_errors"].as_array().filter(|e| !e.is_empty()) {
            println!("  {} — first errors:", r["configuration"].as_str().unwrap_or(""));
            for e in errs {
                println!("    {}", e.as_str().unwrap_or(""));
            }
        }
    }
    Ok(Outcome::Success)
}
