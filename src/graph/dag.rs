//! The checked program: every declaration resolved, the steps wired into a petgraph DAG, and
//! a schedule of layers whose steps may run at the same time.

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::decl::*;
use super::example_spec::ExampleSpec;
use super::feedback_spec::FeedbackSpec;
use super::metric_spec::MetricSpec;
use super::model_spec::ModelSpec;
use super::optimizer_spec::OptimizerSpec;
use super::tool_spec::ToolSpec;

/// A validated program. Only [`lower`](super::lower) makes one, so a `Dag` in hand is acyclic,
/// every name in it resolves, and every slot is filled by a value of a fitting type.
#[derive(Clone, Debug)]
pub struct Dag {
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) inputs: Vec<Field>,
    pub(super) outputs: Vec<Field>,
    pub(super) models: Vec<ModelSpec>,
    pub(super) default_model: ModelId,
    pub(super) tools: Vec<ToolSpec>,
    pub(super) signatures: Vec<Signature>,
    pub(super) steps: Vec<Step>,
    pub(super) returns: Vec<Binding>,
    pub(super) metrics: Vec<MetricSpec>,
    pub(super) optimizer: Option<OptimizerSpec>,
    pub(super) feedback: Vec<FeedbackSpec>,
    pub(super) examples: Vec<ExampleSpec>,
    pub(super) memory: Vec<super::memory_spec::MemorySpec>,
    pub(super) wiring: Wiring,
}

/// A node of the step graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// The program's inputs.
    Input,
    /// One step.
    Step(StepId),
    /// The program's outputs.
    Output,
}

/// An edge of the step graph: `field` of the source node fills `slot` of the target node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The field read from the source node.
    pub field: String,
    /// The slot filled in the target node.
    pub slot: String,
}

/// The petgraph graph of a program, with the node of each step.
#[derive(Clone, Debug)]
pub(super) struct Wiring {
    graph: DiGraph<Node, Edge>,
    step_nodes: Vec<NodeIndex>,
}

impl Wiring {
    /// Wires `steps` and the return `bindings` by their sources.
    pub(super) fn connect(steps: &[Step], returns: &[Binding]) -> Wiring {
        let mut graph = DiGraph::new();
        let input = graph.add_node(Node::Input);
        let step_nodes: Vec<NodeIndex> = (0..steps.len()).map(|i| graph.add_node(Node::Step(StepId(i)))).collect();
        let output = graph.add_node(Node::Output);
        let mut add = |to: NodeIndex, b: &Binding| {
            let (from, field) = match &b.source {
                Source::Input(f) => (input, f.clone()),
                Source::Step { step, field } => (step_nodes[step.0], field.clone()),
                Source::Const(_) => return,
            };
            graph.add_edge(from, to, Edge { field, slot: b.slot.clone() });
        };
        for (i, s) in steps.iter().enumerate() {
            for b in &s.bindings {
                add(step_nodes[i], b);
            }
        }
        for b in returns {
            add(output, b);
        }
        Wiring { graph, step_nodes }
    }

    /// Every cycle among the steps, each as the steps in order around it, starting from the
    /// lowest step id.
    pub(super) fn cycles(&self) -> Vec<Vec<StepId>> {
        let mut cycles = Vec::new();
        // Kosaraju, not Tarjan: petgraph's Tarjan recurses once per node on a path, and a chain
        // of 50 000 steps overflowed the stack. Its Kosaraju walks with explicit stacks.
        for scc in kosaraju_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let Some(&start) = scc.iter().min_by_key(|n| self.step_of(**n)) else { continue };
            cycles.push(self.walk_cycle(start, &scc));
        }
        cycles.sort();
        cycles
    }

    /// A path from `start` back to itself inside one strongly connected component.
    fn walk_cycle(&self, start: NodeIndex, scc: &[NodeIndex]) -> Vec<StepId> {
        // Breadth-first search for the shortest way back, so the named cycle is a real one.
        // A set, not `scc.contains`: a cycle through every step of a big program made that scan
        // quadratic.
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        let mut prev = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for e in self.graph.edges(n) {
                let t = e.target();
                if !members.contains(&t) {
                    continue;
                }
                if t == start {
                    let mut path = vec![n];
                    let mut cur = n;
                    while cur != start {
                        cur = prev[&cur];
                        path.push(cur);
                    }
                    path.reverse();
                    return path.into_iter().filter_map(|n| self.step_of(n)).collect();
                }
                if let std::collections::hash_map::Entry::Vacant(v) = prev.entry(t) {
                    v.insert(n);
                    queue.push_back(t);
                }
            }
        }
        scc.iter().filter_map(|n| self.step_of(*n)).collect()
    }

    fn step_of(&self, n: NodeIndex) -> Option<StepId> {
        match self.graph[n] {
            Node::Step(s) => Some(s),
            _ => None,
        }
    }

    /// Layers of steps: each step's inputs are produced by earlier layers only, so the steps
    /// of one layer may run concurrently. Empty if the graph has a cycle.
    pub(super) fn schedule(&self) -> Vec<Vec<StepId>> {
        let Ok(order) = toposort(&self.graph, None) else { return Vec::new() };
        let mut level = vec![0usize; self.graph.node_count()];
        let mut layers: Vec<Vec<StepId>> = Vec::new();
        for n in order {
            let l = self
                .graph
                .edges_directed(n, petgraph::Direction::Incoming)
                .filter_map(|e| self.step_of(e.source()).map(|_| level[e.source().index()] + 1))
                .max()
                .unwrap_or(0);
            level[n.index()] = l;
            if let Some(s) = self.step_of(n) {
                if layers.len() <= l {
                    layers.resize(l + 1, Vec::new());
                }
                layers[l].push(s);
            }
        }
        for layer in &mut layers {
            layer.sort();
        }
        layers
    }

    /// The steps whose results nothing uses.
    pub(super) fn unused_steps(&self) -> Vec<StepId> {
        self.step_nodes.iter().filter(|n| self.graph.edges(**n).next().is_none()).filter_map(|n| self.step_of(*n)).collect()
    }

    /// The steps that `step` reads from directly.
    pub(super) fn dependencies(&self, step: StepId) -> Vec<StepId> {
        let mut deps: Vec<StepId> =
            self.graph.edges_directed(self.step_nodes[step.0], petgraph::Direction::Incoming).filter_map(|e| self.step_of(e.source())).collect();
        deps.sort();
        deps.dedup();
        deps
    }
}

