//! **Execution:** runs a checked [`Dag`] on one input: binds values, renders prompts, calls
//! models and tools, parses answers, and records a [`Trace`]. Steps start as soon as the
//! steps they read from are done, so independent steps run concurrently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};

use super::adapter::{render_request, Demo, FieldRepair, ParseError, ParseProblem, Request, Task, Template};
use super::backend::{AnswerShape, Backend, BackendError, Call, Enforcement, Structured};
use super::memory::DemoMemory;
use super::retrieve::Retriever;
use super::scoring::{LabelPruning, LabelScoring};
use super::structure;
use super::tools::{self, ToolError};
use super::trace::{LabelScore, StepTrace, Trace};
use super::value::{check_type, read};
use crate::graph::{Dag, Field, ModelId, SignatureId, Source, StepId, StepKind, Target, Type};
use crate::model::sampling::Sampling;
use crate::model::{ModelError, TokenCount};

/// What the compiler may set per step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepParams {
    /// The prompt template.
    pub template: Template,
    /// An instruction replacing the signature's, if set.
    pub instruction: Option<String>,
    /// Demonstrations (the same for every input).
    pub demos: Vec<Demo>,
    /// Demos chosen per input instead of `demos`, if set.
    pub retrieval: Option<Arc<Retriever>>,
    /// How a constrained choice's label scores become the answer.
    pub scoring: LabelScoring,
}

impl Default for StepParams {
    fn default() -> Self {
        StepParams { template: Template::Chat, instruction: None, demos: Vec::new(), retrieval: None, scoring: LabelScoring::Sum }
    }
}

/// Limits of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long one step may take.
    pub step_timeout: Duration,
    /// How long the whole run may take.
    pub deadline: Duration,
    /// Whether answers are decoded under their types' structure where the backend can (a
    /// grammar locally, a JSON Schema remotely). On by default; off, answers are only parsed
    /// (what `loopc bench structured` compares against).
    pub constrain: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { step_timeout: Duration::from_secs(120), deadline: Duration::from_secs(600), constrain: true }
    }
}

/// Why a run failed. Every variant names the step and, where it applies, the field.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Occurs when the inputs do not match the program's declared inputs.
    #[error("input `{field}`: {reason}")]
    Input {
        /// The input field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Occurs when a model answer cannot be read, even after one retry.
    #[error("step `{step}`, field `{field}`: {problem}; the model wrote: {raw:?}")]
    Parse {
        /// The step.
        step: String,
        /// The output field.
        field: String,
        /// What was wrong.
        problem: ParseProblem,
        /// The model's text.
        raw: String,
    },
    /// Occurs when a step's prompt does not fit the model's context; names the input that
    /// takes the most room.
    #[error("step `{step}`: {what} is {field_tokens}; the whole prompt is {prompt_tokens}, over the {limit}-token context of model `{model}`; shorten it")]
    TooLong {
        /// The step.
        step: String,
        /// Which value: `input `text`` for a program input, else the step's slot.
        what: String,
        /// That value's size.
        field_tokens: TokenCount,
        /// The prompt's size.
        prompt_tokens: TokenCount,
        /// The model's context length.
        limit: usize,
        /// The model.
        model: String,
    },
    /// Occurs when the model backend fails.
    #[error("step `{step}`: {source}")]
    Model {
        /// The step.
        step: String,
        /// The backend error.
        source: BackendError,
    },
    /// Occurs when a tool fails.
    #[error("step `{step}`: {source}")]
    Tool {
        /// The step.
        step: String,
        /// The tool error.
        source: ToolError,
    },
    /// Occurs when a step takes longer than the step timeout.
    #[error("step `{step}` timed out after {ms} ms")]
    StepTimeout {
        /// The step.
        step: String,
        /// The timeout.
        ms: u64,
    },
    /// Occurs when the whole run takes longer than its deadline.
    #[error("the run passed its deadline of {ms} ms")]
    Deadline {
        /// The deadline.
        ms: u64,
    },
}

