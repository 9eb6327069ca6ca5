//! What one piece of feedback says of the output it was given on: the one rule by which the
//! loop asks "did people approve this output?". The export, the `human("KEY")` metric, the
//! judge's calibration, the canary and the review dashboard all read feedback through
//! [`opinion`]; none weighs signals its own way.
//!
//! The rules, in one place:
//!
//! - **A model's feedback** (source `model`, an LM judge) is nobody's opinion: it says nothing.
//! - **Implicit signals** (source `implicit`, [`ImplicitSignal`]): `accepted` approves the
//!   output, `rejected` and `regenerated` reject it, `edited` labels it with the edited output.
//! - **A correction** (a correction payload under any key) labels the output with what it
//!   should have been. A program with one output may be corrected with that output's bare
//!   value; fields a correction leaves out keep the run's answer. It approves the output when
//!   every corrected field equals the answer (the person kept it), and rejects it otherwise.
//! - **A score** under a declared feedback with a range (`bool`, `int(LO..HI)`,
//!   `float(LO..HI)`, or the default `thumbs`) rates the output, normalised to [0, 1]. Higher
//!   is better, as `human("KEY")` maximises it: above 0.5 approves, below 0.5 rejects, exactly
//!   0.5 says neither.
//! - Anything else (categorical values, free text, scores without a range, keys the program
//!   does not declare) says nothing about the output.
//!
//! Who spoke is kept as a [`Voice`], and each use decides which voices it hears, documented
//! at the use: the export and the canary hear people and their behaviour (the export puts
//! explicit labels before implicit ones), the human metric and the judge's calibration hear
//! people only. Several opinions on one output are combined by the use too (the export by
//! agreement between users, the canary by the newest); a per-user weight would plug in there,
//! on the opinions this module gives.

use serde_json::{Map, Value};

use crate::graph::{Dag, FeedbackKind};
use crate::store::{FeedbackPayload, FeedbackSource, ImplicitSignal, StoredFeedback, StoredRun};

/// Who gave an opinion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Voice {
    /// A person who said it: a user in the product, an API caller, a reviewer (sources
    /// `user`, `api`, `annotation`).
    Person,
    /// What a person did: an implicit signal (source `implicit`).
    Behaviour,
}

/// What an opinion says.
#[derive(Clone, Debug, PartialEq)]
pub enum Said {
    /// The output is right as it is (`accepted`).
    Approved,
    /// The output is wrong, and nothing says what is right (`rejected`, `regenerated`).
    Rejected,
    /// The output rated under the declared feedback `key`, normalised to [0, 1].
    Rated {
        /// The feedback key.
        key: String,
        /// The score, 0 the worst the declaration allows and 1 the best.
        score: f64,
    },
    /// The outputs as they should be (a correction or an edit): the run's answer with the
    /// corrected fields replaced.
    Labelled {
        /// The outputs.
        outputs: Map<String, Value>,
        /// Whether every corrected field equals the run's answer (the person kept it).
        kept: bool,
    },
}

/// What one piece of feedback says of its run's output, and who said it.
#[derive(Clone, Debug, PartialEq)]
pub struct Opinion {
    /// Who said it.
    pub voice: Voice,
    /// What they said.
    pub said: Said,
}

impl Opinion {
    /// How good the output is by this opinion, in [0, 1]: 1 approved or kept, 0 rejected or
    /// corrected to something else, the normalised score of a rating.
    pub fn score(&self) -> f64 {
        match &self.said {
            Said::Approved => 1.0,
            Said::Rejected => 0.0,
            Said::Rated { score, .. } => *score,
            Said::Labelled { kept, .. } => f64::from(u8::from(*kept)),
        }
    }

    /// Whether the opinion approves of the output: `None` for a rating of exactly 0.5.
    pub fn approves(&self) -> Option<bool> {
        let s = self.score();
        if s > 0.5 {
            Some(true)
        } else if s < 0.5 {
            Some(false)
        } else {
            None
        }
    }
}

/// The range a declared score feedback is normalised from, if it has one.
pub fn scale(kind: &FeedbackKind) -> Option<(f64, f64)> {
    match kind {
        FeedbackKind::Bool => Some((0.0, 1.0)),
        FeedbackKind::Int { min: Some(lo), max: Some(hi) } if lo < hi => Some((*lo as f64, *hi as f64)),
        FeedbackKind::Float { min: Some(lo), max: Some(hi) } if lo < hi => Some((*lo, *hi)),
        _ => None,
    }
}

/// A correction as outputs: an object of outputs, or a single output's bare value.
fn corrected_fields(dag: &Dag, correction: &Value) -> Option<Map<String, Value>> {
    match (correction, dag.outputs()) {
        (Value::Object(o), _) if !o.is_empty() => Some(o.clone()),
        (v, [only]) => Some(Map::from_iter([(only.name.clone(), v.clone())])),
        _ => None,
    }
}

