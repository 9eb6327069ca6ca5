//! An incremental BM25 index over remembered inputs: documents are added and removed as
//! feedback arrives and users are forgotten, and a query scores only the documents that share a
//! term with it (an inverted index), so its cost follows the matching postings, not the size of
//! the memory. Term statistics (document frequencies, the mean length) are kept current on
//! every change; removed documents leave tombstones until their postings outnumber the living
//! ones, then the postings are rebuilt.
//!
//! Tokens and weights are those of `runtime::retrieve` (lowercased words, symbols alone; Okapi
//! BM25 with k1 = 1.2, b = 0.75), so memory and compiled retrieval agree on "similar".

use std::collections::HashMap;

use crate::runtime::retrieve::tokens;

/// BM25's term-frequency saturation.
const K1: f32 = 1.2;
/// BM25's length normalisation.
const B: f32 = 0.75;

/// A document's id in the index (stable while it lives).
pub(super) type DocId = u32;

#[derive(Debug, Default)]
struct Doc {
    /// Term ids and counts.
    terms: Vec<(u32, u16)>,
    len: f32,
    alive: bool,
}

/// The index.
#[derive(Debug, Default)]
pub(super) struct Index {
    vocab: HashMap<String, u32>,
    /// Per term id: (document, count), tombstones included until a rebuild.
    postings: Vec<Vec<(DocId, u16)>>,
    /// Per term id: living documents holding it.
    df: Vec<u32>,
    docs: Vec<Doc>,
    live: u32,
    total_len: f64,
    dead_postings: usize,
    live_postings: usize,
    /// Scores per document, reused between queries (zeroed after each).
    scratch: Vec<f32>,
}

impl Index {
    /// Adds a document with `text`; returns its id.
    pub(super) fn add(&mut self, text: &str) -> DocId {
        let id = self.docs.len() as DocId;
        let mut counts: HashMap<u32, u16> = HashMap::new();
        let mut len = 0u32;
        for t in tokens(text) {
            len += 1;
            let next = self.vocab.len() as u32;
            let term = *self.vocab.entry(t).or_insert(next);
            if term as usize == self.postings.len() {
                self.postings.push(Vec::new());
                self.df.push(0);
            }
            let c = counts.entry(term).or_default();
            *c = c.saturating_add(1);
        }
        let mut terms: Vec<(u32, u16)> = counts.into_iter().collect();
        terms.sort_unstable();
        for &(term, count) in &terms {
            self.postings[term as usize].push((id, count));
            self.df[term as usize] += 1;
        }
        self.live_postings += terms.len();
        self.docs.push(Doc { terms, len: len as f32, alive: true });
        self.live += 1;
        self.total_len += f64::from(len);
        id
    }

    /// Removes document `id` (no-op when it is gone already).
    pub(super) fn remove(&mut self, id: DocId) {
        let Some(doc) = self.docs.get_mut(id as usize) else { return };
        if !doc.alive {
            return;
        }
        doc.alive = false;
        for &(term, _) in &doc.terms {
            self.df[term as usize] -= 1;
        }
        let n = doc.terms.len();
        self.live -= 1;
        self.total_len -= f64::from(doc.len);
        self.live_postings -= n;
        self.dead_postings += n;
        doc.terms = Vec::new();
        if self.dead_postings > self.live_postings.max(1024) {
            self.rebuild();
        }
    }

    /// Drops tombstones from the postings.
    fn rebuild(&mut self) {
        let docs = &self.docs;
        for p in &mut self.postings {
            p.retain(|(d, _)| docs[*d as usize].alive);
        }
        self.dead_postings = 0;
    }

    /// Living documents.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.live as usize
    }

    /// Every living document sharing a term with `text`, with its BM25 score (unordered); when
    /// `text` has words outside more than half the documents, only those count.
    pub(super) fn search(&mut self, text: &str) -> Vec<(DocId, f32)> {
        let n = self.live as f32;
        if n == 0.0 {
            return Vec::new();
        }
        let avg = (self.total_len as f32 / n).max(1.0);
        let mut query: Vec<u32> = tokens(text).into_iter().filter_map(|t| self.vocab.get(&t).copied()).collect();
        query.sort_unstable();
        query.dedup();
        // Words in more than half the documents ("the", "my") weigh little (idf below ln 2)
        // and cost the most (their postings are the longest): when the query has rarer
        // words, it is matched by those alone, as a stop list would, but learned from the data.
        let common = |t: &u32| self.df[*t as usize] as f32 > n / 2.0;
        if query.iter().any(|t| !common(t)) {
            query.retain(|t| !common(t));
        }
        if self.scratch.len() < self.docs.len() {
            self.scratch.resize(self.docs.len(), 0.0);
        }
        let mut touched: Vec<DocId> = Vec::new();
        for term in query {
            let df = self.df[term as usize] as f32;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(d, tf) in &self.postings[term as usize] {
                let doc = &self.docs[d as usize];
                if !doc.alive {
                    continue;
                }
                let tf = f32::from(tf);
                let s = &mut self.scratch[d as usize];
                if *s == 0.0 {
                    touched.push(d);
                }
                *s += idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * doc.len / avg));
            }
        }
        touched
            .into_iter()
            .map(|d| {
                let s = std::mem::take(&mut self.scratch[d as usize]);
                (d, s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(index: &mut Index, q: &str) -> Vec<DocId> {
        let mut hits = index.search(q);
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.into_iter().map(|(d, _)| d).collect()
    }

    #[test]
    fn the_document_sharing_the_rarest_words_scores_first() {
        let mut i = Index::default();
        let a = i.add("my card has not arrived yet");
        let b = i.add("how do I top up with a card");
        let c = i.add("exchange rate for euros");
        assert_eq!(best(&mut i, "card not arrived")[0], a);
        assert_eq!(best(&mut i, "top up"), [b]);
        assert_eq!(best(&mut i, "euros please"), [c]);
        assert!(i.search("nothing shared").is_empty());
    }

    #[test]
    fn removed_documents_are_never_found_and_statistics_follow() {
        let mut i = Index::default();
        let docs: Vec<DocId> = (0..3000).map(|k| i.add(&format!("common word{k}"))).collect();
        for d in &docs[..2500] {
            i.remove(*d);
        }
        i.remove(docs[0]);
        assert_eq!(i.len(), 500);
        let hits = i.search("common");
        assert_eq!(hits.len(), 500, "only the living match the common word");
        assert!(hits.iter().all(|(d, _)| *d >= 2500));
        assert_eq!(best(&mut i, "word2999")[0], docs[2999]);
        // The scores scratch is clean between queries: asking twice gives the same scores.
        let again: Vec<f32> = {
            let mut h = i.search("common word2999");
            h.sort_by_key(|a| a.0);
            h.into_iter().map(|(_, s)| s).collect()
        };
        let twice: Vec<f32> = {
            let mut h = i.search("common word2999");
            h.sort_by_key(|a| a.0);
            h.into_iter().map(|(_, s)| s).collect()
        };
        assert_eq!(again, twice);
    }

    #[test]
    fn words_in_most_documents_are_ignored_when_the_query_has_rarer_ones() {
        let mut i = Index::default();
        let docs: Vec<DocId> = (0..10).map(|k| i.add(&format!("the ticket number{k}"))).collect();
        assert_eq!(best(&mut i, "the number3"), [docs[3]], "only the rare word matches");
        assert_eq!(i.search("the ticket").len(), 10, "a query of common words alone still matches");
    }
}
