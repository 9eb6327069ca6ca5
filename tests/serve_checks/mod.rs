//! `loopc serve` as clients see it, written once and run against every store: each check takes
//! a running server (the real binary) and talks HTTP/1.1 to it. `tests/serve_sqlite.rs` runs
//! every check as its own test against one shared server on SQLite; `tests/serve_postgres.rs`
//! runs them all against a server on a real PostgreSQL. Servers run a label program on a tiny
//! seeded model (`--model DIR`), so runs take milliseconds.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The API key every test server requires.
pub const KEY: &str = "test-api-key-0123456789abcdef";

/// The program the servers run: one label step, three declared feedbacks.
pub const PROGRAM: &str = r#"program triage "Route a ticket"
input ticket: text
output team: label(billing, tech, other)
signature Route "Route the ticket to a team." { in ticket: text out team: label(billing, tech, other) }
step route = predict Route { ticket: input.ticket }
return { team: route.team }
feedback thumbs: bool "was the team right"
feedback rating: int(1..5)
feedback correction "the right team"
metric ok = exact(output.team, example.team)
"#;

/// Calls `$m! { check, … }` with the name of every check below.
macro_rules! for_each_check {
    ($m:ident) => {
        $m! {
            a_run_answers_outputs_a_run_id_and_a_token_and_is_stored_with_its_trace,
            requests_without_or_with_a_wrong_key_are_401_as_json,
            a_feedback_token_allows_feedback_on_its_own_run_and_nothing_else,
            a_body_over_the_limit_is_413_as_json,
            malformed_json_wrong_content_types_unknown_routes_and_methods_are_json_errors,
            unknown_or_missing_inputs_are_400_naming_the_field,
            declared_feedback_is_checked_and_invalid_corrections_are_400,
            feedback_with_a_repeated_client_id_is_stored_once,
            implicit_signals_are_stored_with_source_implicit,
            a_run_without_consent_is_answered_but_not_stored,
            runs_page_through_every_run_once_by_keyset,
            metrics_count_requests_runs_feedback_and_store_writes,
        }
    };
}

/// A check: a function of a running server.
pub type Check = fn(&Server);

macro_rules! list_checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name.
        pub fn all() -> Vec<(&'static str, Check)> {
            vec![$((stringify!($name), $name as Check)),*]
        }
    };
}
for_each_check!(list_checks);

/// A tiny seeded model and the program file, written once per test binary.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        loopc::model::testing::write_tiny_model(&dir.path().join("model"), 5).unwrap();
        std::fs::write(dir.path().join("triage.loop"), PROGRAM).unwrap();
        std::fs::write(dir.path().join("key"), format!("{KEY}\n")).unwrap();
        Fixture { dir }
    }

    pub fn model(&self) -> PathBuf {
        self.dir.path().join("model")
    }

    pub fn program(&self) -> PathBuf {
        self.dir.path().join("triage.loop")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    /// `loopc serve` on the fixture's program and model, with the API key, and `extra` flags.
    pub fn command(&self, store: &str, extra: &[&str]) -> Command {
        self.command_for(&self.program(), store, extra)
    }

    /// [`Fixture::command`] serving the program file `program`.
    pub fn command_for(&self, program: &Path, store: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_loopc"));
        c.arg("serve").arg(program).args(["--store", store, "--addr", "127.0.0.1:0", "--no-cache", "--max-body", "65536"]);
        c.arg("--api-key-file").arg(self.key_file()).arg("--model").arg(self.model()).args(extra);
        c
    }
}

/// A running `loopc serve`; dropping it kills it.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub store: String,
    /// Everything the server wrote on stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `command` and waits until it listens.
    pub fn start(mut command: Command, store: &str) -> Server {
        let mut child = command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("loopc runs");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(a.trim().to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("loopc serve did not start listening:\n{}", log.lock().unwrap());
            }
        };
        Server { child, addr, store: store.to_string(), log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: `kill` has no memory effects; the pid is our own child's.
        let r = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(r, 0, "kill failed");
    }

    /// Waits for the server to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "the server did not exit within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, Some(KEY), None, b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        request(&self.addr, "POST", path, Some(KEY), Some("application/json"), body.to_string().as_bytes())
    }

    pub fn post_as(&self, path: &str, bearer: Option<&str>, body: &Value) -> Response {
        request(&self.addr, "POST", path, bearer, Some("application/json"), body.to_string().as_bytes())
    }

    /// Runs the program on `ticket`; panics unless it answers 200.
    pub fn run(&self, ticket: &str) -> Value {
        let r = self.post("/v1/run", &json!({"inputs": {"ticket": ticket}, "user_id": "user-1"}));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub json: Value,
}

