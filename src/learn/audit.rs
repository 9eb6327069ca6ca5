//! The audit trail of learning: every version of a program's artifact with its scores and
//! decision (`loopc history`), where each demo came from (`loopc why`), and forgetting a user:
//! their runs and feedback leave the store, so no later dataset holds them, and every version
//! whose training data they shaped is marked.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::record::{Verdict, VersionRecord};
use super::LearnError;
use crate::runtime::artifact::Artifact;
use crate::store::{AuditKind, Removed, Store};

/// One version of a program's artifact, as learning recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    /// The artifact's content hash.
    pub hash: String,
    /// The version it was learned from.
    pub parent: Option<String>,
    /// When it was recorded (milliseconds since the epoch).
    pub created_ms: i64,
    /// What the store recorded of it.
    pub record: VersionRecord,
    /// Whether a forgotten user's data shaped it (it should be learned again without them).
    pub tainted: bool,
}

/// Every recorded version of `program`, oldest first.
pub async fn history(store: &Store, program: &str) -> Result<Vec<Version>, LearnError> {
    let tainted: Vec<String> = store.audit_events(Some(AuditKind::Taint)).await?.into_iter().map(|e| e.subject).collect();
    let mut versions: Vec<Version> = store
        .artifacts(program)
        .await?
        .into_iter()
        .map(|a| Version { tainted: tainted.contains(&a.hash), record: VersionRecord::of(&a), hash: a.hash, parent: a.parent, created_ms: a.created.millis() })
        .collect();
    versions.sort_by_key(|v| v.created_ms);
    Ok(versions)
}

/// The version of `program` every replica should serve: the one promoted last, with its
/// artifact, if any. A version is promoted when the gate passed it outright, or later, by a
/// `promote` audit event (a canary that held up); a `rollback` event withdraws it.
pub async fn current(store: &Store, program: &str) -> Result<Option<(String, Artifact)>, LearnError> {
    let versions = store.artifacts(program).await?;
    let events = |kind| async move { store.audit_events(Some(kind)).await };
    let promotes = events(AuditKind::Promote).await?;
    let rollbacks = events(AuditKind::Rollback).await?;
    let mut best: Option<(i64, crate::store::ArtifactVersion)> = None;
    for v in versions {
        if rollbacks.iter().any(|e| e.subject == v.hash) {
            continue;
        }
        let by_gate = (VersionRecord::of(&v).decision == Verdict::Promoted).then(|| v.created.millis());
        let by_event = promotes.iter().filter(|e| e.subject == v.hash && e.detail["after_canary"] == true).map(|e| e.created.millis()).max();
        let Some(at) = by_gate.into_iter().chain(by_event).max() else { continue };
        if best.as_ref().is_none_or(|(t, _)| at >= *t) {
            best = Some((at, v));
        }
    }
    let Some((_, v)) = best else { return Ok(None) };
    let Some(body) = v.body.or(store.artifact(&v.hash).await?.and_then(|a| a.body)) else { return Ok(None) };
    let artifact = Artifact::parse(&format!("store version {}", v.hash), &body.to_string())?;
    Ok(Some((v.hash, artifact)))
}

/// Ends a canary: promotes version `hash` of `program` for every replica, or rolls it back,
/// with the reason (from its live feedback).
pub async fn conclude_canary(store: &Store, program: &str, hash: &str, promote: bool, reason: &str) -> Result<(), LearnError> {
    let kind = if promote { AuditKind::Promote } else { AuditKind::Rollback };
    store.audit(kind, hash, &json!({"program": program, "after_canary": true, "reason": reason})).await?;
    Ok(())
}

/// Where an artifact's demos came from (`loopc why`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Why {
    /// The program's name.
    pub program: String,
    /// What it learned from, when a round made it.
    pub learned_from: Option<WhyLearned>,
    /// Each step's demos, in order.
    pub steps: BTreeMap<String, Vec<WhyDemo>>,
}

/// The data a learned artifact came from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WhyLearned {
    /// The version it was learned from.
    pub parent: Option<String>,
    /// SHA-256 of the dataset snapshot.
    pub dataset_sha256: String,
    /// Human-labelled rows.
    pub gold_rows: usize,
    /// Accepted model outputs.
    pub model_labelled_rows: usize,
    /// Pieces of feedback behind the data.
    pub feedback: usize,
    /// Users whose feedback the round left out for low trust, and why.
    pub left_out: Vec<super::trust::LeftOut>,
}

/// One demo and where it came from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WhyDemo {
    /// The demo's inputs.
    pub inputs: Map<String, Value>,
    /// The demo's outputs.
    pub outputs: Map<String, Value>,
    /// The kind of stored row it came from, or `not learned from the store`.
    pub kind: &'static str,
    /// The runs on its input (none when not learned from the store).
    pub run_ids: Option<Vec<String>>,
    /// The feedback that labelled it.
    pub feedback_ids: Option<Vec<String>>,
    /// How many users gave that feedback.
    pub users: usize,
}

/// For each step of `artifact`, each demo and where it came from (`loopc why`).
pub fn why(artifact: &Artifact) -> Why {
    let learned = artifact.provenance.learned.as_ref();
    let steps = artifact
        .steps
        .iter()
        .map(|(step, rec)| {
            let sources = learned.and_then(|l| l.demo_sources.get(step));
            let demos = rec
                .demos
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let s = sources.and_then(|s| s.get(i));
                    WhyDemo {
                        inputs: d.inputs.clone(),
                        outputs: d.outputs.clone(),
                        kind: s.map_or("not learned from the store", |s| s.kind.as_str()),
                        run_ids: s.map(|s| s.run_ids.clone()),
                        feedback_ids: s.map(|s| s.feedback_ids.clone()),
                        users: s.map_or(0, |s| s.users_sha256.len()),
                    }
                })
                .collect();
            (step.clone(), demos)
        })
        .collect();
    Why {
        program: artifact.program.name.clone(),
        learned_from: learned.map(|l| WhyLearned {
            parent: l.parent.clone(),
            dataset_sha256: l.dataset_sha256.clone(),
            gold_rows: l.gold_rows,
            model_labelled_rows: l.model_labelled_rows,
            feedback: l.feedback_ids.len(),
            left_out: l.left_out.clone(),
        }),
        steps,
    }
}

/// Forgets `user`: deletes their runs and feedback (so no later dataset holds them) and marks
/// every recorded version whose training data they shaped; returns what was removed and the
/// versions marked.
pub async fn forget(store: &Store, user: &str) -> Result<(Removed, Vec<String>), LearnError> {
    let removed = store.forget_user(user).await?;
    let hashed = crate::fs::sha256_hex(user.as_bytes());
    let mut marked = Vec::new();
    for v in store.all_artifacts().await? {
        let shaped = VersionRecord::of(&v).users_sha256.contains(&hashed);
        if shaped {
            store.audit(AuditKind::Taint, &v.hash, &json!({"program": v.program, "reason": "a forgotten user's feedback trained it"})).await?;
            marked.push(v.hash);
        }
    }
    Ok((removed, marked))
}
