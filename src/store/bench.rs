//! A write-throughput measurement for `loopc bench serve` and for choosing store settings:
//! how many feedback writes per second the store commits from concurrent writers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::db::Store;
use super::error::StoreError;
use super::feedback::{FeedbackPayload, NewFeedback};
use super::ids::generate;
use super::runs::{NewRun, RecordedRun};

/// What [`bench_feedback_writes`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WriteThroughput {
    /// Feedback writes committed.
    pub writes: usize,
    /// Wall time they took, in seconds.
    pub seconds: f64,
}

impl WriteThroughput {
    /// Committed writes per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.writes as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Records one run of program `bench`, then commits `n` feedback writes (each with its own
/// client id, a score and a comment) from `concurrency` tasks, and times them. The rows stay in
/// the store: point it at a scratch store.
pub async fn bench_feedback_writes(store: &Store, n: usize, concurrency: usize) -> Result<WriteThroughput, StoreError> {
    let run = store.record_run(NewRun { trace: json!({"steps": []}), ..NewRun::new("bench", json!({"text": "benchmark input"})) }).await?;
    let RecordedRun::Stored(run_id) = run else {
        return Ok(WriteThroughput { writes: 0, seconds: 0.0 });
    };
    let prefix = generate("bench_");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (store, run_id, prefix, next) = (store.clone(), run_id.clone(), prefix.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), StoreError>(());
                }
                let mut f = NewFeedback::new(run_id.clone(), "thumbs", FeedbackPayload::Score((i % 2) as f64));
                f.client_id = Some(format!("{prefix}-{i}"));
                f.comment = Some("fine, thanks".into());
                store.add_feedback(f).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => result?,
            // A panicking writer is a bug in the store; report it as a database failure rather
            // than unwinding through the caller.
            Err(e) => return Err(StoreError::Database(sqlx::Error::Protocol(format!("benchmark writer failed: {e}")))),
        }
    }
    Ok(WriteThroughput { writes: n, seconds: started.elapsed().as_secs_f64() })
}
