//! Metrics: score a run's outputs against an example, in [0, 1]. A failed run scores 0.
//!
//! Human scores plug in through [`Rater`]: `human("criterion")` asks a rater (the terminal
//! with `--interactive`, later the feedback store), which remembers each distinct output.
//! An LM judge runs a rubric signature on the program's default model ([`Metric::judge`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::dataset::Example;
use crate::graph::{MetricKind, MetricSpec, Operand};
use crate::runtime::executor::Executor;
use crate::runtime::trace::StepTrace;
use crate::Program;

/// Why a metric could not score.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// Occurs when the metric needs something loopc cannot provide here.
    #[error("metric `{metric}`: {reason}")]
    Unavailable {
        /// The metric.
        metric: String,
        /// What is missing.
        reason: String,
    },
    /// Occurs when the program has no metric by that name, or none at all.
    #[error("{0}")]
    NoMetric(String),
    /// Occurs when an LM judge gives no usable score for an example.
    #[error("metric `{metric}`: the judge failed on {example}: {reason}")]
    Judge {
        /// The metric.
        metric: String,
        /// The example (file:line).
        example: String,
        /// What went wrong.
        reason: String,
    },
}

/// The metric to use for `dag`: the one named `name`, else the optimizer's, else the first
/// declared.
pub fn choose(dag: &crate::graph::Dag, name: Option<&str>, rater: Option<std::sync::Arc<dyn Rater>>) -> Result<Metric, MetricError> {
    Metric::new(pick(dag, name)?, rater)
}

/// The declaration of the metric [`choose`] would use, before anything needed to score with it
/// (a rater, a judge's model) is at hand.
pub fn pick(dag: &crate::graph::Dag, name: Option<&str>) -> Result<MetricSpec, MetricError> {
    Ok(match name {
        Some(n) => {
            let id = dag.metric_id(n).ok_or_else(|| {
                let names: Vec<&str> = dag.metrics().iter().map(|m| m.name.as_str()).collect();
                MetricError::NoMetric(format!("the program has no metric `{n}` (its metrics: {})", names.join(", ")))
            })?;
            dag.metrics()[id.0].clone()
        }
        None => match dag.optimizer().and_then(|o| o.settings.metric) {
            Some(id) => dag.metrics()[id.0].clone(),
            None => dag
                .metrics()
                .first()
                .cloned()
                .ok_or_else(|| MetricError::NoMetric("the program declares no metric: add `metric NAME = exact(output.X, example.X)`".into()))?,
        },
    })
}

/// Gives human scores in [0, 1] for one criterion.
pub trait Rater: Send + Sync {
    /// A score for `outputs` of the run on `example`.
    fn rate(&self, criterion: &str, example: &Example, outputs: &Map<String, Value>) -> Result<f64, MetricError>;
}

/// A metric ready to score.
#[derive(Clone)]
pub struct Metric {
    spec: MetricSpec,
    rater: Option<Arc<dyn Rater>>,
    judge: Option<Executor>,
}

impl Metric {
    /// The metric `spec`; `rater` answers `human(..)` metrics. A `judge(..)` metric also needs
    /// [`Metric::judged_by`].
    pub fn new(spec: MetricSpec, rater: Option<Arc<dyn Rater>>) -> Result<Metric, MetricError> {
        if matches!(spec.kind, MetricKind::Human { .. }) && rater.is_none() {
            return Err(MetricError::Unavailable {
                metric: spec.name.clone(),
                reason: "human scores need a rater: pass --interactive to rate outputs in the terminal".into(),
            });
        }
        Ok(Metric { spec, rater, judge: None })
    }

    /// The metric, with `program`'s executor running its judge's rubric (on the program's
    /// default model, with the rubric's own instruction: compiling never changes the judge).
    pub fn judged_by(mut self, program: &Program) -> Metric {
        self.judge = Some(program.executor().with_params(HashMap::new()));
        self
    }

    /// Whether scoring calls a model (an LM judge), so it must run where models are awaited.
    pub fn needs_model(&self) -> bool {
        matches!(self.spec.kind, MetricKind::Judge { .. })
    }

