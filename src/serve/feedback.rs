//! Checking feedback against what the program declared, before it reaches the store: the key
//! must be a declared feedback or an implicit signal, the payload must fit its kind (a score in
//! range, a label of the set), and a correction must be a value of the program's outputs,
//! checked exactly as a model's output is (`runtime::value::check_type`).
//!
//! The HTTP API and the library path (`Service::feedback`) both go through [`check_feedback`].

use serde_json::{Map, Value};

use crate::graph::{Dag, FeedbackKind, Type, IMPLICIT_SIGNALS};
use crate::runtime::value;
use crate::store::{FeedbackPayload, FeedbackSource, ImplicitSignal, NewFeedback, RunId};

/// Feedback as a caller sends it, before it is checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackInput {
    /// The caller's own id for it: sending it again stores nothing new.
    pub client_id: Option<String>,
    /// The run it is about.
    pub run_id: Option<RunId>,
    /// Which feedback: a declared key or an implicit signal.
    pub key: String,
    /// A numeric score (thumbs as 0 or 1, ratings, scores).
    pub score: Option<f64>,
    /// A categorical or text value.
    pub value: Option<String>,
    /// A corrected output: an object of program outputs, or, for a program with one output,
    /// that output's value alone.
    pub correction: Option<Value>,
    /// Free text on any feedback.
    pub comment: Option<String>,
    /// Who gives it (default: `implicit` for implicit signals, else `api`).
    pub source: Option<FeedbackSource>,
    /// Which user gives it (pseudonymous).
    pub user_id: Option<String>,
}

/// Why feedback was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    /// Occurs when the feedback names no run.
    #[error("feedback needs a `run_id`")]
    MissingRun,
    /// Occurs when the key is neither declared by the program nor an implicit signal.
    #[error("program `{program}` takes no feedback `{key}` (it takes: {known})")]
    UnknownKey {
        /// The program.
        program: String,
        /// The key sent.
        key: String,
        /// What it takes.
        known: String,
    },
    /// Occurs when the payload does not fit the feedback's kind.
    #[error("feedback `{key}` {reason}")]
    Payload {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Occurs when a correction is not a value of the program's outputs.
    #[error("the correction's {what}: {reason}")]
    Correction {
        /// Which part (`output `label``, or the whole value).
        what: String,
        /// What is wrong, as for a model's output.
        reason: String,
    },
}

/// Checks `input` against the feedback `dag` takes and turns it into the store's form.
pub fn check_feedback(dag: &Dag, input: FeedbackInput) -> Result<NewFeedback, FeedbackError> {
    let run_id = input.run_id.clone().ok_or(FeedbackError::MissingRun)?;
    let key = input.key.as_str();
    let payload_err = |reason: String| FeedbackError::Payload { key: key.to_string(), reason };
    let given = [input.score.is_some(), input.value.is_some(), input.correction.is_some()].iter().filter(|g| **g).count();
    if given > 1 {
        return Err(payload_err("takes one of `score`, `value` or `correction`, not several".into()));
    }
    if IMPLICIT_SIGNALS.contains(&key) {
        if matches!(input.source, Some(s) if s != FeedbackSource::Implicit) {
            return Err(payload_err("is an implicit signal: its source is `implicit`".into()));
        }
        let signal = match key {
            "edited" => {
                let edited = input.correction.as_ref().ok_or_else(|| payload_err("carries the edited output as `correction`".into()))?;
                ImplicitSignal::Edited(correction(dag, edited)?)
            }
            _ if given > 0 => return Err(payload_err("is an implicit signal and carries no `score`, `value` or `correction`".into())),
            "accepted" => ImplicitSignal::Accepted,
            "rejected" => ImplicitSignal::Rejected,
            _ => ImplicitSignal::Regenerated,
        };
        let mut f = NewFeedback::implicit(run_id, signal);
        (f.client_id, f.comment, f.user_id) = (input.client_id, input.comment, input.user_id);
        return Ok(f);
    }
    let Some(spec) = dag.feedback_spec(key) else {
        let mut known: Vec<String> = dag.feedback().iter().map(|f| format!("{}: {}", f.name, f.kind.describe())).collect();
        known.push(format!("the implicit signals {}", IMPLICIT_SIGNALS.join(", ")));
        return Err(FeedbackError::UnknownKey { program: dag.name().to_string(), key: key.to_string(), known: known.join(", ") });
    };
    if input.source == Some(FeedbackSource::Implicit) {
        return Err(payload_err(format!("is not an implicit signal (those are {})", IMPLICIT_SIGNALS.join(", "))));
    }
    let score = |range: &dyn Fn(f64) -> Result<(), String>| -> Result<FeedbackPayload, FeedbackError> {
        let s = input.score.ok_or_else(|| payload_err(format!("takes a `score` ({})", spec.kind.describe())))?;
        if !s.is_finite() {
            return Err(payload_err(format!("takes a finite score, not {s}")));
        }
        range(s).map_err(&payload_err)?;
        Ok(FeedbackPayload::Score(s))
    };
    let payload = match &spec.kind {
        FeedbackKind::Bool => score(&|s| if s == 0.0 || s == 1.0 { Ok(()) } else { Err(format!("takes a score of 0 or 1, not {s}")) })?,
        FeedbackKind::Int { min, max } => score(&|s| {
            if s.fract() != 0.0 {
                return Err(format!("takes a whole-number score, not {s}"));
            }
            in_range(s, min.map(|m| m as f64), max.map(|m| m as f64))
        })?,
        FeedbackKind::Float { min, max } => score(&|s| in_range(s, *min, *max))?,
        FeedbackKind::Label(labels) => {
            let v = input.value.as_ref().ok_or_else(|| payload_err(format!("takes a `value`, one of {}", labels.join(", "))))?;
            if !labels.contains(v) {
                return Err(payload_err(format!("takes one of {}, not `{}`", labels.join(", "), v.chars().take(80).collect::<String>())));
            }
            FeedbackPayload::Value(v.clone())
        }
        FeedbackKind::Text => {
            let v = input.value.as_ref().ok_or_else(|| payload_err("takes a text `value`".into()))?;
            if v.trim().is_empty() {
                return Err(payload_err("takes a non-empty text `value`".into()));
            }
            FeedbackPayload::Value(v.clone())
        }
        FeedbackKind::Correction => {
            let c = input.correction.as_ref().ok_or_else(|| payload_err("takes a `correction`: the outputs as they should have been".into()))?;
            FeedbackPayload::Correction(correction(dag, c)?)
        }
    };
    let mut f = NewFeedback::new(run_id, key, payload);
    f.source = input.source.unwrap_or(FeedbackSource::Api);
    (f.client_id, f.comment, f.user_id) = (input.client_id, input.comment, input.user_id);
    Ok(f)
}

