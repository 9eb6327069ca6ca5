//! What the review page of `loopc serve` (`/review`) reads: the queue of runs a person should
//! look at next, and the feedback figures of its dashboard.
//!
//! The queue serves runs nobody has annotated yet (no feedback with source `annotation`) in
//! three tiers, each read in the order of an index, so a page costs about the same with a
//! hundred runs or a hundred thousand:
//! 1. [`ReviewTier::Flagged`]: a thumbs-down (a score of 0 under one of the filter's negative
//!    keys) or an implicit `rejected`, newest first;
//! 2. [`ReviewTier::Unsure`]: a label margin below the filter's threshold, least sure first;
//! 3. [`ReviewTier::Sample`]: every other run, in a random order fixed per run (its sample key).
//!
//! Pages run by keyset: a [`ReviewCursor`] names a tier and a position in it. Counts are capped
//! ([`COUNT_CAP`]) so that counting never reads more than that many rows.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::feedback::FeedbackSource;
use super::ids::{check_id, RunId};
use super::runs::{run_from_row, StoredRun};
use super::sql::{count_column, json_column, opt_json_column, Arg, Sql};
use super::time::Timestamp;

/// Why a run is in the review queue; the queue serves the tiers in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReviewTier {
    /// Someone said it was wrong: a thumbs-down or an implicit `rejected`.
    Flagged,
    /// Its constrained choice was unsure: a label margin below the threshold.
    Unsure,
    /// Neither: a random sample, to catch what nobody flagged.
    Sample,
}

impl ReviewTier {
    /// Every tier, in queue order.
    pub const ALL: [ReviewTier; 3] = [ReviewTier::Flagged, ReviewTier::Unsure, ReviewTier::Sample];

    /// The tier's name as shown and written in cursors: `flagged`, `unsure`, `sample`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewTier::Flagged => "flagged",
            ReviewTier::Unsure => "unsure",
            ReviewTier::Sample => "sample",
        }
    }
}

impl fmt::Display for ReviewTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which runs to review. All conditions must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewFilter {
    /// Only this program's runs.
    pub program: Option<String>,
    /// Only runs of this artifact version.
    pub artifact_hash: Option<String>,
    /// Only runs that have feedback under this key.
    pub key: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<Timestamp>,
    /// Only runs created before this time.
    pub until: Option<Timestamp>,
    /// Feedback keys whose score 0 is a thumbs-down (the program's `bool` feedback). An
    /// implicit `rejected` flags a run whatever this holds.
    pub negative_keys: Vec<String>,
    /// A run whose label margin is below this is unsure.
    pub unsure_below: f64,
}

impl Default for ReviewFilter {
    fn default() -> Self {
        ReviewFilter {
            program: None,
            artifact_hash: None,
            key: None,
            since: None,
            until: None,
            negative_keys: vec!["thumbs".into()],
            unsure_below: ReviewFilter::UNSURE_BELOW,
        }
    }
}

impl ReviewFilter {
    /// The default threshold: a margin of one nat, the best label less than e ≈ 2.7 times as
    /// likely as the next.
    pub const UNSURE_BELOW: f64 = 1.0;

    /// The largest page.
    pub const MAX_LIMIT: usize = 200;

    fn check(&self) -> Result<(), StoreError> {
        for key in self.negative_keys.iter().chain(&self.key) {
            check_id("feedback key", key)?;
        }
        if !self.unsure_below.is_finite() {
            return Err(StoreError::InvalidFeedback { reason: format!("the unsure threshold {} is not a finite number", self.unsure_below) });
        }
        Ok(())
    }
}

/// Where a run sits in its tier.
#[derive(Clone, Debug, PartialEq)]
enum Position {
    /// Flagged runs, by creation time (newest first).
    Created(i64),
    /// Unsure runs, by margin (smallest first).
    Margin(f64),
    /// The sample, by sample key.
    Sample(i64),
}

