//! End-to-end tests of the `loopc` binary: exit codes, rendered diagnostics (snapshots),
//! JSON output, graph formats and `fmt`.

use std::path::Path;
use std::process::{Command, Output};

fn loopc(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).current_dir(dir).env("NO_COLOR", "1").output().expect("the loopc binary runs")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_every_example_program() {
    let dir = root().join("programs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = loopc(&["check", path.to_str().unwrap()], &dir);
        assert!(out.status.success(), "{}: {}", path.display(), text(&out.stderr));
        assert!(text(&out.stderr).starts_with("ok: "));
    }
}

#[test]
fn check_renders_each_error_kind_with_file_line_col_and_a_caret() {
    insta::glob!("fixtures/err/*.loop", |path| {
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let out = loopc(&["check", "--deny-warnings", name], dir);
        assert_eq!(out.status.code(), Some(1), "{name} should fail the check");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(&format!("[{name}:")), "names file:line:col: {stderr}");
        insta::assert_snapshot!(stderr);
    });
}

#[test]
fn warnings_alone_pass_the_check() {
    let out = loopc(&["check", "unused_step.loop"], &root().join("tests/fixtures/err"));
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("⚠ the results of step `spare` are never used"));
}

#[test]
fn check_json_gives_positions_for_scripts() {
    let out = loopc(&["check", "--json", "cycle.loop", "type_mismatch.loop"], &root().join("tests/fixtures/err"));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let cycle = &files[0]["diagnostics"][0];
    assert_eq!(cycle["code"], "cycle");
    assert_eq!((cycle["line"].as_u64(), cycle["column"].as_u64()), (Some(11), Some(1)));
    assert_eq!(cycle["message"], "steps form a cycle: `first` → `second` → `third` → `first`");
    let mismatch = &files[1]["diagnostics"][0];
    assert_eq!((mismatch["code"].as_str(), mismatch["line"].as_u64(), mismatch["column"].as_u64()), (Some("type-mismatch"), Some(13), Some(20)));
}

#[test]
fn a_missing_file_is_an_error_with_exit_code_2() {
    let out = loopc(&["check", "no_such_file.loop"], root());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read `no_such_file.loop`"));
}

#[test]
fn graph_prints_dot_mermaid_and_json() {
    let dir = root().join("programs");
    let dot = loopc(&["graph", "support_triage.loop", "--format", "dot"], &dir);
    assert!(dot.status.success());
    let dot = text(&dot.stdout);
    assert!(dot.starts_with("digraph \"support_triage\""));
    assert!(dot.contains("step_classify -> step_draft [label=\"category\"]"), "{dot}");

    let mermaid = text(&loopc(&["graph", "support_triage.loop", "--format", "mermaid"], &dir).stdout);
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("step_notes -->|\"result → notes\"| step_draft"), "{mermaid}");

    let json: serde_json::Value = serde_json::from_slice(&loopc(&["graph", "support_triage.loop", "--format", "json"], &dir).stdout).unwrap();
    assert_eq!(json["schedule"], serde_json::json!([["classify", "notes"], ["draft"]]));
}

#[test]
fn graph_of_an_invalid_program_fails_with_diagnostics() {
    let out = loopc(&["graph", "cycle.loop"], &root().join("tests/fixtures/err"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("steps form a cycle"));
}

#[test]
fn fmt_rewrites_in_place_and_check_reports_unformatted_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.loop");
    std::fs::write(&file, "program p\ninput q:text output a:text\nsignature S{in x:text out y:text}\nstep s=predict S{x:input.q}\nreturn{a:s.y}\n").unwrap();
    let check = loopc(&["fmt", "--check", "p.loop"], dir.path());
    assert_eq!(check.status.code(), Some(1));
    assert!(text(&check.stderr).contains("would reformat: p.loop"));

    assert!(loopc(&["fmt", "p.loop"], dir.path()).status.success());
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert!(formatted.contains("signature S {\n  in x: text\n  out y: text\n}"), "{formatted}");
    assert!(loopc(&["fmt", "--check", "p.loop"], dir.path()).status.success());
    assert!(loopc(&["check", "p.loop"], dir.path()).status.success());
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["graph", "--help"],
        vec!["fmt", "--help"],
        vec!["bench", "parse", "--help"],
        vec!["bench", "model", "--help"],
        vec!["bench", "run", "--help"],
        vec!["run", "--help"],
        vec!["prompt", "--help"],
        vec!["generate", "--help"],
        vec!["model", "import", "--help"],
    ] {
        let out = loopc(&cmd, root());
        assert!(out.status.success(), "{cmd:?}");
        assert!(text(&out.stdout).contains("Usage: loopc"), "{cmd:?}");
    }
}