impl Response {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    }

    /// Asserts the answer is a JSON error with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.json["error"]["code"], code, "{}", self.body);
        assert!(self.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        assert!(self.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{}", self.head);
    }
}

/// One HTTP/1.1 request on a fresh connection. The answer is read on its own thread while the
/// body is written, so a server that answers early (413) is heard even if it stops reading.
pub fn request(addr: &str, method: &str, path: &str, bearer: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Response {
    send(addr, method, path, bearer, content_type, body).unwrap_or_else(|| panic!("{method} {path}: no answer from {addr}"))
}

/// [`request`], or `None` when the server cannot be reached or does not answer.
pub fn send(addr: &str, method: &str, path: &str, bearer: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut reader = stream.try_clone().ok()?;
    let answer = std::thread::spawn(move || {
        let mut raw = Vec::new();
        let _ = reader.read_to_end(&mut raw);
        raw
    });
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    if let Some(b) = bearer {
        head.push_str(&format!("authorization: Bearer {b}\r\n"));
    }
    if let Some(c) = content_type {
        head.push_str(&format!("content-type: {c}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let raw = answer.join().ok()?;
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").map_or((text.clone(), String::new()), |(h, b)| (h.to_string(), b.to_string()));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Some(Response { status, head, body, json })
}

/// Every file in `dir` with its bytes.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A fresh client id (unique across servers and runs of the suite).
pub fn client_id(what: &str) -> String {
    format!("{what}-{}", loopc::store::RunId::generate().as_str().trim_start_matches("run_"))
}

// ---- the checks -------------------------------------------------------------------------

pub fn a_run_answers_outputs_a_run_id_and_a_token_and_is_stored_with_its_trace(s: &Server) {
    let v = s.run("I was charged twice for my order");
    let team = v["outputs"]["team"].as_str().unwrap();
    assert!(["billing", "tech", "other"].contains(&team), "{v}");
    let id = v["run_id"].as_str().unwrap();
    assert!(v["feedback_token"].as_str().unwrap().starts_with("lft1."), "{v}");
    assert!(v["feedback_token_expires"].is_string(), "{v}");
    let r = s.get(&format!("/v1/runs/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let run = &r.json;
    assert_eq!(run["id"], id);
    assert_eq!(run["program"], "triage");
    assert_eq!(run["user_id"], "user-1");
    assert_eq!(run["inputs"]["ticket"], "I was charged twice for my order");
    assert_eq!(run["outputs"]["team"], team);
    assert_eq!(run["trace"]["run_id"], id, "the trace carries the stored id");
    assert_eq!(run["trace"]["steps"][0]["step"], "route", "{run}");
    assert!(run["feedback"].as_array().unwrap().is_empty());
    let missing = s.get("/v1/runs/run_0000000000000000000000NOPE");
    missing.assert_error(404, "unknown_run");
    assert_eq!(request(&s.addr, "GET", "/healthz", None, None, b"").json["status"], "ok", "health needs no key");
}

pub fn requests_without_or_with_a_wrong_key_are_401_as_json(s: &Server) {
    let body = json!({"inputs": {"ticket": "hello"}}).to_string();
    for bearer in [None, Some("wrong-key-0000000000000000000")] {
        for (method, path, b) in [("POST", "/v1/run", body.as_bytes()), ("GET", "/v1/runs", &b""[..]), ("GET", "/metrics", &b""[..])] {
            let r = request(&s.addr, method, path, bearer, Some("application/json"), b);
            r.assert_error(401, "unauthorized");
        }
    }
    let r = request(&s.addr, "GET", "/v1/runs", None, None, b"");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("Bearer"), "{}", r.body);
}

pub fn a_feedback_token_allows_feedback_on_its_own_run_and_nothing_else(s: &Server) {
    let (a, b) = (s.run("the app crashes on start"), s.run("please refund me"));
    let token = a["feedback_token"].as_str().unwrap();
    let thumbs = |run: &Value| json!({"run_id": run["run_id"], "key": "thumbs", "score": true});
    let r = s.post_as("/v1/feedback", Some(token), &thumbs(&a));
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = s.get(&format!("/v1/runs/{}", a["run_id"].as_str().unwrap())).json;
    assert_eq!(stored["feedback"][0]["source"], "user", "a token's feedback comes from a user: {stored}");
    assert_eq!(stored["feedback"][0]["score"], 1.0);
    // Another run's feedback, another source, or any other endpoint: 403.
    s.post_as("/v1/feedback", Some(token), &thumbs(&b)).assert_error(403, "forbidden");
    let mut as_api = thumbs(&a);
    as_api["source"] = "api".into();
    s.post_as("/v1/feedback", Some(token), &as_api).assert_error(403, "forbidden");
    s.post_as("/v1/run", Some(token), &json!({"inputs": {"ticket": "x"}})).assert_error(403, "forbidden");
    request(&s.addr, "GET", &format!("/v1/runs/{}", a["run_id"].as_str().unwrap()), Some(token), None, b"").assert_error(403, "forbidden");
    request(&s.addr, "GET", "/v1/runs", Some(token), None, b"").assert_error(403, "forbidden");
    // An altered token: 401.
    let other_run = b["run_id"].as_str().unwrap();
    let forged = token.replacen(a["run_id"].as_str().unwrap(), other_run, 1);
    s.post_as("/v1/feedback", Some(&forged), &thumbs(&b)).assert_error(401, "unauthorized");
    s.post_as("/v1/feedback", Some("lft1.garbage"), &thumbs(&b)).assert_error(401, "unauthorized");
}

pub fn a_body_over_the_limit_is_413_as_json(s: &Server) {
    // The servers allow 64 KiB.
    let big = json!({"inputs": {"ticket": "x".repeat(100_000)}}).to_string();
    let r = request(&s.addr, "POST", "/v1/run", Some(KEY), Some("application/json"), big.as_bytes());
    r.assert_error(413, "body_too_large");
}

pub fn malformed_json_wrong_content_types_unknown_routes_and_methods_are_json_errors(s: &Server) {
    let r = request(&s.addr, "POST", "/v1/run", Some(KEY), Some("application/json"), br#"{"inputs": {"ticket": "x"}"#);
    r.assert_error(400, "invalid_json");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("EOF"), "the parser's message: {}", r.body);
    let r = request(&s.addr, "POST", "/v1/feedback", Some(KEY), Some("application/json"), br#"{"run_id": 5}"#);
    r.assert_error(400, "invalid_request");
    request(&s.addr, "POST", "/v1/run", Some(KEY), Some("text/plain"), br#"{"inputs": {}}"#).assert_error(415, "unsupported_media_type");
    request(&s.addr, "GET", "/v2/nothing", Some(KEY), None, b"").assert_error(404, "not_found");
    request(&s.addr, "DELETE", "/v1/run", Some(KEY), None, b"").assert_error(405, "method_not_allowed");
    let r = s.post("/v1/run", &json!({"inputs": {"ticket": "x"}, "usr": "typo"}));
    r.assert_error(400, "invalid_request");
    assert!(r.body.contains("usr"), "{}", r.body);
}

pub fn unknown_or_missing_inputs_are_400_naming_the_field(s: &Server) {
    let r = s.post("/v1/run", &json!({"inputs": {}}));
    r.assert_error(400, "invalid_input");
    assert!(r.body.contains("input `ticket`: missing"), "{}", r.body);
    let r = s.post("/v1/run", &json!({"inputs": {"ticket": "x", "priority": 1}}));
    r.assert_error(400, "invalid_input");
    assert!(r.body.contains("`priority`"), "{}", r.body);
    // A misspelt input is named, with the input it was likely meant to be.
    let r = s.post("/v1/run", &json!({"inputs": {"tickt": "x"}}));
    r.assert_error(400, "invalid_input");
    assert!(r.body.contains("input `tickt`: not an input") && r.body.contains("`ticket`"), "{}", r.body);
    s.post("/v1/run", &json!({"inputs": {"ticket": 5}})).assert_error(400, "invalid_input");
}

pub fn declared_feedback_is_checked_and_invalid_corrections_are_400(s: &Server) {
    let run = s.run("my password reset link is broken");
    let id = run["run_id"].as_str().unwrap();
    let send = |body: Value| s.post("/v1/feedback", &body);
    assert_eq!(send(json!({"run_id": id, "key": "rating", "score": 4, "comment": "ok"})).status, 201);
    assert_eq!(send(json!({"run_id": id, "key": "correction", "correction": {"team": "tech"}})).status, 201);
    assert_eq!(send(json!({"run_id": id, "key": "correction", "correction": "billing"})).status, 201, "one output: its value alone");
    let r = send(json!({"run_id": id, "key": "correction", "correction": {"team": "sales"}}));
    r.assert_error(400, "invalid_correction");
    assert!(r.body.contains("`sales` is not one of the labels billing, tech, other"), "{}", r.body);
    send(json!({"run_id": id, "key": "correction", "correction": {"queue": "tech"}})).assert_error(400, "invalid_correction");
    let r = send(json!({"run_id": id, "key": "rating", "score": 9}));
    r.assert_error(400, "invalid_feedback");
    assert!(r.body.contains("from 1 to 5"), "{}", r.body);
    let r = send(json!({"run_id": id, "key": "stars", "score": 3}));
    r.assert_error(400, "invalid_feedback");
    assert!(r.body.contains("thumbs: bool") && r.body.contains("rating: int(1..5)"), "names what the program takes: {}", r.body);
    send(json!({"run_id": id, "key": "thumbs", "score": 0.5})).assert_error(400, "invalid_feedback");
    send(json!({"run_id": "run_0000000000000000000000GONE", "key": "thumbs", "score": 1})).assert_error(404, "unknown_run");
    let stored = s.get(&format!("/v1/runs/{id}")).json;
    let keys: Vec<&str> = stored["feedback"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["rating", "correction", "correction"], "only the valid ones are stored");
    assert_eq!(stored["feedback"][2]["correction"], json!({"team": "billing"}));
    assert_eq!(stored["feedback"][0]["source"], "api");
}

pub fn feedback_with_a_repeated_client_id_is_stored_once(s: &Server) {
    let run = s.run("where is my parcel");
    let id = run["run_id"].as_str().unwrap();
    let cid = client_id("repeat");
    let body = json!({"id": cid, "run_id": id, "key": "thumbs", "score": 1});
    let first = s.post("/v1/feedback", &body);
    assert_eq!((first.status, &first.json["created"]), (201, &json!(true)), "{}", first.body);
    let again = s.post("/v1/feedback", &body);
    assert_eq!((again.status, &again.json["created"]), (200, &json!(false)), "{}", again.body);
    assert_eq!(again.json["id"], first.json["id"]);
    assert_eq!(s.get(&format!("/v1/runs/{id}")).json["feedback"].as_array().unwrap().len(), 1);
    let other = s.run("another ticket");
    let r = s.post("/v1/feedback", &json!({"id": cid, "run_id": other["run_id"], "key": "thumbs", "score": 1}));
    r.assert_error(409, "conflict");
}

pub fn implicit_signals_are_stored_with_source_implicit(s: &Server) {
    let run = s.run("cannot log in");
    let id = run["run_id"].as_str().unwrap();
    let token = run["feedback_token"].as_str().unwrap();
    assert_eq!(s.post_as("/v1/feedback", Some(token), &json!({"run_id": id, "key": "accepted"})).status, 201);
    assert_eq!(s.post("/v1/feedback", &json!({"run_id": id, "key": "edited", "correction": {"team": "tech"}})).status, 201);
    s.post("/v1/feedback", &json!({"run_id": id, "key": "edited", "correction": {"team": "nope"}})).assert_error(400, "invalid_correction");
    s.post("/v1/feedback", &json!({"run_id": id, "key": "rejected", "score": 1})).assert_error(400, "invalid_feedback");
    let stored = s.get(&format!("/v1/runs/{id}")).json;
    let got: Vec<(&str, &str)> = stored["feedback"].as_array().unwrap().iter().map(|f| (f["key"].as_str().unwrap(), f["source"].as_str().unwrap())).collect();
    assert_eq!(got, [("accepted", "implicit"), ("edited", "implicit")]);
}

pub fn a_run_without_consent_is_answered_but_not_stored(s: &Server) {
    let marker = client_id("no-consent");
    let r = s.post("/v1/run", &json!({"inputs": {"ticket": marker}, "consent": false}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json["outputs"]["team"].is_string());
    assert_eq!((&r.json["run_id"], &r.json["feedback_token"]), (&Value::Null, &Value::Null), "{}", r.body);
    let listed = s.get("/v1/runs?limit=1000");
    assert!(!listed.body.contains(&marker), "the input is stored nowhere");
}

pub fn runs_page_through_every_run_once_by_keyset(s: &Server) {
    let user = client_id("pager");
    let mut made = Vec::new();
    for i in 0..5 {
        let r = s.post("/v1/run", &json!({"inputs": {"ticket": format!("ticket {i}")}, "user_id": user}));
        made.push(r.json["run_id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            Some(c) => format!("/v1/runs?user_id={user}&limit=2&order=oldest&after={c}"),
            None => format!("/v1/runs?user_id={user}&limit=2&order=oldest"),
        };
        let page = s.get(&path);
        assert_eq!(page.status, 200, "{}", page.body);
        for r in page.json["runs"].as_array().unwrap() {
            assert!(r.get("trace").is_none(), "pages leave traces out");
            seen.push(r["id"].as_str().unwrap().to_string());
        }
        match page.json["next"].as_str() {
            Some(c) => after = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, made, "every run once, oldest first");
    let newest = s.get(&format!("/v1/runs?user_id={user}&limit=1"));
    assert_eq!(newest.json["runs"][0]["id"], made[4].as_str());
    s.get("/v1/runs?since=yesterday").assert_error(400, "invalid_query");
    s.get("/v1/runs?after=nonsense").assert_error(400, "invalid_cursor");
    s.get("/v1/runs?colour=red").assert_error(400, "invalid_query");
}

pub fn metrics_count_requests_runs_feedback_and_store_writes(s: &Server) {
    let run = s.run("metrics please");
    let r = s.post("/v1/feedback", &json!({"run_id": run["run_id"], "key": "rating", "score": 5}));
    assert_eq!(r.status, 201);
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    for needle in [
        r#"loopc_http_requests_total{route="/v1/run",status="200"}"#,
        r#"loopc_feedback_total{key="rating"}"#,
        r#"loopc_store_write_seconds_count{op="run"}"#,
        r#"loopc_store_write_seconds_count{op="feedback"}"#,
        "loopc_run_seconds_bucket",
        "loopc_model_prefill_batch_mean{model=",
        "loopc_runs_in_flight",
    ] {
        assert!(m.body.contains(needle), "no `{needle}` in\n{}", m.body);
    }
}

// ---- faults -------------------------------------------------------------------------------

/// 8 clients send runs and feedback (each feedback with its own client id) while the server is
/// killed with SIGKILL mid-load; after a restart on the same store, every feedback that was
/// acknowledged (2xx) is stored exactly once, and sending it again stores nothing new.
pub fn acknowledged_feedback_survives_kill_9_exactly_once(fixture: &Fixture, store: &str) {
    let server = Server::start(fixture.command(store, &[]), store);
    let addr = server.addr.clone();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prefix = client_id("fault");
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (addr, acked, stop, prefix) = (addr.clone(), acked.clone(), stop.clone(), prefix.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                // Bounded: at most 400 rounds per client, stopped by the kill long before.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 400 {
                    i += 1;
                    let Some(r) = try_request(&addr, "/v1/run", &json!({"inputs": {"ticket": format!("client {c} ticket {i}")}})) else { break };
                    let Some(run) = r.json["run_id"].as_str().map(str::to_string) else { continue };
                    for k in 0..3 {
                        let cid = format!("{prefix}-{c}-{i}-{k}");
                        let body = json!({"id": cid, "run_id": run, "key": "rating", "score": 1 + k});
                        match try_request(&addr, "/v1/feedback", &body) {
                            Some(r) if r.status == 201 || r.status == 200 => acked.lock().unwrap().push((cid, run.clone())),
                            Some(_) => {}
                            None => return,
                        }
                    }
                }
            })
        })
        .collect();
    // Kill once a good number of writes were acknowledged (bounded wait).
    let start = Instant::now();
    while acked.lock().unwrap().len() < 150 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.signal(libc::SIGKILL);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    drop(server);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150, "only {} feedback acknowledged before the kill", acked.len());

    let again = Server::start(fixture.command(store, &[]), store);
    // Every acknowledged feedback, sent again with its client id: already stored, nothing new.
    for (cid, run) in acked.iter().step_by(7) {
        let r = again.post("/v1/feedback", &json!({"id": cid, "run_id": run, "key": "rating", "score": 1}));
        assert_eq!((r.status, &r.json["created"]), (200, &json!(false)), "{cid} after the restart: {}", r.body);
    }
    drop(again);
    let stored = stored_client_ids(store, &prefix);
    for (cid, _) in &acked {
        assert_eq!(stored.iter().filter(|s| *s == cid).count(), 1, "acknowledged feedback `{cid}` is not stored exactly once");
    }
}

/// A request that may fail because the server died: `None` then.
fn try_request(addr: &str, path: &str, body: &Value) -> Option<Response> {
    send(addr, "POST", path, Some(KEY), Some("application/json"), body.to_string().as_bytes()).filter(|r| r.status != 0)
}

/// The client ids starting with `prefix` of every feedback in the store (read directly).
pub fn stored_client_ids(store: &str, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = loopc::store::Store::open(store).await.unwrap();
        let all = s.feedback(&loopc::store::FeedbackFilter::default()).await.unwrap();
        s.close().await;
        all.into_iter().filter_map(|f| f.client_id).filter(|c| c.starts_with(prefix)).collect()
    })
}

/// Runs every check on `server`, each isolated so one failure does not hide the others;
/// returns the failures.
pub fn run_all(server: &Server) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, check) in all() {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(server))) {
            let text = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            failures.push(format!("{name}: {text}"));
        }
    }
    failures
}

