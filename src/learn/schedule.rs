//! The learning turn of a background learner (`serve --learn-every`): whether a round is due,
//! one learner at a time per program (a lease in the store), and the round itself. The
//! policy lives here; `serve` only calls [`learning_turn`] on a timer and swaps in what it
//! promotes.

use std::time::Duration;

use super::round::{learn, Outcome, Round};
use super::LearnError;
use crate::store::{RunFilter, Store, Timestamp};

/// When a background learner learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// After this many runs of the program were stored since its newest version.
    Runs(u64),
    /// When this long has passed since its newest version.
    Every(Duration),
}

/// How long a learner may hold the lease before another may take over (a round takes
/// minutes; a learner that died frees it after this).
pub const LEASE: Duration = Duration::from_secs(3600);

/// What a learning turn did.
#[derive(Debug)]
pub enum Turn {
    /// No round was due.
    Idle,
    /// A round was due, but another replica holds the lease and is learning.
    AnotherReplicaLearning,
    /// A round was due but could not learn yet: too few human labels, or no holdout. A normal
    /// state for a young service; the error says what is missing (only
    /// [`LearnError::NotEnoughData`] or [`LearnError::NoHoldout`]).
    Waiting(LearnError),
    /// A round ran and recorded its version; its decision says whether it passed the gate.
    Learned(Box<Outcome>),
}

/// Whether a round of `program` is due by `trigger`: enough runs stored (or time passed)
/// since its newest version.
pub async fn due(store: &Store, program: &str, trigger: Trigger) -> Result<bool, LearnError> {
    let versions = store.artifacts(program).await?;
    let since = versions.iter().map(|v| v.created).max().unwrap_or(Timestamp::from_millis(0));
    Ok(match trigger {
        Trigger::Every(d) => Timestamp::now().millis() - since.millis() >= i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Trigger::Runs(n) => {
            let filter = RunFilter {
                program: Some(program.into()),
                since: Some(since),
                limit: usize::try_from(n).unwrap_or(usize::MAX).clamp(1, RunFilter::MAX_LIMIT),
                ..RunFilter::default()
            };
            let page = store.runs(&filter).await?;
            page.items.len() as u64 >= n.min(RunFilter::MAX_LIMIT as u64)
        }
    })
}

/// One turn: when a round of `program` is due by `trigger`, takes the program's learning lease
/// as `replica` and runs `round`, then releases the lease. Several replicas on one store may
/// call this at once; one learns.
pub async fn learning_turn(round: Round<'_>, program: &str, trigger: Trigger, replica: &str) -> Result<Turn, LearnError> {
    let store = round.store;
    if !due(store, program, trigger).await? {
        return Ok(Turn::Idle);
    }
    let lease = format!("learn:{program}");
    if !store.take_lease(&lease, replica, LEASE).await? {
        return Ok(Turn::AnotherReplicaLearning);
    }
    // Another replica may have finished a round between the look above and the lease.
    let turn = match due(store, program, trigger).await {
        Ok(true) => match learn(round).await {
            Ok(outcome) => Ok(Turn::Learned(Box::new(outcome))),
            Err(e @ (LearnError::NotEnoughData { .. } | LearnError::NoHoldout)) => Ok(Turn::Waiting(e)),
            Err(e) => Err(e),
        },
        Ok(false) => Ok(Turn::Idle),
        Err(e) => Err(e),
    };
    // A lease left behind expires after `LEASE`; failing to release it early is not worth
    // failing the turn over.
    let _ = store.release_lease(&lease, replica).await;
    turn
}
