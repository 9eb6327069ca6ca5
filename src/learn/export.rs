//! From stored feedback to labelled data, reading each piece through [`mod@super::opinion`]:
//! corrections and edits become gold rows, an output people approved (a thumbs-up, a good
//! rating, an `accepted`) becomes a weaker, model-labelled row, and outputs they rejected
//! become negatives. A model's feedback is never a label. Feedback on the same input is
//! resolved by agreement: explicit human labels beat implicit ones (edits), each user counts
//! once, and a label needs at least `min_agreement` users and a strict plurality. Users whose
//! [trust] (judged against reviewers, other users and the `reference` holdout) is below
//! `min_trust` are left out, and the export says who and why. Every row keeps its provenance (runs,
//! feedback, users). Rounds accumulate: the export reads every stored run, so nothing
//! learned earlier is replaced by newer data.
//!
//! Reviewed runs grow the holdout: a share of the inputs a reviewer corrected or approved
//! (chosen by a hash of the input, so the same inputs in every round and in every run of the
//! same data) become holdout items with the reviewer's label ([`Export::grown`]), and nothing said of those
//! inputs is exported to learn from, so a gate that judges on them judges on data no
//! candidate was trained on.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::opinion::{of_feedback, Said, Voice};
use super::trust::{self, rater_of, LeftOut, DEFAULT_MIN_TRUST};
use super::LearnError;
use crate::compile::Example;
use crate::graph::Dag;
use crate::runtime::value::check_type;
use crate::store::{FeedbackSource, RunFilter, RunOrder, Store, StoredRun, Timestamp};

/// What a row is good for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// The output people said is right (a correction, or an edit): trains, selects, and may
    /// enter the holdout.
    Gold,
    /// An output of the model that people accepted: a weaker positive, usable as a demo but
    /// never to select candidates or to judge them (retraining on a model's own outputs alone
    /// collapses it).
    ModelLabelled,
    /// An output people rejected: for judges, never a demo.
    Negative,
}

/// Where a row came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowProvenance {
    /// The runs on this input.
    pub run_ids: Vec<String>,
    /// The feedback that decided the row.
    pub feedback_ids: Vec<String>,
    /// The users who gave it (pseudonymous ids as stored).
    pub users: Vec<String>,
    /// Where the label came from: `user`, `api`, `annotation`, `implicit`, or `accepted` for
    /// model outputs people accepted.
    pub source: String,
}

/// One labelled example from the store.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The program's inputs.
    pub inputs: Map<String, Value>,
    /// The outputs (the label, for a negative: the rejected output).
    pub outputs: Map<String, Value>,
    /// What the row is good for.
    pub kind: RowKind,
    /// Where it came from.
    pub provenance: RowProvenance,
}

impl Row {
    /// The row as a dataset example: inputs and outputs side by side.
    pub fn example(&self) -> Example {
        let mut fields = self.inputs.clone();
        fields.extend(self.outputs.clone());
        let origin = self.provenance.run_ids.first().map_or_else(|| "store".to_string(), |r| format!("run {r}"));
        Example { origin, fields }
    }

    /// A stable key of the row's inputs (what feedback on "the same input" means).
    pub fn input_key(&self) -> String {
        Value::Object(self.inputs.clone()).to_string()
    }
}

/// How to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Only runs at or after this time.
    pub since: Option<Timestamp>,
    /// Users who must agree on a label before it is one.
    pub min_agreement: usize,
    /// The share of gold inputs (by a hash of the input, so the same input always falls the
    /// same way) reserved as holdout and never trained on.
    pub holdout_share: f64,
    /// The share of reviewed inputs (a reviewer's correction or approval: feedback with
    /// source `annotation`), chosen by a hash of the input so an input falls the same way in
    /// every round, that grow the holdout with the reviewer's label ([`Export::grown`]).
    /// Nothing on such an input is exported to learn from.
    pub review_holdout_share: f64,
    /// Users whose estimated trust is lower are left out (0: nobody is).
    pub min_trust: f64,
    /// Human-labelled examples (a round's holdout file) that help judge users' trust: a user
    /// who corrected one of these inputs to another answer loses trust. Never exported.
    pub reference: Vec<Example>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { since: None, min_agreement: 1, holdout_share: 0.0, review_holdout_share: 0.0, min_trust: DEFAULT_MIN_TRUST, reference: Vec::new() }
    }
}

