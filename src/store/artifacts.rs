//! Artifact versions: which compiled artifacts a program has had, their lineage, and what the
//! learner recorded about each (scores, decision, reason, the feedback and dataset used).

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::ids::check_id;
use super::sql::{is_violation, json_column, json_text, opt_json_column};
use super::time::Timestamp;

/// One version of a program's artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactVersion {
    /// The artifact's content hash (its identity).
    pub hash: String,
    /// The version it was learned from, if any.
    pub parent: Option<String>,
    /// The program's name.
    pub program: String,
    /// When it was made.
    pub created: Timestamp,
    /// The artifact JSON itself, so other replicas can load it from the store.
    pub body: Option<Value>,
    /// What the learner recorded: holdout scores, promotion decision and reason, feedback ids
    /// used, dataset hash. Free-form JSON, so later fields need no migration.
    pub meta: Value,
}

fn artifact_from_row(row: &AnyRow) -> Result<ArtifactVersion, StoreError> {
    let hash: String = row.try_get("hash")?;
    let what = format!("artifact `{hash}`");
    Ok(ArtifactVersion {
        parent: row.try_get("parent")?,
        program: row.try_get("program")?,
        created: Timestamp::from_millis(row.try_get("created")?),
        body: opt_json_column(row, "body", &what)?,
        meta: json_column(row, "meta", &what)?,
        hash,
    })
}

impl Store {
    /// Records an artifact version (redacted, like everything stored). Returns whether it was
    /// new: recording a hash the store holds changes nothing, since a hash names one content.
    pub async fn record_artifact(&self, artifact: &ArtifactVersion) -> Result<bool, StoreError> {
        check_id("artifact hash", &artifact.hash)?;
        check_id("program name", &artifact.program)?;
        if let Some(parent) = &artifact.parent {
            check_id("artifact hash", parent)?;
        }
        let body = artifact.body.as_ref().map(|b| json_text(&self.redactor, b));
        let meta = json_text(&self.redactor, &artifact.meta);
        let mut tx = self.begin_write().await?;
        let inserted =
            sqlx::query("INSERT INTO artifacts (hash, parent, program, created, body, meta) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING")
                .bind(&artifact.hash)
                .bind(artifact.parent.as_deref())
                .bind(&artifact.program)
                .bind(artifact.created.millis())
                .bind(body)
                .bind(meta)
                .execute(&mut *tx)
                .await;
        let created = match inserted {
            Ok(r) => r.rows_affected() == 1,
            Err(e) if is_violation(&e, ErrorKind::UniqueViolation) => false,
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        Ok(created)
    }

    /// A program's artifact versions, oldest first.
    pub async fn artifacts(&self, program: &str) -> Result<Vec<ArtifactVersion>, StoreError> {
        let rows = sqlx::query("SELECT hash, parent, program, created, body, meta FROM artifacts WHERE program = $1 ORDER BY created, hash")
            .bind(program)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(artifact_from_row).collect()
    }

    /// Every program's artifact versions, oldest first (without their bodies).
    pub async fn all_artifacts(&self) -> Result<Vec<ArtifactVersion>, StoreError> {
        let rows =
            sqlx::query("SELECT hash, parent, program, created, NULL AS body, meta FROM artifacts ORDER BY created, hash").fetch_all(self.reader()).await?;
        rows.iter().map(artifact_from_row).collect()
    }

    /// One artifact version by hash.
    pub async fn artifact(&self, hash: &str) -> Result<Option<ArtifactVersion>, StoreError> {
        let row =
            sqlx::query("SELECT hash, parent, program, created, body, meta FROM artifacts WHERE hash = $1").bind(hash).fetch_optional(self.reader()).await?;
        row.as_ref().map(artifact_from_row).transpose()
    }
}
