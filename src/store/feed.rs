//! Following the store as it changes: the feedback on a program's runs since a time, with the
//! runs it is on, and the deletions (users forgotten, runs expired) since a time. A process that
//! keeps something derived from stored feedback in memory (online memory) reads these before it
//! answers, so it learns of what any process wrote or deleted.
//!
//! Reads are cheap when little changed: the ids come from the index on `(created, id)`, and
//! only ids the follower has not seen are read in full. Feedback is stamped with its time when
//! its write starts, and a write may commit a moment after a later one, so followers re-read a
//! short window before their last position ([`FOLLOW_OVERLAP_MS`]) and skip ids they have seen.

use sqlx::Row;

use super::audit::{event_from_row, AuditEvent, AuditKind};
use super::db::Store;
use super::error::StoreError;
use super::feedback::{feedback_from_row, StoredFeedback, FEEDBACK_COLUMNS};
use super::ids::{FeedbackId, RunId};
use super::runs::StoredRun;
use super::sql::{json_column, opt_json_column, Arg, Sql};
use super::time::Timestamp;

/// How far before their last position followers re-read, so a write that committed after a
/// later one is not missed.
pub const FOLLOW_OVERLAP_MS: i64 = 5_000;

/// The most ids [`Store::feedback_since`] returns at once, and read in full at once.
pub const FOLLOW_PAGE: usize = 500;

/// A piece of feedback and when it was given, as [`Store::feedback_since`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackStamp {
    /// The feedback's id.
    pub id: FeedbackId,
    /// When it was given.
    pub created: Timestamp,
}

impl Store {
    /// Feedback on runs of `program` given at or after `since`, oldest first (by time, then id),
    /// at most [`FOLLOW_PAGE`], continuing after `after` when given: ids and times only.
    pub async fn feedback_since(&self, program: &str, since: Timestamp, after: Option<&FeedbackStamp>) -> Result<Vec<FeedbackStamp>, StoreError> {
        // `CROSS JOIN` makes SQLite walk the feedback in its `(created, id)` order and look each
        // run up by id (with a plain join it may start from every run of the program and sort);
        // PostgreSQL plans it like any inner join.
        let mut sql = Sql::new("SELECT f.id, f.created FROM feedback f CROSS JOIN runs r WHERE r.id = f.run_id AND r.program = ");
        sql.bind(Arg::Text(program.to_string()));
        sql.push(" AND f.created >= ").bind(Arg::Int(since.millis()));
        if let Some(a) = after {
            // A row value, so both databases seek the `(created, id)` index to the position
            // instead of scanning from `since` again for every page.
            sql.push(" AND (f.created, f.id) > (").bind(Arg::Int(a.created.millis()));
            sql.push(", ").bind(Arg::Text(a.id.to_string()));
            sql.push(")");
        }
        sql.push(" ORDER BY f.created, f.id LIMIT ").bind(Arg::Int(FOLLOW_PAGE as i64));
        let rows = sql.query().fetch_all(self.reader()).await?;
        rows.iter()
            .map(|row| Ok(FeedbackStamp { id: FeedbackId::from_stored(row.try_get("id")?), created: Timestamp::from_millis(row.try_get("created")?) }))
            .collect()
    }

    /// The feedback with these ids (at most [`FOLLOW_PAGE`]), each with the run it is on
    /// (without the run's other feedback; its trace only when `with_trace`, else `null`), oldest
    /// first. Ids no longer stored are left out.
    pub async fn feedback_with_runs(&self, ids: &[FeedbackId], with_trace: bool) -> Result<Vec<(StoredFeedback, StoredRun)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let trace = if with_trace { "r.trace" } else { "'null'" };
        let mut sql = Sql::new(&format!(
            "SELECT {FEEDBACK_COLUMNS}, r.program AS r_program, r.artifact_hash AS r_artifact, r.created AS r_created, r.user_id AS r_user, \
             r.inputs AS r_inputs, r.outputs AS r_outputs, {trace} AS r_trace, r.error AS r_error, r.latency_ms AS r_latency \
             FROM feedback f JOIN runs r ON r.id = f.run_id WHERE f.id IN ("
        ));
        for (i, id) in ids.iter().take(FOLLOW_PAGE).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(id.to_string()));
        }
        sql.push(") ORDER BY f.created, f.id");
        let rows = sql.query().fetch_all(self.reader()).await?;
        rows.iter()
            .map(|row| {
                let feedback = feedback_from_row(row)?;
                let what = format!("run `{}`", feedback.run_id);
                let latency: i64 = row.try_get("r_latency")?;
                let run = StoredRun {
                    id: RunId::from_stored(feedback.run_id.to_string()),
                    program: row.try_get("r_program")?,
                    artifact_hash: row.try_get("r_artifact")?,
                    created: Timestamp::from_millis(row.try_get("r_created")?),
                    user_id: row.try_get("r_user")?,
                    inputs: json_column(row, "r_inputs", &what)?,
                    outputs: opt_json_column(row, "r_outputs", &what)?,
                    trace: json_column(row, "r_trace", &what)?,
                    error: row.try_get("r_error")?,
                    latency_ms: u64::try_from(latency).unwrap_or(0),
                    feedback: Vec::new(),
                };
                Ok((feedback, run))
            })
            .collect()
    }

    /// Audit events of `kinds` recorded at or after `since`, oldest first: what followers must
    /// undo (a forgotten user, expired runs).
    pub async fn audit_events_since(&self, kinds: &[AuditKind], since: Timestamp) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        for kind in kinds {
            // One query per kind reads the (kind, created) index in order.
            let mut sql = Sql::new("SELECT id, kind, subject, detail, created FROM audit_events WHERE kind = ");
            sql.bind(Arg::Text(kind.as_str().to_string()));
            sql.push(" AND created >= ").bind(Arg::Int(since.millis()));
            sql.push(" ORDER BY created, id");
            for row in sql.query().fetch_all(self.reader()).await? {
                events.push(event_from_row(&row)?);
            }
        }
        events.sort_by(|a: &AuditEvent, b: &AuditEvent| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(events)
    }
}
