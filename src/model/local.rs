//! The local model: a decoder session, its tokenizer and chat format, and generation on top:
//! batches with left padding, a KV cache across decode steps, a prefix cache for prompts
//! that share their beginning, sampling, stop sequences, and constrained choice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::chat::{ChatFormat, Message};
use super::error::{io, ModelError};
use super::import::{CONFIG_FILE, MODEL_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use super::sampling::{log_prob, Sampler, Sampling};
use super::session::{self, Decoder, Past};
use super::tokenizer::Tokenizer;

/// Options for loading a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Intra-op threads (default: the machine's cores).
    pub threads: usize,
    /// The most rows run in one forward pass.
    pub max_batch: usize,
    /// The most prompt tokens (rows times padded length) in one forward pass; bounds memory.
    pub max_batch_tokens: usize,
    /// How many prompt prefixes to keep computed.
    pub prefix_cache_entries: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { threads: session::default_threads(), max_batch: 16, max_batch_tokens: 2048, prefix_cache_entries: 8 }
    }
}

/// A prompt in two parts: `shared`, which many requests begin with (an instruction and
/// demonstrations), and `rest`. Tokens are `encode(shared) ++ encode(rest)` whether or not
/// the prefix cache is used, so caching never changes what the model sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prompt {
    /// The part shared with other requests (may be empty).
    pub shared: String,
    /// The rest of the prompt.
    pub rest: String,
}

