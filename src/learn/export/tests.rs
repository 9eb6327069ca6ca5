//! The export on runs built in memory: what becomes gold, what is only accepted, what is a
//! negative, how disagreement resolves, and what may enter the holdout.

use serde_json::json;

use super::*;
use crate::learn::test_runs::{stored_feedback, stored_run};
use crate::store::{FeedbackPayload, StoredFeedback, StoredRun};

const SRC: &str = "program mood\ninput text: text\noutput mood: label(happy, sad)\nmetric m = exact(output.mood, example.mood)\n\
    signature S { in text: text out mood: label(happy, sad) }\nstep s = predict S { text: input.text }\nreturn { mood: s.mood }\n";

fn dag() -> Dag {
    crate::graph::check_text(SRC).dag.unwrap()
}

fn run(id: &str, text: &str, said: &str, feedback: Vec<StoredFeedback>) -> StoredRun {
    stored_run(id, "mood", text, said, feedback)
}

fn fb(id: &str, key: &str, payload: FeedbackPayload, source: FeedbackSource, user: &str, at: i64) -> StoredFeedback {
    stored_feedback(id, key, payload, source, Some(user), at)
}

fn correction(id: &str, mood: &str, source: FeedbackSource, user: &str, at: i64) -> StoredFeedback {
    fb(id, "correction", FeedbackPayload::Correction(json!({ "mood": mood })), source, user, at)
}

fn thumbs(id: &str, up: bool, user: &str) -> StoredFeedback {
    fb(id, "thumbs", FeedbackPayload::Score(f64::from(u8::from(up))), FeedbackSource::User, user, 5)
}

fn labels(rows: &[Row]) -> Vec<(String, String, RowKind)> {
    rows.iter().map(|r| (r.inputs["text"].as_str().unwrap().to_string(), r.outputs["mood"].as_str().unwrap().to_string(), r.kind)).collect()
}

#[test]
fn corrections_are_gold_thumbs_up_are_model_labelled_and_thumbs_down_are_negatives() {
    let runs = vec![
        run("r1", "lost my keys", "happy", vec![correction("f1", "sad", FeedbackSource::User, "u1", 2)]),
        run("r2", "sunny day", "happy", vec![thumbs("f2", true, "u2")]),
        run("r3", "a fine rain", "sad", vec![thumbs("f3", false, "u3")]),
        run("r4", "no feedback", "sad", vec![]),
    ];
    let e = from_runs(&runs, &dag(), &ExportOptions::default());
    let want: Vec<(String, String, RowKind)> =
        vec![("lost my keys".into(), "sad".into(), RowKind::Gold), ("sunny day".into(), "happy".into(), RowKind::ModelLabelled)];
    assert_eq!(labels(&e.train), want);
    assert_eq!(labels(&e.negatives), [("a fine rain".to_string(), "sad".to_string(), RowKind::Negative)]);
    let gold = &e.train[0];
    assert_eq!(
        (gold.provenance.run_ids.clone(), gold.provenance.feedback_ids.clone(), gold.provenance.users.clone()),
        (vec!["r1".to_string()], vec!["f1".to_string()], vec!["u1".to_string()])
    );
    assert_eq!(e.feedback_ids.len(), 3);
    assert_eq!(e.runs_read, 4);
}

