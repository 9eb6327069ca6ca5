//! The local model: a decoder session run by its own scheduler thread (see [`super::worker`]),
//! its tokenizer and chat format, its context length and fingerprint. Generation and choice
//! scoring are submitted to the scheduler, which batches them with everyone else's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::bounds::ChoiceBounds;
use super::chat::{ChatTemplate, Message};
use super::error::{io, ModelError};
use super::grammar::Constraint;
use super::import::{hex, CONFIG_FILE, MODEL_FILE, PREFILL_MODEL_FILE, TOKENIZER_FILE};
use super::prompting::ModelText;
use super::sampling::Sampling;
use super::session::{self, Decoder};
use super::text::PromptText;
use super::tokenizer::{TokenCount, Tokenizer};
use super::worker::{self, ChoiceJob, Choices, Encoded, GenJob, Job, LogitsJob, Reply, Worker};
use sha2::Digest;

/// Options for loading a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Intra-op threads (default: the machine's cores).
    pub threads: usize,
    /// The most rows run in one forward pass (and sequences in the decode batch).
    pub max_batch: usize,
    /// The most new prompt tokens in one prefill pass.
    pub max_batch_tokens: usize,
    /// The most key/value positions (rows times length) a pass or the decode batch holds;
    /// bounds memory. A single request larger than this still runs, alone.
    pub kv_budget_tokens: usize,
    /// The most key/value positions (rows times length) a pass of choices scored in one go
    /// holds. Such a pass returns no keys and values (each layer frees its own when done), so
    /// what it holds throughout is its rows' copies of the cached prefix: this bounds them,
    /// lower than `kv_budget_tokens`, since choice scoring is bound by computing, not by
    /// reading weights, and loses little to smaller passes.
    pub choice_kv_budget_tokens: usize,
    /// How many prompt prefixes to keep computed.
    pub prefix_cache_entries: usize,
    /// How long an idle scheduler waits for more requests before its first pass.
    pub batch_window: Duration,
    /// Score label continuations as a token tree in the prompt's own pass, when the model
    /// takes a tree mask (loopc's exports do); off, they take a second pass on copies.
    pub tree_choices: bool,
    /// Let one pass serve several requests. Off, every pass serves one request: results
    /// are then bit-for-bit independent of what else runs at the same time (what a
    /// reproducible compile needs), at the cost of decode batching across requests. On,
    /// a request's scores can differ in the last bits with its batch neighbours (padding
    /// changes how sums are grouped), which can flip a near-tie.
    pub cross_request: bool,
    /// Run passes of many rows on the model's prefill graph when it has one (`fast`
    /// precision: 4-bit products computed in f32 there, see `session::PREFILL_ROWS`). Off,
    /// every pass runs on the main graph: about 100 MB less memory, slower prompts.
    pub prefill_graph: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: session::default_threads(),
            max_batch: 8,
            max_batch_tokens: 2048,
            kv_budget_tokens: 4096,
            choice_kv_budget_tokens: 1024,
            prefix_cache_entries: 8,
            batch_window: worker::DEFAULT_WINDOW,
            tree_choices: true,
            cross_request: true,
            prefill_graph: true,
        }
    }
}

/// A prompt in two parts: `shared`, which many requests begin with (an instruction and
/// demonstrations), and `rest`. Tokens are `encode(shared) ++ encode(rest)` whether or not
/// the prefix cache is used, so caching never changes what the model sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prompt {
    /// The part shared with other requests (may be empty).
    pub shared: PromptText,
    /// The rest of the prompt.
    pub rest: PromptText,
}

impl Prompt {
    /// A prompt with nothing shared, all markup (text its caller wrote wholly).
    pub fn plain(text: impl Into<String>) -> Prompt {
        Prompt { shared: PromptText::new(), rest: PromptText::markup(text.into()) }
    }
}

/// One generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The prompt, already in the model's chat format (or raw).
    pub prompt: Prompt,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// How to pick tokens.
    pub sampling: Sampling,
    /// Stop when the text contains one of these (the stop text is not returned).
    pub stop: Vec<String>,
    /// A grammar every generated token must keep the text inside, if any.
    pub grammar: Option<super::grammar::Grammar>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model produced an end-of-turn or end-of-text token.
    EndOfText,
    /// A stop sequence appeared.
    Stop,
    /// `max_tokens` were generated (or the context was full).
    Length,
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The generated text, without the stop sequence or end token.
    pub text: String,
    /// The generated token ids (including a final end token, if any).
    pub tokens: Vec<u32>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    /// Why it ended.
    pub finish: Finish,
}

