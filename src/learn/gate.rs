//! The promotion gate: current and candidate scored on the same frozen holdout items, the
//! paired differences bootstrapped, and the candidate promoted only when it is not worse.
//!
//! "Not worse" is one-sided: the lower end of the 95% one-sided bootstrap interval of the
//! mean difference must be above `-margin`, and the measured difference itself may not be
//! negative (so no promotion ever lowers the holdout score). Small holdouts give wide
//! intervals; the interval is reported with every decision, and so is the gate's power: the
//! smallest true improvement it promotes with 80% power on this many items, given how often
//! current and candidate disagreed ([`Decision::detectable`]). The holdout may be frozen (a
//! file) and grown (reviewed runs held out by `export`, never trained on); the gate sees one
//! set of paired items and its power is that of their total, and a decision says how many came
//! from each.

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
    /// Of them, the frozen holdout's (the file given); all of them unless the caller says
    /// otherwise ([`Decision::with_frozen`]).
    #[serde(default)]
    pub frozen: usize,
    /// Of them, the items the store grew the holdout by (held-out corrections and reviewed
    /// runs, never trained on).
    #[serde(default)]
    pub grown: usize,
    /// The gate's power: the smallest true mean improvement it would promote with 80%
    /// probability on this many items, given the spread of the paired differences it saw
    /// (see [`detectable`]); `None` on fewer than two items.
    pub detectable: Option<f64>,
    /// Why, in a sentence.
    pub reason: String,
    /// Set when the candidate's holdout scoring stopped early, after this many items, because
    /// no score on the rest could reach the current program's ([`out_of_reach`]). `candidate`
    /// and `difference` are then the most the candidate could have scored (upper bounds), and
    /// `interval` and `detectable` are those of the items scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_after: Option<usize>,
}

/// The normal quantile of the gate's one-sided 5% level (its interval's lower end).
const Z_LEVEL: f64 = 1.644_854;
/// The normal quantile of 80% power.
const Z_POWER: f64 = 0.841_621;

/// The smallest true mean improvement that `decide` promotes with 80% probability, for paired
/// differences spread like `diffs` (on as many items) and the gate's `margin`.
///
/// The gate promotes when the difference's lower bound, about `mean − 1.645·se`, is above
/// `−margin` and the mean is not negative. For a true improvement `δ` the first holds with 80%
/// probability once `δ ≥ (1.645 + 0.842)·se − margin`, the second once `δ ≥ 0.842·se`; the
/// larger is the answer. `se` is the standard error of the mean difference, from the sample
/// standard deviation, but never below that of a single disagreeing item (`1/n`): no
/// disagreement on a holdout does not mean any difference would be seen.
pub fn detectable(diffs: &[f64], margin: f64) -> Option<f64> {
    let n = diffs.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean = diffs.iter().sum::<f64>() / nf;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let se = (var / nf).sqrt().max(1.0 / nf);
    Some(((Z_LEVEL + Z_POWER) * se - margin).max(Z_POWER * se))
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
            frozen: 0,
            grown: 0,
            detectable: None,
            reason: "the holdout is empty: nothing shows the candidate is not worse".into(),
            stopped_after: None,
        };
    }
    let (lo, hi) = interval(&diffs, seed);
    let (promote, reason) = if diff < 0.0 {
        (false, format!("the candidate scores lower on the holdout ({cand:.3} vs {cur:.3})"))
    } else if lo < -margin {
        (false, format!("the candidate may be worse: the difference's 95% lower bound {lo:+.3} is below −{margin}"))
    } else if diff == 0.0 && lo == 0.0 && hi == 0.0 {
        (true, format!("the candidate scores the same on every holdout item ({cand:.3})"))
    } else {
        (true, format!("the candidate is not worse: {cand:.3} vs {cur:.3}, difference {diff:+.3} (90% interval {lo:+.3} to {hi:+.3})"))
    };
    let detectable = detectable(&diffs, margin);
    Decision {
        promote,
        current: cur,
        candidate: cand,
        difference: diff,
        interval: (lo, hi),
        margin,
        items: n,
        frozen: n,
        grown: 0,
        detectable,
        reason,
        stopped_after: None,
    }
}

/// The 90% bootstrap interval of the mean of `diffs` (not empty).
fn interval(diffs: &[f64], seed: u64) -> (f64, f64) {
    let n = diffs.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..RESAMPLES).map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((RESAMPLES as f64 - 1.0) * q).round() as usize];
    (at(0.05), at(0.95))
}

