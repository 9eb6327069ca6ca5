//! Small helpers shared by the query files: SQL built with `$n` placeholders, JSON columns,
//! and the caller checks every write applies.
//!
//! sqlx's `QueryBuilder` writes `?` placeholders for the `Any` driver, which PostgreSQL
//! rejects; [`Sql`] numbers them itself.

use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::error::StoreError;
use super::redact::Redactor;

/// One bound value.
#[derive(Clone, Debug)]
pub(super) enum Arg {
    Text(String),
    Int(i64),
    /// Never NULL: sqlx's `Any` driver binds a NULL double as PostgreSQL `float4` (see
    /// `feedback.rs`), so optional doubles get a statement of their own instead.
    Float(f64),
}

/// A SQL text and its arguments, placeholders numbered as they are pushed.
#[derive(Debug, Default)]
pub(super) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(super) fn new(text: &str) -> Self {
        Sql { text: text.to_string(), args: Vec::new() }
    }

    /// Appends SQL text.
    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub(super) fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `AND <column> = $n` when `value` is given.
    pub(super) fn and_eq(&mut self, column: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.push(" AND ").push(column).push(" = ").bind(Arg::Text(v.to_string()));
        }
        self
    }

    /// The query, ready to run.
    pub(super) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for arg in &self.args {
            q = match arg {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
                Arg::Float(f) => q.bind(*f),
            };
        }
        q
    }
}

/// A JSON value as stored: redacted, then serialized.
pub(super) fn json_text(redactor: &Redactor, value: &Value) -> String {
    let mut value = value.clone();
    redactor.json_in_place(&mut value);
    value.to_string()
}

/// Reads a JSON column back.
pub(super) fn json_column(row: &AnyRow, column: &str, what: &str) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { what: format!("{what} `{column}`"), detail: e.to_string() })
}

/// Reads a nullable JSON column back.
pub(super) fn opt_json_column(row: &AnyRow, column: &str, what: &str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { what: format!("{what} `{column}`"), detail: e.to_string() })).transpose()
}

/// A count column (`COUNT(*)`, a counter) as an unsigned number.
pub(super) fn count_column(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Checks a user id: stored as given (it is what `forget_user` looks up), so it must not itself
/// be personal data the redactor would remove.
pub(super) fn check_user_id(redactor: &Redactor, user_id: Option<&str>) -> Result<(), StoreError> {
    let Some(id) = user_id else { return Ok(()) };
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::InvalidUserId { reason: "use 1 to 256 characters without spaces" });
    }
    if redactor.text(id) != id {
        return Err(StoreError::InvalidUserId { reason: "it contains an e-mail address, phone or card number; use a pseudonymous id" });
    }
    Ok(())
}

/// Whether a driver error is a violation of the given kind (unique key, foreign key).
pub(super) fn is_violation(err: &sqlx::Error, kind: sqlx::error::ErrorKind) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == kind)
}

/// A `u64` as a BIGINT (saturating; no latency or count comes near the limit).
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
