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

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::batch::{DecodeBatch, Joining};
use self::pass::{PrefixCache, Row};
use super::error::ModelError;
use super::local::{ChoiceScores, Finish, Generation, Shared};
use super::sampling::{Sampler, Sampling};
use super::session::Decoder;

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
    pub reply: Reply<Result<Generation, ModelError>>,
}

/// A choice-scoring job.
pub(crate) struct ChoiceJob {
    pub prompt: Encoded,
    pub choices: Arc<Vec<Vec<u32>>>,
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
    tokens: Vec<u32>,
    text: String,
    max_tokens: usize,
    stop: Vec<String>,
    prompt_tokens: usize,
    cached_tokens: usize,
    reply: Reply<Result<Generation, ModelError>>,
}

impl Sequence {
    /// Takes token `tok`; returns how the sequence ended, if it did.
    fn push(&mut self, tok: u32, shared: &Shared) -> Result<Option<Finish>, ModelError> {
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
    pub(crate) fn run(mut self, rx: Receiver<Job>) {
        let window = self.shared.options.batch_window;
        let mut open = true;
        loop {
            if self.waiting.is_empty() && self.batch.is_empty() {
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
                // Idle until now: wait a moment for the job's companions (concurrent requests
                // arrive microseconds apart), so they share the first pass.
                let until = Instant::now() + window;
                while self.waiting.len() < self.shared.options.max_batch.max(1) {
                    let left = until.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(job) => self.waiting.push_back(job),
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
                    Ok(job) => self.waiting.push_back(job),
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

    /// Takes the oldest jobs that can go together and runs their prompts in one pass.
    fn prefill_once(&mut self) {
        let Some(head) = self.waiting.front() else { return };
        if let Job::Logits(_) = head {
            if let Some(Job::Logits(job)) = self.waiting.pop_front() {
                let result = pass::logits_at(&mut self.decoder, &self.shared, &job.tokens, &job.positions);
                job.reply.send(result);
            }
            return;
        }
        let opts = &self.shared.options;
        let max_rows = opts.max_batch.max(1);
        let group: Vec<u32> = head.prompt().map(|p| p.ids[..p.shared].to_vec()).unwrap_or_default();
        let mut free_slots = max_rows.saturating_sub(self.batch.alive());
        let mut taken: Vec<Job> = Vec::new();
        let (mut new_tokens, mut longest, mut gen_rows) = (0usize, 0usize, 0usize);
        let mut i = 0;
        while i < self.waiting.len() && taken.len() < max_rows {
            let job = &self.waiting[i];
            let Some(p) = job.prompt() else { break };
            let is_gen = matches!(job, Job::Generate(_));
            if p.ids[..p.shared] != group[..] || (is_gen && free_slots == 0) {
                i += 1;
                continue;
            }
            let suffix = p.ids.len() - group.len();
            let len = longest.max(suffix);
            let pass_kv = (taken.len() + 1) * (group.len() + len);
            let batch_kv = self.batch.kv_after_join(gen_rows + usize::from(is_gen), group.len() + len);
            let fits = new_tokens + suffix <= opts.max_batch_tokens && pass_kv.max(batch_kv) <= opts.kv_budget_tokens;
            // The first job always goes, even alone over the budget: it has to run sometime.
            if !taken.is_empty() && !fits {
                break;
            }
            if let Some(job) = self.waiting.remove(i) {
                if is_gen {
                    free_slots -= 1;
                    gen_rows += 1;
                }
                new_tokens += suffix;
                longest = len;
                taken.push(job);
            }
        }
        if !taken.is_empty() {
            self.prefill(taken, &group);
        }
    }

    /// Runs one prefill pass for `jobs` (all sharing `group` as their cached prefix).
    fn prefill(&mut self, jobs: Vec<Job>, group: &[u32]) {
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
        let rows: Vec<Row<'_>> = jobs.iter().filter_map(|j| j.prompt()).map(|p| Row { suffix: &p.ids[skip..] }).collect();
        let fwd = match pass::first_pass(&mut self.decoder, &shared, &rows, prefix.as_deref()) {
            Ok(f) => f,
            Err(e) => return fail_all(jobs, &e),
        };
        let mut choice_rows = Vec::new();
        let mut joining = Vec::new();
        for (r, job) in jobs.into_iter().enumerate() {
            match job {
                Job::Choose(j) => choice_rows.push((r, j)),
                Job::Generate(j) => {
                    let mut seq = Sequence {
                        sampler: Sampler::new(j.sampling),
                        tokens: Vec::new(),
                        text: String::new(),
                        max_tokens: j.max_tokens.max(1),
                        stop: j.stop,
                        prompt_tokens: j.prompt.ids.len(),
                        cached_tokens: skip,
                        reply: j.reply,
                    };
                    let tok = seq.sampler.pick(&fwd.logits[r]);
                    shared.count_generated(1);
                    match seq.push(tok, &shared) {
                        Err(e) => seq.reply.send(Err(e)),
                        Ok(Some(how)) => seq.finish(how, &shared),
                        Ok(None) => joining.push(Joining { row: r, next_pos: j.prompt.ids.len() as i64, pending: tok, seq }),
                    }
                }
                Job::Logits(_) => {}
            }
        }
        if !choice_rows.is_empty() {
            choice::score(&mut self.decoder, &shared, &fwd, choice_rows, skip);
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

/// How long an idle worker waits for a first job's companions, by default.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_millis(2);
