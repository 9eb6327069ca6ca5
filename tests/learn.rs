//! The learn path end to end on a real (temporary SQLite) store and a tiny seeded model: runs
//! and corrections go in, a round compiles a candidate, the gate decides on the holdout, and
//! the version is recorded with its lineage and the feedback behind it; `why` traces demos to
//! runs, `forget` removes a user's data and marks what it trained; the CLI does the same.

use std::path::Path;
use std::process::Command;

use loopc::compile::Event;
use loopc::graph::OptimizerSettings;
use loopc::learn::{self, Current, ExportOptions, Round};
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::store::{FeedbackPayload, FeedbackSource, NewFeedback, NewRun, Store};
use serde_json::json;

fn program(model: &Path) -> String {
    format!(
        "program mood\ninput text: text\noutput mood: label(happy, sad)\nmodel default = onnx(\"{}\")\n\
         signature S \"Say the mood.\" {{ in text: text out mood: label(happy, sad) }}\n\
         step s = predict S {{ text: input.text }}\nreturn {{ mood: s.mood }}\nmetric accuracy = exact(output.mood, example.mood)\n\
         optimize labeled_few_shot {{ max_demos: 2, seed: 3 }}\n",
        model.display()
    )
}

/// Stores `n` runs with a correction each, from users `u0`, `u1`, ...
async fn fill(store: &Store, n: usize) {
    for i in 0..n {
        let mood = if i % 2 == 0 { "happy" } else { "sad" };
        let mut run = NewRun::new("mood", json!({ "text": format!("day {i} was {mood}") }));
        run.outputs = Some(json!({ "mood": "happy" }));
        run.user_id = Some(format!("u{}", i % 3));
        let id = store.record_run(run).await.unwrap().run_id().cloned().unwrap();
        let mut fb = NewFeedback::new(id, "correction", FeedbackPayload::Correction(json!({ "mood": mood })));
        fb.source = FeedbackSource::User;
        fb.user_id = Some(format!("u{}", i % 3));
        store.add_feedback(fb).await.unwrap();
    }
}

/// A round of `current` with the settings these tests share: 30% of the stored corrections held
/// out, no margin, at most 100 rows.
fn base<'a>(engine: &'a Engine, store: &'a Store, current: Current, progress: &'a (dyn Fn(Event<'_>) + Sync)) -> Round<'a> {
    Round {
        engine,
        store,
        current,
        holdout: None,
        export: ExportOptions { holdout_share: 0.3, ..ExportOptions::default() },
        optimizer: None,
        settings: OptimizerSettings::default(),
        metric: None,
        margin: 0.0,
        concurrency: 2,
        max_rows: 100,
        canary: false,
        judge_min_agreement: 0.7,
        options: loopc::runtime::ProgramOptions::default(),
        progress,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_records_the_candidate_its_lineage_and_the_decision_and_forget_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 21).unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("store.db").display())).await.unwrap();
    fill(&store, 24).await;
    let engine = Engine::builder().options(EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() }).build().unwrap();
    let source = program(&model);
    let progress = |_: Event<'_>| {};
    let round = |current: Current| base(&engine, &store, current, &progress);
    let first = Current { name: "mood.loop".into(), source_file: "mood.loop".into(), source: source.clone(), artifact: None };
    let outcome = learn::learn(round(first.clone())).await.unwrap();
    let d = &outcome.decision;
    assert!(d.items > 0 && !outcome.export.holdout.is_empty(), "the store reserved a holdout");
    assert_eq!(d.promote, d.difference >= 0.0 && d.interval.0 >= -d.margin, "{d:?}");

    // The artifact says which feedback made it; each demo names its runs and feedback.
    let learned = outcome.candidate.provenance.learned.as_ref().unwrap();
    assert_eq!(learned.parent, None);
    assert_eq!(learned.dataset_sha256, outcome.export.sha256);
    assert!(learned.feedback_ids.iter().all(|f| outcome.export.feedback_ids.contains(f)));
    // (A tiny random model may keep the program as written; then there are no demos to trace.)
    let demos = &outcome.candidate.steps["s"].demos;
    let sources = &learned.demo_sources["s"];
    assert_eq!(sources.len(), demos.len());
    assert!(sources.iter().all(|s| s.kind == "gold" && !s.run_ids.is_empty() && !s.feedback_ids.is_empty()), "{sources:?}");
    let why = learn::why(&outcome.candidate);
    assert_eq!(why["steps"]["s"].as_array().unwrap().len(), demos.len());

    // The store holds the version with its decision; the next round names it as parent.
    let versions = learn::history(&store, "mood").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].decision, if d.promote { "promoted" } else { "rejected" });
    assert!(!versions[0].tainted);
    let second = Current { artifact: Some(outcome.candidate.clone()), ..first };
    let again = learn::learn(round(second)).await.unwrap();
    assert_eq!(again.candidate.provenance.learned.as_ref().unwrap().parent.as_deref(), Some(outcome.hash.as_str()));

    // Forgetting a user removes their runs from later exports and marks what they trained.
    let (removed, marked) = learn::forget(&store, "u1").await.unwrap();
    assert_eq!(removed.runs, 8);
    assert_eq!(marked.len(), 2, "both versions were trained on u1's corrections");
    assert!(learn::history(&store, "mood").await.unwrap().iter().all(|v| v.tainted));
    let after = learn::export(&store, "mood", &loopc::graph::check(&source).dag.unwrap(), &ExportOptions::default()).await.unwrap();
    assert!(after.train.iter().all(|r| !r.provenance.users.contains(&"u1".to_string())));
    assert_eq!(after.train.len() + after.holdout.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_human_labels_or_no_holdout_stop_the_round_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 22).unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("store.db").display())).await.unwrap();
    let engine = Engine::builder().options(EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() }).build().unwrap();
    let progress = |_: Event<'_>| {};
    let current = Current { name: "mood.loop".into(), source_file: "mood.loop".into(), source: program(&model), artifact: None };
    let round =
        |share: f64| Round { export: ExportOptions { holdout_share: share, ..ExportOptions::default() }, ..base(&engine, &store, current.clone(), &progress) };
    let err = learn::learn(round(0.0)).await.err().unwrap();
    assert!(matches!(err, learn::LearnError::NoHoldout), "{err}");
    fill(&store, 3).await;
    let err = learn::learn(round(0.01)).await.err().unwrap();
    assert!(matches!(err, learn::LearnError::NoHoldout | learn::LearnError::NotEnoughData { .. }), "{err}");
}

