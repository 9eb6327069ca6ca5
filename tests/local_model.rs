//! End-to-end tests of the real default model (SmolLM2-135M-Instruct), provisioned once into
//! the loopc cache and shared by every test here. The expected numbers in
//! `fixtures/smollm2-reference.json` come from an independent Python conversion of the same
//! GGUF to f32 (token ids, top-5 logits at the last position, greedy continuations).
//!
//! The conversion is checked at the `exact` precision (the file's 4-bit weights, f32
//! activations), which must give the reference's numbers; the default `fast` precision (int8
//! activations) is checked against it with the tolerance int8 rounding needs. Runtime logic
//! that must not change a single token (batching, the prefix cache) is checked at `exact`
//! too: with int8 activations a last-bit difference from a batch neighbour can move an
//! activation across a rounding step, so there equality is not the right test.

use std::sync::OnceLock;

use loopc::model::progress::SilentProgress;
use loopc::model::provision::open_model;
use loopc::model::sampling::{argmax, Sampling};
use loopc::model::{Adjust, ChoiceBounds, GenerateRequest, LoadOptions, LocalModel, PrefixCaching, Prompt};

/// The default model at its default (`fast`) precision.
fn model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        open_model("smollm2-135m-instruct", LoadOptions::default(), &SilentProgress)
            .unwrap_or_else(|e| panic!("the default model is needed for these tests: {e}"))
    })
}

/// The default model at the `exact` precision: its 4-bit weights with f32 activations.
fn exact() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        open_model("smollm2-135m-instruct@exact", LoadOptions::default(), &SilentProgress)
            .unwrap_or_else(|e| panic!("the default model at exact precision is needed for these tests: {e}"))
    })
}

struct Reference {
    prompt: String,
    input_ids: Vec<u32>,
    top5_ids: Vec<u32>,
    top5_logits: Vec<f32>,
    greedy_ids: Vec<u32>,
}

fn references() -> Vec<Reference> {
    let v: serde_json::Value = serde_json::from_str(include_str!("fixtures/smollm2-reference.json")).unwrap();
    let ids = |x: &serde_json::Value| x.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Reference {
            prompt: r["prompt"].as_str().unwrap().to_string(),
            input_ids: ids(&r["input_ids"]),
            top5_ids: ids(&r["last_top5_ids"]),
            top5_logits: r["last_top5_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            greedy_ids: ids(&r["greedy_ids"]),
        })
        .collect()
}

fn greedy(prompt: Prompt, max_tokens: usize) -> GenerateRequest {
    GenerateRequest { prompt, max_tokens, sampling: Sampling::default(), stop: Vec::new(), grammar: None }
}

#[test]
fn tokenizer_ids_match_the_reference() {
    for r in references() {
        assert_eq!(model().tokenizer().encode(&r.prompt).unwrap(), r.input_ids, "{:?}", r.prompt);
    }
}

#[test]
fn conversion_matches_the_reference_logits() {
    for r in references() {
        let logits = exact().last_logits(&r.input_ids).unwrap();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
        assert_eq!(&order[..5], &r.top5_ids[..], "{:?}", r.prompt);
        for (id, want) in r.top5_ids.iter().zip(&r.top5_logits) {
            let got = logits[*id as usize];
            assert!((got - want).abs() < 1e-2, "{:?}: logit of {id} is {got}, reference {want}", r.prompt);
        }
        assert_eq!(argmax(&logits), r.top5_ids[0]);
    }
}

#[test]
fn greedy_generation_matches_the_reference() {
    for r in references() {
        let g = exact().generate(&[greedy(Prompt::plain(r.prompt.clone()), r.greedy_ids.len())], PrefixCaching::Off).unwrap();
        assert_eq!(g[0].tokens, r.greedy_ids, "{:?}", r.prompt);
    }
}

#[test]
fn int8_activations_keep_the_reference_top_token_and_logits_within_a_few_percent() {
    for r in references() {
        let (fast, exact) = (model().last_logits(&r.input_ids).unwrap(), exact().last_logits(&r.input_ids).unwrap());
        assert_eq!(argmax(&fast), r.top5_ids[0], "{:?}", r.prompt);
        let scale = exact.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = fast.iter().zip(&exact).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // llama.cpp's own int8 activations differ from f32 by 2.4–4.9% on these prompts.
        assert!(worst <= 0.15 * scale, "{:?}: logits differ by {worst} (largest {scale})", r.prompt);
    }
}

