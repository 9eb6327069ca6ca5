//! Tool tests against small HTTP servers on 127.0.0.1 that each test starts, and against
//! ordinary local programs: values fill their slots and steer nothing, bodies and outputs are
//! bounded, and commands leave nothing running behind them.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

use super::tools::{call, ToolClient, ToolError};
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

/// A test server: its port, the `/flaky` counter, and the head of every request it got.
struct Server {
    port: u16,
    flaky: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Serves: `/echo?...` (the query back), `/raw/...` (the request target back), `/head` (the
/// request head back), `/body` (the request body back), `/slow` (after 2 s), `/flaky` (500
/// twice, then "ok"), `/missing` (404), `/big` (5000 bytes), `/away/PORT` (302 to
/// `127.0.0.1:PORT/landing`), `/hop` (302 to `/head`), `/chunked-forever` and `/huge-length`
/// (bodies that never end, chunked and with a declared length of a terabyte).
async fn server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flaky = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (counter, seen) = (flaky.clone(), log.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (counter, seen) = (counter.clone(), seen.clone());
            tokio::spawn(async move {
                let req = super::test_http::read_request(&mut sock).await;
                let head = req.split_once("\r\n\r\n").map_or(req.as_str(), |(h, _)| h).to_string();
                seen.lock().unwrap().push(head.clone());
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body_in = req.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
                let mut extra = String::new();
                let (status, body) = if let Some(q) = path.strip_prefix("/echo?") {
                    ("200 OK", q.to_string())
                } else if path.starts_with("/raw/") {
                    ("200 OK", path.clone())
                } else if path == "/head" {
                    ("200 OK", head.to_ascii_lowercase())
                } else if path == "/body" {
                    ("200 OK", body_in)
                } else if path == "/slow" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    ("200 OK", "late".to_string())
                } else if path == "/flaky" {
                    if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                        ("500 Internal Server Error", "boom".into())
                    } else {
                        ("200 OK", "ok".into())
                    }
                } else if path == "/big" {
                    ("200 OK", "x".repeat(5000))
                } else if let Some(other) = path.strip_prefix("/away/") {
                    extra = format!("location: http://127.0.0.1:{other}/landing\r\n");
                    ("302 Found", String::new())
                } else if path == "/hop" {
                    extra = "location: /head\r\n".into();
                    ("302 Found", String::new())
                } else if path == "/chunked-forever" || path == "/huge-length" {
                    let framing = if path == "/huge-length" { "content-length: 1000000000000" } else { "transfer-encoding: chunked" };
                    let _ = sock.write_all(format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n").as_bytes()).await;
                    let chunk = if path == "/huge-length" { "y".repeat(4096) } else { format!("1000\r\n{}\r\n", "y".repeat(4096)) };
                    // Until the client hangs up.
                    while sock.write_all(chunk.as_bytes()).await.is_ok() {}
                    return;
                } else {
                    ("404 Not Found", "not here".to_string())
                };
                let resp = format!("HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Server { port, flaky, log }
}

/// Whether process `pid` is gone (or a zombie, dead and waiting to be reaped), waiting a
/// little for a kill to land. A pid reused by another program counts as gone.
async fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let zombie = stat.as_ref().is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
        if stat.is_err() || zombie || !cmdline.starts_with(b"sleep") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The pid a test script wrote to `path`, once it is there.
async fn pid_in(path: &Path) -> u32 {
    for _ in 0..200 {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the script never wrote its background pid to {}", path.display());
}

#[tokio::test]
async fn path_values_stay_in_their_segment_and_dot_segments_never_leave() {
    let s = server().await;
    let client = ToolClient::new();
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/raw/api/{q}/x?v=1""#, s.port);
    assert_eq!(call(&client, &t, &args("../admin")).await.unwrap(), json!("/raw/api/..%2Fadmin/x?v=1"));
    assert_eq!(call(&client, &t, &args("a?b#c%d\\e f")).await.unwrap(), json!("/raw/api/a%3Fb%23c%25d%5Ce%20f/x?v=1"));
    for climbing in ["..", ".", ""] {
        let err = call(&client, &t, &args(climbing)).await.unwrap_err();
        assert!(matches!(err, ToolError::Argument { .. }), "{climbing:?}: {err}");
    }
    assert_eq!(s.requests().len(), 2, "the refused values sent nothing: {:?}", s.requests());
}

#[tokio::test]
async fn redirects_to_another_origin_are_refused_and_the_other_server_never_sees_the_key() {
    let (home, elsewhere) = (server().await, server().await);
    let client = ToolClient::new();
    let decl =
        format!(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{{port}}/away/{}" {{ headers: ["X-Api-Key: sk-secret-{{q}}"] }}"#, elsewhere.port);
    let t = tool(&decl, home.port);
    let err = call(&client, &t, &args("1")).await.unwrap_err();
    assert!(matches!(err, ToolError::Redirect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("redirected to `http://127.0.0.1:{}/landing`, another origin", elsewhere.port)), "{err}");
    assert!(home.requests()[0].contains("x-api-key: sk-secret-1"), "{:?}", home.requests());
    assert!(elsewhere.requests().is_empty(), "the other origin got: {:?}", elsewhere.requests());
}

#[tokio::test]
async fn redirects_within_the_origin_are_followed_with_the_headers() {
    let s = server().await;
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/hop" { headers: ["X-Api-Key: sk-{q}"] }"#, s.port);
    let out = call(&ToolClient::new(), &t, &args("1")).await.unwrap();
    assert!(out.as_str().is_some_and(|h| h.starts_with("get /head ") && h.contains("x-api-key: sk-1")), "{out}");
}

#[tokio::test]
async fn endless_bodies_fail_at_the_limit_instead_of_filling_memory() {
    let s = server().await;
    let client = ToolClient::new();
    for path in ["chunked-forever", "huge-length"] {
        // A generous timeout: the call must end on the size limit, not on the clock.
        let decl = format!(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{{port}}/{path}" {{ max_bytes: 100000, timeout_ms: 60000, retries: 0 }}"#);
        let err = call(&client, &tool(&decl, s.port), &args("")).await.unwrap_err();
        assert!(matches!(err, ToolError::TooLarge { limit: 100_000, .. }), "{path}: {err}");
    }
}

#[tokio::test]
async fn header_values_cannot_add_headers() {
    let s = server().await;
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/head" { headers: ["X-Name: {q}"] }"#, s.port);
    let client = ToolClient::new();
    for evil in ["a\r\nX-Admin: 1", "a\nb", "a\0b", "a\u{7f}b"] {
        let err = call(&client, &t, &args(evil)).await.unwrap_err();
        assert!(matches!(err, ToolError::Argument { .. }), "{evil:?}: {err}");
    }
    assert!(s.requests().is_empty());
    // Non-ASCII text is fine in a header value.
    let out = call(&client, &t, &args("zoë")).await.unwrap();
    assert!(out.as_str().is_some_and(|h| h.contains("x-name: zo")), "{out}");
}

#[tokio::test]
async fn form_and_json_bodies_keep_their_fields() {
    let s = server().await;
    let client = ToolClient::new();
    let form = tool(
        r#"tool t(q: text) -> text = http POST "http://127.0.0.1:{port}/body" { body: "q={q}&role=user", headers: ["Content-Type: application/x-www-form-urlencoded"] }"#,
        s.port,
    );
    assert_eq!(call(&client, &form, &args("x&role=admin")).await.unwrap(), json!("q=x%26role%3Dadmin&role=user"));
    let list = tool(r#"tool t(q: text) -> json = http POST "http://127.0.0.1:{port}/body" { body: "{{\"ids\": [{q}]}}" }"#, s.port);
    assert_eq!(call(&client, &list, &args("1, 2, 3")).await.unwrap(), json!({"ids": ["1, 2, 3"]}));
}

#[tokio::test]
async fn a_command_never_writes_a_file_through_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let client = ToolClient::new();
    let sort = tool(r#"tool t(q: text) -> text = command ["sort", "{q}"]"#, 0);
    let err = call(&client, &sort, &args(&format!("--output={}", pwned.display()))).await.unwrap_err();
    assert!(err.to_string().contains("starts with `-`, so `sort` could read it as an option"), "{err}");
    // After `--` the same value is a file name, which sort can't open.
    let ended = tool(r#"tool t(q: text) -> text = command ["sort", "--", "{q}"]"#, 0);
    let err = call(&client, &ended, &args(&format!("--output={}", pwned.display()))).await.unwrap_err();
    assert!(matches!(err, ToolError::Exit { .. }), "{err}");
    assert!(!pwned.exists(), "no file was written through an option");
}

#[tokio::test]
async fn a_command_sees_only_the_allowlisted_environment() {
    let client = ToolClient::new();
    let env = tool(r#"tool t(q: text) -> text = command ["env"]"#, 0);
    let out = call(&client, &env, &args("")).await.unwrap();
    let names: Vec<&str> = out.as_str().unwrap_or_default().lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)).collect();
    assert!(names.iter().all(|n| ["PATH", "LANG", "LC_ALL"].contains(n)), "{names:?}");
    assert_eq!(names.contains(&"PATH"), std::env::var_os("PATH").is_some());
    let declared = tool(r#"tool t(q: text) -> text = command ["env"] { env: ["HOME", "LOOPC_NOT_SET_ANYWHERE"] }"#, 0);
    let out = call(&client, &declared, &args("")).await.unwrap();
    let names: Vec<&str> = out.as_str().unwrap_or_default().lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)).collect();
    assert_eq!(names.contains(&"HOME"), std::env::var_os("HOME").is_some(), "{names:?}");
    assert!(!names.contains(&"LOOPC_NOT_SET_ANYWHERE"));
}

#[tokio::test]
async fn big_input_and_output_flow_at_once_and_the_output_limit_ends_the_call() {
    let client = ToolClient::new();
    let ten_mb = "0123456789abcdef".repeat(10 << 16);
    let bounded = tool(r#"tool t(q: text) -> text = command ["cat"] { stdin: "{q}", max_bytes: 1000, timeout_ms: 60000 }"#, 0);
    let err = call(&client, &bounded, &args(&ten_mb)).await.unwrap_err();
    assert!(matches!(err, ToolError::TooLarge { limit: 1000, .. }), "the limit ended the call, not a deadlock and the clock: {err}");
    let roomy = tool(r#"tool t(q: text) -> text = command ["cat"] { stdin: "{q}", max_bytes: 20000000, timeout_ms: 60000 }"#, 0);
    let out = call(&client, &roomy, &args(&ten_mb)).await.unwrap();
    assert_eq!(out.as_str().map(str::len), Some(ten_mb.len()));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let decl = format!(r#"tool t(q: text) -> text = command ["sh", "-c", "sleep 100 & echo $! > {}; wait"] {{ timeout_ms: 1500 }}"#, pidfile.display());
    let err = call(&ToolClient::new(), &tool(&decl, 0), &args("")).await.unwrap_err();
    assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
    let pid = pid_in(&pidfile).await;
    assert!(gone(pid).await, "the background sleep {pid} outlived the timeout");
}

#[tokio::test]
async fn a_cancelled_call_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let decl = format!(r#"tool t(q: text) -> text = command ["sh", "-c", "sleep 100 & echo $! > {}; wait"] {{ timeout_ms: 600000 }}"#, pidfile.display());
    let spec = tool(&decl, 0);
    let client = ToolClient::new();
    let no_args = args("");
    // Boxed, so that dropping it below really drops the future (a pinned local would live on).
    let mut running = Box::pin(call(&client, &spec, &no_args));
    // Drive the call until the script has started its background job, then drop it, as a step timeout does.
    let pid = tokio::select! {
        _ = &mut running => panic!("the call ended by itself"),
        pid = pid_in(&pidfile) => pid,
    };
    drop(running);
    assert!(gone(pid).await, "the background sleep {pid} outlived the cancelled call");
}

#[tokio::test]
async fn a_finished_call_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let decl = format!(r#"tool t(q: text) -> text = command ["sh", "-c", "sleep 100 > /dev/null 2>&1 & echo $! > {}; echo done"]"#, pidfile.display());
    assert_eq!(call(&ToolClient::new(), &tool(&decl, 0), &args("")).await.unwrap(), json!("done"));
    let pid = pid_in(&pidfile).await;
    assert!(gone(pid).await, "the background sleep {pid} outlived the call");
}

#[tokio::test]
async fn nul_bytes_and_huge_arguments_fail_cleanly() {
    let client = ToolClient::new();
    let echo = tool(r#"tool t(q: text) -> text = command ["echo", "--", "{q}"]"#, 0);
    let err = call(&client, &echo, &args("a\0b")).await.unwrap_err();
    assert!(err.to_string().contains("NUL byte"), "{err}");
    // Linux caps one argument at 128 KiB: the spawn fails with an error, not a panic.
    let err = call(&client, &echo, &args(&"x".repeat(1 << 20))).await.unwrap_err();
    assert!(matches!(err, ToolError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn http_tools_percent_encode_url_arguments() {
    let Server { port, .. } = server().await;
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/echo?q={q}""#, port);
    let out = call(&ToolClient::new(), &t, &args("a b&c=d/é")).await.unwrap();
    assert_eq!(out, json!("q=a%20b%26c%3Dd%2F%C3%A9"));
}

#[tokio::test]
async fn json_bodies_escape_arguments() {
    let Server { port, .. } = server().await;
    let t = tool(r#"tool t(q: text) -> json = http POST "http://127.0.0.1:{port}/body" { body: "{{\"query\": \"{q}\"}}" }"#, port);
    let out = call(&ToolClient::new(), &t, &args("say \"hi\"\nnow")).await.unwrap();
    assert_eq!(out, json!({"query": "say \"hi\"\nnow"}));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let Server { port, flaky: count, .. } = server().await;
    let t = tool(r#"tool t(q: text) -> text = http GET "http://127.0.0.1:{port}/flaky" { retries: 2 }"#, port);
    assert_eq!(call(&ToolClient::new(), &t, &args("")).await.unwrap(), json!("ok"));
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn timeouts_client_errors_and_size_limits_are_typed_errors() {
    let Server { port, .. } = server().await;
    let client = ToolClient::new();
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
    let err = call(&ToolClient::new(), &t, &args("")).await.unwrap_err();
    assert!(matches!(err, ToolError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("cannot reach `http://127.0.0.1:{port}/x`")));
}

#[tokio::test]
async fn commands_run_without_a_shell() {
    let client = ToolClient::new();
    let wc = tool(r#"tool t(q: text) -> int = command ["wc", "-w"] { stdin: "{q}" }"#, 0);
    assert_eq!(call(&client, &wc, &args("one two three")).await.unwrap(), json!(3));
    // The argument reaches the program as one argv entry: no shell expands or splits it.
    let echo = tool(r#"tool t(q: text) -> text = command ["echo", "{q}"]"#, 0);
    assert_eq!(call(&client, &echo, &args("$(rm -rf /); `x` | y")).await.unwrap(), json!("$(rm -rf /); `x` | y"));
}

#[tokio::test]
async fn command_failures_timeouts_and_missing_programs_are_typed_errors() {
    let client = ToolClient::new();
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
