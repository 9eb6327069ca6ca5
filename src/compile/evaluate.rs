//! Evaluation: run a candidate program over examples with bounded concurrency and score each
//! run. Results are kept in example order, so scores do not depend on which run finished first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use rayon::prelude::*;
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
    let dag = program.dag();
    let runs: Vec<Option<(Trace, Option<f64>, u64)>> = stream::iter(examples.iter().map(|ex| {
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
            Ok(Some((trace, judged, calls)))
        }
    }))
    .buffered(concurrency.max(1))
    .collect::<Vec<Result<_, MetricError>>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;
    let cut_short = runs.iter().any(Option::is_none);
    let mut traces = Vec::new();
    let mut judged = Vec::new();
    let mut model_calls = 0;
    for (trace, score, calls) in runs.into_iter().flatten() {
        traces.push(trace);
        judged.push(score);
        model_calls += calls;
    }
    // Scoring is CPU work (token F1, regexes) and independent per example.
    let scores = traces
        .par_iter()
        .zip(examples.par_iter())
        .zip(judged.par_iter())
        .map(|((t, ex), j)| j.map_or_else(|| metric.score(t.outputs.as_ref(), ex), Ok))
        .collect::<Result<Vec<f64>, MetricError>>()?;
    Ok(Evaluation { scores, traces, model_calls, cut_short })
}
