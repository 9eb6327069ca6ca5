//! The store's behaviour, written once and run against every backend: `tests/store_sqlite.rs`
//! runs each check as its own test on a fresh SQLite file, `tests/store_postgres.rs` runs them
//! all on fresh databases of a real PostgreSQL server.
//!
//! Each check takes the URL of an empty store and opens it itself (some open it twice).

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::collections::{HashMap, HashSet};

use loopc::store::*;
use serde_json::{json, Value};

/// Calls `$m! { check, check, … }` with the name of every check below.
macro_rules! for_each_check {
    ($m:ident) => {
        $m! {
            a_recorded_run_reads_back_with_everything_it_was_given,
            a_run_with_a_chosen_id_keeps_it_and_a_second_run_with_that_id_is_refused,
            a_run_without_consent_stores_nothing_but_a_count,
            pages_of_runs_come_in_a_stable_order_and_cover_every_run_once,
            runs_are_filtered_by_program_artifact_user_and_time,
            feedback_reads_back_with_its_run_oldest_first,
            feedback_on_an_unknown_run_is_an_unknown_run_error,
            a_repeated_client_id_stores_one_feedback_and_returns_the_first_id,
            concurrent_duplicates_of_a_client_id_store_exactly_one_row,
            implicit_signals_are_stored_with_source_implicit_and_their_name_as_key,
            invalid_feedback_is_refused_before_anything_is_written,
            feedback_is_filtered_by_program_key_source_user_and_time,
            forgetting_a_user_deletes_their_runs_the_feedback_on_them_and_their_feedback_elsewhere,
            expiring_deletes_runs_older_than_the_limit_with_their_feedback,
            artifact_versions_are_recorded_once_and_listed_oldest_first,
            audit_events_keep_kind_subject_and_detail,
            stats_count_runs_feedback_artifacts_and_unconsented_runs,
            email_addresses_are_redacted_from_everything_stored,
            user_ids_that_are_personal_data_are_refused,
            a_write_is_visible_to_another_store_handle_as_soon_as_it_returns,
            reopening_a_store_keeps_its_data,
            stores_opened_concurrently_on_one_database_apply_the_schema_once,
            the_write_benchmark_commits_every_write_it_counts,
            writes_cancelled_mid_flight_leave_the_store_consistent_and_usable,
            feedback_of_every_payload_kind_follows_any_other_on_every_connection,
            a_lease_has_one_holder_until_it_is_released_or_lapses,
            the_review_queue_serves_flagged_then_unsure_then_sampled_runs_each_once,
            the_review_figures_count_feedback_per_day_and_pair_corrections_with_outputs,
        }
    };
}
#[allow(unused_imports)] // Used by `store_sqlite.rs`, not by `store_postgres.rs`.
pub(crate) use for_each_check;

/// A check: an async function of the store URL.
pub type Check = fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

macro_rules! list_checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name.
        pub fn all() -> Vec<(&'static str, Check)> {
            vec![$((stringify!($name), |url| Box::pin($name(url)))),*]
        }
    };
}
for_each_check!(list_checks);

pub async fn open(url: &str) -> Store {
    match Store::open(url).await {
        Ok(s) => s,
        Err(e) => panic!("opening {url}: {e}"),
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

async fn stored(store: &Store, run: NewRun) -> RunId {
    match store.record_run(run).await.expect("record_run") {
        RecordedRun::Stored(id) => id,
        RecordedRun::Counted => panic!("a consented run was only counted"),
    }
}

/// A run of `program` by `user` at `created` ms.
fn run_of(program: &str, user: Option<&str>, created: i64) -> NewRun {
    NewRun { user_id: user.map(str::to_string), created: Some(t(created)), ..NewRun::new(program, json!({"text": format!("{program} at {created}")})) }
}

fn score(run: &RunId, key: &str, s: f64) -> NewFeedback {
    NewFeedback::new(run.clone(), key, FeedbackPayload::Score(s))
}

async fn feedback_ok(store: &Store, f: NewFeedback) -> FeedbackWrite {
    store.add_feedback(f).await.expect("add_feedback")
}

pub async fn a_recorded_run_reads_back_with_everything_it_was_given(url: String) {
    let store = open(&url).await;
    let run = NewRun {
        artifact_hash: Some("a1b2c3".into()),
        user_id: Some("user-7".into()),
        outputs: Some(json!({"category": "billing", "reply": "Sorry about that."})),
        trace: json!({"steps": [{"step": "classify", "prompt": "Classify…", "latency_ms": 12, "tokens": {"prompt": 40, "completion": 2}, "error": null}]}),
        error: Some("step `draft` timed out".into()),
        latency_ms: 42,
        created: Some(t(1_714_564_800_000)),
        ..NewRun::new("triage", json!({"ticket": "I was charged twice", "n": 2, "tags": ["a", "b"]}))
    };
    let id = stored(&store, run.clone()).await;
    let got = store.run(&id).await.unwrap().expect("the run is stored");
    assert_eq!(got.id, id);
    assert_eq!(got.program, "triage");
    assert_eq!(got.artifact_hash.as_deref(), Some("a1b2c3"));
    assert_eq!(got.user_id.as_deref(), Some("user-7"));
    assert_eq!(got.inputs, run.inputs);
    assert_eq!(got.outputs, run.outputs);
    assert_eq!(got.trace, run.trace);
    assert_eq!(got.error, run.error);
    assert_eq!(got.latency_ms, 42);
    assert_eq!(got.created, t(1_714_564_800_000));
    assert!(got.feedback.is_empty());
    // A run with only the required parts reads back with the gaps empty, and the time now-ish.
    let before = Timestamp::now();
    let bare = stored(&store, NewRun::new("triage", json!({}))).await;
    let got = store.run(&bare).await.unwrap().unwrap();
    assert_eq!((got.outputs, got.artifact_hash, got.user_id, got.error, got.trace), (None, None, None, None, Value::Null));
    assert!(got.created >= before.minus(std::time::Duration::from_secs(1)));
    assert!(store.run(&RunId::parse("run_never_stored").unwrap()).await.unwrap().is_none());
}

pub async fn a_run_with_a_chosen_id_keeps_it_and_a_second_run_with_that_id_is_refused(url: String) {
    let store = open(&url).await;
    let id = RunId::parse("req-2024-0001").unwrap();
    let first = NewRun { id: Some(id.clone()), ..NewRun::new("triage", json!({"n": 1})) };
    assert_eq!(store.record_run(first).await.unwrap(), RecordedRun::Stored(id.clone()));
    let second = NewRun { id: Some(id.clone()), ..NewRun::new("triage", json!({"n": 2})) };
    let err = store.record_run(second).await.unwrap_err();
    assert!(matches!(&err, StoreError::RunExists { run_id } if run_id == "req-2024-0001"), "{err}");
    assert_eq!(store.run(&id).await.unwrap().unwrap().inputs, json!({"n": 1}), "the first run is untouched");
}

pub async fn a_run_without_consent_stores_nothing_but_a_count(url: String) {
    let store = open(&url).await;
    for _ in 0..3 {
        let run = NewRun {
            consent: Consent::Denied,
            user_id: Some("user-1".into()),
            outputs: Some(json!({"secret": "nobody@example.com"})),
            ..NewRun::new("triage", json!({"ticket": "private"}))
        };
        assert_eq!(store.record_run(run).await.unwrap(), RecordedRun::Counted);
    }
    let other = NewRun { consent: Consent::Denied, ..NewRun::new("summarize", json!({})) };
    assert_eq!(store.record_run(other).await.unwrap(), RecordedRun::Counted);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.runs, stats.feedback, stats.unconsented_runs), (0, 0, 4));
    let per: HashMap<_, _> = stats.programs.iter().map(|p| (p.program.as_str(), (p.runs, p.unconsented_runs))).collect();
    assert_eq!(per, HashMap::from([("triage", (0, 3)), ("summarize", (0, 1))]));
    assert!(store.runs(&RunFilter::default()).await.unwrap().items.is_empty());
}

