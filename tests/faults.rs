//! Hostile and broken inputs through the real binary. Every file of the corpus in
//! `tests/fixtures/faults/` (and a few made here: too big to commit, or needing a device, a
//! directory or a closed pipe) is run with the command that reads it, and must fail cleanly:
//! the expected non-zero exit, a message that says where the problem is (file and line, field,
//! tensor or byte offset), and no crash — no panic, no abort, no signal.
//!
//! Each corpus directory has a table here, and a test checks that table and directory agree,
//! so a fixture cannot sit unused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus(dir: &str) -> PathBuf {
    root().join("tests/fixtures/faults").join(dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs loopc in `dir` with `env` set (a value of `None` removes the variable).
fn loopc_env(args: &[&str], dir: &Path, env: &[(&str, Option<&Path>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopc"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1").stdin(Stdio::null());
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.output().expect("the loopc binary runs")
}

fn loopc(args: &[&str], dir: &Path) -> Output {
    loopc_env(args, dir, &[])
}

/// Asserts that `out` ended by itself with exit `code`, without a panic, and that its standard
/// error holds every one of `wants`.
fn assert_clean_failure(what: &str, out: &Output, code: i32, wants: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: exit status {:?} (a signal has none)\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    for want in wants {
        assert!(stderr.contains(want), "{what}: stderr lacks {want:?}:\n{stderr}");
    }
}

/// Asserts that `out` ended by itself (any exit but a crash's) without a panic.
fn assert_no_crash(what: &str, out: &Output) {
    let stderr = text(&out.stderr);
    let code = out.status.code();
    assert!(matches!(code, Some(0..=2)), "{what}: exit status {:?}\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
}

/// The names of the files in a corpus directory.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn assert_table_covers(dir: &Path, table: &[&str], skip: &[&str]) {
    let mut listed: Vec<String> = table.iter().chain(skip).map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(names_in(dir), listed, "the table and the files of `{}` must agree", dir.display());
}

/// What reading a `.loop` file should stop at.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// It cannot be read as a source (exit 2 from every command).
    Read,
    /// It is not valid `.loop` syntax (exit 1 from `check` and `fmt`).
    Syntax,
    /// It parses but does not check (exit 1 from `check`; `fmt` formats it).
    Check,
}

/// Each `.loop` fixture: where it fails and what the message must say (its location first).
const LOOP_FAULTS: &[(&str, Stage, &[&str])] = &[
    ("bad_escape.loop", Stage::Syntax, &["bad_escape.loop:1:11", "escape names no character"]),
    ("bad_tool_template.loop", Stage::Check, &["bad_tool_template.loop:4:36", "must start with http"]),
    ("cycle.loop", Stage::Check, &["cycle.loop:5:1", "steps form a cycle: `a` → `b` → `a`"]),
    ("deep_but_allowed.loop", Stage::Check, &["deep_but_allowed.loop:4:13", "but the", "program output `y` takes `text`"]),
    ("duplicate_names.loop", Stage::Check, &["duplicate_names.loop:3:7", "the input `x` is declared twice", "duplicate_names.loop:4:8"]),
    ("empty.loop", Stage::Syntax, &["empty.loop:1:1", "expected `program`, found the end of the file"]),
    ("header_only_garbage.loop", Stage::Syntax, &["header_only_garbage.loop:1:9", "found `\\u{a0}`"]),
    ("huge_integer.loop", Stage::Syntax, &["huge_integer.loop:2:35", "does not fit in 64 bits"]),
    ("infinite_temperature.loop", Stage::Syntax, &["infinite_temperature.loop:2:42", "the number `1e999` is too large"]),
    ("keyword_typo.loop", Stage::Syntax, &["keyword_typo.loop:2:1", "found `inptu`", "did you mean `input`?"]),
    ("negative_count.loop", Stage::Check, &["negative_count.loop:4:41", "`max_tokens` takes a whole number of at least 0"]),
    ("not_utf8.loop", Stage::Read, &["`not_utf8.loop` is not UTF-8 text: line 2, column 19 (byte 28)"]),
    ("nul_bytes.loop", Stage::Syntax, &["nul_bytes.loop:2:1", "found `\\u{0}`"]),
    ("only_whitespace.loop", Stage::Syntax, &["only_whitespace.loop:3:1", "expected `program`"]),
    ("reserved_step_name.loop", Stage::Check, &["reserved_step_name.loop:5:6", "`input` cannot name a step"]),
    ("self_loop.loop", Stage::Check, &["self_loop.loop:5:1", "steps form a cycle: `me` → `me`"]),
    ("stray_closing.loop", Stage::Syntax, &["stray_closing.loop:2:1", "found `}`"]),
    ("terminal_escape.loop", Stage::Check, &["terminal_escape.loop:1:69", "unknown step `nope`", "program p \"\u{FFFD}]0;owned"]),
    ("trojan_source.loop", Stage::Check, &["trojan_source.loop:4:52", "unknown type `txt`", "signature S \"\u{FFFD} ssecca nimda \u{FFFD}\""]),
    ("unclosed_brace.loop", Stage::Syntax, &["unclosed_brace.loop:6:1", "expected `,` or `}`, found `return`"]),
    (
        "unknown_everything.loop",
        Stage::Check,
        &[
            "unknown_everything.loop:2:10",
            "unknown type `txt`",
            "unknown signature `Nope`",
            "unknown model `phantom`",
            "unknown metric function `exactly`",
            "unknown optimizer `fastest`",
        ],
    ),
    ("unterminated_long_string.loop", Stage::Syntax, &["unterminated_long_string.loop:2:13", "this `\"\"\"` string is never closed"]),
    ("unterminated_string.loop", Stage::Syntax, &["unterminated_string.loop:1:24", "found the end of the line"]),
    ("zero_width_space.loop", Stage::Syntax, &["zero_width_space.loop:2:6", "found `\\u{200b}`", "input\u{FFFD} x"]),
];

#[test]
fn every_loop_fixture_is_listed() {
    assert_table_covers(&corpus("loop"), &LOOP_FAULTS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(), &[]);
}

#[test]
fn hostile_loop_files_fail_check_fmt_and_graph_cleanly_and_located() {
    let dir = corpus("loop");
    for &(name, stage, wants) in LOOP_FAULTS {
        let check = loopc(&["check", "--color", "never", name], &dir);
        let code = if stage == Stage::Read { 2 } else { 1 };
        assert_clean_failure(&format!("check {name}"), &check, code, wants);
        assert!(!check.stderr.contains(&0x1b), "check {name} wrote a terminal escape");
        assert!(!text(&check.stderr).contains('\u{202e}'), "check {name} wrote a bidirectional override");

        let fmt = loopc(&["fmt", "--check", name], &dir);
        match stage {
            Stage::Read => assert_clean_failure(&format!("fmt {name}"), &fmt, 2, wants),
            Stage::Syntax => assert_clean_failure(&format!("fmt {name}"), &fmt, 1, &wants[..1]),
            Stage::Check => assert_no_crash(&format!("fmt {name}"), &fmt),
        }
        let graph = loopc(&["graph", name], &dir);
        assert_clean_failure(&format!("graph {name}"), &graph, 2, &wants[..1]);
    }
}

/// A program of `n` steps in canonical layout, each reading the one before; the first reads
/// the input, or, when `closed`, the last step (so all of them form one cycle).
fn chain(n: usize, closed: bool) -> String {
    let mut src = String::from("program chain\n\ninput x: text\noutput y: text\n\nsignature S {\n  in a: text\n  out b: text\n}\n\n");
    let first = if closed { format!("s{}.b", n - 1) } else { "input.x".into() };
    src.push_str(&format!("step s0 = predict S {{ a: {first} }}\n"));
    for i in 1..n {
        src.push_str(&format!("step s{i} = predict S {{ a: s{}.b }}\n", i - 1));
    }
    src.push_str(&format!("\nreturn {{ y: s{}.b }}\n", n - 1));
    src
}

#[test]
fn a_chain_of_fifty_thousand_steps_checks_draws_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.loop"), chain(50_000, false)).unwrap();
    let check = loopc(&["check", "chain.loop"], dir.path());
    assert!(check.status.success(), "{}", text(&check.stderr));
    let graph = loopc(&["graph", "chain.loop", "--format", "json"], dir.path());
    assert!(graph.status.success(), "{}", text(&graph.stderr));
    assert!(text(&graph.stdout).contains("\"s49999\""));
    let fmt = loopc(&["fmt", "--check", "chain.loop"], dir.path());
    assert!(fmt.status.success(), "the chain is written in canonical layout: {}", text(&fmt.stderr));

    std::fs::write(dir.path().join("cycle.loop"), chain(50_000, true)).unwrap();
    let check = loopc(&["check", "--color", "never", "cycle.loop"], dir.path());
    assert_clean_failure("check cycle.loop", &check, 1, &["cycle.loop:11:1", "steps form a cycle: `s0` → `s1`", "(49992 more)"]);
    assert!(check.stderr.len() < 10_000, "the cycle is named by its first steps, not all of them");
}

