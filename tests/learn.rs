//! The learn path end to end on a real (temporary SQLite) store: runs and corrections go in,
//! a round compiles a candidate, the gate decides on the holdout, and the version is recorded
//! with its lineage and the feedback behind it; `why` traces demos to runs, `forget` removes a
//! user's data and marks what it trained; the CLI and `bench loop` do the same.
//!
//! Whether learning *helps* is asserted on a deterministic model: a scripted OpenAI-compatible
//! endpoint that answers by its nearest demo ([`scripted_model`]). On it, right corrections
//! must make a candidate the gate promotes, and wrong ones a candidate it rejects. The tiny
//! seeded ONNX model, whose answers are noise, tests the plumbing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use loopc::compile::{Dataset, Event, Example};
use loopc::learn::{self, Current, ExportOptions, Round, RoundSettings, Verdict};
use loopc::runtime::artifact::DemoOrigin;
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::store::{FeedbackPayload, FeedbackSource, NewFeedback, NewRun, Store};
use serde_json::{json, Value};

fn program(model: &Path) -> String {
    format!(
        "program mood\ninput text: text\noutput mood: label(happy, sad)\nmodel default = onnx(\"{}\")\n\
         signature S \"Say the mood.\" {{ in text: text out mood: label(happy, sad) }}\n\
         step s = predict S {{ text: input.text }}\nreturn {{ mood: s.mood }}\nmetric accuracy = exact(output.mood, example.mood)\n\
         optimize labeled_few_shot {{ max_demos: 2, seed: 3 }}\n",
        model.display()
    )
}

/// An engine that answers every call afresh (no response cache), so each round runs its model.
fn uncached_engine() -> Engine {
    Engine::builder().options(EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() }).build().unwrap()
}

/// A fresh SQLite store in `dir`.
async fn sqlite_store(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("store.db").display())).await.unwrap()
}

/// The program as written, as a round's current program (`mood.loop`, no artifact).
fn written(source: String) -> Current {
    Current { name: "mood.loop".into(), source_file: "mood.loop".into(), source, artifact: None }
}

/// The eight held-out examples as the frozen holdout file.
fn holdout_set() -> Dataset {
    Dataset { source: "holdout".into(), sha256: "0".repeat(64), examples: holdout_examples() }
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
        settings: RoundSettings { holdout_share: 0.3, margin: 0.0, concurrency: 2, max_rows: 100, ..RoundSettings::DEFAULT },
        progress,
        ..Round::new(engine, store, current)
    }
}

/// The words of `text`, lowercased.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// What the scripted model answers to a chat request: the answer of the demo (a user turn and
/// the assistant turn after it) whose question shares the most words with the last user turn,
/// the first such demo on a tie; `fallback` when the request has no demos.
fn nearest_demo(messages: &[Value], fallback: &str) -> String {
    let content = |m: &Value| m["content"].as_str().unwrap_or_default().to_string();
    let Some(question) = messages.last().map(content) else { return fallback.to_string() };
    let asked = words(&question);
    let turns: Vec<&Value> = messages.iter().filter(|m| m["role"] != "system").collect();
    let mut best: Option<(usize, String)> = None;
    for pair in turns[..turns.len().saturating_sub(1)].chunks(2) {
        let [q, a] = pair else { continue };
        let shared = words(&content(q)).intersection(&asked).count();
        if best.as_ref().is_none_or(|(n, _)| shared > *n) {
            best = Some((shared, content(a)));
        }
    }
    best.map_or_else(|| fallback.to_string(), |(_, a)| a)
}

/// A deterministic model behind a local OpenAI-compatible endpoint (a thread answering
/// `POST …/chat/completions` with [`nearest_demo`]): without demos it says `happy` to
/// everything; with demos it is as right as its demos are. Returns the base URL.
fn scripted_model() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let messages = request["messages"].as_array().cloned().unwrap_or_default();
                // Asked for structured output, it answers in JSON, as servers that take a schema do.
                let fallback = if request.get("response_format").is_some() { r#"{"mood": "happy"}"# } else { "[[ ## mood ## ]]\nhappy" };
                let answer = nearest_demo(&messages, fallback);
                let answer = answer.split("[[ ## completed ## ]]").next().unwrap_or_default().trim_end();
                let reply = json!({"choices": [{"message": {"role": "assistant", "content": answer}}], "usage": {"prompt_tokens": 10, "completion_tokens": 3}})
                    .to_string();
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", reply.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(reply.as_bytes()));
            });
        }
    });
    url
}

