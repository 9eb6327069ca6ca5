//! `loopc model`: list, pull, import and describe local models.

use std::path::Path;

use anyhow::Context;

use super::progress::ConsoleProgress;
use loopc::model::import::{Precision, CONFIG_FILE};
use loopc::model::provision::{self, Cache};
use loopc::model::source::known::{self, KNOWN_MODELS};
use loopc::model::source::{self, Availability};
use loopc::model::LoadOptions;

use super::args::ModelCommand;
use super::Outcome;

/// Runs a `loopc model` command.
pub fn run(cmd: &ModelCommand) -> anyhow::Result<Outcome> {
    let cache = Cache::from_env()?;
    match cmd {
        ModelCommand::List { json } => list(&cache, *json),
        ModelCommand::Pull { name, precision } => {
            let progress = ConsoleProgress::new();
            let dir = match known::find(name) {
                Some((known, named)) => {
                    let precision = match (precision.map(Precision::from), name.contains('@')) {
                        (Some(p), true) if p != named => anyhow::bail!("`{name}` names precision {named}, but --precision says {p}"),
                        (Some(p), _) => p,
                        (None, _) => named,
                    };
                    provision::ort_library(&cache, &progress)?;
                    known.ensure(&cache, precision, &progress)?
                }
                None => {
                    anyhow::ensure!(precision.is_none(), "--precision applies to known models; `{name}` is imported at the default precision");
                    provision::ort_library(&cache, &progress)?;
                    match source::resolve(name, &cache, &progress)? {
                        Some(dir) => dir,
                        None => {
                            let any: Vec<&str> = KNOWN_MODELS.iter().filter(|k| k.any_precision()).map(|k| k.name).collect();
                            let precisions: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
                            anyhow::bail!(
                                "`{name}` is not a model loopc can provision (known: {}; {} also as NAME@PRECISION with PRECISION one of {}); a GGUF file, `ollama:NAME[:TAG]` or `hf:ORG/NAME[:FILE]` is imported",
                                known::names().join(", "),
                                any.join(", "),
                                precisions.join(", ")
                            )
                        }
                    }
                }
            };
            let used_as = dir.file_name().and_then(|n| n.to_str()).unwrap_or(name);
            println!("{used_as} is ready: {} ({:.0} MB)", dir.display(), dir_mb(&dir));
            Ok(Outcome::Success)
        }
        ModelCommand::Import { file, name, precision } => {
            anyhow::ensure!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "--name may use letters, digits, `-`, `_` and `.`"
            );
            let dir = cache.model_dir(name);
            let precision = Precision::from(*precision);
            provision::convert(file, &dir, precision, &ConsoleProgress::new())?;
            println!("imported `{}` as {name} ({precision} precision): {}", file.display(), dir.display());
            Ok(Outcome::Success)
        }
        ModelCommand::Info { name, json } => info(&cache, name, *json),
    }
}

fn dir_mb(dir: &Path) -> f64 {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len() as f64).sum::<f64>() / 1e6
}

fn list(cache: &Cache, json: bool) -> anyhow::Result<Outcome> {
    let entries = source::list(cache);
    let state = |a: Availability| match a {
        Availability::Installed => "installed",
        Availability::Provisioned => "provisioned on first use",
        Availability::Importable => "imported on first use",
    };
    if json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "architecture": e.architecture, "quantization": e.quantization,
                    "size_mb": e.bytes as f64 / 1e6, "origin": e.origin, "installed": e.availability == Availability::Installed,
                    "state": state(e.availability), "description": e.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "cache": cache.root(), "models": rows }))?);
        return Ok(Outcome::Success);
    }
    println!("models (cache: {}):", cache.models_dir().display());
    println!("  {:<40} {:<10} {:<9} {:>8}  ORIGIN", "NAME", "ARCH", "QUANT", "SIZE");
    for e in &entries {
        let dash = || "-".to_string();
        println!(
            "  {:<40} {:<10} {:<9} {:>6.0}MB  {} ({})",
            e.name,
            e.architecture.clone().unwrap_or_else(dash),
            e.quantization.clone().unwrap_or_else(dash),
            e.bytes as f64 / 1e6,
            e.origin,
            state(e.availability)
        );
    }
    Ok(Outcome::Success)
}

fn info(cache: &Cache, name: &str, json: bool) -> anyhow::Result<Outcome> {
    let progress = ConsoleProgress::new();
    let model = provision::open_model(name, LoadOptions { threads: 1, ..LoadOptions::default() }, &progress)?;
    let dir = model.dir().to_path_buf();
    let config: serde_json::Value =
        std::fs::read_to_string(dir.join(CONFIG_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(serde_json::Value::Null);
    let hash = loopc::model::model_sha256(&dir).with_context(|| format!("cannot hash the model files in `{}`", dir.display()))?;
    let (kv, vocab) = model.shape();
    let inputs = model.input_names();
    let summary = serde_json::json!({
        "name": name, "dir": dir, "size_mb": dir_mb(&dir), "sha256": hash,
        "layers": kv.layers, "kv_heads": kv.heads, "head_dim": kv.head_dim, "vocab": vocab,
        "hidden_size": config.get("hidden_size"), "attention_heads": config.get("num_attention_heads"),
        "chat_template": model.chat_template().family().name(),
        "architecture": config.pointer("/loopc/architecture").or_else(|| config.get("model_type")),
        "quantization": config.pointer("/loopc/quantization"), "origin": source::origin_of(&dir), "inputs": inputs, "cache": cache.root(),
        "precision": config.get("loopc_precision"),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{name}\n  directory   {}\n  size        {:.0} MB\n  sha256      {hash}", dir.display(), dir_mb(&dir));
        println!("  shape       {} layers, {} KV heads x {} dims, vocab {vocab}", kv.layers, kv.heads, kv.head_dim);
        println!("  chat        {}", describe_chat(model.chat_template()));
        if let Some(p) = config.get("loopc_precision").and_then(|p| p.as_str()) {
            println!("  precision   {p}");
        }
        if let Some(origin) = source::origin_of(&dir) {
            println!("  origin      {origin}");
        }
        println!("  inputs      {}", summarize_inputs(&inputs));
    }
    Ok(Outcome::Success)
}

fn describe_chat(chat: &loopc::model::chat::ChatTemplate) -> String {
    if chat.is_plain() {
        "no chat template: a plain System:/User:/Assistant: transcript".to_string()
    } else {
        format!("the model's Jinja template ({})", chat.family().name())
    }
}

fn summarize_inputs(inputs: &[String]) -> String {
    let past = inputs.iter().filter(|n| n.starts_with("past_key_values.")).count();
    let other: Vec<&str> = inputs.iter().filter(|n| !n.starts_with("past_key_values.")).map(String::as_str).collect();
    format!("{}, past_key_values (x{past})", other.join(", "))
}
