//! **Label scoring:** how the log-probabilities of a constrained choice become a decision.
//! The model gives each allowed label the sum of its tokens' log-probabilities; a step's
//! [`LabelScoring`] adjusts those sums before the best label is taken. The compiler picks the
//! mode per step and stores its numbers in the artifact; the trace keeps raw and adjusted
//! scores. Fitting the numbers is the compiler's business, not this file's.
//!
//! - `sum`: the raw sum (long labels pay for every token; the model's prior stays).
//! - `length_normalized`: the mean log-probability per token.
//! - `calibrated`: the raw sum minus the log-probability the model gives the label when the
//!   input carries no content ("N/A", ""), averaged over such inputs (contextual calibration,
//!   Zhao et al. 2021, "Calibrate before use"): the model's prior toward a label is divided out.
//! - `learned_bias`: `scale × sum + bias[label]`, a multinomial logistic model over the raw
//!   scores fitted on labelled examples (a handful of numbers: one per label and the scale).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Adjust, ChoiceBounds};

/// How far a constrained choice scores its labels. Only the winner decides the answer, so by
/// default a label is dropped as soon as its partial log-probability shows it cannot win
/// (exact: see [`crate::model::ChoiceBounds`]); its trace entry then holds an upper bound,
/// marked `pruned`. The compiler, which rescores runs under modes fitted afterwards, asks for
/// every label in full where it needs them.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelPruning {
    /// Every label scored in full: traces keep every label's log-probability.
    Off,
    /// Labels dropped once they cannot win under the step's own scoring nor any of `also`
    /// (whose winners come back exact too, so traces can be rescored under them).
    Decision {
        /// Further modes whose winners must be exact.
        also: Vec<LabelScoring>,
    },
}

impl Default for LabelPruning {
    fn default() -> Self {
        LabelPruning::Decision { also: Vec::new() }
    }
}

impl LabelPruning {
    /// The bounds of a choice among `labels` decided by `own`, or `None` when every label is
    /// to be scored in full.
    pub fn bounds(&self, own: &LabelScoring, labels: &[String]) -> Option<ChoiceBounds> {
        match self {
            LabelPruning::Off => None,
            LabelPruning::Decision { also } => {
                let mut modes = vec![own.adjustments(labels)];
                for m in also {
                    let a = m.adjustments(labels);
                    if !modes.contains(&a) {
                        modes.push(a);
                    }
                }
                Some(ChoiceBounds { modes })
            }
        }
    }
}

/// How a step turns label log-probabilities into a decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LabelScoring {
    /// The sum of the label's token log-probabilities, as the model gives it.
    #[default]
    Sum,
    /// The mean log-probability per token of the label.
    LengthNormalized,
    /// The sum minus `content_free[label]`: the log of the probability (normalized over the
    /// labels) the model gives the label for content-free inputs, averaged over those inputs.
    Calibrated {
        /// Per label, `log p(label | content-free input)`, at most 0.
        content_free: BTreeMap<String, f64>,
    },
    /// `scale × sum + bias[label]`, fitted on labelled examples.
    LearnedBias {
        /// What the raw sum is multiplied by (0 ignores the model: a constant answer).
        scale: f64,
        /// Per label, what is added.
        bias: BTreeMap<String, f64>,
    },
}

