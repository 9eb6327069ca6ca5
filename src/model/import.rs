//! Converts a GGUF decoder (llama, qwen2, qwen3, gemma3, ...) into a loopc model directory: `model.onnx` (+ external
//! weights), `tokenizer.json`, and Hugging Face style `config.json` and
//! `tokenizer_config.json`. The directory appears whole or not at all.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::error::{io, ModelError};
use super::gguf::{Gguf, MetaValue};
use super::onnx::arch::{Arch, Sliding};
use super::onnx::graph::GraphBuilder;
use super::onnx::llama::{self, Layout, LlamaShape, WeightSource};
use super::onnx::weight::{Compute, Matrix, Weight};
use super::tokenizer;

/// The file names of a model directory.
pub const MODEL_FILE: &str = "model.onnx";
/// The version of loopc's ONNX export, recorded in `config.json` as `loopc_export`; known
/// models converted by an older loopc are converted again (2 added the `tree_mask` input, 3
/// kept quantized weights quantized, 4 added the prefill graph).
pub const EXPORT_VERSION: u64 = 4;
/// The GGUF architectures (`general.architecture`) the importer converts.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3", "phi3"];
/// The prefill graph, written beside [`MODEL_FILE`] when the precision computes some products
/// differently for passes of many rows (`fast`: 4-bit products in f32 instead of int8). Same
/// inputs, outputs and weights ([`DATA_FILE`]); see `session::PREFILL_ROWS`.
pub const PREFILL_MODEL_FILE: &str = "model.prefill.onnx";

/// External weights of [`MODEL_FILE`].
pub const DATA_FILE: &str = "model.onnx.data";
/// The tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Model hyper-parameters and special token ids.
pub const CONFIG_FILE: &str = "config.json";
/// Chat template and special tokens.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// How an import stores and applies the model's weights. F32, F16 and BF16 tensors stay
/// float whatever the precision; it decides what happens to quantized ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Quantized tensors stay as the file has them, and products quantize their activations
    /// to int8 per block (ONNX Runtime's `accuracy_level` 4): the fastest, and the default.
    #[default]
    Fast,
    /// Quantized tensors stay as the file has them, and products compute in f32
    /// (`accuracy_level` 0): the numbers of the dequantized model, in a quarter of its memory.
    Exact,
    /// Every tensor dequantized to f32 at import, as loopc did before: the most memory and
    /// the slowest decoding.
    F32,
}

impl Precision {
    /// Every precision, the default first.
    pub const ALL: [Precision; 3] = [Precision::Fast, Precision::Exact, Precision::F32];

