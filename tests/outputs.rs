//! No output is lost: batch results survive failures and Ctrl-C and resume; exit codes say
//! what happened (0 ok, 1 failed / different / below the bar, 2 cannot, 130 interrupted).
//! The programs run on a tiny seeded model, so these tests are about the files, not answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn loopc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).env("NO_COLOR", "1").output().expect("the loopc binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A tiny model, a program generating a few tokens on it, and `n` inputs.
struct Setup {
    dir: tempfile::TempDir,
    program: PathBuf,
    inputs: PathBuf,
}

fn setup(n: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 9).unwrap();
    let program = dir.path().join("echo.loop");
    std::fs::write(
        &program,
        format!(
            "program echo\ninput text: text\noutput reply: text\nmodel default = onnx(\"{}\") {{ max_tokens: 8 }}\n\
             signature W \"Reply.\" {{ in text: text out reply: text }}\nstep w = predict W {{ text: input.text }}\n\
             return {{ reply: w.reply }}\nmetric same = exact(output.reply, example.reply)\n",
            model.display()
        ),
    )
    .unwrap();
    let inputs = dir.path().join("inputs.jsonl");
    std::fs::write(&inputs, (0..n).map(|i| format!("{{\"text\": \"note number {i}\", \"reply\": \"x\"}}\n")).collect::<String>()).unwrap();
    Setup { dir, program, inputs }
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn an_existing_out_file_survives_a_run_that_fails_before_finishing() {
    let s = setup(3);
    let out = s.dir.path().join("out.jsonl");
    std::fs::write(&out, "precious\n").unwrap();
    // A path under a regular file can never be opened.
    let bad_trace = out.join("trace.jsonl");
    let o = loopc(&[
        "run",
        s.program.to_str().unwrap(),
        "--inputs",
        s.inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-cache",
        "--trace-json",
        bad_trace.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n", "the old output is untouched");
    // A run that goes through replaces the file whole, rows in input order.
    let o = loopc(&["run", s.program.to_str().unwrap(), "--inputs", s.inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-cache"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = lines(&out);
    assert_eq!(rows.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(!s.dir.path().join("out.jsonl.partial").exists());
}

#[test]
fn an_interrupted_batch_keeps_its_finished_rows_and_resumes() {
    let s = setup(400);
    let out = s.dir.path().join("out.jsonl");
    let partial = s.dir.path().join("out.jsonl.partial");
    let child = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["run", s.program.to_str().unwrap(), "--inputs", s.inputs.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--no-cache", "--concurrency", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while lines(&partial).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "no rows were written");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--resume"), "{}", text(&o.stderr));
    let kept = lines(&partial);
    assert!(kept.len() >= 3 && kept.len() < 400, "{} rows kept", kept.len());
    assert!(!out.exists(), "the final file appears only when every row is done");

    let o = loopc(&["run", s.program.to_str().unwrap(), "--inputs", s.inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-cache"]);
    assert_eq!(o.status.code(), Some(2), "a partial run is not silently overwritten");
    assert!(text(&o.stderr).contains("--resume"), "{}", text(&o.stderr));

    let o = loopc(&["run", s.program.to_str().unwrap(), "--inputs", s.inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-cache", "--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = lines(&out);
    assert_eq!(rows.len(), 400);
    assert!(rows.iter().enumerate().all(|(i, r)| r["line"] == i + 1), "every row once, in input order");
    for k in &kept {
        assert_eq!(&rows[k["line"].as_u64().unwrap() as usize - 1], k, "rows done before the interrupt are kept as they were");
    }
    assert!(!partial.exists());
}

#[test]
fn eval_fails_under_the_bar_and_when_every_run_fails() {
    let s = setup(4);
    let o = loopc(&["eval", s.program.to_str().unwrap(), "--data", s.inputs.to_str().unwrap(), "--no-cache", "--json", "--fail-under", "0.5"]);
    assert_eq!(o.status.code(), Some(1), "a tiny random model does not echo `x`: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 4, "per-example results");
    assert!(v["results"][0]["outputs"]["reply"].is_string(), "{v}");
    let o = loopc(&["eval", s.program.to_str().unwrap(), "--data", s.inputs.to_str().unwrap(), "--no-cache", "--fail-under", "0"]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Every run failing (a tool nobody serves) is a failure, not a zero score.
    let tool = s.dir.path().join("tool.loop");
    std::fs::write(
        &tool,
        "program t\ninput text: text\noutput reply: text\ntool f(q: text) -> text = http GET \"http://127.0.0.1:9/{q}\" { timeout_ms: 200, retries: 0 }\n\
         step c = call f { q: input.text }\nreturn { reply: c.result }\nmetric same = exact(output.reply, example.reply)\n",
    )
    .unwrap();
    let o = loopc(&["eval", tool.to_str().unwrap(), "--data", s.inputs.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("every run failed"), "{}", text(&o.stderr));
}

#[test]
fn the_response_cache_can_be_listed_and_cleared() {
    let s = setup(2);
    let cache = s.dir.path().join("responses");
    let o = loopc(&["run", s.program.to_str().unwrap(), "--inputs", s.inputs.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = loopc(&["cache", "info", "--cache-dir", cache.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"], 2, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0 && v["limit_bytes"].as_u64().unwrap() > 0);
    let o = loopc(&["cache", "clear", "--cache-dir", cache.to_str().unwrap()]);
    assert!(text(&o.stdout).contains("removed 2"), "{}", text(&o.stdout));
    let o = loopc(&["cache", "info", "--cache-dir", cache.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"], 0);
}