impl Dag {
    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the program does.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The program's inputs.
    pub fn inputs(&self) -> &[Field] {
        &self.inputs
    }

    /// The program's outputs.
    pub fn outputs(&self) -> &[Field] {
        &self.outputs
    }

    /// The declared models (plus the built-in default when none is named `default`).
    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// The model steps use when they say nothing else.
    pub fn default_model(&self) -> ModelId {
        self.default_model
    }

    /// One model.
    pub fn model(&self, id: ModelId) -> &ModelSpec {
        &self.models[id.0]
    }

    /// The declared tools.
    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// Points the HTTP tool `name` at another URL template (see [`ToolSpec::set_url`]).
    pub fn set_tool_url(&mut self, name: &str, url: &str) -> Result<(), String> {
        let tool = self.tools.iter_mut().find(|t| t.name == name).ok_or_else(|| format!("the program has no tool `{name}`"))?;
        tool.set_url(url)
    }

    /// One tool.
    pub fn tool(&self, id: ToolId) -> &ToolSpec {
        &self.tools[id.0]
    }

    /// The declared signatures.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// One signature.
    pub fn signature(&self, id: SignatureId) -> &Signature {
        &self.signatures[id.0]
    }

    /// The steps, in source order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// One step.
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.0]
    }

    /// The step named `name`.
    pub fn step_id(&self, name: &str) -> Option<StepId> {
        self.steps.iter().position(|s| s.name == name).map(StepId)
    }

    /// Where each program output comes from.
    pub fn returns(&self) -> &[Binding] {
        &self.returns
    }

    /// The declared metrics.
    pub fn metrics(&self) -> &[MetricSpec] {
        &self.metrics
    }

    /// The metric named `name`.
    pub fn metric_id(&self, name: &str) -> Option<MetricId> {
        self.metrics.iter().position(|m| m.name == name).map(MetricId)
    }

    /// The `optimize` declaration, if any.
    pub fn optimizer(&self) -> Option<&OptimizerSpec> {
        self.optimizer.as_ref()
    }

    /// The feedback the program takes: its `feedback` declarations, or `correction` and
    /// `thumbs` when it declares none. (The implicit signals are taken by every program.)
    pub fn feedback(&self) -> &[FeedbackSpec] {
        &self.feedback
    }

    /// The `memory` declarations: the steps that recall demos per request, and how.
    pub fn memory(&self) -> &[super::memory_spec::MemorySpec] {
        &self.memory
    }

    /// The feedback named `key`, if the program takes it.
    pub fn feedback_spec(&self, key: &str) -> Option<&FeedbackSpec> {
        self.feedback.iter().find(|f| f.name == key)
    }

    /// The program's `example` blocks, in source order: tests, and (unless held out) data.
    pub fn examples(&self) -> &[ExampleSpec] {
        &self.examples
    }

    /// Layers of steps that may run concurrently, in order.
    pub fn schedule(&self) -> Vec<Vec<StepId>> {
        self.wiring.schedule()
    }

    /// The steps `step` reads from directly.
    pub fn dependencies(&self, step: StepId) -> Vec<StepId> {
        self.wiring.dependencies(step)
    }

    /// Every edge as (from, to, edge), for drawing the graph.
    pub fn edges(&self) -> impl Iterator<Item = (Node, Node, &Edge)> {
        let g = &self.wiring.graph;
        g.edge_references().map(move |e| (g[e.source()], g[e.target()], e.weight()))
    }

    /// The signature a model step uses, if it is one.
    pub fn step_signature(&self, id: StepId) -> Option<&Signature> {
        match self.step(id).target {
            Target::Signature(s) => Some(self.signature(s)),
            Target::Tool(_) => None,
        }
    }
}
