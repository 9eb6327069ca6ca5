//! Secrets shared by every process on one store, made on first use: `loopc serve` signs
//! feedback tokens with one, so that every replica on a PostgreSQL store, and a server after a
//! restart, accepts the tokens the others issued.
//!
//! Anyone who can read the database can read the secret; a deployment that keeps its token key
//! elsewhere passes it to the server instead (`loopc serve --token-secret-file`).

use sqlx::Row;

use super::db::Store;
use super::error::StoreError;
use super::ids::check_id;
use super::time::Timestamp;

/// The secret's alphabet: sixteen letters, so a secret holds no digit, `@` or `+` and the
/// redactor every stored string goes through can never mistake it for a card, phone or address.
const ALPHABET: &[u8; 16] = b"abcdefghijklmnop";

/// 256 random bits written in [`ALPHABET`] (64 characters).
fn fresh_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().flat_map(|b| [ALPHABET[usize::from(b >> 4)], ALPHABET[usize::from(b & 15)]]).map(char::from).collect()
}

impl Store {
    /// The secret named `name`: read if the store holds it, otherwise made (256 random bits, as
    /// 64 letters) and stored. When processes race to make it, the first commit wins and every
    /// caller gets that one.
    pub async fn shared_secret(&self, name: &str) -> Result<String, StoreError> {
        check_id("secret name", name)?;
        let read = sqlx::query("SELECT value FROM secrets WHERE name = $1").bind(name).fetch_optional(self.reader()).await?;
        if let Some(row) = read {
            return Ok(row.try_get("value")?);
        }
        // Redacting is a no-op on this alphabet; it is done anyway, as for every stored string.
        let candidate = self.redactor.text(&fresh_secret()).into_owned();
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO secrets (name, value, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(&candidate)
            .bind(Timestamp::now().millis())
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT value FROM secrets WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
        let value: String = row.try_get("value")?;
        tx.commit().await?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_letters_the_redactor_leaves_alone() {
        let redactor = super::super::redact::Redactor::new();
        for _ in 0..200 {
            let s = fresh_secret();
            assert_eq!(s.len(), 64);
            assert!(s.bytes().all(|b| ALPHABET.contains(&b)), "{s}");
            assert_eq!(redactor.text(&s), s);
        }
        assert_ne!(fresh_secret(), fresh_secret());
    }

    #[tokio::test]
    async fn a_secret_is_made_once_and_then_read_back_by_every_handle() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let (a, b) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
        let (x, y) = tokio::join!(a.shared_secret("token_key"), b.shared_secret("token_key"));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x, y, "racing handles agree on one secret");
        assert_eq!(a.shared_secret("token_key").await.unwrap(), x);
        assert_ne!(a.shared_secret("other").await.unwrap(), x);
        assert!(matches!(a.shared_secret("bad name").await, Err(StoreError::InvalidId { .. })));
    }
}
