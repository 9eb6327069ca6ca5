//! The record of a version: what the store keeps beside an artifact version (its `meta`),
//! written by a learning round or by `serve` and read back by `loopc history`, `current`,
//! `forget` and the review dashboard. One serde type, so every field has one name, one type
//! and one meaning; the store itself keeps it as JSON and knows nothing of it.
//!
//! The JSON is flat (`{"decision": "promoted", "reason": …, "holdout_current": …}`), as
//! earlier loopc versions wrote it, so stores made by them read the same.

use serde::{Deserialize, Serialize};

use super::export::Export;
use super::gate::Decision;
use super::human::Calibration;
use super::trust::LeftOut;
use crate::store::ArtifactVersion;

/// What happened to a version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The gate passed it and it was promoted at once: it became the program's current
    /// version.
    Promoted,
    /// The gate passed it and it was started as a canary (`serve --explore`): it serves a
    /// share of traffic until live feedback decides. A `promote` audit event (it held up) makes
    /// it current; a `rollback` event withdraws it.
    Canary,
    /// The gate kept the current program: the candidate was not shown to be as good.
    Rejected,
    /// Not learned here: an artifact a server was started with, recorded so its runs can name
    /// it.
    #[default]
    Recorded,
}

impl Verdict {
    /// The verdict as stored and shown: `promoted`, `canary`, `rejected`, `recorded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Promoted => "promoted",
            Verdict::Canary => "canary",
            Verdict::Rejected => "rejected",
            Verdict::Recorded => "recorded",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the store keeps about a version (its `meta`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionRecord {
    /// What happened to it.
    pub decision: Verdict,
    /// Why, in a sentence (empty for a recorded version).
    pub reason: String,
    /// The current program's mean holdout score, when a gate compared them.
    pub holdout_current: Option<f64>,
    /// The candidate's mean holdout score.
    pub holdout_candidate: Option<f64>,
    /// The mean paired difference (candidate − current).
    pub difference: Option<f64>,
    /// The 90% bootstrap interval of the difference.
    pub interval: Option<(f64, f64)>,
    /// The margin the gate allowed.
    pub margin: Option<f64>,
    /// Holdout items compared.
    pub holdout_items: usize,
    /// Of them, the frozen holdout file's and the ones the store grew it by (held-out
    /// corrections and reviewed runs); absent in records of earlier loopc versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_frozen: Option<usize>,
    /// See [`VersionRecord::holdout_frozen`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_grown: Option<usize>,
    /// Set when the candidate's holdout scoring stopped after this many items, once it could
    /// no longer reach the current program's score; `holdout_candidate` is then the most it
    /// could have scored ([`super::gate::Decision::stopped_after`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_stopped_after: Option<usize>,
    /// The gate's power on them: the smallest true improvement it promotes with 80%
    /// probability ([`super::gate::detectable`]); absent in records of earlier loopc versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detectable: Option<f64>,
    /// The candidate's score on its dev rows.
    pub dev_score: Option<f64>,
    /// SHA-256 of the dataset snapshot it learned from.
    pub dataset_sha256: Option<String>,
    /// Human-labelled rows in that dataset.
    pub gold_rows: usize,
    /// Accepted model outputs in that dataset.
    pub model_labelled_rows: usize,
    /// Pieces of feedback behind the dataset.
    pub feedback_count: usize,
    /// Their ids.
    pub feedback_ids: Vec<String>,
    /// SHA-256 of each user whose feedback shaped the dataset (what `forget` looks for).
    pub users_sha256: Vec<String>,
    /// How often the LM judge agreed with people, when the metric is one.
    pub judge_agreement: Option<f64>,
    /// Rated runs the judge was calibrated on.
    pub judge_items: Option<usize>,
    /// Users whose feedback the dataset left out for low trust, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

impl VersionRecord {
    /// The record of a round: the gate's `decision` (as `verdict`), the data, the judge.
    pub(crate) fn of_round(verdict: Verdict, decision: &Decision, dev_score: f64, data: &Export, judge: Option<&Calibration>) -> VersionRecord {
        VersionRecord {
            decision: verdict,
            reason: decision.reason.clone(),
            holdout_current: Some(decision.current),
            holdout_candidate: Some(decision.candidate),
            difference: Some(decision.difference),
            interval: Some(decision.interval),
            margin: Some(decision.margin),
            holdout_items: decision.items,
            holdout_frozen: Some(decision.frozen),
            holdout_grown: Some(decision.grown),
            holdout_stopped_after: decision.stopped_after,
            detectable: decision.detectable,
            dev_score: Some(dev_score),
            dataset_sha256: Some(data.sha256.clone()),
            gold_rows: data.gold_rows(),
            model_labelled_rows: data.model_labelled_rows(),
            feedback_count: data.feedback_ids.len(),
            feedback_ids: data.feedback_ids.iter().cloned().collect(),
            users_sha256: data.users_sha256(),
            judge_agreement: judge.map(|c| c.agreement),
            judge_items: judge.map(|c| c.items),
            left_out: data.left_out.clone(),
        }
    }

    /// The record of an artifact a server was started with.
    pub fn served() -> VersionRecord {
        VersionRecord::default()
    }

    /// The record as the store keeps it.
    pub fn to_meta(&self) -> serde_json::Value {
        // A struct of numbers, strings and lists always serialises; `Null` would only lose it.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The record of a stored version. A record this loopc cannot read (written by hand, or by
    /// a newer loopc with other types) is shown as recorded, with the reason saying why.
    pub fn of(version: &ArtifactVersion) -> VersionRecord {
        serde_json::from_value(version.meta.clone())
            .unwrap_or_else(|e| VersionRecord { reason: format!("the stored record of this version is unreadable: {e}"), ..VersionRecord::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(meta: serde_json::Value) -> ArtifactVersion {
        ArtifactVersion { hash: "h".into(), parent: None, program: "p".into(), created: crate::store::Timestamp::from_millis(1), body: None, meta }
    }

    #[test]
    fn records_written_by_earlier_loopc_versions_read_the_same() {
        let old = json!({"decision": "promoted", "reason": "fine", "holdout_current": 0.5, "holdout_candidate": 0.75, "difference": 0.25,
            "interval": [0.1, 0.4], "margin": 0.02, "holdout_items": 8, "dev_score": 0.7, "dataset_sha256": "d", "gold_rows": 4,
            "model_labelled_rows": 1, "feedback_count": 5, "feedback_ids": ["f1"], "users_sha256": ["u"], "judge_agreement": null, "judge_items": null});
        let r = VersionRecord::of(&version(old.clone()));
        assert_eq!((r.decision, r.holdout_candidate, r.interval, r.users_sha256.len()), (Verdict::Promoted, Some(0.75), Some((0.1, 0.4)), 1));
        assert_eq!(r.to_meta(), old, "written back, the record has the same keys and values");
        // `serve` recorded its artifact as `{"recorded_by": "serve"}`.
        assert_eq!(VersionRecord::of(&version(json!({"recorded_by": "serve"}))), VersionRecord::served());
    }

    #[test]
    fn every_verdict_is_stored_by_its_name_and_an_unreadable_record_says_so() {
        for v in [Verdict::Promoted, Verdict::Canary, Verdict::Rejected, Verdict::Recorded] {
            assert_eq!(serde_json::to_value(v).unwrap(), json!(v.as_str()));
        }
        let r = VersionRecord::of(&version(json!({"decision": "shipped"})));
        assert_eq!(r.decision, Verdict::Recorded);
        assert!(r.reason.contains("unreadable") && r.reason.contains("shipped"), "{}", r.reason);
    }
}
