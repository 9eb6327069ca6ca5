//! Reads program sources (`.loop` files, directories of them, standard input, or compiled
//! artifacts, which embed their source) and runs them through parsing and checking, keeping
//! the text for rendering diagnostics.
//!
//! Reading is the library's (`loopc::runtime::source`): bounded, so a source over
//! `MAX_SOURCE_BYTES` (say `/dev/zero`) is refused after that many bytes instead of filling
//! memory, and strict, so text that is not UTF-8 is reported with the line and column of its
//! first bad byte.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use loopc::graph::{self, Dag, StepId};
use loopc::runtime::executor::StepParams;
use loopc::runtime::source::{read_program_from, read_program_text, ProgramFile};
use loopc::syntax::{has_errors, Diagnostic};

use super::report;

/// The path that stands for standard input.
const STDIN: &str = "-";

/// One source named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// How the source is named in messages.
    pub fn path(&self) -> &Path {
        match self {
            Input::Stdin => Path::new("<stdin>"),
            Input::File(p) => p,
        }
    }

    /// The source's text.
    pub fn read(&self) -> anyhow::Result<String> {
        match self {
            Input::Stdin => read_limited(std::io::stdin().lock(), self.path()),
            Input::File(p) => read_source(p),
        }
    }
}

/// Expands the paths of a command line: `-` is standard input (at most once), a directory
/// stands for every `*.loop` file under it, and any other path is taken as given.
///
/// A directory is walked in name order, skipping hidden entries (names starting with `.`),
/// directories named `target`, and symbolic links to directories (which could loop). A
/// directory holding no `.loop` file is an error, since it was named to be checked.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == STDIN {
            if inputs.contains(&Input::Stdin) {
                bail!("`-` (standard input) is named twice");
            }
            inputs.push(Input::Stdin);
        } else if path.is_dir() {
            let found = loop_files(path)?;
            if found.is_empty() {
                bail!("`{}` holds no `.loop` files", path.display());
            }
            inputs.extend(found.into_iter().map(Input::File));
        } else {
            inputs.push(Input::File(path.clone()));
        }
    }
    Ok(inputs)
}

/// Every `*.loop` file under `dir`, sorted by path; walked with an explicit stack, so a deep
/// tree cannot overflow the call stack.
fn loop_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<std::fs::DirEntry> =
            std::fs::read_dir(&dir).and_then(Iterator::collect).with_context(|| format!("cannot read directory `{}`", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        // Pushed in reverse, so subdirectories are walked in name order.
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let kind = entry.file_type().with_context(|| format!("cannot read `{}`", entry.path().display()))?;
            if kind.is_dir() {
                if name != "target" {
                    subdirs.push(entry.path());
                }
            } else if name.ends_with(".loop") && entry.path().is_file() {
                found.push(entry.path());
            }
        }
        pending.extend(subdirs.into_iter().rev());
    }
    found.sort();
    Ok(found)
}

/// Reads a `.loop` file or an artifact (or standard input for `-`), as the library does:
/// bounded, strictly UTF-8, never a directory or a named pipe.
pub fn read_source(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == STDIN {
        return Input::Stdin.read();
    }
    Ok(read_program_text(path)?)
}

fn read_limited(reader: impl Read, path: &Path) -> anyhow::Result<String> {
    Ok(read_program_from(reader, &path.display().to_string())?)
}

/// A file after parsing and checking.
pub struct Checked {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The checked program, when there were no errors.
    pub dag: Option<Dag>,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        has_errors(&self.diagnostics)
    }

    /// Writes every diagnostic to stderr.
    pub fn print_diagnostics(&self, color: bool) {
        let renderer = report::Renderer::new(&self.path, &self.source, color);
        for d in &self.diagnostics {
            eprint!("{}", renderer.render(d));
        }
    }
}

/// Checks `source` as if read from `path`.
pub fn check_source(path: &Path, source: String) -> Checked {
    let lowered = graph::check_text(&source);
    Checked { path: path.to_path_buf(), source, dag: lowered.dag, diagnostics: lowered.diagnostics }
}

/// A program file read and checked: its graph, and for an artifact its compiled parameters.
pub struct Loaded {
    /// What the file is.
    pub file: ProgramFile,
    /// The checked program.
    pub dag: Dag,
    /// Compiled parameters by step (empty for `.loop` source).
    pub params: HashMap<StepId, StepParams>,
}

/// Reads (bounded, like any source) and checks `path` — `.loop` source or an artifact, told
/// apart by content — printing diagnostics against the source (an artifact's embedded one);
/// fails when it is invalid.
pub fn load(path: &Path, color: bool) -> anyhow::Result<Loaded> {
    let text = read_source(path)?;
    let shown = if path.as_os_str() == STDIN { Input::Stdin.path() } else { path };
    let file = ProgramFile::parse(shown.display().to_string(), text)?;
    let checked = check_source(Path::new(&file.source_name()), file.source().to_string());
    checked.print_diagnostics(color);
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
    let dag = checked.dag.ok_or_else(|| anyhow::anyhow!("`{}` has {errors} error(s)", checked.path.display()))?;
    let params = match &file {
        ProgramFile::Artifact { name, artifact } => artifact.validate(name, &dag)?,
        ProgramFile::Source { .. } => HashMap::new(),
    };
    Ok(Loaded { file, dag, params })
}

/// [`load`], keeping only the graph.
pub fn load_dag(path: &Path, color: bool) -> anyhow::Result<Dag> {
    Ok(load(path, color)?.dag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_to_their_loop_files_in_order_skipping_hidden_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["b.loop", "a.loop", "notes.txt", ".hidden.loop", "sub/c.loop", "target/t.loop", ".git/g.loop", "sub/deeper/d.loop"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let got: Vec<PathBuf> = expand(&[root.to_path_buf()]).unwrap().iter().map(|i| i.path().strip_prefix(root).unwrap().to_path_buf()).collect();
        let want: Vec<PathBuf> = ["a.loop", "b.loop", "sub/c.loop", "sub/deeper/d.loop"].iter().map(PathBuf::from).collect();
        assert_eq!(got, want);
        // A directory named on the command line is walked even when it would be skipped inside another.
        assert_eq!(expand(&[root.join("target")]).unwrap(), [Input::File(root.join("target/t.loop"))]);
        std::fs::create_dir(root.join("empty")).unwrap();
        assert!(expand(&[root.join("empty")]).unwrap_err().to_string().contains("holds no `.loop` files"));
        assert!(expand(&["-".into(), "-".into()]).is_err(), "standard input can be read once");
    }
}