/// A place in the review queue: after the run with this tier, position and id. Its text form
/// (`flagged:<ms>:<id>`, `unsure:<margin>:<id>`, `sample:<key>:<id>`) goes into URLs.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewCursor {
    position: Position,
    id: String,
}

impl ReviewCursor {
    /// The tier the cursor is in.
    pub fn tier(&self) -> ReviewTier {
        match self.position {
            Position::Created(_) => ReviewTier::Flagged,
            Position::Margin(_) => ReviewTier::Unsure,
            Position::Sample(_) => ReviewTier::Sample,
        }
    }

    /// The run the cursor points at.
    pub fn run_id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for ReviewCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.position {
            Position::Created(t) => write!(f, "flagged:{t}:{}", self.id),
            // `{}` prints the shortest text that reads back as the same double.
            Position::Margin(m) => write!(f, "unsure:{m}:{}", self.id),
            Position::Sample(s) => write!(f, "sample:{s}:{}", self.id),
        }
    }
}

impl FromStr for ReviewCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::InvalidCursor { cursor: s.chars().take(160).collect() };
        let mut parts = s.splitn(3, ':');
        let (tier, at, id) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let position = match tier {
            "flagged" => Position::Created(at.parse().map_err(|_| bad())?),
            "unsure" => Position::Margin(at.parse::<f64>().ok().filter(|m| m.is_finite()).ok_or_else(bad)?),
            "sample" => Position::Sample(at.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        check_id("run id", id).map_err(|_| bad())?;
        Ok(ReviewCursor { position, id: id.to_string() })
    }
}

/// A run in the queue: the run (without its trace, with its feedback), why it is there, its
/// label margin and its place.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewItem {
    /// The run, its trace left out (read it with [`Store::run`]).
    pub run: StoredRun,
    /// Why it is in the queue.
    pub tier: ReviewTier,
    /// Its label margin, if it made a constrained choice.
    pub label_margin: Option<f64>,
    /// Its place: pass it as `after` to get the runs behind it.
    pub cursor: ReviewCursor,
}

/// How many runs a count reads at most; a count at the cap means "at least this many".
pub const COUNT_CAP: u64 = 1_000;

/// How many runs wait in each tier, and how many were reviewed (each at most [`COUNT_CAP`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReviewCounts {
    /// Unreviewed flagged runs.
    pub flagged: u64,
    /// Unreviewed unsure runs.
    pub unsure: u64,
    /// Every other unreviewed run.
    pub sample: u64,
    /// Runs with feedback from a reviewer.
    pub reviewed: u64,
}

/// Feedback given on one day under one key from one source.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The feedback key.
    pub key: String,
    /// Who gave it.
    pub source: FeedbackSource,
    /// The score these pieces gave (`None` for values and corrections).
    pub score: Option<f64>,
    /// How many pieces.
    pub count: u64,
}

/// A correction (or an implicit edit) with the outputs of the run it corrects.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrectionRow {
    /// The run.
    pub run_id: RunId,
    /// When the correction was given.
    pub created: Timestamp,
    /// Its key (`correction`, `edited`, or a declared correction key).
    pub key: String,
    /// Who gave it.
    pub source: FeedbackSource,
    /// What the outputs should have been.
    pub correction: Value,
    /// What the run answered, if it answered.
    pub outputs: Option<Value>,
    /// The run's inputs.
    pub inputs: Value,
    /// Who gave it: the feedback's user, else the run's.
    pub user_id: Option<String>,
}

/// The columns of a queue item: a run without its trace (pages never need it), its margin and
/// sample key.
fn select_items() -> String {
    "SELECT r.id, r.program, r.artifact_hash, r.created, r.user_id, r.inputs, r.outputs, CAST('null' AS TEXT) AS trace, r.error, r.latency_ms, \
     r.label_margin, r.sample FROM runs r"
        .to_string()
}

/// Appends the conditions every tier shares: the filter, and no reviewer's feedback yet.
fn push_common(sql: &mut Sql, filter: &ReviewFilter) {
    sql.push(" WHERE NOT EXISTS (SELECT 1 FROM feedback a WHERE a.run_id = r.id AND a.source = 'annotation')");
    push_filter(sql, filter);
}