/// How far below the current program's total a candidate's best possible total must be before
/// [`out_of_reach`] says so: far below any difference scores in [0, 1] make, far above the
/// rounding of summing a few thousand of them.
const REACH_SLACK: f64 = 1e-6;

/// Whether a candidate whose first holdout items scored `scored` can no longer reach the
/// current program's total on all its items (`current`), even scoring the most a metric gives,
/// 1, on every item left. [`decide`] would then reject it whatever the rest scored (its mean
/// difference would be negative), so its scoring can stop there and [`decide_out_of_reach`]
/// decides on what was scored. Exact: it never stops a candidate the whole holdout would have
/// promoted.
pub fn out_of_reach(current: &[f64], scored: &[f64]) -> bool {
    let left = current.len().saturating_sub(scored.len()) as f64;
    scored.iter().sum::<f64>() + left < current.iter().sum::<f64>() - REACH_SLACK
}

/// "≤ " before a candidate's holdout score when its scoring stopped early
/// ([`Decision::stopped_after`]), where the score shown is the most it could have reached.
pub fn at_most(stopped_after: Option<usize>) -> &'static str {
    if stopped_after.is_some() {
        "≤ "
    } else {
        ""
    }
}

/// The rejection of a candidate whose scoring stopped once it was [`out_of_reach`]: `scored`
/// are its first items' scores (`current[..scored.len()]` their pairs). The candidate's score
/// is the most it could have reached; the interval and the power are those of the items scored.
pub fn decide_out_of_reach(current: &[f64], scored: &[f64], margin: f64, seed: u64) -> Decision {
    let (n, k) = (current.len(), scored.len().min(current.len()));
    let cur = if n == 0 { 0.0 } else { current.iter().sum::<f64>() / n as f64 };
    let best = if n == 0 { 0.0 } else { (scored[..k].iter().sum::<f64>() + (n - k) as f64) / n as f64 };
    let diffs: Vec<f64> = (0..k).map(|i| scored[i] - current[i]).collect();
    let (lo, hi) = if diffs.is_empty() { (0.0, 0.0) } else { interval(&diffs, seed) };
    Decision {
        promote: false,
        current: cur,
        candidate: best,
        difference: best - cur,
        interval: (lo, hi),
        margin,
        items: n,
        frozen: n,
        grown: 0,
        detectable: detectable(&diffs, margin),
        reason: format!(
            "the candidate cannot reach the current program's holdout score: after {k} of {n} items, scoring 1 on all the rest would give it at most {best:.3} against {cur:.3}"
        ),
        stopped_after: Some(k),
    }
}

impl Decision {
    /// The decision, saying that its first `frozen` items were the frozen holdout's and the
    /// rest grown from the store.
    pub fn with_frozen(self, frozen: usize) -> Decision {
        let frozen = frozen.min(self.items);
        Decision { frozen, grown: self.items - frozen, ..self }
    }
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

