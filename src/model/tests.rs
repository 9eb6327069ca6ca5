//! Tests of generation logic on the tiny seeded model. They need ONNX Runtime, which is
//! provisioned into the loopc cache once (as for every user) and shared by all tests.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::onnx::graph::{Dim, Elem, GraphBuilder};
use super::progress::SilentProgress;
use super::provision::{ort_library, Cache};
use super::sampling::Sampling;
use super::*;

fn runtime() -> &'static ort::environment::Environment {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        let cache = Cache::from_env().expect("a cache directory");
        ort_library(&cache, &SilentProgress).unwrap_or_else(|e| panic!("ONNX Runtime is needed for these tests: {e}"))
    });
    init_runtime(lib).expect("ONNX Runtime loads")
}

fn tiny(options: LoadOptions) -> LocalModel {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        testing::write_tiny_model(d.path(), 7).unwrap();
        d
    });
    LocalModel::load(runtime(), dir.path(), "tiny", options).expect("the tiny model loads")
}

fn request(shared: &str, rest: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest { prompt: Prompt { shared: shared.into(), rest: rest.into() }, max_tokens, sampling: Sampling::default(), stop: Vec::new(), grammar: None }
}

fn tokens(gens: &[Generation]) -> Vec<Vec<u32>> {
    gens.iter().map(|g| g.tokens.clone()).collect()
}

#[test]
fn the_tiny_model_loads_with_its_shape() {
    let m = tiny(LoadOptions::default());
    let (kv, vocab) = m.shape();
    assert_eq!((kv.layers, kv.heads, kv.head_dim, vocab), (2, 2, 8, 259));
    assert_eq!(m.chat_template().family(), chat::ChatFamily::ChatMl);
}

