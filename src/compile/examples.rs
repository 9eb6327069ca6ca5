//! A program's own `example` blocks, as data and as tests.
//!
//! As data, every example not marked `held_out` joins `compile`'s training set, checked like
//! a dataset line ([`join_training`]). As tests, [`run_examples`] runs each example's inputs
//! through a [`Program`] and compares the outputs it gives with the ones the example expects
//! ([`ExampleRun`]): only the outputs an example names are compared, and a failed run fails
//! the example.

use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value};

use super::dataset::{self, Dataset, DatasetError, Example};
use crate::graph::{Dag, ExampleSpec};
use crate::runtime::Program;
use crate::syntax::LineIndex;

/// Where `example` stands in a source named `source_name`: `file:line (example NAME)`.
pub fn origin(example: &ExampleSpec, source_name: &str, source: &str) -> String {
    let line = LineIndex::new(source).line_col(source, example.span.start).line;
    format!("{source_name}:{line} (example {})", example.name)
}

/// The examples of `dag` that `compile` trains on (those not held out), as dataset rows.
pub fn training(dag: &Dag, source_name: &str, source: &str) -> Vec<Example> {
    let index = LineIndex::new(source);
    dag.examples()
        .iter()
        .filter(|e| !e.held_out)
        .map(|e| {
            let line = index.line_col(source, e.span.start).line;
            Example { origin: format!("{source_name}:{line} (example {})", e.name), fields: e.fields() }
        })
        .collect()
}

/// `data` with `examples` added to it: each example checked like a dataset line (the fields
/// `required` by the metric present), and the dataset's hash covering them, so an artifact's
/// provenance tells a change of examples. With no `data`, the examples alone (at least one).
pub fn join_training(data: Option<Dataset>, examples: Vec<Example>, dag: &Dag, required: &[String]) -> Result<Dataset, DatasetError> {
    for e in &examples {
        dataset::validate(e, dag, required)?;
    }
    let Some(mut data) = data else {
        let first = examples.first().map(|e| e.origin.rsplit_once(':').map_or(e.origin.as_str(), |(file, _)| file).to_string());
        let Some(file) = first else { return Err(DatasetError::Empty("the program's examples".into())) };
        let sha256 = hash_examples("", &examples);
        return Ok(Dataset { source: format!("{} examples in {file}", examples.len()), sha256, examples });
    };
    if examples.is_empty() {
        return Ok(data);
    }
    data.sha256 = hash_examples(&data.sha256, &examples);
    data.source = format!("{} + {} examples of the program", data.source, examples.len());
    data.examples.extend(examples);
    Ok(data)
}

/// SHA-256 over `prior` (a file's hash, or nothing) and each example's fields as JSON.
fn hash_examples(prior: &str, examples: &[Example]) -> String {
    let mut bytes = prior.as_bytes().to_vec();
    for e in examples {
        bytes.push(b'\n');
        bytes.extend(Value::Object(e.fields.clone()).to_string().into_bytes());
    }
    crate::fs::sha256_hex(&bytes)
}

/// What one example gave when run.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleRun {
    /// The example's name.
    pub name: String,
    /// Whether it is a test only.
    pub held_out: bool,
    /// The inputs it ran on.
    pub inputs: Map<String, Value>,
    /// The outputs it expects (some or all of the program's).
    pub expected: Map<String, Value>,
    /// The outputs the program gave, or why the run failed.
    pub outputs: Result<Map<String, Value>, String>,
    /// The expected outputs the program got wrong (or did not give), in the example's order.
    pub mismatched: Vec<String>,
    /// How long the run took.
    pub seconds: f64,
}

impl ExampleRun {
    /// Whether the run succeeded and gave every expected output.
    pub fn passed(&self) -> bool {
        self.outputs.is_ok() && self.mismatched.is_empty()
    }

    /// A unified diff of the expected outputs against the ones given (only the outputs the
    /// example names), `None` when they agree or the run failed.
    pub fn diff(&self) -> Option<String> {
        let actual = self.outputs.as_ref().ok()?;
        if self.mismatched.is_empty() {
            return None;
        }
        let given: Map<String, Value> = self.expected.keys().filter_map(|k| actual.get(k).map(|v| (k.clone(), v.clone()))).collect();
        let expected = pretty(&self.expected);
        let given = pretty(&given);
        let diff = similar::TextDiff::from_lines(&expected, &given);
        Some(diff.unified_diff().context_radius(3).header("expected", "actual").to_string())
    }
}

