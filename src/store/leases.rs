//! Leases: "one at a time" across every process on one store. A lease names a job (say the
//! learner of a program), has one holder and an expiry; taking it succeeds when it is free,
//! lapsed, or already ours, in one conditional upsert, so two replicas racing for it cannot
//! both win. A holder that dies frees it when it lapses.

use std::time::Duration;

use super::db::Store;
use super::error::StoreError;
use super::ids::check_id;
use super::time::Timestamp;

impl Store {
    /// Takes (or renews) the lease `name` for `holder` until `ttl` from now; whether it is ours.
    pub async fn take_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        check_id("lease name", name)?;
        check_id("lease holder", holder)?;
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires \
             WHERE leases.expires < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now.plus(ttl).millis())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up the lease `name` if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
