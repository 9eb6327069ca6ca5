//! Scoring by what people said: the `human("KEY")` metric answered from stored feedback, and
//! the calibration of an LM judge against stored human ratings before a round may use it.
//!
//! A round never asks a person: it reads what people already said of stored runs, each piece
//! read through [`mod@super::opinion`]. An answer is scored by the mean of the human ratings given
//! to that same answer for that same input; a correction rates the corrected answer 1 and the
//! answer it replaced 0. Only people's opinions count ([`Voice::Person`]): an implicit signal
//! is not a rating of the criterion, and a model's feedback is nobody's opinion. People whose
//! [trust] (judged against reviewers, other users and the round's holdout) is below
//! [`DEFAULT_MIN_TRUST`] are not heard, and each rating counts
//! by its rater's trust weight (log-odds), so a reliable rater outweighs a doubtful one.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::opinion::{of_feedback, scale, Opinion, Said, Voice};
use super::trust::{self, rater_of, DEFAULT_MIN_TRUST};
use super::LearnError;
use crate::compile::{Example, Metric, MetricError, Rater};
use crate::graph::Dag;
use crate::store::StoredRun;

/// The score of an answer nobody rated for its input: unknown, so halfway.
pub const UNRATED: f64 = 0.5;

/// The fewest rated runs a judge is calibrated on.
pub const MIN_CALIBRATION_ITEMS: usize = 10;

/// The most rated runs a judge is calibrated on (the newest), bounding the model calls.
pub const MAX_CALIBRATION_ITEMS: usize = 60;

/// A canonical key of the named fields of `values` (independent of field order).
fn key_of<'a>(names: impl Iterator<Item = &'a String>, values: &Map<String, Value>) -> String {
    let picked: BTreeMap<&str, &Value> = names.filter_map(|n| values.get(n).map(|v| (n.as_str(), v))).collect();
    serde_json::to_string(&picked).unwrap_or_default()
}

/// Human ratings of stored answers for one criterion: a [`Rater`] for `human("KEY")`.
#[derive(Debug)]
pub struct StoredRatings {
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// (input key, answer key) → (trust-weighted sum of normalised scores, sum of weights).
    ratings: HashMap<(String, String), (f64, f64)>,
}

impl StoredRatings {
    /// The ratings under `criterion` (a declared `bool` or bounded score feedback of `dag`)
    /// and every correction, read from `runs`; `reference` (human-labelled holdout examples)
    /// helps judge the raters' trust.
    pub fn from_runs(runs: &[StoredRun], dag: &Dag, criterion: &str, reference: &[Example]) -> Result<StoredRatings, LearnError> {
        let Some(spec) = dag.feedback().iter().find(|f| f.name == criterion) else {
            let declared: Vec<&str> = dag.feedback().iter().map(|f| f.name.as_str()).collect();
            return Err(LearnError::UnknownCriterion { criterion: criterion.to_string(), declared: declared.join(", ") });
        };
        if scale(&spec.kind).is_none() {
            return Err(LearnError::UnboundedCriterion { criterion: criterion.to_string() });
        }
        let inputs: Vec<String> = dag.inputs().iter().map(|f| f.name.clone()).collect();
        let outputs: Vec<String> = dag.outputs().iter().map(|f| f.name.clone()).collect();
        let table = trust::of_runs(runs, dag, reference);
        let mut ratings: HashMap<(String, String), (f64, f64)> = HashMap::new();
        let mut add = |input: &str, answer: String, score: f64, weight: f64| {
            let e = ratings.entry((input.to_string(), answer)).or_insert((0.0, 0.0));
            e.0 += score * weight;
            e.1 += weight;
        };
        for run in runs {
            let (Some(run_inputs), Some(Value::Object(answer))) = (run.inputs.as_object(), run.outputs.as_ref()) else { continue };
            let input = key_of(inputs.iter(), run_inputs);
            let answer_key = key_of(outputs.iter(), answer);
            for f in &run.feedback {
                let Some(o) = of_feedback(f, run, dag).filter(|o| o.voice == Voice::Person) else { continue };
                let rater = rater_of(f, run);
                if table.trust(&rater) < DEFAULT_MIN_TRUST {
                    continue;
                }
                // A tiny floor, so raters of equal trust count as equals (as heads).
                let w = table.weight(&rater) + 1e-6;
                match o.said {
                    Said::Rated { key, score } if key == criterion => add(&input, answer_key.clone(), score, w),
                    Said::Labelled { outputs: corrected, kept } => {
                        if !kept {
                            add(&input, answer_key.clone(), 0.0, w);
                        }
                        add(&input, key_of(outputs.iter(), &corrected), 1.0, w);
                    }
                    _ => {}
                }
            }
        }
        Ok(StoredRatings { inputs, outputs, ratings })
    }

