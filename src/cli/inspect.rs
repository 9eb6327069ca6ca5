//! `loopc inspect` and `loopc diff`: read compiled artifacts without running a model.

use std::collections::BTreeSet;
use std::sync::Arc;

use loopc::runtime::adapter::Demo;
use loopc::runtime::artifact::Artifact;
use loopc::runtime::executor::{Executor, RunOptions};
use serde_json::{json, Map, Value};

use super::args::{DiffArgs, InspectArgs};
use super::Outcome;

/// Runs `loopc inspect`.
pub fn inspect(args: &InspectArgs) -> anyhow::Result<Outcome> {
    let artifact = Artifact::read(&args.artifact)?;
    let shown = args.artifact.display().to_string();
    let dag = loopc::runtime::checked_dag(&format!("{shown} (embedded {})", artifact.program.source_file), &artifact.program.source)?;
    let params = artifact.validate(&shown, &dag)?;
    if let Some(s) = &args.step {
        anyhow::ensure!(
            artifact.steps.contains_key(s),
            "the artifact has no model step `{s}` (its steps: {})",
            artifact.steps.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    // Without --input, each program input shows as a placeholder.
    let inputs: Map<String, Value> = match &args.input {
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            _ => anyhow::bail!("--input must be a JSON object of the program's inputs"),
        },
        None => dag.inputs().iter().map(|f| (f.name.clone(), Value::String(format!("<input.{}>", f.name)))).collect(),
    };
    let executor = Executor::new(Arc::new(dag), Vec::new(), params, RunOptions::default());
    if args.input.is_some() {
        executor.check_inputs(&inputs)?;
    }
    let p = &artifact.provenance;
    let mut steps = Vec::new();
    for (name, rec) in artifact.steps.iter().filter(|(n, _)| args.step.as_ref().is_none_or(|s| s == *n)) {
        let Some(id) = executor.dag().step_id(name) else { continue };
        let Some(request) = executor.preview(id, &inputs) else { continue };
        let messages: Vec<Value> = request.messages().iter().map(|m| json!({"role": format!("{:?}", m.role).to_lowercase(), "content": m.content})).collect();
        steps.push(json!({
            "step": name, "signature": rec.signature, "template": rec.template, "instruction": rec.instruction,
            "demos": rec.demos.len(), "messages": messages, "answer_prefix": request.answer_prefix,
            "shown": super::prompt::show(&request),
        }));
    }
    if args.json {
        for s in &mut steps {
            if let Some(o) = s.as_object_mut() {
                o.remove("shown");
            }
        }
        let summary = json!({
            "program": artifact.program.name, "optimizer": p.optimizer, "seed": p.seed, "metric": p.metric,
            "baseline_score": p.baseline_score, "final_score": p.final_score, "candidates": p.candidates.len(), "steps": steps,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(Outcome::Success);
    }
    println!("{} — compiled by loopc {} with {} (seed {}, metric {})", artifact.program.name, p.loopc_version, p.optimizer, p.seed, p.metric);
    println!(
        "dev score {:.3} → {:.3} on {} examples, {} candidates, {} model calls",
        p.baseline_score,
        p.final_score,
        p.dev.examples,
        p.candidates.len(),
        p.model_calls
    );
    for m in &artifact.models {
        println!("model `{}`: {} {} (weights {})", m.name, m.provider, m.model, m.weights_sha256.as_deref().map_or("unknown", |h| &h[..h.len().min(12)]));
    }
    for s in &steps {
        println!(
            "\n══ step `{}` ({}, template {}, {} demos) ══",
            s["step"].as_str().unwrap_or(""),
            s["signature"].as_str().unwrap_or(""),
            s["template"].as_str().unwrap_or(""),
            s["demos"]
        );
        print!("{}", s["shown"].as_str().unwrap_or(""));
    }
    Ok(Outcome::Success)
}

/// What changed in one step between two artifacts.
fn step_changes(a: Option<&loopc::runtime::artifact::StepRecord>, b: Option<&loopc::runtime::artifact::StepRecord>) -> Option<Value> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (a, _) => return Some(json!({ "only_in": if a.is_some() { "a" } else { "b" } })),
    };
    let key = |d: &Demo| json!([d.inputs, d.outputs]).to_string();
    let (da, db): (BTreeSet<String>, BTreeSet<String>) = (a.demos.iter().map(key).collect(), b.demos.iter().map(key).collect());
    let removed: Vec<Value> = a.demos.iter().filter(|d| !db.contains(&key(d))).map(|d| json!({"inputs": d.inputs, "outputs": d.outputs})).collect();
    let added: Vec<Value> = b.demos.iter().filter(|d| !da.contains(&key(d))).map(|d| json!({"inputs": d.inputs, "outputs": d.outputs})).collect();
    let reordered = removed.is_empty() && added.is_empty() && a.demos != b.demos;
    let mut out = Map::new();
    if a.template != b.template {
        out.insert("template".into(), json!([a.template, b.template]));
    }
    if a.instruction != b.instruction {
        out.insert("instruction".into(), json!([a.instruction, b.instruction]));
    }
    if !removed.is_empty() || !added.is_empty() || reordered {
        out.insert("demos".into(), json!({"removed": removed, "added": added, "reordered": reordered, "count": [a.demos.len(), b.demos.len()]}));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Runs `loopc diff`.
pub fn diff(args: &DiffArgs) -> anyhow::Result<Outcome> {
    let a = Artifact::read(&args.a)?;
    let b = Artifact::read(&args.b)?;
    let (pa, pb) = (&a.provenance, &b.provenance);
    let mut fields = Map::new();
    let mut compare = |name: &str, x: Value, y: Value| {
        if x != y {
            fields.insert(name.to_string(), json!([x, y]));
        }
    };
    compare("source_sha256", json!(a.program.source_sha256), json!(b.program.source_sha256));
    compare("optimizer", json!(pa.optimizer), json!(pb.optimizer));
    compare("settings", json!(pa.settings), json!(pb.settings));
    compare("seed", json!(pa.seed), json!(pb.seed));
    compare("metric", json!(pa.metric), json!(pb.metric));
    compare("train_sha256", json!(pa.train.sha256), json!(pb.train.sha256));
    compare("dev_sha256", json!(pa.dev.sha256), json!(pb.dev.sha256));
    compare("models", json!(a.models), json!(b.models));
    compare("baseline_score", json!(pa.baseline_score), json!(pb.baseline_score));
    compare("final_score", json!(pa.final_score), json!(pb.final_score));
    compare("candidates", json!(pa.candidates.len()), json!(pb.candidates.len()));
    let names: BTreeSet<&String> = a.steps.keys().chain(b.steps.keys()).collect();
    let steps: Map<String, Value> = names.into_iter().filter_map(|n| step_changes(a.steps.get(n), b.steps.get(n)).map(|c| (n.clone(), c))).collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "a": args.a, "b": args.b, "same": fields.is_empty() && steps.is_empty(), "provenance": fields, "steps": steps })
            )?
        );
        return Ok(if fields.is_empty() && steps.is_empty() { Outcome::Success } else { Outcome::Failure });
    }
    println!("--- {}\n+++ {}", args.a.display(), args.b.display());
    if fields.is_empty() && steps.is_empty() {
        println!("the artifacts compile the same program to the same prompts (timing aside)");
        return Ok(Outcome::Success);
    }
    let short = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| if f.fract() == 0.0 { n.to_string() } else { format!("{f:.3}") }),
        other => other.to_string(),
    };
    for (name, pair) in &fields {
        println!("{name}: {} → {}", short(&pair[0]), short(&pair[1]));
    }
    for (step, c) in &steps {
        println!("\nstep `{step}`:");
        if let Some(side) = c["only_in"].as_str() {
            println!("  only in {}", if side == "a" { args.a.display() } else { args.b.display() });
            continue;
        }
        if let Some(t) = c.get("template") {
            println!("  template: {} → {}", short(&t[0]), short(&t[1]));
        }
        if let Some(i) = c.get("instruction") {
            println!("  instruction:\n  - {}\n  + {}", short(&i[0]), short(&i[1]));
        }
        if let Some(d) = c.get("demos") {
            println!("  demos: {} → {}{}", d["count"][0], d["count"][1], if d["reordered"] == true { " (same demos, new order)" } else { "" });
            for (sign, key) in [("-", "removed"), ("+", "added")] {
                for demo in d[key].as_array().into_iter().flatten() {
                    println!("  {sign} {} → {}", demo["inputs"], demo["outputs"]);
                }
            }
        }
    }
    // Like diff(1): the artifacts differ, so the exit code says so.
    Ok(Outcome::Failure)
}
