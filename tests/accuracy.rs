//! Classification programs end to end through the real binary on a tiny seeded model: labels
//! that are any strings (`reverted_card_payment?`, spaces, commas, quotes, non-ASCII) survive
//! check, fmt, compile (scoring modes, retrieved demos, the final choice), the artifact, run,
//! traces and eval; and `loopc bench accuracy` measures a task from a directory of data.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

/// The labels, as JSON strings and as `.loop` writes them.
const LABELS: [&str; 4] = ["reverted_card_payment?", "card arrival", "Refund, not showing up", "über \"quoted\""];

fn loopc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A label as a `.loop` string literal.
fn quoted(label: &str) -> String {
    format!("\"{}\"", label.replace('\\', "\\\\").replace('"', "\\\""))
}

fn program(model: &Path) -> String {
    let labels = LABELS.map(quoted).join(", ");
    format!(
        "program intents\ninput text: text\noutput intent: label({labels})\nmodel default = onnx(\"{}\")\n\
         signature S \"Which intent does the message express?\" {{ in text: text out intent: label({labels}) }}\n\
         step route = predict S {{ text: input.text }}\nreturn {{ intent: route.intent }}\n\
         metric accuracy = exact(output.intent, example.intent)\n\
         optimize bootstrap_random_search {{ max_demos: 3, candidates: 2, seed: 5, templates: [completion], retrieval: true }}\n",
        model.display()
    )
}

/// `n` rows cycling through the labels, each message naming words of its label.
fn rows(n: usize, offset: usize) -> String {
    (0..n)
        .map(|i| {
            let label = LABELS[(i + offset) % LABELS.len()];
            format!("{}\n", json!({ "text": format!("msg {} {}", i + offset, label.split(' ').next().unwrap_or_default()), "intent": label }))
        })
        .collect()
}

