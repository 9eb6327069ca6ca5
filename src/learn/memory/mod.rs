//! Online memory: what people said of earlier runs, recalled for the next similar request at
//! once, without a learning round. A program declares it per step (`memory STEP { demos,
//! tokens, min_trust, max_age_days, keep, approved }`); a [`Memory`] holds, for one program,
//! every input people corrected or approved with the votes on it, an incremental BM25 index per
//! remembering step, and the trust of every user; the runtime asks it through
//! [`crate::runtime::memory::DemoMemory`] for each request.
//!
//! The store is the truth and every replica follows it: [`Memory::sync`] reads what changed
//! since its last look (new feedback on the program's runs, users forgotten, runs expired) and
//! applies it in memory; `serve` calls it before each request, so a correction stored by any
//! replica reaches the next request on every replica, and a forgotten user's votes leave before
//! it. What memory holds is what the store holds: redacted, consented, within retention.
//!
//! What counts: each piece of feedback is read by the one rule of `opinion`; a correction (or
//! edit) votes for its outputs, an approval for the run's answer (when the step takes
//! approvals). Users below the step's `min_trust` are left out (see [`super::trust`]); the
//! remaining votes on an input are weighed by trust, the newest breaking ties.

mod index;
mod state;
mod votes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use self::state::State;
use self::votes::{key_of, vote, StepMemory};
use super::trust::TrustTable;
use crate::compile::Example;
use crate::graph::Dag;
use crate::runtime::memory::{DemoMemory, Recall, Recalled};
use crate::store::{AuditKind, FeedbackStamp, Store, StoreError, Timestamp, FOLLOW_OVERLAP_MS, FOLLOW_PAGE};

/// What one [`Memory::sync`] took in and let go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Pieces of feedback read.
    pub feedback: usize,
    /// Votes taken in (feedback that says which outputs are right).
    pub votes: usize,
    /// Votes removed (forgotten users, expired runs).
    pub removed: usize,
    /// Inputs let go past `keep`.
    pub evicted: usize,
    /// Whether this call read the store (false: a sync that started after this call did).
    pub read: bool,
}

/// Where a memory stands in the store.
#[derive(Debug, Default)]
struct Follow {
    /// The newest feedback time taken in.
    feedback_since: i64,
    /// The newest deletion event applied.
    events_since: i64,
    /// When the last read started.
    last_started: Option<Instant>,
}

/// The online memory of one program (see the module).
pub struct Memory {
    program: String,
    dag: Arc<Dag>,
    steps: Vec<StepMemory>,
    keep: usize,
    needs_trace: bool,
    state: Mutex<State>,
    follow: tokio::sync::Mutex<Follow>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("program", &self.program).field("inputs", &self.len()).finish()
    }
}

