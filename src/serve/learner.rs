//! Learning while serving (`serve --learn-every`): a background task that keeps every replica
//! on the version the store says is current, learns when enough new runs came in (or enough
//! time passed), and swaps in what the gate promotes — without dropping or failing a request.
//!
//! The policies are learning's: when a round is due and which replica learns
//! ([`learn::learning_turn`]), and how a canary is judged ([`learn::judge_canary`]). This task
//! only schedules them, loads what they promote and swaps it in. Several replicas on one store
//! cooperate: one learner at a time, by a lease in the store; the others pick up a promoted
//! version when they next look. With `--explore SHARE`, a candidate the gate passes first
//! serves that share of traffic as a canary until live feedback decides.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::ServeError;
use super::metrics::Metrics;
use super::service::{load_version, Service};
use crate::compile::Dataset;
use crate::graph::OptimizerSettings;
use crate::learn::{self, CanaryJudgement, CanaryRules, LearnError, Round, RoundSettings, Trigger, Turn};
use crate::runtime::Engine;

/// How the background learner works. The round's and the canary's defaults are learning's
/// own ([`RoundSettings::DEFAULT`], [`CanaryRules::DEFAULT`]).
#[derive(Clone, Debug)]
pub struct LearnLoop {
    /// When to learn.
    pub trigger: Trigger,
    /// A human-labelled holdout, if given.
    pub holdout: Option<Dataset>,
    /// The rounds' knobs (margin, concurrency, rows, judge agreement, holdout share).
    pub round: RoundSettings,
    /// Search settings over the program's own for the rounds' compiles.
    pub search: OptimizerSettings,
    /// Send this share of traffic to a passed candidate before promoting it.
    pub explore: Option<f64>,
    /// How a canary is judged.
    pub canary: CanaryRules,
    /// How often to look at the store.
    pub poll: Duration,
    /// This replica's name, as the lease holder.
    pub replica: String,
    /// Told what each turn did, except idle ones (the CLI prints it; the library never does).
    pub report: Reporter,
}

impl LearnLoop {
    /// A loop with `trigger` and defaults for the rest.
    pub fn new(trigger: Trigger) -> LearnLoop {
        LearnLoop {
            trigger,
            holdout: None,
            round: RoundSettings::DEFAULT,
            search: OptimizerSettings::default(),
            explore: None,
            canary: CanaryRules::DEFAULT,
            poll: Duration::from_secs(10),
            replica: format!("replica-{:016x}", rand::random::<u64>()),
            report: Reporter::default(),
        }
    }
}

/// What one turn of the background learner did.
#[derive(Debug)]
pub enum LearnerTurn {
    /// Nothing was due.
    Idle,
    /// A round was due, and another replica is learning it.
    AnotherReplicaLearning,
    /// A round was due but cannot learn yet (too few human labels, or no holdout).
    Waiting(LearnError),
    /// A round's candidate did not pass the gate.
    Rejected {
        /// The candidate's hash.
        hash: String,
        /// The gate's reason.
        reason: String,
    },
    /// A round's candidate passed the gate and serves now.
    Promoted {
        /// Its hash.
        hash: String,
    },
    /// A round's candidate passed the gate and serves a share of traffic as a canary.
    CanaryStarted {
        /// Its hash.
        hash: String,
    },
    /// The canary was judged (it may still be waiting for feedback).
    Canary(CanaryJudgement),
}

impl LearnerTurn {
    /// A short name for the metrics: `idle`, `another_replica`, `waiting`, `rejected`,
    /// `promoted`, `canary_started`, `canary_waiting`, `canary_promoted`, `canary_rolled_back`.
    pub fn label(&self) -> &'static str {
        match self {
            LearnerTurn::Idle => "idle",
            LearnerTurn::AnotherReplicaLearning => "another_replica",
            LearnerTurn::Waiting(_) => "waiting",
            LearnerTurn::Rejected { .. } => "rejected",
            LearnerTurn::Promoted { .. } => "promoted",
            LearnerTurn::CanaryStarted { .. } => "canary_started",
            LearnerTurn::Canary(CanaryJudgement::Waiting { .. }) => "canary_waiting",
            LearnerTurn::Canary(CanaryJudgement::Promoted { .. }) => "canary_promoted",
            LearnerTurn::Canary(CanaryJudgement::RolledBack { .. }) => "canary_rolled_back",
        }
    }
}

impl fmt::Display for LearnerTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |h: &str| h.chars().take(12).collect::<String>();
        match self {
            LearnerTurn::Idle => f.write_str("idle"),
            LearnerTurn::AnotherReplicaLearning => f.write_str("another replica is learning"),
            LearnerTurn::Waiting(e) => write!(f, "waiting: {e}"),
            LearnerTurn::Rejected { hash, reason } => write!(f, "candidate rejected: {} ({reason})", short(hash)),
            LearnerTurn::Promoted { hash } => write!(f, "promoted {}", short(hash)),
            LearnerTurn::CanaryStarted { hash } => write!(f, "canary started: {}", short(hash)),
            LearnerTurn::Canary(j @ CanaryJudgement::Waiting { .. }) => write!(f, "canary: {}", j.reason()),
            LearnerTurn::Canary(j @ CanaryJudgement::Promoted { .. }) => write!(f, "canary promoted: {}", j.reason()),
            LearnerTurn::Canary(j @ CanaryJudgement::RolledBack { .. }) => write!(f, "canary rolled back: {}", j.reason()),
        }
    }
}

