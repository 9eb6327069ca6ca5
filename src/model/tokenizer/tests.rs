//! Token ids against llama.cpp's: each tiny GGUF in `tests/fixtures/models/` carries a real
//! published vocabulary (cut down), and its `.oracle.json` holds llama.cpp's tokenization of a
//! corpus with emoji, CJK, accents, code and runs of whitespace, with special tokens parsed
//! and as plain text (`bench/oracles/record_oracles.py` wrote them).

use std::path::{Path, PathBuf};

use super::*;
use crate::model::gguf::Gguf;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

/// Checks the GGUF `name`'s tokenizer against its oracle; returns the mismatches.
fn check(gguf: &Path, oracle: &Path) -> Vec<String> {
    let g = Gguf::open(gguf).unwrap();
    let vocab = from_gguf(&g).unwrap();
    let tok = Tokenizer::from_bytes(vocab.json.to_string().as_bytes()).unwrap();
    let oracle: serde_json::Value = serde_json::from_slice(&std::fs::read(oracle).unwrap()).unwrap();
    let mut bad = Vec::new();
    for case in oracle["corpus"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let special = tok.encode(text).unwrap();
        if special != ids(&case["ids_special"]) {
            bad.push(format!("{}: {text:?} with special tokens: loopc {special:?}, llama.cpp {:?}", gguf.display(), ids(&case["ids_special"])));
        }
        let plain = tok.encode_text(&crate::model::PromptText::data(text)).unwrap();
        if plain != ids(&case["ids_plain"]) {
            bad.push(format!("{}: {text:?} as data: loopc {plain:?}, llama.cpp {:?}", gguf.display(), ids(&case["ids_plain"])));
        }
    }
    bad
}

#[test]
fn token_ids_equal_llama_cpps_for_every_vocabulary_family() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "gguf") {
            seen += 1;
            bad.extend(check(&path, &path.with_extension("oracle.json")));
        }
    }
    assert!(seen >= 8, "the fixtures hold {seen} GGUFs");
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}
