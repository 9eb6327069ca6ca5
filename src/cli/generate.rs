//! `loopc generate`: one prompt through a local model.

use loopc::model::chat::{Message, Role};
use loopc::model::progress::ConsoleProgress;
use loopc::model::provision::open_model;
use loopc::model::sampling::Sampling;
use loopc::model::{GenerateRequest, LoadOptions, PrefixCaching, Prompt};

use super::args::GenerateArgs;
use super::Outcome;

/// Runs `loopc generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    let mut options = LoadOptions::default();
    if let Some(t) = args.threads {
        options.threads = t;
    }
    let model = open_model(&args.model, options, &ConsoleProgress::new())?;
    let text = if args.raw {
        args.prompt.clone()
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message { role: Role::System, content: system.clone() });
        }
        messages.push(Message { role: Role::User, content: args.prompt.clone() });
        model.chat_prompt(&messages)
    };
    let request = GenerateRequest {
        prompt: Prompt::plain(text),
        max_tokens: args.max_tokens,
        sampling: Sampling { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p, seed: args.seed },
        stop: args.stop.clone(),
    };
    let started = std::time::Instant::now();
    let out = model.generate(&[request], PrefixCaching::Off)?.into_iter().next().ok_or_else(|| anyhow::anyhow!("no output"))?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": args.model, "text": out.text, "prompt_tokens": out.prompt_tokens,
                "generated_tokens": out.tokens.len(), "finish": format!("{:?}", out.finish), "seconds": secs,
            }))?
        );
    } else {
        println!("{}", out.text.trim_end());
        eprintln!("({} prompt tokens, {} generated, {:.2}s)", out.prompt_tokens, out.tokens.len(), secs);
    }
    Ok(Outcome::Success)
}
