//! Embedded schema migrations, applied when a store opens.
//!
//! Each migration is a SQL file in `migrations/`, compiled into the binary, written in the one
//! dialect both databases accept. Applied versions are recorded in `store_migrations`. All
//! pending migrations run in one write transaction; on PostgreSQL it first takes an advisory
//! lock, so replicas starting together apply each migration once and the others wait for it.

use sqlx::Row;

use super::db::{Backend, Store};
use super::error::StoreError;
use super::time::Timestamp;

/// One schema step.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append only: a released migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("migrations/0001_init.sql") },
    Migration { version: 2, name: "secrets", sql: include_str!("migrations/0002_secrets.sql") },
    Migration { version: 3, name: "leases", sql: include_str!("migrations/0003_leases.sql") },
];

/// The advisory lock key migrations take on PostgreSQL ("loopc" in ASCII).
const MIGRATION_LOCK: i64 = 0x006c_6f6f_7063;

/// The newest schema version this build knows.
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The statements of a migration: split at `;`, comment-only pieces dropped. Migrations
/// put `;` only at the end of a statement line (tested).
fn statements(sql: &'static str) -> impl Iterator<Item = &'static str> {
    sql.split(';').map(str::trim).filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")))
}

pub(super) async fn run(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    if store.backend() == Backend::Postgres {
        // Released at commit. `SELECT 1 FROM f()` because the function returns `void`, a type
        // the Any driver cannot carry.
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS store_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS v FROM store_migrations").fetch_one(&mut *tx).await?;
    let current: i64 = row.try_get("v")?;
    if current > schema_version() {
        return Err(StoreError::SchemaTooNew { found: current, supported: schema_version() });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |source| StoreError::Migrate { version: m.version, name: m.name, source };
        // One prepared statement at a time: `raw_sql` would make this future not `Send`.
        for statement in statements(m.sql) {
            sqlx::query(statement).execute(&mut *tx).await.map_err(failed)?;
        }
        sqlx::query("INSERT INTO store_migrations (version, name, applied) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(Timestamp::now().millis())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration `{}`", m.name);
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    fn migrations_split_into_whole_statements() {
        for m in MIGRATIONS {
            for line in m.sql.lines().filter(|l| l.contains(';')) {
                let ends_statement = line.trim_end().ends_with(';') && line.matches(';').count() == 1 && !line.trim_start().starts_with("--");
                assert!(ends_statement, "migration `{}`: a `;` that does not end a statement: `{line}`", m.name);
            }
            for s in statements(m.sql) {
                let first = s.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("--")).unwrap_or_default();
                assert!(first.starts_with("CREATE "), "migration `{}`: `{first}`", m.name);
            }
        }
        assert_eq!(statements(MIGRATIONS[0].sql).count(), 15);
    }

    #[test]
    fn migrations_use_only_the_shared_dialect() {
        // Words that work in one database and not the other.
        for m in MIGRATIONS {
            let sql = m.sql.to_ascii_uppercase();
            for word in ["AUTOINCREMENT", "SERIAL", "JSONB", "TIMESTAMPTZ", " REAL", "BOOLEAN", "DATETIME", "WITHOUT ROWID", "STRICT"] {
                assert!(!sql.contains(word), "migration `{}` uses `{}`", m.name, word.trim());
            }
        }
    }
}
