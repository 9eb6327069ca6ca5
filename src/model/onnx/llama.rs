//! The llama-family decoder as a standard-ops ONNX graph with a KV cache, in the input and
//! output layout of Hugging Face Optimum exports:
//!
//! inputs `input_ids` \[B,S\] i64, `attention_mask` \[B,T\] i64, `position_ids` \[B,S\] i64,
//! `past_key_values.{i}.key|value` \[B,KVH,P,D\] f32; outputs `logits` \[B,S,V\] f32 and
//! `present.{i}.key|value` \[B,KVH,T,D\] f32, where T = P + S.
//!
//! Two optional inputs go beyond that layout; runners that do not know them leave them at
//! their defaults:
//!
//! - `num_logits_to_keep` (int64 scalar, default 0 = all positions) computes logits for the
//!   last N positions only. Generation needs one, and choice scoring a few, so this saves the
//!   LM head's work and memory (a \[B,S,49152\] tensor) on every other position.
//! - `tree_mask` (bool \[B,1,S,T\], default all true) is and-ed with the causal and padding
//!   mask, so a pass can hold a token tree: label continuations that share prefixes, each
//!   token attending only to the prompt and its own ancestors. Constrained choice scores every
//!   label of a prompt in the prompt's own pass this way, each shared token once.
//!
//! Choices made for speed with ONNX Runtime on CPU: RMSNorm is written as the
//! Pow/ReduceMean/Add/Sqrt/Div/Mul pattern that ORT fuses; grouped-query attention folds the
//! query heads of each KV head into the sequence axis instead of repeating K/V; masking uses
//! `Where(mask, scores, lowest)` so fully padded rows stay free of NaN; the LM head reuses
//! the embedding matrix when the weights are tied.
//!
//! Weights are applied as [`super::weight`] says, whether a file stores them as floats or as
//! quantized blocks; the builder itself only asks for products and lookups.

use super::arch::{Activation, Arch, Sliding};
use super::graph::{Attr, Dim, Elem, GraphBuilder};
use super::weight::{linear, Compute, Embedding, Weight};
use crate::model::error::ModelError;

/// The shape of a decoder: its sizes, and how its architecture ([`Arch`]) and this model's
/// metadata (rope scaling, sliding windows, soft-capping) make it differ from llama.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaShape {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Feed-forward size.
    pub n_ff: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// The architecture.
    pub arch: Arch,
    /// Per-frequency divisors of the RoPE frequencies (Llama 3.x `rope_freqs`, Phi-3's
    /// LongRoPE factors), `head_dim / 2` of them.
    pub rope_factors: Option<Vec<f32>>,
    /// Linear RoPE scaling: positions are divided by this (1 = none).
    pub rope_scale: f32,
    /// What RoPE's cos and sin are multiplied by (LongRoPE's attention factor; 1 = none).
    pub rope_mscale: f32,
    /// Sliding-window layers, if any.
    pub sliding: Option<Sliding>,
    /// The scale of attention scores, when not 1/√head_dim.
    pub attn_scale: Option<f32>,
    /// Final logits soft-capped as `c · tanh(logits / c)`.
    pub logit_softcap: Option<f32>,
}

impl Default for LlamaShape {
    /// A llama shape with every size 0: fill in the sizes.
    fn default() -> LlamaShape {
        LlamaShape {
            n_layer: 0,
            n_embd: 0,
            n_head: 0,
            n_head_kv: 0,
            head_dim: 0,
            n_ff: 0,
            vocab: 0,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            arch: Arch::LLAMA,
            rope_factors: None,
            rope_scale: 1.0,
            rope_mscale: 1.0,
            sliding: None,
            attn_scale: None,
            logit_softcap: None,
        }
    }
}