/// A correction of `answer` (the run's outputs, if it answered): the labelled outputs and
/// whether the person kept the answer.
fn labelled(dag: &Dag, correction: &Value, answer: Option<&Value>) -> Option<Said> {
    let fields = corrected_fields(dag, correction)?;
    let answer = answer.and_then(Value::as_object);
    let kept = answer.is_some_and(|a| fields.iter().all(|(k, v)| a.get(k) == Some(v)));
    let mut outputs = answer.cloned().unwrap_or_default();
    outputs.extend(fields);
    Some(Said::Labelled { outputs, kept })
}

/// What feedback under `key` with `payload`, from `source`, says of a run of `dag` that
/// answered `answer` (its outputs; `None` when the run failed). `None` when it says nothing
/// about the output (see the module's rules).
pub fn opinion(key: &str, payload: &FeedbackPayload, source: FeedbackSource, answer: Option<&Value>, dag: &Dag) -> Option<Opinion> {
    let voice = match source {
        FeedbackSource::Model => return None,
        FeedbackSource::Implicit => Voice::Behaviour,
        FeedbackSource::User | FeedbackSource::Api | FeedbackSource::Annotation => Voice::Person,
    };
    let said = if voice == Voice::Behaviour {
        match ImplicitSignal::from_parts(key, payload)? {
            ImplicitSignal::Accepted => Said::Approved,
            ImplicitSignal::Rejected | ImplicitSignal::Regenerated => Said::Rejected,
            ImplicitSignal::Edited(v) => labelled(dag, &v, answer)?,
        }
    } else {
        match payload {
            FeedbackPayload::Correction(c) => labelled(dag, c, answer)?,
            FeedbackPayload::Score(s) => {
                let (lo, hi) = dag.feedback_spec(key).and_then(|spec| scale(&spec.kind))?;
                Said::Rated { key: key.to_string(), score: ((s - lo) / (hi - lo)).clamp(0.0, 1.0) }
            }
            FeedbackPayload::Value(_) => return None,
        }
    };
    Some(Opinion { voice, said })
}

/// What stored feedback `f` on `run` says of the run's output.
pub fn of_feedback(f: &StoredFeedback, run: &StoredRun, dag: &Dag) -> Option<Opinion> {
    opinion(&f.key, &f.payload, f.source, run.outputs.as_ref(), dag)
}

