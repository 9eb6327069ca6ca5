//! Fitting label scoring modes (see [`crate::runtime::scoring`]) from raw label scores: the
//! learned per-label bias (an L2-regularized multinomial logistic fit, by Newton's method)
//! and the inputs used for contextual calibration.

use std::collections::BTreeMap;

use crate::runtime::scoring::{softmax, LabelScoring};

/// The content-free values a calibrated step's text inputs are replaced with (Zhao et al.
/// 2021 average over "N/A", "" and "[MASK]").
pub const CONTENT_FREE: [&str; 3] = ["N/A", "", "[MASK]"];

/// L2 strength of the learned bias: the penalty is `λ/2 (Σ bias² + (scale − 1)²)` against a
/// log-likelihood summed over examples, so a label seen a few times moves its bias by about
/// one unit and an unseen label is pulled only gently toward the others.
pub const LAMBDA: f64 = 1.0;

/// Raw scores below this are clamped: a label the model rules out entirely (minus infinity)
/// would otherwise make the fit undefined.
const FLOOR: f64 = -100.0;

/// One labelled example for the fit: the raw score of each label and the right label's index.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Raw scores in label order.
    pub raw: Vec<f32>,
    /// The index of the right label.
    pub truth: usize,
}

/// Fits `scale × raw + bias[label]` to `examples` by maximum penalized likelihood (softmax
/// over the labels, penalty [`LAMBDA`]). The scale is kept at 0 or more. Deterministic.
pub fn fit_bias(labels: &[String], examples: &[Scored]) -> LabelScoring {
    let l = labels.len();
    let rows: Vec<(Vec<f64>, usize)> =
        examples.iter().filter(|e| e.raw.len() == l && e.truth < l).map(|e| (e.raw.iter().map(|&s| f64::from(s).max(FLOOR)).collect(), e.truth)).collect();
    // Parameters: bias[0..l], then the scale.
    let mut theta = vec![0.0; l + 1];
    theta[l] = 1.0;
    let objective = |t: &[f64]| -> f64 {
        let nll: f64 = rows
            .iter()
            .map(|(s, y)| {
                let z: Vec<f64> = s.iter().zip(&t[..l]).map(|(s, b)| t[l] * s + b).collect();
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - z[*y]
            })
            .sum();
        nll + LAMBDA / 2.0 * (t[..l].iter().map(|b| b * b).sum::<f64>() + (t[l] - 1.0).powi(2))
    };
    for _ in 0..50 {
        let mut grad = vec![0.0; l + 1];
        let mut hess = vec![vec![0.0; l + 1]; l + 1];
        for (s, y) in &rows {
            let z: Vec<f64> = s.iter().zip(&theta[..l]).map(|(s, b)| theta[l] * s + b).collect();
            let p = softmax(&z);
            let ps: f64 = p.iter().zip(s).map(|(p, s)| p * s).sum();
            let pss: f64 = p.iter().zip(s).map(|(p, s)| p * s * s).sum();
            for j in 0..l {
                grad[j] += p[j] - f64::from(u8::from(j == *y));
                for k in 0..l {
                    hess[j][k] += if j == k { p[j] - p[j] * p[k] } else { -p[j] * p[k] };
                }
                let cross = p[j] * s[j] - p[j] * ps;
                hess[j][l] += cross;
                hess[l][j] += cross;
            }
            grad[l] += ps - s[*y];
            hess[l][l] += pss - ps * ps;
        }
        for (j, g) in grad.iter_mut().enumerate() {
            let anchor = if j == l { 1.0 } else { 0.0 };
            *g += LAMBDA * (theta[j] - anchor);
            hess[j][j] += LAMBDA;
        }
        let Some(step) = solve(hess, grad.clone()) else { break };
        // Backtracking keeps every step an improvement (Newton can overshoot far from the optimum).
        let before = objective(&theta);
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..30 {
            let mut next: Vec<f64> = theta.iter().zip(&step).map(|(th, d)| th - t * d).collect();
            next[l] = next[l].max(0.0);
            if objective(&next) <= before {
                theta = next;
                moved = true;
                break;
            }
            t /= 2.0;
        }
        let size: f64 = step.iter().map(|d| d * d).sum::<f64>().sqrt() * t;
        if !moved || size < 1e-9 {
            break;
        }
    }
    // Rounded so the artifact reads well and small float noise never changes its bytes.
    let round = |x: f64| (x * 1e6).round() / 1e6;
    LabelScoring::LearnedBias { scale: round(theta[l]), bias: labels.iter().cloned().zip(theta[..l].iter().map(|&b| round(b))).collect() }
}