fn in_range(s: f64, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    match (min, max) {
        (Some(lo), Some(hi)) if s < lo || s > hi => Err(format!("takes a score from {lo} to {hi}, not {s}")),
        _ => Ok(()),
    }
}

/// A correction as an object of program outputs: every key an output, every value of its
/// type (a label outside the label set is refused, as it would be from a model). A program
/// with one output also takes that output's value alone. Outputs left out are not corrected.
pub fn correction(dag: &Dag, given: &Value) -> Result<Value, FeedbackError> {
    let outputs = dag.outputs();
    let names: Vec<&str> = outputs.iter().map(|f| f.name.as_str()).collect();
    let is_outputs = |m: &Map<String, Value>| !m.is_empty() && m.keys().all(|k| names.contains(&k.as_str()));
    let object = match (given, outputs) {
        (Value::Object(m), _) if is_outputs(m) => m.clone(),
        (v, [one]) if !v.is_object() || one.ty == Type::Json => {
            let mut m = Map::new();
            m.insert(one.name.clone(), v.clone());
            m
        }
        (Value::Object(m), _) => {
            let reason = format!("not an output of the program (its outputs: {})", names.join(", "));
            return Err(match m.keys().find(|k| !names.contains(&k.as_str())) {
                Some(unknown) => FeedbackError::Correction { what: format!("field `{unknown}`"), reason },
                None => FeedbackError::Correction { what: "value".into(), reason: "names no output".into() },
            });
        }
        _ => return Err(FeedbackError::Correction { what: "value".into(), reason: format!("expected an object of outputs ({})", names.join(", ")) }),
    };
    for (name, v) in &object {
        if let Some(field) = outputs.iter().find(|f| &f.name == name) {
            value::check_type(&field.ty, v).map_err(|reason| FeedbackError::Correction { what: format!("output `{name}`"), reason })?;
        }
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dag(extra: &str) -> Dag {
        let src = format!(
            "program triage\ninput ticket: text\noutput team: label(billing, tech)\noutput reply: text\n\
             signature S \"Route.\" {{ in ticket: text out team: label(billing, tech) out reply: text }}\n\
             step s = predict S {{ ticket: input.ticket }}\nreturn {{ team: s.team, reply: s.reply }}\n{extra}"
        );
        crate::runtime::checked_dag("t.loop", &src).unwrap()
    }

    fn input(key: &str) -> FeedbackInput {
        FeedbackInput { run_id: Some(RunId::generate()), key: key.into(), ..FeedbackInput::default() }
    }

    /// Checks `f`: `Ok(payload)` or the error's text.
    fn check(dag: &Dag, f: FeedbackInput) -> Result<FeedbackPayload, String> {
        check_feedback(dag, f).map(|f| f.payload).map_err(|e| e.to_string())
    }

    #[test]
    fn without_declarations_a_program_takes_thumbs_and_corrections() {
        let d = dag("");
        assert_eq!(check(&d, FeedbackInput { score: Some(1.0), ..input("thumbs") }), Ok(FeedbackPayload::Score(1.0)));
        assert!(check(&d, FeedbackInput { score: Some(0.5), ..input("thumbs") }).unwrap_err().contains("0 or 1"));
        let c = json!({"team": "tech"});
        assert_eq!(check(&d, FeedbackInput { correction: Some(c.clone()), ..input("correction") }), Ok(FeedbackPayload::Correction(c)));
        let err = check(&d, FeedbackInput { score: Some(4.0), ..input("rating") }).unwrap_err();
        assert!(err.contains("takes no feedback `rating`") && err.contains("thumbs: bool"), "{err}");
    }

    #[test]
    fn a_correction_with_a_label_outside_the_set_or_an_unknown_output_is_refused() {
        let d = dag("");
        let err = check(&d, FeedbackInput { correction: Some(json!({"team": "sales"})), ..input("correction") }).unwrap_err();
        assert!(err.contains("output `team`") && err.contains("`sales` is not one of the labels billing, tech"), "{err}");
        let err = check(&d, FeedbackInput { correction: Some(json!({"tema": "tech"})), ..input("correction") }).unwrap_err();
        assert!(err.contains("field `tema`"), "{err}");
        let err = check(&d, FeedbackInput { correction: Some(json!("tech")), ..input("correction") }).unwrap_err();
        assert!(err.contains("expected an object of outputs (team, reply)"), "{err}");
        let err = check(&d, FeedbackInput { correction: Some(json!({"reply": 3})), ..input("correction") }).unwrap_err();
        assert!(err.contains("output `reply`"), "{err}");
    }

    #[test]
    fn a_program_with_one_output_takes_its_value_alone_as_a_correction() {
        let src = "program s\ninput t: text\noutput mood: label(up, down)\nsignature S \"x\" { in t: text out mood: label(up, down) }\n\
                   step s = predict S { t: input.t }\nreturn { mood: s.mood }\n";
        let d = crate::runtime::checked_dag("s.loop", src).unwrap();
        assert_eq!(check(&d, FeedbackInput { correction: Some(json!("up")), ..input("correction") }), Ok(FeedbackPayload::Correction(json!({"mood": "up"}))));
        assert!(check(&d, FeedbackInput { correction: Some(json!("sideways")), ..input("correction") }).is_err());
        assert!(check(&d, FeedbackInput { correction: Some(json!({"feeling": "up"})), ..input("correction") })
            .unwrap_err()
            .contains("field `feeling`: not an output of the program (its outputs: mood)"));
    }

    #[test]
    fn declared_feedback_is_checked_by_its_kind() {
        let d = dag("feedback rating: int(1..5)\nfeedback conf: float(0..1)\nfeedback issue: label(rude, slow)\nfeedback note: text\nfeedback correction\n");
        assert_eq!(check(&d, FeedbackInput { score: Some(5.0), ..input("rating") }), Ok(FeedbackPayload::Score(5.0)));
        for (f, says) in [
            (FeedbackInput { score: Some(6.0), ..input("rating") }, "from 1 to 5, not 6"),
            (FeedbackInput { score: Some(2.5), ..input("rating") }, "whole-number"),
            (FeedbackInput { value: Some("5".into()), ..input("rating") }, "takes a `score` (int(1..5))"),
            (FeedbackInput { score: Some(1.5), ..input("conf") }, "from 0 to 1"),
            (FeedbackInput { value: Some("angry".into()), ..input("issue") }, "one of rude, slow"),
            (FeedbackInput { value: Some(" ".into()), ..input("note") }, "non-empty"),
            (FeedbackInput { score: Some(1.0), ..input("thumbs") }, "takes no feedback `thumbs`"),
            (FeedbackInput { score: Some(1.0), value: Some("x".into()), ..input("rating") }, "not several"),
            (FeedbackInput { score: Some(f64::NAN), ..input("conf") }, "finite"),
            (FeedbackInput { score: Some(3.0), run_id: None, ..input("rating") }, "needs a `run_id`"),
        ] {
            let err = check(&d, f).unwrap_err();
            assert!(err.contains(says), "{err} (expected {says:?})");
        }
        assert_eq!(check(&d, FeedbackInput { value: Some("slow".into()), ..input("issue") }), Ok(FeedbackPayload::Value("slow".into())));
    }

    #[test]
    fn implicit_signals_are_taken_by_every_program_with_source_implicit() {
        let d = dag("feedback rating: int(1..5)\n");
        let f = check_feedback(&d, input("accepted")).unwrap();
        assert_eq!((f.source, f.payload), (FeedbackSource::Implicit, FeedbackPayload::Score(1.0)));
        let f = check_feedback(&d, FeedbackInput { correction: Some(json!({"team": "billing"})), ..input("edited") }).unwrap();
        assert_eq!(f.payload, FeedbackPayload::Correction(json!({"team": "billing"})));
        assert!(check(&d, input("edited")).unwrap_err().contains("edited output"));
        assert!(check(&d, FeedbackInput { correction: Some(json!({"team": "x"})), ..input("edited") }).is_err());
        assert!(check(&d, FeedbackInput { score: Some(1.0), ..input("accepted") }).unwrap_err().contains("carries no"));
        assert!(check(&d, FeedbackInput { source: Some(FeedbackSource::User), ..input("rejected") }).unwrap_err().contains("source is `implicit`"));
        assert!(check(&d, FeedbackInput { score: Some(3.0), source: Some(FeedbackSource::Implicit), ..input("rating") }).is_err());
    }
}
