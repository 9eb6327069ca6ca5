//! The tiny GGUFs of `fixtures/models/`, one per architecture, run through loopc and compared
//! with what llama.cpp computed for them (`bench/oracles/record_oracles.py`): the prompt's
//! token ids exactly, the last position's logits within a tolerance, and the greedy tokens
//! (run freely up to the first near-tie, and every clear step fed llama.cpp's continuation).
//! llama.cpp multiplies F16 weights with activations rounded to F16 and Q8_0 weights (the
//! embedding, here also the LM head) with activations quantized to 8 bits, loopc in F32, so
//! logits (about ±4 here) differ by up to about 0.02; the tolerance is stated below. Each
//! model is checked in both graphs loopc writes: `exact` (weights as stored, ONNX opset 23
//! fused `Attention` and `RotaryEmbedding`) and `f32` (standard operators).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use loopc::model::import::Precision;
use loopc::model::progress::SilentProgress;
use loopc::model::provision::{convert, ort_library, Cache};
use loopc::model::{init_runtime, LoadOptions, LocalModel, PrefixCaching, Prompt, PromptText};

/// The largest difference allowed between loopc's and llama.cpp's logits.
const LOGIT_TOLERANCE: f32 = 0.05;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn runtime() -> &'static ort::environment::Environment {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    let lib = LIB.get_or_init(|| ort_library(&Cache::from_env().unwrap(), &SilentProgress).expect("ONNX Runtime is provisioned"));
    init_runtime(lib).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

fn check(name: &str) {
    for precision in [Precision::Exact, Precision::F32] {
        check_at(name, precision);
    }
}

fn check_at(file: &str, precision: Precision) {
    let name = &format!("{file}@{precision}");
    let dir = tempfile::tempdir().unwrap();
    let gguf = fixtures().join(format!("{file}.gguf"));
    convert(&gguf, &dir.path().join("m"), precision, &SilentProgress).unwrap();
    let model = LocalModel::load(runtime(), &dir.path().join("m"), name, LoadOptions { threads: 1, ..LoadOptions::default() }).unwrap();
    let oracle: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join(format!("{file}.oracle.json"))).unwrap()).unwrap();
    let mut checked_tokens = 0;
    for run in oracle["runs"].as_array().unwrap() {
        let prompt = run["prompt"].as_str().unwrap();
        let (input, _) = model.tokenizer().encode_prompt(&PromptText::new(), &PromptText::markup(prompt)).unwrap();
        assert_eq!(input, ids(&run["input_ids"]), "{name}: {prompt:?} tokenizes as llama.cpp does");
        let logits = model.last_logits(&input).unwrap();
        let want: Vec<f32> = run["last_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(logits.len(), want.len());
        let diff = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < LOGIT_TOLERANCE, "{name}: {prompt:?}: last-position logits differ from llama.cpp's by up to {diff}");
        let request = loopc::model::GenerateRequest {
            prompt: Prompt { shared: PromptText::new(), rest: PromptText::markup(prompt) },
            max_tokens: ids(&run["greedy_ids"]).len(),
            sampling: Default::default(),
            stop: Vec::new(),
            grammar: None,
        };
        let generated = model.generate(&[request], PrefixCaching::Off).unwrap().remove(0);
        // Random weights make near-ties: the tokens must agree up to the first step whose two
        // best logits (llama.cpp's) are closer than twice the tolerance, where either is right.
        let margins: Vec<f32> = run["greedy_margins"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let decided = margins.iter().take_while(|m| **m > 2.0 * LOGIT_TOLERANCE).count();
        let want = ids(&run["greedy_ids"]);
        assert_eq!(generated.tokens[..decided], want[..decided], "{name}: {prompt:?}: the first {decided} greedy tokens");
        // Past a near-tie the two runs may part; fed llama.cpp's own continuation instead,
        // loopc must pick llama.cpp's token at every later step that is not a near-tie too.
        let mut context = input.clone();
        for (step, (&token, margin)) in want.iter().zip(&margins).enumerate() {
            if *margin > 2.0 * LOGIT_TOLERANCE {
                let logits = model.last_logits(&context).unwrap();
                let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
                assert_eq!(best as u32, token, "{name}: {prompt:?}: step {step} after llama.cpp's continuation");
                checked_tokens += 1;
            }
            context.push(token);
        }
    }
    assert!(checked_tokens >= 6, "{name}: only {checked_tokens} greedy steps were clear enough to compare");
}

#[test]
fn tiny_smollm_matches_llama_cpp() {
    check("tiny-smollm");
}

#[test]
fn tiny_gpt2_matches_llama_cpp() {
    check("tiny-gpt2");
}

#[test]
fn tiny_mistral_matches_llama_cpp() {
    check("tiny-mistral");
}

#[test]
fn tiny_llama3_with_rope_scaling_matches_llama_cpp() {
    check("tiny-llama3");
}

#[test]
fn tiny_qwen2_matches_llama_cpp() {
    check("tiny-qwen2");
}

#[test]
fn tiny_qwen3_matches_llama_cpp() {
    check("tiny-qwen3");
}

#[test]
fn tiny_gemma3_matches_llama_cpp() {
    check("tiny-gemma3");
}

#[test]
fn tiny_phi3_with_long_rope_matches_llama_cpp() {
    check("tiny-phi3");
}
