//! A GGUF's vocabulary as a Hugging Face `tokenizer.json`, built to give the token ids
//! llama.cpp gives: byte-level BPE with the pre-tokenizer the GGUF names (`gpt2`), and
//! SentencePiece-style vocabularies merged by score with byte fallback (`llama`: Llama 2,
//! Mistral, Phi-3, Gemma). Control and user-defined tokens come from the token types, with
//! the corrections llama.cpp applies (end-of-turn tokens stored as normal become control
//! tokens; Phi-3's special tokens swallow the whitespace after them).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::super::error::ModelError;
use super::super::gguf::{Gguf, MetaValue};
use super::pretok::{self, PreTokenizer};
use super::spm;

/// A token's type, as GGUF stores it (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// An ordinary token.
    Normal,
    /// The unknown token.
    Unknown,
    /// A control token (`<|im_start|>`, `<bos>`): special, never produced from data.
    Control,
    /// A token the model's authors added (`<start_of_image>`, runs of newlines): always
    /// matched as a whole, in data too.
    UserDefined,
    /// A token the vocabulary does not use.
    Unused,
    /// A byte-fallback token (`<0x0A>`).
    Byte,
}

impl TokenType {
    fn from_id(id: u64) -> TokenType {
        match id {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

/// The kinds of vocabulary loopc reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// Byte-level BPE (`tokenizer.ggml.model = gpt2`) with its pre-tokenizer.
    BytePairs(PreTokenizer),
    /// SentencePiece-style pieces merged by score (`tokenizer.ggml.model = llama`).
    SentencePiece,
}

/// The tokenizer facts generation needs besides `tokenizer.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct VocabFacts {
    /// The vocabulary's kind.
    pub kind: VocabKind,
    /// The beginning-of-text token, if any.
    pub bos: Option<u32>,
    /// The end-of-text token, if any.
    pub eos: Option<u32>,
    /// The padding token, if any.
    pub pad: Option<u32>,
    /// Whether a prompt starts with `bos` (llama.cpp's `add_bos`, with its defaults).
    pub add_bos: bool,
    /// Every token that ends generation: the end-of-text and end-of-turn tokens, and the
    /// others llama.cpp recognises by their text (`<|im_end|>`, `<end_of_turn>`, ...).
    pub end_of_generation: Vec<u32>,
    /// Whether SentencePiece text fragments get a leading space.
    pub add_space_prefix: bool,
}

/// A GGUF vocabulary made into a tokenizer.
pub struct GgufVocab {
    /// The `tokenizer.json` content.
    pub json: Value,
    /// What else the model needs to know.
    pub facts: VocabFacts,
}

/// Texts llama.cpp treats as ending generation wherever they appear in a vocabulary.
pub const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
    "</s>",
    "<eos>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "[EOT]",
    "[EOS]",
    "<turn|>",
    "<|tool_response>",
];

/// Fill-in-the-middle padding tokens, which llama.cpp also ends generation at.
const FIM_END_TEXTS: &[&str] =
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"];

fn unsupported(reason: String) -> ModelError {
    ModelError::BadModel { model: "gguf tokenizer".into(), reason }
}

