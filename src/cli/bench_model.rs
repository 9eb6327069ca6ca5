//! `loopc bench model`: the local model's speed, as figures (no thresholds).

use std::time::Instant;

use super::progress::ConsoleProgress;
use loopc::model::provision::open_model;
use loopc::model::sampling::Sampling;
use loopc::model::{GenerateRequest, Grammar, LoadOptions, LocalModel, PrefixCaching, Prompt, PromptText};

use super::args::BenchModelArgs;
use super::Outcome;

/// Words cycled to build prompts of a chosen length (deterministic, varied enough that BPE
/// gives about one token per word).
const WORDS: [&str; 24] = [
    "river", "table", "quiet", "orange", "window", "travel", "garden", "simple", "market", "letter", "yellow", "planet", "winter", "silver", "engine",
    "forest", "bridge", "castle", "pocket", "summer", "camera", "doctor", "island", "shadow",
];

/// Text of exactly `tokens` tokens (cut to length after encoding), starting at word `offset`.
fn text_of(model: &LocalModel, tokens: usize, offset: usize) -> anyhow::Result<String> {
    let mut words = Vec::new();
    let mut i = offset;
    loop {
        words.push(WORDS[i % WORDS.len()]);
        i += 7;
        let text = words.join(" ");
        let ids = model.tokenizer().encode(&text)?;
        if ids.len() >= tokens {
            return Ok(model.tokenizer().decode(&ids[..tokens])?);
        }
    }
}

