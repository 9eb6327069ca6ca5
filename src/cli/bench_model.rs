//! `loopc bench model`: the local model's speed, as figures (no thresholds); optionally side by
//! side with llama.cpp on the same GGUF (through a Python that has llama-cpp-python: never in
//! CI), and the agreement of its greedy continuations with another model, such as the same
//! model at f32.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use super::measure::peak_rss_mb;
use super::progress::ConsoleProgress;
use loopc::model::chat::{Message, Role};
use loopc::model::provision::{open_model, Cache};
use loopc::model::sampling::Sampling;
use loopc::model::source;
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
    if let Some(k) = args.kv_budget {
        options.kv_budget_tokens = k.max(1);
    }
    if let Some(on) = args.prefill_graph {
        options.prefill_graph = on;
    }
    let threads = options.threads;
    // The GGUF llama.cpp runs is found first, so a spec with none fails before the measurements.
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let llama = match &args.llama_cpp {
        Some(python) => Some((python, llama_cpp_gguf(args, scratch.path())?)),
        None => None,
    };
    let model = open_model(&args.model, options, &ConsoleProgress::new())?;
    let greedy = |prompt: Prompt, n: usize| GenerateRequest { prompt, max_tokens: n, sampling: Sampling::default(), stop: Vec::new(), grammar: None };

    // Warm-up: the first pass pays for ONNX Runtime's lazy initialisation.
    model.generate(&[greedy(Prompt::plain("warm up"), 2)], PrefixCaching::Off)?;
    // Peak memory after each phase (the process's high-water mark so far), to tell what holds it.
    let mut phase_peaks = serde_json::Map::new();
    phase_peaks.insert("loaded".into(), serde_json::json!(peak_rss_mb()));

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
    phase_peaks.insert("prefill".into(), serde_json::json!(peak_rss_mb()));

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
    phase_peaks.insert("decode".into(), serde_json::json!(peak_rss_mb()));

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

    // Peak memory now, before anything else is loaded into this process.
    let peak_mb = peak_rss_mb();
    let arenas = super::malloc::arenas();
    let mut figures = serde_json::json!({
        "model": args.model, "threads": threads,
        "prefill_tokens": ids.len(), "prefill_tok_per_s": prefill,
        "decode_tok_per_s_batch1": decode1, "decode_tok_per_s_batch8": decode8,
        "decode_tok_per_s_batch8_text_grammar": decode8_text, "decode_tok_per_s_batch8_json_list_grammar": decode8_list,
        "grammar_slowdown_percent_text": cost(decode8_text), "grammar_slowdown_percent_json_list": cost(decode8_list),
        "choice_prompts": args.prompts, "choice_labels": labels.len(), "shared_prefix_tokens": args.shared_tokens,
        "choice_seconds_without_prefix_cache": score_uncached, "choice_seconds_with_prefix_cache": score_cached,
        "prefix_cache_speedup": score_uncached / score_cached, "ideal_speedup_total_over_suffix_tokens": ideal,
        "same_best_label_cached_vs_uncached": format!("{same_choice}/{}", prompts.len()),
        "peak_rss_mb": peak_mb, "peak_rss_mb_after": phase_peaks, "malloc_arenas": arenas,
    });
    let llama = match llama {
        Some((python, gguf)) => {
            let decode_prompt = text_of(&model, 24, 0)?;
            Some(llama_cpp(python, &gguf, args, threads, &long, &decode_prompt)?)
        }
        None => None,
    };
    if let Some(l) = &llama {
        let ratio = |ours: f64, key: &str| l[key].as_f64().map(|theirs| ours / theirs);
        figures["llama_cpp"] = l.clone();
        figures["ratio_prefill"] = serde_json::json!(ratio(prefill, "prefill_tok_per_s"));
        figures["ratio_decode_batch1"] = serde_json::json!(ratio(decode1, "decode_tok_per_s_batch1"));
        figures["ratio_decode_batch8_to_llama_cpp_batch1"] = serde_json::json!(ratio(decode8, "decode_tok_per_s_batch1"));
        figures["ratio_peak_memory"] = serde_json::json!(peak_mb.and_then(|m| l["peak_rss_mb"].as_f64().map(|t| m / t)));
    }
    let agreement = match &args.agree_with {
        Some(other) => Some(agreement(&model, other, threads)?),
        None => None,
    };
    if let Some(a) = &agreement {
        figures["agreement"] = a.clone();
    }
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
        if let Some(mb) = peak_mb {
            let after = |k: &str| figures["peak_rss_mb_after"][k].as_f64().map_or("?".to_string(), |m| format!("{m:.0}"));
            println!(
                "  peak memory        {mb:>8.0} MB   (after loading {}, prefill {}, decoding {}, choices {mb:.0}; malloc arenas: {})",
                after("loaded"),
                after("prefill"),
                after("decode"),
                arenas
            );
        }
        if let Some(l) = &llama {
            let f = |key: &str| l[key].as_f64().unwrap_or(f64::NAN);
            let (lp, ld, lm) = (f("prefill_tok_per_s"), f("decode_tok_per_s_batch1"), f("peak_rss_mb"));
            println!("side by side with llama.cpp {} on the same GGUF ({threads} threads):", l["llama_cpp_version"].as_str().unwrap_or("?"));
            println!("  {:<28} {:>10} {:>10} {:>8}", "", "loopc", "llama.cpp", "ratio");
            println!("  {:<28} {prefill:>10.0} {lp:>10.0} {:>7.2}x", format!("prefill, {} tokens (tok/s)", ids.len()), prefill / lp);
            println!("  {:<28} {decode1:>10.1} {ld:>10.1} {:>7.2}x", "decode, batch 1 (tok/s)", decode1 / ld);
            println!("  {:<28} {decode8:>10.1} {ld:>10.1} {:>7.2}x", "decode, batch 8 vs 1 (tok/s)", decode8 / ld);
            if let Some(mb) = peak_mb {
                println!("  {:<28} {mb:>10.0} {lm:>10.0} {:>7.2}x", "peak memory (MB)", mb / lm);
            }
            if l["extra_buffer_types"] == serde_json::json!(false) {
                println!("  (llama.cpp without its extra buffer types: this build died with SIGILL in them on this CPU)");
            }
        }
        if let Some(a) = &agreement {
            println!(
                "greedy continuations agree with {}: {} of {} prompts over {} tokens (first disagreement at token {}); largest logit difference {:.3} ({:.2}% of the largest logit)",
                a["with"].as_str().unwrap_or("?"),
                a["identical_prompts"],
                a["prompts"],
                a["tokens"],
                a["first_disagreement"].as_u64().map_or("-".to_string(), |t| t.to_string()),
                a["max_logit_difference"].as_f64().unwrap_or(f64::NAN),
                100.0 * a["max_relative_logit_difference"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(Outcome::Success)
}

fn best(scores: &[f32]) -> usize {
    scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// The script that measures llama.cpp (kept in `bench/` so it can be run by hand too).
const LLAMA_CPP_SCRIPT: &str = include_str!("../../bench/llamacpp_speed.py");

/// The GGUF llama.cpp runs: `--gguf`, else the file behind `--model` (a known model's, a GGUF
/// path, an `ollama:` or `hf:` reference, or the GGUF an installed model was imported from).
fn llama_cpp_gguf(args: &BenchModelArgs, scratch: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.gguf {
        anyhow::ensure!(path.is_file(), "--gguf `{}` is not a file", path.display());
        return Ok(path.clone());
    }
    let cache = Cache::from_env()?;
    source::gguf_file(&args.model, &cache, scratch, &ConsoleProgress::new())
        .with_context(|| format!("cannot find the GGUF file llama.cpp should run for `{}` (--gguf FILE names one)", args.model))
}

/// Runs the llama.cpp measurement with `python` on `gguf`, on the same prefill text and decode
/// prompt, and returns its figures. llama.cpp runs as it loads by default; a build whose
/// weight-repacking kernels die with SIGILL on this CPU is measured again without its extra
/// buffer types (the figures say which).
fn llama_cpp(python: &Path, gguf: &Path, args: &BenchModelArgs, threads: usize, prefill_text: &str, decode_prompt: &str) -> anyhow::Result<serde_json::Value> {
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let script = scratch.path().join("llamacpp_speed.py");
    std::fs::write(&script, LLAMA_CPP_SCRIPT).with_context(|| format!("cannot write `{}`", script.display()))?;
    let request = |extra: bool| {
        serde_json::json!({
            "gguf": gguf, "threads": threads, "prefill_text": prefill_text,
            "decode_prompt": decode_prompt, "decode_tokens": args.decode_tokens,
            "extra_buffer_types": extra,
        })
    };
    match run_llama_cpp(python, &script, &request(true))? {
        Ok(figures) => Ok(figures),
        Err(Killed::IllegalInstruction) => match run_llama_cpp(python, &script, &request(false))? {
            Ok(figures) => Ok(figures),
            Err(Killed::IllegalInstruction) => anyhow::bail!("the llama.cpp measurement died with SIGILL, with and without llama.cpp's extra buffer types"),
        },
    }
}

/// How a llama.cpp measurement ended that may be tried again another way.
enum Killed {
    /// SIGILL: the build uses an instruction this CPU lacks.
    IllegalInstruction,
}

/// One run of the llama.cpp script with `request`.
fn run_llama_cpp(python: &Path, script: &Path, request: &serde_json::Value) -> anyhow::Result<Result<serde_json::Value, Killed>> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{}` (a Python with llama-cpp-python; bench/llama-cpp-venv.sh builds one)", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(request.to_string().as_bytes()).context("cannot send the request to the llama.cpp measurement")?;
    }
    let out = child.wait_with_output().context("the llama.cpp measurement did not finish")?;
    if out.status.signal() == Some(libc::SIGILL) {
        return Ok(Err(Killed::IllegalInstruction));
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        anyhow::bail!("the llama.cpp measurement failed ({}):\n  {}", out.status, tail.join("\n  "));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let figures =
        serde_json::from_str(text.lines().last().unwrap_or_default()).with_context(|| format!("the llama.cpp measurement printed no figures: {text}"))?;
    Ok(Ok(figures))
}

/// Questions whose greedy answers are compared between two models.
const QUESTIONS: [&str; 10] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three uses of a paperclip.",
    "What is 12 times 7?",
    "Translate 'good morning' into Spanish.",
    "Give me a name for a grey cat.",
    "Why is the sky blue?",
    "Summarize the plot of Romeo and Juliet.",
    "What should I pack for a weekend hike?",
];

/// Tokens generated per question.
const AGREEMENT_TOKENS: usize = 32;

/// Loads `other` and compares greedy continuations of [`QUESTIONS`] (chat prompts,
/// [`AGREEMENT_TOKENS`] tokens each) and the logits after each prompt with `model`'s.
fn agreement(model: &LocalModel, other: &str, threads: usize) -> anyhow::Result<serde_json::Value> {
    let options = LoadOptions { threads, ..LoadOptions::default() };
    let other_model = open_model(other, options, &ConsoleProgress::new())?;
    let requests = QUESTIONS
        .iter()
        .map(|q| {
            Ok(GenerateRequest {
                prompt: Prompt::plain(model.chat_prompt(&[Message { role: Role::User, content: q.to_string() }])?),
                max_tokens: AGREEMENT_TOKENS,
                sampling: Sampling::default(),
                stop: Vec::new(),
                grammar: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ours = model.generate(&requests, PrefixCaching::Off)?;
    let theirs = other_model.generate(&requests, PrefixCaching::Off)?;
    let mut identical = 0;
    let mut first_disagreement: Option<usize> = None;
    for (a, b) in ours.iter().zip(&theirs) {
        match a.tokens.iter().zip(&b.tokens).position(|(x, y)| x != y) {
            None if a.tokens.len() == b.tokens.len() => identical += 1,
            None => first_disagreement = Some(first_disagreement.map_or(a.tokens.len().min(b.tokens.len()), |f| f.min(a.tokens.len().min(b.tokens.len())))),
            Some(i) => first_disagreement = Some(first_disagreement.map_or(i, |f| f.min(i))),
        }
    }
    let (mut max_diff, mut max_rel) = (0f32, 0f32);
    for r in &requests {
        let ids = model.tokenizer().encode_text(&r.prompt.rest)?;
        let (a, b) = (model.last_logits(&ids)?, other_model.last_logits(&ids)?);
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let scale = b.iter().fold(0f32, |m, y| m.max(y.abs()));
        max_diff = max_diff.max(diff);
        max_rel = max_rel.max(diff / scale.max(f32::MIN_POSITIVE));
    }
    Ok(serde_json::json!({
        "with": other, "prompts": QUESTIONS.len(), "tokens": AGREEMENT_TOKENS, "identical_prompts": identical,
        "first_disagreement": first_disagreement, "max_logit_difference": max_diff, "max_relative_logit_difference": max_rel,
    }))
}
