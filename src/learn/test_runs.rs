//! Stored runs and feedback built in memory, for the unit tests of the learning code.

use serde_json::{json, Value};

use crate::store::{FeedbackId, FeedbackPayload, FeedbackSource, RunId, StoredFeedback, StoredRun, Timestamp};

/// Run `id` of `program` on `{"text": text}` that answered `{"mood": said}`, with `feedback`.
pub(crate) fn stored_run(id: &str, program: &str, text: &str, said: &str, feedback: Vec<StoredFeedback>) -> StoredRun {
    StoredRun {
        id: RunId::parse(id).unwrap(),
        program: program.into(),
        artifact_hash: None,
        created: Timestamp::from_millis(1),
        user_id: None,
        inputs: json!({ "text": text }),
        outputs: Some(json!({ "mood": said })),
        trace: Value::Null,
        error: None,
        latency_ms: 1,
        feedback,
    }
}

/// Feedback `id` on run `r`, given by `user` at `at` milliseconds.
pub(crate) fn stored_feedback(id: &str, key: &str, payload: FeedbackPayload, source: FeedbackSource, user: Option<&str>, at: i64) -> StoredFeedback {
    StoredFeedback {
        id: FeedbackId::parse(id).unwrap(),
        client_id: None,
        run_id: RunId::parse("r").unwrap(),
        key: key.into(),
        payload,
        comment: None,
        source,
        user_id: user.map(str::to_string),
        created: Timestamp::from_millis(at),
    }
}