pub async fn pages_of_runs_come_in_a_stable_order_and_cover_every_run_once(url: String) {
    let store = open(&url).await;
    // 25 runs on 5 distinct milliseconds: ties on `created` are broken by id.
    let mut all = Vec::new();
    for i in 0..25 {
        let created = 1_000 + (i % 5) * 10;
        all.push((created, stored(&store, run_of("p", None, created)).await));
    }
    let mut newest_first = all.clone();
    newest_first.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    for (order, expected) in [(RunOrder::NewestFirst, newest_first.clone()), (RunOrder::OldestFirst, newest_first.iter().rev().cloned().collect())] {
        let mut seen = Vec::new();
        let mut filter = RunFilter { limit: 7, order, ..RunFilter::default() };
        let mut pages = 0;
        loop {
            let page = store.runs(&filter).await.unwrap();
            pages += 1;
            assert!(page.items.len() <= 7);
            seen.extend(page.items.iter().map(|r| (r.created.millis(), r.id.clone())));
            match page.next {
                // The cursor survives its text form, as it would in a URL.
                Some(next) => filter.after = Some(next.to_string().parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{order:?}");
        assert_eq!(pages, 4, "25 runs in pages of 7");
    }
    // A page of exactly the remaining runs has no next cursor.
    let page = store.runs(&RunFilter { limit: 25, ..RunFilter::default() }).await.unwrap();
    assert_eq!((page.items.len(), page.next), (25, None));
}

pub async fn runs_are_filtered_by_program_artifact_user_and_time(url: String) {
    let store = open(&url).await;
    let a = stored(&store, run_of("triage", Some("u1"), 1_000)).await;
    let b = stored(&store, NewRun { artifact_hash: Some("h2".into()), ..run_of("triage", Some("u2"), 2_000) }).await;
    let c = stored(&store, run_of("summarize", Some("u1"), 3_000)).await;
    let ids = |page: Page<StoredRun>| page.items.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let query = |f: RunFilter| {
        let store = store.clone();
        async move { ids(store.runs(&f).await.unwrap()) }
    };
    assert_eq!(query(RunFilter { program: Some("triage".into()), ..RunFilter::default() }).await, vec![b.clone(), a.clone()]);
    assert_eq!(query(RunFilter { artifact_hash: Some("h2".into()), ..RunFilter::default() }).await, vec![b.clone()]);
    assert_eq!(query(RunFilter { user_id: Some("u1".into()), ..RunFilter::default() }).await, vec![c.clone(), a.clone()]);
    assert_eq!(query(RunFilter { since: Some(t(2_000)), ..RunFilter::default() }).await, vec![c.clone(), b.clone()]);
    assert_eq!(query(RunFilter { until: Some(t(2_000)), ..RunFilter::default() }).await, vec![a.clone()]);
    assert_eq!(query(RunFilter { program: Some("triage".into()), user_id: Some("u1".into()), since: Some(t(500)), ..RunFilter::default() }).await, vec![a]);
    assert!(query(RunFilter { program: Some("nothing".into()), ..RunFilter::default() }).await.is_empty());
}

pub async fn feedback_reads_back_with_its_run_oldest_first(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", Some("u1"), 1_000)).await;
    let rating = NewFeedback {
        comment: Some("quick and right".into()),
        source: FeedbackSource::User,
        user_id: Some("u1".into()),
        created: Some(t(2_000)),
        ..score(&run, "rating", 4.5)
    };
    let label = NewFeedback { created: Some(t(3_000)), ..NewFeedback::new(run.clone(), "tone", FeedbackPayload::Value("too formal".into())) };
    let fix = NewFeedback {
        client_id: Some("c-1".into()),
        source: FeedbackSource::Annotation,
        created: Some(t(4_000)),
        ..NewFeedback::new(run.clone(), "correction", FeedbackPayload::Correction(json!({"category": "bug"})))
    };
    let mut ids = Vec::new();
    for f in [fix.clone(), rating.clone(), label.clone()] {
        let w = feedback_ok(&store, f).await;
        assert!(w.created);
        ids.push(w.id);
    }
    let got = store.run(&run).await.unwrap().unwrap().feedback;
    assert_eq!(got.len(), 3);
    assert_eq!(got.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["rating", "tone", "correction"], "oldest first");
    let r = &got[0];
    assert_eq!((r.id.clone(), r.run_id.clone(), r.payload.clone()), (ids[1].clone(), run.clone(), FeedbackPayload::Score(4.5)));
    assert_eq!(
        (r.comment.as_deref(), r.source, r.user_id.as_deref(), r.created, r.client_id.as_deref()),
        (Some("quick and right"), FeedbackSource::User, Some("u1"), t(2_000), None)
    );
    assert_eq!(got[1].payload, FeedbackPayload::Value("too formal".into()));
    assert_eq!(got[1].source, FeedbackSource::Api);
    assert_eq!(
        (got[2].payload.clone(), got[2].client_id.as_deref(), got[2].source),
        (FeedbackPayload::Correction(json!({"category": "bug"})), Some("c-1"), FeedbackSource::Annotation)
    );
    // The same feedback comes with the run in a page.
    let page = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(page.items[0].feedback, got);
}

pub async fn feedback_on_an_unknown_run_is_an_unknown_run_error(url: String) {
    let store = open(&url).await;
    stored(&store, run_of("triage", None, 1_000)).await;
    let missing = RunId::parse("run_missing").unwrap();
    let err = store.add_feedback(score(&missing, "thumbs", 1.0)).await.unwrap_err();
    assert!(matches!(&err, StoreError::UnknownRun { run_id } if run_id == "run_missing"), "{err}");
    assert!(err.is_caller_error());
    let with_client_id = NewFeedback { client_id: Some("c-9".into()), ..score(&missing, "thumbs", 1.0) };
    assert!(matches!(store.add_feedback(with_client_id).await, Err(StoreError::UnknownRun { .. })));
    assert_eq!(store.stats().await.unwrap().feedback, 0);
}

pub async fn a_repeated_client_id_stores_one_feedback_and_returns_the_first_id(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", None, 1_000)).await;
    let f = NewFeedback { client_id: Some("client-abc".into()), ..score(&run, "thumbs", 1.0) };
    let first = feedback_ok(&store, f.clone()).await;
    assert!(first.created);
    // A retry, even with a different body, stores nothing and answers with the first id.
    let retry = feedback_ok(&store, NewFeedback { payload: FeedbackPayload::Score(0.0), ..f.clone() }).await;
    assert_eq!(retry, FeedbackWrite { id: first.id.clone(), created: false });
    let stored = store.feedback(&FeedbackFilter::default()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload, FeedbackPayload::Score(1.0));
    // The same client id for another run is an error, not a silent no-op.
    let other = stored_run(&store).await;
    let err = store.add_feedback(NewFeedback { run_id: other.clone(), ..f }).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::ClientIdReused { client_id, stored_run, run_id } if client_id == "client-abc" && *stored_run == run.to_string() && *run_id == other.to_string()),
        "{err}"
    );
    // Feedback without a client id is never deduplicated.
    feedback_ok(&store, score(&run, "thumbs", 1.0)).await;
    feedback_ok(&store, score(&run, "thumbs", 1.0)).await;
    assert_eq!(store.stats().await.unwrap().feedback, 3);
}

async fn stored_run(store: &Store) -> RunId {
    stored(store, run_of("triage", None, 5_000)).await
}

pub async fn concurrent_duplicates_of_a_client_id_store_exactly_one_row(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", None, 1_000)).await;
    // 4 client ids, each sent by 12 tasks at once (48 concurrent writes).
    let mut tasks = tokio::task::JoinSet::new();
    for copy in 0..12 {
        for client in 0..4 {
            let (store, run) = (store.clone(), run.clone());
            tasks.spawn(async move {
                let f = NewFeedback { client_id: Some(format!("dup-{client}")), comment: Some(format!("copy {copy}")), ..score(&run, "thumbs", 1.0) };
                (client, store.add_feedback(f).await)
            });
        }
    }
    let mut by_client: HashMap<i32, Vec<FeedbackWrite>> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (client, result) = joined.expect("task");
        by_client.entry(client).or_default().push(result.expect("every duplicate is answered, none fails"));
    }
    for (client, writes) in &by_client {
        assert_eq!(writes.len(), 12);
        assert_eq!(writes.iter().filter(|w| w.created).count(), 1, "client {client}: exactly one write created the row");
        let ids: HashSet<_> = writes.iter().map(|w| w.id.clone()).collect();
        assert_eq!(ids.len(), 1, "client {client}: every duplicate got the same id");
    }
    let rows = store.feedback(&FeedbackFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 4);
    let clients: HashSet<_> = rows.iter().filter_map(|f| f.client_id.clone()).collect();
    assert_eq!(clients, (0..4).map(|c| format!("dup-{c}")).collect());
}

