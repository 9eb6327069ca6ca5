//! End-to-end tests that writes keep what they don't own: `loopc fmt` through a symlink
//! rewrites the file the link points to and keeps the link, and the file's mode survives.
//! (New files' `0644`-under-the-umask mode is tested beside `loopc::fs`.)

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

/// A program that `fmt` rewrites (spacing only).
const MESSY: &str = "program   hello\ninput name:text\noutput greeting: text\nsignature Greet \"Write a one-line greeting.\" { in name: text  out greeting: text }\nstep greet = predict Greet {name: input.name}\nreturn { greeting: greet.greeting }\n";

fn loopc(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).current_dir(dir).env("NO_COLOR", "1").output().expect("the loopc binary runs")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn fmt_through_a_symlink_rewrites_the_target_and_keeps_the_link_and_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let target = dir.path().join("src/hello.loop");
    std::fs::write(&target, MESSY).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink("src/hello.loop", dir.path().join("hello.loop")).unwrap();

    let out = loopc(&["fmt", "hello.loop"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = dir.path().join("hello.loop");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "fmt replaced the link with a file");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("src/hello.loop"));
    let formatted = std::fs::read_to_string(&target).unwrap();
    assert_ne!(formatted, MESSY, "the target was rewritten");
    assert!(formatted.starts_with("program hello\n"), "{formatted}");
    assert_eq!(mode(&target), 0o640, "the mode survived");
    let check = loopc(&["fmt", "--check", "hello.loop"], dir.path());
    assert!(check.status.success(), "the rewritten file is canonical");
}
