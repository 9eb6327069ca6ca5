//! Honest selection: which candidate to ship, given each candidate's per-example scores on
//! one evaluation set. With a few dozen examples, differences of a few examples are noise, so:
//!
//! - every candidate gets a seeded bootstrap confidence interval (95%, percentile);
//! - among the candidates not told apart from the best (the one-standard-error rule: the
//!   best's mean lead over it, paired by example, is at most one bootstrap standard error),
//!   the simplest is chosen;
//! - the result is never worse than a guard (the best constant answer, the program as
//!   written): if it would be, the best guard is shipped instead.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Bootstrap resamples for intervals and standard errors.
const RESAMPLES: usize = 1000;

/// A candidate for selection.
#[derive(Clone, Debug, PartialEq)]
pub struct Entrant {
    /// How simple it is: lower is simpler (compared as a tuple: demos, then scoring).
    pub complexity: (u32, u32),
    /// Its score on each example of the evaluation set (`None`: not evaluated there, e.g. the
    /// example is one of its fixed demos).
    pub scores: Vec<Option<f64>>,
    /// Whether it is a guard: never chosen for being simple, shipped only when nothing
    /// chosen is at least as good.
    pub guard: bool,
}

/// What selection found for one entrant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The mean score over the examples it was evaluated on.
    pub mean: f64,
    /// The 95% bootstrap interval of the mean.
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// Examples it was evaluated on.
    pub n: usize,
}

/// The outcome: the index of the entrant to ship, why, and a summary per entrant.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The entrant shipped.
    pub chosen: usize,
    /// The entrant with the best mean (among non-guards).
    pub best: usize,
    /// Why `chosen` was shipped, for people.
    pub reason: String,
    /// Per entrant, in input order.
    pub summaries: Vec<Summary>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Bootstrap means of `v` (seeded).
fn resample_means(v: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    if v.is_empty() {
        return vec![0.0; RESAMPLES];
    }
    (0..RESAMPLES).map(|_| (0..v.len()).map(|_| v[rng.random_range(0..v.len())]).sum::<f64>() / v.len() as f64).collect()
}

/// The mean and 95% percentile bootstrap interval of `v`.
pub fn summarize(v: &[f64], rng: &mut ChaCha8Rng) -> Summary {
    let mut means = resample_means(v, rng);
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Summary { mean: mean(v), low: at(0.025), high: at(0.975), n: v.len() }
}

/// The paired differences `a − b` on the examples both were evaluated on.
fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter().zip(b).filter_map(|(x, y)| Some((*x)? - (*y)?)).collect()
}

/// The bootstrap standard error of the mean of `v`.
fn standard_error(v: &[f64], rng: &mut ChaCha8Rng) -> f64 {
    let means = resample_means(v, rng);
    let m = mean(&means);
    (means.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (means.len().max(2) - 1) as f64).sqrt()
}