/// The mood program on the scripted model, with up to eight labelled demos (enough that a
/// dozen corrections of either mood give demos of both).
fn scripted_program(url: &str) -> String {
    format!(
        "program mood\ninput text: text\noutput mood: label(happy, sad)\nmodel default = openai(\"{url}\", \"nearest-demo\")\n\
         signature S \"Say the mood.\" {{ in text: text out mood: label(happy, sad) }}\n\
         step s = predict S {{ text: input.text }}\nreturn {{ mood: s.mood }}\nmetric accuracy = exact(output.mood, example.mood)\n\
         optimize labeled_few_shot {{ max_demos: 8, seed: 3 }}\n"
    )
}

/// Stores `n` runs answered `happy`, each corrected by its user: to its true mood, or to the
/// other one when `wrong`.
async fn corrected(store: &Store, n: usize, wrong: bool) {
    corrected_in(store, 0..n, wrong).await;
}

/// [`corrected`], storing the runs in the order `order` gives.
async fn corrected_in(store: &Store, order: impl Iterator<Item = usize>, wrong: bool) {
    for i in order {
        let (mood, other) = if i % 2 == 0 { ("happy", "sad") } else { ("sad", "happy") };
        let mut run = NewRun::new("mood", json!({ "text": format!("day {i} was {mood}") }));
        run.outputs = Some(json!({ "mood": "happy" }));
        run.user_id = Some(format!("u{}", i % 3));
        let id = store.record_run(run).await.unwrap().run_id().cloned().unwrap();
        let said = if wrong { other } else { mood };
        let mut fb = NewFeedback::new(id, "correction", FeedbackPayload::Correction(json!({ "mood": said })));
        fb.source = FeedbackSource::User;
        fb.user_id = Some(format!("u{}", i % 3));
        store.add_feedback(fb).await.unwrap();
    }
}

