//! What a memory holds: every remembered input with its votes, an index per remembering step,
//! and the trust table; how votes come and go (feedback, forgotten users, expired runs, the
//! `keep` limit), and how demos are recalled for a request.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::index::{DocId, Index};
use super::votes::{StepMemory, Vote};
use crate::learn::trust::{Judgement, Rater, TrustTable};
use crate::runtime::memory::{Recall, Recalled};
use crate::runtime::value::render;

/// One remembered input.
#[derive(Debug)]
struct Item {
    votes: Vec<Vote>,
    /// Its document in each step's index, when a vote made a demo for that step.
    docs: Vec<Option<DocId>>,
    /// The newest vote's time.
    newest: i64,
}

/// A step's index and which input each document is.
#[derive(Debug, Default)]
struct StepIndex {
    index: Index,
    keys: HashMap<DocId, String>,
    /// Documents by their input's newest vote, for "newest first among equals".
    recency: BTreeSet<(i64, DocId)>,
    /// Each document's input's newest vote, by document id (read for every hit of a query,
    /// so a vector, not a map).
    newest: Vec<i64>,
}

impl StepIndex {
    fn set_newest(&mut self, d: DocId, t: i64) {
        let i = d as usize;
        if self.newest.len() <= i {
            self.newest.resize(i + 1, i64::MIN);
        }
        self.newest[i] = t;
    }
}

/// The state behind a memory's lock.
#[derive(Debug)]
pub(super) struct State {
    steps: Vec<StepMemory>,
    classes: usize,
    items: HashMap<String, Item>,
    /// Inputs by their newest vote (the oldest leave first past `keep`).
    by_age: BTreeSet<(i64, String)>,
    per_step: Vec<StepIndex>,
    /// The holdout's answer per input, if one was given.
    reference: HashMap<String, String>,
    /// Inputs more than one rater answered (or the holdout labels): the trust evidence.
    shared: HashSet<String>,
    pub(super) trust: TrustTable,
    trust_stale: bool,
    /// Feedback ids taken in, and events applied.
    pub(super) seen: HashSet<String>,
    pub(super) seen_events: HashSet<String>,
}

/// The text a step's inputs are indexed and matched by (as `runtime::retrieve` does).
pub(super) fn text_of(values: &Map<String, Value>) -> String {
    values.values().map(render).collect::<Vec<_>>().join("\n")
}

impl State {
    pub(super) fn new(steps: Vec<StepMemory>, classes: usize, reference: HashMap<String, String>) -> State {
        let per_step = steps.iter().map(|_| StepIndex::default()).collect();
        State {
            steps,
            classes,
            items: HashMap::new(),
            by_age: BTreeSet::new(),
            per_step,
            shared: reference.keys().cloned().collect(),
            reference,
            trust: TrustTable::default(),
            trust_stale: true,
            seen: HashSet::new(),
            seen_events: HashSet::new(),
        }
    }

    /// Inputs remembered.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Takes in a vote on the input with key `key`.
    pub(super) fn add(&mut self, key: String, vote: Vote) {
        let steps = self.steps.len();
        let item = self.items.entry(key.clone()).or_insert_with(|| Item { votes: Vec::new(), docs: vec![None; steps], newest: i64::MIN });
        let old_newest = item.newest;
        for (s, demo) in vote.demos.iter().enumerate() {
            if let (None, Some(d)) = (item.docs[s], demo) {
                let index = &mut self.per_step[s];
                let id = index.index.add(&text_of(&d.inputs));
                index.keys.insert(id, key.clone());
                item.docs[s] = Some(id);
            }
        }
        item.newest = item.newest.max(vote.created);
        item.votes.push(vote);
        let raters: HashSet<&str> = item.votes.iter().map(|v| v.rater.as_str()).collect();
        if raters.len() > 1 {
            self.shared.insert(key.clone());
            self.trust_stale = true;
        } else if self.reference.contains_key(&key) {
            self.trust_stale = true;
        }
        let (newest, docs) = (item.newest, item.docs.clone());
        self.by_age.remove(&(old_newest, key.clone()));
        self.by_age.insert((newest, key));
        for (s, d) in docs.into_iter().enumerate() {
            if let Some(d) = d {
                self.per_step[s].recency.remove(&(old_newest, d));
                self.per_step[s].recency.insert((newest, d));
                self.per_step[s].set_newest(d, newest);
            }
        }
    }

    /// Removes every vote `gone` says, and inputs left with none; returns how many votes went.
    pub(super) fn remove_votes(&mut self, gone: impl Fn(&Vote) -> bool) -> usize {
        let keys: Vec<String> = self.items.iter().filter(|(_, i)| i.votes.iter().any(&gone)).map(|(k, _)| k.clone()).collect();
        let mut removed = 0;
        for key in keys {
            let Some(item) = self.items.get_mut(&key) else { continue };
            let before = item.votes.len();
            item.votes.retain(|v| !gone(v));
            removed += before - item.votes.len();
            self.trust_stale = true;
            if item.votes.is_empty() {
                self.drop_item(&key);
            }
        }
        removed
    }

    fn drop_item(&mut self, key: &str) {
        let Some(item) = self.items.remove(key) else { return };
        self.by_age.remove(&(item.newest, key.to_string()));
        self.shared.remove(key);
        for (s, d) in item.docs.into_iter().enumerate() {
            if let Some(d) = d {
                let index = &mut self.per_step[s];
                index.index.remove(d);
                index.keys.remove(&d);
                index.recency.remove(&(item.newest, d));
            }
        }
    }

    /// Forgets the oldest inputs past `keep`.
    pub(super) fn evict(&mut self, keep: usize) -> usize {
        let mut evicted = 0;
        while self.items.len() > keep {
            let Some((_, key)) = self.by_age.iter().next().cloned() else { break };
            self.drop_item(&key);
            self.trust_stale = true;
            evicted += 1;
        }
        evicted
    }

