//! What one stored piece of feedback puts in memory: a vote for the outputs of its run's input
//! (a correction, or an answer people approved), by whom, with the demo it makes for each
//! remembering step. What the feedback says is read by the one rule of `opinion`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::export::outputs_of;
use super::super::opinion::{of_feedback, Said};
use super::super::trust::Rater;
use crate::graph::{Dag, MemorySpec, Source};
use crate::runtime::adapter::Demo;
use crate::store::{FeedbackSource, StoredFeedback, StoredRun};

/// A canonical text of a JSON object (keys sorted), for telling equal inputs and answers.
pub(super) fn key_of(values: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = values.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

/// How a remembering step's demos are made from a run.
#[derive(Clone, Debug)]
pub(super) struct StepMemory {
    /// The declaration.
    pub spec: MemorySpec,
    /// The step's name.
    pub name: String,
    /// Each signature input and where its value comes from, when every one comes from the
    /// program's inputs or a constant (`None`: read the step's inputs from the run's trace).
    inputs: Option<Vec<(String, Source)>>,
    /// Each output of the step and the program output that returns it, when every one is
    /// returned (`None`: only approved runs make demos, from the trace).
    outputs: Option<Vec<(String, String)>>,
}

impl StepMemory {
    /// The remembering steps `dag` declares.
    pub(super) fn of(dag: &Dag) -> Vec<StepMemory> {
        dag.memory()
            .iter()
            .map(|spec| {
                let step = dag.step(spec.step);
                let slots: Vec<String> = dag.step_signature(spec.step).map(|s| s.inputs.iter().map(|f| f.name.clone()).collect()).unwrap_or_default();
                let inputs = slots
                    .iter()
                    .map(|slot| {
                        let b = step.bindings.iter().find(|b| &b.slot == slot)?;
                        matches!(b.source, Source::Input(_) | Source::Const(_)).then(|| (slot.clone(), b.source.clone()))
                    })
                    .collect();
                let outputs = step
                    .outputs
                    .iter()
                    .map(|f| {
                        let returned =
                            dag.returns().iter().find(|b| matches!(&b.source, Source::Step { step: s, field } if *s == spec.step && *field == f.name))?;
                        Some((f.name.clone(), returned.slot.clone()))
                    })
                    .collect();
                StepMemory { spec: spec.clone(), name: step.name.clone(), inputs, outputs }
            })
            .collect()
    }

    /// Whether demos of this step need the run's trace.
    pub(super) fn needs_trace(&self) -> bool {
        self.inputs.is_none() || self.outputs.is_none()
    }

    /// The step's entry in a stored trace, if any.
    fn traced<'a>(&self, run: &'a StoredRun) -> Option<&'a Map<String, Value>> {
        run.trace.get("steps")?.as_array()?.iter().filter_map(Value::as_object).find(|s| s.get("name").and_then(Value::as_str) == Some(self.name.as_str()))
    }

    /// The values the step's signature inputs got on `run`.
    pub(super) fn inputs(&self, run: &StoredRun) -> Option<Map<String, Value>> {
        match &self.inputs {
            Some(sources) => sources
                .iter()
                .map(|(slot, source)| {
                    let v = match source {
                        Source::Input(n) => run.inputs.get(n)?.clone(),
                        Source::Const(v) => v.clone(),
                        Source::Step { .. } => return None,
                    };
                    Some((slot.clone(), v))
                })
                .collect(),
            None => self.traced(run)?.get("inputs")?.as_object().cloned(),
        }
    }

    /// The step's outputs for a run whose program outputs should be `answer`; `approved` when
    /// they are the run's own (the trace then stands for what it does not return).
    fn outputs(&self, run: &StoredRun, answer: &Map<String, Value>, approved: bool) -> Option<Map<String, Value>> {
        match &self.outputs {
            Some(fields) => fields.iter().map(|(field, output)| Some((field.clone(), answer.get(output)?.clone()))).collect(),
            None if approved => self.traced(run)?.get("outputs")?.as_object().cloned(),
            None => None,
        }
    }
}

/// One vote for the outputs of an input.
#[derive(Clone, Debug)]
pub(super) struct Vote {
    /// The feedback it came from.
    pub feedback: String,
    /// Who gave it.
    pub rater: String,
    /// What kind of rater.
    pub kind: Rater,
    /// SHA-256 of the rater's id and of the run's user (what a forget names).
    pub rater_sha256: String,
    pub run_user_sha256: Option<String>,
    /// The program outputs voted for, canonical.
    pub answer: String,
    /// Whether it only approves the run's own answer (not a correction).
    pub approval: bool,
    /// The demo it makes for each remembering step (in `StepMemory` order).
    pub demos: Vec<Option<Demo>>,
    /// When the feedback was given, and when its run ran (milliseconds).
    pub created: i64,
    pub run_created: i64,
}

/// The vote `f` on `run` casts, if it says which outputs are right: a correction (or edit), or
/// an approval of the run's answer.
pub(super) fn vote(f: &StoredFeedback, run: &StoredRun, dag: &Dag, steps: &[StepMemory]) -> Option<Vote> {
    let opinion = of_feedback(f, run, dag)?;
    let approves = opinion.approves() == Some(true);
    // `own`: the voted outputs are the run's own answer, so its trace shows the step's part.
    let (answer, own, correction) = match opinion.said {
        Said::Labelled { outputs, kept } => (outputs_of(dag, &Value::Object(outputs))?, kept, true),
        _ if approves => (outputs_of(dag, run.outputs.as_ref()?)?, true, false),
        _ => return None,
    };
    let rater = super::super::trust::rater_of(f, run);
    let demos = steps
        .iter()
        .map(|s| {
            let inputs = s.inputs(run)?;
            let outputs = s.outputs(run, &answer, own)?;
            Some(Demo { inputs, outputs })
        })
        .collect();
    Some(Vote {
        feedback: f.id.to_string(),
        rater_sha256: crate::fs::sha256_hex(rater.as_bytes()),
        run_user_sha256: run.user_id.as_ref().map(|u| crate::fs::sha256_hex(u.as_bytes())),
        kind: if f.source == FeedbackSource::Annotation { Rater::Reviewer } else { Rater::User },
        rater,
        answer: key_of(&answer),
        approval: !correction,
        demos,
        created: f.created.millis(),
        run_created: run.created.millis(),
    })
}
