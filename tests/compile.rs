//! `loopc compile` and `loopc eval` end to end, with the real default model on a small slice
//! of the ticket-routing example data (the full run is the README's main job).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn loopc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first `n` lines of an example data file, written to `dir`.
fn slice(dir: &Path, name: &str, n: usize) -> PathBuf {
    let all = std::fs::read_to_string(root().join("examples/tickets").join(name)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, all.lines().take(n).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    path
}

fn without_timing(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["provenance"]["timing"] = serde_json::Value::Null;
    v
}

#[test]
fn the_same_seed_gives_the_same_artifact_and_eval_reproduces_its_score() {
    let dir = tempfile::tempdir().unwrap();
    let (train, dev) = (slice(dir.path(), "train.jsonl", 12), slice(dir.path(), "dev.jsonl", 10));
    let mut artifacts = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("a{i}.json"));
        let cache = dir.path().join(format!("cache{i}"));
        let args = [
            "compile",
            "programs/ticket_routing.loop",
            "--train",
            train.to_str().unwrap(),
            "--dev",
            dev.to_str().unwrap(),
            "--candidates",
            "2",
            "-o",
            out.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ];
        let o = loopc(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        artifacts.push(out);
    }
    // The compiler fills in the tokens the model computed for it (a cold cache: all of them).
    let cold: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&artifacts[0]).unwrap()).unwrap();
    let timing = &cold["provenance"]["timing"];
    assert!(timing["tokens_prefilled"].as_u64() > Some(0) && timing["tokens_generated"].as_u64().is_some(), "{timing}");
    let first = without_timing(&artifacts[0]);
    assert_eq!(first, without_timing(&artifacts[1]), "two cold compiles with one seed differ");
    let candidates = first["provenance"]["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 3, "{first}");
    assert_eq!(first["models"][0]["weights_sha256"].as_str().map(str::len), Some(64));

    // eval on the dev set reproduces the compile's final score.
    let o = loopc(&["eval", artifacts[0].to_str().unwrap(), "--data", dev.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["score"], first["provenance"]["final_score"], "{eval}");

    // `run` takes the artifact as it takes a program; a hand-edited demo label outside the
    // label set is refused with the place named.
    let o = loopc(&["run", artifacts[0].to_str().unwrap(), "--input", r#"{"ticket": "My card was charged twice."}"#]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ran: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(["billing", "shipping", "technical", "account"].contains(&ran["team"].as_str().unwrap()), "{ran}");
    let mut edited: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&artifacts[0]).unwrap()).unwrap();
    // Whether the compile shipped demos depends on the model's scores; the edit writes one.
    edited["steps"]["route"]["demos"] = serde_json::json!([{ "inputs": { "ticket": "My parcel never came." }, "outputs": { "team": "marketing" } }]);
    let bad_label = dir.path().join("bad_label.json");
    std::fs::write(&bad_label, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let o = loopc(&["run", bad_label.to_str().unwrap(), "--input", r#"{"ticket": "x"}"#]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("at `steps.route.demos[0].outputs.team`: `marketing` is not one of the labels"), "{err}");

    // An artifact compiled against other weights (another export or precision of the model)
    // still runs, and says so: the library reports it as data, the CLI as a warning.
    let mut other: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&artifacts[0]).unwrap()).unwrap();
    other["models"][0]["weights_sha256"] = serde_json::json!("0".repeat(64));
    let other_weights = dir.path().join("other_weights.json");
    std::fs::write(&other_weights, serde_json::to_string_pretty(&other).unwrap()).unwrap();
    let o = loopc(&["run", other_weights.to_str().unwrap(), "--input", r#"{"ticket": "My card was charged twice."}"#]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("warning: model `smollm2-135m-instruct`: the artifact was compiled against weights 000000000000"), "{}", text(&o.stderr));
    let loaded = loopc::Engine::new().unwrap().load(&other_weights).unwrap();
    assert!(matches!(loaded.warnings(), [loopc::runtime::LoadWarning::WeightsDiffer { compiled, .. }] if *compiled == "0".repeat(64)));

    // The library loads the artifact with no source present and scores the same.
    let moved = dir.path().join("elsewhere.json");
    std::fs::copy(&artifacts[0], &moved).unwrap();
    let program = loopc::Engine::new().unwrap().load(&moved).unwrap();
    assert!(program.warnings().is_empty(), "the weights it was compiled against are installed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lines = std::fs::read_to_string(&dev).unwrap();
    let mut right = 0;
    let mut n = 0;
    for line in lines.lines() {
        let ex: serde_json::Value = serde_json::from_str(line).unwrap();
        let inputs = serde_json::json!({"ticket": ex["ticket"]}).as_object().cloned().unwrap();
        let out = rt.block_on(program.run(inputs)).unwrap();
        right += usize::from(out["team"] == ex["team"]);
        n += 1;
    }
    assert_eq!(serde_json::json!(right as f64 / n as f64), eval["score"]);

    // A warm recompile is answered by the response cache, choices included.
    let warm = dir.path().join("warm.json");
    let report = dir.path().join("report.html");
    let cache0 = dir.path().join("cache0");
    let args = [
        "compile",
        "programs/ticket_routing.loop",
        "--train",
        train.to_str().unwrap(),
        "--dev",
        dev.to_str().unwrap(),
        "--candidates",
        "2",
        "-o",
        warm.to_str().unwrap(),
        "--cache-dir",
        cache0.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--json",
    ];
    let o = loopc(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["cache_hits"], summary["model_calls"], "{summary}");
    assert_eq!(summary["tokens_prefilled"], 0, "{summary}");

    // The report charts every candidate and shows the winning prompt.
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.matches("<circle").count() == candidates.len(), "one dot per candidate");
    assert!(html.contains(first["steps"]["route"]["instruction"].as_str().unwrap()));

    // inspect shows the final prompt with the chosen demos; diff of equal compiles is empty.
    let o = loopc(&["inspect", artifacts[0].to_str().unwrap(), "--step", "route"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(shown.contains("<input.ticket>") && shown.contains("step `route`"), "{shown}");
    for demo in first["steps"]["route"]["demos"].as_array().unwrap() {
        assert!(shown.contains(demo["inputs"]["ticket"].as_str().unwrap()), "demo missing from {shown}");
    }
    let o = loopc(&["diff", artifacts[0].to_str().unwrap(), warm.to_str().unwrap()]);
    assert!(text(&o.stdout).contains("the same prompts"), "{}", text(&o.stdout));
    assert_eq!(o.status.code(), Some(0), "equal artifacts: exit 0");
    let mut edited = first.clone();
    edited["steps"]["route"]["instruction"] = "Pick the team.".into();
    edited["provenance"]["final_score"] = 0.99.into();
    edited["provenance"]["timing"] = serde_json::json!({"created_unix": 0, "wall_seconds": 0.0, "cache_hits": 0, "tokens_prefilled": 0, "tokens_generated": 0});
    let edited_path = dir.path().join("edited.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    let o = loopc(&["diff", artifacts[0].to_str().unwrap(), edited_path.to_str().unwrap(), "--json"]);
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o.stderr)));
    assert_eq!(d["same"], false);
    assert_eq!(o.status.code(), Some(1), "different artifacts: exit 1, like diff(1)");
    assert_eq!(d["steps"]["route"]["instruction"][1], "Pick the team.");
    assert_eq!(d["provenance"]["final_score"][1], 0.99);
}

#[test]
fn bad_data_and_budgets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write("good.jsonl", "{\"ticket\": \"refund me\", \"team\": \"billing\"}\n{\"ticket\": \"app crashes\", \"team\": \"technical\"}\n");
    let cases = [
        (write("a.jsonl", "{\"ticket\": \"x\", \"team\": \"billing\"}\n{\"ticket\": \"y\"\n"), "a.jsonl:2: not valid JSON"),
        (write("b.jsonl", "{\"ticket\": \"x\", \"team\": \"sales\"}\n"), "b.jsonl:1: field `team`"),
        (write("c.jsonl", "{\"team\": \"billing\"}\n"), "c.jsonl:1: field `ticket` missing"),
        (write("d.jsonl", ""), "d.jsonl` has no examples"),
    ];
    for (train, want) in &cases {
        let o = loopc(&["compile", "programs/ticket_routing.loop", "--train", train, "--dev", &good, "-o", "/nonexistent/x.json"]);
        assert_eq!(o.status.code(), Some(2), "{want}");
        assert!(text(&o.stderr).contains(want), "{want}: {}", text(&o.stderr));
    }
    let out = dir.path().join("never.json");
    let o = loopc(&["compile", "programs/ticket_routing.loop", "--train", &good, "--dev", &good, "--max-calls", "0", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("the budget is zero"), "{}", text(&o.stderr));
    assert!(!out.exists());
}

#[test]
fn an_interrupted_compile_writes_no_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let train = root().join("examples/tickets/train.jsonl");
    let out = dir.path().join("a.json");
    let child = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["compile", "programs/ticket_routing.loop", "--train", train.to_str().unwrap(), "--no-cache", "-o", out.to_str().unwrap()])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it load the model and start evaluating, then press Ctrl-C.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("interrupted: the compile stopped and no artifact was written"), "{}", text(&o.stderr));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary files left");
}

#[test]
fn an_lm_judge_scores_with_the_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let program = std::fs::read_to_string(root().join("programs/sentiment.loop")).unwrap().replace(
        "metric accuracy",
        "signature Fits \"Does the label describe the review's sentiment?\" {\n  in review: text\n  in label: text\n  out fits: bool\n}\nmetric fits = judge(Fits, review: example.review, label: output.sentiment)\nmetric accuracy",
    );
    let file = dir.path().join("judged.loop");
    std::fs::write(&file, program).unwrap();
    let data = dir.path().join("reviews.jsonl");
    std::fs::write(&data, "{\"review\": \"I love it, works perfectly.\"}\n{\"review\": \"Broken on arrival, awful.\"}\n{\"review\": \"It is a mug.\"}\n")
        .unwrap();
    let cache = dir.path().join("cache");
    let o = loopc(&["eval", file.to_str().unwrap(), "--data", data.to_str().unwrap(), "--metric", "fits", "--cache-dir", cache.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metric"], "fits");
    assert_eq!(v["model_calls"], 6, "one call for the program and one for the judge per review: {v}");
    let score = v["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score) && (score * 3.0).fract() == 0.0, "a bool judge gives 0 or 1 per review: {v}");
}