/// An export: rows by use, and what they were made from.
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// Gold and model-labelled rows to learn from.
    pub train: Vec<Row>,
    /// Gold rows reserved as holdout (human labels only).
    pub holdout: Vec<Row>,
    /// Reviewed inputs that grow the holdout (`review_holdout_share`), labelled by their
    /// reviewer; neither they nor anything else said of their inputs is in `train` or
    /// `negatives`.
    pub grown: Vec<Row>,
    /// Rejected outputs.
    pub negatives: Vec<Row>,
    /// Every feedback id that decided a row.
    pub feedback_ids: BTreeSet<String>,
    /// Runs read.
    pub runs_read: usize,
    /// Corrections skipped because they do not fit the program's outputs.
    pub invalid_corrections: usize,
    /// Users left out for low trust, lowest first, with their feedback counts.
    pub left_out: Vec<LeftOut>,
    /// SHA-256 over the rows (train, holdout, negatives) as JSON lines: the dataset snapshot.
    pub sha256: String,
}

impl Export {
    /// Human-labelled rows to learn from (the holdout's are not counted).
    pub fn gold_rows(&self) -> usize {
        self.train.iter().filter(|r| r.kind == RowKind::Gold).count()
    }

    /// Accepted model outputs to learn from.
    pub fn model_labelled_rows(&self) -> usize {
        self.train.iter().filter(|r| r.kind == RowKind::ModelLabelled).count()
    }

    /// SHA-256 of each distinct user behind the rows learned from or held out, sorted (the ids
    /// themselves stay in the store).
    pub fn users_sha256(&self) -> Vec<String> {
        let users: BTreeSet<String> = self
            .train
            .iter()
            .chain(&self.holdout)
            .chain(&self.grown)
            .flat_map(|r| r.provenance.users.iter())
            .map(|u| crate::fs::sha256_hex(u.as_bytes()))
            .collect();
        users.into_iter().collect()
    }

    /// Every row, train then holdout then grown then negatives, as JSON lines.
    pub fn jsonl(&self) -> String {
        self.train
            .iter()
            .chain(&self.holdout)
            .chain(&self.grown)
            .chain(&self.negatives)
            .map(|r| format!("{}\n", serde_json::to_string(r).unwrap_or_default()))
            .collect()
    }
}

/// A vote for an output on one input.
struct Vote {
    outputs: Map<String, Value>,
    user: String,
    feedback_id: String,
    source: FeedbackSource,
    created: i64,
}

/// The program outputs in `v`, checked against the declared output types; `None` when they
/// do not fit (a correction that is not a value of the program's outputs).
pub(crate) fn outputs_of(dag: &Dag, v: &Value) -> Option<Map<String, Value>> {
    let obj = v.as_object()?;
    let mut out = Map::new();
    for f in dag.outputs() {
        let value = obj.get(&f.name)?;
        check_type(&f.ty, value).ok()?;
        out.insert(f.name.clone(), value.clone());
    }
    (obj.len() == out.len()).then_some(out)
}

/// Reads every run of `program` (since `options.since`) with its feedback and turns it into
/// rows.
pub async fn export(store: &Store, program: &str, dag: &Dag, options: &ExportOptions) -> Result<Export, LearnError> {
    let runs = read_runs(store, program, options.since).await?;
    Ok(from_runs(&runs, dag, options))
}

