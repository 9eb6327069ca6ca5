//! The editor packages in `editors/`, tested as editors use them.
//!
//! - The VS Code extension installs from its lock file (`npm ci`) and packages into a `.vsix`
//!   with `@vscode/vsce`, holding its grammar and the language client.
//! - Its TextMate grammar, run by `vscode-textmate` with the Oniguruma engine as VS Code runs
//!   it, scopes every program in `programs/` as the language server classifies it: comments,
//!   strings, numbers, keywords and types alike, and nothing left unscoped or invalid.
//! - Headless Neovim, set up with `editors/neovim/loopc.lua`, opens a program with an error
//!   and receives `loopc lsp`'s diagnostic at the right place.
//!
//! These need node and npm (with access to the npm registry) and nvim; `.ci/editors.sh`
//! installs them. A missing tool fails the test with the fix, unless
//! `LOOPC_SKIP_EDITOR_TESTS=1` skips them on purpose.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loopc::lsp::Highlight;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn skipped() -> bool {
    std::env::var("LOOPC_SKIP_EDITOR_TESTS").is_ok_and(|v| v == "1")
}

/// The path of `tool`, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("`{name}` is not installed: run .ci/editors.sh (it installs node, npm and neovim), or set LOOPC_SKIP_EDITOR_TESTS=1"))
}

/// Runs `cmd`, failing the test with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{stderr}\n{}", out.status, String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of `editors/vscode` with its dependencies installed by `npm ci` from the committed
/// lock file (install scripts off: nothing but the npm registry is reached). Made once per
/// test run, in the target directory.
fn extension() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let npm = tool("npm");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vscode-extension");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        copy_tree(&root().join("editors/vscode"), &dir);
        run(Command::new(npm).args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"]).current_dir(&dir));
        dir
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name.to_string_lossy().ends_with(".vsix") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_vscode_extension_packages_into_a_vsix_with_its_grammar_and_client() {
    if skipped() {
        return;
    }
    let dir = extension();
    run(Command::new(tool("npm")).args(["run", "package"]).current_dir(dir));
    let vsix = std::fs::File::open(dir.join("loopc.vsix")).expect("`npm run package` writes loopc.vsix");
    let mut zip = zip::ZipArchive::new(vsix).expect("a .vsix is a zip archive");
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    for want in [
        "extension.vsixmanifest",
        "extension/package.json",
        "extension/src/extension.js",
        "extension/syntaxes/loop.tmLanguage.json",
        "extension/language-configuration.json",
        "extension/node_modules/vscode-languageclient/package.json",
    ] {
        assert!(names.iter().any(|n| n == want), "the package holds {want}: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("vscode-textmate") || n.starts_with("extension/test/")), "test tools stay out of the package");
    let mut manifest = String::new();
    zip.by_name("extension/package.json").unwrap().read_to_string(&mut manifest).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["contributes"]["languages"][0]["extensions"][0], ".loop");
    assert_eq!(manifest["contributes"]["grammars"][0]["scopeName"], "source.loop");
}

/// The scopes VS Code gives each byte of `text`, from the grammar script's tokens of one file.
fn scopes_by_byte(text: &str, tokens: &[serde_json::Value]) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut starts = Vec::with_capacity(lines.len());
    let mut at = 0;
    for l in &lines {
        starts.push(at);
        at += l.len() + 1;
    }
    let mut scopes = vec![Vec::new(); text.len()];
    for t in tokens {
        let line = t["line"].as_u64().unwrap() as usize;
        let l = lines[line];
        // Token columns count UTF-16 units; turn them into byte offsets of the line.
        let byte = |units: u64| {
            let mut seen = 0;
            for (i, c) in l.char_indices() {
                if seen >= units as usize {
                    return i;
                }
                seen += c.len_utf16();
            }
            l.len()
        };
        let (s, e) = (byte(t["start"].as_u64().unwrap()), byte(t["end"].as_u64().unwrap()));
        let names: Vec<String> = t["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        for b in &mut scopes[starts[line] + s..starts[line] + e] {
            b.clone_from(&names);
        }
    }
    scopes
}

#[test]
fn the_textmate_grammar_scopes_every_program_as_the_language_server_does() {
    if skipped() {
        return;
    }
    let dir = extension();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root().join("programs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "loop")).collect();
    files.sort();
    // One more with what the programs lack: escapes, placeholders, feedback, numbers, a held-out example.
    let extra = dir.join("extra.loop");
    std::fs::write(
        &extra,
        "program extra \"tabs\\t, quotes \\\" and \\u{1F600}\" // a comment with \"quotes\"\ninput q: text\ninput j: json\noutput n: float\noutput ok: bool\n\
         model other = openai(\"http://127.0.0.1:9/v1\", \"m\") { api_key_env: \"KEY\" }\n\
         signature Judge { in q: text in j: json out fine: list<label(yes, \"not really\")> }\n\
         step judge = chain_of_thought Judge { q: input.q, j: input.j } using other\n\
         tool look(q: text) -> float = http GET \"http://127.0.0.1:9/{q}?x={{literal}}\" { timeout_ms: 1500, retries: 0 }\n\
         step l = call look { q: input.q }\nreturn { n: l.result, ok: true }\nfeedback correction\nfeedback rating: int(1..5) \"how good\"\n\
         metric close = numeric(output.n, example.n, tolerance: -0.5e-3)\n\
         example e held_out {\n  input { q: \"\"\"\n    two // not a comment\n    lines\n  \"\"\", j: [1, \"two\", true] }\n  output { n: 2.5, ok: false }\n}\n",
    )
    .unwrap();
    files.push(extra);
    let out = run(Command::new(tool("node")).arg("test/grammar.js").args(&files).current_dir(dir));
    let mut by_file: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        by_file.entry(v["file"].as_str().unwrap().to_string()).or_default().push(v);
    }
    assert_eq!(by_file.len(), files.len(), "every file was tokenized");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let scopes = scopes_by_byte(&text, &by_file[&file.display().to_string()]);
        let name = file.file_name().unwrap().to_string_lossy();
        for (i, c) in text.char_indices().filter(|(_, c)| !c.is_whitespace()) {
            let s = &scopes[i];
            assert!(s.len() >= 2, "{name}: `{c}` at byte {i} has no scope beyond `source.loop`");
            assert!(!s.iter().any(|s| s.starts_with("invalid")), "{name}: `{c}` at byte {i} is scoped invalid: {s:?}");
        }
        let highlights = loopc::lsp::highlight(&text);
        let mut comment_or_string = vec![false; text.len()];
        for (span, class) in &highlights {
            let want: &[&str] = match class {
                Highlight::Comment => &["comment."],
                Highlight::Str => &["string."],
                Highlight::Number => &["constant.numeric"],
                Highlight::Keyword => &["keyword.", "variable.language", "constant.language"],
                Highlight::Type => &["support.type"],
                _ => continue,
            };
            if matches!(class, Highlight::Comment | Highlight::Str) {
                comment_or_string[span.range()].iter_mut().for_each(|b| *b = true);
            }
            for i in span.range().filter(|&i| !text.as_bytes()[i].is_ascii_whitespace()) {
                let got = &scopes[i];
                assert!(
                    got.iter().any(|s| want.iter().any(|w| s.starts_with(w))),
                    "{name}: `{}` ({class:?} to the language server) is scoped {got:?} by the grammar",
                    &text[span.range()]
                );
            }
        }
        // And the other way: the grammar sees no comment or string the language does not.
        for (i, s) in scopes.iter().enumerate() {
            let claims = s.iter().any(|s| s.starts_with("comment.") || s.starts_with("string."));
            assert!(!claims || comment_or_string[i], "{name}: byte {i} is a comment or string only to the grammar: {s:?}");
        }
    }
}

