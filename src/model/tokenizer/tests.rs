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

fn fixture_tokenizer(name: &str) -> Tokenizer {
    let vocab = from_gguf(&Gguf::open(&fixtures().join(name)).unwrap()).unwrap();
    let mut tok = Tokenizer::from_bytes(vocab.json.to_string().as_bytes()).unwrap();
    tok.set_bos(vocab.facts.bos.filter(|_| vocab.facts.add_bos));
    tok
}

#[test]
fn a_prompt_in_pieces_gets_the_space_prefix_only_where_llama_cpp_puts_it() {
    // Mistral's vocabulary prefixes each fragment after a special token with a space; pieces
    // that continue text must not get one.
    let tok = fixture_tokenizer("tiny-mistral.gguf");
    let whole = tok.encode("[INST] Review: great film [/INST]").unwrap();
    let mut pieces = crate::model::PromptText::markup("[INST] Review:");
    pieces.push_data(" great film").push_markup(" [/INST]");
    let (ids, _) = tok.encode_prompt(&crate::model::PromptText::new(), &pieces).unwrap();
    assert_eq!(ids[0], tok.token_id("<s>").unwrap(), "the model adds its BOS token");
    assert_eq!(ids[1..], whole[..]);
    // Split into a shared part and the rest, the same tokens.
    let (shared, rest) = (crate::model::PromptText::markup("[INST] Review:"), crate::model::PromptText::data(" great film [/INST]"));
    let (split_ids, n_shared) = tok.encode_prompt(&shared, &rest).unwrap();
    assert_eq!(split_ids[1..n_shared], tok.encode("[INST] Review:").unwrap()[..]);
    assert_eq!(tok.encode_data("great").unwrap(), tok.encode_data("great").unwrap());
    assert_ne!(tok.encode_data("great").unwrap(), tok.encode("great").unwrap(), "data continuing text has no space prefix");
}

#[test]
fn a_vocabulary_of_an_unknown_kind_or_pre_tokenizer_is_refused_naming_it() {
    let mut g = Gguf::open(&fixtures().join("tiny-qwen3.gguf")).unwrap();
    g.metadata.insert("tokenizer.ggml.pre".into(), crate::model::gguf::MetaValue::Str("mystery".into()));
    let err = from_gguf(&g).err().unwrap().to_string();
    assert!(err.contains("the pre-tokenizer `mystery` is not supported") && err.contains("qwen2"), "{err}");
    g.metadata.insert("tokenizer.ggml.model".into(), crate::model::gguf::MetaValue::Str("t5".into()));
    let err = from_gguf(&g).err().unwrap().to_string();
    assert!(err.contains("tokenizer type `t5` is not supported"), "{err}");
}