#[test]
fn logits_are_computed_only_where_asked_and_agree_with_a_wider_pass() {
    let m = tiny(LoadOptions::default());
    assert!(m.keeps_logits(), "loopc's exports take num_logits_to_keep (an overridable initializer)");
    let ids = [5u32, 17, 42, 99, 3, 8];
    let last_only = m.logits_at(&ids, &[5]).unwrap();
    let wide = m.logits_at(&ids, &[1, 5]).unwrap();
    assert_eq!(wide.len(), 2);
    let diff = last_only[0].iter().zip(&wide[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "the last position's logits differ by {diff} between a 1-position and a 5-position pass");
    assert_ne!(wide[0], wide[1]);
    assert!(m.logits_at(&ids, &[6]).is_err());
}

#[test]
fn batched_generation_equals_one_by_one() {
    let m = tiny(LoadOptions::default());
    let reqs: Vec<GenerateRequest> = ["a", "hello there", "x y z w v u", "The quick brown fox"].iter().map(|p| request("", p, 12)).collect();
    let batched = m.generate(&reqs, PrefixCaching::Off).unwrap();
    let single: Vec<Generation> = reqs.iter().flat_map(|r| m.generate(std::slice::from_ref(r), PrefixCaching::Off).unwrap()).collect();
    assert_eq!(tokens(&batched), tokens(&single));
    assert!(batched.iter().all(|g| g.tokens.len() == 12 || g.finish == Finish::EndOfText));
}

#[test]
fn prefix_cached_generation_equals_uncached() {
    let m = tiny(LoadOptions::default());
    let shared = "Instruction: continue the text.\nExample: abc -> abcd\n";
    let reqs: Vec<GenerateRequest> = ["first", "second one", "3"].iter().map(|r| request(shared, r, 10)).collect();
    let uncached = m.generate(&reqs, PrefixCaching::Off).unwrap();
    let cached = m.generate(&reqs, PrefixCaching::On).unwrap();
    let again = m.generate(&reqs[1..2], PrefixCaching::On).unwrap();
    assert_eq!(tokens(&cached), tokens(&uncached));
    assert_eq!(again[0].tokens, uncached[1].tokens);
    assert!(cached.iter().all(|g| g.cached_tokens > 0), "the shared part came from the cache");
    assert_eq!(uncached[0].cached_tokens, 0);
}

#[test]
fn the_same_seed_samples_the_same_text() {
    let m = tiny(LoadOptions::default());
    let sampled = |seed| {
        let mut r = request("", "Once upon a time", 16);
        r.sampling = Sampling { temperature: 1.0, top_k: Some(50), top_p: Some(0.95), seed };
        m.generate(&[r.clone(), r], PrefixCaching::Off).unwrap()
    };
    let a = sampled(5);
    let b = sampled(5);
    assert_eq!(tokens(&a), tokens(&b));
    assert_eq!(a[0].tokens, a[1].tokens, "a request's samples do not depend on its batch neighbours");
    assert_ne!(tokens(&a), tokens(&sampled(6)));
}

#[test]
fn max_tokens_and_stop_sequences_end_generation() {
    let m = tiny(LoadOptions::default());
    let g = m.generate(&[request("", "abc", 5)], PrefixCaching::Off).unwrap().remove(0);
    assert!(g.tokens.len() <= 5);
    let full = m.generate(&[request("", "abc", 20)], PrefixCaching::Off).unwrap().remove(0);
    if full.text.chars().count() > 3 {
        let stop: String = full.text.chars().skip(2).take(1).collect();
        let mut r = request("", "abc", 20);
        r.stop = vec![stop.clone()];
        let cut = m.generate(&[r], PrefixCaching::Off).unwrap().remove(0);
        assert_eq!(cut.finish, Finish::Stop);
        assert!(!cut.text.contains(&stop));
        assert!(full.text.starts_with(&cut.text));
    }
}

#[test]
fn choice_scores_are_the_same_with_and_without_the_prefix_cache() {
    let m = tiny(LoadOptions { max_batch: 3, ..LoadOptions::default() });
    let shared = "Label the text.\n";
    let prompts: Vec<Prompt> = ["good", "bad day", "ok"].iter().map(|r| Prompt { shared: shared.into(), rest: format!("{r}\nLabel:").into() }).collect();
    let choices: Vec<String> = ["y", "n", " maybe so"].iter().map(|s| s.to_string()).collect();
    let plain = m.score_choices(&prompts, &choices, PrefixCaching::Off).unwrap();
    let cached = m.score_choices(&prompts, &choices, PrefixCaching::On).unwrap();
    for (a, b) in plain.iter().flatten().zip(cached.iter().flatten()) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        assert!(*a < 0.0);
    }
    // A one-token choice scores its log-probability after the prompt, read off the logits.
    for (i, p) in prompts.iter().enumerate() {
        let ids = m.tokenizer().encode(&format!("{}{}", p.shared, p.rest)).unwrap();
        let logits = m.last_logits(&ids).unwrap();
        let y = m.tokenizer().encode("y").unwrap()[0];
        assert!((plain[i][0] - sampling::log_prob(&logits, y)).abs() < 1e-3);
        // A longer choice scores the sum over its tokens, each after the ones before it.
        let mut seq = ids.clone();
        let mut by_hand = 0.0;
        for t in m.tokenizer().encode(" maybe so").unwrap() {
            by_hand += sampling::log_prob(&m.last_logits(&seq).unwrap(), t);
            seq.push(t);
        }
        assert!((plain[i][2] - by_hand).abs() < 1e-3, "{} vs {by_hand}", plain[i][2]);
        assert!((cached[i][2] - by_hand).abs() < 1e-3);
    }
}

#[test]
fn labels_sharing_prefixes_score_the_same_as_a_tree_in_one_pass_and_on_copies() {
    let tree = tiny(LoadOptions::default());
    let copies = tiny(LoadOptions { tree_choices: false, max_batch: 2, ..LoadOptions::default() });
    let prompts: Vec<Prompt> =
        ["a card that never came", "cash"].iter().map(|r| Prompt { shared: "Intent.\n".into(), rest: format!("{r}\nIntent:").into() }).collect();
    let labels: Vec<String> = [" card_arrival", " card_linking", " card", " cash_withdrawal", " x"].iter().map(|s| s.to_string()).collect();
    let passes = tree.stats().forward_passes;
    let in_pass = tree.score_choices(&prompts, &labels, PrefixCaching::On).unwrap();
    assert!(tree.stats().forward_passes - passes <= 2, "the prefix and one pass for both prompts with their label trees");
    let on_copies = copies.score_choices(&prompts, &labels, PrefixCaching::On).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let ids = tree.tokenizer().encode_text(&p.shared).unwrap().into_iter().chain(tree.tokenizer().encode_text(&p.rest).unwrap()).collect::<Vec<_>>();
        for (c, label) in labels.iter().enumerate() {
            let mut seq = ids.clone();
            let mut by_hand = 0.0;
            for t in tree.tokenizer().encode_data(label).unwrap() {
                by_hand += sampling::log_prob(&tree.last_logits(&seq).unwrap(), t);
                seq.push(t);
            }
            assert!((in_pass[i][c] - by_hand).abs() < 1e-3, "{label}: tree {} vs by hand {by_hand}", in_pass[i][c]);
            assert!((on_copies[i][c] - by_hand).abs() < 1e-3, "{label}: copies {} vs by hand {by_hand}", on_copies[i][c]);
        }
    }
}

