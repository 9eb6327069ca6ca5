//! Counts over the store, for `/metrics`, `loopc runs list` and reports.

use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::sql::count_column;

/// Totals over the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Stored runs.
    pub runs: u64,
    /// Stored feedback.
    pub feedback: u64,
    /// Recorded artifact versions.
    pub artifacts: u64,
    /// Audit events.
    pub audit_events: u64,
    /// Runs recorded without consent (counted, not stored).
    pub unconsented_runs: u64,
    /// Per program, by name.
    pub programs: Vec<ProgramStats>,
    /// Feedback per key, by key.
    pub feedback_keys: Vec<(String, u64)>,
}

/// Counts for one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// The program's name.
    pub program: String,
    /// Its stored runs.
    pub runs: u64,
    /// Feedback on its runs.
    pub feedback: u64,
    /// Its runs recorded without consent.
    pub unconsented_runs: u64,
}

impl Store {
    /// Counts of everything stored.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let db = self.reader();
        let totals = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM runs) AS runs, (SELECT COUNT(*) FROM feedback) AS feedback, \
             (SELECT COUNT(*) FROM artifacts) AS artifacts, (SELECT COUNT(*) FROM audit_events) AS audit_events, \
             (SELECT CAST(COALESCE(SUM(unconsented_runs), 0) AS BIGINT) FROM counters) AS unconsented",
        )
        .fetch_one(db)
        .await?;
        let mut stats = StoreStats {
            runs: count_column(&totals, "runs")?,
            feedback: count_column(&totals, "feedback")?,
            artifacts: count_column(&totals, "artifacts")?,
            audit_events: count_column(&totals, "audit_events")?,
            unconsented_runs: count_column(&totals, "unconsented")?,
            ..StoreStats::default()
        };
        let per_program = sqlx::query(
            "SELECT p.program, \
               (SELECT COUNT(*) FROM runs r WHERE r.program = p.program) AS runs, \
               (SELECT COUNT(*) FROM feedback f JOIN runs r ON r.id = f.run_id WHERE r.program = p.program) AS feedback, \
               (SELECT CAST(COALESCE(SUM(c.unconsented_runs), 0) AS BIGINT) FROM counters c WHERE c.program = p.program) AS unconsented \
             FROM (SELECT DISTINCT program FROM runs UNION SELECT program FROM counters) p ORDER BY p.program",
        )
        .fetch_all(db)
        .await?;
        for row in per_program {
            stats.programs.push(ProgramStats {
                program: row.try_get("program")?,
                runs: count_column(&row, "runs")?,
                feedback: count_column(&row, "feedback")?,
                unconsented_runs: count_column(&row, "unconsented")?,
            });
        }
        for row in sqlx::query("SELECT key, COUNT(*) AS n FROM feedback GROUP BY key ORDER BY key").fetch_all(db).await? {
            stats.feedback_keys.push((row.try_get("key")?, count_column(&row, "n")?));
        }
        Ok(stats)
    }
}
