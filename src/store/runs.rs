//! Runs: recording what a program did (or only counting it, without consent), reading one
//! run with its feedback, and paging through runs with filters.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::feedback::StoredFeedback;
use super::ids::{check_id, RunId};
use super::sql::{check_user_id, is_violation, json_column, json_text, opt_json_column, to_i64, Arg, Sql};
use super::time::Timestamp;

/// Whether the person behind a run agreed to have it stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consent {
    /// Store the run (redacted).
    #[default]
    Given,
    /// Store nothing about the run but one more in its program's count.
    Denied,
}

/// A run to record. Start from [`NewRun::new`] and set what you have.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The run's id, when the caller chose one (for example to hand out a feedback token
    /// before the write); generated otherwise.
    pub id: Option<RunId>,
    /// The program's name.
    pub program: String,
    /// The artifact that ran, by content hash, when it was a compiled artifact.
    pub artifact_hash: Option<String>,
    /// Whose run it was (a pseudonymous id; see [`Store::forget_user`]).
    pub user_id: Option<String>,
    /// The program's inputs.
    pub inputs: Value,
    /// The program's outputs, when it produced them.
    pub outputs: Option<Value>,
    /// The per-step trace (prompts, latency, tokens, errors), as the caller serializes it.
    pub trace: Value,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// How long the run took.
    pub latency_ms: u64,
    /// Whether it may be stored.
    pub consent: Consent,
    /// When it ran; now when not given (imports and simulations give their own).
    pub created: Option<Timestamp>,
    /// How sure the run's constrained choices were: the smallest margin, over its label
    /// steps, between the best and the second-best label's log-probability. The review queue
    /// serves runs with small margins first. `None` (or not finite) when it made no choice.
    pub label_margin: Option<f64>,
}

impl NewRun {
    /// A consented run of `program` on `inputs`, with nothing else known yet.
    pub fn new(program: impl Into<String>, inputs: Value) -> Self {
        NewRun {
            id: None,
            program: program.into(),
            artifact_hash: None,
            user_id: None,
            inputs,
            outputs: None,
            trace: Value::Null,
            error: None,
            latency_ms: 0,
            consent: Consent::Given,
            created: None,
            label_margin: None,
        }
    }
}

/// What [`Store::record_run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedRun {
    /// The run is stored under this id.
    Stored(RunId),
    /// Consent was denied: only the program's count of unconsented runs went up. There is no
    /// run to give feedback on.
    Counted,
}

impl RecordedRun {
    /// The stored run's id, if the run was stored.
    pub fn run_id(&self) -> Option<&RunId> {
        match self {
            RecordedRun::Stored(id) => Some(id),
            RecordedRun::Counted => None,
        }
    }
}

/// A run as stored (redacted), with its feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRun {
    /// The run's id.
    pub id: RunId,
    /// The program's name.
    pub program: String,
    /// The artifact that ran, if any.
    pub artifact_hash: Option<String>,
    /// When it ran.
    pub created: Timestamp,
    /// Whose run it was.
    pub user_id: Option<String>,
    /// The inputs.
    pub inputs: Value,
    /// The outputs, if any.
    pub outputs: Option<Value>,
    /// The per-step trace.
    pub trace: Value,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: u64,
    /// Its feedback, oldest first.
    pub feedback: Vec<StoredFeedback>,
}

/// Which way a page of runs runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunOrder {
    /// Latest first (listing).
    #[default]
    NewestFirst,
    /// Earliest first (exporting since a time).
    OldestFirst,
}

/// Where the next page starts: after the run with this (created, id). Its text form
/// (`<millis>:<run id>`) goes into URLs and command lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCursor {
    created: i64,
    id: String,
}

impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.created, self.id)
    }
}

