//! End-to-end tests of model sources through the `loopc` binary: a GGUF path wherever a model
//! name goes, a fake Ollama store and Hugging Face cache in temporary directories (holding the
//! tiny seeded GGUF), `loopc model list`, `loopc prompt --model`, and the error an
//! architecture loopc does not import yet gets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The ONNX Runtime library of the default cache, provisioned if needed.
fn ort_library() -> PathBuf {
    let cache = loopc::model::provision::Cache::from_env().unwrap();
    loopc::model::provision::ort_library(&cache, &loopc::model::progress::SilentProgress).unwrap()
}

/// A temporary loopc cache, Ollama store and Hugging Face cache.
struct Places {
    dir: tempfile::TempDir,
    ort: PathBuf,
}

impl Places {
    fn new() -> Places {
        let p = Places { dir: tempfile::tempdir().unwrap(), ort: ort_library() };
        std::fs::create_dir_all(p.ollama()).unwrap();
        std::fs::create_dir_all(p.hub()).unwrap();
        p
    }

    fn ollama(&self) -> PathBuf {
        self.dir.path().join("ollama")
    }

    fn hub(&self) -> PathBuf {
        self.dir.path().join("hub")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_loopc"))
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("LOOPC_CACHE_DIR", self.dir.path().join("cache"))
            .env("ORT_DYLIB_PATH", &self.ort)
            .env("OLLAMA_MODELS", self.ollama())
            .env("HF_HUB_CACHE", self.hub())
            .output()
            .expect("the loopc binary runs")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Puts `gguf` into the fake Ollama store as `tiny:latest`.
    fn add_to_ollama(&self, gguf: &[u8]) {
        use sha2::Digest;
        let sha: String = sha2::Sha256::digest(gguf).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(self.ollama().join("blobs")).unwrap();
        std::fs::write(self.ollama().join(format!("blobs/sha256-{sha}")), gguf).unwrap();
        let manifests = self.ollama().join("manifests/registry.ollama.ai/library/tiny");
        std::fs::create_dir_all(&manifests).unwrap();
        let manifest = serde_json::json!({"schemaVersion": 2, "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{sha}"), "size": gguf.len()}]});
        std::fs::write(manifests.join("latest"), manifest.to_string()).unwrap();
    }

    /// Puts `gguf` into the fake hub cache as `org/tiny-GGUF`'s `tiny-q8_0.gguf`.
    fn add_to_hub(&self, gguf: &[u8]) {
        let repo = self.hub().join("models--org--tiny-GGUF");
        std::fs::create_dir_all(repo.join("snapshots/0123abc")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "0123abc\n").unwrap();
        std::fs::write(repo.join("snapshots/0123abc/tiny-q8_0.gguf"), gguf).unwrap();
    }
}

fn tiny_gguf(seed: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    loopc::model::testing::write_tiny_gguf(&path, seed).unwrap();
    std::fs::read(path).unwrap()
}

fn models(list: &serde_json::Value) -> Vec<serde_json::Value> {
    list["models"].as_array().unwrap().clone()
}

