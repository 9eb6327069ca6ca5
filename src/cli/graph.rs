//! `loopc graph`: the step graph as DOT, Mermaid or JSON.

use loopc::graph::{Dag, Node, StepKind, Target};
use serde::Serialize;

use super::args::{GraphArgs, GraphFormat};
use super::{source, Outcome};

/// Runs `loopc graph`.
pub fn run(args: &GraphArgs, color: bool) -> anyhow::Result<Outcome> {
    let dag = source::load_dag(&args.file, color)?;
    let text = match args.format {
        GraphFormat::Dot => dot(&dag),
        GraphFormat::Mermaid => mermaid(&dag),
        GraphFormat::Json => serde_json::to_string_pretty(&json(&dag))?,
    };
    println!("{text}");
    Ok(Outcome::Success)
}

fn node_id(dag: &Dag, n: Node) -> String {
    match n {
        Node::Input => "input".into(),
        Node::Output => "output".into(),
        Node::Step(s) => format!("step_{}", dag.step(s).name),
    }
}

/// What a step does, e.g. `predict Classify` or `call kb_search`.
fn step_summary(dag: &Dag, s: &loopc::graph::Step) -> String {
    let kind = s.kind.name();
    let target = match s.target {
        Target::Signature(id) => dag.signature(id).name.as_str(),
        Target::Tool(id) => dag.tool(id).name.as_str(),
    };
    format!("{kind} {target}")
}

fn fields(fs: &[loopc::graph::Field]) -> String {
    fs.iter().map(|f| format!("{}: {}", f.name, f.ty)).collect::<Vec<_>>().join("\\n")
}

fn dot(dag: &Dag) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace("\\\\n", "\\n");
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n", esc(dag.name()));
    out.push_str(&format!("  input [shape=box, style=rounded, label=\"input\\n{}\"];\n", esc(&fields(dag.inputs()))));
    out.push_str(&format!("  output [shape=box, style=rounded, label=\"output\\n{}\"];\n", esc(&fields(dag.outputs()))));
    for (i, s) in dag.steps().iter().enumerate() {
        let id = node_id(dag, Node::Step(loopc::graph::StepId(i)));
        out.push_str(&format!("  {id} [shape=box, label=\"{}\\n{}\"];\n", esc(&s.name), esc(&step_summary(dag, s))));
    }
    for (from, to, e) in dag.edges() {
        let label = if e.field == e.slot { e.field.clone() } else { format!("{} → {}", e.field, e.slot) };
        out.push_str(&format!("  {} -> {} [label=\"{}\"];\n", node_id(dag, from), node_id(dag, to), esc(&label)));
    }
    out.push('}');
    out
}

fn mermaid(dag: &Dag) -> String {
    let esc = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("flowchart LR\n");
    out.push_str("  input([\"input\"])\n  output([\"output\"])\n");
    for (i, s) in dag.steps().iter().enumerate() {
        let id = node_id(dag, Node::Step(loopc::graph::StepId(i)));
        out.push_str(&format!("  {id}[\"{}<br/>{}\"]\n", esc(&s.name), esc(&step_summary(dag, s))));
    }
    for (from, to, e) in dag.edges() {
        let label = if e.field == e.slot { e.field.clone() } else { format!("{} → {}", e.field, e.slot) };
        out.push_str(&format!("  {} -->|\"{}\"| {}\n", node_id(dag, from), esc(&label), node_id(dag, to)));
    }
    out
}

#[derive(Serialize)]
struct JsonGraph {
    name: String,
    nodes: Vec<JsonNode>,
    edges: Vec<JsonEdge>,
    schedule: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct JsonNode {
    id: String,
    kind: String,
    model: Option<String>,
    layer: Option<usize>,
}

#[derive(Serialize)]
struct JsonEdge {
    from: String,
    to: String,
    field: String,
    slot: String,
}

fn json(dag: &Dag) -> JsonGraph {
    let schedule = dag.schedule();
    let layer_of = |i: usize| schedule.iter().position(|l| l.iter().any(|s| s.0 == i));
    let mut nodes = vec![JsonNode { id: "input".into(), kind: "input".into(), model: None, layer: None }];
    for (i, s) in dag.steps().iter().enumerate() {
        let model = (s.kind != StepKind::Call).then(|| dag.model(s.model).name.clone());
        nodes.push(JsonNode { id: s.name.clone(), kind: step_summary(dag, s), model, layer: layer_of(i) });
    }
    nodes.push(JsonNode { id: "output".into(), kind: "output".into(), model: None, layer: None });
    let name = |n: Node| match n {
        Node::Input => "input".to_string(),
        Node::Output => "output".to_string(),
        Node::Step(s) => dag.step(s).name.clone(),
    };
    JsonGraph {
        name: dag.name().to_string(),
        nodes,
        edges: dag.edges().map(|(f, t, e)| JsonEdge { from: name(f), to: name(t), field: e.field.clone(), slot: e.slot.clone() }).collect(),
        schedule: schedule.iter().map(|l| l.iter().map(|s| dag.step(*s).name.clone()).collect()).collect(),
    }
}