/// Why a turn of the background learner failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    /// Occurs when learning fails (the store, the compile, the metric).
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// Occurs when a version cannot be loaded or swapped in.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Occurs when the turn's thread stopped without an answer (it panicked).
    #[error("the learner's turn stopped: {0}")]
    Stopped(String),
}

/// A function told each turn's outcome.
type Report = dyn Fn(&Result<LearnerTurn, LearnerError>) + Send + Sync;

/// Where the learner reports what its turns did.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<Report>>);

impl Reporter {
    /// A reporter calling `f`.
    pub fn new(f: impl Fn(&Result<LearnerTurn, LearnerError>) + Send + Sync + 'static) -> Reporter {
        Reporter(Some(Arc::new(f)))
    }

    fn tell(&self, outcome: &Result<LearnerTurn, LearnerError>) {
        if let Some(f) = &self.0 {
            f(outcome);
        }
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Reporter(..)" } else { "Reporter(none)" })
    }
}

/// Runs until the task is dropped.
///
/// Each turn runs on a blocking thread that drives it with the server's runtime handle: a
/// round compiles for minutes, and the server's worker threads must stay free for requests.
pub async fn run(service: Service, engine: Engine, options: LearnLoop, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(options.poll.max(Duration::from_millis(10)));
    let handle = tokio::runtime::Handle::current();
    let options = Arc::new(options);
    loop {
        tick.tick().await;
        let (s, e, o, h) = (service.clone(), engine.clone(), options.clone(), handle.clone());
        let outcome = tokio::task::spawn_blocking(move || h.block_on(turn(&s, &e, &o))).await.unwrap_or_else(|e| Err(LearnerError::Stopped(e.to_string())));
        metrics.learner(outcome.as_ref().map_or("error", LearnerTurn::label));
        if !matches!(outcome, Ok(LearnerTurn::Idle)) {
            options.report.tell(&outcome);
        }
    }
}

/// One look at the store: follow the current version, judge a canary, learn when due.
async fn turn(service: &Service, engine: &Engine, options: &LearnLoop) -> Result<LearnerTurn, LearnerError> {
    let program = service.program();
    let dag = program.dag();
    follow(service, engine, dag.name()).await?;
    if let Some((hash, since)) = service.canary() {
        let judgement = learn::judge_canary(service.store(), dag, &hash, since, &options.canary).await?;
        match judgement {
            CanaryJudgement::Promoted { .. } => service.end_canary(true),
            CanaryJudgement::RolledBack { .. } => service.end_canary(false),
            CanaryJudgement::Waiting { .. } => {}
        }
        return Ok(LearnerTurn::Canary(judgement));
    }
    let round = Round {
        holdout: options.holdout.clone(),
        search: options.search.clone(),
        settings: options.round.clone(),
        canary: options.explore.is_some(),
        options: service.options(),
        ..Round::new(engine, service.store(), service.current())
    };
    let outcome = match learn::learning_turn(round, dag.name(), options.trigger, &options.replica).await? {
        Turn::Idle => return Ok(LearnerTurn::Idle),
        Turn::AnotherReplicaLearning => return Ok(LearnerTurn::AnotherReplicaLearning),
        Turn::Waiting(e) => return Ok(LearnerTurn::Waiting(e)),
        Turn::Learned(outcome) => outcome,
    };
    let hash = outcome.hash.clone();
    if !outcome.decision.promote {
        return Ok(LearnerTurn::Rejected { hash, reason: outcome.decision.reason });
    }
    let (engine, base, load, h) = (engine.clone(), service.current(), service.options(), hash.clone());
    let loaded = tokio::task::spawn_blocking(move || load_version(&engine, &base, &load, &h, outcome.candidate))
        .await
        .map_err(|e| LearnerError::Stopped(e.to_string()))??;
    match options.explore {
        Some(share) => {
            service.start_canary(loaded, share).await?;
            Ok(LearnerTurn::CanaryStarted { hash })
        }
        None => {
            service.swap(loaded).await?;
            Ok(LearnerTurn::Promoted { hash })
        }
    }
}

/// Swaps in the version the store says is current, when it is not the one served.
async fn follow(service: &Service, engine: &Engine, program: &str) -> Result<(), LearnerError> {
    let Some((hash, artifact)) = learn::current(service.store(), program).await? else { return Ok(()) };
    if service.artifact_hash().as_deref() == Some(hash.as_str()) || service.canary().is_some_and(|(h, _)| h == hash) {
        return Ok(());
    }
    let (engine, base, options) = (engine.clone(), service.current(), service.options());
    let loaded = tokio::task::spawn_blocking(move || load_version(&engine, &base, &options, &hash, artifact))
        .await
        .map_err(|e| LearnerError::Stopped(e.to_string()))??;
    Ok(service.swap(loaded).await?)
}
