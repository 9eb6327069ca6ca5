//! Quantized weights kept quantized give the numbers of the dequantized model: for every
//! quantized ggml type, a small GGUF written here is imported at `exact` precision (blocks
//! kept, f32 compute) and at `f32` (every weight dequantized), and the logits of the two
//! graphs are compared row by row. They need ONNX Runtime, like `tests.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::import::{import_gguf, import_with_layout, Precision};
use super::onnx::llama::Layout;
use super::onnx::weight::Compute;
use super::progress::SilentProgress;
use super::provision::{ort_library, Cache};
use super::quant::GgmlType;
use super::testing::{k_quant_shape, write_gguf, QUANT_TYPES};
use super::*;

fn runtime() -> &'static ort::environment::Environment {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        let cache = Cache::from_env().expect("a cache directory");
        ort_library(&cache, &SilentProgress).unwrap_or_else(|e| panic!("ONNX Runtime is needed for these tests: {e}"))
    });
    init_runtime(lib).expect("ONNX Runtime loads")
}

/// The GGUF at `gguf` imported with `layout` and loaded, every pass on the main graph.
fn load(gguf: &Path, name: &str, layout: Layout) -> LocalModel {
    load_with(gguf, name, layout, false)
}

/// [`load`], with passes of many rows on the prefill graph when `prefill_graph`.
fn load_with(gguf: &Path, name: &str, layout: Layout, prefill_graph: bool) -> LocalModel {
    let dir = gguf.with_extension(name);
    if !dir.exists() {
        import_with_layout(gguf, &dir, Precision::Exact, layout, &|_, _| {}).unwrap_or_else(|e| panic!("{} imports as {layout:?}: {e}", gguf.display()));
    }
    let options = LoadOptions { threads: 1, prefill_graph, ..LoadOptions::default() };
    LocalModel::load(runtime(), &dir, name, options).unwrap_or_else(|e| panic!("{} loads as {layout:?}: {e}", gguf.display()))
}

/// The largest difference between `got` and `want` over the largest magnitude in `want`.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale.max(f32::MIN_POSITIVE)
}

/// Imports a GGUF whose matrices have the types `type_of` gives with every block kept at f32
/// compute (8-bit ones too, which the `exact` precision turns into floats) and with every
/// weight dequantized, and returns the worst per-row relative error between their logits,
/// and the same for the blocks with int8 activations (the `fast` precision).
fn compare(name: &str, type_of: &dyn Fn(&str) -> GgmlType) -> (f32, f32) {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join(format!("{name}.gguf"));
    write_gguf(&gguf, 5, &k_quant_shape(), type_of).unwrap();
    let blocks = |compute| Layout::AsStored { compute, eight_bit_as_f32: false };
    let exact = load(&gguf, "blocks-f32", blocks(Compute::F32));
    let fast = load(&gguf, "blocks-int8", blocks(Compute::Int8));
    let float = load(&gguf, "f32", Layout::F32);
    let ids: Vec<u32> = "The quick brown fox jumps over the lazy dog".bytes().map(|b| u32::from(b) + 3).collect();
    let positions: Vec<usize> = (0..ids.len()).collect();
    let want = float.logits_at(&ids, &positions).unwrap();
    let worst = |m: &LocalModel| m.logits_at(&ids, &positions).unwrap().iter().zip(&want).map(|(g, w)| relative_error(g, w)).fold(0f32, f32::max);
    (worst(&exact), worst(&fast))
}

#[test]
fn every_quant_type_kept_as_blocks_gives_the_logits_of_the_dequantized_graph() {
    for ty in QUANT_TYPES {
        let (exact, fast) = compare(&format!("{ty:?}"), &|_| ty);
        assert!(exact <= 1e-4, "{ty:?}: the logits of the block graph at f32 compute differ by {exact} (relative, worst row)");
        assert!(fast <= 0.05, "{ty:?}: the logits with int8 activations differ by {fast} (relative, worst row)");
    }
}

#[test]
fn label_scoring_passes_of_many_rows_run_on_the_prefill_graph_and_shorter_ones_on_the_int8_one() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("q.gguf");
    write_gguf(&gguf, 7, &k_quant_shape(), &|_| GgmlType::Q4_1).unwrap();
    let fast = |compute| Layout::AsStored { compute, eight_bit_as_f32: false };
    let hybrid = load_with(&gguf, "int8", fast(Compute::Int8), true);
    let int8_only = load_with(&gguf, "int8", fast(Compute::Int8), false);
    let f32_compute = load(&gguf, "blocks-f32", fast(Compute::F32));
    assert!(gguf.with_extension("int8").join(import::PREFILL_MODEL_FILE).is_file(), "int8 compute writes a prefill graph");
    assert!(!gguf.with_extension("blocks-f32").join(import::PREFILL_MODEL_FILE).exists(), "f32 compute has nothing to compute otherwise");
    assert_ne!(hybrid.fingerprint(), int8_only.fingerprint(), "the same files computing differently never share cached answers");
    let worst = |a: &[Vec<f32>], b: &[Vec<f32>]| a.iter().zip(b).map(|(g, w)| relative_error(g, w)).fold(0f32, f32::max);
    let logits = |m: &LocalModel, n: usize| {
        let ids: Vec<u32> = (0..n as u32).map(|i| 3 + (i * 37) % 250).collect();
        m.logits_at(&ids, &(0..n).collect::<Vec<_>>()).unwrap()
    };
    // A prompt of session::PREFILL_ROWS rows or more: f32 compute, the numbers of the exact graph.
    let long = session::PREFILL_ROWS + 8;
    assert!(worst(&logits(&hybrid, long), &logits(&f32_compute, long)) <= 1e-5, "a long pass computes 4-bit products in f32");
    assert!(worst(&logits(&int8_only, long), &logits(&f32_compute, long)) > 1e-4, "int8 activations are visible in the logits");
    // Fewer rows (a decoding step, a short suffix): the int8 graph.
    let short = session::PREFILL_ROWS - 1;
    assert_eq!(logits(&hybrid, short), logits(&int8_only, short), "a short pass runs on the int8 graph");
}