    /// Paired 0/1 scores on `n` items: the candidate alone right with probability `win`, the
    /// current alone right with probability `lose`, both right on half of the rest.
    fn paired(n: usize, win: f64, lose: f64, rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<f64>) {
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                if u < win {
                    (0.0, 1.0)
                } else if u < win + lose {
                    (1.0, 0.0)
                } else {
                    let both = f64::from(rng.random_bool(0.5));
                    (both, both)
                }
            })
            .unzip()
    }

    proptest::proptest! {
        #[test]
        fn a_candidate_that_scores_lower_on_the_holdout_is_never_promoted(
            scores in proptest::collection::vec((0u8..=2, 0u8..=2), 1..80),
            margin in 0.0f64..0.5,
            seed in 0u64..1000,
        ) {
            let current: Vec<f64> = scores.iter().map(|(c, _)| f64::from(*c) / 2.0).collect();
            let candidate: Vec<f64> = scores.iter().map(|(_, c)| f64::from(*c) / 2.0).collect();
            let d = decide(&current, &candidate, margin, seed);
            if d.candidate < d.current {
                proptest::prop_assert!(!d.promote, "{:?}", d);
            }
            if d.promote {
                proptest::prop_assert!(d.difference >= 0.0 && d.interval.0 >= -margin, "{:?}", d);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn scoring_stops_early_only_where_the_whole_holdout_would_reject(
            scores in proptest::collection::vec((0u8..=2, 0u8..=2), 1..80),
            seed in 0u64..1000,
        ) {
            let current: Vec<f64> = scores.iter().map(|(c, _)| f64::from(*c) / 2.0).collect();
            let candidate: Vec<f64> = scores.iter().map(|(_, c)| f64::from(*c) / 2.0).collect();
            let whole = decide(&current, &candidate, 0.05, seed);
            if let Some(k) = (0..=candidate.len()).find(|&k| out_of_reach(&current, &candidate[..k])) {
                proptest::prop_assert!(!whole.promote, "stopped after {} items, but the whole holdout promotes: {:?}", k, whole);
                let early = decide_out_of_reach(&current, &candidate[..k], 0.05, seed);
                proptest::prop_assert!(!early.promote && early.stopped_after == Some(k));
                proptest::prop_assert!(early.candidate >= whole.candidate && early.candidate < early.current, "{:?} {:?}", early, whole);
            } else {
                // Never out of reach: the candidate's total reaches the current program's.
                proptest::prop_assert!(whole.candidate >= whole.current - 1e-9, "{:?}", whole);
            }
        }
    }

    #[test]
    fn a_candidate_is_out_of_reach_once_a_perfect_rest_cannot_catch_up() {
        let current = [1.0, 1.0, 0.0, 0.0];
        assert!(!out_of_reach(&current, &[]));
        assert!(!out_of_reach(&current, &[0.0]), "right on the other three it would score 3 against 2");
        assert!(!out_of_reach(&current, &[0.0, 0.0]), "right on the other two it would tie");
        assert!(out_of_reach(&current, &[0.0, 0.0, 0.0]));
        assert!(!out_of_reach(&current, &[1.0, 1.0, 0.0, 0.0]), "a tie is never out of reach");
        let d = decide_out_of_reach(&current, &[0.0, 0.0, 0.0], 0.05, 1);
        assert!(!d.promote, "{d:?}");
        assert_eq!((d.current, d.candidate, d.items, d.stopped_after), (0.5, 0.25, 4, Some(3)));
        assert!(d.reason.contains("after 3 of 4 items") && d.reason.contains("at most 0.250"), "{}", d.reason);
        assert_eq!(decide(&current, &[1.0, 1.0, 0.0, 0.0], 0.05, 1).stopped_after, None);
        assert_eq!((at_most(d.stopped_after), at_most(None)), ("≤ ", ""), "a bound is marked, a score is not");
    }

    #[test]
    fn the_reported_power_shrinks_with_the_holdout_and_grows_with_disagreement() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let power = |n: usize, disagree: f64, rng: &mut ChaCha8Rng| {
            let (c, k) = paired(n, disagree / 2.0, disagree / 2.0, rng);
            decide(&c, &k, 0.02, 1).detectable.unwrap()
        };
        let (small, large) = (power(100, 0.3, &mut rng), power(400, 0.3, &mut rng));
        assert!(large < small * 0.6, "four times the items, about half the detectable difference: {small} vs {large}");
        assert!(power(400, 0.1, &mut rng) < large, "fewer disagreements, smaller detectable differences");
        // 200 items disagreeing on 30%: se ≈ √0.3/√200 ≈ 0.039, so about 2.49·0.039 − 0.02 ≈ 0.076.
        let mid = power(200, 0.3, &mut rng);
        assert!((0.06..0.095).contains(&mid), "{mid}");
        // No disagreement at all still claims no more than one disagreeing item would show.
        assert!(decide(&[1.0; 50], &[1.0; 50], 0.02, 1).detectable.unwrap() >= 0.841 / 50.0);
        assert_eq!(decide(&[1.0], &[1.0], 0.02, 1).detectable, None);
    }

    #[test]
    fn a_true_improvement_of_the_reported_size_is_promoted_about_four_times_in_five() {
        // The power the gate reports is checked by simulation: holdouts drawn with a true
        // improvement equal to it are promoted in about 80% of draws.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (c, k) = paired(200, 0.15, 0.15, &mut rng);
        let delta = decide(&c, &k, 0.02, 1).detectable.unwrap();
        let trials = 120;
        let promoted = (0..trials)
            .filter(|t| {
                let (c, k) = paired(200, 0.15 + delta / 2.0, 0.15 - delta / 2.0, &mut rng);
                decide(&c, &k, 0.02, *t).promote
            })
            .count();
        let rate = promoted as f64 / trials as f64;
        assert!((0.68..0.92).contains(&rate), "promoted {promoted} of {trials} at a true improvement of {delta:.3}");
    }

    #[test]
    fn an_empty_holdout_promotes_nothing() {
        assert!(!decide(&[], &[], 0.1, 0).promote);
    }
}
