//! `loopc cache info|clear`: the response cache, as the engine sees it.

use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use serde_json::json;

use super::args::CacheCommand;
use super::Outcome;

fn engine(dir: &Option<std::path::PathBuf>) -> anyhow::Result<Engine> {
    let responses = dir.clone().map_or(CacheSetting::Default, CacheSetting::Dir);
    Ok(Engine::builder().options(EngineOptions { responses, ..EngineOptions::default() }).build()?)
}

/// Runs `loopc cache`.
pub fn run(cmd: &CacheCommand) -> anyhow::Result<Outcome> {
    match cmd {
        CacheCommand::Info { cache_dir, json } => {
            let engine = engine(cache_dir)?;
            let cache = engine.response_cache().ok_or_else(|| anyhow::anyhow!("no response cache is configured"))?;
            let s = cache.stats();
            if *json {
                println!("{}", json!({"dir": cache.dir(), "entries": s.entries, "bytes": s.bytes, "limit_bytes": s.limit_bytes}));
            } else {
                println!("response cache at {}", cache.dir().display());
                println!(
                    "  {} answers, {:.1} MB of {:.0} MB (least recently used evicted past the limit)",
                    s.entries,
                    s.bytes as f64 / 1e6,
                    s.limit_bytes as f64 / 1e6
                );
            }
        }
        CacheCommand::Clear { cache_dir } => {
            let engine = engine(cache_dir)?;
            let cache = engine.response_cache().ok_or_else(|| anyhow::anyhow!("no response cache is configured"))?;
            let n = cache.clear().map_err(|e| anyhow::anyhow!("cannot clear `{}`: {e}", cache.dir().display()))?;
            println!("removed {n} cached answers from {}", cache.dir().display());
        }
    }
    Ok(Outcome::Success)
}
