//! A tiny llama-shaped model with seeded random weights and a byte-level tokenizer, written
//! by the same ONNX writer as real imports, so tests of generation logic run in milliseconds.
//! Public (but hidden) so integration tests can use it too.

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::error::{io, ModelError};
use super::import::{CONFIG_FILE, MODEL_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use super::onnx::graph::GraphBuilder;
use super::onnx::llama::{self, LlamaShape, Matrix, WeightSource};

/// The special tokens of the tiny model, ids 0, 1 and 2.
pub const SPECIAL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The tiny model's shape: 2 layers, grouped-query attention, a byte-level vocabulary.
pub fn tiny_shape() -> LlamaShape {
    LlamaShape { n_layer: 2, n_embd: 32, n_head: 4, n_head_kv: 2, head_dim: 8, n_ff: 64, vocab: SPECIAL.len() + 256, rope_theta: 10_000.0, rms_eps: 1e-5 }
}

struct RandomWeights {
    shape: LlamaShape,
    rng: ChaCha8Rng,
    cache: HashMap<String, (usize, usize)>,
}

impl WeightSource for RandomWeights {
    fn matrix(&mut self, name: &str) -> Result<Matrix, ModelError> {
        let s = &self.shape;
        let (qd, kd) = (s.n_head * s.head_dim, s.n_head_kv * s.head_dim);
        let (rows, cols) = match name.rsplit_once('.').map_or(name, |(a, _)| a).rsplit('.').next().unwrap_or("") {
            "token_embd" => (s.vocab, s.n_embd),
            "attn_q" => (qd, s.n_embd),
            "attn_k" | "attn_v" => (kd, s.n_embd),
            "attn_output" => (s.n_embd, qd),
            "ffn_gate" | "ffn_up" => (s.n_ff, s.n_embd),
            "ffn_down" => (s.n_embd, s.n_ff),
            _ => (1, s.n_embd),
        };
        self.cache.insert(name.to_string(), (rows, cols));
        let norm = rows == 1;
        let data = (0..rows * cols).map(|_| if norm { 1.0 + self.rng.random_range(-0.1..0.1) } else { self.rng.random_range(-0.5..0.5) }).collect();
        Ok(Matrix { rows, cols, data })
    }

    fn has(&self, name: &str) -> bool {
        name != "output.weight"
    }
}

/// The tiny model's context length (one token per byte of ASCII text, so a 600-byte input
/// overflows it).
pub const TINY_CONTEXT: usize = 512;

/// Writes the tiny model with weights from `seed` into `dir` (created if needed).
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let shape = tiny_shape();
    let mut g = GraphBuilder::inline();
    llama::build(&shape, &mut RandomWeights { shape: shape.clone(), rng: ChaCha8Rng::seed_from_u64(seed), cache: HashMap::new() }, &mut g)?;
    let bytes = g.finish("tiny")?;
    std::fs::write(dir.join(MODEL_FILE), bytes).map_err(io("write", dir))?;

    // Byte-level BPE with no merges: one token per byte, specials first.
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIAL.iter().enumerate() {
        vocab.insert((*s).to_string(), json!(i));
    }
    for (i, c) in alphabet.iter().enumerate() {
        vocab.insert(c.to_string(), json!(SPECIAL.len() + i));
    }
    let added: Vec<_> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []},
    });
    let write = |file: &str, v: serde_json::Value| {
        let p = dir.join(file);
        std::fs::write(&p, v.to_string()).map_err(io("write", &p))
    };
    write(TOKENIZER_FILE, tokenizer)?;
    write(
        CONFIG_FILE,
        json!({"model_type": "llama", "num_hidden_layers": shape.n_layer, "vocab_size": shape.vocab,
                              "eos_token_id": 2, "bos_token_id": 1, "pad_token_id": 0, "max_position_embeddings": TINY_CONTEXT}),
    )?;
    write(TOKENIZER_CONFIG_FILE, json!({"eos_token": "<|im_end|>", "chat_template": CHATML_TEMPLATE}))?;
    Ok(())
}