#[test]
fn nesting_a_hundred_thousand_deep_is_one_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let depth = 100_000;
    let ty = format!("program p\ninput x: {}text{}\n", "list<".repeat(depth), ">".repeat(depth));
    let value = format!("program p\nmodel m = onnx(\"x\") {{ stop: {}{} }}\n", "[".repeat(depth), "]".repeat(depth));
    std::fs::write(dir.path().join("type.loop"), ty).unwrap();
    std::fs::write(dir.path().join("value.loop"), value).unwrap();
    for (name, at) in [("type.loop", "type.loop:2:334"), ("value.loop", "value.loop:2:92")] {
        for cmd in ["check", "fmt"] {
            let out = loopc(&[cmd, "--color", "never", name], dir.path());
            assert_clean_failure(&format!("{cmd} {name}"), &out, 1, &[at, "brackets nest more than 64 deep here"]);
        }
    }
}

#[test]
fn an_error_far_into_a_very_long_line_renders_a_clipped_window() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("long.loop"), format!("program p {}@ trailing text\n", " ".repeat(70_000))).unwrap();
    let out = loopc(&["check", "--color", "never", "long.loop"], dir.path());
    assert_clean_failure("check long.loop", &out, 1, &["long.loop:1:70011", "found `@`", "…"]);
    assert!(out.stderr.len() < 4_000, "the 70 000-column line is not printed whole");
    // The same for a checker error far into a one-line program.
    let one_line = format!("program p input x: text output y: text {} return {{ y: nope.b }}\n", "input z: text ".repeat(6_000));
    std::fs::write(dir.path().join("oneline.loop"), one_line).unwrap();
    let out = loopc(&["check", "--color", "never", "oneline.loop"], dir.path());
    assert_clean_failure("check oneline.loop", &out, 1, &["oneline.loop:1:84053", "unknown step `nope`"]);
}