impl LlamaShape {
    /// The RoPE inverse frequencies of a layer with base `theta`: `θ^(−2i/d)`, divided by the
    /// per-frequency factors and the linear scale.
    fn inv_freq(&self, theta: f32, scaled: bool) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let mut f = 1.0 / (theta as f64).powf(2.0 * i as f64 / d as f64);
                if scaled {
                    f /= self.rope_factors.as_ref().and_then(|r| r.get(i)).copied().unwrap_or(1.0) as f64;
                    f /= self.rope_scale as f64;
                }
                f as f32
            })
            .collect()
    }
}

/// Where the builder gets weights, by GGUF tensor name (`token_embd.weight`,
/// `blk.{i}.attn_q.weight`, ...), each as stored, with rows of output features (a vector is
/// one row).
pub trait WeightSource {
    /// The named tensor.
    fn weight(&mut self, name: &str) -> Result<Weight, ModelError>;
    /// Whether the named tensor exists (the LM head `output.weight` may not).
    fn has(&self, name: &str) -> bool;
}

/// How the graph stores and applies its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every weight dequantized to f32 and applied with `MatMul` / `Gemm`, attention in
    /// standard operators: the graph loopc wrote before it kept quantized weights.
    F32,
    /// Weights kept as the file stores them: block-quantized ones applied by ONNX Runtime's
    /// quantized operators (`MatMulNBits`, `GatherBlockQuantized`), float ones by `MatMul`;
    /// attention by its fused operators (`GroupQueryAttention`, `RotaryEmbedding`).
    AsStored {
        /// How products compute.
        compute: Compute,
        /// Whether 8-bit blocks (5-, 6- and 8-bit formats) become floats. ONNX Runtime
        /// computes 8-bit codes with f32 activations by dequantizing the whole matrix on every
        /// call (its packed f32-compute kernels take 4-bit codes only), slower than a float
        /// matrix.
        eight_bit_as_f32: bool,
    },
}

/// The row order that undoes the permutation llama.cpp's converter applies to the rows of Q
/// and K projections, so the graph can use Hugging Face's `rotate_half` RoPE: row
/// `h*d + b*(d/2) + a` comes from row `h*d + a*2 + b`.
pub fn unpermuted_rows(rows: usize, n_head: usize) -> Vec<usize> {
    let d = rows / n_head.max(1);
    let half = d / 2;
    let mut from = vec![0; rows];
    for h in 0..n_head {
        for a in 0..half {
            for b in 0..2 {
                from[h * d + b * half + a] = h * d + a * 2 + b;
            }
        }
    }
    from
}

/// `w` with its rows in `rotate_half` order (see [`unpermuted_rows`]).
pub fn unpermute_qk(w: &Weight, n_head: usize) -> Weight {
    w.gather_rows(&unpermuted_rows(w.rows(), n_head))
}

/// The additive attention mask of the fused `Attention` operator (opset 23), computed once
/// per pass and shared by every layer: `[B, 1, S, T]`, `[B, 1, S, T]`: 0 where a query may attend a key, the lowest float elsewhere.
/// Added to the scores, so a fully masked row (left padding) stays finite, as with `Where`.
fn fused_bias(g: &mut GraphBuilder, mask: &str, lowest: &str) -> String {
    let zero = g.const_f32(0.0);
    g.op("Where", &[mask, &zero, lowest], &[])
}

/// `cos`/`sin` of every position below T times each RoPE frequency, `[T, D/2]`, for the fused
/// `RotaryEmbedding`, from the frequencies and T as a scalar int64.
fn fused_rope_tables(g: &mut GraphBuilder, inv_freq: &str, t_scalar: &str, mscale: Option<&str>) -> (String, String) {
    // Positions are below T in every row (left padding holds the lowest ones), so a
    // table of T rows covers them.
    let (start, step) = (g.const_i64(&[0]), g.const_i64(&[1]));
    let start_s = g.op("Squeeze", &[&start, &start], &[]);
    let step_s = g.op("Squeeze", &[&step, &start], &[]);
    let positions = g.op("Range", &[&start_s, t_scalar, &step_s], &[]);
    let positions = g.op("Cast", &[&positions], &[("to", Attr::Int(Elem::F32 as i64))]);
    let positions = g.op("Unsqueeze", &[&positions, &step], &[]);
    let angles = g.op("Mul", &[&positions, inv_freq], &[]);
    let cos = g.op("Cos", &[&angles], &[]);
    let sin = g.op("Sin", &[&angles], &[]);
    match mscale {
        Some(m) => (g.op("Mul", &[&cos, m], &[]), g.op("Mul", &[&sin, m], &[])),
        None => (cos, sin),
    }
}

