//! The scheduler of one loaded model: a thread that owns the ONNX session and runs every
//! forward pass. Callers from any number of runs submit jobs (generations, choice scorings)
//! and wait for their own answer; the worker steps them together:
//!
//! - **Continuous batching.** Generating sequences sit in one decode batch. Each turn of the
//!   loop runs at most one prefill pass (new jobs, oldest first) and one decode step for every
//!   sequence in the batch; sequences join after their prefill and leave when they finish, so
//!   no request waits for another's whole generation.
//! - **Single flight.** Jobs whose prompts begin with the same shared part are prefilled
//!   together on top of one cached copy of its keys and values, computed once.
//! - **Bounds.** A pass holds at most `max_batch` rows, `max_batch_tokens` new tokens and
//!   `kv_budget_tokens` of keys and values (rows times length), so memory does not grow with
//!   the number of waiting requests; a lone request too big for the budget still runs alone.
//! - **Fairness.** Jobs are taken in arrival order (a job that cannot join a full batch waits
//!   for a slot, and the batch drains, since every sequence has a token limit); choice jobs
//!   need no slot and are not held up by generations waiting for one.
//!
//! The worker never prints; what it did is counted in [`super::Stats`].

mod batch;
mod choice;
mod pass;
mod trie;

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::batch::{DecodeBatch, Joining};
use self::pass::{Item, PrefixCache};
pub(crate) use self::trie::Choices;
use super::bounds::ChoiceBounds;
use super::error::ModelError;
use super::grammar::Constraint;
use super::local::{ChoiceScores, Finish, Generation, Shared};
use super::sampling::{Sampler, Sampling};
use super::session::{Decoder, Keep};

/// Where a job's answer goes: an async task's oneshot, or a blocked thread's channel.
pub(crate) enum Reply<T> {
    /// An async caller awaiting the answer.
    Async(tokio::sync::oneshot::Sender<T>),
    /// A synchronous caller blocked on the answer.
    Sync(std::sync::mpsc::SyncSender<T>),
}

impl<T> Reply<T> {
    fn send(self, value: T) {
        // A caller that went away (a cancelled run) no longer needs the answer.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(value);
            }
            Reply::Sync(tx) => {
                let _ = tx.send(value);
            }
        }
    }

    /// Whether the caller stopped waiting (only async callers can: a dropped future).
    fn is_closed(&self) -> bool {
        match self {
            Reply::Async(tx) => tx.is_closed(),
            Reply::Sync(_) => false,
        }
    }
}

/// A prompt as token ids, with the length of its shared part.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    /// Every token of the prompt.
    pub ids: Vec<u32>,
    /// How many leading tokens are the shared part (0 when prefix caching is off).
    pub shared: usize,
}

/// A generation job.
pub(crate) struct GenJob {
    pub prompt: Encoded,
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    /// The grammar's state, for a constrained generation (boxed: a matcher is large, and
    /// jobs wait in a queue).
    pub constraint: Option<Box<Constraint>>,
    pub reply: Reply<Result<Generation, ModelError>>,
}

/// A choice-scoring job.
pub(crate) struct ChoiceJob {
    pub prompt: Encoded,
    pub choices: Arc<Choices>,
    /// When only the decision is wanted: the ways it may be decided (see `bounds.rs`).
    pub bounds: Option<Arc<ChoiceBounds>>,
    pub reply: Reply<Result<ChoiceScores, ModelError>>,
}

/// Logits at positions of one unbatched pass (for checks against reference numerics).
pub(crate) struct LogitsJob {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    pub reply: Reply<Result<Vec<Vec<f32>>, ModelError>>,
}

/// Work for the model.
pub(crate) enum Job {
    /// Generate text.
    Generate(GenJob),
    /// Score choices.
    Choose(ChoiceJob),
    /// Raw logits.
    Logits(LogitsJob),
}

impl Job {
    fn is_closed(&self) -> bool {
        match self {
            Job::Generate(j) => j.reply.is_closed(),
            Job::Choose(j) => j.reply.is_closed(),
            Job::Logits(j) => j.reply.is_closed(),
        }
    }

    fn prompt(&self) -> Option<&Encoded> {
        match self {
            Job::Generate(j) => Some(&j.prompt),
            Job::Choose(j) => Some(&j.prompt),
            Job::Logits(_) => None,
        }
    }
}

