//! **Memory:** demos chosen for each request from outside the program, added after a step's
//! compiled demos. The runtime only defines the seam: a [`DemoMemory`] the executor asks, for
//! each model step it runs, for demos near this request's inputs, and the token budget they
//! must fit in. What is remembered, who is trusted and how it stays current is the business of
//! whoever implements it (`learn::memory`, on top of the store); the runtime never sees a store.
//!
//! Recalled demos come last, nearest the question, and are never part of the prompt's shared
//! (cacheable) part: they change per input. A trace shows each recalled demo by its reference
//! and outputs, not its inputs: those are another user's words.

use serde_json::{Map, Value};

use super::adapter::{render_request, Demo, Request, Task, Template};
use super::backend::Backend;

/// What the executor asks a memory for one step of one request.
pub struct Recall<'a> {
    /// The step's name.
    pub step: &'a str,
    /// The values the step's signature inputs get for this request.
    pub inputs: &'a Map<String, Value>,
    /// How many prompt tokens a demo takes in this step's template (its rendered turns, as the
    /// step's model counts them).
    pub tokens: &'a dyn Fn(&Demo) -> usize,
}

/// A demo recalled for a request, with the reference a trace shows instead of its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Recalled {
    /// The demo: inputs as the step's signature names them, the step's outputs.
    pub demo: Demo,
    /// What it came from (e.g. a feedback id), shown in traces.
    pub reference: String,
}

/// Demos for each request beyond a program's compiled ones (online memory).
///
/// The contract: `recall` is called once per model step per request, on the request's task,
/// so it must be cheap (an in-memory look-up, never I/O); it returns at most what fits the
/// budget its owner declared, counted with [`Recall::tokens`], in prompt order (the most
/// useful last); and it returns nothing for a step it keeps no memory for.
pub trait DemoMemory: Send + Sync {
    /// The demos for `ask`, in prompt order.
    fn recall(&self, ask: &Recall<'_>) -> Vec<Recalled>;
}

/// Appends what `memory` recalls for step `step` with `shown` inputs to `request` (rendered
/// in `template` for `task`), counting tokens with `backend`'s tokenizer (a quarter of the
/// characters where it has none).
pub(super) fn extend(
    request: &mut Request,
    memory: &dyn DemoMemory,
    step: &str,
    (template, task): (Template, &Task<'_>),
    shown: &Map<String, Value>,
    backend: &dyn Backend,
) {
    let tokens = |d: &Demo| {
        let one = render_request(template, task, std::slice::from_ref(d), &Map::new());
        let text: String = one.demos.iter().map(|(u, a)| format!("{}{}", u.to_plain(), a.to_plain())).collect();
        backend.count_tokens(&text).map_or(text.chars().count() / 4 + 1, |n| n.value())
    };
    let recalled = memory.recall(&Recall { step, inputs: shown, tokens: &tokens });
    if recalled.is_empty() {
        return;
    }
    let demos: Vec<Demo> = recalled.iter().map(|r| r.demo.clone()).collect();
    let rendered = render_request(template, task, &demos, &Map::new());
    request.demos.extend(rendered.demos);
    request.recalled = recalled.iter().map(|r| (r.reference.clone(), r.demo.outputs.clone())).collect();
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::runtime::backend::{BackendError, Call, Choice, Completion, Identity};
    use crate::runtime::executor::{Executor, RunOptions, StepParams};

    /// A backend that answers the label the newest demo shows, and keeps the prompts it saw.
    struct Echo(std::sync::Mutex<Vec<Request>>);

    impl Backend for Echo {
        fn identity(&self) -> Identity {
            Identity { provider: "test".into(), name: "echo".into(), fingerprint: None }
        }
        fn generate(&self, _calls: Vec<Call>) -> futures_util::future::BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
            Box::pin(async { Err(BackendError::Unsupported("only choice".into())) })
        }
        fn supports_choice(&self) -> bool {
            true
        }
        fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> futures_util::future::BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
            Box::pin(async move {
                let mut out = Vec::new();
                for c in calls {
                    let last = c.request.demos.last().map(|(_, a)| a.to_plain()).unwrap_or_default();
                    let scores = labels.iter().map(|l| if last.contains(l.as_str()) { 0.0 } else { -5.0 }).collect();
                    out.push(Choice { scores, label_tokens: vec![1; labels.len()], prompt_tokens: 1, cached_tokens: 0, from_cache: false, pruned: Vec::new() });
                    self.0.lock().unwrap().push(c.request);
                }
                Ok(out)
            })
        }
    }