impl LabelScoring {
    /// The mode's name as the artifact writes it.
    pub fn name(&self) -> &'static str {
        match self {
            LabelScoring::Sum => "sum",
            LabelScoring::LengthNormalized => "length_normalized",
            LabelScoring::Calibrated { .. } => "calibrated",
            LabelScoring::LearnedBias { .. } => "learned_bias",
        }
    }

    /// Whether the scores are used as the model gives them.
    pub fn is_sum(&self) -> bool {
        *self == LabelScoring::Sum
    }

    /// How many numbers the mode carries (how much it was fitted): a simpler mode is
    /// preferred when two are not told apart by the data.
    pub fn complexity(&self) -> usize {
        match self {
            LabelScoring::Sum => 0,
            LabelScoring::LengthNormalized => 1,
            LabelScoring::Calibrated { content_free } => 1 + content_free.len(),
            LabelScoring::LearnedBias { bias, .. } => 2 + bias.len(),
        }
    }

    /// The adjusted score of each label: `raw[i]` is the sum of label `labels[i]`'s token
    /// log-probabilities and `tokens[i]` its length in tokens. A label the mode has no
    /// number for (which [`LabelScoring::check`] refuses) keeps its raw score.
    pub fn apply(&self, labels: &[String], raw: &[f32], tokens: &[u32]) -> Vec<f32> {
        labels
            .iter()
            .zip(raw)
            .enumerate()
            .map(|(i, (label, &s))| {
                let s = f64::from(s);
                let adjusted = match self {
                    LabelScoring::Sum => s,
                    LabelScoring::LengthNormalized => s / f64::from(tokens.get(i).copied().unwrap_or(1).max(1)),
                    LabelScoring::Calibrated { content_free } => s - content_free.get(label).copied().unwrap_or(0.0),
                    LabelScoring::LearnedBias { scale, bias } => scale * s + bias.get(label).copied().unwrap_or(0.0),
                };
                adjusted as f32
            })
            .collect()
    }

    /// The mode as the model's bounded choice takes it: one adjustment per label, giving the
    /// same number [`LabelScoring::apply`] does (`scale × sum / tokens + offset`, in f64,
    /// rounded to f32), so a choice pruned under these bounds picks the label this mode would.
    pub fn adjustments(&self, labels: &[String]) -> Vec<Adjust> {
        labels
            .iter()
            .map(|label| match self {
                LabelScoring::Sum => Adjust::SUM,
                LabelScoring::LengthNormalized => Adjust { scale: 1.0, per_token: true, offset: 0.0 },
                LabelScoring::Calibrated { content_free } => Adjust { scale: 1.0, per_token: false, offset: -content_free.get(label).copied().unwrap_or(0.0) },
                LabelScoring::LearnedBias { scale, bias } => Adjust { scale: *scale, per_token: false, offset: bias.get(label).copied().unwrap_or(0.0) },
            })
            .collect()
    }

    /// The index of the label with the best adjusted score (the first of equals).
    pub fn decide(&self, labels: &[String], raw: &[f32], tokens: &[u32]) -> usize {
        best(&self.apply(labels, raw, tokens))
    }

    /// Checks the mode's numbers against a step's labels: one finite number per label and no
    /// others, content-free log-probabilities at most 0, a finite scale of at least 0. The
    /// error says what is wrong, naming the label.
    pub fn check(&self, labels: &[String]) -> Result<(), String> {
        let per_label = |what: &str, map: &BTreeMap<String, f64>| -> Result<(), String> {
            if let Some(l) = labels.iter().find(|l| !map.contains_key(*l)) {
                return Err(format!("`{what}` has no number for label `{l}`"));
            }
            if let Some(k) = map.keys().find(|k| !labels.contains(k)) {
                return Err(format!("`{what}` names `{k}`, which is not one of the labels ({})", labels.join(", ")));
            }
            if let Some((k, v)) = map.iter().find(|(_, v)| !v.is_finite()) {
                return Err(format!("`{what}.{k}` is {v}, not a finite number"));
            }
            Ok(())
        };
        match self {
            LabelScoring::Sum | LabelScoring::LengthNormalized => Ok(()),
            LabelScoring::Calibrated { content_free } => {
                per_label("content_free", content_free)?;
                match content_free.iter().find(|(_, v)| **v > 0.0) {
                    Some((k, v)) => Err(format!("`content_free.{k}` is {v}; a log-probability is at most 0")),
                    None => Ok(()),
                }
            }
            LabelScoring::LearnedBias { scale, bias } => {
                per_label("bias", bias)?;
                if !scale.is_finite() || *scale < 0.0 {
                    return Err(format!("`scale` is {scale}; it must be a finite number of at least 0"));
                }
                Ok(())
            }
        }
    }
}

