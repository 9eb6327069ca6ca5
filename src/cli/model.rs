//! `loopc model`: list, pull, import and describe local models.

use std::path::Path;

use anyhow::Context;

use super::progress::ConsoleProgress;
use loopc::model::import::{Precision, CONFIG_FILE};
use loopc::model::provision::{self, Cache, KNOWN_MODELS};
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
            let (known, named) = provision::known_model(name).ok_or_else(|| {
                let names: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
                let precisions: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
                anyhow::anyhow!(
                    "`{name}` is not a model loopc can provision (known: {}, each also as NAME@PRECISION with PRECISION one of {}); use `loopc model import` for a GGUF file",
                    names.join(", "),
                    precisions.join(", ")
                )
            })?;
            let precision = match (precision.map(Precision::from), name.contains('@')) {
                (Some(p), true) if p != named => anyhow::bail!("`{name}` names precision {named}, but --precision says {p}"),
                (Some(p), _) => p,
                (None, _) => named,
            };
            provision::ort_library(&cache, &progress)?;
            let dir = provision::ensure_known_model(&cache, known, precision, &progress)?;
            let used_as = dir.file_name().and_then(|n| n.to_str()).unwrap_or(name);
            println!("{used_as} is ready ({precision} precision): {} ({:.0} MB)", dir.display(), dir_mb(&dir));
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
    let installed = cache.installed_models();
    let mut rows = Vec::new();
    for name in &installed {
        let known = provision::known_model(name).map(|(k, _)| k);
        rows.push(serde_json::json!({
            "name": name, "installed": true, "size_mb": dir_mb(&cache.model_dir(name)),
            "description": known.map_or("imported", |k| k.description),
        }));
    }
    for k in KNOWN_MODELS.iter().filter(|k| !installed.iter().any(|n| n == k.name)) {
        rows.push(serde_json::json!({
            "name": k.name, "installed": false, "download_mb": k.download_mb, "description": k.description,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "cache": cache.root(), "models": rows }))?);
    } else {
        println!("models in {}:", cache.models_dir().display());
        for r in &rows {
            let state = if r["installed"] == true {
                format!("installed, {:.0} MB", r["size_mb"].as_f64().unwrap_or(0.0))
            } else {
                format!("provisioned on first use, {} MB download", r["download_mb"])
            };
            println!("  {:<28} {state}\n  {:<28} {}", r["name"].as_str().unwrap_or(""), "", r["description"].as_str().unwrap_or(""));
        }
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
        "chat_format": format!("{:?}", model.chat_format()), "inputs": inputs, "cache": cache.root(),
        "precision": config.get("loopc_precision"),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{name}\n  directory   {}\n  size        {:.0} MB\n  sha256      {hash}", dir.display(), dir_mb(&dir));
        println!("  shape       {} layers, {} KV heads x {} dims, vocab {vocab}", kv.layers, kv.heads, kv.head_dim);
        println!("  chat        {:?}", model.chat_format());
        if let Some(p) = config.get("loopc_precision").and_then(|p| p.as_str()) {
            println!("  precision   {p}");
        }
        println!("  inputs      {}", summarize_inputs(&inputs));
    }
    Ok(Outcome::Success)
}

fn summarize_inputs(inputs: &[String]) -> String {
    let past = inputs.iter().filter(|n| n.starts_with("past_key_values.")).count();
    let other: Vec<&str> = inputs.iter().filter(|n| !n.starts_with("past_key_values.")).map(String::as_str).collect();
    format!("{}, past_key_values (x{past})", other.join(", "))
}