    /// A memory that recalls, for step `s`, every demo it holds that fits the budget.
    struct Fixed(Vec<Recalled>, usize);

    impl DemoMemory for Fixed {
        fn recall(&self, ask: &Recall<'_>) -> Vec<Recalled> {
            if ask.step != "s" {
                return Vec::new();
            }
            let mut used = 0;
            self.0
                .iter()
                .filter(|r| {
                    used += (ask.tokens)(&r.demo);
                    used <= self.1
                })
                .cloned()
                .collect()
        }
    }

    fn obj(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn recalled(text: &str, mood: &str, reference: &str) -> Recalled {
        Recalled { demo: Demo { inputs: obj(json!({"t": text})), outputs: obj(json!({"mood": mood})) }, reference: reference.into() }
    }

    fn executor(memory: Option<Arc<dyn DemoMemory>>, backend: Arc<Echo>) -> Executor {
        let src = "program p\ninput text: text\noutput mood: label(happy, sad)\nsignature S { in t: text out mood: label(happy, sad) }\n\
                   step s = predict S { t: input.text }\nreturn { mood: s.mood }\n";
        let dag = crate::graph::check_text(src).dag.unwrap();
        let compiled =
            StepParams { demos: vec![Demo { inputs: obj(json!({"t": "compiled"})), outputs: obj(json!({"mood": "happy"})) }], ..StepParams::default() };
        let params = HashMap::from([(crate::graph::StepId(0), compiled)]);
        let e = Executor::new(Arc::new(dag), vec![backend], params, RunOptions::default());
        match memory {
            Some(m) => e.with_memory(m),
            None => e,
        }
    }

    #[tokio::test]
    async fn recalled_demos_follow_the_compiled_ones_and_traces_show_only_their_reference() {
        let backend = Arc::new(Echo(Default::default()));
        let memory: Arc<dyn DemoMemory> = Arc::new(Fixed(vec![recalled("my secret words", "sad", "fb_1")], 10_000));
        let (out, trace) = executor(Some(memory), backend.clone()).run(obj(json!({"text": "hello"}))).await;
        assert_eq!(out.unwrap()["mood"], "sad", "the recalled demo came last, nearest the question");
        let seen = backend.0.lock().unwrap()[0].clone();
        assert_eq!(seen.demos.len(), 2);
        assert!(seen.demos[0].0.to_plain().contains("compiled"));
        assert!(seen.demos[1].0.to_plain().contains("my secret words"));
        let prompt = &trace.steps[0].prompt;
        assert!(!prompt.contains("my secret words") && prompt.contains("fb_1") && prompt.contains("compiled"), "{prompt}");
    }

    #[tokio::test]
    async fn without_a_memory_the_request_is_the_compiled_one() {
        let backend = Arc::new(Echo(Default::default()));
        let (out, _) = executor(None, backend.clone()).run(obj(json!({"text": "hello"}))).await;
        assert_eq!(out.unwrap()["mood"], "happy");
        assert_eq!(backend.0.lock().unwrap()[0].demos.len(), 1);
    }

    #[tokio::test]
    async fn the_budget_is_counted_in_rendered_tokens() {
        let backend = Arc::new(Echo(Default::default()));
        let long = "word ".repeat(200);
        let memory: Arc<dyn DemoMemory> = Arc::new(Fixed(vec![recalled("short one", "sad", "fb_1"), recalled(&long, "happy", "fb_2")], 100));
        let _ = executor(Some(memory), backend.clone()).run(obj(json!({"text": "hello"}))).await;
        let seen = backend.0.lock().unwrap()[0].clone();
        assert_eq!(seen.demos.len(), 2, "the compiled demo and the short recalled one; the long one is over budget");
        assert_eq!(seen.recalled.len(), 1);
    }
}