#[test]
fn sources_that_are_not_files_of_text_are_refused_with_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dir.loop")).unwrap();
    std::fs::write(dir.path().join("dir.loop/inner.loop"), "program p\n").unwrap();
    // A directory named `*.loop` is walked like any directory; `graph` takes one file.
    let out = loopc(&["graph", "dir.loop"], dir.path());
    assert_clean_failure("graph dir.loop", &out, 2, &["`dir.loop` is a directory"]);
    let out = loopc(&["check", "/dev/zero"], dir.path());
    assert_clean_failure("check /dev/zero", &out, 2, &["`/dev/zero` is larger than 64 MiB"]);
    let out = loopc(&["check", "missing.loop"], dir.path());
    assert_clean_failure("check missing.loop", &out, 2, &["cannot read `missing.loop`"]);
    let long = format!("program p\ninput x: text\noutput y: text\nreturn {{ y: {}.b }}\n", "a".repeat(100_000));
    std::fs::write(dir.path().join("long_name.loop"), long).unwrap();
    let out = loopc(&["check", "--color", "never", "long_name.loop"], dir.path());
    assert_clean_failure("check long_name.loop", &out, 1, &["long_name.loop:4:13", "unknown step `aaaa", "…(99940 characters)…"]);
    assert!(out.stderr.len() < 4_000, "the long name is shortened where it is quoted");
    // Standard input is read as a source too, and located as `<stdin>`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopc")).args(["check", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"program p\n\xff\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_clean_failure("check -", &out, 2, &["`<stdin>` is not UTF-8 text: line 2, column 1"]);
}

