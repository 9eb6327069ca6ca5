//! Tokenizers: builds a Hugging Face `tokenizer.json` from GGUF metadata, and loads one.

use serde_json::{json, Value};

use super::error::ModelError;
use super::gguf::{Gguf, MetaValue};
use super::text::{Piece, PromptText};

/// GGUF token types that are special (control and user-defined tokens).
const SPECIAL_TOKEN_TYPES: [u64; 2] = [3, 4];

/// The `tokenizer.json` for a GGUF's byte-level BPE vocabulary.
pub fn tokenizer_json(gguf: &Gguf) -> Result<Value, ModelError> {
    let unsupported = |reason: String| ModelError::BadModel { model: "gguf tokenizer".into(), reason };
    let kind = gguf.meta_str("tokenizer.ggml.model")?;
    if kind != "gpt2" {
        return Err(unsupported(format!(
            "tokenizer type `{kind}` is not supported yet (byte-level BPE, `gpt2`, is); export the model with a tokenizer.json instead"
        )));
    }
    let pre = gguf.meta("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre {
        // llama.cpp's smollm pre-tokenizer splits digits one by one before the GPT-2 regex.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "gpt2" | "default" => byte_level,
        other => return Err(unsupported(format!("pre-tokenizer `{other}` is not supported yet (smollm, gpt2 are)"))),
    };
    let tokens = gguf.meta_strings("tokenizer.ggml.tokens")?;
    let types: Vec<u64> = match gguf.meta("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(items)) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let merges = gguf.meta_strings("tokenizer.ggml.merges")?;
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if vocab.insert((*t).to_string(), json!(i)).is_some() {
            return Err(unsupported(format!("the vocabulary lists `{t}` twice")));
        }
    }
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| SPECIAL_TOKEN_TYPES.contains(ty))
        .map(|(i, (t, _))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let merges: Vec<Value> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m, ""));
            json!([a, b])
        })
        .collect();
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null, "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    }))
}

/// A loaded tokenizer with the ids generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer with special-token parsing off, for data (see [`PromptText`]).
    plain: tokenizers::Tokenizer,
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
        // The tokenizers crate reports JSON errors with their line and column.
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| fail(e.to_string()))?;
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        let longest_token = inner.get_vocab(true).keys().map(|t| t.len()).max().unwrap_or(1).max(1);
        Ok(Tokenizer { inner, plain, longest_token })
    }

    /// Token ids of `text` with special tokens disabled: `<|im_end|>` written in the text is
    /// plain characters.
    pub fn encode_data(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.plain.encode_fast(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of prompt text: markup with special tokens recognised, data without.
    pub fn encode_text(&self, text: &PromptText) -> Result<Vec<u32>, ModelError> {
        let mut ids = Vec::new();
        for piece in text.pieces() {
            ids.extend(match piece {
                Piece::Markup(t) => self.encode(t)?,
                Piece::Data(t) => self.encode_data(t)?,
            });
        }
        Ok(ids)
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

    /// Token ids of `text`, special tokens written in the text recognised as such.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner.decode(ids, false).map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// The id of a token written exactly as `token`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