/// The tokenizer of a GGUF: `tokenizer.json` and the facts around it.
pub fn from_gguf(gguf: &Gguf) -> Result<GgufVocab, ModelError> {
    let model = gguf.meta_str("tokenizer.ggml.model")?;
    let tokens = gguf.meta_strings("tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err(unsupported("the vocabulary is empty".into()));
    }
    let mut types: Vec<TokenType> = match gguf.meta("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(items)) => items.iter().map(|v| TokenType::from_id(v.as_u64().unwrap_or(1))).collect(),
        _ => Vec::new(),
    };
    types.resize(tokens.len(), TokenType::Normal);
    let mut ids = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if let Some(first) = ids.insert(*t, i as u32) {
            return Err(unsupported(format!("the vocabulary lists `{t}` twice (ids {first} and {i})")));
        }
    }
    // llama.cpp makes end-of-turn tokens control tokens whatever their stored type (old
    // converters typed `<|im_end|>` and friends as normal; Gemma types `</s>` user-defined),
    // so they are special here too: never matched in data.
    for text in END_OF_GENERATION_TEXTS.iter().chain(FIM_END_TEXTS) {
        if let Some(&id) = ids.get(text) {
            types[id as usize] = TokenType::Control;
        }
    }
    let id_of = |key: &str| gguf.meta(key).and_then(MetaValue::as_u64).filter(|&i| (i as usize) < tokens.len()).map(|i| i as u32);
    let flag = |key: &str| match gguf.meta(key) {
        Some(MetaValue::Bool(b)) => Some(*b),
        _ => None,
    };
    let (kind, default_add_bos, add_space_prefix) = match model {
        "gpt2" => {
            let name = gguf.meta("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
            let pre = pretok::find(name)
                .ok_or_else(|| unsupported(format!("the pre-tokenizer `{name}` is not supported; loopc knows {}", pretok::known_names().join(", "))))?;
            (VocabKind::BytePairs(pre), pre.add_bos, false)
        }
        "llama" => (VocabKind::SentencePiece, true, flag("tokenizer.ggml.add_space_prefix").unwrap_or(true)),
        other => {
            return Err(unsupported(format!(
                "tokenizer type `{other}` is not supported; loopc reads `gpt2` (byte-level BPE) and `llama` (SentencePiece with byte fallback)"
            )))
        }
    };
    let bos = id_of("tokenizer.ggml.bos_token_id");
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos) && bos.is_some();
    let eos = id_of("tokenizer.ggml.eos_token_id");
    let mut end_of_generation: Vec<u32> = [eos, id_of("tokenizer.ggml.eot_token_id"), id_of("tokenizer.ggml.eom_token_id")].into_iter().flatten().collect();
    end_of_generation.extend(END_OF_GENERATION_TEXTS.iter().chain(FIM_END_TEXTS).filter_map(|t| ids.get(t).copied()));
    end_of_generation.sort_unstable();
    end_of_generation.dedup();

    let rstrip = phi3_rstrip(gguf);
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| matches!(ty, TokenType::Control | TokenType::UserDefined | TokenType::Unknown))
        .map(|(i, (t, ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": rstrip(t),
                   "normalized": false, "special": *ty != TokenType::UserDefined})
        })
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| ((*t).to_string(), json!(i))).collect();
    let json = match kind {
        VocabKind::BytePairs(pre) => byte_level_json(gguf, pre, vocab, added)?,
        VocabKind::SentencePiece => {
            let scores = scores(gguf, tokens.len())?;
            spm::tokenizer_json(&tokens, &scores, &ids, add_space_prefix, vocab, added)
        }
    };
    let facts = VocabFacts { kind, bos, eos, pad: id_of("tokenizer.ggml.padding_token_id"), add_bos, end_of_generation, add_space_prefix };
    Ok(GgufVocab { json, facts })
}

/// Phi-3's special tokens swallow the whitespace after them (llama.cpp keys this on the
/// model's name), except the begin, unknown and end-of-text tokens.
fn phi3_rstrip(gguf: &Gguf) -> impl Fn(&str) -> bool {
    let name = gguf.meta("general.name").and_then(MetaValue::as_str).unwrap_or("").to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    move |t: &str| phi3 && !matches!(t, "<unk>" | "<s>" | "<|endoftext|>")
}

fn scores(gguf: &Gguf, n: usize) -> Result<Vec<f32>, ModelError> {
    match gguf.meta("tokenizer.ggml.scores") {
        Some(MetaValue::Array(items)) => {
            let mut s: Vec<f32> = items.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect();
            if s.len() < n {
                return Err(unsupported(format!("the vocabulary has {n} tokens but only {} scores", s.len())));
            }
            s.truncate(n);
            Ok(s)
        }
        _ => Ok(vec![0.0; n]),
    }
}

fn byte_level_json(gguf: &Gguf, pre: PreTokenizer, vocab: serde_json::Map<String, Value>, added: Vec<Value>) -> Result<Value, ModelError> {
    let merges = gguf.meta_strings("tokenizer.ggml.merges")?;
    let merges: Vec<Value> = merges
        .iter()
        .map(|m| {
            // llama.cpp splits at the first space after the first character, so a merge of a
            // space-led token keeps its space.
            let cut = m.char_indices().skip(1).find(|(_, c)| *c == ' ').map(|(i, _)| i);
            match cut {
                Some(i) => json!([&m[..i], &m[i + 1..]]),
                None => json!([m, ""]),
            }
        })
        .collect();
    let mut steps: Vec<Value> =
        pre.regexes.iter().map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false})).collect();
    steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}));
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": steps},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": pre.ignore_merges,
                  "vocab": vocab, "merges": merges},
    }))
}
