//! Where demos come from: labelled examples (when they give every input and output a step
//! has) and the traces of teacher runs that passed the metric.

use std::collections::HashMap;

use serde_json::Map;

use crate::compile::dataset::Example;
use crate::graph::{Dag, Source, StepId, StepKind, REASONING};
use crate::runtime::adapter::Demo;
use crate::runtime::trace::Trace;

/// Demo sources for each model step, by step name.
#[derive(Default)]
pub struct Pools {
    /// From passing teacher traces, in training order.
    pub boot: HashMap<String, Vec<Demo>>,
    /// From labelled examples, in shuffled training order.
    pub labeled: HashMap<String, Vec<Demo>>,
}

impl Pools {
    /// Bootstrapped demos first, then labelled ones, up to the limits.
    pub fn bootstrap_set(&self, step: &str, max_demos: usize, max_labeled: usize) -> Vec<Demo> {
        let mut out: Vec<Demo> = self.boot.get(step).map(|d| d.iter().take(max_demos).cloned().collect()).unwrap_or_default();
        if let Some(labeled) = self.labeled.get(step) {
            let room = max_demos.saturating_sub(out.len()).min(max_labeled);
            out.extend(labeled.iter().filter(|d| !out.contains(d)).take(room).cloned().collect::<Vec<_>>());
        }
        out
    }

    /// The first `k` labelled demos.
    pub fn labeled_set(&self, step: &str, k: usize) -> Vec<Demo> {
        self.labeled.get(step).map(|d| d.iter().take(k).cloned().collect()).unwrap_or_default()
    }

    /// Everything a random demo set may draw from: the bootstrapped demos and a bounded
    /// number of labelled ones, without repeats.
    pub fn candidates(&self, step: &str, labeled_limit: usize) -> Vec<Demo> {
        let mut pool: Vec<Demo> = self.boot.get(step).cloned().unwrap_or_default();
        for d in self.labeled.get(step).into_iter().flatten().take(labeled_limit) {
            if !pool.contains(d) {
                pool.push(d.clone());
            }
        }
        pool
    }
}

/// A labelled demo for `step` from `ex`, when the example gives every input and output the
/// step has (a step fed by another step, or a chain of thought, needs bootstrapped demos).
pub fn labeled_demo(dag: &Dag, step: StepId, ex: &Example) -> Option<Demo> {
    let s = dag.step(step);
    if s.kind == StepKind::ChainOfThought {
        return None;
    }
    let mut inputs = Map::new();
    for b in &s.bindings {
        let v = match &b.source {
            Source::Input(n) => ex.fields.get(n)?.clone(),
            Source::Const(v) => v.clone(),
            Source::Step { .. } => return None,
        };
        inputs.insert(b.slot.clone(), v);
    }
    let mut outputs = Map::new();
    for f in s.outputs.iter().filter(|f| f.name != REASONING) {
        outputs.insert(f.name.clone(), ex.fields.get(returned_as(dag, step, &f.name)?)?.clone());
    }
    Some(Demo { inputs, outputs })
}

/// The program output that returns `field` of `step`, if one does (so examples label it).
pub fn returned_as<'d>(dag: &'d Dag, step: StepId, field: &str) -> Option<&'d str> {
    dag.returns().iter().find(|r| matches!(&r.source, Source::Step { step: st, field: f } if *st == step && f == field)).map(|r| r.slot.as_str())
}

/// Per-step demos from a run that passed: what each model step saw and answered.
pub fn trace_demos(dag: &Dag, trace: &Trace) -> HashMap<String, Demo> {
    trace
        .steps
        .iter()
        .filter(|st| dag.step_id(&st.step).is_some_and(|id| dag.step(id).kind != StepKind::Call))
        .filter_map(|st| st.outputs.as_ref().map(|o| (st.step.clone(), Demo { inputs: st.inputs.clone(), outputs: o.clone() })))
        .collect()
}
