//! **Retrieval:** demos chosen per input. A step with a [`RetrievalSpec`] shows, for each
//! input, the `k` pool examples most similar to it (BM25 over lowercased word tokens), at
//! most `per_label` of any one label, the most similar last (nearest the question). The pool
//! and the retriever's parameters live in the artifact; the term statistics are derived from
//! the pool when it loads. Which pool and which `k` is the compiler's business.
//!
//! A pool example whose inputs equal the input exactly is never its own demo: the compiler
//! scores candidates on examples that are in the pool, and `loopc eval` of an artifact must
//! see the same prompts the compile saw.
//!
//! Demos that change per input change the prompt's shared part per input, so the prefix
//! cache keeps only the instruction: every demo's tokens are computed for every input.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::adapter::Demo;
use super::value::render;

/// How similarity between an input and a pool example is measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Similarity {
    /// Okapi BM25 over lowercased word tokens (letters and digits; other symbols such as
    /// emoji are tokens of their own).
    Bm25 {
        /// Term-frequency saturation (1.2 is the usual value).
        k1: f64,
        /// Length normalization, 0 to 1 (0.75 is the usual value).
        b: f64,
    },
}

impl Default for Similarity {
    fn default() -> Self {
        Similarity::Bm25 { k1: 1.2, b: 0.75 }
    }
}

/// What an artifact records of a retrieving step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievalSpec {
    /// How similarity is measured.
    pub similarity: Similarity,
    /// Demos per input.
    pub k: usize,
    /// The most demos of one label per input (`None`: the nearest, whatever their labels).
    pub per_label: Option<usize>,
    /// The examples demos are drawn from.
    pub pool: Vec<Demo>,
}

impl RetrievalSpec {
    /// Checks the numbers: `k` and `per_label` at least 1, BM25's `k1` finite and at least 0,
    /// `b` within 0 and 1, a non-empty pool. The error names the field.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.k == 0 {
            return Err(("k".into(), "0 demos per input; it must be at least 1".into()));
        }
        if self.per_label == Some(0) {
            return Err(("per_label".into(), "0 demos per label; it must be at least 1 (or null)".into()));
        }
        if self.pool.is_empty() {
            return Err(("pool".into(), "the pool is empty".into()));
        }
        match self.similarity {
            Similarity::Bm25 { k1, .. } if !k1.is_finite() || k1 < 0.0 => Err(("similarity.k1".into(), format!("{k1} is not a finite number of at least 0"))),
            Similarity::Bm25 { b, .. } if !(0.0..=1.0).contains(&b) => Err(("similarity.b".into(), format!("{b} is not between 0 and 1"))),
            Similarity::Bm25 { .. } => Ok(()),
        }
    }
}

/// A retrieval spec with its index built.
#[derive(Clone, Debug)]
pub struct Retriever {
    spec: RetrievalSpec,
    /// The output whose value is a demo's label (for `per_label`).
    label_field: Option<String>,
    /// Term counts per pool example.
    docs: Vec<HashMap<String, u32>>,
    /// Tokens per pool example.
    lengths: Vec<f64>,
    /// Inverse document frequency per term.
    idf: HashMap<String, f64>,
    average_length: f64,
}

impl PartialEq for Retriever {
    fn eq(&self, other: &Self) -> bool {
        // Everything else is derived from these.
        self.spec == other.spec && self.label_field == other.label_field
    }
}

impl Retriever {
    /// Builds the index of `spec`'s pool; `label_field` names the output that holds a demo's
    /// label, if the step has one.
    pub fn new(spec: RetrievalSpec, label_field: Option<String>) -> Retriever {
        let docs: Vec<HashMap<String, u32>> = spec.pool.iter().map(|d| counts(&tokens(&text_of(&d.inputs)))).collect();
        let lengths: Vec<f64> = docs.iter().map(|d| f64::from(d.values().sum::<u32>())).collect();
        let n = docs.len() as f64;
        let mut df: HashMap<&str, f64> = HashMap::new();
        for d in &docs {
            for t in d.keys() {
                *df.entry(t.as_str()).or_default() += 1.0;
            }
        }
        let idf = df.into_iter().map(|(t, f)| (t.to_string(), (1.0 + (n - f + 0.5) / (f + 0.5)).ln())).collect();
        let average_length = (lengths.iter().sum::<f64>() / n.max(1.0)).max(1.0);
        Retriever { spec, label_field, docs, lengths, idf, average_length }
    }

    /// What the artifact records.
    pub fn spec(&self) -> &RetrievalSpec {
        &self.spec
    }

