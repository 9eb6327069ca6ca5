//! Label continuations as a token tree: every token a label needs to be fed (all its tokens
//! but the last) becomes a node, and labels that share a prefix (`card_arrival`,
//! `card_linking`) share its nodes. One pass feeds the nodes after the prompt with a tree mask,
//! each node seeing the prompt and its own ancestors only, so every label of a prompt is
//! scored in the prompt's own pass, each shared token once, with no copy of the prompt's keys
//! and values.

use crate::model::sampling::log_prob;

/// A node: a token fed at some depth below its parent (`None`: right after the prompt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrieNode {
    pub token: u32,
    pub parent: Option<usize>,
    /// 1 for a label's first token.
    pub depth: usize,
}

/// The choices of a constrained choice, tokenized, and their tree.
#[derive(Debug)]
pub(crate) struct Choices {
    /// Each choice's tokens.
    pub ids: Vec<Vec<u32>>,
    /// The nodes to feed, parents before children.
    pub nodes: Vec<TrieNode>,
    /// For each choice, the node after which each of its tokens but the first is predicted.
    paths: Vec<Vec<usize>>,
    /// `sees[i][j]`: whether node `i` attends to node `j` (itself or an ancestor).
    sees: Vec<Vec<bool>>,
}

impl Choices {
    /// The tree of `ids` (each non-empty).
    pub(crate) fn new(ids: Vec<Vec<u32>>) -> Choices {
        let mut nodes: Vec<TrieNode> = Vec::new();
        let mut paths = Vec::with_capacity(ids.len());
        for choice in &ids {
            let mut parent = None;
            let mut path = Vec::new();
            for (d, &token) in choice.iter().take(choice.len().saturating_sub(1)).enumerate() {
                let found = nodes.iter().position(|n| n.parent == parent && n.token == token);
                let at = found.unwrap_or_else(|| {
                    nodes.push(TrieNode { token, parent, depth: d + 1 });
                    nodes.len() - 1
                });
                path.push(at);
                parent = Some(at);
            }
            paths.push(path);
        }
        let sees = (0..nodes.len())
            .map(|i| {
                let mut row = vec![false; nodes.len()];
                let mut at = Some(i);
                while let Some(k) = at {
                    row[k] = true;
                    at = nodes[k].parent;
                }
                row
            })
            .collect();
        Choices { ids, nodes, paths, sees }
    }

    /// The node after which token `k` (at least 1) of choice `c` is predicted.
    pub(crate) fn node_before(&self, c: usize, k: usize) -> usize {
        self.paths[c][k - 1]
    }

    /// Whether node `i` attends to node `j`.
    pub(crate) fn sees(&self, i: usize, j: usize) -> bool {
        self.sees[i][j]
    }

    /// Each choice's log-probability from the logits after the prompt (`last`) and after each
    /// node (`at_node`, in node order).
    pub(crate) fn scores(&self, last: &[f32], at_node: &[Vec<f32>]) -> Vec<f32> {
        self.ids
            .iter()
            .zip(&self.paths)
            .map(|(ids, path)| {
                // Token by token, as a bounded choice adds them (see `bounds.rs`).
                path.iter().zip(&ids[1..]).fold(log_prob(last, ids[0]), |s, (&n, &t)| s + at_node.get(n).map_or(f32::NEG_INFINITY, |l| log_prob(l, t)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_are_fed_once_and_see_only_their_ancestors() {
        // a b c | a b d | a e | f
        let c = Choices::new(vec![vec![1, 2, 3], vec![1, 2, 4], vec![1, 5], vec![6]]);
        let tokens: Vec<u32> = c.nodes.iter().map(|n| n.token).collect();
        assert_eq!(tokens, [1, 2], "`a` and `a b` are fed once; last tokens and one-token labels are not fed");
        assert_eq!(c.nodes[1].parent, Some(0));
        assert_eq!((c.nodes[0].depth, c.nodes[1].depth), (1, 2));
        assert!(c.sees(1, 0) && c.sees(1, 1) && !c.sees(0, 1));
    }

    #[test]
    fn scores_add_each_tokens_log_probability_along_the_path() {
        let c = Choices::new(vec![vec![0, 1], vec![0, 2], vec![2]]);
        let last = [2.0f32, 0.0, 1.0];
        let after_0 = vec![0.0f32, 3.0, 1.0];
        let s = c.scores(&last, std::slice::from_ref(&after_0));
        assert!((s[0] - (log_prob(&last, 0) + log_prob(&after_0, 1))).abs() < 1e-6);
        assert!((s[1] - (log_prob(&last, 0) + log_prob(&after_0, 2))).abs() < 1e-6);
        assert!((s[2] - log_prob(&last, 2)).abs() < 1e-6);
    }
}