    /// The name used on the command line, in model specs (`NAME@f32`) and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fast => "fast",
            Precision::Exact => "exact",
            Precision::F32 => "f32",
        }
    }

    /// The precision called `name`.
    pub fn from_name(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name)
    }

    /// How the graph keeps and applies the weights at this precision.
    pub fn layout(self) -> Layout {
        match self {
            Precision::Fast => Layout::AsStored { compute: Compute::Int8, eight_bit_as_f32: false },
            Precision::Exact => Layout::AsStored { compute: Compute::F32, eight_bit_as_f32: true },
            Precision::F32 => Layout::F32,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an import produced.
#[derive(Debug)]
pub struct Imported {
    /// The model directory.
    pub dir: PathBuf,
    /// The model's shape.
    pub shape: LlamaShape,
    /// SHA-256 of the source GGUF.
    pub source_sha256: String,
}

/// Reads the decoder's hyper-parameters from a GGUF's metadata (under its architecture's
/// prefix: `llama.`, `qwen2.`, ...), and checks them against its tensors: every tensor the
/// decoder needs is present with the dimensions the shape implies. A GGUF that passes builds a
/// consistent graph; one that does not gets an error naming the tensor, before anything is
/// sized by the stated numbers.
pub fn llama_shape(g: &Gguf) -> Result<LlamaShape, ModelError> {
    let bad = |reason: String| ModelError::BadModel { model: "gguf import".into(), reason };
    let name = g.meta_str("general.architecture")?;
    let arch = match Arch::named(name) {
        Some(a) if SUPPORTED_ARCHITECTURES.contains(&a.name) => a,
        _ => return Err(bad(format!("architecture `{name}` is not supported yet; loopc imports {}", SUPPORTED_ARCHITECTURES.join(", ")))),
    };
    let key = |k: &str| format!("{}.{k}", arch.name);
    // Sizes are read as u32: no real model comes near, and products of two stay within u64.
    let size = |key: &str, v: u64| u32::try_from(v).map(|v| v as usize).map_err(|_| bad(format!("metadata `{key}` is {v}, too large")));
    let get = |k: &str| size(&key(k), g.meta_u64(&key(k))?);
    let get_or = |k: &str, default: usize| g.meta(&key(k)).and_then(MetaValue::as_u64).map_or(Ok(default), |v| size(&key(k), v));
    let float = |k: &str| g.meta(&key(k)).and_then(MetaValue::as_f64);
    let n_embd = get("embedding_length")?;
    let n_head = get("attention.head_count")?;
    let n_layer = get("block_count")?;
    let head_dim = get_or("attention.key_length", n_embd / n_head.max(1))?;
    if let Some(rope_dim) = g.meta(&key("rope.dimension_count")).and_then(MetaValue::as_u64) {
        if rope_dim != head_dim as u64 {
            return Err(bad(format!("partial rotary embeddings ({rope_dim} of {head_dim} dims) are not supported")));
        }
    }
    // Rope scaling: Llama 3.x divides frequencies by a `rope_freqs` tensor; a linear scaling
    // type divides positions. Other types (yarn, ...) would give wrong logits if ignored.
    let mut rope_scale = 1.0;
    match g.meta(&key("rope.scaling.type")).and_then(MetaValue::as_str) {
        None | Some("none") => {}
        Some("linear") => rope_scale = float("rope.scaling.factor").filter(|f| *f > 0.0).unwrap_or(1.0) as f32,
        Some(kind) => return Err(bad(format!("rope scaling `{kind}` is not supported yet (loopc applies linear scaling and Llama 3.x `rope_freqs`)"))),
    }
    // Phi-3's LongRoPE keeps two sets of factors: llama.cpp takes the long ones when it runs
    // with a context beyond the original one, and loopc's context is not fixed in advance, so
    // a model trained beyond its original context (the 128k ones) gets the long ones.
    let original = get_or("rope.scaling.original_context_length", 0)?;
    let extended = original > 0 && get_or("context_length", 0)? > original;
    let factors_tensor = ["rope_freqs.weight", if extended { "rope_factors_long.weight" } else { "rope_factors_short.weight" }]
        .into_iter()
        .find(|name| g.tensor(name).is_some());
    let rope_factors = match factors_tensor.and_then(|name| g.tensor(name).map(|t| (name, t))) {
        Some((name, t)) if t.dims != [head_dim as u64 / 2] => {
            return Err(bad(format!("tensor `{name}` has dimensions {:?}, but the head size implies [{}]", t.dims, head_dim / 2)))
        }
        Some((_, t)) => Some(g.dequantize(t)?),
        None => None,
    };
    let vocab = match g.meta(&key("vocab_size")).and_then(MetaValue::as_u64) {
        Some(v) => size(&key("vocab_size"), v)?,
        None => g.meta_strings("tokenizer.ggml.tokens")?.len(),
    };
    // Gemma 3 alternates sliding-window layers (with their own rope base, 10 000 unless the
    // file says) with a global one every sixth layer (unless the file says); llama-architecture models that state a
    // window (Mistral v0.1) slide in every layer. Phi-3's stated window is ignored, as
    // llama.cpp does (its conversion does not record which layers slide).
    let window = g.meta(&key("attention.sliding_window")).and_then(MetaValue::as_u64).filter(|w| *w > 0);
    let sliding = match (arch.name, window) {
        ("gemma3", Some(w)) => Some(Sliding {
            window: size("sliding_window", w)?,
            pattern: get_or("attention.sliding_window_pattern", 6)?,
            rope_theta: Some(float("rope.freq_base_swa").unwrap_or(10_000.0) as f32),
        }),
        ("llama", Some(w)) => Some(Sliding { window: size("sliding_window", w)?, pattern: 1, rope_theta: None }),
        _ => None,
    };
    // Gemma 3 27B scales attention scores by the hidden size per head, not the head size.
    let attn_scale = (arch == Arch::GEMMA3 && n_layer == 62).then(|| 1.0 / ((n_embd / n_head.max(1)) as f32).sqrt());
    let shape = LlamaShape {
        n_layer,
        n_embd,
        n_head,
        n_head_kv: get_or("attention.head_count_kv", n_head)?,
        head_dim,
        n_ff: get("feed_forward_length")?,
        vocab,
        rope_theta: float("rope.freq_base").unwrap_or(10_000.0) as f32,
        rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f32,
        arch,
        rope_factors,
        rope_scale,
        // LongRoPE's attention factor multiplies RoPE's cos and sin (llama.cpp's `attn_factor`).
        rope_mscale: float("rope.scaling.attn_factor").filter(|f| *f > 0.0).unwrap_or(1.0) as f32,
        sliding,
        attn_scale,
        logit_softcap: float("final_logit_softcapping").filter(|c| *c > 0.0).map(|c| c as f32),
    };
    check_shape(g, &shape).map_err(bad)?;
    Ok(shape)
}

/// Checks that `shape` is one the decoder can be built for, and that `g` holds each tensor it
/// reads with the dimensions it implies (ggml order: input features first).
fn check_shape(g: &Gguf, s: &LlamaShape) -> Result<(), String> {
    let sizes = [("embedding_length", s.n_embd), ("head_count", s.n_head), ("head_count_kv", s.n_head_kv), ("key_length", s.head_dim)];
    let sizes = sizes.into_iter().chain([("feed_forward_length", s.n_ff), ("vocab_size", s.vocab), ("block_count", s.n_layer)]);
    for (name, v) in sizes {
        if v == 0 {
            return Err(format!("`{name}` is 0"));
        }
    }
    if s.n_head % s.n_head_kv != 0 || s.head_dim % 2 != 0 {
        return Err(format!("unsupported head layout: {} heads, {} KV heads, head size {}", s.n_head, s.n_head_kv, s.head_dim));
    }
    let factors_ok = s.rope_factors.iter().flatten().all(|f| f.is_finite() && *f > 0.0);
    let usable = s.rope_theta.is_finite() && s.rope_theta > 0.0 && s.rms_eps.is_finite() && s.rms_eps >= 0.0 && factors_ok && s.rope_scale.is_finite();
    if !usable {
        return Err(format!("the RoPE base {} or factors, or the RMSNorm epsilon {} is not a usable number", s.rope_theta, s.rms_eps));
    }
    let (e, q, kv) = (s.n_embd as u64, (s.n_head * s.head_dim) as u64, (s.n_head_kv * s.head_dim) as u64);
    let (ff, v, d) = (s.n_ff as u64, s.vocab as u64, s.head_dim as u64);
    let expect = |name: &str, dims: &[u64], required: bool| -> Result<(), String> {
        match g.tensor(name) {
            Some(t) if t.dims == dims => Ok(()),
            Some(t) => Err(format!("tensor `{name}` has dimensions {:?}, but the metadata implies {dims:?}", t.dims)),
            None if required => Err(format!("tensor `{name}` is missing")),
            None => Ok(()),
        }
    };
    expect("token_embd.weight", &[e, v], true)?;
    expect("output_norm.weight", &[e], true)?;
    expect("output.weight", &[e, v], false)?;
    let a = s.arch;
    // Layer by layer, so a huge stated block count stops at the first missing layer.
    for i in 0..s.n_layer {
        let mut tensors: Vec<(&str, Vec<u64>)> = vec![("attn_norm.weight", vec![e]), ("attn_output.weight", vec![q, e]), ("ffn_norm.weight", vec![e])];
        if a.fused_qkv {
            tensors.push(("attn_qkv.weight", vec![e, q + 2 * kv]));
        } else {
            tensors.extend([("attn_q.weight", vec![e, q]), ("attn_k.weight", vec![e, kv]), ("attn_v.weight", vec![e, kv])]);
        }
        if a.qkv_bias {
            tensors.extend([("attn_q.bias", vec![q]), ("attn_k.bias", vec![kv]), ("attn_v.bias", vec![kv])]);
        }
        if a.qk_norm {
            tensors.extend([("attn_q_norm.weight", vec![d]), ("attn_k_norm.weight", vec![d])]);
        }
        if a.fused_gate_up {
            tensors.push(("ffn_up.weight", vec![e, 2 * ff]));
        } else {
            tensors.extend([("ffn_gate.weight", vec![e, ff]), ("ffn_up.weight", vec![e, ff])]);
        }
        tensors.push(("ffn_down.weight", vec![ff, e]));
        if a.post_norms {
            tensors.extend([("post_attention_norm.weight", vec![e]), ("post_ffw_norm.weight", vec![e])]);
        }
        for (t, dims) in tensors {
            expect(&format!("blk.{i}.{t}"), &dims, true)?;
        }
    }
    Ok(())
}

struct GgufWeights<'a> {
    gguf: &'a Gguf,
    done: usize,
    progress: &'a dyn Fn(usize, usize),
}

impl WeightSource for GgufWeights<'_> {
    fn weight(&mut self, name: &str) -> Result<Weight, ModelError> {
        let t = self.gguf.tensor(name).ok_or_else(|| ModelError::BadModel { model: "gguf import".into(), reason: format!("tensor `{name}` is missing") })?;
        let weight = match self.gguf.blocks(t)? {
            Some(blocks) => Weight::Blocks(blocks),
            None => {
                let data = self.gguf.dequantize(t)?;
                let cols = t.dims.first().copied().unwrap_or(1) as usize;
                Weight::F32(Matrix { rows: data.len() / cols.max(1), cols, data })
            }
        };
        self.done += 1;
        (self.progress)(self.done, self.gguf.tensors.len());
        Ok(weight)
    }

    fn has(&self, name: &str) -> bool {
        self.gguf.tensor(name).is_some()
    }
}