/// Each dataset fixture and the message it must get, by line.
const DATA_FAULTS: &[(&str, &str)] = &[
    ("blank_lines.jsonl", "`blank_lines.jsonl` has no examples"),
    ("bom.csv", "bom.csv:1: the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without one"),
    ("bom.jsonl", "bom.jsonl:1: the file starts with a UTF-8 byte-order mark (BOM)"),
    ("deeply_nested.jsonl", "deeply_nested.jsonl:1: not valid JSON (recursion limit exceeded, column"),
    ("duplicate_column.csv", "duplicate_column.csv:1: the column `stars` appears twice in the header"),
    ("duplicate_key.jsonl", "duplicate_key.jsonl:2: the key `sentiment` appears twice in one object (column 66)"),
    ("empty.jsonl", "`empty.jsonl` has no examples"),
    ("infinite.csv", "infinite.csv:2: field `stars`: `inf` is not a number"),
    ("missing_input.jsonl", "missing_input.jsonl:2: field `review` missing (a program input)"),
    ("multiline_record.csv", "multiline_record.csv:5: field `sentiment`: `maybe` is not one of the labels"),
    ("nan.csv", "nan.csv:2: field `stars`: `NaN` is not a number"),
    ("nan.jsonl", "nan.jsonl:1: not valid JSON (expected value, column 26)"),
    ("not_an_object.jsonl", "not_an_object.jsonl:2: expected a JSON object"),
    ("not_utf8.csv", "not_utf8.csv:3: bad CSV row"),
    ("not_utf8.jsonl", "not_utf8.jsonl:2: not UTF-8 text"),
    ("overflow.jsonl", "overflow.jsonl:2: not valid JSON (number out of range, column 32)"),
    ("short_row.csv", "short_row.csv:3: bad CSV row"),
    ("truncated.jsonl", "truncated.jsonl:2: not valid JSON (EOF while parsing a string"),
    ("unknown_label.jsonl", "unknown_label.jsonl:2: field `sentiment`: `meh` is not one of the labels positive, negative"),
    ("wrong_type.jsonl", "wrong_type.jsonl:2: field `stars`: expected a float"),
];

#[test]
fn every_dataset_fixture_is_listed() {
    assert_table_covers(&corpus("data"), &DATA_FAULTS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), &["good.jsonl", "program.loop"]);
}

#[test]
fn broken_datasets_are_refused_by_line_before_any_model_runs() {
    let dir = corpus("data");
    let out_dir = tempfile::tempdir().unwrap();
    let artifact = out_dir.path().join("never.json");
    for &(name, want) in DATA_FAULTS {
        // `--model` names no model: reaching the model would be a different error.
        let args = ["compile", "program.loop", "--train", name, "--dev", "good.jsonl", "--model", "/no/such/model", "-o", artifact.to_str().unwrap()];
        let out = loopc(&args, &dir);
        assert_clean_failure(&format!("compile --train {name}"), &out, 2, &[want]);
        let args = ["compile", "program.loop", "--train", "good.jsonl", "--dev", name, "--model", "/no/such/model", "-o", artifact.to_str().unwrap()];
        let out = loopc(&args, &dir);
        assert_clean_failure(&format!("compile --dev {name}"), &out, 2, &[want]);
    }
    assert!(!artifact.exists());
}

