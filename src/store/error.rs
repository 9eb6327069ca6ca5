//! The store's one error type: what went wrong, and for the caller's mistakes, which input.

use std::path::PathBuf;

/// Everything a store operation can fail with.
///
/// Variants up to [`StoreError::Corrupt`] are the caller's to fix (an HTTP layer maps them to
/// 4xx); [`StoreError::Database`] is the database's own failure (5xx, may succeed on retry).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Occurs when a store URL has an unknown scheme or an unusable form.
    #[error("store URL `{url}` is not usable: {reason} (use `sqlite://PATH` or `postgres://USER@HOST/DB`)")]
    BadUrl {
        /// The URL, with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Occurs when the directory for a SQLite file cannot be created.
    #[error("cannot create the store directory `{}`: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Occurs when the database cannot be opened or reached.
    #[error("cannot open the store at `{url}`: {source}")]
    Connect {
        /// The URL, with any password masked.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Occurs when a schema migration fails; the database is left at the previous version.
    #[error("store migration {version} (`{name}`) failed: {source}")]
    Migrate {
        /// The migration's number.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Occurs when the database was migrated by a newer loopc than this one.
    #[error("the store's schema is at version {found}, newer than this loopc knows ({supported}); upgrade loopc")]
    SchemaTooNew {
        /// The newest migration recorded in the database.
        found: i64,
        /// The newest migration this build has.
        supported: i64,
    },
    /// Occurs when feedback names a run the store does not hold (never stored, forgotten or expired).
    #[error("run `{run_id}` is not in the store")]
    UnknownRun {
        /// The run id given.
        run_id: String,
    },
    /// Occurs when a run is recorded with an id the store already holds.
    #[error("run `{run_id}` is already in the store")]
    RunExists {
        /// The run id given.
        run_id: String,
    },
    /// Occurs when a feedback client id, already stored for one run, is sent for another.
    #[error("feedback id `{client_id}` was already used for run `{stored_run}`, not `{run_id}`")]
    ClientIdReused {
        /// The client id.
        client_id: String,
        /// The run it was stored for.
        stored_run: String,
        /// The run it was sent for now.
        run_id: String,
    },
    /// Occurs when feedback breaks a rule of its kind (a non-finite score, an unknown implicit signal).
    #[error("invalid feedback: {reason}")]
    InvalidFeedback {
        /// Which rule.
        reason: String,
    },
    /// Occurs when an id or key given by the caller is empty, too long or has characters outside
    /// `A-Z a-z 0-9 _ - . :`.
    #[error("invalid {what} `{value}`: use 1 to 128 characters from `A-Z a-z 0-9 _ - . :`")]
    InvalidId {
        /// Which kind of id.
        what: &'static str,
        /// The id given.
        value: String,
    },
    /// Occurs when a user id is empty, too long, has spaces, or is itself personal data (user
    /// ids are stored as given, so an e-mail address would defeat redaction). The id itself is
    /// left out of the message for the same reason.
    #[error("invalid user id: {reason}")]
    InvalidUserId {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Occurs when a page cursor was not made by this store.
    #[error("invalid page cursor `{cursor}`")]
    InvalidCursor {
        /// The cursor given.
        cursor: String,
    },
    /// Occurs when a stored row cannot be read back (edited by hand, or written by a broken build).
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt {
        /// Which row and column.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Occurs when the database fails a query (connection lost, disk full, lock timeout).
    #[error("store query failed: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the caller's input caused the error (as opposed to the database failing).
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            StoreError::UnknownRun { .. }
                | StoreError::RunExists { .. }
                | StoreError::ClientIdReused { .. }
                | StoreError::InvalidFeedback { .. }
                | StoreError::InvalidId { .. }
                | StoreError::InvalidUserId { .. }
                | StoreError::InvalidCursor { .. }
        )
    }
}

/// `url` with the password of its user-info part replaced by `***`, for messages.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_everything_else_is_kept() {
        assert_eq!(mask_password("postgres://loop:s3cret@db:5432/loopc?sslmode=require"), "postgres://loop:***@db:5432/loopc?sslmode=require");
        assert_eq!(mask_password("postgres://loop@db/loopc"), "postgres://loop@db/loopc");
        assert_eq!(mask_password("sqlite:///tmp/a@b/store.db"), "sqlite:///tmp/a@b/store.db");
        assert_eq!(mask_password("nonsense"), "nonsense");
    }
}