/// Every run of `program` since `since`, oldest first, with its feedback.
pub(crate) async fn read_runs(store: &Store, program: &str, since: Option<Timestamp>) -> Result<Vec<StoredRun>, LearnError> {
    let mut runs: Vec<StoredRun> = Vec::new();
    let mut filter = RunFilter { program: Some(program.to_string()), since, limit: RunFilter::MAX_LIMIT, order: RunOrder::OldestFirst, ..RunFilter::default() };
    loop {
        let page = store.runs(&filter).await?;
        runs.extend(page.items);
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    Ok(runs)
}

/// [`export`] on runs already read.
pub fn from_runs(runs: &[StoredRun], dag: &Dag, options: &ExportOptions) -> Export {
    // Group by input: feedback on any run with these inputs speaks of this input.
    let mut groups: BTreeMap<String, (Map<String, Value>, Vec<&StoredRun>)> = BTreeMap::new();
    for r in runs {
        let Some(inputs) = r.inputs.as_object() else { continue };
        let key = r.inputs.to_string();
        groups.entry(key).or_insert_with(|| (inputs.clone(), Vec::new())).1.push(r);
    }
    let mut export = Export { runs_read: runs.len(), ..Export::default() };
    let trust = trust::of_runs(runs, dag, &options.reference);
    let below: BTreeMap<String, usize> = trust.below(options.min_trust).into_iter().map(|(u, _)| (u.to_string(), 0)).collect();
    let mut below = below;
    for (key, (inputs, runs)) in groups {
        // A reviewed run held out makes its input a holdout item: nothing said of it trains.
        if let Some(row) = grown_row(&key, &inputs, &runs, dag, options.review_holdout_share, &below) {
            export.feedback_ids.extend(row.provenance.feedback_ids.iter().cloned());
            export.grown.push(row);
            continue;
        }
        let mut explicit = Vec::new();
        let mut implicit = Vec::new();
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for run in &runs {
            for f in &run.feedback {
                // What each piece says is decided by `opinion`; how they combine, here.
                let Some(said) = of_feedback(f, run, dag) else { continue };
                let user = rater_of(f, run);
                if let Some(n) = below.get_mut(&user) {
                    *n += 1;
                    continue;
                }
                let vote = |outputs: Map<String, Value>| Vote {
                    outputs,
                    user: user.clone(),
                    feedback_id: f.id.to_string(),
                    source: f.source,
                    created: f.created.millis(),
                };
                match said.said {
                    Said::Labelled { outputs, .. } => match (outputs_of(dag, &Value::Object(outputs)), said.voice) {
                        (Some(o), Voice::Behaviour) => implicit.push(vote(o)),
                        (Some(o), Voice::Person) => explicit.push(vote(o)),
                        (None, _) => export.invalid_corrections += 1,
                    },
                    _ => {
                        let Some(good) = said.approves() else { continue };
                        let Some(o) = run.outputs.as_ref().and_then(|v| outputs_of(dag, v)) else { continue };
                        if good {
                            accepted.push(vote(o));
                        } else {
                            rejected.push(vote(o));
                        }
                    }
                }
            }
        }
        let run_ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
        let decided = [(explicit, RowKind::Gold), (implicit, RowKind::Gold), (accepted, RowKind::ModelLabelled)]
            .into_iter()
            .find_map(|(votes, kind)| agree(&votes, options.min_agreement).map(|w| (w, kind)));
        if let Some(((outputs, ids, users, source), kind)) = decided {
            // Outputs most users rejected are not accepted on the word of fewer.
            let rejections = distinct_users(rejected.iter().filter(|v| v.outputs == outputs));
            if kind == RowKind::ModelLabelled && rejections >= users.len() {
                continue;
            }
            export.feedback_ids.extend(ids.iter().cloned());
            let source = if kind == RowKind::ModelLabelled { "accepted".to_string() } else { source.as_str().to_string() };
            let row = Row { inputs: inputs.clone(), outputs, kind, provenance: RowProvenance { run_ids: run_ids.clone(), feedback_ids: ids, users, source } };
            // Only explicit human labels may be held out; which ones is fixed by the input.
            let human = kind == RowKind::Gold && row.provenance.source != FeedbackSource::Implicit.as_str();
            if human && in_holdout(&key, options.holdout_share) {
                export.holdout.push(row);
            } else {
                export.train.push(row);
            }
        }
        let mut distinct: Vec<&Map<String, Value>> = Vec::new();
        for v in &rejected {
            if !distinct.contains(&&v.outputs) {
                distinct.push(&v.outputs);
            }
        }
        for outputs in distinct.into_iter().cloned() {
            let votes: Vec<&Vote> = rejected.iter().filter(|v| v.outputs == outputs).collect();
            let ids: Vec<String> = votes.iter().map(|v| v.feedback_id.clone()).collect();
            export.feedback_ids.extend(ids.iter().cloned());
            let users = votes.iter().map(|v| v.user.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            export.negatives.push(Row {
                inputs: inputs.clone(),
                outputs,
                kind: RowKind::Negative,
                provenance: RowProvenance { run_ids: run_ids.clone(), feedback_ids: ids, users, source: "rejected".into() },
            });
        }
    }
    let mut left_out: Vec<LeftOut> = below.into_iter().filter(|(_, n)| *n > 0).map(|(u, n)| LeftOut::of(&u, &trust, n)).collect();
    left_out.sort_by(|a, b| a.trust.total_cmp(&b.trust).then_with(|| a.user_sha256.cmp(&b.user_sha256)));
    export.left_out = left_out;
    export.sha256 = crate::fs::sha256_hex(export.jsonl().as_bytes());
    export
}

/// The holdout row of a reviewed input (its serialized form `key`) that `review_holdout_share`
/// holds out ([`review_held_out`]): the newest answer a reviewer (not left out) gave on one of
/// its runs, a correction's outputs or the run's answer they approved.
fn grown_row(key: &str, inputs: &Map<String, Value>, runs: &[&StoredRun], dag: &Dag, share: f64, below: &BTreeMap<String, usize>) -> Option<Row> {
    if !review_held_out(key, share) {
        return None;
    }
    let mut newest: Option<(i64, Row)> = None;
    for run in runs {
        for f in run.feedback.iter().filter(|f| f.source == FeedbackSource::Annotation) {
            let rater = rater_of(f, run);
            if below.contains_key(&rater) {
                continue;
            }
            let Some(said) = of_feedback(f, run, dag) else { continue };
            let answer = match said.said {
                Said::Labelled { outputs, .. } => outputs_of(dag, &Value::Object(outputs)),
                _ if said.approves() == Some(true) => run.outputs.as_ref().and_then(|v| outputs_of(dag, v)),
                _ => None,
            };
            let Some(outputs) = answer else { continue };
            if newest.as_ref().is_some_and(|(t, _)| f.created.millis() < *t) {
                continue;
            }
            let provenance = RowProvenance {
                run_ids: vec![run.id.to_string()],
                feedback_ids: vec![f.id.to_string()],
                users: vec![rater],
                source: FeedbackSource::Annotation.as_str().to_string(),
            };
            newest = Some((f.created.millis(), Row { inputs: inputs.clone(), outputs, kind: RowKind::Gold, provenance }));
        }
    }
    newest.map(|(_, row)| row)
}

fn distinct_users<'a>(votes: impl Iterator<Item = &'a Vote>) -> usize {
    votes.map(|v| v.user.as_str()).collect::<BTreeSet<_>>().len()
}

/// The winning outputs among `votes`: each user's latest vote counts once; the winner needs
/// `min_agreement` users and more than any other output. Returns it with its feedback ids,
/// users and the source of its latest vote.
type Winner = (Map<String, Value>, Vec<String>, Vec<String>, FeedbackSource);

fn agree(votes: &[Vote], min_agreement: usize) -> Option<Winner> {
    let mut latest: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in votes {
        let slot = latest.entry(v.user.as_str()).or_insert(v);
        if v.created >= slot.created {
            *slot = v;
        }
    }
    let mut tally: Vec<(&Map<String, Value>, Vec<&Vote>)> = Vec::new();
    for v in latest.values() {
        match tally.iter_mut().find(|(o, _)| **o == v.outputs) {
            Some((_, vs)) => vs.push(v),
            None => tally.push((&v.outputs, vec![v])),
        }
    }
    tally.sort_by_key(|t| std::cmp::Reverse(t.1.len()));
    let (outputs, winners) = tally.first()?;
    let runner_up = tally.get(1).map_or(0, |t| t.1.len());
    if winners.len() < min_agreement.max(1) || winners.len() == runner_up {
        return None;
    }
    let source = winners.iter().max_by_key(|v| v.created).map_or(FeedbackSource::User, |v| v.source);
    Some(((*outputs).clone(), winners.iter().map(|v| v.feedback_id.clone()).collect(), winners.iter().map(|v| v.user.clone()).collect(), source))
}

/// Whether the reviewed input with key `key` grows the holdout for a share `share` in [0, 1]:
/// [`in_holdout`] of the key with a prefix of its own, so these are not the inputs that
/// `holdout_share` reserves.
pub(crate) fn review_held_out(key: &str, share: f64) -> bool {
    in_holdout(&format!("reviewed {key}"), share)
}

/// Whether the input with key `key` is reserved as holdout for a share `share` in [0, 1].
pub fn in_holdout(key: &str, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    let h = crate::fs::sha256_hex(key.as_bytes());
    let bucket = u64::from_str_radix(&h[..8], 16).unwrap_or(0) % 10_000;
    (bucket as f64) < share.min(1.0) * 10_000.0
}

#[cfg(test)]
mod tests;