/// Each artifact fixture and what `inspect` must say about it.
const ARTIFACT_FAULTS: &[(&str, &str)] = &[
    ("deeply_nested.json", "is not a loopc artifact: not JSON (recursion limit exceeded at line 1 column"),
    ("edited_source.json", "the embedded source does not match its hash"),
    ("empty.json", "is not a loopc artifact: not JSON (EOF while parsing a value at line 1 column 0)"),
    ("future_version.json", "it is version 99; this loopc reads version 1"),
    ("huge_number.json", "not JSON (number out of range at line 44 column 17)"),
    ("invalid_embedded_program.json", "(embedded program.loop):1:1: the program declares no `output`"),
    ("no_version.json", "it has no `version`"),
    ("not_an_object.json", "its `format` is not \"loopc-artifact\""),
    ("not_utf8.json", "`not_utf8.json` is not a loopc artifact: it is not UTF-8 text (byte 917 is not a character)"),
    ("truncated.json", "not JSON (EOF while parsing a string at line 23 column 18)"),
    ("duplicate_key.json", "the key `format` appears twice in one object at line 3"),
    ("unknown_template.json", "unknown variant `xml`, expected one of `chat`, `json`, `completion` at line"),
    ("wrong_field_type.json", "invalid type: string \"many\", expected a sequence"),
    ("wrong_format.json", "its `format` is not \"loopc-artifact\""),
];

#[test]
fn every_artifact_fixture_is_listed() {
    assert_table_covers(&corpus("artifacts"), &ARTIFACT_FAULTS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), &[]);
}

#[test]
fn broken_artifacts_are_refused_by_inspect_and_eval() {
    let dir = corpus("artifacts");
    let data = corpus("data").join("good.jsonl");
    for &(name, want) in ARTIFACT_FAULTS {
        let out = loopc(&["inspect", name], &dir);
        assert_clean_failure(&format!("inspect {name}"), &out, 2, &[name, want]);
        let out = loopc(&["eval", name, "--data", data.to_str().unwrap(), "--model", "/no/such/model"], &dir);
        assert_clean_failure(&format!("eval {name}"), &out, 2, &[name]);
    }
    // The seed the broken ones were made from is itself fine.
    let out = loopc(&["inspect", "valid.json"], &root().join("tests/fixtures/fuzz/artifact"));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Each crafted GGUF and what `model import` must say about it.
const GGUF_FAULTS: &[(&str, &str)] = &[
    ("bad_magic.gguf", "it does not start with the GGUF magic bytes"),
    ("data_past_end.gguf", "tensor `w` (4398046511104 bytes at offset 0 of the data section) runs past the end of the 57-byte file"),
    ("dims_overflow.gguf", "tensor `w` (at byte 24): dimensions [4294967296, 4294967296, 2], whose product does not fit in 64 bits"),
    ("empty.gguf", "the magic bytes (at byte 0): the file ends early"),
    ("future_version.gguf", "GGUF version 99 is not supported"),
    ("huge_array.gguf", "metadata `tokenizer.ggml.tokens` (at byte 24): an array of 1152921504606846976 items is longer than the rest of the file"),
    ("huge_counts.gguf", "the header claims 1099511627776 metadata entries and 1099511627776 tensors"),
    ("huge_string.gguf", "metadata `general.name` (at byte 24): a string of 4611686018427387904 bytes is longer than the rest of the file"),
    ("nested_arrays.gguf", "metadata `x` (at byte 24): arrays nest too deeply"),
    ("not_utf8_key.gguf", "the key of metadata entry 0 (at byte 24): a string is not UTF-8"),
    ("offset_overflow.gguf", "tensor `w` (16 bytes at offset 18446744073709551612 of the data section) runs past the end"),
    ("too_many_dims.gguf", "tensor `w` (at byte 24): 9 dimensions, more than 4"),
    ("truncated_header.gguf", "the tensor count (at byte 8): the file ends early"),
    ("unknown_tensor_type.gguf", "tensor `w` (at byte 24): unknown ggml type 99"),
    ("unknown_value_type.gguf", "metadata `x` (at byte 24): unknown metadata value type 99"),
    ("zero_alignment.gguf", "`general.alignment` is 0"),
];

#[test]
fn every_gguf_fixture_is_listed() {
    assert_table_covers(&corpus("gguf"), &GGUF_FAULTS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), &[]);
}

fn import(gguf: &Path, cache: &Path) -> Output {
    loopc_env(&["model", "import", gguf.to_str().unwrap(), "--name", "crafted"], cache, &[("LOOPC_CACHE_DIR", Some(cache))])
}