/// Imports the GGUF at `gguf_path` into `out_dir` at `precision`, calling `progress(done,
/// total)` per tensor. An existing `out_dir` is replaced only once the new one is complete.
pub fn import_gguf(gguf_path: &Path, out_dir: &Path, precision: Precision, progress: &dyn Fn(usize, usize)) -> Result<Imported, ModelError> {
    import_with_layout(gguf_path, out_dir, precision, precision.layout(), progress)
}

/// [`import_gguf`] with the graph's layout chosen apart from the precision recorded (tests
/// check layouts no precision uses).
pub(crate) fn import_with_layout(
    gguf_path: &Path,
    out_dir: &Path,
    precision: Precision,
    layout: Layout,
    progress: &dyn Fn(usize, usize),
) -> Result<Imported, ModelError> {
    let bytes = super::gguf::read_regular(gguf_path)?;
    let source_sha256 = crate::fs::sha256_hex(&bytes);
    let gguf = Gguf::parse(gguf_path, bytes)?;
    let shape = llama_shape(&gguf)?;
    let vocab = tokenizer::from_gguf(&gguf)?;

    let parent = out_dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    let staging = tempfile::Builder::new().prefix(".import-").tempdir_in(parent).map_err(io("create a directory in", parent))?;
    let dir = staging.path();

    let mut g = GraphBuilder::external(&dir.join(DATA_FILE))?;
    llama::build(&shape, &mut GgufWeights { gguf: &gguf, done: 0, progress }, layout, &mut g)?;
    let (model, prefill) = g.finish_pair(shape.arch.name)?;
    write(&dir.join(MODEL_FILE), &model)?;
    if let Some(prefill) = prefill {
        write(&dir.join(PREFILL_MODEL_FILE), &prefill)?;
    }
    write(&dir.join(TOKENIZER_FILE), vocab.json.to_string().as_bytes())?;

    let tokens = gguf.meta_strings("tokenizer.ggml.tokens")?;
    let id = |key: &str| gguf.meta(key).and_then(MetaValue::as_u64);
    let token = |key: &str| id(key).and_then(|i| tokens.get(i as usize)).map(|t| t.to_string());
    let config = json!({
        "model_type": shape.arch.name,
        "loopc_export": EXPORT_VERSION,
        "loopc_precision": precision.name(),
        "num_hidden_layers": shape.n_layer,
        "hidden_size": shape.n_embd,
        "num_attention_heads": shape.n_head,
        "num_key_value_heads": shape.n_head_kv,
        "head_dim": shape.head_dim,
        "intermediate_size": shape.n_ff,
        "vocab_size": shape.vocab,
        "rope_theta": shape.rope_theta,
        "rms_norm_eps": shape.rms_eps,
        "max_position_embeddings": id(&format!("{}.context_length", shape.arch.name)),
        "bos_token_id": id("tokenizer.ggml.bos_token_id"),
        "eos_token_id": vocab.facts.end_of_generation,
        "pad_token_id": id("tokenizer.ggml.padding_token_id"),
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(),
        "loopc": {"source": gguf_path.file_name().and_then(|n| n.to_str()), "source_sha256": source_sha256,
                  "importer": env!("CARGO_PKG_VERSION"), "architecture": gguf.meta_str("general.architecture")?,
                  "quantization": super::gguf::quantization_name(&gguf.metadata, &gguf.tensors)},
    });
    write(&dir.join(CONFIG_FILE), serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    let tok_config = json!({
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "add_bos_token": vocab.facts.add_bos,
        "chat_template": gguf.meta("tokenizer.chat_template").and_then(MetaValue::as_str),
        "model_max_length": id(&format!("{}.context_length", shape.arch.name)),
    });
    write(&dir.join(TOKENIZER_CONFIG_FILE), serde_json::to_string_pretty(&tok_config).unwrap_or_default().as_bytes())?;

    // Swap the finished directory into place: the old one (if any) goes only after the new
    // one is complete.
    let staged = staging.keep();
    if out_dir.exists() {
        let old = parent.join(format!(".replaced-{}", std::process::id()));
        std::fs::rename(out_dir, &old).map_err(io("replace", out_dir))?;
        std::fs::rename(&staged, out_dir).map_err(io("create", out_dir))?;
        let _ = std::fs::remove_dir_all(&old);
    } else if let Err(e) = std::fs::rename(&staged, out_dir) {
        // Another process may have finished the same import first; its result is as good.
        let _ = std::fs::remove_dir_all(&staged);
        if !out_dir.join(MODEL_FILE).is_file() {
            return Err(ModelError::Io { action: "create", path: out_dir.to_path_buf(), source: e });
        }
    }
    Ok(Imported { dir: out_dir.to_path_buf(), shape, source_sha256 })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    std::fs::write(path, bytes).map_err(io("write", path))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