#[test]
fn explicit_feedback_beats_implicit_and_the_majority_of_users_decides() {
    let runs = vec![
        // Two users say sad, one says happy, an implicit edit says happy: sad wins.
        run(
            "r1",
            "grey sky",
            "happy",
            vec![
                correction("f1", "sad", FeedbackSource::User, "u1", 2),
                correction("f2", "sad", FeedbackSource::Annotation, "u2", 3),
                correction("f3", "happy", FeedbackSource::User, "u3", 4),
                fb("f4", "edited", FeedbackPayload::Correction(json!({"mood": "happy"})), FeedbackSource::Implicit, "u4", 9),
            ],
        ),
        // A user who changed their mind counts once, with their latest answer.
        run("r2", "cake", "sad", vec![correction("g1", "sad", FeedbackSource::User, "u1", 2), correction("g2", "happy", FeedbackSource::User, "u1", 3)]),
        // A tie is no label.
        run("r3", "meh", "sad", vec![correction("h1", "sad", FeedbackSource::User, "u1", 2), correction("h2", "happy", FeedbackSource::User, "u2", 2)]),
        // Implicit edits alone do label.
        run("r4", "party", "sad", vec![fb("i1", "edited", FeedbackPayload::Correction(json!({"mood": "happy"})), FeedbackSource::Implicit, "u5", 2)]),
        // A model's opinion never labels.
        run("r5", "judge me", "sad", vec![correction("j1", "happy", FeedbackSource::Model, "m", 2)]),
    ];
    let e = from_runs(&runs, &dag(), &ExportOptions::default());
    let mut got = labels(&e.train);
    got.sort();
    assert_eq!(
        got,
        [("cake".into(), "happy".into(), RowKind::Gold), ("grey sky".into(), "sad".into(), RowKind::Gold), ("party".into(), "happy".into(), RowKind::Gold)]
    );
    let grey = e.train.iter().find(|r| r.inputs["text"] == "grey sky").unwrap();
    assert_eq!(grey.provenance.users.len(), 2);
    let strict = from_runs(&runs, &dag(), &ExportOptions { min_agreement: 2, ..ExportOptions::default() });
    assert_eq!(labels(&strict.train), [("grey sky".to_string(), "sad".to_string(), RowKind::Gold)], "only the label two users agree on");
}

#[test]
fn feedback_on_runs_with_the_same_input_adds_up_and_rounds_accumulate() {
    let first = vec![run("r1", "same words", "happy", vec![correction("f1", "sad", FeedbackSource::User, "u1", 2)])];
    let mut later = first.clone();
    later.push(run("r2", "same words", "sad", vec![correction("f2", "sad", FeedbackSource::User, "u2", 3)]));
    later.push(run("r3", "new words", "sad", vec![correction("f3", "happy", FeedbackSource::User, "u3", 3)]));
    let a = from_runs(&first, &dag(), &ExportOptions::default());
    let b = from_runs(&later, &dag(), &ExportOptions::default());
    assert_eq!(a.train.len(), 1);
    assert_eq!(b.train.len(), 2, "the later export keeps the earlier row and adds the new one");
    let same = b.train.iter().find(|r| r.inputs["text"] == "same words").unwrap();
    assert_eq!(same.provenance.run_ids, ["r1", "r2"]);
    assert_eq!(same.provenance.users.len(), 2);
    assert_ne!(a.sha256, b.sha256);
}

#[test]
fn only_explicit_human_labels_enter_the_holdout_and_invalid_corrections_are_skipped() {
    let mut runs = Vec::new();
    for i in 0..200 {
        let text = format!("text {i}");
        let feedback = match i % 3 {
            0 => vec![correction(&format!("c{i}"), "sad", FeedbackSource::User, "u", 2)],
            1 => vec![thumbs(&format!("t{i}"), true, "u")],
            _ => vec![fb(&format!("e{i}"), "edited", FeedbackPayload::Correction(json!({"mood": "happy"})), FeedbackSource::Implicit, "u", 2)],
        };
        runs.push(run(&format!("r{i}"), &text, "happy", feedback));
    }
    runs.push(run("bad", "odd", "happy", vec![correction("x1", "furious", FeedbackSource::User, "u", 2)]));
    let e = from_runs(&runs, &dag(), &ExportOptions { holdout_share: 0.5, ..ExportOptions::default() });
    assert!(!e.holdout.is_empty(), "about half the corrections are held out");
    assert!(e.holdout.iter().all(|r| r.kind == RowKind::Gold && r.provenance.source == "user"), "only explicit human labels");
    assert!(e.train.iter().any(|r| r.kind == RowKind::ModelLabelled) && e.train.iter().any(|r| r.provenance.source == "implicit"));
    assert_eq!(e.invalid_corrections, 1, "a label outside the label set is not data");
    // The same input always falls on the same side.
    let again = from_runs(&runs, &dag(), &ExportOptions { holdout_share: 0.5, ..ExportOptions::default() });
    assert_eq!(labels(&again.holdout), labels(&e.holdout));
}