#[test]
fn matrices_of_mixed_types_in_one_layer_are_applied_each_as_stored() {
    // As in a Q4_K_M file: V and the down projection in Q6_K, the rest in Q4_K, the embedding in Q8_0.
    let mixed = |name: &str| match name {
        "token_embd.weight" => GgmlType::Q8_0,
        n if n.ends_with("attn_v.weight") || n.ends_with("ffn_down.weight") => GgmlType::Q6K,
        n if n.ends_with("ffn_up.weight") => GgmlType::F16,
        _ => GgmlType::Q4K,
    };
    let (exact, _) = compare("mixed", &mixed);
    assert!(exact <= 1e-4, "mixed types differ by {exact}");
}

#[test]
fn block_graphs_declare_onnx_runtimes_quantized_operators() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("q.gguf");
    write_gguf(&gguf, 1, &k_quant_shape(), &|_| GgmlType::Q4_1).unwrap();
    for precision in Precision::ALL {
        let out = dir.path().join(precision.name());
        import_gguf(&gguf, &out, precision, &|_, _| {}).unwrap();
        let graph = std::fs::read(out.join(import::MODEL_FILE)).unwrap();
        // Only int8 compute has a prefill graph: the same graph with 4-bit products in f32
        // (one attribute's value differs, encoded in as many bytes).
        match std::fs::read(out.join(import::PREFILL_MODEL_FILE)) {
            Ok(prefill) => {
                assert_eq!(precision, Precision::Fast, "{precision} has a prefill graph");
                assert!(prefill.len() == graph.len() && prefill != graph, "the prefill graph differs from the main one in attributes only");
            }
            Err(_) => assert_ne!(precision, Precision::Fast, "fast precision has a prefill graph"),
        }
        let has = |s: &str| graph.windows(s.len()).any(|w| w == s.as_bytes());
        let quantized = precision != Precision::F32;
        assert_eq!(has("MatMulNBits"), quantized, "{precision}");
        assert_eq!(has("GatherBlockQuantized"), quantized, "{precision}: the tied embedding is looked up from its blocks");
        assert_eq!(has("com.microsoft"), quantized, "{precision}: the contrib opset is imported exactly when used");
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(import::CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config["loopc_precision"], precision.name());
    }
    let size = |p: Precision| std::fs::metadata(dir.path().join(p.name()).join(import::DATA_FILE)).unwrap().len();
    assert!(size(Precision::Fast) * 3 < size(Precision::F32), "4-bit weights take well under a third of f32's bytes");

    // 8-bit codes stay blocks with int8 activations, and become floats at f32 compute.
    let q8 = dir.path().join("q8.gguf");
    write_gguf(&q8, 1, &k_quant_shape(), &|_| GgmlType::Q8_0).unwrap();
    for (precision, blocks) in [(Precision::Fast, true), (Precision::Exact, false)] {
        let out = dir.path().join(format!("q8-{precision}"));
        import_gguf(&q8, &out, precision, &|_, _| {}).unwrap();
        let graph = std::fs::read(out.join(import::MODEL_FILE)).unwrap();
        assert_eq!(graph.windows(11).any(|w| w == b"MatMulNBits"), blocks, "{precision}");
    }
}

#[test]
fn each_precision_has_its_own_fingerprint_so_answers_and_artifacts_never_mix_weights() {
    // The response cache keys on the full fingerprint and artifacts record the weights hash
    // (a program compiled on the f32 graph loads on the 4-bit default and reports that its
    // weights differ): both must change with the precision.
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("q.gguf");
    write_gguf(&gguf, 2, &k_quant_shape(), &|_| GgmlType::Q4_1).unwrap();
    let prints: Vec<Fingerprint> = Precision::ALL
        .iter()
        .map(|&precision| {
            let out = dir.path().join(precision.name());
            import_gguf(&gguf, &out, precision, &|_, _| {}).unwrap();
            fingerprint_of(&out).unwrap()
        })
        .collect();
    for (i, a) in prints.iter().enumerate() {
        for (j, b) in prints.iter().enumerate().skip(i + 1) {
            let (pa, pb) = (Precision::ALL[i], Precision::ALL[j]);
            assert_ne!(a.weights, b.weights, "{pa} and {pb} share a weights hash");
            assert_ne!(a.full, b.full, "{pa} and {pb} share a fingerprint");
        }
    }
    // The same conversion again gives the same fingerprint (cached answers stay valid).
    let again = dir.path().join("again");
    import_gguf(&gguf, &again, Precision::default(), &|_, _| {}).unwrap();
    let default_at = Precision::ALL.iter().position(|&p| p == Precision::default()).unwrap();
    assert_eq!(fingerprint_of(&again).unwrap(), prints[default_at]);
}
