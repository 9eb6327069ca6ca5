//! Executor tests with a scripted backend (a test double of the model, for orchestration
//! logic only; the real model is exercised in `tests/`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::backend::{Backend, BackendError, Call, Choice, Completion, Identity};
use super::executor::{Executor, RunError, RunOptions};

/// Replies with scripted texts in order, after a delay; scores labels when given scores.
struct Scripted {
    replies: Mutex<VecDeque<String>>,
    delay: Duration,
    scores: Option<Vec<f32>>,
    seen: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(replies: &[&str], delay_ms: u64, scores: Option<Vec<f32>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            replies: Mutex::new(replies.iter().map(|s| s.to_string()).collect()),
            delay: Duration::from_millis(delay_ms),
            scores,
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl Backend for Scripted {
    fn identity(&self) -> Identity {
        Identity { provider: "scripted".into(), name: "test".into(), fingerprint: None }
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let mut out = Vec::new();
            for c in calls {
                self.seen.lock().unwrap().push(c.request.user.to_plain());
                let text = self.replies.lock().unwrap().pop_front().unwrap_or_default();
                out.push(Completion {
                    text,
                    prompt_tokens: 10,
                    cached_tokens: 0,
                    completion_tokens: 2,
                    from_cache: false,
                    shape: Default::default(),
                    structure_note: None,
                });
            }
            Ok(out)
        })
    }

    fn supports_choice(&self) -> bool {
        self.scores.is_some()
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        let scores = self.scores.clone().unwrap_or_default();
        Box::pin(async move {
            assert_eq!(scores.len(), labels.len());
            Ok(calls
                .iter()
                .map(|_| Choice {
                    scores: scores.clone(),
                    label_tokens: vec![1; scores.len()],
                    prompt_tokens: 10,
                    cached_tokens: 0,
                    from_cache: false,
                    pruned: Vec::new(),
                })
                .collect())
        })
    }
}

fn executor(src: &str, backend: Arc<Scripted>, options: RunOptions) -> Executor {
    let file = crate::syntax::parse(src).unwrap_or_else(|d| panic!("{d:?}"));
    let lowered = crate::graph::lower(&file);
    let dag = lowered.dag.unwrap_or_else(|| panic!("{:?}", lowered.diagnostics));
    let backends: Vec<Arc<dyn Backend>> = dag.models().iter().map(|_| backend.clone() as Arc<dyn Backend>).collect();
    Executor::new(Arc::new(dag), backends, HashMap::new(), options)
}

fn inputs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

const TWO_BRANCHES: &str = "program p\ninput q: text\noutput a: text\noutput b: text\n\
signature S { in x: text out y: text }\n\
step left = predict S { x: input.q }\nstep right = predict S { x: input.q }\n\
return { a: left.y, b: right.y }\n";

#[tokio::test]
async fn independent_steps_overlap_in_time() {
    let backend = Scripted::new(&["[[ ## y ## ]]\none", "[[ ## y ## ]]\ntwo"], 300, None);
    let ex = executor(TWO_BRANCHES, backend, RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "hi"}))).await;
    let out = res.unwrap();
    assert_eq!(out.len(), 2);
    let (a, b) = (&trace.steps[0], &trace.steps[1]);
    // Each started before the other finished.
    assert!(a.started_ms < b.started_ms + b.latency_ms && b.started_ms < a.started_ms + a.latency_ms, "{trace:?}");
}

#[tokio::test]
async fn a_dependent_step_waits_for_its_input() {
    let src = "program p\ninput q: text\noutput a: text\nsignature S { in x: text out y: text }\n\
step first = predict S { x: input.q }\nstep second = predict S { x: first.y }\nreturn { a: second.y }\n";
    let backend = Scripted::new(&["[[ ## y ## ]]\nmiddle", "[[ ## y ## ]]\nend"], 50, None);
    let ex = executor(src, backend.clone(), RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "start"}))).await;
    assert_eq!(res.unwrap(), inputs(json!({"a": "end"})));
    assert!(trace.steps[1].started_ms >= trace.steps[0].started_ms + trace.steps[0].latency_ms);
    assert!(backend.seen.lock().unwrap()[1].contains("middle"), "the second step saw the first's output");
}

