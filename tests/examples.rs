//! Examples inside a program, through the real binary: `loopc check` types them, `loopc test`
//! runs them and reports each as passed or failed with a diff (exit 1 on a failure, `--json`
//! for scripts), and `loopc compile` trains on them unless they are held out.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn loopc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A program whose output comes from a command, so what each example gives is known: `same`
/// passes and `wrong` fails.
const ECHO: &str = "program echo \"Copy the text\"\n\
    input text: text\n\
    output copied: text\n\
    tool copy(text: text) -> text = command [\"printf\", \"%s\", \"{text}\"]\n\
    step c = call copy { text: input.text }\n\
    return { copied: c.result }\n\n\
    example same { input { text: \"hello\" } output { copied: \"hello\" } }\n\n\
    example wrong \"expects what it does not get\" {\n  input { text: \"hello\" }\n  output { copied: \"goodbye\" }\n}\n";

#[test]
fn loopc_test_reports_each_example_with_a_diff_and_exits_1_on_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("echo.loop"), ECHO).unwrap();

    let o = loopc(dir.path(), &["test", "echo.loop", "--no-cache"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("PASS same"), "{out}");
    assert!(out.contains("FAIL wrong") && out.contains("echo.loop:10 (example wrong)"), "{out}");
    assert!(out.contains("-  \"copied\": \"goodbye\"") && out.contains("+  \"copied\": \"hello\""), "the diff of the outputs: {out}");
    assert!(out.contains("2 examples: 1 passed, 1 failed"), "{out}");

    let o = loopc(dir.path(), &["test", "echo.loop", "--no-cache", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(1), Some(1)), "{v}");
    let wrong = &v["examples"][1];
    assert_eq!(wrong["name"], "wrong");
    assert_eq!(wrong["outputs"]["copied"], "hello");
    assert_eq!(wrong["expected"]["copied"], "goodbye");
    assert_eq!(wrong["mismatched"][0], "copied");
    assert!(wrong["diff"].as_str().unwrap().contains("+++ actual"), "{wrong}");

    let o = loopc(dir.path(), &["test", "echo.loop", "--no-cache", "--example", "same"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let o = loopc(dir.path(), &["test", "echo.loop", "--example", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("has no example `nope` (its examples: same, wrong)"), "{}", text(&o.stderr));
}

#[test]
fn loopc_check_types_examples_against_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let bad = ECHO.replace("output { copied: \"hello\" }", "output { copied: 5 }").replace("input { text: \"hello\" }\n", "input { txt: \"hello\" }\n");
    std::fs::write(dir.path().join("bad.loop"), bad).unwrap();
    let o = loopc(dir.path(), &["check", "bad.loop", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let messages: Vec<String> =
        v["files"][0]["diagnostics"].as_array().unwrap().iter().map(|d| format!("{}:{} {}", d["line"], d["column"], d["message"])).collect();
    assert!(messages.iter().any(|m| m.starts_with("8:") && m.contains("takes `text`, not `5`")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("the program has no input `txt`")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("gives no value for the input `text`")), "{messages:?}");
}

#[test]
fn compile_trains_on_the_examples_that_are_not_held_out() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 11).unwrap();
    let mut program = format!(
        "program moods\ninput text: text\noutput mood: label(happy, sad)\nmodel default = onnx(\"{}\")\n\
         signature S \"Say the mood.\" {{ in text: text out mood: label(happy, sad) }}\n\
         step s = predict S {{ text: input.text }}\nreturn {{ mood: s.mood }}\n\
         metric accuracy = exact(output.mood, example.mood)\n\
         optimize labeled_few_shot {{ max_demos: 2 }}\n",
        model.display()
    );
    for (i, mood) in ["happy", "sad", "happy", "sad", "happy"].iter().enumerate() {
        program.push_str(&format!("example e{i} {{ input {{ text: \"message {i}\" }} output {{ mood: {mood} }} }}\n"));
    }
    program.push_str("example kept_out held_out { input { text: \"a test only\" } output { mood: sad } }\n");
    std::fs::write(dir.path().join("moods.loop"), &program).unwrap();
    let o = loopc(dir.path(), &["compile", "moods.loop", "-o", "a.json", "--no-cache", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let artifact: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("a.json")).unwrap()).unwrap();
    let p = &artifact["provenance"];
    let (train, dev) = (p["train"]["examples"].as_u64().unwrap(), p["dev"]["examples"].as_u64().unwrap());
    assert_eq!(train + dev, 5, "the five examples, and not the held-out one: {p}");
    assert!(p["train"]["source"].as_str().unwrap().contains("examples in moods.loop"), "{p}");
    let demos = artifact["steps"]["s"]["demos"].as_array().unwrap();
    assert!(demos.iter().all(|d| d["inputs"]["text"] != "a test only"), "the held-out example is never a demo: {demos:?}");

    // With a dataset too, the examples join its training half.
    std::fs::write(dir.path().join("train.jsonl"), "{\"text\": \"file one\", \"mood\": \"happy\"}\n{\"text\": \"file two\", \"mood\": \"sad\"}\n").unwrap();
    std::fs::write(dir.path().join("dev.jsonl"), "{\"text\": \"dev one\", \"mood\": \"happy\"}\n").unwrap();
    let o = loopc(dir.path(), &["compile", "moods.loop", "--train", "train.jsonl", "--dev", "dev.jsonl", "-o", "b.json", "--no-cache", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let artifact: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("b.json")).unwrap()).unwrap();
    assert_eq!(artifact["provenance"]["train"]["examples"], 7, "2 lines and 5 examples");
    assert_eq!(artifact["provenance"]["dev"]["examples"], 1);

    // `loopc test` runs an artifact's examples with its compiled prompts, held-out ones too.
    let o = loopc(dir.path(), &["test", "a.json", "--no-cache", "--json"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["examples"].as_array().unwrap().len(), 6);
    assert_eq!(v["examples"][5]["held_out"], true);
    for e in v["examples"].as_array().unwrap() {
        let mood = e["outputs"]["mood"].as_str().unwrap_or_else(|| panic!("the example ran: {e}"));
        assert_eq!(e["passed"], mood == e["expected"]["mood"], "{e}");
    }
}