/// The user turn with a note that the previous answer could not be read (the error quotes
/// the model's text: it goes in as data).
fn with_error_note(user: &crate::model::PromptText, error: &str) -> crate::model::PromptText {
    let mut user = user.clone();
    user.push_markup("\n\n(Your previous answer could not be read: ").push_data(error).push_markup(". Answer again, exactly in the required format.)");
    user
}

/// Reads a bare label (an endpoint's answer to a choice) as the one output's value.
fn read_choice(outputs: &[Field], text: &str) -> Result<(Map<String, Value>, Vec<FieldRepair>), ParseError> {
    let Some(f) = outputs.first() else {
        return Err(ParseError { field: String::new(), problem: ParseProblem::Missing });
    };
    let (v, fixes) = read(&f.ty, text).map_err(|reason| ParseError { field: f.name.clone(), problem: ParseProblem::Invalid(reason) })?;
    let mut out = Map::new();
    out.insert(f.name.clone(), v);
    Ok((out, fixes.into_iter().map(|repair| FieldRepair { field: f.name.clone(), repair }).collect()))
}

/// Everything a run needs besides the input: the program, a backend per model, step
/// parameters and an HTTP client for tools. Cheap to clone; safe to share across tasks.
#[derive(Clone)]
pub struct Executor {
    dag: Arc<Dag>,
    backends: Arc<Vec<Arc<dyn Backend>>>,
    params: Arc<HashMap<StepId, StepParams>>,
    http: tools::ToolClient,
    options: RunOptions,
    /// Demos recalled per request beyond the compiled ones, if memory is on.
    memory: Option<Arc<dyn DemoMemory>>,
    /// How far constrained choices score their labels.
    pruning: LabelPruning,
}

impl Executor {
    /// An executor for `dag` with one backend per declared model (by `ModelId` index).
    pub fn new(dag: Arc<Dag>, backends: Vec<Arc<dyn Backend>>, params: HashMap<StepId, StepParams>, options: RunOptions) -> Executor {
        Executor {
            dag,
            backends: Arc::new(backends),
            params: Arc::new(params),
            http: tools::ToolClient::new(),
            options,
            memory: None,
            pruning: LabelPruning::default(),
        }
    }

    /// The same program asking `memory` for demos on every request, after each step's compiled
    /// demos (see [`super::memory`]).
    pub fn with_memory(&self, memory: Arc<dyn DemoMemory>) -> Executor {
        Executor { memory: Some(memory), ..self.clone() }
    }

    /// The same program scoring labels as far as `pruning` says (by default only as far as
    /// each decision needs).
    pub fn with_label_pruning(&self, pruning: LabelPruning) -> Executor {
        Executor { pruning, ..self.clone() }
    }

    /// The same program without a memory.
    pub fn without_memory(&self) -> Executor {
        Executor { memory: None, ..self.clone() }
    }

    /// The same program and models with other step parameters (what the compiler searches).
    pub fn with_params(&self, params: HashMap<StepId, StepParams>) -> Executor {
        Executor { params: Arc::new(params), ..self.clone() }
    }

    /// The same program and parameters on other backends (one per declared model).
    pub fn with_backends(&self, backends: Vec<Arc<dyn Backend>>) -> Executor {
        Executor { backends: Arc::new(backends), ..self.clone() }
    }

    /// The parameters of `step` (its signature's defaults unless set).
    pub fn params(&self, step: StepId) -> StepParams {
        self.params.get(&step).cloned().unwrap_or_default()
    }

