//! What a program file is: `.loop` source or a compiled artifact, told apart by content (an
//! artifact is a JSON object; a `.loop` file starts with `program`, a comment or blank space),
//! so every command and the library take either.

use std::path::Path;

use super::artifact::Artifact;
use super::program::LoadError;

/// A program file, read.
pub enum ProgramFile {
    /// `.loop` source text.
    Source {
        /// The path, as shown in messages.
        name: String,
        /// The text.
        text: String,
    },
    /// A compiled artifact, validated against its embedded program.
    Artifact {
        /// The path, as shown in messages.
        name: String,
        /// The artifact.
        artifact: Box<Artifact>,
    },
}

impl ProgramFile {
    /// Reads `path` and tells what it is.
    pub fn read(path: &Path) -> Result<ProgramFile, LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: name.clone(), source })?;
        ProgramFile::parse(name, text)
    }

    /// Tells what `text` (read from `name`) is.
    pub fn parse(name: String, text: String) -> Result<ProgramFile, LoadError> {
        if looks_like_artifact(&text) {
            let artifact = Artifact::parse(&name, &text).map_err(LoadError::Artifact)?;
            return Ok(ProgramFile::Artifact { name, artifact: Box::new(artifact) });
        }
        Ok(ProgramFile::Source { name, text })
    }

    /// The `.loop` source: the file itself, or the artifact's embedded program.
    pub fn source(&self) -> &str {
        match self {
            ProgramFile::Source { text, .. } => text,
            ProgramFile::Artifact { artifact, .. } => &artifact.program.source,
        }
    }

    /// The name to show in messages about the source (for an artifact, its embedded file).
    pub fn source_name(&self) -> String {
        match self {
            ProgramFile::Source { name, .. } => name.clone(),
            ProgramFile::Artifact { name, artifact } => format!("{name} (embedded {})", artifact.program.source_file),
        }
    }
}

/// Whether `text` is a JSON object rather than `.loop` source (which can never start with `{`).
pub fn looks_like_artifact(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').trim_start().starts_with('{')
}