    /// Scores with the LM judge: runs the rubric on the bound values and reads its one output
    /// (a float as a score, an int as a rating out of 5, a bool as pass or fail). The judge's
    /// step trace is returned so its model calls count. Other metrics score as [`Metric::score`].
    pub async fn judge(&self, outputs: Option<&Map<String, Value>>, example: &Example) -> Result<(f64, Option<StepTrace>), MetricError> {
        let MetricKind::Judge { signature, bindings } = &self.spec.kind else {
            return Ok((self.score(outputs, example)?, None));
        };
        let Some(outputs) = outputs else { return Ok((0.0, None)) };
        let Some(executor) = &self.judge else {
            return Err(MetricError::Unavailable { metric: self.spec.name.clone(), reason: "an LM judge needs a model to run its rubric".into() });
        };
        let inputs: Map<String, Value> = bindings.iter().map(|(slot, op)| (slot.clone(), operand(op, outputs, example))).collect();
        let (result, trace) = executor.predict(&format!("judge `{}`", self.spec.name), *signature, inputs).await;
        let fail = |reason: String| MetricError::Judge { metric: self.spec.name.clone(), example: example.origin.clone(), reason };
        let answer = result.map_err(|e| fail(e.to_string()))?;
        let score = match answer.values().next() {
            Some(Value::Bool(b)) => f64::from(u8::from(*b)),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.as_f64().unwrap_or(0.0) / 5.0,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            other => return Err(fail(format!("the rubric gave {other:?}, not a score"))),
        };
        Ok((score.clamp(0.0, 1.0), Some(trace)))
    }

    /// The metric's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The example fields the metric reads (each must be in every example).
    pub fn example_fields(&self) -> Vec<String> {
        let ops: Vec<&Operand> = match &self.spec.kind {
            MetricKind::Exact(a, b)
            | MetricKind::NormalizedExact(a, b)
            | MetricKind::Contains(a, b)
            | MetricKind::TokenF1(a, b)
            | MetricKind::ItemsF1(a, b) => {
                vec![a, b]
            }
            MetricKind::Regex(a, _) => vec![a],
            MetricKind::Numeric { prediction, target, .. } => vec![prediction, target],
            MetricKind::Judge { bindings, .. } => bindings.iter().map(|(_, o)| o).collect(),
            MetricKind::Human { .. } => vec![],
        };
        ops.into_iter().filter_map(|o| if let Operand::Example(n) = o { Some(n.clone()) } else { None }).collect()
    }

    /// The score of `outputs` (`None` for a failed run, which scores 0) on `example`.
    pub fn score(&self, outputs: Option<&Map<String, Value>>, example: &Example) -> Result<f64, MetricError> {
        let Some(outputs) = outputs else { return Ok(0.0) };
        let get = |o: &Operand| operand(o, outputs, example);
        let bool_score = |b: bool| if b { 1.0 } else { 0.0 };
        Ok(match &self.spec.kind {
            MetricKind::Exact(a, b) => bool_score(get(a) == get(b)),
            MetricKind::NormalizedExact(a, b) => bool_score(normalize(&text(&get(a))) == normalize(&text(&get(b)))),
            MetricKind::Contains(a, b) => bool_score(text(&get(a)).to_lowercase().contains(&text(&get(b)).to_lowercase())),
            MetricKind::TokenF1(a, b) => token_f1(&text(&get(a)), &text(&get(b))),
            MetricKind::ItemsF1(a, b) => items_f1(&get(a), &get(b)),
            MetricKind::Regex(a, pattern) => {
                let re = regex::Regex::new(pattern).map_err(|e| MetricError::Unavailable { metric: self.spec.name.clone(), reason: e.to_string() })?;
                bool_score(re.is_match(&text(&get(a))))
            }
            MetricKind::Numeric { prediction, target, tolerance } => match (get(prediction).as_f64(), get(target).as_f64()) {
                (Some(p), Some(t)) => bool_score((p - t).abs() <= tolerance * t.abs().max(1.0)),
                _ => 0.0,
            },
            MetricKind::Human { criterion } => match &self.rater {
                Some(r) => r.rate(criterion, example, outputs)?.clamp(0.0, 1.0),
                None => 0.0,
            },
            MetricKind::Judge { .. } => {
                return Err(MetricError::Unavailable { metric: self.spec.name.clone(), reason: "an LM judge scores asynchronously (Metric::judge)".into() })
            }
        })
    }
}

