//! Constrained choice when only the decision is wanted: the label tree is expanded best
//! first, a few nodes per pass, and a label is dropped as soon as its partial score shows it
//! cannot win. The bound is exact: a label's summed log-probability only falls as more of its
//! tokens are scored (each log-probability is at most 0), and every way of deciding here is
//! non-decreasing in that sum, so a partial sum already below the best finished label under
//! every way of deciding can never overtake it.

use super::worker::Choices;
use crate::model::sampling::log_prob;

/// One way of turning a choice's summed log-probability `s` into the number the decision
/// compares: `s · scale / (its token count, if per_token) + offset`, computed in f64 and
/// rounded to f32 (as the runtime's label scoring computes it), with `scale ≥ 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adjust {
    /// What the sum is multiplied by (at least 0).
    pub scale: f64,
    /// Whether the product is divided by the choice's length in tokens.
    pub per_token: bool,
    /// What is added.
    pub offset: f64,
}

impl Adjust {
    /// The sum as it is.
    pub const SUM: Adjust = Adjust { scale: 1.0, per_token: false, offset: 0.0 };

    fn apply(self, s: f32, tokens: usize) -> f32 {
        let mut v = f64::from(s) * self.scale;
        if self.per_token {
            v /= tokens.max(1) as f64;
        }
        (v + self.offset) as f32
    }
}

/// The ways a choice may be decided, each giving one [`Adjust`] per choice (in choice order).
/// The best choice under each (the first of equals) is found exactly; other choices may come
/// back with only an upper bound of their score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChoiceBounds {
    /// Per way of deciding, one adjustment per choice.
    pub modes: Vec<Vec<Adjust>>,
}

impl ChoiceBounds {
    /// Checks the bounds against `choices` choices: at least one mode, one adjustment per
    /// choice in each, finite numbers and scales of at least 0.
    pub fn check(&self, choices: usize) -> Result<(), String> {
        if self.modes.is_empty() {
            return Err("choice bounds name no way of deciding".into());
        }
        for m in &self.modes {
            if m.len() != choices {
                return Err(format!("choice bounds give {} adjustments for {choices} choices", m.len()));
            }
            if m.iter().any(|a| !a.scale.is_finite() || a.scale < 0.0 || !a.offset.is_finite()) {
                return Err("choice bounds need finite adjustments with scales of at least 0".into());
            }
        }
        Ok(())
    }
}

/// A best-first expansion of one prompt's label tree.
pub(crate) struct Search<'a> {
    choices: &'a Choices,
    bounds: &'a ChoiceBounds,
    /// Each choice's summed log-probability over the tokens scored so far.
    partial: Vec<f32>,
    /// How many of each choice's tokens are scored.
    scored: Vec<usize>,
    pruned: Vec<bool>,
    /// Per mode, the best finished choice so far: its adjusted score and index.
    best: Vec<Option<(f32, usize)>>,
}