#[test]
fn quoted_labels_survive_check_fmt_compile_run_trace_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    loopc::model::testing::write_tiny_model(&model, 41).unwrap();
    std::fs::write(d.join("intents.loop"), program(&model)).unwrap();
    // 40 examples over 4 labels: enough for the learned bias to be a mode (10 per label).
    std::fs::write(d.join("train.jsonl"), rows(28, 0)).unwrap();
    std::fs::write(d.join("dev.jsonl"), rows(12, 100)).unwrap();
    let labels: BTreeSet<String> = LABELS.iter().map(|l| l.to_string()).collect();

    let o = loopc(d, &["check", "intents.loop"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Formatting writes the canonical layout, which then passes `--check`, labels quoted as written.
    let o = loopc(d, &["fmt", "intents.loop"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = loopc(d, &["fmt", "--check", "intents.loop"]);
    assert!(o.status.success(), "a formatted file passes --check: {}", text(&o.stderr));
    let formatted = std::fs::read_to_string(d.join("intents.loop")).unwrap();
    for l in LABELS {
        assert!(formatted.contains(&quoted(l)), "fmt keeps `{l}` quoted: {formatted}");
    }

    let o = loopc(d, &["compile", "intents.loop", "--train", "train.jsonl", "--dev", "dev.jsonl", "-o", "a.json", "--no-cache", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let artifact: Value = serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).unwrap()).unwrap();
    let selection = &artifact["provenance"]["selection"];
    assert!(selection["entrants"].as_array().is_some_and(|e| !e.is_empty()), "the final choice ran: {selection}");
    // Every scoring mode was tried over these labels, and the shipped one carries one number
    // per label, named as written, when it carries numbers at all.
    let tried: BTreeSet<&str> = selection["entrants"].as_array().unwrap().iter().filter_map(|e| e["scoring"].as_str()).collect();
    for mode in ["sum", "length_normalized", "calibrated", "learned_bias"] {
        assert!(tried.contains(mode), "{mode} was not tried: {selection}");
    }
    let scoring = &artifact["steps"]["route"]["scoring"];
    let numbers = match scoring["mode"].as_str() {
        Some("calibrated") => Some(&scoring["content_free"]),
        Some("learned_bias") => Some(&scoring["bias"]),
        Some("sum" | "length_normalized") => None,
        _ => panic!("an unknown scoring mode was shipped: {scoring}"),
    };
    if let Some(map) = numbers {
        let names: BTreeSet<String> = map.as_object().unwrap().keys().cloned().collect();
        assert_eq!(names, labels, "one number per label, named as written: {scoring}");
    }
    // Numbers keyed by these labels load and decide: a learned bias that ignores the model
    // (scale 0) and favours the quoted label makes it every answer.
    let favoured = LABELS[3];
    let mut biased = artifact.clone();
    let bias: serde_json::Map<String, Value> = LABELS.iter().map(|l| (l.to_string(), json!(if *l == favoured { 5.0 } else { 0.0 }))).collect();
    biased["steps"]["route"]["scoring"] = json!({"mode": "learned_bias", "scale": 0.0, "bias": bias});
    std::fs::write(d.join("biased.json"), serde_json::to_string_pretty(&biased).unwrap()).unwrap();
    let o = loopc(d, &["run", "biased.json", "--input", r#"{"text": "msg 7 reverted_card_payment?"}"#, "--no-cache"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["intent"], favoured, "{out}");
    for demo in artifact["steps"]["route"]["demos"].as_array().into_iter().flatten() {
        assert!(labels.contains(demo["outputs"]["intent"].as_str().unwrap_or_default()), "{demo}");
    }

    // Every label as written is scored, traced and can be the answer of the artifact and of
    // the source.
    for file in ["a.json", "intents.loop"] {
        let trace = d.join(format!("{file}.trace.jsonl"));
        let o = loopc(d, &["run", file, "--input", r#"{"text": "msg 7 reverted_card_payment?"}"#, "--no-cache", "--trace-json", trace.to_str().unwrap()]);
        assert!(o.status.success(), "{file}: {}", text(&o.stderr));
        let out: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(labels.contains(out["intent"].as_str().unwrap_or_default()), "{file}: {out}");
        let t: Value = serde_json::from_str(std::fs::read_to_string(&trace).unwrap().lines().next().unwrap()).unwrap();
        let scored: BTreeSet<String> = t["steps"][0]["choice_scores"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap().to_string()).collect();
        assert_eq!(scored, labels, "{file}: every label is scored as written");
    }

    let o = loopc(d, &["eval", "a.json", "--data", "dev.jsonl", "--no-cache", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    // Eval on the compile's dev file reproduces the score the compile reported for it.
    assert_eq!(e["score"], artifact["provenance"]["final_score"], "{e}");
    assert_eq!(e["examples"], 12, "{e}");
}

#[test]
fn bench_accuracy_compiles_a_task_and_compares_it_with_zero_shot_and_the_majority_label() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    loopc::model::testing::write_tiny_model(&model, 43).unwrap();
    let tasks = d.join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    // `anger` is the most frequent label of the training file; validation has 30 rows, fewer
    // than the bench's sample, so it is used whole.
    let label = |i: usize| if i % 5 < 2 { "anger" } else { ["joy", "optimism", "sadness"][i % 3] };
    let rows = |n: usize, tag: &str| -> String { (0..n).map(|i| format!("{}\n", json!({"text": format!("{tag} {i}"), "label": label(i)}))).collect() };
    std::fs::write(tasks.join("tweeteval-emotion-train.jsonl"), rows(170, "t")).unwrap();
    std::fs::write(tasks.join("tweeteval-emotion-val.jsonl"), rows(30, "v")).unwrap();
    let out = d.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["bench", "accuracy", "--tasks", tasks.to_str().unwrap(), "--task", "emotion", "--model", model.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &v["tasks"][0];
    assert_eq!(t["task"], "emotion");
    assert_eq!(t["labels"], 4);
    assert_eq!(t["majority"]["label"], "anger");
    let truth: Vec<&str> = (0..30).map(label).collect();
    let anger = truth.iter().filter(|l| **l == "anger").count() as f64 / 30.0;
    assert!((t["majority"]["accuracy"].as_f64().unwrap() - anger).abs() < 1e-9, "{t}");
    for k in ["zero_shot", "compiled"] {
        let a = t[k]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{k}: {t}");
    }
    assert!(t["compile_model_calls"].as_u64().unwrap() > 0 && t["peak_rss_mb"].as_f64().unwrap() > 0.0, "{t}");
    assert!(out.join("emotion-compiled.json").exists() && out.join("emotion-val.jsonl").exists());
    let o = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["bench", "accuracy", "--tasks", tasks.to_str().unwrap(), "--task", "sentiment"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown task is a usage error");
    assert!(text(&o.stderr).contains("unknown task `sentiment`"), "{}", text(&o.stderr));
}