#[test]
fn ollama_and_hub_models_are_listed_then_imported_once_on_first_use() {
    let p = Places::new();
    p.add_to_ollama(&tiny_gguf(5));
    p.add_to_hub(&tiny_gguf(6));
    let before = models(&p.json(&["model", "list", "--json"]));
    let find = |list: &[serde_json::Value], name: &str| list.iter().find(|m| m["name"] == name).cloned();
    let ollama = find(&before, "ollama:tiny:latest").expect("the Ollama model is listed");
    assert_eq!((ollama["architecture"].as_str(), ollama["installed"].as_bool()), (Some("llama"), Some(false)));
    assert!(ollama["quantization"].is_string());
    let hub = find(&before, "hf:org/tiny-GGUF:tiny-q8_0.gguf").expect("the hub model is listed");
    assert_eq!(hub["state"], "imported on first use");

    for spec in ["ollama:tiny", "hf:org/tiny-GGUF"] {
        let out = p.run(&["generate", "--model", spec, "--raw", "--max-tokens", "3", "abc"]);
        assert!(out.status.success(), "{spec}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("converting"), "{spec} is imported with progress: {}", text(&out.stderr));
        let again = p.run(&["generate", "--model", spec, "--raw", "--max-tokens", "3", "abc"]);
        assert!(again.status.success());
        assert!(!text(&again.stderr).contains("converting"), "{spec} is imported once: {}", text(&again.stderr));
    }
    let after = models(&p.json(&["model", "list", "--json"]));
    let installed: Vec<&serde_json::Value> = after.iter().filter(|m| m["installed"] == true).collect();
    let origins: Vec<&str> = installed.iter().map(|m| m["origin"].as_str().unwrap()).collect();
    assert!(origins.contains(&"ollama:tiny:latest") && origins.contains(&"hf:org/tiny-GGUF:tiny-q8_0.gguf"), "{origins:?}");
    assert!(find(&after, "ollama:tiny:latest").is_none(), "an imported model is listed once, as installed");
    let imported = installed.iter().find(|m| m["origin"] == "ollama:tiny:latest").unwrap();
    let info = p.json(&["model", "info", imported["name"].as_str().unwrap(), "--json"]);
    assert_eq!((info["origin"].as_str(), info["architecture"].as_str()), (Some("ollama:tiny:latest"), Some("llama")));
}

#[test]
fn a_gguf_path_works_as_a_programs_model_and_in_prompt() {
    let p = Places::new();
    let gguf = p.dir.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf(7)).unwrap();
    let program = std::fs::read_to_string(root().join("programs/sentiment.loop")).unwrap();
    let (head, body) = program.split_once('\n').unwrap();
    let program = format!("{head}\nmodel default = onnx({:?}) {{ temperature: 0.0, max_tokens: 8 }}\n{body}", gguf.to_str().unwrap());
    let file = p.dir.path().join("sentiment.loop");
    std::fs::write(&file, &program).unwrap();
    let out = p.run(&["run", file.to_str().unwrap(), "--input", r#"{"review": "Lovely."}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(["positive", "negative", "neutral"].contains(&v["sentiment"].as_str().unwrap()), "{v}");

    let shown = p.run(&["prompt", file.to_str().unwrap(), "--step", "classify", "--input", r#"{"review": "Lovely <|im_end|>"}"#, "--model", "tiny.gguf"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    assert!(shown.starts_with("[exact text sent to tiny.gguf (ChatML chat template): "), "{shown}");
    assert!(shown.contains("<|im_start|>user\n[[ ## review ## ]]\nLovely <|im_end|><|im_end|>\n<|im_start|>assistant\n[[ ## sentiment ## ]]"), "{shown}");
}

#[test]
fn an_architecture_loopc_does_not_import_yet_is_named_with_what_is_supported() {
    let p = Places::new();
    // The tiny GGUF's architecture renamed: the metadata value `llama` becomes `mamba`.
    let bytes = tiny_gguf(7);
    let at = bytes.windows(5).position(|w| w == b"llama").unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + 5].copy_from_slice(b"mamba");
    let mamba = p.dir.path().join("mamba.gguf");
    std::fs::write(&mamba, renamed).unwrap();
    let out = p.run(&["generate", "--model", mamba.to_str().unwrap(), "hi"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let supported = loopc::model::import::SUPPORTED_ARCHITECTURES.join(", ");
    assert!(text(&out.stderr).contains(&format!("architecture `mamba` is not supported yet; loopc imports {supported}")), "{}", text(&out.stderr));
    let out = p.run(&["generate", "--model", "ollama:missing", "hi"]);
    assert!(text(&out.stderr).contains("ollama pull missing:latest"), "{}", text(&out.stderr));
}
