//! Reads a program file — `.loop` source or a compiled artifact — and runs it through parsing
//! and checking, keeping the source for rendering diagnostics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use loopc::graph::{self, Dag, StepId};
use loopc::runtime::executor::StepParams;
use loopc::runtime::source::ProgramFile;
use loopc::syntax::{has_errors, Diagnostic};

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
    let lowered = graph::check(&source);
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

/// Reads and checks `path` (`.loop` source or an artifact, told apart by content), printing
/// diagnostics against the source (an artifact's embedded one); fails when it is invalid.
pub fn load(path: &Path, color: bool) -> anyhow::Result<Loaded> {
    let file = ProgramFile::read(path)?;
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