#[test]
fn prompts_packed_into_shared_rows_score_as_they_do_alone() {
    let m = tiny(LoadOptions::default());
    let texts =
        ["a", "a much longer prompt than the others, with many more tokens in it", "mid-sized one here", "b", "another long-ish prompt for packing", "c d e"];
    let prompts: Vec<Prompt> = texts.iter().map(|t| Prompt { shared: "Classify.\n".into(), rest: PromptText::data(*t) }).collect();
    let labels: Vec<String> = [" yes", " no", " yes please"].iter().map(|s| s.to_string()).collect();
    let passes = m.stats().forward_passes;
    let together = m.score_choices(&prompts, &labels, PrefixCaching::On).unwrap();
    let packed_passes = m.stats().forward_passes - passes;
    assert!(packed_passes < texts.len() as u64, "the prompts shared passes ({packed_passes} for {})", texts.len());
    for (p, row) in prompts.iter().zip(&together) {
        let alone = m.score_choices(std::slice::from_ref(p), &labels, PrefixCaching::On).unwrap().remove(0);
        for (a, b) in row.iter().zip(&alone) {
            assert!((a - b).abs() < 1e-3, "{:?}: packed {a} vs alone {b}", p.rest.to_plain());
        }
    }
}

#[test]
fn the_choice_budget_splits_choice_passes_without_changing_a_score() {
    let wide = tiny(LoadOptions::default());
    // Every row's prefix copy is over this budget, so each prompt gets a pass of its own.
    let narrow = tiny(LoadOptions { choice_kv_budget_tokens: 1, ..LoadOptions::default() });
    let prompts: Vec<Prompt> =
        ["one", "two words", "three more words"].iter().map(|t| Prompt { shared: "Classify.\n".into(), rest: PromptText::data(*t) }).collect();
    let labels: Vec<String> = [" yes", " no", " yes please"].iter().map(|s| s.to_string()).collect();
    let (wide_before, narrow_before) = (wide.stats().forward_passes, narrow.stats().forward_passes);
    let together = wide.score_choices(&prompts, &labels, PrefixCaching::On).unwrap();
    let apart = narrow.score_choices(&prompts, &labels, PrefixCaching::On).unwrap();
    let wide_passes = wide.stats().forward_passes - wide_before;
    let narrow_passes = narrow.stats().forward_passes - narrow_before;
    assert_eq!(narrow_passes, 1 + prompts.len() as u64, "the prefix, then one pass per prompt");
    assert!(wide_passes < narrow_passes, "the default budget packs the prompts ({wide_passes} passes)");
    for (a, b) in together.iter().flatten().zip(apart.iter().flatten()) {
        assert!((a - b).abs() < 1e-3, "packed {a} vs alone {b}");
    }
}

#[test]
fn a_prompt_must_leave_room_in_the_context_and_the_answer_gets_what_is_left() {
    let m = tiny(LoadOptions::default());
    assert_eq!(m.context_length(), testing::TINY_CONTEXT);
    let fits = request("", &"a".repeat(testing::TINY_CONTEXT - 1), 50);
    let g = m.generate(&[fits], PrefixCaching::Off).unwrap().remove(0);
    assert_eq!(g.tokens.len(), 1, "one position was left, so one token is generated");
    let full = request("", &"a".repeat(testing::TINY_CONTEXT), 50);
    let err = m.generate(&[full], PrefixCaching::Off).unwrap_err();
    assert!(matches!(err, ModelError::ContextOverflow { tokens: TokenCount::Exact(512), limit: 512 }), "{err}");
    // Far over the context, the prompt is refused from its length, before tokenizing.
    let huge = request("", &"a".repeat(1 << 20), 5);
    let err = m.generate(&[huge], PrefixCaching::Off).unwrap_err();
    assert!(matches!(err, ModelError::ContextOverflow { tokens: TokenCount::AtLeast(n), .. } if n > 512), "{err}");
}

#[test]
fn special_tokens_typed_into_data_stay_characters() {
    let m = tiny(LoadOptions::default());
    let t = m.tokenizer();
    let as_data = t.encode_data("hi <|im_end|> there").unwrap();
    let lookalike = t.encode_data("hi <|im_end!> there").unwrap();
    assert!(as_data.len().abs_diff(lookalike.len()) <= 1, "{} vs {}", as_data.len(), lookalike.len());
    let end = t.token_id("<|im_end|>").unwrap();
    assert!(!as_data.contains(&end), "data never yields the control token");
    assert!(t.encode("hi <|im_end|> there").unwrap().contains(&end), "markup does");
    let mut text = PromptText::markup("<|im_start|>user\n");
    text.push_data("<|im_end|>");
    let ids = t.encode_text(&text).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == end).count(), 0);
    assert_eq!(ids[0], t.token_id("<|im_start|>").unwrap());
}

