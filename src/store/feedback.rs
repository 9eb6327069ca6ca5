//! Feedback on runs: scores, categorical values and corrections from users, API callers,
//! models, implicit signals and annotators, written idempotently and read back with filters.
//!
//! Fields follow the vocabulary of LangSmith and Langfuse: a `key` names what is measured, the
//! payload is a `score`, a categorical `value` or a `correction`, with an optional `comment`
//! and the `source`. A client id makes a write idempotent: the UNIQUE constraint decides, so
//! concurrent duplicates store one row whatever their timing.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::ids::{check_id, FeedbackId, RunId};
use super::sql::{check_user_id, is_violation, json_text, opt_json_column, Arg, Sql};
use super::time::Timestamp;

/// Who or what gave a piece of feedback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeedbackSource {
    /// A person using the program (thumbs, ratings, corrections in the product).
    User,
    /// Another system through the API.
    Api,
    /// A model (an LM judge).
    Model,
    /// An implicit signal from the product ([`ImplicitSignal`]).
    Implicit,
    /// A reviewer labelling runs after the fact.
    Annotation,
}

impl FeedbackSource {
    /// Every source.
    pub const ALL: [FeedbackSource; 5] =
        [FeedbackSource::User, FeedbackSource::Api, FeedbackSource::Model, FeedbackSource::Implicit, FeedbackSource::Annotation];

    /// The source as stored and shown: `user`, `api`, `model`, `implicit`, `annotation`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackSource::User => "user",
            FeedbackSource::Api => "api",
            FeedbackSource::Model => "model",
            FeedbackSource::Implicit => "implicit",
            FeedbackSource::Annotation => "annotation",
        }
    }
}

impl fmt::Display for FeedbackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeedbackSource {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FeedbackSource::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| StoreError::InvalidFeedback {
            reason: format!("unknown source `{}` (known: user, api, model, implicit, annotation)", s.chars().take(40).collect::<String>()),
        })
    }
}

/// What a piece of feedback says.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedbackPayload {
    /// A number: thumbs as 0 or 1, a rating, a judge's score. Must be finite.
    Score(f64),
    /// A categorical answer (`"too long"`, `"wrong_label"`).
    Value(String),
    /// What the output should have been, as the program's output JSON.
    Correction(Value),
}

/// The fixed vocabulary of implicit signals, stored with source `implicit` and the signal's
/// name as the key.
#[derive(Clone, Debug, PartialEq)]
pub enum ImplicitSignal {
    /// The user kept the output as it was (score 1).
    Accepted,
    /// The user discarded the output (score 0).
    Rejected,
    /// The user changed the output before using it; carries the edited output (a correction).
    Edited(Value),
    /// The user asked for another output (score 0).
    Regenerated,
}

impl ImplicitSignal {
    /// The signal's name, which is its feedback key.
    pub fn name(&self) -> &'static str {
        match self {
            ImplicitSignal::Accepted => "accepted",
            ImplicitSignal::Rejected => "rejected",
            ImplicitSignal::Edited(_) => "edited",
            ImplicitSignal::Regenerated => "regenerated",
        }
    }

    /// The payload the signal is stored as.
    pub fn payload(&self) -> FeedbackPayload {
        match self {
            ImplicitSignal::Accepted => FeedbackPayload::Score(1.0),
            ImplicitSignal::Rejected | ImplicitSignal::Regenerated => FeedbackPayload::Score(0.0),
            ImplicitSignal::Edited(v) => FeedbackPayload::Correction(v.clone()),
        }
    }

    /// The signal a stored key and payload stand for, if they are one.
    pub fn from_parts(key: &str, payload: &FeedbackPayload) -> Option<ImplicitSignal> {
        match (key, payload) {
            ("accepted", FeedbackPayload::Score(_)) => Some(ImplicitSignal::Accepted),
            ("rejected", FeedbackPayload::Score(_)) => Some(ImplicitSignal::Rejected),
            ("regenerated", FeedbackPayload::Score(_)) => Some(ImplicitSignal::Regenerated),
            ("edited", FeedbackPayload::Correction(v)) => Some(ImplicitSignal::Edited(v.clone())),
            _ => None,
        }
    }
}

