//! Deleting what must not be kept: one user's data on request, and runs past a retention age.
//! Each deletion and its audit event commit together.

use serde_json::json;

use super::audit::{write_event, AuditKind};
use super::db::Store;
use super::error::StoreError;
use super::time::Timestamp;

/// What a deletion removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Runs deleted.
    pub runs: u64,
    /// Feedback deleted (on those runs, and for `forget_user` the user's feedback on other runs).
    pub feedback: u64,
}

impl Store {
    /// Deletes a user's runs, all feedback on them, and the user's feedback on other runs, and
    /// records an audit event (which names the user only by the SHA-256 of their id).
    pub async fn forget_user(&self, user_id: &str) -> Result<Removed, StoreError> {
        let mut tx = self.begin_write().await?;
        let feedback = sqlx::query("DELETE FROM feedback WHERE user_id = $1 OR run_id IN (SELECT id FROM runs WHERE user_id = $1)")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Feedback a concurrent writer adds to these runs meanwhile goes with them (ON DELETE CASCADE).
        let runs = sqlx::query("DELETE FROM runs WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?.rows_affected();
        let removed = Removed { runs, feedback };
        let subject = format!("user:sha256:{}", crate::fs::sha256_hex(user_id.as_bytes()));
        write_event(self, &mut tx, AuditKind::ForgetUser, &subject, &json!({"runs": runs, "feedback": feedback})).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Deletes runs created before `older_than`, with their feedback, and records an audit event.
    pub async fn expire(&self, older_than: Timestamp) -> Result<Removed, StoreError> {
        let mut tx = self.begin_write().await?;
        let feedback = sqlx::query("DELETE FROM feedback WHERE run_id IN (SELECT id FROM runs WHERE created < $1)")
            .bind(older_than.millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let runs = sqlx::query("DELETE FROM runs WHERE created < $1").bind(older_than.millis()).execute(&mut *tx).await?.rows_affected();
        let removed = Removed { runs, feedback };
        write_event(
            self,
            &mut tx,
            AuditKind::Expire,
            &format!("before:{older_than}"),
            &json!({"runs": runs, "feedback": feedback, "older_than": older_than.millis()}),
        )
        .await?;
        tx.commit().await?;
        Ok(removed)
    }
}
