//! The engine as a service uses it: one engine holding programs on several models at once,
//! models shared by fingerprint, the context budget naming the input that is too long,
//! special tokens typed into inputs, and cached answers that never outlive the weights they
//! came from. Library tests use tiny seeded models; the end-to-end ones run the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use loopc::runtime::executor::RunError;
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::ProgramOptions;
use serde_json::{json, Map, Value};

fn engine() -> Engine {
    Engine::builder().options(EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() }).build().unwrap()
}

fn tiny_model(seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    loopc::model::testing::write_tiny_model(dir.path(), seed).unwrap();
    dir
}

/// A label program and a generating program, on the model in `dir`.
fn classifier(dir: &Path) -> String {
    format!(
        "program classify\ninput text: text\noutput mood: label(happy, sad, calm)\nmodel default = onnx(\"{}\")\n\
         signature S \"Say the mood.\" {{ in text: text out mood: label(happy, sad, calm) }}\n\
         step s = predict S {{ text: input.text }}\nreturn {{ mood: s.mood }}\n",
        dir.display()
    )
}

fn writer(dir: &Path) -> String {
    format!(
        "program write\ninput text: text\noutput reply: text\nmodel default = onnx(\"{}\") {{ max_tokens: 6 }}\n\
         signature W \"Reply.\" {{ in text: text out reply: text }}\n\
         step w = predict W {{ text: input.text }}\nreturn {{ reply: w.reply }}\n",
        dir.display()
    )
}

fn input(text: &str) -> Map<String, Value> {
    json!({ "text": text }).as_object().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_programs_on_two_models_run_concurrently_on_one_engine() {
    let (a, b) = (tiny_model(3), tiny_model(4));
    let engine = engine();
    let load = |name: &str, src: String| {
        let engine = engine.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || engine.load_source(&name, &src, ProgramOptions::default()).unwrap())
    };
    let classify = load("classify.loop", classifier(a.path())).await.unwrap();
    let write = load("write.loop", writer(b.path())).await.unwrap();
    let runs = (0..6).map(|i| {
        let (c, w) = (classify.clone(), write.clone());
        async move {
            let (x, y) = tokio::join!(c.run(input(&format!("text {i}"))), w.run(input(&format!("note {i}"))));
            (x.unwrap(), y.unwrap())
        }
    });
    for (mood, reply) in futures_util::future::join_all(runs).await {
        assert!(["happy", "sad", "calm"].contains(&mood["mood"].as_str().unwrap()), "{mood:?}");
        assert!(reply["reply"].is_string(), "{reply:?}");
    }
    assert_eq!(engine.model_stats().len(), 2, "one loaded model per fingerprint");
    let counters = engine.counters();
    assert_eq!((counters["classify"].runs, counters["write"].runs), (6, 6));
    assert_eq!(counters["classify"].failed, 0);

    // The same weights at another path are the same model: the engine shares it.
    let copy = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(a.path()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.path().join(f.file_name())).unwrap();
    }
    let again = load("again.loop", classifier(copy.path())).await.unwrap();
    again.run(input("x")).await.unwrap();
    assert_eq!(engine.model_stats().len(), 2);
}

#[tokio::test]
async fn an_input_over_the_context_is_an_error_naming_the_field_its_tokens_and_the_limit() {
    let model = tiny_model(5);
    let engine = engine();
    let program = engine.load_source("classify.loop", &classifier(model.path()), ProgramOptions::default()).unwrap();
    let long = "a".repeat(600);
    let err = program.run(input(&long)).await.unwrap_err();
    assert!(matches!(err, RunError::TooLong { .. }), "{err}");
    let msg = err.to_string();
    for part in ["step `s`", "input `text` is 600 tokens", "512-token context"] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    // Well under the limit the same program runs.
    program.run(input(&"a".repeat(150))).await.unwrap();
}

fn loopc(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopc"));
    cmd.args(args).env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the loopc binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// The largest resident set of any child this test process has waited for, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn run_refuses_a_200k_character_input_naming_the_field_its_tokens_and_the_limit() {
    let words = "the night was long and nobody slept while the rain kept falling on the roof ";
    let long: String = words.repeat(200_000 / words.len() + 1).chars().take(200_000).collect();
    let arg = json!({ "text": long }).to_string();
    // Too long for a command-line argument: it goes in through standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["run", programs().join("tweet_emotion.loop").to_str().unwrap(), "--no-cache", "--input", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), arg.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("input `text` is ") && err.contains(" tokens") && err.contains("8192-token context"), "{err}");
    let peak = children_peak_rss();
    assert!(peak < 3 << 30, "peak memory {} MB", peak >> 20);
}

/// The prompt tokens of the one step of a `--trace-json` run.
fn prompt_tokens(trace: &Path) -> u64 {
    let line = std::fs::read_to_string(trace).unwrap();
    let v: Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    v["steps"][0]["prompt_tokens"].as_u64().unwrap()
}

#[test]
fn a_typed_control_token_counts_like_the_same_characters() {
    let dir = tempfile::tempdir().unwrap();
    let program = programs().join("tweet_emotion.loop");
    let mut counts = Vec::new();
    for (i, t) in ["so done <|im_end|> now", "so done <|im_end!> now"].iter().enumerate() {
        let trace = dir.path().join(format!("t{i}.jsonl"));
        let arg = json!({ "text": t }).to_string();
        let out = loopc(&["run", program.to_str().unwrap(), "--no-cache", "--trace-json", trace.to_str().unwrap(), "--input", &arg], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        counts.push(prompt_tokens(&trace));
    }
    assert!(counts[0].abs_diff(counts[1]) <= 1, "{counts:?}");
}

/// The ONNX Runtime library of the default cache, provisioned if needed.
fn ort_library() -> PathBuf {
    let cache = loopc::model::provision::Cache::from_env().unwrap();
    loopc::model::provision::ort_library(&cache, &loopc::model::progress::SilentProgress).unwrap()
}

#[test]
fn a_model_re_exported_with_other_weights_never_gets_the_old_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let responses = dir.path().join("responses");
    let ort = ort_library();
    let envs = [("LOOPC_CACHE_DIR", cache.as_path()), ("ORT_DYLIB_PATH", ort.as_path())];
    let import = |seed: u64| {
        let gguf = dir.path().join(format!("m{seed}.gguf"));
        loopc::model::testing::write_tiny_gguf(&gguf, seed).unwrap();
        let out = loopc(&["model", "import", gguf.to_str().unwrap(), "--name", "reexported"], &envs);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let src = dir.path().join("p.loop");
    std::fs::write(&src, writer(Path::new("reexported"))).unwrap();
    let run = |n: usize| -> (Value, bool) {
        let trace = dir.path().join(format!("trace{n}.jsonl"));
        let out = loopc(
            &[
                "run",
                src.to_str().unwrap(),
                "--cache-dir",
                responses.to_str().unwrap(),
                "--trace-json",
                trace.to_str().unwrap(),
                "--input",
                r#"{"text": "hello"}"#,
            ],
            &envs,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_str(std::fs::read_to_string(&trace).unwrap().lines().last().unwrap()).unwrap();
        (v["outputs"].clone(), v["steps"][0]["cache_hit"].as_bool().unwrap())
    };
    import(1);
    let (first, hit) = run(0);
    assert!(!hit);
    let (again, hit) = run(1);
    assert!(hit, "the same model answers the same call from the cache");
    assert_eq!(first, again);
    import(2);
    let (_, hit) = run(2);
    assert!(!hit, "other weights under the same name are another model: no cached answer");
}
