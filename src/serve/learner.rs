//! Learning while serving (`serve --learn-every`): a background task that keeps every replica
//! on the version the store says is current, learns when enough new runs came in (or enough
//! time passed), and swaps in what the gate promotes — without dropping or failing a request.
//!
//! Several replicas on one store cooperate: one learner at a time, by a lease in the store;
//! the others pick up a promoted version when they next look. With `--explore SHARE`, a
//! candidate the gate passes first serves that share of traffic as a canary; once it has
//! enough feedback it is promoted, or rolled back if people approve of it less than of the
//! version served.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::metrics::Metrics;
use super::service::{load_version, Service};
use crate::compile::Dataset;
use crate::graph::OptimizerSettings;
use crate::learn::{self, ExportOptions, Round};
use crate::runtime::Engine;
use crate::store::{FeedbackPayload, RunFilter, RunOrder, StoredRun, Timestamp};

/// When to learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// After this many runs of the program were stored since its newest version.
    Runs(u64),
    /// When this long has passed since its newest version.
    Every(Duration),
}

/// How the background learner works.
#[derive(Clone, Debug)]
pub struct LearnLoop {
    /// When to learn.
    pub trigger: Trigger,
    /// A human-labelled holdout, if given.
    pub holdout: Option<Dataset>,
    /// The share of stored corrections held out.
    pub holdout_share: f64,
    /// The gate's margin: how much lower a candidate's holdout score may be.
    pub margin: f64,
    /// How much lower the canary's live approval rate may be than the served version's.
    pub canary_margin: f64,
    /// Send this share of traffic to a passed candidate before promoting it.
    pub explore: Option<f64>,
    /// Runs with feedback a canary needs before it is judged.
    pub canary_runs: usize,
    /// How often to look at the store.
    pub poll: Duration,
    /// Settings over the program's own for the rounds' compiles.
    pub settings: OptimizerSettings,
    /// The most rows a round compiles on.
    pub max_rows: usize,
    /// The agreement with people an LM-judge metric needs before a round uses it.
    pub judge_min_agreement: f64,
    /// This replica's name, as the lease holder.
    pub replica: String,
    /// Told what each turn did, except idle ones (the CLI prints it; the library never does).
    pub report: Reporter,
}

/// A function told each turn's outcome.
type Report = dyn Fn(Result<&str, &str>) + Send + Sync;

/// Where the learner reports what its turns did.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<Report>>);

impl Reporter {
    /// A reporter calling `f`.
    pub fn new(f: impl Fn(Result<&str, &str>) + Send + Sync + 'static) -> Reporter {
        Reporter(Some(Arc::new(f)))
    }

    fn tell(&self, outcome: Result<&str, &str>) {
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

impl LearnLoop {
    /// A loop with `trigger` and defaults for the rest.
    pub fn new(trigger: Trigger) -> LearnLoop {
        LearnLoop {
            trigger,
            holdout: None,
            holdout_share: 0.2,
            margin: 0.02,
            canary_margin: 0.02,
            explore: None,
            canary_runs: 30,
            poll: Duration::from_secs(10),
            settings: OptimizerSettings::default(),
            max_rows: 300,
            judge_min_agreement: 0.7,
            replica: format!("replica-{:016x}", rand::random::<u64>()),
            report: Reporter::default(),
        }
    }
}

/// How long a learner may hold the lease before another may take over (a round takes
/// minutes; a learner that died frees it after this).
const LEASE: Duration = Duration::from_secs(3600);

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
        let outcome = tokio::task::spawn_blocking(move || h.block_on(turn(&s, &e, &o))).await.unwrap_or_else(|e| Err(format!("the learner failed: {e}")));
        let outcome = outcome.as_ref().map(|s| s.as_str()).map_err(|e| e.as_str());
        metrics.learner(outcome);
        if outcome != Ok("idle") {
            options.report.tell(outcome);
        }
    }
}

/// One look at the store: follow the current version, judge a canary, learn when due.
/// Returns what happened, for the metrics.
async fn turn(service: &Service, engine: &Engine, options: &LearnLoop) -> Result<String, String> {
    let program = service.program().dag().name().to_string();
    follow(service, engine, &program).await?;
    if let Some((hash, since)) = service.canary() {
        return judge_canary(service, options, &program, &hash, since).await;
    }
    if !due(service, options, &program).await? {
        return Ok("idle".into());
    }
    let lease = format!("learn:{program}");
    if !service.store().take_lease(&lease, &options.replica, LEASE).await.map_err(|e| e.to_string())? {
        return Ok("another replica is learning".into());
    }
    // Another replica may have finished a round between the look above and the lease.
    let result = match due(service, options, &program).await {
        Ok(true) => learn_once(service, engine, options).await,
        Ok(false) => Ok("idle".into()),
        Err(e) => Err(e),
    };
    let _ = service.store().release_lease(&lease, &options.replica).await;
    result
}

/// Swaps in the version the store says is current, when it is not the one served.
async fn follow(service: &Service, engine: &Engine, program: &str) -> Result<(), String> {
    let Some((hash, artifact)) = learn::current(service.store(), program).await.map_err(|e| e.to_string())? else { return Ok(()) };
    if service.artifact_hash().as_deref() == Some(hash.as_str()) || service.canary().is_some_and(|(h, _)| h == hash) {
        return Ok(());
    }
    let (engine, base, options) = (engine.clone(), service.current(), service.options());
    let loaded = tokio::task::spawn_blocking(move || load_version(&engine, &base, &options, &hash, artifact))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    service.swap(loaded).await.map_err(|e| e.to_string())
}