/// Adds the whole decoder to `g`, reading weights from `w`.
pub fn build(shape: &LlamaShape, w: &mut dyn WeightSource, layout: Layout, g: &mut GraphBuilder) -> Result<(), ModelError> {
    let LlamaShape { n_layer, n_embd: e, n_head: h, n_head_kv: kvh, head_dim: d, n_ff, vocab: v, arch, .. } = *shape;
    if h % kvh != 0 || d % 2 != 0 {
        return Err(ModelError::Request(format!("unsupported head layout: {h} heads, {kvh} KV heads, head size {d}")));
    }
    let rep = (h / kvh) as i64;
    let (e, h, kvh, d, v) = (e as i64, h as i64, kvh as i64, d as i64, v as i64);
    if let Layout::AsStored { .. } = layout {
        g.set_opset(23);
    }

    g.input("input_ids", Elem::I64, &[Dim::Named("batch_size"), Dim::Named("sequence_length")]);
    g.input("attention_mask", Elem::I64, &[Dim::Named("batch_size"), Dim::Named("total_sequence_length")]);
    g.input("position_ids", Elem::I64, &[Dim::Named("batch_size"), Dim::Named("sequence_length")]);
    g.output("logits", Elem::F32, &[Dim::Named("batch_size"), Dim::Named("sequence_length"), Dim::Fixed(v)]);
    let kv_dims = |len| [Dim::Named("batch_size"), Dim::Fixed(kvh), Dim::Named(len), Dim::Fixed(d)];
    for i in 0..n_layer {
        for kind in ["key", "value"] {
            g.input(&format!("past_key_values.{i}.{kind}"), Elem::F32, &kv_dims("past_sequence_length"));
            g.output(&format!("present.{i}.{kind}"), Elem::F32, &kv_dims("total_sequence_length"));
        }
    }

    // Shapes.
    let (c0, c1, c2, c3) = (g.const_i64(&[0]), g.const_i64(&[1]), g.const_i64(&[2]), g.const_i64(&[3]));
    let ids_shape = g.op("Shape", &["input_ids"], &[]);
    let b = g.op("Slice", &[&ids_shape, &c0, &c1], &[]);
    let s = g.op("Slice", &[&ids_shape, &c1, &c2], &[]);
    let past_shape = g.op("Shape", &["past_key_values.0.key"], &[]);
    let p = g.op("Slice", &[&past_shape, &c2, &c3], &[]);
    let t = g.op("Add", &[&p, &s], &[]);
    let p0 = g.op("Squeeze", &[&p, &c0], &[]);
    let t0 = g.op("Squeeze", &[&t, &c0], &[]);

    // Mask [B,1,S,T]: key index <= query index (queries sit at P..T), and the key is not padding.
    let zero = g.const_i64(&[0]);
    let zero_s = g.op("Squeeze", &[&zero, &c0], &[]);
    let one_s = g.op("Squeeze", &[&c1, &c0], &[]);
    let kpos = g.op("Range", &[&zero_s, &t0, &one_s], &[]);
    let qpos = g.op("Range", &[&p0, &t0, &one_s], &[]);
    let qpos2 = g.op("Unsqueeze", &[&qpos, &c1], &[]);
    let causal = g.op("LessOrEqual", &[&kpos, &qpos2], &[]);
    let am_bool = g.op("Cast", &["attention_mask"], &[("to", Attr::Int(Elem::Bool as i64))]);
    let axes12 = g.const_i64(&[1, 2]);
    let am4 = g.op("Unsqueeze", &[&am_bool, &axes12], &[]);
    let mask = g.op("And", &[&causal, &am4], &[]);
    let tree = g.input_with_default_true(
        "tree_mask",
        &[Dim::Named("batch_size"), Dim::Fixed(1), Dim::Named("sequence_length"), Dim::Named("total_sequence_length")],
        &[1, 1, 1, 1],
    );
    let mask = g.op("And", &[&mask, &tree], &[]);
    // Sliding layers also hide keys `window` or more places behind the query. Places are
    // indices in the cache, which equal position differences for a prompt and its
    // continuation (left padding shifts both alike); inside a token tree, whose siblings share
    // a position, a key can be a few places further than its position says.
    let swa_mask = match &shape.sliding {
        Some(sw) => {
            let distance = g.op("Sub", &[&qpos2, &kpos], &[]);
            let window = g.const_i64(&[sw.window as i64]);
            let near = g.op("Less", &[&distance, &window], &[]);
            Some(g.op("And", &[&mask, &near], &[]))
        }
        None => None,
    };
    let lowest = g.const_f32(f32::MIN);

    // RoPE frequencies: one set for global layers, another for sliding ones with their own base.
    let inv = g.weight("rope_inv_freq", &[d / 2], &shape.inv_freq(shape.rope_theta, true))?;
    let inv_swa = match shape.sliding.as_ref().and_then(|sw| sw.rope_theta) {
        Some(theta) => g.weight("rope_inv_freq_swa", &[d / 2], &shape.inv_freq(theta, false))?,
        None => inv.clone(),
    };
    let mscale = (shape.rope_mscale != 1.0).then(|| g.const_f32(shape.rope_mscale));
    let pos_f = g.op("Cast", &["position_ids"], &[("to", Attr::Int(Elem::F32 as i64))]);
    let pos3 = g.op("Unsqueeze", &[&pos_f, &c2], &[]);
    // Tables [B,1,S,D] in rotate_half layout, for the standard-ops graph.
    let tables = |g: &mut GraphBuilder, inv: &str| {
        let freqs = g.op("Mul", &[&pos3, inv], &[]);
        let emb = g.op("Concat", &[&freqs, &freqs], &[("axis", Attr::Int(-1))]);
        let mut cos = g.op("Cos", &[&emb], &[]);
        let mut sin = g.op("Sin", &[&emb], &[]);
        if let Some(m) = &mscale {
            cos = g.op("Mul", &[&cos, m], &[]);
            sin = g.op("Mul", &[&sin, m], &[]);
        }
        (g.op("Unsqueeze", &[&cos, &c1], &[]), g.op("Unsqueeze", &[&sin, &c1], &[]))
    };
    let (half_d, full_d, minus1) = (g.const_i64(&[d / 2]), g.const_i64(&[d]), g.const_i64(&[-1]));
    let rope = |g: &mut GraphBuilder, x: &str, (cos, sin): &(String, String)| {
        let x1 = g.op("Slice", &[x, &c0, &half_d, &minus1], &[]);
        let x2 = g.op("Slice", &[x, &half_d, &full_d, &minus1], &[]);
        let neg = g.op("Neg", &[&x2], &[]);
        let rot = g.op("Concat", &[&neg, &x1], &[("axis", Attr::Int(-1))]);
        let a = g.op("Mul", &[x, cos], &[]);
        let bb = g.op("Mul", &[&rot, sin], &[]);
        g.op("Add", &[&a, &bb], &[])
    };
    let two = g.const_f32(2.0);
    let eps = g.const_f32(shape.rms_eps);
    // Opset 18 moved reduction axes from an attribute to an input.
    let reduce_axes = (g.opset() >= 18).then(|| g.const_i64(&[-1]));
    let rmsnorm = |g: &mut GraphBuilder, x: &str, weight: &str| {
        let sq = g.op("Pow", &[x, &two], &[]);
        let ms = match &reduce_axes {
            Some(axes) => g.op("ReduceMean", &[&sq, axes], &[("keepdims", Attr::Int(1))]),
            None => g.op("ReduceMean", &[&sq], &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))]),
        };
        let add = g.op("Add", &[&ms, &eps], &[]);
        let root = g.op("Sqrt", &[&add], &[]);
        let div = g.op("Div", &[x, &root], &[]);
        g.op("Mul", &[weight, &div], &[])
    };
    let vector = |g: &mut GraphBuilder, w: &mut dyn WeightSource, src: &str, name: &str| -> Result<String, ModelError> {
        let m = w.weight(src)?.into_f32();
        g.weight(name, &[m.data.len() as i64], &m.data)
    };
    // Weights as the layout keeps them.
    let compute = match layout {
        Layout::F32 => Compute::F32,
        Layout::AsStored { compute, .. } => compute,
    };
    let fetch = |w: &mut dyn WeightSource, name: &str| -> Result<Weight, ModelError> {
        let weight = w.weight(name)?;
        Ok(match layout {
            Layout::F32 => Weight::F32(weight.into_f32()),
            Layout::AsStored { eight_bit_as_f32: true, .. } if matches!(&weight, Weight::Blocks(b) if b.bits == 8) => Weight::F32(weight.into_f32()),
            Layout::AsStored { .. } => weight,
        })
    };
    // Rows `from..to` of a fused matrix.
    let rows = |m: &Weight, from: usize, to: usize| m.gather_rows(&(from..to).collect::<Vec<_>>());

    // Embeddings.
    let tok = fetch(w, "token_embd.weight")?;
    if tok.rows() as i64 != v || tok.cols() as i64 != e {
        return Err(ModelError::Request(format!("token_embd.weight is {}x{}, expected {v}x{e}", tok.rows(), tok.cols())));
    }
    let embedding = Embedding::new(g, tok, "model.embed_tokens.weight")?;
    let mut hidden = embedding.lookup(g, "input_ids", "model.embed_tokens")?;
    if arch.scale_embeddings {
        let scale = g.const_f32((e as f32).sqrt());
        hidden = g.op("Mul", &[&hidden, &scale], &[]);
    }

    let cat = |g: &mut GraphBuilder, parts: &[&str]| g.op("Concat", parts, &[("axis", Attr::Int(0))]);
    let (hd, kd, hdv, kdv) = (g.const_i64(&[h, d]), g.const_i64(&[kvh, d]), g.const_i64(&[h * d]), g.const_i64(&[kvh * d]));
    let shp_bshd = cat(g, &[&b, &s, &hd]);
    let shp_bskd = cat(g, &[&b, &s, &kd]);
    let shp_bse = cat(g, &[&b, &s, &hdv]);
    let shp_bsk = cat(g, &[&b, &s, &kdv]);
    let rep_c = g.const_i64(&[rep]);
    let rep_s = g.op("Mul", &[&s, &rep_c], &[]);
    let (kvh_c, d_c, kvh_rep, h_c) = (g.const_i64(&[kvh]), g.const_i64(&[d]), g.const_i64(&[kvh, rep]), g.const_i64(&[h]));
    let shp_grp_q = cat(g, &[&b, &kvh_c, &rep_s, &d_c]);
    let shp_grp_s5 = cat(g, &[&b, &kvh_rep, &s, &t]);
    let shp_grp_s4 = cat(g, &[&b, &kvh_c, &rep_s, &t]);
    let shp_bhsd = cat(g, &[&b, &h_c, &s, &d_c]);
    let score_scale = shape.attn_scale.unwrap_or(1.0 / (d as f32).sqrt());
    let scale = g.const_f32(score_scale);
    let perm = |p: &[i64]| [("perm", Attr::Ints(p.to_vec()))];
    // Per kind of layer (global, sliding): its mask and its rope tables, as the layout wants
    // them (for the standard-ops graph, the mask as [B,1,1,S,T] for grouped heads).
    let (masks, ropes) = match layout {
        Layout::F32 => {
            let global = (g.op("Unsqueeze", &[&mask, &c1], &[]), tables(g, &inv));
            let sliding = swa_mask.as_ref().map(|m| (g.op("Unsqueeze", &[m, &c1], &[]), tables(g, &inv_swa)));
            (global, sliding)
        }
        Layout::AsStored { .. } => {
            let global = (fused_bias(g, &mask, &lowest), fused_rope_tables(g, &inv, &t0, mscale.as_deref()));
            let own = shape.sliding.as_ref().is_some_and(|sw| sw.rope_theta.is_some());
            let swa_mscale = if own { None } else { mscale.as_deref() };
            let sliding = swa_mask.as_ref().map(|m| (fused_bias(g, m, &lowest), fused_rope_tables(g, &inv_swa, &t0, swa_mscale)));
            (global, sliding)
        }
    };
    let fused = matches!(layout, Layout::AsStored { .. });

    for i in 0..n_layer {
        let blk = format!("blk.{i}.");
        let layer = format!("model.layers.{i}.");
        let slides = shape.sliding.as_ref().is_some_and(|sw| sw.slides(i));
        let (mask_l, rope_l) = match (&ropes, slides) {
            (Some((m, r)), true) => (m, r),
            _ => (&masks.0, &masks.1),
        };
        let norm_w = vector(g, w, &format!("{blk}attn_norm.weight"), &format!("{layer}input_layernorm.weight"))?;
        let hn = rmsnorm(g, &hidden, &norm_w);
        let (q, k, vv) = if arch.fused_qkv {
            let qkv = fetch(w, &format!("{blk}attn_qkv.weight"))?;
            let (qd, kd) = ((h * d) as usize, (kvh * d) as usize);
            (rows(&qkv, 0, qd), rows(&qkv, qd, qd + kd), rows(&qkv, qd + kd, qd + 2 * kd))
        } else {
            (fetch(w, &format!("{blk}attn_q.weight"))?, fetch(w, &format!("{blk}attn_k.weight"))?, fetch(w, &format!("{blk}attn_v.weight"))?)
        };
        let (q, k) = if arch.permuted_qk { (unpermute_qk(&q, h as usize), unpermute_qk(&k, kvh as usize)) } else { (q, k) };
        let mut parts = linear(g, &hn, vec![q, k, vv], &format!("{layer}self_attn.qkv_proj"), compute)?;
        if arch.qkv_bias {
            for (part, (src, name)) in parts.iter_mut().zip([("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj")]) {
                let bias = vector(g, w, &format!("{blk}{src}.bias"), &format!("{layer}self_attn.{name}.bias"))?;
                *part = g.op("Add", &[part, &bias], &[]);
            }
        }
        // QK-norm: RMSNorm over each head, before RoPE.
        let head_norms = if arch.qk_norm {
            let qn = vector(g, w, &format!("{blk}attn_q_norm.weight"), &format!("{layer}self_attn.q_norm.weight"))?;
            let kn = vector(g, w, &format!("{blk}attn_k_norm.weight"), &format!("{layer}self_attn.k_norm.weight"))?;
            Some((qn, kn))
        } else {
            None
        };
        let (past_k, past_v) = (format!("past_key_values.{i}.key"), format!("past_key_values.{i}.value"));
        let (present_k, present_v) = (format!("present.{i}.key"), format!("present.{i}.value"));
        let ctx = if fused {
            if let Some((qn, kn)) = &head_norms {
                let q4 = g.op("Reshape", &[&parts[0], &shp_bshd], &[]);
                let q4 = rmsnorm(g, &q4, qn);
                parts[0] = g.op("Reshape", &[&q4, &shp_bse], &[]);
                let k4 = g.op("Reshape", &[&parts[1], &shp_bskd], &[]);
                let k4 = rmsnorm(g, &k4, kn);
                parts[1] = g.op("Reshape", &[&k4, &shp_bsk], &[]);
            }
            let (cos, sin) = rope_l;
            let rotary =
                |g: &mut GraphBuilder, x: &str, heads: i64| g.op("RotaryEmbedding", &[x, cos, sin, "position_ids"], &[("num_heads", Attr::Int(heads))]);
            let q = rotary(g, &parts[0], h);
            let k = rotary(g, &parts[1], kvh);
            let out = g.fresh_name("Attention");
            let inputs = [q.as_str(), &k, &parts[2], mask_l, &past_k, &past_v];
            let mut attrs = vec![("q_num_heads", Attr::Int(h)), ("kv_num_heads", Attr::Int(kvh))];
            if shape.attn_scale.is_some() {
                attrs.push(("scale", Attr::Float(score_scale)));
            }
            g.op_outs("Attention", &inputs, &[&out, &present_k, &present_v], &attrs);
            out
        } else {
            let q = g.op("Reshape", &[&parts[0], &shp_bshd], &[]);
            let k = g.op("Reshape", &[&parts[1], &shp_bskd], &[]);
            let (q, k) = match &head_norms {
                Some((qn, kn)) => (rmsnorm(g, &q, qn), rmsnorm(g, &k, kn)),
                None => (q, k),
            };
            let q = g.op("Transpose", &[&q], &perm(&[0, 2, 1, 3]));
            let k = g.op("Transpose", &[&k], &perm(&[0, 2, 1, 3]));
            let vh = g.op("Reshape", &[&parts[2], &shp_bskd], &[]);
            let vh = g.op("Transpose", &[&vh], &perm(&[0, 2, 1, 3]));
            let q = rope(g, &q, rope_l);
            let k = rope(g, &k, rope_l);
            let k_all = g.op_to("Concat", &[&past_k, &k], &present_k, &[("axis", Attr::Int(2))]);
            let v_all = g.op_to("Concat", &[&past_v, &vh], &present_v, &[("axis", Attr::Int(2))]);
            let qs = g.op("Mul", &[&q, &scale], &[]);
            let qg = g.op("Reshape", &[&qs, &shp_grp_q], &[]);
            let kt = g.op("Transpose", &[&k_all], &perm(&[0, 1, 3, 2]));
            let scores = g.op("MatMul", &[&qg, &kt], &[]);
            let scores = g.op("Reshape", &[&scores, &shp_grp_s5], &[]);
            let scores = g.op("Where", &[mask_l, &scores, &lowest], &[]);
            let probs = g.op("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
            let probs = g.op("Reshape", &[&probs, &shp_grp_s4], &[]);
            let ctx = g.op("MatMul", &[&probs, &v_all], &[]);
            let ctx = g.op("Reshape", &[&ctx, &shp_bhsd], &[]);
            let ctx = g.op("Transpose", &[&ctx], &perm(&[0, 2, 1, 3]));
            g.op("Reshape", &[&ctx, &shp_bse], &[])
        };
        let wo = fetch(w, &format!("{blk}attn_output.weight"))?;
        let mut attn = linear(g, &ctx, vec![wo], &format!("{layer}self_attn.o_proj"), compute)?.remove(0);
        if arch.post_norms {
            let post = vector(g, w, &format!("{blk}post_attention_norm.weight"), &format!("{layer}post_attention_norm.weight"))?;
            attn = rmsnorm(g, &attn, &post);
        }
        hidden = g.op("Add", &[&hidden, &attn], &[]);

        let norm_w = vector(g, w, &format!("{blk}ffn_norm.weight"), &format!("{layer}post_attention_layernorm.weight"))?;
        let hn = rmsnorm(g, &hidden, &norm_w);
        let (gate, up) = if arch.fused_gate_up {
            let gu = fetch(w, &format!("{blk}ffn_up.weight"))?;
            (rows(&gu, 0, n_ff), rows(&gu, n_ff, 2 * n_ff))
        } else {
            (fetch(w, &format!("{blk}ffn_gate.weight"))?, fetch(w, &format!("{blk}ffn_up.weight"))?)
        };
        let gu_parts = linear(g, &hn, vec![gate, up], &format!("{layer}mlp.gate_up_proj"), compute)?;
        let activated = match arch.activation {
            Activation::Silu => {
                let sig = g.op("Sigmoid", &[&gu_parts[0]], &[]);
                g.op("Mul", &[&gu_parts[0], &sig], &[])
            }
            Activation::GeluTanh => gelu_tanh(g, &gu_parts[0]),
        };
        let act = g.op("Mul", &[&activated, &gu_parts[1]], &[]);
        let down = fetch(w, &format!("{blk}ffn_down.weight"))?;
        let mut down = linear(g, &act, vec![down], &format!("{layer}mlp.down_proj"), compute)?.remove(0);
        if arch.post_norms {
            let post = vector(g, w, &format!("{blk}post_ffw_norm.weight"), &format!("{layer}post_feedforward_layernorm.weight"))?;
            down = rmsnorm(g, &down, &post);
        }
        hidden = g.op("Add", &[&hidden, &down], &[]);
    }

    let norm_w = vector(g, w, "output_norm.weight", "model.norm.weight")?;
    let hidden = rmsnorm(g, &hidden, &norm_w);
    let (head, head_name) = if w.has("output.weight") {
        let m = fetch(w, "output.weight")?;
        (Embedding::new(g, m, "lm_head.weight")?, "lm_head")
    } else {
        (embedding, "model.embed_tokens")
    };
    // Keep the last N positions (N = 0 keeps all: Slice from -0 = 0).
    let keep = g.input_with_default_i64("num_logits_to_keep", 0);
    let keep1 = g.op("Unsqueeze", &[&keep, &c0], &[]);
    let start = g.op("Neg", &[&keep1], &[]);
    let end = g.const_i64(&[i64::MAX]);
    let kept = g.op("Slice", &[&hidden, &start, &end, &c1], &[]);
    let kept_shape = g.op("Shape", &[&kept], &[]);
    let kept_s = g.op("Slice", &[&kept_shape, &c1, &c2], &[]);
    let flat_shape = g.const_i64(&[-1, e]);
    let flat = g.op("Reshape", &[&kept, &flat_shape], &[]);
    let mut logits2 = head.head(g, &flat, head_name, compute)?;
    if let Some(cap) = shape.logit_softcap {
        let (down, up) = (g.const_f32(1.0 / cap), g.const_f32(cap));
        let x = g.op("Mul", &[&logits2, &down], &[]);
        let x = g.op("Tanh", &[&x], &[]);
        logits2 = g.op("Mul", &[&x, &up], &[]);
    }
    let v_c = g.const_i64(&[v]);
    let shp_logits = cat(g, &[&b, &kept_s, &v_c]);
    g.op_to("Reshape", &[&logits2, &shp_logits], "logits", &[]);
    Ok(())
}

