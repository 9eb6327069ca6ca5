//! What a program file is: `.loop` source or a compiled artifact, told apart by content (an
//! artifact is a JSON object; a `.loop` file starts with `program`, a comment or blank space),
//! so every command and the library take either.
//!
//! Reading is bounded and strict, for every caller (`Engine::load`, the server's loader, the
//! CLI): a `.loop` source over [`MAX_SOURCE_BYTES`] (say `/dev/zero`) is refused after that
//! many bytes instead of filling memory, an artifact over [`MAX_ARTIFACT_BYTES`] likewise,
//! text that is not UTF-8 is refused with the line and column of its first bad byte (never
//! read lossily), and a directory or a named pipe is refused before it is opened.

use std::io::Read;
use std::path::Path;

use super::artifact::{Artifact, MAX_ARTIFACT_BYTES};
use super::program::LoadError;
use crate::syntax::LineIndex;

/// The largest `.loop` source loopc reads.
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// Reads the program file at `path` as text: bounded and strictly UTF-8 (see the module doc).
pub fn read_program_text(path: &Path) -> Result<String, LoadError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io { path: name.clone(), source })?;
    if meta.is_dir() {
        return Err(LoadError::Unreadable { path: name, reason: "is a directory, not a program file".into() });
    }
    // Opening a named pipe would wait for a writer forever.
    if std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
        return Err(LoadError::Unreadable { path: name, reason: "is a named pipe, not a program file".into() });
    }
    let file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: name.clone(), source })?;
    read_program_from(file, &name)
}

/// Reads a program's text from `reader` (named `name` in messages): at most
/// [`MAX_SOURCE_BYTES`] of `.loop` source, or [`MAX_ARTIFACT_BYTES`] of an artifact, and
/// strictly UTF-8.
pub fn read_program_from(reader: impl Read, name: &str) -> Result<String, LoadError> {
    let io = |source| LoadError::Io { path: name.to_string(), source };
    let too_large = |limit: u64, what: &str| LoadError::Unreadable {
        path: name.to_string(),
        reason: format!("is larger than {} MiB, more than {what} may be", limit >> 20),
    };
    let mut reader = reader.take(MAX_ARTIFACT_BYTES + 1);
    let mut bytes = Vec::new();
    (&mut reader).take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        // Only an artifact (a JSON object) may be larger than a source.
        if !looks_like_artifact(&String::from_utf8_lossy(&bytes[..bytes.len().min(4096)])) {
            return Err(too_large(MAX_SOURCE_BYTES, "a `.loop` source"));
        }
        reader.read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(too_large(MAX_ARTIFACT_BYTES, "an artifact"));
        }
    }
    String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let text = std::str::from_utf8(&e.as_bytes()[..bad]).unwrap_or_default();
        let at = LineIndex::new(text).line_col(text, bad);
        LoadError::NotUtf8 { path: name.to_string(), line: at.line, col: at.col, byte: bad }
    })
}

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
    /// Reads `path` ([`read_program_text`]: bounded, strictly UTF-8) and tells what it is.
    pub fn read(path: &Path) -> Result<ProgramFile, LoadError> {
        let text = read_program_text(path)?;
        ProgramFile::parse(path.display().to_string(), text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_utf8_is_located_and_big_input_is_refused() {
        let err = read_program_from(&b"program p\nin\xffput"[..], "x.loop").unwrap_err().to_string();
        assert_eq!(err, "`x.loop` is not UTF-8 text: line 2, column 3 (byte 12) is not a character");
        let err = read_program_from(std::io::repeat(b' ').take(MAX_SOURCE_BYTES + 10), "/dev/zero").unwrap_err().to_string();
        assert_eq!(err, "`/dev/zero` is larger than 64 MiB, more than a `.loop` source may be");
    }

    #[test]
    fn an_artifact_may_be_larger_than_a_source_but_not_without_bound() {
        let big = std::io::Read::chain(&b"{"[..], std::io::repeat(b' ').take(MAX_SOURCE_BYTES + 10));
        assert_eq!(read_program_from(big, "a.json").map(|t| t.len()).ok(), Some(MAX_SOURCE_BYTES as usize + 11));
        let huge = std::io::Read::chain(&b"{"[..], std::io::repeat(b' ').take(MAX_ARTIFACT_BYTES + 10));
        let err = read_program_from(huge, "a.json").unwrap_err().to_string();
        assert!(err.contains("larger than 256 MiB, more than an artifact may be"), "{err}");
    }

    #[test]
    fn directories_and_named_pipes_are_refused_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_program_text(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("is a directory, not a program file"), "{err}");
        let fifo = dir.path().join("p.loop");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = read_program_text(&fifo).unwrap_err().to_string();
        assert!(err.ends_with("is a named pipe, not a program file"), "{err}");
    }
}