/// The index of the largest score (the first of equals; NaN never wins).
pub fn best(scores: &[f32]) -> usize {
    let mut at = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[at] || scores[at].is_nan() {
            at = i;
        }
    }
    at
}

/// The content-free correction from the raw scores of content-free prompts (one row per
/// prompt, in label order): each row is turned into probabilities over the labels, the rows
/// are averaged, and the log is taken. `None` without rows.
pub fn content_free(labels: &[String], rows: &[Vec<f32>]) -> Option<BTreeMap<String, f64>> {
    if rows.is_empty() || rows.iter().any(|r| r.len() != labels.len()) {
        return None;
    }
    let mut mean = vec![0.0f64; labels.len()];
    for row in rows {
        for (m, p) in mean.iter_mut().zip(softmax(&row.iter().map(|&s| f64::from(s)).collect::<Vec<_>>())) {
            *m += p / rows.len() as f64;
        }
    }
    // A probability that underflowed still gets a finite (very negative) log.
    Some(labels.iter().cloned().zip(mean.into_iter().map(|p| p.max(1e-300).ln().min(0.0))).collect())
}

/// Probabilities from scores: `exp(s_i) / Σ exp(s_j)`, computed stably.
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0 / scores.len().max(1) as f64; scores.len()];
    }
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["joy".into(), "sadness".into(), "not_ironic".into()]
    }

    /// Raw sums and lengths for one prompt, written out by hand: `joy` is one token at
    /// log-probability -1.2; `sadness` two tokens, -0.9 and -0.3; `not_ironic` three tokens,
    /// -0.7, -0.2 and -0.1.
    const RAW: [f32; 3] = [-1.2, -1.2, -1.0];
    const TOKENS: [u32; 3] = [1, 2, 3];

    fn check(mode: &LabelScoring, want: [f32; 3], winner: &str) {
        let got = mode.apply(&labels(), &RAW, &TOKENS);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{}: got {got:?}, want {want:?}", mode.name());
        }
        assert_eq!(labels()[mode.decide(&labels(), &RAW, &TOKENS)], winner, "{}", mode.name());
    }

    #[test]
    fn sum_keeps_the_models_log_probabilities() {
        check(&LabelScoring::Sum, [-1.2, -1.2, -1.0], "not_ironic");
    }

    #[test]
    fn length_normalized_takes_the_mean_per_token() {
        // -1.2 / 1, -1.2 / 2, -1.0 / 3.
        check(&LabelScoring::LengthNormalized, [-1.2, -0.6, -1.0 / 3.0], "not_ironic");
        let long_loses_under_sum = [-0.5f32, -0.9];
        let l2: Vec<String> = vec!["a".into(), "b_c_d".into()];
        assert_eq!(LabelScoring::Sum.decide(&l2, &long_loses_under_sum, &[1, 3]), 0);
        assert_eq!(LabelScoring::LengthNormalized.decide(&l2, &long_loses_under_sum, &[1, 3]), 1, "-0.9 / 3 = -0.3 beats -0.5");
    }

    #[test]
    fn calibrated_subtracts_the_content_free_log_probability() {
        // Content-free prompts: "N/A" gives the labels -0.5, -1.5, -3.0; "" gives -1.0, -1.0,
        // -2.0. Normalized over the labels (softmax) and averaged, then logged.
        let rows = vec![vec![-0.5f32, -1.5, -3.0], vec![-1.0f32, -1.0, -2.0]];
        let p1 = {
            let e = [(-0.5f64).exp(), (-1.5f64).exp(), (-3.0f64).exp()];
            let t: f64 = e.iter().sum();
            e.map(|x| x / t)
        };
        let p2 = {
            let e = [(-1.0f64).exp(), (-1.0f64).exp(), (-2.0f64).exp()];
            let t: f64 = e.iter().sum();
            e.map(|x| x / t)
        };
        let cf: Vec<f64> = (0..3).map(|i| ((p1[i] + p2[i]) / 2.0).ln()).collect();
        // By hand: p1 = (0.6897, 0.2537, 0.0566), p2 = (0.4223, 0.4223, 0.1554);
        // mean = (0.5560, 0.3380, 0.1060); logs = (-0.5870, -1.0847, -2.2443).
        for (c, want) in cf.iter().zip([-0.5870, -1.0847, -2.2443]) {
            assert!((c - want).abs() < 1e-3, "{cf:?}");
        }
        let table = content_free(&labels(), &rows).unwrap();
        for (l, c) in labels().iter().zip(&cf) {
            assert!((table[l] - c).abs() < 1e-9);
        }
        let mode = LabelScoring::Calibrated { content_free: table };
        // -1.2 + 0.5870, -1.2 + 1.0847, -1.0 + 2.2443: the label the model favours without
        // content pays for it, and the rare one wins.
        check(&mode, [-0.6130, -0.1153, 1.2443], "not_ironic");
        let flat = LabelScoring::Calibrated { content_free: labels().into_iter().map(|l| (l, (1.0f64 / 3.0).ln())).collect() };
        assert_eq!(flat.decide(&labels(), &[-2.0, -0.1, -3.0], &TOKENS), 1, "a uniform prior changes no decision");
    }

    #[test]
    fn learned_bias_scales_and_shifts_each_label() {
        let bias = BTreeMap::from([("joy".to_string(), 0.4), ("sadness".to_string(), 1.0), ("not_ironic".to_string(), -0.5)]);
        // 0.5 × -1.2 + 0.4, 0.5 × -1.2 + 1.0, 0.5 × -1.0 - 0.5.
        check(&LabelScoring::LearnedBias { scale: 0.5, bias: bias.clone() }, [-0.2, 0.4, -1.0], "sadness");
        // Scale 0 ignores the model: the label with the largest bias always wins.
        let constant = LabelScoring::LearnedBias { scale: 0.0, bias };
        assert_eq!(constant.decide(&labels(), &[0.0, -50.0, 0.0], &TOKENS), 1);
    }

    #[test]
    fn numbers_that_do_not_fit_the_labels_are_refused_by_name() {
        let ok = BTreeMap::from([("joy".to_string(), -1.0), ("sadness".to_string(), -0.5), ("not_ironic".to_string(), -2.0)]);
        assert!(LabelScoring::Calibrated { content_free: ok.clone() }.check(&labels()).is_ok());
        let mut missing = ok.clone();
        missing.remove("sadness");
        assert_eq!(LabelScoring::Calibrated { content_free: missing }.check(&labels()).unwrap_err(), "`content_free` has no number for label `sadness`");
        let mut extra = ok.clone();
        extra.insert("anger".into(), -1.0);
        assert!(LabelScoring::LearnedBias { scale: 1.0, bias: extra }.check(&labels()).unwrap_err().contains("`anger`, which is not one of the labels"));
        let mut positive = ok.clone();
        positive.insert("joy".into(), 0.3);
        assert!(LabelScoring::Calibrated { content_free: positive }.check(&labels()).unwrap_err().contains("at most 0"));
        let mut nan = ok.clone();
        nan.insert("joy".into(), f64::NAN);
        assert!(LabelScoring::LearnedBias { scale: 1.0, bias: nan }.check(&labels()).unwrap_err().contains("`bias.joy` is NaN"));
        assert!(LabelScoring::LearnedBias { scale: -1.0, bias: ok }.check(&labels()).unwrap_err().contains("`scale` is -1"));
    }

    #[test]
    fn the_mode_is_tagged_in_json_and_sum_is_the_default() {
        let mode = LabelScoring::LearnedBias { scale: 1.0, bias: BTreeMap::from([("a".to_string(), 0.5)]) };
        let v = serde_json::to_value(&mode).unwrap();
        assert_eq!(v, serde_json::json!({"mode": "learned_bias", "scale": 1.0, "bias": {"a": 0.5}}));
        assert_eq!(serde_json::from_value::<LabelScoring>(v).unwrap(), mode);
        assert_eq!(serde_json::to_value(LabelScoring::LengthNormalized).unwrap(), serde_json::json!({"mode": "length_normalized"}));
        assert_eq!(LabelScoring::default(), LabelScoring::Sum);
    }
}