#[test]
fn ratings_approve_or_reject_on_their_declared_scale_and_a_judges_thumbs_say_nothing() {
    let rated = crate::graph::check_text(&format!("{SRC}feedback stars: int(1..5)\nfeedback thumbs: bool\nfeedback correction\n")).dag.unwrap();
    let stars = |id: &str, n: f64, user: &str| fb(id, "stars", FeedbackPayload::Score(n), FeedbackSource::User, user, 3);
    let runs = vec![
        run("r1", "sunny day", "happy", vec![stars("s1", 5.0, "u1")]),
        run("r2", "lost keys", "happy", vec![stars("s2", 1.0, "u2")]),
        // The middle of the scale says neither.
        run("r3", "so-so", "sad", vec![stars("s3", 3.0, "u3")]),
        run("r4", "judged", "sad", vec![fb("j1", "thumbs", FeedbackPayload::Score(1.0), FeedbackSource::Model, "m", 3)]),
    ];
    let e = from_runs(&runs, &rated, &ExportOptions::default());
    assert_eq!(labels(&e.train), [("sunny day".to_string(), "happy".to_string(), RowKind::ModelLabelled)]);
    assert_eq!(labels(&e.negatives), [("lost keys".to_string(), "happy".to_string(), RowKind::Negative)]);
    assert_eq!(e.feedback_ids.len(), 2, "the middle rating and the judge decided nothing");
}

/// Six inputs a reviewer, an honest user and a contrarian all corrected, and one input only
/// the contrarian corrected.
fn with_a_contrarian() -> Vec<StoredRun> {
    let mut runs: Vec<StoredRun> = (0..6)
        .map(|i| {
            let (right, wrong) = if i % 2 == 0 { ("sad", "happy") } else { ("happy", "sad") };
            run(
                &format!("r{i}"),
                &format!("shared {i}"),
                wrong,
                vec![
                    correction(&format!("a{i}"), right, FeedbackSource::Annotation, "ann", 2),
                    correction(&format!("h{i}"), right, FeedbackSource::User, "honest", 3),
                    correction(&format!("c{i}"), wrong, FeedbackSource::User, "contrarian", 4),
                ],
            )
        })
        .collect();
    runs.push(run("own", "only the contrarian saw this", "sad", vec![correction("c-own", "happy", FeedbackSource::User, "contrarian", 5)]));
    runs
}

#[test]
fn a_user_who_contradicts_reviewers_and_users_is_left_out_and_the_export_says_who_and_why() {
    let e = from_runs(&with_a_contrarian(), &dag(), &ExportOptions::default());
    assert!(!labels(&e.train).iter().any(|(t, _, _)| t == "only the contrarian saw this"), "their own correction is left out");
    assert!(e.train.iter().all(|r| !r.provenance.users.contains(&"contrarian".to_string())));
    assert_eq!(e.left_out.len(), 1, "{:?}", e.left_out);
    let l = &e.left_out[0];
    assert_eq!((l.user_sha256.as_str(), l.feedback), (crate::fs::sha256_hex(b"contrarian").as_str(), 7));
    assert!(l.trust < 0.5 && l.reason.contains("agreed with reviewers on 0 of 6"), "{l:?}");
    // With no minimum trust, everyone counts (their own input becomes a row).
    let all = from_runs(&with_a_contrarian(), &dag(), &ExportOptions { min_trust: 0.0, ..ExportOptions::default() });
    assert!(all.left_out.is_empty() && labels(&all.train).iter().any(|(t, _, _)| t == "only the contrarian saw this"));
}

#[test]
fn the_holdout_judges_trust_in_the_export_and_a_user_who_contradicts_it_is_left_out() {
    // Nobody else answered these inputs: only the holdout's labels can show the user is wrong.
    let runs: Vec<StoredRun> = (0..5)
        .map(|i| run(&format!("r{i}"), &format!("held {i}"), "happy", vec![correction(&format!("f{i}"), "happy", FeedbackSource::User, "liar", 2)]))
        .chain([run("own", "the liar's own input", "sad", vec![correction("f-own", "happy", FeedbackSource::User, "liar", 3)])])
        .collect();
    let reference: Vec<Example> = (0..5)
        .map(|i| Example { origin: format!("holdout:{i}"), fields: json!({ "text": format!("held {i}"), "mood": "sad" }).as_object().cloned().unwrap() })
        .collect();
    let without = from_runs(&runs, &dag(), &ExportOptions::default());
    assert!(without.left_out.is_empty() && without.train.len() == 6, "with nothing to compare, the prior keeps them: {:?}", without.left_out);
    let with = from_runs(&runs, &dag(), &ExportOptions { reference, ..ExportOptions::default() });
    assert!(with.train.is_empty(), "{:?}", labels(&with.train));
    assert_eq!(with.left_out.len(), 1);
    let l = &with.left_out[0];
    assert_eq!((l.user_sha256.as_str(), l.feedback), (crate::fs::sha256_hex(b"liar").as_str(), 6));
    assert!(l.trust < 0.5 && l.reason.contains("the holdout on 0 of 5"), "{l:?}");
}

