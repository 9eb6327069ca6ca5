//! **Serving:** the loop's capture half. A [`Service`] holds one program (from source or an
//! artifact) and a store, and records every run and every piece of feedback, checked against
//! the program's `feedback` declarations; [`serve`] puts it behind HTTP (axum): runs,
//! feedback (with the API key or a run's signed feedback token), runs read back, health and
//! Prometheus metrics, with body and concurrency limits, JSON errors and a draining shutdown.
//!
//! `serve` (with `learn`) is where the runtime meets the store; neither knows of it
//! (`tests/architecture.rs`). A 2xx answer is sent only after the store committed.
//!
//! Layout: `service.rs` (the library path), `feedback.rs` (checking feedback),
//! `token.rs` (feedback tokens), `auth.rs` (API key and callers), `app.rs` (routes and
//! layers), `server.rs` (options, token key, serving and draining, retention),
//! `metrics.rs`, `view.rs` (runs and feedback as JSON), `error.rs`, `learner.rs` (learning in
//! the background), `review/` (the review page for people, and the feedback widget).

mod app;
mod auth;
mod error;
mod feedback;
mod learner;
mod metrics;
mod review;
mod server;
mod service;
mod token;
mod view;

pub use self::auth::{ApiKey, BadKey};
pub use self::error::{ApiError, ServeError};
pub use self::feedback::{check_feedback, correction, FeedbackError, FeedbackInput};
pub use self::learner::{LearnLoop, LearnerError, LearnerTurn, Reporter};
pub use self::metrics::Metrics;
pub use self::review::{AllowedOrigins, BadOrigin, Reviewers, ReviewersError};
pub use self::server::{app, check_address, serve, token_key, ServeOptions, TokenKeyError};
pub use self::service::{load, load_version, Loaded, MemoryOptions, RunFor, ServedRun, Service};
pub use self::token::{ShortKey, TokenError, TokenKey};
pub use self::view::{feedback_json, run_json};
pub use crate::learn::Trigger;
