//! The store: every run, every piece of feedback, artifact versions and audit events, in
//! SQLite (embedded, the default) or PostgreSQL (shared by several replicas), through one
//! query layer (sqlx's `Any` driver, one SQL dialect, embedded migrations).
//!
//! The store takes JSON values and plain types; it knows nothing of programs, the runtime or
//! a server (tested in `tests/architecture.rs`). Three rules hold for every method:
//! - **every write is one transaction**, and returns only after its commit;
//! - **redaction happens inside the store**: every string written goes through
//!   [`redact::Redactor`] first, so no caller can forget it;
//! - **caller mistakes are typed errors** ([`StoreError`]), never panics.
//!
//! ```no_run
//! # async fn demo() -> Result<(), loopc::store::StoreError> {
//! use loopc::store::{FeedbackPayload, NewFeedback, NewRun, Store};
//! let store = Store::open("sqlite://loopc-store/store.db").await?;
//! let run = store.record_run(NewRun::new("triage", serde_json::json!({"ticket": "I was charged twice"}))).await?;
//! if let Some(id) = run.run_id() {
//!     store.add_feedback(NewFeedback::new(id.clone(), "thumbs", FeedbackPayload::Score(1.0))).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Layout: `db.rs` (opening URLs, connections), `migrate.rs` + `migrations/`
//! (schema), `runs.rs`, `feedback.rs`, `artifacts.rs`, `audit.rs`, `feed.rs` (following feedback and deletions as they happen), `retention.rs` (forget,
//! expire), `review.rs` (the review queue and the dashboard's figures), `secrets.rs` (secrets
//! shared by every process on a store), `leases.rs`, `stats.rs`, `redact.rs`, `ids.rs`,
//! `time.rs`, `sql.rs` (query helpers), `writer.rs` (the write transaction), `bench.rs`.

mod artifacts;
mod audit;
mod bench;
mod db;
mod error;
mod feed;
mod feedback;
mod ids;
mod leases;
mod migrate;
pub mod redact;
mod retention;
mod review;
mod runs;
mod secrets;
mod sql;
mod stats;
mod time;
mod writer;

pub use artifacts::ArtifactVersion;
pub use audit::{AuditEvent, AuditKind};
pub use bench::{bench_feedback_writes, WriteThroughput};
pub use db::{Backend, Store};
pub use error::{mask_password, StoreError};
pub use feed::{FeedbackStamp, FOLLOW_OVERLAP_MS, FOLLOW_PAGE};
pub use feedback::{FeedbackFilter, FeedbackPayload, FeedbackSource, FeedbackWrite, ImplicitSignal, NewFeedback, StoredFeedback};
pub use ids::{FeedbackId, RunId};
pub use migrate::schema_version;
pub use retention::Removed;
pub use review::{CorrectionRow, FeedbackDay, ReviewCounts, ReviewCursor, ReviewFilter, ReviewItem, ReviewTier, COUNT_CAP};
pub use runs::{Consent, NewRun, Page, RecordedRun, RunCursor, RunFilter, RunOrder, StoredRun};
pub use stats::{ProgramStats, StoreStats};
pub use time::{BadTimestamp, Timestamp};