/// A learned bias that ignores the model and always answers `label`: the best constant answer
/// as a scoring mode (scale 0, bias 1 for that label and 0 for the others).
pub fn constant(labels: &[String], label: usize) -> LabelScoring {
    LabelScoring::LearnedBias {
        scale: 0.0,
        bias: labels.iter().enumerate().map(|(i, l)| (l.clone(), f64::from(u8::from(i == label)))).collect::<BTreeMap<_, _>>(),
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` if singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            if f != 0.0 {
                let (above, below) = a.split_at_mut(row);
                for (x, p) in below[0][col..n].iter_mut().zip(&above[col][col..n]) {
                    *x -= f * p;
                }
                b[row] -= f * b[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn bias_of(mode: &LabelScoring) -> (f64, BTreeMap<String, f64>) {
        match mode {
            LabelScoring::LearnedBias { scale, bias } => (*scale, bias.clone()),
            other => panic!("not a learned bias: {other:?}"),
        }
    }

    #[test]
    fn a_model_biased_toward_one_label_is_corrected() {
        // The model always prefers `a` by 1 nat, but the truth is `b` whenever `b` comes within
        // 1.5 nats: a bias toward `b` fixes most of it.
        let mut examples = Vec::new();
        for i in 0..40 {
            let gap = -1.0 + f64::from(i) * 0.1; // b − a from -1.0 to 2.9
            let truth = usize::from(gap > -1.5 + 1.0);
            examples.push(Scored { raw: vec![-1.0, (-1.0 + gap) as f32 - 1.0], truth });
        }
        let mode = fit_bias(&labels(), &examples);
        let (scale, bias) = bias_of(&mode);
        assert!(scale > 0.5, "{scale}");
        assert!(bias["b"] > bias["a"], "{bias:?}");
        let right = |m: &LabelScoring| examples.iter().filter(|e| m.decide(&labels(), &e.raw, &[1, 1]) == e.truth).count();
        assert!(right(&mode) > right(&LabelScoring::Sum), "{} vs {}", right(&mode), right(&LabelScoring::Sum));
        assert_eq!(mode.check(&labels()), Ok(()));
    }

    #[test]
    fn the_fit_matches_the_optimum_found_by_hand() {
        // Equal raw scores carry no information: the scale stays at its anchor, 1.
        // One example per label: by symmetry the biases are equal.
        let examples = vec![Scored { raw: vec![-1.0, -1.0], truth: 0 }, Scored { raw: vec![-1.0, -1.0], truth: 1 }];
        let (scale, bias) = bias_of(&fit_bias(&labels(), &examples));
        assert!((bias["a"] - bias["b"]).abs() < 1e-6, "{bias:?}");
        assert!((scale - 1.0).abs() < 1e-6, "{scale}");
        // Three examples of `a`, one of `b`: the gradients 4p_a − 3 + b_a = 0 and
        // 4p_b − 1 + b_b = 0 give b_a = −b_b = β with 4σ(2β) − 3 + β = 0, solved by hand
        // (bisection): β = 0.34181, σ(2β) = 0.66455.
        let skewed = vec![
            Scored { raw: vec![-1.0, -1.0], truth: 0 },
            Scored { raw: vec![-1.0, -1.0], truth: 0 },
            Scored { raw: vec![-1.0, -1.0], truth: 0 },
            Scored { raw: vec![-1.0, -1.0], truth: 1 },
        ];
        let (scale, bias) = bias_of(&fit_bias(&labels(), &skewed));
        assert!((bias["a"] - 0.34181).abs() < 1e-4, "{bias:?}");
        assert!((bias["b"] + 0.34181).abs() < 1e-4, "{bias:?}");
        assert!((scale - 1.0).abs() < 1e-6, "{scale}");
    }

    #[test]
    fn a_constant_answer_ignores_the_model() {
        let mode = constant(&labels(), 1);
        assert_eq!(mode.decide(&labels(), &[-0.1, -9.0], &[1, 1]), 1);
        assert_eq!(mode.check(&labels()), Ok(()));
    }
}