impl FromStr for RunCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::InvalidCursor { cursor: s.chars().take(160).collect() };
        let (created, id) = s.split_once(':').ok_or_else(bad)?;
        let created = created.parse().map_err(|_| bad())?;
        check_id("run id", id).map_err(|_| bad())?;
        Ok(RunCursor { created, id: id.to_string() })
    }
}

/// Which runs to list. All conditions must hold; `Default` lists the latest 50 runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this program's runs.
    pub program: Option<String>,
    /// Only runs of this artifact.
    pub artifact_hash: Option<String>,
    /// Only this user's runs.
    pub user_id: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<Timestamp>,
    /// Only runs created before this time.
    pub until: Option<Timestamp>,
    /// At most this many runs per page (capped at [`RunFilter::MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<RunCursor>,
    /// Page order.
    pub order: RunOrder,
}

impl RunFilter {
    /// The largest page.
    pub const MAX_LIMIT: usize = 1000;
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter { program: None, artifact_hash: None, user_id: None, since: None, until: None, limit: 50, after: None, order: RunOrder::default() }
    }
}

/// One page of results and where the next one starts (`None` on the last page).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// The cursor for the next page, if there may be more.
    pub next: Option<RunCursor>,
}

/// Sample keys are drawn from `0..SAMPLE_RANGE`, the range migration 0004 gave older runs.
const SAMPLE_RANGE: i64 = 1_000_003;

const INSERT_RUN: &str = "INSERT INTO runs (id, program, artifact_hash, created, user_id, inputs, outputs, trace, error, latency_ms, sample) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const INSERT_RUN_WITH_MARGIN: &str =
    "INSERT INTO runs (id, program, artifact_hash, created, user_id, inputs, outputs, trace, error, latency_ms, sample, label_margin) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const RUN_COLUMNS: &str = "id, program, artifact_hash, created, user_id, inputs, outputs, trace, error, latency_ms";

pub(super) fn run_from_row(row: &AnyRow) -> Result<StoredRun, StoreError> {
    let id: String = row.try_get("id")?;
    let what = format!("run `{id}`");
    let latency: i64 = row.try_get("latency_ms")?;
    Ok(StoredRun {
        program: row.try_get("program")?,
        artifact_hash: row.try_get("artifact_hash")?,
        created: Timestamp::from_millis(row.try_get("created")?),
        user_id: row.try_get("user_id")?,
        inputs: json_column(row, "inputs", &what)?,
        outputs: opt_json_column(row, "outputs", &what)?,
        trace: json_column(row, "trace", &what)?,
        error: row.try_get("error")?,
        latency_ms: u64::try_from(latency).unwrap_or(0),
        feedback: Vec::new(),
        id: RunId::from_stored(id),
    })
}

impl Store {
    /// Records a run: redacts it and stores it in one transaction, or with consent denied only
    /// counts it. Returns after the commit.
    pub async fn record_run(&self, run: NewRun) -> Result<RecordedRun, StoreError> {
        check_id("program name", &run.program)?;
        if run.consent == Consent::Denied {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO counters (program, unconsented_runs) VALUES ($1, 1) \
                 ON CONFLICT (program) DO UPDATE SET unconsented_runs = counters.unconsented_runs + 1",
            )
            .bind(&run.program)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(RecordedRun::Counted);
        }
        if let Some(hash) = &run.artifact_hash {
            check_id("artifact hash", hash)?;
        }
        check_user_id(&self.redactor, run.user_id.as_deref())?;
        let id = run.id.unwrap_or_else(|| RunId::from_stored(self.ids.next("run_")));
        let created = run.created.unwrap_or_else(Timestamp::now);
        let inputs = json_text(&self.redactor, &run.inputs);
        let outputs = run.outputs.as_ref().map(|o| json_text(&self.redactor, o));
        let trace = json_text(&self.redactor, &run.trace);
        let error = run.error.as_deref().map(|e| self.redactor.text(e).into_owned());

        // The review queue samples runs by this key (see migration 0004 for its range).
        let sample: i64 = rand::random_range(0..SAMPLE_RANGE);
        let margin = run.label_margin.filter(|m| m.is_finite());

