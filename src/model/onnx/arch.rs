//! How each GGUF architecture's decoder differs from llama's: a small description per
//! architecture that the one decoder builder (`llama.rs`) follows, instead of a builder per
//! model. What varies per model file (rope bases, windows, factors) is in
//! [`super::llama::LlamaShape`]; what is fixed per architecture is here.

/// The feed-forward activation of the gated MLP: `act(gate) · up`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (llama, qwen, phi3, mistral).
    #[default]
    Silu,
    /// GELU with the tanh approximation (gemma).
    GeluTanh,
}

/// The fixed traits of one architecture's decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    /// The GGUF `general.architecture` name, also the prefix of its metadata keys.
    pub name: &'static str,
    /// Whether llama.cpp's converter interleaved the rows of Q and K (llama's "normal" RoPE),
    /// which the graph undoes to use `rotate_half`; the other architectures store them in
    /// `rotate_half` ("neox") order already.
    pub permuted_qk: bool,
    /// Biases on the Q, K and V projections (`attn_q.bias`, ...: qwen2).
    pub qkv_bias: bool,
    /// RMSNorm over each head of Q and K before RoPE (`attn_q_norm`, `attn_k_norm`: qwen3, gemma3).
    pub qk_norm: bool,
    /// Q, K and V as one matrix (`attn_qkv`: phi3), split by rows.
    pub fused_qkv: bool,
    /// Gate and up as one matrix (`ffn_up` of twice the width, gate first: phi3).
    pub fused_gate_up: bool,
    /// RMSNorms on the attention and feed-forward outputs before the residual add
    /// (`post_attention_norm`, `post_ffw_norm`: gemma3).
    pub post_norms: bool,
    /// The MLP's activation.
    pub activation: Activation,
    /// Embeddings multiplied by √n_embd (gemma).
    pub scale_embeddings: bool,
}

impl Arch {
    /// Llama (and everything converted as llama: Mistral, SmolLM, TinyLlama, Llama 3.x).
    pub const LLAMA: Arch = Arch {
        name: "llama",
        permuted_qk: true,
        qkv_bias: false,
        qk_norm: false,
        fused_qkv: false,
        fused_gate_up: false,
        post_norms: false,
        activation: Activation::Silu,
        scale_embeddings: false,
    };
    /// Qwen 2 and 2.5: llama with biases on Q, K and V, rope in neox order.
    pub const QWEN2: Arch = Arch { name: "qwen2", permuted_qk: false, qkv_bias: true, ..Arch::LLAMA };
    /// Qwen 3: llama with per-head RMSNorm on Q and K, rope in neox order.
    pub const QWEN3: Arch = Arch { name: "qwen3", permuted_qk: false, qk_norm: true, ..Arch::LLAMA };
    /// Gemma 3: QK-norm, pre and post norms, GELU-tanh MLP, scaled embeddings; its sliding
    /// window layers and their rope base are in the shape.
    pub const GEMMA3: Arch =
        Arch { name: "gemma3", permuted_qk: false, qk_norm: true, post_norms: true, activation: Activation::GeluTanh, scale_embeddings: true, ..Arch::LLAMA };
    /// Phi-3 (and Phi-4 mini): fused QKV and gate/up, rope in neox order (LongRoPE factors
    /// in the shape).
    pub const PHI3: Arch = Arch { name: "phi3", permuted_qk: false, fused_qkv: true, fused_gate_up: true, ..Arch::LLAMA };

    /// Every architecture loopc builds.
    pub const ALL: [Arch; 5] = [Arch::LLAMA, Arch::QWEN2, Arch::QWEN3, Arch::GEMMA3, Arch::PHI3];

    /// The architecture called `name` in GGUF metadata, if loopc builds it.
    pub fn named(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name == name)
    }
}

impl Default for Arch {
    fn default() -> Arch {
        Arch::LLAMA
    }
}

/// Layers that attend only to the last `window` positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Sliding {
    /// How many positions a query sees, itself included: key `k` is visible to query `q` when
    /// `q − k < window` (llama.cpp's standard window).
    pub window: usize,
    /// Which layers slide: layer `i` does when `i % pattern < pattern − 1` (every
    /// `pattern`-th layer is global); 1 makes every layer slide.
    pub pattern: usize,
    /// The RoPE base of sliding layers, when it is their own (Gemma 3's 10 000); `None` when
    /// they rotate as global layers do.
    pub rope_theta: Option<f32>,
}

impl Sliding {
    /// Whether layer `i` slides.
    pub fn slides(&self, i: usize) -> bool {
        self.pattern <= 1 || i % self.pattern < self.pattern - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sixth_layer_of_a_gemma_pattern_is_global() {
        let s = Sliding { window: 512, pattern: 6, rope_theta: Some(10_000.0) };
        let global: Vec<usize> = (0..18).filter(|&i| !s.slides(i)).collect();
        assert_eq!(global, vec![5, 11, 17]);
    }

    #[test]
    fn architectures_are_found_by_their_gguf_name() {
        assert_eq!(Arch::named("qwen3"), Some(Arch::QWEN3));
        assert_eq!(Arch::named("mamba"), None);
    }
}
