//! The local Ollama store, read-only: `ollama:NAME[:TAG]` names a manifest under
//! `manifests/registry.ollama.ai/library/NAME/TAG` (or `NAMESPACE/NAME`, or `HOST/NAMESPACE/NAME`),
//! whose layer of media type `application/vnd.ollama.image.model` is the GGUF, stored as
//! `blobs/sha256-<digest>`. The store is `$OLLAMA_MODELS`, else `~/.ollama/models`, else the
//! system service's `/usr/share/ollama/.ollama/models`.

use std::path::{Path, PathBuf};

use super::super::error::ModelError;

/// The media type of the layer holding the weights.
const MODEL_LAYER: &str = "application/vnd.ollama.image.model";
/// The registry names without a host belong to.
const DEFAULT_REGISTRY: &str = "registry.ollama.ai";
/// The namespace of names without one.
const DEFAULT_NAMESPACE: &str = "library";
/// The largest manifest loopc reads (they are a few hundred bytes).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// A model in the Ollama store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OllamaModel {
    /// The name as written after `ollama:` (without the default registry and namespace).
    pub name: String,
    /// The tag.
    pub tag: String,
    /// The GGUF blob.
    pub blob: PathBuf,
    /// Its SHA-256 (the blob's digest).
    pub sha256: String,
}

impl OllamaModel {
    /// The spec that names it: `ollama:NAME:TAG`.
    pub fn spec(&self) -> String {
        format!("ollama:{}:{}", self.name, self.tag)
    }
}

/// The store's directory: `$OLLAMA_MODELS`, else the first of the usual places that exists.
pub fn store() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let home = dirs::home_dir().map(|h| h.join(".ollama").join("models"));
    home.into_iter().chain([PathBuf::from("/usr/share/ollama/.ollama/models")]).find(|d| d.join("manifests").is_dir())
}

/// The manifest directory path of a name: `[HOST/][NAMESPACE/]NAME`.
fn manifest_dir(store: &Path, name: &str) -> PathBuf {
    let parts: Vec<&str> = name.split('/').collect();
    let (host, namespace, model) = match parts.as_slice() {
        [model] => (DEFAULT_REGISTRY, DEFAULT_NAMESPACE, *model),
        [namespace, model] => (DEFAULT_REGISTRY, *namespace, *model),
        [host, namespace, model] => (*host, *namespace, *model),
        _ => (DEFAULT_REGISTRY, DEFAULT_NAMESPACE, name),
    };
    store.join("manifests").join(host).join(namespace).join(model)
}

/// Splits `NAME[:TAG]` (the tag defaults to `latest`).
pub fn split_name(spec: &str) -> (String, String) {
    // A tag never holds `/`, so a colon before the last `/` is a host's port, not a tag.
    match spec.rfind(':').filter(|&i| !spec[i..].contains('/')) {
        Some(i) => (spec[..i].to_string(), spec[i + 1..].to_string()),
        None => (spec.to_string(), "latest".to_string()),
    }
}

/// Finds `NAME[:TAG]` in the store at `store`.
pub fn find_in(store: &Path, spec: &str) -> Result<OllamaModel, ModelError> {
    let (name, tag) = split_name(spec);
    let unknown = |hint: String| ModelError::UnknownModel { name: format!("ollama:{spec}"), hint };
    if name.is_empty() || tag.is_empty() || name.split('/').any(|p| p.is_empty() || p == "." || p == "..") || tag.contains(['/', '\\']) {
        return Err(unknown("write `ollama:NAME` or `ollama:NAME:TAG`, as `ollama list` shows them".into()));
    }
    let manifest = manifest_dir(store, &name).join(&tag);
    if !manifest.is_file() {
        let have: Vec<String> = list(store).into_iter().map(|m| format!("{}:{}", m.name, m.tag)).collect();
        return Err(unknown(format!(
            "no manifest `{}` in the Ollama store at {} (it has: {}); pull it with `ollama pull {name}:{tag}` first",
            manifest.display(),
            store.display(),
            if have.is_empty() { "nothing".to_string() } else { have.join(", ") }
        )));
    }
    read_manifest(store, &manifest, name, tag)
}

fn read_manifest(store: &Path, manifest: &Path, name: String, tag: String) -> Result<OllamaModel, ModelError> {
    use std::io::Read;
    let bad = |reason: String| ModelError::BadModel { model: format!("ollama:{name}:{tag}"), reason };
    let mut bytes = Vec::new();
    std::fs::File::open(manifest)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES).read_to_end(&mut bytes))
        .map_err(|e| bad(format!("cannot read the manifest `{}`: {e}", manifest.display())))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("the manifest `{}` is not JSON: {e}", manifest.display())))?;
    let layer = json
        .get("layers")
        .and_then(|l| l.as_array())
        .and_then(|layers| layers.iter().find(|l| l.get("mediaType").and_then(|m| m.as_str()) == Some(MODEL_LAYER)))
        .ok_or_else(|| bad(format!("the manifest `{}` has no `{MODEL_LAYER}` layer (is it a model?)", manifest.display())))?;
    let digest = layer.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
    let sha256 = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(format!("the model layer's digest `{digest}` is not a sha256 digest")))?
        .to_ascii_lowercase();
    let blob = store.join("blobs").join(format!("sha256-{sha256}"));
    if !blob.is_file() {
        return Err(bad(format!("the blob `{}` the manifest names is missing from the store", blob.display())));
    }
    Ok(OllamaModel { name, tag, blob, sha256 })
}

/// Every model in the store with a readable manifest, by name and tag.
pub fn list(store: &Path) -> Vec<OllamaModel> {
    let root = store.join("manifests");
    let mut found = Vec::new();
    // manifests/HOST/NAMESPACE/MODEL/TAG
    for host in read_dirs(&root) {
        for namespace in read_dirs(&host) {
            for model in read_dirs(&namespace) {
                let Some(tags) = std::fs::read_dir(&model).ok() else { continue };
                for tag in tags.flatten().filter(|t| t.path().is_file()) {
                    let file_name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                    let (h, ns, m) = (file_name(&host), file_name(&namespace), file_name(&model));
                    let name = match (h.as_str(), ns.as_str()) {
                        (DEFAULT_REGISTRY, DEFAULT_NAMESPACE) => m,
                        (DEFAULT_REGISTRY, _) => format!("{ns}/{m}"),
                        _ => format!("{h}/{ns}/{m}"),
                    };
                    if let Ok(found_model) = read_manifest(store, &tag.path(), name, file_name(&tag.path())) {
                        found.push(found_model);
                    }
                }
            }
        }
    }
    found.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
    found
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_name_and_tag() {
        assert_eq!(split_name("qwen2.5:0.5b"), ("qwen2.5".into(), "0.5b".into()));
        assert_eq!(split_name("gemma3"), ("gemma3".into(), "latest".into()));
        assert_eq!(split_name("me/model:q4"), ("me/model".into(), "q4".into()));
        assert_eq!(split_name("host:5000/me/model"), ("host:5000/me/model".into(), "latest".into()));
    }

    #[test]
    fn manifests_are_found_under_the_registry_and_namespace() {
        let store = Path::new("/s");
        assert_eq!(manifest_dir(store, "qwen2.5"), Path::new("/s/manifests/registry.ollama.ai/library/qwen2.5"));
        assert_eq!(manifest_dir(store, "me/m"), Path::new("/s/manifests/registry.ollama.ai/me/m"));
        assert_eq!(manifest_dir(store, "h.io/me/m"), Path::new("/s/manifests/h.io/me/m"));
    }
}