impl Prompt {
    /// A prompt with nothing shared.
    pub fn plain(text: impl Into<String>) -> Prompt {
        Prompt { shared: String::new(), rest: text.into() }
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
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model produced an end-of-turn or end-of-text token.
    EndOfText,
    /// A stop sequence appeared.
    Stop,
    /// `max_tokens` were generated.
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
}

/// Computed prefixes by their tokens, least recently used first.
type PrefixCache = Vec<(Vec<u32>, std::sync::Arc<PrefixEntry>)>;

/// A computed prefix: its keys and values (batch of one) and its length.
struct PrefixEntry {
    kv: Vec<Vec<f32>>,
    len: usize,
}

/// A loaded local model. `Send + Sync`: forward passes are serialised on the session while
/// tokenization and sampling run on the caller's thread.
pub struct LocalModel {
    name: String,
    dir: PathBuf,
    decoder: Mutex<Decoder>,
    tokenizer: Tokenizer,
    chat: ChatFormat,
    end_tokens: Vec<u32>,
    pad_token: u32,
    options: LoadOptions,
    prefixes: Mutex<PrefixCache>,
    counters: [AtomicU64; 4],
}

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
        let read_json = |file: &str| -> Result<serde_json::Value, ModelError> {
            let path = dir.join(file);
            if !path.is_file() {
                return Ok(serde_json::Value::Null);
            }
            let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
            serde_json::from_str(&text).map_err(|e| bad(format!("`{}` is not valid JSON: {e}", path.display())))
        };
        let config = read_json(CONFIG_FILE)?;
        let tok_config = read_json(TOKENIZER_CONFIG_FILE)?;
        let tokenizer = Tokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
        let decoder = Decoder::open(env, &dir.join(MODEL_FILE), options.threads, name)?;
        if let Some(layers) = config.get("num_hidden_layers").and_then(|v| v.as_u64()) {
            if layers as usize != decoder.kv.layers {
                return Err(bad(format!("config.json says {layers} layers but the model has {} past_key_values inputs", decoder.kv.layers)));
            }
        }
        if tokenizer.vocab_size() > decoder.vocab {
            return Err(bad(format!("the tokenizer has {} tokens but the model's logits cover {}", tokenizer.vocab_size(), decoder.vocab)));
        }
        let chat = ChatFormat::detect(tok_config.get("chat_template").and_then(|v| v.as_str()));
        let mut end_tokens = Vec::new();
        match config.get("eos_token_id") {
            Some(serde_json::Value::Array(ids)) => end_tokens.extend(ids.iter().filter_map(|v| v.as_u64()).map(|v| v as u32)),
            Some(v) => end_tokens.extend(v.as_u64().map(|v| v as u32)),
            None => {}
        }
        let named = [tok_config.get("eos_token").and_then(|v| v.as_str()), chat.end_of_turn()];
        end_tokens.extend(named.into_iter().flatten().filter_map(|t| tokenizer.token_id(t)));
        end_tokens.sort_unstable();
        end_tokens.dedup();
        let pad_token = config.get("pad_token_id").and_then(|v| v.as_u64()).map(|v| v as u32).or_else(|| end_tokens.first().copied()).unwrap_or(0);
        Ok(LocalModel {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            decoder: Mutex::new(decoder),
            tokenizer,
            chat,
            end_tokens,
            pad_token,
            options,
            prefixes: Mutex::new(Vec::new()),
            counters: Default::default(),
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

    /// The model's chat format.
    pub fn chat_format(&self) -> ChatFormat {
        self.chat
    }

    /// Renders messages in the model's chat format, opening the assistant's turn.
    pub fn chat_prompt(&self, messages: &[Message]) -> String {
        self.chat.render(messages)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The KV cache shape and vocabulary size.
    pub fn shape(&self) -> (session::KvShape, usize) {
        let d = self.lock_decoder();
        (d.kv, d.vocab)
    }

    /// The model's input names, as ONNX Runtime reports them.
    pub fn input_names(&self) -> Vec<String> {
        self.lock_decoder().input_names().to_vec()
    }

    /// Counters since load.
    pub fn stats(&self) -> Stats {
        let c = |i: usize| self.counters[i].load(Ordering::Relaxed);
        Stats { forward_passes: c(0), prefilled_tokens: c(1), cached_tokens: c(2), generated_tokens: c(3) }
    }

    fn count(&self, i: usize, n: usize) {
        self.counters[i].fetch_add(n as u64, Ordering::Relaxed);
    }

    fn lock_decoder(&self) -> std::sync::MutexGuard<'_, Decoder> {
        // A panic while holding the lock leaves the session usable: ORT state is per call.
        self.decoder.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn encode_prompt(&self, p: &Prompt) -> Result<(Vec<u32>, usize), ModelError> {
        let shared = if p.shared.is_empty() { Vec::new() } else { self.tokenizer.encode(&p.shared)? };
        let n = shared.len();
        let mut ids = shared;
        ids.extend(self.tokenizer.encode(&p.rest)?);
        if ids.is_empty() {
            return Err(ModelError::Request("the prompt is empty".into()));
        }
        Ok((ids, n))
    }

    /// Generates for every request, batching up to `max_batch` rows per pass.
    pub fn generate(&self, requests: &[GenerateRequest], caching: PrefixCaching) -> Result<Vec<Generation>, ModelError> {
        let mut encoded = Vec::with_capacity(requests.len());
        for r in requests {
            encoded.push(self.encode_prompt(&r.prompt)?);
        }
        // Rows that share a prefix run together so its keys and values are computed once.
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| requests[a].prompt.shared.cmp(&requests[b].prompt.shared).then(a.cmp(&b)));
        let mut results: Vec<Option<Generation>> = vec![None; requests.len()];
        let mut start = 0;
        while start < order.len() {
            let shared = &requests[order[start]].prompt.shared;
            let mut end = start;
            let mut longest = 0;
            while end < order.len() && requests[order[end]].prompt.shared == *shared {
                longest = longest.max(encoded[order[end]].0.len());
                if end - start >= self.rows_per_pass(longest) {
                    break;
                }
                end += 1;
            }
            let idx = &order[start..end];
            let rows: Vec<(&GenerateRequest, &(Vec<u32>, usize))> = idx.iter().map(|&i| (&requests[i], &encoded[i])).collect();
            for (i, g) in idx.iter().zip(self.generate_batch(&rows, caching)?) {
                results[*i] = Some(g);
            }
            start = end;
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// How many rows of `len` tokens fit in one pass.
    fn rows_per_pass(&self, len: usize) -> usize {
        (self.options.max_batch_tokens / len.max(1)).clamp(1, self.options.max_batch.max(1))
    }

    /// The prefix entry for `tokens`, from the cache or computed (and cached) now.
    fn prefix(&self, tokens: &[u32]) -> Result<std::sync::Arc<PrefixEntry>, ModelError> {
        {
            let mut entries = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pos) = entries.iter().position(|(t, _)| t == tokens) {
                // Move to the back: most recently used.
                let hit = entries.remove(pos);
                let entry = hit.1.clone();
                entries.push(hit);
                return Ok(entry);
            }
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let n = ids.len();
        let fwd = self.lock_decoder().forward(1, ids, vec![1; n], (0..n as i64).collect(), Past::Empty, &[(0, n - 1)])?;
        self.count(0, 1);
        self.count(1, n);
        let entry = std::sync::Arc::new(PrefixEntry { kv: session::to_host(&fwd.present)?, len: n });
        let mut entries = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        entries.push((tokens.to_vec(), entry.clone()));
        while entries.len() > self.options.prefix_cache_entries.max(1) {
            entries.remove(0);
        }
        Ok(entry)
    }

    /// Builds the first pass of a batch: each row is `[prefix][left padding][suffix]`, where
    /// the prefix comes from the cache (when `prefix` is given) and the suffixes are run now.
    /// Returns (ids, mask, positions, past, past length).
    fn first_pass(&self, suffixes: &[&[u32]], prefix: Option<&PrefixEntry>) -> (Vec<i64>, Vec<i64>, Vec<i64>, Past, usize) {
        let b = suffixes.len();
        let s = suffixes.iter().map(|x| x.len()).max().unwrap_or(0);
        let p = prefix.map_or(0, |e| e.len);
        let mut ids = Vec::with_capacity(b * s);
        let mut mask = Vec::with_capacity(b * (p + s));
        let mut positions = Vec::with_capacity(b * s);
        for row in suffixes {
            let pad = s - row.len();
            mask.extend(std::iter::repeat_n(1, p));
            mask.extend(std::iter::repeat_n(0, pad));
            mask.extend(std::iter::repeat_n(1, row.len()));
            ids.extend(std::iter::repeat_n(self.pad_token as i64, pad));
            ids.extend(row.iter().map(|&t| t as i64));
            // Padding takes the position of the token before it, which no real token attends to.
            positions.extend(std::iter::repeat_n(p as i64 - 1 + (p == 0) as i64, pad));
            positions.extend((0..row.len()).map(|i| (p + i) as i64));
        }
        let past = match prefix {
            None => Past::Empty,
            Some(e) => Past::Host { buffers: e.kv.iter().map(|layer| layer.repeat(b)).collect(), len: e.len },
        };
        (ids, mask, positions, past, p)
    }

    fn generate_batch(&self, rows: &[(&GenerateRequest, &(Vec<u32>, usize))], caching: PrefixCaching) -> Result<Vec<Generation>, ModelError> {
        let shared_len = rows[0].1 .1;
        // The prefix is used only when every row has at least one token after it.
        let use_prefix = caching == PrefixCaching::On && shared_len > 0 && rows.iter().all(|(_, (ids, _))| ids.len() > shared_len);
        let prefix = if use_prefix { Some(self.prefix(&rows[0].1 .0[..shared_len])?) } else { None };
        let skip = prefix.as_ref().map_or(0, |e| e.len);
        let suffixes: Vec<&[u32]> = rows.iter().map(|(_, (ids, _))| &ids[skip..]).collect();
        let (ids, mut mask, positions, past, _) = self.first_pass(&suffixes, prefix.as_deref());
        let b = rows.len();
        let s = suffixes.iter().map(|x| x.len()).max().unwrap_or(0);
        let want: Vec<(usize, usize)> = (0..b).map(|r| (r, s - 1)).collect();
        let mut fwd = self.lock_decoder().forward(b, ids, mask.clone(), positions, past, &want)?;
        self.count(0, 1);
        self.count(1, suffixes.iter().map(|x| x.len()).sum());
        self.count(2, skip * b);

        let mut samplers: Vec<Sampler> = rows.iter().map(|(r, _)| Sampler::new(r.sampling.clone())).collect();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done: Vec<Option<Finish>> = vec![None; b];
        let mut texts: Vec<String> = vec![String::new(); b];
        let mut next_pos: Vec<i64> = rows.iter().map(|(_, (ids, _))| ids.len() as i64).collect();
        loop {
            let mut step_ids = Vec::with_capacity(b);
            for r in 0..b {
                if done[r].is_some() {
                    step_ids.push(self.pad_token as i64);
                    continue;
                }
                let tok = samplers[r].pick(&fwd.logits[r]);
                out[r].push(tok);
                self.count(3, 1);
                if self.end_tokens.contains(&tok) {
                    done[r] = Some(Finish::EndOfText);
                } else {
                    // Decoding the text so far is needed only to look for stop sequences.
                    if !rows[r].0.stop.is_empty() {
                        texts[r] = self.tokenizer.decode(&out[r])?;
                        if let Some(cut) = rows[r].0.stop.iter().filter_map(|st| texts[r].find(st.as_str())).min() {
                            texts[r].truncate(cut);
                            done[r] = Some(Finish::Stop);
                        }
                    }
                    if done[r].is_none() && out[r].len() >= rows[r].0.max_tokens {
                        done[r] = Some(Finish::Length);
                    }
                }
                step_ids.push(tok as i64);
            }
            if done.iter().all(Option::is_some) {
                break;
            }
            // Append one column: finished rows get a masked pad.
            let total = mask.len() / b;
            let mut new_mask = Vec::with_capacity(b * (total + 1));
            for r in 0..b {
                new_mask.extend_from_slice(&mask[r * total..(r + 1) * total]);
                new_mask.push(if done[r].is_some() { 0 } else { 1 });
            }
            mask = new_mask;
            let positions: Vec<i64> = next_pos.clone();
            for p in &mut next_pos {
                *p += 1;
            }
            let want: Vec<(usize, usize)> = (0..b).map(|r| (r, 0)).collect();
            fwd = self.lock_decoder().forward(b, step_ids, mask.clone(), positions, Past::Device(fwd.present), &want)?;
            self.count(0, 1);
        }
        for r in 0..b {
            if done[r] != Some(Finish::Stop) {
                let body = match done[r] {
                    Some(Finish::EndOfText) => &out[r][..out[r].len() - 1],
                    _ => &out[r][..],
                };
                texts[r] = self.tokenizer.decode(body)?;
            }
        }
        Ok((0..b)
            .map(|r| Generation {
                text: std::mem::take(&mut texts[r]),
                tokens: std::mem::take(&mut out[r]),
                prompt_tokens: rows[r].1 .0.len(),
                cached_tokens: skip,
                finish: done[r].unwrap_or(Finish::Length),
            })
            .collect())
    }

    /// The log-probability of each choice following each prompt: `result[p][c]` is the sum of
    /// the log-probabilities of choice `c`'s tokens after prompt `p`. Choices are tokenized on
    /// their own and appended to the prompt's tokens, so write them as they would follow the
    /// prompt (usually with a leading space).
    ///
    /// Each prompt runs once (on top of its cached shared prefix, when caching is on); the
    /// first token of every choice is scored from the prompt's last logits, and only choices
    /// longer than one token need a second pass, on top of the prompt's keys and values.
    pub fn score_choices(&self, prompts: &[Prompt], choices: &[String], caching: PrefixCaching) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.score_choices_counted(prompts, choices, caching)?.into_iter().map(|c| c.scores).collect())
    }

    /// [`LocalModel::score_choices`], with each prompt's token counts.
    pub fn score_choices_counted(&self, prompts: &[Prompt], choices: &[String], caching: PrefixCaching) -> Result<Vec<ChoiceScores>, ModelError> {
        if choices.is_empty() {
            return Err(ModelError::Request("no choices to score".into()));
        }
        let choice_ids: Vec<Vec<u32>> = choices.iter().map(|c| self.tokenizer.encode(c)).collect::<Result<_, _>>()?;
        if let Some(i) = choice_ids.iter().position(Vec::is_empty) {
            return Err(ModelError::Request(format!("choice {i} ({:?}) has no tokens", choices[i])));
        }
        let mut scores = vec![ChoiceScores { scores: vec![0f32; choices.len()], prompt_tokens: 0, cached_tokens: 0 }; prompts.len()];
        let mut by_shared: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in prompts.iter().enumerate() {
            by_shared.entry(p.shared.as_str()).or_default().push(i);
        }
        let mut groups: Vec<(&str, Vec<usize>)> = by_shared.into_iter().collect();
        groups.sort();
        for (_, members) in groups {
            let encoded: Vec<(Vec<u32>, usize)> = members.iter().map(|&i| self.encode_prompt(&prompts[i])).collect::<Result<_, _>>()?;
            let shared_len = encoded[0].1;
            let use_prefix = caching == PrefixCaching::On && shared_len > 0 && encoded.iter().all(|(ids, _)| ids.len() > shared_len);
            let prefix = if use_prefix { Some(self.prefix(&encoded[0].0[..shared_len])?) } else { None };
            let skip = prefix.as_ref().map_or(0, |e| e.len);
            let longest = encoded.iter().map(|(ids, _)| ids.len() - skip).max().unwrap_or(1);
            let chunk_size = self.rows_per_pass(longest);
            for (chunk_members, chunk) in members.chunks(chunk_size).zip(encoded.chunks(chunk_size)) {
                let suffixes: Vec<&[u32]> = chunk.iter().map(|(ids, _)| &ids[skip..]).collect();
                for (&m, (ids, _)) in chunk_members.iter().zip(chunk) {
                    scores[m].prompt_tokens = ids.len();
                    scores[m].cached_tokens = skip;
                }
                self.score_chunk(&suffixes, prefix.as_deref(), &choice_ids, &mut |row, c, score| {
                    scores[chunk_members[row]].scores[c] = score;
                })?;
                self.count(2, skip * chunk.len());
            }
        }
        Ok(scores)
    }

    /// Scores every choice after each of `suffixes` (run on top of `prefix`, if any).
    fn score_chunk(
        &self,
        suffixes: &[&[u32]],
        prefix: Option<&PrefixEntry>,
        choices: &[Vec<u32>],
        put: &mut dyn FnMut(usize, usize, f32),
    ) -> Result<(), ModelError> {
        let b = suffixes.len();
        let s = suffixes.iter().map(|x| x.len()).max().unwrap_or(0);
        let (ids, mask, positions, past, _) = self.first_pass(suffixes, prefix);
        let want: Vec<(usize, usize)> = (0..b).map(|r| (r, s - 1)).collect();
        let fwd = self.lock_decoder().forward(b, ids, mask.clone(), positions, past, &want)?;
        self.count(0, 1);
        self.count(1, suffixes.iter().map(|x| x.len()).sum());
        // The first token of every choice is scored from the prompt's last logits; choices of
        // one token are done here, longer ones add the rest in a second pass.
        let first: Vec<Vec<f32>> = fwd.logits.iter().map(|l| choices.iter().map(|ids| log_prob(l, ids[0])).collect()).collect();
        for (r, row) in first.iter().enumerate() {
            for (c, score) in row.iter().enumerate() {
                put(r, c, *score);
            }
        }
        let long: Vec<usize> = (0..choices.len()).filter(|&c| choices[c].len() > 1).collect();
        if long.is_empty() {
            return Ok(());
        }
        // Second pass: one row per (prompt, long choice), on a copy of that prompt's keys and
        // values; the choice's tokens but the last go in, right-padded (causal attention keeps
        // padding out of earlier positions).
        let host = session::to_host(&fwd.present)?;
        let total = mask.len() / b;
        let per_row = host.first().map_or(0, |l| l.len() / b);
        let width = long.iter().map(|&c| choices[c].len() - 1).max().unwrap_or(0);
        let rows: Vec<(usize, usize)> = (0..b).flat_map(|r| long.iter().map(move |&c| (r, c))).collect();
        for rows in rows.chunks(self.options.max_batch.max(1)) {
            let n = rows.len();
            let mut ids = Vec::with_capacity(n * width);
            let mut row_mask = Vec::with_capacity(n * (total + width));
            let mut pos = Vec::with_capacity(n * width);
            let mut want = Vec::new();
            for (i, &(r, c)) in rows.iter().enumerate() {
                let body = &choices[c][..choices[c].len() - 1];
                let next = (prefix.map_or(0, |e| e.len) + suffixes[r].len()) as i64;
                row_mask.extend_from_slice(&mask[r * total..(r + 1) * total]);
                for j in 0..width {
                    let real = j < body.len();
                    ids.push(if real { body[j] as i64 } else { self.pad_token as i64 });
                    row_mask.push(real as i64);
                    pos.push(next + j as i64);
                    if real {
                        want.push((i, j));
                    }
                }
            }
            let buffers: Vec<Vec<f32>> =
                host.iter().map(|layer| rows.iter().flat_map(|&(r, _)| layer[r * per_row..(r + 1) * per_row].iter().copied()).collect()).collect();
            let fwd2 = self.lock_decoder().forward(n, ids, row_mask, pos, Past::Host { buffers, len: total }, &want)?;
            self.count(0, 1);
            self.count(1, want.len());
            let mut logits = fwd2.logits.into_iter();
            let mut added = vec![0f32; n];
            for &(i, j) in &want {
                let (_, c) = rows[i];
                let l = logits.next().ok_or_else(|| ModelError::Ort("fewer logits than asked".into()))?;
                added[i] += log_prob(&l, choices[c][j + 1]);
            }
            for (i, &(r, c)) in rows.iter().enumerate() {
                put(r, c, first[r][c] + added[i]);
            }
        }
        Ok(())
    }

    /// Logits at the last position of `prompt` (for checks against reference numerics).
    pub fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let last = tokens.len().saturating_sub(1);
        Ok(self.logits_at(tokens, &[last])?.into_iter().next().unwrap_or_default())
    }

    /// Logits at each of `positions` of `tokens`, from one pass.
    pub fn logits_at(&self, tokens: &[u32], positions: &[usize]) -> Result<Vec<Vec<f32>>, ModelError> {
        let n = tokens.len();
        if n == 0 || positions.iter().any(|&p| p >= n) {
            return Err(ModelError::Request(format!("positions {positions:?} are not all within {n} tokens")));
        }
        let ids = tokens.iter().map(|&t| t as i64).collect();
        let want: Vec<(usize, usize)> = positions.iter().map(|&p| (0, p)).collect();
        Ok(self.lock_decoder().forward(1, ids, vec![1; n], (0..n as i64).collect(), Past::Empty, &want)?.logits)
    }

    /// Whether the model computes logits only for the positions asked for
    /// (`num_logits_to_keep`), rather than for every position of a pass.
    pub fn keeps_logits(&self) -> bool {
        self.lock_decoder().keeps_logits()
    }
}
