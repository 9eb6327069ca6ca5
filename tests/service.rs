//! The example service (`examples/service.rs`), run as a real process: it loads a program
//! once and answers HTTP requests with it, recording every run in the store; and its library
//! path without HTTP (`--once`), which records a run of an artifact and feedback on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `target/<profile>/examples/service`, built by `cargo test` with the other examples.
fn service_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join("service")
}

/// The running example, and the directory of its store (held so it outlives the process).
struct Service(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn store_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("store.db").display())
}

fn post(addr: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST /run HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}

/// Starts the example service on `program` (a `.loop` file or an artifact) and returns it
/// with its address, once it listens.
fn start(program: &Path) -> (Service, String) {
    let store = tempfile::tempdir().unwrap();
    let mut child = Command::new(service_binary())
        .arg(program)
        .env("LOOPC_SERVICE_ADDR", "127.0.0.1:0")
        .env("LOOPC_STORE", store_url(store.path()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example service is built by a full `cargo test` (or `cargo build --example service`)");
    let stderr = child.stderr.take().unwrap();
    let service = Service(child, store);
    // The service prints its address once the program and model are loaded.
    let mut addr = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            addr = Some(a.to_string());
            break;
        }
    }
    (service, addr.expect("the service starts listening"))
}

#[test]
fn the_service_answers_with_the_programs_outputs() {
    let (service, addr) = start(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("programs/sentiment.loop"));
    let (status, body) = post(&addr, r#"{"review": "Works great, very happy."}"#);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(["positive", "negative", "neutral"].contains(&v["sentiment"].as_str().unwrap()), "{v}");
    let (status, body) = post(&addr, r#"{"review": 5}"#);
    assert_eq!(status, 400);
    assert!(body.contains("input `review`"), "{body}");
    drop(service);
}

#[test]
fn the_service_serves_a_compiled_artifact_and_records_it_without_http() {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let slice = |name: &str, n: usize| {
        let all = std::fs::read_to_string(root.join("examples/tickets").join(name)).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, all.lines().take(n).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        path
    };
    let (train, dev) = (slice("train.jsonl", 8), slice("dev.jsonl", 4));
    let artifact = dir.path().join("routing.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["compile", root.join("programs/ticket_routing.loop").to_str().unwrap(), "--optimizer", "labeled_few_shot", "--max-demos", "2"])
        .args(["--train", train.to_str().unwrap(), "--dev", dev.to_str().unwrap(), "--no-cache", "-o", artifact.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (service, addr) = start(&artifact);
    let (status, body) = post(&addr, r#"{"ticket": "I was charged twice for my order."}"#);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(["billing", "shipping", "technical", "account"].contains(&v["team"].as_str().unwrap()), "{v}");
    drop(service);

    // The library path: one run of the artifact and feedback on it, recorded with no HTTP.
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(service_binary())
        .arg(&artifact)
        .args(["--once", r#"{"ticket": "Charged twice, write to jane@example.com"}"#])
        .env("LOOPC_STORE", store_url(store.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = &v["stored"];
    let hash = loopc::fs::sha256_hex(&std::fs::read(&artifact).unwrap());
    assert_eq!(stored["artifact"], hash.as_str(), "the run names the artifact by the hash of its bytes: {v}");
    assert_eq!(stored["program"], "ticket_routing");
    assert_eq!(stored["inputs"]["ticket"], "Charged twice, write to [email]", "{v}");
    assert_eq!(stored["outputs"], v["outputs"]);
    let keys: Vec<&str> = stored["feedback"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["thumbs", "accepted"], "the repeated thumbs-up is stored once: {v}");
    assert_eq!(stored["feedback"][1]["source"], "implicit");
}
