//! Judging a canary: a version the gate passed that serves a share of live traffic
//! (`serve --explore`) until people's feedback on its answers decides. It is promoted for
//! every replica when people approve of its answers at least as often as of the served
//! version's (less a margin), and rolled back otherwise.
//!
//! Approval is [`super::opinion::run_approval`]: the newest opinion on a run, of a person or
//! an implicit signal, that approves or rejects it. `serve` only schedules this.

use super::audit::conclude_canary;
use super::opinion::run_approval;
use super::LearnError;
use crate::graph::Dag;
use crate::store::{RunFilter, RunOrder, Store, Timestamp};

/// How a canary is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanaryRules {
    /// Runs of the canary with an approving or rejecting opinion it needs before it is judged.
    pub runs: usize,
    /// How much lower the canary's approval rate may be than the served version's.
    pub margin: f64,
}

impl CanaryRules {
    /// The defaults every caller starts from.
    pub const DEFAULT: CanaryRules = CanaryRules { runs: 30, margin: 0.02 };
}

impl Default for CanaryRules {
    fn default() -> Self {
        CanaryRules::DEFAULT
    }
}

/// Approvals among judged runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Runs people approved of.
    pub approved: usize,
    /// Runs with an approving or rejecting opinion.
    pub judged: usize,
}

impl Tally {
    /// The approval rate, if any run was judged.
    pub fn rate(self) -> Option<f64> {
        (self.judged > 0).then(|| self.approved as f64 / self.judged as f64)
    }

    fn add(&mut self, approved: bool) {
        self.approved += usize::from(approved);
        self.judged += 1;
    }
}

/// What judging a canary found.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryJudgement {
    /// Too few of its runs have feedback yet.
    Waiting {
        /// Its judged runs so far.
        judged: usize,
        /// The judged runs it needs.
        needed: usize,
    },
    /// People approve of it enough: it becomes the current version for every replica.
    Promoted {
        /// The canary's tally and the served version's.
        canary: Tally,
        /// The served version's tally.
        served: Tally,
    },
    /// People approve of it less: traffic goes back to the served version.
    RolledBack {
        /// The canary's tally.
        canary: Tally,
        /// The served version's tally.
        served: Tally,
    },
}

impl CanaryJudgement {
    /// Whether it decided (promoted or rolled back).
    pub fn decided(&self) -> bool {
        !matches!(self, CanaryJudgement::Waiting { .. })
    }

    /// Why it decided as it did, in a sentence.
    pub fn reason(&self) -> String {
        match self {
            CanaryJudgement::Waiting { judged, needed } => format!("{judged} of {needed} judged runs"),
            CanaryJudgement::Promoted { canary, served } | CanaryJudgement::RolledBack { canary, served } => {
                let c = canary.rate().unwrap_or(0.0);
                match served.rate() {
                    Some(s) => {
                        format!("live approval {c:.3} for the candidate vs {s:.3} for the served version ({} and {} judged runs)", canary.judged, served.judged)
                    }
                    None => format!("live approval {c:.3} on {} judged runs; the served version had none", canary.judged),
                }
            }
        }
    }
}

/// Decides on the tallies.
fn decide(canary: Tally, served: Tally, rules: &CanaryRules) -> CanaryJudgement {
    if canary.judged < rules.runs {
        return CanaryJudgement::Waiting { judged: canary.judged, needed: rules.runs };
    }
    let c = canary.rate().unwrap_or(0.0);
    if served.rate().is_none_or(|s| c >= s - rules.margin) {
        CanaryJudgement::Promoted { canary, served }
    } else {
        CanaryJudgement::RolledBack { canary, served }
    }
}

/// Judges the canary `hash` of the program `dag`, serving since `since`, on the runs stored
/// since then (the canary's and the served version's), and records a decision in the store
/// (a `promote` or `rollback` audit event) once it has enough judged runs.
pub async fn judge_canary(store: &Store, dag: &Dag, hash: &str, since: Timestamp, rules: &CanaryRules) -> Result<CanaryJudgement, LearnError> {
    let program = dag.name();
    let (mut canary, mut served) = (Tally::default(), Tally::default());
    let mut filter =
        RunFilter { program: Some(program.into()), since: Some(since), limit: RunFilter::MAX_LIMIT, order: RunOrder::OldestFirst, ..RunFilter::default() };
    loop {
        let page = store.runs(&filter).await?;
        for run in &page.items {
            let Some(ok) = run_approval(run, dag) else { continue };
            let tally = if run.artifact_hash.as_deref() == Some(hash) { &mut canary } else { &mut served };
            tally.add(ok);
        }
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    let judgement = decide(canary, served, rules);
    if judgement.decided() {
        let promote = matches!(judgement, CanaryJudgement::Promoted { .. });
        conclude_canary(store, program, hash, promote, &judgement.reason()).await?;
    }
    Ok(judgement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(approved: usize, judged: usize) -> Tally {
        Tally { approved, judged }
    }

    #[test]
    fn a_canary_waits_for_its_runs_then_is_promoted_unless_people_approve_of_it_less() {
        let rules = CanaryRules { runs: 10, margin: 0.05 };
        assert_eq!(decide(tally(9, 9), tally(0, 50), &rules), CanaryJudgement::Waiting { judged: 9, needed: 10 });
        assert!(matches!(decide(tally(8, 10), tally(40, 50), &rules), CanaryJudgement::Promoted { .. }), "equal rates");
        assert!(matches!(decide(tally(8, 10), tally(42, 50), &rules), CanaryJudgement::Promoted { .. }), "within the margin");
        assert!(matches!(decide(tally(7, 10), tally(40, 50), &rules), CanaryJudgement::RolledBack { .. }), "beyond the margin");
        assert!(matches!(decide(tally(0, 10), tally(0, 0), &rules), CanaryJudgement::Promoted { .. }), "nothing to compare with");
        let reason = decide(tally(7, 10), tally(40, 50), &rules).reason();
        assert!(reason.contains("0.700") && reason.contains("0.800") && reason.contains("10 and 50"), "{reason}");
    }
}