/// Whether enough runs came in (or enough time passed) since the program's newest version.
async fn due(service: &Service, options: &LearnLoop, program: &str) -> Result<bool, String> {
    let versions = service.store().artifacts(program).await.map_err(|e| e.to_string())?;
    let since = versions.iter().map(|v| v.created).max().unwrap_or(Timestamp::from_millis(0));
    Ok(match options.trigger {
        Trigger::Every(d) => Timestamp::now().millis() - since.millis() >= i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Trigger::Runs(n) => {
            let filter = RunFilter {
                program: Some(program.into()),
                since: Some(since),
                limit: usize::try_from(n).unwrap_or(usize::MAX).clamp(1, RunFilter::MAX_LIMIT),
                ..RunFilter::default()
            };
            let page = service.store().runs(&filter).await.map_err(|e| e.to_string())?;
            page.items.len() as u64 >= n.min(RunFilter::MAX_LIMIT as u64)
        }
    })
}

/// One learning round on what the store holds; a passed candidate is swapped in (or started
/// as a canary).
async fn learn_once(service: &Service, engine: &Engine, options: &LearnLoop) -> Result<String, String> {
    let quiet = |_: crate::compile::Event<'_>| {};
    let round = Round {
        engine,
        store: service.store(),
        current: service.current(),
        holdout: options.holdout.clone(),
        export: ExportOptions { holdout_share: options.holdout_share, ..ExportOptions::default() },
        optimizer: None,
        settings: options.settings.clone(),
        metric: None,
        margin: options.margin,
        concurrency: 4,
        max_rows: options.max_rows,
        canary: options.explore.is_some(),
        judge_min_agreement: options.judge_min_agreement,
        options: service.options(),
        progress: &quiet,
    };
    let outcome = match learn::learn(round).await {
        Ok(o) => o,
        // Too little data (or no holdout yet) is a normal state for a young service.
        Err(e @ (learn::LearnError::NotEnoughData { .. } | learn::LearnError::NoHoldout)) => return Ok(format!("waiting: {e}")),
        Err(e) => return Err(e.to_string()),
    };
    if !outcome.decision.promote {
        return Ok("candidate rejected".into());
    }
    let (engine, base, hash, load) = (engine.clone(), service.current(), outcome.hash.clone(), service.options());
    let loaded = tokio::task::spawn_blocking(move || load_version(&engine, &base, &load, &hash, outcome.candidate))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match options.explore {
        Some(share) => {
            service.start_canary(loaded, share);
            Ok("canary started".into())
        }
        None => {
            service.swap(loaded).await.map_err(|e| e.to_string())?;
            Ok("promoted".into())
        }
    }
}

/// Whether people approved of a run's outputs, from its feedback: thumbs, accepted/rejected,
/// regenerated, and corrections (equal to the output: approval). `None` without such feedback.
fn approval(run: &StoredRun) -> Option<bool> {
    let mut verdict = None;
    for f in &run.feedback {
        verdict = match (&f.payload, f.key.as_str()) {
            (FeedbackPayload::Score(s), "thumbs" | "accepted") => Some(*s >= 0.5),
            (FeedbackPayload::Score(_), "rejected" | "regenerated") => Some(false),
            (FeedbackPayload::Correction(c), _) => Some(
                run.outputs.as_ref() == Some(c)
                    || matches!((&run.outputs, c), (Some(Value::Object(o)), Value::Object(c)) if c.iter().all(|(k, v)| o.get(k) == Some(v))),
            ),
            _ => verdict,
        };
    }
    verdict
}

/// Judges the canary once it has enough runs with feedback: promoted for every replica when
/// people approve of it at least as much as of the served version (less the margin), else
/// rolled back.
async fn judge_canary(service: &Service, options: &LearnLoop, program: &str, hash: &str, since: Timestamp) -> Result<String, String> {
    let mut canary = (0usize, 0usize);
    let mut served = (0usize, 0usize);
    let mut filter =
        RunFilter { program: Some(program.into()), since: Some(since), limit: RunFilter::MAX_LIMIT, order: RunOrder::OldestFirst, ..RunFilter::default() };
    loop {
        let page = service.store().runs(&filter).await.map_err(|e| e.to_string())?;
        for run in &page.items {
            let Some(ok) = approval(run) else { continue };
            let tally = if run.artifact_hash.as_deref() == Some(hash) { &mut canary } else { &mut served };
            tally.0 += usize::from(ok);
            tally.1 += 1;
        }
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    if canary.1 < options.canary_runs {
        return Ok(format!("canary: {} of {} judged runs", canary.1, options.canary_runs));
    }
    let rate = |(ok, n): (usize, usize)| if n == 0 { None } else { Some(ok as f64 / n as f64) };
    let (c, s) = (rate(canary).unwrap_or(0.0), rate(served));
    let promote = s.is_none_or(|s| c >= s - options.canary_margin);
    let reason = match s {
        Some(s) => format!("live approval {c:.3} for the candidate vs {s:.3} for the served version ({} and {} judged runs)", canary.1, served.1),
        None => format!("live approval {c:.3} on {} judged runs; the served version had none", canary.1),
    };
    learn::conclude_canary(service.store(), program, hash, promote, &reason).await.map_err(|e| e.to_string())?;
    service.end_canary(promote);
    Ok(if promote { format!("canary promoted: {reason}") } else { format!("canary rolled back: {reason}") })
}