    /// The BM25 score of each pool example for `inputs`.
    fn scores(&self, inputs: &Map<String, Value>) -> Vec<f64> {
        let Similarity::Bm25 { k1, b } = self.spec.similarity;
        let mut query: Vec<String> = tokens(&text_of(inputs));
        query.sort();
        query.dedup();
        self.docs
            .iter()
            .zip(&self.lengths)
            .map(|(doc, len)| {
                query
                    .iter()
                    .filter_map(|t| {
                        let tf = f64::from(*doc.get(t)?);
                        let idf = self.idf.get(t).copied().unwrap_or(0.0);
                        Some(idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / self.average_length)))
                    })
                    .sum()
            })
            .collect()
    }

    /// The demos for `inputs`: the most similar pool examples (ties in pool order), at most
    /// `per_label` of a label, never one whose inputs are `inputs`; the most similar last.
    pub fn select(&self, inputs: &Map<String, Value>) -> Vec<Demo> {
        let scores = self.scores(inputs);
        let mut order: Vec<usize> = (0..self.spec.pool.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let mut taken: Vec<&Demo> = Vec::new();
        let mut per_label: BTreeMap<String, usize> = BTreeMap::new();
        for i in order {
            if taken.len() == self.spec.k {
                break;
            }
            let demo = &self.spec.pool[i];
            if same_inputs(&demo.inputs, inputs) {
                continue;
            }
            if let (Some(cap), Some(field)) = (self.spec.per_label, &self.label_field) {
                let label = demo.outputs.get(field).map(render).unwrap_or_default();
                let n = per_label.entry(label).or_default();
                if *n >= cap {
                    continue;
                }
                *n += 1;
            }
            taken.push(demo);
        }
        taken.into_iter().rev().cloned().collect()
    }
}

/// Whether a demo's inputs are the input's (every value the demo has is the input's).
fn same_inputs(demo: &Map<String, Value>, inputs: &Map<String, Value>) -> bool {
    !demo.is_empty() && demo.iter().all(|(k, v)| inputs.get(k) == Some(v))
}

/// The text of a set of values, in key order.
fn text_of(values: &Map<String, Value>) -> String {
    values.values().map(render).collect::<Vec<_>>().join("\n")
}

/// Lowercased runs of letters and digits; any other symbol that is not whitespace or ASCII
/// punctuation (an emoji, say) is a token of its own.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() && !c.is_ascii_punctuation() && !c.is_control() && !matches!(c, '\u{200d}' | '\u{fe0f}') {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn counts(tokens: &[String]) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for t in tokens {
        *m.entry(t.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn demo(text: &str, label: &str) -> Demo {
        Demo {
            inputs: json!({"text": text}).as_object().cloned().unwrap_or_default(),
            outputs: json!({"label": label}).as_object().cloned().unwrap_or_default(),
        }
    }

    fn pool() -> Vec<Demo> {
        vec![
            demo("my card has not arrived yet", "card_arrival"),
            demo("how do I top up with a card", "top_up"),
            demo("the card I ordered never arrived", "card_arrival"),
            demo("where is my new card, it has not arrived", "card_arrival"),
            demo("exchange rate for euros", "exchange_rate"),
        ]
    }

    fn retriever(k: usize, per_label: Option<usize>) -> Retriever {
        Retriever::new(RetrievalSpec { similarity: Similarity::default(), k, per_label, pool: pool() }, Some("label".into()))
    }

    fn texts(demos: &[Demo]) -> Vec<&str> {
        demos.iter().map(|d| d.inputs["text"].as_str().unwrap_or_default()).collect()
    }

    fn input(text: &str) -> Map<String, Value> {
        json!({"text": text}).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn words_are_lowercased_and_symbols_stand_alone() {
        assert_eq!(tokens("Card #NOT arrived!! 😡😡 @user"), ["card", "not", "arrived", "😡", "😡", "user"]);
    }

    #[test]
    fn the_most_similar_examples_come_last() {
        let got = retriever(2, None).select(&input("my card has still not arrived"));
        assert_eq!(texts(&got), ["where is my new card, it has not arrived", "my card has not arrived yet"]);
    }

    #[test]
    fn a_label_cap_brings_in_other_labels() {
        let got = retriever(3, Some(1)).select(&input("my card has still not arrived"));
        assert_eq!(got.len(), 3);
        let labels: Vec<&str> = got.iter().map(|d| d.outputs["label"].as_str().unwrap_or_default()).collect();
        assert_eq!(labels.iter().filter(|l| **l == "card_arrival").count(), 1, "{labels:?}");
        assert_eq!(labels.last(), Some(&"card_arrival"), "the nearest is still last");
    }

    #[test]
    fn an_example_is_never_its_own_demo() {
        let got = retriever(2, None).select(&input("my card has not arrived yet"));
        assert!(!texts(&got).contains(&"my card has not arrived yet"), "{:?}", texts(&got));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn an_input_with_no_shared_word_gets_the_first_pool_examples() {
        let got = retriever(2, None).select(&input("zzz"));
        assert_eq!(texts(&got), ["how do I top up with a card", "my card has not arrived yet"]);
    }

    #[test]
    fn bad_numbers_are_refused_by_field() {
        let mut spec = RetrievalSpec { similarity: Similarity::default(), k: 0, per_label: None, pool: pool() };
        assert_eq!(spec.check().unwrap_err().0, "k");
        spec.k = 2;
        spec.similarity = Similarity::Bm25 { k1: 1.2, b: 1.5 };
        assert_eq!(spec.check().unwrap_err().0, "similarity.b");
        spec.similarity = Similarity::default();
        spec.per_label = Some(0);
        assert_eq!(spec.check().unwrap_err().0, "per_label");
        spec.per_label = None;
        spec.pool.clear();
        assert_eq!(spec.check().unwrap_err().0, "pool");
    }
}