/// A plain ChatML template (what the tiny model and tests of rendering use).
pub const CHATML_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A [`ChatTemplate`](super::chat::ChatTemplate) of [`CHATML_TEMPLATE`].
pub fn chatml() -> super::chat::ChatTemplate {
    super::chat::ChatTemplate::jinja(CHATML_TEMPLATE, None, Some("<|im_end|>")).expect("the ChatML template compiles")
}

/// Writes the tiny model as a GGUF file (norms in F32, the embedding in F16, the other
/// matrices in Q8_0), with a byte-level tokenizer in its metadata, to test `model import`.
pub fn write_tiny_gguf(path: &Path, seed: u64) -> Result<(), ModelError> {
    let shape = tiny_shape();
    let mut weights = RandomWeights { shape: shape.clone(), rng: ChaCha8Rng::seed_from_u64(seed), cache: HashMap::new() };
    let mut names = vec!["token_embd.weight".to_string(), "output_norm.weight".to_string()];
    for i in 0..shape.n_layer {
        for t in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"] {
            names.push(format!("blk.{i}.{t}.weight"));
        }
    }
    let mut tensors = Vec::new();
    for name in &names {
        let m = weights.matrix(name)?;
        let (ty, bytes) = if m.rows == 1 {
            (0u32, m.data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        } else if name == "token_embd.weight" {
            (1, m.data.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect())
        } else {
            (8, quantize_q8_0(&m.data))
        };
        let dims: Vec<u64> = if m.rows == 1 { vec![m.cols as u64] } else { vec![m.cols as u64, m.rows as u64] };
        tensors.push((name.clone(), dims, ty, bytes));
    }
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let tokens: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).chain(alphabet.iter().map(|c| c.to_string())).collect();
    let types: Vec<u32> = (0..tokens.len()).map(|i| if i < SPECIAL.len() { 3 } else { 1 }).collect();

    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    let kv: Vec<(&str, Meta)> = vec![
        ("general.architecture", Meta::Str("llama".into())),
        ("llama.block_count", Meta::U32(shape.n_layer as u32)),
        ("llama.context_length", Meta::U32(512)),
        ("llama.embedding_length", Meta::U32(shape.n_embd as u32)),
        ("llama.feed_forward_length", Meta::U32(shape.n_ff as u32)),
        ("llama.attention.head_count", Meta::U32(shape.n_head as u32)),
        ("llama.attention.head_count_kv", Meta::U32(shape.n_head_kv as u32)),
        ("llama.rope.freq_base", Meta::F32(shape.rope_theta)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(shape.rms_eps)),
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type", Meta::U32s(types)),
        ("tokenizer.ggml.merges", Meta::Strs(Vec::new())),
        ("tokenizer.ggml.bos_token_id", Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(2)),
        ("tokenizer.ggml.padding_token_id", Meta::U32(0)),
        ("tokenizer.chat_template", Meta::Str(CHATML_TEMPLATE.into())),
    ];
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for (key, value) in &kv {
        put_str(&mut out, key);
        match value {
            Meta::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut out, s);
            }
            Meta::U32(v) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Meta::F32(v) => {
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Meta::Strs(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut out, s);
                }
            }
            Meta::U32s(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, dims, ty, bytes) in &tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += (bytes.len() as u64).div_ceil(32) * 32;
    }
    let pad = |out: &mut Vec<u8>| out.resize(out.len().div_ceil(32) * 32, 0);
    pad(&mut out);
    for (_, _, _, bytes) in &tensors {
        out.extend_from_slice(bytes);
        pad(&mut out);
    }
    std::fs::write(path, out).map_err(io("write", path))
}

enum Meta {
    Str(String),
    U32(u32),
    F32(f32),
    Strs(Vec<String>),
    U32s(Vec<u32>),
}

/// Q8_0 blocks of 32: an f16 scale and 32 signed bytes.
fn quantize_q8_0(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 32 * 34);
    for block in data.chunks(32) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * inv).round() as i8 as u8));
    }
    out
}