/// GELU with the tanh approximation, `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, in
/// standard operators (every opset loopc writes has them).
fn gelu_tanh(g: &mut GraphBuilder, x: &str) -> String {
    let (c, k, half, one, three) =
        (g.const_f32(0.044_715), g.const_f32((2.0 / std::f32::consts::PI).sqrt()), g.const_f32(0.5), g.const_f32(1.0), g.const_f32(3.0));
    let cube = g.op("Pow", &[x, &three], &[]);
    let inner = g.op("Mul", &[&cube, &c], &[]);
    let inner = g.op("Add", &[x, &inner], &[]);
    let inner = g.op("Mul", &[&inner, &k], &[]);
    let th = g.op("Tanh", &[&inner], &[]);
    let th = g.op("Add", &[&th, &one], &[]);
    let hx = g.op("Mul", &[x, &half], &[]);
    g.op("Mul", &[&hx, &th], &[])
}

#[cfg(test)]
mod tests {
    use super::super::weight::Matrix;
    use super::*;

    #[test]
    fn unpermuting_inverts_the_converters_interleaving() {
        // One head of size 4, one column: the converter stores rows [0, 2, 1, 3].
        let m = Weight::F32(Matrix { rows: 4, cols: 1, data: vec![0.0, 2.0, 1.0, 3.0] });
        assert_eq!(unpermute_qk(&m, 1).into_f32().data, vec![0.0, 1.0, 2.0, 3.0]);
    }
}