pub async fn implicit_signals_are_stored_with_source_implicit_and_their_name_as_key(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", None, 1_000)).await;
    let signals = [ImplicitSignal::Accepted, ImplicitSignal::Rejected, ImplicitSignal::Edited(json!({"reply": "Edited reply"})), ImplicitSignal::Regenerated];
    for (i, s) in signals.iter().enumerate() {
        feedback_ok(&store, NewFeedback { created: Some(t(2_000 + i as i64)), ..NewFeedback::implicit(run.clone(), s.clone()) }).await;
    }
    let got = store.feedback(&FeedbackFilter { source: Some(FeedbackSource::Implicit), ..FeedbackFilter::default() }).await.unwrap();
    assert_eq!(got.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["accepted", "rejected", "edited", "regenerated"]);
    assert!(got.iter().all(|f| f.source == FeedbackSource::Implicit));
    assert_eq!(got.iter().map(|f| f.implicit_signal().unwrap()).collect::<Vec<_>>(), signals);
    assert_eq!(got[2].payload, FeedbackPayload::Correction(json!({"reply": "Edited reply"})));
}

pub async fn invalid_feedback_is_refused_before_anything_is_written(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", None, 1_000)).await;
    let bad = [
        score(&run, "rating", f64::NAN),
        score(&run, "rating", f64::INFINITY),
        NewFeedback { source: FeedbackSource::Implicit, ..score(&run, "liked", 1.0) },
        NewFeedback { source: FeedbackSource::Implicit, ..score(&run, "edited", 1.0) },
        score(&run, "", 1.0),
        NewFeedback { client_id: Some("has space".into()), ..score(&run, "thumbs", 1.0) },
    ];
    for f in bad {
        let err = store.add_feedback(f.clone()).await.unwrap_err();
        assert!(err.is_caller_error(), "{f:?}: {err}");
    }
    assert_eq!(store.stats().await.unwrap().feedback, 0);
}

