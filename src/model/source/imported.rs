//! GGUF files imported into the cache once, keyed by their content: a file's SHA-256 (kept
//! in an index by path, size and modification time, so an unchanged file is not hashed
//! again) finds the model directory converted from the same bytes, under whatever name or
//! path they were given. Each such directory records where it came from in `source.json`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::super::error::{io, ModelError};
use super::super::gguf::GgufHeader;
use super::super::import::{CONFIG_FILE, EXPORT_VERSION, MODEL_FILE, SUPPORTED_ARCHITECTURES};
use super::super::progress::Progress;
use super::super::provision::Cache;

/// Where an imported model came from, written beside it.
pub const SOURCE_FILE: &str = "source.json";
/// The index of hashed files, in the models directory.
const HASH_INDEX: &str = ".gguf-hashes.json";

/// A GGUF to import and what to call it.
pub struct GgufOrigin<'a> {
    /// The file.
    pub path: &'a Path,
    /// Where it came from, as users name it (`./x.gguf`, `ollama:qwen2.5:0.5b`).
    pub origin: String,
    /// The start of the model's name in the cache.
    pub stem: String,
    /// Its SHA-256 when the store it came from names it (an Ollama blob digest).
    pub sha256: Option<String>,
}

/// The model directory imported from `gguf`: the one already in the cache for the same bytes,
/// or a new import (converted with progress). A GGUF of an architecture loopc does not import
/// is refused before it is hashed or converted.
pub fn import(gguf: &GgufOrigin, cache: &Cache, progress: &dyn Progress) -> Result<PathBuf, ModelError> {
    let header = GgufHeader::read(gguf.path)?;
    let arch = header.meta("general.architecture").and_then(|v| v.as_str()).unwrap_or("(none)").to_string();
    if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(ModelError::BadModel {
            model: gguf.origin.clone(),
            reason: format!("architecture `{arch}` is not supported yet; loopc imports {}", SUPPORTED_ARCHITECTURES.join(", ")),
        });
    }
    let sha = match &gguf.sha256 {
        Some(s) => s.clone(),
        None => hash_cached(gguf.path, cache, progress)?,
    };
    if let Some(dir) = find_by_hash(cache, &sha) {
        return Ok(dir);
    }
    let name = format!("{}-{}", sanitize(&gguf.stem), &sha[..12]);
    let dir = cache.model_dir(&name);
    super::super::provision::convert(gguf.path, &dir, super::super::Precision::default(), progress)?;
    let record = json!({
        "origin": gguf.origin, "path": gguf.path, "sha256": sha, "architecture": arch,
        "quantization": header.quantization(), "gguf_bytes": header.file_size,
    });
    let path = dir.join(SOURCE_FILE);
    crate::fs::atomic_write(&path, serde_json::to_string_pretty(&record).unwrap_or_default().as_bytes()).map_err(io("write", &path))?;
    Ok(dir)
}

/// A model name made of the letters, digits, `.`, `-` and `_` of `stem`, lowercased.
fn sanitize(stem: &str) -> String {
    let s: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c.to_ascii_lowercase() } else { '-' }).collect();
    let s = s.trim_matches(['-', '.']).chars().take(64).collect::<String>();
    if s.is_empty() {
        "gguf".to_string()
    } else {
        s
    }
}

/// The cache's model directory converted from a GGUF with SHA-256 `sha` by this loopc's
/// exporter, if there is one.
fn find_by_hash(cache: &Cache, sha: &str) -> Option<PathBuf> {
    cache.installed_models().into_iter().map(|n| cache.model_dir(&n)).find(|dir| {
        let config: Option<serde_json::Value> = std::fs::read(dir.join(CONFIG_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        config.is_some_and(|c| {
            c.pointer("/loopc/source_sha256").and_then(|v| v.as_str()) == Some(sha)
                && c.get("loopc_export").and_then(|v| v.as_u64()).unwrap_or(0) >= EXPORT_VERSION
                && dir.join(MODEL_FILE).is_file()
        })
    })
}

/// An index entry: what a path held when it was hashed.
#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
struct Hashed {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

/// The SHA-256 of `path`, from the index when the file is unchanged since it was hashed, else
/// computed (with progress) and recorded.
pub fn hash_cached(path: &Path, cache: &Cache, progress: &dyn Progress) -> Result<String, ModelError> {
    let canonical = std::fs::canonicalize(path).map_err(io("read", path))?;
    let meta = std::fs::metadata(&canonical).map_err(io("read", path))?;
    let modified_ns = meta.modified().ok().and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let key = canonical.to_string_lossy().into_owned();
    let index_path = cache.models_dir().join(HASH_INDEX);
    let mut index: BTreeMap<String, Hashed> = std::fs::read(&index_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if let Some(h) = index.get(&key).filter(|h| h.size == meta.len() && h.modified_ns == modified_ns) {
        return Ok(h.sha256.clone());
    }
    let sha256 = hash_file(&canonical, progress)?;
    index.insert(key, Hashed { size: meta.len(), modified_ns, sha256: sha256.clone() });
    // The index only saves work: failing to write it is not an error.
    if std::fs::create_dir_all(cache.models_dir()).is_ok() {
        let _ = crate::fs::atomic_write(&index_path, serde_json::to_string(&index).unwrap_or_default().as_bytes());
    }
    Ok(sha256)
}

/// The SHA-256 of a file, read in blocks with progress in bytes.
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let size = std::fs::metadata(path).map_err(io("read", path))?.len();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("the file");
    progress.start(&format!("hashing {name} ({:.0} MB)", size as f64 / 1e6), Some(size));
    let mut file = std::fs::File::open(path).map_err(io("read", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress.set(done);
    }
    let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    progress.finish(&format!("hashed {name}: sha256 {}", &sha[..12]));
    Ok(sha)
}

/// Where an installed model came from, if it was imported from a GGUF source.
pub fn origin_of(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join(SOURCE_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("origin").and_then(|o| o.as_str()).map(str::to_string)
}

/// The GGUF file an imported model directory was converted from, when it is still there with
/// the size it had; otherwise why not (a sentence fragment naming the directory).
pub fn recorded_gguf(dir: &Path) -> Result<PathBuf, String> {
    let record: Option<serde_json::Value> = std::fs::read(dir.join(SOURCE_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(record) = record else {
        return Err(format!("`{}` is a converted model directory that records no GGUF it came from", dir.display()));
    };
    let path = record.get("path").and_then(|p| p.as_str()).map(PathBuf::from);
    let bytes = record.get("gguf_bytes").and_then(|b| b.as_u64());
    match (path, bytes) {
        (Some(path), Some(bytes)) if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes) => Ok(path),
        (Some(path), Some(_)) => Err(format!("the GGUF `{}` that `{}` was imported from is gone or has changed", path.display(), dir.display())),
        _ => Err(format!("`{}` records no GGUF path it came from", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_of_safe_characters() {
        assert_eq!(sanitize("Qwen2.5-0.5B-Instruct Q4_K_M"), "qwen2.5-0.5b-instruct-q4_k_m");
        assert_eq!(sanitize("../x"), "x");
        assert_eq!(sanitize("///"), "gguf");
    }
}
