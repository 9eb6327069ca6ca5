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
use super::onnx::llama::{self, Layout, LlamaShape, WeightSource};
use super::onnx::weight::Compute;
use super::onnx::weight::{Matrix, Weight};
use super::quant::GgmlType;

/// The special tokens of the tiny model, ids 0, 1 and 2.
pub const SPECIAL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The tiny model's shape: 2 layers, grouped-query attention, a byte-level vocabulary.
pub fn tiny_shape() -> LlamaShape {
    LlamaShape {
        n_layer: 2,
        n_embd: 32,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 8,
        n_ff: 64,
        vocab: SPECIAL.len() + 256,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        ..LlamaShape::default()
    }
}

struct RandomWeights {
    shape: LlamaShape,
    rng: ChaCha8Rng,
    cache: HashMap<String, (usize, usize)>,
}

impl WeightSource for RandomWeights {
    fn weight(&mut self, name: &str) -> Result<Weight, ModelError> {
        self.matrix(name).map(Weight::F32)
    }

    fn has(&self, name: &str) -> bool {
        name != "output.weight"
    }
}

impl RandomWeights {
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
}

/// The tiny model's context length (one token per byte of ASCII text, so a 600-byte input
/// overflows it).
pub const TINY_CONTEXT: usize = 512;

/// Writes the tiny model with weights from `seed` into `dir` (created if needed).
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let shape = tiny_shape();
    let mut g = GraphBuilder::inline();
    let mut weights = RandomWeights { shape: shape.clone(), rng: ChaCha8Rng::seed_from_u64(seed), cache: HashMap::new() };
    // The layout of the default model (float weights stay floats): runtime tests run the
    // attention operators it runs.
    llama::build(&shape, &mut weights, Layout::AsStored { compute: Compute::F32, eight_bit_as_f32: false }, &mut g)?;
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
    write_gguf(path, seed, &tiny_shape(), &|name| if name == "token_embd.weight" { GgmlType::F16 } else { GgmlType::Q8_0 })
}

/// The quantized ggml types loopc reads.
pub const QUANT_TYPES: [GgmlType; 8] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

/// A small llama shape whose matrices hold whole k-quant super-blocks (256 values a row).
pub fn k_quant_shape() -> LlamaShape {
    LlamaShape {
        n_layer: 2,
        n_embd: 256,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 512,
        vocab: SPECIAL.len() + 256,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        ..LlamaShape::default()
    }
}

/// `n` values of type `ty` as random ggml blocks: random codes, and scales (and minimums) of
/// a size that keeps a random model's activations ordinary. Every bit pattern of a block's
/// codes is valid, so this covers the layouts more fully than quantizing chosen values would.
pub fn random_blocks(ty: GgmlType, n: usize, rng: &mut impl Rng) -> Vec<u8> {
    let (per, size) = ty.block();
    let mut out = vec![0u8; n / per * size];
    rng.fill_bytes(&mut out);
    let mut half = |b: &mut [u8], at: usize, lo: f32, hi: f32| {
        let sign = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let v = if lo < 0.0 { rng.random_range(lo..hi) } else { sign * rng.random_range(lo..hi) };
        b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
    };
    // Scales give weights of about ±0.05 (as trained models of this width have), whatever
    // the codes' range: random models with larger weights turn small rounding into noise.
    for b in out.chunks_exact_mut(size) {
        match ty {
            GgmlType::Q4_0 => half(b, 0, 0.005, 0.015),
            GgmlType::Q5_0 => half(b, 0, 0.003, 0.008),
            GgmlType::Q8_0 => half(b, 0, 0.0004, 0.001),
            GgmlType::Q4_1 => {
                half(b, 0, 0.005, 0.015);
                half(b, 2, -0.1, 0.0);
            }
            GgmlType::Q5_1 => {
                half(b, 0, 0.003, 0.008);
                half(b, 2, -0.15, 0.0);
            }
            GgmlType::Q4K => {
                half(b, 0, 0.0002, 0.0004);
                half(b, 2, 0.0005, 0.001);
            }
            GgmlType::Q5K => {
                half(b, 0, 0.0001, 0.0002);
                half(b, 2, 0.0005, 0.001);
            }
            GgmlType::Q6K => half(b, 208, 0.00002, 0.00005),
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => {}
        }
    }
    out
}

/// Writes a model of `shape` as a GGUF file: norms in F32, each matrix (the embedding
/// `token_embd.weight`, tied with the LM head, and `blk.N.*.weight`) in the type `type_of`
/// gives its name, with a byte-level tokenizer in its metadata. Float matrices hold seeded
/// random values; quantized ones random blocks ([`random_blocks`]).
pub fn write_gguf(path: &Path, seed: u64, shape: &LlamaShape, type_of: &dyn Fn(&str) -> GgmlType) -> Result<(), ModelError> {
    let shape = shape.clone();
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
        let ty = if m.rows == 1 { GgmlType::F32 } else { type_of(name) };
        let bytes = match ty {
            GgmlType::F32 => m.data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
            GgmlType::F16 => m.data.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
            GgmlType::Bf16 => m.data.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
            _ => random_blocks(ty, m.data.len(), &mut weights.rng),
        };
        let dims: Vec<u64> = if m.rows == 1 { vec![m.cols as u64] } else { vec![m.cols as u64, m.rows as u64] };
        tensors.push((name.clone(), dims, ty.id(), bytes));
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