pub async fn feedback_is_filtered_by_program_key_source_user_and_time(url: String) {
    let store = open(&url).await;
    let r1 = stored(&store, NewRun { artifact_hash: Some("h1".into()), ..run_of("triage", None, 1_000) }).await;
    let r2 = stored(&store, run_of("summarize", None, 1_000)).await;
    let write =
        |run: &RunId, key: &str, source, user: &str, at: i64| NewFeedback { source, user_id: Some(user.into()), created: Some(t(at)), ..score(run, key, 1.0) };
    let rows = [
        write(&r1, "thumbs", FeedbackSource::User, "u1", 10),
        write(&r1, "rating", FeedbackSource::Api, "u2", 20),
        write(&r2, "thumbs", FeedbackSource::Model, "u1", 30),
        write(&r2, "thumbs", FeedbackSource::User, "u2", 40),
    ];
    for f in rows {
        feedback_ok(&store, f).await;
    }
    let keys_at = |got: Vec<StoredFeedback>| got.iter().map(|f| f.created.millis()).collect::<Vec<_>>();
    let q = |f: FeedbackFilter| {
        let store = store.clone();
        async move { keys_at(store.feedback(&f).await.unwrap()) }
    };
    assert_eq!(q(FeedbackFilter::default()).await, [10, 20, 30, 40]);
    assert_eq!(q(FeedbackFilter { program: Some("triage".into()), ..Default::default() }).await, [10, 20]);
    assert_eq!(q(FeedbackFilter { artifact_hash: Some("h1".into()), ..Default::default() }).await, [10, 20]);
    assert_eq!(q(FeedbackFilter { run_id: Some(r2.clone()), ..Default::default() }).await, [30, 40]);
    assert_eq!(q(FeedbackFilter { key: Some("thumbs".into()), ..Default::default() }).await, [10, 30, 40]);
    assert_eq!(q(FeedbackFilter { source: Some(FeedbackSource::User), ..Default::default() }).await, [10, 40]);
    assert_eq!(q(FeedbackFilter { user_id: Some("u2".into()), ..Default::default() }).await, [20, 40]);
    assert_eq!(q(FeedbackFilter { since: Some(t(20)), until: Some(t(40)), ..Default::default() }).await, [20, 30]);
    assert_eq!(
        q(FeedbackFilter { program: Some("summarize".into()), key: Some("thumbs".into()), source: Some(FeedbackSource::User), ..Default::default() }).await,
        [40]
    );
    assert_eq!(q(FeedbackFilter { limit: Some(2), ..Default::default() }).await, [10, 20]);
}

pub async fn forgetting_a_user_deletes_their_runs_the_feedback_on_them_and_their_feedback_elsewhere(url: String) {
    let store = open(&url).await;
    let alice_run = stored(&store, run_of("triage", Some("alice"), 1_000)).await;
    let bob_run = stored(&store, run_of("triage", Some("bob"), 2_000)).await;
    let by = |run: &RunId, user: &str| NewFeedback { user_id: Some(user.into()), source: FeedbackSource::User, ..score(run, "thumbs", 1.0) };
    feedback_ok(&store, by(&alice_run, "alice")).await;
    feedback_ok(&store, by(&alice_run, "bob")).await;
    feedback_ok(&store, by(&bob_run, "alice")).await;
    let bobs_own = feedback_ok(&store, by(&bob_run, "bob")).await;

    let removed = store.forget_user("alice").await.unwrap();
    assert_eq!(removed, Removed { runs: 1, feedback: 3 });
    assert!(store.run(&alice_run).await.unwrap().is_none());
    let left = store.run(&bob_run).await.unwrap().unwrap();
    assert_eq!(left.feedback.iter().map(|f| f.id.clone()).collect::<Vec<_>>(), vec![bobs_own.id]);
    assert!(store.feedback(&FeedbackFilter { user_id: Some("alice".into()), ..Default::default() }).await.unwrap().is_empty());

    let events = store.audit_events(Some(AuditKind::ForgetUser)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail, json!({"runs": 1, "feedback": 3}));
    assert!(
        events[0].subject.starts_with("user:sha256:") && !events[0].subject.contains("alice"),
        "the audit names the user by hash only: {}",
        events[0].subject
    );
    // Forgetting again finds nothing, and says so.
    assert_eq!(store.forget_user("alice").await.unwrap(), Removed::default());
    assert_eq!(store.audit_events(Some(AuditKind::ForgetUser)).await.unwrap().len(), 2);
}

