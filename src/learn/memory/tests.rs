//! Memory on a real (in-memory SQLite) store: what is recalled, for whom, and what leaves.

use serde_json::{json, Map, Value};

use super::*;
use crate::runtime::adapter::Demo;
use crate::store::{FeedbackPayload, FeedbackSource, NewFeedback, NewRun, RunId};

const SRC: &str = "program mood\ninput text: text\noutput mood: label(happy, sad, calm)\n\
    signature S { in words: text out mood: label(happy, sad, calm) }\nstep s = predict S { words: input.text }\nreturn { mood: s.mood }\n";

fn dag(memory: &str) -> Dag {
    crate::graph::check_text(&format!("{SRC}{memory}\n")).dag.unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn store() -> Store {
    Store::open("sqlite::memory:").await.unwrap()
}

/// Stores a run of `text` by `user` that answered `said`; returns its id.
async fn run(store: &Store, text: &str, said: &str, user: &str) -> RunId {
    let mut r = NewRun::new("mood", json!({ "text": text }));
    r.outputs = Some(json!({ "mood": said }));
    r.user_id = Some(user.into());
    store.record_run(r).await.unwrap().run_id().unwrap().clone()
}

/// `user` (from `source`) corrects `run` to `mood`, `days_ago` days ago.
async fn correct(store: &Store, run: &RunId, mood: &str, user: &str, source: FeedbackSource, days_ago: i64) {
    let mut f = NewFeedback::new(run.clone(), "correction", FeedbackPayload::Correction(json!({ "mood": mood })));
    f.source = source;
    f.user_id = Some(user.into());
    f.created = Some(Timestamp::from_millis(Timestamp::now().millis() - days_ago * 86_400_000));
    store.add_feedback(f).await.unwrap();
}

/// What the memory recalls for `text`: each demo's words and mood, most similar last.
fn recall(m: &Memory, text: &str) -> Vec<(String, String)> {
    let inputs = obj(json!({ "words": text }));
    let tokens = |d: &Demo| d.inputs.values().map(|v| v.to_string().len() / 4 + 1).sum::<usize>();
    m.recall(&Recall { step: "s", inputs: &inputs, tokens: &tokens })
        .into_iter()
        .map(|r| (r.demo.inputs["words"].as_str().unwrap_or_default().to_string(), r.demo.outputs["mood"].as_str().unwrap_or_default().to_string()))
        .collect()
}

#[tokio::test]
async fn a_stored_correction_is_recalled_for_the_next_similar_request_at_once() {
    let store = store().await;
    let m = Memory::new(&dag("memory s { demos: 2 }"), &[]).unwrap();
    let r1 = run(&store, "the rain ruined my picnic", "happy", "u1").await;
    let r2 = run(&store, "a quiet evening by the lake", "happy", "u2").await;
    let r3 = run(&store, "won the lottery today", "happy", "u3").await;
    correct(&store, &r1, "sad", "u1", FeedbackSource::User, 0).await;
    correct(&store, &r2, "calm", "u2", FeedbackSource::User, 0).await;
    assert!(recall(&m, "rain again on my picnic").is_empty(), "nothing is recalled before the memory reads the store");
    let report = m.sync(&store).await.unwrap();
    assert_eq!((report.feedback, report.votes), (2, 2));
    assert_eq!(
        recall(&m, "rain again on my picnic"),
        [("a quiet evening by the lake".to_string(), "calm".to_string()), ("the rain ruined my picnic".to_string(), "sad".to_string())],
        "the most similar comes last, and the rest is filled with the newest"
    );
    // A later correction of the same run changes what is recalled.
    correct(&store, &r3, "happy", "u3", FeedbackSource::User, 0).await;
    correct(&store, &r1, "calm", "u1", FeedbackSource::User, 0).await;
    m.sync(&store).await.unwrap();
    assert_eq!(recall(&m, "rain on my picnic").last().map(|d| d.1.as_str()), Some("calm"), "a user's newest vote counts");
}

#[tokio::test]
async fn users_who_contradict_reviewers_are_left_out_of_memory() {
    let store = store().await;
    let m = Memory::new(&dag("memory s { demos: 1, min_trust: 0.5 }"), &[]).unwrap();
    // A reviewer and two users label the same three runs; `liar` always disagrees.
    for (i, text) in ["storm", "sunrise", "meadow"].iter().enumerate() {
        let r = run(&store, &format!("{text} {i}"), "happy", "someone").await;
        correct(&store, &r, "sad", "ann", FeedbackSource::Annotation, 0).await;
        correct(&store, &r, "sad", "honest", FeedbackSource::User, 0).await;
        correct(&store, &r, "calm", "liar", FeedbackSource::User, 0).await;
    }
    let own = run(&store, "thunder over the hills", "happy", "liar").await;
    correct(&store, &own, "calm", "liar", FeedbackSource::User, 0).await;
    m.sync(&store).await.unwrap();
    let trust = m.trust();
    assert!(trust.trust("liar") < 0.5 && trust.trust("honest") > 0.7, "{trust:?}");
    assert_eq!(trust.get("liar").unwrap().with_reviewers, (0, 3));
    assert!(recall(&m, "thunder over the hills").iter().all(|(w, _)| w != "thunder over the hills"), "the liar's own correction is not recalled");
    assert_eq!(recall(&m, "storm 0"), [("storm 0".to_string(), "sad".to_string())], "shared inputs resolve to the trusted answer");
}

#[tokio::test]
async fn a_forgotten_users_corrections_leave_memory_on_every_replica() {
    let store = store().await;
    let (a, b) = (Memory::new(&dag("memory s"), &[]).unwrap(), Memory::new(&dag("memory s"), &[]).unwrap());
    let r = run(&store, "my cat knocked over the vase", "happy", "u-cat").await;
    correct(&store, &r, "sad", "u-cat", FeedbackSource::User, 0).await;
    let other = run(&store, "my dog ate the cake", "happy", "u-dog").await;
    correct(&store, &other, "sad", "u-cat", FeedbackSource::User, 0).await;
    a.sync(&store).await.unwrap();
    b.sync(&store).await.unwrap();
    assert_eq!(recall(&a, "cat vase").len(), 2);
    crate::learn::forget(&store, "u-cat").await.unwrap();
    let report = a.sync(&store).await.unwrap();
    assert_eq!(report.removed, 2, "their run's correction and their correction of another's run");
    b.sync(&store).await.unwrap();
    assert!(recall(&a, "cat vase").is_empty() && recall(&b, "cat vase").is_empty());
    assert!(a.is_empty() && a.trust().get("u-cat").is_none());
}

#[tokio::test]
async fn old_feedback_approvals_and_expired_runs_follow_the_declaration_and_retention() {
    let store = store().await;
    let recent = Memory::new(&dag("memory s { max_age_days: 7, approved: false }"), &[]).unwrap();
    let all = Memory::new(&dag("memory s"), &[]).unwrap();
    let old = run(&store, "an old grey morning", "happy", "u1").await;
    correct(&store, &old, "sad", "u1", FeedbackSource::User, 30).await;
    let liked = run(&store, "a bright grey afternoon", "calm", "u2").await;
    let mut up = NewFeedback::new(liked.clone(), "thumbs", FeedbackPayload::Score(1.0));
    up.user_id = Some("u2".into());
    store.add_feedback(up).await.unwrap();
    for m in [&recent, &all] {
        m.sync(&store).await.unwrap();
    }
    assert!(recall(&recent, "grey").is_empty(), "a month-old correction and an approval are not this memory's");
    assert_eq!(recall(&all, "grey").len(), 2);
    // Runs made within this millisecond are not older than `now`: expire a second ahead.
    store.expire(Timestamp::now().plus(std::time::Duration::from_secs(1))).await.unwrap();
    all.sync(&store).await.unwrap();
    assert!(recall(&all, "grey").is_empty(), "expired runs leave memory");
}

#[tokio::test]
async fn the_budget_and_keep_bound_what_is_recalled_and_held() {
    let store = store().await;
    let m = Memory::new(&dag("memory s { demos: 4, tokens: 12, keep: 3 }"), &[]).unwrap();
    for i in 0..5 {
        let r = run(&store, &format!("walk number {i} in the park"), "happy", "u").await;
        correct(&store, &r, "calm", "u", FeedbackSource::User, 0).await;
    }
    let report = m.sync(&store).await.unwrap();
    assert_eq!((report.votes, report.evicted, m.len()), (5, 2, 3));
    let got = recall(&m, "walk in the park");
    assert_eq!(got.len(), 1, "each demo costs about 7 tokens here: one fits 12 ({got:?})");
    assert!(!got.iter().any(|(w, _)| w.contains("number 0") || w.contains("number 1")), "the oldest were let go");
}

#[tokio::test]
async fn a_program_without_memory_has_none_and_other_programs_are_not_followed() {
    assert!(Memory::new(&dag(""), &[]).is_none());
    let store = store().await;
    let mut other = NewRun::new("another", json!({ "text": "rain" }));
    other.outputs = Some(json!({ "mood": "sad" }));
    let id = store.record_run(other).await.unwrap().run_id().unwrap().clone();
    correct(&store, &id, "sad", "u", FeedbackSource::User, 0).await;
    let m = Memory::new(&dag("memory s"), &[]).unwrap();
    assert_eq!(m.sync(&store).await.unwrap().feedback, 0);
}

#[tokio::test]
async fn memory_holds_only_what_the_store_holds_redacted_inputs_and_consented_runs() {
    let store = store().await;
    let m = Memory::new(&dag("memory s"), &[]).unwrap();
    let r = run(&store, "mail jane.doe@example.com about the broken heater", "happy", "u1").await;
    correct(&store, &r, "sad", "u1", FeedbackSource::User, 0).await;
    let mut private = NewRun::new("mood", json!({ "text": "a private heater complaint" }));
    private.outputs = Some(json!({ "mood": "happy" }));
    private.consent = crate::store::Consent::Denied;
    assert!(store.record_run(private).await.unwrap().run_id().is_none(), "a run without consent is only counted");
    m.sync(&store).await.unwrap();
    assert_eq!(recall(&m, "heater"), [("mail [email] about the broken heater".to_string(), "sad".to_string())]);
}
