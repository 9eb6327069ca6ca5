//! Trust per user: how often each person's labels are right, estimated from how they agree
//! with reviewers, with the human holdout and with other users on the same inputs. It is the
//! one-coin Dawid–Skene model: each rater is right with probability `trust` and otherwise
//! names another answer at random; the right answer of an input is unknown, and each rater's
//! trust is the expected share of their answers that are right, given everyone else's.
//!
//! Two choices keep it honest on little data. A rater's answer on an input is scored against
//! the *others'* answers only (leave-one-out), so a rater never confirms themself, and inputs
//! only one rater answered say nothing about anybody. And every trust starts from a prior
//! (a user is right [`USER_PRIOR`] of the time, worth [`PRIOR_WEIGHT`] answers; a reviewer
//! [`REVIEWER_PRIOR`]), so one disagreement does not condemn a user and a user nobody could
//! compare keeps the prior. The holdout's labels are references: trusted at [`REFERENCE_TRUST`],
//! never estimated. A reviewer's trust is judged by their peers only, other reviewers and the
//! holdout, never by the users they check: otherwise a share of users who contradict the
//! reviewer on purpose would talk the reviewer's trust down with their own, and the review that
//! should expose them would count for little (a reviewer nobody but users can compare keeps
//! [`REVIEWER_PRIOR`]).
//!
//! Memory, the export and the `human(..)` metric leave out users below a minimum trust, and
//! weigh the rest by the log-odds of their trust when answers conflict.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::export::outputs_of;
use super::opinion::{of_feedback, Said};
use crate::compile::Example;
use crate::graph::{Dag, Type};
use crate::store::{FeedbackSource, StoredRun};

/// Who gave an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rater {
    /// A user of the product (or an API caller, or their behaviour).
    User,
    /// A reviewer (feedback with source `annotation`).
    Reviewer,
    /// The human-labelled holdout.
    Reference,
}

/// One answer one rater gave for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The input (a canonical key).
    pub item: String,
    /// Who answered (a user id; the holdout's name for a reference).
    pub rater: String,
    /// What kind of rater.
    pub kind: Rater,
    /// The answer (a canonical key).
    pub answer: String,
}

/// The prior share of right answers of a user nobody has compared yet.
pub const USER_PRIOR: f64 = 0.7;
/// The prior share of right answers of a reviewer.
pub const REVIEWER_PRIOR: f64 = 0.9;
/// How many answers the prior is worth.
pub const PRIOR_WEIGHT: f64 = 3.0;
/// How far the holdout's labels are trusted.
pub const REFERENCE_TRUST: f64 = 0.99;
/// The least trust a user needs for their feedback to count in the export and the
/// `human(..)` metric (the default of a `memory` declaration's `min_trust` too): below it, a
/// user's answers agree with others' less often than not.
pub const DEFAULT_MIN_TRUST: f64 = 0.5;
/// Rounds of the estimate (each re-scores every answer against the others' current trust).
const ROUNDS: usize = 8;

/// What is known of one rater.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RaterTrust {
    /// The estimated share of right answers, 0 to 1.
    pub trust: f64,
    /// Whether the rater is a reviewer.
    pub reviewer: bool,
    /// Answers they gave.
    pub answers: usize,
    /// Answers on inputs someone else answered too (the evidence).
    pub compared: usize,
    /// Of those, answers a reviewer gave the same ( agreed, compared ).
    pub with_reviewers: (usize, usize),
    /// Answers the holdout gives the same ( agreed, compared ).
    pub with_holdout: (usize, usize),
    /// Answers another user gave the same ( agreed, compared ).
    pub with_users: (usize, usize),
}

impl RaterTrust {
    /// A sentence: the trust and what it rests on.
    pub fn evidence(&self) -> String {
        let part = |(a, n): (usize, usize), whom: &str| (n > 0).then(|| format!("agreed with {whom} on {a} of {n}"));
        let parts: Vec<String> = [part(self.with_reviewers, "reviewers"), part(self.with_holdout, "the holdout"), part(self.with_users, "other users")]
            .into_iter()
            .flatten()
            .collect();
        if parts.is_empty() {
            format!("trust {:.2} (nobody else answered their inputs: the prior)", self.trust)
        } else {
            format!("trust {:.2} ({})", self.trust, parts.join(", "))
        }
    }
}