/// Whether to reuse computed prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixCaching {
    /// Reuse and store prompt prefixes.
    On,
    /// Compute every prompt in full.
    Off,
}

/// Counters since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Forward passes run.
    pub forward_passes: u64,
    /// Tokens run through the model as prompt (prefill).
    pub prefilled_tokens: u64,
    /// Prompt tokens reused from the prefix cache instead.
    pub cached_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Rows summed over prefill passes (divide by the passes for the mean batch).
    pub prefill_rows: u64,
    /// Decode steps run.
    pub decode_steps: u64,
    /// Sequences summed over decode steps (divide by the steps for the mean decode batch).
    pub decode_rows: u64,
}

/// The scores of every choice after one prompt, and what the prompt cost.
#[derive(Clone, Debug, PartialEq)]
pub struct ChoiceScores {
    /// Each choice's log-probability, in choice order.
    pub scores: Vec<f32>,
    /// The prompt's tokens.
    pub prompt_tokens: usize,
    /// Of those, the tokens taken from the prefix cache.
    pub cached_tokens: usize,
    /// Each choice's length in tokens (what a per-token mean divides by).
    pub choice_tokens: Vec<usize>,
    /// For a bounded choice ([`LocalModel::start_choose_bounded`]), the choices dropped once
    /// they could not win: their score is an upper bound (the sum over the tokens scored
    /// before). Empty for a choice scored in full.
    pub pruned: Vec<bool>,
}

/// What the scheduler thread and callers share: read-only model facts and the counters.
pub(crate) struct Shared {
    pub tokenizer: Tokenizer,
    pub end_tokens: Vec<u32>,
    pub pad_token: u32,
    pub options: LoadOptions,
    /// Whether the model takes a tree mask (label continuations scored in the prompt's pass).
    pub tree: bool,
    /// Grammar-constrained decoding, prepared on first use.
    pub constrainer: super::grammar::LazyConstrainer,
    counters: [AtomicU64; 7],
}

impl Shared {
    fn add(&self, i: usize, n: usize) {
        self.counters[i].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a prefill-like pass of `rows` rows computing `new` tokens on `cached` reused ones.
    pub(crate) fn count_pass(&self, rows: usize, new: usize, cached: usize) {
        self.add(0, 1);
        self.add(1, new);
        self.add(2, cached);
        self.add(4, rows);
    }

    /// Counts a decode step of `rows` live sequences.
    pub(crate) fn count_step(&self, rows: usize) {
        self.add(0, 1);
        self.add(5, 1);
        self.add(6, rows);
    }

    /// Counts generated tokens.
    pub(crate) fn count_generated(&self, n: usize) {
        self.add(3, n);
    }
}

/// What a model is, for caches and provenance: a hash over its weights, tokenizer and chat
/// template. Two directories holding the same files have the same fingerprint; re-exporting
/// a model under the same name with other weights changes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    /// SHA-256 of the weights (`model.onnx` and its external data).
    pub weights: String,
    /// SHA-256 over the weights hash, `tokenizer.json`, `config.json` and the chat template.
    pub full: String,
}

/// A loaded local model. `Send + Sync`: every forward pass runs on the model's scheduler
/// thread; tokenization runs on the caller's.
pub struct LocalModel {
    name: String,
    dir: PathBuf,
    shared: Arc<Shared>,
    chat: ChatTemplate,
    context: usize,
    fingerprint: Fingerprint,
    kv: session::KvShape,
    vocab: usize,
    input_names: Vec<String>,
    keeps_logits: bool,
    /// Jobs for the scheduler; one send is one arrival (one caller's prompts arrive together).
    jobs: Option<Sender<Vec<Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        // Closing the queue lets the scheduler finish the work in hand and exit.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An answer the scheduler will send; awaiting it waits for the model's work. Dropping it
/// cancels the request: the scheduler drops a sequence whose caller has gone.
pub struct Pending<T>(tokio::sync::oneshot::Receiver<Result<T, ModelError>>);

impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, ModelError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or_else(|_| Err(ModelError::Ort("the model's scheduler stopped".into()))))
    }
}

