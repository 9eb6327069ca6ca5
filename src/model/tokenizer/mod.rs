//! Tokenizers: builds a Hugging Face `tokenizer.json` from GGUF metadata (`gguf_vocab.rs`,
//! with `pretok.rs` for byte-level BPE pre-tokenizers and `spm.rs` for SentencePiece-style
//! vocabularies), and loads one.
//!
//! Token ids follow llama.cpp's: a prompt is split at special tokens, each fragment of text
//! between them is tokenized on its own, and SentencePiece vocabularies with
//! `add_space_prefix` put a space before every fragment that starts the prompt or follows a
//! special token. loopc tokenizes a prompt in pieces (markup and data, shared part and rest),
//! so the wrapper here carries "does this follow a special token" from piece to piece.

mod gguf_vocab;
pub mod pretok;
mod spm;

use std::collections::HashSet;

use super::error::ModelError;
use super::gguf::Gguf;
use super::text::{Piece, PromptText};

pub use self::gguf_vocab::{from_gguf, GgufVocab, TokenType, VocabFacts, VocabKind, END_OF_GENERATION_TEXTS as END_OF_TURN_TEXTS};

/// The `tokenizer.json` for a GGUF's vocabulary (see [`from_gguf`] for the facts around it).
pub fn tokenizer_json(gguf: &Gguf) -> Result<serde_json::Value, ModelError> {
    Ok(from_gguf(gguf)?.json)
}

/// A loaded tokenizer with the ids generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer with special-token parsing off, for data (see [`PromptText`]).
    plain: tokenizers::Tokenizer,
    /// For vocabularies whose `tokenizer.json` prepends `▁` to each fragment: copies without
    /// that step (markup, data), so loopc adds the space only where llama.cpp would.
    unprefixed: Option<Box<(tokenizers::Tokenizer, tokenizers::Tokenizer)>>,
    /// The ids of added tokens: where the text is split before tokenizing.
    added: HashSet<u32>,
    /// The token a prompt starts with, when the model adds one.
    bos: Option<u32>,
    /// The longest token's text in bytes: a text of N bytes has at least N / this many tokens.
    longest_token: usize,
}

/// How many tokens a text has, when counting was bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCount {
    /// Exactly this many.
    Exact(usize),
    /// At least this many: the text was too long to tokenize within the bound.
    AtLeast(usize),
}

impl TokenCount {
    /// The count, or its lower bound.
    pub fn value(self) -> usize {
        match self {
            TokenCount::Exact(n) | TokenCount::AtLeast(n) => n,
        }
    }
}

impl std::fmt::Display for TokenCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenCount::Exact(n) => write!(f, "{n} tokens"),
            TokenCount::AtLeast(n) => write!(f, "at least {n} tokens"),
        }
    }
}

/// The largest `tokenizer.json` loopc loads (real ones are a few megabytes).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