/// A generating sequence in the decode batch.
pub(crate) struct Sequence {
    sampler: Sampler,
    constraint: Option<Box<Constraint>>,
    tokens: Vec<u32>,
    text: String,
    max_tokens: usize,
    stop: Vec<String>,
    prompt_tokens: usize,
    cached_tokens: usize,
    reply: Reply<Result<Generation, ModelError>>,
}

impl Sequence {
    /// Computes the grammar's mask for the next token, for a constrained sequence.
    fn prepare(&mut self) -> Result<(), ModelError> {
        match self.constraint.as_mut() {
            Some(c) => c.compute(),
            None => Ok(()),
        }
    }

    /// Picks the next token from `logits`, inside the grammar's mask (computed by
    /// [`Sequence::prepare`]) when constrained.
    fn pick(&mut self, logits: &[f32]) -> u32 {
        match &self.constraint {
            Some(c) => self.sampler.pick_masked(logits, c.mask()),
            None => self.sampler.pick(logits),
        }
    }

    /// Takes token `tok`; returns how the sequence ended, if it did.
    fn push(&mut self, tok: u32, shared: &Shared) -> Result<Option<Finish>, ModelError> {
        if let Some(c) = self.constraint.as_mut() {
            c.take(tok)?;
        }
        self.tokens.push(tok);
        if shared.end_tokens.contains(&tok) {
            return Ok(Some(Finish::EndOfText));
        }
        // Decoding the text so far is needed only to look for stop sequences.
        if !self.stop.is_empty() {
            self.text = shared.tokenizer.decode(&self.tokens)?;
            if let Some(cut) = self.stop.iter().filter_map(|st| self.text.find(st.as_str())).min() {
                self.text.truncate(cut);
                return Ok(Some(Finish::Stop));
            }
        }
        Ok((self.tokens.len() >= self.max_tokens).then_some(Finish::Length))
    }

    /// Answers the caller.
    fn finish(mut self, how: Finish, shared: &Shared) {
        let result = (|| {
            if how != Finish::Stop {
                let body = match how {
                    Finish::EndOfText => &self.tokens[..self.tokens.len() - 1],
                    _ => &self.tokens[..],
                };
                self.text = shared.tokenizer.decode(body)?;
            }
            Ok(Generation { text: self.text, tokens: self.tokens, prompt_tokens: self.prompt_tokens, cached_tokens: self.cached_tokens, finish: how })
        })();
        self.reply.send(result);
    }
}

/// The worker: the session, the prefix cache, the queue and the decode batch.
pub(crate) struct Worker {
    decoder: Decoder,
    shared: Arc<Shared>,
    prefixes: PrefixCache,
    waiting: VecDeque<Job>,
    batch: DecodeBatch,
}

impl Worker {
    pub(crate) fn new(decoder: Decoder, shared: Arc<Shared>) -> Worker {
        let kv = decoder.kv;
        Worker { decoder, shared, prefixes: PrefixCache::default(), waiting: VecDeque::new(), batch: DecodeBatch::new(kv) }
    }