        let mut tx = self.begin_write().await?;
        // A margin is bound only when there is one: a NULL double would be bound as `float4`
        // on PostgreSQL (see `sql::Arg::Float`), so a run without one has its own statement.
        let sql = if margin.is_some() { INSERT_RUN_WITH_MARGIN } else { INSERT_RUN };
        let query = sqlx::query(sql)
            .bind(id.as_str())
            .bind(&run.program)
            .bind(run.artifact_hash.as_deref())
            .bind(created.millis())
            .bind(run.user_id.as_deref())
            .bind(inputs)
            .bind(outputs)
            .bind(trace)
            .bind(error)
            .bind(to_i64(run.latency_ms))
            .bind(sample);
        let query = match margin {
            Some(m) => query.bind(m),
            None => query,
        };
        let inserted = query.execute(&mut *tx).await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_violation(&e, ErrorKind::UniqueViolation) => return Err(StoreError::RunExists { run_id: id.to_string() }),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(RecordedRun::Stored(id))
    }

    /// One run with its feedback, or `None` if the store does not hold it.
    pub async fn run(&self, id: &RunId) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1")).bind(id.as_str()).fetch_optional(self.reader()).await?;
        let Some(row) = row else { return Ok(None) };
        let mut run = run_from_row(&row)?;
        run.feedback = self.feedback_for_runs(std::slice::from_ref(&run.id)).await?.remove(&run.id).unwrap_or_default();
        Ok(Some(run))
    }

    /// A page of runs matching `filter`, each with its feedback, in (created, id) order.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Page<StoredRun>, StoreError> {
        let limit = filter.limit.clamp(1, RunFilter::MAX_LIMIT);
        let mut sql = Sql::new(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"));
        sql.and_eq("program", filter.program.as_deref()).and_eq("artifact_hash", filter.artifact_hash.as_deref()).and_eq("user_id", filter.user_id.as_deref());
        if let Some(t) = filter.since {
            sql.push(" AND created >= ").bind(Arg::Int(t.millis()));
        }
        if let Some(t) = filter.until {
            sql.push(" AND created < ").bind(Arg::Int(t.millis()));
        }
        let (cmp, dir) = match filter.order {
            RunOrder::NewestFirst => ("<", "DESC"),
            RunOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(c) = &filter.after {
            sql.push(&format!(" AND (created {cmp} ")).bind(Arg::Int(c.created));
            sql.push(" OR (created = ").bind(Arg::Int(c.created)).push(&format!(" AND id {cmp} ")).bind(Arg::Text(c.id.clone())).push("))");
        }
        // One row more than the page tells whether there is a next page.
        sql.push(&format!(" ORDER BY created {dir}, id {dir} LIMIT ")).bind(Arg::Int(to_i64(limit as u64 + 1)));
        let rows = sql.query().fetch_all(self.reader()).await?;
        let mut items = rows.iter().take(limit).map(run_from_row).collect::<Result<Vec<_>, _>>()?;
        let next = if rows.len() > limit { items.last().map(|r| RunCursor { created: r.created.millis(), id: r.id.to_string() }) } else { None };
        let ids: Vec<RunId> = items.iter().map(|r| r.id.clone()).collect();
        let mut feedback = self.feedback_for_runs(&ids).await?;
        for run in &mut items {
            run.feedback = feedback.remove(&run.id).unwrap_or_default();
        }
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_print_and_read_back_and_refuse_garbage() {
        let c = RunCursor { created: 1_714_564_800_000, id: "run_01HX".into() };
        assert_eq!(c.to_string().parse::<RunCursor>().unwrap(), c);
        for bad in ["", "12", "x:run_1", "12:", "12:a b"] {
            assert!(matches!(bad.parse::<RunCursor>(), Err(StoreError::InvalidCursor { .. })), "{bad:?}");
        }
    }
}