fn pretty(map: &Map<String, Value>) -> String {
    let mut s = serde_json::to_string_pretty(&Value::Object(map.clone())).unwrap_or_default();
    s.push('\n');
    s
}

/// Whether `actual` is the value `expected` asks for: equal JSON, numbers compared by value
/// (`1` and `1.0` agree, as an `int` example fits a `float` output).
pub fn same_value(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y)),
        (Value::Object(a), Value::Object(b)) => a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w))),
        (a, b) => a == b,
    }
}

/// Runs `example` on `program` and compares what it gives with what the example expects.
pub async fn run_example(program: &Program, example: &ExampleSpec) -> ExampleRun {
    let started = Instant::now();
    let outputs = program.run(example.inputs.clone()).await.map_err(|e| e.to_string());
    let mismatched = match &outputs {
        Ok(given) => example.outputs.iter().filter(|(k, v)| !given.get(*k).is_some_and(|g| same_value(v, g))).map(|(k, _)| k.clone()).collect(),
        Err(_) => Vec::new(),
    };
    ExampleRun {
        name: example.name.clone(),
        held_out: example.held_out,
        inputs: example.inputs.clone(),
        expected: example.outputs.clone(),
        outputs,
        mismatched,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Runs `examples` on `program`, at most `concurrency` at once, and gives the results in the
/// examples' order; `done` is told of each as it finishes.
pub async fn run_examples(program: &Program, examples: &[ExampleSpec], concurrency: usize, done: &(dyn Fn(&ExampleRun) + Sync)) -> Vec<ExampleRun> {
    let mut runs: Vec<(usize, ExampleRun)> = stream::iter(examples.iter().enumerate())
        .map(|(i, e)| async move {
            let run = run_example(program, e).await;
            done(&run);
            (i, run)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    runs.sort_by_key(|(i, _)| *i);
    runs.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dag(src: &str) -> Dag {
        let checked = crate::graph::check_text(src);
        checked.dag.unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
    }

    const PROGRAM: &str = "program p\ninput t: text\noutput c: label(a, b)\nsignature S { in t: text out c: label(a, b) }\n\
        step s = predict S { t: input.t }\nreturn { c: s.c }\n\
        example one { input { t: \"x\" } output { c: a } }\n\
        example two held_out { input { t: \"y\" } output { c: b } }\n";

    #[test]
    fn examples_not_held_out_join_the_training_data_with_their_origin() {
        let dag = dag(PROGRAM);
        let rows = training(&dag, "p.loop", PROGRAM);
        assert_eq!(rows.len(), 1, "the held-out example stays out");
        assert_eq!(rows[0].origin, "p.loop:7 (example one)");
        assert_eq!(Value::Object(rows[0].fields.clone()), json!({"t": "x", "c": "a"}));
        let data = join_training(None, rows.clone(), &dag, &["c".into()]).unwrap();
        assert_eq!(data.examples.len(), 1);
        let file = Dataset { source: "d.jsonl".into(), sha256: "abc".into(), examples: Vec::new() };
        let joined = join_training(Some(file.clone()), rows.clone(), &dag, &[]).unwrap();
        assert_ne!(joined.sha256, file.sha256, "the hash covers the examples");
        assert!(joined.source.starts_with("d.jsonl + 1 examples"), "{}", joined.source);
        let err = join_training(None, rows, &dag, &["gold".into()]).unwrap_err().to_string();
        assert_eq!(err, "p.loop:7 (example one): field `gold` missing (the metric reads `example.gold`)");
    }

    #[test]
    fn numbers_agree_by_value_and_everything_else_exactly() {
        assert!(same_value(&json!(1), &json!(1.0)));
        assert!(same_value(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2}])));
        assert!(!same_value(&json!("a"), &json!("a ")));
        assert!(!same_value(&json!([1]), &json!([1, 2])));
    }

    #[test]
    fn a_failed_example_shows_a_diff_of_the_outputs_it_names() {
        let run = ExampleRun {
            name: "one".into(),
            held_out: false,
            inputs: Map::new(),
            expected: json!({"c": "a"}).as_object().cloned().unwrap(),
            outputs: Ok(json!({"c": "b", "other": 1}).as_object().cloned().unwrap()),
            mismatched: vec!["c".into()],
            seconds: 0.0,
        };
        assert!(!run.passed());
        let diff = run.diff().unwrap();
        assert!(diff.contains("--- expected\n+++ actual\n"), "{diff}");
        assert!(diff.contains("-  \"c\": \"a\"\n+  \"c\": \"b\"\n"), "{diff}");
        assert!(!diff.contains("other"), "outputs the example does not name are not compared: {diff}");
    }
}