    /// Serves jobs until every sender is gone and the work in hand is done.
    pub(crate) fn run(mut self, rx: Receiver<Vec<Job>>) {
        let window = self.shared.options.batch_window;
        let mut open = true;
        loop {
            if self.waiting.is_empty() && self.batch.is_empty() {
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(jobs) => self.waiting.extend(jobs),
                    Err(_) => return,
                }
                // Idle until now: wait a moment for the job's companions (concurrent requests
                // arrive microseconds apart), so they share the first pass.
                let until = Instant::now() + window;
                while self.waiting.len() < self.shared.options.max_batch.max(1) {
                    let left = until.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(jobs) => self.waiting.extend(jobs),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(jobs) => self.waiting.extend(jobs),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.waiting.retain(|j| !j.is_closed());
            self.batch.drop_cancelled();
            self.prefill_once();
            if !self.batch.is_empty() {
                self.decode_step();
            }
        }
    }

    /// Takes the oldest jobs that can go together and runs their prompts in one pass: jobs
    /// of the head job's kind that share its prefix, as many as the limits allow.
    fn prefill_once(&mut self) {
        let Some(head) = self.waiting.front() else { return };
        if let Job::Logits(_) = head {
            if let Some(Job::Logits(job)) = self.waiting.pop_front() {
                let result = pass::logits_at(&mut self.decoder, &self.shared, &job.tokens, &job.positions);
                job.reply.send(result);
            }
            return;
        }
        let generating = matches!(head, Job::Generate(_));
        let group: Vec<u32> = head.prompt().map(|p| p.ids[..p.shared].to_vec()).unwrap_or_default();
        let opts = &self.shared.options;
        // Without cross-request batching, a pass (and the decode batch) serves one request.
        let max_rows = if opts.cross_request { opts.max_batch.max(1) } else { 1 };
        // Choices pack several prompts into a row when the model takes a tree mask (bounded
        // ones, whose trees are fed on top of their own row, keep a row each).
        let bounded = |j: &Job| matches!(j, Job::Choose(c) if c.bounds.is_some());
        let packing = !generating && self.shared.tree && opts.cross_request && !self.waiting.iter().any(bounded);
        // A pass of choices scored in one go keeps no keys and values (see `prefill`): only its
        // rows' prefix copies stay for the whole pass, under a budget of their own.
        let budget = if generating || !self.shared.tree { opts.kv_budget_tokens } else { opts.choice_kv_budget_tokens };
        let mut free_slots = max_rows.saturating_sub(self.batch.alive());
        let mut taken: Vec<Job> = Vec::new();
        let (mut new_tokens, mut longest, mut answer) = (0usize, 0usize, 0usize);
        let mut i = 0;
        while i < self.waiting.len() {
            let job = &self.waiting[i];
            let Some(p) = job.prompt() else { break };
            if p.ids[..p.shared] != group[..] || matches!(job, Job::Generate(_)) != generating {
                i += 1;
                continue;
            }
            if generating && free_slots == 0 {
                break;
            }
            let len = p.ids.len() - group.len() + self.tree_of(job).map_or(0, |t| t.nodes.len());
            let (l, a) = (
                longest.max(len),
                match job {
                    Job::Generate(g) => answer.max(g.max_tokens),
                    _ => answer,
                },
            );
            let rows = if packing { (new_tokens + len).div_ceil(PACK_LEN.max(l)) } else { taken.len() + 1 };
            let row_len = if packing { PACK_LEN.max(l) } else { l };
            let pass_kv = rows * (group.len() + row_len);
            let batch_kv = if generating { self.batch.kv_after_join(taken.len() + 1, group.len() + l + a) } else { 0 };
            let fits = new_tokens + len <= opts.max_batch_tokens && rows <= max_rows && pass_kv.max(batch_kv) <= budget;
            // The first job always goes, even alone over the budget: it has to run sometime.
            if !taken.is_empty() && (!fits || !opts.cross_request) {
                break;
            }
            if let Some(job) = self.waiting.remove(i) {
                free_slots = free_slots.saturating_sub(usize::from(generating));
                new_tokens += len;
                (longest, answer) = (l, a);
                taken.push(job);
            }
        }
        if !taken.is_empty() {
            self.prefill(taken, &group, packing);
        }
    }

    /// The label tree a job's prompt carries in its pass, if any (a bounded choice feeds its
    /// tree afterwards, as far as its bounds need it).
    fn tree_of(&self, job: &Job) -> Option<Arc<Choices>> {
        match job {
            Job::Choose(c) if self.shared.tree && !c.choices.nodes.is_empty() && c.bounds.is_none() => Some(c.choices.clone()),
            _ => None,
        }
    }

    /// Runs one prefill pass for `jobs` (all sharing `group` as their cached prefix), packed
    /// several to a row when `packing`, else one to a row.
    fn prefill(&mut self, jobs: Vec<Job>, group: &[u32], packing: bool) {
        let shared = self.shared.clone();
        let prefix = if group.is_empty() {
            None
        } else {
            match self.prefixes.get_or_compute(&mut self.decoder, &shared, group) {
                Ok(p) => Some(p),
                Err(e) => return fail_all(jobs, &e),
            }
        };
        let skip = prefix.as_ref().map_or(0, |p| p.len);
        let items: Vec<Item<'_>> = jobs.iter().filter_map(|j| j.prompt().map(|p| Item { suffix: &p.ids[skip..], tree: self.tree_of(j) })).collect();
        let (order, rows) = if packing { pack(items) } else { ((0..items.len()).collect(), items.into_iter().map(|it| vec![it]).collect()) };
        // The pass's keys and values are needed afterwards only by generations (which join
        // the decode batch) and by choices scored in a second pass (models without a tree
        // mask) or fed their trees afterwards (bounded ones); a pass of choices scored in one go
        // does without, which bounds its memory by one layer's keys and values instead of every
        // layer's.
        let continued = jobs.iter().any(|j| matches!(j, Job::Generate(_)) || matches!(j, Job::Choose(c) if c.bounds.is_some()));
        let keep = if continued || !shared.tree { Keep::Cache } else { Keep::LogitsOnly };
        let fwd = match pass::first_pass(&mut self.decoder, &shared, &rows, prefix.as_deref(), keep) {
            Ok(f) => f,
            Err(e) => return fail_all(jobs, &e),
        };
        drop(rows);
        // `order[k]` is the job whose item came k-th in row order.
        let mut at = vec![0; order.len()];
        for (k, &job) in order.iter().enumerate() {
            at[job] = k;
        }
        let mut choice_items = Vec::new();
        let mut joining = Vec::new();
        for (n, job) in jobs.into_iter().enumerate() {
            let out = &fwd.items[at[n]];
            match job {
                Job::Choose(j) => choice_items.push((at[n], j)),
                Job::Generate(j) => {
                    let mut seq = Sequence {
                        sampler: Sampler::new(j.sampling),
                        constraint: j.constraint,
                        tokens: Vec::new(),
                        text: String::new(),
                        max_tokens: j.max_tokens.max(1),
                        stop: j.stop,
                        prompt_tokens: j.prompt.ids.len(),
                        cached_tokens: skip,
                        reply: j.reply,
                    };
                    if let Err(e) = seq.prepare() {
                        seq.reply.send(Err(e));
                        continue;
                    }
                    let tok = seq.pick(&out.last);
                    shared.count_generated(1);
                    match seq.push(tok, &shared) {
                        Err(e) => seq.reply.send(Err(e)),
                        Ok(Some(how)) => seq.finish(how, &shared),
                        Ok(None) => joining.push(Joining { row: out.row, next_pos: out.next_pos, pending: tok, seq }),
                    }
                }
                Job::Logits(_) => {}
            }
        }
        if !choice_items.is_empty() {
            choice::score(&mut self.decoder, &shared, &fwd, choice_items, skip);
        }
        if !joining.is_empty() {
            if let Err(e) = self.batch.join(&fwd, joining) {
                self.batch.fail_all(&e);
            }
        }
    }

    /// One decode step for every sequence in the batch.
    fn decode_step(&mut self) {
        let shared = self.shared.clone();
        if let Err(e) = self.batch.step(&mut self.decoder, &shared) {
            self.batch.fail_all(&e);
        }
    }
}

/// Answers every job with a copy of `e`.
fn fail_all(jobs: Vec<Job>, e: &ModelError) {
    for job in jobs {
        let err = e.duplicate();
        match job {
            Job::Generate(j) => j.reply.send(Err(err)),
            Job::Choose(j) => j.reply.send(Err(err)),
            Job::Logits(j) => j.reply.send(Err(err)),
        }
    }
}

/// Rows of packed prompts hold about this many positions (or one longer prompt): long enough
/// that a row's prefix copy and per-row work are shared by several prompts, short enough
/// that attention over the row (masked between prompts) stays a small part of the pass.
const PACK_LEN: usize = 128;

/// Packs items into rows, first fit by decreasing length; returns the rows and, for each
/// item in row order, its index in `items`.
fn pack(items: Vec<Item<'_>>) -> (Vec<usize>, Vec<Vec<Item<'_>>>) {
    let cap = items.iter().map(Item::len).max().unwrap_or(0).max(PACK_LEN);
    let mut by_len: Vec<(usize, Item<'_>)> = items.into_iter().enumerate().collect();
    by_len.sort_by_key(|(i, it)| (std::cmp::Reverse(it.len()), *i));
    let mut rows: Vec<(usize, Vec<(usize, Item<'_>)>)> = Vec::new();
    for (i, it) in by_len {
        match rows.iter_mut().find(|(used, _)| used + it.len() <= cap) {
            Some((used, row)) => {
                *used += it.len();
                row.push((i, it));
            }
            None => rows.push((it.len(), vec![(i, it)])),
        }
    }
    let order = rows.iter().flat_map(|(_, row)| row.iter().map(|(i, _)| *i)).collect();
    (order, rows.into_iter().map(|(_, row)| row.into_iter().map(|(_, it)| it).collect()).collect())
}

/// How long an idle worker waits for a first job's companions, by default.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_millis(2);