#[test]
fn bench_parse_reports_figures_as_json() {
    let out = loopc(&["bench", "parse", "--steps", "200", "--iterations", "1", "--json"], root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"], 200);
    assert!(v["parse_ms"].as_f64().unwrap() > 0.0);
    assert!(v["schedule_layers"].as_u64().unwrap() > 1);
}

#[test]
fn a_wrong_onnx_runtime_library_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_loopc")).args(["generate", "hello"]).env("ORT_DYLIB_PATH", &fake).env("LOOPC_CACHE_DIR", dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot load ONNX Runtime from") && stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
}

#[test]
fn an_unknown_model_names_what_exists() {
    let out = loopc(&["generate", "--model", "no-such-model", "hello"], root());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown model `no-such-model`") && stderr.contains("loopc model import"), "{stderr}");
}

#[test]
fn bench_model_beside_llama_cpp_refuses_a_model_with_no_gguf_before_measuring() {
    // The Python is never started: the GGUF is looked up first.
    let out = loopc(&["bench", "model", "--model", "no-such-model", "--llama-cpp", "/nonexistent/python"], root());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot find the GGUF file llama.cpp should run for `no-such-model` (--gguf FILE names one)"), "{stderr}");
    assert!(stderr.contains("smollm2-135m-instruct, gemma3-270m") && stderr.contains("`ollama:NAME[:TAG]`"), "{stderr}");
}

#[test]
fn generate_answers_with_the_default_model() {
    let out = loopc(&["generate", "--json", "What is the capital of France?"], root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["text"].as_str().unwrap().contains("Paris"), "{v}");
}

#[test]
fn model_list_shows_the_default_model() {
    let out = loopc(&["model", "list", "--json"], root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["models"].as_array().unwrap().iter().any(|m| m["name"] == "smollm2-135m-instruct"));
}