/// Every rater's trust, from [`TrustTable::estimate`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrustTable {
    raters: BTreeMap<String, RaterTrust>,
    /// How many answers an input can have (for "another answer at random").
    classes: usize,
}

impl TrustTable {
    /// Estimates every rater's trust from `judgements`, on inputs with `classes` possible
    /// answers (at least 2). A rater's latest answer on an input counts once (give them in
    /// the order they were given).
    pub fn estimate(judgements: &[Judgement], classes: usize) -> TrustTable {
        let classes = classes.max(2);
        // Each input's answers, one per rater (the last given).
        let mut items: HashMap<&str, Vec<(&str, Rater, &str)>> = HashMap::new();
        let mut raters: BTreeMap<String, RaterTrust> = BTreeMap::new();
        for j in judgements {
            let answers = items.entry(j.item.as_str()).or_default();
            match answers.iter_mut().find(|(r, _, _)| *r == j.rater) {
                Some(slot) => slot.2 = j.answer.as_str(),
                None => answers.push((j.rater.as_str(), j.kind, j.answer.as_str())),
            }
        }
        for answers in items.values() {
            for (r, kind, a) in answers {
                if *kind == Rater::Reference {
                    continue;
                }
                let t = raters.entry((*r).to_string()).or_default();
                t.reviewer |= *kind == Rater::Reviewer;
                t.answers += 1;
                if answers.len() < 2 {
                    continue;
                }
                t.compared += 1;
                for (other, other_kind, b) in answers {
                    if other == r {
                        continue;
                    }
                    let tally = match other_kind {
                        Rater::Reviewer => &mut t.with_reviewers,
                        Rater::Reference => &mut t.with_holdout,
                        Rater::User => &mut t.with_users,
                    };
                    tally.1 += 1;
                    tally.0 += usize::from(a == b);
                }
            }
        }
        let prior = |t: &RaterTrust| if t.reviewer { REVIEWER_PRIOR } else { USER_PRIOR };
        let mut trust: HashMap<String, f64> = raters.iter().map(|(r, t)| (r.clone(), prior(t))).collect();
        let shared: Vec<&Vec<(&str, Rater, &str)>> = items.values().filter(|a| a.len() >= 2).collect();
        for _ in 0..ROUNDS {
            let mut credit: HashMap<&str, (f64, f64)> = HashMap::new();
            for answers in &shared {
                for (i, (r, kind, a)) in answers.iter().enumerate() {
                    if *kind == Rater::Reference {
                        continue;
                    }
                    let p = if *kind == Rater::Reviewer {
                        // A reviewer is judged by their peers: other reviewers and the holdout.
                        let is_peer = |(_, k, _): &&(&str, Rater, &str)| *k != Rater::User;
                        let peers: Vec<(&str, Rater, &str)> = answers.iter().filter(is_peer).copied().collect();
                        if peers.len() < 2 {
                            continue;
                        }
                        // This reviewer's place among the peers: the peers answering before them.
                        let me = answers[..i].iter().filter(is_peer).count();
                        leave_one_out(&peers, me, a, classes, &trust)
                    } else {
                        leave_one_out(answers, i, a, classes, &trust)
                    };
                    let c = credit.entry(r).or_default();
                    c.0 += p;
                    c.1 += 1.0;
                }
            }
            for (r, t) in &raters {
                let (right, n) = credit.get(r.as_str()).copied().unwrap_or_default();
                let p = prior(t);
                // Nothing to compare: exactly the prior.
                let t = if n == 0.0 { p } else { (p * PRIOR_WEIGHT + right) / (PRIOR_WEIGHT + n) };
                trust.insert(r.clone(), t);
            }
        }
        for (r, t) in raters.iter_mut() {
            t.trust = trust.get(r).copied().unwrap_or(USER_PRIOR);
        }
        TrustTable { raters, classes }
    }

    /// The trust of `rater`: estimated, or the user prior for a rater never seen.
    pub fn trust(&self, rater: &str) -> f64 {
        self.raters.get(rater).map_or(USER_PRIOR, |t| t.trust)
    }

