//! **Learning:** closes the loop. Stored feedback becomes labelled data (`export`, reading
//! every piece through the one rule of `opinion`), a round compiles a candidate warm-started
//! from the current artifact and keeps it only if it is not worse on a frozen human holdout
//! (`round`, `gate`), and every version, its lineage and the feedback behind it is recorded
//! (`record`) and can be audited or forgotten (`audit`). The policies of learning while
//! serving live here too: when a round is due and who learns (`schedule`), and how a canary
//! is judged by live feedback (`canary`); `serve` only runs them on a timer.
//!
//! Learning reads the store and drives the compiler; the runtime, the model and the store
//! know nothing of it. The same [`learn`] runs for `loopc learn`, `serve --learn-every` and
//! `loopc bench loop`, all from [`RoundSettings::DEFAULT`].

mod audit;
mod canary;
pub mod export;
pub mod gate;
pub mod human;
pub mod memory;
pub mod opinion;
mod record;
mod round;
mod schedule;
#[cfg(test)]
mod test_runs;
pub mod trust;

pub use self::audit::{conclude_canary, current, forget, history, why, Version, Why, WhyDemo, WhyLearned};
pub use self::canary::{judge_canary, CanaryJudgement, CanaryRules, Tally};
pub use self::export::{export, Export, ExportOptions, Row, RowKind, RowProvenance};
pub use self::gate::{decide, Decision};
pub use self::memory::{Memory, SyncReport};
pub use self::opinion::{opinion, Opinion, Said, Voice};
pub use self::record::{Verdict, VersionRecord};
pub use self::round::{learn, Current, Outcome, Round, RoundSettings, HOLDOUT_PHASE, MIN_GOLD_ROWS};
pub use self::schedule::{due, learning_turn, Trigger, Turn, LEASE};
pub use self::trust::{RaterTrust, TrustTable};

/// Why learning could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// Occurs when the store fails.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Occurs when a program or artifact cannot be loaded.
    #[error(transparent)]
    Load(#[from] crate::runtime::LoadError),
    /// Occurs when an artifact cannot be read.
    #[error(transparent)]
    Artifact(#[from] crate::runtime::artifact::ArtifactError),
    /// Occurs when the compile fails.
    #[error(transparent)]
    Compile(#[from] crate::compile::CompileError),
    /// Occurs when the metric cannot score.
    #[error(transparent)]
    Metric(#[from] crate::compile::MetricError),
    /// Occurs when `human("KEY")` names a feedback the program does not declare.
    #[error("`human(\"{criterion}\")` scores by the stored feedback `{criterion}`, which the program does not declare (its feedback: {declared})")]
    UnknownCriterion {
        /// The key asked for.
        criterion: String,
        /// The keys declared.
        declared: String,
    },
    /// Occurs when `human("KEY")` names a feedback without a range to normalise from.
    #[error(
        "`human(\"{criterion}\")` scores by the feedback `{criterion}`, which has no range to score from: declare it `bool`, `int(1..5)` or `float(0..1)`"
    )]
    UnboundedCriterion {
        /// The key asked for.
        criterion: String,
    },
    /// Occurs when an LM judge agrees with people too rarely (or on too few runs) to be used.
    #[error(
        "the judge `{metric}` agrees with people on {agreement:.2} of {items} rated runs; a round uses a judge only from {threshold:.2} on {min_items} runs or more (rate more runs, improve its rubric, or lower --judge-min-agreement)"
    )]
    JudgeUncalibrated {
        /// The judge metric.
        metric: String,
        /// The share of rated runs it agrees on.
        agreement: f64,
        /// Rated runs it scored.
        items: usize,
        /// The agreement needed.
        threshold: f64,
        /// The rated runs needed.
        min_items: usize,
    },
    /// Occurs when there is no holdout to judge a candidate on.
    #[error("no holdout: pass a human-labelled file with --holdout, or reserve a share of the stored corrections with --holdout-share")]
    NoHoldout,
    /// Occurs when the store has too few human labels to learn from.
    #[error("only {gold} human-labelled input(s) in the store; learning needs at least {needed} (corrections, or edits)")]
    NotEnoughData {
        /// Human-labelled rows found.
        gold: usize,
        /// Rows needed.
        needed: usize,
    },
}