/// Appends the filter's conditions on the runs `r`.
fn push_filter(sql: &mut Sql, filter: &ReviewFilter) {
    sql.and_eq("r.program", filter.program.as_deref()).and_eq("r.artifact_hash", filter.artifact_hash.as_deref());
    if let Some(t) = filter.since {
        sql.push(" AND r.created >= ").bind(Arg::Int(t.millis()));
    }
    if let Some(t) = filter.until {
        sql.push(" AND r.created < ").bind(Arg::Int(t.millis()));
    }
    if let Some(key) = &filter.key {
        sql.push(" AND EXISTS (SELECT 1 FROM feedback k WHERE k.run_id = r.id AND k.key = ").bind(Arg::Text(key.clone())).push(")");
    }
}

/// Appends the condition that `r` has (or, `negated`, has not) negative feedback. The flagged
/// tier asks `r.id IN (…)`: the subquery does not depend on the row, so it is read once, from
/// the feedback side (few runs are flagged), and the runs are then probed by id; counting
/// flagged runs so costs the flagged feedback, not every run. The other tiers ask
/// `NOT EXISTS` per row, which their LIMIT or count cap keeps to a bounded number of rows.
fn push_flagged(sql: &mut Sql, filter: &ReviewFilter, negated: bool) {
    if negated {
        sql.push(" AND NOT EXISTS (SELECT 1 FROM feedback n WHERE n.run_id = r.id AND (");
    } else {
        sql.push(" AND r.id IN (SELECT n.run_id FROM feedback n WHERE (");
    }
    sql.push("(n.key = 'rejected' AND n.source = 'implicit')");
    if !filter.negative_keys.is_empty() {
        sql.push(" OR (n.score = 0 AND n.key IN (");
        for (i, key) in filter.negative_keys.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(key.clone()));
        }
        sql.push("))");
    }
    sql.push("))");
}

/// `select` (which ends in `FROM runs r`) for the runs of `tier` after `after` (a cursor in the
/// same tier), without ORDER BY and LIMIT.
fn tier_rows(select: &str, filter: &ReviewFilter, tier: ReviewTier, after: Option<&ReviewCursor>) -> Sql {
    let mut sql = Sql::new(select);
    push_common(&mut sql, filter);
    match tier {
        ReviewTier::Flagged => push_flagged(&mut sql, filter, false),
        ReviewTier::Unsure => {
            sql.push(" AND r.label_margin < ").bind(Arg::Float(filter.unsure_below));
            push_flagged(&mut sql, filter, true);
        }
        ReviewTier::Sample => {
            sql.push(" AND (r.label_margin IS NULL OR r.label_margin >= ").bind(Arg::Float(filter.unsure_below)).push(")");
            push_flagged(&mut sql, filter, true);
        }
    }
    if let Some(c) = after.filter(|c| c.tier() == tier) {
        let (column, cmp, value) = match c.position {
            Position::Created(t) => ("r.created", "<", Arg::Int(t)),
            Position::Margin(m) => ("r.label_margin", ">", Arg::Float(m)),
            Position::Sample(s) => ("r.sample", ">", Arg::Int(s)),
        };
        sql.push(&format!(" AND ({column} {cmp} ")).bind(value.clone());
        sql.push(&format!(" OR ({column} = ")).bind(value).push(&format!(" AND r.id {cmp} ")).bind(Arg::Text(c.id.clone())).push("))");
    }
    sql
}

fn order_by(tier: ReviewTier) -> &'static str {
    match tier {
        ReviewTier::Flagged => " ORDER BY r.created DESC, r.id DESC",
        ReviewTier::Unsure => " ORDER BY r.label_margin, r.id",
        ReviewTier::Sample => " ORDER BY r.sample, r.id",
    }
}