/// The value an operand reads from a run's outputs and its example.
fn operand(o: &Operand, outputs: &Map<String, Value>, example: &Example) -> Value {
    match o {
        Operand::Output(n) => outputs.get(n).cloned().unwrap_or(Value::Null),
        Operand::Example(n) => example.fields.get(n).cloned().unwrap_or(Value::Null),
        Operand::Const(v) => v.clone(),
    }
}

/// A value as text: strings as they are, lists as their items joined, others as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Lowercase, punctuation removed, articles dropped, whitespace collapsed (as SQuAD does).
fn normalize(s: &str) -> String {
    let lowered: String = s.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    lowered.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Item-level F1 of two lists (a value that is not a list is a list of one; null is empty).
fn items_f1(prediction: &Value, target: &Value) -> f64 {
    let items = |v: &Value| -> std::collections::HashSet<String> {
        let one = |v: &Value| text(v).to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        match v {
            Value::Array(a) => a.iter().map(one).collect(),
            Value::Null => Default::default(),
            other => std::iter::once(one(other)).collect(),
        }
    };
    let (p, t) = (items(prediction), items(target));
    if p.is_empty() || t.is_empty() {
        return if p.is_empty() && t.is_empty() { 1.0 } else { 0.0 };
    }
    let common = p.intersection(&t).count() as f64;
    if common == 0.0 {
        return 0.0;
    }
    2.0 * common / (p.len() + t.len()) as f64
}

fn token_f1(prediction: &str, target: &str) -> f64 {
    let p: Vec<String> = normalize(prediction).split_whitespace().map(str::to_string).collect();
    let t: Vec<String> = normalize(target).split_whitespace().map(str::to_string).collect();
    if p.is_empty() || t.is_empty() {
        return if p.is_empty() && t.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &t {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str()).filter(|c| **c > 0) {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let (precision, recall) = (common as f64 / p.len() as f64, common as f64 / t.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// Asks for scores in the terminal, once per distinct (criterion, inputs, outputs).
pub struct TerminalRater<R, W> {
    io: Mutex<(R, W)>,
    seen: Mutex<HashMap<String, f64>>,
}

impl<R: std::io::BufRead + Send, W: std::io::Write + Send> TerminalRater<R, W> {
    /// A rater reading answers from `input` and writing questions to `output`.
    pub fn new(input: R, output: W) -> Self {
        TerminalRater { io: Mutex::new((input, output)), seen: Mutex::new(HashMap::new()) }
    }
}

impl<R: std::io::BufRead + Send, W: std::io::Write + Send> Rater for TerminalRater<R, W> {
    fn rate(&self, criterion: &str, example: &Example, outputs: &Map<String, Value>) -> Result<f64, MetricError> {
        let key = serde_json::json!([criterion, example.fields, outputs]).to_string();
        if let Some(s) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*s);
        }
        // One question at a time, even when runs finish concurrently.
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let (input, output) = &mut *io;
        let broken = |e: std::io::Error| MetricError::Unavailable { metric: criterion.to_string(), reason: format!("the terminal failed: {e}") };
        writeln!(
            output,
            "\n── rate `{criterion}` ({}) ──\ninput:  {}\noutput: {}",
            example.origin,
            Value::Object(example.fields.clone()),
            Value::Object(outputs.clone())
        )
        .map_err(broken)?;
        loop {
            write!(output, "score 0-10 (or 0.0-1.0): ").map_err(broken)?;
            output.flush().map_err(broken)?;
            let mut line = String::new();
            if input.read_line(&mut line).map_err(broken)? == 0 {
                return Err(MetricError::Unavailable { metric: criterion.to_string(), reason: "the terminal closed before a score was given".into() });
            }
            let score = match line.trim().parse::<f64>() {
                Ok(s) if (0.0..=1.0).contains(&s) && line.contains('.') => s,
                Ok(s) if (0.0..=10.0).contains(&s) => s / 10.0,
                _ => {
                    writeln!(output, "  `{}` is not a score; type a number from 0 to 10", line.trim()).map_err(broken)?;
                    continue;
                }
            };
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(key, score);
            return Ok(score);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(src_metric: &str) -> Metric {
        let src = format!("program p\ninput q: text\noutput a: text\noutput n: float\nsignature S {{ in q: text out a: text out n: float }}\nstep s = predict S {{ q: input.q }}\nreturn {{ a: s.a, n: s.n }}\n{src_metric}\n");
        let dag = crate::graph::lower(&crate::syntax::parse(&src).unwrap()).dag.unwrap();
        let spec = dag.metrics()[0].clone();
        let rater: Arc<dyn Rater> = Arc::new(TerminalRater::new(std::io::Cursor::new(b"x\n7\n".to_vec()), Vec::new()));
        Metric::new(spec, Some(rater)).unwrap()
    }

    fn ex(v: Value) -> Example {
        Example { origin: "t:1".into(), fields: v.as_object().cloned().unwrap() }
    }

    #[test]
    fn items_f1_counts_whole_items_ignoring_case_and_order() {
        let f = |a: Value, b: Value| items_f1(&a, &b);
        assert!((f(json!(["Ann@Example.com", "bo@x.io"]), json!(["bo@x.io", "ann@example.com", "cy@z.org"])) - 0.8).abs() < 1e-9);
        assert_eq!(f(json!([]), json!([])), 1.0);
        assert_eq!(f(json!(["x"]), json!([])), 0.0);
        assert_eq!(f(json!(["ann lee"]), json!(["ann"])), 0.0, "a part of an item is not the item");
    }

    #[test]
    fn each_metric_scores_in_the_unit_interval() {
        let out = json!({"a": "The Eiffel Tower!", "n": 10.05}).as_object().cloned().unwrap();
        let e = ex(json!({"q": "?", "a": "eiffel tower", "n": 10.0}));
        let cases = [
            ("metric m = exact(output.a, example.a)", 0.0),
            ("metric m = normalized_exact(output.a, example.a)", 1.0),
            ("metric m = contains(output.a, example.a)", 1.0),
            ("metric m = f1(output.a, \"eiffel\")", 2.0 / 3.0),
            ("metric m = regex(output.a, \"^The\")", 1.0),
            ("metric m = numeric(output.n, example.n, tolerance: 0.01)", 1.0),
            ("metric m = numeric(output.n, example.n, tolerance: 0.001)", 0.0),
            ("metric m = human(\"helpful\")", 0.7),
        ];
        for (src, want) in cases {
            let got = metric(src).score(Some(&out), &e).unwrap();
            assert!((got - want).abs() < 1e-9, "{src}: {got}");
        }
        assert_eq!(metric(cases[1].0).score(None, &e).unwrap(), 0.0);
        assert_eq!(metric(cases[1].0).example_fields(), ["a"]);
    }

    #[test]
    fn the_terminal_rater_asks_once_per_distinct_output() {
        let rater = TerminalRater::new(std::io::Cursor::new(b"8\n".to_vec()), Vec::new());
        let e = ex(json!({"q": "hi"}));
        let out = json!({"a": "hello"}).as_object().cloned().unwrap();
        assert_eq!(rater.rate("c", &e, &out).unwrap(), 0.8);
        assert_eq!(rater.rate("c", &e, &out).unwrap(), 0.8, "remembered, not asked again (the input is used up)");
        let other = json!({"a": "bye"}).as_object().cloned().unwrap();
        assert!(rater.rate("c", &e, &other).is_err(), "a new output needs a new answer");
    }
}
