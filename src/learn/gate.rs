//! The promotion gate: current and candidate scored on the same frozen holdout items, the
//! paired differences bootstrapped, and the candidate promoted only when it is not worse.
//!
//! "Not worse" is one-sided: the lower end of the 95% one-sided bootstrap interval of the
//! mean difference must be above `-margin`, and the measured difference itself may not be
//! negative (so no promotion ever lowers the holdout score). Small holdouts give wide
//! intervals; the interval is reported with every decision.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the gate decided, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Whether the candidate is promoted.
    pub promote: bool,
    /// The current program's mean holdout score.
    pub current: f64,
    /// The candidate's mean holdout score.
    pub candidate: f64,
    /// The mean paired difference (candidate − current).
    pub difference: f64,
    /// The 90% bootstrap interval of the difference (its lower end is the one-sided 95% bound).
    pub interval: (f64, f64),
    /// The margin the candidate may be worse by, at the interval's lower end.
    pub margin: f64,
    /// Holdout items compared.
    pub items: usize,
    /// Why, in a sentence.
    pub reason: String,
}

/// Resamples for the bootstrap.
const RESAMPLES: usize = 2000;

/// Decides on paired scores (`current[i]` and `candidate[i]` are the same holdout item).
pub fn decide(current: &[f64], candidate: &[f64], margin: f64, seed: u64) -> Decision {
    let n = current.len().min(candidate.len());
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let diffs: Vec<f64> = (0..n).map(|i| candidate[i] - current[i]).collect();
    let (cur, cand, diff) = (mean(&current[..n]), mean(&candidate[..n]), mean(&diffs));
    if n == 0 {
        return Decision {
            promote: false,
            current: cur,
            candidate: cand,
            difference: 0.0,
            interval: (0.0, 0.0),
            margin,
            items: 0,
            reason: "the holdout is empty: nothing shows the candidate is not worse".into(),
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..RESAMPLES).map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((RESAMPLES as f64 - 1.0) * q).round() as usize];
    let (lo, hi) = (at(0.05), at(0.95));
    let (promote, reason) = if diff < 0.0 {
        (false, format!("the candidate scores lower on the holdout ({cand:.3} vs {cur:.3})"))
    } else if lo < -margin {
        (false, format!("the candidate may be worse: the difference's 95% lower bound {lo:+.3} is below −{margin}"))
    } else if diff == 0.0 && lo == 0.0 && hi == 0.0 {
        (true, format!("the candidate scores the same on every holdout item ({cand:.3})"))
    } else {
        (true, format!("the candidate is not worse: {cand:.3} vs {cur:.3}, difference {diff:+.3} (90% interval {lo:+.3} to {hi:+.3})"))
    };
    Decision { promote, current: cur, candidate: cand, difference: diff, interval: (lo, hi), margin, items: n, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worse_candidate_is_never_promoted() {
        let current = vec![1.0; 40];
        let mut candidate = current.clone();
        candidate[3] = 0.0;
        let d = decide(&current, &candidate, 0.05, 1);
        assert!(!d.promote, "{d:?}");
        assert!(d.reason.contains("lower"), "{}", d.reason);
    }

    #[test]
    fn a_clearly_better_candidate_is_promoted() {
        let current: Vec<f64> = (0..60).map(|i| f64::from(i % 2 == 0)).collect();
        let candidate: Vec<f64> = (0..60).map(|i| f64::from(i % 5 != 0)).collect();
        let d = decide(&current, &candidate, 0.02, 7);
        assert!(d.promote, "{d:?}");
        assert!(d.interval.0 > 0.0 && d.difference > 0.2);
    }

    #[test]
    fn a_better_mean_on_noise_is_held_back_by_the_interval() {
        // 30 items: the candidate wins 5 and loses 4, each by a whole point.
        let current: Vec<f64> = (0..30).map(|i| if (5..9).contains(&i) { 1.0 } else { 0.0 }).collect();
        let candidate: Vec<f64> = (0..30).map(|i| if i < 5 { 1.0 } else { 0.0 }).collect();
        let d = decide(&current, &candidate, 0.02, 3);
        assert!(d.difference > 0.0 && d.interval.0 < -0.02, "{d:?}");
        assert!(!d.promote, "{d:?}");
    }

    #[test]
    fn an_empty_holdout_promotes_nothing() {
        assert!(!decide(&[], &[], 0.1, 0).promote);
    }
}
