//! Evaluation: run a candidate program over examples with bounded concurrency and score each
//! run. Results are kept in example order, so scores do not depend on which run finished first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value};

use super::dataset::Example;
use super::metric::{Metric, MetricError};
use crate::runtime::trace::Trace;
use crate::Program;

/// Limits on a compile. `None` is unlimited.
#[derive(Debug, Default)]
pub struct Budget {
    /// The most model calls.
    pub max_calls: Option<u64>,
    /// The most tokens (prompt plus completion) reported by the model steps.
    pub max_tokens: Option<u64>,
    /// The longest wall time.
    pub max_time: Option<Duration>,
    started: Option<Instant>,
    calls: AtomicU64,
    cache_hits: AtomicU64,
    tokens: AtomicU64,
    prefilled: AtomicU64,
    generated: AtomicU64,
}

impl Budget {
    /// A budget with these limits, starting now.
    pub fn new(max_calls: Option<u64>, max_tokens: Option<u64>, max_time: Option<Duration>) -> Budget {
        Budget { max_calls, max_tokens, max_time, started: Some(Instant::now()), ..Budget::default() }
    }

    /// Why the budget is spent, if it is.
    pub fn exhausted(&self) -> Option<String> {
        let calls = self.calls();
        if let Some(m) = self.max_calls.filter(|m| calls >= *m) {
            return Some(format!("the budget of {m} model calls is spent"));
        }
        if let Some(m) = self.max_tokens.filter(|m| self.tokens.load(Ordering::Relaxed) >= *m) {
            return Some(format!("the budget of {m} tokens is spent"));
        }
        match (self.max_time, self.started) {
            (Some(t), Some(s)) if s.elapsed() >= t => Some(format!("the time budget of {} s is spent", t.as_secs())),
            _ => None,
        }
    }

    /// Model calls so far (cache hits included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls answered by the response cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Wall time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Prompt tokens the model computed for this compile: not from its prefix cache, not
    /// answered by the response cache. Counted from the compile's own calls, so other work on
    /// the same engine (a server's requests during a learning round) is not in it.
    pub fn tokens_prefilled(&self) -> u64 {
        self.prefilled.load(Ordering::Relaxed)
    }

    /// Tokens the model generated for this compile (not answered by the response cache).
    pub fn tokens_generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    /// Counts the tokens of one call: all toward the token budget, the ones the model computed
    /// toward [`Budget::tokens_prefilled`] and [`Budget::tokens_generated`].
    fn count_tokens(&self, prompt: u64, cached: u64, completion: u64, from_cache: bool) {
        self.tokens.fetch_add(prompt + completion, Ordering::Relaxed);
        if !from_cache {
            self.prefilled.fetch_add(prompt.saturating_sub(cached), Ordering::Relaxed);
            self.generated.fetch_add(completion, Ordering::Relaxed);
        }
    }

    /// Counts one model call made outside a program run (e.g. an instruction proposal).
    pub fn record_call(&self, completion: &crate::runtime::backend::Completion) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.count_tokens(completion.prompt_tokens, completion.cached_tokens, completion.completion_tokens, completion.from_cache);
        if completion.from_cache {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the model calls of a run (every attempt of every model step) and returns them.
    pub(crate) fn record(&self, trace: &Trace) -> u64 {
        let mut calls = 0;
        for st in trace.steps.iter().filter(|s| s.kind != crate::graph::StepKind::Call) {
            let n = st.raw.len().max(1) as u64;
            calls += n;
            if st.cache_hit {
                self.cache_hits.fetch_add(n, Ordering::Relaxed);
            }
            self.count_tokens(st.prompt_tokens, st.cached_tokens, st.completion_tokens, st.cache_hit);
        }
        self.calls.fetch_add(calls, Ordering::Relaxed);
        calls
    }
}

/// What an evaluation found.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    /// Each example's score, in example order.
    pub scores: Vec<f64>,
    /// Each run's trace, in example order.
    pub traces: Vec<Trace>,
    /// Model calls spent.
    pub model_calls: u64,
    /// Whether the budget ran out before every example ran (the scores are then partial).
    pub cut_short: bool,
    /// Whether the caller's stop rule ended it early ([`evaluate_until`]; the scores are then
    /// the first examples').
    pub stopped: bool,
}

impl Evaluation {
    /// The mean score (0 for no examples).
    pub fn mean(&self) -> f64 {
        if self.scores.is_empty() {
            0.0
        } else {
            self.scores.iter().sum::<f64>() / self.scores.len() as f64
        }
    }

    /// The outputs of run `i`, if it succeeded.
    pub fn outputs(&self, i: usize) -> Option<&Map<String, Value>> {
        self.traces.get(i).and_then(|t| t.outputs.as_ref())
    }
}

/// Runs `program` on `examples` (at most `concurrency` at once) and scores each run with
/// `metric`. Stops starting runs once `budget` is spent. `on_done` is called after each run.
pub async fn evaluate(
    program: &Program,
    examples: &[Example],
    metric: &Metric,
    concurrency: usize,
    budget: &Budget,
    on_done: &(dyn Fn() + Sync),
) -> Result<Evaluation, MetricError> {
    evaluate_until(program, examples, metric, concurrency, budget, on_done, &|_| false).await
}

/// [`evaluate`], ending early once `stop` holds for the scores so far (the first examples',
/// in example order): runs still going are dropped and no more start, and the evaluation says
/// it `stopped`. Which runs had finished when it stopped does not change what it returns: the
/// scores are those of the shortest run of examples for which `stop` held.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate_until(
    program: &Program,
    examples: &[Example],
    metric: &Metric,
    concurrency: usize,
    budget: &Budget,
    on_done: &(dyn Fn() + Sync),
    stop: &(dyn Fn(&[f64]) -> bool + Sync),
) -> Result<Evaluation, MetricError> {
    let dag = program.dag();
    let mut runs = stream::iter(examples.iter().enumerate().map(|(i, ex)| {
        let inputs = ex.inputs(dag);
        async move {
            if budget.exhausted().is_some() {
                return Ok(None);
            }
            let (_, mut trace) = program.run_traced(inputs).await;
            // An LM judge calls the model, so it scores here; its call is part of the trace.
            let judged = if metric.needs_model() {
                let (score, judge_trace) = metric.judge(trace.outputs.as_ref(), ex).await?;
                trace.steps.extend(judge_trace);
                Some(score)
            } else {
                None
            };
            let calls = budget.record(&trace);
            on_done();
            Ok::<_, MetricError>(Some((i, trace, judged, calls)))
        }
    }))
    .buffered(concurrency.max(1));
    let mut out = Evaluation::default();
    // `buffered` yields in example order, so the scores so far are always a prefix.
    while let Some(run) = runs.next().await {
        let Some((i, trace, judged, calls)) = run? else {
            out.cut_short = true;
            continue;
        };
        let score = match judged {
            Some(score) => score,
            None => metric.score(trace.outputs.as_ref(), &examples[i])?,
        };
        out.traces.push(trace);
        out.scores.push(score);
        out.model_calls += calls;
        if stop(&out.scores) {
            out.stopped = true;
            break;
        }
    }
    Ok(out)
}
