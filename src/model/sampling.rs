//! Choosing the next token from logits: greedy, or seeded sampling with temperature, top-k
//! and top-p.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to pick tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// 0 picks the likeliest token (greedy).
    pub temperature: f32,
    /// Keep only the `k` likeliest tokens, if set.
    pub top_k: Option<usize>,
    /// Keep the likeliest tokens whose probabilities sum to `p`, if set.
    pub top_p: Option<f32>,
    /// The seed of this request's random stream.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

/// A request's sampler: its settings and its own seeded random stream, so results do not
/// depend on what else is in the batch.
pub struct Sampler {
    settings: Sampling,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler for one request.
    pub fn new(settings: Sampling) -> Sampler {
        let rng = ChaCha8Rng::seed_from_u64(settings.seed);
        Sampler { settings, rng }
    }

    /// Picks a token from one position's logits.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.settings.temperature <= 0.0 {
            return argmax(logits);
        }
        let cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        self.sample(cand)
    }

    /// Picks a token among those `allowed` (a bitset: bit `t % 32` of word `t / 32` says
    /// whether token `t` may come next), as [`Sampler::pick`] would if the others had no
    /// probability. With no allowed token, the likeliest token.
    pub fn pick_masked(&mut self, logits: &[f32], allowed: &[u32]) -> u32 {
        let is_allowed = |i: usize| allowed.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0);
        let mut cand: Vec<(u32, f32)> = Vec::new();
        // Walk the set bits only: a constrained step usually allows a few tokens of 50 000.
        for (w, &word) in allowed.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let i = w * 32 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(&l) = logits.get(i) {
                    cand.push((i as u32, l));
                }
            }
        }
        if cand.is_empty() {
            return argmax(logits);
        }
        debug_assert!(cand.iter().all(|&(i, _)| is_allowed(i as usize)));
        if self.settings.temperature <= 0.0 {
            // The first of the largest, as `argmax` breaks ties.
            let mut best = cand[0];
            for &c in &cand[1..] {
                if c.1 > best.1 {
                    best = c;
                }
            }
            return best.0;
        }
        self.sample(cand)
    }

    fn sample(&mut self, mut cand: Vec<(u32, f32)>) -> u32 {
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.settings.top_k.filter(|k| *k > 0) {
            cand.truncate(k);
        }
        let t = self.settings.temperature;
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, l)| ((l - max) / t).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if let Some(top_p) = self.settings.top_p.filter(|p| *p > 0.0 && *p < 1.0) {
            let mut acc = 0.0;
            let keep = probs.iter().position(|p| {
                acc += p;
                acc >= top_p
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        let r: f32 = self.rng.random();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return cand[i].0;
            }
        }
        cand[probs.len() - 1].0
    }
}

/// The index of the largest logit (the first, on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `log_softmax(logits)[token]`, computed stably.
pub fn log_prob(logits: &[f32], token: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    logits[token as usize] - max - sum.ln() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(Sampling::default());
        assert_eq!(s.pick(&[0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn the_same_seed_samples_the_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let settings = Sampling { temperature: 1.0, top_k: Some(20), top_p: Some(0.9), seed: 42 };
        let draw = |settings: &Sampling| {
            let mut s = Sampler::new(settings.clone());
            (0..30).map(|_| s.pick(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(&settings), draw(&settings));
        assert_ne!(draw(&settings), draw(&Sampling { seed: 43, ..settings.clone() }));
    }

    #[test]
    fn top_k_of_one_is_greedy() {
        let mut s = Sampler::new(Sampling { temperature: 5.0, top_k: Some(1), top_p: None, seed: 1 });
        for _ in 0..20 {
            assert_eq!(s.pick(&[0.0, 1.0, 0.5]), 1);
        }
    }

    #[test]
    fn masked_picks_stay_inside_the_mask() {
        let logits: Vec<f32> = (0..70).map(|i| (i as f32 * 0.61).cos()).collect();
        // Tokens 3, 40 and 65 allowed.
        let mut allowed = vec![0u32; 3];
        for t in [3usize, 40, 65] {
            allowed[t / 32] |= 1 << (t % 32);
        }
        let mut greedy = Sampler::new(Sampling::default());
        let best = [3usize, 40, 65].into_iter().max_by(|&a, &b| logits[a].total_cmp(&logits[b])).map(|t| t as u32);
        assert_eq!(Some(greedy.pick_masked(&logits, &allowed)), best);
        let mut s = Sampler::new(Sampling { temperature: 1.5, top_k: None, top_p: Some(0.95), seed: 9 });
        for _ in 0..50 {
            assert!([3, 40, 65].contains(&s.pick_masked(&logits, &allowed)));
        }
    }

    #[test]
    fn log_probs_sum_to_one() {
        let logits = [1.0, 2.0, 3.0];
        let total: f32 = (0..3).map(|t| log_prob(&logits, t).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