/// The mood program with a star rating, a `human("stars")` metric and an LM judge.
fn rated_program(model: &Path) -> String {
    program(model).replace("optimize labeled_few_shot {", "optimize labeled_few_shot { metric: accuracy,").replace(
        "optimize labeled_few_shot",
        "feedback stars: int(1..5)\nfeedback correction\n\
         signature Rubric \"Is this the mood of the text?\" { in text: text in mood: text out right: bool }\n\
         metric liked = human(\"stars\")\nmetric judged = judge(Rubric, text: example.text, mood: output.mood)\n\
         metric loved = human(\"hearts\")\noptimize labeled_few_shot",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_scores_by_stored_human_ratings_and_uses_a_judge_only_when_it_agrees_with_people() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 23).unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("store.db").display())).await.unwrap();
    fill(&store, 24).await;
    let engine = Engine::builder().options(EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() }).build().unwrap();
    let progress = |_: Event<'_>| {};
    let current = Current { name: "mood.loop".into(), source_file: "mood.loop".into(), source: rated_program(&model), artifact: None };
    let round = |metric: &str, judge_min_agreement: f64| Round {
        metric: Some(metric.into()),
        judge_min_agreement,
        ..base(&engine, &store, current.clone(), &progress)
    };

    // human("stars"): every stored answer was corrected, so each holdout answer scores 1 (the
    // correction), 0 (the answer it replaced) or 0.5 (an answer nobody rated); the unit tests
    // in learn/human.rs pin down which.
    let outcome = learn::learn(round("liked", 0.7)).await.unwrap();
    assert!(outcome.judge.is_none());
    let d = &outcome.decision;
    assert!(d.items > 0);
    let halves = |v: f64| (v * d.items as f64 * 2.0).fract().abs() < 1e-9;
    assert!(halves(d.current) && halves(d.candidate), "{d:?}");

    // A feedback the program does not declare is refused by name.
    let err = learn::learn(round("loved", 0.7)).await.err().unwrap();
    assert!(matches!(err, learn::LearnError::UnknownCriterion { .. }) && err.to_string().contains("`hearts`"), "{err}");

    // The judge is calibrated on the rated runs: impossible to pass at an agreement above 1,
    // used (and its agreement reported) at 0.
    let err = learn::learn(round("judged", 1.01)).await.err().unwrap();
    match err {
        learn::LearnError::JudgeUncalibrated { items, agreement, .. } => assert!(items >= 10 && (0.0..=1.0).contains(&agreement), "{items} {agreement}"),
        other => panic!("expected an uncalibrated judge, got: {other}"),
    }
    let outcome = learn::learn(round("judged", 0.0)).await.unwrap();
    let c = outcome.judge.expect("the judge's calibration is reported");
    assert!(c.items >= 10 && c.items + c.failed <= 24, "{c:?}");
    let versions = store.artifacts("mood").await.unwrap();
    assert_eq!(versions.last().unwrap().meta["judge_items"], serde_json::json!(c.items), "the version records the calibration");
}