pub async fn expiring_deletes_runs_older_than_the_limit_with_their_feedback(url: String) {
    let store = open(&url).await;
    let old = stored(&store, run_of("triage", None, 1_000)).await;
    let edge = stored(&store, run_of("triage", None, 5_000)).await;
    let new = stored(&store, run_of("triage", None, 9_000)).await;
    for run in [&old, &old, &edge, &new] {
        feedback_ok(&store, score(run, "thumbs", 1.0)).await;
    }
    let removed = store.expire(t(5_000)).await.unwrap();
    assert_eq!(removed, Removed { runs: 1, feedback: 2 });
    assert!(store.run(&old).await.unwrap().is_none());
    assert!(store.run(&edge).await.unwrap().is_some(), "a run exactly at the limit is kept");
    assert_eq!(store.stats().await.unwrap().feedback, 2);
    let events = store.audit_events(Some(AuditKind::Expire)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail["runs"], 1);
    assert_eq!(events[0].detail["older_than"], 5_000);
}

pub async fn artifact_versions_are_recorded_once_and_listed_oldest_first(url: String) {
    let store = open(&url).await;
    let v1 = ArtifactVersion {
        hash: "aaa111".into(),
        parent: None,
        program: "triage".into(),
        created: t(1_000),
        body: Some(json!({"demos": []})),
        meta: json!({"source": "compile"}),
    };
    let v2 = ArtifactVersion {
        hash: "bbb222".into(),
        parent: Some("aaa111".into()),
        created: t(2_000),
        meta: json!({"holdout": {"current": 0.71, "candidate": 0.78}, "decision": "promote", "feedback_ids": ["fb_1", "fb_2"], "dataset": "sha256:00ff"}),
        ..v1.clone()
    };
    assert!(store.record_artifact(&v2).await.unwrap());
    assert!(store.record_artifact(&v1).await.unwrap());
    assert!(!store.record_artifact(&ArtifactVersion { meta: json!({"changed": true}), ..v1.clone() }).await.unwrap(), "a hash names one content");
    let other = ArtifactVersion { hash: "ccc333".into(), program: "summarize".into(), ..v1.clone() };
    assert!(store.record_artifact(&other).await.unwrap());
    assert_eq!(store.artifacts("triage").await.unwrap(), vec![v1.clone(), v2.clone()]);
    assert_eq!(store.artifact("bbb222").await.unwrap(), Some(v2));
    assert_eq!(store.artifact("zzz").await.unwrap(), None);
    assert_eq!(store.stats().await.unwrap().artifacts, 3);
}

pub async fn audit_events_keep_kind_subject_and_detail(url: String) {
    let store = open(&url).await;
    store.audit(AuditKind::Promote, "bbb222", &json!({"from": "aaa111", "reason": "holdout +0.07 [0.02, 0.12]"})).await.unwrap();
    store.audit(AuditKind::Reject, "ccc333", &json!({"reason": "worse on holdout"})).await.unwrap();
    let all = store.audit_events(None).await.unwrap();
    assert_eq!(all.iter().map(|e| (e.kind, e.subject.as_str())).collect::<Vec<_>>(), [(AuditKind::Promote, "bbb222"), (AuditKind::Reject, "ccc333")]);
    assert_eq!(all[0].detail["from"], "aaa111");
    assert_eq!(store.audit_events(Some(AuditKind::Reject)).await.unwrap().len(), 1);
}

pub async fn stats_count_runs_feedback_artifacts_and_unconsented_runs(url: String) {
    let store = open(&url).await;
    let a = stored(&store, run_of("triage", None, 1_000)).await;
    stored(&store, run_of("triage", None, 2_000)).await;
    let c = stored(&store, run_of("summarize", None, 3_000)).await;
    store.record_run(NewRun { consent: Consent::Denied, ..NewRun::new("triage", json!({})) }).await.unwrap();
    feedback_ok(&store, score(&a, "thumbs", 1.0)).await;
    feedback_ok(&store, score(&a, "rating", 3.0)).await;
    feedback_ok(&store, score(&c, "thumbs", 0.0)).await;
    let s = store.stats().await.unwrap();
    assert_eq!((s.runs, s.feedback, s.artifacts, s.unconsented_runs), (3, 3, 0, 1));
    assert_eq!(
        s.programs,
        vec![
            ProgramStats { program: "summarize".into(), runs: 1, feedback: 1, unconsented_runs: 0 },
            ProgramStats { program: "triage".into(), runs: 2, feedback: 2, unconsented_runs: 1 },
        ]
    );
    assert_eq!(s.feedback_keys, vec![("rating".to_string(), 1), ("thumbs".to_string(), 2)]);
}