#[test]
fn the_capital_of_france_is_paris() {
    let m = model();
    let prompt =
        m.chat_prompt(&[loopc::model::chat::Message { role: loopc::model::chat::Role::User, content: "What is the capital of France?".into() }]).unwrap();
    let g = m.generate(&[greedy(Prompt::plain(prompt), 32)], PrefixCaching::Off).unwrap();
    assert!(g[0].text.contains("Paris"), "{:?}", g[0].text);
}

#[test]
fn batched_and_prefix_cached_generation_equal_one_by_one() {
    let m = exact();
    let shared = "Answer with one word.\nQuestion: What colour is the sky?\nAnswer: Blue\n";
    let rests = ["Question: What is frozen water?\nAnswer:", "Question: What do bees make?\nAnswer:", "Question: What is 2 + 2?\nAnswer:"];
    let reqs: Vec<GenerateRequest> = rests.iter().map(|r| greedy(Prompt { shared: shared.into(), rest: (*r).into() }, 8)).collect();
    let single: Vec<Vec<u32>> = reqs.iter().map(|r| m.generate(std::slice::from_ref(r), PrefixCaching::Off).unwrap()[0].tokens.clone()).collect();
    let batched: Vec<Vec<u32>> = m.generate(&reqs, PrefixCaching::Off).unwrap().into_iter().map(|g| g.tokens).collect();
    let cached: Vec<Vec<u32>> = m.generate(&reqs, PrefixCaching::On).unwrap().into_iter().map(|g| g.tokens).collect();
    assert_eq!(batched, single);
    assert_eq!(cached, single);
}

#[test]
fn constrained_choice_ranks_the_right_label() {
    let m = model();
    let shared = "Review: I love it, works perfectly.\nSentiment: positive\n\nReview: Broke after a day, waste of money.\nSentiment: negative\n\nReview: Fantastic quality, highly recommend.\nSentiment: positive\n\n";
    let cases = [
        ("Terrible. It stopped working and support never answered.", 1),
        ("Absolutely wonderful, the best purchase I made this year.", 0),
        ("Awful smell and it fell apart, very disappointed.", 1),
        ("Great value and it arrived early, very happy.", 0),
    ];
    let prompts: Vec<Prompt> = cases.iter().map(|(t, _)| Prompt { shared: shared.into(), rest: format!("Review: {t}\nSentiment:").into() }).collect();
    let labels = vec![" positive".to_string(), " negative".to_string()];
    let scores = m.score_choices(&prompts, &labels, PrefixCaching::On).unwrap();
    for ((text, want), s) in cases.iter().zip(&scores) {
        let best = if s[0] >= s[1] { 0 } else { 1 };
        assert_eq!(best, *want, "{text}: scores {s:?}");
    }
}

/// The winner of `scores` under `adjust` (the first of equals), and the margin to the runner-up.
fn winner(scores: &[f32], tokens: &[usize], adjust: &[Adjust]) -> (usize, f32) {
    let v: Vec<f32> = scores
        .iter()
        .zip(tokens)
        .zip(adjust)
        .map(|((&s, &n), a)| {
            let x = f64::from(s) * a.scale / if a.per_token { n.max(1) as f64 } else { 1.0 };
            (x + a.offset) as f32
        })
        .collect();
    let best = (0..v.len()).fold(0, |b, c| if v[c] > v[b] { c } else { b });
    let second = (0..v.len()).filter(|&c| c != best).map(|c| v[c]).fold(f32::NEG_INFINITY, f32::max);
    (best, v[best] - second)
}