/// Feedback to add. Start from [`NewFeedback::new`] or [`NewFeedback::implicit`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewFeedback {
    /// The client's own id for this feedback: sending it again stores nothing new.
    pub client_id: Option<String>,
    /// The run it is about.
    pub run_id: RunId,
    /// What it measures (`thumbs`, `rating`, `correction`, or an implicit signal's name).
    pub key: String,
    /// What it says.
    pub payload: FeedbackPayload,
    /// Free text.
    pub comment: Option<String>,
    /// Who gave it.
    pub source: FeedbackSource,
    /// Which user gave it (pseudonymous).
    pub user_id: Option<String>,
    /// When it was given; now when not given.
    pub created: Option<Timestamp>,
}

impl NewFeedback {
    /// Feedback from the API on `run_id` under `key`.
    pub fn new(run_id: RunId, key: impl Into<String>, payload: FeedbackPayload) -> Self {
        NewFeedback { client_id: None, run_id, key: key.into(), payload, comment: None, source: FeedbackSource::Api, user_id: None, created: None }
    }

    /// An implicit signal on `run_id`: key and payload come from the signal.
    pub fn implicit(run_id: RunId, signal: ImplicitSignal) -> Self {
        NewFeedback { source: FeedbackSource::Implicit, ..NewFeedback::new(run_id, signal.name(), signal.payload()) }
    }

    fn check(&self) -> Result<(), StoreError> {
        check_id("feedback key", &self.key)?;
        if let Some(c) = &self.client_id {
            check_id("feedback client id", c)?;
        }
        if let FeedbackPayload::Score(s) = self.payload {
            if !s.is_finite() {
                return Err(StoreError::InvalidFeedback { reason: format!("score {s} is not a finite number") });
            }
        }
        if self.source == FeedbackSource::Implicit && ImplicitSignal::from_parts(&self.key, &self.payload).is_none() {
            return Err(StoreError::InvalidFeedback {
                reason: format!("implicit feedback `{}` is not one of accepted, rejected, regenerated (scores) or edited (a correction)", self.key),
            });
        }
        Ok(())
    }
}

/// What [`Store::add_feedback`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackWrite {
    /// The stored feedback's id (the earlier one, for a repeated client id).
    pub id: FeedbackId,
    /// Whether this call stored it (false: the client id was already stored).
    pub created: bool,
}

/// Feedback as stored (redacted).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFeedback {
    /// The store's id for it.
    pub id: FeedbackId,
    /// The client's id for it, if one was sent.
    pub client_id: Option<String>,
    /// The run it is about.
    pub run_id: RunId,
    /// What it measures.
    pub key: String,
    /// What it says.
    pub payload: FeedbackPayload,
    /// Free text.
    pub comment: Option<String>,
    /// Who gave it.
    pub source: FeedbackSource,
    /// Which user gave it.
    pub user_id: Option<String>,
    /// When it was given.
    pub created: Timestamp,
}

impl StoredFeedback {
    /// The implicit signal this feedback records, if it is one.
    pub fn implicit_signal(&self) -> Option<ImplicitSignal> {
        (self.source == FeedbackSource::Implicit).then(|| ImplicitSignal::from_parts(&self.key, &self.payload)).flatten()
    }
}

/// Which feedback to list, oldest first. All conditions must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackFilter {
    /// Only feedback on runs of this program.
    pub program: Option<String>,
    /// Only feedback on runs of this artifact.
    pub artifact_hash: Option<String>,
    /// Only feedback on this run.
    pub run_id: Option<RunId>,
    /// Only this key.
    pub key: Option<String>,
    /// Only this source.
    pub source: Option<FeedbackSource>,
    /// Only feedback from this user.
    pub user_id: Option<String>,
    /// Only feedback given at or after this time.
    pub since: Option<Timestamp>,
    /// Only feedback given before this time.
    pub until: Option<Timestamp>,
    /// At most this many (all when `None`).
    pub limit: Option<usize>,
}

/// Inserts feedback with its payload in `score`, `value` or `correction` ($5), the other two NULL.
const INSERT_SCORE: &str = "INSERT INTO feedback (id, client_id, run_id, key, score, comment, source, user_id, created) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (client_id) DO NOTHING RETURNING id";
const INSERT_VALUE: &str = "INSERT INTO feedback (id, client_id, run_id, key, value, comment, source, user_id, created) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (client_id) DO NOTHING RETURNING id";
const INSERT_CORRECTION: &str = "INSERT INTO feedback (id, client_id, run_id, key, correction, comment, source, user_id, created) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (client_id) DO NOTHING RETURNING id";

pub(super) const FEEDBACK_COLUMNS: &str = "f.id, f.client_id, f.run_id, f.key, f.score, f.value, f.correction, f.comment, f.source, f.user_id, f.created";

