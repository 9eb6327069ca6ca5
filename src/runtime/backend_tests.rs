//! The OpenAI-compatible backend against a local server that speaks the protocol, including
//! rate limits (429) and server errors (500), and pools of endpoints that fail over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

use super::adapter::{render_request, Task, Template};
use super::backend::{Backend, BackendError, Call, OpenAiBackend, PoolOptions};
use crate::graph::{Field, Type};
use crate::model::sampling::Sampling;

/// A fake chat-completions server: answers each request with the next status from `script`
/// (repeating the last), a 200 carrying `content`; records the request bodies and headers.
async fn server(script: Vec<u16>, content: &'static str) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (count.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (c, s, script) = (c.clone(), s.clone(), script.clone());
            tokio::spawn(async move {
                let req = super::test_http::read_request(&mut sock).await;
                s.lock().unwrap().push(req);
                let i = c.fetch_add(1, Ordering::SeqCst);
                let status = script.get(i).or(script.last()).copied().unwrap_or(200);
                let body = if status == 200 {
                    json!({"choices": [{"message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": 12, "completion_tokens": 3}})
                    .to_string()
                } else {
                    json!({"error": {"message": format!("status {status}")}}).to_string()
                };
                let reason = match status {
                    200 => "OK",
                    429 => "Too Many Requests",
                    400 => "Bad Request",
                    _ => "Internal Server Error",
                };
                let resp = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/v1"), count, seen)
}

fn call() -> Call {
    let inputs = vec![Field { name: "question".into(), ty: Type::Text, description: None }];
    let outputs = vec![Field { name: "answer".into(), ty: Type::Text, description: None }];
    let task = Task { instruction: "Answer.", inputs: &inputs, outputs: &outputs };
    let values: Map<String, Value> = json!({"question": "2+2?"}).as_object().cloned().unwrap_or_default();
    Call {
        request: render_request(Template::Chat, &task, &[], &values),
        answer_so_far: String::new(),
        max_tokens: 16,
        sampling: Sampling::default(),
        stop: Vec::new(),
        grammar: None,
        structured: None,
    }
}

fn pool(timeout_ms: u64, retries: u32, concurrency: usize, key: Option<&str>) -> PoolOptions {
    PoolOptions { timeout: Duration::from_millis(timeout_ms), retries, concurrency, api_key_env: key.map(str::to_string), ..PoolOptions::default() }
}

#[tokio::test]
async fn completions_come_back_with_usage_and_the_request_follows_the_protocol() {
    let (url, count, seen) = server(vec![200], "[[ ## answer ## ]]\n4").await;
    std::env::set_var("LOOPC_TEST_KEY_A", "sk-test");
    let b = OpenAiBackend::new(&[url], "tiny-model", pool(2000, 2, 4, Some("LOOPC_TEST_KEY_A"))).unwrap();
    let out = b.generate(vec![call(), call()]).await.unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].text.as_str(), out[0].prompt_tokens, out[0].completion_tokens), ("[[ ## answer ## ]]\n4", 12, 3));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let req = seen.lock().unwrap()[0].clone();
    assert!(req.starts_with("POST /v1/chat/completions"), "{req}");
    assert!(req.to_ascii_lowercase().contains("authorization: bearer sk-test"));
    let body: Value = serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["model"], "tiny-model");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["stop"], json!(["[[ ## completed ## ]]"]));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let (url, count, _) = server(vec![429, 500, 200], "ok").await;
    let b = OpenAiBackend::new(&[url], "m", pool(2000, 3, 1, None)).unwrap();
    let out = b.generate(vec![call()]).await.unwrap();
    assert_eq!(out[0].text, "ok");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn persistent_failures_and_client_errors_say_what_happened() {
    let (url, count, _) = server(vec![500], "never").await;
    let b = OpenAiBackend::new(&[url], "m", pool(2000, 2, 1, None)).unwrap();
    let err = b.generate(vec![call()]).await.unwrap_err();
    assert!(matches!(err, BackendError::Remote { .. }));
    assert!(err.to_string().contains("gave up after 3 attempt(s); last: HTTP 500"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (url, count, _) = server(vec![400], "never").await;
    let b = OpenAiBackend::new(&[url], "m", pool(2000, 5, 1, None)).unwrap();
    let err = b.generate(vec![call()]).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 1, "client errors are not retried");
}

#[test]
fn a_missing_api_key_variable_is_named() {
    let err = OpenAiBackend::new(&["http://127.0.0.1:9/v1".to_string()], "m", pool(100, 0, 1, Some("LOOPC_TEST_NO_SUCH_KEY"))).err().unwrap();
    assert!(err.to_string().contains("the API key variable `LOOPC_TEST_NO_SUCH_KEY` is not set"), "{err}");
}

#[tokio::test]
async fn the_local_backend_generates_and_scores_labels_in_batches() {
    use crate::model::progress::SilentProgress;
    use crate::model::provision::{ort_library, Cache};
    let lib = ort_library(&Cache::from_env().unwrap(), &SilentProgress).unwrap();
    let env = crate::model::init_runtime(&lib).unwrap();
    let dir = tempfile::tempdir().unwrap();
    crate::model::testing::write_tiny_model(dir.path(), 11).unwrap();
    let model = crate::model::LocalModel::load(env, dir.path(), "tiny", crate::model::LoadOptions::default()).unwrap();
    let b = super::backend::LocalBackend::new(Arc::new(model), crate::model::PrefixCaching::On);
    assert_eq!(b.identity().provider, "onnx");
    let out = b.generate(vec![call(), call()]).await.unwrap();
    assert_eq!(out[0], out[1], "the same call gives the same completion");
    assert!(out[0].completion_tokens > 0 && out[0].cached_tokens > 0);
    let labels = vec!["yes".to_string(), "no".to_string()];
    assert!(b.supports_choice());
    let choices = b.choose(vec![call()], labels).await.unwrap();
    assert_eq!(choices[0].scores.len(), 2);
    assert!(choices[0].scores.iter().all(|s| s.is_finite() && *s < 0.0));
    assert!(choices[0].prompt_tokens > 0 && choices[0].cached_tokens > 0 && !choices[0].from_cache);
}

/// A chat-completions server that answers after `delay_ms` until `dead` is set; then it
/// stops accepting and drops requests in flight without an answer, like a killed process.
async fn killable_server(delay_ms: u64, dead: Arc<std::sync::atomic::AtomicBool>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tokio::time::sleep(Duration::from_millis(5)) => {
                    if dead.load(Ordering::SeqCst) { return } else { continue }
                }
            };
            let Ok((mut sock, _)) = accepted else { return };
            let (s, dead) = (s.clone(), dead.clone());
            tokio::spawn(async move {
                let _ = super::test_http::read_request(&mut sock).await;
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if dead.load(Ordering::SeqCst) {
                    return;
                }
                let body = json!({"choices": [{"message": {"role": "assistant", "content": "ok"}}]}).to_string();
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                if sock.write_all(resp.as_bytes()).await.is_ok() {
                    s.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}/v1"), served)
}

#[tokio::test]
async fn a_pool_loses_no_request_when_one_endpoint_dies_mid_run() {
    let dead_a = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, served_a) = killable_server(40, dead_a.clone()).await;
    let (b, served_b) = killable_server(40, Arc::new(std::sync::atomic::AtomicBool::new(false))).await;
    let backend = Arc::new(OpenAiBackend::new(&[a, b], "m", pool(2000, 4, 2, None)).unwrap());
    let runs: Vec<_> = (0..24)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.generate(vec![call()]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    dead_a.store(true, Ordering::SeqCst);
    for r in runs {
        let out = r.await.unwrap().unwrap_or_else(|e| panic!("a request was lost: {e}"));
        assert_eq!(out[0].text, "ok");
    }
    let (a, b) = (served_a.load(Ordering::SeqCst), served_b.load(Ordering::SeqCst));
    assert_eq!(a + b, 24, "every request was answered exactly once");
    assert!(a > 0 && b > a, "both served before the kill, the survivor after it: {a} and {b}");
}

#[tokio::test]
async fn a_pool_sends_requests_to_the_least_loaded_endpoint() {
    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, served_a) = killable_server(30, never.clone()).await;
    let (b, served_b) = killable_server(30, never).await;
    let backend = Arc::new(OpenAiBackend::new(&[a, b], "m", pool(2000, 0, 8, None)).unwrap());
    let out = backend.generate((0..16).map(|_| call()).collect()).await.unwrap();
    assert_eq!(out.len(), 16);
    let (a, b) = (served_a.load(Ordering::SeqCst), served_b.load(Ordering::SeqCst));
    assert_eq!((a, b), (8, 8), "concurrent requests spread evenly over idle endpoints");
}

#[tokio::test]
async fn an_oversized_answer_is_refused_without_reading_it_all() {
    let (url, _, _) = server(vec![200], "this answer is longer than the limit allows").await;
    let b = OpenAiBackend::new(&[url], "m", PoolOptions { max_response_bytes: 64, ..pool(2000, 0, 1, None) }).unwrap();
    let err = b.generate(vec![call()]).await.unwrap_err();
    assert!(err.to_string().contains("larger than 64 bytes"), "{err}");
}