    /// How many (input, answer) pairs people rated.
    pub fn rated(&self) -> usize {
        self.ratings.len()
    }
}

impl Rater for StoredRatings {
    fn rate(&self, _criterion: &str, example: &Example, outputs: &Map<String, Value>) -> Result<f64, MetricError> {
        let key = (key_of(self.inputs.iter(), &example.fields), key_of(self.outputs.iter(), outputs));
        Ok(self.ratings.get(&key).map_or(UNRATED, |(sum, w)| sum / w))
    }
}

/// How well an LM judge agrees with people on stored runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// The share of rated runs where the judge and people agree on pass (≥ 0.5) or fail.
    pub agreement: f64,
    /// Rated runs the judge scored.
    pub items: usize,
    /// Rated runs the judge could not score (its rubric failed on them).
    pub failed: usize,
}

/// What people (not their implicit signals, not a model) said of `run`, by [`opinion`].
fn people<'a>(run: &'a StoredRun, dag: &'a Dag) -> impl Iterator<Item = Opinion> + 'a {
    run.feedback.iter().filter_map(move |f| of_feedback(f, run, dag)).filter(|o| o.voice == Voice::Person)
}

/// What people said of a run, in [0, 1]: the mean score of their opinions of it (ratings
/// under any declared range, corrections); `None` when no person rated it.
fn human_score(run: &StoredRun, dag: &Dag) -> Option<f64> {
    run.outputs.as_ref()?.as_object()?;
    let scores: Vec<f64> = people(run, dag).map(|o| o.score()).collect();
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

/// Runs the judge of `metric` on the newest stored runs people rated (at most
/// [`MAX_CALIBRATION_ITEMS`]) and measures how often it agrees with them.
pub async fn calibrate(metric: &Metric, runs: &[StoredRun], dag: &Dag) -> Calibration {
    let rated: Vec<(&StoredRun, f64)> = runs.iter().rev().filter_map(|r| human_score(r, dag).map(|s| (r, s))).take(MAX_CALIBRATION_ITEMS).collect();
    let (mut agree, mut items, mut failed) = (0usize, 0usize, 0usize);
    for (run, human) in rated {
        let (Some(inputs), Some(Value::Object(answer))) = (run.inputs.as_object(), run.outputs.as_ref()) else { continue };
        let example = Example { origin: format!("run {}", run.id), fields: inputs.clone() };
        match metric.judge(Some(answer), &example).await {
            Ok((score, _)) => {
                items += 1;
                agree += usize::from((score >= 0.5) == (human >= 0.5));
            }
            Err(_) => failed += 1,
        }
    }
    Calibration { agreement: if items == 0 { 0.0 } else { agree as f64 / items as f64 }, items, failed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::test_runs::{stored_feedback, stored_run};
    use crate::store::{FeedbackPayload, FeedbackSource};
    use serde_json::json;

    fn dag() -> Dag {
        let src = "program p\ninput text: text\noutput mood: label(a, b)\nsignature S { in t: text out mood: label(a, b) }\n\
                   step s = predict S { t: input.text }\nreturn { mood: s.mood }\nfeedback stars: int(1..5)\nfeedback open: int\n\
                   feedback correction\n";
        crate::graph::check_text(src).dag.unwrap()
    }

    fn run(text: &str, said: &str, feedback: Vec<(&str, FeedbackPayload, FeedbackSource)>) -> StoredRun {
        let feedback =
            feedback.into_iter().enumerate().map(|(i, (key, payload, source))| stored_feedback(&format!("f{i}"), key, payload, source, None, 1)).collect();
        stored_run("r", "p", text, said, feedback)
    }

    fn ex(text: &str) -> Example {
        Example { origin: "t".into(), fields: json!({ "text": text }).as_object().cloned().unwrap_or_default() }
    }

    fn answer(mood: &str) -> Map<String, Value> {
        json!({ "mood": mood }).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_answer_scores_the_mean_human_rating_it_got_normalised_from_the_declared_range() {
        let runs = [
            run(
                "x",
                "a",
                vec![("stars", FeedbackPayload::Score(5.0), FeedbackSource::User), ("stars", FeedbackPayload::Score(2.0), FeedbackSource::Annotation)],
            ),
            run("x", "b", vec![("stars", FeedbackPayload::Score(1.0), FeedbackSource::User)]),
            // A model's and an implicit opinion are not human ratings.
            run(
                "y",
                "a",
                vec![("stars", FeedbackPayload::Score(5.0), FeedbackSource::Model), ("stars", FeedbackPayload::Score(5.0), FeedbackSource::Implicit)],
            ),
        ];
        let r = StoredRatings::from_runs(&runs, &dag(), "stars", &[]).unwrap();
        let rate = |t: &str, m: &str| r.rate("stars", &ex(t), &answer(m)).unwrap();
        assert!((rate("x", "a") - (1.0 + 0.25) / 2.0).abs() < 1e-12);
        assert_eq!(rate("x", "b"), 0.0);
        assert_eq!(rate("y", "a"), UNRATED);
        assert_eq!(rate("z", "a"), UNRATED);
    }

    #[test]
    fn a_correction_rates_the_corrected_answer_one_and_the_replaced_answer_zero() {
        let runs = [run("x", "a", vec![("correction", FeedbackPayload::Correction(json!({ "mood": "b" })), FeedbackSource::User)])];
        let r = StoredRatings::from_runs(&runs, &dag(), "stars", &[]).unwrap();
        assert_eq!(r.rate("stars", &ex("x"), &answer("b")).unwrap(), 1.0);
        assert_eq!(r.rate("stars", &ex("x"), &answer("a")).unwrap(), 0.0);
        assert_eq!(r.rated(), 2);
    }

    #[test]
    fn an_undeclared_or_unbounded_criterion_is_refused_by_name() {
        let e = StoredRatings::from_runs(&[], &dag(), "helpfulness", &[]).unwrap_err().to_string();
        assert!(e.contains("`helpfulness`") && e.contains("stars"), "{e}");
        let e = StoredRatings::from_runs(&[], &dag(), "open", &[]).unwrap_err().to_string();
        assert!(e.contains("`open`") && e.contains("no range"), "{e}");
    }

    #[test]
    fn a_run_scores_what_people_said_of_it_from_ratings_and_corrections() {
        let d = dag();
        let good = run("x", "a", vec![("stars", FeedbackPayload::Score(5.0), FeedbackSource::User)]);
        let wrong = run("x", "a", vec![("correction", FeedbackPayload::Correction(json!({ "mood": "b" })), FeedbackSource::Api)]);
        let silent = run("x", "a", vec![("stars", FeedbackPayload::Score(5.0), FeedbackSource::Model)]);
        assert_eq!(human_score(&good, &d), Some(1.0));
        assert_eq!(human_score(&wrong, &d), Some(0.0));
        assert_eq!(human_score(&silent, &d), None);
    }

    #[test]
    fn a_user_who_contradicts_reviewers_and_other_users_is_not_heard() {
        let by = |id: &str, mood: &str, source: FeedbackSource, user: &str| {
            stored_feedback(id, "correction", FeedbackPayload::Correction(json!({ "mood": mood })), source, Some(user), 1)
        };
        let mut runs: Vec<StoredRun> = (0..5)
            .map(|i| {
                let t = format!("shared {i}");
                let fb = vec![
                    by(&format!("a{i}"), "b", FeedbackSource::Annotation, "ann"),
                    by(&format!("h{i}"), "b", FeedbackSource::User, "honest"),
                    by(&format!("l{i}"), "a", FeedbackSource::User, "liar"),
                ];
                stored_run(&format!("r{i}"), "p", &t, "a", fb)
            })
            .collect();
        runs.push(stored_run("z", "p", "z", "b", vec![by("lz", "a", FeedbackSource::User, "liar")]));
        let r = StoredRatings::from_runs(&runs, &dag(), "stars", &[]).unwrap();
        assert_eq!(r.rate("stars", &ex("z"), &answer("a")).unwrap(), UNRATED, "the liar's correction alone rates nothing");
        assert_eq!(r.rate("stars", &ex("shared 0"), &answer("b")).unwrap(), 1.0, "the trusted agree");
        assert_eq!(r.rate("stars", &ex("shared 0"), &answer("a")).unwrap(), 0.0);
    }
}
