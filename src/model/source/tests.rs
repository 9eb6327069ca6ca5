//! Tests of model sources on fake Ollama stores and Hugging Face caches in temporary
//! directories, holding the tiny test GGUF.

use super::*;

/// A fake Ollama store holding `gguf` as `NAME:TAG` (with a template layer beside it).
fn ollama_store(root: &Path, name: &str, tag: &str, gguf: &[u8]) -> String {
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(gguf).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::write(root.join("blobs").join(format!("sha256-{sha}")), gguf).unwrap();
    let dir = root.join("manifests/registry.ollama.ai/library").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00", "size": 10},
        {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{sha}"), "size": gguf.len()},
    ]});
    std::fs::write(dir.join(tag), manifest.to_string()).unwrap();
    sha
}

fn tiny_gguf() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    crate::model::testing::write_tiny_gguf(&path, 3).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn an_ollama_name_resolves_through_its_manifest_to_the_model_blob() {
    let store = tempfile::tempdir().unwrap();
    let sha = ollama_store(store.path(), "tiny", "q8", &tiny_gguf());
    let m = ollama::find_in(store.path(), "tiny:q8").unwrap();
    assert_eq!(m.sha256, sha);
    assert_eq!(m.blob, store.path().join(format!("blobs/sha256-{sha}")));
    assert_eq!(m.spec(), "ollama:tiny:q8");
    assert_eq!(ollama::list(store.path()), vec![m]);
    let err = ollama::find_in(store.path(), "tiny").unwrap_err().to_string();
    assert!(err.contains("ollama pull tiny:latest") && err.contains("tiny:q8"), "{err}");
    let err = ollama::find_in(store.path(), "../etc:x").unwrap_err().to_string();
    assert!(err.contains("write `ollama:NAME`"), "{err}");
}

#[test]
fn a_hub_snapshot_resolves_to_its_gguf_and_several_must_be_named() {
    let hub = tempfile::tempdir().unwrap();
    let repo = hub.path().join("models--org--tiny-GGUF");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    std::fs::write(snap.join("tiny-q8_0.gguf"), tiny_gguf()).unwrap();
    let g = hf::find_in(hub.path(), "org/tiny-GGUF").unwrap();
    assert_eq!((g.repo.as_str(), g.file.as_str()), ("org/tiny-GGUF", "tiny-q8_0.gguf"));
    assert_eq!(hf::list(hub.path()), vec![g.clone()]);
    std::fs::write(snap.join("tiny-f16.gguf"), b"GGUF").unwrap();
    let err = hf::find_in(hub.path(), "org/tiny-GGUF").unwrap_err().to_string();
    assert!(err.contains("name one as `hf:org/tiny-GGUF:FILE`") && err.contains("tiny-f16.gguf"), "{err}");
    assert_eq!(hf::find_in(hub.path(), "org/tiny-GGUF:tiny-q8_0.gguf").unwrap(), g);
    assert!(hf::find_in(hub.path(), "org/other").unwrap_err().to_string().contains("downloads nothing"));
}

#[test]
fn a_gguf_is_imported_once_whatever_its_path() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(cache_dir.path());
    let files = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let (a, b) = (files.path().join("a.gguf"), files.path().join("copy of a.gguf"));
    std::fs::write(&a, &bytes).unwrap();
    std::fs::write(&b, &bytes).unwrap();
    let progress = crate::model::progress::SilentProgress;
    let dir = resolve(a.to_str().unwrap(), &cache, &progress).unwrap().unwrap();
    assert!(dir.join(MODEL_FILE).is_file());
    assert!(dir.file_name().unwrap().to_str().unwrap().starts_with("a-"));
    assert_eq!(resolve(b.to_str().unwrap(), &cache, &progress).unwrap().unwrap(), dir, "the same bytes are not imported twice");
    let entries = list(&cache);
    let e = entries.iter().find(|e| e.availability == Availability::Installed).unwrap();
    let canonical = std::fs::canonicalize(&a).unwrap();
    assert_eq!((e.architecture.as_deref(), e.origin.as_str()), (Some("llama"), canonical.to_str().unwrap()));
    assert!(e.quantization.is_some());
}

#[test]
fn an_unsupported_architecture_is_refused_naming_it_and_what_is_supported() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(cache_dir.path());
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("g.gguf");
    let bytes = tiny_gguf();
    // The tiny GGUF's architecture, renamed: the metadata value `llama` becomes `gemma`.
    let at = bytes.windows(5).position(|w| w == b"llama").unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + 5].copy_from_slice(b"gemma");
    std::fs::write(&path, renamed).unwrap();
    let err = resolve(path.to_str().unwrap(), &cache, &crate::model::progress::SilentProgress).unwrap_err().to_string();
    let supported = crate::model::import::SUPPORTED_ARCHITECTURES.join(", ");
    assert!(err.contains(&format!("architecture `gemma` is not supported yet; loopc imports {supported}")), "{err}");
}

#[test]
fn specs_name_their_source() {
    assert_eq!(ModelSource::parse("ollama:qwen2.5:0.5b"), ModelSource::Ollama("qwen2.5:0.5b".into()));
    assert_eq!(ModelSource::parse("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF"), ModelSource::HuggingFace("Qwen/Qwen2.5-0.5B-Instruct-GGUF".into()));
    assert_eq!(ModelSource::parse("./missing.gguf"), ModelSource::Gguf("./missing.gguf".into()));
    assert!(matches!(ModelSource::parse("gemma3-270m"), ModelSource::KnownGguf(k) if k.name == "gemma3-270m"));
    assert_eq!(ModelSource::parse("smollm2-135m-instruct"), ModelSource::Name("smollm2-135m-instruct".into()));
}