/// Eight held-out examples, half happy and half sad, that name their mood.
fn holdout_examples() -> Vec<Example> {
    (0..8)
        .map(|i| {
            let mood = if i % 2 == 0 { "happy" } else { "sad" };
            let fields = json!({ "text": format!("held {i} was {mood}"), "mood": mood }).as_object().cloned().unwrap();
            Example { origin: format!("holdout:{}", i + 1), fields }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_corrections_make_a_candidate_the_gate_promotes_and_wrong_ones_one_it_rejects() {
    let url = scripted_model();
    let engine = uncached_engine();
    let holdout = holdout_set();
    let current = written(scripted_program(&url));
    for wrong in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        corrected(&store, 24, wrong).await;
        // The frozen holdout is the file alone: every stored correction may be learned from.
        let round = Round {
            holdout: Some(holdout.clone()),
            settings: RoundSettings { holdout_share: 0.0, concurrency: 2, ..RoundSettings::DEFAULT },
            ..Round::new(&engine, &store, current.clone())
        };
        let outcome = learn::learn(round).await.unwrap();
        let d = &outcome.decision;
        // Without demos the model says `happy` to everything: half the holdout.
        assert_eq!((d.current, d.items), (0.5, 8), "{d:?}");
        let demos = &outcome.candidate.steps["s"].demos;
        assert!(demos.iter().any(|x| x.outputs["mood"] == "happy") && demos.iter().any(|x| x.outputs["mood"] == "sad"), "{demos:?}");
        let versions = learn::history(&store, "mood").await.unwrap();
        assert_eq!(versions.len(), 1);
        let record = &versions[0].record;
        assert_eq!((record.holdout_current, record.holdout_candidate, record.gold_rows), (Some(d.current), Some(d.candidate), 24));
        assert_eq!(record.holdout_stopped_after, d.stopped_after);
        let current_version = learn::current(&store, "mood").await.unwrap().map(|(hash, _)| hash);
        if wrong {
            // Demos that name the wrong mood make every answer wrong; the gate keeps the program.
            // Wrong on the first five of eight items it can no longer reach the current
            // program's four right answers, so its scoring stops there and its score is the
            // most it could have had: right on the last three.
            assert_eq!((d.stopped_after, d.candidate), (Some(5), 3.0 / 8.0), "{d:?}");
            assert!(!d.promote && outcome.verdict == Verdict::Rejected && record.decision == Verdict::Rejected, "{d:?}");
            assert_eq!(current_version, None, "a rejected candidate never becomes current");
        } else {
            // Right demos make every answer right; the gate must promote it.
            assert_eq!((d.stopped_after, d.candidate), (None, 1.0), "{d:?}");
            assert!(d.promote && outcome.verdict == Verdict::Promoted && record.decision == Verdict::Promoted, "{d:?}");
            assert_eq!(current_version.as_deref(), Some(outcome.hash.as_str()));
            let learned = engine.load_artifact("mood", &outcome.candidate, Default::default()).unwrap();
            let said = learned.run(json!({ "text": "a long day that was sad" }).as_object().cloned().unwrap()).await.unwrap();
            assert_eq!(said["mood"], "sad");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_draws_the_same_data_whatever_order_the_store_lists_its_runs_in() {
    // Runs served at once are stored in whatever order they finish; the round's sample, split
    // and gate must not follow that order, or a seed would not give the same round twice.
    let url = scripted_model();
    let engine = uncached_engine();
    let holdout = holdout_set();
    let current = written(scripted_program(&url));
    let mut outcomes = Vec::new();
    for reversed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let order: Vec<usize> = if reversed { (0..30).rev().collect() } else { (0..30).collect() };
        corrected_in(&store, order.into_iter(), false).await;
        // Fewer rows than stored, so the round samples; a share held out, so the store grows the holdout.
        let settings = RoundSettings { max_rows: 8, holdout_share: 0.3, concurrency: 2, ..RoundSettings::DEFAULT };
        let round = Round { holdout: Some(holdout.clone()), settings, ..Round::new(&engine, &store, current.clone()) };
        outcomes.push(learn::learn(round).await.unwrap());
    }
    let (a, b) = (&outcomes[0], &outcomes[1]);
    assert!(a.decision.grown > 0, "{:?}", a.decision);
    assert_eq!(a.candidate.steps["s"].demos, b.candidate.steps["s"].demos);
    assert_eq!(a.decision, b.decision);
}

/// `text` labelled `mood`, as a holdout example.
fn held(text: &str, mood: &str) -> Example {
    Example { origin: format!("holdout:{text}"), fields: json!({ "text": text, "mood": mood }).as_object().cloned().unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_win_the_frozen_holdout_is_too_small_to_show_is_promoted_once_reviewed_runs_grow_it() {
    let url = scripted_model();
    let engine = uncached_engine();
    let current = written(scripted_program(&url));
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    corrected(&store, 24, false).await;
    // Three frozen items, one of them labelled against its words: the current program (always
    // `happy`) and the candidate (its nearest demo) are each right on two, so the frozen holdout
    // alone cannot tell the candidate is better, though it is right wherever the words say the
    // mood.
    let frozen = vec![held("held a was sad", "happy"), held("held b was sad", "sad"), held("held c was happy", "happy")];
    let holdout = Dataset { source: "holdout".into(), sha256: "0".repeat(64), examples: frozen };
    // Every reviewed run grows the holdout here (the default is one in two, by the run's id), so
    // the fixture does not depend on the ids the store draws.
    let settings = RoundSettings { holdout_share: 0.0, review_holdout_share: 1.0, concurrency: 2, ..RoundSettings::DEFAULT };
    let round = || Round { holdout: Some(holdout.clone()), settings: settings.clone(), ..Round::new(&engine, &store, current.clone()) };

    let before = learn::learn(round()).await.unwrap();
    let d = &before.decision;
    assert_eq!((d.current, d.candidate, d.items, d.frozen, d.grown), (2.0 / 3.0, 2.0 / 3.0, 3, 3, 0), "{d:?}");
    assert!(!d.promote && d.interval.0 < -d.margin, "{d:?}");

    // A reviewer labels twelve served runs (answered `happy`, half of them wrongly).
    for i in 0..12 {
        let mood = if i % 2 == 0 { "happy" } else { "sad" };
        let mut run = NewRun::new("mood", json!({ "text": format!("seen k{i} was {mood}") }));
        run.outputs = Some(json!({ "mood": "happy" }));
        let id = store.record_run(run).await.unwrap().run_id().cloned().unwrap();
        let mut fb = NewFeedback::new(id, "correction", FeedbackPayload::Correction(json!({ "mood": mood })));
        fb.source = FeedbackSource::Annotation;
        fb.user_id = Some("reviewer".into());
        store.add_feedback(fb).await.unwrap();
    }
    let after = learn::learn(round()).await.unwrap();
    let d = &after.decision;
    assert_eq!((d.items, d.frozen, d.grown), (15, 3, 12), "{d:?}");
    // The same training data (the reviewed runs are held out, not learned from), so the same
    // candidate; now judged on 15 items it is right on 14 of them, the current program on 8.
    assert_eq!(after.export.train, before.export.train, "the reviewed runs changed what the candidate learned from");
    assert_eq!(after.candidate.steps["s"].demos, before.candidate.steps["s"].demos);
    assert_eq!(after.export.grown.len(), 12);
    assert_eq!((d.current, d.candidate), (8.0 / 15.0, 14.0 / 15.0), "{d:?}");
    assert!(d.promote && after.verdict == Verdict::Promoted && d.interval.0 > 0.0, "{d:?}");
    assert!(d.detectable.unwrap() < before.decision.detectable.unwrap(), "more items, more power");
    // The record, `loopc history`'s source, says how many items were frozen and how many grown.
    let versions = learn::history(&store, "mood").await.unwrap();
    let record = &versions.iter().find(|v| v.hash == after.hash).unwrap().record;
    assert_eq!(record.decision, Verdict::Promoted);
    assert_eq!((record.holdout_items, record.holdout_frozen, record.holdout_grown), (15, Some(3), Some(12)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_records_the_candidate_its_lineage_and_the_decision_and_forget_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 21).unwrap();
    let store = sqlite_store(dir.path()).await;
    fill(&store, 24).await;
    let engine = uncached_engine();
    let source = program(&model);
    let progress = |_: Event<'_>| {};
    let round = |current: Current| base(&engine, &store, current, &progress);
    let first = written(source.clone());
    let outcome = learn::learn(round(first.clone())).await.unwrap();
    let d = &outcome.decision;
    assert!(d.items > 0 && !outcome.export.holdout.is_empty(), "the store reserved a holdout");
    assert_eq!(d.promote, d.difference >= 0.0 && d.interval.0 >= -d.margin, "{d:?}");

    // The compile inside the round counted the tokens the model computed for it (learned
    // artifacts used to record 0).
    assert!(outcome.candidate.provenance.timing.tokens_prefilled > 0, "{:?}", outcome.candidate.provenance.timing);
    // The artifact says which feedback made it; each demo names its runs and feedback.
    let learned = outcome.candidate.provenance.learned.as_ref().unwrap();
    assert_eq!(learned.parent, None);
    assert_eq!(learned.dataset_sha256, outcome.export.sha256);
    assert!(learned.feedback_ids.iter().all(|f| outcome.export.feedback_ids.contains(f)));
    // (A tiny random model may keep the program as written; then there are no demos to trace.)
    let demos = &outcome.candidate.steps["s"].demos;
    let sources = &learned.demo_sources["s"];
    assert_eq!(sources.len(), demos.len());
    assert!(sources.iter().all(|s| s.kind == DemoOrigin::Gold && !s.run_ids.is_empty() && !s.feedback_ids.is_empty()), "{sources:?}");
    let why = learn::why(&outcome.candidate);
    assert_eq!(why.steps["s"].len(), demos.len());

    // The store holds the version with its decision; the next round names it as parent.
    let versions = learn::history(&store, "mood").await.unwrap();
    assert_eq!(versions.len(), 1);
    // The record says what the gate decided (which, on a model whose answers are noise, may be
    // either; the scripted-model test pins down when it must promote).
    assert_eq!(versions[0].record.decision, if d.promote { Verdict::Promoted } else { Verdict::Rejected });
    assert_eq!(versions[0].record.holdout_items, d.items);
    assert!(!versions[0].tainted);
    let second = Current { artifact: Some(outcome.candidate.clone()), ..first };
    let again = learn::learn(round(second)).await.unwrap();
    assert_eq!(again.candidate.provenance.learned.as_ref().unwrap().parent.as_deref(), Some(outcome.hash.as_str()));

    // Forgetting a user removes their runs from later exports and marks what they trained.
    let (removed, marked) = learn::forget(&store, "u1").await.unwrap();
    assert_eq!(removed.runs, 8);
    assert_eq!(marked.len(), 2, "both versions were trained on u1's corrections");
    assert!(learn::history(&store, "mood").await.unwrap().iter().all(|v| v.tainted));
    let after = learn::export(&store, "mood", &loopc::graph::check_text(&source).dag.unwrap(), &ExportOptions::default()).await.unwrap();
    assert!(after.train.iter().all(|r| !r.provenance.users.contains(&"u1".to_string())));
    assert_eq!(after.train.len() + after.holdout.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_holdout_or_too_few_human_labels_stop_the_round_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 22).unwrap();
    let store = sqlite_store(dir.path()).await;
    let engine = uncached_engine();
    let progress = |_: Event<'_>| {};
    let current = written(program(&model));
    let no_share = || RoundSettings { holdout_share: 0.0, ..base(&engine, &store, current.clone(), &progress).settings };
    // No holdout file and no share of the store held out.
    let round = Round { settings: no_share(), ..base(&engine, &store, current.clone(), &progress) };
    let err = learn::learn(round).await.err().unwrap();
    assert!(matches!(err, learn::LearnError::NoHoldout), "{err}");
    assert!(err.to_string().contains("--holdout"), "the error names the fix: {err}");
    // A holdout, but three human labels where a round needs four.
    fill(&store, 3).await;
    let holdout = holdout_set();
    let round = Round { holdout: Some(holdout), settings: no_share(), ..base(&engine, &store, current.clone(), &progress) };
    let err = learn::learn(round).await.err().unwrap();
    assert!(matches!(err, learn::LearnError::NotEnoughData { gold: 3, needed: learn::MIN_GOLD_ROWS }), "{err}");
    assert!(learn::history(&store, "mood").await.unwrap().is_empty(), "a round that stopped records no version");
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
    let store = sqlite_store(dir.path()).await;
    fill(&store, 24).await;
    let engine = uncached_engine();
    let progress = |_: Event<'_>| {};
    let current = written(rated_program(&model));
    let round = |metric: &str, judge_min_agreement: f64| {
        let base = base(&engine, &store, current.clone(), &progress);
        Round { metric: Some(metric.into()), settings: RoundSettings { judge_min_agreement, ..base.settings.clone() }, ..base }
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

/// Writes the holdout examples as a JSONL file in `dir`, for `loopc learn --holdout`.
fn holdout_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("holdout.jsonl");
    std::fs::write(&path, holdout_examples().iter().map(|e| format!("{}\n", Value::Object(e.fields.clone()))).collect::<String>()).unwrap();
    path
}

/// Runs the `loopc` binary without colour.
fn loopc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_cli_exports_learns_and_shows_history_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { corrected(&Store::open(&url).await.unwrap(), 20, false).await });
    let src = dir.path().join("mood.loop");
    std::fs::write(&src, scripted_program(&scripted_model())).unwrap();
    let holdout = holdout_file(dir.path());

    let rows = dir.path().join("rows.jsonl");
    let o = loopc(&["dataset", "export", "--store", &url, "--program", src.to_str().unwrap(), "-o", rows.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(&rows).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|r| r["kind"] == "gold" && r["provenance"]["feedback_ids"].as_array().unwrap().len() == 1));

    // The flags' defaults are the round's: a fifth of the stored labels is held out too.
    let out = dir.path().join("learned.json");
    let o = loopc(&["learn", src.to_str().unwrap(), "--store", &url, "--holdout", holdout.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let from_store = v["holdout_rows_from_store"].as_u64().unwrap();
    assert!(from_store > 0 && v["holdout_items"] == 8 + from_store, "{v}");
    assert_eq!(v["gold_rows"], 20 - from_store, "{v}");
    assert_eq!((v["promoted"].clone(), v["verdict"].clone(), v["holdout_candidate"].clone()), (json!(true), json!("promoted"), json!(1.0)), "{v}");
    assert!(v["holdout_current"].as_f64().unwrap() < 0.75, "without demos the model says `happy` to every input: {v}");
    assert!(out.exists(), "a promoted candidate is written");
    let o = loopc(&["history", "--store", &url, "--program", "mood", "--json"]);
    let h: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!((h[0]["hash"].clone(), h[0]["decision"].clone()), (v["candidate"].clone(), json!("promoted")));
    // The gate's power on the holdout is kept with the version and shown.
    let power = h[0]["detectable"].as_f64().unwrap();
    assert!(power > 0.0 && v["detectable"].as_f64() == Some(power), "{h}");
    let o = loopc(&["history", "--store", &url, "--program", "mood"]);
    assert!(text(&o.stdout).contains(&format!("power: a true improvement of {power:+.3} is promoted with 80% probability")), "{}", text(&o.stdout));
    let o = loopc(&["why", out.to_str().unwrap(), "--json"]);
    let w: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(w["learned_from"]["gold_rows"], v["gold_rows"]);
    let demos = w["steps"]["s"].as_array().unwrap();
    assert!(!demos.is_empty() && demos.iter().all(|d| d["kind"] == "gold" && d["users"] == 1), "{w}");
    // The written artifact is the recorded version: its hash is the one in the store.
    let written = loopc::runtime::artifact::Artifact::read(&out).unwrap();
    assert_eq!(json!(written.content_hash()), v["candidate"]);
}

#[test]
fn loopc_why_names_a_user_the_holdout_showed_to_be_wrong_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        corrected(&store, 20, false).await;
        // A user who corrects the holdout's own inputs to the other mood, and one input nobody
        // else saw: only the holdout can show they are wrong.
        for (i, e) in holdout_examples().iter().enumerate().map(|(i, e)| (i, e.clone())).chain([(99, holdout_examples()[0].clone())]) {
            let text = if i == 99 { "a day only the liar saw".to_string() } else { e.fields["text"].as_str().unwrap().to_string() };
            let wrong = if e.fields["mood"] == "happy" { "sad" } else { "happy" };
            let mut run = NewRun::new("mood", json!({ "text": text }));
            run.outputs = Some(json!({ "mood": "happy" }));
            run.user_id = Some("liar".into());
            let id = store.record_run(run).await.unwrap().run_id().cloned().unwrap();
            let mut fb = NewFeedback::new(id, "correction", FeedbackPayload::Correction(json!({ "mood": wrong })));
            fb.user_id = Some("liar".into());
            store.add_feedback(fb).await.unwrap();
        }
    });
    let src = dir.path().join("mood.loop");
    std::fs::write(&src, scripted_program(&scripted_model())).unwrap();
    let holdout = holdout_file(dir.path());
    let out = dir.path().join("learned.json");
    let o = loopc(&["learn", src.to_str().unwrap(), "--store", &url, "--holdout", holdout.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let liar = loopc::fs::sha256_hex(b"liar");
    let o = loopc(&["why", out.to_str().unwrap(), "--json"]);
    let w: Value = serde_json::from_slice(&o.stdout).unwrap();
    let left = w["learned_from"]["left_out"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{w}");
    assert_eq!((left[0]["user_sha256"].as_str(), left[0]["feedback"].as_u64()), (Some(liar.as_str()), Some(9)), "{w}");
    assert!(left[0]["trust"].as_f64().unwrap() < 0.5 && left[0]["reason"].as_str().unwrap().contains("agreed with the holdout on 0 of 8"), "{w}");
    let o = loopc(&["why", out.to_str().unwrap()]);
    let shown = text(&o.stdout);
    assert!(shown.contains(&format!("left out 9 piece(s) of feedback by user sha256:{}", &liar[..12])) && shown.contains("the holdout on 0 of 8"), "{shown}");
}

#[test]
fn bench_loop_serves_rounds_through_the_store_and_the_loop_beats_the_static_program() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mood.loop");
    std::fs::write(&src, scripted_program(&scripted_model())).unwrap();
    let rows = |n: usize, tag: &str| -> String {
        (0..n)
            .map(|i| {
                let mood = if i % 3 == 0 { "happy" } else { "sad" };
                format!("{{\"text\": \"{tag} {i} was {mood}\", \"mood\": \"{mood}\"}}\n")
            })
            .collect()
    };
    let (stream, holdout) = (dir.path().join("stream.jsonl"), dir.path().join("holdout.jsonl"));
    std::fs::write(&stream, rows(30, "day")).unwrap();
    std::fs::write(&holdout, rows(9, "held")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["bench", "loop", src.to_str().unwrap(), "--stream", stream.to_str().unwrap(), "--holdout", holdout.to_str().unwrap()])
        .args(["--rounds", "3", "--per-round", "12", "--json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rounds = v["rounds"].as_array().unwrap();
    // 30 stream items at 12 per round: 12, 12, then the last 6.
    assert_eq!(rounds.iter().map(|r| r["n"].as_u64().unwrap()).collect::<Vec<_>>(), [12, 12, 6], "{v}");
    for r in rounds {
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
        // The round's time split by phase: serving, the compile, the gate's holdout scoring.
        let phase = |p: &str| r["phases"][p].as_f64().unwrap_or(-1.0);
        assert!(["serve", "compile", "holdout"].iter().all(|p| phase(p) > 0.0), "every phase took time: {r}");
        let sum = phase("serve") + phase("compile") + phase("holdout");
        assert!((sum - r["seconds"].as_f64().unwrap()).abs() < 1e-6, "the phases add up to the round: {r}");
        // Without demos the program says `happy`, right only on the happy third of the items.
        assert!(r["static"].as_f64().unwrap() < 0.75, "{r}");
    }
    // Round 1 serves the program as written, then learns from the corrections: its candidate
    // is right on the whole holdout and is promoted; from round 2 the loop answers every item.
    assert_eq!(rounds[0]["static"], rounds[0]["loop"], "{v}");
    assert_eq!(
        (rounds[0]["promoted"].clone(), rounds[0]["holdout_current"].clone(), rounds[0]["holdout_candidate"].clone()),
        (json!(true), json!(1.0 / 3.0), json!(1.0)),
        "{v}"
    );
    for r in &rounds[1..] {
        assert_eq!(r["loop"], 1.0, "{v}");
    }
    assert!(v["loop"].as_f64().unwrap() > v["static"].as_f64().unwrap() + 0.4, "{v}");
}

#[test]
fn bench_loop_with_memory_recalls_corrections_within_the_round_and_refuses_a_program_without_memory() {
    let dir = tempfile::tempdir().unwrap();
    let written = scripted_program(&scripted_model());
    let (plain, remembering) = (dir.path().join("mood.loop"), dir.path().join("remembering.loop"));
    std::fs::write(&plain, &written).unwrap();
    std::fs::write(&remembering, written.replace("return {", "memory s { demos: 1 }\nreturn {")).unwrap();
    // Four tweets of each of six places; the first two places are happy ones.
    let places = ["beach", "park", "office", "dentist", "traffic", "airport"];
    let rows: String = (0..24)
        .map(|i| {
            let mood = if i % 6 < 2 { "happy" } else { "sad" };
            format!("{{\"text\": \"day {i} at the {}\", \"mood\": \"{mood}\"}}\n", places[i % 6])
        })
        .collect();
    let (stream, holdout) = (dir.path().join("stream.jsonl"), dir.path().join("holdout.jsonl"));
    std::fs::write(&stream, &rows).unwrap();
    std::fs::write(&holdout, rows.replace("day", "held")).unwrap();
    let bench = |program: &Path, memory: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_loopc"));
        c.args(["bench", "loop", program.to_str().unwrap(), "--stream", stream.to_str().unwrap(), "--holdout", holdout.to_str().unwrap()])
            .args(["--rounds", "1", "--per-round", "24", "--concurrency", "1", "--json"])
            .env("NO_COLOR", "1");
        if memory {
            c.arg("--memory");
        }
        c.output().unwrap()
    };
    let o = bench(&remembering, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["rounds"][0];
    // Items served one at a time: once a place was corrected, the next tweet about it recalls
    // that correction, and the scripted model answers with its label (without demos: `happy`).
    let hits = r["memory_hits"].as_u64().unwrap();
    assert!((18..=23).contains(&hits), "{v}");
    assert!(r["loop"].as_f64().unwrap() >= 0.8 && r["static"].as_f64().unwrap() < 0.4, "{v}");
    // Without --memory the figures are what they were: no recall, the loop is the static program.
    let o = bench(&remembering, false);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["rounds"][0].get("memory_hits").is_none() && v["rounds"][0]["loop"] == v["rounds"][0]["static"], "{v}");
    let o = bench(&plain, true);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("declares none"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bench_loop_with_a_reviewer_separates_poisoning_users_and_grows_the_holdout_from_reviewed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let remembering = dir.path().join("remembering.loop");
    std::fs::write(&remembering, scripted_program(&scripted_model()).replace("return {", "memory s { demos: 1 }\nreturn {")).unwrap();
    let rows: String = (0..40)
        .map(|i| {
            let mood = if i % 3 == 0 { "happy" } else { "sad" };
            format!("{{\"text\": \"day k{i} was {mood}\", \"mood\": \"{mood}\"}}\n")
        })
        .collect();
    let (stream, holdout) = (dir.path().join("stream.jsonl"), dir.path().join("holdout.jsonl"));
    std::fs::write(&stream, &rows).unwrap();
    std::fs::write(&holdout, rows.replace("day", "held")).unwrap();
    let bench = |review: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_loopc"))
            .args(["bench", "loop", remembering.to_str().unwrap(), "--stream", stream.to_str().unwrap(), "--holdout", holdout.to_str().unwrap()])
            .args(["--rounds", "2", "--per-round", "20", "--users", "4", "--poison", "0.5", "--memory", "--review", review, "--json"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    // Nobody reviews: each item has one user's word, so nobody's trust can be told apart.
    let alone = bench("0");
    for r in alone["rounds"].as_array().unwrap() {
        assert_eq!((r["reviewed"].as_u64(), r["low_trust"]["poisoners"].as_u64(), r["holdout_grown"].as_u64()), (Some(0), Some(0), Some(0)), "{alone}");
    }
    // A reviewer on every item: the two poisoning users contradict them and fall below the
    // minimum trust, the honest ones do not, and about half the reviewed runs grow the holdout.
    let reviewed = bench("1");
    let rounds = reviewed["rounds"].as_array().unwrap();
    for r in rounds {
        assert_eq!(r["reviewed"].as_u64(), Some(20), "{reviewed}");
        assert_eq!((r["low_trust"]["poisoners"].as_u64(), r["low_trust"]["others"].as_u64()), (Some(2), Some(0)), "{reviewed}");
    }
    let grown = |r: &Value| r["holdout_grown"].as_u64().unwrap();
    assert!((3..=17).contains(&grown(&rounds[0])) && grown(&rounds[1]) > grown(&rounds[0]), "{reviewed}");
    assert_eq!(rounds[0]["holdout_items"].as_u64().unwrap(), 40 + grown(&rounds[0]), "{reviewed}");
    // The same seed gives the same run, times aside: items are served in waves with memory
    // synced between them, and reviewed inputs (not the store's random run ids) choose the
    // holdout.
    let figures = |mut v: Value| {
        for r in v["rounds"].as_array_mut().unwrap() {
            let r = r.as_object_mut().unwrap();
            r.remove("seconds");
            r.remove("phases");
        }
        v
    };
    assert_eq!(figures(bench("1")), figures(reviewed.clone()), "a second run of the same seed differs");
}
