//! Audit events: a record of what was done to the store's contents (users forgotten, runs
//! expired, artifacts promoted), written in the same transaction as the change itself.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::sql::{json_column, json_text, Sql};
use super::time::Timestamp;
use super::writer::WriteTx;

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A user's runs and feedback were deleted.
    ForgetUser,
    /// Runs older than a retention limit were deleted.
    Expire,
    /// An artifact version became the current one.
    Promote,
    /// A candidate artifact was rejected by the promotion gate.
    Reject,
    /// The current artifact was rolled back to an earlier version.
    Rollback,
    /// A recorded artifact version was trained on data of a user since forgotten.
    Taint,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [AuditKind; 6] = [AuditKind::ForgetUser, AuditKind::Expire, AuditKind::Promote, AuditKind::Reject, AuditKind::Rollback, AuditKind::Taint];

    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ForgetUser => "forget_user",
            AuditKind::Expire => "expire",
            AuditKind::Promote => "promote",
            AuditKind::Reject => "reject",
            AuditKind::Rollback => "rollback",
            AuditKind::Taint => "taint",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditKind {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt { what: "audit event".into(), detail: format!("unknown kind `{s}`") })
    }
}

/// One audit event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// The event's id.
    pub id: String,
    /// What happened.
    pub kind: AuditKind,
    /// What it happened to (an artifact hash, a hashed user id, a program).
    pub subject: String,
    /// Details (counts, reasons), redacted like everything stored.
    pub detail: Value,
    /// When.
    pub created: Timestamp,
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    Ok(AuditEvent {
        kind: kind.parse()?,
        subject: row.try_get("subject")?,
        detail: json_column(row, "detail", &format!("audit event `{id}`"))?,
        created: Timestamp::from_millis(row.try_get("created")?),
        id,
    })
}

/// Writes an audit event inside the caller's transaction, so it commits with the change it records.
pub(super) async fn write_event(store: &Store, tx: &mut WriteTx, kind: AuditKind, subject: &str, detail: &Value) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_events (id, kind, subject, detail, created) VALUES ($1, $2, $3, $4, $5)")
        .bind(store.ids.next("ev_"))
        .bind(kind.as_str())
        .bind(store.redactor.text(subject).as_ref())
        .bind(json_text(&store.redactor, detail))
        .bind(Timestamp::now().millis())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Records an audit event on its own (changes made elsewhere, such as a promotion).
    pub async fn audit(&self, kind: AuditKind, subject: &str, detail: &Value) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        write_event(self, &mut tx, kind, subject, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit events, oldest first, of one kind or all.
    pub async fn audit_events(&self, kind: Option<AuditKind>) -> Result<Vec<AuditEvent>, StoreError> {
        let mut sql = Sql::new("SELECT id, kind, subject, detail, created FROM audit_events WHERE 1 = 1");
        sql.and_eq("kind", kind.map(AuditKind::as_str)).push(" ORDER BY created, id");
        let rows = sql.query().fetch_all(self.reader()).await?;
        rows.iter().map(event_from_row).collect()
    }
}