    /// What is known of `rater`, if they answered anything.
    pub fn get(&self, rater: &str) -> Option<&RaterTrust> {
        self.raters.get(rater)
    }

    /// How much `rater`'s answer counts when answers conflict: the log-odds that they are right
    /// rather than naming one particular wrong answer (0 for a rater no better than chance).
    pub fn weight(&self, rater: &str) -> f64 {
        weight(self.trust(rater), self.classes)
    }

    /// Every rater, by id.
    pub fn raters(&self) -> impl Iterator<Item = (&str, &RaterTrust)> {
        self.raters.iter().map(|(r, t)| (r.as_str(), t))
    }

    /// The raters below `min_trust`, lowest first.
    pub fn below(&self, min_trust: f64) -> Vec<(&str, &RaterTrust)> {
        let mut out: Vec<(&str, &RaterTrust)> = self.raters().filter(|(_, t)| t.trust < min_trust).collect();
        out.sort_by(|a, b| a.1.trust.total_cmp(&b.1.trust).then(a.0.cmp(b.0)));
        out
    }
}

pub use crate::runtime::artifact::LeftOut;

impl LeftOut {
    /// The entry of `rater` (as `table` knows them), who gave `feedback` pieces.
    pub fn of(rater: &str, table: &TrustTable, feedback: usize) -> LeftOut {
        let t = table.get(rater).cloned().unwrap_or_default();
        LeftOut { user_sha256: crate::fs::sha256_hex(rater.as_bytes()), trust: t.trust, reason: t.evidence(), feedback }
    }
}

/// Who gave a piece of feedback on `run`: its user, else the run's user, else nobody in
/// particular (each such piece its own anonymous rater).
pub fn rater_of(f: &crate::store::StoredFeedback, run: &StoredRun) -> String {
    f.user_id.clone().or_else(|| run.user_id.clone()).unwrap_or_else(|| format!("anonymous:{}", f.id))
}

/// How many answers an input of `dag` can have, for the one-coin model: the labels of a single
/// label output, 2 for a single bool, else 10 (open answers rarely coincide by chance).
pub fn classes_of(dag: &Dag) -> usize {
    match dag.outputs() {
        [one] => match &one.ty {
            Type::Label(labels) => labels.len(),
            Type::Bool => 2,
            _ => 10,
        },
        _ => 10,
    }
}

/// A canonical key of the named fields of `values`.
fn key_of<'a>(names: impl Iterator<Item = &'a String>, values: &serde_json::Map<String, Value>) -> Option<String> {
    let picked: Option<BTreeMap<&str, &Value>> = names.map(|n| values.get(n).map(|v| (n.as_str(), v))).collect();
    serde_json::to_string(&picked?).ok()
}

/// Every user's trust from the feedback on `runs` of `dag`: each person's answer for an input
/// (a correction's outputs, or the run's answer they approved), read by the one rule of
/// `opinion`, with `reference` (human-labelled examples) as the holdout's answers.
pub fn of_runs(runs: &[StoredRun], dag: &Dag, reference: &[Example]) -> TrustTable {
    let inputs: Vec<String> = dag.inputs().iter().map(|f| f.name.clone()).collect();
    let outputs: Vec<String> = dag.outputs().iter().map(|f| f.name.clone()).collect();
    let mut given: Vec<(i64, Judgement)> = Vec::new();
    for run in runs {
        let Some(item) = run.inputs.as_object().and_then(|i| key_of(inputs.iter(), i)) else { continue };
        for f in &run.feedback {
            let Some(o) = of_feedback(f, run, dag) else { continue };
            if o.voice != super::opinion::Voice::Person {
                continue;
            }
            let answer = match o.said {
                Said::Labelled { outputs: corrected, .. } => outputs_of(dag, &Value::Object(corrected)),
                _ if o.approves() == Some(true) => run.outputs.as_ref().and_then(|v| outputs_of(dag, v)),
                _ => None,
            };
            let Some(answer) = answer.and_then(|a| key_of(outputs.iter(), &a)) else { continue };
            let kind = if f.source == FeedbackSource::Annotation { Rater::Reviewer } else { Rater::User };
            given.push((f.created.millis(), Judgement { item: item.clone(), rater: rater_of(f, run), kind, answer }));
        }
    }
    given.sort_by_key(|(t, _)| *t);
    let mut judgements: Vec<Judgement> = reference
        .iter()
        .filter_map(|e| {
            Some(Judgement {
                item: key_of(inputs.iter(), &e.fields)?,
                rater: "holdout".into(),
                kind: Rater::Reference,
                answer: key_of(outputs.iter(), &e.fields)?,
            })
        })
        .collect();
    judgements.extend(given.into_iter().map(|(_, j)| j));
    TrustTable::estimate(&judgements, classes_of(dag))
}