#[test]
fn neovim_receives_the_servers_diagnostics_for_a_program_with_an_error() {
    if skipped() {
        return;
    }
    let nvim = tool("nvim");
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("bad.loop");
    // The misspelt input stands after characters that take 2 and 4 bytes (1 and 2 UTF-16 units).
    let text = "program bad\ninput ticket: text\noutput reply: text\nsignature S { in note: text in ticket: text out reply: text }\n\
                step s = predict S { note: \"é🚀\", ticket: input.tikcet }\nreturn { reply: s.reply }\n";
    std::fs::write(&program, text).unwrap();
    let out = dir.path().join("diagnostics.json");
    let init = dir.path().join("init.lua");
    let lua = |p: &Path| format!("{:?}", p.display().to_string());
    std::fs::write(
        &init,
        format!(
            "local loopc = dofile({snippet})\n\
             loopc.setup({{ cmd = {{ {bin}, 'lsp' }} }})\n\
             vim.api.nvim_create_autocmd('VimEnter', {{ callback = function()\n\
               local ok = vim.wait(60000, function() return #vim.diagnostic.get(0) > 0 end, 50)\n\
               local rows = {{}}\n\
               for _, d in ipairs(vim.diagnostic.get(0)) do\n\
                 table.insert(rows, {{ lnum = d.lnum, col = d.col, end_col = d.end_col, message = d.message, severity = d.severity, source = d.source }})\n\
               end\n\
               local f = io.open({out}, 'w')\n\
               f:write(vim.fn.json_encode({{ ok = ok, filetype = vim.bo.filetype, clients = #vim.lsp.get_active_clients(), diagnostics = rows }}))\n\
               f:close()\n\
               vim.cmd('qall!')\n\
             end }})\n",
            snippet = lua(&root().join("editors/neovim/loopc.lua")),
            bin = lua(Path::new(env!("CARGO_BIN_EXE_loopc"))),
            out = lua(&out),
        ),
    )
    .unwrap();
    let mut child = Command::new(nvim)
        .args(["--headless", "-n", "-i", "NONE", "-u"])
        .arg(&init)
        .arg(&program)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("nvim did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("nvim wrote no diagnostics ({e}); its stderr: {stderr}"))).unwrap();
    assert_eq!(got["filetype"], "loop", "{got}");
    assert_eq!(got["clients"], 1, "the snippet started one `loopc lsp` client: {got}");
    assert_eq!(got["ok"], true, "diagnostics arrived: {got}");
    let d = &got["diagnostics"][0];
    assert!(d["message"].as_str().unwrap().contains("the program has no input `tikcet`"), "{got}");
    assert_eq!(d["source"], "loopc");
    assert_eq!(d["severity"], 1, "an error");
    let line = text.lines().nth(4).unwrap();
    let col = line.find("tikcet").unwrap();
    assert_eq!((d["lnum"].as_u64(), d["col"].as_u64(), d["end_col"].as_u64()), (Some(4), Some(col as u64), Some(col as u64 + 6)), "{got}");
}