/// Two replicas on `url` with `--learn-every`, under load, while users correct runs: one
/// learns (under the store's lease), both swap to the promoted version, no request fails.
pub fn two_replicas_learn_while_serving_and_no_request_fails(fixture: &Fixture, url: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};

    // `--margin 1` lets any candidate through the gate, so a swap is certain; the gate's own
    // decisions are tested in tests/learn.rs.
    let flags = ["--learn-every", "16", "--learn-poll", "1s", "--margin", "1", "--holdout-share", "0.3"];
    let a = Server::start(fixture.command(url, &flags), url);
    let b = Server::start(fixture.command(url, &flags), url);

    // Load on both replicas until both serve the learned version: runs without consent, so
    // they are answered but not stored and do not themselves trigger rounds.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((Vec::<String>::new(), std::collections::BTreeSet::<String>::new(), 0usize)));
    let load: Vec<_> = [a.addr.clone(), b.addr.clone(), a.addr.clone(), b.addr.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, addr)| {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"inputs": {"ticket": format!("load {i}.{n}: my invoice is wrong")}, "consent": false});
                    let r = request(&addr, "POST", "/v1/run", Some(KEY), Some("application/json"), body.to_string().as_bytes());
                    let mut seen = seen.lock().unwrap();
                    if r.status == 200 {
                        seen.1.insert(r.json["artifact"].as_str().unwrap_or("(source)").to_string());
                        seen.2 += 1;
                    } else {
                        seen.0.push(format!("{} {}", r.status, r.body));
                    }
                    n += 1;
                }
            })
        })
        .collect();

    // Users correct 20 stored runs on replica a.
    let teams = ["billing", "tech", "other"];
    for i in 0..20 {
        let team = teams[i % 3];
        let run = a.run(&format!("ticket {i}: a question for {team}"));
        let r = a.post("/v1/feedback", &json!({"run_id": run["run_id"], "key": "correction", "correction": {"team": team}}));
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let health = |s: &Server| request(&s.addr, "GET", "/healthz", None, None, b"").json["artifact"].as_str().map(str::to_string);
    let start = std::time::Instant::now();
    let learned = loop {
        if let (Some(x), Some(y)) = (health(&a), health(&b)) {
            if x == y {
                break x;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no learned version on both replicas in 300 s\nreplica a:\n{}\nreplica b:\n{}", a.log(), b.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    // Some load after the swap, then stop it.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (failures, versions, answered) = seen.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} of the requests across the swap failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(versions.contains("(source)") && versions.contains(&learned), "the load spanned the swap: {versions:?} ({answered} answered)");

    // One replica learned (under the lease); the other followed. New runs name the version.
    let rounds = [&a, &b].iter().map(|s| s.log().matches("learner: promoted").count()).sum::<usize>();
    assert_eq!(rounds, 1, "one round, on one replica:\nreplica a:\n{}\nreplica b:\n{}", a.log(), b.log());
    let run = b.run("one more ticket");
    assert_eq!(run["artifact"], learned.as_str());
    assert_eq!(b.get(&format!("/v1/runs/{}", run["run_id"].as_str().unwrap())).json["artifact"], learned.as_str());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (current, versions) = rt.block_on(async {
        let store = loopc::store::Store::open(url).await.unwrap();
        (loopc::learn::current(&store, "triage").await.unwrap().map(|(h, _)| h), store.artifacts("triage").await.unwrap())
    });
    assert_eq!(current.as_deref(), Some(learned.as_str()), "the store's current version is the one served");
    let promoted = versions.iter().find(|v| v.hash == learned).unwrap();
    assert!(
        promoted.body.as_ref().unwrap()["provenance"]["learned"]["feedback_ids"].as_array().is_some_and(|f| !f.is_empty()),
        "it says which feedback made it"
    );
}

/// Two replicas on `url` serving the program with `memory route`: a correction stored through
/// one is recalled by the very next similar request on the other (no learning round), shown in
/// its trace by reference only; a replica with `--no-memory` does not recall it; after `loopc
/// forget` of the user, neither replica recalls it any more.
pub fn two_replicas_recall_a_correction_at_once_and_forget_it_everywhere(fixture: &Fixture, url: &str) {
    let program = fixture.dir.path().join("triage_memory.loop");
    std::fs::write(&program, format!("{PROGRAM}memory route {{ demos: 2, tokens: 300 }}\n")).unwrap();
    let a = Server::start(fixture.command_for(&program, url, &[]), url);
    let b = Server::start(fixture.command_for(&program, url, &[]), url);
    let off = Server::start(fixture.command_for(&program, url, &["--no-memory"]), url);
    assert!(a.log().contains("online memory on"), "{}", a.log());
    assert!(!off.log().contains("online memory on"), "{}", off.log());

    let secret = "refund for the duplicate subscription charge";
    let first = a.post("/v1/run", &json!({"inputs": {"ticket": secret}, "user_id": "mem-user"}));
    assert_eq!(first.status, 200, "{}", first.body);
    let f = a.post("/v1/feedback", &json!({"run_id": first.json["run_id"], "key": "correction", "correction": {"team": "billing"}, "user_id": "mem-user"}));
    assert_eq!(f.status, 201, "{}", f.body);
    let feedback_id = f.json["id"].as_str().unwrap().to_string();

    // The trace of a run read back from the store: what its prompt recalled.
    let trace_of = |s: &Server, ticket: &str| -> String {
        let r = s.post("/v1/run", &json!({"inputs": {"ticket": ticket}, "user_id": "someone-else"}));
        assert_eq!(r.status, 200, "{}", r.body);
        s.get(&format!("/v1/runs/{}", r.json["run_id"].as_str().unwrap())).json["trace"].to_string()
    };
    let similar = "a duplicate charge on my subscription, refund please";
    let on_b = trace_of(&b, similar);
    assert!(on_b.contains(&feedback_id), "replica b recalls replica a's correction at once: {on_b}");
    assert!(!on_b.contains(secret), "a trace names a recalled demo by reference, not by another user's words: {on_b}");
    assert!(trace_of(&a, similar).contains(&feedback_id), "and so does replica a");
    assert!(!trace_of(&off, similar).contains(&feedback_id), "--no-memory serves the compiled demos only");

    let out = Command::new(env!("CARGO_BIN_EXE_loopc")).args(["forget", "--user", "mem-user", "--store", url, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, s) in [("a", &a), ("b", &b)] {
        let after = trace_of(s, similar);
        assert!(!after.contains(&feedback_id), "replica {name} recalls a forgotten user's correction no more: {after}");
    }
}