/// The text of everything the store gives back, for searching.
async fn everything_readable(store: &Store) -> String {
    let mut out = String::new();
    let page = store.runs(&RunFilter { limit: 1000, ..RunFilter::default() }).await.unwrap();
    out.push_str(&format!("{:?}", page.items));
    out.push_str(&format!("{:?}", store.feedback(&FeedbackFilter::default()).await.unwrap()));
    out.push_str(&format!("{:?}", store.artifacts("triage").await.unwrap()));
    out.push_str(&format!("{:?}", store.audit_events(None).await.unwrap()));
    out
}

pub async fn email_addresses_are_redacted_from_everything_stored(url: String) {
    let store = open(&url).await;
    let mail = "jane.doe@example.com";
    let run = NewRun {
        outputs: Some(json!({"reply": format!("We wrote to {mail}."), "to": [mail]})),
        trace: json!({"steps": [{"prompt": format!("Ticket from {mail}: call +44 20 7946 0958"), "nested": {"deep": [format!("cc {mail}")]}}]}),
        error: Some(format!("tool failed for {mail}")),
        ..NewRun::new("triage", json!({"ticket": format!("Hi, I'm {mail}, card 4111 1111 1111 1111"), mail: "as a key"}))
    };
    let id = stored(&store, run).await;
    let feedback = [
        NewFeedback { comment: Some(format!("reply to {mail}")), ..score(&id, "thumbs", 0.0) },
        NewFeedback::new(id.clone(), "tone", FeedbackPayload::Value(format!("mention {mail}"))),
        NewFeedback::new(id.clone(), "correction", FeedbackPayload::Correction(json!({"reply": format!("Write to {mail}")}))),
        NewFeedback::implicit(id.clone(), ImplicitSignal::Edited(json!({"reply": format!("edited for {mail}")}))),
    ];
    for (i, f) in feedback.into_iter().enumerate() {
        feedback_ok(&store, NewFeedback { created: Some(t(10 + i as i64)), ..f }).await;
    }
    let artifact = ArtifactVersion {
        hash: "aaa111".into(),
        parent: None,
        program: "triage".into(),
        created: t(1),
        body: Some(json!({"demo": mail})),
        meta: json!({"note": mail}),
    };
    store.record_artifact(&artifact).await.unwrap();
    store.audit(AuditKind::Promote, "aaa111", &json!({"by": mail})).await.unwrap();

    let got = store.run(&id).await.unwrap().unwrap();
    assert_eq!(got.inputs["ticket"], "Hi, I'm [email], card [card]");
    assert_eq!(got.inputs["[email]"], "as a key");
    assert_eq!(got.outputs.as_ref().unwrap()["to"][0], "[email]");
    assert_eq!(got.trace["steps"][0]["prompt"], "Ticket from [email]: call [phone]");
    assert_eq!(got.error.as_deref(), Some("tool failed for [email]"));
    assert_eq!(got.feedback[0].comment.as_deref(), Some("reply to [email]"));
    assert_eq!(got.feedback[1].payload, FeedbackPayload::Value("mention [email]".into()));
    assert_eq!(got.feedback[2].payload, FeedbackPayload::Correction(json!({"reply": "Write to [email]"})));
    assert_eq!(got.feedback[3].implicit_signal(), Some(ImplicitSignal::Edited(json!({"reply": "edited for [email]"}))));
    let all = everything_readable(&store).await;
    assert!(!all.contains(mail) && !all.contains("example.com"), "an address was stored: {all}");
}

pub async fn user_ids_that_are_personal_data_are_refused(url: String) {
    let store = open(&url).await;
    for user in ["jane@example.com", "+44 20 7946 0958", "", "two words"] {
        let err = store.record_run(NewRun { user_id: Some(user.into()), ..NewRun::new("triage", json!({})) }).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidUserId { .. }), "{user:?}: {err}");
        assert!(!err.to_string().contains("jane@"), "the error repeats the address: {err}");
    }
    let run = stored(&store, NewRun { user_id: Some("auth0|5f7c8ec7c33c6c004bbafe82".into()), ..NewRun::new("triage", json!({})) }).await;
    let err = store.add_feedback(NewFeedback { user_id: Some("jane@example.com".into()), ..score(&run, "thumbs", 1.0) }).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUserId { .. }), "{err}");
    assert_eq!(store.stats().await.unwrap().runs, 1);
}

pub async fn a_write_is_visible_to_another_store_handle_as_soon_as_it_returns(url: String) {
    // Two handles with their own connections, as two server replicas would have.
    let writer = open(&url).await;
    let reader = open(&url).await;
    for i in 0..20 {
        let run = stored(&writer, run_of("triage", None, i)).await;
        assert!(reader.run(&run).await.unwrap().is_some(), "run {i} was not committed when record_run returned");
        let f = feedback_ok(&writer, score(&run, "thumbs", 1.0)).await;
        let seen = reader.run(&run).await.unwrap().unwrap().feedback;
        assert_eq!(seen.iter().map(|x| x.id.clone()).collect::<Vec<_>>(), vec![f.id], "feedback {i} was not committed when add_feedback returned");
    }
}

pub async fn reopening_a_store_keeps_its_data(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", Some("u1"), 1_000)).await;
    feedback_ok(&store, score(&run, "thumbs", 1.0)).await;
    store.close().await;
    drop(store);
    let again = open(&url).await;
    let got = again.run(&run).await.unwrap().expect("the run survived reopening");
    assert_eq!(got.feedback.len(), 1);
    assert_eq!(schema_version(), 4);
}

