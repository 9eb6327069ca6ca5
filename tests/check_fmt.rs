//! The command line of `check` and `fmt` as scripts and editors use it: standard input as
//! `-`, directories, several sources of which some cannot be read, `-q` and `-v`; and
//! `loopc completions`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn loopc(args: &[&str], dir: &Path) -> Output {
    loopc_with_input(args, dir, None)
}

fn loopc_with_input(args: &[&str], dir: &Path, input: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the loopc binary runs");
    if let Some(text) = input {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const VALID: &str = "program p\n\ninput x: text\noutput y: text\n\nreturn { y: input.x }\n";
const UNFORMATTED: &str = "program p\ninput   x: text\noutput y: text\nreturn { y: input.x }";

#[test]
fn a_dash_reads_standard_input_and_fmt_writes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = loopc_with_input(&["check", "-"], dir.path(), Some(VALID));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "ok: <stdin>\n");

    let out = loopc_with_input(&["check", "-"], dir.path(), Some("program p\noutput y: text\nreturn { y: nope.b }\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[<stdin>:3:13]"), "{}", text(&out.stderr));

    let out = loopc_with_input(&["fmt", "-"], dir.path(), Some(UNFORMATTED));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), VALID);
    let out = loopc_with_input(&["fmt", "--check", "-"], dir.path(), Some(UNFORMATTED));
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "would reformat: <stdin>\n".to_string()));
    let out = loopc_with_input(&["fmt", "--check", "-"], dir.path(), Some(VALID));
    assert!(out.status.success());
}

#[test]
fn directories_stand_for_the_loop_files_under_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    for (path, body) in
        [("b.loop", VALID), ("a.loop", VALID), ("sub/c.loop", UNFORMATTED), (".hidden/h.loop", "broken"), ("target/t.loop", "broken"), ("notes.txt", "broken")]
    {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let out = loopc(&["check", "tree"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "ok: tree/a.loop\nok: tree/b.loop\nok: tree/sub/c.loop\n");

    let out = loopc(&["fmt", "--check", "tree"], dir.path());
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "would reformat: tree/sub/c.loop\n".to_string()));
    let out = loopc(&["fmt", "tree"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(tree.join("sub/c.loop")).unwrap(), VALID);
    assert_eq!(std::fs::read_to_string(tree.join("target/t.loop")).unwrap(), "broken", "target/ is skipped");

    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = loopc(&["check", "empty"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`empty` holds no `.loop` files"));
}

#[test]
fn an_unreadable_source_among_several_is_reported_and_the_others_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.loop"), VALID).unwrap();
    std::fs::write(dir.path().join("b.loop"), VALID).unwrap();
    let out = loopc(&["check", "a.loop", "missing.loop", "b.loop"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("ok: a.loop\nerror: cannot read `missing.loop`"), "{stderr}");
    assert!(stderr.ends_with("ok: b.loop\n"), "{stderr}");

    let out = loopc(&["check", "--json", "a.loop", "missing.loop"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["ok"], true);
    assert_eq!((v["files"][1]["file"].as_str(), v["files"][1]["ok"].as_bool()), (Some("missing.loop"), Some(false)));
    assert!(v["files"][1]["error"].as_str().unwrap().starts_with("cannot read `missing.loop`"));

    let out = loopc(&["fmt", "--check", "a.loop", "missing.loop", "b.loop"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn quiet_prints_only_what_fails_and_verbose_adds_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let warn = "program p\n\ninput x: text\noutput y: text\n\nsignature S {\n  in a: text\n  out b: text\n}\n\nstep spare = predict S { a: input.x }\n\nreturn { y: input.x }\n";
    std::fs::write(dir.path().join("ok.loop"), VALID).unwrap();
    std::fs::write(dir.path().join("warn.loop"), warn).unwrap();
    std::fs::write(dir.path().join("messy.loop"), UNFORMATTED).unwrap();

    let out = loopc(&["-q", "check", "ok.loop", "warn.loop"], dir.path());
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "", "no ok lines and no warnings");
    let out = loopc(&["check", "--quiet", "--deny-warnings", "warn.loop"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("never used"), "denied warnings are errors, and shown");

    let out = loopc(&["check", "-v", "ok.loop", "warn.loop"], dir.path());
    assert!(text(&out.stderr).ends_with("checked 2 source(s): 0 failed, 0 unreadable\n"), "{}", text(&out.stderr));
    let out = loopc(&["fmt", "-v", "ok.loop"], dir.path());
    assert_eq!(text(&out.stderr), "unchanged: ok.loop\n");
    let out = loopc(&["fmt", "-q", "messy.loop"], dir.path());
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");

    let out = loopc(&["check", "-q", "-v", "ok.loop"], dir.path());
    assert_eq!(out.status.code(), Some(2), "-q and -v contradict each other");
}

#[test]
fn completions_are_printed_for_every_supported_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = loopc(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("loopc") && script.contains("check") && script.contains("completions"), "{shell}");
    }
    let out = loopc(&["completions", "tcsh"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}
