//! Tool tests against a small HTTP server on 127.0.0.1 that each test starts, and against
//! ordinary local programs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

use super::tools::{call, ToolError};
use crate::graph::ToolSpec;

/// The tool declared by `decl` (with `{port}` replaced), checked like any program.
fn tool(decl: &str, port: u16) -> ToolSpec {
    let decl = decl.replace("{port}", &port.to_string());
    let src = format!("program t\ninput q: text\noutput a: json\n{decl}\nstep s = call t {{ q: input.q }}\nreturn {{ a: s.result }}\n");
    let file = crate::syntax::parse(&src).unwrap_or_else(|d| panic!("{d:?}"));
    let lowered = crate::graph::lower(&file);
    lowered.dag.unwrap_or_else(|| panic!("{:?}", lowered.diagnostics)).tools()[0].clone()
}

fn args(q: &str) -> Map<String, Value> {
    json!({ "q": q }).as_object().cloned().unwrap_or_default()
}

/// Serves: `/echo?...` (the query back), `/body` (the request body back), `/slow` (after 2 s),
/// `/flaky` (500 twice, then "ok"), `/missing` (404), `/big` (5000 bytes).
async fn server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flaky = Arc::new(AtomicUsize::new(0));
    let counter = flaky.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let req = super::test_http::read_request(&mut sock).await;
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body_in = req.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
                let (status, body) = if let Some(q) = path.strip_prefix("/echo?") {
                    ("200 OK", q.to_string())
                } else if path == "/body" {
                    ("200 OK", body_in)
                } else if path == "/slow" {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    ("200 OK", "late".to_string())
                } else if path == "/flaky" {
                    if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                        ("500 Internal Server Error", "boom".into())
                    } else {
                        ("200 OK", "ok".into())
                    }
                } else if path == "/big" {
                    ("200 OK", "x".repeat(5000))
                } else {
                    ("404 Not Found", "not here".to_string())
                };
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, flaky)
}

#[tokio::test]
async fn http_tools_percent_encode_url_arguments() {
    let (port, _) = server().await;
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/echo?q={q}""#, port);
    let out = call(&reqwest::Client::new(), &t, &args("a b&c=d/é")).await.unwrap();
    assert_eq!(out, json!("q=a%20b%26c%3Dd%2F%C3%A9"));
}

#[tokio::test]
async fn json_bodies_escape_arguments() {
    let (port, _) = server().await;
    let t = tool(r#"tool t(q: text) -> json = http POST "http://127.0.0.1:{port}/body" { body: "{{\"query\": \"{q}\"}}" }"#, port);
    let out = call(&reqwest::Client::new(), &t, &args("say \"hi\"\nnow")).await.unwrap();
    assert_eq!(out, json!({"query": "say \"hi\"\nnow"}));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (port, count) = server().await;
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/flaky" { retries: 2 }"#, port);
    assert_eq!(call(&reqwest::Client::new(), &t, &args("")).await.unwrap(), json!("ok"));
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn timeouts_client_errors_and_size_limits_are_typed_errors() {
    let (port, _) = server().await;
    let client = reqwest::Client::new();
    let slow = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/slow" { timeout_ms: 200, retries: 1 }"#, port);
    let err = call(&client, &slow, &args("")).await.unwrap_err();
    assert!(matches!(err, ToolError::Timeout { attempts: 2, .. }), "{err}");
    assert_eq!(err.to_string(), "tool `t` timed out after 200 ms (2 attempt(s))");

    let missing = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/missing""#, port);
    let err = call(&client, &missing, &args("")).await.unwrap_err();
    assert_eq!(err.to_string(), "tool `t` got HTTP 404: not here");

    let big = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/big" { max_bytes: 1000 }"#, port);
    assert!(matches!(call(&client, &big, &args("")).await.unwrap_err(), ToolError::TooLarge { limit: 1000, .. }));

    let typed = tool(r#"tool t(q: text) -> int = http GET "http://127.0.0.1:{port}/echo?{q}""#, port);
    let err = call(&client, &typed, &args("abc")).await.unwrap_err();
    assert!(err.to_string().starts_with("tool `t` returned a value that is not int"), "{err}");
}

#[tokio::test]
async fn unreachable_endpoints_say_where() {
    // Bind and drop a listener so the port is (very likely) closed.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/x" { retries: 0 }"#, port);
    let err = call(&reqwest::Client::new(), &t, &args("")).await.unwrap_err();
    assert!(matches!(err, ToolError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("cannot reach `http://127.0.0.1:{port}/x`")));
}

#[tokio::test]
async fn commands_run_without_a_shell() {
    let client = reqwest::Client::new();
    let wc = tool(r#"tool t(q: text) -> int = command ["wc", "-w"] { stdin: "{q}" }"#, 0);
    assert_eq!(call(&client, &wc, &args("one two three")).await.unwrap(), json!(3));
    // The argument reaches the program as one argv entry: no shell expands or splits it.
    let echo = tool(r#"tool t(q: text) -> text = command ["echo", "{q}"]"#, 0);
    assert_eq!(call(&client, &echo, &args("$(rm -rf /); `x` | y")).await.unwrap(), json!("$(rm -rf /); `x` | y"));
}

#[tokio::test]
async fn command_failures_timeouts_and_missing_programs_are_typed_errors() {
    let client = reqwest::Client::new();
    let slow = tool(r#"tool t(q: text) -> text = command ["sleep", "5"] { timeout_ms: 200 }"#, 0);
    let started = std::time::Instant::now();
    let err = call(&client, &slow, &args("")).await.unwrap_err();
    assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
    assert!(started.elapsed().as_secs() < 4, "the command was killed, not waited for");
    let fails = tool(r#"tool t(q: text) -> text = command ["ls", "/no/such/dir/{q}"]"#, 0);
    assert!(matches!(call(&client, &fails, &args("x")).await.unwrap_err(), ToolError::Exit { .. }));
    let missing = tool(r#"tool t(q: text) -> text = command ["no-such-program-loopc"]"#, 0);
    let err = call(&client, &missing, &args("")).await.unwrap_err();
    assert!(err.to_string().starts_with("tool `t` cannot run `no-such-program-loopc`"), "{err}");
    let big = tool(r#"tool t(q: text) -> text = command ["head", "-c", "5000", "/dev/zero"] { max_bytes: 100 }"#, 0);
    assert!(matches!(call(&client, &big, &args("")).await.unwrap_err(), ToolError::TooLarge { limit: 100, .. }));
}
