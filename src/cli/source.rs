//! Reads a `.loop` file and runs it through parsing and checking, keeping the source for
//! rendering diagnostics.

use std::path::{Path, PathBuf};

use anyhow::Context;
use loopc::graph::{self, Dag};
use loopc::syntax::{self, has_errors, Diagnostic};

use super::report;

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
        for d in &self.diagnostics {
            eprint!("{}", report::render(d, &self.path, &self.source, color));
        }
    }
}

/// Reads and checks `path`. Fails only when the file cannot be read.
pub fn check(path: &Path) -> anyhow::Result<Checked> {
    let source = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(check_source(path, source))
}

/// Checks `source` as if read from `path`.
pub fn check_source(path: &Path, source: String) -> Checked {
    match syntax::parse(&source) {
        Err(d) => Checked { path: path.to_path_buf(), source, dag: None, diagnostics: vec![d] },
        Ok(file) => {
            let lowered = graph::lower(&file);
            Checked { path: path.to_path_buf(), source, dag: lowered.dag, diagnostics: lowered.diagnostics }
        }
    }
}

/// Reads and checks `path`, printing diagnostics; the DAG, or an error when it is invalid.
pub fn load_dag(path: &Path, color: bool) -> anyhow::Result<Dag> {
    let checked = check(path)?;
    checked.print_diagnostics(color);
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
    checked.dag.ok_or_else(|| anyhow::anyhow!("`{}` has {errors} error(s)", path.display()))
}