#[test]
fn crafted_gguf_files_are_refused_at_the_byte_they_lie() {
    let cache = tempfile::tempdir().unwrap();
    for &(name, want) in GGUF_FAULTS {
        let out = import(&corpus("gguf").join(name), cache.path());
        assert_clean_failure(&format!("import {name}"), &out, 2, &[&format!("{name}` is not a usable GGUF file"), want]);
    }
    assert!(!cache.path().join("models/crafted").exists(), "a failed import leaves no model");
}

/// The bytes of `gguf` with the u32 metadata value of `key` replaced by `value`.
fn patch_u32(gguf: &[u8], key: &str, value: u32) -> Vec<u8> {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    let at = gguf.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("no key {key}")) + needle.len();
    assert_eq!(&gguf[at..at + 4], &4u32.to_le_bytes(), "{key} is a u32");
    let mut out = gguf.to_vec();
    out[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
    out
}

#[test]
fn gguf_metadata_that_disagrees_with_its_tensors_is_refused_before_conversion() {
    let seed = std::fs::read(root().join("tests/fixtures/fuzz/gguf/tiny.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, u32, &str)] = &[
        ("llama.attention.head_count_kv", 0, "`head_count_kv` is 0"),
        ("llama.attention.head_count", 3, "unsupported head layout: 3 heads, 2 KV heads"),
        ("llama.block_count", u32::MAX, "tensor `blk.2.attn_norm.weight` is missing"),
        ("llama.embedding_length", 33, "tensor `token_embd.weight` has dimensions [32, 259], but the metadata implies [33, 259]"),
        ("llama.feed_forward_length", 1 << 30, "tensor `blk.0.ffn_gate.weight` has dimensions [32, 64], but the metadata implies [32, 1073741824]"),
    ];
    for &(key, value, want) in cases {
        let path = dir.path().join("patched.gguf");
        std::fs::write(&path, patch_u32(&seed, key, value)).unwrap();
        let out = import(&path, dir.path());
        assert_clean_failure(&format!("import with {key} = {value}"), &out, 2, &[want]);
    }
    // Every truncation of a good file is refused (the last bytes are alignment padding).
    for cut in [0, 3, 20, 100, 1_000, 5_000, 20_000, seed.len() - 40] {
        let path = dir.path().join("cut.gguf");
        std::fs::write(&path, &seed[..cut]).unwrap();
        let out = import(&path, dir.path());
        assert_clean_failure(&format!("import cut at {cut}"), &out, 2, &["cut.gguf` is not a usable GGUF file"]);
    }
    let out = import(Path::new("/dev/zero"), dir.path());
    assert_clean_failure("import /dev/zero", &out, 2, &["it is not a regular file"]);
    // The seed itself imports.
    let out = import(&root().join("tests/fixtures/fuzz/gguf/tiny.gguf"), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The ONNX Runtime library of the default cache, provisioned if needed.
fn ort_library() -> PathBuf {
    let cache = loopc::model::provision::Cache::from_env().unwrap();
    loopc::model::provision::ort_library(&cache, &loopc::model::progress::SilentProgress).unwrap()
}

/// Each broken `tokenizer.json` and what `model info` must say about it.
const TOKENIZER_FAULTS: &[(&str, &str)] = &[
    ("deeply_nested.json", "recursion limit exceeded at line 1 column"),
    ("empty.json", "EOF while parsing a value at line 1 column 0"),
    ("merge_of_unknown_tokens.json", "Token `nope` out of vocabulary at line 1 column"),
    ("not_json.json", "expected ident at line 1 column 2"),
    ("not_utf8.json", "at line 1 column"),
    ("truncated.json", "EOF while parsing an object at line 1 column"),
    ("unknown_model_type.json", "at line 1 column"),
    ("vocab_not_a_map.json", "invalid type: sequence, expected a map at line 1 column"),
];

#[test]
fn every_tokenizer_fixture_is_listed() {
    assert_table_covers(&corpus("tokenizer"), &TOKENIZER_FAULTS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), &[]);
}

#[test]
fn broken_tokenizer_files_are_refused_with_where_they_break() {
    let ort = ort_library();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 1).unwrap();
    let tokenizer = model.join("tokenizer.json");
    let info = || loopc_env(&["model", "info", model.to_str().unwrap()], dir.path(), &[("ORT_DYLIB_PATH", Some(&ort))]);
    let good = info();
    assert!(good.status.success(), "{}", text(&good.stderr));
    for &(name, want) in TOKENIZER_FAULTS {
        std::fs::copy(corpus("tokenizer").join(name), &tokenizer).unwrap();
        let out = info();
        assert_clean_failure(&format!("model info with {name}"), &out, 2, &["tokenizer: cannot load", "tokenizer.json`", want]);
    }
    // Too big to read (a sparse file, so the test writes nothing), and not a file at all.
    std::fs::File::create(&tokenizer).unwrap().set_len(300 << 20).unwrap();
    assert_clean_failure("model info with a 300 MiB tokenizer", &info(), 2, &["it is larger than 256 MiB"]);
    std::fs::remove_file(&tokenizer).unwrap();
    std::fs::create_dir(&tokenizer).unwrap();
    assert_clean_failure("model info with a directory as tokenizer", &info(), 2, &["tokenizer.json` is missing"]);
}

#[test]
fn a_damaged_onnx_runtime_library_is_refused_before_it_is_loaded() {
    let ort = ort_library();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 1).unwrap();
    // A cache whose provisioned library was cut short after loopc recorded it.
    let cache = dir.path().join("cache");
    let lib_dir = cache.join("onnxruntime").join(loopc::model::provision::ORT_VERSION);
    std::fs::create_dir_all(&lib_dir).unwrap();
    let lib = lib_dir.join(format!("libonnxruntime.so.{}", loopc::model::provision::ORT_VERSION));
    let bytes = std::fs::read(&ort).unwrap();
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let manifest = serde_json::json!({ "file": lib.file_name().unwrap().to_str(), "size": bytes.len(), "sha256": sha });
    std::fs::write(lib_dir.join("loopc-manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(&lib, &bytes[..bytes.len() / 2]).unwrap();
    let info = |env: &[(&str, Option<&Path>)]| loopc_env(&["model", "info", model.to_str().unwrap()], dir.path(), env);
    let provisioned = [("LOOPC_CACHE_DIR", Some(cache.as_path())), ("ORT_DYLIB_PATH", None)];
    let out = info(&provisioned);
    let half = format!("is {} bytes, but was {} bytes when loopc provisioned it", bytes.len() / 2, bytes.len());
    assert_clean_failure("model info with a truncated library", &out, 2, &[&half, "run `loopc model pull smollm2-135m-instruct`"]);
    // The same size, one byte changed: the hash tells.
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 3] ^= 0xff;
    std::fs::write(&lib, &damaged).unwrap();
    assert_clean_failure("model info with a damaged library", &info(&provisioned), 2, &["when loopc provisioned it (damaged)"]);
    // With the whole library back, the same cache works.
    std::fs::write(&lib, &bytes).unwrap();
    let out = info(&provisioned);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A library of the user's own is not hashed, but must be a whole ELF file.
    let user = dir.path().join("libuser.so");
    std::fs::write(&user, &bytes[..bytes.len() / 2]).unwrap();
    let out = info(&[("ORT_DYLIB_PATH", Some(user.as_path()))]);
    assert_clean_failure("ORT_DYLIB_PATH truncated", &out, 2, &["libuser.so", "is not a complete shared library", "past the end"]);
    std::fs::write(&user, b"#!/bin/sh\necho not a library\n").unwrap();
    let out = info(&[("ORT_DYLIB_PATH", Some(user.as_path()))]);
    assert_clean_failure("ORT_DYLIB_PATH a script", &out, 2, &["does not start with an ELF header"]);
}

/// Runs loopc with its standard output closed before it writes anything, as `| head -0` does.
fn with_closed_stdout(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopc"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_output_ends_loopc_quietly_with_success() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.loop"), chain(5_000, false)).unwrap();
    let mut errors = String::from("program p\ninput x: text\noutput y: text\nsignature S { in a: text out b: text }\n");
    for i in 0..2_000 {
        errors.push_str(&format!("step s{i} = predict S {{ a: {i} }}\n"));
    }
    errors.push_str("return { y: s0.b }\n");
    std::fs::write(dir.path().join("errors.loop"), errors).unwrap();
    let cache = dir.path().join("cache");
    let cases: &[&[&str]] = &[
        &["check", "--json", "errors.loop"],
        &["graph", "chain.loop"],
        &["graph", "chain.loop", "--format", "json"],
        &["fmt", "--stdout", "chain.loop"],
        &["model", "list"],
        &["completions", "bash"],
    ];
    for args in cases {
        let out = with_closed_stdout(args, dir.path(), &[("LOOPC_CACHE_DIR", &cache)]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}\n{}", out.status, text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{args:?} prints nothing more");
    }
    // Diagnostics go to standard error; closing it ends the run the same way.
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(["check", "--color", "never", "errors.loop"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn onnx_external_data_that_is_cut_short_or_escapes_the_model_directory_is_refused() {
    // loopc writes external data but never reads it: ONNX Runtime resolves the references when
    // it loads `model.onnx`, and must refuse these cleanly.
    let ort = ort_library();
    let cache = tempfile::tempdir().unwrap();
    let out = import(&root().join("tests/fixtures/fuzz/gguf/tiny.gguf"), cache.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = cache.path().join("models/crafted");
    let (graph, data) = (dir.join("model.onnx"), dir.join("model.onnx.data"));
    let env = [("LOOPC_CACHE_DIR", Some(cache.path())), ("ORT_DYLIB_PATH", Some(ort.as_path()))];
    let info = || loopc_env(&["model", "info", "crafted"], cache.path(), &env);
    assert!(info().status.success());

    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure("model info with cut external data", &info(), 2, &["model.onnx`", "out of bounds or can not be read in full"]);
    std::fs::write(&data, &bytes).unwrap();

    let onnx = std::fs::read(&graph).unwrap();
    assert!(text(&onnx).contains("model.onnx.data"), "the graph names its data file");
    let patched: Vec<u8> = {
        let (from, to) = (b"model.onnx.data", b"../../etc/hosts");
        let mut out = onnx.clone();
        let mut i = 0;
        while let Some(at) = out[i..].windows(from.len()).position(|w| w == from) {
            out[i + at..i + at + from.len()].copy_from_slice(to);
            i += at + from.len();
        }
        out
    };
    std::fs::write(&graph, patched).unwrap();
    assert_clean_failure("model info with an escaping data path", &info(), 2, &["External data path escapes model directory"]);
    std::fs::write(&graph, b"\x08\x07garbage that is not a protobuf").unwrap();
    assert_clean_failure("model info with a garbage graph", &info(), 2, &["ONNX Runtime cannot load", "model.onnx`"]);
}

#[test]
fn file_names_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources");
    std::fs::create_dir(&sources).unwrap();
    std::fs::write(sources.join("bad\u{1b}[2J.loop"), "program p\n").unwrap();
    std::fs::write(sources.join("ok\u{1b}]0;title\u{7}.loop"), "program p\ninput x: text\noutput y: text\nreturn { y: input.x }\n").unwrap();
    let out = loopc(&["check", "--color", "never", "sources"], dir.path());
    assert_clean_failure("check sources", &out, 1, &["sources/bad\\u{1b}[2J.loop:1:1", "ok: sources/ok\\u{1b}]0;title\\u{7}.loop"]);
    assert!(!out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07), "{}", text(&out.stderr));
}

#[test]
fn sampling_settings_that_are_not_finite_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for args in [["generate", "--temperature", "nan", "hi"], ["generate", "--top-p", "inf", "hi"], ["generate", "--temperature=-1", "hi", "--raw"]] {
        let out = loopc(&args, dir.path());
        assert_clean_failure(&args.join(" "), &out, 2, &["is not a finite number of 0 or more"]);
    }
}

#[test]
fn a_named_pipe_as_a_source_is_refused_instead_of_waiting_forever() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.loop");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for cmd in [&["check"][..], &["graph"], &["run", "--input", "{}"]] {
        let out = loopc(&[cmd, &[fifo.to_str().unwrap()]].concat(), dir.path());
        assert_clean_failure(&format!("{} on a fifo", cmd[0]), &out, 2, &["is a named pipe"]);
    }
}