fn item_from_row(row: &AnyRow, tier: ReviewTier) -> Result<ReviewItem, StoreError> {
    let run = run_from_row(row)?;
    let label_margin: Option<f64> = row.try_get("label_margin")?;
    let sample: Option<i64> = row.try_get("sample")?;
    let position = match tier {
        ReviewTier::Flagged => Position::Created(run.created.millis()),
        // Only rows with a margin below the threshold are unsure.
        ReviewTier::Unsure => Position::Margin(label_margin.unwrap_or(f64::NEG_INFINITY)),
        ReviewTier::Sample => Position::Sample(sample.unwrap_or(0)),
    };
    let cursor = ReviewCursor { position, id: run.id.to_string() };
    Ok(ReviewItem { run, tier, label_margin, cursor })
}

impl Store {
    /// Up to `limit` runs to review, in queue order, starting after `after` (from an item's
    /// `cursor`); the runs come without their trace and with their feedback.
    pub async fn review_queue(&self, filter: &ReviewFilter, after: Option<&ReviewCursor>, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        filter.check()?;
        let limit = limit.clamp(1, ReviewFilter::MAX_LIMIT);
        let first = after.map_or(ReviewTier::Flagged, ReviewCursor::tier);
        let mut items = Vec::new();
        for tier in ReviewTier::ALL.into_iter().filter(|t| *t >= first) {
            let want = limit - items.len();
            if want == 0 {
                break;
            }
            let mut sql = tier_rows(&select_items(), filter, tier, after);
            sql.push(order_by(tier)).push(" LIMIT ").bind(Arg::Int(i64::try_from(want).unwrap_or(i64::MAX)));
            for row in sql.query().fetch_all(self.reader()).await? {
                items.push(item_from_row(&row, tier)?);
            }
        }
        let ids: Vec<RunId> = items.iter().map(|i| i.run.id.clone()).collect();
        let mut feedback = self.feedback_for_runs(&ids).await?;
        for item in &mut items {
            item.run.feedback = feedback.remove(&item.run.id).unwrap_or_default();
        }
        Ok(items)
    }

    /// The queue item for run `id` if it is in the queue under `filter` (its tier and place),
    /// else `None` (reviewed, filtered out, or not stored).
    pub async fn review_item(&self, filter: &ReviewFilter, id: &RunId) -> Result<Option<ReviewItem>, StoreError> {
        filter.check()?;
        for tier in ReviewTier::ALL {
            let mut sql = tier_rows(&select_items(), filter, tier, None);
            sql.push(" AND r.id = ").bind(Arg::Text(id.to_string()));
            if let Some(row) = sql.query().fetch_optional(self.reader()).await? {
                return item_from_row(&row, tier).map(Some);
            }
        }
        Ok(None)
    }

    /// How many runs wait in each tier of the queue under `filter`, and how many were
    /// reviewed; each count reads at most [`COUNT_CAP`] rows.
    pub async fn review_counts(&self, filter: &ReviewFilter) -> Result<ReviewCounts, StoreError> {
        filter.check()?;
        let cap = Arg::Int(i64::try_from(COUNT_CAP).unwrap_or(i64::MAX));
        let mut counts = [0u64; 3];
        for (i, tier) in ReviewTier::ALL.into_iter().enumerate() {
            let mut sql = tier_rows("SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM runs r", filter, tier, None);
            sql.push(" LIMIT ").bind(cap.clone()).push(") c");
            counts[i] = count_column(&sql.query().fetch_one(self.reader()).await?, "n")?;
        }
        // Reviewed runs are found from the reviewers' feedback (an index on source), not by
        // reading every run.
        let mut sql =
            Sql::new("SELECT COUNT(*) AS n FROM (SELECT DISTINCT f.run_id FROM feedback f JOIN runs r ON r.id = f.run_id WHERE f.source = 'annotation'");
        push_filter(&mut sql, filter);
        sql.push(" LIMIT ").bind(cap).push(") c");
        let reviewed = count_column(&sql.query().fetch_one(self.reader()).await?, "n")?;
        Ok(ReviewCounts { flagged: counts[0], unsure: counts[1], sample: counts[2], reviewed })
    }