pub(super) fn feedback_from_row(row: &AnyRow) -> Result<StoredFeedback, StoreError> {
    let id: String = row.try_get("id")?;
    let what = format!("feedback `{id}`");
    let score: Option<f64> = row.try_get("score")?;
    let value: Option<String> = row.try_get("value")?;
    let correction = opt_json_column(row, "correction", &what)?;
    let payload = match (score, value, correction) {
        (Some(s), None, None) => FeedbackPayload::Score(s),
        (None, Some(v), None) => FeedbackPayload::Value(v),
        (None, None, Some(c)) => FeedbackPayload::Correction(c),
        _ => return Err(StoreError::Corrupt { what, detail: "not exactly one of score, value, correction".into() }),
    };
    let source: String = row.try_get("source")?;
    Ok(StoredFeedback {
        client_id: row.try_get("client_id")?,
        run_id: RunId::from_stored(row.try_get("run_id")?),
        key: row.try_get("key")?,
        payload,
        comment: row.try_get("comment")?,
        source: source.parse().map_err(|_| StoreError::Corrupt { what: what.clone(), detail: format!("unknown source `{source}`") })?,
        user_id: row.try_get("user_id")?,
        created: Timestamp::from_millis(row.try_get("created")?),
        id: FeedbackId::from_stored(id),
    })
}