#[test]
fn a_bounded_choice_picks_the_same_label_as_full_scoring_and_feeds_fewer_tokens() {
    // At f32 activations (int8 ones may move a last bit between passes of different shapes).
    let m = exact();
    let labels: Vec<String> = [
        "card_arrival",
        "card_linking",
        "card_payment_fee_charged",
        "card_payment_wrong_exchange_rate",
        "cash_withdrawal_charge",
        "cash_withdrawal_not_recognised",
        "change_pin",
        "compromised_card",
        "contactless_not_working",
        "declined_card_payment",
        "declined_transfer",
        "exchange_rate",
        "lost_or_stolen_card",
        "pending_top_up",
        "refund_not_showing_up",
        "top_up_failed",
        "transfer_not_received_by_recipient",
        "verify_my_identity",
        "wrong_amount_of_cash_received",
        "apple_pay_or_google_pay",
    ]
    .iter()
    .map(|l| format!(" {l}"))
    .collect();
    let texts = [
        "My card still hasn't arrived after two weeks.",
        "How do I link my new card to the app?",
        "I was charged a fee for paying by card.",
        "The exchange rate on my payment was wrong.",
        "Why was I charged for taking out cash?",
        "There's a cash withdrawal I don't recognise.",
        "I want to change my PIN.",
        "I think someone has my card details.",
        "Tapping my card at the shop doesn't work.",
        "My card payment was declined.",
        "My transfer was declined, why?",
        "What exchange rate do you use?",
        "I lost my card yesterday.",
        "My top up is still pending.",
        "The refund from the shop isn't in my account.",
        "Top up failed again.",
        "My friend says the money I sent never arrived.",
        "How do I verify my identity?",
        "The ATM gave me less cash than I asked for.",
        "Can I use Google Pay?",
    ];
    let shared = "Classify the banking query into its intent.\n\n";
    let prompts: Vec<Prompt> = texts.iter().map(|t| Prompt { shared: shared.into(), rest: format!("Query: {t}\nIntent:").into() }).collect();
    let n = labels.len();
    let per_token = vec![Adjust { scale: 1.0, per_token: true, offset: 0.0 }; n];
    let offsets: Vec<Adjust> = (0..n).map(|c| Adjust { scale: 1.0, per_token: false, offset: ((c * 7) % 5) as f64 * 0.4 }).collect();
    let bounds = ChoiceBounds { modes: vec![vec![Adjust::SUM; n], per_token, offsets] };
    let before = m.stats();
    let full = m.score_choices_counted(&prompts, &labels, PrefixCaching::On).unwrap();
    let mid = m.stats();
    let bounded = m.score_choices_bounded(&prompts, &labels, PrefixCaching::On, std::sync::Arc::new(bounds.clone())).unwrap();
    let after = m.stats();
    let (mut compared, mut pruned) = (0, 0);
    for (i, (f, b)) in full.iter().zip(&bounded).enumerate() {
        assert_eq!(f.choice_tokens, b.choice_tokens);
        pruned += b.pruned.iter().filter(|&&p| p).count();
        for adjust in &bounds.modes {
            let (want, margin) = winner(&f.scores, &f.choice_tokens, adjust);
            // A near-tie may flip on a last-bit difference between passes of different shapes.
            if margin < 1e-3 {
                continue;
            }
            compared += 1;
            let (got, _) = winner(&b.scores, &b.choice_tokens, adjust);
            assert_eq!(got, want, "{}: full {:?}, bounded {:?}", texts[i], f.scores, b.scores);
            assert!((b.scores[want] - f.scores[want]).abs() < 1e-3, "the winner's score is exact");
            assert!(!b.pruned[want]);
        }
    }
    assert!(compared >= 3 * texts.len() - 3, "only {compared} decisions compared");
    assert!(pruned > texts.len() * n / 4, "labels were dropped ({pruned} of {})", texts.len() * n);
    let fed = |a: &loopc::model::Stats, b: &loopc::model::Stats| b.prefilled_tokens - a.prefilled_tokens;
    assert!(fed(&mid, &after) < fed(&before, &mid), "bounded fed {} tokens, full {}", fed(&mid, &after), fed(&before, &mid));
    // The prompts of a pass expand their trees together: an expansion pass carries a row per
    // prompt still unsettled (one at a time, rows would barely outnumber passes).
    let passes = after.forward_passes - mid.forward_passes;
    let rows = after.prefill_rows - mid.prefill_rows;
    assert!(rows >= 2 * passes, "{passes} passes carried {rows} rows");
}