pub async fn stores_opened_concurrently_on_one_database_apply_the_schema_once(url: String) {
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.expect("task").expect("every replica opens"));
    }
    let run = stored(&stores[0], run_of("triage", None, 1)).await;
    assert!(stores[3].run(&run).await.unwrap().is_some());
}

pub async fn the_write_benchmark_commits_every_write_it_counts(url: String) {
    let store = open(&url).await;
    let measured = bench_feedback_writes(&store, 1000, 8).await.unwrap();
    assert_eq!(measured.writes, 1000);
    assert_eq!(store.stats().await.unwrap().feedback, 1000);
    // Evidence for reports, not an assertion: the figure depends on the machine.
    eprintln!("{:?} feedback writes: {:.0}/s ({} in {:.3}s)", store.backend(), measured.per_second(), measured.writes, measured.seconds);
}

pub async fn writes_cancelled_mid_flight_leave_the_store_consistent_and_usable(url: String) {
    let store = open(&url).await;
    let run = stored(&store, run_of("triage", None, 1_000)).await;
    // Drop writes at every stage (before BEGIN, during the INSERT, during COMMIT), as a server
    // does when a client disconnects or a timeout fires.
    let mut finished = Vec::new();
    for i in 0..60u64 {
        let f = NewFeedback { client_id: Some(format!("cancel-{i}")), ..score(&run, "thumbs", 1.0) };
        // Poll the write up to `i` times, 10 µs apart (the database works meanwhile), then drop it.
        let mut write = Box::pin(store.add_feedback(f));
        for _ in 0..i {
            if let std::task::Poll::Ready(done) = std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(write.as_mut(), cx))).await {
                done.expect("a write that finished succeeded");
                finished.push(format!("cancel-{i}"));
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(10));
            tokio::task::yield_now().await;
        }
    }
    assert!(finished.len() < 60, "no write was cancelled");
    assert!(!finished.is_empty(), "no write had time to finish");
    // The store still takes writes, and every write that returned is there exactly once.
    let after = feedback_ok(&store, score(&run, "thumbs", 0.0)).await;
    assert!(after.created);
    let rows = store.feedback(&FeedbackFilter::default()).await.unwrap();
    let clients: Vec<_> = rows.iter().filter_map(|f| f.client_id.clone()).collect();
    for c in &finished {
        assert_eq!(clients.iter().filter(|x| *x == c).count(), 1, "{c}");
    }
    // Retrying every cancelled write stores each client id once.
    for i in 0..60u64 {
        feedback_ok(&store, NewFeedback { client_id: Some(format!("cancel-{i}")), ..score(&run, "thumbs", 1.0) }).await;
    }
    assert_eq!(store.stats().await.unwrap().feedback, 61);
}