#[tokio::test]
async fn a_malformed_answer_is_retried_once_with_the_error_shown() {
    let src = "program p\ninput q: text\noutput n: int\nsignature S { in x: text out n: int }\nstep s = predict S { x: input.q }\nreturn { n: s.n }\n";
    let backend = Scripted::new(&["[[ ## n ## ]]\nmany", "[[ ## n ## ]]\n7"], 0, None);
    let ex = executor(src, backend.clone(), RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "count"}))).await;
    assert_eq!(res.unwrap(), inputs(json!({"n": 7})));
    assert_eq!(trace.steps[0].raw.len(), 2);
    assert!(backend.seen.lock().unwrap()[1].contains("could not be read: field `n`: `many` is not a whole number"));

    let backend = Scripted::new(&["[[ ## n ## ]]\nmany", "[[ ## n ## ]]\nlots"], 0, None);
    let ex = executor(src, backend, RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "count"}))).await;
    let err = res.unwrap_err();
    assert!(matches!(&err, RunError::Parse { step, field, raw, .. } if step == "s" && field == "n" && raw.contains("lots")), "{err}");
    assert!(trace.error.is_some());
}

#[tokio::test]
async fn a_single_label_output_uses_constrained_choice() {
    let src = "program p\ninput q: text\noutput c: label(red, green, blue)\nsignature S { in x: text out c: label(red, green, blue) }\nstep s = predict S { x: input.q }\nreturn { c: s.c }\n";
    let backend = Scripted::new(&[], 0, Some(vec![-3.0, -0.5, -2.0]));
    let ex = executor(src, backend.clone(), RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "grass"}))).await;
    assert_eq!(res.unwrap(), inputs(json!({"c": "green"})));
    assert_eq!(trace.steps[0].choice_scores.as_ref().unwrap().len(), 3);
    assert!(backend.seen.lock().unwrap().is_empty(), "no free generation was needed");
}

#[tokio::test]
async fn a_single_bool_output_is_chosen_between_true_and_false() {
    let src = "program p\ninput q: text\noutput b: bool\nsignature S { in x: text out b: bool }\nstep s = predict S { x: input.q }\nreturn { b: s.b }\n";
    let backend = Scripted::new(&[], 0, Some(vec![-4.0, -0.1]));
    let (res, _) = executor(src, backend.clone(), RunOptions::default()).run(inputs(json!({"q": "?"}))).await;
    assert_eq!(res.unwrap(), inputs(json!({"b": false})));
    assert!(backend.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_inputs_are_rejected_by_field() {
    let ex = executor(TWO_BRANCHES, Scripted::new(&[], 0, None), RunOptions::default());
    let cases = [
        (json!({}), "input `q`: missing"),
        (json!({"q": 3}), "input `q`: expected text (a JSON string), found a number"),
        (json!({"q": "x", "z": 1}), "input `z`: not an input of the program (its inputs: q)"),
        // A misspelt input is named, not only the one it leaves missing.
        (json!({"z": "x"}), "input `z`: not an input of the program (its inputs: q)"),
    ];
    for (given, want) in cases {
        let (res, _) = ex.run(inputs(given)).await;
        assert_eq!(res.unwrap_err().to_string(), want);
    }
}

#[tokio::test]
async fn slow_steps_time_out_and_runs_have_a_deadline() {
    let slow = RunOptions { step_timeout: Duration::from_millis(100), deadline: Duration::from_secs(10), ..RunOptions::default() };
    let ex = executor(TWO_BRANCHES, Scripted::new(&[], 1000, None), slow);
    let (res, _) = ex.run(inputs(json!({"q": "x"}))).await;
    assert!(matches!(res.unwrap_err(), RunError::StepTimeout { ms: 100, .. }));
    let short = RunOptions { step_timeout: Duration::from_secs(10), deadline: Duration::from_millis(100), ..RunOptions::default() };
    let ex = executor(TWO_BRANCHES, Scripted::new(&[], 1000, None), short);
    let (res, _) = ex.run(inputs(json!({"q": "x"}))).await;
    assert_eq!(res.unwrap_err().to_string(), "the run passed its deadline of 100 ms");
}

#[tokio::test]
async fn tool_steps_feed_model_steps() {
    let src = "program p\ninput q: text\noutput a: text\noutput n: int\n\
tool wc(text: text) -> int = command [\"wc\", \"-w\"] { stdin: \"{text}\" }\n\
signature S { in x: text in n: int out y: text }\n\
step count = call wc { text: input.q }\nstep say = predict S { x: input.q, n: count.result }\n\
return { a: say.y, n: count.result }\n";
    let backend = Scripted::new(&["[[ ## y ## ]]\nthree words"], 0, None);
    let ex = executor(src, backend.clone(), RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "one two three"}))).await;
    assert_eq!(res.unwrap(), inputs(json!({"a": "three words", "n": 3})));
    assert_eq!(trace.steps[0].served_by, "tool wc");
    assert!(backend.seen.lock().unwrap()[0].contains("[[ ## n ## ]]\n3"));
}