    /// The backend serving each declared model, by `ModelId` index.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The program.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Checks `inputs` against the declared inputs: none unknown, every one present and typed
    /// right. Unknown names are reported first: a misspelt name is also a missing one, and
    /// the misspelling is what the caller has to fix.
    pub fn check_inputs(&self, inputs: &Map<String, Value>) -> Result<(), RunError> {
        if let Some(extra) = inputs.keys().find(|k| !self.dag.inputs().iter().any(|f| &f.name == *k)) {
            let names: Vec<&str> = self.dag.inputs().iter().map(|f| f.name.as_str()).collect();
            let hint = crate::graph::did_you_mean(extra, names.iter().copied()).map(|h| format!("; {h}")).unwrap_or_default();
            return Err(RunError::Input { field: extra.clone(), reason: format!("not an input of the program (its inputs: {}){hint}", names.join(", ")) });
        }
        for f in self.dag.inputs() {
            let v = inputs.get(&f.name).ok_or_else(|| RunError::Input { field: f.name.clone(), reason: "missing".into() })?;
            check_type(&f.ty, v).map_err(|reason| RunError::Input { field: f.name.clone(), reason })?;
        }
        Ok(())
    }

    /// The request a step would send for `inputs`, for showing prompts without running.
    /// Steps that read other steps' results get placeholders for them.
    pub fn preview(&self, step: StepId, inputs: &Map<String, Value>) -> Option<Request> {
        let bound = self.preview_inputs(step, inputs);
        self.request(step, &bound)
    }

    /// The values a step's slots would get for `inputs` (placeholders for other steps' results).
    pub fn preview_inputs(&self, step: StepId, inputs: &Map<String, Value>) -> Map<String, Value> {
        let s = self.dag.step(step);
        s.bindings
            .iter()
            .map(|b| {
                let v = match &b.source {
                    Source::Input(n) => inputs.get(n).cloned().unwrap_or(Value::Null),
                    Source::Step { step, field } => Value::String(format!("<{}.{field}>", self.dag.step(*step).name)),
                    Source::Const(v) => v.clone(),
                };
                (b.slot.clone(), v)
            })
            .collect()
    }

    fn request(&self, step: StepId, bound: &Map<String, Value>) -> Option<Request> {
        self.request_as(step, bound, None)
    }

    /// The request of `step` for `bound`, in `template` instead of the step's own if given.
    fn request_as(&self, step: StepId, bound: &Map<String, Value>, template: Option<Template>) -> Option<Request> {
        let s = self.dag.step(step);
        let sig = self.dag.step_signature(step)?;
        let params = self.params.get(&step).cloned().unwrap_or_default();
        let instruction = params.instruction.as_deref().unwrap_or(&sig.instruction);
        let task = Task { instruction, inputs: &sig.inputs, outputs: &s.outputs };
        let template = template.unwrap_or(params.template);
        // Retrieval and memory match on the values the signature's inputs get.
        let shown: Map<String, Value> = sig.inputs.iter().filter_map(|f| Some((f.name.clone(), bound.get(&f.name)?.clone()))).collect();
        let mut request = match &params.retrieval {
            Some(r) => {
                let mut request = render_request(template, &task, &r.select(&shown), bound);
                request.demos_shared = false;
                request
            }
            None => render_request(template, &task, &params.demos, bound),
        };
        // The one hook of online memory: recalled demos follow the compiled ones.
        if let Some(memory) = &self.memory {
            super::memory::extend(&mut request, memory.as_ref(), &s.name, (template, &task), &shown, self.backends[s.model.0].as_ref());
        }
        Some(request)
    }