impl Tokenizer {
    /// Loads a `tokenizer.json`: a regular file of at most [`MAX_TOKENIZER_BYTES`], so a
    /// device or a runaway file is refused before it is read.
    pub fn from_file(path: &std::path::Path) -> Result<Tokenizer, ModelError> {
        use std::io::Read;
        let fail = |reason: String| ModelError::Tokenizer(format!("cannot load `{}`: {reason}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("it is not a regular file".into()));
        }
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        file.take(MAX_TOKENIZER_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > MAX_TOKENIZER_BYTES {
            return Err(fail(format!("it is larger than {} MiB, more than a tokenizer.json may be", MAX_TOKENIZER_BYTES >> 20)));
        }
        Tokenizer::from_bytes(&bytes).map_err(|e| fail(e.to_string()))
    }

    /// Loads a tokenizer from `tokenizer.json` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tokenizer, ModelError> {
        let err = |e: tokenizers::Error| ModelError::Tokenizer(e.to_string());
        // The tokenizers crate reports JSON errors with their line and column.
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(err)?;
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        let unprefixed = match unprefixed_json(bytes) {
            Some(json) => {
                let markup = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(err)?;
                let mut data = markup.clone();
                data.set_encode_special_tokens(true);
                Some(Box::new((markup, data)))
            }
            None => None,
        };
        let added = inner.get_added_tokens_decoder().keys().copied().collect();
        let longest_token = inner.get_vocab(true).keys().map(|t| t.len()).max().unwrap_or(1).max(1);
        Ok(Tokenizer { inner, plain, unprefixed, added, bos: None, longest_token })
    }

    /// Makes prompts start with `bos` (when they do not already): what a model whose
    /// tokenizer adds a BOS token expects.
    pub fn set_bos(&mut self, bos: Option<u32>) {
        self.bos = bos;
    }

    /// The token prompts start with, if the model adds one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Token ids of `text` as data, as it would continue other text: special tokens disabled
    /// (`<|im_end|>` written in the text is plain characters), no space put before it.
    pub fn encode_data(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode_piece(text, false, &mut false)
    }

    /// Token ids of prompt text starting a prompt: markup with special tokens recognised, data
    /// without. No BOS token is added (see [`Tokenizer::encode_prompt`]).
    pub fn encode_text(&self, text: &PromptText) -> Result<Vec<u32>, ModelError> {
        self.encode_pieces(text, &mut true)
    }

    /// Token ids of a prompt in two parts, and how many of them the first part gave: the BOS
    /// token when the model adds one (and the text does not start with it), then `shared`,
    /// then `rest`, tokenized as one text continues.
    pub fn encode_prompt(&self, shared: &PromptText, rest: &PromptText) -> Result<(Vec<u32>, usize), ModelError> {
        let mut after_special = true;
        let mut ids = self.encode_pieces(shared, &mut after_special)?;
        let n_shared = ids.len();
        ids.extend(self.encode_pieces(rest, &mut after_special)?);
        match self.bos {
            Some(bos) if ids.first() != Some(&bos) => {
                ids.insert(0, bos);
                Ok((ids, n_shared + 1))
            }
            _ => Ok((ids, n_shared)),
        }
    }

    fn encode_pieces(&self, text: &PromptText, after_special: &mut bool) -> Result<Vec<u32>, ModelError> {
        let mut ids = Vec::new();
        for piece in text.pieces() {
            ids.extend(match piece {
                Piece::Markup(t) => self.encode_piece(t, true, after_special)?,
                Piece::Data(t) => self.encode_piece(t, false, after_special)?,
            });
        }
        Ok(ids)
    }

    /// Tokenizes one piece. `after_special` says whether the text so far ends with a special
    /// token (or is empty), and is updated: vocabularies that prefix fragments with a space
    /// get one only there, as llama.cpp gives it.
    fn encode_piece(&self, text: &str, special: bool, after_special: &mut bool) -> Result<Vec<u32>, ModelError> {
        let err = |e: tokenizers::Error| ModelError::Tokenizer(e.to_string());
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let Some(unprefixed) = &self.unprefixed else {
            let t = if special { &self.inner } else { &self.plain };
            return Ok(t.encode_fast(text, false).map_err(err)?.get_ids().to_vec());
        };
        let t = if special { &unprefixed.0 } else { &unprefixed.1 };
        let enc = t.encode(text, false).map_err(err)?;
        let (ids, offsets) = (enc.get_ids(), enc.get_offsets());
        let mut out = Vec::with_capacity(ids.len() + 1);
        // Fragments between added tokens: (first token, end token, start byte, end byte).
        let mut first = 0;
        let mut start = 0;
        let flush = |out: &mut Vec<u32>, from: usize, to: usize, start: usize, end: usize, prefix: bool| -> Result<(), ModelError> {
            if start >= end {
                return Ok(());
            }
            if prefix {
                let prefixed = format!(" {}", &text[start..end]);
                out.extend_from_slice(t.encode_fast(prefixed.as_str(), false).map_err(err)?.get_ids());
            } else {
                out.extend_from_slice(&ids[from..to]);
            }
            Ok(())
        };
        let mut prefix = *after_special;
        for (i, id) in ids.iter().enumerate() {
            if self.added.contains(id) {
                flush(&mut out, first, i, start, offsets[i].0, prefix)?;
                out.push(*id);
                prefix = true;
                first = i + 1;
                start = offsets[i].1;
            }
        }
        let ends_with_text = start < text.len();
        flush(&mut out, first, ids.len(), start, text.len(), prefix)?;
        *after_special = !ends_with_text;
        Ok(out)
    }

    /// How many tokens `text` has as data, tokenizing only texts of at most `max_bytes` bytes:
    /// longer ones get a lower bound from their length, so counting stays cheap for any input.
    pub fn count_data(&self, text: &str, max_bytes: usize) -> Result<TokenCount, ModelError> {
        if text.len() > max_bytes {
            return Ok(TokenCount::AtLeast(text.len().div_ceil(self.longest_token)));
        }
        Ok(TokenCount::Exact(self.encode_data(text)?.len()))
    }

    /// The longest token's text in bytes.
    pub fn longest_token(&self) -> usize {
        self.longest_token
    }

    /// Token ids of `text` starting a prompt, special tokens written in the text recognised
    /// as such.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode_piece(text, true, &mut true)
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner.decode(ids, false).map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// The id of a token written exactly as `token`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of token `id`, as the vocabulary writes it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The normalizer that puts `▁` before each fragment and turns spaces into `▁` (what
/// SentencePiece vocabularies with `add_space_prefix` use, in loopc's files and Hugging Face's
/// Llama tokenizers alike), if `bytes` has it: then the same JSON with only the replacement.
fn unprefixed_json(bytes: &[u8]) -> Option<serde_json::Value> {
    // Most tokenizers have no such step: skip parsing their (possibly large) JSON twice.
    if !bytes.windows(9).any(|w| w == b"\"Prepend\"") {
        return None;
    }
    let mut json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let normalizer = json.get("normalizer")?;
    let steps = normalizer.get("normalizers")?.as_array()?;
    let is_prefix =
        |v: &serde_json::Value| v.get("type").and_then(|t| t.as_str()) == Some("Prepend") && v.get("prepend").and_then(|p| p.as_str()) == Some("\u{2581}");
    let is_replace = |v: &serde_json::Value| {
        v.get("type").and_then(|t| t.as_str()) == Some("Replace")
            && v.pointer("/pattern/String").and_then(|p| p.as_str()) == Some(" ")
            && v.get("content").and_then(|c| c.as_str()) == Some("\u{2581}")
    };
    match steps.as_slice() {
        [p, r] if is_prefix(p) && is_replace(r) => {
            let replace = r.clone();
            json["normalizer"] = replace;
            Some(json)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