/// Chooses among `entrants` (at least one non-guard). Ties go to the earlier entrant.
pub fn choose(entrants: &[Entrant], rng: &mut ChaCha8Rng) -> Verdict {
    let values: Vec<Vec<f64>> = entrants.iter().map(|e| e.scores.iter().flatten().copied().collect()).collect();
    let summaries: Vec<Summary> = values.iter().map(|v| summarize(v, rng)).collect();
    let contenders: Vec<usize> = (0..entrants.len()).filter(|&i| !entrants[i].guard).collect();
    let by_mean = |a: &usize, b: &usize| summaries[*a].mean.total_cmp(&summaries[*b].mean).then(b.cmp(a));
    let Some(best) = contenders.iter().copied().max_by(by_mean) else {
        return Verdict { chosen: 0, best: 0, reason: "nothing to choose from".into(), summaries };
    };
    // The one-standard-error rule, paired by example.
    let close: Vec<usize> = contenders
        .iter()
        .copied()
        .filter(|&i| {
            let d = paired(&entrants[best].scores, &entrants[i].scores);
            i == best || mean(&d) <= standard_error(&d, rng)
        })
        .collect();
    let simplest = close
        .iter()
        .copied()
        .min_by(|&a, &b| entrants[a].complexity.cmp(&entrants[b].complexity).then(summaries[b].mean.total_cmp(&summaries[a].mean)).then(a.cmp(&b)))
        .unwrap_or(best);
    let mut reason = if simplest == best {
        "the best mean score".to_string()
    } else {
        format!(
            "the simplest candidate within one standard error of the best ({:.3} against {:.3}: the difference is not significant)",
            summaries[simplest].mean, summaries[best].mean
        )
    };
    let mut chosen = simplest;
    // A guard beating the choice (on its mean) is shipped instead, the best guard first.
    let guards = (0..entrants.len()).filter(|&i| entrants[i].guard);
    if let Some(g) = guards.max_by(by_mean) {
        if summaries[g].mean > summaries[chosen].mean {
            reason = format!(
                "nothing chosen beats it: the choice scored {:.3} against its {:.3}, so the guard is shipped",
                summaries[chosen].mean, summaries[g].mean
            );
            chosen = g;
        }
    }
    Verdict { chosen, best, reason, summaries }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn entrant(complexity: (u32, u32), right: &[u8], guard: bool) -> Entrant {
        Entrant { complexity, scores: right.iter().map(|&r| Some(f64::from(r))).collect(), guard }
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(3)
    }

    /// `hits` ones then zeros, `n` long.
    fn hits(hits: usize, n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::from(i < hits)).collect()
    }

    #[test]
    fn a_candidate_worse_than_the_majority_label_on_dev_is_refused() {
        // On 60 dev examples the majority label is right 36 times; the compiled candidate 30.
        let majority = entrant((0, 0), &hits(36, 60), true);
        let written = entrant((0, 0), &hits(24, 60), false);
        let compiled = entrant((1, 3), &hits(30, 60), false);
        let v = choose(&[written, compiled, majority], &mut rng());
        assert_eq!(v.chosen, 2, "{v:?}");
        assert!(v.reason.contains("the guard is shipped"), "{}", v.reason);
    }

    #[test]
    fn a_clear_winner_is_chosen_over_a_simpler_one() {
        let written = entrant((0, 0), &hits(20, 100), false);
        let compiled = entrant((1, 3), &hits(60, 100), false);
        let v = choose(&[written, compiled], &mut rng());
        assert_eq!((v.chosen, v.best), (1, 1), "{v:?}");
        assert!(v.summaries[1].low < 0.6 && v.summaries[1].high > 0.6 && v.summaries[1].high - v.summaries[1].low < 0.25, "{v:?}");
    }

    #[test]
    fn a_lead_of_one_example_goes_to_the_simpler_candidate() {
        // 31/60 against 30/60: the candidates disagree on nine examples, five to four.
        let mut a = hits(30, 60);
        a[..4].fill(0);
        a[30..35].fill(1);
        let v = choose(&[entrant((0, 0), &hits(30, 60), false), entrant((1, 3), &a, false)], &mut rng());
        assert_eq!((v.chosen, v.best), (0, 1), "{v:?}");
        assert!(v.reason.contains("not significant"), "{}", v.reason);
    }

    #[test]
    fn examples_a_candidate_was_not_scored_on_are_left_out_of_its_mean() {
        let e = Entrant { complexity: (0, 0), scores: vec![Some(1.0), None, Some(0.0), Some(1.0)], guard: false };
        let v = choose(&[e], &mut rng());
        assert_eq!(v.summaries[0].n, 3);
        assert!((v.summaries[0].mean - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_same_seed_gives_the_same_intervals() {
        let e = [entrant((0, 0), &hits(13, 40), false), entrant((0, 1), &hits(17, 40), false)];
        assert_eq!(choose(&e, &mut rng()), choose(&e, &mut rng()));
    }
}