    /// Feedback per day, key, source and score on runs of `program` (every program when
    /// `None`), given in `[since, until)`, oldest day first. Scores are grouped as given, so a
    /// caller can tell what each group says (thumbs, ratings on any scale).
    pub async fn feedback_days(&self, program: Option<&str>, since: Timestamp, until: Timestamp) -> Result<Vec<FeedbackDay>, StoreError> {
        let mut sql = Sql::new("SELECT f.created / 86400000 AS day, f.key, f.source, f.score, COUNT(*) AS n FROM feedback f");
        if program.is_some() {
            sql.push(" JOIN runs r ON r.id = f.run_id");
        }
        sql.push(" WHERE f.created >= ").bind(Arg::Int(since.millis())).push(" AND f.created < ").bind(Arg::Int(until.millis()));
        sql.and_eq("r.program", program);
        sql.push(" GROUP BY f.created / 86400000, f.key, f.source, f.score ORDER BY day, f.key, f.source, f.score");
        let mut days = Vec::new();
        for row in sql.query().fetch_all(self.reader()).await? {
            let source: String = row.try_get("source")?;
            days.push(FeedbackDay {
                day: row.try_get("day")?,
                key: row.try_get("key")?,
                source: source.parse()?,
                score: row.try_get("score")?,
                count: count_column(&row, "n")?,
            });
        }
        Ok(days)
    }

    /// The newest `limit` corrections (feedback carrying a corrected output, edits included)
    /// on runs of `program` (every program when `None`), given in `[since, until)`, each with
    /// the outputs of its run; newest first.
    pub async fn corrections(&self, program: Option<&str>, since: Timestamp, until: Timestamp, limit: usize) -> Result<Vec<CorrectionRow>, StoreError> {
        // `CROSS JOIN` makes SQLite read the feedback first (newest first, by its time index) and
        // look each run up by id; with a plain join it starts from every run of the program.
        // PostgreSQL plans it like any inner join.
        let mut sql = Sql::new(
            "SELECT f.run_id, f.created, f.key, f.source, f.correction, r.outputs, r.inputs, COALESCE(f.user_id, r.user_id) AS who FROM feedback f CROSS JOIN runs r \
             WHERE r.id = f.run_id AND f.correction IS NOT NULL AND f.created >= ",
        );
        sql.bind(Arg::Int(since.millis())).push(" AND f.created < ").bind(Arg::Int(until.millis()));
        sql.and_eq("r.program", program);
        sql.push(" ORDER BY f.created DESC, f.id DESC LIMIT ").bind(Arg::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        let mut rows = Vec::new();
        for row in sql.query().fetch_all(self.reader()).await? {
            let run_id: String = row.try_get("run_id")?;
            let what = format!("feedback on run `{run_id}`");
            let source: String = row.try_get("source")?;
            rows.push(CorrectionRow {
                created: Timestamp::from_millis(row.try_get("created")?),
                key: row.try_get("key")?,
                source: source.parse()?,
                correction: opt_json_column(&row, "correction", &what)?.unwrap_or(Value::Null),
                outputs: opt_json_column(&row, "outputs", &what)?,
                inputs: json_column(&row, "inputs", &what)?,
                user_id: row.try_get("who")?,
                run_id: RunId::from_stored(run_id),
            });
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_cursors_print_and_read_back_and_refuse_garbage() {
        for text in ["flagged:1714564800000:run_01HX", "unsure:0.15300000000000002:run_2", "sample:99:req-7"] {
            let c: ReviewCursor = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
        }
        assert_eq!("unsure:0.5:r".parse::<ReviewCursor>().unwrap().tier(), ReviewTier::Unsure);
        for bad in ["", "flagged:1", "flagged:x:run_1", "unsure:NaN:r", "unsure:inf:r", "later:1:r", "sample:1:a b"] {
            assert!(matches!(bad.parse::<ReviewCursor>(), Err(StoreError::InvalidCursor { .. })), "{bad:?}");
        }
    }
}