#[test]
fn the_cli_exports_learns_and_shows_history_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 23).unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { fill(&Store::open(&url).await.unwrap(), 20).await });
    let src = dir.path().join("mood.loop");
    std::fs::write(&src, program(&model)).unwrap();
    let holdout = dir.path().join("holdout.jsonl");
    std::fs::write(
        &holdout,
        (0..8).map(|i| format!("{{\"text\": \"held {i}\", \"mood\": \"{}\"}}\n", if i % 2 == 0 { "happy" } else { "sad" })).collect::<String>(),
    )
    .unwrap();
    let loopc = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).env("NO_COLOR", "1").output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let rows = dir.path().join("rows.jsonl");
    let o = loopc(&["dataset", "export", "--store", &url, "--program", src.to_str().unwrap(), "-o", rows.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&rows).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|r| r["kind"] == "gold" && r["provenance"]["feedback_ids"].as_array().unwrap().len() == 1));

    let out = dir.path().join("learned.json");
    let o =
        loopc(&["learn", src.to_str().unwrap(), "--store", &url, "--holdout", holdout.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-cache", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["holdout_items"], 8);
    assert_eq!(out.exists(), v["promoted"] == true, "the artifact is written only when promoted: {v}");
    let o = loopc(&["history", "--store", &url, "--program", "mood", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["hash"], v["candidate"]);
    if out.exists() {
        let o = loopc(&["why", out.to_str().unwrap(), "--json"]);
        let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(w["learned_from"]["gold_rows"], 20);
        assert!(w["steps"]["s"].as_array().unwrap().iter().all(|d| d["kind"] == "gold"));
    }
}

#[test]
fn bench_loop_serves_rounds_through_the_store_and_reports_each_round() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 25).unwrap();
    let src = dir.path().join("mood.loop");
    std::fs::write(&src, program(&model)).unwrap();
    let rows = |n: usize, tag: &str| -> String {
        (0..n).map(|i| format!("{{\"text\": \"{tag} {i}\", \"mood\": \"{}\"}}\n", if i % 3 == 0 { "happy" } else { "sad" })).collect()
    };
    let (stream, holdout) = (dir.path().join("stream.jsonl"), dir.path().join("holdout.jsonl"));
    std::fs::write(&stream, rows(30, "day")).unwrap();
    std::fs::write(&holdout, rows(8, "held")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["bench", "loop", src.to_str().unwrap(), "--stream", stream.to_str().unwrap(), "--holdout", holdout.to_str().unwrap()])
        .args(["--rounds", "3", "--per-round", "12", "--noise", "0.2", "--json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rounds = v["rounds"].as_array().unwrap();
    // 30 stream items at 12 per round: 12, 12, then the last 6.
    assert_eq!(rounds.iter().map(|r| r["n"].as_u64().unwrap()).collect::<Vec<_>>(), [12, 12, 6], "{v}");
    for r in rounds {
        for k in ["static", "loop"] {
            assert!((0.0..=1.0).contains(&r[k].as_f64().unwrap()), "{r}");
        }
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
        // A round with a holdout decision has both scores; one refused for too little data has neither.
        assert_eq!(r["holdout_current"].is_null(), r["holdout_candidate"].is_null(), "{r}");
        if r["promoted"] == true {
            assert!(r["holdout_candidate"].as_f64() >= r["holdout_current"].as_f64().map(|c| c - 0.02), "{r}");
        }
    }
    // The first round serves the program as written: the loop and the control answer alike.
    assert_eq!(rounds[0]["static"], rounds[0]["loop"], "{v}");
    let mean = |k: &str| rounds.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>() / rounds.len() as f64;
    for k in ["static", "loop"] {
        assert!((v[k].as_f64().unwrap() - mean(k)).abs() < 1e-9, "{k}: {v}");
    }
}