/// The log-odds weight of an answer by a rater of trust `t` among `classes` answers.
pub fn weight(t: f64, classes: usize) -> f64 {
    let t = t.clamp(1e-3, 1.0 - 1e-3);
    (t * (classes.max(2) as f64 - 1.0) / (1.0 - t)).ln().max(0.0)
}

/// The probability that answer `a` of rater `i` on an input is right, given only the other
/// raters' answers and trusts (uniform prior over `classes` answers).
fn leave_one_out(answers: &[(&str, Rater, &str)], i: usize, a: &str, classes: usize, trust: &HashMap<String, f64>) -> f64 {
    let k = classes as f64;
    let t_of = |r: &str, kind: Rater| if kind == Rater::Reference { REFERENCE_TRUST } else { trust.get(r).copied().unwrap_or(USER_PRIOR) };
    // Log-likelihood of the others' answers if the truth were `truth` (`None`: an answer
    // nobody gave).
    let loglik = |truth: Option<&str>| -> f64 {
        answers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (r, kind, b))| {
                let t = t_of(r, *kind).clamp(1e-3, 1.0 - 1e-3);
                if Some(*b) == truth {
                    t.ln()
                } else {
                    ((1.0 - t) / (k - 1.0)).ln()
                }
            })
            .sum()
    };
    let mut named: Vec<&str> = answers.iter().map(|(_, _, b)| *b).collect();
    named.sort_unstable();
    named.dedup();
    let unnamed = (k - named.len() as f64).max(0.0);
    let logs: Vec<f64> = named.iter().map(|b| loglik(Some(b))).collect();
    let rest = loglik(None);
    let max = logs.iter().copied().fold(rest, f64::max);
    let total: f64 = logs.iter().map(|l| (l - max).exp()).sum::<f64>() + unnamed * (rest - max).exp();
    let mine = named.iter().position(|b| *b == a).map_or(0.0, |p| (logs[p] - max).exp());
    mine / total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(item: &str, rater: &str, kind: Rater, answer: &str) -> Judgement {
        Judgement { item: item.into(), rater: rater.into(), kind, answer: answer.into() }
    }

    #[test]
    fn a_user_who_contradicts_reviewers_loses_trust_and_one_who_agrees_gains_it() {
        let mut js = Vec::new();
        for i in 0..6 {
            let item = format!("x{i}");
            js.push(j(&item, "ann", Rater::Reviewer, "a"));
            js.push(j(&item, "good", Rater::User, "a"));
            js.push(j(&item, "bad", Rater::User, "b"));
        }
        let t = TrustTable::estimate(&js, 4);
        // Leave-one-out: `good` is judged by `ann` (and `bad`, near chance), so their trusts
        // settle together, well above the dissenter's.
        assert!(t.trust("good") > 0.75 && t.trust("ann") > 0.75, "{t:?}");
        assert!(t.trust("bad") < 0.3, "{:?}", t.get("bad"));
        assert_eq!(t.get("bad").unwrap().with_reviewers, (0, 6));
        assert_eq!(t.below(0.5).iter().map(|(r, _)| *r).collect::<Vec<_>>(), ["bad"]);
        assert!(t.get("bad").unwrap().evidence().contains("agreed with reviewers on 0 of 6"));
    }

    #[test]
    fn users_who_contradict_a_reviewer_cannot_talk_the_reviewers_trust_down() {
        // Two labels; half the users always contradict the reviewer, each on five inputs.
        let mut js = Vec::new();
        for i in 0..20 {
            let item = format!("x{i}");
            let truth = if i % 3 == 0 { "a" } else { "b" };
            let other = if truth == "a" { "b" } else { "a" };
            js.push(j(&item, "ann", Rater::Reviewer, truth));
            js.push(match i % 4 {
                0 => j(&item, "liar1", Rater::User, other),
                1 => j(&item, "liar2", Rater::User, other),
                2 => j(&item, "honest1", Rater::User, truth),
                _ => j(&item, "honest2", Rater::User, truth),
            });
        }
        let t = TrustTable::estimate(&js, 2);
        assert_eq!(t.trust("ann"), REVIEWER_PRIOR, "only other reviewers and the holdout judge a reviewer: {t:?}");
        assert_eq!(t.get("ann").unwrap().with_users, (10, 20), "what users said of them is still shown");
        assert_eq!(t.below(0.5).iter().map(|(r, _)| *r).collect::<Vec<_>>(), ["liar1", "liar2"]);
        assert!(t.trust("honest1") > 0.8, "{t:?}");
        // A second reviewer who contradicts the first and the holdout loses trust.
        js.extend((0..6).map(|i| j(&format!("x{i}"), "sloppy", Rater::Reviewer, "c")));
        js.extend((0..6).map(|i| j(&format!("x{i}"), "holdout", Rater::Reference, if i % 3 == 0 { "a" } else { "b" })));
        let t = TrustTable::estimate(&js, 3);
        assert!(t.trust("sloppy") < 0.5 && t.trust("ann") > 0.75, "{t:?}");
    }

    #[test]
    fn agreement_among_users_separates_the_honest_majority_from_a_consistent_liar() {
        // Three honest users and one who always answers wrong, on shared inputs, no reviewer.
        let mut js = Vec::new();
        for i in 0..8 {
            let item = format!("x{i}");
            for u in ["u1", "u2", "u3"] {
                js.push(j(&item, u, Rater::User, "right"));
            }
            js.push(j(&item, "liar", Rater::User, "wrong"));
        }
        let t = TrustTable::estimate(&js, 4);
        assert!(t.trust("liar") < 0.3 && t.trust("u1") > 0.8, "{t:?}");
        assert!(t.weight("u1") > t.weight("liar"));
        assert_eq!(t.weight("liar"), 0.0, "a rater no better than chance counts for nothing");
    }

    #[test]
    fn the_holdout_judges_users_and_is_never_judged() {
        let js = vec![
            j("x", "holdout", Rater::Reference, "a"),
            j("x", "u", Rater::User, "b"),
            j("y", "holdout", Rater::Reference, "a"),
            j("y", "u", Rater::User, "b"),
        ];
        let t = TrustTable::estimate(&js, 2);
        assert!(t.get("holdout").is_none());
        assert_eq!(t.get("u").unwrap().with_holdout, (0, 2));
        assert!(t.trust("u") < 0.5, "{t:?}");
    }

    #[test]
    fn a_user_nobody_could_compare_keeps_the_prior_and_self_agreement_says_nothing() {
        // Answering the same input twice is one answer (the last); alone on an input, nothing.
        let js = vec![j("x", "solo", Rater::User, "a"), j("x", "solo", Rater::User, "b"), j("y", "solo", Rater::User, "b")];
        let t = TrustTable::estimate(&js, 4);
        assert_eq!(t.trust("solo"), USER_PRIOR);
        assert_eq!((t.get("solo").unwrap().answers, t.get("solo").unwrap().compared), (2, 0));
        assert_eq!(t.trust("never-seen"), USER_PRIOR);
        assert!(t.get("solo").unwrap().evidence().contains("the prior"));
    }

    #[test]
    fn memory_learning_and_the_human_metric_share_one_default_minimum_trust() {
        assert_eq!(DEFAULT_MIN_TRUST, crate::graph::MemorySpec::DEFAULT_MIN_TRUST);
    }

    #[test]
    fn one_disagreement_does_not_condemn_a_user() {
        let js = vec![j("x", "ann", Rater::Reviewer, "a"), j("x", "u", Rater::User, "b")];
        let t = TrustTable::estimate(&js, 4);
        assert!(t.trust("u") > 0.5, "{t:?}");
    }
}