#[tokio::test]
async fn a_field_left_out_after_reasoning_is_asked_for_by_its_marker() {
    let src =
        "program p\ninput q: text\noutput a: text\nsignature S { in x: text out a: text }\nstep s = chain_of_thought S { x: input.q }\nreturn { a: s.a }\n";
    let backend = Scripted::new(&["Paris is the capital, so the answer is Paris.\n\n[#]", "Paris"], 0, None);
    let ex = executor(src, backend, RunOptions::default());
    let (res, trace) = ex.run(inputs(json!({"q": "capital of France?"}))).await;
    assert_eq!(res.unwrap(), inputs(json!({"a": "Paris"})));
    assert_eq!(trace.steps[0].raw.len(), 2);
}

#[tokio::test]
async fn the_response_cache_answers_repeated_calls_without_the_model() {
    use super::cache::CachedBackend;
    let dir = tempfile::tempdir().unwrap();
    let src = "program p\ninput q: text\noutput a: text\nsignature S { in x: text out y: text }\nstep s = predict S { x: input.q }\nreturn { a: s.y }\n";
    let scripted = Scripted::new(&["[[ ## y ## ]]\nfirst", "[[ ## y ## ]]\nsecond"], 0, None);
    let store = Arc::new(super::cache::ResponseCache::new(dir.path().to_path_buf(), 1 << 20));
    let cached = Arc::new(CachedBackend::new(scripted.clone(), store.clone()));
    let file = crate::syntax::parse(src).unwrap();
    let dag = crate::graph::lower(&file).dag.unwrap();
    let ex = Executor::new(Arc::new(dag), vec![cached.clone() as Arc<dyn Backend>], HashMap::new(), RunOptions::default());
    let (a, ta) = ex.run(inputs(json!({"q": "x"}))).await;
    let (b, tb) = ex.run(inputs(json!({"q": "x"}))).await;
    assert_eq!(a.unwrap(), b.unwrap(), "the second run got the cached answer, not the script's next one");
    assert!(!ta.steps[0].cache_hit && tb.steps[0].cache_hit);
    assert_eq!((store.stats().hits, store.stats().misses), (1, 1));
    let (c, _) = ex.run(inputs(json!({"q": "y"}))).await;
    assert_eq!(c.unwrap(), inputs(json!({"a": "second"})), "a different request misses");
    assert_eq!(scripted.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn cached_choices_are_flagged_as_hits_and_keep_their_token_counts() {
    use super::cache::CachedBackend;
    let dir = tempfile::tempdir().unwrap();
    let src = "program p\ninput q: text\noutput c: label(red, green)\nsignature S { in x: text out c: label(red, green) }\nstep s = predict S { x: input.q }\nreturn { c: s.c }\n";
    let scripted = Scripted::new(&[], 0, Some(vec![-0.1, -2.0]));
    let store = Arc::new(super::cache::ResponseCache::new(dir.path().to_path_buf(), 1 << 20));
    let cached = Arc::new(CachedBackend::new(scripted, store.clone()));
    let dag = crate::graph::lower(&crate::syntax::parse(src).unwrap()).dag.unwrap();
    let ex = Executor::new(Arc::new(dag), vec![cached.clone() as Arc<dyn Backend>], HashMap::new(), RunOptions::default());
    let (_, cold) = ex.run(inputs(json!({"q": "x"}))).await;
    let (warm_out, warm) = ex.run(inputs(json!({"q": "x"}))).await;
    assert_eq!(warm_out.unwrap(), inputs(json!({"c": "red"})));
    assert!(!cold.steps[0].cache_hit && warm.steps[0].cache_hit);
    assert_eq!((cold.steps[0].prompt_tokens, warm.steps[0].prompt_tokens), (10, 10));
    assert_eq!((store.stats().hits, store.stats().misses), (1, 1));
}