impl Memory {
    /// An empty memory for `dag`'s `memory` declarations (`None` when it declares none). The
    /// `reference` examples (a human-labelled holdout) help judge users' trust; they are never
    /// recalled.
    pub fn new(dag: &Dag, reference: &[Example]) -> Option<Memory> {
        let steps = StepMemory::of(dag);
        if steps.is_empty() {
            return None;
        }
        let classes = super::trust::classes_of(dag);
        let inputs: Vec<&str> = dag.inputs().iter().map(|f| f.name.as_str()).collect();
        let outputs: Vec<&str> = dag.outputs().iter().map(|f| f.name.as_str()).collect();
        let pick = |names: &[&str], e: &Example| -> Option<serde_json::Map<String, Value>> {
            names.iter().map(|n| Some((n.to_string(), e.fields.get(*n)?.clone()))).collect()
        };
        let reference: HashMap<String, String> = reference.iter().filter_map(|e| Some((key_of(&pick(&inputs, e)?), key_of(&pick(&outputs, e)?)))).collect();
        let keep = steps.iter().map(|s| s.spec.keep).max().unwrap_or(usize::MAX);
        let needs_trace = steps.iter().any(StepMemory::needs_trace);
        Some(Memory {
            program: dag.name().to_string(),
            dag: Arc::new(dag.clone()),
            state: Mutex::new(State::new(steps.clone(), classes, reference)),
            steps,
            keep,
            needs_trace,
            follow: tokio::sync::Mutex::new(Follow::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inputs remembered.
    pub fn len(&self) -> usize {
        self.state().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The trust of every user memory has seen, as last estimated.
    pub fn trust(&self) -> TrustTable {
        self.state().trust.clone()
    }

    /// The program whose runs it follows.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Brings the memory up to date with the store: deletions first (users forgotten, runs
    /// expired), then every piece of feedback on the program's runs not taken in yet. Calls that
    /// arrive while another reads wait for it and read again, so whoever calls `sync` sees
    /// every write committed before the call.
    pub async fn sync(&self, store: &Store) -> Result<SyncReport, StoreError> {
        let arrived = Instant::now();
        let mut follow = self.follow.lock().await;
        if follow.last_started.is_some_and(|t| t >= arrived) {
            return Ok(SyncReport::default());
        }
        follow.last_started = Some(Instant::now());
        let mut report = SyncReport { read: true, ..SyncReport::default() };

        let events =
            store.audit_events_since(&[AuditKind::ForgetUser, AuditKind::Expire], Timestamp::from_millis(follow.events_since - FOLLOW_OVERLAP_MS)).await?;
        let mut fresh: Vec<FeedbackStamp> = Vec::new();
        let since = Timestamp::from_millis(follow.feedback_since - FOLLOW_OVERLAP_MS);
        let mut after: Option<FeedbackStamp> = None;
        loop {
            let page = store.feedback_since(&self.program, since, after.as_ref()).await?;
            let full = page.len() == FOLLOW_PAGE;
            after = page.last().cloned();
            {
                let state = self.state();
                fresh.extend(page.into_iter().filter(|s| !state.seen.contains(s.id.as_str())));
            }
            if !full {
                break;
            }
        }
        let mut rows = Vec::new();
        for chunk in fresh.chunks(FOLLOW_PAGE) {
            let ids: Vec<_> = chunk.iter().map(|s| s.id.clone()).collect();
            rows.extend(store.feedback_with_runs(&ids, self.needs_trace).await?);
        }

        let mut state = self.state();
        for e in events {
            if !state.seen_events.insert(e.id.clone()) {
                continue;
            }
            follow.events_since = follow.events_since.max(e.created.millis());
            report.removed += match e.kind {
                AuditKind::ForgetUser => {
                    let Some(user) = e.subject.strip_prefix("user:sha256:").map(str::to_string) else { continue };
                    state.remove_votes(|v| v.rater_sha256 == user || v.run_user_sha256.as_deref() == Some(user.as_str()))
                }
                AuditKind::Expire => {
                    let Some(older_than) = e.detail.get("older_than").and_then(Value::as_i64) else { continue };
                    state.remove_votes(|v| v.run_created < older_than)
                }
                _ => 0,
            };
        }
        for s in &fresh {
            follow.feedback_since = follow.feedback_since.max(s.created.millis());
        }
        report.feedback = rows.len();
        for (f, run) in rows {
            if !state.seen.insert(f.id.to_string()) {
                continue;
            }
            let Some(inputs) = run.inputs.as_object() else { continue };
            if let Some(v) = vote(&f, &run, &self.dag, &self.steps) {
                state.add(key_of(inputs), v);
                report.votes += 1;
            }
        }
        report.evicted = state.evict(self.keep);
        state.refresh_trust();
        Ok(report)
    }
}

impl DemoMemory for Memory {
    fn recall(&self, ask: &Recall<'_>) -> Vec<Recalled> {
        self.state().recall(ask, Timestamp::now().millis())
    }
}

#[cfg(test)]
mod tests;