#[test]
fn prefix_cache_counts_reused_tokens() {
    let m = tiny(LoadOptions::default());
    let shared = "A shared instruction that is long enough to matter.\n";
    m.generate(&[request(shared, "one", 2)], PrefixCaching::On).unwrap();
    let before = m.stats();
    m.generate(&[request(shared, "two", 2)], PrefixCaching::On).unwrap();
    let after = m.stats();
    assert_eq!(after.cached_tokens - before.cached_tokens, shared.len() as u64);
    assert_eq!(after.prefilled_tokens - before.prefilled_tokens, 3);
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalModel::load(runtime(), dir.path(), "empty", LoadOptions::default()).err().unwrap();
    assert!(err.to_string().contains("`model.onnx` is missing"), "{err}");
}

#[test]
fn a_corrupt_model_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    testing::write_tiny_model(dir.path(), 1).unwrap();
    std::fs::write(dir.path().join("model.onnx"), b"this is not an onnx file").unwrap();
    let err = LocalModel::load(runtime(), dir.path(), "corrupt", LoadOptions::default()).err().unwrap();
    assert!(err.to_string().contains("ONNX Runtime cannot load"), "{err}");
}

#[test]
fn a_model_with_unexpected_inputs_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    testing::write_tiny_model(dir.path(), 1).unwrap();
    let mut g = GraphBuilder::inline();
    g.input("input_ids", Elem::I64, &[Dim::Named("batch"), Dim::Named("seq")]);
    g.output("logits", Elem::F32, &[Dim::Named("batch"), Dim::Named("seq")]);
    g.op_to("Cast", &["input_ids"], "logits", &[("to", onnx::graph::Attr::Int(1))]);
    std::fs::write(dir.path().join("model.onnx"), g.finish("wrong").unwrap()).unwrap();
    let err = LocalModel::load(runtime(), dir.path(), "wrong", LoadOptions::default()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("no input `attention_mask`") && msg.contains("its inputs: input_ids"), "{msg}");
}

#[test]
fn constrained_generations_are_in_their_grammars_language_whatever_the_weights() {
    // The tiny model's weights are random: left alone it writes bytes at random. Under a
    // grammar every sampled token is one the grammar allows, so the text is in its language,
    // and once the grammar is done only an end token is.
    let m = tiny(LoadOptions::default());
    let grammars = [r"start: /[0-9]{3}-[a-c]{2}/", r#"start: "[" ("\"x\"" ("," "\"y\"")*)? "]""#, r#"start: /(yes|no)/ "!""#];
    let patterns = [r"^[0-9]{3}-[a-c]{2}$", r#"^\[("x"(,"y")*)?\]$"#, r"^(yes|no)!$"];
    let reqs: Vec<GenerateRequest> = grammars
        .iter()
        .enumerate()
        .map(|(i, g)| GenerateRequest { grammar: Some(Grammar::lark(*g)), ..request("", &format!("prompt {i}"), 40) })
        .chain(std::iter::once(request("", "free", 6)))
        .collect();
    let out = m.generate(&reqs, PrefixCaching::Off).unwrap();
    for (g, p) in out.iter().zip(patterns) {
        assert!(regex::Regex::new(p).unwrap().is_match(&g.text), "{:?} does not match {p}", g.text);
        assert_eq!(g.finish, Finish::EndOfText, "{:?}", g.text);
    }
    // The unconstrained request in the same batch decodes as it does alone.
    let alone = m.generate(&reqs[3..], PrefixCaching::Off).unwrap();
    assert_eq!(out[3].tokens, alone[0].tokens);
}

#[test]
fn a_grammar_that_does_not_compile_is_refused_before_any_model_work() {
    let m = tiny(LoadOptions::default());
    let before = m.stats().forward_passes;
    let bad = GenerateRequest { grammar: Some(Grammar::lark("start: undefined_rule")), ..request("", "x", 4) };
    let err = m.generate(&[bad], PrefixCaching::Off).unwrap_err();
    assert!(err.to_string().contains("the answer's grammar does not compile"), "{err}");
    assert_eq!(m.stats().forward_passes, before);
}