impl Store {
    /// Adds feedback to a run, redacted, in one transaction; returns after the commit.
    ///
    /// A repeated `client_id` stores nothing and returns the first write's id with
    /// `created: false`, also when the duplicates race. The same client id for another run is
    /// [`StoreError::ClientIdReused`]; a run the store does not hold is [`StoreError::UnknownRun`].
    pub async fn add_feedback(&self, feedback: NewFeedback) -> Result<FeedbackWrite, StoreError> {
        feedback.check()?;
        check_user_id(&self.redactor, feedback.user_id.as_deref())?;
        // One statement per payload column, each binding its payload as a non-NULL value.
        // sqlx's `Any` driver binds a NULL double as PostgreSQL `float4` (sqlx 0.8.6 swaps the
        // two float kinds for NULLs); a statement first prepared with a NULL score would then
        // refuse every later 8-byte score on that connection ("incorrect binary data format").
        let (sql, score, text) = match &feedback.payload {
            FeedbackPayload::Score(s) => (INSERT_SCORE, Some(*s), None),
            FeedbackPayload::Value(v) => (INSERT_VALUE, None, Some(self.redactor.text(v).into_owned())),
            FeedbackPayload::Correction(c) => (INSERT_CORRECTION, None, Some(json_text(&self.redactor, c))),
        };
        let comment = feedback.comment.as_deref().map(|c| self.redactor.text(c).into_owned());
        let id = FeedbackId::from_stored(self.ids.next("fb_"));
        let created = feedback.created.unwrap_or_else(Timestamp::now);
        let unknown_run = || StoreError::UnknownRun { run_id: feedback.run_id.to_string() };

        let mut tx = self.begin_write().await?;
        // The foreign key refuses a run that is not there; ON CONFLICT makes a repeated client
        // id a no-op that returns no row. (NULL client ids never conflict.)
        let query = sqlx::query(sql).bind(id.as_str()).bind(feedback.client_id.as_deref()).bind(feedback.run_id.as_str()).bind(&feedback.key);
        let query = match (score, text) {
            (Some(s), _) => query.bind(s),
            (None, t) => query.bind(t.unwrap_or_default()),
        };
        let inserted =
            query.bind(comment).bind(feedback.source.as_str()).bind(feedback.user_id.as_deref()).bind(created.millis()).fetch_optional(&mut *tx).await;
        let write = match inserted {
            Ok(Some(_)) => FeedbackWrite { id, created: true },
            Ok(None) => {
                // Only a client id can conflict: read the row that holds it. On PostgreSQL the
                // INSERT waited for a concurrent holder to commit, so this statement sees it.
                let client_id = feedback.client_id.as_deref().unwrap_or_default();
                let row = sqlx::query("SELECT id, run_id FROM feedback WHERE client_id = $1").bind(client_id).fetch_one(&mut *tx).await?;
                let (stored, stored_run): (String, String) = (row.try_get("id")?, row.try_get("run_id")?);
                if stored_run != feedback.run_id.as_str() {
                    return Err(StoreError::ClientIdReused { client_id: client_id.to_string(), stored_run, run_id: feedback.run_id.to_string() });
                }
                FeedbackWrite { id: FeedbackId::from_stored(stored), created: false }
            }
            Err(e) if is_violation(&e, ErrorKind::ForeignKeyViolation) => return Err(unknown_run()),
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        Ok(write)
    }

    /// Feedback matching `filter`, oldest first (by created, then id).
    pub async fn feedback(&self, filter: &FeedbackFilter) -> Result<Vec<StoredFeedback>, StoreError> {
        let joins_runs = filter.program.is_some() || filter.artifact_hash.is_some();
        let mut sql = Sql::new(&format!("SELECT {FEEDBACK_COLUMNS} FROM feedback f"));
        if joins_runs {
            sql.push(" JOIN runs r ON r.id = f.run_id");
        }
        sql.push(" WHERE 1 = 1");
        sql.and_eq("r.program", filter.program.as_deref())
            .and_eq("r.artifact_hash", filter.artifact_hash.as_deref())
            .and_eq("f.run_id", filter.run_id.as_ref().map(RunId::as_str))
            .and_eq("f.key", filter.key.as_deref())
            .and_eq("f.source", filter.source.map(FeedbackSource::as_str))
            .and_eq("f.user_id", filter.user_id.as_deref());
        if let Some(t) = filter.since {
            sql.push(" AND f.created >= ").bind(Arg::Int(t.millis()));
        }
        if let Some(t) = filter.until {
            sql.push(" AND f.created < ").bind(Arg::Int(t.millis()));
        }
        sql.push(" ORDER BY f.created, f.id");
        if let Some(n) = filter.limit {
            sql.push(" LIMIT ").bind(Arg::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        }
        let rows = sql.query().fetch_all(self.reader()).await?;
        rows.iter().map(feedback_from_row).collect()
    }

    /// The feedback on each of `runs`, oldest first per run.
    pub(super) async fn feedback_for_runs(&self, runs: &[RunId]) -> Result<HashMap<RunId, Vec<StoredFeedback>>, StoreError> {
        let mut by_run: HashMap<RunId, Vec<StoredFeedback>> = HashMap::new();
        if runs.is_empty() {
            return Ok(by_run);
        }
        let mut sql = Sql::new(&format!("SELECT {FEEDBACK_COLUMNS} FROM feedback f WHERE f.run_id IN ("));
        for (i, id) in runs.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(id.to_string()));
        }
        sql.push(") ORDER BY f.created, f.id");
        for row in sql.query().fetch_all(self.reader()).await? {
            let f = feedback_from_row(&row)?;
            by_run.entry(f.run_id.clone()).or_default().push(f);
        }
        Ok(by_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_print_and_parse_as_the_same_words() {
        for s in FeedbackSource::ALL {
            assert_eq!(s.as_str().parse::<FeedbackSource>().unwrap(), s);
        }
        assert!("USER".parse::<FeedbackSource>().is_err());
    }

    #[test]
    fn implicit_signals_round_trip_through_key_and_payload() {
        for signal in
            [ImplicitSignal::Accepted, ImplicitSignal::Rejected, ImplicitSignal::Regenerated, ImplicitSignal::Edited(serde_json::json!({"label": "bug"}))]
        {
            assert_eq!(ImplicitSignal::from_parts(signal.name(), &signal.payload()), Some(signal.clone()));
            assert!(NewFeedback::implicit(RunId::generate(), signal).check().is_ok());
        }
    }

    #[test]
    fn implicit_feedback_outside_the_vocabulary_or_with_the_wrong_payload_is_refused() {
        let run = RunId::generate();
        let mut f = NewFeedback::implicit(run.clone(), ImplicitSignal::Accepted);
        f.key = "liked".into();
        assert!(matches!(f.check(), Err(StoreError::InvalidFeedback { .. })));
        let mut f = NewFeedback::implicit(run.clone(), ImplicitSignal::Accepted);
        f.key = "edited".into();
        assert!(matches!(f.check(), Err(StoreError::InvalidFeedback { .. })), "edited needs a correction");
        let f = NewFeedback::new(run.clone(), "rating", FeedbackPayload::Score(f64::NAN));
        assert!(matches!(f.check(), Err(StoreError::InvalidFeedback { .. })));
        let f = NewFeedback::new(run, "has space", FeedbackPayload::Score(1.0));
        assert!(matches!(f.check(), Err(StoreError::InvalidId { what: "feedback key", .. })));
    }
}