/// Forty runs, each corrected by a user; every other one also reviewed (a reviewer's correction
/// to `sad`, or a reviewer's thumbs-up of the run's answer); and for each reviewed input a later
/// run on the same input that only a user corrected.
fn reviewed_runs() -> Vec<StoredRun> {
    let mut runs = Vec::new();
    for i in 0..40 {
        let text = format!("text {i}");
        let mut feedback = vec![correction(&format!("u{i}"), "happy", FeedbackSource::User, "u", 2)];
        if i % 2 == 0 {
            feedback.push(match i % 4 {
                0 => correction(&format!("a{i}"), "sad", FeedbackSource::Annotation, "ann", 3),
                _ => fb(&format!("a{i}"), "thumbs", FeedbackPayload::Score(1.0), FeedbackSource::Annotation, "ann", 3),
            });
            runs.push(run(&format!("again{i}"), &text, "happy", vec![correction(&format!("v{i}"), "happy", FeedbackSource::User, "v", 4)]));
        }
        runs.push(run(&format!("r{i}"), &text, "sad", feedback));
    }
    runs
}

#[test]
fn a_grown_holdout_item_is_never_in_the_exported_training_data() {
    let runs = reviewed_runs();
    // Everyone counts here (the users contradict the reviewer on purpose).
    let options = ExportOptions { review_holdout_share: 0.5, min_trust: 0.0, ..ExportOptions::default() };
    let e = from_runs(&runs, &dag(), &options);
    // About half the 20 reviewed inputs are held out (by a hash of the input), the rest stay
    // training data.
    assert!((4..=16).contains(&e.grown.len()), "{}", e.grown.len());
    let grown: Vec<&Value> = e.grown.iter().map(|r| &r.inputs["text"]).collect();
    for row in e.train.iter().chain(&e.negatives) {
        assert!(!grown.contains(&&row.inputs["text"]), "{:?} is held out and exported to learn from", row.inputs);
    }
    // Each grown item carries its reviewer's answer (a correction, or the answer approved) and
    // only the reviewer's feedback; a user's answer on the same input does not count.
    for row in &e.grown {
        let i: usize = row.inputs["text"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(row.outputs["mood"], "sad", "{row:?}");
        assert!(review_held_out(&row.input_key(), 0.5) && row.provenance.run_ids[0] == format!("r{i}"));
        assert_eq!((row.provenance.users.clone(), row.provenance.source.as_str()), (vec!["ann".to_string()], "annotation"));
        assert_eq!(row.provenance.feedback_ids, [format!("a{i}")]);
    }
    // Every reviewed input not held out is still learned from; unreviewed ones are untouched.
    assert_eq!(e.train.len() + e.grown.len(), 40);
    // The assignment is by the input: the same inputs fall the same way in every later export,
    // and whatever ids their runs got (a store gives random ones).
    let mut later = runs.clone();
    later.push(run("new", "text new", "sad", vec![correction("a-new", "happy", FeedbackSource::Annotation, "ann", 9)]));
    let again = from_runs(&later, &dag(), &options);
    let kept: Vec<&Value> = again.grown.iter().map(|r| &r.inputs["text"]).filter(|t| **t != "text new").collect();
    assert_eq!(kept, grown);
    let renamed: Vec<StoredRun> = runs
        .iter()
        .cloned()
        .map(|mut r| {
            r.id = crate::store::RunId::from_stored(format!("other-{}", r.id));
            r
        })
        .collect();
    let by_input: Vec<Value> = from_runs(&renamed, &dag(), &options).grown.iter().map(|r| r.inputs["text"].clone()).collect();
    assert_eq!(by_input.iter().collect::<Vec<_>>(), grown, "run ids do not choose the held-out inputs");
    // Without the share, nothing is held out and every input is learned from.
    let none = from_runs(&runs, &dag(), &ExportOptions { min_trust: 0.0, ..ExportOptions::default() });
    assert!(none.grown.is_empty() && none.train.len() == 40);
}