/// Whether people approved of `run`'s output, for live comparisons such as the canary: the
/// newest opinion (of a person or an implicit signal) that approves or rejects decides;
/// `None` when no feedback on it does.
pub fn run_approval(run: &StoredRun, dag: &Dag) -> Option<bool> {
    let mut feedback: Vec<&StoredFeedback> = run.feedback.iter().collect();
    feedback.sort_by_key(|f| f.created.millis());
    feedback.iter().rev().find_map(|f| of_feedback(f, run, dag).and_then(|o| o.approves()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dag(feedback: &str) -> Dag {
        let src = format!(
            "program p\ninput text: text\noutput mood: label(a, b)\nsignature S {{ in t: text out mood: label(a, b) }}\n\
             step s = predict S {{ t: input.text }}\nreturn {{ mood: s.mood }}\n{feedback}"
        );
        crate::graph::check_text(&src).dag.unwrap()
    }

    fn two_outputs() -> Dag {
        let src = "program p\ninput text: text\noutput mood: label(a, b)\noutput why: text\n\
                   signature S { in t: text out mood: label(a, b) out why: text }\n\
                   step s = predict S { t: input.text }\nreturn { mood: s.mood, why: s.why }\n";
        crate::graph::check_text(src).dag.unwrap()
    }

    fn said(key: &str, payload: FeedbackPayload, source: FeedbackSource, answer: Value, dag: &Dag) -> Option<(Voice, Said)> {
        opinion(key, &payload, source, Some(&answer), dag).map(|o| (o.voice, o.said))
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn implicit_signals_approve_reject_or_label_the_output() {
        let d = dag("");
        let a = json!({"mood": "a"});
        let implicit = |key: &str, payload| said(key, payload, FeedbackSource::Implicit, a.clone(), &d);
        assert_eq!(implicit("accepted", FeedbackPayload::Score(1.0)), Some((Voice::Behaviour, Said::Approved)));
        assert_eq!(implicit("rejected", FeedbackPayload::Score(0.0)), Some((Voice::Behaviour, Said::Rejected)));
        assert_eq!(implicit("regenerated", FeedbackPayload::Score(0.0)), Some((Voice::Behaviour, Said::Rejected)));
        assert_eq!(
            implicit("edited", FeedbackPayload::Correction(json!({"mood": "b"}))),
            Some((Voice::Behaviour, Said::Labelled { outputs: obj(json!({"mood": "b"})), kept: false }))
        );
        // An implicit source with a key outside the vocabulary says nothing.
        assert_eq!(implicit("thumbs", FeedbackPayload::Score(1.0)), None);
    }

    #[test]
    fn a_models_feedback_says_nothing() {
        let d = dag("");
        for payload in [FeedbackPayload::Score(1.0), FeedbackPayload::Correction(json!({"mood": "b"}))] {
            assert_eq!(said("thumbs", payload, FeedbackSource::Model, json!({"mood": "a"}), &d), None);
        }
    }

    #[test]
    fn a_correction_labels_the_output_and_approves_only_what_it_keeps() {
        let d = dag("");
        let correct = |c: Value| said("correction", FeedbackPayload::Correction(c), FeedbackSource::User, json!({"mood": "a"}), &d).map(|(_, s)| s);
        assert_eq!(correct(json!({"mood": "a"})), Some(Said::Labelled { outputs: obj(json!({"mood": "a"})), kept: true }));
        assert_eq!(correct(json!({"mood": "b"})), Some(Said::Labelled { outputs: obj(json!({"mood": "b"})), kept: false }));
        // The bare value of a single output is a correction of it.
        assert_eq!(correct(json!("b")), Some(Said::Labelled { outputs: obj(json!({"mood": "b"})), kept: false }));
        // A correction of a failed run labels it and keeps nothing.
        let o = opinion("correction", &FeedbackPayload::Correction(json!({"mood": "a"})), FeedbackSource::Annotation, None, &d).unwrap();
        assert_eq!((o.voice, o.approves()), (Voice::Person, Some(false)));

        // Fields a correction leaves out keep the answer.
        let d2 = two_outputs();
        let answer = json!({"mood": "a", "why": "sunny"});
        let partial = said("correction", FeedbackPayload::Correction(json!({"mood": "b"})), FeedbackSource::Api, answer.clone(), &d2);
        assert_eq!(partial.map(|(_, s)| s), Some(Said::Labelled { outputs: obj(json!({"mood": "b", "why": "sunny"})), kept: false }));
        let same = said("correction", FeedbackPayload::Correction(json!({"why": "sunny"})), FeedbackSource::Api, answer, &d2);
        assert_eq!(same.map(|(_, s)| s), Some(Said::Labelled { outputs: obj(json!({"mood": "a", "why": "sunny"})), kept: true }));
        // With several outputs a bare value names none of them.
        assert_eq!(said("correction", FeedbackPayload::Correction(json!("b")), FeedbackSource::Api, json!({}), &d2), None);
    }

    #[test]
    fn a_declared_score_rates_the_output_from_its_range_and_others_say_nothing() {
        let d = dag("feedback stars: int(1..5)\nfeedback open: int\nfeedback tag: label(x, y)\nfeedback note: text\nfeedback correction\n");
        let rate = |key: &str, payload| said(key, payload, FeedbackSource::User, json!({"mood": "a"}), &d).map(|(_, s)| s);
        assert_eq!(rate("stars", FeedbackPayload::Score(4.0)), Some(Said::Rated { key: "stars".into(), score: 0.75 }));
        assert_eq!(rate("open", FeedbackPayload::Score(4.0)), None, "a score without a range");
        assert_eq!(rate("tag", FeedbackPayload::Value("x".into())), None);
        assert_eq!(rate("note", FeedbackPayload::Value("meh".into())), None);
        assert_eq!(rate("thumbs", FeedbackPayload::Score(1.0)), None, "a program that declares feedback takes no default thumbs");
        // The default thumbs of a program that declares no feedback.
        let plain = dag("");
        let thumbs = |s: f64| opinion("thumbs", &FeedbackPayload::Score(s), FeedbackSource::User, None, &plain).and_then(|o| o.approves());
        assert_eq!((thumbs(1.0), thumbs(0.0)), (Some(true), Some(false)));
        // The middle of a range says neither.
        let mid = opinion("stars", &FeedbackPayload::Score(3.0), FeedbackSource::User, None, &d).unwrap();
        assert_eq!((mid.score(), mid.approves()), (0.5, None));
    }

    #[test]
    fn a_runs_approval_is_its_newest_opinion_that_decides() {
        use crate::learn::test_runs::{stored_feedback, stored_run};
        let d = dag("");
        let fb = |id: &str, key: &str, payload, source, at| stored_feedback(id, key, payload, source, None, at);
        let run = |feedback| stored_run("r", "p", "x", "a", feedback);
        assert_eq!(run_approval(&run(vec![]), &d), None);
        let up_then_down = run(vec![
            fb("f2", "rejected", FeedbackPayload::Score(0.0), FeedbackSource::Implicit, 2),
            fb("f1", "thumbs", FeedbackPayload::Score(1.0), FeedbackSource::User, 1),
        ]);
        assert_eq!(run_approval(&up_then_down, &d), Some(false), "the newer rejection decides, whatever the order read");
        let judge_only = run(vec![fb("f1", "thumbs", FeedbackPayload::Score(1.0), FeedbackSource::Model, 1)]);
        assert_eq!(run_approval(&judge_only, &d), None, "a judge is not people");
        let kept = run(vec![fb("f1", "correction", FeedbackPayload::Correction(json!({"mood": "a"})), FeedbackSource::Annotation, 1)]);
        assert_eq!(run_approval(&kept, &d), Some(true));
    }
}