impl<'a> Search<'a> {
    /// Starts from the logits after the prompt (`last`), which score every first token.
    pub(crate) fn new(choices: &'a Choices, bounds: &'a ChoiceBounds, last: &[f32]) -> Search<'a> {
        let n = choices.ids.len();
        let mut s = Search {
            choices,
            bounds,
            partial: choices.ids.iter().map(|ids| log_prob(last, ids[0])).collect(),
            scored: vec![1; n],
            pruned: vec![false; n],
            best: vec![None; bounds.modes.len()],
        };
        for c in 0..n {
            s.finished(c);
        }
        s
    }

    fn complete(&self, c: usize) -> bool {
        self.scored[c] == self.choices.ids[c].len()
    }

    fn adjusted(&self, mode: usize, c: usize) -> f32 {
        self.bounds.modes[mode][c].apply(self.partial[c], self.choices.ids[c].len())
    }

    /// Records choice `c` as a candidate best if it is finished.
    fn finished(&mut self, c: usize) {
        if !self.complete(c) {
            return;
        }
        for m in 0..self.best.len() {
            let v = self.adjusted(m, c);
            let better = match self.best[m] {
                None => !v.is_nan(),
                Some((b, i)) => v > b || (v == b && c < i),
            };
            if better {
                self.best[m] = Some((v, c));
            }
        }
    }

    /// Whether unfinished choice `c` can no longer be the best under any mode.
    fn beaten(&self, c: usize) -> bool {
        self.best.iter().enumerate().all(|(m, best)| match best {
            Some((b, i)) => {
                let v = self.adjusted(m, c);
                v < *b || (v == *b && c > *i) || v.is_nan()
            }
            None => false,
        })
    }

    /// Drops beaten choices, then returns up to `limit` tree nodes to feed next, those of the
    /// choices with the highest bound (under the first mode) first; empty once every choice is
    /// finished or dropped.
    pub(crate) fn frontier(&mut self, limit: usize) -> Vec<usize> {
        for c in 0..self.partial.len() {
            if !self.complete(c) && !self.pruned[c] && self.beaten(c) {
                self.pruned[c] = true;
            }
        }
        let mut open: Vec<(f32, usize)> = (0..self.partial.len())
            .filter(|&c| !self.complete(c) && !self.pruned[c])
            .map(|c| (self.adjusted(0, c), self.choices.node_before(c, self.scored[c])))
            .collect();
        open.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut nodes: Vec<usize> = Vec::new();
        for (_, node) in open {
            if nodes.len() >= limit.max(1) {
                break;
            }
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        nodes
    }

    /// Takes the logits after tree node `node`: every open choice whose next token is
    /// predicted there adds that token's log-probability.
    pub(crate) fn feed(&mut self, node: usize, logits: &[f32]) {
        for c in 0..self.partial.len() {
            if self.complete(c) || self.pruned[c] || self.choices.node_before(c, self.scored[c]) != node {
                continue;
            }
            let token = self.choices.ids[c][self.scored[c]];
            self.partial[c] += log_prob(logits, token);
            self.scored[c] += 1;
            self.finished(c);
        }
    }

    /// Each choice's score (exact for finished choices, an upper bound for dropped ones) and
    /// which were dropped.
    pub(crate) fn finish(self) -> (Vec<f32>, Vec<bool>) {
        (self.partial, self.pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits over a vocabulary of 8 putting `p` of the mass on `token` and the rest evenly.
    fn peaked(token: u32, p: f32) -> Vec<f32> {
        let rest = (1.0 - p) / 7.0;
        (0..8).map(|t| if t == token { p.ln() } else { rest.ln() }).collect()
    }

    /// Runs a search to the end, giving every node the logits `at` returns for it.
    fn run(choices: &Choices, bounds: &ChoiceBounds, last: &[f32], at: &dyn Fn(usize) -> Vec<f32>, limit: usize) -> (Vec<f32>, Vec<bool>, usize) {
        let mut s = Search::new(choices, bounds, last);
        let mut fed = 0;
        loop {
            let nodes = s.frontier(limit);
            if nodes.is_empty() {
                return {
                    let (scores, pruned) = s.finish();
                    (scores, pruned, fed)
                };
            }
            for n in nodes {
                fed += 1;
                s.feed(n, &at(n));
            }
        }
    }

    fn best(scores: &[f32], adjust: &[Adjust], choices: &Choices) -> usize {
        let adjusted: Vec<f32> = scores.iter().enumerate().map(|(c, &s)| adjust[c].apply(s, choices.ids[c].len())).collect();
        // The first of equals, as label scoring decides.
        (0..adjusted.len()).fold(0, |b, c| if adjusted[c] > adjusted[b] { c } else { b })
    }

    #[test]
    fn a_label_that_cannot_win_is_dropped_and_the_winner_is_exact() {
        // Labels 1 2 | 1 3 | 4 5 6 7: after the prompt, token 1 is likely (0.8) and 4 not.
        let choices = Choices::new(vec![vec![1, 2], vec![1, 3], vec![4, 5, 6, 7]]);
        let bounds = ChoiceBounds { modes: vec![vec![Adjust::SUM; 3]] };
        let after = |n: usize| if choices.nodes[n].token == 1 { peaked(2, 0.9) } else { peaked(5, 0.9) };
        let (scores, pruned, fed) = run(&choices, &bounds, &peaked(1, 0.8), &after, 1);
        assert_eq!(pruned, [false, false, true], "ln 0.029 is below the finished `1 2`");
        assert_eq!(fed, 1, "one node at a time: only `1` is fed");
        assert!((scores[0] - (0.8f32.ln() + 0.9f32.ln())).abs() < 1e-6);
        let rest = (1.0f32 - 0.8) / 7.0;
        assert_eq!(scores[2], rest.ln(), "a dropped label keeps the sum over the tokens scored, an upper bound");
    }

    #[test]
    fn every_mode_decides_as_full_scoring_would() {
        // Six labels of different lengths; under the per-token mean the long one can win.
        let ids = vec![vec![1, 2], vec![1, 3, 2], vec![4], vec![5, 6, 7, 2, 2], vec![5, 6, 3], vec![6, 1]];
        let choices = Choices::new(ids.clone());
        for seed in 0..40u32 {
            // Logits after each node and after the prompt, from a small hash of the seed.
            let noise = move |n: usize, t: u32| (((seed * 31 + n as u32 * 17 + t * 7) % 13) as f32) / 3.0;
            let after = |n: usize| (0..8).map(|t| noise(n + 1, t)).collect::<Vec<f32>>();
            let last: Vec<f32> = (0..8).map(|t| noise(0, t)).collect();
            let per_token = vec![Adjust { scale: 1.0, per_token: true, offset: 0.0 }; ids.len()];
            let biased: Vec<Adjust> = (0..ids.len()).map(|c| Adjust { scale: 0.5, per_token: false, offset: c as f64 * 0.3 }).collect();
            let bounds = ChoiceBounds { modes: vec![vec![Adjust::SUM; ids.len()], per_token.clone(), biased.clone()] };
            let (scores, _, _) = run(&choices, &bounds, &last, &after, 2);
            let full = choices.scores(&last, &(0..choices.nodes.len()).map(after).collect::<Vec<_>>());
            for adjust in [vec![Adjust::SUM; ids.len()], per_token, biased] {
                assert_eq!(best(&scores, &adjust, &choices), best(&full, &adjust, &choices), "seed {seed}");
            }
        }
    }

    #[test]
    fn bad_bounds_are_refused() {
        assert!(ChoiceBounds { modes: vec![] }.check(2).is_err());
        assert!(ChoiceBounds { modes: vec![vec![Adjust::SUM]] }.check(2).is_err());
        assert!(ChoiceBounds { modes: vec![vec![Adjust { scale: -1.0, per_token: false, offset: 0.0 }; 2]] }.check(2).is_err());
        assert!(ChoiceBounds { modes: vec![vec![Adjust::SUM; 2]] }.check(2).is_ok());
    }
}