    /// Runs the program on `inputs`. The trace is returned whether or not the run succeeded.
    pub async fn run(&self, inputs: Map<String, Value>) -> (Result<Map<String, Value>, RunError>, Trace) {
        let started = Instant::now();
        let mut trace =
            Trace { run_id: format!("{:032x}", rand::random::<u128>()), program: self.dag.name().to_string(), inputs: inputs.clone(), ..Trace::default() };
        let deadline = self.options.deadline;
        let result = match tokio::time::timeout(deadline, self.run_steps(&inputs, started, &mut trace)).await {
            Ok(r) => r,
            Err(_) => Err(RunError::Deadline { ms: deadline.as_millis() as u64 }),
        };
        trace.latency_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(out) => trace.outputs = Some(out.clone()),
            Err(e) => trace.error = Some(e.to_string()),
        }
        (result, trace)
    }

    async fn run_steps(&self, inputs: &Map<String, Value>, started: Instant, trace: &mut Trace) -> Result<Map<String, Value>, RunError> {
        self.check_inputs(inputs)?;
        let n = self.dag.steps().len();
        let deps: Vec<Vec<StepId>> = (0..n).map(|i| self.dag.dependencies(StepId(i))).collect();
        let mut results: Vec<Option<Map<String, Value>>> = vec![None; n];
        let mut started_steps = vec![false; n];
        let mut running = FuturesUnordered::new();
        loop {
            for i in 0..n {
                if !started_steps[i] && deps[i].iter().all(|d| results[d.0].is_some()) {
                    started_steps[i] = true;
                    let bound = self.bind(StepId(i), inputs, &results);
                    let me = self.clone();
                    let offset = started.elapsed().as_millis() as u64;
                    running.push(async move {
                        let t = Instant::now();
                        let timeout = me.options.step_timeout;
                        let (res, mut st) = match tokio::time::timeout(timeout, me.run_step(StepId(i), bound.clone())).await {
                            Ok(r) => r,
                            Err(_) => {
                                let s = me.dag.step(StepId(i));
                                (Err(RunError::StepTimeout { step: s.name.clone(), ms: timeout.as_millis() as u64 }), StepTrace::new(&s.name, s.kind, bound))
                            }
                        };
                        st.started_ms = offset;
                        st.latency_ms = t.elapsed().as_millis() as u64;
                        (i, res, st)
                    });
                }
            }
            let Some((i, res, mut st)) = running.next().await else { break };
            match res {
                Ok(out) => {
                    st.outputs = Some(out.clone());
                    trace.steps.push(st);
                    results[i] = Some(out);
                }
                Err(e) => {
                    st.error = Some(e.to_string());
                    trace.steps.push(st);
                    // Dropping the other running steps cancels them (tool processes are killed).
                    return Err(e);
                }
            }
        }
        let mut outputs = Map::new();
        for b in self.dag.returns() {
            outputs.insert(b.slot.clone(), self.source_value(&b.source, inputs, &results));
        }
        Ok(outputs)
    }

    fn source_value(&self, src: &Source, inputs: &Map<String, Value>, results: &[Option<Map<String, Value>>]) -> Value {
        match src {
            Source::Input(n) => inputs.get(n).cloned().unwrap_or(Value::Null),
            Source::Step { step, field } => results[step.0].as_ref().and_then(|r| r.get(field)).cloned().unwrap_or(Value::Null),
            Source::Const(v) => v.clone(),
        }
    }

    fn bind(&self, step: StepId, inputs: &Map<String, Value>, results: &[Option<Map<String, Value>>]) -> Map<String, Value> {
        self.dag.step(step).bindings.iter().map(|b| (b.slot.clone(), self.source_value(&b.source, inputs, results))).collect()
    }

    async fn run_step(&self, id: StepId, bound: Map<String, Value>) -> (Result<Map<String, Value>, RunError>, StepTrace) {
        let s = self.dag.step(id);
        let mut st = StepTrace::new(&s.name, s.kind, bound.clone());
        if let Target::Tool(t) = s.target {
            let tool = self.dag.tool(t);
            st.served_by = format!("tool {}", tool.name);
            let res = tools::call(&self.http, tool, &bound).await;
            return match res {
                Ok(v) => {
                    st.raw.push(super::value::render(&v));
                    let mut out = Map::new();
                    out.insert(crate::graph::RESULT.to_string(), v);
                    (Ok(out), st)
                }
                Err(e) => (Err(RunError::Tool { step: s.name.clone(), source: e }), st),
            };
        }
        let (Some(request), Some(json)) = (self.request(id, &bound), self.request_as(id, &bound, Some(Template::Json))) else {
            return (Err(RunError::Input { field: s.name.clone(), reason: "the step has no signature".into() }), st);
        };
        self.run_model(&s.name, Some(id), s.model, &s.outputs, (request, json), st).await
    }

    /// Runs signature `sig` once, as a predict step named `name` on the program's default
    /// model with the signature's own instruction and no demos (e.g. an LM-judge rubric).
    pub async fn predict(&self, name: &str, sig: SignatureId, inputs: Map<String, Value>) -> (Result<Map<String, Value>, RunError>, StepTrace) {
        let signature = self.dag.signature(sig);
        let st = StepTrace::new(name, StepKind::Predict, inputs.clone());
        let task = Task { instruction: &signature.instruction, inputs: &signature.inputs, outputs: &signature.outputs };
        let request = render_request(Template::Chat, &task, &[], &inputs);
        let json = render_request(Template::Json, &task, &[], &inputs);
        let run = self.run_model(name, None, self.dag.default_model(), &signature.outputs, (request, json), st);
        match tokio::time::timeout(self.options.step_timeout, run).await {
            Ok(r) => r,
            Err(_) => (
                Err(RunError::StepTimeout { step: name.to_string(), ms: self.options.step_timeout.as_millis() as u64 }),
                StepTrace::new(name, StepKind::Predict, inputs),
            ),
        }
    }

    /// The run error for a failed model call. A prompt over the model's context becomes an
    /// error naming the input that takes the most room, with its size and the limit.
    fn model_failure(&self, name: &str, step: Option<StepId>, backend: &dyn Backend, inputs: &Map<String, Value>, e: BackendError) -> RunError {
        if let BackendError::Local(ModelError::ContextOverflow { tokens, limit }) = &e {
            let largest = inputs.iter().filter_map(|(slot, v)| Some((slot, backend.count_tokens(&super::value::render(v))?))).max_by_key(|(_, n)| n.value());
            if let Some((slot, field_tokens)) = largest {
                let source = step.and_then(|id| self.dag.step(id).bindings.iter().find(|b| &b.slot == slot).map(|b| b.source.clone()));
                let what = match source {
                    Some(Source::Input(n)) => format!("input `{n}`"),
                    Some(Source::Step { step, field }) => format!("`{slot}` (from `{}.{field}`)", self.dag.step(step).name),
                    _ => format!("`{slot}`"),
                };
                return RunError::TooLong { step: name.to_string(), what, field_tokens, prompt_tokens: *tokens, limit: *limit, model: backend.identity().name };
            }
        }
        RunError::Model { step: name.to_string(), source: e }
    }

    /// Asks model `model` for `outputs` with `request` (and the same task in the JSON
    /// template, for endpoints that answer in structured JSON): constrained choice for a
    /// single label or bool output, else generation under the answer's structure where the
    /// backend can enforce it, with one retry on a parse failure.
    async fn run_model(
        &self,
        name: &str,
        step: Option<StepId>,
        model: ModelId,
        outputs: &[Field],
        (request, json_request): (Request, Request),
        mut st: StepTrace,
    ) -> (Result<Map<String, Value>, RunError>, StepTrace) {
        let backend = self.backends[model.0].clone();
        let spec = self.dag.model(model);
        st.served_by = format!("{} {}", backend.identity().provider, backend.identity().name);
        st.prompt = request.display();
        let sampling = Sampling {
            temperature: spec.params.temperature as f32,
            top_k: spec.params.top_k.map(|k| k as usize),
            top_p: spec.params.top_p.map(|p| p as f32),
            seed: spec.params.seed.unwrap_or(0),
        };
        let call = Call {
            request: request.clone(),
            answer_so_far: String::new(),
            max_tokens: spec.params.max_tokens as usize,
            sampling,
            stop: spec.params.stop.clone(),
            grammar: None,
            structured: None,
        };
        // A single label or bool output is scored directly when the backend can: it cannot
        // fail to parse.
        let ask = Ask { name, step, backend: backend.as_ref() };
        if let [field] = outputs {
            if let Some(choices) = choices_of(&field.ty).filter(|_| backend.supports_choice()) {
                return self.choose(ask, field, &request, call, choices, st).await;
            }
        }
        self.generate(ask, outputs, (request, &json_request), call, st).await
    }

    /// Constrained choice among `labels` (whose values are `values`) for the one output `field`.
    async fn choose(
        &self,
        Ask { name, step, backend }: Ask<'_>,
        field: &Field,
        request: &Request,
        call: Call,
        (labels, values): (Vec<String>, Vec<Value>),
        mut st: StepTrace,
    ) -> (Result<Map<String, Value>, RunError>, StepTrace) {
        let written: Vec<String> = labels.iter().map(|l| request.choice_text(l)).collect();
        let scoring = step.map(|id| self.params(id).scoring).unwrap_or_default();
        let asked = match self.pruning.bounds(&scoring, &labels) {
            Some(bounds) => backend.choose_bounded(vec![call], written, Arc::new(bounds)).await,
            None => backend.choose(vec![call], written).await,
        };
        match asked {
            Ok(choices) => {
                let Some(choice) = choices.into_iter().next() else {
                    return (Err(RunError::Model { step: name.to_string(), source: BackendError::Unsupported("the backend scored no choice".into()) }), st);
                };
                st.prompt_tokens = choice.prompt_tokens;
                st.cached_tokens = choice.cached_tokens;
                st.cache_hit = choice.from_cache;
                let adjusted = scoring.apply(&labels, &choice.scores, &choice.label_tokens);
                let best = super::scoring::best(&adjusted);
                let keep = !scoring.is_sum();
                st.choice_scores = Some(
                    labels
                        .iter()
                        .zip(choice.scores)
                        .zip(adjusted)
                        .zip(choice.label_tokens.iter().copied().chain(std::iter::repeat(0)))
                        .enumerate()
                        .map(|(i, (((l, s), a), n))| LabelScore {
                            label: l.clone(),
                            logprob: s,
                            adjusted: keep.then_some(a),
                            tokens: n,
                            pruned: choice.pruned.get(i).copied().unwrap_or(false),
                        })
                        .collect(),
                );
                st.raw.push(labels[best].clone());
                let mut out = Map::new();
                out.insert(field.name.clone(), values[best].clone());
                (Ok(out), st)
            }
            Err(e) => {
                let err = self.model_failure(name, step, backend, &st.inputs, e);
                (Err(err), st)
            }
        }
    }

    /// Generation of `outputs` under the answer's structure where the backend can enforce it
    /// (`json_request` is the same task in the JSON template, for endpoints that answer in
    /// structured JSON), parsed; on a parse failure, one retry: a field never written is asked
    /// for by continuing the answer from its marker, a field written wrongly by showing the
    /// model the error.
    async fn generate(
        &self,
        Ask { name, step, backend }: Ask<'_>,
        outputs: &[Field],
        (request, json_request): (Request, &Request),
        call: Call,
        mut st: StepTrace,
    ) -> (Result<Map<String, Value>, RunError>, StepTrace) {
        // The answer's structure, enforced while decoding where the backend can.
        let enforcement = if self.options.constrain { backend.enforcement() } else { Enforcement::None };
        let mut call = call;
        let request = match enforcement {
            Enforcement::Grammar => {
                let r = request.constrained(outputs);
                call.grammar = Some(structure::grammar(r.template, outputs, &st.inputs));
                st.structure = Some("grammar".into());
                r
            }
            Enforcement::JsonSchema => {
                let choice = match outputs {
                    [f] => f.ty.labels().map(<[String]>::to_vec),
                    _ => None,
                };
                let sent = json_request.clone().constrained(outputs);
                // The trace shows what the endpoint is sent: the JSON template's messages.
                st.prompt = sent.display();
                call.structured = Some(Structured { schema: structure::schema(outputs), request: sent, choice });
                request
            }
            Enforcement::None => {
                st.structure = Some("parsed".into());
                request
            }
        };
        call.request = request.clone();
        let mut failure = None;
        for attempt in 0..2 {
            let completion = match backend.generate(vec![call.clone()]).await {
                Ok(mut c) if !c.is_empty() => c.remove(0),
                Ok(_) => {
                    return (
                        Err(RunError::Model { step: name.to_string(), source: BackendError::Unsupported("the backend returned no completion".into()) }),
                        st,
                    )
                }
                Err(e) => {
                    let err = self.model_failure(name, step, backend, &st.inputs, e);
                    return (Err(err), st);
                }
            };
            st.prompt_tokens += completion.prompt_tokens;
            st.cached_tokens += completion.cached_tokens;
            st.completion_tokens += completion.completion_tokens;
            st.cache_hit = completion.from_cache && (attempt == 0 || st.cache_hit);
            if let Some(note) = &completion.structure_note {
                st.structure = Some(note.clone());
            }
            st.raw.push(completion.text.clone());
            let (answer, parsed) = match completion.shape {
                AnswerShape::Template => {
                    let answer = format!("{}{}", call.answer_so_far, completion.text);
                    let parsed = request.parse_repaired(outputs, &answer);
                    (answer, parsed)
                }
                AnswerShape::JsonObject => {
                    let json = json_request.clone().constrained(outputs);
                    (completion.text.clone(), json.parse_repaired(outputs, &completion.text))
                }
                AnswerShape::Choice => (completion.text.clone(), read_choice(outputs, &completion.text)),
            };
            // What `from: FIELD` promises is checked whatever the backend did.
            let parsed = parsed.and_then(|(out, repairs)| structure::check_sources(outputs, &out, &st.inputs).map(|()| (out, repairs)));
            match parsed {
                Ok((out, repairs)) => {
                    st.repairs.extend(repairs);
                    return (Ok(out), st);
                }
                Err(e) => {
                    if attempt == 0 {
                        let missing = e.problem == ParseProblem::Missing;
                        let grammar = enforcement == Enforcement::Grammar;
                        let continuation = (missing && completion.shape == AnswerShape::Template)
                            .then(|| request.continue_from(outputs, &answer, &e.field, !grammar))
                            .flatten();
                        match continuation {
                            // A field never written (under a grammar: the answer ran out of tokens,
                            // e.g. in its reasoning): continue the answer from that field's marker,
                            // decoding the rest under the grammar of the fields from there on.
                            Some(so_far) => {
                                call.answer_so_far = so_far;
                                if grammar {
                                    let from = outputs.iter().position(|f| f.name == e.field).unwrap_or(0);
                                    call.grammar = Some(structure::grammar(request.template, &outputs[from..], &st.inputs));
                                }
                            }
                            // A field written wrongly: ask again, showing what went wrong.
                            None => {
                                call.request.user = with_error_note(&request.user, &e.to_string());
                                if let Some(s) = call.structured.as_mut() {
                                    s.request.user = with_error_note(&s.request.user, &e.to_string());
                                }
                            }
                        }
                    }
                    failure = Some(RunError::Parse { step: name.to_string(), field: e.field, problem: e.problem, raw: answer });
                }
            }
        }
        let err = failure.unwrap_or(RunError::Model { step: name.to_string(), source: BackendError::Unsupported("no attempt was made".into()) });
        (Err(err), st)
    }
}

/// Who is asked, for which step (`None` for a judge's rubric), named `name` in errors.
#[derive(Clone, Copy)]
struct Ask<'a> {
    name: &'a str,
    step: Option<StepId>,
    backend: &'a dyn Backend,
}

/// The labels a single `ty` output is chosen among, as written and as values: a label's
/// labels, or `true` and `false`; `None` for a type that is not chosen.
fn choices_of(ty: &Type) -> Option<(Vec<String>, Vec<Value>)> {
    match ty {
        Type::Label(labels) => Some((labels.clone(), labels.iter().map(|l| Value::String(l.clone())).collect())),
        Type::Bool => Some((vec!["true".to_string(), "false".to_string()], vec![Value::Bool(true), Value::Bool(false)])),
        _ => None,
    }
}