/// Scores, values and corrections written in every order, many times: whichever kind a pooled
/// connection first prepared its insert with, the others still store (a NULL score once made
/// PostgreSQL refuse every later score on that connection).
pub async fn feedback_of_every_payload_kind_follows_any_other_on_every_connection(url: String) {
    let store = open(&url).await;
    let run = stored(&store, NewRun::new("triage", json!({"t": "x"}))).await;
    let payloads = [FeedbackPayload::Value("too long".into()), FeedbackPayload::Correction(json!({"team": "tech"})), FeedbackPayload::Score(0.25)];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let (store, run, payload) = (store.clone(), run.clone(), payloads[i % 3].clone());
        tasks.spawn(async move { store.add_feedback(NewFeedback::new(run, "k", payload)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("no panic").expect("every payload kind stores");
    }
    let stored = store.run(&run).await.unwrap().unwrap().feedback;
    assert_eq!(stored.len(), 60);
    assert_eq!(stored.iter().filter(|f| f.payload == FeedbackPayload::Score(0.25)).count(), 20);
}

pub async fn a_lease_has_one_holder_until_it_is_released_or_lapses(url: String) {
    let (a, b) = (open(&url).await, open(&url).await);
    let long = std::time::Duration::from_secs(600);
    // Racing handles: exactly one wins.
    let (x, y) = tokio::join!(a.take_lease("learn:triage", "replica-a", long), b.take_lease("learn:triage", "replica-b", long));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x ^ y, "exactly one replica holds the lease: {x} {y}");
    let (winner, loser, w, l) = if x { (&a, &b, "replica-a", "replica-b") } else { (&b, &a, "replica-b", "replica-a") };
    assert!(winner.take_lease("learn:triage", w, long).await.unwrap(), "the holder renews it");
    assert!(!loser.take_lease("learn:triage", l, long).await.unwrap());
    assert!(loser.take_lease("learn:other", l, long).await.unwrap(), "leases are by name");
    winner.release_lease("learn:triage", w).await.unwrap();
    assert!(loser.take_lease("learn:triage", l, std::time::Duration::from_millis(1)).await.unwrap(), "a released lease is free");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(winner.take_lease("learn:triage", w, long).await.unwrap(), "a lapsed lease is free");
}

fn with_margin(created: i64, margin: Option<f64>) -> NewRun {
    NewRun { label_margin: margin, outputs: Some(json!({"team": "billing"})), ..run_of("triage", None, created) }
}

pub async fn the_review_queue_serves_flagged_then_unsure_then_sampled_runs_each_once(url: String) {
    let store = open(&url).await;
    // Ten runs: 0-1 flagged (a thumbs-down, an implicit rejection), 2-4 unsure (margins below
    // 1), 5-9 sure or without a choice; 9 is already reviewed; one run of another program.
    let mut ids = Vec::new();
    for i in 0..10 {
        let margin = match i {
            2 => Some(0.5),
            3 => Some(0.1),
            4 => Some(0.9),
            0 | 5 | 6 => Some(3.0),
            _ => None,
        };
        ids.push(stored(&store, with_margin(1_000 + i, margin)).await);
    }
    stored(&store, run_of("other", None, 5_000)).await;
    feedback_ok(&store, score(&ids[0], "thumbs", 0.0)).await;
    feedback_ok(&store, score(&ids[5], "thumbs", 1.0)).await;
    feedback_ok(&store, NewFeedback::implicit(ids[1].clone(), ImplicitSignal::Rejected)).await;
    let mut reviewed = NewFeedback::new(ids[9].clone(), "correction", FeedbackPayload::Correction(json!({"team": "tech"})));
    reviewed.source = FeedbackSource::Annotation;
    feedback_ok(&store, reviewed).await;

    let filter = ReviewFilter { program: Some("triage".into()), ..ReviewFilter::default() };
    let all = store.review_queue(&filter, None, 100).await.unwrap();
    let order: Vec<(usize, ReviewTier)> = all.iter().map(|i| (ids.iter().position(|id| *id == i.run.id).expect("a triage run"), i.tier)).collect();
    assert_eq!(&order[..5], &[(1, ReviewTier::Flagged), (0, ReviewTier::Flagged), (3, ReviewTier::Unsure), (2, ReviewTier::Unsure), (4, ReviewTier::Unsure)]);
    let mut sampled: Vec<usize> = order[5..]
        .iter()
        .map(|(i, t)| {
            assert_eq!(*t, ReviewTier::Sample);
            *i
        })
        .collect();
    sampled.sort();
    assert_eq!(sampled, [5, 6, 7, 8], "every other unreviewed run, once; the reviewed one left");
    assert_eq!(all[0].run.feedback.len(), 1, "items come with their feedback");
    assert_eq!(all[2].label_margin, Some(0.1));

    // Page by page, two at a time, through the cursors' text form: the same runs in order.
    let mut paged = Vec::new();
    let mut after: Option<ReviewCursor> = None;
    loop {
        let page = store.review_queue(&filter, after.as_ref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.cursor.to_string().parse().unwrap());
        paged.extend(page.iter().map(|i| i.run.id.clone()));
    }
    assert_eq!(paged, all.iter().map(|i| i.run.id.clone()).collect::<Vec<_>>());

    let counts = store.review_counts(&filter).await.unwrap();
    assert_eq!(counts, ReviewCounts { flagged: 2, unsure: 3, sample: 4, reviewed: 1 });
    let item = store.review_item(&filter, &ids[3]).await.unwrap().expect("in the queue");
    assert_eq!((item.tier, item.cursor.run_id()), (ReviewTier::Unsure, ids[3].as_str()));
    assert_eq!(store.review_item(&filter, &ids[9]).await.unwrap(), None, "reviewed");

    // Filters: a feedback key, a time window, another program.
    let keyed = ReviewFilter { key: Some("thumbs".into()), ..filter.clone() };
    let got: Vec<RunId> = store.review_queue(&keyed, None, 100).await.unwrap().into_iter().map(|i| i.run.id).collect();
    assert_eq!(got, [ids[0].clone(), ids[5].clone()]);
    let window = ReviewFilter { since: Some(t(1_002)), until: Some(t(1_004)), ..filter.clone() };
    assert_eq!(store.review_queue(&window, None, 100).await.unwrap().len(), 2);
    let other = ReviewFilter { program: Some("other".into()), ..filter.clone() };
    assert_eq!(store.review_counts(&other).await.unwrap(), ReviewCounts { flagged: 0, unsure: 0, sample: 1, reviewed: 0 });
    let bad = ReviewFilter { key: Some("no spaces".into()), ..filter };
    assert!(store.review_queue(&bad, None, 10).await.is_err());
}

pub async fn the_review_figures_count_feedback_per_day_and_pair_corrections_with_outputs(url: String) {
    let store = open(&url).await;
    let day = 86_400_000;
    let a = stored(&store, with_margin(day, None)).await;
    let b = stored(&store, with_margin(day, None)).await;
    for (run, s, when) in [(&a, 0.0, day + 1), (&b, 1.0, day + 2), (&b, 1.0, 2 * day + 5)] {
        let mut f = score(run, "thumbs", s);
        f.created = Some(t(when));
        feedback_ok(&store, f).await;
    }
    let mut c = NewFeedback::new(a.clone(), "correction", FeedbackPayload::Correction(json!({"team": "tech"})));
    c.source = FeedbackSource::Annotation;
    c.created = Some(t(2 * day + 9));
    feedback_ok(&store, c).await;
    let days = store.feedback_days(Some("triage"), t(0), t(10 * day)).await.unwrap();
    let thumbs: Vec<(i64, Option<f64>, u64)> = days.iter().filter(|d| d.key == "thumbs").map(|d| (d.day, d.score, d.count)).collect();
    assert_eq!(thumbs, [(1, Some(0.0), 1), (1, Some(1.0), 1), (2, Some(1.0), 1)]);
    assert!(days.iter().filter(|d| d.key == "correction").all(|d| d.score.is_none()), "corrections carry no score");
    assert!(days.iter().any(|d| d.key == "correction" && d.source == FeedbackSource::Annotation && d.day == 2));
    assert!(store.feedback_days(Some("other"), t(0), t(10 * day)).await.unwrap().is_empty());
    let corrections = store.corrections(Some("triage"), t(0), t(10 * day), 10).await.unwrap();
    assert_eq!(corrections.len(), 1);
    assert_eq!((corrections[0].correction.clone(), corrections[0].outputs.clone()), (json!({"team": "tech"}), Some(json!({"team": "billing"}))));
}