/// The tokens generation stops at: `eos_token_id` (one or a list), the tokenizer config's
/// `eos_token`, and the end-of-turn tokens llama.cpp recognises by their text.
fn end_tokens(config: &serde_json::Value, text: &ModelText) -> Vec<u32> {
    let tokenizer = &text.tokenizer;
    let mut end = Vec::new();
    match config.get("eos_token_id") {
        Some(serde_json::Value::Array(ids)) => end.extend(ids.iter().filter_map(|v| v.as_u64()).map(|v| v as u32)),
        Some(v) => end.extend(v.as_u64().map(|v| v as u32)),
        None => {}
    }
    end.extend(text.config_token("eos_token").into_iter().chain(super::tokenizer::END_OF_TURN_TEXTS.iter().copied()).filter_map(|t| tokenizer.token_id(t)));
    end.sort_unstable();
    end.dedup();
    end
}

/// The largest `config.json` or `tokenizer_config.json` loopc reads.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The context length a model declares, else this.
const FALLBACK_CONTEXT: usize = 2048;

impl LocalModel {
    /// Loads the model directory `dir` (`model.onnx`, `tokenizer.json`, `config.json`,
    /// optionally `tokenizer_config.json`), with ONNX Runtime already initialised.
    pub fn load(env: &ort::environment::Environment, dir: &Path, name: &str, options: LoadOptions) -> Result<LocalModel, ModelError> {
        let bad = |reason: String| ModelError::BadModel { model: name.to_string(), reason };
        for file in [MODEL_FILE, TOKENIZER_FILE] {
            if !dir.join(file).is_file() {
                return Err(bad(format!("`{}` is missing from `{}`", file, dir.display())));
            }
        }
        let read = |file: &str| -> Result<Option<Vec<u8>>, ModelError> {
            let path = dir.join(file);
            if !path.is_file() {
                return Ok(None);
            }
            // Configuration files are kilobytes; a huge one is refused before it is read.
            let size = std::fs::metadata(&path).map_err(io("read", &path))?.len();
            if size > MAX_CONFIG_BYTES {
                return Err(bad(format!("`{}` is {size} bytes, more than a configuration file may be ({MAX_CONFIG_BYTES})", path.display())));
            }
            std::fs::read(&path).map(Some).map_err(io("read", &path))
        };
        let json = |file: &str, bytes: &Option<Vec<u8>>| -> Result<serde_json::Value, ModelError> {
            match bytes {
                None => Ok(serde_json::Value::Null),
                Some(b) => serde_json::from_slice(b).map_err(|e| bad(format!("`{}` is not valid JSON: {e}", dir.join(file).display()))),
            }
        };
        let config = json(CONFIG_FILE, &read(CONFIG_FILE)?)?;
        let text = ModelText::load(dir, name)?;
        let prefill_file = dir.join(PREFILL_MODEL_FILE);
        let has_prefill = prefill_file.is_file();
        let prefill = (has_prefill && options.prefill_graph).then_some(prefill_file);
        let decoder = Decoder::open(env, &dir.join(MODEL_FILE), prefill.as_deref(), options.threads, name)?;
        if let Some(layers) = config.get("num_hidden_layers").and_then(|v| v.as_u64()) {
            if layers as usize != decoder.kv.layers {
                return Err(bad(format!("config.json says {layers} layers but the model has {} past_key_values inputs", decoder.kv.layers)));
            }
        }
        if text.tokenizer.vocab_size() > decoder.vocab {
            return Err(bad(format!("the tokenizer has {} tokens but the model's logits cover {}", text.tokenizer.vocab_size(), decoder.vocab)));
        }
        let end_tokens = end_tokens(&config, &text);
        let ModelText { tokenizer, chat, .. } = text;
        let pad_token = config.get("pad_token_id").and_then(|v| v.as_u64()).map(|v| v as u32).or_else(|| end_tokens.first().copied()).unwrap_or(0);
        let context = ["max_position_embeddings", "n_positions", "max_sequence_length"]
            .iter()
            .find_map(|k| config.get(*k).and_then(|v| v.as_u64()))
            .map_or(FALLBACK_CONTEXT, |n| n as usize)
            .max(2);
        let mut fingerprint = super::fingerprint::fingerprint_of(dir)?;
        if has_prefill && !options.prefill_graph {
            // The same files computing differently: cached answers must not mix.
            fingerprint.full = hex(&sha2::Sha256::digest(format!("{} without the prefill graph", fingerprint.full)));
        }
        let (kv, vocab, keeps_logits) = (decoder.kv, decoder.vocab, decoder.keeps_logits());
        let input_names = decoder.input_names().to_vec();
        let tree = decoder.takes_tree_mask() && options.tree_choices;
        let shared = Arc::new(Shared { tokenizer, end_tokens, pad_token, options, tree, constrainer: Default::default(), counters: Default::default() });
        let (tx, rx) = mpsc::channel();
        let worker = Worker::new(decoder, shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("loopc-model-{name}"))
            .spawn(move || worker.run(rx))
            .map_err(|e| ModelError::Ort(format!("cannot start the model's scheduler thread: {e}")))?;
        Ok(LocalModel {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            shared,
            chat,
            context,
            fingerprint,
            kv,
            vocab,
            input_names,
            keeps_logits,
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's chat template.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat
    }

    /// Renders messages with the model's chat template, opening the assistant's turn.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String, ModelError> {
        self.chat.render(messages, true)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// The most tokens a prompt and its answer may have together.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// What the model is (weights, tokenizer, chat template), for caches and provenance.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The KV cache shape and vocabulary size.
    pub fn shape(&self) -> (session::KvShape, usize) {
        (self.kv, self.vocab)
    }

    /// The model's input names, as ONNX Runtime reports them.
    pub fn input_names(&self) -> Vec<String> {
        self.input_names.clone()
    }

    /// Whether the model computes logits only for the positions asked for
    /// (`num_logits_to_keep`), rather than for every position of a pass.
    pub fn keeps_logits(&self) -> bool {
        self.keeps_logits
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &LoadOptions {
        &self.shared.options
    }

    /// Counters since load.
    pub fn stats(&self) -> Stats {
        let c = |i: usize| self.shared.counters[i].load(Ordering::Relaxed);
        Stats {
            forward_passes: c(0),
            prefilled_tokens: c(1),
            cached_tokens: c(2),
            generated_tokens: c(3),
            prefill_rows: c(4),
            decode_steps: c(5),
            decode_rows: c(6),
        }
    }

    /// How many tokens `text` has as data (bounded: see [`Tokenizer::count_data`]).
    pub fn count_tokens(&self, text: &str) -> Result<TokenCount, ModelError> {
        self.shared.tokenizer.count_data(text, self.context.saturating_mul(self.shared.tokenizer.longest_token()).max(4096))
    }

    /// Tokenizes a prompt, refusing one that leaves no room in the context. Texts far longer
    /// than the context are refused from their length, before tokenizing.
    fn encode(&self, p: &Prompt, caching: PrefixCaching) -> Result<Encoded, ModelError> {
        let tok = &self.shared.tokenizer;
        let least = (p.shared.len() + p.rest.len()) / tok.longest_token();
        if least >= self.context {
            return Err(ModelError::ContextOverflow { tokens: TokenCount::AtLeast(least), limit: self.context });
        }
        if p.shared.is_empty() && p.rest.is_empty() {
            return Err(ModelError::Request("the prompt is empty".into()));
        }
        let (ids, n) = tok.encode_prompt(&p.shared, &p.rest)?;
        if ids.is_empty() {
            return Err(ModelError::Request("the prompt is empty".into()));
        }
        if ids.len() >= self.context {
            return Err(ModelError::ContextOverflow { tokens: TokenCount::Exact(ids.len()), limit: self.context });
        }
        // A prompt that is all shared part runs without the prefix cache: the pass needs a
        // token of its own to give logits for.
        let shared = if caching == PrefixCaching::On && n < ids.len() { n } else { 0 };
        Ok(Encoded { ids, shared })
    }

    fn submit(&self, job: Job) -> Result<(), ModelError> {
        self.submit_all(vec![job])
    }

    /// Submits `jobs` as one arrival: the scheduler sees all of them before it plans a pass, so
    /// one caller's prompts are packed together however the threads are scheduled.
    fn submit_all(&self, jobs: Vec<Job>) -> Result<(), ModelError> {
        let tx = self.jobs.as_ref().ok_or_else(|| ModelError::Ort("the model is shutting down".into()))?;
        tx.send(jobs).map_err(|_| ModelError::Ort("the model's scheduler stopped".into()))
    }

    fn gen_job(&self, r: &GenerateRequest, caching: PrefixCaching, reply: Reply<Result<Generation, ModelError>>) -> Result<(), ModelError> {
        let prompt = self.encode(&r.prompt, caching)?;
        // The answer may use what the context has left, no more.
        let max_tokens = r.max_tokens.min(self.context - prompt.ids.len());
        // The grammar compiles here, on the caller's thread: a bad one fails before any model work.
        let constraint = match &r.grammar {
            Some(g) => Some(Box::new(Constraint::new(self.constrainer()?.start(g)?))),
            None => None,
        };
        self.submit(Job::Generate(GenJob { prompt, max_tokens, sampling: r.sampling.clone(), stop: r.stop.clone(), constraint, reply }))
    }

    /// The model's constrainer (built on first use: the token trie and llguidance's factory).
    fn constrainer(&self) -> Result<Arc<super::grammar::Constrainer>, ModelError> {
        let shared = &self.shared;
        shared.constrainer.get(|| super::grammar::Constrainer::new(&self.dir.join(TOKENIZER_FILE), &shared.tokenizer, self.vocab, &shared.end_tokens))
    }

    /// Checks that `grammar` compiles for this model, without generating (what a caller can do
    /// before submitting work, e.g. to report a program's bad constraint early).
    pub fn check_grammar(&self, grammar: &super::grammar::Grammar) -> Result<(), ModelError> {
        self.constrainer()?.start(grammar).map(|_| ())
    }

    /// Submits one generation (tokenizing it here) and returns its answer to await: the
    /// scheduler batches it with every other caller's. Errors in the request (an empty prompt,
    /// one over the context) come back at once, before any model work.
    pub fn start_generate(&self, request: &GenerateRequest, caching: PrefixCaching) -> Result<Pending<Generation>, ModelError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.gen_job(request, caching, Reply::Async(tx))?;
        Ok(Pending(rx))
    }

    /// Generates for one request, batched by the scheduler with every other caller's.
    pub async fn generate_one(&self, request: &GenerateRequest, caching: PrefixCaching) -> Result<Generation, ModelError> {
        self.start_generate(request, caching)?.await
    }

    /// Generates for every request (from a thread that may block), results in order.
    pub fn generate(&self, requests: &[GenerateRequest], caching: PrefixCaching) -> Result<Vec<Generation>, ModelError> {
        let mut waits = Vec::with_capacity(requests.len());
        for r in requests {
            let (tx, rx) = mpsc::sync_channel(1);
            self.gen_job(r, caching, Reply::Sync(tx))?;
            waits.push(rx);
        }
        waits.into_iter().map(|rx| rx.recv().map_err(|_| ModelError::Ort("the model's scheduler stopped".into()))?).collect()
    }

    fn encode_choices(&self, choices: &[String]) -> Result<Arc<Choices>, ModelError> {
        if choices.is_empty() {
            return Err(ModelError::Request("no choices to score".into()));
        }
        let ids: Vec<Vec<u32>> = choices.iter().map(|c| self.shared.tokenizer.encode_data(c)).collect::<Result<_, _>>()?;
        if let Some(i) = ids.iter().position(Vec::is_empty) {
            return Err(ModelError::Request(format!("choice {i} ({:?}) has no tokens", choices[i])));
        }
        Ok(Arc::new(Choices::new(ids)))
    }

    /// Submits one choice scoring (tokenizing it here) and returns its answer to await.
    /// Choices are tokenized on their own (as data) and appended to the prompt's tokens, so
    /// write them as they would follow the prompt (usually with a leading space).
    pub fn start_choose(&self, prompt: &Prompt, choices: &[String], caching: PrefixCaching) -> Result<Pending<ChoiceScores>, ModelError> {
        self.start_choose_with(prompt, choices, caching, None)
    }

    /// [`LocalModel::start_choose`] when only the decision is wanted: the best choice under
    /// each of `bounds`' ways of deciding is scored exactly, and a choice is dropped (its
    /// remaining tokens never fed) once its partial score cannot win under any of them. On a
    /// model without a tree mask, and for small label trees (under 16
    /// nodes, which ride along the prompt's own pass almost for free), every choice is scored
    /// in full.
    pub fn start_choose_bounded(
        &self,
        prompt: &Prompt,
        choices: &[String],
        caching: PrefixCaching,
        bounds: Arc<ChoiceBounds>,
    ) -> Result<Pending<ChoiceScores>, ModelError> {
        self.start_choose_with(prompt, choices, caching, Some(bounds))
    }

    fn start_choose_with(
        &self,
        prompt: &Prompt,
        choices: &[String],
        caching: PrefixCaching,
        bounds: Option<Arc<ChoiceBounds>>,
    ) -> Result<Pending<ChoiceScores>, ModelError> {
        let choices = self.encode_choices(choices)?;
        let bounds = worth_bounding(&choices, bounds)?;
        let prompt = self.encode(prompt, caching)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Choose(ChoiceJob { prompt, choices, bounds, reply: Reply::Async(tx) }))?;
        Ok(Pending(rx))
    }

    /// The log-probability of each choice following `prompt`, batched by the scheduler.
    pub async fn choose_one(&self, prompt: &Prompt, choices: &[String], caching: PrefixCaching) -> Result<ChoiceScores, ModelError> {
        self.start_choose(prompt, choices, caching)?.await
    }

    /// The log-probability of each choice following each prompt: `result[p][c]` is the sum of
    /// the log-probabilities of choice `c`'s tokens after prompt `p`.
    pub fn score_choices(&self, prompts: &[Prompt], choices: &[String], caching: PrefixCaching) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.score_choices_counted(prompts, choices, caching)?.into_iter().map(|c| c.scores).collect())
    }

    /// [`LocalModel::score_choices`], with each prompt's token counts.
    pub fn score_choices_counted(&self, prompts: &[Prompt], choices: &[String], caching: PrefixCaching) -> Result<Vec<ChoiceScores>, ModelError> {
        self.score_choices_with(prompts, choices, caching, None)
    }

    /// [`LocalModel::score_choices_counted`] when only the decisions are wanted (see
    /// [`LocalModel::start_choose_bounded`]).
    pub fn score_choices_bounded(
        &self,
        prompts: &[Prompt],
        choices: &[String],
        caching: PrefixCaching,
        bounds: Arc<ChoiceBounds>,
    ) -> Result<Vec<ChoiceScores>, ModelError> {
        self.score_choices_with(prompts, choices, caching, Some(bounds))
    }

    fn score_choices_with(
        &self,
        prompts: &[Prompt],
        choices: &[String],
        caching: PrefixCaching,
        bounds: Option<Arc<ChoiceBounds>>,
    ) -> Result<Vec<ChoiceScores>, ModelError> {
        let choices = self.encode_choices(choices)?;
        let bounds = worth_bounding(&choices, bounds)?;
        let mut waits = Vec::with_capacity(prompts.len());
        let mut jobs = Vec::with_capacity(prompts.len());
        for p in prompts {
            let prompt = self.encode(p, caching)?;
            let (tx, rx) = mpsc::sync_channel(1);
            jobs.push(Job::Choose(ChoiceJob { prompt, choices: choices.clone(), bounds: bounds.clone(), reply: Reply::Sync(tx) }));
            waits.push(rx);
        }
        self.submit_all(jobs)?;
        waits.into_iter().map(|rx| rx.recv().map_err(|_| ModelError::Ort("the model's scheduler stopped".into()))?).collect()
    }

    /// Logits at the last position of `tokens` (for checks against reference numerics).
    pub fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let last = tokens.len().saturating_sub(1);
        Ok(self.logits_at(tokens, &[last])?.into_iter().next().unwrap_or_default())
    }

    /// Logits at each of `positions` of `tokens`, from one pass.
    pub fn logits_at(&self, tokens: &[u32], positions: &[usize]) -> Result<Vec<Vec<f32>>, ModelError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Job::Logits(LogitsJob { tokens: tokens.to_vec(), positions: positions.to_vec(), reply: Reply::Sync(tx) }))?;
        rx.recv().map_err(|_| ModelError::Ort("the model's scheduler stopped".into()))?
    }
}

/// Label trees with fewer nodes than this are scored in full even when only the decision is
/// wanted: they cost a few positions in the prompt's own pass, while a bounded choice feeds
/// its tree in extra passes of its own (and keeps its prompt out of packed rows).
pub(crate) const BOUNDED_MIN_NODES: usize = 16;

/// Checks `bounds` against `choices`, and drops them where bounding would not pay.
fn worth_bounding(choices: &Choices, bounds: Option<Arc<ChoiceBounds>>) -> Result<Option<Arc<ChoiceBounds>>, ModelError> {
    match bounds {
        Some(b) => {
            b.check(choices.ids.len()).map_err(ModelError::Request)?;
            Ok((choices.nodes.len() >= BOUNDED_MIN_NODES).then_some(b))
        }
        None => Ok(None),
    }
}
