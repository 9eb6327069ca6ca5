//! SentencePiece-style vocabularies (`tokenizer.ggml.model = llama`) as a BPE `tokenizer.json`.
//!
//! llama.cpp tokenizes these by starting from single characters and repeatedly merging the
//! adjacent pair whose concatenation is the highest-scoring token (leftmost first on ties);
//! characters no token covers become byte tokens (`<0xE4>`). A BPE model does the same when
//! its merges are every way of splitting a token into two tokens, ranked by the token's score,
//! and byte fallback is on. Spaces become `▁`; vocabularies with `add_space_prefix` also get a
//! `▁` before each text fragment, which the `Prepend` normalizer gives (it runs on each piece
//! of text between special tokens, as llama.cpp's prefix does).

use std::collections::HashMap;

use serde_json::{json, Value};

/// The `tokenizer.json` for pieces `tokens` with `scores`.
pub fn tokenizer_json(
    tokens: &[&str],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
    add_space_prefix: bool,
    vocab: serde_json::Map<String, Value>,
    added: Vec<Value>,
) -> Value {
    let merges: Vec<Value> = merges(tokens, scores, ids).into_iter().map(|(a, b)| json!([a, b])).collect();
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let normalizer = if add_space_prefix { json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace]}) } else { replace };
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": normalizer, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    })
}

/// Every split of a token into two tokens, the best-scoring token's splits first (ties by
/// id, so the order is fixed).
fn merges<'a>(tokens: &[&'a str], scores: &[f32], ids: &HashMap<&str, u32>) -> Vec<(&'a str, &'a str)> {
    let mut found: Vec<(f32, u32, &'a str, &'a str)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        for (cut, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(cut);
            if ids.contains_key(left) && ids.contains_key(right) {
                found.push((scores[id], id as u32, left, right));
            }
        }
    }
    // Higher score first; `total_cmp` keeps a NaN score from making the order depend on the sort.
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    found.into_iter().map(|(_, _, l, r)| (l, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_are_every_split_ranked_by_the_merged_tokens_score() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let ids: HashMap<&str, u32> = tokens.iter().enumerate().map(|(i, t)| (*t, i as u32)).collect();
        let m = merges(&tokens, &scores, &ids);
        assert_eq!(m, [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]);
    }
}
