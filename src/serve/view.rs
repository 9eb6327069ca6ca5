//! Stored runs and feedback as the JSON the API answers with (and `loopc runs show --json`
//! prints): one layout, written once.

use serde_json::{json, Map, Value};

use crate::store::{FeedbackPayload, StoredFeedback, StoredRun};

/// A stored run as JSON: `id`, `program`, `artifact`, `created` (RFC 3339), `user_id`,
/// `inputs`, `outputs`, `error`, `latency_ms`, `feedback` (oldest first), and `trace` when
/// `with_trace`.
pub fn run_json(run: &StoredRun, with_trace: bool) -> Value {
    let mut v = json!({
        "id": run.id.as_str(),
        "program": run.program,
        "artifact": run.artifact_hash,
        "created": run.created.to_string(),
        "user_id": run.user_id,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "error": run.error,
        "latency_ms": run.latency_ms,
        "feedback": run.feedback.iter().map(feedback_json).collect::<Vec<_>>(),
    });
    if with_trace {
        if let Some(m) = v.as_object_mut() {
            m.insert("trace".into(), run.trace.clone());
        }
    }
    v
}

/// Stored feedback as JSON: `id`, `client_id`, `run_id`, `key`, one of `score` / `value` /
/// `correction`, `comment`, `source`, `user_id`, `created` (RFC 3339).
pub fn feedback_json(f: &StoredFeedback) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), f.id.as_str().into());
    m.insert("client_id".into(), f.client_id.clone().into());
    m.insert("run_id".into(), f.run_id.as_str().into());
    m.insert("key".into(), f.key.clone().into());
    match &f.payload {
        FeedbackPayload::Score(s) => m.insert("score".into(), json!(s)),
        FeedbackPayload::Value(v) => m.insert("value".into(), v.clone().into()),
        FeedbackPayload::Correction(c) => m.insert("correction".into(), c.clone()),
    };
    m.insert("comment".into(), f.comment.clone().into());
    m.insert("source".into(), f.source.as_str().into());
    m.insert("user_id".into(), f.user_id.clone().into());
    m.insert("created".into(), f.created.to_string().into());
    Value::Object(m)
}
