//! `loopc generate`: one prompt through a local model.

use super::progress::ConsoleProgress;
use loopc::model::chat::Role;
use loopc::model::provision::open_model;
use loopc::model::sampling::Sampling;
use loopc::model::{GenerateRequest, LoadOptions, PrefixCaching, Prompt, PromptText};

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
    // Raw mode sends the text as written, special tokens included; in chat mode the prompt is
    // the user's message: data, whose special-token spellings stay characters.
    let text = if args.raw {
        PromptText::markup(args.prompt.clone())
    } else {
        let system = args.system.clone().map(PromptText::data);
        let user = PromptText::data(args.prompt.clone());
        let mut turns = Vec::new();
        if let Some(s) = &system {
            turns.push((Role::System, s));
        }
        turns.push((Role::User, &user));
        let (shared, rest) = model.chat_template().render_text(&turns, 0)?;
        let mut t = shared;
        t.append(&rest);
        t
    };
    let request = GenerateRequest {
        prompt: Prompt { shared: PromptText::new(), rest: text },
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
