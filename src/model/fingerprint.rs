//! A model's fingerprint: the SHA-256 of its graph and weight files, recorded in artifacts
//! so a compiled program names exactly the weights it was compiled against, and a hash over
//! that, the tokenizer, the config and the chat template, which keys loaded models and the
//! response cache.
//!
//! Hashing 540 MB takes a second or two, so the result is kept next to the model in
//! `fingerprint.json`, valid while the files' sizes and modification times are unchanged.

use std::path::Path;
use std::time::UNIX_EPOCH;

use sha2::Digest;

use super::error::{io, ModelError};
use super::import::{hex, CONFIG_FILE, DATA_FILE, MODEL_FILE, PREFILL_MODEL_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use super::local::Fingerprint;

const SIDECAR: &str = "fingerprint.json";

/// The files whose bytes are the model: the graph, its external data and the prefill graph
/// (the last two optional).
const HASHED: [&str; 3] = [MODEL_FILE, DATA_FILE, PREFILL_MODEL_FILE];

/// Size and modification time of each file, which decide whether the sidecar is current.
fn stamp(dir: &Path) -> std::io::Result<Vec<(u64, u128)>> {
    let mut out = Vec::new();
    for file in HASHED {
        match std::fs::metadata(dir.join(file)) {
            Ok(m) => {
                let mtime = m.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                out.push((m.len(), mtime));
            }
            Err(e) if file != MODEL_FILE && e.kind() == std::io::ErrorKind::NotFound => out.push((0, 0)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The SHA-256 of `model.onnx` followed by its external data (if any), streamed.
pub fn model_sha256(dir: &Path) -> std::io::Result<String> {
    let stamp = stamp(dir)?;
    let stamp_json = serde_json::json!(stamp.iter().map(|(len, t)| format!("{len}:{t}")).collect::<Vec<_>>());
    let sidecar = dir.join(SIDECAR);
    if let Some(v) = std::fs::read_to_string(&sidecar).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
        if v["stamp"] == stamp_json {
            if let Some(h) = v["sha256"].as_str() {
                return Ok(h.to_string());
            }
        }
    }
    let mut hasher = sha2::Sha256::new();
    for file in HASHED {
        match std::fs::File::open(dir.join(file)) {
            Ok(mut f) => {
                std::io::copy(&mut f, &mut hasher)?;
            }
            Err(e) if file != MODEL_FILE && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let hash = hex(&hasher.finalize());
    // A model directory may be read-only: then the hash is simply computed again next time.
    let record = serde_json::json!({ "stamp": stamp_json, "sha256": hash });
    let _ = crate::fs::atomic_write(&sidecar, record.to_string().as_bytes());
    Ok(hash)
}

/// The fingerprint of the model directory `dir`: its weights hash (remembered beside the
/// files) and a hash over that, `tokenizer.json`, `config.json` and the chat template.
pub fn fingerprint_of(dir: &Path) -> Result<Fingerprint, ModelError> {
    let weights = model_sha256(dir).map_err(io("hash", &dir.join(MODEL_FILE)))?;
    let read = |file: &str| -> Result<Vec<u8>, ModelError> {
        match std::fs::read(dir.join(file)) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != TOKENIZER_FILE => Ok(Vec::new()),
            Err(e) => Err(io("read", &dir.join(file))(e)),
        }
    };
    let template = serde_json::from_slice::<serde_json::Value>(&read(TOKENIZER_CONFIG_FILE)?)
        .ok()
        .and_then(|v| v.get("chat_template").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_default();
    let mut h = sha2::Sha256::new();
    for part in [weights.as_bytes(), &read(TOKENIZER_FILE)?, &read(CONFIG_FILE)?, template.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Ok(Fingerprint { weights, full: hex(&h.finalize()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_files_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MODEL_FILE), b"graph").unwrap();
        let first = model_sha256(dir.path()).unwrap();
        assert_eq!(first, hex(&sha2::Sha256::digest(b"graph")));
        assert!(dir.path().join(SIDECAR).is_file());
        assert_eq!(model_sha256(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join(DATA_FILE), b"weights").unwrap();
        assert_eq!(model_sha256(dir.path()).unwrap(), hex(&sha2::Sha256::digest(b"graphweights")));
    }
}