/// Runs `loopc bench model`.
pub fn run(args: &BenchModelArgs) -> anyhow::Result<Outcome> {
    let mut options = LoadOptions { max_batch: 16, ..LoadOptions::default() };
    if let Some(t) = args.threads {
        options.threads = t;
    }
    let threads = options.threads;
    let model = open_model(&args.model, options, &ConsoleProgress::new())?;
    let greedy = |prompt: Prompt, n: usize| GenerateRequest { prompt, max_tokens: n, sampling: Sampling::default(), stop: Vec::new(), grammar: None };

    // Warm-up: the first pass pays for ONNX Runtime's lazy initialisation.
    model.generate(&[greedy(Prompt::plain("warm up"), 2)], PrefixCaching::Off)?;

    // Prefill: one pass over a long prompt.
    let long = text_of(&model, args.prompt_tokens, 0)?;
    let ids = model.tokenizer().encode(&long)?;
    // Best of three: the first pass at a new length also pays for memory-arena growth.
    let mut fastest = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        model.last_logits(&ids)?;
        fastest = fastest.min(t.elapsed().as_secs_f64());
    }
    let prefill = ids.len() as f64 / fastest;

    // Decode at batch 1 and 8: time after the first token, which includes the prefill.
    // Under a grammar every row's token mask is computed each step.
    let decode_under = |batch: usize, grammar: Option<&Grammar>| -> anyhow::Result<f64> {
        let reqs: Vec<GenerateRequest> = (0..batch)
            .map(|i| {
                text_of(&model, 24, i).map(|p| GenerateRequest { stop: vec![], grammar: grammar.cloned(), ..greedy(Prompt::plain(p), args.decode_tokens) })
            })
            .collect::<anyhow::Result<_>>()?;
        let first = Instant::now();
        model.generate(&reqs.iter().map(|r| GenerateRequest { max_tokens: 1, ..r.clone() }).collect::<Vec<_>>(), PrefixCaching::Off)?;
        let prefill_time = first.elapsed();
        let before = model.stats().generated_tokens;
        let t = Instant::now();
        model.generate(&reqs, PrefixCaching::Off)?;
        let generated = (model.stats().generated_tokens - before) as f64;
        let secs = (t.elapsed().saturating_sub(prefill_time)).as_secs_f64();
        Ok((generated - batch as f64) / secs)
    };
    let decode = |batch: usize| decode_under(batch, None);
    let decode1 = decode(1)?;
    // Free text without marker syntax (what a chat answer's text is held to), and a JSON list of
    // strings: every token masked, the text as long as unconstrained decoding's. The three
    // batch-8 runs alternate, best of three each, so a busy moment on the machine does not
    // land on one of them only.
    let text_grammar = Grammar::lark("start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*)(\\[\\[|\\]\\]|##)(?s:.*)/");
    let list_grammar = Grammar::lark(
        r#"start: "[" (STR ("," STR)*)? "]" /(?s:.*)/
STR: /"(\\(["\\\/bfnrt]|u[a-fA-F0-9]{4})|[^"\\\x00-\x1F\x7F])*"/"#,
    );
    let (mut decode8, mut decode8_text, mut decode8_list) = (0f64, 0f64, 0f64);
    for _ in 0..3 {
        decode8 = decode8.max(decode(8)?);
        decode8_text = decode8_text.max(decode_under(8, Some(&text_grammar))?);
        decode8_list = decode8_list.max(decode_under(8, Some(&list_grammar))?);
    }
    let cost = |constrained: f64| 100.0 * (1.0 - constrained / decode8);

    // Choice scoring: prompts sharing a long prefix, four labels each.
    let shared = format!("{}\n", text_of(&model, args.shared_tokens, 3)?);
    let prompts: Vec<Prompt> = (0..args.prompts)
        .map(|i| {
            text_of(&model, 12, i * 5).map(|r| Prompt { shared: PromptText::markup(shared.clone()), rest: PromptText::markup(format!("Text: {r}\nLabel:")) })
        })
        .collect::<anyhow::Result<_>>()?;
    let labels: Vec<String> = [" joy", " anger", " sadness", " optimism"].iter().map(|s| s.to_string()).collect();
    let t = Instant::now();
    let uncached = model.score_choices(&prompts, &labels, PrefixCaching::Off)?;
    let score_uncached = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cached = model.score_choices(&prompts, &labels, PrefixCaching::On)?;
    let score_cached = t.elapsed().as_secs_f64();
    let same_choice = uncached.iter().zip(&cached).filter(|(a, b)| best(a) == best(b)).count();
    let prompt_len = model.tokenizer().encode(&format!("{}{}", prompts[0].shared, prompts[0].rest))?.len();
    let suffix_len = prompt_len - model.tokenizer().encode_text(&prompts[0].shared)?.len();
    let label_len = 1.0;
    let ideal = (prompt_len as f64 + label_len) / (suffix_len as f64 + label_len);

    let figures = serde_json::json!({
        "model": args.model, "threads": threads,
        "prefill_tokens": ids.len(), "prefill_tok_per_s": prefill,
        "decode_tok_per_s_batch1": decode1, "decode_tok_per_s_batch8": decode8,
        "decode_tok_per_s_batch8_text_grammar": decode8_text, "decode_tok_per_s_batch8_json_list_grammar": decode8_list,
        "grammar_slowdown_percent_text": cost(decode8_text), "grammar_slowdown_percent_json_list": cost(decode8_list),
        "choice_prompts": args.prompts, "choice_labels": labels.len(), "shared_prefix_tokens": args.shared_tokens,
        "choice_seconds_without_prefix_cache": score_uncached, "choice_seconds_with_prefix_cache": score_cached,
        "prefix_cache_speedup": score_uncached / score_cached, "ideal_speedup_total_over_suffix_tokens": ideal,
        "same_best_label_cached_vs_uncached": format!("{same_choice}/{}", prompts.len()),
        "peak_rss_mb": super::measure::peak_rss_mb(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("local model {} ({threads} threads)", args.model);
        println!("  prefill            {prefill:>8.0} tok/s   ({} tokens)", ids.len());
        println!("  decode, batch 1    {decode1:>8.1} tok/s");
        println!("  decode, batch 8    {decode8:>8.1} tok/s   (total)");
        println!(
            "    under a grammar: text {decode8_text:>8.1} tok/s (slowdown {:+.1}%), JSON list {decode8_list:>8.1} tok/s (slowdown {:+.1}%)",
            cost(decode8_text),
            cost(decode8_list)
        );
        println!(
            "  choice, {} prompts x {} labels, {}-token shared prefix:\n    without prefix cache {score_uncached:>7.2} s\n    with prefix cache    {score_cached:>7.2} s   ({:.1}x; total/suffix tokens {ideal:.1}x; same best label {same_choice}/{})",
            args.prompts,
            labels.len(),
            args.shared_tokens,
            score_uncached / score_cached,
            prompts.len()
        );
        if let Some(mb) = super::measure::peak_rss_mb() {
            println!("  peak memory        {mb:>8.0} MB");
        }
    }
    Ok(Outcome::Success)
}

fn best(scores: &[f32]) -> usize {
    scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}