    /// Re-estimates trust if votes on shared inputs changed since the last estimate.
    pub(super) fn refresh_trust(&mut self) {
        if !self.trust_stale {
            return;
        }
        let mut judgements = Vec::new();
        for key in &self.shared {
            if let Some(answer) = self.reference.get(key) {
                judgements.push(Judgement { item: key.clone(), rater: "holdout".into(), kind: Rater::Reference, answer: answer.clone() });
            }
            let Some(item) = self.items.get(key) else { continue };
            let mut votes: Vec<&Vote> = item.votes.iter().collect();
            votes.sort_by_key(|v| v.created);
            judgements.extend(votes.into_iter().map(|v| Judgement { item: key.clone(), rater: v.rater.clone(), kind: v.kind, answer: v.answer.clone() }));
        }
        self.trust = TrustTable::estimate(&judgements, self.classes);
        self.trust_stale = false;
    }

    /// The demo input `key` gives step `s` now: the answer its trusted votes (new enough,
    /// approvals only when the step takes them) weigh most, by trust (ties: the newest), with
    /// the feedback that decided it.
    fn resolve(&self, key: &str, s: usize, now: i64) -> Option<(crate::runtime::adapter::Demo, String)> {
        let spec = &self.steps[s].spec;
        let oldest = spec.max_age_days.map_or(i64::MIN, |d| now - i64::try_from(d).unwrap_or(i64::MAX / 86_400_000).saturating_mul(86_400_000));
        let item = self.items.get(key)?;
        // Each rater's newest vote counts once.
        let mut latest: HashMap<&str, &Vote> = HashMap::new();
        for v in &item.votes {
            if v.created < oldest || (v.approval && !spec.approved) || v.demos[s].is_none() || self.trust.trust(&v.rater) < spec.min_trust {
                continue;
            }
            let slot = latest.entry(v.rater.as_str()).or_insert(v);
            if v.created >= slot.created {
                *slot = v;
            }
        }
        let mut tally: HashMap<&str, (f64, i64, &Vote)> = HashMap::new();
        for v in latest.values() {
            // A tiny weight for everyone, so equal trust falls back to counting heads.
            let w = self.trust.weight(&v.rater) + 1e-6;
            let e = tally.entry(v.answer.as_str()).or_insert((0.0, i64::MIN, v));
            e.0 += w;
            if v.created > e.1 {
                e.1 = v.created;
                e.2 = v;
            }
        }
        let (_, _, best) = tally.into_values().max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        Some((best.demos[s].clone()?, best.feedback.clone()))
    }

    /// The demos step `ask.step` recalls for `ask.inputs` (see `DemoMemory`): the most similar
    /// remembered inputs, newest first among equals, whose trusted votes give a demo, as many as
    /// the step takes and its token budget holds; the most similar last.
    pub(super) fn recall(&mut self, ask: &Recall<'_>, now: i64) -> Vec<Recalled> {
        let Some(s) = self.steps.iter().position(|m| m.name == ask.step) else { return Vec::new() };
        let mut pick = Pick { want: self.steps[s].spec.demos, budget: self.steps[s].spec.tokens, used: 0, taken: Vec::new(), tried: HashSet::new() };
        let hits = self.per_step[s].index.search(&text_of(ask.inputs));
        let newest = |d: DocId| self.per_step[s].newest.get(d as usize).copied().unwrap_or(i64::MIN);
        // Most similar first, newest first among equals; only the head is sorted unless the
        // head does not give enough demos.
        let order = |a: &(DocId, f32, i64), b: &(DocId, f32, i64)| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2));
        let mut ranked: Vec<(DocId, f32, i64)> = hits.into_iter().map(|(d, sc)| (d, sc, newest(d))).collect();
        let head = (pick.want * 8).max(32).min(ranked.len());
        if head < ranked.len() {
            ranked.select_nth_unstable_by(head, order);
        }
        let (first, rest) = ranked.split_at_mut(head);
        first.sort_by(order);
        for &(d, _, _) in first.iter() {
            if pick.full() {
                break;
            }
            pick.consider(d, self, s, now, ask);
        }
        if !pick.full() && !rest.is_empty() {
            rest.sort_by(order);
            for &(d, _, _) in rest.iter() {
                if pick.full() {
                    break;
                }
                pick.consider(d, self, s, now, ask);
            }
        }
        // Inputs sharing no word with the request are equals: the newest fill what is left.
        if !pick.full() {
            let recent: Vec<DocId> = self.per_step[s].recency.iter().rev().map(|(_, d)| *d).filter(|d| !pick.tried.contains(d)).take(pick.want * 8).collect();
            for d in recent {
                if pick.full() {
                    break;
                }
                pick.consider(d, self, s, now, ask);
            }
        }
        pick.taken.reverse();
        pick.taken
    }
}

/// Demos being picked for one request.
struct Pick {
    want: usize,
    budget: usize,
    used: usize,
    taken: Vec<Recalled>,
    tried: HashSet<DocId>,
}

impl Pick {
    fn full(&self) -> bool {
        self.taken.len() >= self.want
    }

    /// Takes document `d` of step `s` if its input resolves to a demo that fits the budget.
    fn consider(&mut self, d: DocId, state: &State, s: usize, now: i64, ask: &Recall<'_>) {
        self.tried.insert(d);
        let Some(key) = state.per_step[s].keys.get(&d) else { return };
        let Some((demo, reference)) = state.resolve(key, s, now) else { return };
        let cost = (ask.tokens)(&demo);
        if self.used + cost > self.budget {
            return;
        }
        self.used += cost;
        self.taken.push(Recalled { demo, reference });
    }
}
