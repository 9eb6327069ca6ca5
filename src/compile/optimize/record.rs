//! The artifact's records of the program: its step graph and its models as compiled against.

use serde_json::{json, Value};

use crate::graph::{Dag, StepId, StepKind};
use crate::runtime::artifact::ModelRecord;
use crate::Program;

/// Each declared model: its name, identity, weights hash and decoding parameters.
pub fn models(program: &Program) -> Vec<ModelRecord> {
    let dag = program.dag();
    dag.models()
        .iter()
        .zip(program.executor().backends())
        .map(|(m, b)| {
            let id = b.identity();
            ModelRecord {
                name: m.name.clone(),
                provider: id.provider,
                model: id.name,
                weights_sha256: b.weights_sha256(),
                decoding: json!({
                    "temperature": m.params.temperature, "top_p": m.params.top_p, "top_k": m.params.top_k,
                    "max_tokens": m.params.max_tokens, "seed": m.params.seed, "stop": m.params.stop,
                }),
            }
        })
        .collect()
}

/// The step graph: each step with its kind, target, model and the steps it reads.
pub fn graph_json(dag: &Dag) -> Value {
    let steps: Vec<Value> = dag
        .steps()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let target = dag.step_signature(StepId(i)).map(|sig| sig.name.clone());
            let deps: Vec<String> = dag.dependencies(StepId(i)).iter().map(|d| dag.step(*d).name.clone()).collect();
            json!({
                "name": s.name,
                "kind": match s.kind { StepKind::Predict => "predict", StepKind::ChainOfThought => "chain_of_thought", StepKind::Call => "call" },
                "signature": target,
                "model": (s.kind != StepKind::Call).then(|| dag.model(s.model).name.clone()),
                "after": deps,
            })
        })
        .collect();
    let schedule: Vec<Vec<String>> = dag.schedule().iter().map(|l| l.iter().map(|s| dag.step(*s).name.clone()).collect()).collect();
    json!({ "steps": steps, "schedule": schedule })
}
