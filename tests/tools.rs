//! End-to-end tests of tools that can't be steered by their input, through the real binary:
//! a crafted value never reaches another path or server, never writes a file through an
//! option, never sees loopc's secrets, and the checker rejects placeholders where a value
//! could steer a tool, pointing at them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn loopc(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopc"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the loopc binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A program whose one step calls the tool `decl` (named `t`, parameter `p`) with `input.q`.
fn program(dir: &Path, decl: &str) {
    let src = format!("program steer\ninput q: text\noutput a: text\n{decl}\nstep s = call t {{ p: input.q }}\nreturn {{ a: s.result }}\n");
    std::fs::write(dir.join("steer.loop"), src).unwrap();
}

fn input(q: &str) -> String {
    serde_json::json!({ "q": q }).to_string()
}

/// A server on 127.0.0.1 that logs each request's head and answers `/away/PORT`
/// with a redirect to `127.0.0.1:PORT/landing`, and anything else with its own target.
fn server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                head.push_str(&line);
                line.clear();
            }
            let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            seen.lock().unwrap().push(head);
            let mut s = stream;
            let _ = match target.strip_prefix("/away/") {
                Some(other) => write!(s, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{other}/landing\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                None => write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{target}", target.len()),
            };
        }
    });
    (port, log)
}

#[test]
fn a_crafted_value_never_writes_a_file_through_a_command_option() {
    let dir = tempfile::tempdir().unwrap();
    program(dir.path(), r#"tool t(p: text) -> text = command ["sort", "{p}"]"#);
    let pwned = dir.path().join("pwned");
    let out = run(&mut loopc(&["run", "steer.loop", "--input", &input(&format!("--output={}", pwned.display()))], dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("starts with `-`, so `sort` could read it as an option; put `--` before positional placeholders"),
        "{}",
        text(&out.stderr)
    );
    assert!(!pwned.exists(), "sort wrote a file chosen by the input");
}

#[test]
fn a_command_never_sees_the_parents_secrets() {
    let dir = tempfile::tempdir().unwrap();
    program(dir.path(), r#"tool t(p: text) -> text = command ["env"] { env: ["LOOPC_TEST_SHARED"] }"#);
    let out = run(loopc(&["run", "steer.loop", "--input", &input("")], dir.path())
        .env("LOOPC_TEST_SECRET", "hunter2")
        .env("LOOPC_TEST_SHARED", "meant-for-the-tool"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let env = v["a"].as_str().unwrap_or_default();
    assert!(!env.contains("hunter2") && !env.contains("LOOPC_TEST_SECRET"), "the secret reached the tool: {env}");
    assert!(env.lines().any(|l| l == "LOOPC_TEST_SHARED=meant-for-the-tool"), "the declared variable is passed: {env}");
    assert!(!env.lines().any(|l| l.starts_with("HOME=")), "HOME is passed only when declared: {env}");
}

#[test]
fn a_url_value_never_reaches_another_path() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = server();
    program(dir.path(), &format!(r#"tool t(p: text) -> text = http GET "http://127.0.0.1:{port}/api/{{p}}/items?v=1""#));
    let out = run(&mut loopc(&["run", "steer.loop", "--input", &input("../../admin?x=1#")], dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["a"], "/api/..%2F..%2Fadmin%3Fx%3D1%23/items?v=1");
    for climbing in ["..", "%2e%2e", "."] {
        let out = run(&mut loopc(&["run", "steer.loop", "--input", &input(climbing)], dir.path()));
        if climbing == "%2e%2e" {
            // Its `%` is encoded, so this one is a harmless name.
            assert!(out.status.success(), "{}", text(&out.stderr));
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{climbing}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("which would climb the URL's path"), "{}", text(&out.stderr));
    }
    let targets: Vec<String> = log.lock().unwrap().iter().map(|h| h.split_whitespace().nth(1).unwrap_or_default().to_string()).collect();
    assert_eq!(targets, ["/api/..%2F..%2Fadmin%3Fx%3D1%23/items?v=1", "/api/%252e%252e/items?v=1"]);
}

#[test]
fn a_redirect_never_carries_the_api_key_to_another_server() {
    let dir = tempfile::tempdir().unwrap();
    let (home, home_log) = server();
    let (elsewhere, elsewhere_log) = server();
    program(dir.path(), &format!(r#"tool t(p: text) -> text = http GET "http://127.0.0.1:{home}/away/{elsewhere}" {{ headers: ["X-Api-Key: sk-{{p}}"] }}"#));
    let out = run(&mut loopc(&["run", "steer.loop", "--input", &input("live-key")], dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("another origin; loopc follows redirects only within the tool's scheme, host and port"), "{}", text(&out.stderr));
    assert!(home_log.lock().unwrap()[0].to_ascii_lowercase().contains("x-api-key: sk-live-key"), "{:?}", home_log.lock().unwrap());
    assert!(elsewhere_log.lock().unwrap().is_empty(), "the other server got: {:?}", elsewhere_log.lock().unwrap());
}

#[test]
fn check_rejects_placeholders_that_could_steer_a_tool_and_points_at_them() {
    let dir = tempfile::tempdir().unwrap();
    // Each declaration, what the error says, and the string it points at.
    let cases = [
        (r#"tool t(p: text) -> text = http GET "http://{p}.example.com/x""#, "`{p}` stands in the URL's scheme, host or port", r#""http:"#),
        (r#"tool t(p: text) -> text = command ["{p}", "--help"]"#, "`{p}` stands in the program", r#""{p}""#),
        (r#"tool t(p: text) -> text = command ["sort", "-{p}"]"#, "`{p}` follows `-`, so a value could add or pick options", r#""-{p}""#),
        (r#"tool t(p: text) -> text = command ["sh", "-c", "grep {p} notes.txt"]"#, "`{p}` stands where `sh -c` reads code to run", r#""grep"#),
        (r#"tool t(p: text) -> text = http GET "http://h/" { headers: ["Host: {p}"] }"#, "`{p}` stands in header `Host`", r#""Host"#),
    ];
    for (decl, message, pointed) in cases {
        program(dir.path(), decl);
        let out = run(&mut loopc(&["check", "--json", "steer.loop"], dir.path()));
        assert_eq!(out.status.code(), Some(1), "{decl}: {}", text(&out.stdout));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &v["files"][0]["diagnostics"][0];
        assert_eq!(d["code"], "unsafe-placeholder", "{decl}: {d}");
        assert!(d["message"].as_str().is_some_and(|m| m.contains(message)), "{decl}: {d}");
        let column = decl.find(pointed).map(|c| c as u64 + 1);
        assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(4), column), "{decl}: {d}");
    }
}