#[test]
fn model_import_converts_a_gguf_and_info_describes_it() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    loopc::model::testing::write_tiny_gguf(&gguf, 3).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_loopc"))
            .args(args)
            .env("LOOPC_CACHE_DIR", dir.path().join("cache"))
            .env("ORT_DYLIB_PATH", ort_library())
            .output()
            .unwrap()
    };
    let out = run(&["model", "import", gguf.to_str().unwrap(), "--name", "tiny"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = run(&["model", "info", "tiny", "--json"]);
    assert!(info.status.success(), "{}", text(&info.stderr));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!((v["layers"].as_u64(), v["kv_heads"].as_u64(), v["vocab"].as_u64()), (Some(2), Some(2), Some(259)));
    let gen = run(&["generate", "--model", "tiny", "--raw", "--max-tokens", "4", "abc"]);
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00truncated").unwrap();
    let out = run(&["model", "import", bad.to_str().unwrap(), "--name", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a usable GGUF file"), "{}", text(&out.stderr));
}

/// The ONNX Runtime library of the default cache, provisioned if needed.
fn ort_library() -> std::path::PathBuf {
    let cache = loopc::model::provision::Cache::from_env().unwrap();
    loopc::model::provision::ort_library(&cache, &loopc::model::progress::SilentProgress).unwrap()
}

#[test]
fn run_returns_outputs_of_the_declared_types_with_the_default_model() {
    let dir = root().join("programs");
    let out = loopc(&["run", "sentiment.loop", "--input", r#"{"review": "I love it, works perfectly."}"#], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = v["sentiment"].as_str().unwrap();
    assert!(["positive", "negative", "neutral"].contains(&label), "{v}");

    let out = loopc(&["run", "word_stats.loop", "--input", r#"{"text": "one two three four"}"#], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["words"], 4);
    assert!(["short", "medium", "long"].contains(&v["verdict"].as_str().unwrap()), "{v}");
}

#[test]
fn run_rejects_bad_input_with_the_field_named() {
    let dir = root().join("programs");
    let cases = [
        (r#"{"review": 3}"#, "input `review`: expected text (a JSON string), found a number"),
        (r#"{}"#, "input `review`: missing"),
        (r#"{"review": "x""#, "--input: not valid JSON"),
    ];
    for (input, want) in cases {
        let out = loopc(&["run", "sentiment.loop", "--input", input], &dir);
        assert_eq!(out.status.code(), Some(2), "{input}");
        assert!(text(&out.stderr).contains(want), "{input}: {}", text(&out.stderr));
    }
}

#[test]
fn run_in_batch_mode_reports_bad_lines_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(&data, "{\"review\": \"fine\"}\n{\"review\": 5}\n").unwrap();
    let program = root().join("programs/sentiment.loop");
    let out = loopc(&["run", program.to_str().unwrap(), "--inputs", data.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("data.jsonl:2: input `review`: expected text"), "{}", text(&out.stderr));
}

#[test]
fn prompt_shows_the_final_prompt_without_a_model() {
    let out = loopc(&["prompt", "support_triage.loop", "--step", "classify", "--input", r#"{"ticket": "I was charged twice"}"#], &root().join("programs"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("Classify a customer support ticket."), "{shown}");
    assert!(shown.contains("[[ ## ticket ## ]]\nI was charged twice"), "{shown}");
    assert!(shown.contains("[[ ## category ## ]]"));
}

#[test]
fn bench_run_reports_each_concurrency_level_and_the_overhead() {
    let out = loopc(&["bench", "run", "--limit", "4", "--concurrency", "1,2", "--overhead", "--json"], root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let levels = v["levels"].as_array().unwrap();
    assert_eq!(levels.iter().map(|l| l["concurrency"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    for l in levels {
        assert_eq!((l["examples"].as_u64(), l["failed"].as_u64()), (Some(4), Some(0)), "{l}");
        for key in ["examples_per_second", "p50_ms", "p95_ms", "peak_rss_mb"] {
            assert!(l[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {l}");
        }
    }
    assert!(v["runtime_overhead_us_per_step"].as_f64().unwrap() > 0.0);
}

/// A knowledge-base stand-in for support_triage: answers every request with a note, and
/// remembers the request lines it saw.
fn kb_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Skip the headers; GET requests have no body.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            log.lock().unwrap().push(line.trim().to_string());
            let body = "Refunds for double charges are issued within 5 days.";
            let mut s = stream;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn run_gives_typed_outputs_for_the_tool_and_multi_step_programs() {
    let dir = root().join("programs");
    let (kb, seen) = kb_server();
    let url = format!("kb_search={kb}/search?q={{query}}");
    let out = loopc(&["run", "support_triage.loop", "--tool-url", &url, "--input", r#"{"ticket": "I was charged twice this month"}"#], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(["billing", "bug", "account", "other"].contains(&v["category"].as_str().unwrap()), "{v}");
    assert!(v["reply"].is_string(), "{v}");
    assert_eq!(seen.lock().unwrap().as_slice(), ["GET /search?q=I%20was%20charged%20twice%20this%20month HTTP/1.1"]);

    let email = r#"{"email": "Hi Ana, please send the slides to Bo Chen (bo@example.com) by Friday. Thanks, Cy"}"#;
    let out = loopc(&["run", "extract_contacts.loop", "--input", email], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for list in ["people", "addresses"] {
        assert!(v[list].as_array().is_some_and(|items| items.iter().all(|i| i.is_string())), "{v}");
    }
    assert!(v["has_deadline"].is_boolean(), "{v}");

    let qa = r#"{"passage": "The bridge opened in 1932 and is 503 metres long.", "question": "When did the bridge open?"}"#;
    let out = loopc(&["run", "qa_cot.loop", "--input", qa], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["answer"].is_string(), "{v}");
}

#[test]
fn an_unreachable_tool_fails_the_run_naming_the_step() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("kb_search=http://127.0.0.1:{port}/search?q={{query}}");
    let out = loopc(&["run", "support_triage.loop", "--tool-url", &url, "--input", r#"{"ticket": "hello"}"#], &root().join("programs"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("step `notes`: tool `kb_search` cannot reach"), "{}", text(&out.stderr));
    let bad = loopc(&["run", "support_triage.loop", "--tool-url", "kb_search=http://x/{q}", "--input", "{}"], &root().join("programs"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("`{q}` is not a parameter of tool `kb_search`"), "{}", text(&bad.stderr));
}
