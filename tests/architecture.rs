//! Architecture invariants that a grep can check (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn library_files() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter(|p| !p.starts_with(src.join("cli")) && !p.ends_with("main.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn the_library_does_not_use_cli_crates() {
    for (path, text) in library_files() {
        for banned in ["clap::", "miette", "anyhow", "crate::cli"] {
            assert!(!text.contains(banned), "{} uses `{banned}`; that belongs in src/cli", path.display());
        }
    }
}

#[test]
fn syntax_knows_nothing_of_later_stages() {
    for (path, text) in library_files() {
        if path.components().any(|c| c.as_os_str() == "syntax") {
            assert!(!text.contains("crate::graph"), "{} reaches forward into graph", path.display());
        }
    }
}

#[test]
fn pest_types_stay_in_the_parser() {
    for (path, text) in library_files() {
        if !path.ends_with("parser.rs") {
            assert!(!text.contains("pest::"), "{} uses pest types", path.display());
        }
    }
}

#[test]
fn the_runtime_knows_nothing_of_the_compiler() {
    for (path, text) in library_files() {
        let stage = |name: &str| path.components().any(|c| c.as_os_str() == name);
        if stage("runtime") || stage("graph") || stage("model") {
            assert!(!text.contains("crate::compile"), "{} reaches forward into compile", path.display());
        }
    }
}

#[test]
fn the_library_never_prints() {
    for (path, text) in library_files() {
        for banned in ["println!", "eprintln!", "print!(", "eprint!(", "std::io::stdout()", "std::io::stderr()", "indicatif"] {
            assert!(!text.contains(banned), "{} uses `{banned}`: the library reports through sinks and errors; the CLI renders", path.display());
        }
    }
}

#[test]
fn the_library_holds_no_mutable_global_state() {
    for (path, text) in library_files() {
        for line in text.lines().map(str::trim_start) {
            let global = line.starts_with("static ") || line.starts_with("pub static ") || line.starts_with("pub(crate) static ");
            if !global {
                continue;
            }
            // One exception, by necessity: ONNX Runtime's environment is process-wide in ONNX
            // Runtime itself and can be created once; it holds no state of loopc's.
            let ort_environment = path.ends_with("model/session.rs") && line.contains("ENVIRONMENT: OnceLock<Result<ort::environment::Environment");
            let test_file = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("tests.rs"));
            let is_test = test_file || text[..text.find(line).unwrap_or(0)].contains("#[cfg(test)]");
            assert!(ort_environment || is_test, "{}: `{line}` is global state; keep it in the Engine", path.display());
            assert!(!line.contains("static mut"), "{}: `{line}`", path.display());
        }
    }
}

#[test]
fn the_runtime_knows_nothing_of_the_loop_on_top() {
    for (path, text) in library_files() {
        let stage = |name: &str| path.components().any(|c| c.as_os_str() == name);
        if stage("runtime") || stage("model") || stage("graph") || stage("syntax") || stage("compile") {
            for later in ["crate::store", "crate::learn", "crate::serve"] {
                assert!(!text.contains(later), "{} reaches up into `{later}`", path.display());
            }
        }
    }
}

fn store_files() -> Vec<(PathBuf, String)> {
    library_files().into_iter().filter(|(p, _)| p.components().any(|c| c.as_os_str() == "store")).collect()
}

#[test]
fn the_store_knows_nothing_of_programs_the_runtime_or_a_server() {
    let files = store_files();
    assert!(files.len() > 5, "src/store/ not found");
    for (path, text) in files {
        for (at, _) in text.match_indices("crate::") {
            let used = &text[at + "crate::".len()..];
            assert!(
                used.starts_with("fs::") || used.starts_with("store::"),
                "{} uses `crate::{}`: the store takes JSON and plain types",
                path.display(),
                used.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("")
            );
        }
    }
}

#[test]
fn every_store_write_runs_inside_a_transaction_it_commits() {
    for (path, text) in store_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // `db.rs` and `writer.rs` make write transactions; everything else only asks
        // `Store::begin_write` for one.
        if name == "db.rs" || name == "writer.rs" {
            continue;
        }
        assert!(!text.contains(".write.") && !text.contains("Writer"), "{name} reaches the writer without `begin_write`");
        // Every statement that changes data runs on a transaction, not on a pool.
        for piece in text.split("sqlx::query(").skip(1) {
            let statement = piece.split(".await").next().unwrap_or("");
            let sql = statement.to_ascii_uppercase();
            let changes = ["INSERT ", "UPDATE ", "DELETE "].iter().any(|w| sql.contains(w));
            if changes {
                assert!(statement.contains("(&mut *tx)") || statement.contains("(&mut **tx)"), "{name}: a write outside a transaction:\n{statement}");
            }
        }
        // Every function that opens a write transaction commits it.
        assert_eq!(text.matches("begin_write().await").count(), text.matches("tx.commit().await").count(), "{name}: a write transaction is never committed");
    }
}

#[test]
fn only_the_loop_stages_use_both_the_runtime_and_the_store() {
    let mut serve_uses = (false, false);
    for (path, text) in library_files() {
        let runtime = text.contains("crate::runtime");
        let store = text.contains("crate::store");
        let stage = |name: &str| path.components().any(|c| c.as_os_str() == name);
        if stage("serve") {
            serve_uses = (serve_uses.0 || runtime, serve_uses.1 || store);
        } else if !stage("learn") {
            assert!(!(runtime && store), "{} uses both the runtime and the store: that is the job of serve (and learn)", path.display());
        }
    }
    assert_eq!(serve_uses, (true, true), "src/serve/ is where the runtime meets the store");
}

#[test]
fn nothing_in_the_library_reaches_into_the_language_server() {
    for (path, text) in library_files() {
        if !path.components().any(|c| c.as_os_str() == "lsp") {
            assert!(!text.contains("crate::lsp"), "{} uses the language server; only the CLI may", path.display());
        }
    }
}

#[test]
fn the_language_server_never_opens_standard_input_or_output_itself() {
    // The CLI hands it a connection; standard output is the protocol's alone.
    for (path, text) in library_files() {
        if path.components().any(|c| c.as_os_str() == "lsp") {
            for banned in ["Connection::stdio", "std::io::stdin", "std::io::stdout"] {
                assert!(!text.contains(banned), "{} uses `{banned}`", path.display());
            }
        }
    }
}
